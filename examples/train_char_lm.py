"""A tiny character-level language model trained on a weighted mixture of two corpora.

    make example-lm                                     # in .venv-bench (datasets, megatron-core)
    .venv-bench/bin/python examples/train_char_lm.py [--steps 300] [--workdir DIR]

Both corpora ship on the machine, nothing is downloaded; each document is tokenised to its
bytes (a vocabulary of 256):

- "hf": the Python standard library's own source files (one document per file), written as a
  Hugging Face dataset (``datasets.Dataset.from_dict({"tokens": ...})``, ``save_to_disk``) and
  loaded back with ``load_from_disk``: Arrow files that fastfeed memory-maps and reads in place.
- "megatron": the license texts of the installed Python packages (one document per distinct
  text), written as a Megatron-LM indexed dataset (``P.bin`` + ``P.idx``) by megatron-core's
  ``IndexedDatasetBuilder``, or, where megatron-core is not installed, by ``write_megatron``
  below, which writes the same bytes.

``fastfeed.mix`` reads them together, 70% / 30% of the samples. Every sample is a window of
``--block`` bytes inside one document (windows never cross documents) with ``target_shift=1``
(the next byte of every position as its target). The model is a 2-layer causal transformer.

Midway through an epoch the script saves a checkpoint (the model, the optimizer and
``feeder.state_dict()``), then builds a new model, optimizer and Feeder, the Feeder with twice the
batch size (as after a restart on more machines), loads the checkpoint and goes on from the same
point of the epoch's sample order: nothing repeated, nothing skipped; the epoch keeps its
``steps_per_epoch`` batches, now of 64 windows. It prints the training loss as it goes and, at the start and the end,
the loss on held-out documents of each corpus; runs in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.metadata
import math
import os
import re
import struct
import sys
import sysconfig
import tempfile
import time
import warnings
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

import fastfeed
from fastfeed import Feeder

VOCAB = 256  # bytes
WEIGHTS = {"hf": 0.7, "megatron": 0.3}


# ----- the corpora -----------------------------------------------------------------------------


def stdlib_sources() -> List[np.ndarray]:
    """The standard library's top-level modules, one document (its bytes) per file."""
    paths = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    return [np.fromfile(p, dtype=np.uint8) for p in paths if os.path.getsize(p) > 0]


LICENSE_NAME = re.compile(r"(LICEN[CS]E|COPYING|NOTICE)", re.IGNORECASE)


def license_texts() -> List[np.ndarray]:
    """The license files of every installed distribution (and Python's own), each distinct text
    once: many packages ship the same MIT or Apache text, and copies would only be memorised."""
    paths = [os.path.join(sysconfig.get_paths()["stdlib"], "LICENSE.txt")]
    for dist in importlib.metadata.distributions():
        for f in dist.files or ():
            if LICENSE_NAME.search(os.path.basename(str(f))):
                paths.append(str(dist.locate_file(f)))
    seen, docs = set(), []
    for p in sorted(set(paths)):
        if not os.path.isfile(p):
            continue
        data = np.fromfile(p, dtype=np.uint8)
        digest = hashlib.sha1(data.tobytes()).digest()
        if data.size and digest not in seen:
            seen.add(digest)
            docs.append(data)
    if sum(d.size for d in docs) < 100_000:  # a bare environment: add the system's license texts
        docs += [np.fromfile(p, dtype=np.uint8) for p in sorted(glob.glob("/usr/share/common-licenses/*"))]
    return docs


def split(docs: List[np.ndarray], held_out: int) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Every `held_out`-th document (by a fixed shuffle) for validation, the rest for training."""
    order = np.random.default_rng(0).permutation(len(docs))
    val = set(order[:: max(1, held_out)].tolist())
    return [d for i, d in enumerate(docs) if i not in val], [d for i, d in enumerate(docs) if i in val]


def write_hf(docs: List[np.ndarray], path: str) -> Any:
    """A Hugging Face dataset with one column of byte lists, saved to disk and loaded back
    (memory-mapped Arrow files, as a dataset from the Hub or ``map`` leaves them)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset.from_dict({"tokens": docs}).save_to_disk(path)  # column type: List(uint8)
    return datasets.load_from_disk(path)


