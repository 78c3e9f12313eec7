"""Turning what users pass as data (arrays, .npy paths, lists of either, dataset directories) into validated series."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._core import NpyFile
from ..dtypes import SOURCE_DTYPES
from ..errors import FormatError, MissingFileError
from .dataset import HEADER, DatasetInfo, file_kind, is_dataset_dir, load_dataset_series

SeriesLike = Union[np.ndarray, str, "os.PathLike[str]"]
Source = Union[SeriesLike, Sequence[SeriesLike]]


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


def _check_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == object:
        raise ValueError(f"{what} is an object array; fastfeed needs numbers (dtype one of {', '.join(SOURCE_DTYPES)})")
    if arr.dtype.name not in SOURCE_DTYPES or not arr.dtype.isnative:
        raise ValueError(
            f"{what} has unsupported dtype {arr.dtype} (supported: {', '.join(SOURCE_DTYPES)}, native byte order)"
        )
    if arr.ndim < 1:
        raise ValueError(f"{what} is a 0-d array; a series needs a time axis (shape (T, *feat))")
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"{what} is not C-contiguous (shape {arr.shape}, strides {arr.strides}); fastfeed reads "
            "arrays in place and never copies a whole dataset: pass np.ascontiguousarray(...)"
        )
    if not arr.flags.aligned:
        raise ValueError(
            f"{what} is not aligned: its data starts at address {arr.ctypes.data:#x}, not a multiple of its "
            f"{arr.dtype.itemsize}-byte {arr.dtype} elements (a view at an odd byte offset?); fastfeed reads "
            "arrays in place: pass a copy (arr.copy())"
        )
    return arr


def _one(item: Any, what: str) -> Tuple[Any, int, Tuple[int, ...], str]:
    if isinstance(item, (str, os.PathLike)):
        f = _open_path(item, what)
        shape = tuple(int(d) for d in f.shape)
        if len(shape) < 1:
            raise ValueError(f"{what} ({f.path}) holds a 0-d array; a series needs a time axis")
        return f, shape[0], shape[1:], f.dtype
    if isinstance(item, np.ndarray):
        arr = _check_array(item, what)
        return arr, int(arr.shape[0]), tuple(int(d) for d in arr.shape[1:]), arr.dtype.name
    if type(item).__module__.startswith("torch"):
        raise ValueError(f"{what} is a torch tensor; pass tensor.numpy() (shares memory) instead")
    raise ValueError(f"{what} must be a NumPy array or a path to a .npy file, not {type(item).__name__}")


def load_source(source: Any, what: str = "source") -> SeriesSet:
    """Validates `source` and opens its files. Raises ValueError/FormatError naming the culprit."""
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
