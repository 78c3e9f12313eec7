"""One epoch: the core's blocks in order, made into batches and handed out with no Python code
run per batch."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Generator, Iterator, List, Optional, Protocol

import numpy as np

from ..batch import Batch
from ..errors import FeedError
from .counting import BlockCounter
from .handout import Cursor
from .stats import StatsRecorder

if TYPE_CHECKING:
    from ..spec import FeedSpec

logger = logging.getLogger("fastfeed")

# Fields that stay in host memory when batches go to a GPU (pack_padded_sequence wants lengths there).
HOST_FIELDS = frozenset({"lengths"})


# A block's arrays by name, as the core hands them over ("x", "y", "mask", ...).
Fields = Dict[str, Any]
# Turns a block's named host arrays into what the user gets (tensors, on the device).
Finish = Callable[[Fields], Fields]


class BlockBatches(Protocol):
    """What an epoch needs of a sample mode: how a block of the core becomes batches."""

    bfloat16_fields: FrozenSet[str]  # fields that travel as bfloat16 bit patterns
    cache: Optional[Any]  # a copy of the source on the device, or None

    def samples_in(self, fields: Fields) -> int: ...

    def batches(self, fields: Fields, error: Optional[str], finish: Finish) -> Iterator[List[Batch]]: ...


class EpochRun:
    """Feeds one epoch of `mode` from batch `first_batch` on."""

    def __init__(
        self,
        mode: BlockBatches,
        spec: FeedSpec,
        recorder: StatsRecorder,
        counter: BlockCounter,
        cursor: Cursor,
        batches_per_epoch: int,
    ) -> None:
        self.mode, self.spec = mode, spec
        self.recorder, self.counter, self.cursor = recorder, counter, cursor
        self.batches_per_epoch = batches_per_epoch
        self._uploader: Any = None

    def blocks(
        self, pipe: Any, epoch: int, first_batch: int, closed: Callable[[], bool]
    ) -> Generator[Iterator[Batch], None, None]:
        """Iterators over the epoch's batches, a chunk of a block each, in order (see handout.py):
        a chunk's batches are made at once (views in one call, pairs in C), so that handing one
        out runs no Python code. Ends the epoch's threads however it is left."""
        recorder, cursor = self.recorder, self.cursor
        bar = self._progress_bar(epoch, first_batch)
        if self.spec.on_gpu and self.mode.cache is None:
            from ..device.upload import DeviceUploader

            self._uploader = DeviceUploader(self.spec.device)
        recorder.start()
        epoch_start = recorder.totals()
        try:
            while True:
                t0 = time.perf_counter()
                block = pipe.next()
                wait = time.perf_counter() - t0
                if block is None:
                    break
                fields, _, num_batches, error, build, queued = block
                recorder.block(wait, build, num_batches, queued)
                finish = self._finisher(cursor.delivered(), num_batches, self.mode.samples_in(fields))
                for batches in self.mode.batches(fields, error, finish):
                    handed = iter(batches)
                    cursor.begin_chunk(len(batches), handed)
                    yield handed if bar is None else _counted(handed, bar)
                    cursor.end_chunk()
                self.counter.close(cursor.delivered())
                if error is not None:
                    raise FeedError(f"assembling batch {cursor.delivered()} of epoch {epoch} failed: {error}")
            if closed():
                raise RuntimeError("the Feeder was closed during iteration")
            if logger.isEnabledFor(logging.INFO):
                logger.info("epoch %d done: %s", epoch, recorder.describe(epoch_start, recorder.totals()))
        finally:
            cursor.stop()
            self.counter.close(cursor.delivered())  # left in the middle of a block: what was handed out
            recorder.stop()
            if bar is not None:
                bar.close()
            if self._uploader is not None:
                self._uploader.close()
            pipe.close()

    def _finisher(self, block_start: int, num_batches: int, rows: int) -> Callable[[Fields], Fields]:
        """What makes a block's arrays the user's: counts its padding, converts or uploads them,
        and opens the block for counting (stats() is exact in the middle of it)."""

        def finish(fields: Fields) -> Fields:
            if "mask" in fields and "lengths" in fields:
                self._record_padding(fields)
            out = self._to_output(fields)
            self.counter.open(block_start, num_batches, rows, sum(a.nbytes for a in out.values()))
            return out

        return finish

    def _record_padding(self, fields: Fields) -> None:
        real = int(fields["lengths"].sum())
        rows, length = fields["mask"].shape  # (a tensor when built on the device)
        self.recorder.steps(real, rows * length - real)

    def _to_output(self, fields: Fields) -> Fields:
        bf16 = self.mode.bfloat16_fields
        if self._uploader is not None:
            return self._uploader.upload(fields, bf16, HOST_FIELDS)
        if self.spec.output == "numpy":
            return fields
        import torch

        def tensor(name: str, a: Any) -> Any:
            if not isinstance(a, np.ndarray):
                return a  # already a tensor: gathered on the device
            t = torch.from_numpy(a)  # shares the buffer, no copy
            return t.view(torch.bfloat16) if name in bf16 else t

        return {name: tensor(name, a) for name, a in fields.items()}

    def _progress_bar(self, epoch: int, first_batch: int) -> Optional[Any]:
        if not self.spec.progress:
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            logger.warning("progress=True needs tqdm (pip install tqdm); no bar shown")
            return None
        return tqdm(total=self.batches_per_epoch, initial=first_batch, desc=f"epoch {epoch}", unit="batch", leave=False)


def _counted(batches: Iterator[Batch], bar: Any) -> Iterator[Batch]:
    """`batches`, moving a progress bar on by one after each is handed out."""
    for batch in batches:
        yield batch
        bar.update(1)
