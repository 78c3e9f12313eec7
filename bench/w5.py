"""W5: language-model corpora, fastfeed against the loaders LM code uses, in one run.

    .venv-bench/bin/python bench/w5.py                  # the full run (1-2 minutes on 2 cores)
    .venv-bench/bin/python bench/w5.py --quick          # fewer, shorter rounds: checks the script
    .venv-bench/bin/python bench/w5.py --only tokens,resume --tmpdir /mnt/scratch

Five measurements, each with a target (PASS/FAIL):

1. tokens: 100M uint16 tokens (GPT-2's vocabulary, 50,257) in a ``.npy``, block 1024, batch 16,
   int64 inputs and targets. ``Feeder(path, window=1024, target_shift=1, batch_size=16,
   shuffle=True, dtype="int64")`` against nanoGPT's ``get_batch`` as its train.py writes it
   (``np.memmap`` made anew each call, ``torch.randint`` starts, ``torch.stack`` of
   ``torch.from_numpy((data[i:i+block]).astype(np.int64))`` for x and y; the memmap skips the
   ``.npy`` header, which nanoGPT's headerless ``train.bin`` does not have). Target: >= 10x.
2. mixture: the same tokens split into three ``.npy`` files read as
   ``fastfeed.mix({...}, weights={0.5, 0.3, 0.2})``, same options plus ``steps_per_epoch``,
   against the one-file Feeder. Target: >= 0.9x.
3. resume: a 10^10-window epoch (a sparse uint8 ``.npy`` of 10^10 + 8 steps, window 8,
   ``target_shift=1``, batch 16, shuffled); a state saying "batch 5,000,000 of epoch 0" (a fresh
   Feeder's ``state_dict()`` with its ``batch`` field set: a plain dict, its fingerprint still
   valid). Timed: ``Feeder(...)`` + ``load_state_dict(state)`` + the first batch. Target: <= 50 ms.
4. hf: a Hugging Face dataset of 100,000 int32 token lists of lognormal lengths (median 150,
   sigma 1, clipped to [1, 2048]; saved to disk and loaded back, so memory-mapped), shuffled
   padded batches of 64 with mask and lengths: ``Feeder(ds, column="tokens", window=None,
   batch_size=64, shuffle=True)`` against a torch ``DataLoader`` over
   ``ds.with_format("torch")`` (batch_size=64, shuffle=True, num_workers=0) with a
   ``pad_sequence`` collate. Target: >= 10x.
5. best_fit: W3's 200,000 lengths (the same lognormal, clipped to [1, 2048]) packed with
   ``pack="best_fit", max_len=2048`` (rows of 2048, batch 8 rows), one shuffled epoch; padding
   from ``feeder.stats().padding_fraction``. Target: <= 1%.

Streams (1, 2, 4) are timed in interleaved rounds with bench/workloads.py's helpers: each round
times a fixed number of consecutive batches of each contender after an untimed drain that covers
the Feeder's prefetch queue; medians over rounds. The first batch of every contender is checked
against the data, and the packed epoch is checked to hold every sequence whole, once. A peer
that does not import (``datasets``) is reported as "not installed" and skipped. Files go to a
fresh directory under ``--tmpdir`` (about 400 MB plus the sparse file, which uses no disk) that
is deleted at the end. torch runs on one intra-op thread (``--torch-threads 1``): the peers'
stacking and padding are small tensor operations that a second thread slows down on a shared
2-core machine (see w4.py); fastfeed's native threads do not depend on it. The Markdown tables
go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from w3 import w3_lengths, w3_sequences

import workloads as wl

TOKENS = 100_000_000
VOCAB = 50_257
BLOCK = 1024
BATCH = 16
MIX_WEIGHTS = {"part0": 0.5, "part1": 0.3, "part2": 0.2}

RESUME_WINDOWS = 10**10
RESUME_WINDOW = 8
RESUME_BATCH = 5_000_000

HF_SEQUENCES = 100_000
HF_BATCH = 64

PACK_LEN = 2048
PACK_ROWS = 8

TARGETS = {
    "tokens": ("fastfeed ≥ 10× nanoGPT get_batch", 10.0),
    "mixture": ("three-file mixture ≥ 0.9× one file", 0.9),
    "resume": ("resume at batch 5,000,000 of a 10^10-window epoch ≤ 50 ms", 0.050),
    "hf": ("fastfeed ≥ 10× DataLoader over a HF dataset", 10.0),
    "best_fit": ('pack="best_fit" padding ≤ 1% (max_len 2048)', 0.01),
}
PARTS = ("tokens", "resume", "hf", "best_fit")  # --only takes these (tokens includes the mixture)


def progress(msg: str) -> None:
    print(f"[w5 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def drain_for(batch_bytes: int) -> int:
    """Untimed batches before a Feeder's timed chunk: more than its prefetch queue holds (about
    32 MB of batches by default, see Feeder), so that no ready batch is timed."""
    return int((48 << 20) // max(1, batch_bytes)) + 16


def not_available(e: Exception) -> str:
    return f"not available in this build: {type(e).__name__}: {str(e).splitlines()[0][:160]}"


# ----- 1 and 2: a token file, nanoGPT's get_batch, a mixture ----------------------------------


def write_tokens(directory: str, n: int) -> Tuple[np.ndarray, str, List[str]]:
    """`n` random uint16 tokens in tokens.npy, and the same tokens cut into three .npy files."""
    tokens = np.random.default_rng(0).integers(0, VOCAB, n, dtype=np.uint16)
    path = os.path.join(directory, "tokens.npy")
    np.save(path, tokens)
    parts = []
    for i, part in enumerate(np.array_split(tokens, 3)):
        parts.append(os.path.join(directory, f"tokens_part{i}.npy"))
        np.save(parts[-1], part)
    return tokens, path, parts


def npy_data_offset(path: str) -> int:
    """Where the .npy's data starts (the header's length)."""
    return int(np.load(path, mmap_mode="r").offset)


def nanogpt_batches(path: str, seed: int = 0) -> Iterator[Tuple[Any, Any]]:
    """nanoGPT's train.py get_batch('train') on a CPU, line for line (the memmap skips the .npy
    header: nanoGPT's train.bin is the same bytes without it)."""
    import torch

    torch.manual_seed(seed)
    offset = npy_data_offset(path)
    block_size, batch_size, device = BLOCK, BATCH, "cpu"

    def get_batch() -> Tuple[Any, Any]:
        # We recreate np.memmap every batch to avoid a memory leak (nanoGPT's comment)
        data = np.memmap(path, dtype=np.uint16, mode="r", offset=offset)
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy((data[i : i + block_size]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1 : i + 1 + block_size]).astype(np.int64)) for i in ix])
        x, y = x.to(device), y.to(device)  # device_type != 'cuda'
        return x, y

    while True:
        yield get_batch()


