"""`Feeder`: batches of windows or whole sequences, assembled ahead by the native core."""
from __future__ import annotations

import logging
import math
import os
import sys
import time
import weakref
from typing import Any, Dict, Generator, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import _core
from .batch import Batch, PaddedBatch
from .dtypes import FLOATING, dtype_name, numpy_storage
from .device import DeviceUploader, cuda_device_ready
from .source_cache import CACHEABLE, SequenceCache, SourceCache
from .errors import FeedError
from .sources import SeriesSet, Source, load_source
from .state import data_digest, make_state, normalization_digest, read_state
from .stats import FeedStats, StatsRecorder
from .handout import Cursor, EpochIterator
from .views import chunked_batches

logger = logging.getLogger("fastfeed")

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
# Default prefetch depth in bytes (see Feeder._default_prefetch).
_PREFETCH_BYTES = 32 << 20
# Position of each output in the tuples the core hands over (csrc/block.hpp, enum Output).
_X, _Y, _MASK, _LENGTHS, _SEGMENT_IDS, _POSITION_IDS, _CU_SEQLENS = range(7)
_DEFAULT_BUCKET_POOL = 256  # batches per sorted pool: <2% padding on lognormal(sigma=1) lengths


def _counted(batches: Iterator[Batch], bar: Any) -> Iterator[Batch]:
    """`batches`, moving a progress bar on by one after each is handed out."""
    for batch in batches:
        yield batch
        bar.update(1)


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


