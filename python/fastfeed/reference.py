"""The definition of correct output: a plain NumPy implementation of every Feeder option.

Slow and simple on purpose. Tests compare the native core with these functions; when the
two disagree, this file is right. It never imports the core.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

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

def window_starts(
    lengths: List[int], window: int, sampling_rate: int = 1, stride: int = 1, horizon: int = 0,
    start_index: int = 0, end_index: Optional[int] = None,
) -> List[Tuple[int, int]]:
    """(series, start) of every sample, series by series, start by start.

    A window starting at t exists iff t + (window - 1 + horizon) * sampling_rate <= end - 1,
    where end is end_index or the series' length, and t = start_index + k * stride.
    """
    out = []
    for s, length in enumerate(lengths):
        end = length if end_index is None else min(end_index, length)
        t = start_index
        while t + (window - 1 + horizon) * sampling_rate <= end - 1:
            out.append((s, t))
            t += stride
    return out


# ----- dtype conversion and normalisation ----------------------------------------------

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
        x = (x.astype(np.float64) - mean) / std
    if dtype == "bfloat16":
        return to_bfloat16_bits(x)
    return x.astype(dtype)


def standard_stats(series: List[np.ndarray], start_index: int = 0, end_index: Optional[int] = None):
    """Per-feature mean and population std over steps [start_index, end_index) of all series;
    a std of 0 becomes 1."""
    steps = np.concatenate([np.asarray(s)[start_index:end_index] for s in series]).astype(np.float64)
    mean, std = steps.mean(axis=0), steps.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


# ----- whole epochs --------------------------------------------------------------------

def batches(
    source: Any, *, window: int, horizon: Optional[int] = None, targets: Any = None,
    sampling_rate: int = 1, stride: int = 1, start_index: int = 0, end_index: Optional[int] = None,
    batch_size: int = 1, shuffle: bool = False, seed: int = 0, epoch: int = 0,
    drop_last: bool = False, dtype: Optional[str] = None, normalize: Any = None,
) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Every batch of one epoch as (x, y) NumPy arrays: what a Feeder with the same arguments
    yields. `dtype` is a dtype name ("float32", "bfloat16", ...)."""
    single = not isinstance(source, (list, tuple))
    series = [np.load(source, mmap_mode="r") if isinstance(source, str) else source] if single else list(source)
    series = [np.asarray(s) for s in series]
    if targets is None:
        horizon = 0 if horizon is None else horizon
        target_series = series
    else:
        horizon = 1 if horizon is None else horizon
        target_series = [np.asarray(targets)] if single else [np.asarray(t) for t in targets]

    src = series[0].dtype.name
    floating = ("float16", "float32", "float64", "bfloat16")
    x_dtype = dtype or ("float32" if normalize is not None and src not in floating else src)
    if targets is None:
        y_dtype = x_dtype
    else:
        t = target_series[0].dtype.name
        y_dtype = x_dtype if dtype is not None and t in floating and x_dtype in floating else t

    mean = std = None
    if isinstance(normalize, str):
        mean, std = standard_stats(series, start_index, end_index)
    elif normalize is not None:
        feat = series[0].shape[1:]
        mean = np.broadcast_to(np.asarray(normalize[0], np.float64), feat)
        std = np.broadcast_to(np.asarray(normalize[1], np.float64), feat)
    y_mean, y_std = (mean, std) if targets is None else (None, None)

    starts = window_starts([len(s) for s in series], window, sampling_rate, stride, horizon,
                           start_index, end_index)
    order = permutation(len(starts), seed, epoch) if shuffle else np.arange(len(starts))
    count = len(starts) // batch_size * batch_size if drop_last else len(starts)

    out = []
    for b in range(0, count, batch_size):
        xs, ys = [], []
        for p in range(b, min(b + batch_size, count)):
            s, t = starts[order[p]]
            last = t + (window - 1) * sampling_rate
            xs.append(series[s][t:last + 1:sampling_rate])
            ys.append(target_series[s][last + sampling_rate:last + horizon * sampling_rate + 1:sampling_rate])
        x = convert(np.stack(xs), x_dtype, mean, std)
        y = convert(np.stack(ys), y_dtype, y_mean, y_std) if horizon > 0 else None
        out.append((x, y))
    return out
