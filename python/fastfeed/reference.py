"""The definition of correct output: a plain NumPy implementation of every Feeder option,
and (at the end) copies of the Keras algorithms that fastfeed.compat reproduces.

Slow and simple on purpose. Tests compare the native core with these functions; when the
two disagree, this file is right. It never imports the core.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

import numpy as np

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
ROUNDS = 6


# ----- shuffling: a keyed bijection over [0, n) ------------------------------------------


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (arithmetic wraps modulo 2**64)."""
    x = np.asarray(x, dtype=_U64)
    with np.errstate(over="ignore"):
        x = x + _U64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of samples in a shuffled epoch: element p is the sample at position p."""
    return shuffled_positions(n, seed, epoch, np.arange(n, dtype=np.int64))


def shuffled_positions(n: int, seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """The samples at `positions` of a shuffled epoch over n samples.

    A balanced Feistel network with ROUNDS rounds over the smallest power of four >= n,
    keyed by (seed, epoch), and cycle-walked back into [0, n).
    """
    positions = np.asarray(positions, dtype=np.int64)
    if n <= 1:
        return positions.copy()
    bits = 2
    while bits < 64 and (1 << bits) < n:
        bits += 1
    bits += bits & 1
    half = _U64(bits // 2)
    mask = _U64((1 << (bits // 2)) - 1)
    key = int(splitmix64(splitmix64(np.array([seed & _MASK64], _U64)) ^ _U64(epoch & _MASK64))[0])
    keys = [splitmix64(np.array([(key + i) & _MASK64], _U64))[0] for i in range(ROUNDS)]

    def encrypt(x: np.ndarray) -> np.ndarray:
        left, right = x >> half, x & mask
        for k in keys:
            left, right = right, left ^ (splitmix64(right ^ k) & mask)
        return (left << half) | right

    out = encrypt(positions.astype(_U64))
    outside = out >= _U64(n)
    while outside.any():  # cycle-walk the values that fell outside [0, n)
        out[outside] = encrypt(out[outside])
        outside = out >= _U64(n)
    return out.astype(np.int64)


# ----- windows -----------------------------------------------------------------------------


def series_range(length: int, start_index: int = 0, end_index: Optional[int] = None) -> Tuple[int, int]:
    """The steps [lo, hi) of a series of `length` steps that its windows may read.

    As in Python slicing: a negative index counts from the series' end (length + v), values
    are then clipped into [0, length], and end_index None is the length."""
    lo = start_index + length if start_index < 0 else start_index
    hi = length if end_index is None else (end_index + length if end_index < 0 else end_index)
    return min(max(lo, 0), length), min(max(hi, 0), length)


def window_starts(
    lengths: List[int],
    window: int,
    sampling_rate: int = 1,
    stride: int = 1,
    horizon: int = 0,
    start_index: int = 0,
    end_index: Optional[int] = None,
) -> List[Tuple[int, int]]:
    """(series, start) of every sample, series by series, start by start.

    A window starting at t exists iff t + (window - 1 + horizon) * sampling_rate <= hi - 1,
    where t = lo + k * stride and [lo, hi) = series_range(length, start_index, end_index).
    `horizon` is how far the sample reads past the window's last step, in steps of
    sampling_rate: the horizon, or the target shift."""
    out = []
    for s, length in enumerate(lengths):
        lo, hi = series_range(length, start_index, end_index)
        t = lo
        while t + (window - 1 + horizon) * sampling_rate <= hi - 1:
            out.append((s, t))
            t += stride
    return out


def input_steps(t: int, window: int, sampling_rate: int = 1) -> np.ndarray:
    """The steps a window starting at t reads for its inputs (and covariates): t + j*r, j < w."""
    return t + sampling_rate * np.arange(window, dtype=np.int64)


def target_steps(
    t: int, window: int, sampling_rate: int = 1, horizon: int = 0, target_shift: Optional[int] = None
) -> np.ndarray:
    """The target steps of the window starting at t: t + (w-1+j)*r, j = 1..horizon, or, with
    target_shift k, t + (j+k)*r, j = 0..w-1."""
    if target_shift is not None:
        return t + sampling_rate * (np.arange(window, dtype=np.int64) + target_shift)
    return t + sampling_rate * (window - 1 + np.arange(1, horizon + 1, dtype=np.int64))


def known_steps(t: int, window: int, sampling_rate: int = 1, lead: int = 0) -> np.ndarray:
    """The steps of `known` for the window starting at t: its own, then every step up to its
    last target (`lead` = the horizon or target shift): t + j*r, j = 0..w-1+lead."""
    return t + sampling_rate * np.arange(window + lead, dtype=np.int64)


# ----- dtype conversion and normalisation ----------------------------------------------

FLOATING = ("float16", "float32", "float64", "bfloat16")
NORMALIZED_FIELDS = ("x", "covariates", "known")  # the fields `normalize` may apply to


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """Values as bfloat16 bit patterns (uint16), rounded as PyTorch does: through float32,
    to nearest even, every NaN becoming 0x7fc0."""
    f = np.asarray(x).astype(np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(f), np.uint16(0x7FC0), rounded)


def convert(x: np.ndarray, dtype: str, mean: Any = None, std: Any = None) -> np.ndarray:
    """Casts like NumPy's astype; with (mean, std) standardises in float64 first.
    bfloat16 results come as uint16 bit patterns."""
    if mean is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            x = (x.astype(np.float64) - mean) / std
    if dtype == "bfloat16":
        return to_bfloat16_bits(x)
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(dtype)


def finite_mask(a: np.ndarray) -> np.ndarray:
    """True where a value is finite (integers and bools are always finite)."""
    a = np.asarray(a)
    return np.isfinite(a) if a.dtype.kind in "fc" else np.ones(a.shape, dtype=bool)


def all_finite(a: np.ndarray) -> bool:
    """No NaN or Inf (integers and bools are always finite)."""
    return bool(finite_mask(a).all())


def standard_stats(
    series: List[np.ndarray],
    start_index: int = 0,
    end_index: Optional[int] = None,
    *,
    field: str = "x",
    check_finite: Any = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-element (feature) mean and population std, in float64, over steps [lo_i, hi_i) of
    every series i (series_range), counting only the element's finite values.

    A std of 0 becomes 1; an element without any finite value gets mean 0 and std 1. Unless
    check_finite is "skip" or "mask", a non-finite value there is a ValueError naming `field`,
    the series and the step."""
    feat = np.asarray(series[0]).shape[1:]
    width = int(np.prod(feat, dtype=np.int64))
    parts = [np.zeros((0, width))]
    for i, s in enumerate(series):
        lo, hi = series_range(len(s), start_index, end_index)
        part = np.asarray(s[lo:hi])
        bad = ~finite_mask(part)
        if check_finite not in ("skip", "mask") and bad.any():
            where = tuple(int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"normalize='standard' on {field}: series {i} holds {part[where]} at step {lo + where[0]}"
                f"{' (element ' + str(where[1:]) + ')' if len(where) > 1 else ''}; "
                "check_finite='skip' or 'mask' computes the statistics from the finite values"
            )
        parts.append(part.astype(np.float64).reshape(len(part), width))
    steps = np.concatenate(parts)
    mean = np.zeros(steps.shape[1])
    std = np.ones(steps.shape[1])
    for e in range(steps.shape[1]):
        column = steps[:, e]
        column = column[np.isfinite(column)]
        if len(column):
            mean[e] = column.mean()
            std[e] = column.std()
    std = np.where(std > 0, std, 1.0)
    return mean.reshape(feat), std.reshape(feat)