def token_feeder(source: Any, **kw: Any) -> Any:
    from fastfeed import Feeder

    return Feeder(source, window=BLOCK, target_shift=1, batch_size=BATCH, shuffle=True, dtype="int64", **kw)


def feeder_xy(feeder: Any) -> Iterator[Tuple[Any, Any]]:
    try:
        for b in wl.feeder_batches(feeder):
            yield b.x, b.y
    finally:
        feeder.close()


def check_token_batch(name: str, batch: Tuple[Any, Any], tokens: np.ndarray, bounds: List[int]) -> None:
    """x and y int64 (16, 1024); every row of x a block of the tokens inside one file (`bounds`:
    the files' first token, and the end), y the same block one token later."""
    import torch

    x, y = batch
    for field, a in (("x", x), ("y", y)):
        if not isinstance(a, torch.Tensor) or a.dtype != torch.int64 or tuple(a.shape) != (BATCH, BLOCK):
            raise AssertionError(f"{name}: {field} is {type(a).__name__} {getattr(a, 'dtype', '')} {tuple(a.shape)}")
    xs, ys = x.numpy(), y.numpy()
    for row in range(BATCH):
        cand = np.flatnonzero(tokens[: len(tokens) - BLOCK] == xs[row, 0])
        for k in range(1, 8):
            cand = cand[tokens[cand + k] == xs[row, k]]
        starts = [s for s in cand if np.array_equal(tokens[s : s + BLOCK], xs[row])]
        if not starts:
            raise AssertionError(f"{name}: row {row} of x is no block of the tokens")
        s = starts[0]
        if not np.array_equal(tokens[s + 1 : s + 1 + BLOCK], ys[row]):
            raise AssertionError(f"{name}: row {row} of y is not x's block one token later")
        part = int(np.searchsorted(bounds, s, side="right")) - 1
        if s + BLOCK + 1 > bounds[part + 1]:
            raise AssertionError(f"{name}: row {row} (token {s}) runs across a file boundary")


