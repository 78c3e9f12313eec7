"""`Feeder`: batches of windows from series, assembled ahead by the native core."""
from __future__ import annotations

import math
import os
import weakref
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .batch import Batch
from .dtypes import FLOATING, dtype_name, numpy_storage, torch_dtype
from .errors import FeedError
from .sources import SeriesSet, Source, load_source

# Small batches travel from the workers in blocks of about this many bytes, so the hand-over
# costs nothing per batch; batches larger than this travel one per block.
_BLOCK_BYTES = 256 * 1024


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _int_arg(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Feeder:
    """Batches of sliding windows over one or many series, in order or shuffled.

    ``Feeder(source, window=w, horizon=h, batch_size=b)`` yields :class:`Batch` objects whose
    ``x`` has shape ``(b, w, *feat)`` and ``y`` shape ``(b, h, *feat)``. See SPEC sections 1-5.
    """

    def __init__(
        self,
        source: Source,
        *,
        window: Optional[int] = None,
        horizon: Optional[int] = None,
        targets: Optional[Source] = None,
        sampling_rate: int = 1,
        stride: int = 1,
        start_index: int = 0,
        end_index: Optional[int] = None,
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        dtype: Any = None,
        normalize: Union[None, str, Tuple[Any, Any]] = None,
        output: Optional[str] = None,
        device: str = "cpu",
        num_threads: Optional[int] = None,
        prefetch: Optional[int] = None,
        check_finite: Union[bool, str] = False,
    ) -> None:
        self._closed = False
        self._pipelines: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._series = load_source(source, "source")
        if window is None:
            if self._series.single:
                raise ValueError("window is required for a single series (window=None means whole sequences of a list)")
            raise NotImplementedError("whole-sequence batches (window=None) are not available in this version; pass window=")
        self.window = _int_arg("window", window, 1)
        self.sampling_rate = _int_arg("sampling_rate", sampling_rate, 1)
        self.stride = _int_arg("stride", stride, 1)
        self.batch_size = _int_arg("batch_size", batch_size, 1)
        self.seed = _int_arg("seed", seed, -(2**63))
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.horizon = self._resolve_horizon(horizon, targets)
        self._targets = self._load_targets(targets)
        self.start_index, self.end_index = self._resolve_range(start_index, end_index)
        self._check_span()
        self.output = self._resolve_output(output)
        if device != "cpu":
            raise ValueError(f"device={device!r} is not supported in this build (only 'cpu')")
        self.device = device
        self._x_dtype, self._y_dtype = self._resolve_dtypes(dtype, normalize)
        x_norm, y_norm = self._resolve_normalization(normalize)
        self.check_finite = self._resolve_check_finite(check_finite)
        self._assembler = _core.Assembler(
            list(self._series.items),
            list(self._target_series().items) if self.horizon > 0 else [],
            self.window, self.sampling_rate, self.stride, self.horizon,
            self.start_index, -1 if self.end_index is None else self.end_index,
            self._x_dtype, self._y_dtype, *x_norm, *y_norm,
            check_finite=self.check_finite == "raise",
        )
        self._advise_access()
        self.num_samples: int = self._assembler.num_samples
        if self.num_samples == 0:
            raise ValueError(self._why_no_samples())
        if self.drop_last and self.num_samples < self.batch_size:
            raise ValueError(
                f"drop_last=True with batch_size={self.batch_size} leaves no batch: "
                f"there are only {self.num_samples} samples"
            )
        self.num_threads = _cpu_count() if num_threads is None else _int_arg("num_threads", num_threads, 1)
        self._batches_per_block = max(1, min(len(self), _BLOCK_BYTES // max(1, self._batch_bytes())))
        self.prefetch = max(2, 2 * self.num_threads) if prefetch is None else _int_arg("prefetch", prefetch, 1)
        self._next_epoch = 0
        self.epoch = 0

    # ----- argument resolution -----------------------------------------------------------

    @staticmethod
    def _resolve_horizon(horizon: Optional[int], targets: Any) -> int:
        if horizon is None:
            return 1 if targets is not None else 0
        h = _int_arg("horizon", horizon, 0)
        if h == 0 and targets is not None:
            raise ValueError("horizon=0 with targets: there would be no target steps; pass horizon >= 1 or drop targets")
        return h

    def _load_targets(self, targets: Any) -> Optional[SeriesSet]:
        if targets is None:
            return None
        t = load_source(targets, "targets")
        if t.single != self._series.single or t.count != self._series.count:
            raise ValueError(
                f"targets must be aligned with the source: the source has {self._series.count} series, "
                f"targets have {t.count}"
            )
        for i, (a, b) in enumerate(zip(self._series.lengths, t.lengths)):
            if a != b:
                where = "" if t.single else f" of series {i}"
                raise ValueError(f"targets{where} have {b} steps but the source has {a}; they must be aligned step for step")
        return t

    def _target_series(self) -> SeriesSet:
        return self._targets if self._targets is not None else self._series

    def _resolve_range(self, start_index: int, end_index: Optional[int]) -> Tuple[int, Optional[int]]:
        start = _int_arg("start_index", start_index, 0)
        end = None if end_index is None else _int_arg("end_index", end_index, 0)
        if not self._series.single:
            if start != 0 or end is not None:
                raise ValueError("start_index/end_index restrict a single series; the source is a list of series")
            return start, end
        length = self._series.lengths[0]
        if start >= length:
            raise ValueError(f"start_index={start} is out of range for a series of {length} steps")
        if end is not None:
            if end > length:
                raise ValueError(f"end_index={end} is out of range for a series of {length} steps (end_index is exclusive, at most {length})")
            if end <= start:
                raise ValueError(f"end_index={end} must be greater than start_index={start}")
        return start, end

    def _span(self) -> int:
        return (self.window - 1 + self.horizon) * self.sampling_rate + 1

    def _span_text(self) -> str:
        return (f"a window of {self.window} steps with sampling_rate={self.sampling_rate} and "
                f"horizon={self.horizon} spans {self._span()} steps")

    def _check_span(self) -> None:
        if self._series.single:
            length = self._series.lengths[0]
            end = length if self.end_index is None else self.end_index
            usable = end - self.start_index
            if self._span() > length:
                raise ValueError(f"{self._span_text()}, longer than the series ({length} steps)")
            if self._span() > usable:
                raise ValueError(
                    f"{self._span_text()}, longer than steps [{self.start_index}, {end}) "
                    f"({usable} steps) selected by start_index/end_index"
                )
        elif self._span() > max(self._series.lengths):
            raise ValueError(f"{self._span_text()}, longer than every series (the longest has {max(self._series.lengths)} steps)")

    def _why_no_samples(self) -> str:
        return f"the configuration yields no sample: {self._span_text()}"

    @staticmethod
    def _resolve_output(output: Optional[str]) -> str:
        if output is None:
            return "torch" if _torch_available() else "numpy"
        if output not in ("torch", "numpy"):
            raise ValueError(f"output must be 'torch' or 'numpy', got {output!r}")
        if output == "torch" and not _torch_available():
            raise ValueError("output='torch' needs PyTorch: pip install torch")
        return output

    def _resolve_dtypes(self, dtype: Any, normalize: Any) -> Tuple[str, str]:
        src = self._series.dtype
        if dtype is not None:
            x = dtype_name(dtype)
        elif normalize is not None and src not in FLOATING:
            x = "float32"  # standardised values need a floating type
        else:
            x = src
        if normalize is not None and x not in FLOATING:
            raise ValueError(f"normalize needs a floating output dtype, got dtype={x}")
        if x == "bfloat16" and self.output == "numpy":
            raise ValueError("dtype=bfloat16 needs output='torch' (NumPy has no bfloat16)")
        if self._targets is None:
            return x, x  # targets are the source itself: treated the same way
        t = self._targets.dtype
        # Floating targets follow `dtype`; integer or bool targets (labels) keep theirs.
        return x, (x if dtype is not None and t in FLOATING and x in FLOATING else t)

    def _resolve_normalization(self, normalize: Any) -> Tuple[Tuple[list, list], Tuple[list, list]]:
        none: Tuple[list, list] = ([], [])
        if normalize is None:
            return none, none
        feat, width = self._series.feat, self._series.row_elems
        if isinstance(normalize, str):
            if normalize != "standard":
                raise ValueError(f"normalize must be 'standard' or (mean, std), got {normalize!r}")
            end = -1 if self.end_index is None else self.end_index
            mean, std, _ = _core.moments(list(self._series.items), self.start_index, end)
            std = [s if s > 0 else 1.0 for s in std]  # constant features are centred, not scaled
        else:
            try:
                mean_in, std_in = normalize
            except (TypeError, ValueError) as e:
                raise ValueError("normalize must be 'standard' or a pair (mean, std)") from e
            try:
                mean = np.broadcast_to(np.asarray(mean_in, np.float64), feat).reshape(width).tolist()
                std = np.broadcast_to(np.asarray(std_in, np.float64), feat).reshape(width).tolist()
            except ValueError as e:
                raise ValueError(f"normalize=(mean, std) must broadcast to the feature shape {feat}") from e
            if not all(s > 0 for s in std):
                raise ValueError("normalize=(mean, std): every std must be > 0")
        norm = (mean, std)
        return norm, (norm if self._targets is None else none)

    @staticmethod
    def _resolve_check_finite(check_finite: Any) -> Union[bool, str]:
        if check_finite is False or check_finite is None:
            return False
        if check_finite is True or check_finite == "raise":
            return "raise"
        if check_finite == "skip":
            raise NotImplementedError("check_finite='skip' is not available in this version; use 'raise'")
        raise ValueError(f"check_finite must be False, 'raise' or 'skip', got {check_finite!r}")

    def _advise_access(self) -> None:
        # Shuffled epochs touch pages at random: read-around would only waste I/O and memory.
        for s in (self._series, self._targets):
            for item in (s.items if s is not None else ()):
                if isinstance(item, _core.NpyFile):
                    item.advise_random_access(self.shuffle)

    # ----- sizes -------------------------------------------------------------------------

    def _x_tail(self) -> Tuple[int, ...]:
        return (self.window,) + self._series.feat

    def _y_tail(self) -> Tuple[int, ...]:
        return (self.horizon,) + self._target_series().feat

    def _batch_bytes(self) -> int:
        x = math.prod(self._x_tail()) * numpy_storage(self._x_dtype).itemsize
        y = math.prod(self._y_tail()) * numpy_storage(self._y_dtype).itemsize if self.horizon else 0
        return (x + y) * self.batch_size

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    # ----- iteration ---------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration runs (it decides the shuffle)."""
        self._next_epoch = _int_arg("epoch", epoch, 0)

    def __iter__(self) -> Iterator[Batch]:
        if self._closed:
            raise RuntimeError("this Feeder is closed")
        self.epoch = self._next_epoch
        self._next_epoch += 1
        return self._run(self.epoch)

    def _open_pipeline(self, epoch: int) -> Any:
        pipe = _core.Pipeline(
            self._assembler, self.shuffle, self.seed % 2**64, epoch, self.batch_size,
            0, len(self), self._batches_per_block, self.num_threads, self.prefetch,
            numpy_storage(self._x_dtype), list(self._x_tail()),
            numpy_storage(self._y_dtype), list(self._y_tail()),
        )
        self._pipelines.add(pipe)
        return pipe

    def _as_output(self, a: Optional[np.ndarray], dtype: str) -> Any:
        if a is None or self.output == "numpy":
            return a
        import torch

        t = torch.from_numpy(a)  # shares the buffer, no copy
        return t.view(torch.bfloat16) if dtype == "bfloat16" else t

    def _split(self, a: Any, rows: int) -> Sequence[Any]:
        # One reshape and one C-level split per block: per batch only a view is created.
        b = self.batch_size
        if rows == len(a) and rows <= b:
            return [a]  # a block of one batch (large batches): hand it over as it is
        full = rows // b
        parts = a[:full * b].reshape((full, b) + tuple(a.shape[1:]))
        out = list(parts.unbind(0) if self.output == "torch" else parts)
        if rows > full * b:
            out.append(a[full * b:rows])
        return out

    def _run(self, epoch: int) -> Iterator[Batch]:
        pipe = self._open_pipeline(epoch)
        new = tuple.__new__
        try:
            while True:
                block = pipe.next()
                if block is None:
                    break
                x, y, first_batch, num_batches, error = block
                rows = len(x) if error is None else (len(x) // self.batch_size) * self.batch_size
                xs = self._split(self._as_output(x, self._x_dtype), rows)
                if y is None:
                    for xb in xs:
                        yield new(Batch, (xb, None))
                else:
                    ys = self._split(self._as_output(y, self._y_dtype), rows)
                    for xb, yb in zip(xs, ys):
                        yield new(Batch, (xb, yb))
                if error is not None:
                    failed = first_batch + len(xs)
                    raise FeedError(f"assembling batch {failed} of epoch {epoch} failed at {error}")
            if self._closed:
                raise RuntimeError("the Feeder was closed during iteration")
        finally:
            pipe.close()

    # ----- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Stops every running iteration's threads. Idempotent."""
        self._closed = True
        for pipe in list(self._pipelines):
            pipe.close()

    def __enter__(self) -> "Feeder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Feeder(samples={self.num_samples}, window={self.window}, horizon={self.horizon}, "
                f"batch_size={self.batch_size}, batches={len(self)}, shuffle={self.shuffle}, output={self.output!r})")
