"""The native core's forecasting fields against fastfeed.reference.window_batches on random
configurations: covariates, known, static, with_index, target_shift, per-series ranges,
per-field normalisation, per-window scaling and missing values, with shuffling, ranks,
virtual epochs and resuming; then a few exact edge cases."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fastfeed import Feeder, FeedError, reference

from helpers import bfloat16_values, feeding_knobs, to_numpy

SOURCE_DTYPES = ["float32", "float64", "int16", "uint8", "float16"]
SIDE_DTYPES = ["float32", "float64", "float16", "int16", "uint8", "int32"]  # integer covariates included
STATIC_DTYPES = ["float32", "float64", "int8", "uint8", "bool"]
FEATS = [(), (2,)]
MISSING = [np.nan, np.inf, -np.inf]
# Examples per property, in multiples of the profile's count (conftest.py: 60 by default, 1000
# with HYPOTHESIS_PROFILE=thorough); each example is a few milliseconds.
EXAMPLES = settings.default.max_examples


# ----- drawing configurations --------------------------------------------------------------


def make_values(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    # Small non-negative values with quarter fractions survive every cast exactly.
    v = rng.integers(0, 100, size=shape).astype(np.float64)
    if dtype.startswith("float"):
        v += rng.integers(0, 4, size=shape) * 0.25
    return v.astype(dtype) if dtype != "bool" else v > 50


def sprinkle(rng: np.random.Generator, arrays: List[np.ndarray]) -> None:
    """NaN/Inf at a few random places of the floating arrays."""
    for a in arrays:
        if a.dtype.kind == "f" and a.size:
            flat = a.reshape(-1)
            flat[rng.integers(0, flat.size, size=1 + flat.size // 80)] = rng.choice(MISSING)


def draw_pair(draw, rng, feat):
    """A user's (mean, std) for a field of feature shape `feat` (sometimes scalars, broadcast)."""
    shape = feat if draw(st.booleans()) else ()
    return rng.normal(size=shape) * 20 + 40, rng.uniform(0.5, 30, size=shape)


def draw_range(draw, lengths: List[int], many: bool):
    """(start_index, end_index). A single series: inside it (the Feeder refuses indices outside a
    single series, where the reference would clip them); a list: anything, past ends included."""
    if draw(st.booleans()):
        return 0, None
    if many:
        longest = max(lengths)
        start = draw(st.integers(-longest - 5, longest + 5))
        end = draw(st.one_of(st.none(), st.integers(-longest - 5, longest + 5)))
        return start, end
    n = lengths[0]
    start = draw(st.integers(-n, n - 1))
    end = draw(st.one_of(st.none(), st.integers(-n, n)))
    if end is not None:
        lo, hi = reference.series_range(n, start, end)
        if hi <= lo:  # an empty range of a single series is refused before the reference is asked
            end = None
    return start, end


