"""Megatron-LM indexed datasets: a prefix ``P`` with ``P.bin`` (the tokens of every sequence,
back to back) and ``P.idx`` (where each sequence starts and how long it is), as megatron-core's
``IndexedDatasetBuilder`` and ``tools/preprocess_data.py`` write them.

The index, little-endian (megatron/core/datasets/indexed_dataset.py)::

    9 bytes   b"MMIDIDX\\x00\\x00"
    <Q        version, 1
    <B        dtype code (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16)
    <Q        sequence count S
    <Q        document count D (document indices, a leading 0 included)
    S int32   sequence lengths (elements)
    S int64   sequence pointers (byte offsets into P.bin)
    D int64   document indices (the sequence each document ends before)
    [S int8   sequence modes, multimodal datasets only]

Both files are memory-mapped; every sequence is one item (one per document without sentence
splitting), read in place from the map of ``P.bin``. Anything that does not add up is a
`fastfeed.FormatError` naming the file and the numbers."""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from .._core import NpyFile, Ragged
from ..errors import FormatError

if TYPE_CHECKING:
    from .sources import SeriesSet

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
# megatron-core's DType codes.
DTYPE_CODES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float64", 7: "float32", 8: "uint16"}
HEADER_BYTES = len(MAGIC) + 8 + 1 + 8 + 8  # 34


def megatron_prefix(path: Union[str, os.PathLike[str]]) -> Optional[str]:
    """The prefix ``P`` when `path` names a Megatron dataset: ``P`` itself (not a file, with
    ``P.idx`` and ``P.bin`` beside it), or ``P.idx`` / ``P.bin`` with the other file present."""
    p = os.fspath(path)
    if not os.path.exists(p) and os.path.isfile(p + ".idx") and os.path.isfile(p + ".bin"):
        return p
    root, ext = os.path.splitext(p)
    if ext in (".idx", ".bin") and os.path.isfile(root + ".idx") and os.path.isfile(root + ".bin"):
        return root
    return None


def _codes() -> str:
    return ", ".join(f"{k} {v}" for k, v in DTYPE_CODES.items())


def megatron_source(prefix: str, what: str) -> SeriesSet:
    from .sources import SeriesSet

    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    idx_size = os.path.getsize(idx_path)
    bin_size = os.path.getsize(bin_path)
    with open(idx_path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
        raise FormatError(
            f"{idx_path}: not a Megatron-LM index (it does not start with {MAGIC!r}; "
            f"it starts with {head[: len(MAGIC)]!r})"
        )
    if len(head) < HEADER_BYTES:
        raise FormatError(f"{idx_path}: truncated: {idx_size} bytes, but the header alone takes {HEADER_BYTES}")
    version, code, count, docs = struct.unpack("<QBQQ", head[len(MAGIC) :])
    if version != VERSION:
        raise FormatError(f"{idx_path}: version {version}, but fastfeed reads Megatron-LM index version {VERSION}")
    if code not in DTYPE_CODES:
        raise FormatError(f"{idx_path}: unknown dtype code {code} (megatron-core's codes: {_codes()})")
    dtype = np.dtype(DTYPE_CODES[code]).newbyteorder("<")
    need = HEADER_BYTES + count * (4 + 8) + docs * 8
    if idx_size < need:
        raise FormatError(
            f"{idx_path}: truncated: {idx_size} bytes, but {count} sequences and {docs} document indices need {need}"
        )
    if idx_size not in (need, need + count):  # + count: the per-sequence modes of a multimodal dataset
        raise FormatError(
            f"{idx_path}: {idx_size} bytes, but {count} sequences and {docs} document indices take {need} "
            f"({need + count} with sequence modes); the counts in its header are wrong"
        )
    if count == 0:
        raise ValueError(f"{what}: the Megatron dataset {prefix} holds no sequences; there is nothing to feed")
    index = np.memmap(idx_path, dtype=np.uint8, mode="r")
    lengths = np.frombuffer(index, dtype="<i4", count=count, offset=HEADER_BYTES)
    pointers = np.frombuffer(index, dtype="<i8", count=count, offset=HEADER_BYTES + 4 * count)
    documents = np.frombuffer(index, dtype="<i8", count=docs, offset=HEADER_BYTES + 12 * count)

    bad = np.flatnonzero(lengths < 0)
    if len(bad):
        i = int(bad[0])
        raise FormatError(f"{idx_path}: sequence {i} has length {int(lengths[i])}")
    item = dtype.itemsize
    bad = np.flatnonzero((pointers < 0) | (pointers % item != 0))
    if len(bad):
        i = int(bad[0])
        raise FormatError(
            f"{idx_path}: sequence {i} starts at byte {int(pointers[i])} of {bin_path}, which is not a "
            f"multiple of its {item}-byte {dtype.name} values"
        )
    ends = pointers + lengths.astype(np.int64) * item
    bad = np.flatnonzero(ends > bin_size)
    if len(bad):
        i = int(bad[0])
        raise FormatError(
            f"{idx_path}: sequence {i} ({int(lengths[i])} {dtype.name} values from byte {int(pointers[i])}) "
            f"ends at byte {int(ends[i])}, past the end of {bin_path} ({bin_size} bytes)"
        )
    last = int(ends.max())
    if last != bin_size:
        raise FormatError(
            f"{bin_path}: {bin_size} bytes, but its index {idx_path} says its {count} sequences end at byte "
            f"{last}; the two files do not belong together (or one was cut short)"
        )
    if docs == 0 or documents[0] != 0 or np.any(np.diff(documents) < 0) or documents[-1] > count:
        raise FormatError(
            f"{idx_path}: its {docs} document indices are not a non-decreasing run from 0 to at most the "
            f"{count} sequences"
        )
    # The core's map (its reads guarded, the file watched); an empty file cannot be mapped.
    values = NpyFile.open_raw(bin_path, dtype.name, (bin_size // item,)) if bin_size else np.empty(0, dtype)
    begin = pointers // item
    ragged = Ragged([values], np.zeros(count, dtype=np.int32), begin, begin + lengths)
    del index, lengths, pointers, documents
    return SeriesSet([ragged], ragged.lengths().tolist(), (), dtype.name, single=False)
