"""What the Feeder asks of a sample mode: `Mode`."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .._core import OrderSpec, RunSpec, epoch_sizes
from ..batch import Batch
from ..io.sources import SeriesSet
from ..run.epoch import Fields, Finish
from ..run.state import data_digest, normalization_digest
from ..spec import FeedSpec
from .common import NO_NORM, Norm, normalization_arrays


class Mode:
    """One way of cutting a source into samples, and everything that depends on that: the
    mode's own options and their checks, the core objects it builds, how a block of the core
    becomes batches, its part of the state's fingerprint and its device cache.

    The Feeder talks to every mode through the members below and never asks which mode it has.
    """

    name = ""
    options: ClassVar[Dict[str, Any]] = {}  # the mode's own Feeder arguments and their defaults
    unit_name = "samples"  # what ranks share out of a pass
    foreign_options_why = ""  # why other modes' options do nothing here (ends "... appl(y|ies) <why>")
    streams_short_passes = True  # virtual epochs feed on item by item, even from a pass without a batch
    batches_per_block = 1
    host_fields: FrozenSet[str] = frozenset()  # fields that stay in host memory when batches go to a GPU
    # What a Feeder shows of its mode as attributes (feeder.window, feeder.num_samples, ...).
    public_names: ClassVar[Tuple[str, ...]] = ("num_samples", "skipped_samples")
    num_samples = 0
    skipped_samples = 0  # samples dropped by check_finite="skip"
    x_dtype = y_dtype = ""

    def __init__(self, series: SeriesSet, spec: FeedSpec) -> None:
        self.series = series
        self.spec = spec
        self.norms: Tuple[Norm, Norm] = (NO_NORM, NO_NORM)  # (inputs, targets)
        # The statistics each normalised field gets, with its feature shape (feeder.normalization).
        self.normalized: Dict[str, Tuple[Norm, Tuple[int, ...]]] = {}
        self.cache: Optional[Any] = None
        # The core's description of which sample comes when: fixed for the mode's lifetime.
        self.order = OrderSpec(
            shuffle=spec.shuffle,
            seed=spec.seed,
            rank=spec.rank,
            world_size=spec.world_size,
            batch_size=spec.batch_size,
            drop_last=spec.drop_last,
            steps_per_epoch=spec.steps_per_epoch or 0,
        )

    @classmethod
    def check_source(cls, series: SeriesSet) -> None:
        """Refuses a source this mode cannot cut, before any option is looked at."""

    # ----- sizes -------------------------------------------------------------------------

    def units(self) -> int:
        """What ranks share out of one pass (samples, sequences or packed rows)."""
        raise NotImplementedError

    def sizes(self) -> Any:
        """The core's `EpochSizes` for this rank: per_rank, batches_per_pass, batches_per_epoch."""
        return epoch_sizes(self.units(), self.order)

    def batches_in_epoch(self, epoch: int) -> Optional[int]:
        """This rank's batches in epoch `epoch` where that differs from epoch to epoch (whole
        sequences cut by batch_tokens or packed by best fit, without virtual epochs), else None:
        every epoch has sizes().batches_per_epoch."""
        return None

    def largest_batch(self) -> Tuple[int, str]:
        """(bytes, what sizes it): the most memory one batch of this mode may take, and the
        arguments that decide it (for an error message)."""
        raise NotImplementedError

    def block_bytes(self) -> int:
        """Bytes of one block of batches, to size the prefetch depth."""
        raise NotImplementedError

    def field_dtypes(self) -> Dict[str, str]:
        """The output dtype of each field that may be converted (x, y and fields beside them)."""
        return {"x": self.x_dtype, "y": self.y_dtype}

    @property
    def bfloat16_fields(self) -> FrozenSet[str]:
        """Fields that travel as bfloat16 bit patterns (NumPy has no bfloat16)."""
        return frozenset(name for name, dt in self.field_dtypes().items() if dt == "bfloat16")

    def normalization(self) -> Dict[str, Tuple[Any, Any]]:
        """{field: (mean, std)} of every normalised field, as float64 arrays of its feature shape."""
        return {name: normalization_arrays(norm, feat) for name, (norm, feat) in self.normalized.items()}

    # ----- feeding -----------------------------------------------------------------------

    def run_spec(self, epoch: int, first_batch: int, prefetch: int) -> Any:
        """The core's description of one iteration of this mode."""
        return RunSpec(
            epoch=epoch,
            first_batch=first_batch,
            batches_per_block=self.batches_per_block,
            num_threads=self.spec.num_threads,
            prefetch=prefetch,
            pinned=self.spec.on_gpu and self.cache is None,
            indices_only=self.cache is not None,
        )

    def open_pipeline(self, run: Any) -> Any:
        """Starts the core's workers on one iteration (a `_core.RunSpec`)."""
        raise NotImplementedError

    def files_changed(self) -> str:
        """What happened to a mapped file since it was mapped, or ''."""
        raise NotImplementedError

    def batches(self, fields: Fields, failed: bool, finish: Finish) -> Iterable[List[Batch]]:
        """A block's batches, a chunk (list) at a time; when a sample `failed`, only the whole
        batches before it (the core cut the arrays at the failed sample)."""
        raise NotImplementedError

    def padding(self, fields: Fields) -> Optional[Tuple[int, int]]:
        """(real, padded) steps of a block, for the statistics; None where nothing is padded."""
        return None

    # ----- resuming ----------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        """The mode's options that decide which batches come."""
        raise NotImplementedError

    def fingerprint(self) -> Dict[str, Any]:
        """What ties a saved state to this configuration and data (not threads or prefetch)."""
        s = self.spec
        fp: Dict[str, Any] = {
            "mode": self.name,
            "batch_size": s.batch_size,
            "shuffle": s.shuffle,
            "seed": s.seed,
            "drop_last": s.drop_last,
            "steps_per_epoch": s.steps_per_epoch,
            "rank": s.rank,
            "world_size": s.world_size,
            "dtype": self.x_dtype,
            "target_dtype": self.y_dtype,
            "check_finite": s.check_finite,
            "normalize": normalization_digest(self.norm_values()),
        }
        fp.update(self.config())
        fp["data"] = data_digest(self.series, self.target_set(), *self.side_sets())
        return fp

    def norm_values(self) -> Tuple[Norm, ...]:
        """Every (mean, std) applied, for the fingerprint: inputs, targets, then other fields."""
        return self.norms

    def target_set(self) -> Optional[SeriesSet]:
        """The targets read beside the source (for the data digest), or None."""
        return None

    def side_sets(self) -> Tuple[SeriesSet, ...]:
        """Data read beside the source and its targets (for the data digest)."""
        return ()

    def describe(self) -> str:
        """The mode's part of the Feeder's repr."""
        raise NotImplementedError
