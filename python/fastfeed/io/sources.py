"""Turning what users pass as data (arrays, pandas objects, .npy paths, lists of these, dataset directories;
Arrow, Hugging Face and Megatron sources through io/formats.py) into validated series."""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._core import NpyFile
from ..dtypes import SOURCE_DTYPES
from ..errors import FormatError, MissingFileError
from .dataset import HEADER, DatasetInfo, _human_bytes, file_kind, is_dataset_dir, load_dataset_series

if TYPE_CHECKING:  # pandas is optional, and never imported at run time to read an array
    import pandas as pd

SeriesLike = Union[np.ndarray, "pd.DataFrame", "pd.Series", str, "os.PathLike[str]"]
Source = Union[SeriesLike, Sequence[SeriesLike]]

logger = logging.getLogger("fastfeed")


@dataclass
class MixtureParts:
    """The components of a mixture as loaded: names, weights, and how many series each holds."""

    names: List[str]
    weights: List[float]
    series_counts: List[int]


@dataclass
class SeriesSet:
    """Series that share a dtype and a feature shape, ready for the core."""

    # What the core's lists take: np.ndarray or NpyFile (one series each), or one
    # RaggedFile standing for all the sequences of a dataset directory.
    items: List[Any]
    lengths: List[int]  # one per series
    feat: Tuple[int, ...]
    dtype: str
    single: bool  # one series (an array or one .npy file), as opposed to a list
    # From a dataset directory only: its step targets (aligned with these series, same
    # `lengths`), its labels (shape (count, *label_feat): the core's map of the file, an
    # NpyFile, or an empty array when they take no bytes), its header.
    targets: Optional[SeriesSet] = None
    labels: Union[NpyFile, np.ndarray, None] = None
    dataset: Optional[DatasetInfo] = None
    # A mixture's series: its components' series back to back, and who is who.
    mixture: Optional[MixtureParts] = None

    @property
    def count(self) -> int:
        """The number of series (``len(items)`` is not: a dataset is one item)."""
        return len(self.lengths)

    @property
    def row_elems(self) -> int:
        return int(np.prod(self.feat, dtype=np.int64))


def _open_path(path: Union[str, os.PathLike[str]], what: str) -> Any:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(2, f"{what}: no such file: {path!r}", path)
    if os.path.isdir(path):
        raise ValueError(
            f"{what}: {path!r} is a directory; a dataset directory is a source on its own, not an item of a list"
        )
    # Checked before the core opens it: opening a FIFO blocks until someone writes to it. A
    # symbolic link to a regular file is fine (the check follows it).
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise FormatError(f"{path}: {file_kind(mode)}, not a regular file ({what} must be a .npy file)")
    return NpyFile.open(path)


def _dataset_source(path: Union[str, os.PathLike[str]], what: str) -> SeriesSet:
    path = os.fspath(path)
    if not is_dataset_dir(path):
        header = os.path.join(path, HEADER)
        raise MissingFileError(
            errno.ENOENT,
            f"{what}: {path!r} is a directory but not a fastfeed dataset: "
            f"{header} is missing (fastfeed convert or fastfeed.write_dataset make one)",
            header,
        )
    ds = load_dataset_series(path)
    info = ds.info
    if info.num_sequences == 0:
        raise ValueError(f"{what}: the dataset at {info.path} holds no sequences; there is nothing to feed")
    lengths = info.lengths.tolist()
    targets = None
    if ds.step_targets is not None:
        assert info.targets is not None
        targets = SeriesSet([ds.step_targets], lengths, info.targets.feat, info.targets.dtype, single=False)
    return SeriesSet(
        [ds.values], lengths, info.feat, info.dtype, single=False, targets=targets, labels=ds.labels, dataset=info
    )


def _is_pandas(obj: Any) -> bool:
    """Whether `obj` is a pandas object (told by its type's module: pandas is never imported to ask)."""
    return type(obj).__module__.startswith("pandas")


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch")


def _pandas_column(values: Any, label: str) -> Tuple[np.dtype, Any]:
    """The NumPy dtype a pandas column (a Series, Index or ExtensionArray) becomes, and a
    function of ``(start, stop)`` giving those rows as NumPy values of that dtype.

    NumPy-backed columns of the core's dtypes keep their dtype (their rows are views). Nullable
    and Arrow-backed numbers (``Int64``, ``Float64``, ``int32[pyarrow]``, ...) become floats with
    NaN where a value is missing: float64, or their own float type for float columns. Anything
    else (text, categories, dates, nullable booleans) is refused naming `label` and the dtype."""
    dt = values.dtype
    if isinstance(dt, np.dtype):
        _check_dtype(dt, label)
        arr = values.to_numpy()  # a view for a NumPy-backed column: nothing is copied here

        def rows(a: int, b: int) -> Any:
            return arr[a:b]

        return dt, rows
    import pandas.api.types as pdt  # pandas is loaded: `values` is one of its objects

    if not pdt.is_bool_dtype(dt) and (pdt.is_float_dtype(dt) or pdt.is_integer_dtype(dt)):
        own = getattr(dt, "numpy_dtype", None)
        target = own if isinstance(own, np.dtype) and own.kind == "f" else np.dtype(np.float64)
        ext = values.array if hasattr(values, "array") else values  # slicing an ExtensionArray is cheap

        def rows(a: int, b: int) -> Any:
            return ext[a:b].to_numpy(dtype=target, na_value=np.nan)

        return target, rows
    raise ValueError(
        f"{label} has dtype {dt}, which fastfeed cannot read: it needs numbers (dtype one of "
        f"{', '.join(SOURCE_DTYPES)}, or pandas' nullable integers and floats, read as floats with NaN "
        "for missing values); convert the column first (e.g. .astype('float32'))"
    )


