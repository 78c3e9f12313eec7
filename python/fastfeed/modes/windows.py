"""Windows: each sample is `window` steps of one series, with `horizon` target steps after it."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Tuple

from .._core import Assembler, Pipeline, WindowSpec, make_pairs, non_finite_steps
from ..arguments import check_int
from ..batch import Batch
from ..dtypes import numpy_storage
from ..io.sources import SeriesSet, load_source
from ..run.views import chunked_batches
from ..spec import FeedSpec
from .base import Fields, Finish, Mode
from .common import NO_NORM, advise_access, output_spec, resolve_dtypes, resolve_normalization

# Small batches travel from the workers in blocks of about this many bytes, so the hand-over
# costs nothing per batch; batches larger than this travel one per block.
_BLOCK_BYTES = 256 * 1024
# ... and at most this many samples: a shuffled window touches at least a page of its file,
# however few bytes it has. A 256 KB block of 4-byte windows faulted in 65,536 pages of a cold
# 8 GiB file (a third of a second, and 256 MB resident) before its first batch could go, and
# eight such blocks prefetched held 2 GB of the file in memory.
_BLOCK_SAMPLES = 4096
# On a GPU each block costs one host-to-device copy (device="cuda") or one gather launch
# (device_cache=True), tens of microseconds of fixed cost each: bigger blocks amortise them.
# On an H100, W2 gathers ran at 0.45x a device copy's speed in 64 MB blocks, 0.77x in 256 MB.
_UPLOAD_BLOCK_BYTES = 4 << 20
_CACHE_BLOCK_BYTES = 256 << 20


class WindowMode(Mode):
    """Sliding windows over one series or a list of series (never across two series)."""

    name = "windows"
    options: ClassVar[Dict[str, Any]] = {
        "window": None,
        "horizon": None,
        "targets": None,
        "sampling_rate": 1,
        "stride": 1,
        "start_index": 0,
        "end_index": None,
        "dtype": None,
        "normalize": None,
    }
    unit_name = "samples"
    public_names = (
        "window",
        "horizon",
        "sampling_rate",
        "stride",
        "start_index",
        "end_index",
        "num_samples",
        "skipped_samples",
    )
    foreign_options_why = "to whole sequences (window=None); windows all have the same length and are never padded"

    def __init__(
        self,
        series: SeriesSet,
        spec: FeedSpec,
        *,
        window: Any,
        horizon: Any,
        targets: Any,
        sampling_rate: Any,
        stride: Any,
        start_index: Any,
        end_index: Any,
        dtype: Any,
        normalize: Any,
    ) -> None:
        super().__init__(series, spec)
        self.window = check_int("window", window, 1)
        self.sampling_rate = check_int("sampling_rate", sampling_rate, 1)
        self.stride = check_int("stride", stride, 1)
        self.horizon = _resolve_horizon(horizon, targets)
        self.targets = _load_targets(series, targets)
        self.start_index, self.end_index = _resolve_range(series, start_index, end_index)
        self.window_spec = WindowSpec(
            window=self.window,
            sampling_rate=self.sampling_rate,
            stride=self.stride,
            horizon=self.horizon,
            start_index=self.start_index,
            end_index=-1 if self.end_index is None else self.end_index,
        )
        self._check_span()
        self.x_dtype, self.y_dtype = resolve_dtypes(series, dtype, normalize, self.targets, spec.output)
        x_norm = resolve_normalization(series, normalize, spec, self.start_index, self.window_spec.end_index)
        y_norm = x_norm if self.targets is None else NO_NORM  # explicit targets are never normalised
        self.norms = (x_norm, y_norm)
        self.assembler = Assembler(
            list(series.items),
            list(self._target_source().items) if self.horizon > 0 else [],
            window=self.window_spec,
            output=output_spec(
                self.x_dtype,
                self.y_dtype,
                x_norm,
                y_norm,
                series.feat,
                self._target_source().feat,
                spec.check_finite == "raise",
            ),
        )
        advise_access(spec.shuffle, series, self.targets)
        if spec.check_finite == "skip":
            self._exclude_non_finite()
        self.num_samples = self.assembler.num_samples
        if self.num_samples == 0:
            if self.skipped_samples:
                raise ValueError(
                    f"check_finite='skip' dropped every sample: all {self.skipped_samples} touch a NaN or Inf"
                )
            raise ValueError(f"the configuration yields no sample: {self._span_text()}")
        self.batches_per_block = self._choose_batches_per_block()
        if spec.device_cache:
            self.attach_cache(spec.device)

    def attach_cache(self, device: Any) -> None:
        """Keeps the whole source on `device` and gathers batches there (tests use a CPU device)."""
        from ..device.cache import SourceCache, check_cacheable

        targets = self.targets
        check_cacheable(
            [
                ("source", self.series.dtype),
                ("targets", targets.dtype if targets is not None else None),
                ("output", self.x_dtype),
                ("target output", self.y_dtype),
            ]
        )
        read = targets if self.horizon > 0 and targets is not None else None
        self.cache = SourceCache(
            list(self.series.items),
            None if read is None else list(read.items),
            self.series.feat,
            self._target_source().feat,
            device,
            self.window,
            self.sampling_rate,
            self.horizon,
            self.x_dtype,
            self.y_dtype,
            *self.norms,
        )

    # ----- checks ------------------------------------------------------------------------

    def _target_source(self) -> SeriesSet:
        return self.targets if self.targets is not None else self.series

    def _span_text(self) -> str:
        return (
            f"a window of {self.window} steps with sampling_rate={self.sampling_rate} and "
            f"horizon={self.horizon} spans {self.window_spec.span} steps"
        )

    def _check_span(self) -> None:
        span, lengths = self.window_spec.span, self.series.lengths
        if not self.series.single:
            if span > max(lengths):
                raise ValueError(
                    f"{self._span_text()}, longer than every series (the longest has {max(lengths)} steps)"
                )
            return
        end = lengths[0] if self.end_index is None else self.end_index
        if span > lengths[0]:
            raise ValueError(f"{self._span_text()}, longer than the series ({lengths[0]} steps)")
        if span > end - self.start_index:
            raise ValueError(
                f"{self._span_text()}, longer than steps [{self.start_index}, {end}) "
                f"({end - self.start_index} steps) selected by start_index/end_index"
            )

    def _exclude_non_finite(self) -> None:
        threads = self.spec.num_threads
        bad = non_finite_steps(list(self.series.items), threads)
        bad_targets = bad if self.targets is None else non_finite_steps(list(self.targets.items), threads)
        self.assembler.exclude_touching(bad, bad_targets)
        self.skipped_samples = self.assembler.num_excluded

    # ----- sizes -------------------------------------------------------------------------

    def units(self) -> int:
        return int(self.assembler.units)

    def batch_bytes(self) -> int:
        x = self.window * math.prod(self.series.feat) * numpy_storage(self.x_dtype).itemsize
        y = self.horizon * math.prod(self._target_source().feat) * numpy_storage(self.y_dtype).itemsize
        return (x + y) * self.spec.batch_size

    def block_bytes(self) -> int:
        return self.batches_per_block * self.batch_bytes()

    def largest_batch(self) -> Tuple[int, str]:
        return self.batch_bytes(), f"batch_size={self.spec.batch_size} with window={self.window}"

    def _choose_batches_per_block(self) -> int:
        spec = self.spec
        block = _CACHE_BLOCK_BYTES if spec.device_cache else _UPLOAD_BLOCK_BYTES if spec.on_gpu else _BLOCK_BYTES
        per_block = block // max(1, self.batch_bytes())
        if not spec.device_cache:  # (with device_cache the workers only draw sample numbers)
            per_block = min(per_block, _BLOCK_SAMPLES // spec.batch_size)
        return max(1, min(self.sizes().batches_per_epoch, per_block))

    # ----- feeding -----------------------------------------------------------------------

    def open_pipeline(self, run: Any) -> Any:
        return Pipeline.windows(self.assembler, order=self.order, run=run)

    def files_changed(self) -> str:
        return str(self.assembler.files_changed())

    def batches(self, fields: Fields, failed: bool, finish: Finish) -> Iterator[List[Batch]]:
        """Batches of views into the block's arrays, made a chunk at a time (run/views.py)."""
        if self.cache is not None:  # the block holds sample starts: gather them on the device
            x, y = self.cache.gather(fields["starts"])
            fields = {"x": x} if y is None else {"x": x, "y": y}
        total = len(fields["x"])
        out = finish(fields)
        b = self.spec.batch_size
        rows = (total // b) * b if failed else total  # after a failure: the whole batches before it
        xs = chunked_batches(out["x"], rows, total, b)
        if "y" not in out:
            for x_chunk in xs:
                yield make_pairs(Batch, x_chunk, (None,) * len(x_chunk))
            return
        ys = chunked_batches(out["y"], rows, total, b)
        for x_chunk, y_chunk in zip(xs, ys):
            yield make_pairs(Batch, x_chunk, y_chunk)

    # ----- resuming ----------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        return {
            "window": self.window,
            "horizon": self.horizon,
            "sampling_rate": self.sampling_rate,
            "stride": self.stride,
            "start_index": self.start_index,
            "end_index": self.end_index,
        }

    def target_set(self) -> Optional[SeriesSet]:
        return self.targets

    def describe(self) -> str:
        return f"window={self.window}, horizon={self.horizon}"


