"""``fastfeed convert``: .npy files, CSV and Parquet into a dataset directory.

Inputs:

- a ``.npy`` file: one series;
- a directory of ``.npy`` files: one series per file, in order of file name;
- a CSV (``.csv``, ``.csv.gz``, ``.csv.bz2``) or Parquet (``.parquet``, ``.pq``) file, read with
  pyarrow (``pip install 'fastfeed[arrow]'``), in one of three layouts:

  - ``column=C``: every row of the list column C is one sequence (in CSV a cell holds a JSON
    list such as ``[1, 2, 3]``, or ``[[1, 2], [3, 4]]`` for steps of two features);
  - ``value_columns=[V, ...]`` with ``id_column=ID``: the rows of each id, in file order, are one
    sequence; sequences come in the order of the ids' first appearance; one value column gives
    scalar steps, k columns steps of shape ``(k,)``;
  - ``value_columns`` alone: the whole table is one series.

Sequences are written in chunks of about ``CHUNK_BYTES`` with append_dataset, so the input is
never held twice; a grouped table is held once (its value columns as one array) because the
rows of an id may be scattered over the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..dtypes import SOURCE_DTYPES
from .dataset import _DATASET_FILES, DatasetInfo, append_dataset, is_dataset_dir, open_dataset, write_dataset

__all__ = ["CHUNK_BYTES", "ConvertError", "convert"]

CHUNK_BYTES = 32 * 1024 * 1024
ARROW_HINT = "pip install 'fastfeed[arrow]'"
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
_PARQUET_SUFFIXES = (".parquet", ".pq")


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
    """Collects sequences and writes them in chunks: the first with write_dataset, the rest
    with append_dataset, so memory holds at most one chunk besides the input."""

    def __init__(self, output: str, overwrite: bool, dtype: Optional[str], labels: Callable[[int], str]) -> None:
        self.output = output
        self.overwrite = overwrite
        self.dtype = dtype
        self.started = False
        self._labels = labels  # names sequence number i in errors (a file name, a row, an id)
        self._pending: List[np.ndarray] = []
        self._pending_bytes = 0
        self._count = 0
        self._first: Optional[Tuple[str, Tuple[int, ...]]] = None

    def add(self, seq: np.ndarray) -> None:
        if self.dtype is not None:
            seq = cast_exactly(seq, np.dtype(self.dtype), self._labels(self._count))
        self._check(seq)
        self._pending.append(seq)
        self._pending_bytes += seq.nbytes
        self._count += 1
        if self._pending_bytes >= CHUNK_BYTES:
            self.flush()

    def _check(self, seq: np.ndarray) -> None:
        # Checked here, naming the input, rather than by append_dataset naming a chunk index.
        if seq.dtype == object or seq.dtype.name not in SOURCE_DTYPES:
            raise ConvertError(
                f"{self._labels(self._count)} has dtype {seq.dtype}, which a dataset cannot hold "
                f"(supported: {', '.join(SOURCE_DTYPES)}); pass --dtype to convert it"
            )
        layout = (seq.dtype.name, tuple(seq.shape[1:]))
        if self._first is None:
            self._first = layout
        elif layout[0] != self._first[0]:
            raise ConvertError(
                f"{self._labels(self._count)} has dtype {layout[0]}, but {self._labels(0)} has "
                f"{self._first[0]}; pass --dtype to convert all of them to one dtype"
            )
        elif layout[1] != self._first[1]:
            raise ConvertError(
                f"{self._labels(self._count)} has steps of shape {layout[1]}, but {self._labels(0)} "
                f"has {self._first[1]}; all sequences must share one feature shape"
            )

    def flush(self) -> None:
        if not self._pending:
            return
        if self.started:
            append_dataset(self.output, self._pending)
        else:
            write_dataset(self.output, self._pending, overwrite=self.overwrite)
            self.started = True
        self._pending, self._pending_bytes = [], 0

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


# ----- CSV and Parquet --------------------------------------------------------------------------


def _arrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ConvertError(f"reading CSV and Parquet needs pyarrow: {ARROW_HINT}") from None
    return pyarrow


def _all_numbers(names: Sequence[str]) -> bool:
    """Whether every cell of a CSV's first row reads as a number."""
    try:
        for name in names:
            float(name)
    except ValueError:
        return False
    return len(names) > 0


