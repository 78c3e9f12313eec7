"""`Feeder`: batches of windows or whole sequences, assembled ahead by the native core."""

from __future__ import annotations

import dataclasses
import logging
import weakref
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from .arguments import INT32_MAX, INT64_MAX, check_int
from .batch import Batch
from .errors import FeedError
from .io.sources import Source, load_source
from .memory import check_batch_memory, check_prefetch_memory, prefetch_that_fits
from .modes import Mode, make_mode
from .run.counting import BlockCounter
from .run.epoch import EpochRun
from .run.handout import EpochIterator
from .run.position import Position
from .run.process import refuse_data_loader_workers
from .run.state import make_state, read_state
from .run.stats import FeedStats, StatsRecorder
from .run.tuning import TuneLimits, TuningLog
from .spec import FeedSpec, resolve_spec

logger = logging.getLogger("fastfeed")

# Automatic prefetch may build at least this many bytes of blocks ahead (see Feeder._prefetch_budget).
_PREFETCH_BYTES = 32 << 20


def check_stream_range(spec: FeedSpec, epoch: int, batch: int) -> None:
    """Refuses an epoch whose samples' positions in the stream would not fit the core's 64-bit
    counts (virtual epochs count positions from the first epoch on, over all ranks)."""
    steps = spec.steps_per_epoch or 1
    if ((epoch + 1) * steps + batch + 1) * spec.batch_size * spec.world_size > INT64_MAX:
        raise ValueError(
            f"epoch={epoch} with steps_per_epoch={spec.steps_per_epoch}, batch_size={spec.batch_size} and "
            f"world_size={spec.world_size} puts samples past position 2**63 - 1 of the stream; use smaller numbers"
        )


