"""Handing an epoch's batches to the consumer with no Python code run per batch.

The Feeder's generator deals in blocks (often hundreds of small batches each), made ready a
chunk at a time (views.CHUNK_BATCHES): per chunk it yields an iterator over the ready-made
batches, and `EpochIterator`, a chain over those iterators (the core's ChunkChain), hands the
batches on at C speed. Threads may share one: each batch goes to exactly one of them, in order.
`Cursor` reads how far the consumers got off the current iterator, for state_dict() and the
statistics."""

from __future__ import annotations

import operator
from typing import Any, Generator, Iterator, Tuple

from .._core import ChunkChain
from .process import track_in_child


class EpochIterator(ChunkChain):
    """The batches of one epoch, in order. Like a generator it can be closed early; leaving it
    (or garbage-collecting it) stops the epoch's threads just the same. Threads may share it:
    one at a time makes the next batches ready while the others wait (never per batch).

    In a process forked from the one that started it, every batch asked for raises
    RuntimeError: the core's workers exist only in the parent."""

    __slots__ = ("__weakref__", "_blocks")
    _blocks: Generator[Iterator[Any], None, None]

    @classmethod
    def over(cls, blocks: Generator[Iterator[Any], None, None]) -> EpochIterator:
        it = cls(blocks)
        it._blocks = blocks
        track_in_child(it)
        return it

    def close(self) -> None:
        """Stops the epoch now (its threads, its buffers); the next batch asked for ends the iteration."""
        self._blocks.close()

    def after_fork_in_child(self, parent: int) -> None:
        self.fail(
            f"this iteration of a Feeder was started in process {parent}, which forked this one, and the threads "
            "that assemble its batches exist only there: make a new Feeder in the child"
        )


_NOTHING: Iterator[Any] = iter(())  # an exhausted iterator, for "no chunk under way"


class Cursor:
    """How many batches of an epoch were handed out: those of finished chunks, plus what the
    current chunk's iterator has given so far.

    The three numbers live in one tuple, replaced whole (once per chunk): a reader on another
    thread (stats(), state_dict()) never sees one chunk's size with another's iterator."""

    __slots__ = ("_state",)

    def __init__(self, delivered: int) -> None:
        # (batches before the chunk under way, its size, its iterator)
        self._state: Tuple[int, int, Iterator[Any]] = (delivered, 0, _NOTHING)

    def begin_chunk(self, size: int, pending: Iterator[Any]) -> None:
        """The next chunk. The last one was handed out whole: the chain asks for a chunk only then."""
        before, last, _ = self._state
        self._state = (before + last, size, pending)

    def stop(self) -> None:
        """The epoch ended early: the count stays where the consumer got to, and the rest of the
        chunk is dropped (a closed EpochIterator hands nothing more out; its buffers go back)."""
        pending = self._state[2]
        self._state = (self.delivered(), 0, _NOTHING)
        for _ in pending:
            pass

    def delivered(self) -> int:
        before, size, pending = self._state
        return before + size - operator.length_hint(pending)