@st.composite
def forecast_configs(draw, torch_output: bool = False):
    """(cfg, run): cfg holds the arguments the Feeder and the reference share; run the rest."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    many = draw(st.booleans())
    window = draw(st.integers(1, 5))
    rate = draw(st.integers(1, 3))
    shifted = draw(st.integers(0, 3)) == 0
    target_shift = draw(st.integers(1, 3)) if shifted else None
    horizon = None if shifted else draw(st.integers(0, 3))
    lead = target_shift if shifted else horizon
    span = (window - 1 + lead) * rate + 1
    if many:
        lengths = [draw(st.integers(0, 30)) for _ in range(draw(st.integers(1, 4)))]
        lengths[draw(st.integers(0, len(lengths) - 1))] = draw(st.integers(span, span + 30))
    else:
        lengths = [draw(st.integers(span, span + 40))]

    def aligned(dtype: str, feat) -> List[np.ndarray]:
        return [make_values(rng, (n,) + feat, dtype) for n in lengths]

    feat = draw(st.sampled_from(FEATS))
    series = aligned(draw(st.sampled_from(SOURCE_DTYPES)), feat)
    targets = None
    if lead > 0 and draw(st.integers(0, 4)) == 0:  # separate targets; otherwise the source itself
        targets = aligned(draw(st.sampled_from(SIDE_DTYPES)), draw(st.sampled_from(FEATS)))
    cov_feat, known_feat = draw(st.sampled_from(FEATS)), draw(st.sampled_from(FEATS))
    covariates = aligned(draw(st.sampled_from(SIDE_DTYPES)), cov_feat) if draw(st.booleans()) else None
    known = aligned(draw(st.sampled_from(SIDE_DTYPES)), known_feat) if draw(st.booleans()) else None
    static = None
    if draw(st.booleans()):
        static = make_values(rng, (len(lengths),) + draw(st.sampled_from(FEATS)), draw(st.sampled_from(STATIC_DTYPES)))

    start_index, end_index = draw_range(draw, lengths, many)

    # normalize: None, "standard", a pair for x, or a dict per field (sometimes naming a field
    # that is not given: both must refuse it).
    kind = draw(st.sampled_from(["none", "none", "standard", "pair", "dict"]))
    normalize: Any = None
    if kind == "standard":
        normalize = "standard"
    elif kind == "pair":
        normalize = draw_pair(draw, rng, feat)
    elif kind == "dict":
        normalize = {}
        for name, f, given_ in (
            ("x", feat, True),
            ("covariates", cov_feat, covariates is not None),
            ("known", known_feat, known is not None),
        ):
            how = draw(st.sampled_from([None, "absent", "standard", "pair"]))
            if how == "absent" or (not given_ and draw(st.integers(0, 5)) != 0):
                continue
            normalize[name] = {None: None, "standard": "standard", "pair": draw_pair(draw, rng, f)}.get(how)
    x_normalised = kind in ("standard", "pair") or (kind == "dict" and normalize.get("x") is not None)
    scale = None if x_normalised else draw(st.sampled_from([None, None, "mean", "standard"]))
    dtypes = [None, None, "float32", "float64"] + (["bfloat16"] if torch_output else [])
    dtype = draw(st.sampled_from(dtypes))

    check_finite: Any = draw(st.sampled_from([False, False, "skip", "mask", "raise"]))
    if draw(st.integers(0, 2)) == 0:  # missing values in every floating field
        sprinkle(rng, series + (targets or []) + (covariates or []) + (known or []))
        if static is not None:
            sprinkle(rng, [static])

    def as_given(field):
        return field if field is None or many else field[0]

    world = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cfg = dict(
        source=series if many else series[0],
        window=window,
        horizon=horizon,
        target_shift=target_shift,
        targets=as_given(targets),
        covariates=as_given(covariates),
        known=as_given(known),
        static=static,
        with_index=draw(st.booleans()),
        sampling_rate=rate,
        stride=draw(st.integers(1, 4)),
        start_index=start_index,
        end_index=end_index,
        batch_size=draw(st.integers(1, 6)),
        shuffle=draw(st.booleans()),
        seed=draw(st.integers(0, 2**64 - 1)),
        drop_last=draw(st.booleans()),
        dtype=dtype,
        normalize=normalize,
        scale=scale,
        check_finite=check_finite,
        rank=draw(st.integers(0, world - 1)),
        world_size=world,
        steps_per_epoch=draw(st.sampled_from([None, None, None, 1, 3, 7])),
    )
    run = dict(
        epoch=draw(st.integers(0, 3)),
        # None (the defaults, tuned while feeding) as often as not; the tuner deciding every
        # block or two, and blocks of a few batches, so that the workers and the tuner take part
        # in these small epochs (None: the Feeder's own block size, often the whole epoch).
        num_threads=draw(st.sampled_from([None, None, 1, 2, 3])),
        prefetch=draw(st.sampled_from([None, None, 1, 2, 3])),
        tune_window=draw(st.sampled_from([1, 2, 16])),
        block_batches=draw(st.sampled_from([None, 1, 2, 3])),
        resume_at=draw(st.one_of(st.none(), st.integers(0, 6))),
    )
    return cfg, run


# ----- running and comparing ---------------------------------------------------------------


def reference_epochs(cfg: Dict[str, Any], epochs) -> Optional[List[List[Dict[str, np.ndarray]]]]:
    """The reference's epochs, or None where it refuses the configuration (a ValueError, or a
    rank whose share is empty, which divides by zero with virtual epochs)."""
    try:
        return [reference.window_batches(**cfg, epoch=e) for e in epochs]
    except (ValueError, ZeroDivisionError):
        return None


def as_numpy(batch) -> Dict[str, np.ndarray]:
    """A batch's fields as NumPy copies (bfloat16 as uint16 bit patterns, as the reference has them)."""
    return {name: to_numpy(value).copy() for name, value in batch.as_dict().items()}


