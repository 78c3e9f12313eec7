"""``fastfeed convert``: .npy files, CSV, Parquet and Arrow into a dataset directory.

Inputs:

- a ``.npy`` file: one series;
- a directory of ``.npy`` files: one series per file, in order of file name;
- a CSV (``.csv``, ``.csv.gz``, ``.csv.bz2``), Parquet (``.parquet``, ``.pq``) or Arrow IPC file
  (``.arrow``, ``.arrows``, ``.feather``, ``.ipc``: the IPC file or stream format, as pyarrow and
  Hugging Face ``datasets`` write them; memory-mapped), read with pyarrow
  (``pip install 'fastfeed[arrow]'``), in one of three layouts:

  - ``column=C``: every row of the list column C is one sequence (in CSV a cell holds a JSON
    list such as ``[1, 2, 3]``, or ``[[1, 2], [3, 4]]`` for steps of two features);
  - ``value_columns=[V, ...]`` with ``id_column=ID``: the rows of each id, in file order, are one
    sequence; sequences come in the order of the ids' first appearance; one value column gives
    scalar steps, k columns steps of shape ``(k,)``;
  - ``value_columns`` alone: the whole table is one series.

Targets (stored in the dataset, a Feeder's ``batch.y``), either of:

- ``label_columns=[L, ...]``: one label per sequence from numeric columns: the row's value with
  ``column=C``, else the value every row of the sequence holds (a sequence whose rows disagree
  is refused, naming the id and the rows); k columns give labels of shape ``(k,)``;
- ``target_columns=[T, ...]``: step targets aligned step for step with the values: with
  ``column=C`` one list column whose lists have the lengths of C's, else numeric columns cut
  into sequences as the value columns are.

Dtypes: Parquet and Arrow columns keep their types. A CSV states none, so its integer values
(value columns, or JSON lists with no fraction, exponent or NaN in any cell) are stored in the
narrowest integer dtype that holds them all: the narrowest of uint8, uint16, uint32 and uint64
when no value is negative, else the narrowest of int8, int16, int32 and int64 (see
`narrowest_int`); its floats stay float64 as parsed. Integers above int64's range (which
pyarrow parses as rounded doubles) are read again exactly, as uint64; integers that no integer
type holds (above 2**64-1, below -2**63, or negative ones beside ones above int64's range) are
refused, naming the column and the row, rather than rounded. ``dtype`` chooses the values' dtype
instead, refusing values it would change (``float64`` stores such integers rounded). A CSV's
integer labels and step targets stay int64 (what PyTorch's losses take as class indices: the
Feeder hands integer targets over unconverted; uint64 for values above int64's range), its floats
float64; ``target_dtype`` chooses another.

Sequences are written in chunks of about ``CHUNK_BYTES`` with append_dataset, so the input is
never held twice; a grouped table is held once (its value columns as one array) because the
rows of an id may be scattered over the file. A CSV's JSON lists are parsed twice when their
dtype is to be found (once to find it, once to write).

Rows are numbered from 0, the header row not counted.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..dtypes import SOURCE_DTYPES
from .dataset import _DATASET_FILES, DatasetInfo, append_dataset, is_dataset_dir, open_dataset, write_dataset

__all__ = ["CHUNK_BYTES", "ConvertError", "convert", "narrowest_int"]

CHUNK_BYTES = 32 * 1024 * 1024
ARROW_HINT = "pip install 'fastfeed[arrow]'"
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_ARROW_SUFFIXES = (".arrow", ".arrows", ".feather", ".ipc")
_ARROW_FILE_MAGIC = b"ARROW1"
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class ConvertError(ValueError):
    """The input cannot be converted as asked; the message says why and what to do."""


class UsageError(ConvertError):
    """The options do not fit the input (the command line exits 2 for these)."""


# ----- progress and chunked writing ------------------------------------------------------------


class _Progress:
    """A tqdm bar when tqdm is installed and wanted, else nothing."""

    def __init__(self, enabled: bool, total: Optional[int], unit: str, desc: str) -> None:
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _ChunkWriter:
    """Collects sequences (and their targets) and writes them in chunks: the first with
    write_dataset, the rest with append_dataset, so memory holds at most one chunk besides the
    input. `target_kind` is None, "labels" (one array per sequence, its label) or "steps" (an
    array per sequence aligned with it)."""

    def __init__(
        self,
        output: str,
        overwrite: bool,
        dtype: Optional[str],
        names: Callable[[int], str],
        target_kind: Optional[str] = None,
        target_dtype: Optional[str] = None,
    ) -> None:
        self.output = output
        self.overwrite = overwrite
        self.dtype = dtype  # the values' dtype; may be set until the first add
        self.target_kind = target_kind
        self.target_dtype = target_dtype  # step targets are cast to it
        self.started = False
        self._names = names  # names sequence number i in errors (a file name, a row, an id)
        self._pending: List[np.ndarray] = []
        self._pending_targets: List[np.ndarray] = []
        self._pending_bytes = 0
        self._count = 0
        self._first: List[Optional[Tuple[str, Tuple[int, ...]]]] = [None, None]  # values, targets

    def add(self, seq: np.ndarray, target: Optional[np.ndarray] = None) -> None:
        name = self._names(self._count)
        if self.dtype is not None:
            seq = cast_exactly(seq, np.dtype(self.dtype), name)
        self._check(seq, seq.shape[1:], 0, name, "")
        if self.target_kind is not None:
            assert target is not None
            target = np.asarray(target)
            what = "its label" if self.target_kind == "labels" else "its step targets"
            if self.target_kind == "steps":
                if self.target_dtype is not None:
                    target = cast_exactly(
                        target, np.dtype(self.target_dtype), f"{name}: {what}", None, "--target-dtype"
                    )
                if target.shape[:1] != seq.shape[:1]:
                    raise ConvertError(
                        f"{name}: {what} have {target.shape[0] if target.ndim else 0} steps, but the "
                        f"sequence has {seq.shape[0]}; step targets must be aligned step for step"
                    )
            self._check(target, target.shape if self.target_kind == "labels" else target.shape[1:], 1, name, what)
            self._pending_targets.append(target)
            self._pending_bytes += target.nbytes
        self._pending.append(seq)
        self._pending_bytes += seq.nbytes
        self._count += 1
        if self._pending_bytes >= CHUNK_BYTES:
            self.flush()

    def _check(self, arr: np.ndarray, feat: Tuple[int, ...], slot: int, name: str, what: str) -> None:
        # Checked here, naming the input, rather than by append_dataset naming a chunk index.
        # slot 0: the values ("what" empty); slot 1: the targets ("what" says which).
        subject = f"{name}: {what}" if what else name
        option = "--target-dtype" if slot else "--dtype"
        if arr.dtype == object or arr.dtype.name not in SOURCE_DTYPES:
            raise ConvertError(
                f"{subject} has dtype {arr.dtype}, which a dataset cannot hold "
                f"(supported: {', '.join(SOURCE_DTYPES)}); pass {option} to convert it"
            )
        layout = (arr.dtype.name, tuple(int(d) for d in feat))
        first = self._first[slot]
        if first is None:
            self._first[slot] = layout
            return
        theirs = f"those of {self._names(0)}" if what else self._names(0)
        if layout[0] != first[0]:
            raise ConvertError(
                f"{subject} has dtype {layout[0]}, but {theirs} has {first[0]}; "
                f"pass {option} to convert all of them to one dtype"
            )
        if layout[1] != first[1]:
            shape = "shape" if self.target_kind == "labels" and slot else "steps of shape"
            raise ConvertError(
                f"{subject} has {shape} {layout[1]}, but {theirs} has {first[1]}; "
                f"all {'labels' if shape == 'shape' else 'sequences'} must share one feature shape"
            )

    def flush(self) -> None:
        if not self._pending:
            return
        targets: Any = None
        if self.target_kind == "labels":
            targets = np.stack(self._pending_targets)
        elif self.target_kind == "steps":
            targets = self._pending_targets
        if self.started:
            if targets is None:
                append_dataset(self.output, self._pending)
            else:
                append_dataset(self.output, self._pending, targets)
        else:
            write_dataset(self.output, self._pending, targets, overwrite=self.overwrite)
            self.started = True
        self._pending, self._pending_targets, self._pending_bytes = [], [], 0

    def finish(self) -> DatasetInfo:
        self.flush()
        if not self.started:
            raise ConvertError("the input holds no sequences; there is nothing to write")
        return open_dataset(self.output)


# ----- .npy inputs ------------------------------------------------------------------------------


def _load_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ConvertError(f"{path}: cannot read as .npy: {e}") from None
    if not isinstance(arr, np.ndarray):
        raise ConvertError(f"{path}: not a single array (.npz archives are not supported)")
    if arr.ndim < 1:
        raise ConvertError(f"{path}: holds a 0-d array; a series needs a time axis (shape (T, *feat))")
    return arr


def _npy_files(folder: str) -> List[str]:
    names = sorted(n for n in os.listdir(folder) if n.endswith(".npy") and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise ConvertError(f"{folder}: no .npy files in this directory")
    return [os.path.join(folder, n) for n in names]


def _convert_npy(paths: List[str], writer: _ChunkWriter, progress: bool) -> None:
    bar = _Progress(progress and len(paths) > 1, len(paths), "file", "converting")
    try:
        for path in paths:
            writer.add(_load_npy(path))
            bar.update(1)
    finally:
        bar.close()


# ----- CSV, Parquet and Arrow -------------------------------------------------------------------


def _arrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ConvertError(f"reading CSV, Parquet and Arrow files needs pyarrow: {ARROW_HINT}") from None
    return pyarrow


def _all_numbers(names: Sequence[str]) -> bool:
    """Whether every cell of a CSV's first row reads as a number."""
    try:
        for name in names:
            float(name)
    except ValueError:
        return False
    return len(names) > 0


