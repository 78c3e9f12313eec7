"""W3: variable-length int32 sequences padded to the longest in each batch, with a mask.

200,000 sequences, lengths lognormal (median 150, sigma 1.0) clipped to [1, 2048], batch 64,
shuffled. Producers: the Feeder (from a list of arrays and from a dataset directory), a
DataLoader with a pad_sequence collate (0 and 2 workers), and a hand-written NumPy padder.
Every producer yields (x, mask, lengths) per batch.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from fastfeed import Feeder

import workloads as wl

W3_SEQUENCES = 200_000
W3_BATCH = 64
W3_CHUNK = 200  # batches per timed probe
# Batches run untimed before each probe: more than any producer's queue (Feeder prefetch,
# DataLoader's 2 workers x prefetch_factor 2).
W3_DRAIN = 24


def w3_lengths(n: int = W3_SEQUENCES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(150), 1.0, n).astype(np.int64), 1, 2048)


def w3_sequences(lengths: np.ndarray, seed: int = 0) -> List[np.ndarray]:
    """One flat buffer cut into views: the way token data usually sits in memory."""
    rng = np.random.default_rng(seed)
    flat = rng.integers(1, 50_000, int(lengths.sum()), dtype=np.int32)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]


def numpy_padder(seqs: List[np.ndarray], batch: int = W3_BATCH, seed: int = 0) -> Iterator[Tuple[Any, ...]]:
    """The hand-written baseline: a shuffled order, then per batch one zeroed array and a row copy each."""
    rng = np.random.default_rng(seed)
    lengths = np.array([len(s) for s in seqs])
    while True:
        order = rng.permutation(len(seqs))
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            lens = lengths[idx]
            x = np.zeros((len(idx), lens.max()), dtype=np.int32)
            for row, i in enumerate(idx):
                x[row, : lens[row]] = seqs[i]
            mask = np.arange(x.shape[1]) < lens[:, None]
            yield x, mask, lens


class SequenceDataset:
    """A map-style Dataset: one sequence per __getitem__, as a DataLoader wants it."""

    def __init__(self, seqs: List[np.ndarray]) -> None:
        self.seqs = seqs

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.from_numpy(self.seqs[i])


def pad_collate(items: List[Any]) -> Tuple[Any, ...]:
    import torch
    from torch.nn.utils.rnn import pad_sequence

    lengths = torch.tensor([len(t) for t in items], dtype=torch.int64)
    x = pad_sequence(items, batch_first=True)
    mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    return x, mask, lengths


def loader_batches(seqs: List[np.ndarray], workers: int) -> Iterator[Any]:
    import torch

    loader = torch.utils.data.DataLoader(
        SequenceDataset(seqs),
        batch_size=W3_BATCH,
        shuffle=True,
        num_workers=workers,
        collate_fn=pad_collate,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    while True:
        yield from loader


def feeder_batches(source: Any, **kw: Any) -> Iterator[Any]:
    f = Feeder(source, window=None, batch_size=W3_BATCH, shuffle=True, **kw)
    while True:
        for b in f:
            yield b.x, b.mask, b.lengths


def w3_cases(seqs: List[np.ndarray], dataset_dir: Optional[str]) -> Dict[str, Callable[[], Iterator[Any]]]:
    cases: Dict[str, Callable[[], Iterator[Any]]] = {
        "Feeder (list of arrays, output=torch)": lambda: feeder_batches(seqs),
    }
    if dataset_dir is not None:
        cases["Feeder (dataset directory, output=torch)"] = lambda: feeder_batches(dataset_dir)
    cases["NumPy row-copy padder"] = lambda: numpy_padder(seqs)
    cases["DataLoader + pad_sequence, 0 workers"] = lambda: loader_batches(seqs, 0)
    cases["DataLoader + pad_sequence, 2 workers"] = lambda: loader_batches(seqs, 2)
    return cases


def measure_w3(seqs: List[np.ndarray], dataset_dir: Optional[str], rounds: int) -> Dict[str, wl.Timing]:
    streams = {name: make() for name, make in w3_cases(seqs, dataset_dir).items()}
    probes = {name: wl.stream_probe(it, W3_CHUNK, W3_DRAIN, settle_s=0.05) for name, it in streams.items()}
    try:
        res = wl.interleave(probes, rounds)
    finally:
        for it in streams.values():
            close = getattr(it, "close", None)
            if close is not None:
                close()
    return {name: wl.Timing(tuple(secs), W3_CHUNK * W3_BATCH) for name, secs in res.items()}


def padding_fractions(seqs: List[np.ndarray]) -> Dict[str, float]:
    """Padded steps / all steps over one epoch: random batches, buckets, packing."""
    out = {}
    for name, kw in (
        ("random batches", {}),
        ("bucket=True", {"bucket": True}),
        ("pack=True, max_len=2048", {"pack": True, "max_len": 2048}),
    ):
        f = Feeder(seqs, window=None, batch_size=W3_BATCH, shuffle=True, output="numpy", **kw)
        for _ in f:
            pass
        out[name] = f.stats().padding_fraction
    return out


def write_w3_dataset(seqs: List[np.ndarray], directory: str) -> Optional[str]:
    try:
        from fastfeed import write_dataset
    except ImportError:
        return None
    path = os.path.join(directory, "w3-dataset")
    write_dataset(path, seqs)
    return path
