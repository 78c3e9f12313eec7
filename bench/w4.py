"""W4: forecasting windows with covariates, fastfeed against its peers, in one run.

    .venv-bench/bin/python bench/w4.py                  # the full run (about a minute on 2 cores)
    .venv-bench/bin/python bench/w4.py --quick          # fewer, shorter rounds: checks the script
    .venv-bench/bin/python bench/w4.py --only numpy,gluonts,pf

The workload: 100 series x 5,000 steps (float32): a target, 3 observed covariates, 4 calendar
columns known in advance (hour-of-day and day-of-week, sin and cos) and 2 static reals per
series. Encoder 168 steps, horizon 24, shuffled batches of 64. Every contender hands over, per
batch, the same five torch tensors:

    encoder target (B, 168), encoder covariates (B, 168, 3), known (B, 192, 4), static (B, 2),
    decoder target (B, 24)

Contenders (a peer that does not import is reported as "not installed" and skipped):

- fastfeed: ``Feeder(targets, window=168, horizon=24, covariates=, known=, static=,
  batch_size=64, shuffle=True, output="torch")``.
- pytorch-forecasting: ``TimeSeriesDataSet(...).to_dataloader(train=True, batch_size=64,
  num_workers=0)`` with every normaliser and scaler off; the five tensors are taken out of its
  ``encoder_cont`` / ``decoder_cont`` / ``encoder_target`` and ``y``.
- GluonTS: a ``ListDataset`` (target, ``feat_dynamic_real`` known, ``past_feat_dynamic_real``
  observed, ``feat_static_real``), GluonTS's ``TFTInstanceSplitter`` (the instance splitter for
  known and past-only dynamic features) with ``ExpectedNumInstanceSampler(num_instances=1)``
  as GluonTS's torch estimators use it, ``SelectFields``, and ``TrainDataLoader`` with a
  shuffle buffer and ``stack_fn=batchify`` (gluonts.torch), as GluonTS's torch models load data.
- NumPy: the arrays stacked (series, steps, feat); per batch random (series, start) pairs from a
  NumPy Generator, a fancy-index gather of each field, ``torch.from_numpy``.

Every producer is an endless stream, timed in interleaved rounds (bench/workloads.py): each
round times a fixed number of consecutive batches of each contender, a number fixed per
contender so that a round of the slow peers stays short (pytorch-forecasting makes ~3k samples/s,
an epoch of 480,900 samples would take minutes). Steady state: each stream runs warm-up batches
first, and the Feeder's prefetch queue is drained, untimed, before its timed batches. The first
batch of every contender is checked against the data (every row a real window of one series,
fields aligned). The Markdown table goes to stdout, progress to stderr.

torch runs on one intra-op thread (``--torch-threads 1``), for every contender. The peers'
data paths run many small tensor operations (collation, stacking) for which torch's thread pool
costs more than it gives: on a 2-core machine shared with other work, pytorch-forecasting and
GluonTS made 2-3x fewer samples/s with torch's default two threads. One thread is their best
case. fastfeed's own native threads do not depend on it, and NumPy only calls torch.from_numpy.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl

SERIES = 100
STEPS = 5_000
ENCODER = 168
HORIZON = 24
BATCH = 64
N_COV = 3
N_KNOWN = 4
N_STATIC = 2

# fastfeed's speed-up over each peer that W4 asks for.
TARGETS = {"pf": 50.0, "gluonts": 15.0, "numpy": 3.0}

# One batch: encoder target, encoder covariates, known, static, decoder target.
Fields = Tuple[Any, Any, Any, Any, Any]
FIELD_SHAPES = (
    (BATCH, ENCODER),
    (BATCH, ENCODER, N_COV),
    (BATCH, ENCODER + HORIZON, N_KNOWN),
    (BATCH, N_STATIC),
    (BATCH, HORIZON),
)
FIELD_NAMES = ("encoder target", "encoder covariates", "known", "static", "decoder target")


def progress(msg: str) -> None:
    print(f"[w4 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- the data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class W4Data:
    target: np.ndarray  # (series, steps)
    covariates: np.ndarray  # (series, steps, 3)
    known: np.ndarray  # (series, steps, 4)
    static: np.ndarray  # (series, 2)


def make_data(series: int = SERIES, steps: int = STEPS, seed: int = 0) -> W4Data:
    """Hourly series: a daily and weekly pattern plus noise, covariates that move with the target,
    calendar columns from each series' own start hour, and two static reals (unique per series)."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 24 * 7, series)[:, None] + np.arange(steps)  # each series starts elsewhere
    hod = 2 * np.pi * (hours % 24) / 24
    dow = 2 * np.pi * (hours % (24 * 7)) / (24 * 7)
    known = np.stack([np.sin(hod), np.cos(hod), np.sin(dow), np.cos(dow)], axis=-1).astype(np.float32)
    static = rng.normal(size=(series, N_STATIC)).astype(np.float32)
    noise = rng.normal(size=(series, steps)).cumsum(axis=1) * 0.05 + rng.normal(size=(series, steps))
    target = (10 * static[:, :1] + 3 * known[..., 0] + known[..., 2] + noise).astype(np.float32)
    covariates = (
        target[..., None] * rng.normal(size=(series, 1, N_COV)) + rng.normal(size=(series, steps, N_COV))
    ).astype(np.float32)
    return W4Data(target, covariates, known, static)