def _from_pandas(obj: Any, what: str) -> np.ndarray:
    """The values of a pandas DataFrame (shape ``(rows, columns)``) or Series/Index (shape
    ``(rows,)``) copied once into a new C-contiguous array, filled a block of rows at a time
    (``df.to_numpy()`` would give a Fortran-ordered array, and a second copy to reorder it)."""
    kind = f"a pandas {type(obj).__name__}"
    ndim = getattr(obj, "ndim", None)
    if ndim == 1 and hasattr(obj, "to_numpy"):
        columns = [_pandas_column(obj, what)]
        shape: Tuple[int, ...] = (len(obj),)
    elif ndim == 2 and hasattr(obj, "items"):
        columns = [_pandas_column(col, f"{what} column {name!r}") for name, col in obj.items()]
        shape = (len(obj), len(columns))
        if not columns:
            raise ValueError(f"{what} is {kind} with no columns; there are no values to feed")
    else:
        raise ValueError(f"{what} is {kind}; fastfeed reads a pandas DataFrame or Series (or a NumPy array)")
    dtypes = [dt for dt, _ in columns]
    if any(dt.kind == "b" for dt in dtypes) and not all(dt.kind == "b" for dt in dtypes):
        listed = ", ".join(f"{name!r}: {dt}" for name, dt in zip(obj.columns, dtypes))
        raise ValueError(
            f"{what} is {kind} whose columns have no common numeric dtype ({listed}; bool does not mix "
            "with numbers, df.to_numpy() gives object): convert it first (e.g. df.astype('float32'))"
        )
    dtype = np.result_type(*dtypes)
    out = np.empty(shape, dtype)
    step = max(1, (1 << 20) // max(1, dtype.itemsize * len(columns)))  # about 1 MiB of rows at a time
    for a in range(0, shape[0], step):
        b = min(a + step, shape[0])
        if len(shape) == 1:
            out[a:b] = columns[0][1](a, b)
        else:
            for j, (_, rows) in enumerate(columns):
                out[a:b, j] = rows(a, b)
    return out


def _check_dtype(dt: np.dtype, what: str) -> None:
    if dt.kind == "O":
        raise ValueError(
            f"{what} is an object array (dtype object: text or mixed values?); fastfeed needs numbers "
            f"(dtype one of {', '.join(SOURCE_DTYPES)})"
        )
    if dt.name not in SOURCE_DTYPES or not dt.isnative:
        raise ValueError(
            f"{what} has unsupported dtype {dt} (supported: {', '.join(SOURCE_DTYPES)}, native byte order)"
        )


def _log_copy(what: str, why: str, out: np.ndarray) -> None:
    logger.info(
        "fastfeed: %s %s; copied once into a C-contiguous array of %s", what, why, _human_bytes(int(out.nbytes))
    )


def _as_array(obj: Any, what: str, needs: str) -> np.ndarray:
    """`obj` as an array the core reads in place (see `as_series_array`); `needs` says what the
    first axis is, for the message refusing a 0-d array."""
    if _is_torch(obj):
        raise ValueError(f"{what} is a torch tensor; pass tensor.numpy() (shares memory) instead")
    if _is_pandas(obj):
        out = _from_pandas(obj, what)
        _log_copy(what, f"is not C-contiguous (a pandas {type(obj).__name__}, shape {out.shape} {out.dtype})", out)
        arr = out
    elif isinstance(obj, np.ndarray):
        arr = obj
    else:
        raise ValueError(f"{what} must be a NumPy array or a pandas DataFrame/Series, not {type(obj).__name__}")
    _check_dtype(arr.dtype, what)
    if arr.ndim < 1:
        raise ValueError(f"{what} is a 0-d array; {needs}")
    if not arr.flags.c_contiguous:
        out = np.array(arr, order="C", copy=True, subok=False)
        _log_copy(what, f"is not C-contiguous (shape {arr.shape}, strides {arr.strides}, {arr.dtype})", out)
        return out
    if not arr.flags.aligned:
        out = np.array(arr, order="C", copy=True, subok=False)  # a new allocation: aligned
        _log_copy(
            what,
            f"is not aligned (its data starts at address {arr.ctypes.data:#x}, not a multiple of its "
            f"{arr.dtype.itemsize}-byte {arr.dtype} elements)",
            out,
        )
        return out
    return arr


def as_series_array(obj: Any, what: str) -> np.ndarray:
    """`obj` (one series, shape ``(T, *feat)``) as an array the core reads: a C-contiguous,
    aligned NumPy array of a supported dtype in native byte order.

    Such an array is returned as it is, never copied. A pandas DataFrame (shape ``(rows,
    columns)``) or Series, a Fortran-ordered or strided array (``a[:, 1]``, ``a[::2]``) or a
    misaligned view is copied once into a new C-contiguous array, and the copy is logged at
    INFO on the ``"fastfeed"`` logger with its size. pandas' nullable integers and floats
    become floats with NaN for missing values. Object arrays, unsupported dtypes, a DataFrame
    whose columns share no numeric dtype, torch tensors and 0-d arrays are refused with a
    ValueError naming `what` (e.g. ``"source"``, ``"covariates[3]"``) and the dtype."""
    return _as_array(obj, what, "a series needs a time axis (shape (T, *feat))")


def as_table_array(obj: Any, what: str) -> np.ndarray:
    """`obj`, a table with one row per series (``static=``: shape ``(series, *sfeat)``), as an
    array the core reads, under the rules of `as_series_array`: used in place when C-contiguous
    and aligned, else copied once (logged at INFO); numeric, native byte order, at least 1-d."""
    return _as_array(obj, what, "a table needs one row per series (shape (series, *feat))")


def _one(item: Any, what: str) -> Tuple[Any, int, Tuple[int, ...], str]:
    if isinstance(item, (str, os.PathLike)):
        f = _open_path(item, what)
        shape = tuple(int(d) for d in f.shape)
        if len(shape) < 1:
            raise ValueError(f"{what} ({f.path}) holds a 0-d array; a series needs a time axis")
        return f, shape[0], shape[1:], f.dtype
    if isinstance(item, np.ndarray) or _is_pandas(item) or _is_torch(item):
        arr = as_series_array(item, what)
        return arr, int(arr.shape[0]), tuple(int(d) for d in arr.shape[1:]), arr.dtype.name
    raise ValueError(
        f"{what} must be a NumPy array, a pandas DataFrame/Series or a path to a .npy file, not {type(item).__name__}"
    )


def load_source(source: Any, what: str = "source", column: Optional[str] = None) -> SeriesSet:
    """Validates `source` and opens its files. Raises ValueError/FormatError naming the culprit.
    `column` names the column of a source with columns (Arrow, Hugging Face); refused elsewhere."""
    from ..mix import Mixture  # (mix imports nothing of io)

    if isinstance(source, Mixture):
        return _mixture_source(source, what, column)
    from .formats import columnar_source  # Arrow, Hugging Face, Megatron; odd paths refused

    special = columnar_source(source, what, column)
    if special is not None:
        return special
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        return _dataset_source(source, what)
    if isinstance(source, (list, tuple)):
        if len(source) == 0:
            raise ValueError(f"{what} is an empty list; pass at least one series")
        items, lengths = [], []
        feat0: Any = None  # the first series' feature shape and dtype, once read
        dtype0: Any = None
        for i, item in enumerate(source):
            label = f"{what}[{i}]"
            obj, length, feat, dtype = _one(item, label)
            if i == 0:
                feat0, dtype0 = feat, dtype
            elif dtype != dtype0:
                raise ValueError(
                    f"{label} has dtype {dtype}, but {what}[0] has {dtype0}; all series must share one dtype"
                )
            elif feat != feat0:
                raise ValueError(
                    f"{label} has feature shape {feat}, but {what}[0] has {feat0}; "
                    "all series must share one feature shape"
                )
            items.append(obj)
            lengths.append(length)
        return SeriesSet(items, lengths, feat0, dtype0, single=False)
    obj, length, feat, dtype = _one(source, what)
    if length == 0:
        label = f"{what} ({os.fspath(source)})" if isinstance(source, (str, os.PathLike)) else what
        raise ValueError(f"{label} is empty (shape {(0,) + feat}); there is nothing to feed")
    return SeriesSet([obj], [length], feat, dtype, single=True)


def _mixture_source(mixture: Any, what: str, column: Optional[str]) -> SeriesSet:
    """Every component's series back to back (they must share dtype and feature shape); `column`
    is read from the components that have columns."""
    from .formats import has_columns

    parts = [
        (name, load_source(src, f"{what} component {name!r}", column if has_columns(src) else None))
        for name, src in mixture.sources.items()
    ]
    first_name, first = parts[0]
    for name, part in parts[1:]:
        if part.dtype != first.dtype or part.feat != first.feat:
            raise ValueError(
                f"mixture components must share dtype and feature shape: {first_name!r} has {first.dtype} "
                f"{first.feat}, {name!r} has {part.dtype} {part.feat}"
            )
    for name, part in parts:
        if part.targets is not None or part.labels is not None:
            raise ValueError(
                f"{what} component {name!r} is a dataset with targets or labels; a mixture feeds its "
                "components' values only (targets from them with horizon or target_shift)"
            )
    return SeriesSet(
        [item for _, part in parts for item in part.items],
        [n for _, part in parts for n in part.lengths],
        first.feat,
        first.dtype,
        single=False,
        mixture=MixtureParts(list(mixture.names), list(mixture.weights), [part.count for _, part in parts]),
    )