class _Table:
    """Streams record batches of some columns of a CSV or Parquet file."""

    def __init__(self, path: str, kind: str, header: Optional[bool] = None) -> None:
        self.pa = _arrow()
        self.path, self.kind, self.header = path, kind, header is not False
        if kind == "parquet":
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetFile(path)
            self.schema = self._parquet.schema_arrow
            self.num_rows: Optional[int] = self._parquet.metadata.num_rows
        else:
            with contextlib.closing(self._open_csv(None)) as reader:
                self.schema = reader.schema
            self.num_rows = None
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

    @property
    def columns(self) -> List[str]:
        return list(self.schema.names)

    def require(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.schema.names]
        if missing:
            raise UsageError(
                f"{self.path}: no column {', '.join(map(repr, missing))}; "
                f"the columns are {', '.join(map(repr, self.columns))}"
            )

    def batches(self, columns: List[str], types: Optional[dict] = None) -> Iterator[Any]:
        if self.kind == "parquet":
            yield from self._parquet.iter_batches(columns=columns)
            return
        with contextlib.closing(self._open_csv(columns, types)) as reader:
            try:
                yield from reader
            except self.pa.ArrowInvalid as e:
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


def cast_exactly(values: np.ndarray, dtype: np.dtype, where: str, first_row: Optional[int] = None) -> np.ndarray:
    """`values` as `dtype`, refusing what the cast would change rather than round: a number out of
    range, a fraction or NaN for integers, a finite number that becomes infinite for floats."""
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
            f"{dtype} without changing it; choose another --dtype"
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


def _numeric(arr: Any, column: str, first_row: int) -> np.ndarray:
    pa = _arrow()
    t = arr.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise ConvertError(f"column {column!r} holds {t}, not numbers")
    _no_nulls(arr, column, first_row)
    return arr.to_numpy(zero_copy_only=False)


def _is_list(t: Any) -> bool:
    pa = _arrow()
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _arrow_lists(arr: Any, column: str, first_row: int) -> List[np.ndarray]:
    """A list column's cells as arrays: list<number> gives (T,), list<list<number>> (T, k), ..."""
    import pyarrow.compute as pc

    _no_nulls(arr, column, first_row)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    inner, feat = arr.flatten(), []
    while _is_list(inner.type):
        _no_nulls(inner, f"{column} (inside the lists)", 0)
        widths = np.unique(pc.list_value_length(inner).to_numpy(zero_copy_only=False))
        if len(widths) > 1:
            raise ConvertError(
                f"column {column!r}: the steps of its sequences have different sizes "
                f"({', '.join(map(str, widths[:5]))}); every step needs the same shape"
            )
        feat.append(int(widths[0]) if len(widths) else 0)
        inner = inner.flatten()
    values = _numeric(inner, f"{column} (inside the lists)", 0).reshape((-1, *feat))
    ends = np.cumsum(lengths)
    return [values[e - n : e] for e, n in zip(ends.tolist(), lengths.tolist())]


def _json_lists(arr: Any, column: str, first_row: int, dtype: Optional[str]) -> List[np.ndarray]:
    """CSV cells holding JSON lists, as arrays of `dtype` (float64 by default: JSON does not say
    whether `[1, 2]` and `[1.5]` are meant to be one type)."""
    _no_nulls(arr, column, first_row)
    out = []
    for i, cell in enumerate(arr.to_pylist()):
        try:
            seq = np.asarray(json.loads(cell), dtype=np.float64)
        except (json.JSONDecodeError, ValueError, TypeError) as e:
            raise ConvertError(
                f"column {column!r}, row {first_row + i}: not a JSON list of numbers or of "
                f"equal-length lists ({e}): {cell[:60]!r}"
            ) from None
        if seq.ndim < 1:
            raise ConvertError(f"column {column!r}, row {first_row + i}: not a JSON list of numbers: {cell[:60]!r}")
        out.append(
            seq if dtype is None else cast_exactly(seq, np.dtype(dtype), f"column {column!r}, row {first_row + i}")
        )
    return out


