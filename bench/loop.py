"""The training-loop workload alone, run after run: how long a loop doing ~3 ms of
single-threaded torch work per W2 batch waits for batches, and how much slower it runs than
the same compute without data, fed by a Feeder with all defaults, by one with num_threads=1,
and by in-line NumPy.

    .venv/bin/python bench/loop.py                 # five runs of 5 rounds x 100 batches each
    .venv/bin/python bench/loop.py --runs 1 --quick

bench/run.py measures the same workload once, beside the others; this script repeats it, so
that "in every one of five runs" can be checked without the rest. Each run writes the 512 MB
W2 file afresh, warms the page cache and measures in interleaved rounds (bench/workloads.py).
Prints one line per run and source, then a summary; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="runs, each with a fresh file and fresh Feeders (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per run (default 5)")
    p.add_argument("--batches", type=int, default=100, help="loop steps per round (default 100)")
    p.add_argument("--quick", action="store_true", help="2 rounds of 40 batches, short warm-up: checks the script")
    p.add_argument("--tmpdir", default=None, help="where to write the 512 MB file (default: the system temp dir)")
    return p.parse_args(argv)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rounds, batches = (2, 40) if args.quick else (args.rounds, args.batches)
    warmup = 60 if args.quick else wl.FEEDER_WARMUP_BATCHES
    print(f"bench/loop.py {' '.join(sys.argv[1:] if argv is None else argv)}; machine: {wl.machine_info()}")
    waiting: Dict[str, List[float]] = {}  # per run: the median round's share waiting for data
    held: Dict[str, List[float]] = {}  # per run: the median round's share waiting for data or a core
    slow: Dict[str, List[float]] = {}  # per run: the median round's slowdown against compute alone
    for run in range(args.runs):
        tmpdir = tempfile.mkdtemp(prefix="fastfeed-loop-", dir=args.tmpdir)
        try:
            path = wl.create_w2_file(tmpdir)
            wl.warm_page_cache(path)
            in_ram = np.load(path)
            before = load()
            began = time.perf_counter()
            with wl.BackgroundLoad() as bg:
                res, compute_s = wl.measure_loop(path, in_ram, batches, rounds, feeder_warmup=warmup)
            print(
                f"run {run + 1}: {rounds} rounds x {batches} batches, compute {compute_s * 1e3:.2f} ms/batch, "
                f"{time.perf_counter() - began:.0f} s; load average {before} before, {load()} after; "
                f"other processes used {bg.cores:.2f} cores meanwhile"
            )
            for name, r in res.items():
                cores = ", ".join(f"{c:.1%}" for c in r.core_wait)
                if name == wl.LOOP_COMPUTE:
                    print(f"  {name}: {r.median_batch_s * 1e3:.2f} ms/batch; without a core {cores}")
                    continue
                waits = ", ".join(f"{w:.1%}" for w in r.wait_fraction)
                slows = ", ".join(f"{d:+.1%}" for d in r.slowdown)
                print(
                    f"  {name}: waiting for data {waits} (median {r.median_wait:.1%}); for a core {cores} "
                    f"(median {r.median_core_wait:.1%}); slower than compute alone {slows}"
                )
                if r.shape:
                    print(f"    {r.shape}")
                waiting.setdefault(name, []).append(r.median_wait)
                held.setdefault(name, []).append(r.median_held_up)
                slow.setdefault(name, []).append(r.median_slowdown)
            del in_ram
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    print("summary: each run's median round; then the median and range over the runs")

    def over_runs(values: List[float], sign: str = "") -> str:
        each = ", ".join(f"{x:{sign}.1%}" for x in values)
        return (
            f"{each} (median {statistics.median(values):{sign}.1%}, {min(values):{sign}.1%} to {max(values):{sign}.1%})"
        )

    for name in waiting:
        print(f"  {name}:")
        print(f"    waiting for data: {over_runs(waiting[name])}")
        print(f"    waiting for data or a core: {over_runs(held[name])}")
        print(f"    slower than compute alone: {over_runs(slow[name], '+')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