def _choice(name: str, value: Any, options: Tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be {' or '.join(repr(o) for o in options)}, got {value!r}")
    return value


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _distributed_defaults() -> Tuple[int, int]:
    """(rank, world_size) of an initialised torch.distributed group, else (0, 1)."""
    if "torch" not in sys.modules:  # a process that never imported torch has no process group,
        return 0, 1                 # and importing it here would cost a second and 200 MB
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Feeder:
    """Batches of sliding windows over series, or of whole sequences, in order or shuffled.

    ``Feeder(source, window=w, horizon=h, batch_size=b)`` yields :class:`Batch` objects whose
    ``x`` has shape ``(b, w, *feat)`` and ``y`` shape ``(b, h, *feat)``. With ``window=None`` on a
    list of sequences (or a dataset directory) each sample is one whole sequence, padded to the
    longest in its batch (or to ``max_len``) with ``batch.mask`` and ``batch.lengths``, or packed
    into rows with ``pack=True``. See SPEC sections 1-6.
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
        max_len: Optional[int] = None,
        pad_multiple: int = 1,
        padding_side: str = "right",
        truncation_side: str = "right",
        pad_value: Union[int, float, bool] = 0,
        bucket: bool = False,
        bucket_pool: Optional[int] = None,
        pack: bool = False,
        steps_per_epoch: Optional[int] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        output: Optional[str] = None,
        device: str = "cpu",
        device_cache: bool = False,
        num_threads: Optional[int] = None,
        prefetch: Optional[int] = None,
        check_finite: Union[bool, str] = False,
        progress: bool = False,
    ) -> None:
        self._closed = False
        self._pipelines: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._series = load_source(source, "source")
        self.sequences = window is None
        if self.sequences and self._series.single:
            raise ValueError("window is required for a single series (window=None means whole sequences of a list "
                             "of sequences or a dataset directory)")
        self.batch_size = _int_arg("batch_size", batch_size, 1)
        self.seed = _int_arg("seed", seed, -(2**63))
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.steps_per_epoch = None if steps_per_epoch is None else _int_arg("steps_per_epoch", steps_per_epoch, 1)
        self.rank, self.world_size = self._resolve_ranks(rank, world_size)
        self.output = self._resolve_output(output)
        self.check_finite = self._resolve_check_finite(check_finite)
        self.device = self._resolve_device(device, device_cache)
        self.device_cache = bool(device_cache)
        self._cache: Optional[SourceCache] = None
        self.progress = bool(progress)
        self.num_threads = self._default_threads() if num_threads is None else _int_arg("num_threads", num_threads, 1)
        self.skipped_samples = 0  # samples dropped by check_finite="skip"
        self._source_args = dict(
            source=source, window=window, horizon=horizon, targets=targets, sampling_rate=sampling_rate,
            stride=stride, start_index=start_index, end_index=end_index, dtype=dtype, normalize=normalize,
            max_len=max_len, pad_multiple=pad_multiple, padding_side=padding_side, truncation_side=truncation_side,
            pad_value=pad_value, bucket=bucket, bucket_pool=bucket_pool, pack=pack)
        self._setup_source()
        self.prefetch = self._default_prefetch() if prefetch is None else _int_arg("prefetch", prefetch, 1)
        self._next_epoch = 0
        self.epoch = 0
        self._running = False  # an iteration is under way: _running_epoch, _delivered batches so far
        self._running_epoch = 0
        self._cursor = Cursor(0)
        self._count_from = 0  # batches of the running epoch before this are not counted (reset_stats)
        self._open_block: Optional[tuple] = None  # (start, batches, rows, bytes) of the block being handed out
        self._resume: Optional[Tuple[int, int]] = None    # where a loaded state says to go on
        self._fingerprint_cache: Optional[Dict[str, Any]] = None
        self._stats = StatsRecorder()

    def _default_threads(self) -> int:
        """Every core for assembling on the CPU. Feeding a GPU leaves two cores to the training
        loop and the copy engine's driver work. With device_cache the workers only draw sample
        starts (about 85 ns each, shuffled): half the cores, up to 8, outrun the GPU's gathers."""
        cores = _cpu_count()
        if self.device_cache:
            return min(8, max(2, cores // 2), cores)
        return max(1, cores - 2) if self.device != "cpu" else cores

    def _default_prefetch(self) -> int:
        """Two blocks per thread, and at least ~32 MB of batches (up to 8 blocks): enough slack
        that a worker delayed for a few milliseconds (a busy or shared machine) does not make
        the training loop wait, without holding more than a few large batches."""
        block = self._batches_per_block * self._batch_bytes() if not self.sequences else self._batch_bytes_estimate()
        return max(2 * self.num_threads, min(8, -(-_PREFETCH_BYTES // max(1, block))))

    def _batch_bytes_estimate(self) -> int:
        """A typical padded batch: batch_size sequences of the mean (or max_len) length."""
        steps = self.max_len or max(1, int(self._lengths.mean()) if len(self._lengths) else 1)
        row = math.prod(self._series.feat) * numpy_storage(self._x_dtype).itemsize
        return self.batch_size * steps * max(1, row)

    def _setup_source(self) -> None:
        """Everything that depends on the data: run at construction, and again when a dataset
        directory grew (an append shows from the next epoch on)."""
        a = self._source_args
        if self.sequences:
            self._init_sequences(a["horizon"], a["targets"], a["sampling_rate"], a["stride"], a["start_index"],
                                 a["end_index"], a["dtype"], a["normalize"], a["max_len"], a["pad_multiple"],
                                 a["padding_side"], a["truncation_side"], a["pad_value"], a["bucket"],
                                 a["bucket_pool"], a["pack"])
        else:
            self._refuse_sequence_options(a["max_len"], a["pad_multiple"], a["padding_side"], a["truncation_side"],
                                          a["pad_value"], a["bucket"], a["bucket_pool"], a["pack"])
            self._init_windows(a["window"], a["horizon"], a["targets"], a["sampling_rate"], a["stride"],
                               a["start_index"], a["end_index"], a["dtype"], a["normalize"])
        if self._per_rank() == 0:
            raise ValueError(
                f"world_size={self.world_size} leaves rank {self.rank} nothing: a pass has only {self._pass_units()} "
                f"{self._unit_name()}, and ranks read disjoint shares with the same number of batches")
        # Virtual epochs run on item by item (windows, sequences or packed rows), so even a pass
        # without a whole batch feeds them; bucketed sequences are batched within each pass first,
        # so there every pass needs a batch.
        streamed = self.steps_per_epoch is not None and not (self.sequences and self.bucket)
        if not streamed and self._batches_per_pass() == 0:
            raise ValueError(
                f"drop_last=True with batch_size={self.batch_size} leaves no batch: there are only "
                f"{self._per_rank()} {self._unit_name()}{' for this rank' if self.world_size > 1 else ''}")

    def _reload_if_grown(self) -> None:
        """A dataset directory someone appended to: feed the new sequences from this epoch on."""
        info = self._series.dataset
        if info is None:
            return
        from .dataset import committed_sequences

        if committed_sequences(info.path) == info.num_sequences:  # the header alone: no offsets read
            return
        self._series = load_source(self._source_args["source"], "source")
        self._setup_source()
        self._fingerprint_cache = None
        logger.info("fastfeed: %s grew from %d to %d sequences", info.path, info.num_sequences, self._series.count)

    # ----- argument resolution: shared ---------------------------------------------------

    def _resolve_ranks(self, rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
        default_rank, default_world = _distributed_defaults() if rank is None or world_size is None else (0, 1)
        world = default_world if world_size is None else _int_arg("world_size", world_size, 1)
        r = default_rank if rank is None else _int_arg("rank", rank, 0)
        if r >= world:
            raise ValueError(f"rank={r} is out of range for world_size={world} (ranks are 0..{world - 1})")
        return r, world

    @staticmethod
    def _resolve_output(output: Optional[str]) -> str:
        if output is None:
            return "torch" if _torch_available() else "numpy"
        _choice("output", output, ("torch", "numpy"))
        if output == "torch" and not _torch_available():
            raise ValueError("output='torch' needs PyTorch: pip install torch")
        return output

    def _resolve_device(self, device: Any, device_cache: bool) -> str:
        name = str(device)
        if name == "cpu":
            if device_cache:
                raise ValueError("device_cache=True needs a CUDA device (device='cuda'); the data stays in host "
                                 "memory with device='cpu'")
            return name
        if not (name == "cuda" or name.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:n]', got {device!r}")
        why = cuda_device_ready(name)
        if why is not None:
            raise ValueError(f"device={name!r}: {why}; use device='cpu'")
        if self.output != "torch":
            raise ValueError(f"device={name!r} yields torch tensors: it needs output='torch', not {self.output!r}")
        if device_cache and self.check_finite == "raise":
            raise ValueError("device_cache=True gathers on the GPU, where no sample is checked: use "
                             "check_finite='skip' (one scan of the source when the Feeder is made) or False")
        return name

    @staticmethod
    def _resolve_check_finite(check_finite: Any) -> Union[bool, str]:
        if check_finite is False or check_finite is None:
            return False
        if check_finite is True or check_finite == "raise":
            return "raise"
        if check_finite == "skip":
            return "skip"
        raise ValueError(f"check_finite must be False, 'raise' or 'skip', got {check_finite!r}")

    def _resolve_dtypes(self, dtype: Any, normalize: Any, targets: Optional[SeriesSet]) -> Tuple[str, str]:
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
        if targets is None:
            return x, x  # targets are the source itself: treated the same way
        t = targets.dtype
        # Floating targets follow `dtype`; integer or bool targets (labels) keep theirs.
        return x, (x if dtype is not None and t in FLOATING and x in FLOATING else t)

    def _standard_stats(self, start: int, end: int) -> Tuple[List[float], List[float]]:
        mean, std, _ = _core.moments(list(self._series.items), start, end, self.check_finite == "skip")
        return mean, [s if s > 0 else 1.0 for s in std]  # constant features are centred, not scaled

    def _resolve_normalization(self, normalize: Any, start: int = 0, end: int = -1) -> Tuple[list, list]:
        if normalize is None:
            return [], []
        feat, width = self._series.feat, self._series.row_elems
        if isinstance(normalize, str):
            if normalize != "standard":
                raise ValueError(f"normalize must be 'standard' or (mean, std), got {normalize!r}")
            return self._standard_stats(start, end)
        try:
            mean_in, std_in = normalize
        except (TypeError, ValueError) as e:
            raise ValueError("normalize must be 'standard' or a pair (mean, std)") from e
        try:
            mean = np.broadcast_to(np.asarray(mean_in, np.float64), feat).reshape(width).tolist()
            std = np.broadcast_to(np.asarray(std_in, np.float64), feat).reshape(width).tolist()
        except ValueError as e:
            raise ValueError(f"normalize=(mean, std) must broadcast to the feature shape {feat}") from e
        if not all(s > 0 and math.isfinite(s) for s in std):
            raise ValueError(f"normalize=(mean, std): every std must be > 0 and finite, got {std_in!r}")
        if not all(math.isfinite(m) for m in mean):
            raise ValueError(f"normalize=(mean, std): every mean must be finite, got {mean_in!r}")
        return mean, std

    def _advise_access(self, targets: Optional[SeriesSet]) -> None:
        # Shuffled epochs touch pages at random: read-around would only waste I/O and memory.
        for s in (self._series, targets):
            for item in (s.items if s is not None else ()):
                if hasattr(item, "advise_random_access"):
                    item.advise_random_access(self.shuffle)

    # ----- windows -----------------------------------------------------------------------

    def _refuse_sequence_options(self, max_len: Any, pad_multiple: Any, padding_side: Any, truncation_side: Any,
                                 pad_value: Any, bucket: Any, bucket_pool: Any, pack: Any) -> None:
        given = [name for name, value, default in (
            ("max_len", max_len, None), ("pad_multiple", pad_multiple, 1), ("padding_side", padding_side, "right"),
            ("truncation_side", truncation_side, "right"), ("pad_value", pad_value, 0), ("bucket", bucket, False),
            ("bucket_pool", bucket_pool, None), ("pack", pack, False)) if value != default]
        if given:
            raise ValueError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to whole sequences "
                             "(window=None); windows all have the same length and are never padded")

    def _init_windows(self, window: Any, horizon: Any, targets: Any, sampling_rate: Any, stride: Any,
                      start_index: Any, end_index: Any, dtype: Any, normalize: Any) -> None:
        self.window = _int_arg("window", window, 1)
        self.sampling_rate = _int_arg("sampling_rate", sampling_rate, 1)
        self.stride = _int_arg("stride", stride, 1)
        self.horizon = self._resolve_horizon(horizon, targets)
        self._targets = self._load_window_targets(targets)
        self.start_index, self.end_index = self._resolve_range(start_index, end_index)
        self._check_span()
        self._x_dtype, self._y_dtype = self._resolve_dtypes(dtype, normalize, self._targets)
        end = -1 if self.end_index is None else self.end_index
        x_norm = self._resolve_normalization(normalize, self.start_index, end)
        y_norm = x_norm if self._targets is None else ([], [])
        self._assembler = _core.Assembler(
            list(self._series.items),
            list(self._target_series().items) if self.horizon > 0 else [],
            self.window, self.sampling_rate, self.stride, self.horizon,
            self.start_index, end, self._x_dtype, self._y_dtype, *x_norm, *y_norm,
            check_finite=self.check_finite == "raise",
        )
        self._norms = (x_norm, y_norm)
        self._advise_access(self._targets)
        if self.check_finite == "skip":
            bad = _core.non_finite_steps(list(self._series.items), self.num_threads)
            bad_targets = bad if self._targets is None else _core.non_finite_steps(list(self._targets.items),
                                                                                   self.num_threads)
            self._assembler.exclude_touching(bad, bad_targets)
            self.skipped_samples = self._assembler.num_excluded
        self.num_samples: int = self._assembler.num_samples
        if self.num_samples == 0:
            if self.skipped_samples:
                raise ValueError(f"check_finite='skip' dropped every sample: all {self.skipped_samples} touch a NaN or Inf")
            raise ValueError(f"the configuration yields no sample: {self._span_text()}")
        block = _CACHE_BLOCK_BYTES if self.device_cache else _UPLOAD_BLOCK_BYTES if self.device != "cpu" else _BLOCK_BYTES
        per_block = block // max(1, self._batch_bytes())
        if not self.device_cache:  # (with device_cache the workers only draw sample numbers)
            per_block = min(per_block, _BLOCK_SAMPLES // self.batch_size)
        self._batches_per_block = max(1, min(len(self), per_block))
        if self.device_cache:
            self._attach_cache(self.device)

    def _attach_cache(self, device: Any) -> None:
        """Keeps the whole source on `device` (device_cache=True); tests use a CPU device."""
        extra = self._step_targets if self.sequences else self._targets
        labels = self._labels if self.sequences else None
        for what, dt in (("source", self._series.dtype), ("targets", extra and extra.dtype),
                         ("labels", labels and labels.dtype), ("output", self._x_dtype),
                         ("target output", self._y_dtype)):
            if dt and dt not in CACHEABLE and not (what.endswith("output") and dt == "bfloat16"):
                raise ValueError(f"device_cache=True: the {what} dtype {dt} cannot be gathered on a GPU "
                                 f"(supported: {', '.join(CACHEABLE)}, and bfloat16 for outputs)")
        if self.sequences:
            x_feat, y_feat = self._seq_tails()
            self._cache = SequenceCache(
                list(self._series.items), None if extra is None else list(extra.items), self._series.lengths,
                x_feat, y_feat, device, self._x_dtype, self._y_dtype, self._norms[0], self.pad_value, self.pack,
                self.max_len or 0, self.pad_multiple)
            return
        t = extra if self.horizon > 0 and extra is not None else None
        self._cache = SourceCache(
            list(self._series.items), None if t is None else list(t.items), self._series.feat,
            self._target_series().feat, device, self.window, self.sampling_rate, self.horizon,
            self._x_dtype, self._y_dtype, *self._norms)

    @staticmethod
    def _resolve_horizon(horizon: Optional[int], targets: Any) -> int:
        if horizon is None:
            return 1 if targets is not None else 0
        h = _int_arg("horizon", horizon, 0)
        if h == 0 and targets is not None:
            raise ValueError("horizon=0 with targets: there would be no target steps; pass horizon >= 1 or drop targets")
        return h

    def _load_window_targets(self, targets: Any) -> Optional[SeriesSet]:
        if targets is None:
            return None
        t = load_source(targets, "targets")
        if t.single != self._series.single or t.count != self._series.count:
            def kind(x: SeriesSet) -> str:
                return "one series (an array or .npy file)" if x.single else f"a list of {x.count} series"
            raise ValueError(f"targets must be aligned with the source: the source is {kind(self._series)}, "
                             f"targets are {kind(t)}")
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

    def _x_tail(self) -> Tuple[int, ...]:
        return (self.window,) + self._series.feat

    def _y_tail(self) -> Tuple[int, ...]:
        return (self.horizon,) + self._target_series().feat

    def _batch_bytes(self) -> int:
        x = math.prod(self._x_tail()) * numpy_storage(self._x_dtype).itemsize
        y = math.prod(self._y_tail()) * numpy_storage(self._y_dtype).itemsize if self.horizon else 0
        return (x + y) * self.batch_size

    # ----- whole sequences ---------------------------------------------------------------

    def _init_sequences(self, horizon: Any, targets: Any, sampling_rate: Any, stride: Any, start_index: Any,
                        end_index: Any, dtype: Any, normalize: Any, max_len: Any, pad_multiple: Any,
                        padding_side: Any, truncation_side: Any, pad_value: Any, bucket: Any, bucket_pool: Any,
                        pack: Any) -> None:
        window_only = [name for name, value, default in (
            ("horizon", horizon, None), ("sampling_rate", sampling_rate, 1), ("stride", stride, 1),
            ("start_index", start_index, 0), ("end_index", end_index, None)) if value != default]
        if window_only:
            raise ValueError(f"{', '.join(window_only)} appl{'y' if len(window_only) > 1 else 'ies'} to windows; "
                             "with window=None each sample is a whole sequence")
        self.window = None
        self.horizon = 0
        self.max_len = None if max_len is None else _int_arg("max_len", max_len, 1)
        self.pad_multiple = _int_arg("pad_multiple", pad_multiple, 1)
        self.padding_side = _choice("padding_side", padding_side, ("right", "left"))
        self.truncation_side = _choice("truncation_side", truncation_side, ("right", "left"))
        self.bucket = bool(bucket)
        self.pack = bool(pack)
        self.bucket_pool = _DEFAULT_BUCKET_POOL if bucket_pool is None else _int_arg("bucket_pool", bucket_pool, 1)
        if self.pack and self.max_len is None:
            raise ValueError("pack=True needs max_len (the length of a packed row)")
        if self.pack and self.bucket:
            raise ValueError("pack=True and bucket=True are alternatives: packing leaves no padding to bucket away")
        if self.pack:  # options of padding whole sequences that packed rows have no use for
            unused = [f"{name}={value!r}" for name, value, default in (
                ("pad_multiple", self.pad_multiple, 1), ("padding_side", self.padding_side, "right"),
                ("truncation_side", self.truncation_side, "right")) if value != default]
            if unused:
                raise ValueError(f"{', '.join(unused)} do{'es' if len(unused) == 1 else ''} not apply with pack=True: "
                                 f"sequences fill rows of max_len={self.max_len} back to back, a long one "
                                 f"continuing in the next row")
        if bucket_pool is not None and not self.bucket:
            raise ValueError(f"bucket_pool={bucket_pool!r} applies with bucket=True only")
        self._labels, self._step_targets = self._load_sequence_targets(targets)
        if self.pack and self._labels is not None:
            raise ValueError("pack=True cannot carry one label per sequence (a row holds several sequences); "
                             "pass step-aligned targets (a list) or use padding")
        self._targets = self._step_targets
        tset = self._step_targets if self._step_targets is not None else self._labels
        self._x_dtype, self._y_dtype = self._resolve_dtypes(dtype, normalize, tset)
        self.pad_value = self._resolve_pad_value(pad_value)
        self._norms = (self._resolve_normalization(normalize), ([], []))  # step targets are never normalised
        self._advise_access(self._step_targets)
        keep = self._finite_sequences() if self.check_finite == "skip" else None
        self._sequence_data = _core.Sequences(
            list(self._series.items),
            list(self._step_targets.items) if self._step_targets is not None else [],
            self._labels.items[0] if self._labels is not None else None,
            [] if keep is None else keep.tolist(),
        )
        self._lengths = np.asarray(self._series.lengths, dtype=np.int64)
        if keep is not None:
            self.skipped_samples = self._series.count - len(keep)
            if len(keep) == 0:
                raise ValueError(f"check_finite='skip' dropped every sequence: all {self._series.count} hold a NaN or Inf")
            self._lengths = self._lengths[keep]
        self.num_samples = len(self._lengths)
        if self.pack and int(self._lengths.sum()) == 0:
            raise ValueError("the configuration yields no sample: every sequence is empty, so pack=True has no row")
        self._batches_per_block = 1
        if self.device_cache:
            self._attach_cache(self.device)

    def _load_sequence_targets(self, targets: Any) -> Tuple[Optional[SeriesSet], Optional[SeriesSet]]:
        """(labels, step targets): an array with one row per sequence, or a list aligned step for step."""
        if targets is None:  # a dataset directory's own targets, if it has some
            labels = self._series.labels
            return (None if labels is None else load_source(labels, "the dataset's labels")), self._series.targets
        n = self._series.count
        if isinstance(targets, (list, tuple)) and targets and all(
                isinstance(t, (int, float, bool, np.generic)) for t in targets):
            targets = np.asarray(targets)  # a plain list of numbers: one label per sequence
        if isinstance(targets, (list, tuple)):
            t = load_source(targets, "targets")
            if t.count != n:
                raise ValueError(f"targets must hold one sequence per source sequence: the source has {n}, targets have {t.count}")
            for i, (a, b) in enumerate(zip(self._series.lengths, t.lengths)):
                if a != b:
                    raise ValueError(f"targets[{i}] has {b} steps but sequence {i} has {a}; step targets must be aligned step for step")
            return None, t
        labels = load_source(targets, "targets")
        if labels.lengths[0] != n:
            raise ValueError(f"targets (labels) must have one row per sequence: the source has {n} sequences, "
                             f"targets have {labels.lengths[0]} rows (pass a list for step-aligned targets)")
        return labels, None

    def _finite_sequences(self) -> np.ndarray:
        """The numbers of the sequences without a NaN or Inf in inputs, step targets or label."""
        n = self._series.count
        ok = np.array([len(b) == 0 for b in _core.non_finite_steps(list(self._series.items), self.num_threads)])
        if self._step_targets is not None:
            ok &= np.array([len(b) == 0 for b in _core.non_finite_steps(list(self._step_targets.items),
                                                                        self.num_threads)])
        if self._labels is not None:
            (bad_rows,) = _core.non_finite_steps(list(self._labels.items), self.num_threads)
            ok[bad_rows] = False
        return np.flatnonzero(ok[:n]).astype(np.int64)

    def _resolve_pad_value(self, pad_value: Any) -> float:
        if isinstance(pad_value, (bool, np.bool_)):
            return float(pad_value)
        if not isinstance(pad_value, (int, float, np.integer, np.floating)):
            raise ValueError(f"pad_value must be a number, got {pad_value!r}")
        for name in {self._x_dtype, self._y_dtype if self._step_targets is not None else self._x_dtype}:
            if name in FLOATING:
                continue
            if name == "bool":
                if pad_value not in (0, 1):
                    raise ValueError(f"pad_value={pad_value!r} is not a bool (0 or 1), the output dtype")
                continue
            info = np.iinfo(name)
            if float(pad_value) != int(pad_value) or not info.min <= int(pad_value) <= info.max:
                raise ValueError(f"pad_value={pad_value!r} does not fit the output dtype {name} "
                                 f"(integers {info.min}..{info.max})")
        return float(pad_value)

    def _seq_tails(self) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        tset = self._step_targets if self._step_targets is not None else self._labels
        return self._series.feat, (tset.feat if tset is not None else ())

    # ----- sizes -------------------------------------------------------------------------

    def _pass_units(self) -> int:
        """What ranks share out of one pass: samples (windows), sequences, or the rows the pass
        packs into (pack=True)."""
        if self.sequences and self.pack:
            return _ceil_div(int(self._lengths.sum()), self.max_len)
        return self.num_samples

    def _unit_name(self) -> str:
        if not self.sequences:
            return "samples"
        return "packed rows" if self.pack else "sequences"

    def _per_rank(self) -> int:
        """This rank's share of _pass_units(). Ranks read disjoint shares with the same number of
        batches, so up to world_size - 1 units of a pass may sit it out (rank_share_size in
        csrc/order.hpp)."""
        return _core.rank_share_size(self._pass_units(), self.rank, self.world_size, self.batch_size, self.drop_last)

    def _batches_per_pass(self) -> int:
        per = self._per_rank()
        return per // self.batch_size if self.drop_last else _ceil_div(per, self.batch_size)

    def __len__(self) -> int:
        return self._batches_per_pass() if self.steps_per_epoch is None else self.steps_per_epoch

    # ----- iteration ---------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration runs (it decides the shuffle); `epoch` reads it from now on.

        It starts at the epoch's first batch, except that the epoch of a state just loaded keeps
        that state's position: a loop that resumes and then calls set_epoch(epoch) for the
        epoch it was in, as training loops do, goes on where the state left off."""
        self.epoch = self._next_epoch = _int_arg("epoch", epoch, 0)
        if self._resume is not None and self._resume[0] != self.epoch:
            self._resume = None

    def __iter__(self) -> Iterator[Batch]:
        if self._closed:
            raise RuntimeError("this Feeder is closed")
        self._check_files()
        self._reload_if_grown()
        first_batch = 0
        if self._resume is not None:
            self._next_epoch, first_batch = self._resume
            self._resume = None
        self.epoch = self._next_epoch
        self._next_epoch += 1
        # Started, even before its first batch is asked for: state_dict() must say so.
        self._running, self._running_epoch = True, self.epoch
        self._cursor = Cursor(first_batch)
        self._count_from = 0
        return EpochIterator.over(self._blocks(self.epoch, first_batch, self._cursor))

    def _check_files(self) -> None:
        """Refuses to start an epoch on files that vanished, were replaced or shrank since they
        were mapped (the core's file watch, which also fails blocks while an epoch runs)."""
        problem = (self._sequence_data if self.sequences else self._assembler).files_changed()
        if problem:
            raise FeedError(f"the source changed under the Feeder: {problem}; make a new Feeder")

    def _open_pipeline(self, epoch: int, first_batch: int) -> Any:
        spe = self.steps_per_epoch or 0
        seed = self.seed % 2**64
        if self.sequences:
            x_feat, y_feat = self._seq_tails()
            pipe = _core.Pipeline.sequences(
                self._sequence_data, self.batch_size, self.shuffle, seed, self.drop_last, self.bucket,
                self.bucket_pool, self.pack, self.max_len or 0, self.pad_multiple, self.padding_side == "left",
                self.truncation_side == "left", self.pad_value, self._x_dtype, self._y_dtype, *self._norms[0],
                self.check_finite == "raise", list(x_feat), list(y_feat), self.rank, self.world_size, epoch,
                first_batch, len(self), spe, self.num_threads, self.prefetch,
                pinned=self.device != "cpu" and self._cache is None, pieces_only=self._cache is not None)
        else:
            pipe = _core.Pipeline.windows(
                self._assembler, self.shuffle, seed, self.rank, self.world_size, self.drop_last,
                self.batch_size, epoch, first_batch, len(self), spe, self._batches_per_block,
                list(self._series.feat), list(self._target_series().feat), self.num_threads, self.prefetch,
                pinned=self.device != "cpu" and self._cache is None, starts_only=self._cache is not None)
        self._pipelines.add(pipe)
        return pipe

    def _as_output(self, a: Any, dtype: str = "") -> Any:
        if a is None or self.output == "numpy" or not isinstance(a, np.ndarray):
            return a  # (already a tensor when it was uploaded to a GPU)
        import torch

        t = torch.from_numpy(a)  # shares the buffer, no copy
        return t.view(torch.bfloat16) if dtype == "bfloat16" else t

    def _window_batches(self, arrays: tuple, error: Optional[str]) -> Iterator[List[Batch]]:
        """A block's batches of windows, a chunk at a time (views.CHUNK_BATCHES): only those
        before a failed sample."""
        x, y = arrays[_X], arrays[_Y]
        total, b = x.shape[0], self.batch_size
        rows = total if error is None else (total // b) * b
        xs = chunked_batches(self._as_output(x, self._x_dtype), rows, total, b)
        if y is None:
            for x_chunk in xs:
                yield _core.make_pairs(Batch, x_chunk, (None,) * len(x_chunk))
        else:
            ys = chunked_batches(self._as_output(y, self._y_dtype), rows, total, b)
            for x_chunk, y_chunk in zip(xs, ys):
                yield _core.make_pairs(Batch, x_chunk, y_chunk)

    def _sequence_batch(self, arrays: tuple, padded: bool) -> Batch:
        """A batch of whole sequences; mask and lengths only where padding happened (SPEC 4): a
        batch whose rows are all full leaves them None."""
        out = self._as_output
        batch = tuple.__new__(PaddedBatch, (out(arrays[_X], self._x_dtype), out(arrays[_Y], self._y_dtype)))
        if padded:
            batch.mask = out(arrays[_MASK])
            batch.lengths = arrays[_LENGTHS] if self.output == "numpy" else out(arrays[_LENGTHS])
        if self.pack:
            batch.segment_ids = out(arrays[_SEGMENT_IDS])
            batch.position_ids = out(arrays[_POSITION_IDS])
            batch.cu_seqlens = out(arrays[_CU_SEQLENS])
        return batch

    def _upload(self, uploader: DeviceUploader, arrays: tuple) -> tuple:
        """The block's arrays as tensors on the device (lengths stay on the CPU, where
        pack_padded_sequence wants them)."""
        bf16 = [False] * len(arrays)
        bf16[_X] = self._x_dtype == "bfloat16"
        bf16[_Y] = self._y_dtype == "bfloat16"
        host = [i == _LENGTHS for i in range(len(arrays))]
        return uploader.upload(arrays, bf16, host)

    def _record_padding(self, arrays: tuple) -> int:
        """Counts the batch's real and padded steps; returns the padded ones."""
        real = int(arrays[_LENGTHS].sum())
        rows, length = arrays[_MASK].shape  # (a tensor when built on the device)
        padded = rows * length - real
        self._stats.steps(real, padded)
        return padded

    def _blocks(self, epoch: int, first_batch: int, cursor: Cursor) -> Generator[Iterator[Batch], None, None]:
        """Iterators over the epoch's batches, a chunk of a block each, in order (see handout.py):
        a chunk's batches are made at once (views in one call, pairs in C), so that handing one
        out runs no Python code."""
        pipe = self._open_pipeline(epoch, first_batch)
        stats = self._stats
        bar = self._progress_bar(epoch, first_batch)
        block_start, block_rows, block_bytes, block_batches = first_batch, 0, 0, 0
        uploader = DeviceUploader(self.device) if self.device != "cpu" and self._cache is None else None
        stats.start()
        epoch_start = stats.totals()
        try:
            while True:
                t0 = time.perf_counter()
                block = pipe.next()
                wait = time.perf_counter() - t0
                if block is None:
                    break
                arrays, first, num_batches, error, build, queued = block
                stats.block(wait, build, num_batches, queued)
                block_start, block_batches = cursor.delivered(), num_batches
                block_rows = len(arrays[_X])
                if self._cache is not None:  # the block holds indices: gather on the device
                    if not self.sequences:
                        arrays = self._cache.gather(arrays[_X]) + (None,) * (len(arrays) - 2)
                    elif error is None:
                        arrays = self._cache.batch(arrays)
                padded = self.sequences and error is None and self._record_padding(arrays) > 0
                if uploader is not None:
                    arrays = self._upload(uploader, arrays)
                block_bytes = sum([a.nbytes for a in arrays if a is not None])
                self._open_block = (block_start, block_batches, block_rows, block_bytes)  # for stats()
                if self.sequences:
                    if error is not None:
                        raise FeedError(f"assembling batch {first} of epoch {epoch} failed: {error}")
                    chunks: Iterator[List[Batch]] = iter(([self._sequence_batch(arrays, padded)],))
                else:
                    chunks = self._window_batches(arrays, error)
                for batches in chunks:
                    handed = iter(batches)
                    cursor.begin_chunk(len(batches), handed)
                    yield handed if bar is None else _counted(handed, bar)
                    cursor.end_chunk()
                self._count_block(cursor.delivered(), block_start, block_batches, block_rows, block_bytes)
                block_batches = 0
                if error is not None:
                    raise FeedError(f"assembling batch {cursor.delivered()} of epoch {epoch} failed: {error}")
            if self._closed:
                raise RuntimeError("the Feeder was closed during iteration")
            self._running = False
            self._log_epoch(epoch, epoch_start)
        finally:
            cursor.stop()
            self._open_block = None
            if block_batches:  # left in the middle of a block: count what was handed out
                self._count_block(cursor.delivered(), block_start, block_batches, block_rows, block_bytes)
            stats.stop()
            if bar is not None:
                bar.close()
            if uploader is not None:
                uploader.close()
            pipe.close()

    def _progress_bar(self, epoch: int, first_batch: int) -> Any:
        if not self.progress:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            logger.warning("progress=True needs tqdm (pip install tqdm); no bar shown")
            return None
        return tqdm(total=len(self), initial=first_batch, desc=f"epoch {epoch}", unit="batch", leave=False)

    def _log_epoch(self, epoch: int, since: tuple) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info("epoch %d done: %s", epoch, self._stats.describe(since, self._stats.totals()))

    # ----- observing ---------------------------------------------------------------------

    def stats(self) -> FeedStats:
        """Counters since this Feeder was made: throughput, waiting, queue depth, padding (SPEC 6).
        Exact to the batch, also in the middle of an epoch."""
        block = self._open_block
        pending = self._block_share(self._delivered, *block) if block is not None and self._running else None
        return self._stats.snapshot(pending=pending or (0, 0, 0))

    @property
    def _delivered(self) -> int:
        """Batches of the running epoch handed out so far (those before a resume point included)."""
        return self._cursor.delivered()

    def reset_stats(self) -> None:
        """Starts the counters again (an iteration under way goes on being counted from here)."""
        self._stats.reset()
        self._count_from = self._delivered if self._running else 0

    def _count_block(self, delivered: int, block_start: int, block_batches: int, rows: int, nbytes: int) -> None:
        """Adds the batches of a block handed out (since the last reset_stats), rows and bytes pro rata."""
        self._open_block = None
        share = self._block_share(delivered, block_start, block_batches, rows, nbytes)
        if share is not None:
            self._stats.batches(*share)

    def _block_share(self, delivered: int, block_start: int, block_batches: int, rows: int,
                     nbytes: int) -> Optional[Tuple[int, int, int]]:
        """(batches, samples, bytes) of a block handed out once `delivered` batches of the epoch
        were, counting from the last reset_stats; None if none were."""
        done = delivered - max(block_start, self._count_from)
        if done <= 0:
            return None
        if done == block_batches:
            return done, rows, nbytes
        return done, min(rows, done * self.batch_size), nbytes * done // max(1, block_batches)

    # ----- resuming ----------------------------------------------------------------------

    def _resume_point(self) -> Tuple[int, int]:
        if self._resume is not None:
            return self._resume
        if self._running:
            epoch, delivered = self._running_epoch, self._delivered
            if delivered < len(self):
                return epoch, delivered
            return epoch + 1, 0  # the epoch's last batch was delivered: the next one comes from a new epoch
        return self._next_epoch, 0

    def state_dict(self) -> Dict[str, Any]:
        """Where the stream of batches stands: a small dict of plain values (fits torch.save and JSON).

        After ``load_state_dict`` on a Feeder with the same configuration and data, in this
        process or another, the next batch is exactly the one that would have come next."""
        if not self._running and self._resume is None:
            # Between epochs the next batch comes from a new epoch, which reads a dataset
            # directory as it is then (sequences appended since included): so does the state.
            self._reload_if_grown()
        return make_state(*self._resume_point(), self._fingerprint())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resumes from ``state_dict()``; refuses a state from another configuration or other data."""
        self._resume = read_state(state, self._fingerprint(), len(self))
        self.epoch = self._next_epoch = self._resume[0]

    def _fingerprint(self) -> Dict[str, Any]:
        """The configuration that decides which batches come, and a digest of the data (not
        num_threads or prefetch: resuming works across them)."""
        if self._fingerprint_cache is None:
            config: Dict[str, Any] = {
                "mode": "sequences" if self.sequences else "windows",
                "batch_size": self.batch_size, "shuffle": self.shuffle, "seed": self.seed,
                "drop_last": self.drop_last, "steps_per_epoch": self.steps_per_epoch,
                "rank": self.rank, "world_size": self.world_size,
                "dtype": self._x_dtype, "target_dtype": self._y_dtype, "check_finite": self.check_finite,
                "normalize": normalization_digest(self._norms),
            }
            if self.sequences:
                config.update(max_len=self.max_len, pad_multiple=self.pad_multiple, padding_side=self.padding_side,
                              truncation_side=self.truncation_side, pad_value=self.pad_value, bucket=self.bucket,
                              bucket_pool=self.bucket_pool, pack=self.pack)
            else:
                config.update(window=self.window, horizon=self.horizon, sampling_rate=self.sampling_rate,
                              stride=self.stride, start_index=self.start_index, end_index=self.end_index)
            targets = self._targets if self._targets is not None else getattr(self, "_labels", None)
            config["data"] = data_digest(self._series, targets)
            self._fingerprint_cache = config
        return self._fingerprint_cache

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
        if self.sequences:
            shape = f"sequences, max_len={self.max_len}, bucket={self.bucket}, pack={self.pack}"
        else:
            shape = f"window={self.window}, horizon={self.horizon}"
        return (f"Feeder(samples={self.num_samples}, {shape}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, output={self.output!r})")
