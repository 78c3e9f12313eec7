"""Dataset directories: many sequences in files that a Feeder memory-maps.

Format, version 1
-----------------
A dataset is a directory with these files (all numbers little-endian, arrays in C order):

``header.json``
    A JSON object, for example::

        {"format": "fastfeed-dataset", "version": 1, "dtype": "float32", "feat": [3],
         "num_sequences": 2, "num_steps": 150,
         "targets": {"kind": "labels", "dtype": "int64", "feat": []}}

    ``format`` is always ``"fastfeed-dataset"`` and ``version`` the integer 1. ``dtype`` is one of
    bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float16, float32, float64.
    ``feat`` is the shape of one step (``[]`` for scalar steps); a step is ``prod(feat)``
    elements, its *row*. ``targets`` is absent (or null) when the dataset has none.
    The file holds at most 1 MiB of JSON nested at most 16 levels deep, and ``feat`` at most
    32 dimensions.

``values.bin``
    ``num_steps`` rows of ``dtype``: the sequences one after another.

``offsets.bin``
    ``num_sequences + 1`` int64: sequence ``i`` is rows ``[offsets[i], offsets[i + 1])`` of
    values.bin. ``offsets[0] == 0``, the offsets never decrease, ``offsets[-1] == num_steps``.

``targets.bin`` (only with ``targets``)
    kind ``"labels"``: ``num_sequences`` rows of the targets' dtype and feat, one per sequence;
    kind ``"steps"``: ``num_steps`` rows aligned step for step with values.bin (cut by the same
    offsets).

Each file is a regular file, or a symbolic link to one inside the directory: a link leading
out of it, a FIFO, a device or a socket is refused (a FormatError naming it) before anything
opens it.

Commits and crashes
-------------------
header.json is the commit record: readers trust only the counts it states and ignore any
bytes the data files hold beyond them (what is left of an append that never committed).
An append first truncates those leftovers, writes the new rows and offsets past the committed
end, fsyncs them, and only then replaces header.json atomically (a temporary file, fsync,
``os.replace``, fsync of the directory). A process killed at any moment therefore leaves the
dataset exactly as it was before the append or as it is after it. Appends to one directory
are serialised with an advisory lock (``flock`` on the directory).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._core import NpyFile, RaggedFile
from ..arguments import check_bool
from ..dtypes import SOURCE_DTYPES
from ..errors import FormatError, MissingFileError

__all__ = [
    "DatasetInfo",
    "DatasetSeries",
    "TargetsInfo",
    "append_dataset",
    "is_dataset_dir",
    "load_dataset_series",
    "open_dataset",
    "read_sequences",
    "read_targets",
    "write_dataset",
]

FORMAT_NAME = "fastfeed-dataset"
FORMAT_VERSION = 1
HEADER = "header.json"
VALUES = "values.bin"
OFFSETS = "offsets.bin"
TARGETS = "targets.bin"
_HEADER_TMP = "header.json.tmp"
_DATASET_FILES = (HEADER, VALUES, OFFSETS, TARGETS, _HEADER_TMP)
_TARGET_KINDS = ("labels", "steps")

PathLike = Union[str, "os.PathLike[str]"]
Feat = Tuple[int, ...]
# Labels are one array with a row per sequence; step targets a list aligned with the sequences.
Targets = Union[None, np.ndarray, Sequence[np.ndarray]]


# ----- descriptions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetsInfo:
    """The targets a dataset stores: ``kind`` is ``"labels"`` (one row per sequence) or
    ``"steps"`` (aligned step for step with the values)."""

    kind: str
    dtype: str
    feat: Feat


@dataclass(frozen=True, eq=False, repr=False)
class DatasetInfo:
    """What [`open_dataset`][fastfeed.open_dataset] reads from a dataset directory (its
    committed state). Two are equal when every attribute is, the lengths compared by value.

    Attributes:
        path: the directory.
        version: the format version of its header (1).
        dtype: the values' dtype, such as ``"float32"``.
        feat: the shape of one step (``()`` for scalar steps).
        num_sequences: how many sequences the dataset holds.
        num_steps: the steps of all sequences together.
        lengths: the length of each sequence (int64, read-only, ``(num_sequences,)``).
        targets: the stored targets' ``kind`` (``"labels"``, one row per sequence, or
            ``"steps"``, aligned step for step with the values), ``dtype`` and ``feat``;
            None when the dataset has no targets.
        nbytes: the committed bytes of its data files (values, offsets and targets).
    """

    path: str
    version: int
    dtype: str
    feat: Feat
    num_sequences: int
    num_steps: int
    lengths: np.ndarray  # int64, (num_sequences,), read-only
    targets: Optional[TargetsInfo]
    nbytes: int  # committed bytes of values.bin, offsets.bin and targets.bin

    def __eq__(self, other: object) -> bool:
        # By value: the lengths are an array, which the generated __eq__ cannot compare.
        if not isinstance(other, DatasetInfo):
            return NotImplemented
        return all(
            getattr(self, f) == getattr(other, f)
            for f in ("path", "version", "dtype", "feat", "num_sequences", "num_steps", "targets", "nbytes")
        ) and np.array_equal(self.lengths, other.lengths)

    def __repr__(self) -> str:
        if self.num_sequences:
            lens = (
                f"lengths {int(self.lengths.min())}..{int(self.lengths.max())} "
                f"(mean {self.num_steps / self.num_sequences:.1f})"
            )
        else:
            lens = "no sequences"
        t = self.targets
        targets = "no targets" if t is None else f"{t.kind} targets {t.dtype} feat {t.feat}"
        return (
            f"DatasetInfo({self.path!r}: {self.num_sequences} sequences, {self.num_steps} steps "
            f"of {self.dtype} feat {self.feat}; {lens}; {targets}; {_human_bytes(self.nbytes)}; "
            f"format version {self.version})"
        )


@dataclass(frozen=True, eq=False)
class DatasetSeries:
    """A dataset opened for the core: what `load_dataset_series` returns."""

    info: DatasetInfo
    values: RaggedFile
    step_targets: Optional[RaggedFile]  # targets of kind "steps", cut like the values
    # Targets of kind "labels", (num_sequences, *feat): the core's guarded map of targets.bin (a
    # file that shrinks is a FeedError, never a SIGBUS), or an empty array when they take no bytes.
    labels: Union[NpyFile, np.ndarray, None]


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exp = min((n.bit_length() - 1) // 10, 4)
    return f"{n / 1024**exp:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exp - 1]}"


def _row_bytes(dtype: str, feat: Feat) -> int:
    return int(np.prod(feat, dtype=np.int64)) * np.dtype(dtype).itemsize


def _le(dtype: str) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


# ----- reading the header ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    dtype: str
    feat: Feat
    num_sequences: int
    num_steps: int
    targets: Optional[TargetsInfo]

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "dtype": self.dtype,
            "feat": list(self.feat),
            "num_sequences": self.num_sequences,
            "num_steps": self.num_steps,
        }
        if self.targets is not None:
            t = self.targets
            out["targets"] = {"kind": t.kind, "dtype": t.dtype, "feat": list(t.feat)}
        return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_dtype(v: Any, where: str) -> str:
    if not isinstance(v, str) or v not in SOURCE_DTYPES:
        raise FormatError(f"{where}: unknown dtype {v!r} (supported: {', '.join(SOURCE_DTYPES)})")
    return v


# Any count or size in a header must fit an int64 (the core's index type) with room to multiply.
_MAX_COUNT = 2**62
# A step's shape has at most this many dimensions (NumPy's arrays have at most 64, and a step's
# rows add one to the shape).
_MAX_FEAT_DIMS = 32


def _parse_feat(v: Any, where: str) -> Feat:
    if isinstance(v, list) and len(v) > _MAX_FEAT_DIMS:
        raise FormatError(f"{where}: 'feat' has {len(v)} dimensions; a step may have at most {_MAX_FEAT_DIMS}")
    if not isinstance(v, list) or not all(_is_int(d) and d >= 0 for d in v):
        raise FormatError(f"{where}: 'feat' must be a list of integers >= 0 (the shape of one step), got {v!r}")
    elems = 1
    for d in v:
        elems *= d
    if elems * 8 >= _MAX_COUNT or any(d >= _MAX_COUNT for d in v):
        raise FormatError(f"{where}: 'feat' {v!r} is too large (a step of {elems} elements)")
    return tuple(v)


def _parse_count(header: Dict[str, Any], key: str, where: str) -> int:
    v = header[key]
    if not _is_int(v) or v < 0 or v >= _MAX_COUNT:
        raise FormatError(f"{where}: {key!r} must be an integer in [0, 2**62), got {v!r}")
    return v


def _parse_targets(v: Any, where: str) -> Optional[TargetsInfo]:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise FormatError(f"{where}: 'targets' must be an object or null, got {v!r}")
    missing = [k for k in ("kind", "dtype", "feat") if k not in v]
    if missing:
        raise FormatError(f"{where}: 'targets' is missing {', '.join(map(repr, missing))}")
    if v["kind"] not in _TARGET_KINDS:
        raise FormatError(f"{where}: targets kind {v['kind']!r} is unknown (expected 'labels' or 'steps')")
    return TargetsInfo(
        v["kind"], _parse_dtype(v["dtype"], f"{where}: targets"), _parse_feat(v["feat"], f"{where}: targets")
    )


# header.json is read with limits, so that no header can make the reader read without end,
# allocate without bound or recurse without bound: a real one is about 200 bytes, 3 levels deep.
_HEADER_MAX_BYTES = 1 << 20
_HEADER_MAX_DEPTH = 16
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_NESTING = np.zeros(256, np.int64)  # +1 for each byte that opens a level, -1 for each that closes one
_JSON_NESTING[list(b"[{")], _JSON_NESTING[list(b"]}")] = 1, -1


def _json_depth(raw: bytes) -> int:
    """How deeply the arrays and objects of JSON text `raw` nest (brackets inside strings do not
    count), found without parsing it: Python's parser recurses once per level."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", raw), np.uint8)
    return int(np.cumsum(_JSON_NESTING[skeleton]).max(initial=0))