def _convert_list_column(
    table: _Table, column: str, dtype: Optional[str], writer: _ChunkWriter, progress: bool
) -> None:
    table.require([column])
    t = table.schema.field(column).type
    pa = table.pa
    csv_text = table.kind == "csv" and (pa.types.is_string(t) or pa.types.is_large_string(t))
    if not (_is_list(t) or csv_text):
        raise UsageError(
            f"column {column!r} holds {t}, not lists; for one series from it pass "
            f"--value-column {column} (add --id-column to cut it into sequences)"
        )
    bar = _Progress(progress, table.num_rows, "seq", "converting")
    row = 0
    try:
        for batch in table.batches([column], {column: pa.string()} if csv_text else None):
            cells = batch.column(0)
            seqs = _json_lists(cells, column, row, dtype) if csv_text else _arrow_lists(cells, column, row)
            for seq in seqs:
                writer.add(seq)
            row += batch.num_rows
            bar.update(batch.num_rows)
    finally:
        bar.close()


def _read_values(table: _Table, columns: List[str], rows: int, dtype: Optional[str], progress: bool) -> np.ndarray:
    """The value columns as one (rows, k) array, filled batch by batch."""
    pa = table.pa
    kinds = [table.schema.field(c).type for c in columns]
    for c, t in zip(columns, kinds):
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise ConvertError(f"column {c!r} holds {t}, not numbers")
    target = np.dtype(dtype) if dtype is not None else np.result_type(*[t.to_pandas_dtype() for t in kinds])
    out = np.empty((rows, len(columns)), target)
    bar = _Progress(progress, rows, "row", "reading")
    row = 0
    try:
        for batch in table.batches(columns, table.read_types(columns, dtype)):
            if row + batch.num_rows > rows:
                raise ConvertError(f"{table.path}: changed while being read (more than {rows} rows)")
            for j, c in enumerate(columns):
                out[row : row + batch.num_rows, j] = cast_exactly(
                    _numeric(batch.column(j), c, row), target, f"column {c!r}", row
                )
            row += batch.num_rows
            bar.update(batch.num_rows)
    finally:
        bar.close()
    if row != rows:
        raise ConvertError(f"{table.path}: changed while being read ({row} rows, expected {rows})")
    return out


