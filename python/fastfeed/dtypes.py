"""Translating the dtypes users name (NumPy, torch, strings) into the core's names."""

from __future__ import annotations

from typing import Any

import numpy as np

# The dtypes the core reads. bfloat16 exists only as an output.
SOURCE_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
OUTPUT_DTYPES = SOURCE_DTYPES + ("bfloat16",)
FLOATING = ("float16", "float32", "float64", "bfloat16")


def dtype_name(spec: Any, what: str = "dtype") -> str:
    """The core's name for a NumPy dtype, a torch.dtype or a string such as ``"float16"``."""
    if isinstance(spec, str) and spec == "bfloat16":
        return "bfloat16"
    if type(spec).__module__ == "torch" and type(spec).__name__ == "dtype":
        name = str(spec).removeprefix("torch.")
        if name in OUTPUT_DTYPES:
            return name
        raise ValueError(f"{what}={spec} is not supported (supported: {', '.join(OUTPUT_DTYPES)})")
    try:
        dt = np.dtype(spec)
    except TypeError as e:
        raise ValueError(f"{what}={spec!r} is not a dtype") from e
    if dt.name not in SOURCE_DTYPES or not dt.isnative:
        raise ValueError(f"{what}={spec!r} is not supported (supported: {', '.join(OUTPUT_DTYPES)})")
    return dt.name


def numpy_storage(name: str) -> np.dtype:
    """The NumPy dtype that holds values of the core dtype `name` (bfloat16 as raw uint16 bits)."""
    return np.dtype(np.uint16) if name == "bfloat16" else np.dtype(name)


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)