def normalize_plan(normalize: Any, given: Tuple[str, ...] = ("x",)) -> Dict[str, Any]:
    """Which of the `given` fields `normalize` applies to, and how ("standard" or (mean, std)).

    None: none; "standard": every given field among x, covariates and known; a pair
    (mean, std): x only; a dict {"x" | "covariates" | "known": "standard" | (mean, std) | None}:
    the fields it names with a value other than None."""
    if normalize is None:
        return {}
    if isinstance(normalize, str):
        if normalize != "standard":
            raise ValueError(f"normalize must be 'standard', (mean, std) or a dict, got {normalize!r}")
        return {f: "standard" for f in NORMALIZED_FIELDS if f in given}
    if isinstance(normalize, dict):
        unknown = [k for k in normalize if k not in NORMALIZED_FIELDS]
        if unknown:
            raise ValueError(f"normalize: unknown field(s) {unknown}; the fields are {list(NORMALIZED_FIELDS)}")
        plan = {}
        for name, how in normalize.items():
            if how is None:
                continue
            if name not in given:
                raise ValueError(f"normalize names {name!r}, but {name}= is not given")
            if isinstance(how, str) and how != "standard":
                raise ValueError(f"normalize[{name!r}] must be 'standard' or (mean, std), got {how!r}")
            plan[name] = how
        return plan
    return {"x": normalize}


