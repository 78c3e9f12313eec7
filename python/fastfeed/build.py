"""What this installation of fastfeed can do: `build_info()` and `cuda_available()`."""
from __future__ import annotations

import platform
from typing import Any, Dict

import numpy as np

from . import _core


def build_info() -> Dict[str, Any]:
    """How the native core was built and what it runs with.

    ``build_info()["cuda"]`` says whether CUDA support was compiled in (``"cuda_runtime"``: the
    CUDA version it was built against, 0 without; with CUDA, ``"nvcc"`` and
    ``"cuda_architectures"`` too); the other keys give the compiler, C++
    standard, build type and flags, and the versions of pybind11, NumPy, Python and (when
    importable) torch."""
    info = dict(_core.build_info())
    from . import __version__

    info.update(fastfeed=__version__, numpy=np.__version__, python=platform.python_version())
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def cuda_available() -> bool:
    """Whether a CUDA device can be used: CUDA support compiled in, a driver and a GPU present.
    (The device path itself is not in this version: device="cuda" is still refused.)"""
    return bool(_core.build_info()["cuda"]) and _core.cuda_device_count() > 0