# ----- contenders ----------------------------------------------------------------------------


def numpy_batches(d: W4Data, seed: int = 0) -> Iterator[Fields]:
    """The hand-written gather: random (series, start) pairs, one fancy index per field."""
    import torch

    rng = np.random.default_rng(seed)
    starts = d.target.shape[1] - ENCODER - HORIZON + 1
    steps = np.arange(ENCODER + HORIZON)
    while True:
        s = rng.integers(0, d.target.shape[0], BATCH)
        rows = s[:, None]
        cols = rng.integers(0, starts, BATCH)[:, None] + steps  # (B, 192)
        enc, dec = cols[:, :ENCODER], cols[:, ENCODER:]
        yield (
            torch.from_numpy(d.target[rows, enc]),
            torch.from_numpy(d.covariates[rows, enc]),
            torch.from_numpy(d.known[rows, cols]),
            torch.from_numpy(d.static[s]),
            torch.from_numpy(d.target[rows, dec]),
        )


def fastfeed_feeder(d: W4Data, seed: int = 0) -> Any:
    from fastfeed import Feeder

    return Feeder(
        list(d.target),
        window=ENCODER,
        horizon=HORIZON,
        covariates=list(d.covariates),
        known=list(d.known),
        static=d.static,
        batch_size=BATCH,
        shuffle=True,
        seed=seed,
        output="torch",
    )


def fastfeed_batches(feeder: Any) -> Iterator[Fields]:
    try:
        for b in wl.feeder_batches(feeder):
            yield b.x, b.covariates, b.known, b.static, b.y
    finally:
        feeder.close()


COV_COLS = [f"cov{i}" for i in range(N_COV)]
KNOWN_COLS = [f"known{i}" for i in range(N_KNOWN)]
STATIC_COLS = [f"static{i}" for i in range(N_STATIC)]


def pf_dataset(d: W4Data) -> Any:
    """pytorch-forecasting's TimeSeriesDataSet over a long DataFrame, every transformation off."""
    import pandas as pd
    from pytorch_forecasting import TimeSeriesDataSet

    s, t = d.target.shape
    frame = {
        # Plain integer ids: a pandas Categorical group column made its batches 2-3x slower.
        "series": np.repeat(np.arange(s, dtype=np.int64), t),
        "time_idx": np.tile(np.arange(t, dtype=np.int64), s),
        "target": d.target.reshape(-1),
    }
    for i, c in enumerate(COV_COLS):
        frame[c] = d.covariates[..., i].reshape(-1)
    for i, c in enumerate(KNOWN_COLS):
        frame[c] = d.known[..., i].reshape(-1)
    for i, c in enumerate(STATIC_COLS):
        frame[c] = np.repeat(d.static[:, i], t)
    return TimeSeriesDataSet(
        pd.DataFrame(frame),
        time_idx="time_idx",
        target="target",
        group_ids=["series"],
        max_encoder_length=ENCODER,
        min_encoder_length=ENCODER,
        max_prediction_length=HORIZON,
        min_prediction_length=HORIZON,
        static_reals=STATIC_COLS,
        time_varying_known_reals=KNOWN_COLS,
        time_varying_unknown_reals=["target", *COV_COLS],
        target_normalizer=None,  # an identity TorchNormalizer
        scalers=dict.fromkeys(COV_COLS + KNOWN_COLS + STATIC_COLS),  # absent means StandardScaler
        add_relative_time_idx=False,
        add_target_scales=False,
        add_encoder_length=False,
    )