def _resolve_horizon(horizon: Any, targets: Any) -> int:
    if horizon is None:
        return 1 if targets is not None else 0
    h = check_int("horizon", horizon, 0)
    if h == 0 and targets is not None:
        raise ValueError("horizon=0 with targets: there would be no target steps; pass horizon >= 1 or drop targets")
    return h


def _load_targets(series: SeriesSet, targets: Any) -> Optional[SeriesSet]:
    """Explicit targets, aligned step for step with the source."""
    if targets is None:
        return None
    t = load_source(targets, "targets")
    if t.single != series.single or t.count != series.count:

        def kind(x: SeriesSet) -> str:
            return "one series (an array or .npy file)" if x.single else f"a list of {x.count} series"

        raise ValueError(
            f"targets must be aligned with the source: the source is {kind(series)}, targets are {kind(t)}"
        )
    for i, (a, b) in enumerate(zip(series.lengths, t.lengths)):
        if a != b:
            where = "" if t.single else f" of series {i}"
            raise ValueError(
                f"targets{where} have {b} steps but the source has {a}; they must be aligned step for step"
            )
    return t


def _resolve_range(series: SeriesSet, start_index: Any, end_index: Any) -> Tuple[int, Optional[int]]:
    start = check_int("start_index", start_index, 0)
    end = None if end_index is None else check_int("end_index", end_index, 0)
    if not series.single:
        if start != 0 or end is not None:
            raise ValueError("start_index/end_index restrict a single series; the source is a list of series")
        return start, end
    length = series.lengths[0]
    if start >= length:
        raise ValueError(f"start_index={start} is out of range for a series of {length} steps")
    if end is not None:
        if end > length:
            raise ValueError(
                f"end_index={end} is out of range for a series of {length} steps (end_index is "
                f"exclusive, at most {length})"
            )
        if end <= start:
            raise ValueError(f"end_index={end} must be greater than start_index={start}")
    return start, end
