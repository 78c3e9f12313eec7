"""fastfeed.mix: weighted mixtures of sources, against the reference, with their guarantees
(proportions within one sample at every point, each component's own order, resuming with
other weights) and their refusals."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed import Feeder, mix, reference


def _components(rng, count, window):
    comps = {}
    for i in range(count):
        n_series = int(rng.integers(1, 3))
        base = 1000 * (i + 1)
        comps[f"c{i}"] = [
            (base + 100 * j + np.arange(int(rng.integers(window + 2 if window else 1, 40)))).astype(np.float32)
            for j in range(n_series)
        ]
    return comps


def _same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        for name in e:
            np.testing.assert_allclose(g[name], e[name], rtol=1e-6, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 4),
    weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0]), min_size=4, max_size=4),
    window=st.sampled_from([None, 2, 4]),
    shuffle=st.booleans(),
    world=st.integers(1, 3),
    batch_size=st.integers(1, 5),
    seed=st.integers(0, 2**64 - 1),
)
def test_mixtures_match_the_reference(count, weights, window, shuffle, world, batch_size, seed):
    rng = np.random.default_rng(seed % 2**32)
    comps = _components(rng, count, window)
    w = {name: weights[i] for i, name in enumerate(comps)}
    if not any(w.values()):
        w["c0"] = 1.0
    options = dict(target_shift=1) if window else {}
    common = dict(batch_size=batch_size, steps_per_epoch=6, shuffle=shuffle, seed=seed, with_index=True)
    for rank in range(world):
        feeder = Feeder(mix(comps, w), window=window, rank=rank, world_size=world, output="numpy", **common, **options)
        for epoch in range(2):
            want = reference.mixed_batches(
                comps, w, window=window, epoch=epoch, rank=rank, world_size=world, **common, **options
            )
            _same([b.as_dict() for b in feeder], want)


def test_proportions_stay_within_one_sample_at_every_point():
    comps = {"a": np.arange(50.0), "b": np.arange(1000.0, 1300.0), "c": np.arange(5000.0, 5020.0)}
    w = {"a": 0.3, "b": 1.7, "c": 0.45}
    feeder = Feeder(mix(comps, w), window=2, batch_size=7, steps_per_epoch=50, shuffle=True, with_index=True)
    sources = np.concatenate([np.asarray(b.source) for b in feeder])
    total = sum(w.values())
    counts = np.zeros(3)
    for n, c in enumerate(sources, start=1):
        counts[c] += 1
        quota = n * np.array(list(w.values())) / total
        assert np.all(np.abs(counts - quota) < 1), (n, counts, quota)


def test_each_component_reads_every_sample_once_per_pass():
    a = np.arange(30.0)  # 29 windows of 2 steps
    feeder = Feeder(
        mix({"a": a, "b": np.arange(100.0, 200.0)}, {"a": 1, "b": 1}),
        window=2,
        batch_size=29,
        steps_per_epoch=4,
        shuffle=True,
        seed=5,
        with_index=True,
        output="numpy",
    )
    starts = [b.start[b.source == 0] for b in feeder]
    firsts = np.concatenate(starts)[:58]  # the first two passes over a
    assert sorted(firsts[:29]) == list(range(29)) and sorted(firsts[29:]) == list(range(29))
    assert list(firsts[:29]) != list(firsts[29:])  # a new pass, a new order


def test_resume_goes_on_exactly_and_other_weights_go_on_from_the_positions():
    comps = {"a": np.arange(40.0), "b": np.arange(1000.0, 1100.0)}
    kw = dict(
        window=3,
        target_shift=1,
        batch_size=4,
        steps_per_epoch=10,
        shuffle=True,
        seed=9,
        with_index=True,
        output="numpy",
    )
    feeder = Feeder(mix(comps, {"a": 1, "b": 3}), **kw)
    it = iter(feeder)
    for _ in range(6):
        next(it)
    state = json.loads(json.dumps(feeder.state_dict()))
    rest = [b.as_dict() for b in it]
    same = Feeder(mix(comps, {"a": 1, "b": 3}), **kw)
    same.load_state_dict(state)
    _same([b.as_dict() for b in same], rest)

    other = Feeder(mix(comps, {"a": 2, "b": 1}), **kw)
    other.load_state_dict(state)
    got = [b.as_dict() for b in other]
    position, counts = state["mix"]["position"], state["mix"]["counts"]
    assert position == 6 * 4 and sum(counts) == position
    want = reference.mixed_batches(
        comps,
        {"a": 2, "b": 1},
        epoch=0,
        origin=position,
        base=counts,
        first_batch=6,
        **{k: v for k, v in kw.items() if k != "output"},
    )
    _same(got, want)
    sources = np.concatenate([g["source"] for g in got])  # counted from the load: within one of 2:1
    for n in range(1, len(sources) + 1):
        assert abs(np.sum(sources[:n] == 0) - n * 2 / 3) < 1


def test_bad_mixtures_are_refused_naming_what_is_wrong():
    a, b = np.arange(10.0), np.arange(10, dtype=np.int32)
    with pytest.raises(ValueError, match=r"share dtype and feature shape: 'a' has float64 \(\), 'b' has int32"):
        Feeder(mix({"a": a, "b": b}), window=2, steps_per_epoch=3)
    with pytest.raises(ValueError, match=r"'a' has float64 \(\), 'b' has float64 \(2,\)"):
        Feeder(mix({"a": a, "b": np.zeros((10, 2))}), window=2, steps_per_epoch=3)
    with pytest.raises(ValueError, match=r"weight of 'a' must be finite and >= 0, got -1"):
        mix({"a": a, "b": a}, {"a": -1, "b": 1})
    with pytest.raises(ValueError, match="every weight is 0"):
        mix({"a": a, "b": a}, {"a": 0, "b": 0})
    with pytest.raises(ValueError, match=r"names 'z', which is not a component"):
        mix({"a": a}, {"a": 1, "z": 2})
    with pytest.raises(ValueError, match=r"has no weight for 'b'"):
        mix({"a": a, "b": a}, {"a": 1})
    with pytest.raises(ValueError, match="a mixture needs steps_per_epoch"):
        Feeder(mix({"a": a, "b": a}), window=2)
    with pytest.raises(ValueError, match="padded batches"):
        Feeder(mix({"a": [a], "b": [a]}), window=None, steps_per_epoch=2, bucket=True)
    with pytest.raises(ValueError, match="component 'b' yields no sample"):
        Feeder(mix({"a": a, "b": a[:2]}), window=4, steps_per_epoch=2)
