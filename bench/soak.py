"""Soak test: does memory stay flat over a million batches? (a script, not part of the test suite)

    .venv/bin/python bench/soak.py                     # 1,000,000 batches per phase, a few minutes
    .venv/bin/python bench/soak.py --batches 100000    # shorter

Two phases, each run for --batches batches in one process:
  windows    a memory-mapped .npy (200,000 x 16 float32, 12.8 MB), shuffled windows of 32 steps with a
             horizon of 1, batches of 64, output=torch; one Feeder iterated epoch after epoch.
  sequences  Feeder(list_of_arrays, window=None): 20,000 float32 sequences of 1..400 steps x 8,
             shuffled, padded batches of 16 with masks, output=torch.
The consumer keeps the last 8 batches alive (as a training loop holding a few in flight would),
so buffers are recycled while others are still held.

RSS (VmRSS from /proc/self/status, and RssAnon) is sampled every --every batches and printed as
a table. After a warm-up (the first --warmup fraction of a phase) RSS may not grow: the growth is
the last sample minus the first after warm-up; the slope (MiB per 100k batches) is a least-squares
fit over the second half of the phase. Exit code 1 if either phase grows more than --bound-mib.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Iterator, List, Tuple

import numpy as np

from fastfeed import Feeder


def rss_mib() -> Tuple[float, float]:
    """(VmRSS, RssAnon) of this process in MiB."""
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values.get("RssAnon", float("nan"))


def batches_forever(make: Callable[[], Feeder]) -> Iterator[object]:
    feeder = make()
    while True:
        yield from feeder  # a new epoch (and pipeline) each pass


def slope_per_100k(points: List[Tuple[int, float]]) -> float:
    if len(points) < 2:
        return float("nan")
    x = np.array([p[0] for p in points], np.float64)
    y = np.array([p[1] for p in points], np.float64)
    return float(np.polyfit(x, y, 1)[0] * 100_000)


def run_phase(name: str, make: Callable[[], Feeder], batches: int, every: int, warmup: float, bound: float) -> bool:
    print(f"\n## {name}: {batches:,} batches\n")
    print("| batches | VmRSS MiB | RssAnon MiB | batches/s |")
    print("|---:|---:|---:|---:|")
    held: collections.deque = collections.deque(maxlen=8)
    samples: List[Tuple[int, float, float]] = []
    checksum = 0.0
    start = last = time.perf_counter()
    vm, anon = rss_mib()
    print(f"| 0 | {vm:.1f} | {anon:.1f} | |")
    for n, batch in enumerate(batches_forever(make), 1):
        held.append(batch)
        if n % every == 0:
            checksum += float(batch[0].reshape(-1)[0])  # touch the data now and then
            now = time.perf_counter()
            vm, anon = rss_mib()
            samples.append((n, vm, anon))
            print(f"| {n:,} | {vm:.1f} | {anon:.1f} | {every / (now - last):,.0f} |", flush=True)
            last = now
        if n >= batches:
            break
    elapsed = time.perf_counter() - start
    held.clear()

    after = [s for s in samples if s[0] > warmup * batches] or samples[-1:]
    growth = after[-1][1] - after[0][1]
    growth_anon = after[-1][2] - after[0][2]
    second_half = [(n, vm) for n, vm, _ in samples if n > batches / 2]
    slope = slope_per_100k(second_half)
    ok = growth <= bound
    print(
        f"\n{name}: {batches:,} batches in {elapsed:.1f} s ({batches / elapsed:,.0f} batches/s); "
        f"RSS {after[0][1]:.1f} -> {after[-1][1]:.1f} MiB after warm-up (batch {after[0][0]:,}): "
        f"{growth:+.1f} MiB (anonymous {growth_anon:+.1f} MiB); slope over the second half "
        f"{slope:+.2f} MiB per 100k batches; bound {bound:g} MiB: {'ok' if ok else 'FAILED'} "
        f"(checksum {checksum:.3f})"
    )
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=1_000_000, help="batches per phase (default 1,000,000)")
    ap.add_argument("--every", type=int, default=10_000, help="sample RSS every this many batches")
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of a phase treated as warm-up")
    ap.add_argument("--bound-mib", type=float, default=16.0, help="allowed RSS growth after warm-up")
    ap.add_argument("--phase", choices=("windows", "sequences", "both"), default="both")
    ap.add_argument("--tmpdir", default=None, help="where the .npy file goes (default: system temp dir)")
    args = ap.parse_args(argv)
    every = max(1, min(args.every, args.batches // 10 or 1))

    workdir = tempfile.mkdtemp(prefix="fastfeed-soak-", dir=args.tmpdir)
    try:
        rng = np.random.default_rng(0)
        path = os.path.join(workdir, "series.npy")
        np.save(path, rng.normal(size=(200_000, 16)).astype(np.float32))
        lengths = np.clip(rng.lognormal(3.5, 0.8, 20_000).astype(int), 1, 400)
        sequences = [rng.normal(size=(int(n), 8)).astype(np.float32) for n in lengths]
        print(
            f"# fastfeed soak: {args.batches:,} batches per phase, RSS every {every:,} batches, "
            f"{len(os.sched_getaffinity(0))} CPUs"
        )
        ok = True
        if args.phase in ("windows", "both"):
            ok &= run_phase(
                "windows (memory-mapped .npy, shuffled, batch 64, torch)",
                lambda: Feeder(path, window=32, horizon=1, batch_size=64, shuffle=True, output="torch"),
                args.batches,
                every,
                args.warmup,
                args.bound_mib,
            )
        if args.phase in ("sequences", "both"):
            ok &= run_phase(
                "sequences (list of arrays, window=None, padded, batch 16, torch)",
                lambda: Feeder(sequences, window=None, batch_size=16, shuffle=True, output="torch"),
                args.batches,
                every,
                args.warmup,
                args.bound_mib,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nsoak:", "ok" if ok else "FAILED (RSS grew beyond the bound)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
