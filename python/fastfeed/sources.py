"""Turning what users pass as data (arrays, .npy paths, lists of either) into validated series."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple, Union

import numpy as np

from . import _core
from .dtypes import SOURCE_DTYPES
from .errors import MissingFileError

SeriesLike = Union[np.ndarray, str, "os.PathLike[str]"]
Source = Union[SeriesLike, Sequence[SeriesLike]]


@dataclass
class SeriesSet:
    """Series that share a dtype and a feature shape, ready for the core."""

    items: List[Any]  # np.ndarray or _core.NpyFile, one per series
    lengths: List[int]
    feat: Tuple[int, ...]
    dtype: str
    single: bool  # one series (an array or one .npy file), as opposed to a list

    @property
    def count(self) -> int:
        """How many series (or sequences) there are."""
        return len(self.lengths)

    @property
    def row_elems(self) -> int:
        return int(np.prod(self.feat, dtype=np.int64))


def _open_path(path: Union[str, "os.PathLike[str]"], what: str) -> Any:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(2, f"{what}: no such file: {path!r}", path)
    if os.path.isdir(path):
        raise ValueError(f"{what}: {path!r} is a directory; dataset directories are not supported yet")
    return _core.NpyFile.open(path)


def _check_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == object:
        raise ValueError(f"{what} is an object array; fastfeed needs numbers (dtype one of {', '.join(SOURCE_DTYPES)})")
    if arr.dtype.name not in SOURCE_DTYPES or not arr.dtype.isnative:
        raise ValueError(f"{what} has unsupported dtype {arr.dtype} (supported: {', '.join(SOURCE_DTYPES)}, native byte order)")
    if arr.ndim < 1:
        raise ValueError(f"{what} is a 0-d array; a series needs a time axis (shape (T, *feat))")
    if not arr.flags.c_contiguous or not arr.flags.aligned:
        raise ValueError(
            f"{what} is not C-contiguous (shape {arr.shape}, strides {arr.strides}); fastfeed reads "
            "arrays in place and never copies a whole dataset: pass np.ascontiguousarray(...)"
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
    if isinstance(source, (list, tuple)):
        if len(source) == 0:
            raise ValueError(f"{what} is an empty list; pass at least one series")
        items, lengths = [], []
        feat0 = dtype0 = None
        for i, item in enumerate(source):
            label = f"{what}[{i}]"
            obj, length, feat, dtype = _one(item, label)
            if i == 0:
                feat0, dtype0 = feat, dtype
            elif dtype != dtype0:
                raise ValueError(f"{label} has dtype {dtype}, but {what}[0] has {dtype0}; all series must share one dtype")
            elif feat != feat0:
                raise ValueError(
                    f"{label} has feature shape {feat}, but {what}[0] has {feat0}; all series must share one feature shape"
                )
            items.append(obj)
            lengths.append(length)
        return SeriesSet(items, lengths, feat0, dtype0, single=False)
    obj, length, feat, dtype = _one(source, what)
    if length == 0:
        raise ValueError(f"{what} is empty (shape {(0,) + feat}); there is nothing to feed")
    return SeriesSet([obj], [length], feat, dtype, single=True)
