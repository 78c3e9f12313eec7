"""Drop-in replacements for Keras' sequence utilities.

``TimeseriesGenerator`` is ``tf_keras.preprocessing.sequence.TimeseriesGenerator`` argument
for argument and batch for batch, with the windows cut by the native core; ``pad_sequences``
is ``tf_keras.utils.pad_sequences``. Neither needs TensorFlow.
"""

from __future__ import annotations

import json
import operator
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from ._core import gather_windows
from .arguments import INT64_MAX
from .dtypes import SOURCE_DTYPES

__all__ = ["TimeseriesGenerator", "pad_sequences"]

_CORE_DTYPES = frozenset(np.dtype(name) for name in SOURCE_DTYPES)  # native byte order only
# In-order batches are cut ahead in blocks of at most this many bytes (at least one batch).
_READAHEAD_BYTES = 1 << 18


def _core_array(obj: Any) -> Optional[np.ndarray]:
    """`obj` as a C-contiguous array the core reads, or None when the core cannot give
    exactly what Keras' ``np.array([...])`` of a few rows of `obj` gives."""
    if type(obj) in (np.ndarray, np.memmap):
        arr = obj
    elif isinstance(obj, (list, tuple)):
        try:
            arr = np.asarray(obj)
        except (ValueError, TypeError, OverflowError):  # ragged, or not numbers
            return None
        if arr.dtype in _CORE_DTYPES:
            # Keras infers each batch's dtype from that batch's rows alone, so one dtype for
            # the whole list is only right when every row alone infers it ([1, 2.5] does not).
            kinds = set(map(type, obj))
            simple = len(kinds) == 1 and (
                kinds <= {float, bool}
                or issubclass(next(iter(kinds)), np.generic)
                or (kinds == {int} and arr.dtype == np.int64)
            )  # 2**63 alone is uint64
            if not simple and any(np.asarray(row).dtype != arr.dtype for row in obj):
                return None
    else:  # ndarray subclasses, DataFrames, ...: indexing means something else there
        return None
    if arr.ndim == 0 or arr.dtype not in _CORE_DTYPES:
        return None
    return np.ascontiguousarray(arr)


def _to_json(value: Any, label: str) -> str:
    """`value` as JSON the way Keras' get_config writes data and targets, with its error."""
    if type(value).__module__ == np.__name__:
        value = value.tolist()
    try:
        return json.dumps(value)
    except TypeError as e:
        raise TypeError(f"{label} not JSON Serializable:", value) from e