def _py(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds, for messages (7 rather than np.int64(7))."""
    return value.item() if isinstance(value, np.generic) else value


def _names(columns: Sequence[str]) -> str:
    return ("column " if len(columns) == 1 else "columns ") + ", ".join(map(repr, columns))


class _Table:
    """Streams record batches of some columns of a CSV, Parquet or Arrow IPC file."""

    def __init__(self, path: str, kind: str, header: Optional[bool] = None) -> None:
        self.pa = _arrow()
        self.path, self.kind, self.header = path, kind, header is not False
        self.num_rows: Optional[int] = None
        if kind == "parquet":
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetFile(path)
            self.schema = self._parquet.schema_arrow
            self.num_rows = self._parquet.metadata.num_rows
        elif kind == "arrow":
            with open(path, "rb") as f:
                self._ipc_file = f.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC
            try:
                self.schema = self._open_ipc().schema
                # Counting reads only the batches' metadata: the map is never copied.
                self.num_rows = sum(b.num_rows for b in self._ipc_batches())
            except (self.pa.ArrowException, OSError) as e:  # a read past the end is an OSError
                raise ConvertError(f"{path}: not an Arrow IPC file or stream ({e})") from None
        else:
            with contextlib.closing(self._open_csv(None)) as reader:
                self.schema = reader.schema
            if header is None and _all_numbers(self.schema.names):
                raise UsageError(
                    f"{path}: the first row ({', '.join(self.schema.names[:4])}"
                    f"{', ...' if len(self.schema.names) > 4 else ''}) is all numbers, so it looks like data "
                    "rather than column names (np.savetxt writes no header); pass --no-header to read it as "
                    "data (columns f0, f1, ...) or --header to take it as the names"
                )

    def _open_csv(self, columns: Optional[List[str]], types: Optional[dict] = None) -> Any:
        import pyarrow.csv as pacsv

        # Empty cells are missing values in every column, text ones included; "nan" and "inf" are
        # numbers (np.savetxt writes them so), not missing.
        opts = pacsv.ConvertOptions(
            include_columns=columns, column_types=types or {}, strings_can_be_null=True, null_values=[""]
        )
        # Without a header row the columns are named f0, f1, ... (pyarrow's names).
        read = pacsv.ReadOptions(autogenerate_column_names=not self.header)
        return pacsv.open_csv(self.path, read_options=read, convert_options=opts)

    def _open_ipc(self) -> Any:
        # Memory-mapped: record batches are views of the file (Arrow keeps the map alive while
        # any of them is).
        source = self.pa.memory_map(self.path, "r")
        return self.pa.ipc.open_file(source) if self._ipc_file else self.pa.ipc.open_stream(source)

    def _ipc_batches(self) -> Iterator[Any]:
        reader = self._open_ipc()
        i = 0
        try:
            if self._ipc_file:
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
            else:
                for batch in reader:
                    yield batch
                    i += 1
        except (self.pa.ArrowException, OSError) as e:
            raise ConvertError(
                f"{self.path}: cannot read record batch {i} ({e}); the file is damaged or cut short"
            ) from None

    @property
    def columns(self) -> List[str]:
        return list(self.schema.names)

    def require(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.schema.names]
        if missing:
            raise UsageError(f"no column {missing[0]!r}; the columns are {', '.join(map(repr, self.schema.names))}")
        twice = [n for n in names if self.schema.names.count(n) > 1]
        if twice:
            raise ConvertError(f"the file has more than one column named {twice[0]!r}; rename them first")

    def type(self, column: str) -> Any:
        return self.schema.field(column).type

    def batches(self, columns: List[str], types: Optional[dict] = None) -> Iterator[Any]:
        if self.kind == "parquet":
            yield from self._parquet.iter_batches(columns=columns)
            return
        if self.kind == "arrow":
            index = [self.schema.get_field_index(c) for c in columns]
            for batch in self._ipc_batches():
                yield self.pa.RecordBatch.from_arrays([batch.column(i) for i in index], names=columns)
            return
        try:
            # pyarrow parses the first block on opening: errors come from both.
            with contextlib.closing(self._open_csv(columns, types)) as reader:
                yield from reader
        except self.pa.ArrowInvalid as e:
            if types and any(not self.pa.types.is_string(t) for t in types.values()):
                raise ConvertError(
                    f"{self.path}: {e} (read with the type that --dtype or --target-dtype implies; "
                    "pass one that holds every value, e.g. float64)"
                ) from None
            raise ConvertError(
                f"{self.path}: {e} (pyarrow guesses a column's type from the first rows; "
                "pass --dtype, e.g. --dtype float64, when later rows hold other numbers)"
            ) from None

    def count_rows(self, column: str) -> int:
        if self.num_rows is not None:
            return self.num_rows
        return sum(b.num_rows for b in self.batches([column], {column: self.pa.string()}))

    def read_types(self, columns: List[str], dtype: Optional[str]) -> Optional[dict]:
        """CSV only: the types to parse value columns as when --dtype says what they hold,
        instead of pyarrow's guess from the first rows."""
        if self.kind != "csv" or dtype is None:
            return None
        kind = np.dtype(dtype).kind
        wide = {"b": self.pa.bool_(), "i": self.pa.int64(), "u": self.pa.uint64(), "f": self.pa.float64()}[kind]
        return dict.fromkeys(columns, wide)

    def is_csv_text(self, column: str) -> bool:
        """Whether `column` is a CSV column of text (JSON lists, when a list column is asked for)."""
        t = self.type(column)
        return self.kind == "csv" and (self.pa.types.is_string(t) or self.pa.types.is_large_string(t))


def narrowest_int(lo: int, hi: int) -> np.dtype:
    """The narrowest integer dtype holding every value in ``[lo, hi]``: the first of uint8,
    uint16, uint32, uint64 that does when ``lo >= 0``, else the first of int8, int16, int32,
    int64 (int64 also when nothing holds them all)."""
    names = ("uint8", "uint16", "uint32", "uint64") if lo >= 0 else ("int8", "int16", "int32", "int64")
    for name in names:
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return np.dtype(name)
    return np.dtype("int64")


def cast_exactly(
    values: np.ndarray, dtype: np.dtype, where: str, first_row: Optional[int] = None, option: str = "--dtype"
) -> np.ndarray:
    """`values` as `dtype`, refusing what the cast would change rather than round: a number out of
    range, a fraction or NaN for integers, a finite number that becomes infinite for floats.
    `option` is the command-line option the message suggests changing."""
    if values.dtype == dtype:
        return values
    with np.errstate(invalid="ignore", over="ignore"):
        out = values.astype(dtype)
        if dtype.kind in "biu":
            bad = out.astype(values.dtype) != values  # NaN != NaN: refused too
        elif dtype.kind == "f" and values.dtype.kind == "f":
            bad = np.isfinite(values) & ~np.isfinite(out)
        else:
            return out
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        if first_row is not None:
            at = f"row {first_row + i}"
        else:  # a sequence: (steps, *feat)
            step, *element = (int(k) for k in np.unravel_index(i, values.shape))
            at = f"step {step}" + (f", element {tuple(element)}" if element else "")
        raise ConvertError(
            f"{where}: the value {values.reshape(-1)[i].item()!r} at {at} cannot be stored as "
            f"{dtype} without changing it; choose another {option}"
        )
    return out


def _no_nulls(arr: Any, column: str, first_row: int) -> None:
    if arr.null_count:
        row = first_row + int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise ConvertError(
            f"column {column!r} has {arr.null_count} missing value"
            f"{'s' if arr.null_count > 1 else ''} (the first at row {row}); "
            f"fill or drop them before converting"
        )


def _is_number(t: Any) -> bool:
    pa = _arrow()
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _numeric(arr: Any, column: str, first_row: int) -> np.ndarray:
    t = arr.type
    if not _is_number(t):
        raise ConvertError(f"column {column!r} holds {t}, not numbers")
    _no_nulls(arr, column, first_row)
    return arr.to_numpy(zero_copy_only=False)


def _is_list(t: Any) -> bool:
    pa = _arrow()
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _lengths(arr: Any) -> np.ndarray:
    import pyarrow.compute as pc

    return np.asarray(pc.list_value_length(arr).to_numpy(zero_copy_only=False), np.int64)


def _arrow_lists(arr: Any, column: str, first_row: int) -> List[np.ndarray]:
    """A list column's cells as arrays: list<number> gives (T,), list<list<number>> (T, k), ..."""
    _no_nulls(arr, column, first_row)
    lengths = _lengths(arr)
    # ends[d][i]: where element i of nesting level d ends in level d + 1 (level 0: the rows).
    ends = [np.cumsum(lengths)]
    inner, feat = arr.flatten(), []  # flatten, not .values: it honours slices
    while True:
        if inner.null_count:
            _null_inside(inner, ends, column, first_row)
        if not _is_list(inner.type):
            break
        widths = _lengths(inner)
        distinct = np.unique(widths)
        if len(distinct) > 1:
            raise ConvertError(
                f"column {column!r}: the steps of its sequences have different sizes "
                f"({', '.join(map(str, distinct[:5]))}); every step needs the same shape"
            )
        feat.append(int(distinct[0]) if len(distinct) else 0)
        ends.append(np.cumsum(widths))
        inner = inner.flatten()
    values = _numeric(inner, f"{column} (inside the lists)", 0).reshape((-1, *feat))
    return [values[e - n : e] for e, n in zip(ends[0].tolist(), lengths.tolist())]


def _null_inside(inner: Any, ends: List[np.ndarray], column: str, first_row: int) -> None:
    """Raises for the first null inside a list column's lists, naming its row and step."""
    j = int(np.flatnonzero(inner.is_null().to_numpy(zero_copy_only=False))[0])
    path = []
    for level_ends in reversed(ends):  # from the innermost level out to the row
        parent = int(np.searchsorted(level_ends, j, side="right"))
        path.append(j - (int(level_ends[parent - 1]) if parent else 0))
        j = parent
    step, *element = reversed(path)
    raise ConvertError(
        f"column {column!r}, row {first_row + j}: a missing value inside its list, at step {step}"
        f"{f', element {tuple(element)}' if element else ''}; fill or drop missing values before converting"
    )


def _json_cell(cell: str, column: str, row: int, exact: bool = True) -> np.ndarray:
    """One CSV cell holding a JSON list: an integer array when every number in it is an
    integer (true/false count as 1/0), else float64. Integers beyond int64's range are uint64,
    and refused when uint64 does not hold them either, unless not `exact` (floats are wanted)."""
    try:
        obj = json.loads(cell)
        seq = np.asarray(obj)
        if seq.dtype.kind == "O" and any(x is None for x in seq.reshape(-1)):
            raise ConvertError(
                f"column {column!r}, row {row}: a null inside its list {cell[:60]!r}; fill or drop it before converting"
            )
        if exact and seq.size and (seq.dtype.kind == "O" or (seq.dtype.kind == "f" and not (abs(seq) < 2.0**63).all())):
            # Integers beyond int64's range, which NumPy made floats (or objects): exactly, or refused.
            leaves = np.asarray(obj, dtype=object).reshape(-1)
            if all(type(x) is int for x in leaves):
                lo, hi = min(leaves), max(leaves)
                if lo < 0 or hi > _UINT64_MAX:
                    raise ConvertError(
                        f"column {column!r}, row {row}: its integers ({lo} to {hi}) fit neither int64 nor "
                        "uint64; pass --dtype float64 to store them as floats, rounded"
                    )
                seq = np.asarray(obj, dtype=object).astype(np.uint64)
        if seq.dtype.kind == "b":
            seq = seq.astype(np.int64)
        elif seq.dtype.kind not in "iu":
            seq = np.asarray(obj, dtype=np.float64)
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        if isinstance(e, ConvertError):
            raise
        raise ConvertError(
            f"column {column!r}, row {row}: not a JSON list of numbers or of equal-length lists ({e}): {cell[:60]!r}"
        ) from None
    if seq.ndim < 1:
        raise ConvertError(f"column {column!r}, row {row}: not a JSON list of numbers: {cell[:60]!r}")
    return seq


def _json_lists(
    arr: Any, column: str, first_row: int, dtype: Optional[np.dtype], option: str = "--dtype"
) -> List[np.ndarray]:
    """CSV cells holding JSON lists, as arrays of `dtype` (as parsed when None)."""
    _no_nulls(arr, column, first_row)
    out = []
    for i, cell in enumerate(arr.to_pylist()):
        seq = _json_cell(cell, column, first_row + i, dtype is None or dtype.kind != "f")
        if dtype is not None:
            seq = cast_exactly(seq, dtype, f"column {column!r}, row {first_row + i}", None, option)
        out.append(seq)
    return out


def _json_dtype(table: _Table, column: str, narrow: bool, progress: bool) -> Tuple[np.dtype, str]:
    """The dtype of a CSV column of JSON lists, read through once, and why: float64 as soon as
    a number is not an integer; for integers, `narrowest_int` of their range if `narrow`, else
    int64 (or uint64 for values above int64's range)."""
    lo: Optional[int] = None
    hi: Optional[int] = None
    row = 0
    bar = _Progress(progress, table.num_rows, "seq", "scanning")
    try:
        for batch in table.batches([column], {column: table.pa.string()}):
            for seq in _json_lists(batch.column(0), column, row, None):
                if seq.dtype.kind == "f" and seq.size:  # ([] parses as float64, but holds no number)
                    return np.dtype(np.float64), f"column {column!r} holds numbers that are not integers"
                if seq.size:
                    a, b = int(seq.min()), int(seq.max())
                    lo, hi = (a, b) if lo is None or hi is None else (min(lo, a), max(hi, b))
            row += batch.num_rows
            bar.update(batch.num_rows)
    finally:
        bar.close()
    if lo is None or hi is None:
        return np.dtype(np.float64), f"column {column!r} holds no numbers"
    if narrow:
        return narrowest_int(lo, hi), f"the narrowest integer type for the integers of column {column!r} ({lo} to {hi})"
    return np.dtype(np.int64 if hi <= np.iinfo(np.int64).max else np.uint64), ""


# ----- the layouts ------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What to read: the columns and options convert() was given."""

    column: Optional[str]
    id_column: Optional[str]
    value_columns: List[str]
    label_columns: List[str]
    target_columns: List[str]
    dtype: Optional[str]
    target_dtype: Optional[str]
    progress: bool
    report: Callable[[str], None]


def _narrow_values(table: _Table, values: np.ndarray, plan: _Plan, writer: _ChunkWriter) -> None:
    """A CSV's integer values go into the narrowest dtype holding them (when --dtype is not given)."""
    if table.kind != "csv" or plan.dtype is not None or values.dtype.kind not in "iu" or not values.size:
        return
    lo, hi = int(values.min()), int(values.max())
    chosen = narrowest_int(lo, hi)
    writer.dtype = chosen.name
    plan.report(
        f"dtype {chosen.name}: the narrowest integer type for the integers of "
        f"{_names(plan.value_columns)} ({lo} to {hi}); --dtype chooses another"
    )


def _read_values(
    table: _Table, columns: List[str], rows: int, dtype: Optional[str], progress: bool, what: str = "reading"
) -> np.ndarray:
    """Numeric columns as one (rows, k) array, filled batch by batch."""
    kinds = [table.type(c) for c in columns]
    for c, t in zip(columns, kinds):
        if not _is_number(t):
            raise ConvertError(f"column {c!r} holds {t}, not numbers")
    target = np.dtype(dtype) if dtype is not None else np.result_type(*[t.to_pandas_dtype() for t in kinds])
    out = np.empty((rows, len(columns)), target)
    bar = _Progress(progress, rows, "row", what)
    row = 0
    option = "--dtype" if what == "reading" else "--target-dtype"
    try:
        for batch in table.batches(columns, table.read_types(columns, dtype)):
            if row + batch.num_rows > rows:
                raise ConvertError(f"{table.path}: changed while being read (more than {rows} rows)")
            for j, c in enumerate(columns):
                out[row : row + batch.num_rows, j] = cast_exactly(
                    _numeric(batch.column(j), c, row), target, f"column {c!r}", row, option
                )
            row += batch.num_rows
            bar.update(batch.num_rows)
    finally:
        bar.close()
    if row != rows:
        raise ConvertError(f"{table.path}: changed while being read ({row} rows, expected {rows})")
    if table.kind == "csv" and dtype is None:
        # Integers beyond int64's range, which pyarrow parsed as (rounded) doubles, read again exactly.
        exact: dict = {}
        for j, (c, t) in enumerate(zip(columns, kinds)):
            if table.pa.types.is_floating(t) and _beyond_int64(out[:, j]):
                ints = _exact_integers(table, c)
                if ints is not None:
                    exact[j] = ints
        if exact:
            out = _with_exact(table, columns, kinds, out, exact, what)
    return out


def _with_exact(
    table: _Table, columns: List[str], kinds: List[Any], out: np.ndarray, exact: dict, what: str
) -> np.ndarray:
    """`out` (rows, k) with the columns `exact` holds (by index: int64 or uint64 arrays) put back
    exactly: with float columns beside them only if float64 holds their integers unrounded; with
    integer columns as int64, or uint64 when one of them needs it and no value is negative (the
    integer columns are read again as that, since float64 may have rounded them)."""
    others = [j for j in range(len(columns)) if j not in exact]
    floats = [j for j in others if table.pa.types.is_floating(kinds[j])]
    if floats:
        for j, ints in exact.items():
            with np.errstate(invalid="ignore", over="ignore"):
                bad = np.flatnonzero(out[:, j].astype(ints.dtype) != ints)
            if len(bad):
                raise ConvertError(
                    f"column {columns[j]!r}, row {int(bad[0])}: the integer {ints[bad[0]].item()} would be rounded "
                    f"in float64, the dtype that float column {columns[floats[0]]!r} beside it needs; convert "
                    "them separately, or pass --dtype float64 to store them rounded"
                )
        return out
    unsigned = [j for j, ints in exact.items() if ints.dtype.kind == "u"]
    signed = [j for j in range(len(columns)) if j not in unsigned and out[:, j].size and out[:, j].min() < 0]
    if unsigned and signed:
        j, k = signed[0], unsigned[0]
        r, q = int(np.argmin(out[:, j])), int(np.argmax(exact[k]))
        raise ConvertError(
            f"{_names([columns[j], columns[k]]) if j != k else _names([columns[j]])} hold integers that no one "
            f"integer type holds together: {int(out[r, j])} (row {r}) needs a signed type, {exact[k][q].item()} "
            f"(row {q}) is above int64's range; pass --dtype float64 to store them as floats, rounded"
        )
    wide = np.dtype(np.uint64 if unsigned else np.int64)
    result = np.empty(out.shape, wide)
    if others:
        result[:, others] = _read_values(table, [columns[j] for j in others], len(out), wide.name, False, what)
    for j, ints in exact.items():
        result[:, j] = ints
    return result


def _beyond_int64(col: np.ndarray) -> bool:
    """Whether a CSV column pyarrow parsed as float64 may hold integer literals beyond int64's
    range (pyarrow reads those as doubles, rounding them): every value integral and one out of
    int64's range. Ordinary float columns fail the range test at the cost of two comparisons."""
    with np.errstate(invalid="ignore"):
        if not ((col >= 2.0**63) | (col <= -(2.0**63))).any():
            return False
        return bool((np.isfinite(col) & (col == np.trunc(col))).all())


def _exact_integers(table: _Table, column: str) -> Optional[np.ndarray]:
    """A CSV column's cells parsed exactly: int64, or uint64 when a value is above int64's range;
    None when a cell is not an integer literal (the column is then one of floats). Integers that
    neither type holds are refused, naming the column and the row, rather than rounded."""
    import pyarrow.compute as pc

    parts: List[np.ndarray] = []
    lo: Optional[Tuple[int, int]] = None  # (value, row) of the least and the greatest
    hi: Optional[Tuple[int, int]] = None
    row = 0
    for batch in table.batches([column], {column: table.pa.string()}):
        cells = pc.utf8_trim_whitespace(batch.column(0))
        if cells.null_count or not pc.all(pc.match_substring_regex(cells, r"^[+-]?[0-9]+$")).as_py():
            return None
        numbers = [int(cell) for cell in cells.to_pylist()]
        for i, n in enumerate(numbers):
            if n > _UINT64_MAX or n < _INT64_MIN:
                side = "above uint64's range (up to 2**64-1)" if n > 0 else "below int64's range (down to -2**63)"
                raise ConvertError(
                    f"column {column!r}, row {row + i}: the integer {n} is {side}, so no integer type holds "
                    "it; pass --dtype float64 to store the column's values as floats, rounded"
                )
        if numbers:
            a = min(range(len(numbers)), key=numbers.__getitem__)
            b = max(range(len(numbers)), key=numbers.__getitem__)
            if lo is None or numbers[a] < lo[0]:
                lo = (numbers[a], row + a)
            if hi is None or numbers[b] > hi[0]:
                hi = (numbers[b], row + b)
            if lo[0] < 0 and hi[0] > _INT64_MAX:
                raise ConvertError(
                    f"column {column!r} holds integers that no one integer type holds together: {lo[0]} "
                    f"(row {lo[1]}) needs a signed type, {hi[0]} (row {hi[1]}) is above int64's range; "
                    "pass --dtype float64 to store them as floats, rounded"
                )
            parts.append(np.array(numbers, np.uint64 if numbers[b] > _INT64_MAX else np.int64))
        row += batch.num_rows
    if hi is None:
        return None
    wide = np.dtype(np.uint64 if hi[0] > _INT64_MAX else np.int64)
    return np.concatenate([part.astype(wide) for part in parts])


def _squeeze(values: np.ndarray) -> np.ndarray:
    """(rows, 1) as (rows,): one column gives scalars, k columns rows of shape (k,)."""
    return values.reshape(-1) if values.shape[1] == 1 else values


def _one_per_group(
    labels: np.ndarray, codes: np.ndarray, first_rows: np.ndarray, columns: List[str], group: Callable[[int], str]
) -> np.ndarray:
    """The label of each group: the value every one of its rows holds (rows, k) -> (groups, k);
    rows that disagree are refused."""
    first = labels[first_rows]
    ref = first[codes]
    differ = labels != ref
    if labels.dtype.kind == "f":
        differ &= ~(np.isnan(labels) & np.isnan(ref))  # NaN labels are equal to each other
    bad = np.flatnonzero(differ.any(axis=1))
    if len(bad):
        r = int(bad[0])
        g = int(codes[r])
        j = int(np.flatnonzero(differ[r])[0])
        raise ConvertError(
            f"column {columns[j]!r} holds more than one value for {group(g)} (row {int(first_rows[g])}: "
            f"{_py(first[g, j])!r}, row {r}: {_py(labels[r, j])!r}); a label column needs one value per "
            "sequence: pass --target-column for a value per step"
        )
    return first


def _convert_list_column(table: _Table, plan: _Plan, writer: _ChunkWriter) -> None:
    column = plan.column
    assert column is not None
    table.require([column, *plan.label_columns, *plan.target_columns])
    pa = table.pa
    columns = [column, *plan.target_columns]
    for c in columns:
        if not (_is_list(table.type(c)) or table.is_csv_text(c)):
            if c == column:
                raise UsageError(
                    f"column {column!r} holds {table.type(c)}, not lists; for one series from it pass "
                    f"--value-column {column} (add --id-column to cut it into sequences)"
                )
            raise UsageError(
                f"column {c!r} holds {table.type(c)}, not lists; with --column, --target-column names a "
                f"column of lists aligned step for step with {column!r} (--label-column takes one number per row)"
            )
    labels: Optional[np.ndarray] = None
    if plan.label_columns:
        for c in plan.label_columns:
            if _is_list(table.type(c)):
                raise UsageError(
                    f"column {c!r} holds {table.type(c)}; a label column holds one number per row "
                    "(repeat --label-column for labels of several numbers; --target-column takes lists)"
                )
        rows = table.count_rows(plan.label_columns[0])  # a CSV's narrow column rather than its lists
        labels = _squeeze(_read_values(table, plan.label_columns, rows, plan.target_dtype, plan.progress, "labels"))
    dtypes: List[Optional[np.dtype]] = [None if plan.dtype is None else np.dtype(plan.dtype)]
    dtypes.append(None if plan.target_dtype is None else np.dtype(plan.target_dtype))
    for k, c in enumerate(columns):
        if table.is_csv_text(c) and dtypes[k] is None:  # found by a first pass over the JSON
            dtypes[k], why = _json_dtype(table, c, narrow=k == 0, progress=plan.progress)
            if k == 0:
                plan.report(f"dtype {dtypes[0]}: {why}; --dtype chooses another")
    types = {c: pa.string() for c in columns if table.is_csv_text(c)}
    bar = _Progress(plan.progress, table.num_rows, "seq", "converting")
    row = 0
    try:
        for batch in table.batches(columns, types or None):
            parts = []
            for k, c in enumerate(columns):
                cells = batch.column(k)
                if table.is_csv_text(c):
                    parts.append(_json_lists(cells, c, row, dtypes[k], "--target-dtype" if k else "--dtype"))
                else:
                    parts.append(_arrow_lists(cells, c, row))
            for i, seq in enumerate(parts[0]):
                target: Optional[np.ndarray] = None
                if labels is not None:
                    target = labels[row + i]
                elif len(parts) > 1:
                    target = parts[1][i]
                    if target.shape[0] != seq.shape[0]:
                        raise ConvertError(
                            f"row {row + i}: column {columns[1]!r} holds {target.shape[0]} steps, but column "
                            f"{column!r} {seq.shape[0]}; step targets must be aligned step for step"
                        )
                writer.add(seq, target)
            row += batch.num_rows
            bar.update(batch.num_rows)
    finally:
        bar.close()


def _group_codes(table: _Table, id_column: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row, the number of its id in order of first appearance; the ids in that order
    and the row where each first appears."""
    parts, row = [], 0
    # CSV ids are read as text: a guessed type could fail on a later row, and text identity is
    # what the file says anyway.
    for batch in table.batches([id_column], {id_column: table.pa.string()} if table.kind == "csv" else None):
        ids = batch.column(0)
        _no_nulls(ids, id_column, row)
        parts.append(ids.to_numpy(zero_copy_only=False))
        row += batch.num_rows
    ids = np.concatenate(parts) if parts else np.empty(0)
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(first), np.int64)
    rank[by_first] = np.arange(len(first))
    return rank[inverse.reshape(-1)], unique[by_first], first[by_first]


def _convert_rows(
    table: _Table,
    plan: _Plan,
    writer: _ChunkWriter,
    codes: np.ndarray,
    first_rows: np.ndarray,
    group: Callable[[int], str],
) -> None:
    """Writes the value columns cut into sequences: the rows of each group (`codes`, numbered in
    order of first appearance) in file order, with their labels or step targets."""
    rows = len(codes)
    values = _read_values(table, plan.value_columns, rows, plan.dtype, plan.progress)
    _narrow_values(table, values, plan, writer)
    values = _squeeze(values)
    labels = targets = None
    if plan.label_columns:
        read = _read_values(table, plan.label_columns, rows, plan.target_dtype, plan.progress, "labels")
        labels = _squeeze(_one_per_group(read, codes, first_rows, plan.label_columns, group))
    if plan.target_columns:
        targets = _squeeze(_read_values(table, plan.target_columns, rows, plan.target_dtype, plan.progress, "targets"))
    order = np.argsort(codes, kind="stable")  # rows of each group stay in file order
    ends = np.cumsum(np.bincount(codes, minlength=int(codes.max()) + 1 if len(codes) else 0))
    bar = _Progress(plan.progress, len(ends), "seq", "writing")
    try:
        start = 0
        row_bytes = values[:1].nbytes + (0 if targets is None else targets[:1].nbytes)
        rows_per_chunk = max(1, CHUNK_BYTES // max(1, row_bytes))
        for first_group, end_group in _group_chunks(ends, rows_per_chunk):
            # One fancy-indexed copy per chunk, never of the whole table.
            block_end = int(ends[end_group - 1])
            take = order[start:block_end]
            block = values[take]
            target_block = None if targets is None else targets[take]
            for g in range(first_group, end_group):
                a, b = int(ends[g - 1] if g else 0) - start, int(ends[g]) - start
                if labels is not None:
                    writer.add(block[a:b], labels[g])
                elif target_block is not None:
                    writer.add(block[a:b], target_block[a:b])
                else:
                    writer.add(block[a:b])
            bar.update(end_group - first_group)
            start = block_end
    finally:
        bar.close()


def _group_chunks(ends: np.ndarray, rows_per_chunk: int) -> Iterator[Tuple[int, int]]:
    """Ranges of whole groups holding about `rows_per_chunk` rows each (at least one group)."""
    g, n = 0, len(ends)
    while g < n:
        begin = int(ends[g - 1]) if g else 0
        stop = int(np.searchsorted(ends, begin + rows_per_chunk, side="right"))
        stop = max(stop, g + 1)
        yield g, stop
        g = stop


def _convert_grouped(table: _Table, plan: _Plan, writer: _ChunkWriter) -> None:
    assert plan.id_column is not None
    table.require([plan.id_column, *plan.value_columns, *plan.label_columns, *plan.target_columns])
    codes, ids, first_rows = _group_codes(table, plan.id_column)
    _convert_rows(table, plan, writer, codes, first_rows, lambda g: f"id {_py(ids[g])!r}")


def _convert_single(table: _Table, plan: _Plan, writer: _ChunkWriter) -> None:
    table.require([*plan.value_columns, *plan.label_columns, *plan.target_columns])
    rows = table.count_rows(plan.value_columns[0])
    if plan.label_columns and rows == 0:
        raise ConvertError(f"{_names(plan.label_columns)}: no rows, so no label for the series")
    if rows == 0:  # one empty series
        values = _read_values(table, plan.value_columns, 0, plan.dtype, plan.progress)
        target = None
        if plan.target_columns:
            target = _squeeze(_read_values(table, plan.target_columns, 0, plan.target_dtype, False, "targets"))
        writer.add(_squeeze(values), target)
        return
    _convert_rows(table, plan, writer, np.zeros(rows, np.int64), np.zeros(1, np.int64), lambda g: "the series")


def _convert_table(path: str, kind: str, plan: _Plan, writer: _ChunkWriter, header: Optional[bool]) -> None:
    try:
        table = _Table(path, kind, header)
        if plan.column is not None:
            _convert_list_column(table, plan, writer)
        elif plan.value_columns:
            if plan.id_column is not None:
                _convert_grouped(table, plan, writer)
            else:
                _convert_single(table, plan, writer)
        else:
            raise UsageError(
                f"say which columns hold the data: --column C (a column of lists, one sequence "
                f"per row) or --value-column V [--id-column ID]; the columns are "
                f"{', '.join(map(repr, table.columns))}"
            )
    except ConvertError as e:
        # Every message names the file (some already start with it).
        if not str(e).startswith(path):
            raise type(e)(f"{path}: {e}") from None
        raise


# ----- the entry point --------------------------------------------------------------------------


def _input_kind(path: str) -> str:
    lower = path.lower()
    if os.path.isdir(path):
        return "npy-folder"
    if lower.endswith(".npy"):
        return "npy"
    if lower.endswith(_CSV_SUFFIXES):
        return "csv"
    if lower.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(_ARROW_SUFFIXES):
        return "arrow"
    raise UsageError(
        f"{path}: unknown input type; expected a .npy file, a directory of .npy files, "
        f"{', '.join(_CSV_SUFFIXES)}, {', '.join(_PARQUET_SUFFIXES)} or {', '.join(_ARROW_SUFFIXES)}"
    )


def _remove_partial(output: str, existed: bool) -> None:
    """Removes what a failed conversion wrote; the header first, so no half dataset ever reads."""
    for name in _DATASET_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(output, name))
    if not existed:
        with contextlib.suppress(OSError):
            os.rmdir(output)


def _check_output(output: str, overwrite: bool) -> None:
    # Refused up front so a long conversion does not fail at its first write.
    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        what = "a dataset" if is_dataset_dir(output) else "files"
        raise ConvertError(f"{output} already holds {what}; pass --overwrite to replace a dataset there")
    if os.path.exists(output) and not os.path.isdir(output):
        raise ConvertError(f"{output} exists and is not a directory")
    foreign = [n for n in (os.listdir(output) if os.path.isdir(output) else []) if n not in _DATASET_FILES]
    if foreign:
        raise ConvertError(
            f"{output} holds files that are not part of a dataset ({', '.join(sorted(foreign)[:3])}); "
            "--overwrite only replaces a dataset: choose a new or empty directory"
        )


def convert(
    input: str,
    output: str,
    *,
    column: Optional[str] = None,
    id_column: Optional[str] = None,
    value_columns: Sequence[str] = (),
    label_columns: Sequence[str] = (),
    target_columns: Sequence[str] = (),
    dtype: Optional[str] = None,
    target_dtype: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
    header: Optional[bool] = None,
    report: Optional[Callable[[str], None]] = None,
) -> DatasetInfo:
    """Converts `input` (see the module documentation) into a dataset directory at `output`.
    A CSV's first row: `header=True` column names, `False` data (the columns are then named f0,
    f1, ...), None (the default) names unless every cell of it is a number, which is refused as
    ambiguous rather than dropping a row of data. `label_columns` store one label per sequence,
    `target_columns` step targets (not both); `target_dtype` is their dtype. `report` is called
    with a line for each choice made on the caller's behalf (the dtype picked for a CSV's
    integers).

    Raises ConvertError (UsageError for options that do not fit the input), FormatError or
    OSError; after a failure nothing of the new dataset is left at `output`."""
    if not os.path.exists(input):
        raise ConvertError(f"{input}: no such file or directory")
    kind = _input_kind(input)
    value_columns, label_columns, target_columns = list(value_columns), list(label_columns), list(target_columns)
    if kind.startswith("npy") and (column or id_column or value_columns or label_columns or target_columns):
        raise UsageError(
            "--column, --id-column, --value-column, --label-column and --target-column apply to CSV, "
            "Parquet and Arrow inputs only"
        )
    if column is not None and (id_column or value_columns):
        raise UsageError("--column (a column of lists) and --id-column/--value-column are alternatives; pass one")
    if id_column is not None and not value_columns:
        raise UsageError("--id-column needs --value-column: which columns hold the values of each step")
    if label_columns and target_columns:
        raise UsageError(
            "--label-column (one label per sequence) and --target-column (a target per step) are "
            "alternatives: a dataset stores one kind of targets"
        )
    if column is not None and len(target_columns) > 1:
        raise UsageError("with --column, pass one --target-column: a column of lists aligned with it")
    if column is not None and column in target_columns:
        raise UsageError(f"--target-column {column} is the --column itself; name the column of targets")
    if target_dtype is not None and not (label_columns or target_columns):
        raise UsageError("--target-dtype needs --label-column or --target-column")
    if header is not None and kind != "csv":
        raise UsageError(f"--{'' if header else 'no-'}header applies to CSV inputs only")
    for option, value in (("--dtype", dtype), ("--target-dtype", target_dtype)):
        if value is not None and value not in SOURCE_DTYPES:
            raise UsageError(f"{option} {value} is not supported (supported: {', '.join(SOURCE_DTYPES)})")
    output = os.path.abspath(output)
    if os.path.abspath(input) == output:
        raise UsageError("the output directory is the input; choose another")
    _check_output(output, overwrite)
    existed = os.path.isdir(output)
    paths = _npy_files(input) if kind == "npy-folder" else [input]

    def name(i: int) -> str:
        if kind == "npy-folder":
            return paths[i]
        return input if kind == "npy" else f"{input}: row {i}" if column is not None else f"{input}: sequence {i}"

    target_kind = "labels" if label_columns else "steps" if target_columns else None
    writer = _ChunkWriter(output, overwrite, dtype, name, target_kind, target_dtype)
    plan = _Plan(
        column,
        id_column,
        value_columns,
        label_columns,
        target_columns,
        dtype,
        target_dtype,
        progress,
        report or (lambda line: None),
    )
    try:
        if kind in ("npy", "npy-folder"):
            _convert_npy(paths, writer, progress)
        else:
            _convert_table(input, kind, plan, writer, header)
        return writer.finish()
    except BaseException:
        if writer.started:
            _remove_partial(output, existed)
        raise