def take(feeder: Feeder) -> List[Dict[str, np.ndarray]]:
    """One epoch (the next iteration) of `feeder`."""
    return [as_numpy(b) for b in feeder]


def transformed_fields(cfg: Dict[str, Any]) -> set:
    """The fields whose values the reference computes in floating point (normalised or scaled):
    those are compared within a tolerance, every other field exactly."""
    given_ = ("x",) + tuple(n for n in ("covariates", "known") if cfg.get(n) is not None)
    out = set(reference.normalize_plan(cfg.get("normalize"), given_))
    if cfg.get("scale") is not None:
        out |= {"x", "scale", "loc"}
    if "x" in out and cfg.get("targets") is None:
        out.add("y")  # targets from the source share x's statistics or scale
    return out


def ordered_bits(bits: np.ndarray) -> np.ndarray:
    """16-bit float bit patterns (float16 or bfloat16) as integers in the order of their values,
    so that neighbouring values differ by one (+0 and -0 both 0)."""
    u = bits.view(np.uint16).astype(np.int64)
    mag = u & 0x7FFF
    return np.where(u >> 15, -mag, mag)


def assert_close_field(name: str, g: np.ndarray, w: np.ndarray, where: str) -> None:
    """A normalised or scaled field: float16 and bfloat16 (uint16 bit patterns) within one ulp,
    float32 within 1e-5 and float64 within 1e-6 (relative, or absolute near 0).

    Near 0 an ulp of a 16-bit float is tiny: (v - mean) / std with a mean one float64 rounding
    away from the reference's (a one-pass sum against NumPy's pairwise one) gives 1e-15 where the
    reference gives 0, thousands of ulps apart. So 16-bit values within 1e-6 of the reference's
    (far below an ulp of the O(1) values around them) pass too."""
    if g.dtype in (np.float16, np.uint16):
        gv = g.astype(np.float64) if g.dtype == np.float16 else bfloat16_values(g).astype(np.float64)
        wv = w.astype(np.float64) if w.dtype == np.float16 else bfloat16_values(w).astype(np.float64)
        np.testing.assert_array_equal(np.isnan(gv), np.isnan(wv), err_msg=f"{where}: {name} NaNs")
        ulps = np.abs(ordered_bits(g) - ordered_bits(w))
        with np.errstate(invalid="ignore"):  # inf - inf
            bad = ~np.isnan(gv) & (ulps > 1) & ~(np.abs(gv - wv) <= 1e-6)
        assert not bad.any(), f"{where}: {name} differs by {ulps[bad].max()} ulp\n{gv}\n{wv}"
        return
    tol = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-5}[g.dtype]
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{where}: {name}")


def assert_same_batches(got, want, close=frozenset(), where: str = "") -> None:
    """Feeder batches (dicts) against the reference's: the same fields, shapes and dtypes;
    values exactly equal, except the fields in `close` (normalised or scaled)."""
    assert len(got) == len(want), f"{where}: {len(got)} batches, reference has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        at = f"{where} batch {i}"
        assert sorted(g) == sorted(w), f"{at}: fields {sorted(g)} != {sorted(w)}"
        for name in w:
            assert g[name].shape == w[name].shape, f"{at}: {name} shape {g[name].shape} != {w[name].shape}"
            assert g[name].dtype == w[name].dtype, f"{at}: {name} dtype {g[name].dtype} != {w[name].dtype}"
            if name in close:  # always floating (bfloat16 as uint16 bits)
                assert_close_field(name, g[name], w[name], at)
            else:
                np.testing.assert_array_equal(g[name], w[name], err_msg=f"{at}: {name}")


