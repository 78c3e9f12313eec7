"""What both sample modes resolve the same way: output dtypes, normalisation, access advice."""

from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import numpy as np

from .._core import OutputSpec, moments
from ..dtypes import FLOATING, dtype_name
from ..io.sources import SeriesSet
from ..spec import FeedSpec

# (mean, std) per element of a step, or ([], []) for no normalisation.
Norm = Tuple[List[float], List[float]]
NO_NORM: Norm = ([], [])


def resolve_dtypes(
    series: SeriesSet, dtype: Any, normalize: Any, targets: Optional[SeriesSet], output: str
) -> Tuple[str, str]:
    """(input dtype, target dtype) of the batches. Floating targets follow `dtype`; integer or
    bool targets (labels) keep theirs; targets that are the source itself are treated alike."""
    src = series.dtype
    if dtype is not None:
        x = dtype_name(dtype)
    elif normalize is not None and src not in FLOATING:
        x = "float32"  # standardised values need a floating type
    else:
        x = src
    if normalize is not None and x not in FLOATING:
        raise ValueError(f"normalize needs a floating output dtype, got dtype={x}")
    if x == "bfloat16" and output == "numpy":
        raise ValueError("dtype=bfloat16 needs output='torch' (NumPy has no bfloat16)")
    if targets is None:
        return x, x
    t = targets.dtype
    return x, (x if dtype is not None and t in FLOATING and x in FLOATING else t)


def resolve_normalization(series: SeriesSet, normalize: Any, spec: FeedSpec, start: int = 0, end: int = -1) -> Norm:
    """(mean, std) per element: computed over steps [start, end) of every series by the core
    for "standard", or broadcast from a user's (mean, std) to the feature shape."""
    if normalize is None:
        return NO_NORM
    if isinstance(normalize, str):
        if normalize != "standard":
            raise ValueError(f"normalize must be 'standard' or (mean, std), got {normalize!r}")
        mean, std, _ = moments(list(series.items), start, end, spec.check_finite == "skip")
        return mean, [s if s > 0 else 1.0 for s in std]  # constant features are centred, not scaled
    try:
        mean_in, std_in = normalize
    except (TypeError, ValueError) as e:
        raise ValueError("normalize must be 'standard' or a pair (mean, std)") from e
    try:
        mean = np.broadcast_to(np.asarray(mean_in, np.float64), series.feat).reshape(series.row_elems).tolist()
        std = np.broadcast_to(np.asarray(std_in, np.float64), series.feat).reshape(series.row_elems).tolist()
    except ValueError as e:
        raise ValueError(f"normalize=(mean, std) must broadcast to the feature shape {series.feat}") from e
    if not all(s > 0 and math.isfinite(s) for s in std):
        raise ValueError(f"normalize=(mean, std): every std must be > 0 and finite, got {std_in!r}")
    if not all(math.isfinite(m) for m in mean):
        raise ValueError(f"normalize=(mean, std): every mean must be finite, got {mean_in!r}")
    return mean, std


def advise_access(shuffle: bool, *sets: Optional[SeriesSet]) -> None:
    """Shuffled epochs touch pages at random: read-ahead would only waste I/O and memory."""
    for s in sets:
        for item in s.items if s is not None else ():
            if hasattr(item, "advise_random_access"):
                item.advise_random_access(shuffle)


def refuse_options(given: dict, defaults: dict, why: str) -> None:
    """Refuses options of another sample mode that were set: they would do nothing here."""
    named = [name for name, default in defaults.items() if given[name] != default]
    if named:
        raise ValueError(f"{', '.join(named)} appl{'y' if len(named) > 1 else 'ies'} {why}")


def output_spec(
    x_dtype: str,
    y_dtype: str,
    x_norm: Norm,
    y_norm: Norm,
    x_feat: Tuple[int, ...],
    y_feat: Tuple[int, ...],
    check_finite: bool,
) -> Any:
    """The core's description of what a batch's x and y hold."""
    return OutputSpec(
        x_dtype=x_dtype,
        y_dtype=y_dtype,
        x_mean=x_norm[0],
        x_std=x_norm[1],
        y_mean=y_norm[0],
        y_std=y_norm[1],
        x_feat=list(x_feat),
        y_feat=list(y_feat),
        check_finite=check_finite,
    )
