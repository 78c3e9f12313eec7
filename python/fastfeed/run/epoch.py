"""One epoch: the core's blocks in order, made into batches and handed out with no Python code
run per batch."""

from __future__ import annotations

import logging
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    FrozenSet,
    Generator,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Tuple,
)

import numpy as np

from ..batch import Batch
from ..errors import FeedError
from .counting import BlockCounter
from .position import Position
from .stats import StatsRecorder
from .tuning import TuningLog

if TYPE_CHECKING:
    from ..spec import FeedSpec

logger = logging.getLogger("fastfeed")


# A block's arrays by name, as the core hands them over ("x", "y", "mask", ...).
Fields = Dict[str, Any]
# Turns a block's named host arrays into what the user gets (tensors, on the device).
Finish = Callable[[Fields], Fields]


class BlockBatches(Protocol):
    """What an epoch needs of a sample mode: how a block of the core becomes batches."""

    @property
    def bfloat16_fields(self) -> FrozenSet[str]: ...  # fields that travel as bfloat16 bit patterns

    host_fields: FrozenSet[str]  # fields that stay in host memory when batches go to a GPU
    cache: Optional[Any]  # a copy of the source on the device, or None

    def open_pipeline(self, run: Any) -> Any: ...

    def batches(self, fields: Fields, failed: bool, finish: Finish) -> Iterable[List[Batch]]: ...

    def padding(self, fields: Fields) -> Optional[Tuple[int, int]]: ...


class EpochRun:
    """Feeds one epoch of `mode` from batch `first_batch` on."""

    def __init__(
        self,
        mode: BlockBatches,
        spec: FeedSpec,
        recorder: StatsRecorder,
        counter: BlockCounter,
        position: Position,
        batches_per_epoch: int,
        tuning: TuningLog,
    ) -> None:
        self.mode, self.spec = mode, spec
        self.recorder, self.counter, self.position = recorder, counter, position
        self.tuning = tuning
        self.batches_per_epoch = batches_per_epoch
        self._uploader: Any = None
        self._torch: Any = None
        self._bf16: FrozenSet[str] = frozenset()
        # The block being made into batches: where it starts in the epoch, its batches and rows.
        self._block = (0, 0, 0)

    def blocks(
        self, run: Any, epoch: int, first_batch: int, closed: Callable[[], bool], opened: Callable[[Any], None]
    ) -> Generator[Iterator[Batch], None, None]:
        """Iterators over the epoch's batches, a chunk of a block each, in order (see handout.py):
        a chunk's batches are made at once (views in one call, pairs in C), so that handing one
        out runs no Python code. The core's workers start at the first batch asked for (`run`
        says how; `opened` is told of the pipeline) and stop however the epoch is left."""
        recorder, cursor, mode, tuning = self.recorder, self.position.cursor, self.mode, self.tuning
        shape = (-1, -1)  # the pipeline's (threads, prefetch) at the last block: logged when it changes
        pipe = bar = None
        recorder.start()
        epoch_start = recorder.totals()
        try:
            pipe = mode.open_pipeline(run)
            opened(pipe)
            bar = self._progress_bar(epoch, first_batch)
            self._start_output()
            while True:
                t0 = time.perf_counter()
                block = pipe.next()
                wait = time.perf_counter() - t0
                if block is None:
                    break
                fields, rows, num_batches, error, build, queued, threads, prefetch = block
                recorder.block(wait, build, num_batches, queued)
                self._block = (cursor.delivered(), num_batches, rows)
                if (threads, prefetch) != shape:
                    shape = (threads, prefetch)
                    tuning.saw(epoch, self._block[0], threads, prefetch)
                if rows > 0 or error is None:  # (a block that failed at its first sample has no batch)
                    for batches in mode.batches(fields, error is not None, self._finish):
                        handed = iter(batches)
                        cursor.begin_chunk(len(batches), handed)
                        yield handed if bar is None else _Counted(handed, bar)
                self.counter.close(cursor.delivered())
                if error is not None:
                    raise FeedError(f"assembling batch {cursor.delivered()} of epoch {epoch} failed: {error}")
            if closed():
                raise RuntimeError("the Feeder was closed during iteration")
            self.position.finish()
            if logger.isEnabledFor(logging.INFO):
                line = recorder.describe(epoch_start, recorder.totals())
                logger.info("epoch %d done: %s; %s", epoch, line, tuning.describe())
        finally:
            cursor.stop()
            self.counter.close(cursor.delivered())  # left in the middle of a block: what was handed out
            recorder.stop()
            if bar is not None:
                bar.close()
            if self._uploader is not None:
                self._uploader.close()
            if pipe is not None:
                pipe.close()

    def _start_output(self) -> None:
        """What _finish needs to make the user's arrays: an uploader to the GPU, or torch."""
        self._bf16 = self.mode.bfloat16_fields
        if self.spec.on_gpu and self.mode.cache is None:
            from ..device.upload import DeviceUploader

            self._uploader = DeviceUploader(self.spec.device)
        elif self.spec.output == "torch":
            import torch

            self._torch = torch

    def _finish(self, fields: Fields) -> Fields:
        """Makes a block's arrays the user's: counts its padding, converts or uploads them, and
        opens the block for counting (stats() is exact in the middle of it)."""
        padding = self.mode.padding(fields)
        if padding is not None:
            self.recorder.steps(*padding)
        self.counter.open(*self._block, sum([a.nbytes for a in fields.values()]))
        if self._uploader is not None:
            return self._uploader.upload(fields, self._bf16, self.mode.host_fields)
        if self._torch is None:
            return fields
        return self._tensors(fields)

    def _tensors(self, fields: Fields) -> Fields:
        """The fields as tensors sharing their buffers (no copy); bfloat16 bits viewed as such."""
        from_numpy, bf16 = self._torch.from_numpy, self._bf16
        out = {}
        for name, a in fields.items():
            if isinstance(a, np.ndarray):  # (else already a tensor: gathered on the device)
                a = from_numpy(a)
                if name in bf16:
                    a = a.view(self._torch.bfloat16)
            out[name] = a
        return out

    def _progress_bar(self, epoch: int, first_batch: int) -> Optional[Any]:
        if not self.spec.progress:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            logger.warning("progress=True needs tqdm (pip install tqdm); no bar shown")
            return None
        return tqdm(total=self.batches_per_epoch, initial=first_batch, desc=f"epoch {epoch}", unit="batch", leave=False)


class _Counted:
    """`batches`, moving a progress bar on by one after each is handed out (when the loop comes
    back for the next). Python code per batch, only with progress=True; a lock rather than a
    generator, so that threads sharing the epoch wait for each other here instead of meeting
    "generator already executing"."""

    __slots__ = ("_bar", "_batches", "_lock", "_owed")

    def __init__(self, batches: Iterator[Batch], bar: Any) -> None:
        self._batches, self._bar, self._lock, self._owed = batches, bar, threading.Lock(), False

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Batch:
        with self._lock:
            if self._owed:
                self._owed = False
                self._bar.update(1)
            batch = next(self._batches)
            self._owed = True
        return batch
