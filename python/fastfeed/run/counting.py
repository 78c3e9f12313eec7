"""Counting batches handed out of blocks, exact to the batch, for `Feeder.stats()`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional, Tuple

from .process import track_in_child
from .stats import FeedStats, StatsRecorder

if TYPE_CHECKING:
    from .position import Position

Share = Tuple[int, int, int]  # (batches, samples, bytes)


class BlockCounter:
    """Batches travel in blocks of hundreds; this counts those handed out so far, also in the
    middle of a block, into a StatsRecorder. Samples and bytes of a block are counted pro rata.

    A block's share moves from "open" to the recorder's totals under a lock that snapshot()
    takes too (once per block, never per batch): a reader on another thread never sees the
    share in both places or in neither, so the counts it reads never go backwards."""

    def __init__(self, recorder: StatsRecorder, batch_size: int) -> None:
        self._recorder = recorder
        self._batch_size = batch_size
        self._open: Optional[Tuple[int, int, int, int]] = None  # (first batch, batches, rows, bytes)
        self._count_from = 0  # batches of the running epoch before this are not counted (reset)
        self._lock = threading.Lock()
        track_in_child(self)

    def after_fork_in_child(self, parent: int) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it at the fork

    def open(self, first_batch: int, batches: int, rows: int, nbytes: int) -> None:
        """A block is being handed out from batch `first_batch` of the epoch."""
        self._open = (first_batch, batches, rows, nbytes)

    def close(self, delivered: int) -> None:
        """Counts what was handed out of the open block once `delivered` batches of the epoch were."""
        with self._lock:
            block, self._open = self._open, None
            share = None if block is None else self._share(delivered, *block)
            if share is not None:
                self._recorder.batches(*share)

    def snapshot(self, position: Position) -> FeedStats:
        """The recorder's counters with what was handed out of the open block, read at one moment."""
        with self._lock:
            pending = self.pending(position.delivered) if position.running else (0, 0, 0)
            counts = self._recorder.counts()
        return self._recorder.snapshot(pending=pending, counts=counts)

    def pending(self, delivered: int) -> Share:
        """What was handed out of the open block and not yet counted."""
        block = self._open
        share = None if block is None else self._share(delivered, *block)
        return share or (0, 0, 0)

    def restart(self, delivered: int) -> None:
        """Counting starts again from batch `delivered` of the running epoch (0 between epochs)."""
        self._count_from = delivered

    def _share(self, delivered: int, first: int, batches: int, rows: int, nbytes: int) -> Optional[Share]:
        done = delivered - max(first, self._count_from)
        if done <= 0:
            return None
        if done == batches:
            return done, rows, nbytes
        samples = min(rows, done * self._batch_size)  # all but a block's last batch are full
        return done, samples, nbytes * samples // max(1, rows)  # every row of a block has the same size
