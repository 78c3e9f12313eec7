"""GPU benchmarks (issue 5), printed as one Markdown table. Needs a CUDA device.

    python bench/gpu.py [--batches 400] [--threads N ...] [--skip-loop]

Upload   W2 (4,000,000 x 32 float32, window 256, horizon 1, batch 256) with device="cuda":
         GB/s of x + y reaching the device, against a plain pinned-memory copy
         (cudaMemcpyAsync through torch, non_blocking) of the same bytes per batch.
Cache    the same W2 with device_cache=True: windows/s and GB/s of gathered output, against a
         device-to-device copy of the same bytes in copies of the Feeder's block size: wall clock,
         the host loop included; and the gather kernel alone (CUDA events).
Loop     a small MLP (a few ms a step) trained on W2 batches: the share of the loop the GPU
         spends waiting for data, 1 - (steps on one resident batch) / (steps fed), for the
         Feeder (device="cuda" and device_cache=True), a DataLoader (per-sample Dataset,
         pin_memory=True, 4 workers) and the nanoGPT loop (memmap slices, torch.stack,
         pin_memory, non_blocking copy).

Every number is the median of 3 repetitions; the machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np

import fastfeed

import workloads as wl

REPEATS = 3
WARMUP = 300  # batches: the Feeder maps the file itself, and its first pass faults its pages in


def median_of(fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(REPEATS))


def w2_feeder(path: str, **kw: Any) -> fastfeed.Feeder:
    return fastfeed.Feeder(path, window=wl.W2_WINDOW, horizon=wl.W2_HORIZON, batch_size=wl.W2_BATCH, shuffle=True, **kw)


def stream_rate(batches: Iterator[Tuple[Any, Any]], count: int) -> float:
    """GB/s of x + y over `count` batches, from the first to the last being ready on the GPU."""
    import torch

    for _ in range(WARMUP):
        next(batches)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    nbytes = 0
    for _ in range(count):
        x, y = next(batches)
        nbytes += x.nbytes + y.nbytes
    torch.cuda.synchronize()
    return nbytes / (time.perf_counter() - t0) / 1e9


def forever(f: fastfeed.Feeder) -> Iterator[Any]:
    while True:
        yield from f


# ----- upload ---------------------------------------------------------------------------------


def pinned_copy_rate(nbytes: int, count: int) -> float:
    import torch

    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    for _ in range(20):
        dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(count):
        dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    return nbytes * count / (time.perf_counter() - t0) / 1e9


def upload_rows(path: str, count: int, threads: List[Any]) -> List[Tuple[str, str, str]]:
    plain = median_of(lambda: pinned_copy_rate(wl.W2_BATCH_BYTES, count))
    rows = [("pinned cudaMemcpyAsync of the same bytes (8.4 MB a copy)", f"{plain:.1f} GB/s", "1.00")]
    for n in threads:
        f = w2_feeder(path, device="cuda", num_threads=n)
        rate = median_of(lambda: stream_rate(forever(f), count))  # noqa: B023 (called right here)
        rows.append(
            (
                # (num_threads after the run: with the default, what the tuner chose by then)
                f"Feeder device='cuda', {f.num_threads} threads"
                + (f" (default: tuned while feeding, prefetch {f.prefetch})" if n is None else ""),
                f"{rate:.1f} GB/s",
                f"{rate / plain:.2f}",
            )
        )
        f.close()
    return rows


# ----- device_cache ---------------------------------------------------------------------------


def d2d_copy_rate(nbytes: int, count: int) -> float:
    """GB/s copied (bytes written) by device-to-device copies of `nbytes`, from a source larger
    than the L2 cache, at a different offset each time."""
    import torch

    src = torch.empty(wl.W2_ROWS * wl.W2_FEATS * 4, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    span = len(src) - nbytes
    offsets = [(i * 7_919_993) % span // 256 * 256 for i in range(count)]
    for o in offsets[:10]:
        dst.copy_(src[o : o + nbytes])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for o in offsets:
        dst.copy_(src[o : o + nbytes])
    torch.cuda.synchronize()
    return nbytes * count / (time.perf_counter() - t0) / 1e9


def kernel_rate(f: fastfeed.Feeder, count: int) -> float:
    """GB/s of output of the gather alone (CUDA events), a block of random starts at a time
    (four sets in turn, so that the L2 cache holds none of them)."""
    import torch

    rng = np.random.default_rng(0)
    sets = [rng.integers(0, f.num_samples, f._mode.batches_per_block * wl.W2_BATCH) for _ in range(4)]
    for s in sets:
        f._mode.cache.gather(s)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    nbytes = 0
    for i in range(count):
        x, y = f._mode.cache.gather(sets[i % 4])
        nbytes += x.nbytes + y.nbytes
    end.record()
    end.synchronize()
    return nbytes / (start.elapsed_time(end) / 1e3) / 1e9


def cache_rows(path: str, count: int) -> List[Tuple[str, str, str]]:
    f = w2_feeder(path, device="cuda", device_cache=True)
    block_bytes = f._mode.batches_per_block * wl.W2_BATCH_BYTES
    copy = median_of(lambda: d2d_copy_rate(block_bytes, max(20, count // f._mode.batches_per_block)))
    wall = median_of(lambda: stream_rate(forever(f), count * 4))
    kernel = median_of(lambda: kernel_rate(f, max(20, count // f._mode.batches_per_block)))
    per_window = wl.W2_BATCH_BYTES / wl.W2_BATCH
    threads = f.num_threads  # the tuner's choice by now
    f.close()
    return [
        (f"device-to-device copy, {block_bytes / 1e6:.0f} MB a copy", f"{copy:.0f} GB/s", "1.00"),
        (
            f"Feeder device_cache=True ({threads} threads), wall clock",
            f"{wall:.0f} GB/s, {wall * 1e9 / per_window / 1e6:.1f} M windows/s",
            f"{wall / copy:.2f}",
        ),
        (
            f"its gather kernel alone, {f._mode.batches_per_block} batches a launch",
            f"{kernel:.0f} GB/s",
            f"{kernel / copy:.2f}",
        ),
    ]


# ----- training loop --------------------------------------------------------------------------


def make_model() -> Tuple[Any, Any]:
    import torch

    model = torch.nn.Sequential(
        torch.nn.Linear(wl.W2_FEATS, 512),
        torch.nn.GELU(),
        torch.nn.Linear(512, 512),
        torch.nn.GELU(),
        torch.nn.Linear(512, wl.W2_FEATS),
    ).cuda()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def train_steps(batches: Iterator[Tuple[Any, Any]], steps: int, model: Any, opt: Any) -> float:
    """Seconds for `steps` training steps (the GPU drained at both ends)."""
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = next(batches)
        loss = torch.nn.functional.mse_loss(model(x)[:, -1], y[:, 0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def nanogpt_batches(path: str) -> Iterator[Tuple[Any, Any]]:
    """nanoGPT's get_batch: random starts, slices of a memmap stacked, pinned, copied non_blocking."""
    import torch

    data = np.load(path, mmap_mode="r")
    n = len(data) - wl.W2_WINDOW - wl.W2_HORIZON
    while True:
        ix = torch.randint(n, (wl.W2_BATCH,))
        x = torch.stack([torch.from_numpy(np.array(data[i : i + wl.W2_WINDOW])) for i in ix.tolist()])
        y = torch.stack(
            [torch.from_numpy(np.array(data[i + wl.W2_WINDOW : i + wl.W2_WINDOW + 1])) for i in ix.tolist()]
        )
        yield x.pin_memory().to("cuda", non_blocking=True), y.pin_memory().to("cuda", non_blocking=True)