def pf_batches(dataset: Any) -> Iterator[Fields]:
    import torch

    loader = dataset.to_dataloader(train=True, batch_size=BATCH, num_workers=0)
    reals = list(dataset.reals)
    cov = [reals.index(c) for c in COV_COLS]
    known = [reals.index(c) for c in KNOWN_COLS]
    static = [reals.index(c) for c in STATIC_COLS]
    for x, (y, _weight) in wl._forever(lambda: iter(loader)):
        enc, dec = x["encoder_cont"], x["decoder_cont"]
        yield (
            x["encoder_target"],
            enc[..., cov],
            torch.cat([enc[..., known], dec[..., known]], dim=1),
            enc[:, 0, static],
            y,
        )


GLUONTS_FIELDS = ["past_target", "future_target", "past_feat_dynamic_real", "feat_dynamic_real", "feat_static_real"]


def gluonts_loader(d: W4Data, shuffle_buffer: int = 4 * BATCH) -> Any:
    import pandas as pd
    from gluonts.dataset.common import ListDataset
    from gluonts.dataset.loader import TrainDataLoader
    from gluonts.torch.batchify import batchify
    from gluonts.transform import ExpectedNumInstanceSampler, SelectFields
    from gluonts.transform.split import TFTInstanceSplitter

    start = pd.Period("2024-01-01 00:00", freq="h")
    entries = [
        {
            "start": start,
            "target": d.target[i],
            # GluonTS's layout: (features, steps), contiguous.
            "feat_dynamic_real": np.ascontiguousarray(d.known[i].T),
            "past_feat_dynamic_real": np.ascontiguousarray(d.covariates[i].T),
            "feat_static_real": d.static[i],
        }
        for i in range(d.target.shape[0])
    ]
    dataset = ListDataset(entries, freq="h")
    splitter = TFTInstanceSplitter(
        instance_sampler=ExpectedNumInstanceSampler(num_instances=1.0, min_past=ENCODER, min_future=HORIZON),
        past_length=ENCODER,
        future_length=HORIZON,
        observed_value_field=None,
        time_series_fields=["feat_dynamic_real"],  # known: past and future steps, (192, 4)
        past_time_series_fields=["past_feat_dynamic_real"],  # observed: past steps only, (168, 3)
    )
    return TrainDataLoader(
        dataset,
        transform=splitter + SelectFields(GLUONTS_FIELDS),
        batch_size=BATCH,
        stack_fn=batchify,
        shuffle_buffer_length=shuffle_buffer,
    )


def gluonts_batches(loader: Any) -> Iterator[Fields]:
    for b in loader:  # endless: num_batches_per_epoch=None
        yield (
            b["past_target"],
            b["past_feat_dynamic_real"],
            b["feat_dynamic_real"],
            b["feat_static_real"],
            b["future_target"],
        )


# ----- checks --------------------------------------------------------------------------------


