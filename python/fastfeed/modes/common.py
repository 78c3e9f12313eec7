"""What both sample modes resolve the same way: output dtypes, normalisation, access advice."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._core import SERIES_END, FieldOutput, OutputSpec, moments
from ..dtypes import FLOATING, dtype_name
from ..io.sources import SeriesSet, as_table_array

# (mean, std) per element of a step, or ([], []) for no normalisation.
Norm = Tuple[List[float], List[float]]
NO_NORM: Norm = ([], [])


def resolve_dtypes(
    series: SeriesSet, dtype: Any, transform: Optional[str], targets: Optional[SeriesSet], output: str
) -> Tuple[str, str]:
    """(input dtype, target dtype) of the batches. Floating targets follow `dtype`; integer or
    bool targets (labels) keep theirs; targets that are the source itself are treated alike.
    `transform` names what rescales the inputs ("normalize", "scale"), if anything does."""
    src = series.dtype
    if dtype is not None:
        x = dtype_name(dtype)
    elif transform is not None and src not in FLOATING:
        x = "float32"  # standardised values need a floating type
    else:
        x = src
    if transform is not None and x not in FLOATING:
        raise ValueError(f"{transform} needs a floating output dtype, got dtype={x}")
    if x == "bfloat16" and output == "numpy":
        raise ValueError("dtype=bfloat16 needs output='torch' (NumPy has no bfloat16)")
    if targets is None:
        return x, x
    t = targets.dtype
    return x, (x if dtype is not None and t in FLOATING and x in FLOATING else t)


# The fields `normalize` may name, each normalised with its own statistics.
NORMALIZED_FIELDS = ("x", "covariates", "known")


def split_normalize(normalize: Any, present: Tuple[str, ...]) -> Dict[str, Any]:
    """What `normalize` asks of each field: {"x": "standard" or (mean, std), ...}, for the
    fields among `present` (those given) that it normalises. "standard" standardises every
    field present; a (mean, std) pair applies to the inputs; a dict chooses per field."""
    if normalize is None:
        return {}
    if isinstance(normalize, str):
        if normalize != "standard":
            raise ValueError(f"normalize must be 'standard', (mean, std) or a dict by field, got {normalize!r}")
        return dict.fromkeys(present, "standard")
    if isinstance(normalize, dict):
        unknown = [k for k in normalize if k not in NORMALIZED_FIELDS]
        if unknown:
            raise ValueError(
                f"normalize names {', '.join(repr(k) for k in unknown)}: the fields it can normalise are "
                f"{', '.join(repr(k) for k in NORMALIZED_FIELDS)}"
            )
        absent = [k for k, v in normalize.items() if v is not None and k not in present]
        if absent:
            raise ValueError(
                f"normalize names {', '.join(repr(k) for k in absent)}, but this Feeder has no such field "
                f"(pass {', '.join(f'{k}=' for k in absent)} to add it)"
            )
        return {k: v for k, v in normalize.items() if v is not None}
    return {"x": normalize}


def resolve_normalization(
    series: SeriesSet,
    how: Any,
    check_finite: Any,
    start: int = 0,
    end: int = SERIES_END,
    field: str = "x",
    by_field: bool = False,
) -> Norm:
    """(mean, std) per element of field `field` (read from `series`): computed by the core over
    the steps [start, end) of every series (negative values count from each series' end) for
    "standard", or a user's (mean, std) broadcast to the feature shape. `by_field`: `how` came
    from a dict by field (messages then name the field's entry)."""
    if how is None:
        return NO_NORM
    label = f"normalize[{field!r}]" if by_field else "normalize"
    if isinstance(how, str):
        if how != "standard":
            raise ValueError(f"{label} must be 'standard' or (mean, std), got {how!r}")
        skip = check_finite in ("skip", "mask")
        try:
            mean, std, _ = moments(list(series.items), start, end, skip)
        except ValueError as e:
            raise ValueError(
                f"normalize='standard' on {field}: {e}; the statistics never use a NaN or Inf: pass "
                "check_finite='skip' or 'mask' to compute them from the finite values"
            ) from None
        return mean, [s if s > 0 else 1.0 for s in std]  # constant features are centred, not scaled
    try:
        mean_in, std_in = how
    except (TypeError, ValueError) as e:
        raise ValueError(f"{label} must be 'standard' or a pair (mean, std)") from e
    try:
        mean = np.broadcast_to(np.asarray(mean_in, np.float64), series.feat).reshape(series.row_elems).tolist()
        std = np.broadcast_to(np.asarray(std_in, np.float64), series.feat).reshape(series.row_elems).tolist()
    except ValueError as e:
        shapes = f"mean {np.shape(mean_in)}, std {np.shape(std_in)}"
        raise ValueError(
            f"{label}=(mean, std) must broadcast to the feature shape {series.feat} of {field}, got {shapes}"
        ) from e
    if not all(s > 0 and math.isfinite(s) for s in std):
        raise ValueError(f"{label}=(mean, std): every std must be > 0 and finite, got {std_in!r}")
    if not all(math.isfinite(m) for m in mean):
        raise ValueError(f"{label}=(mean, std): every mean must be finite, got {mean_in!r}")
    return mean, std


def normalization_arrays(norm: Norm, feat: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """A Norm as the (mean, std) float64 arrays of the feature shape that users see."""
    return np.asarray(norm[0], np.float64).reshape(feat), np.asarray(norm[1], np.float64).reshape(feat)


def field_dtype(name: str, src: str, dtype: Any, normalized: bool, output: str) -> str:
    """The output dtype of a field beside x (covariates, known, static): `dtype` converts
    floating fields as it converts the inputs; a normalised field needs a floating type."""
    if normalized:
        out = dtype_name(dtype) if dtype is not None else (src if src in FLOATING else "float32")
        if out not in FLOATING:
            raise ValueError(f"normalising {name} needs a floating output dtype, got dtype={out}")
    else:
        out = dtype_name(dtype) if dtype is not None and src in FLOATING else src
    if out == "bfloat16" and output == "numpy":
        raise ValueError("dtype=bfloat16 needs output='torch' (NumPy has no bfloat16)")
    return out


def load_static(series: SeriesSet, static: Any) -> Optional[SeriesSet]:
    """One row of features per series, as a one-item SeriesSet (its steps are the series)."""
    if static is None:
        return None
    table = as_table_array(static, "static")
    rows = int(table.shape[0])
    if rows != series.count:
        what = (
            "the source is one series: pass shape (1, *features)"
            if series.single
            else f"the source has {series.count} series"
        )
        raise ValueError(f"static has {rows} rows, but {what} (static holds one row per series or sequence)")
    return SeriesSet([table], [rows], tuple(int(d) for d in table.shape[1:]), table.dtype.name, single=True)


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
    check_finite: Any,
    *,
    with_index: bool = False,
    static: Optional[Tuple[str, Tuple[int, ...]]] = None,
) -> Any:
    """The core's description of what a batch's x and y hold (`check_finite` as the Feeder takes it)."""
    return OutputSpec(
        x_dtype=x_dtype,
        y_dtype=y_dtype,
        x_mean=x_norm[0],
        x_std=x_norm[1],
        y_mean=y_norm[0],
        y_std=y_norm[1],
        x_feat=list(x_feat),
        y_feat=list(y_feat),
        check_finite=check_finite == "raise",
        mask_non_finite=check_finite == "mask",
        with_index=with_index,
        static_output=field_output(*(static or ("float32", ())), NO_NORM),
    )


def field_output(dtype: str, feat: Tuple[int, ...], norm: Norm) -> Any:
    """The core's description of a field beside x and y."""
    return FieldOutput(dtype=dtype, mean=norm[0], std=norm[1], feat=list(feat))
