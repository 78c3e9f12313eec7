"""How many worker threads assemble batches and how many blocks they build ahead: fixed by the
caller (``num_threads=``, ``prefetch=``), or chosen while feeding (``None``) by the core's tuner
(csrc/pipeline/tuner.hpp), and what it chose."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Deque, Dict, Tuple

# Hand-overs (blocks) between two decisions of the tuner. Tests lower it to see the tuner act
# within small epochs.
TUNE_WINDOW = 16
# Changes of the shape kept for FeedStats.tuning (the most recent ones).
_HISTORY = 64

# (epoch, batch, threads, prefetch): from that batch of that epoch on, `threads` workers claimed
# blocks and up to `prefetch` blocks were built ahead.
Change = Tuple[int, int, int, int]


@dataclass(frozen=True)
class TuneLimits:
    """What the Feeder lets its pipelines' tuner do.

    Workers: explicit ``num_threads`` fixes them; otherwise they start at one and the tuner keeps
    between one and ``busy_threads`` (the cores this process may use, less the training loop's
    own) claiming blocks, or ``max_threads`` (every such core) while the loop waits for batches
    more than a tenth of its time. Prefetch: explicit ``prefetch`` fixes it; otherwise it starts
    at two blocks per worker and grows, never past ``max_prefetch`` (the memory budget).
    """

    auto_threads: bool
    auto_prefetch: bool
    max_threads: int  # explicit num_threads, or the most workers the tuner may use
    busy_threads: int  # the most workers while the loop computes
    max_prefetch: int  # explicit prefetch, or the most blocks the tuner may build ahead
    threads: int  # explicit num_threads, or where the first epoch starts
    prefetch: int  # explicit prefetch, or where the first epoch starts

    def run_fields(self, shape: Tuple[int, int]) -> Dict[str, Any]:
        """The core RunSpec's keywords for an epoch starting at `shape` (threads, prefetch)."""
        return dict(
            num_threads=shape[0],
            prefetch=shape[1],
            auto_threads=self.auto_threads,
            auto_prefetch=self.auto_prefetch,
            max_threads=self.max_threads,
            busy_threads=self.busy_threads,
            max_prefetch=self.max_prefetch,
            tune_window=TUNE_WINDOW,
        )


class TuningLog:
    """The shape the pipelines had, epoch after epoch: now, and each change (the last 64).

    A new epoch starts where the last one left off, so that the tuner learns once per Feeder
    rather than once per epoch."""

    def __init__(self, limits: TuneLimits) -> None:
        self.limits = limits
        self.threads, self.prefetch = limits.threads, limits.prefetch
        self.history: Deque[Change] = collections.deque(maxlen=_HISTORY)

    def start(self) -> Tuple[int, int]:
        """(threads, prefetch) the next epoch starts with."""
        return self.threads, self.prefetch

    def saw(self, epoch: int, batch: int, threads: int, prefetch: int) -> None:
        """A block came from a pipeline of this shape, handed over at `batch` of `epoch`. Blocks
        the loop's own thread built (a one-block epoch, no workers) come as (0, 0): no change."""
        if threads <= 0 or ((threads, prefetch) == (self.threads, self.prefetch) and self.history):
            return
        self.threads, self.prefetch = threads, prefetch
        self.history.append((epoch, batch, threads, prefetch))

    def stats_fields(self) -> Dict[str, Any]:
        """FeedStats' fields about the shape."""
        return dict(
            threads=self.threads,
            prefetch=self.prefetch,
            threads_auto=self.limits.auto_threads,
            prefetch_auto=self.limits.auto_prefetch,
            tuning=tuple(self.history),
        )

    def describe(self) -> str:
        """For the epoch's log line: ``threads 1 (auto, at most 2), prefetch 4 (auto, at most 8)``,
        or ``threads 2, prefetch 4`` as given."""
        lim = self.limits
        threads = f"threads {self.threads}" + (f" (auto, at most {lim.max_threads})" if lim.auto_threads else "")
        prefetch = f"prefetch {self.prefetch}" + (f" (auto, at most {lim.max_prefetch})" if lim.auto_prefetch else "")
        return f"{threads}, {prefetch}"

    def arguments(self) -> str:
        """For the Feeder's repr: ``num_threads=auto (1 now, at most 2), prefetch=auto (2 now, at
        most 8)``, or ``num_threads=2, prefetch=4`` as given."""
        lim = self.limits

        def one(name: str, now: int, auto: bool, most: int) -> str:
            return f"{name}=auto ({now} now, at most {most})" if auto else f"{name}={now}"

        return (
            f"{one('num_threads', self.threads, lim.auto_threads, lim.max_threads)}, "
            f"{one('prefetch', self.prefetch, lim.auto_prefetch, lim.max_prefetch)}"
        )
