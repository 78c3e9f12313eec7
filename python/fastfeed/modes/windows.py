"""Windows: each sample is `window` steps of one series, with `horizon` target steps after it."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Iterator, List, Optional, Tuple

from .._core import SERIES_END, Assembler, Pipeline, WindowSpec, make_pairs
from ..arguments import INT64_MAX, check_bool, check_choice, check_int
from ..batch import Batch
from ..io.sources import SeriesSet, load_source
from ..run.views import chunked_batches
from ..spec import FeedSpec
from .base import Fields, Finish, Mode
from .common import (
    NO_NORM,
    Norm,
    advise_access,
    field_dtype,
    field_output,
    load_static,
    output_spec,
    resolve_dtypes,
    resolve_normalization,
    split_normalize,
)

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
    """Sliding windows over one series or a list of series (never across two series), with
    the fields forecasting models read beside them."""

    name = "windows"
    options: ClassVar[Dict[str, Any]] = {
        "window": None,
        "horizon": None,
        "target_shift": None,
        "targets": None,
        "covariates": None,
        "known": None,
        "static": None,
        "with_index": False,
        "sampling_rate": 1,
        "stride": 1,
        "start_index": 0,
        "end_index": None,
        "dtype": None,
        "normalize": None,
        "scale": None,
    }
    unit_name = "samples"
    elastic = True
    public_names = (
        "window",
        "horizon",
        "target_shift",
        "sampling_rate",
        "stride",
        "start_index",
        "end_index",
        "with_index",
        "scale",
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
        target_shift: Any,
        targets: Any,
        covariates: Any,
        known: Any,
        static: Any,
        with_index: Any,
        sampling_rate: Any,
        stride: Any,
        start_index: Any,
        end_index: Any,
        dtype: Any,
        normalize: Any,
        scale: Any,
    ) -> None:
        super().__init__(series, spec)
        self.window = check_int("window", window, 1)
        self.sampling_rate = check_int("sampling_rate", sampling_rate, 1)
        self.stride = check_int("stride", stride, 1)
        self.target_shift = None if target_shift is None else check_int("target_shift", target_shift, 1)
        self.horizon = _resolve_horizon(horizon, targets, self.target_shift)
        self.with_index = check_bool("with_index", with_index)
        self.scale = None if scale is None else check_choice("scale", scale, ("mean", "standard"))
        self.targets = load_aligned(series, targets, "targets")
        self.covariates = load_aligned(series, covariates, "covariates")
        self.known = load_aligned(series, known, "known")
        self.static = load_static(series, static)
        self.start_index, self.end_index = _resolve_range(series, start_index, end_index)
        reach = (self.window - 1 + (self.target_shift or self.horizon)) * self.sampling_rate + 1
        if reach > INT64_MAX:  # (the core counts steps in 64 bits)
            raise ValueError(
                f"window={self.window}, sampling_rate={self.sampling_rate} and "
                f"{'target_shift' if self.target_shift else 'horizon'}={self.target_shift or self.horizon} span "
                f"{reach} steps, more than any series can hold"
            )
        self.window_spec = WindowSpec(
            window=self.window,
            sampling_rate=self.sampling_rate,
            stride=self.stride,
            horizon=self.horizon,
            target_shift=self.target_shift or 0,
            start_index=self.start_index,
            end_index=SERIES_END if self.end_index is None else self.end_index,
        )
        self._check_span()
        self._resolve_outputs(dtype, normalize)
        self.assembler = self._make_assembler()
        advise_access(spec.shuffle, series, self.targets, self.covariates, self.known)
        if spec.check_finite == "skip":
            self.assembler.exclude_non_finite(spec.num_threads)
            self.skipped_samples = self.assembler.num_excluded
        self.num_samples = self.assembler.num_samples
        if self.num_samples == 0:
            if self.skipped_samples:
                raise ValueError(
                    f"check_finite='skip' dropped every sample: all {self.skipped_samples} touch a NaN or Inf"
                )
            raise ValueError(f"the configuration yields no sample: {self._span_text()}")
        self.layouts = list(self.assembler.layouts)
        self.attach_mixture()
        if spec.steps_per_epoch is not None and series.mixture is None and self.num_samples < spec.world_size:
            raise ValueError(
                f"steps_per_epoch with world_size={spec.world_size} streams every rank through an equal share "
                f"of each pass, but a pass has only {self.num_samples} samples"
            )
        self.batches_per_block = self._choose_batches_per_block()
        if spec.device_cache:
            self.attach_cache(spec.device)

    def _resolve_outputs(self, dtype: Any, normalize: Any) -> None:
        """The dtype and statistics of every field."""
        spec, series = self.spec, self.series
        present = ("x",) + tuple(name for name in ("covariates", "known") if getattr(self, name) is not None)
        asked = split_normalize(normalize, present)
        self._normalize_by_field = isinstance(normalize, dict)
        if self.scale is not None and "x" in asked:
            raise ValueError(
                f"scale={self.scale!r} and normalize on x exclude each other: scale rescales each window's "
                "inputs by its own statistics; drop one (normalize may still name 'covariates' or 'known')"
            )
        transform = "normalize" if "x" in asked else "scale" if self.scale is not None else None
        self.x_dtype, self.y_dtype = resolve_dtypes(series, dtype, transform, self.targets, spec.output)
        x_norm = self._field_norm("x", series, asked)
        y_norm = x_norm if self.targets is None else NO_NORM  # explicit targets are never normalised
        self.norms = (x_norm, y_norm)
        self.side_outputs: Dict[str, Any] = {}
        for name in ("covariates", "known"):
            field = getattr(self, name)
            if field is not None:
                norm = self._field_norm(name, field, asked)
                out = field_dtype(name, field.dtype, dtype, name in asked, spec.output)
                self.side_outputs[name] = (out, field.feat, norm)
        if self.static is not None:
            out = field_dtype("static", self.static.dtype, dtype, False, spec.output)
            self.side_outputs["static"] = (out, self.static.feat, NO_NORM)

    def _field_norm(self, name: str, field: SeriesSet, asked: Dict[str, Any]) -> Norm:
        end = SERIES_END if self.end_index is None else self.end_index
        norm = resolve_normalization(
            field, asked.get(name), self.spec.check_finite, self.start_index, end, name, self._normalize_by_field
        )
        if name in asked:
            self.normalized[name] = (norm, field.feat)
        return norm

    def _make_assembler(self) -> Any:
        outputs = {name: field_output(*out) for name, out in self.side_outputs.items()}
        static = self.side_outputs.get("static")
        read_targets = self.horizon > 0 or self.target_shift is not None
        return Assembler(
            list(self.series.items),
            list(self._target_source().items) if read_targets else [],
            window=self.window_spec,
            output=output_spec(
                self.x_dtype,
                self.y_dtype,
                *self.norms,
                self.series.feat,
                self._target_source().feat,
                self.spec.check_finite,
                with_index=self.with_index,
                static=None if static is None else static[:2],
            ),
            covariates=None if self.covariates is None else list(self.covariates.items),
            covariates_output=outputs.get("covariates", field_output("float32", (), NO_NORM)),
            known=None if self.known is None else list(self.known.items),
            known_output=outputs.get("known", field_output("float32", (), NO_NORM)),
            static=None if self.static is None else self.static.items[0],
            scale=self.scale or "",
        )

    def attach_cache(self, device: Any) -> None:
        """Keeps the whole source on `device` and gathers batches there (tests use a CPU device)."""
        from ..device.cache import SourceCache, check_cacheable

        beside = [f"{n}=" for n in self.side_outputs] + [
            name
            for name, on in (
                ("with_index=True", self.with_index),
                (f"scale={self.scale!r}", self.scale),
                (f"target_shift={self.target_shift}", self.target_shift),
                ("check_finite='mask'", self.spec.check_finite == "mask"),
            )
            if on
        ]
        if beside:
            raise ValueError(
                f"device_cache=True gathers windows and their horizon on the GPU; {', '.join(beside)} "
                "need device_cache=False (batches are then assembled on the CPU and uploaded)"
            )
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
        after = f"target_shift={self.target_shift}" if self.target_shift is not None else f"horizon={self.horizon}"
        return (
            f"a window of {self.window} steps with sampling_rate={self.sampling_rate} and "
            f"{after} spans {self.window_spec.span} steps"
        )

    def _check_span(self) -> None:
        span, lengths = self.window_spec.span, self.series.lengths
        if not self.series.single:
            ranges = [series_range(n, self.start_index, self.end_index) for n in lengths]
            longest = max(hi - lo for lo, hi in ranges)
            if span > longest:
                where = (
                    ""
                    if (self.start_index, self.end_index) == (0, None)
                    else f" of start_index={self.start_index}, end_index={self.end_index}"
                )
                raise ValueError(
                    f"{self._span_text()}, longer than every series' range{where} (the longest range holds "
                    f"{longest} steps; the series have {min(lengths)} to {max(lengths)})"
                )
            return
        lo, hi = series_range(lengths[0], self.start_index, self.end_index)
        if span > lengths[0]:
            raise ValueError(f"{self._span_text()}, longer than the series ({lengths[0]} steps)")
        if span > hi - lo:
            raise ValueError(
                f"{self._span_text()}, longer than steps [{lo}, {hi}) ({hi - lo} steps) selected by "
                f"start_index={self.start_index}, end_index={self.end_index}"
            )

    # ----- sizes -------------------------------------------------------------------------

    def units(self) -> int:
        return int(self.assembler.units)

    def batch_bytes(self) -> int:
        return sum(int(layout[3]) for layout in self.layouts) * self.spec.batch_size

    def block_bytes(self) -> int:
        return self.batches_per_block * self.batch_bytes()

    def largest_batch(self) -> Tuple[int, str]:
        return self.batch_bytes(), f"batch_size={self.spec.batch_size} with window={self.window}"

    def field_dtypes(self) -> Dict[str, str]:
        return {name: dtype for name, dtype, _, _ in self.layouts}

    def _choose_batches_per_block(self) -> int:
        spec = self.spec
        block = _CACHE_BLOCK_BYTES if spec.device_cache else _UPLOAD_BLOCK_BYTES if spec.on_gpu else _BLOCK_BYTES
        per_block = block // max(1, self.batch_bytes())
        if not spec.device_cache:  # (with device_cache the workers only draw sample numbers)
            per_block = min(per_block, _BLOCK_SAMPLES // spec.batch_size)
        return max(1, min(self.sizes().batches_per_epoch, per_block))

    # ----- feeding -----------------------------------------------------------------------

    def open_pipeline(self, run: Any) -> Any:
        return Pipeline.windows(self.assembler, order=self.order, run=run, mix=self.mix_order)

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
        if len(out) > 2 or ("y" not in out and len(out) > 1):  # fields beside x and y: batches by name
            names = list(out)
            chunks = zip(*(chunked_batches(out[n], rows, total, b) for n in names))
            for parts in chunks:
                yield [Batch.of_fields(dict(zip(names, views))) for views in zip(*parts)]
            return
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
        config: Dict[str, Any] = {
            "window": self.window,
            "horizon": self.horizon,
            "sampling_rate": self.sampling_rate,
            "stride": self.stride,
            "start_index": self.start_index,
            "end_index": self.end_index,
        }
        # Options added later are recorded only when on, so that states saved before them still load
        # (with_index is not among them: it adds fields, and changes neither the samples nor their order).
        beside = {name: [out[0], list(out[1])] for name, out in self.side_outputs.items()}
        # Virtual epochs on several ranks give every rank an equal share of each pass (the order of
        # releases before this one gave the leftovers to the first ranks).
        equal = self.spec.steps_per_epoch is not None and self.spec.world_size > 1 and self.series.mixture is None
        for key, value in (
            ("stream_shares", "equal" if equal else None),
            ("target_shift", self.target_shift),
            ("scale", self.scale),
            ("fields", beside or None),
        ):
            if value is not None:
                config[key] = value
        return config

    def component_units(self) -> List[Tuple[int, int]]:
        parts = self.series.mixture
        assert parts is not None
        bounds = [sum(parts.series_counts[:i]) for i in range(len(parts.series_counts) + 1)]
        firsts = [int(self.assembler.first_sample_of(s)) for s in bounds]
        return [(firsts[i], firsts[i + 1] - firsts[i]) for i in range(len(parts.series_counts))]

    def norm_values(self) -> Tuple[Norm, ...]:
        return self.norms + tuple(out[2] for out in self.side_outputs.values())

    def target_set(self) -> Optional[SeriesSet]:
        return self.targets

    def side_sets(self) -> Tuple[SeriesSet, ...]:
        return tuple(s for s in (self.covariates, self.known, self.static) if s is not None)

    def describe(self) -> str:
        after = f"target_shift={self.target_shift}" if self.target_shift is not None else f"horizon={self.horizon}"
        beside = "".join(f", {name}" for name in self.side_outputs)
        return f"window={self.window}, {after}{beside}"


def _resolve_horizon(horizon: Any, targets: Any, target_shift: Optional[int]) -> int:
    if target_shift is not None:
        if horizon is not None and horizon != 0:
            raise ValueError(
                f"target_shift={target_shift} and horizon={horizon} exclude each other: with target_shift the "
                "targets are the window shifted by that many steps; drop horizon"
            )
        return 0
    if horizon is None:
        return 1 if targets is not None else 0
    h = check_int("horizon", horizon, 0)
    if h == 0 and targets is not None:
        raise ValueError("horizon=0 with targets: there would be no target steps; pass horizon >= 1 or drop targets")
    return h


def load_aligned(series: SeriesSet, data: Any, name: str) -> Optional[SeriesSet]:
    """A field aligned step for step with the source (targets, covariates, known), or None."""
    if data is None:
        return None
    t = load_source(data, name)
    if t.single != series.single or t.count != series.count:

        def kind(x: SeriesSet) -> str:
            return "one series (an array or .npy file)" if x.single else f"a list of {x.count} series"

        raise ValueError(f"{name} must be aligned with the source: the source is {kind(series)}, {name} are {kind(t)}")
    for i, (a, b) in enumerate(zip(series.lengths, t.lengths)):
        if a != b:
            where = "" if t.single else f" of series {i}"
            raise ValueError(f"{name}{where} have {b} steps but the source has {a}; they must be aligned step for step")
    return t


def series_range(length: int, start: int, end: Optional[int]) -> Tuple[int, int]:
    """Steps [lo, hi) of a series of `length` steps that start_index/end_index select, read as
    Python's slicing reads them (negative: from the end; past an end: that end)."""
    lo, hi, _ = slice(start, end).indices(length)
    return lo, max(lo, hi)


def _resolve_range(series: SeriesSet, start_index: Any, end_index: Any) -> Tuple[int, Optional[int]]:
    """start_index and end_index as given, checked: any integers on a list of series (each series
    reads them for itself); within the series on a single one."""
    start = check_int("start_index", start_index, -INT64_MAX)
    end = None if end_index is None else check_int("end_index", end_index, -INT64_MAX)
    if not series.single:
        return start, end
    length = series.lengths[0]
    if not -length <= start < length:
        raise ValueError(
            f"start_index={start} is out of range for a series of {length} steps (from {-length} to {length - 1})"
        )
    if end is not None:
        if not -length <= end <= length:
            raise ValueError(
                f"end_index={end} is out of range for a series of {length} steps (end_index is exclusive: from "
                f"{-length} to {length})"
            )
        lo, hi = series_range(length, start, end)
        if hi <= lo:
            raise ValueError(
                f"end_index={end} must be after start_index={start}: they select steps [{lo}, {hi}) of the "
                f"{length}-step series"
            )
    return start, end
