"""Counting batches handed out of blocks, exact to the batch, for `Feeder.stats()`."""

from __future__ import annotations

from typing import Optional, Tuple

from .stats import StatsRecorder

Share = Tuple[int, int, int]  # (batches, samples, bytes)


class BlockCounter:
    """Batches travel in blocks of hundreds; this counts those handed out so far, also in the
    middle of a block, into a StatsRecorder. Samples and bytes of a block are counted pro rata."""

    def __init__(self, recorder: StatsRecorder, batch_size: int) -> None:
        self._recorder = recorder
        self._batch_size = batch_size
        self._open: Optional[Tuple[int, int, int, int]] = None  # (first batch, batches, rows, bytes)
        self._count_from = 0  # batches of the running epoch before this are not counted (reset)

    def open(self, first_batch: int, batches: int, rows: int, nbytes: int) -> None:
        """A block is being handed out from batch `first_batch` of the epoch."""
        self._open = (first_batch, batches, rows, nbytes)

    def close(self, delivered: int) -> None:
        """Counts what was handed out of the open block once `delivered` batches of the epoch were."""
        block, self._open = self._open, None
        share = None if block is None else self._share(delivered, *block)
        if share is not None:
            self._recorder.batches(*share)

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
