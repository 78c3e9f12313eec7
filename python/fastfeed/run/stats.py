"""`FeedStats`: what a Feeder has done so far, and the recorder that gathers it cheaply."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

# Per-batch timings kept for the percentiles: a fixed ring, so a long run costs no memory.
_RING = 1 << 16


@dataclass(frozen=True)
class FeedStats:
    """Counters since the Feeder was made (or since ``reset_stats()``).

    ``str()`` gives them in one line. The percentiles cover the most recent 65,536 blocks of
    batches; ``elapsed``, ``wait_total``, ``wait_p50``, ``wait_p99`` and ``assembly_p50`` are
    shorter names for the ``*_s`` attributes.

    Attributes:
        batches: batches handed out.
        samples: samples in those batches.
        bytes: bytes of their outputs.
        elapsed_s: wall time spent inside iterations, in seconds.
        samples_per_s: samples per second of `elapsed_s`.
        mb_per_s: output megabytes (1e6 bytes) per second of `elapsed_s`.
        wait_total_s: time the consumer waited for batches.
        wait_p50_s: median wait for a batch.
        wait_p99_s: 99th percentile of the wait for a batch.
        assembly_p50_s: median time a worker took to assemble one batch.
        mean_queue_depth: assembled batches waiting, on average, when one was handed over.
        padding_fraction: padded steps over all steps of padded outputs (0 for windows).
        dropped_steps: with ``Stream(on_full="drop_oldest")``, the steps dropped before the
            consumer saw them (the windows that needed them are lost).
        threads: worker threads claiming blocks of batches: ``num_threads`` as given, or the
            tuner's latest choice (0 for a Stream, which has none).
        prefetch: blocks of batches built ahead: ``prefetch`` as given, or the tuner's latest
            choice.
        threads_auto: True when ``num_threads=None``: the tuner chooses ``threads`` while feeding.
        prefetch_auto: True when ``prefetch=None``: the tuner chooses ``prefetch`` while feeding.
        tuning: ``(epoch, batch, threads, prefetch)`` where the first epoch started and at each
            change since, the most recent 64: from that batch on, that many workers and that
            prefetch depth. Not cleared by ``reset_stats()``.
    """

    batches: int
    samples: int
    bytes: int
    elapsed_s: float  # wall time spent inside iterations
    samples_per_s: float
    mb_per_s: float  # output megabytes (1e6 bytes) per second of elapsed time
    wait_total_s: float  # time the consumer waited for a batch
    wait_p50_s: float
    wait_p99_s: float
    assembly_p50_s: float  # time a worker took to assemble one batch
    mean_queue_depth: float  # assembled batches waiting when one was handed over
    padding_fraction: float  # padded steps / all steps of the padded outputs (0 for windows)
    dropped_steps: int = 0  # Stream(on_full="drop_oldest"): steps the consumer missed (lost windows)
    threads: int = 0  # workers claiming blocks (as given, or the tuner's latest choice)
    prefetch: int = 0  # blocks built ahead (as given, or the tuner's latest choice)
    threads_auto: bool = False
    prefetch_auto: bool = False
    tuning: Tuple[Tuple[int, int, int, int], ...] = ()  # (epoch, batch, threads, prefetch) at each change

    # Shorter names for the same numbers.
    @property
    def elapsed(self) -> float:
        return self.elapsed_s

    @property
    def wait_total(self) -> float:
        return self.wait_total_s

    @property
    def wait_p50(self) -> float:
        return self.wait_p50_s

    @property
    def wait_p99(self) -> float:
        return self.wait_p99_s

    @property
    def assembly_p50(self) -> float:
        return self.assembly_p50_s

    def __str__(self) -> str:
        return (
            f"{self.batches} batches, {self.samples} samples, {self.bytes / 1e6:.1f} MB in {self.elapsed_s:.2f} s "
            f"({self.samples_per_s:,.0f} samples/s, {self.mb_per_s:,.0f} MB/s); waited {self.wait_total_s:.3f} s "
            f"(p50 {self.wait_p50_s * 1e6:.0f} us, p99 {self.wait_p99_s * 1e6:.0f} us); "
            f"assembly p50 {self.assembly_p50_s * 1e6:.0f} us; queue {self.mean_queue_depth:.1f}; "
            f"padding {100 * self.padding_fraction:.1f}%"
            + (f"; dropped {self.dropped_steps} steps" if self.dropped_steps else "")
            + (self._shape() if self.threads else "")
        )

    def _shape(self) -> str:
        auto = " (auto)" if self.threads_auto else ""
        return f"; threads {self.threads}{auto}, prefetch {self.prefetch}{' (auto)' if self.prefetch_auto else ''}"


class StatsRecorder:
    """Counts batches as they are handed out. Called once per block or batch, never per sample."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.batches_n = self.samples = self.bytes = 0
        self.real_steps = self.padded_steps = 0
        self.elapsed = 0.0
        self.wait_total = 0.0
        self.queue_total = 0
        self.blocks = 0
        # Per block (the last _RING blocks): wait, per-batch build time, and batches in it.
        self._waits = np.zeros(_RING)
        self._builds = np.zeros(_RING)
        self._block_batches = np.zeros(_RING, dtype=np.int64)
        self._n_blocks = 0
        # A reset in the middle of an iteration keeps timing it, from now on.
        running = getattr(self, "_started", None) is not None
        self._started: Optional[float] = time.perf_counter() if running else None

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> None:
        if self._started is not None:
            self.elapsed += time.perf_counter() - self._started
            self._started = None

    def block(self, wait: float, build: float, batches: int, queued: int) -> None:
        """One hand-over of `batches` batches: the wait falls on its first batch, the others
        were not waited for; the build time is spread over them."""
        self.wait_total += wait
        self.queue_total += queued
        self.blocks += 1
        i = self._n_blocks % _RING
        self._waits[i] = wait
        self._builds[i] = build / max(1, batches)
        self._block_batches[i] = max(1, batches)
        self._n_blocks += 1

    def batches(self, batches: int, samples: int, nbytes: int) -> None:
        """Batches handed out (counted per block, not per batch: the per-batch path stays bare)."""
        self.batches_n += batches
        self.samples += samples
        self.bytes += nbytes

    def batch(self, samples: int, nbytes: int) -> None:
        self.batches(1, samples, nbytes)

    def counts(self) -> Tuple[int, int, int]:
        """(batches, samples, bytes) counted so far."""
        return self.batches_n, self.samples, self.bytes

    def steps(self, real: int, padded: int) -> None:
        self.real_steps += real
        self.padded_steps += padded

    def totals(self) -> Tuple[int, int, int, float, float, int, int]:
        """(batches, samples, bytes, elapsed, wait, real steps, padded steps) so far: two of these
        apart describe what happened in between (an epoch, for its log line)."""
        return (
            self.batches_n,
            self.samples,
            self.bytes,
            self._elapsed_now(),
            self.wait_total,
            self.real_steps,
            self.padded_steps,
        )

    @staticmethod
    def describe(
        since: Tuple[int, int, int, float, float, int, int], until: Tuple[int, int, int, float, float, int, int]
    ) -> str:
        """What happened between two totals(), in one line."""
        batches, samples, nbytes, elapsed, wait, real, padded = (max(0, b - a) for a, b in zip(since, until))
        rate = samples / elapsed if elapsed > 0 else 0.0
        line = (
            f"{batches} batches, {samples} samples, {nbytes / 1e6:.1f} MB in {elapsed:.2f} s "
            f"({rate:,.0f} samples/s); waited {wait:.3f} s"
        )
        if real + padded:
            line += f"; padding {100 * padded / (real + padded):.1f}%"
        return line

    def _elapsed_now(self) -> float:
        started = self._started  # read once: another thread may stop the clock meanwhile
        return self.elapsed + (time.perf_counter() - started if started is not None else 0.0)

    def snapshot(
        self,
        dropped_steps: int = 0,
        pending: Tuple[int, int, int] = (0, 0, 0),
        counts: Optional[Tuple[int, int, int]] = None,
    ) -> FeedStats:
        """The counters as FeedStats; `pending` adds (batches, samples, bytes) handed out from a
        block that is not counted yet (the Feeder counts a block when it is done with it), to
        `counts`, the counts() read at the same moment (default: read now)."""
        counted = self.counts() if counts is None else counts
        elapsed = self._elapsed_now()
        n = min(self._n_blocks, _RING)
        per_block = self._block_batches[:n]
        # Per batch: a block's first batch waited `wait`, its other batches not at all.
        waits = np.concatenate([self._waits[:n], np.zeros(int(per_block.sum()) - n)])
        builds = np.repeat(self._builds[:n], per_block)
        total_steps = self.real_steps + self.padded_steps
        per_s = (lambda v: v / elapsed) if elapsed > 0 else (lambda v: 0.0)
        batches, samples, nbytes = (c + p for c, p in zip(counted, pending))
        return FeedStats(
            batches=batches,
            samples=samples,
            bytes=nbytes,
            elapsed_s=elapsed,
            samples_per_s=per_s(samples),
            mb_per_s=per_s(nbytes / 1e6),
            wait_total_s=self.wait_total,
            wait_p50_s=float(np.percentile(waits, 50)) if len(waits) else 0.0,
            wait_p99_s=float(np.percentile(waits, 99)) if len(waits) else 0.0,
            assembly_p50_s=float(np.percentile(builds, 50)) if len(builds) else 0.0,
            mean_queue_depth=self.queue_total / self.blocks if self.blocks else 0.0,
            padding_fraction=self.padded_steps / total_steps if total_steps else 0.0,
            dropped_steps=dropped_steps,
        )