def _read_header_bytes(directory: str) -> Tuple[str, bytes]:
    """header.json's path and bytes, read only once it passed `_data_file` and at most one byte
    past the limit."""
    for _ in range(3):
        path = _data_file(directory, HEADER, "the header of a fastfeed dataset directory")
        try:
            checked = os.stat(path)
            if checked.st_size > _HEADER_MAX_BYTES:
                raise FormatError(_header_too_large(path))
            # O_NONBLOCK: should the file have become a FIFO since it was checked, opening it
            # returns at once instead of waiting for a writer (fstat then tells the change).
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise MissingFileError(
                errno.ENOENT, f"{path}: missing: the header of a fastfeed dataset directory", path
            ) from None
        with open(fd, "rb") as f:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) == (checked.st_dev, checked.st_ino):
                return path, f.read(_HEADER_MAX_BYTES + 1)
        # Replaced between the check and the open (an append commits by replacing it): again.
    raise FormatError(f"{path}: replaced again and again while it was being opened")


def _load_json(directory: str) -> Any:
    path, raw = _read_header_bytes(directory)
    if len(raw) > _HEADER_MAX_BYTES:
        raise FormatError(_header_too_large(path))
    depth = _json_depth(raw)
    if depth > _HEADER_MAX_DEPTH:
        raise FormatError(
            f"{path}: JSON nested deeper than {_HEADER_MAX_DEPTH} levels ({depth}); "
            "a dataset header is an object a few levels deep"
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not JSON (not UTF-8 text: {e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise FormatError(f"{path}: not JSON that can be read ({e})") from None
    except RecursionError:  # the depth limit above keeps the parser far from this
        raise FormatError(f"{path}: JSON nested too deeply") from None


def _header_too_large(path: str) -> str:
    return (
        f"{path}: larger than {_HEADER_MAX_BYTES} bytes (1 MiB), the most a dataset header may hold "
        "(a real one is a few hundred bytes)"
    )


def _read_header(directory: str) -> _Header:
    where = os.path.join(directory, HEADER)
    h = _load_json(directory)
    if not isinstance(h, dict):
        raise FormatError(f"{where}: expected a JSON object, found {type(h).__name__}")
    if h.get("format") != FORMAT_NAME:
        raise FormatError(
            f"{where}: not a fastfeed dataset header ('format' is {h.get('format')!r}, expected {FORMAT_NAME!r})"
        )
    if "version" not in h:
        raise FormatError(f"{where}: missing key 'version'")
    if h["version"] != FORMAT_VERSION or not _is_int(h["version"]):
        raise FormatError(
            f"{where}: format version {h['version']!r}, this fastfeed reads version "
            f"{FORMAT_VERSION} (a newer fastfeed may read it)"
        )
    missing = [k for k in ("dtype", "feat", "num_sequences", "num_steps") if k not in h]
    if missing:
        raise FormatError(f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    return _Header(
        dtype=_parse_dtype(h["dtype"], where),
        feat=_parse_feat(h["feat"], where),
        num_sequences=_parse_count(h, "num_sequences", where),
        num_steps=_parse_count(h, "num_steps", where),
        targets=_parse_targets(h.get("targets"), where),
    )


# ----- opening ---------------------------------------------------------------------------------


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for a message: "a FIFO (named pipe)", ..."""
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return kind
    return "a special file"


def _data_file(directory: str, name: str, what: str = "the dataset's header promises it") -> str:
    """The path of the dataset file `name`, after checking that it is data: a regular file, or a
    symbolic link that leads to one inside the directory. Nothing is opened here (opening a
    FIFO would block), so the core and the header reader open only files that passed."""
    path = os.path.join(directory, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise MissingFileError(errno.ENOENT, f"{path}: missing: {what}", path) from None
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        root = os.path.realpath(directory)
        if os.path.commonpath([root, target]) != root:
            raise FormatError(
                f"{path}: a symbolic link to {target}, outside the dataset directory {directory}; a dataset's "
                "files are read as data, never as pointers (a link is followed only to a file inside the directory)"
            )
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise MissingFileError(
                errno.ENOENT, f"{path}: missing: a symbolic link to {target}, which does not exist ({what})", path
            ) from None
        except OSError as e:  # a loop of links, or a link through something that is not a directory
            raise FormatError(f"{path}: a symbolic link that cannot be followed ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(
            f"{path}: {file_kind(st.st_mode)}, not a regular file; a dataset directory holds regular files"
        )
    return path


def _check_directory(path: PathLike) -> str:
    directory = os.path.abspath(os.fspath(path))
    if not os.path.exists(directory):
        raise MissingFileError(errno.ENOENT, f"{directory}: no such dataset directory", directory)
    if not os.path.isdir(directory):
        raise FormatError(f"{directory}: not a directory (a fastfeed dataset is a directory with {HEADER})")
    return directory


def _open_labels(path: str, h: _Header, mapped: bool) -> Union[NpyFile, np.ndarray, None]:
    t = h.targets
    assert t is not None
    need = h.num_sequences * _row_bytes(t.dtype, t.feat)
    size = os.path.getsize(path)
    if size < need:
        raise FormatError(
            f"{path}: too short: {h.num_sequences} labels of {_row_bytes(t.dtype, t.feat)} bytes "
            f"({t.dtype}) need {need} bytes, but the file holds {size}"
        )
    if not mapped:
        return None
    if need == 0:  # nothing to map (NumPy cannot map zero bytes, nor the core hand on an empty map)
        return _map_rows(path, 0, h.num_sequences, t.dtype, t.feat)
    # Mapped by the core, as the values are, never by NumPy: the core's reads are guarded, and
    # the Feeder's file watch sees this map too.
    return NpyFile.open_raw(path, t.dtype, (h.num_sequences,) + t.feat)


def _open_all(path: PathLike, map_labels: bool) -> DatasetSeries:
    directory = _check_directory(path)
    h = _read_header(directory)
    values_path, offsets_path = _data_file(directory, VALUES), _data_file(directory, OFFSETS)
    row_elems = int(np.prod(h.feat, dtype=np.int64))
    # The core validates sizes and offsets (the same checks the Feeder relies on).
    values = RaggedFile.open(values_path, offsets_path, h.num_sequences, h.num_steps, h.dtype, row_elems)
    step_targets, labels = None, None
    nbytes = h.num_steps * _row_bytes(h.dtype, h.feat) + 8 * (h.num_sequences + 1)
    if h.targets is not None:
        t = h.targets
        targets_path = _data_file(directory, TARGETS)
        if t.kind == "steps":
            step_targets = RaggedFile.open(
                targets_path, offsets_path, h.num_sequences, h.num_steps, t.dtype, int(np.prod(t.feat, dtype=np.int64))
            )
            nbytes += h.num_steps * _row_bytes(t.dtype, t.feat)
        else:
            labels = _open_labels(targets_path, h, map_labels)
            nbytes += h.num_sequences * _row_bytes(t.dtype, t.feat)
    lengths = values.lengths()
    lengths.setflags(write=False)
    info = DatasetInfo(
        directory, FORMAT_VERSION, h.dtype, h.feat, h.num_sequences, h.num_steps, lengths, h.targets, nbytes
    )
    return DatasetSeries(info, values, step_targets, labels)


def open_dataset(path: PathLike) -> DatasetInfo:
    """Describes the dataset directory at `path` after checking it.

    Args:
        path: the dataset directory.

    Returns:
        Its committed state: counts, lengths, dtype, feature shape and targets.

    Raises:
        fastfeed.FormatError: the dataset is damaged (a ValueError); the message names the file
            and the problem. A missing file raises ``fastfeed.errors.MissingFileError``, both a
            FormatError and a FileNotFoundError.
    """
    return _open_all(path, map_labels=False).info


def committed_sequences(path: PathLike) -> int:
    """How many sequences the dataset's header commits, reading nothing else (a cheap way to
    notice an append)."""
    return _read_header(_check_directory(path)).num_sequences


def load_dataset_series(path: PathLike) -> DatasetSeries:
    """Opens a dataset for the core: its values (and step targets) as memory-mapped
    `_core.RaggedFile` objects, its labels as a `_core.NpyFile` (a map of targets.bin)."""
    return _open_all(path, map_labels=True)


def is_dataset_dir(path: PathLike) -> bool:
    """Whether `path` is a directory with a dataset header (it may still be damaged, or not be
    a regular file: opening the dataset says so)."""
    return os.path.lexists(os.path.join(os.fspath(path), HEADER))


# ----- reading rows back into NumPy ----------------------------------------------------------


def _map_rows(path: str, first_row: int, rows: int, dtype: str, feat: Feat) -> np.ndarray:
    shape = (rows,) + feat
    if rows * _row_bytes(dtype, feat) == 0:
        out = np.empty(shape, _le(dtype))  # NumPy cannot map zero bytes
    else:
        out = np.memmap(path, dtype=_le(dtype), mode="r", offset=first_row * _row_bytes(dtype, feat), shape=shape)
    out.flags.writeable = False
    return out


def _split_rows(rows: np.ndarray, lengths: np.ndarray) -> List[np.ndarray]:
    ends = np.cumsum(lengths)
    return [rows[e - n : e] for e, n in zip(ends.tolist(), lengths.tolist())]


def read_sequences(path: PathLike) -> List[np.ndarray]:
    """The dataset's sequences as read-only NumPy views of the memory-mapped values file."""
    info = open_dataset(path)
    rows = _map_rows(os.path.join(info.path, VALUES), 0, info.num_steps, info.dtype, info.feat)
    return _split_rows(rows, info.lengths)


def read_targets(path: PathLike) -> Targets:
    """The dataset's targets, read-only and memory-mapped: None, the labels as one array with a
    row per sequence, or the step targets as a list aligned with `read_sequences`."""
    info = open_dataset(path)
    t = info.targets
    if t is None:
        return None
    file = os.path.join(info.path, TARGETS)
    if t.kind == "labels":
        return _map_rows(file, 0, info.num_sequences, t.dtype, t.feat)
    return _split_rows(_map_rows(file, 0, info.num_steps, t.dtype, t.feat), info.lengths)


# ----- validating what is written ------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """The dtype and step shape a group of arrays must have, and where that requirement comes from."""

    dtype: str
    feat: Feat
    origin: str  # e.g. "sequences[0]" or "the dataset at /x"


def _as_array(item: Any, label: str) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return item
    if type(item).__module__.startswith("torch"):
        raise ValueError(f"{label} is a torch tensor; pass tensor.numpy() instead")
    raise ValueError(f"{label} must be a NumPy array, not {type(item).__name__}")


def _check_rows(arr: np.ndarray, label: str) -> None:
    if arr.dtype == object:
        raise ValueError(
            f"{label} is an object array; a dataset holds numbers (dtype one of {', '.join(SOURCE_DTYPES)})"
        )
    if arr.dtype.name not in SOURCE_DTYPES:
        raise ValueError(f"{label} has unsupported dtype {arr.dtype} (supported: {', '.join(SOURCE_DTYPES)})")
    if arr.ndim < 1:
        raise ValueError(f"{label} is a 0-d array; it needs a leading axis (shape (T, *feat))")


def _check_layout(arr: np.ndarray, label: str, want: _Layout, what: str) -> None:
    feat = tuple(int(d) for d in arr.shape[1:])
    if arr.dtype.name != want.dtype:
        raise ValueError(
            f"{label} has dtype {arr.dtype.name}, but {want.origin} has {want.dtype}; all {what} must share one dtype"
        )
    if feat != want.feat:
        raise ValueError(
            f"{label} has feature shape {feat}, but {want.origin} has {want.feat}; "
            f"all {what} must share one feature shape"
        )


def _check_group(
    items: Sequence[Any], name: str, want: Optional[_Layout], what: str
) -> Tuple[List[np.ndarray], _Layout]:
    """Checks that `items` are arrays of one supported dtype and step shape (`want`'s if given)."""
    arrays: List[np.ndarray] = []
    for i, item in enumerate(items):
        label = f"{name}[{i}]"
        arr = _as_array(item, label)
        _check_rows(arr, label)
        if want is None:
            want = _Layout(arr.dtype.name, tuple(int(d) for d in arr.shape[1:]), label)
        _check_layout(arr, label, want, what)
        arrays.append(arr)
    assert want is not None
    return arrays, want


def _check_sequences(sequences: Any, want: Optional[_Layout]) -> Tuple[List[np.ndarray], _Layout]:
    if isinstance(sequences, np.ndarray) or not isinstance(sequences, (list, tuple)):
        raise ValueError(
            f"sequences must be a list or tuple of arrays of shape (T_i, *feat), not "
            f"{type(sequences).__name__}; for one series pass [array]"
        )
    if not sequences and want is None:
        raise ValueError(
            "sequences is empty; a new dataset needs at least one sequence (it fixes the "
            "dtype and feature shape; sequences of length 0 are fine)"
        )
    return _check_group(sequences, "sequences", want, "sequences")


@dataclass(frozen=True)
class _NewTargets:
    info: TargetsInfo
    arrays: List[np.ndarray]  # labels: one array of all rows; steps: one array per sequence


def _check_labels(labels: np.ndarray, n: int, want: Optional[_Layout]) -> _NewTargets:
    _check_rows(labels, "targets")
    if labels.shape[0] != n:
        raise ValueError(
            f"targets (labels, an array with one row per sequence) has {labels.shape[0]} rows, "
            f"but there are {n} sequences"
        )
    if want is not None:
        _check_layout(labels, "targets", want, "labels")
    return _NewTargets(TargetsInfo("labels", labels.dtype.name, tuple(int(d) for d in labels.shape[1:])), [labels])


def _check_step_targets(targets: Sequence[Any], lengths: Sequence[int], want: Optional[_Layout]) -> _NewTargets:
    if len(targets) != len(lengths):
        raise ValueError(
            f"targets (step targets, a list aligned with the sequences) has {len(targets)} arrays, "
            f"but there are {len(lengths)} sequences"
        )
    arrays, layout = _check_group(targets, "targets", want, "step targets")
    for i, (a, n) in enumerate(zip(arrays, lengths)):
        if a.shape[0] != n:
            raise ValueError(
                f"targets[{i}] has {a.shape[0]} steps, but sequences[{i}] has {n}; "
                "step targets must be aligned step for step"
            )
    return _NewTargets(TargetsInfo("steps", layout.dtype, layout.feat), arrays)


def _check_targets(targets: Any, lengths: Sequence[int]) -> Optional[_NewTargets]:
    if targets is None:
        return None
    if isinstance(targets, np.ndarray):
        return _check_labels(targets, len(lengths), None)
    if isinstance(targets, (list, tuple)):
        if not targets:
            raise ValueError("targets is an empty list; pass None for no targets")
        return _check_step_targets(targets, lengths, None)
    raise ValueError(
        f"targets must be None, an array with one row per sequence (labels) or a list of arrays "
        f"aligned step for step with the sequences, not {type(targets).__name__}"
    )


def _check_append_targets(
    targets: Any, lengths: Sequence[int], stored: Optional[TargetsInfo], where: str
) -> Optional[_NewTargets]:
    if stored is None:
        if targets is not None:
            raise ValueError(f"the dataset at {where} has no targets, so an append cannot add any; pass targets=None")
        return None
    want = _Layout(stored.dtype, stored.feat, f"the dataset at {where}")
    if stored.kind == "labels":
        if not isinstance(targets, np.ndarray):
            raise ValueError(
                f"the dataset at {where} stores labels: pass targets as an array with one row per "
                f"new sequence, not {'None' if targets is None else type(targets).__name__}"
            )
        return _check_labels(targets, len(lengths), want)
    if not isinstance(targets, (list, tuple)):
        raise ValueError(
            f"the dataset at {where} stores step targets: pass targets as a list of arrays aligned "
            f"step for step with the new sequences, not {'None' if targets is None else type(targets).__name__}"
        )
    return _check_step_targets(targets, lengths, want)


# ----- writing ---------------------------------------------------------------------------------


def _byte_view(arr: np.ndarray) -> np.ndarray:
    """`arr` as flat little-endian bytes; copies only what is not already little-endian C order."""
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return arr.reshape(-1).view(np.uint8)


def _write_rows(path: str, committed: int, arrays: Sequence[np.ndarray]) -> None:
    """Writes `arrays` after the first `committed` bytes of `path` and fsyncs them.

    Truncating first drops whatever an interrupted append left past the committed end, so the
    new rows land exactly where the header will say they are."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    with open(fd, "r+b") as f:
        os.ftruncate(fd, committed)
        f.seek(committed)
        for a in arrays:
            f.write(_byte_view(a))  # type: ignore[arg-type]
        f.flush()
        os.fsync(fd)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit_header(directory: str, header: _Header) -> None:
    """Replaces header.json atomically and durably: the commit point of every write."""
    tmp = os.path.join(directory, _HEADER_TMP)
    # A new file, never whatever an interrupted writer (or anyone) left under the name: writing
    # through a symbolic link found there would overwrite the file it points to.
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(header.to_json()) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, HEADER))
    _fsync_dir(directory)


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """Serialises writers of one dataset (readers need no lock: they trust the header)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks; concurrent writers must be avoided
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _append_rows(directory: str, old: _Header, seqs: List[np.ndarray], targets: Optional[_NewTargets]) -> _Header:
    """Writes new rows past the committed end of every file and returns the header that commits them."""
    lengths = np.fromiter((a.shape[0] for a in seqs), np.int64, len(seqs))
    offsets = old.num_steps + np.cumsum(lengths, dtype=np.int64)
    _write_rows(os.path.join(directory, VALUES), old.num_steps * _row_bytes(old.dtype, old.feat), seqs)
    _write_rows(os.path.join(directory, OFFSETS), 8 * (old.num_sequences + 1), [offsets])
    if targets is not None:
        t = targets.info
        committed_rows = old.num_sequences if t.kind == "labels" else old.num_steps
        _write_rows(os.path.join(directory, TARGETS), committed_rows * _row_bytes(t.dtype, t.feat), targets.arrays)
    return _Header(old.dtype, old.feat, old.num_sequences + len(seqs), old.num_steps + int(lengths.sum()), old.targets)


def _prepare_directory(directory: str, overwrite: bool) -> None:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise FileExistsError(errno.EEXIST, f"{directory} exists and is not a directory", directory)
    if not os.path.isdir(directory):
        os.makedirs(directory)
        _fsync_dir(os.path.dirname(directory))  # the new directory's own entry survives a crash too
        return
    present = sorted(os.listdir(directory))
    if not present:
        return
    if not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            f"{directory} exists and is not empty ({len(present)} entries); "
            "pass overwrite=True to replace the dataset in it",
            directory,
        )
    foreign = [p for p in present if p not in _DATASET_FILES]
    if foreign:
        raise FileExistsError(
            errno.EEXIST,
            f"{directory} holds files that are not part of a fastfeed dataset "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
            "overwrite=True only replaces a dataset, so choose an empty or new directory",
            directory,
        )
    # The header goes first: until the new one is committed, the directory is no dataset at all
    # rather than an old header describing half-written new files.
    for name in (HEADER, _HEADER_TMP, VALUES, OFFSETS, TARGETS):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, name))
    _fsync_dir(directory)