def _group_codes(table: _Table, id_column: str) -> np.ndarray:
    """For each row, the number of its id in order of first appearance."""
    parts, row = [], 0
    # CSV ids are read as text: a guessed type could fail on a later row, and text identity is
    # what the file says anyway.
    for batch in table.batches([id_column], {id_column: table.pa.string()} if table.kind == "csv" else None):
        ids = batch.column(0)
        _no_nulls(ids, id_column, row)
        parts.append(ids.to_numpy(zero_copy_only=False))
        row += batch.num_rows
    ids = np.concatenate(parts) if parts else np.empty(0)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _convert_grouped(
    table: _Table, id_column: str, value_columns: List[str], dtype: Optional[str], writer: _ChunkWriter, progress: bool
) -> None:
    table.require([id_column, *value_columns])
    codes = _group_codes(table, id_column)
    values = _read_values(table, value_columns, len(codes), dtype, progress)
    if len(value_columns) == 1:
        values = values.reshape(-1)
    order = np.argsort(codes, kind="stable")  # rows of each id stay in file order
    ends = np.cumsum(np.bincount(codes, minlength=int(codes.max()) + 1 if len(codes) else 0))
    bar = _Progress(progress, len(ends), "seq", "writing")
    try:
        start = 0
        rows_per_chunk = max(1, CHUNK_BYTES // max(1, values[:1].nbytes))
        for first_group, end_group in _group_chunks(ends, rows_per_chunk):
            # One fancy-indexed copy per chunk, never of the whole table.
            block_end = int(ends[end_group - 1])
            block = values[order[start:block_end]]
            for g in range(first_group, end_group):
                writer.add(block[int(ends[g - 1] if g else 0) - start : int(ends[g]) - start])
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


def _convert_single(
    table: _Table, value_columns: List[str], dtype: Optional[str], writer: _ChunkWriter, progress: bool
) -> None:
    table.require(value_columns)
    values = _read_values(table, value_columns, table.count_rows(value_columns[0]), dtype, progress)
    writer.add(values.reshape(-1) if len(value_columns) == 1 else values)


def _convert_table(
    path: str,
    kind: str,
    column: Optional[str],
    id_column: Optional[str],
    value_columns: List[str],
    dtype: Optional[str],
    writer: _ChunkWriter,
    progress: bool,
    header: Optional[bool],
) -> None:
    table = _Table(path, kind, header)
    if column is not None:
        _convert_list_column(table, column, dtype, writer, progress)
    elif value_columns:
        if id_column is not None:
            _convert_grouped(table, id_column, value_columns, dtype, writer, progress)
        else:
            _convert_single(table, value_columns, dtype, writer, progress)
    else:
        raise UsageError(
            f"{path}: say which columns hold the data: --column C (a column of lists, one sequence "
            f"per row) or --value-column V [--id-column ID]; the columns are "
            f"{', '.join(map(repr, table.columns))}"
        )


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
    raise UsageError(
        f"{path}: unknown input type; expected a .npy file, a directory of .npy files, "
        f"{', '.join(_CSV_SUFFIXES)} or {', '.join(_PARQUET_SUFFIXES)}"
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
    dtype: Optional[str] = None,
    overwrite: bool = False,
    progress: bool = True,
    header: Optional[bool] = None,
) -> DatasetInfo:
    """Converts `input` (see the module documentation) into a dataset directory at `output`.
    A CSV's first row: `header=True` column names, `False` data (the columns are then named f0,
    f1, ...), None (the default) names unless every cell of it is a number, which is refused as
    ambiguous rather than dropping a row of data.

    Raises ConvertError (UsageError for options that do not fit the input), FormatError or
    OSError; after a failure nothing of the new dataset is left at `output`."""
    if not os.path.exists(input):
        raise ConvertError(f"{input}: no such file or directory")
    kind = _input_kind(input)
    value_columns = list(value_columns)
    if kind.startswith("npy") and (column or id_column or value_columns):
        raise UsageError("--column, --id-column and --value-column apply to CSV and Parquet inputs only")
    if column is not None and (id_column or value_columns):
        raise UsageError("--column (a column of lists) and --id-column/--value-column are alternatives; pass one")
    if id_column is not None and not value_columns:
        raise UsageError("--id-column needs --value-column: which columns hold the values of each step")
    if header is not None and kind != "csv":
        raise UsageError(f"--{'' if header else 'no-'}header applies to CSV inputs only")
    if dtype is not None and dtype not in SOURCE_DTYPES:
        raise UsageError(f"--dtype {dtype} is not supported (supported: {', '.join(SOURCE_DTYPES)})")
    output = os.path.abspath(output)
    if os.path.abspath(input) == output:
        raise UsageError("the output directory is the input; choose another")
    _check_output(output, overwrite)
    existed = os.path.isdir(output)
    paths = _npy_files(input) if kind == "npy-folder" else [input]

    def label(i: int) -> str:
        if kind == "npy-folder":
            return paths[i]
        return input if kind == "npy" else f"{input}: row {i}"

    writer = _ChunkWriter(output, overwrite, dtype, label)
    try:
        if kind in ("npy", "npy-folder"):
            _convert_npy(paths, writer, progress)
        else:
            _convert_table(input, kind, column, id_column, value_columns, dtype, writer, progress, header)
        return writer.finish()
    except BaseException:
        if writer.started:
            _remove_partial(output, existed)
        raise
