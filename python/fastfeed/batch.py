"""The object a Feeder yields."""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Dict


class Batch(tuple):
    """One batch: ``x, y = batch`` unpacks inputs and targets (``y`` is None without targets).

    Every other field is an attribute that is None unless the option that makes it is on:
    whole sequences always carry ``mask`` (bool ``(B, L)``, True on real steps) and
    ``lengths`` (int64 ``(B,)``), packed rows also ``segment_ids``, ``position_ids`` and
    ``cu_seqlens``. Windows may carry ``covariates`` ``(B, window, *cfeat)``, ``known``
    ``(B, window + horizon, *kfeat)``, ``static`` ``(B, *sfeat)``, ``series`` and ``start``
    (int64 ``(B,)``, with ``with_index=True``), ``observed`` and ``y_observed`` (bool, the
    shapes of ``x`` and ``y``, with ``check_finite="mask"``), and ``scale`` and ``loc``
    (float32 ``(B, *feat)``, with ``scale=``). [`as_dict`][fastfeed.Batch.as_dict] gives the
    fields that are set, by name.

    A batch shares memory with fastfeed's output buffers; the buffer is recycled only after
    every array or tensor taken from it is gone, so a batch stays valid for as long as you hold it.
    """

    __slots__ = ()  # batches of x and y alone are plain 2-tuples: nothing per instance beyond them

    x: Any = property(itemgetter(0), doc="Inputs: (B, window, *feat) windows, or (B, L, *feat) sequences.")
    y: Any = property(itemgetter(1), doc="Targets, or None without targets.")
    mask: Any = None
    lengths: Any = None
    segment_ids: Any = None
    position_ids: Any = None
    cu_seqlens: Any = None
    covariates: Any = None
    known: Any = None
    static: Any = None
    series: Any = None
    start: Any = None
    source: Any = None
    observed: Any = None
    y_observed: Any = None
    scale: Any = None
    loc: Any = None

    def __new__(cls, x: Any, y: Any = None, **fields: Any) -> Batch:
        if not fields:
            return tuple.__new__(cls, (x, y))
        batch = tuple.__new__(_FieldBatch, (x, y))
        batch.__dict__.update(fields)
        return batch

    @staticmethod
    def of_fields(fields: Dict[str, Any]) -> Batch:
        """A batch of named arrays.

        Args:
            fields: "x", optionally "y", and any other fields by name; "x" and "y" are taken out
                of the dict, the rest become the batch's attributes.
        """
        x, y = fields.pop("x"), fields.pop("y", None)
        batch = tuple.__new__(_FieldBatch, (x, y))
        batch.__dict__.update(fields)
        return batch

    def as_dict(self) -> Dict[str, Any]:
        """The fields that are set, by name: ``x`` first, then ``y`` and the others."""
        fields = {"x": self[0]}
        if self[1] is not None:
            fields["y"] = self[1]
        for name, value in getattr(self, "__dict__", {}).items():
            if value is not None:
                fields[name] = value
        return fields

    def __repr__(self) -> str:
        def describe(a: Any) -> str:
            return f"{type(a).__name__}{tuple(a.shape)} {a.dtype}"

        return "Batch(" + ", ".join(f"{k}={describe(v)}" for k, v in self.as_dict().items()) + ")"

    def __getnewargs__(self) -> tuple:
        return tuple(self)


class _FieldBatch(Batch):
    """A batch with fields beyond x and y: they live in the instance's __dict__, where they
    shadow Batch's class-level Nones."""
