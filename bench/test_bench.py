"""pytest-benchmark versions of bench/run.py's comparisons:

    .venv/bin/python -m pytest bench/ --benchmark-only

Each case is one benchmark, grouped by workload so that pytest-benchmark's table compares
them side by side. Unlike bench/run.py the cases do not run interleaved (pytest-benchmark
runs one test at a time), so on a shared machine prefer run.py's table for ratios. The
ratios of the targets are printed at the end of the session (see conftest.py), and the
derived numbers (GB/s, waiting share, sparse start-up) are in each benchmark's extra_info
(--benchmark-json keeps them). Performance targets are reported, never asserted: a noisy
machine must not fail a build. What is asserted is that every case produces what it should.
"""

from __future__ import annotations

import statistics
from typing import Any, Dict, List

import numpy as np
import pytest

import workloads as wl

# ----- W1 --------------------------------------------------------------------------------------

W1_NAMES = [
    "Feeder (output=numpy)",
    "Feeder (output=torch)",
    "Feeder (output=numpy), incl. construction",
    "compat.TimeseriesGenerator",
    "Keras TimeseriesGenerator (tf_keras)",
    "Keras algorithm (re-implemented)",
    "torch DataLoader (per-sample Dataset, 0 workers)",
    "NumPy loop (slices, views)",
]


@pytest.fixture(scope="module")
def w1_cases() -> Dict[str, Any]:
    return wl.w1_cases()


def _median(benchmark: Any) -> float:
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats is not None else float("nan")


@pytest.mark.parametrize("name", W1_NAMES)
def test_w1_epoch(benchmark: Any, w1_cases: Dict[str, Any], name: str, record: Any) -> None:
    """One epoch of the seed's case: 990 batches of one window of 10 steps."""
    if name not in w1_cases:
        pytest.skip("tf_keras is not installed" if "tf_keras" in name else f"{name} is not available")
    benchmark.group = "W1: one epoch, 990 batches of 1 (sin, window 10, horizon 1)"
    batches = benchmark(w1_cases[name])
    assert batches == wl.W1_BATCHES
    record("W1", name, _median(benchmark))


# ----- W2 --------------------------------------------------------------------------------------

# The case names do not depend on the file (the producers are only built when called).
W2_NAMES = list(wl.w2_cases("", np.empty((0, wl.W2_FEATS), np.float32)))
W2_ROUNDS = 8


@pytest.mark.parametrize("name", W2_NAMES)
def test_w2_throughput(benchmark: Any, w2_path: str, w2_in_ram: np.ndarray, name: str, record: Any) -> None:
    """A round is `chunk` consecutive batches (8.4 MB each) of one running producer."""
    case = wl.w2_cases(w2_path, w2_in_ram)[name]
    benchmark.group = "W2: 4M x 32 float32 .npy, window 256, shuffled batches of 256 (time per chunk)"
    stream = case.make()
    try:
        wl.check_w2_batch(next(stream))
        for _ in range(case.warmup):
            next(stream)
        # Rounds follow each other at once, so no prefetch queue fills in between: no drain.
        benchmark.pedantic(wl.stream_probe(stream, case.chunk, drain=0), rounds=W2_ROUNDS, warmup_rounds=1)
        wl.check_w2_batch(next(stream))
    finally:
        wl._close(stream)
    seconds = _median(benchmark)
    gbs = case.chunk * wl.W2_BATCH_BYTES / seconds / 1e9
    benchmark.extra_info.update({"batches per round": case.chunk, "GB/s (median)": round(gbs, 3)})
    record("W2", name, gbs)


# ----- training loop ---------------------------------------------------------------------------

LOOP_NAMES = list(wl.loop_sources("", np.empty((0, wl.W2_FEATS), np.float32)))
LOOP_BATCHES = 100


@pytest.mark.parametrize("name", LOOP_NAMES)
def test_loop(benchmark: Any, w2_path: str, w2_in_ram: np.ndarray, name: str, record: Any) -> None:
    """A round is 100 steps of a loop computing ~3 ms per batch on one torch thread; the share
    of it spent getting batches is in extra_info."""
    benchmark.group = "Loop: 100 steps of ~3 ms single-threaded torch compute, fed from W2"
    make, _ = wl.loop_sources(w2_path, w2_in_ram)[name]
    waits: List[float] = []
    with wl.torch_single_thread():
        work = wl.calibrated_work()
        next_batch = make()
        probe = wl.loop_probe(next_batch, work, LOOP_BATCHES, drain=0)

        def stretch() -> None:
            waiting, _, wall = probe()
            waits.append(waiting / wall)

        try:
            benchmark.pedantic(stretch, rounds=5, warmup_rounds=1)
        finally:
            wl._close(next_batch)
    share = statistics.median(waits[1:] if len(waits) > 1 else waits)  # [0] is the warm-up round
    benchmark.extra_info["waiting share (median)"] = round(share, 4)
    record("Loop", name, share)


# ----- sparse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(wl.SPARSE_MODES))
def test_sparse_start(benchmark: Any, bench_dir: str, mode: str, record: Any) -> None:
    """Cold start on a fresh 8 GiB sparse .npy, in a fresh interpreter. The benchmark's own time
    includes starting that interpreter; the start-up itself and the RSS growth measured inside
    are in extra_info."""
    benchmark.group = "Sparse: 8 GiB sparse .npy, construct + first batch (incl. interpreter start)"
    runs: List[Dict[str, float]] = []
    benchmark.pedantic(lambda: runs.append(wl.run_sparse(bench_dir, mode, seed=len(runs))), rounds=2)
    total = statistics.median(r["total_s"] for r in runs)
    peak = max(r["peak_growth_mib"] for r in runs)
    benchmark.extra_info.update(
        {"construct + first batch ms (median)": round(total * 1e3, 2), "RSS peak growth MiB (max)": round(peak, 1)}
    )
    record("Sparse", mode, total)
    record("Sparse RSS", mode, peak)