def loader_batches(path: str) -> Iterator[Tuple[Any, Any]]:
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        wl.WindowDataset(path, wl.W2_WINDOW, wl.W2_HORIZON),
        batch_size=wl.W2_BATCH,
        shuffle=True,
        num_workers=4,
        pin_memory=True,
        persistent_workers=True,
        prefetch_factor=4,
        generator=torch.Generator().manual_seed(0),
    )
    while True:
        for x, y in loader:
            yield x.to("cuda", non_blocking=True), y.to("cuda", non_blocking=True)


def loop_rows(path: str, steps: int) -> List[Tuple[str, str, str]]:
    import torch

    model, opt = make_model()
    resident = next(forever(w2_feeder(path, device="cuda")))

    def same_batch() -> Iterator[Tuple[Any, Any]]:
        while True:
            yield resident

    train_steps(same_batch(), 20, model, opt)  # warm up kernels and the allocator
    compute = median_of(lambda: train_steps(same_batch(), steps, model, opt))
    sources: Dict[str, Callable[[], Iterator[Tuple[Any, Any]]]] = {
        "Feeder device='cuda'": lambda: forever(w2_feeder(path, device="cuda")),
        "Feeder device_cache=True": lambda: forever(w2_feeder(path, device="cuda", device_cache=True)),
        "DataLoader, pin_memory=True, 4 workers": lambda: loader_batches(path),
        "nanoGPT loop (memmap, stack, pin, non_blocking)": lambda: nanogpt_batches(path),
    }
    rows = [("one resident batch (compute only)", f"{compute / steps * 1e3:.2f} ms/step", "-")]
    for name, make in sources.items():
        it = make()
        train_steps(it, 50 if "Feeder" in name else 20, model, opt)  # fill queues, fault pages in
        fed = median_of(lambda it=it: train_steps(it, steps, model, opt))
        idle = max(0.0, 1 - compute / fed)
        rows.append((name, f"{fed / steps * 1e3:.2f} ms/step", f"{idle:.1%} idle"))
        del it
    torch.cuda.synchronize()
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=400, help="batches timed per repetition")
    p.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts to try for the upload")
    p.add_argument("--steps", type=int, default=300, help="training steps timed per repetition")
    p.add_argument("--skip-loop", action="store_true")
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
        print(
            f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"fastfeed {fastfeed.__version__}",
            flush=True,
        )
        sections = [
            ("Upload (W2, device='cuda')", lambda: upload_rows(path, args.batches, [None] + (args.threads or []))),
            ("Device-resident (W2, device_cache=True)", lambda: cache_rows(path, args.batches)),
        ]
        if not args.skip_loop:
            sections.append(("Training loop (W2 batches, small MLP)", lambda: loop_rows(path, args.steps)))
        print("| case | result | ratio |\n|---|---|---|")
        for title, rows in sections:
            print(f"| **{title}** | | |", flush=True)
            for name, value, ratio in rows():
                print(f"| {name} | {value} | {ratio} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
