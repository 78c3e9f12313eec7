"""Arrow sources: ``.arrow`` files (IPC file or stream format), ``pyarrow`` tables, record
batches and arrays, and Hugging Face ``datasets.Dataset`` objects, read in place.

A column of lists (``list``, ``large_list`` or a list view of numbers, or of fixed-size lists of
numbers, which become the feature shape) gives one sequence per row: the child values of every
chunk are NumPy views of Arrow's own buffers (memory-mapped for files), and a `_core.Ragged`
cuts them by the offsets, so nothing is copied. A column of numbers gives one series: used in
place when it is one chunk, else copied once (logged). A ``Dataset`` with an indices mapping
(after ``select``, ``shuffle``, ``filter``) yields its rows in that order: only the per-row
chunk/begin/end indices are gathered.

pyarrow and datasets are optional: they are imported only when such a source is given."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import numpy as np

from .._core import Ragged
from ..errors import FormatError
from .dataset import _human_bytes

if TYPE_CHECKING:
    from .sources import SeriesSet

logger = logging.getLogger("fastfeed")

# File names read as Arrow IPC (Feather v2 is the IPC file format); other names are
# recognised by their first bytes.
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc", ".arrows")
_FILE_MAGIC = b"ARROW1"
_STREAM_CONTINUATION = b"\xff\xff\xff\xff"


def is_arrow_object(obj: Any) -> bool:
    """Whether `obj` is a pyarrow table, batch or array, or a Hugging Face dataset (told by its
    type's module: neither library is imported to ask)."""
    module = type(obj).__module__
    return module.startswith("pyarrow") or module.split(".")[0] == "datasets"


def is_arrow_file(path: str, head: bytes) -> bool:
    """Whether the file at `path` (whose first bytes are `head`) is read as Arrow IPC."""
    return path.lower().endswith(ARROW_SUFFIXES) or head.startswith(_FILE_MAGIC)


def _pyarrow(what: str) -> Any:
    try:
        import pyarrow as pa
    except ImportError as e:  # pragma: no cover - pyarrow is in the dev requirements
        raise ImportError(f"{what}: reading Arrow data needs pyarrow (pip install 'fastfeed[arrow]')") from e
    return pa


def open_arrow_file(path: str, what: str) -> Any:
    """The table in an Arrow IPC file or stream, its buffers slices of a memory map of the file."""
    pa = _pyarrow(what)
    import pyarrow.ipc as ipc

    source = pa.memory_map(path, "r")
    head = source.read(len(_FILE_MAGIC))
    source.seek(0)
    try:
        if head == _FILE_MAGIC:
            return ipc.open_file(source).read_all()
        return ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        kind = "IPC file" if head == _FILE_MAGIC else "IPC stream"
        raise FormatError(f"{path}: not a readable Arrow {kind} ({e})") from e


def arrow_file_source(path: str, what: str, column: Optional[str]) -> SeriesSet:
    table = open_arrow_file(path, what)
    return _table_source(table, f"{what} ({path})", column, None)


def arrow_object_source(obj: Any, what: str, column: Optional[str]) -> SeriesSet:
    """A pyarrow Table/RecordBatch/ChunkedArray/Array or a datasets.Dataset as series."""
    module = type(obj).__module__
    name = type(obj).__name__
    if module.split(".")[0] == "datasets":
        if name in ("DatasetDict", "IterableDatasetDict"):
            raise ValueError(f"{what} is a datasets.{name}; pick a split, e.g. ds['train']")
        if not (hasattr(obj, "_indices") and hasattr(obj, "data")):
            raise ValueError(
                f"{what} is a datasets.{name}; fastfeed reads a datasets.Dataset (an IterableDataset "
                "streams rows one by one: save it with Dataset.from_generator or load it without streaming)"
            )
        return _dataset_source(obj, what, column)
    pa = _pyarrow(what)
    if isinstance(obj, (pa.Table, pa.RecordBatch)):
        return _table_source(obj, what, column, None)
    if isinstance(obj, (pa.ChunkedArray, pa.Array)):
        if column is not None:
            raise ValueError(
                f"column={column!r} applies to sources with columns (a table, an .arrow file, a "
                f"Hugging Face dataset), but {what} is a pyarrow {name}"
            )
        chunks = list(obj.chunks) if isinstance(obj, pa.ChunkedArray) else [obj]
        return _column_source(chunks, obj.type, what, None)
    raise ValueError(f"{what} is a pyarrow {name}; fastfeed reads a pyarrow Table, RecordBatch, ChunkedArray or Array")


def _dataset_source(ds: Any, what: str, column: Optional[str]) -> SeriesSet:
    data = ds.data
    table = getattr(data, "table", data)  # datasets.table.Table wraps a pyarrow Table
    indices = None
    if ds._indices is not None:
        mapping = ds._indices
        mapping = getattr(mapping, "table", mapping)
        indices = np.asarray(mapping.column(0).to_numpy(), dtype=np.int64)  # O(rows) ints, never values
    return _table_source(table, what, column, indices)


def _table_source(table: Any, what: str, column: Optional[str], indices: Optional[np.ndarray]) -> SeriesSet:
    names = list(table.schema.names)
    if column is None:
        if len(names) != 1:
            raise ValueError(f"{what} has {len(names)} columns ({_listed(names)}); say which to read with column=...")
        column = names[0]
    elif not isinstance(column, str):
        raise ValueError(f"column must be a column name (a str), not {type(column).__name__}")
    if column not in names:
        raise ValueError(f"{what} has no column {column!r}; its columns are {_listed(names)}")
    col = table.column(column)
    chunks = list(col.chunks) if hasattr(col, "chunks") else [col]
    return _column_source(chunks, col.type, f"{what} column {column!r}", indices)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "none"


# ----- types ---------------------------------------------------------------------------------


def _is_list(pa: Any, t: Any) -> bool:
    return bool(
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or getattr(pa.types, "is_list_view", lambda _: False)(t)
        or getattr(pa.types, "is_large_list_view", lambda _: False)(t)
    )


def _describe(pa: Any, t: Any) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return "strings"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytes"
    if pa.types.is_dictionary(t):
        return f"dictionary-encoded values ({t})"
    return str(t)


def _storage(pa: Any, t: Any) -> Any:
    return t.storage_type if isinstance(t, pa.ExtensionType) else t


def _leaf(pa: Any, t: Any, label: str, outer: str) -> Tuple[np.dtype, Tuple[int, ...]]:
    """The NumPy dtype and feature shape of `t`: numbers, or fixed-size lists of them (each
    level a feature axis). `outer` says what holds it, for the message refusing anything else."""
    t = _storage(pa, t)
    feat: Tuple[int, ...] = ()
    while pa.types.is_fixed_size_list(t):
        feat += (int(t.list_size),)
        t = _storage(pa, t.value_type)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return np.dtype(t.to_pandas_dtype()), feat
    if _is_list(pa, t):
        raise ValueError(
            f"{label} is nested deeper than one list level ({outer}); fastfeed reads a column of numbers "
            "(one series) or of lists of numbers (one sequence per row), with fixed-size lists as features"
        )
    raise ValueError(
        f"{label} holds {_describe(pa, t)} ({outer}); fastfeed reads numbers: a column of numbers "
        "(one series) or of lists of numbers (one sequence per row); tokenize or convert the column first"
    )


# ----- values --------------------------------------------------------------------------------


def _rows(pa: Any, a: Any, dtype: np.dtype, feat: Tuple[int, ...]) -> Tuple[np.ndarray, Optional[np.ndarray], bool]:
    """The values of array `a` (numbers, or fixed-size lists of them) as an array of shape
    ``(len(a), *feat)`` over Arrow's buffer (a view; a copy only for booleans, which Arrow
    packs in bits), the rows of `a` holding a null (None when none does), and whether it copied."""
    n = len(a)
    if isinstance(a.type, pa.ExtensionType):
        a = a.storage
    if pa.types.is_fixed_size_list(a.type):
        k = int(a.type.list_size)
        inner = a.values.slice(a.offset * k, n * k)  # .values ignores the slice of `a`
        sub, sub_bad, copied = _rows(pa, inner, dtype, feat[1:])
        values = sub.reshape((n,) + feat)
        bad: Optional[np.ndarray] = None if sub_bad is None else np.asarray(sub_bad.reshape(n, k).any(axis=1))
        if a.null_count:
            own = a.is_null().to_numpy(zero_copy_only=False)
            bad = own if bad is None else (bad | own)
        return values, bad, copied
    bad = np.asarray(a.is_null().to_numpy(zero_copy_only=False)) if a.null_count else None
    if n == 0:
        return np.empty((0,) + feat, dtype), None, False
    if dtype.kind == "b":  # bits: one copy into bytes
        return np.asarray(a.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.bool_), bad, True
    buf = a.buffers()[1]
    values = np.frombuffer(buf, dtype=dtype, count=n, offset=a.offset * dtype.itemsize)
    return values, bad, False


def _aligned(values: np.ndarray) -> Tuple[np.ndarray, bool]:
    """`values`, copied (True) when Arrow's buffer does not align them to their elements (the
    caller logs the copy)."""
    if values.flags.aligned:
        return values, False
    return np.array(values, copy=True), True


def _refuse_nulls(label: str, nulls: List[Tuple[np.ndarray, str]], indices: Optional[np.ndarray]) -> None:
    """Raises naming the first row fed (a position of the indices mapping, when there is one)
    among the table rows in `nulls` ((rows, why) pairs); rows the mapping leaves out are fine."""
    if not nulls:
        return
    rows = np.concatenate([r for r, _ in nulls])
    whys = np.concatenate([np.full(len(r), i) for i, (r, _) in enumerate(nulls)])
    if indices is not None:
        hit = np.flatnonzero(np.isin(indices, rows))
        if len(hit) == 0:
            return
        row = int(hit[0])
        table_row = int(indices[row])
    else:
        row = table_row = int(rows.min())
    why = nulls[int(whys[np.flatnonzero(rows == table_row)[0]])][1]
    raise ValueError(f"{label} has a null at row {row} ({why}); fastfeed needs every value (fill or drop nulls first)")


def _column_source(chunks: List[Any], col_type: Any, label: str, indices: Optional[np.ndarray]) -> SeriesSet:
    from .sources import SeriesSet, _check_dtype, _log_copy

    pa = _pyarrow(label)
    t = _storage(pa, col_type)
    total_rows = sum(len(c) for c in chunks)
    if indices is not None and len(indices) and (indices.min() < 0 or indices.max() >= total_rows):
        raise FormatError(f"{label}: the indices mapping points past the table's {total_rows} rows")
    if _is_list(pa, t):
        dtype, feat = _leaf(pa, t.value_type, label, f"type {col_type}")
        _check_dtype(dtype, label)
        return _lists_source(pa, chunks, dtype, feat, label, indices, SeriesSet)
    dtype, feat = _leaf(pa, t, label, f"type {col_type}")
    _check_dtype(dtype, label)
    parts: List[np.ndarray] = []
    nulls: List[Tuple[np.ndarray, str]] = []  # (table rows, why)
    copied = False
    first = 0
    for c in chunks:
        values, bad, c_copied = _rows(pa, c, dtype, feat)
        if bad is not None and bad.any():
            nulls.append((np.flatnonzero(bad) + first, "a missing value"))
        values, a_copied = _aligned(values)
        copied |= c_copied or a_copied
        parts.append(values)
        first += len(c)
    _refuse_nulls(label, nulls, indices)
    rows = len(indices) if indices is not None else total_rows
    if rows == 0:
        raise ValueError(f"{label} has no rows; there is nothing to feed")
    if indices is not None:
        series = (parts[0] if len(parts) == 1 else np.concatenate(parts))[indices]
        _log_copy(label, "is read through the dataset's indices mapping (select/shuffle/filter)", series)
    elif len(parts) == 1:
        series = parts[0]
        if copied:
            _log_copy(label, "holds booleans (Arrow packs them in bits) or unaligned values", series)
    else:
        series = np.concatenate(parts)
        _log_copy(label, f"is a column of numbers in {len(parts)} chunks (record batches)", series)
    return SeriesSet([series], [int(series.shape[0])], feat, dtype.name, single=True)


def _lists_source(
    pa: Any,
    chunks: List[Any],
    dtype: np.dtype,
    feat: Tuple[int, ...],
    label: str,
    indices: Optional[np.ndarray],
    make: Any,
) -> SeriesSet:
    values: List[np.ndarray] = []
    chunk_ids: List[np.ndarray] = []
    begins: List[np.ndarray] = []
    ends: List[np.ndarray] = []
    nulls: List[Tuple[np.ndarray, str]] = []  # (table rows, why)
    copied_bytes = 0
    first = 0
    for c in chunks:
        n = len(c)
        if isinstance(c.type, pa.ExtensionType):
            c = c.storage
        if n == 0:
            continue
        offsets = c.offsets.to_numpy(zero_copy_only=False)  # int32 or int64, absolute into c.values
        if pa.types.is_list(c.type) or pa.types.is_large_list(c.type):
            begin = offsets[:-1].astype(np.int64)
            end = offsets[1:].astype(np.int64)
        else:  # a list view: offsets and sizes, in any order
            begin = offsets.astype(np.int64)
            end = begin + c.sizes.to_numpy(zero_copy_only=False).astype(np.int64)
        vals, value_bad, copied = _rows(pa, c.values, dtype, feat)
        bad = c.is_null().to_numpy(zero_copy_only=False) if c.null_count else None
        if bad is not None:  # a null row's offsets may point anywhere: keep them in bounds
            begin = np.where(bad, 0, begin)
            end = np.where(bad, 0, end)
        if value_bad is not None:  # rows whose range holds a null value
            counts = np.concatenate(([0], np.cumsum(value_bad, dtype=np.int64)))
            inner = counts[np.clip(end, 0, len(vals))] - counts[np.clip(begin, 0, len(vals))] > 0
            nulls.append((np.flatnonzero(inner) + first, "a null value inside its list"))
        if bad is not None:
            nulls.append((np.flatnonzero(bad) + first, "a missing list"))
        vals, realigned = _aligned(vals)
        if copied or realigned:
            copied_bytes += int(vals.nbytes)
        chunk_ids.append(np.full(n, len(values), dtype=np.int32))
        begins.append(begin)
        ends.append(end)
        values.append(vals)
        first += n
    _refuse_nulls(label, nulls, indices)
    if not values:
        raise ValueError(f"{label} has no rows; there is nothing to feed")
    chunk = np.concatenate(chunk_ids)
    begin = np.concatenate(begins)
    end = np.concatenate(ends)
    if indices is not None:  # the mapping's order: gather the per-row indices, never the values
        chunk, begin, end = chunk[indices], begin[indices], end[indices]
        if len(chunk) == 0:
            raise ValueError(f"{label}: the dataset's indices mapping selects no rows; there is nothing to feed")
    if copied_bytes:
        logger.info(
            "fastfeed: %s holds booleans (Arrow packs them in bits) or unaligned values; copied once into arrays of %s",
            label,
            _human_bytes(copied_bytes),
        )
    ragged = Ragged(values, chunk, begin, end)
    lengths = ragged.lengths().tolist()
    return make([ragged], lengths, feat, dtype.name, single=False)
