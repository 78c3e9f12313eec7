"""What this installation of fastfeed can do: `build_info()` and `cuda_available()`."""
from __future__ import annotations

import platform
from typing import Any, Dict

import numpy as np

from . import _core


def build_info() -> Dict[str, Any]:
    """How the native core was built and what it runs with.

    ``build_info()["cuda"]`` says whether CUDA support was compiled in; the other keys give the
    compiler, C++ standard, build type and flags, and the versions of pybind11, NumPy, Python
    and (when importable) torch."""
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
    """Whether device="cuda" can be used: CUDA support compiled in and a CUDA device present.
    This build's answer is False whenever build_info()["cuda"] is False."""
    if not _core.build_info()["cuda"]:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
