"""Checks for the arguments users pass: each names the argument and what was wrong with it."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

# Integer arguments cross into the core as signed 64-bit numbers; thread and prefetch counts as
# 32-bit ones.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def check_int(name: str, value: Any, minimum: int, maximum: int = INT64_MAX) -> int:
    """`value` as an int in [minimum, maximum]; bools are refused (True is not a count)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_optional_int(name: str, value: Any, minimum: int) -> Optional[int]:
    return None if value is None else check_int(name, value, minimum)


def check_bool(name: str, value: Any) -> bool:
    """`value` as a bool. Strings such as "no" are refused rather than read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, options: Tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be {' or '.join(repr(o) for o in options)}, got {value!r}")
    return value


def check_seed(value: Any) -> int:
    """A seed in [0, 2**64): the core's shuffle is keyed by an unsigned 64-bit number, and a
    seed outside that range would silently stand for another one."""
    return check_int("seed", value, 0, 2**64 - 1)
