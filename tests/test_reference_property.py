"""The backbone: the native core against fastfeed.reference on random configurations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastfeed import Feeder, reference
from fastfeed.dtypes import OUTPUT_DTYPES, SOURCE_DTYPES
from fastfeed.run import views

from helpers import assert_same_batches, collect, feeding_knobs

FEATS = [(), (1,), (3,), (2, 3)]


def make_values(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    # Small non-negative values with fractions survive every cast (float -> uint included)
    # without undefined behaviour, so any output dtype can be compared exactly.
    v = rng.integers(0, 100, size=shape).astype(np.float64)
    if dtype.startswith("float"):
        v += rng.integers(0, 4, size=shape) * 0.25
    return v.astype(dtype) if dtype != "bool" else v > 50


def draw_normalize(draw, rng, feat, out_dtype):
    """(normalize, output dtype): sometimes a random (mean, std), which needs a floating output."""
    if draw(st.integers(0, 4)) != 0:
        return None, out_dtype
    width = int(np.prod(feat, dtype=np.int64))
    normalize = (rng.normal(size=width).reshape(feat), rng.uniform(0.5, 2, size=width).reshape(feat))
    if out_dtype is not None and out_dtype not in ("float16", "float32", "float64", "bfloat16"):
        out_dtype = "float32"
    return normalize, out_dtype


@st.composite
def shares(draw):
    """Rank shares and virtual epochs, drawn rarely enough to leave most examples plain."""
    world = draw(st.sampled_from([1, 1, 2, 3]))
    return dict(
        rank=draw(st.integers(0, world - 1)),
        world_size=world,
        steps_per_epoch=draw(st.sampled_from([None, None, None, 1, 4, 11])),
    )


@st.composite
def configs(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    src_dtype = draw(st.sampled_from(SOURCE_DTYPES))
    feat = draw(st.sampled_from(FEATS))
    many = draw(st.booleans())
    window = draw(st.integers(1, 6))
    rate = draw(st.integers(1, 3))
    horizon = draw(st.integers(0, 3))
    span = (window - 1 + horizon) * rate + 1
    if many:
        lengths = [draw(st.integers(0, 40)) for _ in range(draw(st.integers(1, 4)))]
        lengths[draw(st.integers(0, len(lengths) - 1))] = draw(st.integers(span, span + 40))
    else:
        lengths = [draw(st.integers(span, span + 60))]
    series = [make_values(rng, (n,) + feat, src_dtype) for n in lengths]
    targets = None
    if horizon > 0 and draw(st.booleans()):  # separate targets; otherwise the source itself
        tdtype = draw(st.sampled_from(SOURCE_DTYPES))
        tfeat = draw(st.sampled_from(FEATS))
        targets = [make_values(rng, (n,) + tfeat, tdtype) for n in lengths]
    start_index, end_index = 0, None
    if not many and draw(st.booleans()):
        length = lengths[0]
        start_index = draw(st.integers(0, length - span))
        end_index = draw(st.integers(start_index + span, length))
    out_dtype = draw(st.sampled_from([None] + list(OUTPUT_DTYPES)))
    normalize, out_dtype = draw_normalize(draw, rng, feat, out_dtype)
    check_finite = False
    if draw(st.integers(0, 3)) == 0:  # NaN/Inf sprinkled over floating data, dropped by check_finite="skip"
        check_finite = "skip"
        for a in series + (targets or []):
            if a.dtype.kind == "f" and a.size:
                flat = a.reshape(-1)
                flat[rng.integers(0, flat.size, size=1 + flat.size // 40)] = rng.choice([np.nan, np.inf, -np.inf])
    src = series if many else series[0]
    tgt = None if targets is None else (targets if many else targets[0])
    return dict(
        source=src,
        targets=tgt,
        window=window,
        sampling_rate=rate,
        stride=draw(st.integers(1, 4)),
        horizon=horizon,
        start_index=start_index,
        end_index=end_index,
        batch_size=draw(st.integers(1, 7)),
        drop_last=draw(st.booleans()),
        shuffle=draw(st.booleans()),
        seed=draw(st.integers(0, 2**40)),
        dtype=out_dtype,
        normalize=normalize,
        check_finite=check_finite,
        **draw(shares()),
    ), dict(
        # None (the defaults, tuned while feeding) as often as not; the tuner deciding every
        # block or two, and blocks of a few batches, so that the workers and the tuner take part
        # in these small epochs (None: the Feeder's own block size, often the whole epoch).
        num_threads=draw(st.sampled_from([None, None, 1, 2, 3])),
        prefetch=draw(st.sampled_from([None, None, 1, 2, 4])),
        tune_window=draw(st.sampled_from([1, 2, 16])),
        block_batches=draw(st.sampled_from([None, 1, 2, 3])),
        epoch=draw(st.integers(0, 5)),
        chunk=draw(st.sampled_from([1, 2, 3, 7, views.CHUNK_BATCHES])),
        native_views=draw(st.booleans()),
    )


def run_both(cfg, run, output):
    blocks = run["block_batches"]
    with feeding_knobs(run["tune_window"], None if blocks is None else blocks * cfg["batch_size"]):
        compare(cfg, run, output)


def compare(cfg, run, output):
    ref_cfg = dict(cfg)
    try:
        want = reference.batches(**ref_cfg, epoch=run["epoch"])
    except (ZeroDivisionError, IndexError):  # a rank whose share is empty, or nothing left to feed
        want = []
    if len(want) == 0:
        with pytest.raises(ValueError):
            Feeder(**cfg, output=output, num_threads=run["num_threads"], prefetch=run["prefetch"])
        return
    f = Feeder(**cfg, output=output, num_threads=run["num_threads"], prefetch=run["prefetch"])
    f.set_epoch(run["epoch"])
    default_chunk, views.CHUNK_BATCHES = views.CHUNK_BATCHES, run["chunk"]  # views are made in chunks
    default_rows = views._row_views
    if output == "torch":  # torch's row views come from fastfeed._torch_views where built, else unbind()
        views._row_views = (run["native_views"] and views.native_row_views()) or views.unbound_rows
    try:
        got = collect(f)
    finally:
        views.CHUNK_BATCHES, views._row_views = default_chunk, default_rows
    assert len(got) == len(f)
    assert_same_batches(got, want)


@given(configs())
def test_core_matches_reference_numpy(c):
    cfg, run = c
    if cfg["dtype"] == "bfloat16":
        cfg["dtype"] = "float32"  # NumPy output has no bfloat16
    run_both(cfg, run, "numpy")


@given(configs())
def test_core_matches_reference_torch(c):
    pytest.importorskip("torch")
    cfg, run = c
    run_both(cfg, run, "torch")


@given(st.integers(0, 3000), st.integers(-(2**63), 2**64 - 1), st.integers(0, 2**64 - 1))
def test_permutation_is_a_bijection_and_matches_core(n, seed, epoch):
    from fastfeed import _core

    perm = reference.permutation(n, seed, epoch)
    assert sorted(perm.tolist()) == list(range(n))
    core = _core.permutation(n, seed % 2**64, epoch, np.arange(n, dtype=np.int64))
    np.testing.assert_array_equal(core, perm)


@given(st.integers(2**33, 10**12), st.integers(0, 2**32), st.integers(0, 100))
def test_permutation_of_huge_counts_matches_core_without_tables(n, seed, epoch):
    from fastfeed import _core

    positions = np.array([0, 1, n // 2, n - 1], dtype=np.int64)
    core = _core.permutation(n, seed, epoch, positions)
    want = reference.shuffled_positions(n, seed, epoch, positions)
    np.testing.assert_array_equal(core, want)
    assert ((core >= 0) & (core < n)).all()
    assert len(set(core.tolist())) == len(positions)


@given(st.integers(0, 2**32), st.sampled_from(["float16", "float32", "float64"]), st.sampled_from(FEATS))
def test_standard_normalization_matches_reference(seed, out_dtype, feat):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(50,) + feat) * 100 + 1000).astype(np.float32)
    f = Feeder(x, window=4, horizon=1, batch_size=8, normalize="standard", dtype=out_dtype, output="numpy")
    want = reference.batches(x, window=4, horizon=1, batch_size=8, normalize="standard", dtype=out_dtype)
    tol = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-9}[out_dtype]
    assert_same_batches(collect(f), want, exact=False, rtol=tol, atol=tol)