def field_stats(
    series: List[np.ndarray],
    how: Any,
    start_index: int = 0,
    end_index: Optional[int] = None,
    field: str = "x",
    check_finite: Any = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """(mean, std) of one field, float64 in its feature shape: standard_stats for "standard",
    or a user's (mean, std) broadcast to the feature shape."""
    if isinstance(how, str):
        return standard_stats(series, start_index, end_index, field=field, check_finite=check_finite)
    feat = np.asarray(series[0]).shape[1:]
    return (
        np.broadcast_to(np.asarray(how[0], np.float64), feat),
        np.broadcast_to(np.asarray(how[1], np.float64), feat),
    )


def normalization_stats(
    source: Any,
    normalize: Any,
    *,
    covariates: Any = None,
    known: Any = None,
    start_index: int = 0,
    end_index: Optional[int] = None,
    check_finite: Any = False,
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """(mean, std) per normalised field ("x", "covariates", "known"), float64 arrays in the
    field's feature shape: what a Feeder with these arguments reports as `normalization`.

    Fields are given as window_batches takes them (an array, or a list for a list source)."""
    single = not isinstance(source, (list, tuple))
    fields = {"x": _series_of(source, single)}
    if covariates is not None:
        fields["covariates"] = _series_of(covariates, single)
    if known is not None:
        fields["known"] = _series_of(known, single)
    plan = normalize_plan(normalize, tuple(fields))
    return {
        name: field_stats(fields[name], how, start_index, end_index, name, check_finite) for name, how in plan.items()
    }


def window_scale(x: np.ndarray, how: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(scale, loc) per window and feature of windows x (B, w, *feat), float64 (B, *feat), over
    each window's finite values: "mean": scale = mean |v| and loc None; "standard": loc = mean,
    scale = population std. A scale of 0 becomes 1 (loc stays the mean); a window and feature
    without any finite value gets scale 1 (and loc 0)."""
    v = np.asarray(x).astype(np.float64)
    ok = finite_mask(x)
    n = ok.sum(axis=1)
    counted = np.maximum(n, 1)
    with np.errstate(invalid="ignore"):
        if how == "mean":
            scale = np.where(ok, np.abs(v), 0.0).sum(axis=1) / counted
            loc = None
        else:
            loc = np.where(ok, v, 0.0).sum(axis=1) / counted
            scale = np.sqrt(np.where(ok, (v - loc[:, None]) ** 2, 0.0).sum(axis=1) / counted)
    return np.where((scale > 0) & (n > 0), scale, 1.0), loc


# ----- ranks and virtual epochs ------------------------------------------------------------


def rank_share(n: int, rank: int = 0, world_size: int = 1, drop_last: bool = False, unit: int = 1) -> List[int]:
    """Which positions of a pass (of n items) a rank reads, in order: rank, rank + world, ...
    Shares are disjoint and give every rank the same number of batches of `unit` items (the
    batch size). The n % world_size items left over go one each to the first ranks when that
    only lengthens their last batch, and are left out otherwise (always with drop_last)."""
    even = n // world_size
    rest_fits = not drop_last and even % unit != 0
    count = even + (1 if rest_fits and rank < n % world_size else 0)
    return [q * world_size + rank for q in range(count)]


def resumed_share(
    n: int, offset: int, rank: int = 0, world_size: int = 1, drop_last: bool = False, unit: int = 1
) -> List[int]:
    """Elastic resume: the positions of a pass a rank reads after positions [0, offset) were read
    by another configuration: its share (rank_share) of the rest, from `offset` on."""
    return [offset + q for q in rank_share(max(0, n - offset), rank, world_size, drop_last, unit)]


def epoch_stream(epoch: int, per_rank: int, count: int, steps: Optional[int]) -> List[Tuple[int, int]]:
    """(pass, index in the rank's share) of the `count` items of an epoch. Without virtual
    epochs (steps None) the epoch is the pass; with them the items run on across passes."""
    if steps is None:
        return [(epoch, i) for i in range(count)]
    first = epoch * count
    return [((first + i) // per_rank, (first + i) % per_rank) for i in range(count)]


# ----- whole epochs of windows -------------------------------------------------------------


def window_batches(
    source: Any,
    *,
    window: int,
    horizon: Optional[int] = None,
    targets: Any = None,
    target_shift: Optional[int] = None,
    covariates: Any = None,
    known: Any = None,
    static: Any = None,
    with_index: bool = False,
    sampling_rate: int = 1,
    stride: int = 1,
    start_index: int = 0,
    end_index: Optional[int] = None,
    batch_size: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    dtype: Optional[str] = None,
    normalize: Any = None,
    scale: Optional[str] = None,
    rank: int = 0,
    world_size: int = 1,
    steps_per_epoch: Optional[int] = None,
    check_finite: Any = False,
) -> List[Dict[str, np.ndarray]]:
    """Every batch of one epoch of windows, as a dict of the fields that are set: what a Feeder
    with the same arguments yields (`batch.as_dict()`). `dtype` is a dtype name ("float32",
    "bfloat16", ...); bfloat16 values come as uint16 bit patterns.

    Fields: "x" always; "y" with targets; "covariates", "known", "static"; "series" and "start"
    with `with_index`; "scale" (and "loc") with `scale`; "observed" (and "y_observed") with
    check_finite="mask". `source` is an array (T, *feat) (or a .npy path) or a list of them;
    `targets`, `covariates` and `known` are aligned step for step with it; `static` holds one
    row per series."""
    if check_finite not in (False, True, "raise", "skip", "mask"):
        raise ValueError(f"check_finite must be False, 'raise', 'skip' or 'mask', got {check_finite!r}")
    if scale not in (None, "mean", "standard"):
        raise ValueError(f"scale must be None, 'mean' or 'standard', got {scale!r}")
    single = not isinstance(source, (list, tuple))
    series = _series_of(source, single)
    target_series = series if targets is None else _series_of(targets, single)
    fields = {"x": series}  # the fields read step for step, as lists of series
    if covariates is not None:
        fields["covariates"] = _series_of(covariates, single)
    if known is not None:
        fields["known"] = _series_of(known, single)
    static_rows = None if static is None else np.asarray(static)

    horizon, lead = _reach(horizon, target_shift, targets is not None)
    has_y = lead > 0

    plan = normalize_plan(normalize, tuple(fields))
    if scale is not None and "x" in plan:
        raise ValueError("scale and normalize on x exclude each other: normalize x, or scale each window")
    stats = {
        name: field_stats(fields[name], how, start_index, end_index, name, check_finite) for name, how in plan.items()
    }
    x_dtype, y_dtype = _output_dtypes(  # scaled values, like standardised ones, need a floating type
        series[0].dtype.name,
        dtype,
        stats.get("x", scale),
        None if targets is None else target_series[0].dtype.name,
    )
    y_stats = stats.get("x") if targets is None else None  # targets from the source share x's statistics
    dtypes = {name: _field_dtype(fields[name][0].dtype.name, dtype, name in stats) for name in fields}
    dtypes["x"] = x_dtype
    if static_rows is not None:
        dtypes["static"] = _field_dtype(static_rows.dtype.name, dtype, False)

    def reads(s: int, t: int) -> Dict[str, np.ndarray]:
        """The source values the sample (s, t) reads, per field."""
        steps = input_steps(t, window, sampling_rate)
        out = {"x": series[s][steps]}
        if has_y:
            out["y"] = target_series[s][target_steps(t, window, sampling_rate, horizon, target_shift)]
        if "covariates" in fields:
            out["covariates"] = fields["covariates"][s][steps]
        if "known" in fields:
            out["known"] = fields["known"][s][known_steps(t, window, sampling_rate, lead)]
        if static_rows is not None:
            out["static"] = static_rows[s]
        return out

    starts = window_starts([len(s) for s in series], window, sampling_rate, stride, lead, start_index, end_index)
    if check_finite == "skip":  # drop the samples that read a NaN or Inf in any field
        starts = [(s, t) for s, t in starts if all(all_finite(v) for v in reads(s, t).values())]
    if steps_per_epoch is None:
        share = rank_share(len(starts), rank, world_size, drop_last, unit=batch_size)
    else:  # virtual epochs: every rank streams through an equal share of each pass
        share = [q * world_size + rank for q in range(len(starts) // world_size)]
    per_rank = len(share)
    if steps_per_epoch is None:
        count = per_rank // batch_size * batch_size if drop_last else per_rank
    else:
        count = steps_per_epoch * batch_size
    stream = epoch_stream(epoch, per_rank, count, steps_per_epoch)

    orders = {}

    def sample_at(pass_: int, q: int) -> int:
        if pass_ not in orders:
            orders[pass_] = permutation(len(starts), seed, pass_) if shuffle else np.arange(len(starts))
        return int(orders[pass_][share[q]])

    out = []
    for b in range(0, count, batch_size):
        samples = [starts[sample_at(pass_, q)] for pass_, q in stream[b : b + batch_size]]
        read = [reads(s, t) for s, t in samples]
        raw = {name: np.stack([r[name] for r in read]) for name in read[0]}
        if check_finite in (True, "raise"):
            _refuse_non_finite(raw, samples)
        out.append(
            _window_batch(
                raw, samples, dtypes, y_dtype, stats, y_stats, targets is None, scale, check_finite, with_index
            )
        )
    return out


def _window_batch(
    raw: Dict[str, np.ndarray],
    samples: List[Tuple[int, int]],
    dtypes: Dict[str, str],
    y_dtype: str,
    stats: Dict[str, Tuple[np.ndarray, np.ndarray]],
    y_stats: Optional[Tuple[np.ndarray, np.ndarray]],
    y_from_source: bool,
    scale: Optional[str],
    check_finite: Any,
    with_index: bool,
) -> Dict[str, np.ndarray]:
    """One batch's fields from the source values its samples read (`raw`, per field)."""
    batch: Dict[str, np.ndarray] = {}
    if scale is not None:  # per window and feature, from the window's own inputs
        window_sc, window_loc = window_scale(raw["x"], scale)
        loc = np.zeros_like(window_sc) if window_loc is None else window_loc
        batch["x"] = convert(raw["x"], dtypes["x"], loc[:, None], window_sc[:, None])
        if "y" in raw:
            batch["y"] = (
                convert(raw["y"], y_dtype, loc[:, None], window_sc[:, None])
                if y_from_source
                else convert(raw["y"], y_dtype)
            )
    else:
        batch["x"] = convert(raw["x"], dtypes["x"], *stats.get("x", (None, None)))
        if "y" in raw:
            batch["y"] = convert(raw["y"], y_dtype, *(y_stats or (None, None)))
    for name in ("covariates", "known", "static"):
        if name in raw:
            batch[name] = convert(raw[name], dtypes[name], *stats.get(name, (None, None)))
    if check_finite == "mask":  # non-finite source values become 0, and are marked unobserved
        for name in ("x", "y", "covariates", "known", "static"):
            if name in raw:
                batch[name][~finite_mask(raw[name])] = 0
        batch["observed"] = finite_mask(raw["x"])
        if "y" in raw:
            batch["y_observed"] = finite_mask(raw["y"])
    if with_index:
        batch["series"] = np.array([s for s, _ in samples], dtype=np.int64)
        batch["start"] = np.array([t for _, t in samples], dtype=np.int64)
    if scale is not None:
        batch["scale"] = window_sc.astype(np.float32)
        if window_loc is not None:
            batch["loc"] = window_loc.astype(np.float32)
    return batch


def _refuse_non_finite(raw: Dict[str, np.ndarray], samples: List[Tuple[int, int]]) -> None:
    """check_finite="raise": a ValueError naming the field and sample of the first NaN or Inf."""
    for name, values in raw.items():
        bad = ~finite_mask(values)
        if bad.any():
            s, t = samples[int(np.argwhere(bad)[0][0])]
            raise ValueError(f"check_finite='raise': {name} of the window at series {s}, start {t} holds a NaN or Inf")


def batches(
    source: Any,
    *,
    window: int,
    horizon: Optional[int] = None,
    targets: Any = None,
    sampling_rate: int = 1,
    stride: int = 1,
    start_index: int = 0,
    end_index: Optional[int] = None,
    batch_size: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    dtype: Optional[str] = None,
    normalize: Any = None,
    rank: int = 0,
    world_size: int = 1,
    steps_per_epoch: Optional[int] = None,
    check_finite: Any = False,
) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Every batch of one epoch as (x, y) NumPy arrays (y None without targets): window_batches'
    x and y fields."""
    made = window_batches(
        source,
        window=window,
        horizon=horizon,
        targets=targets,
        sampling_rate=sampling_rate,
        stride=stride,
        start_index=start_index,
        end_index=end_index,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        drop_last=drop_last,
        dtype=dtype,
        normalize=normalize,
        rank=rank,
        world_size=world_size,
        steps_per_epoch=steps_per_epoch,
        check_finite=check_finite,
    )
    return [(d["x"], d.get("y")) for d in made]


def _series_of(field: Any, single: bool) -> List[np.ndarray]:
    """A field as a list of series: [the array] for a single-series source (a str is a .npy
    path, memory-mapped), else the list's arrays."""
    items = [field] if single else list(field)
    return [np.load(a, mmap_mode="r") if isinstance(a, str) else np.asarray(a) for a in items]


def _reach(horizon: Optional[int], target_shift: Optional[int], has_targets: bool) -> Tuple[int, int]:
    """(horizon, lead): the horizon (0 without one) and how many steps of sampling_rate past a
    window's last step a sample reads (the horizon, or the target shift)."""
    if target_shift is not None:
        if horizon:
            raise ValueError("target_shift replaces horizon: pass one of them")
        if target_shift < 1:
            raise ValueError(f"target_shift must be >= 1, got {target_shift}")
        return 0, target_shift
    h = (1 if has_targets else 0) if horizon is None else horizon
    return h, h


def _output_dtypes(src: str, dtype: Optional[str], normalize: Any, target: Optional[str]) -> Tuple[str, str]:
    """(x dtype, y dtype): `normalize` is what applies to x (None for nothing); `target` the
    dtype of explicit targets (None when the targets are the source)."""
    x_dtype = dtype or ("float32" if normalize is not None and src not in FLOATING else src)
    if target is None:
        return x_dtype, x_dtype
    return x_dtype, (x_dtype if dtype is not None and target in FLOATING and x_dtype in FLOATING else target)


def _field_dtype(src: str, dtype: Optional[str], normalized: bool) -> str:
    """The output dtype of covariates, known or static: a normalised field is `dtype`, else its
    source's dtype when floating, else float32; any other follows `dtype` only when floating."""
    if normalized:
        return dtype or (src if src in FLOATING else "float32")
    return dtype if dtype is not None and src in FLOATING else src


def _normalization(
    series: List[np.ndarray],
    normalize: Any,
    start_index: int = 0,
    end_index: Optional[int] = None,
    check_finite: Any = False,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(mean, std) of the inputs `series` under `normalize`, or (None, None)."""
    how = normalize_plan(normalize).get("x")
    if how is None:
        return None, None
    return field_stats(series, how, start_index, end_index, "x", check_finite)


# ----- mixtures ------------------------------------------------------------------------------


def mixture_key(seed: int, name: str) -> int:
    """A component's shuffle key: the seed mixed with the first 8 bytes (little-endian) of the
    BLAKE2b hash of its name."""
    import hashlib

    return seed ^ int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def mixture_picks(weights: List[float], start: int, stop: int, origin: int = 0) -> List[Tuple[int, int]]:
    """(component, its count before) of each stream position in [start, stop): position n gives
    the (n - origin + 1)-th seat by Balinski and Young's quota method: among the components
    whose count is below their quota seats * w / sum(w), the one with the largest w / (count + 1),
    the first on a tie."""
    total = 0.0
    for w in weights:
        total += w
    counts = [0] * len(weights)
    out = []
    for n in range(origin, stop):
        seats = n - origin + 1
        best, best_score = -1, -1.0
        for i, w in enumerate(weights):
            if w > 0 and counts[i] < float(seats) * w / total and w / (counts[i] + 1) > best_score:
                best, best_score = i, w / (counts[i] + 1)
        if n >= start:
            out.append((best, counts[best]))
        counts[best] += 1
    return out


def mixture_items(
    weights: List[float],
    sizes: List[int],
    keys: List[int],
    shuffle: bool,
    positions: List[int],
    origin: int = 0,
    base: Optional[List[int]] = None,
) -> List[Tuple[int, int]]:
    """(component, item within it) at each of the stream positions (increasing): component c's
    k-th item (k counted from `base`) is position k % size of its pass k // size, shuffled by
    its key."""
    base = base or [0] * len(weights)
    picks = mixture_picks(weights, positions[0], positions[-1] + 1, origin) if positions else []
    out = []
    for n in positions:
        c, count = picks[n - positions[0]]
        k = base[c] + count
        pass_, index = divmod(k, sizes[c])
        local = int(shuffled_positions(sizes[c], keys[c], pass_, np.array([index]))[0]) if shuffle else index
        out.append((c, local))
    return out


def mixed_batches(
    components: Dict[str, Any],
    weights: Optional[Dict[str, float]] = None,
    *,
    window: Optional[int],
    batch_size: int,
    steps_per_epoch: int,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = False,
    rank: int = 0,
    world_size: int = 1,
    with_index: bool = False,
    origin: int = 0,
    base: Optional[List[int]] = None,
    first_batch: int = 0,
    **options: Any,
) -> List[Dict[str, np.ndarray]]:
    """Every batch of one epoch of a Feeder over fastfeed.mix(components, weights): rank r reads
    the mixture's stream positions r, r + world_size, ...; `options` are the Feeder's other
    sample options (window ones with `window`, padding ones without). Components are read in
    their own shuffled orders whatever `shuffle` says. With `with_index`,
    "series" counts within the component and "source" names it by its place in `components`.
    `origin` and `base`: where the weights took effect (a state loaded with other weights) and
    each component's items read before it; `first_batch`: the epoch's batches start there."""
    names = list(components)
    w = [float((weights or {}).get(n, 1.0)) for n in names]
    parts = [_series_of(components[n], not isinstance(components[n], (list, tuple))) for n in names]
    joint = [s for part in parts for s in part]
    first_series = np.cumsum([0] + [len(p) for p in parts])
    if window is not None:  # every sample of the joint list, in order: one dict each
        singles = window_batches(joint, window=window, batch_size=1, with_index=True, **options)
        by_series = np.array([int(b["series"][0]) for b in singles])
        firsts = np.searchsorted(by_series, first_series)
    else:
        firsts = first_series
    sizes = [int(firsts[i + 1] - firsts[i]) for i in range(len(names))]
    keys = [mixture_key(seed, n) for n in names]
    first_q = epoch * steps_per_epoch * batch_size
    positions = [
        (first_q + q) * world_size + rank for q in range(first_batch * batch_size, steps_per_epoch * batch_size)
    ]
    items = mixture_items(w, sizes, keys, True, positions, origin, base)  # components always shuffle
    if window is None:
        stats = _normalization(joint, options.pop("normalize", None), check_finite=options.get("check_finite", False))
    out = []
    for b in range(0, len(items), batch_size):
        chosen = items[b : b + batch_size]
        if window is not None:
            picked = [singles[int(firsts[c]) + local] for c, local in chosen]
            batch = {k: np.concatenate([p[k] for p in picked]) for k in picked[0] if picked[0][k] is not None}
            if not with_index:
                batch.pop("series")
                batch.pop("start")
        else:
            seqs = [joint[int(firsts[c]) + local] for c, local in chosen]
            normalize = None if stats[0] is None else stats
            batch = sequence_batches(seqs, batch_size=len(seqs), normalize=normalize, **options)[0]
            batch = {k: v for k, v in batch.items() if v is not None}
            if with_index:
                batch["series"] = np.array([int(firsts[c]) + local for c, local in chosen], np.int64)
                batch["start"] = np.zeros(len(chosen), np.int64)
        if with_index:
            components_of = np.array([c for c, _ in chosen], np.int64)
            batch["series"] = batch["series"] - first_series[components_of]
            batch["source"] = components_of
        out.append(batch)
    return out


# ----- whole sequences ---------------------------------------------------------------------

BATCH_ORDER_SALT = 0x9E3779B97F4A7C15  # keys the shuffle of bucketed batches apart from the sequences'


def sequence_order(n: int, shuffle: bool, seed: int, pass_: int) -> np.ndarray:
    return permutation(n, seed, pass_) if shuffle else np.arange(n)


def padded_plan(
    lengths: List[int],
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    pass_: int = 0,
    drop_last: bool = False,
    bucket: bool = False,
    bucket_pool: int = 64,
    rank: int = 0,
    world_size: int = 1,
    keep_short: bool = False,
    offset: int = 0,
    reads: Sequence[Tuple[int, int, int]] = (),
) -> List[List[int]]:
    """A rank's batches (lists of sequence numbers) of one pass of padded whole sequences.

    The rank's share of the pass's order (rank_share; resumed_share of the rest from `offset`
    on, after an elastic resume) is cut into batches (plain), or cut into pools of `bucket_pool`
    batches, each pool sorted by length (stable), cut into batches, and the batches shuffled
    (whatever `shuffle` says) with a permutation keyed by seed ^ BATCH_ORDER_SALT. drop_last
    drops a short last batch, unless `keep_short` (virtual epochs stream every item).

    Bucketed batches resumed elastically: `reads` lists the configurations (world_size,
    batch_size, batches each rank read) that read part of the pass, in turn; the share is then
    taken from the sequences they left (unread_sequences), in the pass's order."""
    everyone = [int(i) for i in sequence_order(len(lengths), shuffle, seed, pass_)]
    if reads:
        everyone = unread_sequences(lengths, everyone, reads, seed, pass_, drop_last, bucket_pool)
        offset = 0
    share = resumed_share(len(everyone), offset, rank, world_size, drop_last, unit=batch_size)
    order = [everyone[q] for q in share]
    if bucket:
        return bucketed_batches(order, lengths, batch_size, seed, pass_, drop_last, bucket_pool)
    cut = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if drop_last and not keep_short and cut and len(cut[-1]) < batch_size:
        cut.pop()
    return cut


def bucketed_batches(
    share: List[int], lengths: List[int], batch_size: int, seed: int, pass_: int, drop_last: bool, bucket_pool: int
) -> List[List[int]]:
    """A rank's share cut into bucketed batches: pools of bucket_pool * batch_size sequences
    sorted by length (stable), cut into batches (drop_last drops a short last one), the batches
    shuffled by a permutation keyed by seed ^ BATCH_ORDER_SALT and the pass."""
    pool = bucket_pool * batch_size
    order = [i for s in range(0, len(share), pool) for i in sorted(share[s : s + pool], key=lambda i: lengths[i])]
    cut = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if drop_last and cut and len(cut[-1]) < batch_size:
        cut.pop()
    perm = permutation(len(cut), seed ^ BATCH_ORDER_SALT, pass_)
    return [cut[int(c)] for c in perm]


def unread_sequences(
    lengths: List[int],
    everyone: List[int],
    reads: Sequence[Tuple[int, int, int]],
    seed: int,
    pass_: int,
    drop_last: bool,
    bucket_pool: int,
) -> List[int]:
    """The sequences of a pass (its order: `everyone`) that no rank of the bucketed
    configurations `reads` read. Each (world_size, batch_size, k) read, on every rank, the first
    k bucketed batches of its share of what the configurations before it left."""
    left = list(everyone)
    for world_size, batch_size, k in reads:
        read: set = set()
        for rank in range(world_size):
            share = [left[q] for q in rank_share(len(left), rank, world_size, drop_last, unit=batch_size)]
            batches = bucketed_batches(share, lengths, batch_size, seed, pass_, drop_last, bucket_pool)
            if k > len(batches):
                raise ValueError(
                    f"rank {rank} of {world_size} has {len(batches)} bucketed batches of pass {pass_}, not {k}"
                )
            read.update(i for b in batches[:k] for i in b)
        left = [i for i in left if i not in read]
    return left


def packed_plan(
    lengths: List[int],
    max_len: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    pass_: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    keep_short: bool = False,
    offset: int = 0,
) -> List[List[List[Tuple[int, int, int]]]]:
    """A rank's batches of one pass of packed sequences: rows of pieces (sequence, first step, steps).

    The pass's sequences are laid back to back and the stream is cut into rows of max_len steps
    (a sequence reaching the end of a row continues at the start of the next one); the rank's
    share of those rows (rank_share; resumed_share of the rows from `offset` on, after an
    elastic resume) is cut into batches. drop_last drops a short last batch, unless `keep_short`."""
    rows = packed_rows(lengths, max_len, shuffle, seed, pass_)
    rows = [rows[q] for q in resumed_share(len(rows), offset, rank, world_size, drop_last, unit=batch_size)]
    out = [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    if drop_last and not keep_short and out and len(out[-1]) < batch_size:
        out.pop()
    return out


def packed_rows(
    lengths: List[int], max_len: int, shuffle: bool = False, seed: int = 0, pass_: int = 0
) -> List[List[Tuple[int, int, int]]]:
    """Every row of one pass of back-to-back packed sequences (all ranks'), in the pass's order:
    they depend on the pass's order and max_len alone, not on batch_size or world_size."""
    pieces = [(int(i), 0, lengths[i]) for i in sequence_order(len(lengths), shuffle, seed, pass_) if lengths[i] > 0]
    rows: List[List[Tuple[int, int, int]]] = [[]]
    room = max_len
    for seq, first, count in pieces:
        while count > 0:
            if room == 0:
                rows.append([])
                room = max_len
            take = min(count, room)
            rows[-1].append((seq, first, take))
            first, count, room = first + take, count - take, room - take
    if not rows[-1]:
        rows.pop()
    return rows


def token_plan(
    lengths: List[int],
    batch_tokens: int,
    max_len: Optional[int] = None,
    pad_multiple: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    pass_: int = 0,
    drop_last: bool = False,
    bucket: bool = False,
    bucket_pool: int = 64,
    rank: int = 0,
    world_size: int = 1,
    offset: int = 0,
) -> List[List[int]]:
    """A rank's batches of one pass of padded whole sequences cut by a budget of padded steps.

    A batch is padded to its longest sequence (at most max_len) rounded up to pad_multiple, or to
    max_len, and counts as one step long when that is 0. The pass's order is cut greedily: each
    batch takes the next sequences while rows * padded length <= batch_tokens (at least one).
    With `bucket`, the order is first split into pools of consecutive sequences, each taking the
    next while the sum of their lengths padded alone stays <= bucket_pool * batch_tokens (at least
    one); each pool is sorted by length (stable) and cut, and the batches are shuffled (whatever
    `shuffle` says) with a permutation keyed by seed ^ BATCH_ORDER_SALT. drop_last drops the last
    batch cut (before that shuffle). Rank r takes batches r, r + world_size, ... of the
    world_size * (K // world_size) first of the K batches: the rest are in no rank's share. The
    cut depends on batch_tokens alone, not on world_size: after an elastic resume at batch
    `offset` of the pass, rank r takes batches offset + r, offset + r + world_size, ..."""

    def kept(i: int) -> int:
        return lengths[i] if max_len is None else min(lengths[i], max_len)

    def padded(longest: int) -> int:
        return max(1, max_len if max_len is not None else -(-longest // pad_multiple) * pad_multiple)

    def cut(seqs: List[int]) -> List[List[int]]:
        out: List[List[int]] = []
        for i in seqs:
            if out and (len(out[-1]) + 1) * padded(max(kept(j) for j in out[-1] + [i])) <= batch_tokens:
                out[-1].append(i)
            else:
                out.append([i])
        return out

    order = [int(i) for i in sequence_order(len(lengths), shuffle, seed, pass_)]
    if not bucket:
        batches = cut(order)
    else:
        batches, s = [], 0
        while s < len(order):
            e, steps = s + 1, padded(kept(order[s]))
            while e < len(order) and steps + padded(kept(order[e])) <= bucket_pool * batch_tokens:
                steps += padded(kept(order[e]))
                e += 1
            batches += cut(sorted(order[s:e], key=lambda i: lengths[i]))
            s = e
    if drop_last and batches:
        batches.pop()
    if bucket:
        perm = permutation(len(batches), seed ^ BATCH_ORDER_SALT, pass_)
        batches = [batches[int(c)] for c in perm]
    at = min(offset, len(batches))
    return [batches[at + q * world_size + rank] for q in range((len(batches) - at) // world_size)]


def best_fit_rows(seqs: List[int], lengths: List[int], max_len: int) -> List[List[Tuple[int, int, int]]]:
    """The rows of max_len steps one pool of sequences (in its order) packs into, by best-fit
    decreasing length, as lists of pieces (sequence, first step, steps).

    A sequence longer than max_len gives full pieces of max_len steps first, each its own row (in
    the pool's order); every sequence's last piece (the whole sequence when it has at most
    max_len steps; none when its length is a multiple of max_len; none for an empty one) is then
    placed, longest first (ties in the pool's order), into the row with the least room left that
    still holds it (the earliest such row on a tie), or else into a new row."""
    rows: List[List[Tuple[int, int, int]]] = []
    last = []
    for i in seqs:
        full, rest = divmod(lengths[i], max_len)
        rows += [[(i, j * max_len, max_len)] for j in range(full)]
        if rest:
            last.append((i, full * max_len, rest))
    room = [0] * len(rows)
    for piece in sorted(last, key=lambda p: -p[2]):
        fits = [r for r in range(len(rows)) if room[r] >= piece[2]]
        if fits:
            r = min(fits, key=lambda r: (room[r], r))
            rows[r].append(piece)
            room[r] -= piece[2]
        else:
            rows.append([piece])
            room.append(max_len - piece[2])
    return rows


def best_fit_plan(
    lengths: List[int],
    max_len: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    pass_: int = 0,
    drop_last: bool = False,
    bucket_pool: int = 256,
    rank: int = 0,
    world_size: int = 1,
    keep_short: bool = False,
    offset: int = 0,
) -> List[List[List[Tuple[int, int, int]]]]:
    """A rank's batches of one pass packed by best fit: rows of pieces (sequence, first, steps).

    The pass's order is split into pools of consecutive sequences, each taking the next while
    their steps are fewer than bucket_pool * max_len (so a pool holds at least that many steps,
    but the last); each pool is packed by best_fit_rows, the pools' rows following each other.
    With `shuffle` the rows are then shuffled with a permutation keyed by seed ^ BATCH_ORDER_SALT.
    The rank's share of the rows (rank_share; resumed_share of the rows from `offset` on, after
    an elastic resume: the rows depend on the pass's order alone) is cut into batches; drop_last drops a short last
    batch, unless `keep_short`."""
    order = [int(i) for i in sequence_order(len(lengths), shuffle, seed, pass_)]
    rows: List[List[Tuple[int, int, int]]] = []
    s = 0
    while s < len(order):
        e, steps = s, 0
        while e < len(order) and steps < bucket_pool * max_len:
            steps += lengths[order[e]]
            e += 1
        rows += best_fit_rows(order[s:e], lengths, max_len)
        s = e
    if shuffle:
        perm = permutation(len(rows), seed ^ BATCH_ORDER_SALT, pass_)
        rows = [rows[int(c)] for c in perm]
    rows = [rows[q] for q in resumed_share(len(rows), offset, rank, world_size, drop_last, unit=batch_size)]
    out = [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    if drop_last and not keep_short and out and len(out[-1]) < batch_size:
        out.pop()
    return out


def varying_stream(epoch: int, count: int, steps: Optional[int], size_of: Any) -> List[Tuple[int, int]]:
    """(pass, index in the pass) of the `count` items of an epoch, where pass p holds
    size_of(p) items (batches or rows): as epoch_stream, with sizes that differ by pass."""
    if steps is None:
        return [(epoch, i) for i in range(count)]
    out, pass_, before = [], 0, 0
    for s in range(epoch * count, (epoch + 1) * count):
        while s >= before + size_of(pass_):
            if size_of(pass_) == 0:
                raise ValueError(f"pass {pass_} holds nothing for this rank: the stream cannot run on")
            before += size_of(pass_)
            pass_ += 1
        out.append((pass_, s - before))
    return out


def sequence_batches(
    sequences: List[np.ndarray],
    targets: Any = None,
    *,
    batch_size: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    max_len: Optional[int] = None,
    pad_multiple: int = 1,
    padding_side: str = "right",
    truncation_side: str = "right",
    pad_value: Any = 0,
    bucket: bool = False,
    bucket_pool: Optional[int] = None,
    pack: Any = False,
    batch_tokens: Optional[int] = None,
    dtype: Optional[str] = None,
    normalize: Any = None,
    rank: int = 0,
    world_size: int = 1,
    steps_per_epoch: Optional[int] = None,
    check_finite: Any = False,
    static: Any = None,
    with_index: bool = False,
    resume: Optional[Tuple[int, int, int]] = None,
) -> List[dict]:
    """Every batch of one epoch of whole sequences, as dicts with x, y, mask, lengths and, when
    packing, segment_ids, position_ids and cu_seqlens: what a Feeder(window=None) yields.

    Virtual epochs of plain padded sequences (of back-to-back packed rows) stream every rank
    through an equal share of each pass's sequences (rows, packed_rows) (positions rank, rank +
    world_size, ..., units // world_size of them). `resume=(step, pass, offset)` is an elastic
    resume, a state saved with another world_size or batch_size: at `step` (the epoch, or with
    virtual epochs epoch * steps_per_epoch + batch) the ranks take over at position `offset` of
    pass `pass` (of its sequences, rows or batch_tokens batches), sharing the rest of that pass
    (resumed_share; equal shares of it with virtual epochs), then whole passes. The resumed
    epoch's batches are those from `step` on: without virtual epochs the batches its pass has
    left. Bucketed batches of batch_size take `resume=(step, pass, offset, reads)`: the pass's
    rest is what the configurations `reads` left of it (padded_plan).

    `targets`: None, an array with one row per sequence (labels), or a list aligned step for step.
    `static` (one row per sequence) adds "static"; `with_index` adds "series" (the sequence's
    number in `sequences`) and "start" (0) (padded batches only). `pack="best_fit"` packs rows
    by best_fit_plan; `batch_tokens` cuts padded batches by token_plan (batch_size unused).
    `bucket_pool` defaults to 64 batches with `bucket` (the Feeder's default is 256), 256 rows
    with best fit, 256 budgets with batch_tokens."""
    best_fit = pack == "best_fit"
    if bucket_pool is None:
        bucket_pool = 64 if bucket and batch_tokens is None else 256
    seqs = [np.asarray(s) for s in sequences]
    numbers = list(range(len(seqs)))  # each fed sequence's number in `sequences`
    lengths = [len(s) for s in seqs]
    labels = steps = None
    if isinstance(targets, (list, tuple)):
        steps = [np.asarray(t) for t in targets]
    elif targets is not None:
        labels = np.asarray(targets)
    mean, std = _normalization(seqs, normalize, check_finite=check_finite)
    if check_finite == "skip":  # drop the sequences holding a NaN or Inf (inputs, step targets or label)
        keep = [
            i
            for i in range(len(seqs))
            if all_finite(seqs[i])
            and (steps is None or all_finite(steps[i]))
            and (labels is None or all_finite(labels[i]))
        ]
        if static is not None:
            keep = [i for i in keep if all_finite(np.asarray(static)[i])]
        seqs = [seqs[i] for i in keep]
        numbers = keep
        lengths = [lengths[i] for i in keep]
        steps = None if steps is None else [steps[i] for i in keep]
        labels = None if labels is None else labels[keep]
    tdtype = steps[0].dtype.name if steps else (labels.dtype.name if labels is not None else None)
    x_dtype, y_dtype = _output_dtypes(seqs[0].dtype.name, dtype, normalize, tdtype)

    # Virtual epochs cut full batches from the passes' items (sequences or rows) back to back,
    # every item of the rank's share, as with windows; bucketed and token-budget batches stay as
    # each pass cut them.
    streamed = steps_per_epoch is not None and not bucket and batch_tokens is None
    r_step, r_pass, r_offset = resume[:3] if resume is not None else (-1, 0, 0)
    r_reads = resume[3] if resume is not None and len(resume) > 3 else ()

    def offset_in(pass_: int) -> int:
        return r_offset if resume is not None and pass_ == r_pass else 0

    def reads_in(pass_: int) -> Sequence[Tuple[int, int, int]]:
        return r_reads if resume is not None and pass_ == r_pass else ()

    def plan(pass_: int) -> list:
        if best_fit:
            return best_fit_plan(
                lengths,
                cast(int, max_len),
                batch_size,
                shuffle,
                seed,
                pass_,
                drop_last,
                bucket_pool,
                rank,
                world_size,
                keep_short=streamed,
                offset=offset_in(pass_),
            )
        if batch_tokens is not None:
            return token_plan(
                lengths,
                batch_tokens,
                max_len,
                pad_multiple,
                shuffle,
                seed,
                pass_,
                drop_last,
                bucket,
                bucket_pool,
                rank,
                world_size,
                offset=offset_in(pass_),
            )
        if pack:
            return packed_plan(
                lengths,
                cast(int, max_len),
                batch_size,
                shuffle,
                seed,
                pass_,
                drop_last,
                rank,
                world_size,
                keep_short=streamed,
                offset=offset_in(pass_),
            )
        return padded_plan(
            lengths,
            batch_size,
            shuffle,
            seed,
            pass_,
            drop_last,
            bucket,
            bucket_pool,
            rank,
            world_size,
            keep_short=streamed,
            offset=offset_in(pass_),
            reads=reads_in(pass_),
        )

    plans = {}

    def plan_of(pass_: int) -> list:
        if pass_ not in plans:
            plans[pass_] = plan(pass_)
        return plans[pass_]

    if (batch_tokens is not None or bucket) and resume is not None and steps_per_epoch is not None:
        # Virtual epochs resumed elastically: from step r_step on, the rest of pass r_pass's
        # batches (shared from r_offset on, or bucketed from what r_reads left), then whole passes.
        if epoch * steps_per_epoch + steps_per_epoch <= r_step:
            raise ValueError(f"epoch {epoch} comes before the resume at step {r_step}")
        batches, pass_, before = [], r_pass, 0
        for s in range(max(epoch * steps_per_epoch, r_step) - r_step, (epoch + 1) * steps_per_epoch - r_step):
            while s >= before + len(plan_of(pass_)):
                if len(plan_of(pass_)) == 0 and pass_ != r_pass:
                    raise ValueError(f"pass {pass_} holds nothing for this rank: the stream cannot run on")
                before += len(plan_of(pass_))
                pass_ += 1
            batches.append(plan_of(pass_)[s - before])
    elif batch_tokens is not None or (best_fit and not streamed):  # batches per pass differ by pass
        count = steps_per_epoch if steps_per_epoch is not None else len(plan_of(epoch))
        stream = varying_stream(epoch, count, steps_per_epoch, lambda p: len(plan_of(p)))
        batches = [plan_of(pass_)[j] for pass_, j in stream]
    elif resume is not None and steps_per_epoch is None:  # the resumed epoch: what its pass has left
        if epoch < r_step:
            raise ValueError(f"epoch {epoch} comes before the resume at epoch {r_step}")
        batches = plan_of(epoch)
    elif streamed:  # equal shares of each pass's sequences (or packed rows), every item streamed
        # (Best-fit rows: every rank an equal share of each pass's rows too, their number by pass.)

        def units_of(pass_: int) -> list:
            if best_fit:
                everyone = best_fit_plan(
                    lengths, cast(int, max_len), 1, shuffle, seed, pass_, False, bucket_pool, keep_short=True
                )
                return [r for b in everyone for r in b]
            if pack:
                return packed_rows(lengths, cast(int, max_len), shuffle, seed, pass_)
            return [int(i) for i in sequence_order(len(lengths), shuffle, seed, pass_)]

        shares: Dict[int, list] = {}

        def share(pass_: int) -> list:
            if pass_ not in shares:
                order = units_of(pass_)
                at = offset_in(pass_)
                shares[pass_] = [order[at + q * world_size + rank] for q in range((len(order) - at) // world_size)]
            return shares[pass_]

        per_epoch = cast(int, steps_per_epoch) * batch_size
        start = 0 if resume is None else r_step * batch_size  # the stream's first item, in pass `first_pass`
        first_pass = 0 if resume is None else r_pass
        if (epoch + 1) * per_epoch <= start:
            raise ValueError(f"epoch {epoch} comes before the resume at step {r_step}")
        items, pass_, before = [], first_pass, start
        for t in range(max(epoch * per_epoch, start), (epoch + 1) * per_epoch):
            while t >= before + len(share(pass_)):
                if not share(pass_) and (resume is None or pass_ != r_pass):  # (as n // 0 would say)
                    raise ZeroDivisionError(f"pass {pass_} holds nothing for this rank: the stream cannot run on")
                before += len(share(pass_))
                pass_ += 1
            items.append(share(pass_)[t - before])
        batches = [items[k : k + batch_size] for k in range(0, len(items), batch_size)]
    else:  # each pass's batches, as cut
        nb = len(plan_of(0))  # this rank's batches in a pass
        count = steps_per_epoch if steps_per_epoch is not None else nb
        batches = [plan_of(pass_)[j] for pass_, j in epoch_stream(epoch, nb, count, steps_per_epoch)]
    masking = check_finite == "mask"
    out = []
    for batch in batches:

        def made_of(
            xs: Any, ys: Any, ls: Any, pad: Any, xd: str, yd: Any, mu: Any, sd: Any, batch: Any = batch
        ) -> dict:
            if pack:
                return _packed_batch(batch, xs, ys, max_len, pad, xd, yd, mu, sd)
            return _padded_batch(
                batch, xs, ys, ls, lengths, max_len, pad_multiple, padding_side, truncation_side, pad, xd, yd, mu, sd
            )

        made = made_of(seqs, steps, labels, pad_value, x_dtype, y_dtype, mean, std)
        if masking:  # the same batch of "is finite": real non-finite values become 0
            finite = made_of(
                [finite_mask(s) for s in seqs],
                None if steps is None else [finite_mask(s) for s in steps],
                None if labels is None else finite_mask(labels),
                False,
                "bool",
                None if y_dtype is None else "bool",
                None,
                None,
            )

            def real(a: np.ndarray, mask: np.ndarray = made["mask"]) -> Any:  # not padding, broadcast to `a`
                return mask.reshape(mask.shape + (1,) * (a.ndim - 2))

            made["x"][real(made["x"]) & ~finite["x"]] = 0
            made["observed"] = finite["x"]
            if made["y"] is not None:
                y_real = real(made["y"]) if steps is not None else True
                made["y"][y_real & ~finite["y"]] = 0
                made["y_observed"] = finite["y"]
        if static is not None:
            rows = np.asarray(static)[[numbers[i] for i in batch]]
            made["static"] = convert(rows, _field_dtype(rows.dtype.name, dtype, False))
            if masking:
                made["static"][~finite_mask(rows)] = 0
        if with_index:
            made["series"] = np.asarray([numbers[i] for i in batch], np.int64)
            made["start"] = np.zeros(len(batch), np.int64)
        out.append(made)  # mask and lengths always, also where no step was padded
    return out


def _padded_batch(
    batch: List[int],
    seqs: List[np.ndarray],
    steps: Optional[List[np.ndarray]],
    labels: Optional[np.ndarray],
    lengths: List[int],
    max_len: Optional[int],
    pad_multiple: int,
    padding_side: str,
    truncation_side: str,
    pad_value: Any,
    x_dtype: str,
    y_dtype: Any,  # None without targets
    mean: Optional[np.ndarray],
    std: Optional[np.ndarray],
) -> dict:
    if max_len is not None:
        length = max_len
    else:
        longest = max(lengths[i] for i in batch)
        length = -(-longest // pad_multiple) * pad_multiple
    pad_x = convert(np.array([pad_value]), x_dtype)[0]
    x = np.empty((len(batch), length) + seqs[0].shape[1:], dtype=numpy_name(x_dtype))
    x[...] = pad_x
    y: Any = None
    if steps is not None:
        y = np.empty((len(batch), length) + steps[0].shape[1:], dtype=numpy_name(y_dtype))
        y[...] = convert(np.array([pad_value]), y_dtype)[0]
    elif labels is not None:
        y = convert(labels[list(batch)], y_dtype) if len(batch) else None
    mask = np.zeros((len(batch), length), dtype=bool)
    out_lengths = np.zeros(len(batch), dtype=np.int64)
    for i, seq in enumerate(batch):
        n = min(lengths[seq], length)
        first = 0 if truncation_side == "right" else lengths[seq] - n
        col = 0 if padding_side == "right" else length - n
        x[i, col : col + n] = convert(seqs[seq][first : first + n], x_dtype, mean, std)
        if steps is not None:
            y[i, col : col + n] = convert(steps[seq][first : first + n], y_dtype)
        mask[i, col : col + n] = True
        out_lengths[i] = n
    return {"x": x, "y": y, "mask": mask, "lengths": out_lengths}


def _packed_batch(
    rows: List[List[Tuple[int, int, int]]],
    seqs: List[np.ndarray],
    steps: Optional[List[np.ndarray]],
    max_len: Any,  # an int: packing needs max_len
    pad_value: Any,
    x_dtype: str,
    y_dtype: Any,  # None without targets
    mean: Optional[np.ndarray],
    std: Optional[np.ndarray],
) -> dict:
    B = len(rows)
    x = np.empty((B, max_len) + seqs[0].shape[1:], dtype=numpy_name(x_dtype))
    x[...] = convert(np.array([pad_value]), x_dtype)[0]
    y: Any = None
    if steps is not None:
        y = np.empty((B, max_len) + steps[0].shape[1:], dtype=numpy_name(y_dtype))
        y[...] = convert(np.array([pad_value]), y_dtype)[0]
    mask = np.zeros((B, max_len), dtype=bool)
    segment_ids = np.zeros((B, max_len), dtype=np.int32)
    position_ids = np.zeros((B, max_len), dtype=np.int64)
    lengths = np.zeros(B, dtype=np.int64)
    cu = [0]
    for r, row in enumerate(rows):
        col = 0
        for k, (seq, first, count) in enumerate(row):
            x[r, col : col + count] = convert(seqs[seq][first : first + count], x_dtype, mean, std)
            if steps is not None:
                y[r, col : col + count] = convert(steps[seq][first : first + count], y_dtype)
            mask[r, col : col + count] = True
            segment_ids[r, col : col + count] = k + 1
            position_ids[r, col : col + count] = np.arange(count)
            cu.append(cu[-1] + count)
            col += count
        lengths[r] = col
    return {
        "x": x,
        "y": y,
        "mask": mask,
        "lengths": lengths,
        "segment_ids": segment_ids,
        "position_ids": position_ids,
        "cu_seqlens": np.array(cu, dtype=np.int32),
    }


def numpy_name(dtype: str) -> str:
    """The NumPy dtype holding values of `dtype` (bfloat16 as its uint16 bit patterns)."""
    return "uint16" if dtype == "bfloat16" else dtype


# ----- Keras: what fastfeed.compat must reproduce ------------------------------------------
# Line-for-line copies of tf_keras 2.x's algorithms (keras/preprocessing/sequence.py), minus the
# Sequence base class, so compat can be checked (and benchmarked) where TensorFlow is absent.


class KerasTimeseriesGenerator:
    """Keras' TimeseriesGenerator: len(), [i], shuffle drawn with np.random, reverse."""

    def __init__(
        self,
        data: Any,
        targets: Any,
        length: Any,
        sampling_rate: Any = 1,
        stride: Any = 1,
        start_index: Any = 0,
        end_index: Any = None,
        shuffle: Any = False,
        reverse: Any = False,
        batch_size: Any = 128,
    ) -> None:
        if len(data) != len(targets):
            raise ValueError(
                "Data and targets have to be"
                + f" of same length. Data length is {len(data)}"
                + f" while target length is {len(targets)}"
            )
        self.data = data
        self.targets = targets
        self.length = length
        self.sampling_rate = sampling_rate
        self.stride = stride
        self.start_index = start_index + length
        if end_index is None:
            end_index = len(data) - 1
        self.end_index = end_index
        self.shuffle = shuffle
        self.reverse = reverse
        self.batch_size = batch_size
        if self.start_index > self.end_index:
            raise ValueError(
                "`start_index+length=%i > end_index=%i` "  # noqa: UP031 (Keras' message, as Keras formats it)
                "is disallowed, as no part of the sequence "
                "would be left to be used as current step." % (self.start_index, self.end_index)
            )

    def __len__(self) -> int:
        return (self.end_index - self.start_index + self.batch_size * self.stride) // (self.batch_size * self.stride)

    def __getitem__(self, index: Any) -> Tuple[np.ndarray, np.ndarray]:
        if self.shuffle:
            rows = np.random.randint(self.start_index, self.end_index + 1, size=self.batch_size)  # noqa: NPY002
        else:
            i = self.start_index + self.batch_size * self.stride * index
            rows = np.arange(i, min(i + self.batch_size * self.stride, self.end_index + 1), self.stride)
        samples = np.array([self.data[row - self.length : row : self.sampling_rate] for row in rows])
        targets = np.array([self.targets[row] for row in rows])
        if self.reverse:
            return samples[:, ::-1, ...], targets
        return samples, targets


def keras_pad_sequences(
    sequences: Any,
    maxlen: Any = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """Keras' pad_sequences, defaults included ('pre' padding and truncation)."""
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    num_samples = len(sequences)
    lengths = []
    sample_shape = ()
    flag = True
    for x in sequences:
        try:
            lengths.append(len(x))
            if flag and len(x):
                sample_shape = np.asarray(x).shape[1:]
                flag = False
        except TypeError as e:
            raise ValueError(f"`sequences` must be a list of iterables. Found non-iterable: {x!s}") from e
    if maxlen is None:
        maxlen = np.max(lengths)
    is_dtype_str = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.str_)
    if isinstance(value, str) and dtype != object and not is_dtype_str:  # noqa: E721 (np.dtype("O") == object)
        raise ValueError(
            f"`dtype` {dtype} is not compatible with `value`'s type: "
            f"{type(value)}\nYou should set `dtype=object` for variable length "
            "strings."
        )
    x = np.full((num_samples, maxlen) + sample_shape, value, dtype=dtype)
    for idx, s in enumerate(sequences):
        if not len(s):
            continue
        if truncating == "pre":
            trunc = s[-maxlen:]
        elif truncating == "post":
            trunc = s[:maxlen]
        else:
            raise ValueError(f'Truncating type "{truncating}" not understood')
        trunc = np.asarray(trunc, dtype=dtype)
        if trunc.shape[1:] != sample_shape:
            raise ValueError(
                f"Shape of sample {trunc.shape[1:]} of sequence at "
                f"position {idx} is different from expected shape "
                f"{sample_shape}"
            )
        if padding == "post":
            x[idx, : len(trunc)] = trunc
        elif padding == "pre":
            x[idx, -len(trunc) :] = trunc
        else:
            raise ValueError(f'Padding type "{padding}" not understood')
    return x