def write_megatron(docs: List[np.ndarray], prefix: str) -> str:
    """A Megatron-LM indexed dataset ``prefix.bin`` + ``prefix.idx``, one document per item.

    megatron-core's IndexedDatasetBuilder when it imports; otherwise the same bytes written here:
    ``.bin`` holds the documents back to back; ``.idx`` is b"MMIDIDX\\x00\\x00", version 1 (<Q),
    the dtype code (<B, 1 = uint8), the sequence count (<Q), the document-index count (<Q), the
    sequence lengths (int32), the sequences' byte offsets into .bin (int64) and the document
    indices (int64: 0, then the number of sequences after each document)."""
    try:
        with warnings.catch_warnings():  # it notes that Transformer Engine and Apex are missing
            warnings.simplefilter("ignore")
            from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    except ImportError:
        print("megatron-core is not installed: writing the Megatron files with NumPy", flush=True)
        with open(prefix + ".bin", "wb") as f:
            for d in docs:
                f.write(d.astype(np.uint8).tobytes())
        lengths = np.array([len(d) for d in docs], dtype=np.int32)
        pointers = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)]).astype(np.int64)
        doc_index = np.arange(len(docs) + 1, dtype=np.int64)
        with open(prefix + ".idx", "wb") as f:
            f.write(b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 1))
            f.write(struct.pack("<Q", len(lengths)) + struct.pack("<Q", len(doc_index)))
            f.write(lengths.tobytes() + pointers.tobytes() + doc_index.tobytes())
        return prefix
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint8)
    for d in docs:
        builder.add_document(torch.from_numpy(d), [len(d)])
    builder.finalize(prefix + ".idx")
    return prefix


# ----- the model -------------------------------------------------------------------------------


