"""Sample modes: how a source is cut into samples. The Feeder picks one, here, once."""

from __future__ import annotations

from typing import Any, Dict, Type

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
    """The mode `options` ask for (window=None: whole sequences), built over `series`."""
    if options["window"] is None:
        SequenceMode.check_source(series)
        _refuse_foreign_options(SequenceMode, options)
        return SequenceMode(
            series,
            spec,
            targets=options["targets"],
            dtype=options["dtype"],
            normalize=options["normalize"],
            max_len=options["max_len"],
            pad_multiple=options["pad_multiple"],
            padding_side=options["padding_side"],
            truncation_side=options["truncation_side"],
            pad_value=options["pad_value"],
            bucket=options["bucket"],
            bucket_pool=options["bucket_pool"],
            pack=options["pack"],
            batch_tokens=options["batch_tokens"],
            static=options["static"],
            with_index=options["with_index"],
        )
    _refuse_foreign_options(WindowMode, options)
    return WindowMode(
        series,
        spec,
        window=options["window"],
        horizon=options["horizon"],
        target_shift=options["target_shift"],
        targets=options["targets"],
        covariates=options["covariates"],
        known=options["known"],
        static=options["static"],
        with_index=options["with_index"],
        sampling_rate=options["sampling_rate"],
        stride=options["stride"],
        start_index=options["start_index"],
        end_index=options["end_index"],
        dtype=options["dtype"],
        normalize=options["normalize"],
        scale=options["scale"],
    )


def _refuse_foreign_options(mode: Type[Mode], options: Dict[str, Any]) -> None:
    """Options that only another mode takes were set: refused, since here they would do nothing."""
    foreign = {k: v for k, v in MODE_OPTIONS.items() if k not in mode.options}
    refuse_options(options, foreign, mode.foreign_options_why)