def check_batch(name: str, batch: Fields, d: W4Data) -> None:
    """Every field a float32 tensor of the expected shape, and every row a real window: the
    static row names the series, the encoder target finds the start, and the covariates,
    known columns and decoder target must be that series' steps from there."""
    import torch

    for field, a, shape in zip(FIELD_NAMES, batch, FIELD_SHAPES):
        if not isinstance(a, torch.Tensor) or a.dtype != torch.float32 or tuple(a.shape) != shape:
            got = f"{type(a).__name__} {getattr(a, 'dtype', '')} {tuple(getattr(a, 'shape', ()))}"
            raise AssertionError(f"{name}: {field} is {got}, expected float32 tensor {shape}")
    enc, cov, known, static, dec = (a.numpy() for a in batch)
    windows = np.lib.stride_tricks.sliding_window_view(d.target, ENCODER, axis=1)
    for row in range(BATCH):
        (series,) = np.flatnonzero((d.static == static[row]).all(axis=1))
        (start,) = np.flatnonzero((windows[series] == enc[row]).all(axis=1))
        end = start + ENCODER + HORIZON
        if end > d.target.shape[1]:
            raise AssertionError(f"{name}: row {row} runs past the end of series {series}")
        expect = (
            d.covariates[series, start : start + ENCODER],
            d.known[series, start:end],
            d.target[series, start + ENCODER : end],
        )
        for field, got, want in zip(
            ("encoder covariates", "known", "decoder target"), (cov[row], known[row], dec[row]), expect
        ):
            if not np.array_equal(got, want):
                raise AssertionError(
                    f"{name}: row {row} (series {series}, start {start}): {field} differs from the data"
                )


# ----- the run -------------------------------------------------------------------------------


@dataclass
class Contender:
    key: str  # the name --only takes
    label: str
    module: Optional[str]  # the peer's package, None for fastfeed and NumPy
    imports: Tuple[str, ...]  # modules imported before the set-up is timed
    chunk: int  # timed batches per round
    warmup: int  # untimed batches once, after the first
    drain: int = 0  # untimed batches before every timed chunk (a prefetch queue)
    settle_s: float = 0.0


