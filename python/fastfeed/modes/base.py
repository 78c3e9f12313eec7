"""What the Feeder asks of a sample mode: `Mode`."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from .._core import MixOrder, MixSpec, OrderSpec, RunSpec, epoch_sizes, locate_sample, stream_share_size
from ..arguments import check_int
from ..batch import Batch
from ..io.sources import SeriesSet
from ..run.epoch import Fields, Finish
from ..run.state import data_digest, normalization_digest, pass_reads
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
        self.mix_order: Optional[Any] = None  # the core's MixOrder when the source is a mixture
        self._mix_resume: Tuple[int, int] = (0, 0)  # (this rank's item, stream position) of an elastic resume
        self._mix_origin: Tuple[int, List[int]] = (
            0,
            [],
        )  # where the mixture's weights took effect, and the counts then
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
        """This rank's batches in epoch `epoch` where that differs from epoch to epoch, else None:
        every epoch has sizes().batches_per_epoch. An epoch resumed from a state saved with
        another world_size or batch_size (without virtual epochs) has the batches its pass has
        left; modes whose passes differ (batch_tokens, best-fit rows) say so themselves."""
        if self.order.resume_step < 0 or self.spec.steps_per_epoch is not None or epoch != self.order.resume_step:
            return None
        return int(epoch_sizes(self.units(), self.order, epoch).batches_per_epoch)

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

    def run_spec(self, epoch: int, first_batch: int, shape: Dict[str, Any]) -> Any:
        """The core's description of one iteration of this mode; `shape` holds its workers' and
        prefetch's keywords (run/tuning.py: TuneLimits.run_fields)."""
        return RunSpec(
            epoch=epoch,
            first_batch=first_batch,
            batches_per_block=self.batches_per_block,
            pinned=self.spec.on_gpu and self.cache is None,
            indices_only=self.cache is not None,
            **shape,
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

    # ----- mixtures ----------------------------------------------------------------------

    def component_units(self) -> List[Tuple[int, int]]:
        """(first unit, units) of each component of a mixture source, in the joint numbering."""
        raise ValueError(f"a mixture cannot be fed as {self.describe()}")

    def attach_mixture(
        self,
        origin: int = 0,
        base: Optional[List[int]] = None,
        resume: Tuple[int, int] = (0, 0),
        known: Optional[Tuple[int, List[int]]] = None,
    ) -> None:
        """Makes the core's order of a mixture source: `origin` and `base` say where its weights
        took effect (a state saved with other weights), `resume` which of this rank's items reads
        which stream position (an elastic resume), `known` a point whose counts a state gave.
        Nothing changes when the core refuses them."""
        parts = self.series.mixture
        if parts is None:
            return
        if self.spec.steps_per_epoch is None:
            raise ValueError(
                "a mixture needs steps_per_epoch=n: its components run on across passes of their own, "
                "so an epoch is a number of batches, not a pass"
            )
        units = self.component_units()
        for name, weight, (_, count) in zip(parts.names, parts.weights, units):
            if weight > 0 and count == 0:
                raise ValueError(f"mixture component {name!r} yields no sample with these options")
        from ..mix import component_key

        first_series = [sum(parts.series_counts[:i]) for i in range(len(parts.names))]
        item, position = resume
        self.mix_order = MixOrder(
            MixSpec(
                weights=parts.weights,
                first=[first for first, _ in units],
                count=[count for _, count in units],
                keys=[component_key(self.spec.seed, name) for name in parts.names],
                origin=origin,
                base=base if base is not None else [0] * len(parts.names),
                first_series=first_series,
                resume_item=item,
                resume_position=position,
                known_position=-1 if known is None else known[0],
                known_counts=[] if known is None else known[1],
            ),
            True,  # a mixture's components are always read in their own shuffled orders
        )
        self._mix_resume = resume
        self._mix_origin = (origin, list(base) if base is not None else [0] * len(parts.names))

    def stream_position(self, epoch: int, batch: int) -> int:
        """The mixture stream's position (over all ranks) where batch `batch` of `epoch` starts."""
        steps = self.spec.steps_per_epoch or 0
        q = (epoch * steps + batch) * self.spec.batch_size  # this rank's item
        item, position = self._mix_resume
        return position + (q - item) * self.spec.world_size

    def mix_state(self, epoch: int, batch: int) -> Optional[Dict[str, Any]]:
        """A mixture's part of a saved state: each component's position where (epoch, batch) starts."""
        parts = self.series.mixture
        if parts is None or self.mix_order is None:
            return None
        n = self.stream_position(epoch, batch)
        origin, base = self._mix_origin
        return {
            "names": list(parts.names),
            "weights": list(parts.weights),
            "origin": origin,
            "base": base,
            "position": n,
            "counts": [int(c) for c in self.mix_order.counts_at(n)],
            "resume": list(self._mix_resume),
        }

    def load_mix_state(self, saved: Any, epoch: int, batch: int, rescaled: bool) -> None:
        """Goes on from a saved mixture state: as it was with the same weights, or from each
        component's saved position with this Feeder's weights; `rescaled` (another world_size
        or batch_size): this rank's batch `batch` of `epoch` takes over at the saved position."""
        parts = self.series.mixture
        if parts is None:
            return
        try:
            names, weights = list(saved["names"]), [float(w) for w in saved["weights"]]
            origin, base = (
                check_int("mix origin", saved["origin"], 0),
                [check_int("mix base", b, 0) for b in saved["base"]],
            )
            position = check_int("mix position", saved["position"], 0)
            counts = [check_int("mix counts", c, 0) for c in saved["counts"]]
            resume = (check_int("mix resume", saved["resume"][0], 0), check_int("mix resume", saved["resume"][1], 0))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"malformed mixture state: {e}") from None
        if names != parts.names:
            raise ValueError(f"this state comes from a mixture of {names}, this Feeder mixes {parts.names}")
        steps = self.spec.steps_per_epoch or 0
        if rescaled:
            resume = ((epoch * steps + batch) * self.spec.batch_size, position)
        try:  # (the core checks that the counts fit the positions; a refused state changes nothing)
            if weights == parts.weights:
                self.attach_mixture(origin, base, resume, known=(position, counts))
            else:
                self.attach_mixture(position, counts, resume)
        except ValueError as e:
            raise ValueError(f"malformed mixture state: {e}") from None

    # ----- elastic resume -----------------------------------------------------------------

    elastic = False  # a state saved with another world_size or batch_size can take over the stream

    def stream_state(self, epoch: int, batch: int) -> Optional[Dict[str, Any]]:
        """Where batch `batch` of `epoch` starts in the order of passes, over all ranks, for an
        elastic resume; None where the mode cannot resume so."""
        if not self.elastic or self.mix_order is not None:
            return None
        o, units = self.order, self.units()
        origin = self.origin()
        # Where the block builders find the batch (windows' per-pass shares, as WindowBlocks has them).
        first_pass = stream_share_size(o, units, o.resume_pass)
        per_pass = stream_share_size(o, units, o.resume_pass + 1)
        pass_, index = locate_sample(o, epoch, batch * self.spec.batch_size, per_pass, first_pass)
        offset = o.offset_in(pass_) + index * self.spec.world_size  # over all ranks
        return {"pass": int(pass_), "offset": min(units, int(offset)), "origin": origin}

    def origin(self) -> Optional[List[Any]]:
        """This Feeder's own resume point, for a state: [step, pass, offset] (and the reads of
        bucketed batches before it, when there were any); None when it has none."""
        o = self.order
        if o.resume_step < 0:
            return None
        reads = [list(r) for r in o.resume_reads]
        return [o.resume_step, o.resume_pass, o.resume_offset] + ([reads] if reads else [])

    def load_stream_state(self, saved: Any, epoch: int, batch: int, rescaled: bool) -> Tuple[int, int]:
        """Takes over the saved stream: the (epoch, batch) the next iteration starts at. Rescaled
        (another world_size or batch_size), the order resumes at the saved point of its pass;
        otherwise as it was (with the saving Feeder's own resume point, if it had one). The
        state is checked whole before anything changes."""
        try:
            origin = None if saved is None else saved.get("origin")
            point = (
                None
                if saved is None
                else (
                    check_int("pass", saved["pass"], 0),
                    check_int("offset", saved["offset"], 0),
                    pass_reads(saved.get("reads", [])),
                )
            )
            if origin is not None:
                origin_pass = check_int("origin pass", origin[1], 0)
                origin = (
                    check_int("origin step", origin[0], 0),
                    origin_pass,
                    check_int("origin offset", origin[2], 0, self.pass_units(origin_pass)),
                    pass_reads(origin[3] if len(origin) > 3 else []),
                )
                self.check_reads(origin_pass, origin[2], origin[3])
            if point is not None:
                self.check_reads(*point)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(f"malformed stream position in the state: {e}") from None
        if not rescaled:
            self.set_resume(*(origin if origin is not None else (-1, 0, 0)))
            return epoch, batch
        if point is None:
            raise ValueError("this state holds no stream position: it cannot resume with another world_size")
        pass_, offset, reads = point
        units = self.pass_units(pass_)
        if offset > units:
            raise ValueError(f"stream offset {offset} is out of range for a pass of {units} {self.unit_name}")
        if self.spec.steps_per_epoch is None:  # the resumed epoch is what its pass has left
            if offset >= units:
                self.set_resume(-1, 0, 0)
                return pass_ + 1, 0
            self.set_resume(pass_, pass_, offset, reads)
            return pass_, 0
        self.set_resume(epoch * self.spec.steps_per_epoch + batch, pass_, offset, reads)
        return epoch, batch

    def check_reads(self, pass_: int, offset: int, reads: List[Tuple[int, int, int]]) -> None:
        """Refuses the reads of bucketed batches a saved stream position names where this mode
        has none, or where they do not read `offset` sequences of the pass."""
        if reads:
            raise ValueError("reads of bucketed batches belong to bucketed whole sequences")

    def pass_units(self, pass_: int) -> int:
        """The units (samples, sequences, rows or batches) pass `pass_` deals to all ranks."""
        return self.units()

    def set_resume(self, step: int, pass_: int, offset: int, reads: Sequence[Tuple[int, int, int]] = ()) -> None:
        """Where this Feeder's stream takes over another configuration's (step -1: nowhere):
        `offset` units of pass `pass_` read before, by `reads` where those were bucketed batches."""
        o = self.order
        o.resume_step, o.resume_pass, o.resume_offset, o.resume_reads = step, pass_, offset, list(reads)

    def resume_point(self) -> Tuple[int, int, int, List[Tuple[int, int, int]]]:
        o = self.order
        return int(o.resume_step), int(o.resume_pass), int(o.resume_offset), list(o.resume_reads)

    def forget_resume_before(self, epoch: int, batch: int) -> None:
        """An iteration that starts before the point a state resumed at (set_epoch to an earlier
        epoch) reads this configuration's own stream, as a new Feeder would."""
        steps = self.spec.steps_per_epoch
        step = epoch if steps is None else epoch * steps + batch
        if self.mix_order is not None:
            item, _ = self._mix_resume
            if item > 0 and (epoch * (steps or 0) + batch) * self.spec.batch_size < item:
                self.attach_mixture()
            return
        if 0 <= step < self.order.resume_step:
            self.set_resume(-1, 0, 0)

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
        if self.series.mixture is not None:  # the components by name; their weights may change
            fp["mixture"] = list(self.series.mixture.names)
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