# ----- 3: resume deep into a 10^10-window epoch -----------------------------------------------


def resume_feeder(path: str, **kw: Any) -> Any:
    from fastfeed import Feeder

    return Feeder(path, window=RESUME_WINDOW, target_shift=1, batch_size=BATCH, shuffle=True, **kw)


def resume_state(path: str, batch: int) -> Dict[str, Any]:
    with resume_feeder(path) as f:
        state = f.state_dict()
    state["batch"] = batch
    return state


def resume_probe(path: str, state: Dict[str, Any]) -> Callable[[], float]:
    def probe() -> float:
        t0 = time.perf_counter()
        f = resume_feeder(path)
        f.load_state_dict(state)
        next(iter(f))
        elapsed = time.perf_counter() - t0
        f.close()
        return elapsed

    return probe


def check_resume(path: str) -> None:
    """The batch after a state at 5,000,000 is the second batch after a state at 4,999,999: both
    shuffled positions of one epoch (compared by window starts, with_index=True; the file is
    zeros), all different and inside the 10^10 windows."""
    starts = []
    for batch, take in ((RESUME_BATCH - 1, 2), (RESUME_BATCH, 1)):
        with resume_feeder(path, with_index=True) as f:
            f.load_state_dict(resume_state(path, batch))
            it = iter(f)
            starts.append([next(it).start for _ in range(take)][-1])
        if len(f) < RESUME_BATCH:
            raise AssertionError(f"resume: the epoch has {len(f):,} batches, fewer than {RESUME_BATCH:,}")
    a, b = (np.asarray(s) for s in starts)
    if not np.array_equal(a, b):
        raise AssertionError(f"resume: the batch after state {RESUME_BATCH:,} differs from the one it follows")
    if len(set(a.tolist())) != BATCH or a.min() < 0 or a.max() >= RESUME_WINDOWS:
        raise AssertionError(f"resume: window starts {a.tolist()} are not {BATCH} distinct windows of the epoch")


# ----- 4: a Hugging Face dataset of token lists -----------------------------------------------


def write_hf_dataset(directory: str, n: int) -> Tuple[Any, np.ndarray, np.ndarray]:
    """`n` int32 token lists (W3's values and lengths) as a datasets.Dataset saved to disk and
    loaded back (memory-mapped Arrow), with the flat values and offsets for the checks."""
    import datasets
    import pyarrow as pa

    datasets.disable_progress_bars()
    lengths = w3_lengths(n)
    flat = np.random.default_rng(0).integers(1, 50_000, int(lengths.sum()), dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat))  # list<int32>
    path = os.path.join(directory, "hf_tokens")
    datasets.Dataset.from_dict({"tokens": column}).save_to_disk(path)
    return datasets.load_from_disk(path), flat, offsets


