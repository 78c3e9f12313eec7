"""What this installation of fastfeed can do: `build_info()` and `cuda_available()`."""

from __future__ import annotations

import importlib
import platform
from typing import Any, Dict

import numpy as np

from ._core import build_info as native_build_info
from ._core import cuda_device_count
from ._version import __version__


def build_info() -> Dict[str, Any]:
    """How the native core was built and what it runs with.

    ``build_info()["cuda"]`` says whether CUDA support was compiled in (``"cuda_runtime"``: the
    CUDA version it was built against, 0 without; with CUDA, ``"nvcc"`` and
    ``"cuda_architectures"`` too); the other keys give the compiler, C++
    standard, build type and flags, and the versions of pybind11, NumPy, Python and (when
    importable) torch. ``"torch_views"`` is the torch version that the native row views
    (fastfeed._torch_views, which halve what small torch batches cost) were built for, or None
    where they were not built; only that version uses them."""
    info = dict(native_build_info())
    info.update(fastfeed=__version__, numpy=np.__version__, python=platform.python_version())
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    module = torch_views_module() if info["torch"] else None
    info["torch_views"] = None if module is None else module.TORCH_VERSION
    return info


def cuda_available() -> bool:
    """Whether a CUDA device can be used: CUDA support compiled in, a driver and a GPU present.
    (Where it is False, ``Feeder(..., device="cuda")`` is refused with the reason.)"""
    return bool(native_build_info()["cuda"]) and cuda_device_count() > 0


def torch_views_module() -> Any:
    """fastfeed._torch_views, or None where it was not built (the build had no torch). Import
    torch first: the module links against torch's libraries."""
    try:
        return importlib.import_module("fastfeed._torch_views")
    except ImportError:
        return None
