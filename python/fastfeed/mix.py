"""`fastfeed.mix`: a weighted mixture of sources, fed as one stream."""

from __future__ import annotations

import hashlib
import math
from typing import Any, Dict, List, Mapping, Optional

from .arguments import check_seed


class Mixture:
    """Sources read together in fixed proportions: pass it to [`Feeder`][fastfeed.Feeder] as
    its source. Made by [`mix`][fastfeed.mix]; holds the components and their weights."""

    def __init__(self, sources: Mapping[str, Any], weights: Optional[Mapping[str, Any]] = None) -> None:
        if not isinstance(sources, Mapping) or not sources:
            raise ValueError("mix() takes a non-empty dict {name: source}")
        for name in sources:
            if not isinstance(name, str) or not name:
                raise ValueError(f"mix(): component names must be non-empty strings, got {name!r}")
        self.names: List[str] = list(sources)
        self.sources: Dict[str, Any] = dict(sources)
        self.weights: List[float] = _resolve_weights(self.names, weights)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n!r}: {w:g}" for n, w in zip(self.names, self.weights))
        return f"fastfeed.mix(weights={{{parts}}})"


def mix(sources: Mapping[str, Any], weights: Optional[Mapping[str, Any]] = None) -> Mixture:
    """A weighted mixture of sources, for ``Feeder(mix(...), ..., steps_per_epoch=n)``.

    Every component is cut into samples with the Feeder's options and read in its own shuffled
    order (a pure function of the Feeder's seed, the component's name and its pass, whatever
    ``shuffle`` says), starting a new pass, in a new order, when it runs out. After ``n``
    samples of the mixture, component ``i`` has given ``n * w_i / sum(w)`` of them, within one,
    at every point. A mixture needs ``steps_per_epoch``; its components must share dtype and feature shape. With
    ``with_index=True``, ``batch.source`` says which component each sample came from (its place
    in ``sources``). A saved state records every component's position: a Feeder over the same
    components with other weights goes on from there with its own weights.

    Args:
        sources: ``{name: source}``, each anything a Feeder takes as its source.
        weights: ``{name: weight}`` with an entry for every component, each ``>= 0`` and not
            all 0. Default: equal weights.

    Returns:
        A [`Mixture`][fastfeed.Mixture] to pass to ``Feeder``.
    """
    return Mixture(sources, weights)


def _resolve_weights(names: List[str], weights: Optional[Mapping[str, Any]]) -> List[float]:
    if weights is None:
        return [1.0] * len(names)
    if not isinstance(weights, Mapping):
        raise ValueError(f"mix(weights=...) must be a dict {{name: weight}}, got {type(weights).__name__}")
    unknown = [k for k in weights if k not in names]
    if unknown:
        raise ValueError(
            f"mix(weights=...) names {', '.join(repr(k) for k in unknown)}, which is not a component "
            f"(the components are {', '.join(repr(n) for n in names)})"
        )
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(f"mix(weights=...) has no weight for {', '.join(repr(n) for n in missing)}")
    out = []
    for name in names:
        w = weights[name]
        if isinstance(w, bool) or (not isinstance(w, (int, float)) and not hasattr(w, "__float__")):
            raise ValueError(f"mix(): the weight of {name!r} must be a number, got {w!r}")
        value = float(w)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"mix(): the weight of {name!r} must be finite and >= 0, got {w!r}")
        out.append(value)
    if not any(out):
        raise ValueError("mix(): every weight is 0; at least one component must have a weight > 0")
    return out


def component_key(seed: int, name: str) -> int:
    """The shuffle key of component `name`: the Feeder's seed mixed with a hash of the name."""
    digest = int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")
    return check_seed(seed) ^ digest