def hf_collate(items: List[Dict[str, Any]]) -> Tuple[Any, Any, Any]:
    """W3's pad_collate over the dataset's rows: padded x, mask, lengths."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    seqs = [it["tokens"] for it in items]
    lengths = torch.tensor([len(t) for t in seqs], dtype=torch.int64)
    x = pad_sequence(seqs, batch_first=True)
    mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    return x, mask, lengths


def hf_loader_batches(ds: Any) -> Iterator[Tuple[Any, Any, Any]]:
    import torch

    loader = torch.utils.data.DataLoader(
        # Rows as int32 tensors, the dataset's own dtype (the torch format makes int64 by default);
        # a batch's rows come from one Arrow take (the dataset's __getitems__).
        ds.with_format("torch", dtype=torch.int32),
        batch_size=HF_BATCH,
        shuffle=True,
        num_workers=0,
        collate_fn=hf_collate,
        generator=torch.Generator().manual_seed(0),
    )
    while True:
        yield from loader


def hf_feeder(ds: Any) -> Any:
    from fastfeed import Feeder

    return Feeder(ds, column="tokens", window=None, batch_size=HF_BATCH, shuffle=True)


def hf_feeder_batches(feeder: Any) -> Iterator[Tuple[Any, Any, Any]]:
    try:
        for b in wl.feeder_batches(feeder):
            yield b.x, b.mask, b.lengths
    finally:
        feeder.close()


def check_hf_batch(name: str, batch: Tuple[Any, Any, Any], flat: np.ndarray, offsets: np.ndarray) -> None:
    """64 rows, each a whole sequence of the dataset (distinct), right-padded with 0, the mask and
    lengths agreeing."""
    x, mask, lengths = (a.numpy() for a in batch)
    if x.shape[0] != HF_BATCH or x.dtype != np.int32 or mask.shape != x.shape:
        raise AssertionError(f"{name}: x {x.dtype} {x.shape}, mask {mask.shape}")
    seq_lengths = np.diff(offsets)
    rows = set()
    for r in range(HF_BATCH):
        n = int(lengths[r])
        if not (mask[r, :n].all() and not mask[r, n:].any() and not x[r, n:].any()):
            raise AssertionError(f"{name}: row {r}: mask, lengths and padding disagree")
        cand = np.flatnonzero((seq_lengths == n) & (flat[np.minimum(offsets[:-1], len(flat) - 1)] == x[r, 0]))
        hits = [int(i) for i in cand if np.array_equal(flat[offsets[i] : offsets[i + 1]], x[r, :n])]
        if not hits:
            raise AssertionError(f"{name}: row {r} is no sequence of the dataset")
        rows.add(hits[0])
    if len(rows) != HF_BATCH:
        raise AssertionError(f"{name}: a sequence appears twice in one batch")


# ----- 5: best-fit packing --------------------------------------------------------------------


@dataclass
class PackResult:
    padding: float  # feeder.stats().padding_fraction
    counted: float  # the same, counted from segment_ids
    rows: int
    seconds: float


def pack_epoch(seqs: List[np.ndarray]) -> PackResult:
    """One shuffled epoch of best-fit packed rows; checks that every sequence (all <= max_len) is
    placed whole, once, and every step is there."""
    from fastfeed import Feeder

    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    f = Feeder(seqs, window=None, pack="best_fit", max_len=PACK_LEN, batch_size=PACK_ROWS, shuffle=True)
    rows = segments = real = 0
    t0 = time.perf_counter()
    with f:
        for b in f:
            seg = b.segment_ids.numpy()
            if seg.shape[1] != PACK_LEN:
                raise AssertionError(f"best_fit: rows of {seg.shape[1]} steps, not {PACK_LEN}")
            rows += seg.shape[0]
            segments += int(seg.max(axis=1).sum())  # segments are numbered 1.. in each row
            real += int((seg > 0).sum())
        seconds = time.perf_counter() - t0
        padding = f.stats().padding_fraction
    if segments != len(seqs):
        raise AssertionError(f"best_fit: {segments:,} segments for {len(seqs):,} sequences: some were cut")
    if real != int(lengths.sum()):
        raise AssertionError(f"best_fit: {real:,} real steps, the sequences hold {int(lengths.sum()):,}")
    return PackResult(padding, 1 - real / (rows * PACK_LEN), rows, seconds)


# ----- the run --------------------------------------------------------------------------------


@dataclass
class Stream:
    key: str
    label: str
    make: Callable[[], Iterator[Any]]
    chunk: int  # timed batches per round
    drain: int  # untimed batches before each timed chunk (a Feeder's prefetch queue)
    samples: int  # samples per batch
    warmup: int = 20
    settle_s: float = 0.0


def peer_status(module: str) -> Tuple[Optional[str], str]:
    if importlib.util.find_spec(module) is None:
        return None, "not installed"
    try:
        mod = importlib.import_module(module)
    except Exception as e:
        return None, f"import failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return str(getattr(mod, "__version__", "?")), ""


def run_streams(
    streams: List[Stream], rounds: int, check: Callable[[str, Any], None], skipped: Dict[str, str]
) -> Tuple[Dict[str, wl.Timing], Dict[str, float], float]:
    """Starts each stream (set-up and first batch timed, the first batch checked), warms it up,
    then times them in interleaved rounds. Returns timings, set-up seconds and the background load."""
    live: Dict[str, Iterator[Any]] = {}
    setup: Dict[str, float] = {}
    try:
        for s in streams:
            progress(f"{s.label}: building, checking the first batch, {s.warmup} warm-up batches")
            t0 = time.perf_counter()
            try:
                it = s.make()
                first = next(it)
            except (TypeError, ValueError) as e:
                if not s.key.startswith("fastfeed"):
                    raise
                skipped[s.key] = not_available(e)
                progress(f"{s.label}: {skipped[s.key]}, skipped")
                continue
            setup[s.key] = time.perf_counter() - t0
            live[s.key] = it
            check(s.label, first)
            for _ in range(s.warmup):
                next(it)
        timed = [s for s in streams if s.key in live]
        probes = {s.key: wl.stream_probe(live[s.key], s.chunk, s.drain, s.settle_s) for s in timed}
        progress(f"{len(probes)} streams, {rounds} interleaved rounds")
        with wl.BackgroundLoad() as load:
            raw = wl.interleave(probes, rounds) if probes else {}
    finally:
        for it in live.values():
            wl._close(it)
    return {s.key: wl.Timing(tuple(raw[s.key]), s.chunk * s.samples) for s in timed}, setup, load.cores


def print_streams(
    title: str,
    streams: List[Stream],
    res: Dict[str, wl.Timing],
    setup: Dict[str, float],
    base: str,
    skipped: Dict[str, str],
    unit: str,
    tokens_per_sample: Optional[int] = None,
) -> None:
    print(f"\n### {title}\n")
    tok = " | Tokens/s (x)" if tokens_per_sample else ""
    base_label = {"nanogpt": "nanoGPT", "hf_loader": "DataLoader"}.get(base, base)
    print(f"| Contender | {unit}/s (median) | Spread{tok} | Rounds × batches | Set-up + first batch | ÷ {base_label} |")
    print("|---|---|---|---|---|---|" + ("---|" if tokens_per_sample else ""))
    ref = res.get(base)
    for s in streams:
        if s.key in skipped:
            print(
                f"| {s.label} | {skipped[s.key].replace('|', '/')} | |" + (" |" if tokens_per_sample else "") + " | | |"
            )
            continue
        t = res[s.key]
        ratio = f"{t.rate() / ref.rate():.2f}×" if ref is not None else "n/a"
        toks = f" | {t.rate() * tokens_per_sample:,.0f}" if tokens_per_sample else ""
        print(
            f"| {s.label} | {t.rate():,.0f} | ±{t.spread / 2:.0%}{toks} | {t.n}×{s.chunk} | "
            f"{setup[s.key]:.2f} s | {ratio} |"
        )


Shown = List[Callable[[], None]]  # tables to print, in order
Results = Dict[str, Tuple[float, str]]  # target key -> (value, as shown)


def run_tokens(tmp: str, n: int, rounds: int, q: int, results: Results, skipped: Dict[str, str]) -> Shown:
    progress(f"tokens: writing {n:,} uint16 tokens (one file and three parts) to {tmp}")
    import fastfeed

    tokens, path, parts = write_tokens(tmp, n)
    bounds = [0, *np.cumsum([len(p) for p in np.array_split(tokens, 3)]).tolist()]
    batch_bytes = 2 * BATCH * BLOCK * 8
    per_epoch = (len(tokens) - BLOCK) // BATCH  # as long as the one-file epoch: no restart while timed
    mixture = fastfeed.mix(dict(zip(MIX_WEIGHTS, parts)), weights=MIX_WEIGHTS)
    drain = drain_for(batch_bytes)
    streams = [
        Stream(
            "fastfeed",
            "fastfeed Feeder, one .npy",
            lambda: feeder_xy(token_feeder(path)),
            5000 // q,
            drain,
            BATCH,
            settle_s=0.05,
        ),
        Stream(
            "fastfeed_mix",
            "fastfeed Feeder, mix of 3 .npy (weights 0.5/0.3/0.2)",
            lambda: feeder_xy(token_feeder(mixture, steps_per_epoch=per_epoch)),
            5000 // q,
            drain,
            BATCH,
            settle_s=0.05,
        ),
        Stream(
            "nanogpt", "nanoGPT get_batch (np.memmap + torch.stack)", lambda: nanogpt_batches(path), 300 // q, 0, BATCH
        ),
    ]

    def check(label: str, batch: Any) -> None:
        check_token_batch(label, batch, tokens, bounds if label.startswith("fastfeed Feeder, mix") else [0, n])

    try:
        res, setup, load = run_streams(streams, rounds, check, skipped)
    finally:
        for p in [path, *parts]:
            os.remove(p)
    if "fastfeed" in res and "nanogpt" in res:
        r = res["fastfeed"].rate() / res["nanogpt"].rate()
        results["tokens"] = (r, f"{r:.1f}×")
    else:
        skipped["tokens"] = skipped.get("fastfeed", "not run")
    if "fastfeed_mix" in res and "fastfeed" in res:
        r = res["fastfeed_mix"].rate() / res["fastfeed"].rate()
        results["mixture"] = (r, f"{r:.2f}×")
    else:
        skipped["mixture"] = skipped.get("fastfeed_mix", skipped.get("fastfeed", "not run"))
    title = (
        f"Tokens: {n:,} uint16 tokens, block {BLOCK}, batch {BATCH}, int64 x and y "
        f"(other processes kept {load:.2f} cores busy)"
    )
    return [functools.partial(print_streams, title, streams, res, setup, "nanogpt", skipped, "Samples", BLOCK)]


def run_resume(tmp: str, rounds: int, results: Results, skipped: Dict[str, str]) -> Shown:
    progress(f"resume: a sparse uint8 .npy of {RESUME_WINDOWS + RESUME_WINDOW:,} steps")
    sparse = wl.create_sparse_file(tmp, RESUME_WINDOWS + RESUME_WINDOW)
    try:
        used = wl.allocated_bytes(sparse)
        if used > 64 << 20:
            skipped["resume"] = f"{tmp} does not make sparse files ({used >> 20} MiB allocated)"
            return []
        try:
            state = resume_state(sparse, RESUME_BATCH)
            check_resume(sparse)
        except (TypeError, ValueError) as e:
            skipped["resume"] = not_available(e)
            return []
        # Every repetition counts, the first included (no untimed warm-up).
        secs = wl.interleave({"resume": resume_probe(sparse, state)}, max(5, rounds), warmup=0)["resume"]
    finally:
        os.remove(sparse)
    t = wl.Timing(tuple(secs))
    results["resume"] = (t.median, f"{t.median * 1e3:.1f} ms")

    def show() -> None:
        print(f"\n### Resume: batch {RESUME_BATCH:,} of a 10^10-window epoch\n")
        print("| Timed | Median | First | Min | Max | Repetitions |")
        print("|---|---|---|---|---|---|")
        print(
            f"| `Feeder(path, window={RESUME_WINDOW}, target_shift=1, batch_size={BATCH}, shuffle=True)` + "
            f"`load_state_dict(state)` + first batch | {t.median * 1e3:.1f} ms | {t.seconds[0] * 1e3:.1f} ms | "
            f"{min(t.seconds) * 1e3:.1f} ms | {max(t.seconds) * 1e3:.1f} ms | {t.n} |"
        )

    return [show]


def run_hf(tmp: str, rounds: int, q: int, results: Results, skipped: Dict[str, str]) -> Shown:
    progress(f"hf: {HF_SEQUENCES:,} token lists as a Hugging Face dataset, saved and loaded back")
    ds, flat, offsets = write_hf_dataset(tmp, HF_SEQUENCES)
    mean_len = float(np.diff(offsets).mean())
    # A padded batch is about 2.5 times its real steps (lognormal lengths, padded to the longest).
    drain = drain_for(int(HF_BATCH * 4 * mean_len * 2.5))
    streams = [
        Stream(
            "fastfeed_hf",
            'fastfeed Feeder(ds, column="tokens", window=None)',
            lambda: hf_feeder_batches(hf_feeder(ds)),
            2000 // q,
            drain,
            HF_BATCH,
            settle_s=0.05,
        ),
        Stream(
            "hf_loader",
            "DataLoader(ds.with_format('torch', dtype=int32)) + pad_sequence, 0 workers",
            lambda: hf_loader_batches(ds),
            100 // q,
            0,
            HF_BATCH,
        ),
    ]
    res, setup, load = run_streams(streams, rounds, lambda label, b: check_hf_batch(label, b, flat, offsets), skipped)
    if "fastfeed_hf" in res and "hf_loader" in res:
        r = res["fastfeed_hf"].rate() / res["hf_loader"].rate()
        results["hf"] = (r, f"{r:.1f}×")
    else:
        skipped["hf"] = skipped.get("fastfeed_hf", "not run")
    title = (
        f"Hugging Face dataset: {HF_SEQUENCES:,} int32 token lists (lognormal lengths, median 150, mean "
        f"{mean_len:.0f}), padded batches of {HF_BATCH} (other processes kept {load:.2f} cores busy)"
    )
    return [functools.partial(print_streams, title, streams, res, setup, "hf_loader", skipped, "Sequences")]


def run_best_fit(results: Results, skipped: Dict[str, str]) -> Shown:
    progress(f"best_fit: W3's lengths, one epoch packed best-fit into rows of {PACK_LEN}")
    seqs = w3_sequences(w3_lengths())
    try:
        pr = pack_epoch(seqs)
    except (TypeError, ValueError) as e:
        skipped["best_fit"] = not_available(e)
        return []
    results["best_fit"] = (pr.padding, f"{pr.padding:.2%}")

    def show() -> None:
        print(
            f'\n### pack="best_fit": W3\'s {len(seqs):,} lengths into rows of {PACK_LEN}, batches of {PACK_ROWS} rows\n'
        )
        print("| Rows | Padding (stats) | Padding (counted) | Epoch time |")
        print("|---|---|---|---|")
        print(f"| {pr.rows:,} | {pr.padding:.2%} | {pr.counted:.2%} | {pr.seconds:.1f} s |")

    return [show]


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="3 rounds of half-length chunks: checks the script")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15, 3 with --quick)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)} (default all)")
    ap.add_argument("--tokens", type=int, default=TOKENS, help=f"tokens of the token file (default {TOKENS:,})")
    ap.add_argument("--tmpdir", default=None, help="where the files go (default: the system temp dir)")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch's intra-op threads (default 1, see above)")
    ap.add_argument("--strict", action="store_true", help="exit with status 1 if a target fails")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 15)
    q = 2 if args.quick else 1
    wanted = {k.strip() for k in args.only.split(",") if k.strip()}
    if wanted - set(PARTS):
        ap.error(f"--only: unknown part(s) {sorted(wanted - set(PARTS))}")

    import torch

    import fastfeed

    torch.set_num_threads(args.torch_threads)
    versions = {"fastfeed": fastfeed.__version__, "numpy": np.__version__, "torch": torch.__version__}
    skipped: Dict[str, str] = {}
    results: Results = {}
    out: Shown = []  # the tables, printed after the machine line
    tmp = tempfile.mkdtemp(prefix="fastfeed-w5-", dir=args.tmpdir)
    try:
        if "tokens" in wanted:
            out += run_tokens(tmp, args.tokens, rounds, q, results, skipped)
        if "resume" in wanted:
            out += run_resume(tmp, rounds, results, skipped)
        if "hf" in wanted:
            version, why = peer_status("datasets")
            if version is None:
                skipped["hf"] = skipped["hf_loader"] = why
                progress(f"hf: datasets {why}, skipped")
            else:
                versions["datasets"] = version
                out += run_hf(tmp, rounds, q, results, skipped)
        if "best_fit" in wanted:
            out += run_best_fit(results, skipped)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("## W5: language-model corpora\n")
    info = wl.machine_info()
    info.update(versions)
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    print(f"\ntorch intra-op threads: {torch.get_num_threads()}.")
    for show in out:
        show()
    print("\n| Target | Measured | Result |")
    print("|---|---|---|")
    failed = False
    for key, (goal, bound) in TARGETS.items():
        part = "tokens" if key == "mixture" else key
        if part not in wanted:
            continue
        if key not in results:
            print(f"| {goal} | | SKIPPED ({skipped.get(key, 'not run').split(':')[0]}) |")
            continue
        value, shown = results[key]
        ok = value <= bound if key in ("resume", "best_fit") else value >= bound
        failed |= not ok
        print(f"| {goal} | {shown} | {'PASS' if ok else 'FAIL'} |")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
