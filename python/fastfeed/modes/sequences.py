"""Whole sequences: each sample is one sequence, padded to its batch's length or packed into rows."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .._core import (
    NpyFile,
    PackSpec,
    PadSpec,
    PassSizes,
    Pipeline,
    Sequences,
    locate_batch,
    non_finite_steps,
    sequences_read,
)
from ..arguments import check_bool, check_choice, check_int, check_optional_int
from ..batch import Batch
from ..dtypes import FLOATING, numpy_storage
from ..io.sources import SeriesSet, load_source
from ..spec import FeedSpec
from .base import Fields, Finish, Mode
from .common import (
    NO_NORM,
    advise_access,
    field_dtype,
    load_static,
    output_spec,
    resolve_dtypes,
    resolve_normalization,
    split_normalize,
)

_DEFAULT_BUCKET_POOL = 256  # batches per sorted pool: <2% padding on lognormal(sigma=1) lengths
_DEFAULT_BEST_FIT_POOL = 256  # rows' worth of steps per best-fit pool: see README (padding)


class SequenceMode(Mode):
    """Batches of whole sequences: padded (with mask and lengths), length-bucketed, or packed."""

    name = "sequences"
    options: ClassVar[Dict[str, Any]] = {
        "targets": None,
        "dtype": None,
        "normalize": None,
        "max_len": None,
        "pad_multiple": 1,
        "padding_side": "right",
        "truncation_side": "right",
        "pad_value": 0,
        "bucket": False,
        "bucket_pool": None,
        "pack": False,
        "batch_tokens": None,
        "static": None,
        "with_index": False,
    }
    foreign_options_why = "to windows; with window=None each sample is a whole sequence"
    host_fields = frozenset({"lengths"})  # pack_padded_sequence wants lengths on the CPU
    public_names = (
        "window",
        "horizon",
        "max_len",
        "pad_multiple",
        "padding_side",
        "truncation_side",
        "pad_value",
        "bucket",
        "bucket_pool",
        "pack",
        "batch_tokens",
        "with_index",
        "num_samples",
        "skipped_samples",
    )
    window = None  # what a Feeder of whole sequences reports as its window: none, each sample is a sequence
    horizon = 0

    def __init__(
        self,
        series: SeriesSet,
        spec: FeedSpec,
        *,
        targets: Any,
        dtype: Any,
        normalize: Any,
        max_len: Any,
        pad_multiple: Any,
        padding_side: Any,
        truncation_side: Any,
        pad_value: Any,
        bucket: Any,
        bucket_pool: Any,
        pack: Any,
        batch_tokens: Any,
        static: Any,
        with_index: Any,
    ) -> None:
        super().__init__(series, spec)
        self.max_len = check_optional_int("max_len", max_len, 1)
        self.pad_multiple = check_int("pad_multiple", pad_multiple, 1)
        self.padding_side = check_choice("padding_side", padding_side, ("right", "left"))
        self.truncation_side = check_choice("truncation_side", truncation_side, ("right", "left"))
        self.bucket = check_bool("bucket", bucket)
        self.pack: Union[bool, str] = _check_pack(pack)
        self.best_fit = self.pack == "best_fit"
        self.batch_tokens = check_optional_int("batch_tokens", batch_tokens, 1)
        default_pool = _DEFAULT_BEST_FIT_POOL if self.best_fit else _DEFAULT_BUCKET_POOL
        self.bucket_pool = default_pool if bucket_pool is None else check_int("bucket_pool", bucket_pool, 1)
        self._check_combination(bucket_pool)
        self.labels, self.step_targets = _load_targets(series, targets)
        self.with_index = check_bool("with_index", with_index)
        self.static = load_static(series, static)
        if self.pack and (self.static is not None or self.with_index):
            raise ValueError(
                f"static and with_index describe one sequence per row, and pack={self.pack!r} puts several sequences "
                "in a row (segment_ids tells them apart); use padding (pack=False) for these fields"
            )
        if self.pack and self.labels is not None:
            raise ValueError(
                f"pack={self.pack!r} cannot carry one label per sequence (a row holds several sequences); "
                "pass step-aligned targets (a list) or use padding"
            )
        x_norm = split_normalize(normalize, ("x",)).get("x")
        transform = None if x_norm is None else "normalize"
        self.x_dtype, self.y_dtype = resolve_dtypes(series, dtype, transform, self.target_set(), spec.output)
        self.pad_value = self._resolve_pad_value(pad_value)
        # Step targets are never normalised.
        self.norms = (
            resolve_normalization(series, x_norm, spec.check_finite, by_field=isinstance(normalize, dict)),
            NO_NORM,
        )
        self.static_dtype: Optional[str] = None
        self.static_feat: Tuple[int, ...] = ()
        if self.static is not None:
            self.static_dtype = field_dtype("static", self.static.dtype, dtype, False, spec.output)
            self.static_feat = self.static.feat
        if x_norm is not None:
            self.normalized["x"] = (self.norms[0], series.feat)
        advise_access(spec.shuffle, series, self.step_targets)
        keep = self._finite_sequences() if spec.check_finite == "skip" else None
        self._keep = keep
        self.data = Sequences(
            list(series.items),
            list(self.step_targets.items) if self.step_targets is not None else [],
            self.labels.items[0] if self.labels is not None else None,
            [] if keep is None else keep.tolist(),
            static=None if self.static is None else self.static.items[0],
        )
        if keep is not None:
            self.skipped_samples = series.count - len(keep)
            if len(keep) == 0:
                raise ValueError(f"check_finite='skip' dropped every sequence: all {series.count} hold a NaN or Inf")
        self.num_samples = self.data.count
        if self.pack and self.data.total_steps == 0:
            raise ValueError(
                f"the configuration yields no sample: every sequence is empty, so pack={self.pack!r} has no row"
            )
        self.unit_name = "packed rows" if self.pack else "sequences"
        # Bucketed and token-budget batches are cut within each pass: a pass without a batch has
        # nothing to stream.
        self.streams_short_passes = not self.bucket and self.batch_tokens is None
        # Every kind of batch takes over another world_size's or batch_size's stream (an elastic
        # resume). Plain padded sequences and back-to-back packed rows: each pass's sequences (or
        # the rows its order packs into, whatever batch_size and world_size are) are dealt to the
        # ranks as windows are; best-fit rows too (pools of the pass's order). Token budgets cut
        # each pass into batches by batch_tokens alone, which the ranks share by position.
        # Bucketed batches of batch_size are cut from each rank's own share, so what was read is
        # no prefix of the pass: the state names the configurations that read it (reads), and the
        # new one buckets what they left.
        self.elastic = True
        x_feat, y_feat = self._feats()
        self._pack_spec = PackSpec(
            bucket=self.bucket,
            bucket_pool=self.bucket_pool,
            pack=bool(self.pack),
            best_fit=self.best_fit,
            batch_tokens=self.batch_tokens or 0,
        )
        self._pad_spec = PadSpec(
            max_len=self.max_len or 0,
            pad_multiple=self.pad_multiple,
            pad_left=self.padding_side == "left",
            truncate_left=self.truncation_side == "left",
            pad_value=self.pad_value,
        )
        # Token budgets and best-fit rows cut each pass into its own number of batches: the core
        # counts them a pass at a time, for len() and for virtual epochs.
        self._token_floor = 0 if self.batch_tokens is None else self._check_batch_tokens()
        self._passes: Optional[Any] = None
        if self.batch_tokens is not None or self.best_fit:
            self._passes = PassSizes(self.data, self.order, self._pack_spec, self._pad_spec)
        self._output_spec = output_spec(
            self.x_dtype,
            self.y_dtype,
            *self.norms,
            x_feat,
            y_feat,
            spec.check_finite,
            with_index=self.with_index,
            static=None if self.static_dtype is None else (self.static_dtype, self.static_feat),
        )
        if series.mixture is not None:
            if self.pack or self.bucket:
                raise ValueError(
                    "a mixture of whole sequences is fed in padded batches: pack and bucket would reorder its "
                    "stream, which keeps every component within one sample of its share"
                )
            self.attach_mixture()
        if spec.device_cache:
            self.attach_cache(spec.device)

    def attach_cache(self, device: Any) -> None:
        """Keeps the whole source on `device` and builds batches there (tests use a CPU device)."""
        from ..device.cache import SequenceCache, check_cacheable

        beside = [
            name
            for name, on in (
                ("static=", self.static is not None),
                ("with_index=True", self.with_index),
                ("check_finite='mask'", self.spec.check_finite == "mask"),
            )
            if on
        ]
        if beside:
            raise ValueError(
                "device_cache=True builds batches of whole sequences on the GPU from x and its targets; "
                f"{', '.join(beside)} need device_cache=False (batches are then assembled on the CPU and uploaded)"
            )
        steps, labels = self.step_targets, self.labels
        check_cacheable(
            [
                ("source", self.series.dtype),
                ("targets", steps.dtype if steps is not None else None),
                ("labels", labels.dtype if labels is not None else None),
                ("output", self.x_dtype),
                ("target output", self.y_dtype),
            ]
        )
        x_feat, y_feat = self._feats()
        self.cache = SequenceCache(
            list(self.series.items),
            None if steps is None else list(steps.items),
            self.series.lengths,
            x_feat,
            y_feat,
            device,
            self.x_dtype,
            self.y_dtype,
            self.norms[0],
            self.pad_value,
            bool(self.pack),
            self.max_len or 0,
            self.pad_multiple,
        )

    @classmethod
    def check_source(cls, series: SeriesSet) -> None:
        if series.single:
            raise ValueError(
                "window is required for a single series (window=None means whole sequences of a list "
                "of sequences or a dataset directory)"
            )

    # ----- checks ------------------------------------------------------------------------

    def _check_combination(self, bucket_pool: Any) -> None:
        pack = f"pack={self.pack!r}"
        if self.pack and self.max_len is None:
            raise ValueError(f"{pack} needs max_len (the length of a packed row)")
        if self.pack and self.bucket:
            raise ValueError(f"{pack} and bucket=True are alternatives: packing leaves no padding to bucket away")
        if self.batch_tokens is not None:
            if self.spec.batch_size_given:
                raise ValueError(
                    f"batch_tokens={self.batch_tokens} and batch_size={self.spec.batch_size} are alternatives: "
                    "batch_tokens sizes each batch by its padded steps (rows * padded length <= batch_tokens), "
                    "batch_size by its rows; leave batch_size out"
                )
            if self.pack:
                rows = self.batch_tokens // cast(int, self.max_len)
                fix = (
                    f"pass batch_size={rows} instead"
                    if rows >= 1
                    else f"and batch_tokens is smaller than one row (max_len={self.max_len})"
                )
                raise ValueError(
                    f"batch_tokens={self.batch_tokens} does not apply with {pack}: packed rows are all "
                    f"max_len={self.max_len} steps long, so a budget of {self.batch_tokens} steps is "
                    f"batch_tokens // max_len rows: {fix}"
                )
        if self.pack:  # options of padding whole sequences that packed rows have no use for
            unused = [
                f"{name}={value!r}"
                for name, value, default in (
                    ("pad_multiple", self.pad_multiple, 1),
                    ("padding_side", self.padding_side, "right"),
                    ("truncation_side", self.truncation_side, "right"),
                )
                if value != default
            ]
            if unused:
                how = (
                    "whole into rows of max_len={}, a longer one cut into pieces of max_len"
                    if self.best_fit
                    else "rows of max_len={} back to back, a long one continuing in the next row"
                ).format(self.max_len)
                raise ValueError(
                    f"{', '.join(unused)} do{'es' if len(unused) == 1 else ''} not apply with {pack}: "
                    f"sequences fill {how}"
                )
        if bucket_pool is not None and not (self.bucket or self.best_fit):
            raise ValueError(f"bucket_pool={bucket_pool!r} applies with bucket=True or pack='best_fit' only")

    def _check_batch_tokens(self) -> int:
        """Refuses a budget that cannot hold some sequence (padded as a batch of it alone would
        be), or that could leave a rank without a batch. Returns the fewest batches a pass can be
        cut into: every batch holds at most batch_tokens padded steps, so at least
        ceil(sum of each sequence's padded length / batch_tokens), one fewer with drop_last."""
        n, spec = cast(int, self.batch_tokens), self.spec
        if getattr(self.series, "mixture", None) is not None:
            raise ValueError(f"batch_tokens={n} does not apply to a mixture: it is fed in batches of batch_size")
        if self.max_len is not None and self.max_len > n:
            raise ValueError(
                f"batch_tokens={n} is smaller than max_len={self.max_len}: every batch is padded to max_len, "
                f"so not even one sequence fits; pass batch_tokens >= {self.max_len}"
            )
        lengths = np.asarray(self.data.lengths, np.int64)
        kept = np.minimum(lengths, self.max_len) if self.max_len is not None else lengths
        if self.max_len is not None:
            padded = np.full_like(kept, self.max_len)
        else:
            padded = np.maximum(1, -(-kept // self.pad_multiple) * self.pad_multiple)
        i = int(np.argmax(kept))  # the longest (the first of them): none is padded to more
        if padded[i] > n:
            number = i if self._keep is None else int(self._keep[i])
            if kept[i] <= n:
                raise ValueError(
                    f"batch_tokens={n} cannot hold sequence {number}: its {kept[i]} steps are padded to "
                    f"{padded[i]} by pad_multiple={self.pad_multiple}; pass batch_tokens >= {padded[i]}"
                )
            raise ValueError(
                f"batch_tokens={n} is smaller than sequence {number}, the longest, of {kept[i]} steps: a "
                f"batch holds at least one whole sequence; pass batch_tokens >= {padded[i]}, or max_len <= {n} "
                "to cut long sequences"
            )
        total = int(padded.sum())
        fewest = -(-total // n) - (1 if spec.drop_last else 0)
        if fewest // spec.world_size < 1:
            dropped = ", the last dropped by drop_last" if spec.drop_last else ""
            cut = f"{total} padded steps, at most {n} a batch{dropped}"
            if spec.world_size > 1:
                raise ValueError(
                    f"batch_tokens={n} may cut a pass into as few as {fewest} batches ({cut}): too few for "
                    f"world_size={spec.world_size} ranks, which all get the same number of batches; "
                    "lower batch_tokens"
                )
            raise ValueError(
                f"drop_last=True with batch_tokens={n} may leave no batch: a pass may be one batch ({cut})"
            )
        return fewest // spec.world_size

    def _finite_sequences(self) -> np.ndarray:
        """The numbers of the sequences without a NaN or Inf in inputs, step targets, label or
        static row."""
        threads = self.spec.num_threads
        n = self.series.count
        ok = np.array([len(b) == 0 for b in non_finite_steps(list(self.series.items), threads)])
        if self.step_targets is not None:
            ok &= np.array([len(b) == 0 for b in non_finite_steps(list(self.step_targets.items), threads)])
        for rows in (self.labels, self.static):
            if rows is not None:
                (bad_rows,) = non_finite_steps(list(rows.items), threads)
                ok[bad_rows] = False
        return np.flatnonzero(ok[:n]).astype(np.int64)

    def _resolve_pad_value(self, pad_value: Any) -> float:
        if isinstance(pad_value, (bool, np.bool_)):
            return float(pad_value)
        if not isinstance(pad_value, (int, float, np.integer, np.floating)):
            raise ValueError(f"pad_value must be a number, got {pad_value!r}")
        for name in {self.x_dtype, self.y_dtype if self.step_targets is not None else self.x_dtype}:
            if name in FLOATING:
                continue
            if not math.isfinite(pad_value):
                raise ValueError(
                    f"pad_value={pad_value!r} does not fit the output dtype {name}: it holds no NaN or Inf"
                )
            if name == "bool":
                if pad_value not in (0, 1):
                    raise ValueError(f"pad_value={pad_value!r} is not a bool (0 or 1), the output dtype")
                continue
            info = np.iinfo(name)
            if float(pad_value) != int(pad_value) or not info.min <= int(pad_value) <= info.max:
                raise ValueError(
                    f"pad_value={pad_value!r} does not fit the output dtype {name} (integers {info.min}..{info.max})"
                )
        return float(pad_value)

    def target_set(self) -> Optional[SeriesSet]:
        return self.step_targets if self.step_targets is not None else self.labels

    def _feats(self) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        targets = self.target_set()
        return self.series.feat, (targets.feat if targets is not None else ())

    # ----- sizes -------------------------------------------------------------------------

    def units(self) -> int:
        """Sequences, or rows: with best-fit packing the fewest a pass can fill (ceil(steps / max_len))."""
        return int(self.data.units(bool(self.pack), self.max_len or 0))

    def sizes(self) -> Any:
        """With batch_tokens, a pass's batches depend on its order: per_rank and batches_per_pass
        are the fewest any pass gives this rank (at least one), batches_per_epoch pass 0's (or
        steps_per_epoch); batches_in_epoch() gives each epoch's."""
        if self.batch_tokens is None:
            return super().sizes()
        steps = self.spec.steps_per_epoch
        first = steps if steps is not None else int(cast(Any, self._passes).batches(0))
        return SimpleNamespace(per_rank=self._token_floor, batches_per_pass=self._token_floor, batches_per_epoch=first)

    def pass_units(self, pass_: int) -> int:
        """With batch_tokens, the batches the pass is cut into (over all ranks); best-fit, its rows."""
        if self._passes is None:
            return self.units()
        return int(PassSizes(self.data, self.order, self._pack_spec, self._pad_spec).units(pass_))

    def set_resume(self, step: int, pass_: int, offset: int, reads: Sequence[Tuple[int, int, int]] = ()) -> None:
        super().set_resume(step, pass_, offset, reads)
        if self._passes is not None:  # the counts of passes follow the resume point
            self._passes = PassSizes(self.data, self.order, self._pack_spec, self._pad_spec)

    def check_reads(self, pass_: int, offset: int, reads: List[Tuple[int, int, int]]) -> None:
        if not self.bucket or self.batch_tokens is not None:
            super().check_reads(pass_, offset, reads)
            return
        units = self.units()
        for i, (world_size, batch_size, _) in enumerate(reads):  # a real one had a batch for every rank
            if max(world_size, batch_size) > units:
                raise ValueError(
                    f"reads[{i}] names world_size={world_size} and batch_size={batch_size}, "
                    f"for a pass of {units} sequences"
                )
        read = int(sequences_read(self.data, self.order, pass_, reads))
        if read != offset:
            raise ValueError(f"the reads {reads} read {read} sequences of pass {pass_}, the offset says {offset}")

    def stream_state(self, epoch: int, batch: int) -> Optional[Dict[str, Any]]:
        """With batch_tokens the units are the pass's batches, best-fit its rows: those all ranks
        have read (passes differ in how many they hold). Bucketed batches of batch_size: the
        sequences read, and which configurations read them (reads)."""
        if self.bucket and self.batch_tokens is None:
            return self._bucket_stream_state(epoch, batch)
        if self._passes is None:
            return super().stream_state(epoch, batch)
        o, W, passes = self.order, self.spec.world_size, cast(Any, self._passes)
        origin = self.origin()
        steps = self.spec.steps_per_epoch
        per_batch = 1 if self.batch_tokens is not None else self.spec.batch_size  # units a batch
        if steps is None:  # an epoch is its pass
            pass_, index = epoch, batch * per_batch
        else:
            t = (epoch * steps + batch - (o.resume_step if origin is not None else 0)) * per_batch
            pass_, index = (int(v) for v in passes.locate(t, self.best_fit))
        offset = o.offset_in(pass_)
        return {"pass": pass_, "offset": min(self.pass_units(pass_), offset + index * W), "origin": origin}

    def _bucket_stream_state(self, epoch: int, batch: int) -> Dict[str, Any]:
        """Each rank has read `k` of its bucketed batches of the pass (of what the configurations
        before it left, when this Feeder took over inside the pass): the state names them all."""
        o = self.order
        pass_, k = (int(v) for v in locate_batch(o, epoch, batch, self.units()))
        reads = list(o.resume_reads) if o.resumes_in(pass_) else []
        if k > 0:
            reads.append((self.spec.world_size, self.spec.batch_size, k))
        offset = int(sequences_read(self.data, o, pass_, reads)) if reads else 0
        return {"pass": pass_, "offset": offset, "origin": self.origin(), "reads": [list(r) for r in reads]}

    def batches_in_epoch(self, epoch: int) -> Optional[int]:
        """Per epoch with batch_tokens or best-fit rows; an epoch resumed from a state saved with
        another world_size or batch_size (without virtual epochs) has the batches its pass has left."""
        if self.spec.steps_per_epoch is not None:
            return None
        if self._passes is not None:
            return int(self._passes.batches(epoch))
        return super().batches_in_epoch(epoch)

    def block_bytes(self) -> int:
        """A typical padded batch: batch_size sequences of the mean (or max_len) length, or
        batch_tokens steps."""
        lengths = self.data.lengths
        steps = self.max_len or max(1, int(lengths.mean()) if len(lengths) else 1)
        row = math.prod(self.series.feat) * numpy_storage(self.x_dtype).itemsize
        if self.batch_tokens is not None:
            return self.batch_tokens * max(1, row)
        return self.spec.batch_size * steps * max(1, row)

    def largest_batch(self) -> Tuple[int, str]:
        """Padded to max_len, or to the longest sequence rounded up to pad_multiple; each step
        takes its inputs, step targets, mask and (packed) segment and position ids."""
        B, longest = self.spec.batch_size, int(self.data.lengths.max()) if self.data.count else 0
        if self.batch_tokens is not None:  # rows * length <= batch_tokens, rows <= batch_tokens
            B, steps, sized_by = self.batch_tokens, 1, f"batch_tokens={self.batch_tokens}"
        elif self.max_len is not None:
            steps, sized_by = self.max_len, f"batch_size={B} with max_len={self.max_len}"
        else:
            steps = -(-max(1, longest) // self.pad_multiple) * self.pad_multiple
            sized_by = f"batch_size={B} with pad_multiple={self.pad_multiple} (sequences of up to {longest} steps)"
        step = math.prod(self.series.feat) * numpy_storage(self.x_dtype).itemsize + 1  # + the mask
        if self.step_targets is not None:
            step += math.prod(self.step_targets.feat) * numpy_storage(self.y_dtype).itemsize
        if self.pack:
            step += 4 + 8  # segment_ids int32, position_ids int64
        return B * steps * step, sized_by

    # ----- feeding -----------------------------------------------------------------------

    def open_pipeline(self, run: Any) -> Any:
        return Pipeline.sequences(
            self.data,
            order=self.order,
            pack=self._pack_spec,
            pad=self._pad_spec,
            output=self._output_spec,
            run=run,
            mix=self.mix_order,
            passes=self._passes,
        )

    def files_changed(self) -> str:
        return str(self.data.files_changed())

    def batches(self, fields: Fields, failed: bool, finish: Finish) -> List[List[Batch]]:
        """A block is one batch; a failed one has none before the failure."""
        if failed:
            return []
        if self.cache is not None:  # the block says where each row's pieces come from
            fields = self.cache.batch(fields)
        return [[Batch.of_fields(finish(fields))]]

    def padding(self, fields: Fields) -> Optional[Tuple[int, int]]:
        real = int(fields["lengths"].sum())
        rows, length = fields["mask"].shape  # (a tensor when built on the device)
        return real, rows * length - real

    # ----- resuming ----------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        return {
            "max_len": self.max_len,
            "pad_multiple": self.pad_multiple,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "pad_value": self.pad_value,
            "bucket": self.bucket,
            "bucket_pool": self.bucket_pool,
            "pack": self.pack,
            # Added later: recorded only when on, so that states saved before them still load.
            **({"batch_tokens": self.batch_tokens} if self.batch_tokens is not None else {}),
            **({"static": [self.static_dtype, list(self.static.feat)]} if self.static is not None else {}),
            # Virtual epochs of padded sequences (or packed rows) on several ranks give
            # every rank an equal share of each pass (releases before gave the leftovers to the first ranks).
            **({"stream_shares": "equal"} if self._equal_stream_shares() else {}),
        }

    def _equal_stream_shares(self) -> bool:
        return (  # (token-budget batches were always dealt in equal shares; bucketed ones stay as cut)
            self.elastic
            and not self.bucket
            and self.batch_tokens is None
            and self.spec.steps_per_epoch is not None
            and self.spec.world_size > 1
            and self.series.mixture is None
        )

    def side_sets(self) -> Tuple[SeriesSet, ...]:
        return () if self.static is None else (self.static,)

    def component_units(self) -> List[Tuple[int, int]]:
        parts = self.series.mixture
        assert parts is not None
        bounds = np.cumsum([0, *parts.series_counts])
        fed = bounds if self._keep is None else np.searchsorted(self._keep, bounds)  # sequences kept before each
        return [(int(fed[i]), int(fed[i + 1] - fed[i])) for i in range(len(parts.series_counts))]

    def field_dtypes(self) -> Dict[str, str]:
        dtypes = super().field_dtypes()
        if self.static_dtype is not None:
            dtypes["static"] = self.static_dtype
        return dtypes

    def describe(self) -> str:
        tokens = f", batch_tokens={self.batch_tokens}" if self.batch_tokens is not None else ""
        return f"sequences, max_len={self.max_len}, bucket={self.bucket}, pack={self.pack!r}{tokens}"


def _check_pack(pack: Any) -> Union[bool, str]:
    if isinstance(pack, str):
        if pack == "best_fit":
            return pack
        raise ValueError(
            f"pack must be True (rows filled back to back, a sequence continuing in the next row), "
            f"'best_fit' (a sequence of at most max_len steps never cut) or False, got {pack!r}"
        )
    return check_bool("pack", pack)


def _dataset_labels(labels: Union[NpyFile, np.ndarray, None]) -> Optional[SeriesSet]:
    """A dataset's labels as one series of a row per sequence. The core has them mapped (an
    NpyFile), so its reads are guarded and its file watch knows the file: a labels file that
    shrinks mid-epoch is a FeedError naming it, not a SIGBUS."""
    if labels is None:
        return None
    if isinstance(labels, np.ndarray):  # labels of no bytes: nothing to map
        return load_source(labels, "the dataset's labels")
    shape = tuple(int(d) for d in labels.shape)
    return SeriesSet([labels], [shape[0]], shape[1:], labels.dtype, single=True)


def _load_targets(series: SeriesSet, targets: Any) -> Tuple[Optional[SeriesSet], Optional[SeriesSet]]:
    """(labels, step targets): an array with one row per sequence, or a list aligned step for step."""
    if targets is None:  # a dataset directory's own targets, if it has some
        return _dataset_labels(series.labels), series.targets
    n = series.count
    if (
        isinstance(targets, (list, tuple))
        and targets
        and all(isinstance(t, (int, float, bool, np.generic)) for t in targets)
    ):
        targets = np.asarray(targets)  # a plain list of numbers: one label per sequence
    if isinstance(targets, (list, tuple)):
        t = load_source(targets, "targets")
        if t.count != n:
            raise ValueError(
                f"targets must hold one sequence per source sequence: the source has {n}, targets have {t.count}"
            )
        for i, (a, b) in enumerate(zip(series.lengths, t.lengths)):
            if a != b:
                raise ValueError(
                    f"targets[{i}] has {b} steps but sequence {i} has {a}; step targets must be aligned step for step"
                )
        return None, t
    label_set = load_source(targets, "targets")
    if label_set.lengths[0] != n:
        raise ValueError(
            f"targets (labels) must have one row per sequence: the source has {n} sequences, "
            f"targets have {label_set.lengths[0]} rows (pass a list for step-aligned targets)"
        )
    return label_set, None
