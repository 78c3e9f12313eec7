"""Type stub for fastfeed's private native module (csrc/python/bindings.cpp)."""

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

class FormatError(ValueError): ...

class NpyFile:
    @staticmethod
    def open(path: str) -> NpyFile: ...
    @staticmethod
    def open_raw(path: str, dtype: str, shape: Sequence[int]) -> NpyFile:
        """A file of bare little-endian values without a header (a dataset's labels): `shape`
        values of `dtype` from its first byte, mapped like a .npy file (data_offset 0)."""
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def path(self) -> str: ...
    @property
    def data_offset(self) -> int: ...
    def advise_random_access(self, random: bool) -> None: ...

class RaggedFile:
    """A dataset's values: `count` sequences back to back in one memory-mapped file, cut by int64
    offsets. In a list of series handed to the core it stands for all its sequences, in order."""
    @staticmethod
    def open(
        values_path: str, offsets_path: str, count: int, num_steps: int, dtype: str, row_elems: int
    ) -> RaggedFile: ...
    @property
    def count(self) -> int: ...
    @property
    def num_steps(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def row_elems(self) -> int: ...
    @property
    def values_path(self) -> str: ...
    @property
    def offsets_path(self) -> str: ...
    def lengths(self) -> npt.NDArray[np.int64]: ...
    def advise_random_access(self, random: bool) -> None: ...

class Ragged:
    """Many sequences cut out of a few arrays: sequence i is rows ``begin[i]:end[i]`` of
    ``values[chunk[i]]``. `values` are C-contiguous, aligned arrays (1-D or ``(N, *feat)``) or
    NpyFiles of one dtype and feature shape; `chunk`, `begin`, `end` are 1-D integer arrays of
    one length. It keeps `values` alive, and in a list of series handed to the core it stands
    for all its sequences, in order (expanded in C++). Anything else is a ValueError."""

    def __init__(
        self,
        values: Sequence[Union[np.ndarray, NpyFile]],
        chunk: npt.ArrayLike,
        begin: npt.ArrayLike,
        end: npt.ArrayLike,
    ) -> None: ...
    @property
    def count(self) -> int: ...
    @property
    def num_steps(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def feat(self) -> Tuple[int, ...]: ...
    @property
    def row_elems(self) -> int: ...
    @property
    def values(self) -> List[Union[np.ndarray, NpyFile]]: ...
    @property
    def chunk(self) -> npt.NDArray[np.int64]: ...
    @property
    def begin(self) -> npt.NDArray[np.int64]: ...
    @property
    def end(self) -> npt.NDArray[np.int64]: ...
    def lengths(self) -> npt.NDArray[np.int64]: ...
    def advise_random_access(self, random: bool) -> None: ...

_SeriesItem = Union[np.ndarray, NpyFile, RaggedFile, Ragged]

# Specs: plain structs of the core, constructed by keyword only (an unknown keyword raises
# ValueError naming it and listing the fields); every field is read-write unless marked.
class WindowSpec:
    window: int
    sampling_rate: int
    stride: int
    horizon: int
    start_index: int  # negative: from each series' end (Python slicing)
    end_index: int  # SERIES_END: each series' end; negative: from it
    target_shift: int  # >= 1 instead of horizon: the targets are the window shifted by this many steps
    def __init__(
        self,
        *,
        window: int = 1,
        sampling_rate: int = 1,
        stride: int = 1,
        horizon: int = 0,
        start_index: int = 0,
        end_index: int = ...,
        target_shift: int = 0,
    ) -> None: ...
    @property
    def span(self) -> int:
        """Steps from a window's first input to its last target: (window - 1 + horizon or target_shift) *
        sampling_rate + 1."""

SERIES_END: int  # WindowSpec.end_index and moments' end for "to each series' end"

class FieldOutput:
    """How a field beside x and y (covariates, known, static) is written."""

    dtype: str
    mean: List[float]  # empty: not normalised
    std: List[float]
    feat: List[int]
    def __init__(
        self,
        *,
        dtype: str = "float32",
        mean: Sequence[float] = ...,
        std: Sequence[float] = ...,
        feat: Sequence[int] = ...,
    ) -> None: ...

class OutputSpec:
    x_dtype: str  # "float32", "bfloat16", "int64", ...
    y_dtype: str
    x_mean: List[float]  # empty: not normalised
    x_std: List[float]
    y_mean: List[float]  # windows only: sequences never normalise targets or labels
    y_std: List[float]
    x_feat: List[int]  # the feature shape of one input step (set with a tuple or list; reads back a list)
    y_feat: List[int]  # of one target step, or of one label
    check_finite: bool
    mask_non_finite: bool  # check_finite="mask": NaN/Inf written as 0, observed masks for x and y
    with_index: bool  # "series" and "start" per sample
    static_output: FieldOutput  # how "static" rows are written, when a table of them is given
    def __init__(
        self,
        *,
        x_dtype: str = "float32",
        y_dtype: str = "float32",
        x_mean: Sequence[float] = ...,
        x_std: Sequence[float] = ...,
        y_mean: Sequence[float] = ...,
        y_std: Sequence[float] = ...,
        x_feat: Sequence[int] = ...,
        y_feat: Sequence[int] = ...,
        check_finite: bool = False,
        mask_non_finite: bool = False,
        with_index: bool = False,
        static_output: FieldOutput = ...,
    ) -> None: ...

class MixSpec:
    """A mixture's components as its order reads them (see MixOrder)."""

    weights: List[float]
    first: List[int]  # each component's first item in the joint numbering
    count: List[int]  # its items
    keys: List[int]  # its shuffle key
    origin: int  # the stream position where the weights took effect
    base: List[int]  # each component's items read before the origin
    first_series: List[int]  # each component's first series or sequence (batch.series counts from it)
    resume_item: int  # elastic resume: this rank's stream item that reads resume_position
    resume_position: int
    known_position: int  # a loaded state's stream position (-1: none), where the counts are known_counts
    known_counts: List[int]
    def __init__(
        self,
        *,
        weights: Sequence[float] = ...,
        first: Sequence[int] = ...,
        count: Sequence[int] = ...,
        keys: Sequence[int] = ...,
        origin: int = 0,
        base: Sequence[int] = ...,
        first_series: Sequence[int] = ...,
        resume_item: int = 0,
        resume_position: int = 0,
        known_position: int = -1,
        known_counts: Sequence[int] = ...,
    ) -> None: ...

class MixOrder:
    """Which component and item each position of a mixture's stream reads (quota method)."""
    def __init__(self, spec: MixSpec, shuffle: bool) -> None: ...
    def counts_at(self, position: int) -> List[int]:
        """Every component's items read before stream position `position` (over all ranks)."""
    def items(self, first: int, step: int, n: int) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(joint item, component) of stream positions first, first + step, ... (n of them)."""

class OrderSpec:
    shuffle: bool
    seed: int  # uint64
    rank: int
    world_size: int
    batch_size: int
    drop_last: bool
    steps_per_epoch: int  # 0: an epoch is a pass
    resume_step: int  # elastic resume: the step (epoch, or epoch * steps_per_epoch + batch) it takes over at; -1: none
    resume_pass: int  # the pass it takes over
    resume_offset: int  # the positions of that pass read before (all ranks together)
    # bucketed sequences: (world_size, batch_size, batches each rank read) of the configurations
    # that read part of that pass, in turn; resume_offset is the number of sequences they read
    resume_reads: List[Tuple[int, int, int]]
    def resumes_in(self, pass_: int) -> bool:
        """Whether this run takes over another configuration's stream inside pass `pass_`."""
    def offset_in(self, pass_: int) -> int:
        """Positions of the pass read before this run's share of it starts (an elastic resume's offset)."""
    def __init__(
        self,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        drop_last: bool = False,
        steps_per_epoch: int = 0,
        resume_step: int = -1,
        resume_pass: int = 0,
        resume_offset: int = 0,
        resume_reads: List[Tuple[int, int, int]] = ...,
    ) -> None: ...

class PadSpec:
    max_len: int  # 0: pad to the longest in the batch; with PackSpec.pack the packed row length
    pad_multiple: int
    pad_left: bool
    truncate_left: bool
    pad_value: float
    def __init__(
        self,
        *,
        max_len: int = 0,
        pad_multiple: int = 1,
        pad_left: bool = False,
        truncate_left: bool = False,
        pad_value: float = 0.0,
    ) -> None: ...

class PackSpec:
    bucket: bool
    bucket_pool: int  # batches per sorted pool (batch_tokens: budgets' worth of steps); best_fit: rows' worth
    pack: bool
    best_fit: bool  # with pack: best-fit decreasing rows within pools of bucket_pool rows' worth of steps
    batch_tokens: int  # > 0: padded batches of as many sequences as fit rows * padded length <= this
    def __init__(
        self,
        *,
        bucket: bool = False,
        bucket_pool: int = 1,
        pack: bool = False,
        best_fit: bool = False,
        batch_tokens: int = 0,
    ) -> None: ...

class RunSpec:
    epoch: int
    first_batch: int
    batches_per_block: int  # windows only: a block of whole sequences is one batch
    num_threads: int  # workers claiming blocks: fixed, or where tuning starts
    prefetch: int  # blocks built ahead: fixed, or where tuning starts
    # The tuner sets the workers claiming blocks: 1..busy_threads while the consumer computes, up
    # to max_threads while it waits more than a tenth of its time.
    auto_threads: bool
    auto_prefetch: bool  # the tuner deepens the ring, up to max_prefetch
    max_threads: int
    busy_threads: int
    max_prefetch: int
    tune_window: int  # hand-overs between two decisions of the tuner
    pinned: bool
    indices_only: bool  # blocks carry "starts" (windows) or "pieces" (sequences) for a GPU-resident source
    def __init__(
        self,
        *,
        epoch: int = 0,
        first_batch: int = 0,
        batches_per_block: int = 1,
        num_threads: int = 1,
        prefetch: int = 1,
        auto_threads: bool = False,
        auto_prefetch: bool = False,
        max_threads: int = 1,
        busy_threads: int = 1,
        max_prefetch: int = 1,
        tune_window: int = 16,
        pinned: bool = False,
        indices_only: bool = False,
    ) -> None: ...

class EpochSizes:
    @property
    def per_rank(self) -> int: ...
    @property
    def batches_per_pass(self) -> int: ...
    @property
    def batches_per_epoch(self) -> int: ...

def epoch_sizes(units: int, order: OrderSpec, epoch: int = -1) -> EpochSizes:
    """A rank's items per pass and batches per pass and per epoch, for `units` items in a pass
    (samples, sequences, or packed rows); with `epoch`, of that epoch (an elastic resume's is shorter)."""

def stream_share_size(order: OrderSpec, units: int, pass_: int) -> int:
    """With virtual epochs: how many of a pass's `units` items every rank streams through."""

def locate_sample(order: OrderSpec, epoch: int, index: int, per_pass: int, first_pass: int) -> Tuple[int, int]:
    """(pass, index in this rank's share of it) of item `index` of epoch `epoch`, as the block builders find it."""

def locate_batch(order: OrderSpec, epoch: int, batch: int, units: int) -> Tuple[int, int]:
    """(pass, batch of this rank's plan of it) of batch `batch` of epoch `epoch` where each pass is cut
    into the rank's own batches (bucketed sequences), as the block builders find it."""

def sequences_read(data: Sequences, order: OrderSpec, pass_: int, reads: List[Tuple[int, int, int]]) -> int:
    """How many sequences of pass `pass_` the bucketed configurations `reads` ((world_size, batch_size,
    batches each rank read), in turn) read."""

class Assembler:
    def __init__(
        self,
        inputs: List[_SeriesItem],
        targets: List[_SeriesItem],
        window: WindowSpec,
        output: OutputSpec,
        *,
        covariates: Optional[List[_SeriesItem]] = None,
        covariates_output: FieldOutput = ...,
        known: Optional[List[_SeriesItem]] = None,
        known_output: FieldOutput = ...,
        static: Optional[_SeriesItem] = None,
        static_output: FieldOutput = ...,
        with_index: bool = False,
        scale: str = "",
    ) -> None: ...
    @property
    def layouts(self) -> List[Tuple[str, str, List[int], int]]:
        """(name, dtype, shape after the rows axis, bytes per sample) of each array a block carries."""
    def first_sample_of(self, series: int) -> int:
        """The number (of the samples left) of a series' first sample; the series count gives num_samples."""
    @property
    def num_samples(self) -> int: ...
    @property
    def num_excluded(self) -> int: ...
    @property
    def span(self) -> int: ...
    @property
    def units(self) -> int:
        """What the ranks share out of one pass: num_samples."""
    def files_changed(self) -> str: ...
    def exclude_non_finite(self, threads: int) -> None:
        """Drops the samples that read a NaN or Inf in any field."""

class Sequences:
    """Whole sequences (and their step targets or labels) as the core reads them."""
    def __init__(
        self,
        inputs: List[_SeriesItem],
        step_targets: List[_SeriesItem],
        labels: Optional[Union[np.ndarray, NpyFile]],
        keep: Sequence[int] = ...,
        *,
        static: Optional[np.ndarray] = None,
    ) -> None: ...
    def files_changed(self) -> str: ...
    @property
    def count(self) -> int:
        """Sequences fed (after keep)."""
    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        """The lengths of the sequences fed, in feeding order."""
    @property
    def total_steps(self) -> int: ...
    def units(self, pack: bool, max_len: int) -> int:
        """What the ranks share out of one pass: count, or with pack ceil(total_steps / max_len) rows."""

class PassSizes:
    """This rank's batches and items (rows, or batches) in each pass, where they differ from pass
    to pass (batch_tokens, best-fit packing); each pass counted once, by building its plan."""

    def __init__(self, data: Sequences, order: OrderSpec, pack: PackSpec, pad: PadSpec) -> None: ...
    def batches(self, pass_: int) -> int: ...
    def items(self, pass_: int) -> int: ...
    def units(self, pass_: int) -> int:
        """The batches (rows) pass `pass_` is cut into over all ranks."""
    def locate(self, index: int, by_items: bool = False) -> Tuple[int, int]:
        """(pass, index in this rank's share) of batch (or item: by_items) `index` of the stream
        of passes (from an elastic resume's pass, `index` counted from its step, with virtual epochs)."""

# A block's arrays by name, in the order the core set them: "x", "y", "mask", "lengths",
# "segment_ids", "position_ids", "cu_seqlens" (host batches), "starts" / "pieces" (indices_only).
_Fields = Dict[str, np.ndarray]

class ChunkChain:
    """The items of the iterators `source` yields, in order, handed out from C; threads may
    share it (one at a time advances `source`)."""

    def __init__(self, source: Iterable[Iterable[Any]]) -> None: ...
    def __iter__(self) -> ChunkChain: ...
    def __next__(self) -> Any: ...
    def fail(self, message: str) -> None:
        """Every later next() raises RuntimeError(message); the chunk under way is dropped."""

class Pipeline:
    @staticmethod
    def windows(assembler: Assembler, order: OrderSpec, run: RunSpec, mix: Optional[MixOrder] = None) -> Pipeline: ...
    @staticmethod
    def sequences(
        data: Sequences,
        order: OrderSpec,
        pack: PackSpec,
        pad: PadSpec,
        output: OutputSpec,
        run: RunSpec,
        mix: Optional[MixOrder] = None,
        passes: Optional[PassSizes] = None,
    ) -> Pipeline: ...
    def next(self) -> Optional[Tuple[_Fields, int, int, Optional[str], float, int, int, int]]:
        """(fields, num_samples, num_batches, error, build_seconds, queued, threads, prefetch) of the next
        block, or None at the end. After a failure (error is a str) the per-row arrays hold the rows
        before the failed sample, and num_samples counts those rows. threads and prefetch are the
        pipeline's shape once the block was handed over (0, 0 for a block built without workers)."""
    @property
    def shape(self) -> Tuple[int, int]:
        """(threads, prefetch): workers claiming blocks and blocks built ahead, now."""
    def retune(self, threads: int, prefetch: int) -> None:
        """Sets (threads, prefetch) as the tuner would, within the run's limits; tuning goes on from there."""
    def close(self) -> None: ...

def fingerprint(series: List[_SeriesItem], rows: int, full_bytes: int) -> int: ...
def permutation(n: int, seed: int, epoch: int, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def moments(
    series: List[_SeriesItem], start: int = 0, end: int = ..., skip_non_finite: bool = False
) -> Tuple[List[float], List[float], int]:
    """Per-element (mean, std, steps seen) over steps [start, end) of every series; a NaN or Inf is a
    ValueError naming series and step unless skip_non_finite."""

def gather_windows(
    source: Union[np.ndarray, NpyFile],
    starts: npt.ArrayLike,
    window: int,
    rate: int,
    out_dtype: np.dtype,
    tail: List[int],
) -> np.ndarray: ...
def make_pairs(cls: type, xs: list, ys: Sequence[Any]) -> list: ...
def build_info() -> dict: ...
def non_finite_steps(series: List[_SeriesItem], threads: int) -> List[npt.NDArray[np.int64]]: ...
def cuda_device_count() -> int: ...

# Pointers and CUDA streams travel as integers (tensor.data_ptr(), stream.cuda_stream).
class CudaUploader:
    """Host-to-device copies on a side stream; the consumer stream waits for them on the GPU."""
    def __init__(self, device: int, stream: int) -> None: ...
    def upload(self, copies: List[Tuple[int, int, int]], consumer: int) -> int:
        """Queues (src, dst, bytes) copies; returns their ticket."""
    def finished(self) -> int:
        """The newest ticket whose copies have completed."""
    def wait(self, ticket: int) -> None: ...
    def synchronize(self) -> None: ...

class CudaGather:
    """Gathers batches from a device-resident source, given indices on the host."""
    def __init__(self, device: int) -> None: ...
    def gather_windows(
        self, starts: npt.NDArray[np.int64], parts: List[Tuple[int, int, int, int, int, int]], stream: int
    ) -> None:
        """parts: (src, out, row_bytes, first, steps, stride) per output."""
    def gather_pieces(
        self,
        pieces: npt.NDArray[np.int64],
        seq_offsets: int,
        parts: List[Tuple[int, int, int, int, int, int, int]],
        stream: int,
    ) -> None:
        """pieces: (row, col, seq, first, count, segment) rows; parts: (src, out, row_bytes, length,
        mask, segment_ids, position_ids) per output, 0 for an id array not wanted."""