def write_dataset(
    path: PathLike, sequences: Sequence[np.ndarray], targets: Targets = None, *, overwrite: bool = False
) -> DatasetInfo:
    """Writes `sequences` as a new dataset directory at `path` and describes it.

    Args:
        path: the directory to write; created if missing.
        sequences: arrays of shape ``(T_i, *feat)``, all of one dtype and feature shape
            (``T_i`` may be 0).
        targets: None, an array with one row per sequence (labels), or a list of arrays
            aligned step for step with the sequences.
        overwrite: replace the dataset already at `path`. Only a dataset is replaced: a
            directory that also holds other files is refused all the same.

    Returns:
        The new dataset, as [`open_dataset`][fastfeed.open_dataset] describes it.

    Raises:
        FileExistsError: `path` is not a directory, is a non-empty one and `overwrite` is
            False, or holds files that are not part of a dataset.
        ValueError: invalid input; the message names the index and the numbers involved.
    """
    seqs, layout = _check_sequences(sequences, None)
    new_targets = _check_targets(targets, [a.shape[0] for a in seqs])
    directory = os.path.abspath(os.fspath(path))
    _prepare_directory(directory, check_bool("overwrite", overwrite))
    with _locked(directory):
        empty = _Header(layout.dtype, layout.feat, 0, 0, None if new_targets is None else new_targets.info)
        # An empty dataset is offsets [0]; the rows then go in exactly as an append writes them.
        _write_rows(os.path.join(directory, OFFSETS), 0, [np.zeros(1, np.int64)])
        header = _append_rows(directory, empty, seqs, new_targets)
        _commit_header(directory, header)
    return open_dataset(directory)