def contenders(quick: bool) -> List[Contender]:
    q = 2 if quick else 1
    return [
        Contender("fastfeed", "fastfeed Feeder (output=torch)", None, (), 1000 // q, 300 // q, drain=24, settle_s=0.05),
        Contender("numpy", "NumPy fancy-index gather + torch.from_numpy", None, (), 400 // q, 100 // q),
        Contender(
            "gluonts",
            "GluonTS TFTInstanceSplitter + TrainDataLoader (batchify)",
            "gluonts",
            ("gluonts.dataset.common", "gluonts.dataset.loader", "gluonts.torch.batchify", "gluonts.transform.split"),
            32 // q,
            12,
        ),
        Contender(
            "pf",
            "pytorch-forecasting TimeSeriesDataSet.to_dataloader",
            "pytorch_forecasting",
            ("pytorch_forecasting",),
            24 // q,
            8 // q,
        ),
    ]


def peer_status(module: str, imports: Tuple[str, ...]) -> Tuple[Optional[str], str]:
    """(version, '') when the peer and the modules its contender uses import, else (None, why)."""
    if importlib.util.find_spec(module) is None:
        return None, "not installed"
    try:
        mod = importlib.import_module(module)
        for name in imports:
            importlib.import_module(name)
    except Exception as e:  # a broken install (say, a torchvision built for another torch)
        return None, f"import failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return str(getattr(mod, "__version__", "?")), ""


def make_stream(key: str, d: W4Data) -> Iterator[Fields]:
    if key == "fastfeed":
        return fastfeed_batches(fastfeed_feeder(d))
    if key == "numpy":
        return numpy_batches(d)
    if key == "gluonts":
        return gluonts_batches(gluonts_loader(d))
    if key == "pf":
        return pf_batches(pf_dataset(d))
    raise ValueError(key)


def fmt_rate(r: float) -> str:
    return f"{r:,.0f}"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="3 rounds of half-length chunks: checks the script")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15, 3 with --quick)")
    ap.add_argument(
        "--only",
        default="fastfeed,numpy,gluonts,pf",
        help="comma-separated: fastfeed, numpy, gluonts, pf (default all)",
    )
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch's intra-op threads for every contender (default 1: the peers' best case, see the docstring)",
    )
    ap.add_argument("--strict", action="store_true", help="exit with status 1 if a target fails")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 15)
    wanted = {k.strip() for k in args.only.split(",") if k.strip()}
    all_cases = contenders(args.quick)
    unknown = wanted - {c.key for c in all_cases}
    if unknown:
        ap.error(f"--only: unknown contender(s) {sorted(unknown)}")

    import torch

    import fastfeed

    # GluonTS asks for orjson at import; it only serialises JSON, which W4 never does.
    warnings.filterwarnings("ignore", message="Using `json`-module", category=UserWarning)
    torch.set_num_threads(args.torch_threads)
    np.random.seed(0)  # noqa: NPY002 (GluonTS's instance sampler draws from NumPy's global generator)
    random.seed(0)
    torch.manual_seed(0)  # pytorch-forecasting's shuffling draws from torch's global generator
    progress(f"data: {SERIES} series x {STEPS:,} steps, encoder {ENCODER}, horizon {HORIZON}, batch {BATCH}")
    d = make_data()

    versions = {"fastfeed": fastfeed.__version__, "numpy": np.__version__, "torch": torch.__version__}
    skipped: Dict[str, str] = {}
    streams: Dict[str, Iterator[Fields]] = {}
    cases = [c for c in all_cases if c.key in wanted]
    setup_s: Dict[str, float] = {}
    try:
        for c in cases:
            if c.module is not None:
                version, why = peer_status(c.module, c.imports)
                if version is None:
                    skipped[c.key] = why
                    progress(f"{c.label}: {why}, skipped")
                    continue
                versions[c.module.replace("_", "-")] = version
            progress(f"{c.label}: building, checking the first batch, {c.warmup} warm-up batches")
            t0 = time.perf_counter()
            try:
                stream = make_stream(c.key, d)
                first = next(stream)
            except TypeError as e:
                if c.key != "fastfeed" or "unexpected keyword" not in str(e):
                    raise
                # covariates=, known= and static= are newer than some builds of the core.
                skipped[c.key] = f"not available in this build: {e}"
                progress(f"{c.label}: {e}, skipped")
                continue
            setup_s[c.key] = time.perf_counter() - t0
            streams[c.key] = stream
            check_batch(c.label, first, d)
            for _ in range(c.warmup):
                next(stream)
        timed = [c for c in cases if c.key in streams]
        probes = {c.key: wl.stream_probe(streams[c.key], c.chunk, c.drain, c.settle_s) for c in timed}
        progress(f"{len(probes)} contenders, {rounds} interleaved rounds")
        with wl.BackgroundLoad() as load:
            raw = wl.interleave(probes, rounds)
    finally:
        for it in streams.values():
            wl._close(it)
        streams.clear()
    res = {c.key: wl.Timing(tuple(raw[c.key]), c.chunk * BATCH) for c in timed}

    print(f"## W4: forecasting windows ({SERIES} series × {STEPS:,} steps, encoder {ENCODER}, horizon {HORIZON})\n")
    info = wl.machine_info()
    info.update(versions)
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    threads = torch.get_num_threads()
    print(f"\ntorch intra-op threads: {threads}. Other processes kept {load.cores:.2f} cores busy during the rounds.\n")
    ff = res.get("fastfeed")
    print(
        "| Contender | Samples/s (median) | Spread | Rounds × batches | Set-up + first batch | fastfeed ÷ contender |"
    )
    print("|---|---|---|---|---|---|")
    for c in cases:
        if c.key in skipped:
            print(f"| {c.label} | {skipped[c.key].replace('|', '/')} | | | | |")
            continue
        t = res[c.key]
        ratio = f"{ff.rate() / t.rate():.1f}×" if ff is not None else "n/a"
        spread = f"±{t.spread / 2:.0%}"
        print(f"| {c.label} | {fmt_rate(t.rate())} | {spread} | {t.n}×{c.chunk} | {setup_s[c.key]:.2f} s | {ratio} |")

    print("\n| Target | Ratio | Result |")
    print("|---|---|---|")
    failed = False
    for c in cases:
        if c.key not in TARGETS:
            continue
        goal = f"fastfeed ≥ {TARGETS[c.key]:g}× {c.label.split(' ')[0]}"
        if c.key in skipped:
            print(f"| {goal} | | SKIPPED ({skipped[c.key].split(':')[0]}) |")
        elif ff is None:
            why = skipped.get("fastfeed", "fastfeed not run").split(":")[0]
            print(f"| {goal} | | SKIPPED ({why}) |")
        else:
            r = ff.rate() / res[c.key].rate()
            ok = r >= TARGETS[c.key]
            failed |= not ok
            print(f"| {goal} | {r:.1f}× | {'PASS' if ok else 'FAIL'} |")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
