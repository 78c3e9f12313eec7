"""Where the stream of batches stands: the epoch, how far into it, and where a loaded state says to go on."""

from __future__ import annotations

from typing import Optional, Tuple

from .handout import Cursor


class Position:
    """The Feeder's place in its stream of epochs.

    ``epoch`` is the epoch an iteration runs (or the next one runs); while one runs, the cursor
    counts its batches handed out. A loaded state's (epoch, batch) waits in ``resume`` until the
    next iteration starts there."""

    def __init__(self) -> None:
        self.epoch = 0
        self.next_epoch = 0
        self.running = False  # an iteration of `running_epoch` is under way
        self.running_epoch = 0
        self.cursor = Cursor(0)
        self.resume: Optional[Tuple[int, int]] = None

    def set_epoch(self, epoch: int) -> None:
        """The next iteration runs `epoch` from its start, unless a state just loaded is for that
        very epoch: a loop that loads and then calls set_epoch(epoch) goes on where it left off."""
        self.epoch = self.next_epoch = epoch
        if self.resume is not None and self.resume[0] != epoch:
            self.resume = None

    def load(self, epoch: int, batch: int) -> None:
        self.resume = (epoch, batch)
        self.epoch = self.next_epoch = epoch

    def peek(self) -> Tuple[int, int]:
        """The (epoch, first batch) the next begin() starts."""
        return self.resume if self.resume is not None else (self.next_epoch, 0)

    def begin(self) -> Tuple[int, int]:
        """Starts an iteration: its (epoch, first batch)."""
        first_batch = 0
        if self.resume is not None:
            self.next_epoch, first_batch = self.resume
            self.resume = None
        self.epoch = self.next_epoch
        self.next_epoch += 1
        # Started, even before its first batch is asked for: state_dict() must say so.
        self.running, self.running_epoch = True, self.epoch
        self.cursor = Cursor(first_batch)
        return self.epoch, first_batch

    def finish(self) -> None:
        self.running = False

    @property
    def delivered(self) -> int:
        """Batches of the running epoch handed out so far (those before a resume point included)."""
        return self.cursor.delivered()

    def between_epochs(self) -> bool:
        return not self.running and self.resume is None

    def next_batch(self, batches_per_epoch: int) -> Tuple[int, int]:
        """The (epoch, batch) of the batch that comes next."""
        if self.resume is not None:
            return self.resume
        if self.running:
            delivered = self.delivered
            if delivered < batches_per_epoch:
                return self.running_epoch, delivered
            return self.running_epoch + 1, 0  # the epoch's last batch went: a new epoch comes next
        return self.next_epoch, 0