def append_dataset(path: PathLike, sequences: Sequence[np.ndarray], targets: Targets = None) -> DatasetInfo:
    """Adds `sequences` (and their targets) to the dataset at `path` and describes the result.

    The append is crash-safe: the new rows are written and synced past the committed end
    first, and the header that commits them is replaced atomically last, so a crash at any
    moment leaves the dataset as it was before the call or as it is after it. Appends to one
    directory are serialised with an advisory lock.

    Args:
        path: an existing dataset directory.
        sequences: arrays of the dataset's dtype and feature shape.
        targets: targets of the kind the dataset stores (labels: one row per sequence; steps:
            a list aligned step for step), or None when it stores none.

    Returns:
        The dataset after the append, as [`open_dataset`][fastfeed.open_dataset] describes it.
    """
    directory = _check_directory(path)
    with _locked(directory):
        # Opening checks the committed part: an append to a damaged dataset would bury the damage.
        info = open_dataset(directory)
        old = _Header(info.dtype, info.feat, info.num_sequences, info.num_steps, info.targets)
        seqs, _ = _check_sequences(sequences, _Layout(old.dtype, old.feat, f"the dataset at {directory}"))
        if not seqs and targets is None:
            return open_dataset(directory)
        new_targets = _check_append_targets(targets, [a.shape[0] for a in seqs], old.targets, directory)
        header = _append_rows(directory, old, seqs, new_targets)
        _commit_header(directory, header)
    return open_dataset(directory)