def make(cfg: Dict[str, Any], run: Dict[str, Any], output: str, **over) -> Feeder:
    kw = dict(cfg, output=output, num_threads=run["num_threads"], prefetch=run["prefetch"])
    kw.update(over)
    return Feeder(**kw)


def other_setting(value: Optional[int]) -> Optional[int]:
    """A resumed Feeder's num_threads or prefetch: tuned where the first was given, and the other way round."""
    return 2 if value is None else None


def knobs(cfg: Dict[str, Any], run: Dict[str, Any]) -> Any:
    """The tuner's window and the block size `run` drew (see forecast_configs)."""
    blocks = run["block_batches"]
    return feeding_knobs(run["tune_window"], None if blocks is None else blocks * cfg["batch_size"])


def first_non_finite(batches) -> Optional[int]:
    """The first batch holding a NaN or Inf in any field, or None."""
    for i, b in enumerate(batches):  # (uint16 fields are bfloat16 bit patterns: no field draws uint16)
        if not all(reference.all_finite(bfloat16_values(v) if v.dtype == np.uint16 else v) for v in b.values()):
            return i
    return None


def check_raise(cfg, run, output) -> None:
    """check_finite='raise': the batches before the first one reading a NaN or Inf, then a
    FeedError at that batch (the reference raises a ValueError for the same epoch)."""
    epoch = run["epoch"]
    plain = reference_epochs(dict(cfg, check_finite=False), [epoch])
    if plain is None or not plain[0]:
        event("raise: refused")
        with pytest.raises(ValueError):
            make(cfg, run, output)
        return
    want = plain[0]
    bad = first_non_finite(want)
    event(f"raise: {'no NaN' if bad is None else 'FeedError'}")
    assert (reference_epochs(cfg, [epoch]) is None) == (bad is not None)  # the reference raises alike
    with make(cfg, run, output) as f:
        f.set_epoch(epoch)
        got = []
        if bad is None:
            got = take(f)
        else:
            with pytest.raises(FeedError, match=r"NaN|Inf|finite"):
                for b in f:
                    got.append(as_numpy(b))
            want = want[:bad]
    assert_same_batches(got, want, transformed_fields(cfg), "raise")


def check_against_reference(cfg: Dict[str, Any], run: Dict[str, Any], output: str) -> None:
    if cfg["check_finite"] == "raise":
        check_raise(cfg, run, output)
        return
    epoch = run["epoch"]
    want = reference_epochs(cfg, [epoch, epoch + 1])
    if want is None or not want[0]:  # refused, or no batch: the Feeder refuses too
        with pytest.raises(ValueError) as refused:
            make(cfg, run, output)
        event("refused: " + str(refused.value)[:40])
        return
    close = transformed_fields(cfg)
    event(f"compared, transformed: {sorted(close)}")
    f = make(cfg, run, output)
    assert len(f) == len(want[0])
    f.set_epoch(epoch)
    if run["resume_at"] is None:
        got = take(f)
        following = take(f)
    else:  # k batches, a state, a new Feeder: the rest of the epoch, then the next one
        stop = min(run["resume_at"], len(want[0]))
        it = iter(f)
        got = [as_numpy(next(it)) for _ in range(stop)]
        state = json.loads(json.dumps(f.state_dict()))
        del it
        f.close()
        f = make(
            cfg, run, output, num_threads=other_setting(run["num_threads"]), prefetch=other_setting(run["prefetch"])
        )
        f.load_state_dict(state)
        got += take(f) if stop < len(want[0]) else []
        following = take(f)
    assert_same_batches(got, want[0], close, f"epoch {epoch}")
    assert_same_batches(following, want[1], close, f"epoch {epoch + 1}")
    f.close()

    if cfg["normalize"] is None:
        assert f.normalization == {}
    else:
        stats = reference.normalization_stats(
            cfg["source"],
            cfg["normalize"],
            covariates=cfg["covariates"],
            known=cfg["known"],
            start_index=cfg["start_index"],
            end_index=cfg["end_index"],
            check_finite=cfg["check_finite"],
        )
        norm = f.normalization
        assert sorted(norm) == sorted(stats)
        for name, (mean, std) in stats.items():
            assert norm[name][0].dtype == norm[name][1].dtype == np.float64
            assert norm[name][0].shape == mean.shape and norm[name][1].shape == std.shape
            np.testing.assert_allclose(norm[name][0], mean, rtol=1e-9, atol=1e-9, err_msg=f"{name} mean")
            np.testing.assert_allclose(norm[name][1], std, rtol=1e-9, atol=1e-9, err_msg=f"{name} std")
        if norm:  # a validation feeder with these statistics gives the same batches, bit for bit
            with make(cfg, run, output, normalize=norm) as again:
                again.set_epoch(epoch)
                assert_same_batches(take(again), got, where="normalize=feeder.normalization")


