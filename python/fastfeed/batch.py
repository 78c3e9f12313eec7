"""The object a Feeder yields."""
from __future__ import annotations

from operator import itemgetter
from typing import Any


class Batch(tuple):
    """One batch: ``x, y = batch`` unpacks inputs and targets (``y`` is None without targets).

    It is a 2-tuple so that unpacking and handing it on cost nothing. ``mask`` and ``lengths``
    are None unless padding happened in the batch; the packing fields (``segment_ids``,
    ``position_ids``, ``cu_seqlens``) are None unless it was packed.

    A batch shares memory with fastfeed's output buffers; the buffer is recycled only after
    every array or tensor taken from it is gone, so a batch stays valid for as long as you hold it.
    """

    __slots__ = ()  # windowed batches are plain 2-tuples: nothing per instance beyond x and y

    x: Any = property(itemgetter(0), doc="Inputs, shape (B, window, *feat).")
    y: Any = property(itemgetter(1), doc="Targets, shape (B, horizon, *tfeat), or None.")
    mask = None
    lengths = None
    segment_ids = None
    position_ids = None
    cu_seqlens = None

    def __new__(cls, x: Any, y: Any = None) -> "Batch":
        return tuple.__new__(cls, (x, y))

    def __repr__(self) -> str:
        def describe(a: Any) -> str:
            return "None" if a is None else f"{type(a).__name__}{tuple(a.shape)} {a.dtype}"

        return f"Batch(x={describe(self[0])}, y={describe(self[1])})"

    def __getnewargs__(self) -> tuple:
        return tuple(self)


class PaddedBatch(Batch):
    """A batch of whole sequences: also carries mask and lengths where padding happened (and the
    packing fields)."""

    # Instance attributes shadow Batch's class-level Nones; only padded batches pay for a __dict__.