class Feeder:
    """Batches of sliding windows over series, or of whole sequences, in order or shuffled.

    ``Feeder(source, window=w, horizon=h, batch_size=b)`` yields [`Batch`][fastfeed.Batch]
    objects whose ``x`` has shape ``(b, w, *feat)`` and ``y`` shape ``(b, h, *feat)``. With
    ``window=None`` on a list of sequences (or a dataset directory) each sample is one whole
    sequence, padded to the longest in its batch (or to ``max_len``) with ``batch.mask`` and
    ``batch.lengths``, or packed into rows with ``pack=True``. Batches are assembled ahead by
    native threads, without the GIL, and handed out in order.

    Args:
        source: the data. A NumPy array ``(T, *feat)`` (used in place), a path to a ``.npy``
            file (memory-mapped), a list or tuple of either (many series or sequences of one
            dtype and feature shape), or a path to a dataset directory (see
            [`write_dataset`][fastfeed.write_dataset]). Also an ``.arrow`` file, a
            ``pyarrow.Table`` or a Hugging Face ``datasets.Dataset`` (see ``column``), or the
            prefix ``P`` of a Megatron-LM indexed dataset (``P.bin`` + ``P.idx``): memory-mapped,
            one sequence per item.
        window: steps per sample. ``None`` makes each whole sequence of a list a sample.
        horizon: target steps after each window (windows only). Default 0 without
            ``targets`` (no targets), 1 with them.
        target_shift: instead of ``horizon``: the targets are the window itself shifted by this
            many steps, ``(B, window, *feat)`` (``target_shift=1`` over tokens gives a language
            model's next-token pairs).
        targets: targets aligned step for step with the source (an array, or a list for a list
            source). With whole sequences also an array of one row per sequence (labels).
            Without them, window targets are the source's own next steps.
        covariates: windows: observed features aligned step for step with the source (an array,
            or a list for a list source); ``batch.covariates`` holds each window's own steps,
            ``(B, window, *cfeat)``.
        known: windows: features known ahead (calendar, plans), aligned like ``covariates``;
            ``batch.known`` holds the window's steps and every step up to its last target,
            ``(B, window + horizon, *kfeat)`` (``window + target_shift`` with a shift).
        static: one row of features per series (an array ``(num_series, *sfeat)``);
            ``batch.static`` is each sample's row, ``(B, *sfeat)``.
        with_index: add ``batch.series`` and ``batch.start`` (int64 ``(B,)``): which series
            each sample comes from and the step its window starts at.
        sampling_rate: take every ``sampling_rate``-th step inside a window.
        stride: distance between consecutive window starts.
        start_index: first step windows may read, in every series; a negative value counts
            from each series' end, as in Python slicing.
        end_index: steps at and after this are never read (exclusive, targets included), in
            every series; negative values count from each series' end (``end_index=-24``
            keeps each series' last 24 steps out, for validation). On a list, an index past a
            series' end stands for that end.
        batch_size: samples per batch (default 1).
        shuffle: a new permutation of all samples each epoch, a pure function of
            ``(seed, epoch)``.
        seed: the shuffle's key, an integer in ``[0, 2**64)``.
        drop_last: leave out an epoch's short last batch.
        dtype: output dtype of the inputs (NumPy or torch dtype, or a name such as
            ``"bfloat16"``); floating targets follow it, integer or bool targets keep theirs.
        normalize: ``"standard"``: per-feature mean and std of the steps windows may read,
            computed in one pass, for the inputs (and targets taken from them), ``covariates``
            and ``known``, each its own; a pair ``(mean, std)`` for the inputs, broadcast to
            the feature shape; or a dict ``{"x": ..., "covariates": ..., "known": ...}`` of
            either, per field (a field left out is not normalised).
            [`normalization`][fastfeed.Feeder.normalization] of another Feeder applies its
            statistics (a validation Feeder).
        scale: windows: ``"mean"`` divides each window's inputs (and targets taken from them)
            by the mean absolute value of its steps, per feature; ``"standard"`` subtracts their
            mean (``batch.loc``) and divides by their standard deviation. ``batch.scale``
            holds the divisor (a 0 becomes 1), so predictions can be mapped back. Not together
            with normalising the inputs.
        max_len: whole sequences: pad every batch to this length, truncating longer ones;
            with ``pack=True`` the length of a packed row.
        pad_multiple: whole sequences: round each batch's length up to a multiple of this.
        padding_side: ``"right"`` or ``"left"``: where padding goes.
        truncation_side: ``"right"`` or ``"left"``: which end of a long sequence is cut.
        pad_value: the value of padded steps (must fit the output dtype).
        bucket: cut batches from length-sorted pools, then shuffle the batches: little padding.
        bucket_pool: batches per sorted pool with ``bucket=True`` (default 256; with
            ``batch_tokens``, that many budgets' worth of steps); with ``pack="best_fit"``, rows'
            worth of steps per pool (default 256).
        pack: concatenate sequences into rows of ``max_len`` steps, with ``segment_ids``,
            ``position_ids`` and ``cu_seqlens``; a long sequence continues in the next row.
            ``"best_fit"``: a sequence of at most ``max_len`` steps is never cut: the sequences
            of a pool (consecutive sequences of the pass's order, ``bucket_pool`` rows' worth of
            steps, default 256) are placed into rows by best-fit decreasing length, a longer one
            cut into pieces of ``max_len`` (full pieces fill rows of their own, the last piece
            is placed like a sequence); the rows are shuffled with ``shuffle=True``. The number
            of rows, and so ``len(feeder)``, may differ a little from epoch to epoch.
        batch_tokens: whole sequences, instead of ``batch_size``: each batch holds as many
            sequences as fit ``rows * padded_length <= batch_tokens`` (at least one), where
            ``padded_length`` is the batch's length (its longest sequence rounded up to
            ``pad_multiple``, or ``max_len``). The pass's order is cut greedily (with
            ``bucket=True`` each pool, ``bucket_pool`` budgets' worth of steps, is sorted by
            length and cut, and the batches shuffled); ``drop_last`` drops the pass's last batch
            cut; rank ``r`` takes batches ``r, r + world_size, ...``, and the fewer than
            ``world_size`` batches left over are in no rank's share. The number of batches
            depends on the epoch's order: ``len(feeder)`` is exact for the epoch running, or
            the next one (the one ``set_epoch`` set). Not with ``batch_size`` or ``pack``.
        steps_per_epoch: every epoch yields exactly this many batches, the stream of samples
            running on across passes over the data (a new pass reshuffles).
        rank: this process's rank; each rank reads a disjoint share of every epoch. Default:
            torch.distributed's rank when it is initialised, else 0.
        world_size: number of ranks. Default: torch.distributed's, else 1.
        output: ``"torch"`` (the default when torch imports) or ``"numpy"``.
        device: ``"cpu"`` or ``"cuda[:n]"``: batches are uploaded from pinned memory and ready
            on the caller's current CUDA stream.
        device_cache: keep the whole source in GPU memory and gather batches there (needs a
            CUDA device); only sample indices cross the bus.
        num_threads: native worker threads, obeyed exactly (more than four per core are
            clamped to four per core, logged at INFO). ``None`` (the default): chosen while
            feeding. The first epoch starts with one worker, each later one with what the last
            ended with; every 16 blocks handed over, the Feeder looks at how long the loop
            waited for them: a loop that waited more than 2% of its time gets one more worker,
            one that never waited while finished blocks filled the prefetch ring loses one
            (never the last). At most ``cores - 1`` workers build while the loop computes, so
            that its own thread keeps a core (one worker on 2 cores, 15 on a 16-core GPU
            machine); only a loop that waits more than a tenth of its time (two windows in a row)
            lends its core to one more (``cores``), which shortens its steps by more than
            sharing the core costs.
            Cores are those this process may use (``os.sched_getaffinity``). With
            ``device_cache`` the workers only draw sample indices: at most half the cores, up
            to 8.
        prefetch: blocks of batches assembled ahead, obeyed exactly. ``None`` (the default):
            chosen while feeding: two blocks per worker to start with and as workers are added,
            one block more when the loop waited although the ring was often full (a burst); it
            never shrinks. Its memory budget: two blocks per worker the Feeder may start, or
            ~32 MB of batches (up to 8 blocks) if that is more, and never beyond the budget below.

            Batches and their order never depend on either: blocks are handed over in order.
            ``stats()`` (``threads``, ``prefetch``, ``tuning``), ``repr()`` and the epoch's
            INFO log line show what was chosen.
        check_finite: ``False``; ``"raise"`` (or True): a NaN or Inf raises ``FeedError``
            naming series and step; ``"skip"``: the samples touching one are left out;
            ``"mask"`` (windows): each NaN or Inf is written as 0 and ``batch.observed`` /
            ``batch.y_observed`` (bool, the shapes of ``x`` and ``y``) are True where values
            were finite. Normalisation statistics never use a NaN or Inf: with ``False`` or
            ``"raise"`` one among the steps they are computed over is a ``ValueError``.
        progress: show a tqdm progress bar with throughput.
        column: the column to read of a source with columns: an ``.arrow`` file (Arrow IPC file
            or stream), a ``pyarrow.Table`` or ``RecordBatch``, or a ``datasets.Dataset``. A
            column of lists (of numbers, or of fixed-size lists of numbers: the feature shape)
            gives one sequence per row, read in place from Arrow's buffers; a column of numbers
            gives one series. May be left out when the source has one column; refused for
            sources without columns.

    Memory: a Feeder may hold at most half of the machine's memory (or of its cgroup's limit) in
    batches. A batch larger than that (``batch_size`` with ``window``, ``max_len`` or
    ``pad_multiple``), or ``prefetch`` blocks larger than that, are refused when the Feeder is
    made, before anything is allocated.

    Raises:
        ValueError: an argument is out of range or of the wrong type, the batches would not fit
            the memory budget, or the configuration yields no batch; the message names the
            argument and the numbers involved.
        fastfeed.FormatError: a file cannot be read; the message names it.
    """

    def __init__(
        self,
        source: Source,
        *,
        window: Optional[int] = None,
        horizon: Optional[int] = None,
        target_shift: Optional[int] = None,
        targets: Optional[Source] = None,
        covariates: Optional[Source] = None,
        known: Optional[Source] = None,
        static: Any = None,
        with_index: bool = False,
        sampling_rate: int = 1,
        stride: int = 1,
        start_index: int = 0,
        end_index: Optional[int] = None,
        batch_size: Optional[int] = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        dtype: Any = None,
        normalize: Union[str, Tuple[Any, Any], Dict[str, Any], None] = None,
        scale: Optional[str] = None,
        max_len: Optional[int] = None,
        pad_multiple: int = 1,
        padding_side: str = "right",
        truncation_side: str = "right",
        pad_value: Union[int, float, bool] = 0,
        bucket: bool = False,
        bucket_pool: Optional[int] = None,
        pack: Union[bool, str] = False,
        batch_tokens: Optional[int] = None,
        steps_per_epoch: Optional[int] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        output: Optional[str] = None,
        device: str = "cpu",
        device_cache: bool = False,
        num_threads: Optional[int] = None,
        prefetch: Optional[int] = None,
        check_finite: Union[bool, str] = False,
        progress: bool = False,
        column: Optional[str] = None,
    ) -> None:
        self._closed = False
        self._pipelines: weakref.WeakSet[Any] = weakref.WeakSet()
        self._source = source
        self._column = column
        series = load_source(source, "source", column=column)
        self.spec: FeedSpec = resolve_spec(
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            steps_per_epoch=steps_per_epoch,
            rank=rank,
            world_size=world_size,
            output=output,
            check_finite=check_finite,
            device=device,
            device_cache=device_cache,
            num_threads=num_threads,
            progress=progress,
        )
        self._mode_options = dict(  # the sample mode's own options, checked by the mode that takes them
            window=window,
            horizon=horizon,
            target_shift=target_shift,
            targets=targets,
            covariates=covariates,
            known=known,
            static=static,
            with_index=with_index,
            sampling_rate=sampling_rate,
            stride=stride,
            start_index=start_index,
            end_index=end_index,
            dtype=dtype,
            normalize=normalize,
            scale=scale,
            max_len=max_len,
            pad_multiple=pad_multiple,
            padding_side=padding_side,
            truncation_side=truncation_side,
            pad_value=pad_value,
            bucket=bucket,
            bucket_pool=bucket_pool,
            pack=pack,
            batch_tokens=batch_tokens,
        )
        self._mode = self._make_mode(series)
        check_batch_memory(*self._mode.largest_batch())
        self._tuning = TuningLog(self._tune_limits(prefetch))
        self._position = Position()
        self._recorder = StatsRecorder()
        self._counter = BlockCounter(self._recorder, self.spec.batch_size)
        self._fingerprint_cache: Optional[Dict[str, Any]] = None

    def _make_mode(self, series: Any) -> Mode:
        """The sample mode over `series`, with the checks every mode shares: each rank has a
        share, and an epoch has a batch."""
        mode = make_mode(series, self.spec, self._mode_options)
        sizes, spec = mode.sizes(), self.spec
        if sizes.per_rank == 0 and mode.mix_order is None:  # a mixture streams its components on
            raise ValueError(
                f"world_size={spec.world_size} leaves rank {spec.rank} nothing: a pass has only {mode.units()} "
                f"{mode.unit_name}, and ranks read disjoint shares with the same number of batches"
            )
        streamed = spec.steps_per_epoch is not None and mode.streams_short_passes
        if not streamed and sizes.batches_per_pass == 0:
            raise ValueError(
                f"drop_last=True with batch_size={spec.batch_size} leaves no batch: there are only "
                f"{sizes.per_rank} {mode.unit_name}{' for this rank' if spec.world_size > 1 else ''}"
            )
        self._batches_per_epoch = int(sizes.batches_per_epoch)
        return mode

    def _tune_limits(self, prefetch: Optional[int]) -> TuneLimits:
        """What the pipelines' tuner may change: the workers unless num_threads was given, the
        prefetch depth unless prefetch was given (checked against the memory budget)."""
        spec, block = self.spec, self._mode.block_bytes()
        if prefetch is None:
            most = prefetch_that_fits(self._prefetch_budget(), block)
        else:
            most = check_int("prefetch", prefetch, 1, INT32_MAX)
            check_prefetch_memory(most, block)
        threads = 1 if spec.auto_threads else spec.num_threads  # auto starts small
        return TuneLimits(
            auto_threads=spec.auto_threads,
            auto_prefetch=prefetch is None,
            max_threads=spec.num_threads,
            busy_threads=spec.busy_threads,
            max_prefetch=most,
            threads=threads,
            prefetch=min(most, 2 * threads) if prefetch is None else most,
        )

    def _prefetch_budget(self) -> int:
        """The most blocks automatic prefetch builds ahead, before the memory budget: two per
        worker the Feeder may start, and at least ~32 MB of batches (up to 8 blocks): enough
        slack that a worker delayed for a few milliseconds (a busy or shared machine) does not
        make the training loop wait, without holding more than a few large batches."""
        block = max(1, self._mode.block_bytes())
        return max(2 * self.spec.num_threads, min(8, -(-_PREFETCH_BYTES // block)))

    def __getattr__(self, name: str) -> Any:
        """The resolved options: ``feeder.batch_size``, ``feeder.window``, ``feeder.max_len``..."""
        if name in FeedSpec.__dataclass_fields__:
            return getattr(self.spec, name)
        mode = self.__dict__.get("_mode")
        if mode is not None and name in mode.public_names:
            return getattr(mode, name)
        raise AttributeError(f"'Feeder' object has no attribute {name!r}")

    @property
    def num_threads(self) -> int:
        """Worker threads claiming blocks of batches: ``num_threads`` as given, or with
        ``num_threads=None`` the tuner's latest choice (where the next epoch starts)."""
        return self._tuning.threads

    @property
    def prefetch(self) -> int:
        """Blocks of batches built ahead: ``prefetch`` as given, or with ``prefetch=None`` the
        tuner's latest choice (where the next epoch starts)."""
        return self._tuning.prefetch

    @property
    def sequences(self) -> bool:
        """True when each sample is a whole sequence (window=None)."""
        return self._mode.name == "sequences"

    @property
    def normalization(self) -> Dict[str, Tuple[Any, Any]]:
        """The statistics applied to each normalised field: ``{"x": (mean, std), ...}``, float64
        arrays of the field's feature shape (empty without ``normalize``). Pass it as another
        Feeder's ``normalize=`` to apply the same statistics, or use it to map predictions back
        (``pred * std + mean``)."""
        return self._mode.normalization()

    @property
    def epoch(self) -> int:
        """The epoch the running iteration feeds, or the next one feeds."""
        return self._position.epoch

    # ----- sizes and data ----------------------------------------------------------------

    def __len__(self) -> int:
        """Batches in an epoch (for this rank): with batch_tokens or pack="best_fit" (without
        steps_per_epoch) in the epoch running, or else the one the next iteration runs."""
        return self._batches_in(self._len_epoch())

    def _batches_in(self, epoch: Any) -> int:
        """Batches in epoch `epoch` (where they differ from epoch to epoch), else in every epoch."""
        n = self._mode.batches_in_epoch(epoch) if isinstance(epoch, int) and epoch >= 0 else None
        return self._batches_per_epoch if n is None else n

    def _len_epoch(self) -> int:
        """The epoch len() describes: the one running, or the one the next iteration runs."""
        p = self._position
        if p.running:
            return p.running_epoch
        return p.resume[0] if p.resume is not None else p.next_epoch

    def _reload_if_grown(self) -> None:
        """A dataset directory someone appended to: feed the new sequences from this epoch on."""
        info = self._mode.series.dataset
        if info is None:
            return
        from .io.dataset import committed_sequences

        if committed_sequences(info.path) == info.num_sequences:  # the header alone: no offsets read
            return
        self._mode = self._make_mode(load_source(self._source, "source", column=self._column))
        self._fingerprint_cache = None
        logger.info("fastfeed: %s grew from %d to %d sequences", info.path, info.num_sequences, self._mode.series.count)

    def _check_files(self) -> None:
        """Refuses to start an epoch on files that vanished, were replaced or shrank since they
        were mapped (the core's file watch, which also fails blocks while an epoch runs)."""
        problem = self._mode.files_changed()
        if problem:
            raise FeedError(f"the source changed under the Feeder: {problem}; make a new Feeder")

    # ----- iteration ---------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch the next iteration runs (it decides the shuffle); ``epoch`` reads it at once.

        The iteration starts at the epoch's first batch, except that the epoch of a state just
        loaded keeps that state's position: a loop that resumes and then calls
        ``set_epoch(epoch)`` for the epoch it was in, as training loops do, goes on where the
        state left off.

        Args:
            epoch: the epoch number, ``>= 0``.
        """
        self._position.set_epoch(check_int("epoch", epoch, 0))

    def __iter__(self) -> Iterator[Batch]:
        """The batches of one epoch; each new iteration starts the next epoch."""
        if self._closed:
            raise RuntimeError("this Feeder is closed")
        refuse_data_loader_workers()
        self._check_files()
        self._reload_if_grown()
        epoch, first_batch = self._position.peek()
        check_stream_range(self.spec, epoch, first_batch)
        self._mode.forget_resume_before(epoch, first_batch)
        epoch, first_batch = self._position.begin()
        self._counter.restart(0)
        run = EpochRun(self._mode, self.spec, self._recorder, self._counter, self._position, len(self), self._tuning)
        core_run = self._mode.run_spec(epoch, first_batch, self._tuning.limits.run_fields(self._tuning.start()))
        return EpochIterator.over(
            run.blocks(core_run, epoch, first_batch, closed=lambda: self._closed, opened=self._pipelines.add)
        )

    # ----- observing ---------------------------------------------------------------------

    def stats(self) -> FeedStats:
        """Counters since this Feeder was made, or since [`reset_stats`][fastfeed.Feeder.reset_stats].

        Throughput, time waited for batches, queue depth, padding: exact to the batch, also in
        the middle of an epoch; and the worker threads and prefetch depth the Feeder runs with
        (chosen while feeding, unless given), with their changes."""
        return dataclasses.replace(self._counter.snapshot(self._position), **self._tuning.stats_fields())

    def reset_stats(self) -> None:
        """Starts the counters again (an iteration under way goes on being counted from here)."""
        self._recorder.reset()
        self._counter.restart(self._position.delivered if self._position.running else 0)

    # ----- resuming ----------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """Where the stream of batches stands: a small dict of plain values (fits torch.save and JSON).

        After [`load_state_dict`][fastfeed.Feeder.load_state_dict] on a Feeder with the same
        configuration and data, in this process or another, the next batch is exactly the one that
        would have come next."""
        if self._position.between_epochs():
            # The next batch comes from a new epoch, which reads a dataset directory as it is
            # then (sequences appended since included): so does the state.
            self._reload_if_grown()
        epoch, batch = self._position.next_batch(len(self))
        # Before the point a state resumed at (set_epoch to an earlier epoch), the stream is this
        # configuration's own, as the next iteration will find.
        self._mode.forget_resume_before(epoch, batch)
        state = make_state(epoch, batch, self._fingerprint())
        mixture = self._mode.mix_state(epoch, batch)
        if mixture is not None:
            state["mix"] = mixture
        stream = self._mode.stream_state(epoch, batch)
        if stream is not None:
            state["stream"] = stream
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resumes from a [`state_dict`][fastfeed.Feeder.state_dict]: the next batch is the one that was next.

        Args:
            state: the dict ``state_dict()`` returned, from this process or another.

        A state saved with another ``world_size`` or ``batch_size`` (all ranks saving after
        the same number of batches, as a training loop does) is accepted for every kind of
        batch (with ``batch_tokens``, the budget itself must stay the same): the ranks go on
        together from the same point of the epoch's order, so that no sample of the epoch is
        repeated and none is skipped beyond the few (fewer than ``world_size``) that rank
        shares always leave out. Bucketed batches of ``batch_size`` go on with the sequences
        of the pass that the saving ranks had not read, bucketed anew. An epoch resumed so
        without virtual epochs has only the batches its pass has left. ``num_threads`` and
        ``prefetch`` may always differ; any rank's state serves every rank.

        Raises:
            ValueError: the state comes from a Feeder with another configuration or other data
                (every difference is named), or from another release.
        """
        if not isinstance(state, dict):
            raise ValueError(
                f"not a fastfeed Feeder state: expected the dict that Feeder.state_dict() returns, got {state!r:.80}"
            )
        mode = self._mode
        earlier = mode.resume_point()  # a state loaded before: the state is read without it, and kept on failure
        mode.set_resume(-1, 0, 0)
        try:
            elastic = mode.mix_order is not None or (mode.elastic and "stream" in state)
            epoch, batch, rescaled = read_state(
                state, self._fingerprint(), self._batches_in(state.get("epoch")), elastic
            )
            if mode.mix_order is not None:
                if "mix" not in state:
                    raise ValueError("this state has no mixture positions; it comes from a Feeder without a mixture")
                mode.load_mix_state(state["mix"], epoch, batch, rescaled)
            elif mode.elastic:
                epoch, batch = mode.load_stream_state(state.get("stream"), epoch, batch, rescaled)
            check_stream_range(self.spec, epoch, batch)
        except BaseException:
            mode.set_resume(*earlier)
            raise
        self._position.load(epoch, batch)

    def _fingerprint(self) -> Dict[str, Any]:
        if self._fingerprint_cache is None:
            self._fingerprint_cache = self._mode.fingerprint()
        return self._fingerprint_cache

    # ----- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Stops every running iteration's threads. Idempotent."""
        self._closed = True
        for pipe in list(self._pipelines):
            pipe.close()

    def __enter__(self) -> Feeder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"Feeder(samples={self._mode.num_samples}, {self._mode.describe()}, batch_size={s.batch_size}, "
            f"batches={len(self)}, shuffle={s.shuffle}, output={s.output!r}, {self._tuning.arguments()})"
        )
