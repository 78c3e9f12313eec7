"""GPU benchmarks (issue 5), printed as one Markdown table. Needs a CUDA device.

    .venv/bin/python bench/gpu.py [--batches 400]

Upload: W2 (4,000,000 x 32 float32, window 256, batch 256) with device="cuda", in GB/s of
x + y reaching the device, against a plain pinned-memory copy (torch, non_blocking) of the same
bytes per batch in the same run.

Written in a session without a GPU: it has not been run yet. Still to add with a GPU at hand:
device_cache, and the training loop's GPU idle time beside a DataLoader (pin_memory=True,
4 workers) and a nanoGPT-style memmap loop.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl  # noqa: E402

import fastfeed  # noqa: E402


def upload_rate(path: str, batches: int) -> float:
    import torch

    f = fastfeed.Feeder(path, window=wl.W2_WINDOW, horizon=1, batch_size=wl.W2_BATCH, shuffle=True, device="cuda")
    it = iter(f)
    for _ in range(50):
        next(it)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    nbytes = 0
    for _ in range(batches):
        x, y = next(it)
        nbytes += x.nbytes + y.nbytes
    torch.cuda.synchronize()
    return nbytes / (time.perf_counter() - t0) / 1e9


def pinned_copy_rate(nbytes: int, batches: int) -> float:
    import torch

    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    for _ in range(10):
        dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(batches):
        dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    return nbytes * batches / (time.perf_counter() - t0) / 1e9


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=400)
    args = p.parse_args()
    try:
        import torch
    except ImportError:
        print("bench/gpu.py needs torch with CUDA", file=sys.stderr)
        return 2
    if not (fastfeed.cuda_available() and torch.cuda.is_available()):
        print("bench/gpu.py: no usable CUDA device here (fastfeed.cuda_available() is False)", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="fastfeed-gpu-bench-")
    try:
        path = wl.create_w2_file(tmp)
        wl.warm_page_cache(path)
        batch_bytes = wl.W2_BATCH * (wl.W2_WINDOW + 1) * wl.W2_FEATS * 4
        feeder = [upload_rate(path, args.batches) for _ in range(3)]
        plain = [pinned_copy_rate(batch_bytes, args.batches) for _ in range(3)]
        f, c = statistics.median(feeder), statistics.median(plain)
        print("| Case | GB/s (median of 3) |\n|---|---|")
        print(f"| Feeder device='cuda' (W2) | {f:.1f} |")
        print(f"| pinned torch copy of the same bytes | {c:.1f} |")
        print(f"| ratio | {f / c:.2f} (target >= 0.8) |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