class CharTransformer(nn.Module):
    """Byte embeddings plus learned positions, pre-norm causal transformer layers, a linear head."""

    def __init__(self, block: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, width)
        self.pos = nn.Embedding(block, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(block), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.tok(x) + self.pos.weight[:t]
        h = self.blocks(h, mask=self.causal[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))


@torch.no_grad()
def held_out_loss(model: nn.Module, docs: List[np.ndarray], block: int, batches: int = 4) -> float:
    """Mean loss over the first `batches` batches of windows of held-out documents (a plain,
    unshuffled Feeder over a list of arrays, every 97th window)."""
    model.eval()
    feeder = Feeder(docs, window=block, target_shift=1, stride=97, batch_size=64, dtype="int64")
    losses = []
    with feeder:
        for i, (x, y) in enumerate(feeder):
            if i == batches:
                break
            losses.append(lm_loss(model, x, y).item())
    model.train()
    return float(np.mean(losses))


# ----- training --------------------------------------------------------------------------------


def make_feeder(sources: Dict[str, Any], args: argparse.Namespace, batch_size: int) -> Feeder:
    """The training feed: a weighted mixture, windows inside documents, next-byte targets."""
    return Feeder(
        fastfeed.mix(sources, weights=WEIGHTS),
        column="tokens",  # read from the components that have columns: the Hugging Face dataset
        window=args.block,
        target_shift=1,
        batch_size=batch_size,
        steps_per_epoch=args.steps_per_epoch,  # virtual epochs: a mixture streams on
        shuffle=True,
        seed=args.seed,
        dtype="int64",  # embedding indices; the targets, taken from the source, follow it
        with_index=True,  # batch.source: which corpus each window came from
        num_threads=1,  # the model's matrix products get the other core
    )


class Log:
    """The running mean of the loss over the last `every` steps and the corpus shares so far."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.losses: List[float] = []
        self.counts = np.zeros(len(WEIGHTS), dtype=np.int64)
        self.step = 0
        self.t0 = time.perf_counter()
        self.printed: List[Tuple[int, float]] = []

    def add(self, loss: float, batch: Any, epoch: int) -> None:
        self.step += 1
        self.losses.append(loss)
        self.counts += np.bincount(batch.source.numpy(), minlength=len(WEIGHTS))
        if self.step % self.every == 0:
            mean = float(np.mean(self.losses[-self.every :]))
            self.printed.append((self.step, mean))
            shares = " / ".join(f"{n} {c / self.counts.sum():.0%}" for n, c in zip(WEIGHTS, self.counts))
            print(
                f"step {self.step:4d}  epoch {epoch}  batch {batch.x.shape[0]:3d}  loss {mean:.3f}  "
                f"({shares} of {self.counts.sum():,} windows, {time.perf_counter() - self.t0:.0f} s)",
                flush=True,
            )


def train_epoch(
    feeder: Feeder, model: nn.Module, opt: torch.optim.Optimizer, log: Log, epoch: int, stop_after: int = 0
) -> None:
    """One epoch of `feeder` (the rest of it, after load_state_dict); at most `stop_after` batches
    when that is > 0."""
    for n, batch in enumerate(feeder, 1):
        x, y = batch
        loss = lm_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.add(loss.item(), batch, epoch)
        if n == stop_after:
            break


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--epochs", type=int, default=6, help="epochs of --steps-per-epoch batches (default 6)")
    ap.add_argument("--steps-per-epoch", type=int, default=40, help="batches per epoch (default 40)")
    ap.add_argument("--batch-size", type=int, default=32, help="before the resume; twice that after (default 32)")
    ap.add_argument("--block", type=int, default=64, help="bytes per window (default 64)")
    ap.add_argument("--width", type=int, default=96, help="model width (default 96)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=25, help="steps between loss lines (default 25)")
    ap.add_argument("--workdir", default=None, help="where the corpora and checkpoint go (default: a temp dir)")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory(prefix="fastfeed-lm-") as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)

        # 1. The corpora, each split into training and held-out documents, and written out.
        hf_train, hf_val = split(stdlib_sources(), held_out=20)
        mg_train, mg_val = split(license_texts(), held_out=20)
        hf = write_hf(hf_train, os.path.join(work, "stdlib_hf"))
        megatron = write_megatron(mg_train, os.path.join(work, "licenses"))
        for name, docs in (("hf", hf_train), ("megatron", mg_train)):
            print(f"{name:8s}: {len(docs):4d} documents, {sum(d.size for d in docs) / 1e6:.2f} MB of bytes")
        print(f"hf      : datasets.load_from_disk(): {hf.cache_files[0]['filename']}, column {hf.column_names[0]!r}")
        print(f"megatron: prefix {megatron} (.bin {os.path.getsize(megatron + '.bin'):,} bytes, .idx)")
        sources = {"hf": hf, "megatron": megatron}

        model = CharTransformer(args.block, args.width, args.layers, args.heads)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: {args.layers} layers, width {args.width}, {n_params:,} parameters; block {args.block}")
        before = {n: held_out_loss(model, v, args.block) for n, v in (("hf", hf_val), ("megatron", mg_val))}
        print(f"held-out loss before training: hf {before['hf']:.3f}, megatron {before['megatron']:.3f}")
        print(f"(a uniform guess over {VOCAB} bytes scores ln {VOCAB} = {math.log(VOCAB):.3f})\n")

        # 2. Train on batches of --batch-size; halfway through the middle epoch, checkpoint.
        log = Log(args.log_every)
        small = make_feeder(sources, args, args.batch_size)
        mid_epoch = args.epochs // 2
        ckpt = os.path.join(work, "checkpoint.pt")
        with small:
            for epoch in range(mid_epoch):
                train_epoch(small, model, opt, log, epoch)
            train_epoch(small, model, opt, log, mid_epoch, stop_after=len(small) // 2)
            state = small.state_dict()
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "feeder": state}, ckpt)
        print(
            f"\nsaved {ckpt}: epoch {state['epoch']}, after batch {state['batch']} of {len(small)} "
            f"(batch size {args.batch_size})"
        )

        # 3. A restart: a new model, optimizer and Feeder, the new Feeder with twice the batch size,
        # all loaded from the checkpoint. The epoch goes on from the same window of its order.
        model = CharTransformer(args.block, args.width, args.layers, args.heads)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
        saved = torch.load(ckpt, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        big = make_feeder(sources, args, 2 * args.batch_size)
        big.load_state_dict(saved["feeder"])
        print(f"resumed with batch size {2 * args.batch_size} ({len(big)} batches per epoch)\n")
        with big:
            for epoch in range(saved["feeder"]["epoch"], args.epochs):  # the saved epoch's rest first
                train_epoch(big, model, opt, log, epoch)

        after = {n: held_out_loss(model, v, args.block) for n, v in (("hf", hf_val), ("megatron", mg_val))}
        print(f"\nheld-out loss after training:  hf {after['hf']:.3f}, megatron {after['megatron']:.3f}")
        first, last = log.printed[0][1], log.printed[-1][1]
        print(f"training loss {first:.3f} (first {args.log_every} steps) -> {last:.3f} (last {args.log_every} steps)")
        return 0 if last < first and all(after[n] < before[n] for n in after) else 1


if __name__ == "__main__":
    sys.exit(main())
