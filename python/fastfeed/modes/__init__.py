"""Sample modes: how a source is cut into samples. The Feeder picks one, here, once."""

from __future__ import annotations

from typing import Any, Dict

from ..io.sources import SeriesSet
from ..spec import FeedSpec
from .base import Mode
from .common import refuse_options
from .sequences import SequenceMode
from .windows import WindowMode

__all__ = ["MODE_OPTIONS", "Mode", "SequenceMode", "WindowMode", "make_mode"]

# Every mode option the Feeder takes, with its default.
MODE_OPTIONS: Dict[str, Any] = {**WindowMode.options, **SequenceMode.options}


def make_mode(series: SeriesSet, spec: FeedSpec, options: Dict[str, Any]) -> Mode:
    """The mode `options` ask for (window=None: whole sequences), built over `series`. Options
    that belong to another mode only are refused: they would silently do nothing."""
    chosen = SequenceMode if options["window"] is None else WindowMode
    chosen.check_source(series)
    others = {k: v for k, v in MODE_OPTIONS.items() if k not in chosen.options}
    why = (
        "to windows; with window=None each sample is a whole sequence"
        if chosen is SequenceMode
        else "to whole sequences (window=None); windows all have the same length and are never padded"
    )
    if chosen is SequenceMode:
        others.pop("window")
    refuse_options(options, others, why)
    return chosen(series, spec, **{k: options[k] for k in chosen.options})