# ----- properties --------------------------------------------------------------------------


@settings(max_examples=6 * EXAMPLES)
@given(forecast_configs())
def test_forecast_fields_match_reference_numpy(c):
    cfg, run = c
    with knobs(cfg, run):
        check_against_reference(cfg, run, "numpy")


@settings(max_examples=3 * EXAMPLES)
@given(forecast_configs(torch_output=True))
def test_forecast_fields_match_reference_torch(c):
    pytest.importorskip("torch")
    cfg, run = c
    with knobs(cfg, run):
        check_against_reference(cfg, run, "torch")


@settings(max_examples=2 * EXAMPLES)
@given(forecast_configs(), st.integers(2, 4))
def test_all_ranks_together_are_disjoint_with_equal_batch_counts(c, world):
    cfg, run = c
    cfg = dict(cfg, world_size=world, with_index=True)
    if cfg["check_finite"] == "raise":
        cfg["check_finite"] = "skip"
    epoch = run["epoch"]
    wants = [reference_epochs(dict(cfg, rank=r), [epoch]) for r in range(world)]
    if any(w is None or not w[0] for w in wants):  # some rank has no batch: every Feeder is refused
        for r, w in enumerate(wants):
            if w is None or not w[0]:
                with pytest.raises(ValueError):
                    make(cfg, run, "numpy", rank=r)
        return
    close = transformed_fields(cfg)
    counts, samples = set(), []
    for r in range(world):
        with knobs(cfg, run), make(cfg, run, "numpy", rank=r) as f:
            f.set_epoch(epoch)
            got = take(f)
            counts |= {len(f), len(got)}
        assert_same_batches(got, wants[r][0], close, f"rank {r}")
        samples += [(int(s), int(t)) for b in got for s, t in zip(b["series"], b["start"])]
    assert len(counts) == 1  # every rank the same number of batches
    if cfg["steps_per_epoch"] is None:  # one pass: shares are disjoint and lose fewer than world
        assert len(samples) == len(set(samples))
        everyone = reference.window_batches(**dict(cfg, rank=0, world_size=1, drop_last=False, steps_per_epoch=None))
        every = {(int(s), int(t)) for b in everyone for s, t in zip(b["series"], b["start"])}
        assert set(samples) <= every
        if not cfg["drop_last"]:
            assert len(every) - len(samples) < world


# ----- exact edge cases --------------------------------------------------------------------


def test_mask_of_a_nan_in_the_horizon_marks_only_that_target():
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    x[4, 1] = np.nan  # in the horizon of both windows (0..2 and 1..3), in neither's inputs
    kw = dict(window=3, horizon=2, batch_size=10, check_finite="mask")
    [b] = [as_numpy(b) for b in Feeder(x, **kw, output="numpy")]
    np.testing.assert_array_equal(b["x"], [x[0:3], x[1:4]])  # inputs untouched
    assert b["observed"].all() and b["observed"].shape == (2, 3, 2)
    want_y = np.array([x[3:5], x[4:6]])
    seen = np.isfinite(want_y)
    np.testing.assert_array_equal(b["y_observed"], seen)
    assert (~seen).sum() == 2  # the NaN is read by both windows' horizons
    np.testing.assert_array_equal(b["y"], np.where(seen, want_y, 0))
    assert sorted(b) == ["observed", "x", "y", "y_observed"]
    assert_same_batches([b], reference.window_batches(x, **kw))


