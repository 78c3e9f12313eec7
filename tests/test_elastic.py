"""Elastic resume: a state saved with another world_size or batch_size goes on from the same
point of the epoch's order, over all ranks together: nothing repeated, nothing skipped beyond
the fewer-than-world_size leftovers."""

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed import Feeder, mix, reference

SERIES = [np.arange(0, 300, dtype=np.float32), np.arange(1000, 1200, dtype=np.float32)]
WINDOWS = (300 - 2) + (200 - 2)  # window 2 with horizon 1: span 3


def _feeders(world, batch, steps=None, **kw):
    return [
        Feeder(
            SERIES,
            window=2,
            horizon=1,
            batch_size=batch,
            shuffle=True,
            seed=4,
            rank=r,
            world_size=world,
            steps_per_epoch=steps,
            output="numpy",
            **kw,
        )
        for r in range(world)
    ]


def _take(feeder, count=None):
    out = []
    for i, b in enumerate(feeder):
        out.append(b.x[:, 0])
        if count is not None and i + 1 == count:
            break
    return out


@settings(max_examples=25, deadline=None)
@given(
    old=st.tuples(st.integers(1, 4), st.integers(1, 9)),
    new=st.tuples(st.integers(1, 4), st.integers(1, 9)),
    done=st.integers(1, 10),
    drop_last=st.booleans(),
)
def test_an_epoch_goes_on_over_all_ranks_with_other_world_and_batch_sizes(old, new, done, drop_last):
    old_feeders = _feeders(*old, drop_last=drop_last)
    done = min(done, len(old_feeders[0]) - 1)
    first = [_take(f, done) for f in old_feeders]
    states = [json.loads(json.dumps(f.state_dict())) for f in old_feeders]
    assert all(s["stream"] == states[0]["stream"] for s in states)  # every rank saves the same point
    new_feeders = _feeders(*new, drop_last=drop_last)
    for r, f in enumerate(new_feeders):
        f.load_state_dict(states[r % len(states)])
    rest = [_take(f) for f in new_feeders]
    assert len({len(r) for r in rest}) == 1  # every rank the same number of batches
    seen = Counter(np.concatenate([x for part in first + rest for x in part]).tolist())
    assert max(seen.values()) == 1
    offset = done * old[0] * old[1]
    assert states[0]["stream"] == {"pass": 0, "offset": offset, "origin": None}
    # The new ranks read exactly their shares of the rest of the pass, in the pass's order.
    order = reference.permutation(WINDOWS, 4, 0)
    starts = reference.window_starts([300, 200], 2, horizon=1)
    for r, part in enumerate(rest):
        positions = reference.resumed_share(WINDOWS, offset, r, new[0], drop_last, new[1])
        if drop_last:
            positions = positions[: len(positions) // new[1] * new[1]]
        want = [SERIES[s][t] for s, t in (starts[order[p]] for p in positions)]
        np.testing.assert_array_equal(np.concatenate(part) if part else [], want)
    assert WINDOWS - offset - sum(sum(len(x) for x in part) for part in rest) < new[0] * (new[1] if drop_last else 1)


def test_virtual_epochs_go_on_from_the_same_point_and_keep_their_length():
    old = _feeders(2, 8, steps=30)
    first = [_take(f, 21) for f in old]
    state = old[0].state_dict()
    assert state["stream"] == {"pass": 0, "offset": 2 * 8 * 21, "origin": None}
    new = _feeders(3, 5, steps=30)
    for f in new:
        f.load_state_dict(state)
    rest = [_take(f) for f in new]
    assert [len(r) for r in rest] == [9, 9, 9]  # the epoch's 30 batches: 21 before, 9 after
    seen = Counter(np.concatenate([x for part in first + rest for x in part]).tolist())
    assert max(seen.values()) == 1 and sum(seen.values()) == 336 + 135
    # A state saved after the resume, loaded with the same sizes, goes on exactly.
    again = _feeders(3, 5, steps=30)
    for f in again:
        f.load_state_dict(state)
    it = iter(again[1])
    next(it)
    saved = again[1].state_dict()
    follow = list(it)
    exact = _feeders(3, 5, steps=30)[1]
    exact.load_state_dict(saved)
    for a, b in zip(follow, exact):
        np.testing.assert_array_equal(a.x, b.x)


def test_mixtures_resume_elastically_on_the_same_stream():
    comps = {"a": np.arange(60.0), "b": np.arange(1000.0, 1200.0)}
    kw = dict(window=2, target_shift=1, steps_per_epoch=12, shuffle=True, seed=2, with_index=True, output="numpy")
    one = Feeder(mix(comps, {"a": 1, "b": 2}), batch_size=4, **kw)
    it = iter(one)
    taken = [next(it) for _ in range(5)]
    state = one.state_dict()
    assert state["mix"]["position"] == 20
    ranks = [Feeder(mix(comps, {"a": 1, "b": 2}), batch_size=3, rank=r, world_size=2, **kw) for r in range(2)]
    for f in ranks:
        f.load_state_dict(state)
    got = {}  # stream position -> (source, start)
    for r, f in enumerate(ranks):
        q = 0
        for b in f:
            for src, start in zip(b.source, b.start):
                got[20 + q * 2 + r] = (int(src), int(start))
                q += 1
    single = Feeder(mix(comps, {"a": 1, "b": 2}), batch_size=1, **{**kw, "steps_per_epoch": 20 + len(got)})
    stream = [(int(b.source[0]), int(b.start[0])) for b in single]
    assert [got[n] for n in sorted(got)] == stream[20 : 20 + len(got)]
    assert [(int(s), int(t)) for b in taken for s, t in zip(b.source, b.start)] == stream[:20]


def test_what_cannot_resume_elastically_is_refused():
    seqs = [np.arange(n, dtype=np.float32) for n in (3, 5, 2, 7)]
    f = Feeder(seqs, window=None, batch_size=2, pack=True, max_len=4)
    next(iter(f))
    with pytest.raises(ValueError, match=r"another batch_size \(saved 2, this feeder 3\)"):
        Feeder(seqs, window=None, batch_size=3, pack=True, max_len=4).load_state_dict(f.state_dict())
    g = _feeders(2, 4)[0]
    with pytest.raises(ValueError, match="window: saved 2, this feeder 3"):
        Feeder(SERIES, window=3, horizon=1, batch_size=4, shuffle=True, seed=4).load_state_dict(g.state_dict())


@pytest.mark.parametrize("old,new", [((3, 5), (2, 5)), ((2, 5), (3, 4)), ((3, 3), (4, 2)), ((1, 7), (3, 5))])
def test_virtual_epochs_resume_elastically_after_passes_end(old, new):
    # 115 windows, shuffled: each pass gives every rank 115 // world_size of them (the rest sit
    # it out), and passes end inside the run, before and after the resume.
    x = np.arange(117, dtype=np.float32)

    def make(world, batch, rank):
        return Feeder(
            x,
            window=3,
            batch_size=batch,
            shuffle=True,
            seed=11,
            steps_per_epoch=6,
            rank=rank,
            world_size=world,
            with_index=True,
            output="numpy",
        )

    olds = [make(*old, r) for r in range(old[0])]
    for f in olds:
        _take_batches(f, 6)  # epoch 0
        _take_batches(f, 2)  # and 2 batches of epoch 1
    states = [f.state_dict() for f in olds]
    assert all(s["stream"] == states[0]["stream"] for s in states)
    consumed = 8 * old[1]  # by each old rank
    per_old = 115 // old[0]
    point = {"pass": consumed // per_old, "offset": consumed % per_old * old[0], "origin": None}
    assert states[0]["stream"] == point
    news = [make(*new, r) for r in range(new[0])]
    for r, f in enumerate(news):
        f.load_state_dict(states[r % len(states)])
        rest = _take_batches(f, 6) + _take_batches(f, 6)  # the rest of epoch 1 (4 batches), then epoch 2
        assert len(rest) == 10
        got = np.concatenate([b.start for b in rest])
        want, pass_, offset = [], point["pass"], point["offset"]
        while len(want) < len(got):  # the rest of the resumed pass, then whole passes
            order = reference.permutation(115, 11, pass_)
            share = (115 - offset) // new[0]
            want += [int(order[offset + q * new[0] + r]) for q in range(share)]
            pass_, offset = pass_ + 1, 0
        np.testing.assert_array_equal(got, want[: len(got)])


def _take_batches(feeder, count):
    out = []
    for i, b in enumerate(feeder):
        out.append(b)
        if i + 1 == count:
            break
    return out