class TimeseriesGenerator:
    """Batches of temporal windows, exactly as Keras' ``TimeseriesGenerator`` makes them.

    Sample ``j`` of a batch ends just before row ``rows[j]``: it holds
    ``data[rows[j] - length:rows[j]:sampling_rate]`` and its target is ``targets[rows[j]]``.
    Rows run from ``start_index + length`` to ``end_index`` (inclusive, default
    ``len(data) - 1``) every ``stride`` rows, ``batch_size`` rows a batch; with
    ``shuffle=True`` every batch draws its rows with
    ``np.random.randint(start_index + length, end_index + 1, size=batch_size)``, so the same
    ``np.random.seed`` gives the same batches as Keras. ``reverse=True`` puts the steps of
    each sample in reverse order.

    C-contiguous NumPy arrays of the core's dtypes (bool, ints, floats) are read in place;
    other such arrays and lists of numbers are converted once, at the first batch. Anything
    else (object or string data, other sequence types, windows that would leave the data)
    runs Keras' own algorithm, so batches always equal Keras'. Unlike Keras, batches read in
    order are cut ahead, up to 256 KiB at a time, so a change to the data in the middle of
    an epoch may show a few batches late; and such batches are views of one block (never
    of the data, never of each other).

    Args:
        data: the series, indexable by row (an array or a list of steps).
        targets: one target per row of `data`, the same length as `data`.
        length: rows each sample spans before its target row (before sampling).
        sampling_rate: take every ``sampling_rate``-th row inside a sample.
        stride: rows between the target rows of consecutive samples.
        start_index: rows before this are never a sample's first row.
        end_index: the last row that can be a target row (inclusive).
        shuffle: draw each batch's rows at random from NumPy's global generator.
        reverse: put each sample's steps in reverse order.
        batch_size: samples per batch (the last batch may be shorter).

    Raises:
        ValueError: `data` and `targets` differ in length, or
            ``start_index + length > end_index``.
    """

    _fast: Any  # the plan from _plan(), None until made, False where Keras' code runs

    def __init__(
        self,
        data: Any,
        targets: Any,
        length: int,
        sampling_rate: int = 1,
        stride: int = 1,
        start_index: int = 0,
        end_index: Optional[int] = None,
        shuffle: bool = False,
        reverse: bool = False,
        batch_size: int = 128,
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

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if not name.startswith("_"):  # Keras reads its attributes at every batch: re-plan
            object.__setattr__(self, "_fast", None)

    def __getstate__(self) -> Dict[str, Any]:
        # The plan holds views of the data and read-ahead blocks: rebuilt, not pickled.
        return {**self.__dict__, "_fast": None}

    def _plan(self) -> Any:
        """What ``__getitem__`` needs from the core, or False where Keras' code must run."""
        try:
            length, rate, stride, first, last, batch_size = (
                operator.index(v)
                for v in (
                    self.length,
                    self.sampling_rate,
                    self.stride,
                    self.start_index,
                    self.end_index,
                    self.batch_size,
                )
            )
        except TypeError:
            return False
        x, y = _core_array(self.data), _core_array(self.targets)
        # Every window must lie inside the data: a negative start_index would make Keras'
        # slices wrap around, an end_index past the data would shorten them.
        if (
            x is None
            or y is None
            or len(x) != len(y)
            or min(length, rate, stride, batch_size) < 1
            or max(length, rate, stride, batch_size) > INT64_MAX  # beyond the core's integers: Keras' code
            or first - length < 0
            or last >= len(x)
        ):
            return False
        window = len(range(0, length, rate))
        x_tail = (window, *x.shape[1:])
        batch_bytes = batch_size * window * x[:1].nbytes
        return (
            x,
            x.dtype,
            x_tail,
            window,
            rate,
            y[length:],
            length,
            first,
            last,
            stride,
            batch_size,
            len(self),
            bool(self.shuffle),
            bool(self.reverse),
            max(1, _READAHEAD_BYTES // batch_bytes) if batch_bytes else 1,
            [(-1, -1, 0, None, None, 0)],
        )

    def __len__(self) -> int:
        return (self.end_index - self.start_index + self.batch_size * self.stride) // (self.batch_size * self.stride)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        fast = self._fast
        if fast is None:
            fast = self._fast = self._plan()
        if fast is False:
            return self._keras_getitem(index)
        (
            x,
            x_dtype,
            x_tail,
            window,
            rate,
            y,
            length,
            first,
            last,
            stride,
            batch_size,
            num_batches,
            shuffle,
            reverse,
            max_blocks,
            ahead,
        ) = fast
        # y is targets[length:], so y[start] is the target of the window starting at start.
        if shuffle:  # like Keras, ignores index
            starts = np.random.randint(first, last + 1, size=batch_size)  # noqa: NPY002 (Keras' generator)
            starts -= length
            samples = gather_windows(x, starts, window, rate, x_dtype, x_tail)
            targets = y[starts]
        else:
            if type(index) is not int:
                try:
                    index = operator.index(index)
                except TypeError:
                    return self._keras_getitem(index)
            if not 0 <= index < num_batches:  # Keras' empty or wrapped-around batches
                return self._keras_getitem(index)
            # One core call costs about a microsecond, more than copying a small batch, so
            # in-order access is served from blocks of batches cut in one call (growing while
            # access stays in order). The state is one tuple, swapped whole, so that a thread
            # never sees another's half-made update.
            following, end, base, xs, ys, blocks = ahead[0]
            if index == following and index < end:
                lo = (index - base) * batch_size
                ahead[0] = (index + 1, end, base, xs, ys, blocks)
                samples, targets = xs[lo : lo + batch_size], ys[lo : lo + batch_size]
            else:
                blocks = min(2 * blocks, max_blocks) if index == following else 1
                end = min(index + blocks, num_batches)
                lo = first - length + index * batch_size * stride
                hi = min(first + end * batch_size * stride, last + 1) - length
                starts = np.arange(lo, hi, stride, dtype=np.int64)
                samples = gather_windows(x, starts, window, rate, x_dtype, x_tail)
                targets = y[starts]
                if end > index + 1:
                    ahead[0] = (index + 1, end, index, samples, targets, blocks)
                    samples, targets = samples[:batch_size], targets[:batch_size]
                else:
                    ahead[0] = (index + 1, end, index, None, None, blocks)
        if reverse:
            return samples[:, ::-1, ...], targets
        return samples, targets

    def _keras_getitem(self, index: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Keras' ``__getitem__``, line for line, for what the core does not cover."""
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

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """Every batch once, in order (as Keras' ``Sequence``)."""
        for i in range(len(self)):
            yield self[i]

    def on_epoch_end(self) -> None:
        """Called by Keras' training loops after each epoch; nothing to do here."""

    def get_config(self) -> Dict[str, Any]:
        """The configuration as Keras gives it (data and targets as JSON strings)."""
        return {
            "data": _to_json(self.data, "Data"),
            "targets": _to_json(self.targets, "Targets"),
            "length": self.length,
            "sampling_rate": self.sampling_rate,
            "stride": self.stride,
            "start_index": self.start_index,
            "end_index": self.end_index,
            "shuffle": self.shuffle,
            "reverse": self.reverse,
            "batch_size": self.batch_size,
        }

    def to_json(self, **kwargs: Any) -> str:
        """``get_config()`` with the class name, as a JSON string (kwargs go to json.dumps)."""
        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()}, **kwargs)


def pad_sequences(
    sequences: Sequence[Any],
    maxlen: Optional[int] = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """Pads (and truncates) sequences to one length, exactly as Keras' ``pad_sequences``.

    Returns an array of shape ``(len(sequences), maxlen, *step_shape)`` (``maxlen`` defaults
    to the longest sequence; the step shape is that of the first non-empty sequence), filled
    with `value`, holding each sequence's last (``truncating="pre"``) or first (``"post"``)
    ``maxlen`` steps at the end (``padding="pre"``) or the start (``"post"``) of its row.

    Raises:
        ValueError: `sequences` or one of its items is not a sequence, a sequence's steps
            differ in shape from the first non-empty one's, `value` is a string but `dtype`
            neither ``object`` nor a string dtype, or `padding`/`truncating` is neither
            "pre" nor "post" (checked, as in Keras, only when a non-empty sequence is met).
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    lengths = []
    sample_shape: Tuple[int, ...] = ()
    found = False  # the step shape comes from the first non-empty sequence
    for x in sequences:
        try:
            lengths.append(len(x))
            if not found and len(x):
                sample_shape = np.asarray(x).shape[1:]
                found = True
        except TypeError as e:
            raise ValueError(f"`sequences` must be a list of iterables. Found non-iterable: {x!s}") from e
    if maxlen is None:
        maxlen = np.max(lengths)  # as Keras: raises for no sequences at all
    is_str_dtype = np.issubdtype(dtype, np.str_)  # first, as in Keras: a bad dtype fails here
    if isinstance(value, str) and dtype != object and not is_str_dtype:  # noqa: E721 (np.dtype("O") == object)
        raise ValueError(
            f"`dtype` {dtype} is not compatible with `value`'s type: "
            f"{type(value)}\nYou should set `dtype=object` for variable length strings."
        )
    out = np.full((len(sequences), maxlen) + sample_shape, value, dtype=dtype)
    for idx, s in enumerate(sequences):
        if not len(s):
            continue
        if truncating == "pre":
            trunc = s[-maxlen:]  # maxlen=0 keeps everything, as in Keras (then fails below)
        elif truncating == "post":
            trunc = s[:maxlen]
        else:
            raise ValueError(f'Truncating type "{truncating}" not understood')
        trunc = np.asarray(trunc, dtype=dtype)
        if trunc.shape[1:] != sample_shape:
            raise ValueError(
                f"Shape of sample {trunc.shape[1:]} of sequence at position {idx} "
                f"is different from expected shape {sample_shape}"
            )
        if padding == "post":
            out[idx, : len(trunc)] = trunc
        elif padding == "pre":
            out[idx, -len(trunc) :] = trunc
        else:
            raise ValueError(f'Padding type "{padding}" not understood')
    return out
