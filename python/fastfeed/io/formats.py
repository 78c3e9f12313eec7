"""Which kind of source a path or object is, beyond arrays, .npy files and dataset directories:
Arrow files and objects, Hugging Face datasets (objects, or directories save_to_disk wrote),
Megatron-LM indexed datasets; and the
refusals of paths that are none of the kinds fastfeed reads, and of `column=` where a source
has no columns."""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Any, Optional

from ..errors import FormatError, MissingFileError

if TYPE_CHECKING:
    from .sources import SeriesSet

ACCEPTED_PATHS = (
    "a .npy file, a fastfeed dataset directory, an Arrow IPC file (.arrow, as pyarrow and Hugging Face "
    "datasets write them), a directory of Hugging Face's save_to_disk, or a Megatron-LM indexed dataset "
    "(the prefix P of P.bin + P.idx)"
)
_NPY_MAGIC = b"\x93NUMPY"


def path_kind(path: str) -> str:
    """What a source path names: "dir", "megatron", "arrow", "npy" (also for a missing path or
    one that is not a regular file: opening it says what is wrong) or "other"."""
    if os.path.isdir(path):
        return "dir"
    from .megatron import megatron_prefix

    if megatron_prefix(path) is not None:
        return "megatron"
    if not os.path.exists(path) or not stat.S_ISREG(os.stat(path).st_mode) or path.lower().endswith(".npy"):
        return "npy"
    with open(path, "rb") as f:  # a regular file: reading its first bytes cannot block
        head = f.read(8)
    if head.startswith(_NPY_MAGIC):
        return "npy"
    from .arrow import is_arrow_file

    return "arrow" if is_arrow_file(path, head) else "other"


def _refuse_path(path: str, what: str) -> None:
    """Refuses a file that is none of the kinds fastfeed reads, naming them."""
    root, ext = os.path.splitext(path)
    partner = {".bin": ".idx", ".idx": ".bin"}.get(ext.lower())
    hint = f" ({root + partner} is missing, so it is not a Megatron-LM dataset)" if partner else ""
    raise FormatError(
        f"{what}: {path} is not a file fastfeed reads{hint}. A source path must be {ACCEPTED_PATHS}. "
        "For a raw binary file of tokens, pass np.memmap(path, dtype=..., mode='r') (one series) instead; "
        "fastfeed convert makes a dataset directory of CSV or Parquet files"
    )


def _missing_megatron(path: str, what: str) -> None:
    """A missing path P with only one of P.idx and P.bin beside it: names the one missing."""
    have = [ext for ext in (".idx", ".bin") if os.path.isfile(path + ext)]
    if len(have) == 1:
        other = ".bin" if have[0] == ".idx" else ".idx"
        raise MissingFileError(
            errno.ENOENT,
            f"{what}: {path!r} looks like a Megatron-LM dataset prefix, but {path + other} is missing "
            f"(only {path + have[0]} exists)",
            path + other,
        )


def is_saved_hf_dataset(path: Optional[str]) -> bool:
    """Whether `path` is a directory Hugging Face's save_to_disk wrote (and not a fastfeed dataset)."""
    from .dataset import is_dataset_dir

    return (
        path is not None
        and not is_dataset_dir(path)
        and (
            os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(os.path.join(path, "dataset_dict.json"))
        )
    )


def _saved_hf_source(path: str, what: str, column: Optional[str]) -> SeriesSet:
    """A directory of datasets' save_to_disk, loaded (memory-mapped) with datasets.load_from_disk."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            f"{what}: {path} is a Hugging Face dataset saved with save_to_disk; reading it needs the "
            "datasets package (pip install 'fastfeed[hf]')"
        ) from e
    from .arrow import arrow_object_source

    return arrow_object_source(datasets.load_from_disk(path), f"{what} ({path})", column)


def has_columns(source: Any) -> bool:
    """Whether `source` is a kind with columns (an Arrow object or file, a saved Hugging Face dataset)."""
    from .arrow import is_arrow_object

    if is_arrow_object(source):
        return True
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = os.fspath(source)
    kind = path_kind(path)
    return kind == "arrow" or (kind == "dir" and is_saved_hf_dataset(path))


def columnar_source(source: Any, what: str, column: Optional[str]) -> Optional[SeriesSet]:
    """`source` read when it is an Arrow object or file, a Hugging Face dataset or a Megatron
    prefix; None for the kinds load_source reads itself (arrays, lists, .npy paths, dataset
    directories), after refusing `column` for them and a path of no known kind."""
    from .arrow import is_arrow_object

    if is_arrow_object(source):
        from .arrow import arrow_object_source

        return arrow_object_source(source, what, column)
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    kind = path_kind(path) if path is not None else ""
    if kind == "dir" and is_saved_hf_dataset(path):
        assert path is not None
        return _saved_hf_source(path, what, column)
    if kind == "arrow":
        from .arrow import arrow_file_source

        assert path is not None
        return arrow_file_source(path, what, column)
    if column is not None:
        described = f"the path {path!r}" if path is not None else f"a {type(source).__name__}"
        raise ValueError(
            f"column={column!r} applies to sources with columns (an .arrow file, a pyarrow Table or "
            f"RecordBatch, a Hugging Face Dataset), but {what} is {described}"
        )
    if path is None:
        return None
    if kind == "megatron":
        from .megatron import megatron_prefix, megatron_source

        prefix = megatron_prefix(path)
        assert prefix is not None
        return megatron_source(prefix, what)
    if kind == "other":
        _refuse_path(path, what)
    if kind == "npy" and not os.path.exists(path):
        _missing_megatron(path, what)
    return None
