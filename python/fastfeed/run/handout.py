"""Handing an epoch's batches to the consumer with no Python code run per batch.

The Feeder's generator deals in blocks (often hundreds of small batches each), made ready a
chunk at a time (views.CHUNK_BATCHES): per chunk it yields an iterator over the ready-made
batches, and `EpochIterator`, a chain over those iterators, hands the batches on at C speed.
`Cursor` reads how far the consumer got off the current iterator, for state_dict() and the
statistics."""

from __future__ import annotations

import itertools
import operator
from typing import Any, Generator, Iterator, cast


class EpochIterator(itertools.chain):
    """The batches of one epoch, in order. Like a generator it can be closed early; leaving it
    (or garbage-collecting it) stops the epoch's threads just the same."""

    __slots__ = ("_blocks",)
    _blocks: Generator[Iterator[Any], None, None]

    @classmethod
    def over(cls, blocks: Generator[Iterator[Any], None, None]) -> EpochIterator:
        it = cast(EpochIterator, cls.from_iterable(blocks))  # typeshed's from_iterable returns a plain chain
        it._blocks = blocks
        return it

    def close(self) -> None:
        """Stops the epoch now (its threads, its buffers); the next batch asked for ends the iteration."""
        self._blocks.close()


class Cursor:
    """How many batches of an epoch were handed out: those of finished chunks, plus what the
    current chunk's iterator has given so far."""

    __slots__ = ("_before", "_pending", "_size")

    def __init__(self, delivered: int) -> None:
        self._before, self._size, self._pending = delivered, 0, iter(())

    def begin_chunk(self, size: int, pending: Iterator[Any]) -> None:
        self._size, self._pending = size, pending

    def end_chunk(self) -> None:
        self._before, self._size, self._pending = self.delivered(), 0, iter(())

    def stop(self) -> None:
        """The epoch ended early: the count stays where the consumer got to, and the rest of the
        chunk is dropped (a closed EpochIterator hands nothing more out; its buffers go back)."""
        pending = self._pending
        self.end_chunk()
        for _ in pending:
            pass

    def delivered(self) -> int:
        return self._before + self._size - operator.length_hint(self._pending)