def test_mask_of_a_nan_in_the_horizon_leaves_the_window_observed():
    x = np.arange(10, dtype=np.float32)
    x[5] = np.nan  # the last target of window 0..2 (targets 3..5), an input of later windows
    kw = dict(window=3, horizon=3, batch_size=1, with_index=True, check_finite="mask")
    [b] = [as_numpy(b) for b in Feeder(x, **kw, output="numpy")][:1]
    np.testing.assert_array_equal(b["x"], [[0, 1, 2]])
    np.testing.assert_array_equal(b["observed"], [[True, True, True]])
    np.testing.assert_array_equal(b["y"], [[3, 4, 0]])
    np.testing.assert_array_equal(b["y_observed"], [[True, True, False]])
    np.testing.assert_array_equal(b["start"], [0])


def test_a_series_too_short_for_its_range_yields_no_window():
    a = np.arange(20, dtype=np.int64)
    b = 100 + np.arange(5, dtype=np.int64)  # range [0, 5) of 5 steps: too short for a span of 6
    c = 200 + np.arange(9, dtype=np.int64)
    kw = dict(window=4, horizon=2, batch_size=64, start_index=-9, end_index=100, with_index=True)
    got = take(Feeder([a, b, c], **kw, output="numpy"))
    want = reference.window_batches([a, b, c], **kw)
    assert_same_batches(got, want)
    [batch] = got
    assert 1 not in batch["series"].tolist()
    np.testing.assert_array_equal(batch["series"], [0] * 4 + [2] * 4)
    np.testing.assert_array_equal(batch["start"], [11, 12, 13, 14, 0, 1, 2, 3])
    np.testing.assert_array_equal(batch["x"][0], [11, 12, 13, 14])
    np.testing.assert_array_equal(batch["y"][-1], [207, 208])
    # A series whose range is empty (start past its end) yields nothing either.
    got = take(Feeder([a, b], window=2, start_index=8, batch_size=64, with_index=True, output="numpy"))
    assert set(got[0]["series"].tolist()) == {0}


def test_scale_mean_of_an_all_zero_window_is_one():
    x = np.zeros((8, 2), dtype=np.float32)
    x[5:, 0] = [2, 4, 6]
    kw = dict(window=3, horizon=1, batch_size=16, scale="mean")
    [b] = take(Feeder(x, **kw, output="numpy"))
    assert b["scale"].dtype == np.float32 and b["scale"].shape == (5, 2)
    np.testing.assert_array_equal(b["scale"][0], [1, 1])  # all zero: scale 1, values stay 0
    np.testing.assert_array_equal(b["x"][0], np.zeros((3, 2)))
    np.testing.assert_array_equal(b["y"][0], np.zeros((1, 2)))
    np.testing.assert_array_equal(b["scale"][:, 1], np.ones(5))  # feature 1 is zero everywhere
    np.testing.assert_allclose(b["scale"][:, 0], [1, 1, 1, 2 / 3, 2], rtol=1e-6)  # mean |x| of steps t..t+2
    assert "loc" not in b
    assert_same_batches([b], reference.window_batches(x, **kw), close={"x", "y", "scale"})


def test_scale_with_normalize_on_x_is_refused_by_both():
    x = np.arange(40, dtype=np.float32)
    cov = np.arange(40, dtype=np.float32)
    for normalize in ("standard", (1.0, 2.0), {"x": "standard"}):
        kw = dict(window=3, covariates=cov, scale="mean", normalize=normalize)
        with pytest.raises(ValueError):
            reference.window_batches(x, **kw)
        with pytest.raises(ValueError, match="scale"):
            Feeder(x, **kw, output="numpy")
    kw = dict(window=3, horizon=1, covariates=cov, scale="standard", normalize={"covariates": "standard"})
    assert_same_batches(
        take(Feeder(x, **kw, batch_size=5, output="numpy")),
        reference.window_batches(x, **kw, batch_size=5),
        close={"x", "y", "covariates", "scale", "loc"},
    )
