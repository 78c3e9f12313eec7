"""The definition of correct output: a plain NumPy implementation of every Feeder option,
and (at the end) copies of the Keras algorithms that fastfeed.compat reproduces.

Slow and simple on purpose. Tests compare the native core with these functions; when the
two disagree, this file is right. It never imports the core.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, cast

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
    lengths: List[int],
    window: int,
    sampling_rate: int = 1,
    stride: int = 1,
    horizon: int = 0,
    start_index: int = 0,
    end_index: Optional[int] = None,
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


def standard_stats(
    series: List[np.ndarray], start_index: int = 0, end_index: Optional[int] = None, finite_rows_only: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and population std over steps [start_index, end_index) of all series
    (only the steps without NaN/Inf with `finite_rows_only`); a std of 0 becomes 1."""
    steps = np.concatenate([np.asarray(s)[start_index:end_index] for s in series]).astype(np.float64)
    if finite_rows_only:
        steps = steps[np.isfinite(steps.reshape(len(steps), -1)).all(axis=1)]
    mean, std = steps.mean(axis=0), steps.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


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


def epoch_stream(epoch: int, per_rank: int, count: int, steps: Optional[int]) -> List[Tuple[int, int]]:
    """(pass, index in the rank's share) of the `count` items of an epoch. Without virtual
    epochs (steps None) the epoch is the pass; with them the items run on across passes."""
    if steps is None:
        return [(epoch, i) for i in range(count)]
    first = epoch * count
    return [((first + i) // per_rank, (first + i) % per_rank) for i in range(count)]


# ----- whole epochs of windows -------------------------------------------------------------


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

    x_dtype, y_dtype = _output_dtypes(
        series[0].dtype.name, dtype, normalize, None if targets is None else target_series[0].dtype.name
    )
    mean, std = _normalization(series, normalize, start_index, end_index, check_finite == "skip")
    y_mean, y_std = (mean, std) if targets is None else (None, None)

    starts = window_starts([len(s) for s in series], window, sampling_rate, stride, horizon, start_index, end_index)
    if check_finite == "skip":  # drop the samples whose inputs or targets touch a NaN or Inf

        def touches_bad(s: int, t: int) -> bool:
            last = t + (window - 1) * sampling_rate
            return not (
                all_finite(series[s][t : last + 1 : sampling_rate])
                and all_finite(
                    target_series[s][last + sampling_rate : last + horizon * sampling_rate + 1 : sampling_rate]
                )
            )

        starts = [(s, t) for s, t in starts if not touches_bad(s, t)]
    share = rank_share(len(starts), rank, world_size, drop_last, unit=batch_size)
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
        xs, ys = [], []
        for pass_, q in stream[b : b + batch_size]:
            s, t = starts[sample_at(pass_, q)]
            last = t + (window - 1) * sampling_rate
            xs.append(series[s][t : last + 1 : sampling_rate])
            ys.append(target_series[s][last + sampling_rate : last + horizon * sampling_rate + 1 : sampling_rate])
        x = convert(np.stack(xs), x_dtype, mean, std)
        y = convert(np.stack(ys), y_dtype, y_mean, y_std) if horizon > 0 else None
        out.append((x, y))
    return out


def all_finite(a: np.ndarray) -> bool:
    """No NaN or Inf (integers and bools are always finite)."""
    a = np.asarray(a)
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())


def _output_dtypes(src: str, dtype: Optional[str], normalize: Any, target: Optional[str]) -> Tuple[str, str]:
    floating = ("float16", "float32", "float64", "bfloat16")
    x_dtype = dtype or ("float32" if normalize is not None and src not in floating else src)
    if target is None:
        return x_dtype, x_dtype
    return x_dtype, (x_dtype if dtype is not None and target in floating and x_dtype in floating else target)


def _normalization(
    series: List[np.ndarray],
    normalize: Any,
    start_index: int = 0,
    end_index: Optional[int] = None,
    finite_rows_only: bool = False,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    if normalize is None:
        return None, None
    if isinstance(normalize, str):
        return standard_stats(series, start_index, end_index, finite_rows_only)
    feat = series[0].shape[1:]
    return (
        np.broadcast_to(np.asarray(normalize[0], np.float64), feat),
        np.broadcast_to(np.asarray(normalize[1], np.float64), feat),
    )


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
) -> List[List[int]]:
    """A rank's batches (lists of sequence numbers) of one pass of padded whole sequences.

    The rank's share of the pass's order (rank_share) is cut into batches (plain), or cut into
    pools of `bucket_pool` batches, each pool sorted by length (stable), cut into batches, and
    the batches shuffled (whatever `shuffle` says) with a permutation keyed by seed ^ BATCH_ORDER_SALT.
    drop_last drops a short last batch, unless `keep_short` (virtual epochs stream every item)."""
    everyone = [int(i) for i in sequence_order(len(lengths), shuffle, seed, pass_)]
    order = [everyone[q] for q in rank_share(len(everyone), rank, world_size, drop_last, unit=batch_size)]
    n = len(order)
    if bucket:
        pool = bucket_pool * batch_size
        order = [i for s in range(0, n, pool) for i in sorted(order[s : s + pool], key=lambda i: lengths[i])]
    cut = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if drop_last and not keep_short and cut and len(cut[-1]) < batch_size:
        cut.pop()
    if bucket:
        perm = permutation(len(cut), seed ^ BATCH_ORDER_SALT, pass_)
        cut = [cut[int(c)] for c in perm]
    return cut


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
) -> List[List[List[Tuple[int, int, int]]]]:
    """A rank's batches of one pass of packed sequences: rows of pieces (sequence, first step, steps).

    The pass's sequences are laid back to back and the stream is cut into rows of max_len steps
    (a sequence reaching the end of a row continues at the start of the next one); the rank's
    share of those rows (rank_share) is cut into batches. drop_last drops a short last batch,
    unless `keep_short`."""
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
    rows = [rows[q] for q in rank_share(len(rows), rank, world_size, drop_last, unit=batch_size)]
    out = [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    if drop_last and not keep_short and out and len(out[-1]) < batch_size:
        out.pop()
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
    bucket_pool: int = 64,
    pack: bool = False,
    dtype: Optional[str] = None,
    normalize: Any = None,
    rank: int = 0,
    world_size: int = 1,
    steps_per_epoch: Optional[int] = None,
    check_finite: Any = False,
) -> List[dict]:
    """Every batch of one epoch of whole sequences, as dicts with x, y, mask, lengths and, when
    packing, segment_ids, position_ids and cu_seqlens: what a Feeder(window=None) yields.

    `targets`: None, an array with one row per sequence (labels), or a list aligned step for step."""
    seqs = [np.asarray(s) for s in sequences]
    lengths = [len(s) for s in seqs]
    labels = steps = None
    if isinstance(targets, (list, tuple)):
        steps = [np.asarray(t) for t in targets]
    elif targets is not None:
        labels = np.asarray(targets)
    mean, std = _normalization(seqs, normalize, finite_rows_only=check_finite == "skip")
    if check_finite == "skip":  # drop the sequences holding a NaN or Inf (inputs, step targets or label)
        keep = [
            i
            for i in range(len(seqs))
            if all_finite(seqs[i])
            and (steps is None or all_finite(steps[i]))
            and (labels is None or all_finite(labels[i]))
        ]
        seqs = [seqs[i] for i in keep]
        lengths = [lengths[i] for i in keep]
        steps = None if steps is None else [steps[i] for i in keep]
        labels = None if labels is None else labels[keep]
    tdtype = steps[0].dtype.name if steps else (labels.dtype.name if labels is not None else None)
    x_dtype, y_dtype = _output_dtypes(seqs[0].dtype.name, dtype, normalize, tdtype)

    # Virtual epochs cut full batches from the passes' items (sequences or rows) back to back,
    # every item of the rank's share, as with windows; bucketed batches stay as each pass cut them.
    streamed = steps_per_epoch is not None and not bucket

    def plan(pass_: int) -> list:
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
        )

    plans = {}

    def plan_of(pass_: int) -> list:
        if pass_ not in plans:
            plans[pass_] = plan(pass_)
        return plans[pass_]

    if not streamed:  # each pass's batches, as cut
        nb = len(plan_of(0))  # this rank's batches in a pass
        count = steps_per_epoch if steps_per_epoch is not None else nb
        batches = [plan_of(pass_)[j] for pass_, j in epoch_stream(epoch, nb, count, steps_per_epoch)]
    else:
        flat = {0: [i for b in plan_of(0) for i in b]}
        per_pass = len(flat[0])
        stream = epoch_stream(epoch, per_pass, cast(int, steps_per_epoch) * batch_size, steps_per_epoch)
        for pass_, _ in stream:
            if pass_ not in flat:
                flat[pass_] = [i for b in plan_of(pass_) for i in b]
        items = [flat[pass_][q] for pass_, q in stream]
        batches = [items[k : k + batch_size] for k in range(0, len(items), batch_size)]
    out = []
    for batch in batches:
        if pack:
            made = _packed_batch(batch, seqs, steps, max_len, pad_value, x_dtype, y_dtype, mean, std)
        else:
            made = _padded_batch(
                batch,
                seqs,
                steps,
                labels,
                lengths,
                max_len,
                pad_multiple,
                padding_side,
                truncation_side,
                pad_value,
                x_dtype,
                y_dtype,
                mean,
                std,
            )
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
