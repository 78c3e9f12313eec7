"""fastfeed's benchmarks, measured in one run, printed as one Markdown table.

    .venv/bin/python bench/run.py              # the full run (about a minute on 2 cores)
    .venv/bin/python bench/run.py --quick      # fewer rounds: a smoke test of the script
    .venv/bin/python bench/run.py --skip-sparse --tmpdir /mnt/fast

The table goes to stdout, progress to stderr. Every number is a median over repetitions;
the cases of a workload run in interleaved rounds, so that load from other processes falls
on all of them alike. The workloads themselves live in bench/workloads.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import w3

import workloads as wl

# ----- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    case: str
    median: str
    reps: str = ""
    spread: str = ""
    ratio: str = ""
    target: str = ""


class Table:
    """Rows of one Markdown table, printed at the end (so progress lines do not interleave)."""

    HEADER = ("Workload", "Case", "Median", "Reps", "Spread", "Ratio", "Target")

    def __init__(self) -> None:
        self.rows: List[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def render(self) -> str:
        lines = ["| " + " | ".join(self.HEADER) + " |", "|" + "|".join("---" for _ in self.HEADER) + "|"]
        for r in self.rows:
            cells = (r.workload, r.case, r.median, r.reps, r.spread, r.ratio, r.target)
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return "\n".join(lines)


def verdict(ok: bool, text: str) -> str:
    return f"{text} {'✅' if ok else '❌'}"


def spread(t: wl.Timing) -> str:
    return f"±{t.spread / 2:.0%}"


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- workloads -----------------------------------------------------------------------------


def run_w1(table: Table, rounds: int) -> None:
    progress(f"W1: {rounds} interleaved rounds of one epoch per case")
    res = wl.measure_w1(rounds)
    feeder = res["Feeder (output=numpy)"].median
    for name, t in res.items():
        table.add(
            Row(
                "W1 epoch (990 batches of 1)",
                name,
                f"{t.median * 1e3:.3f} ms",
                str(t.n),
                spread(t),
                f"{t.median / feeder:.1f}× Feeder(numpy)",
            )
        )
    feeders = ("Feeder (output=numpy)", "Feeder (output=torch)")
    hot = wl.measure_w1_sustained(feeders, epochs=200, rounds=5 if rounds < 40 else 9)
    for name in feeders:
        t = hot[name]
        table.add(
            Row(
                "W1 epoch (990 batches of 1)",
                f"{name}, 200 epochs back to back (hot caches, collector on)",
                f"{t.median * 1e3:.3f} ms",
                f"{t.n}×200",
                spread(t),
                f"{t.median / feeder:.1f}× Feeder(numpy)",
            )
        )
    if "Keras TimeseriesGenerator (tf_keras)" not in res:
        table.add(Row("W1 epoch (990 batches of 1)", "Keras TimeseriesGenerator (tf_keras)", "not installed"))
    for name in feeders:
        cold, warm = res[name].median * 1e3, hot[name].median * 1e3
        ok = cold <= 1.0 and warm <= 1.0
        mark = "✅" if ok else ("✅ back to back, ❌ interleaved" if warm <= 1.0 else "❌")
        table.add(
            Row(
                "Target",
                f"W1: one {name} epoch (interleaved; back to back)",
                f"{cold:.3f} ms; {warm:.3f} ms",
                target=f"≤ 1 ms {mark}",
            )
        )
    compat = res.get("compat.TimeseriesGenerator")
    for ref in ("Keras algorithm (re-implemented)", "Keras TimeseriesGenerator (tf_keras)"):
        label = f"W1: compat.TimeseriesGenerator speed-up vs {ref}"
        if compat is None:
            table.add(Row("Target", label, "compat.TimeseriesGenerator not available", target="≥ 4×"))
        elif ref not in res:
            table.add(Row("Target", label, "tf_keras not installed", target="≥ 4×"))
        else:
            r = res[ref].median / compat.median
            table.add(Row("Target", label, f"{r:.1f}×", target=verdict(r >= 4, "≥ 4×")))


def gbs(t: wl.Timing) -> float:
    return t.rate() / 1e9


def run_w2(table: Table, path: str, in_ram: np.ndarray, rounds: int, quick: bool) -> None:
    cases = wl.w2_cases(path, in_ram, quick=quick)
    progress(f"W2: {len(cases)} producers, {rounds} interleaved rounds")
    shapes: Dict[str, str] = {}
    res = wl.measure_w2(cases, rounds, shapes)
    feeder = gbs(res[wl.W2_FEEDER])
    w = "W2 throughput (x+y bytes)"
    for name, t in res.items():
        ms = t.median / cases[name].chunk * 1e3
        auto = "num_threads" not in name and name in shapes  # the defaults: what the tuner chose
        table.add(
            Row(
                w,
                name + (f" ({shapes[name]})" if auto else ""),
                f"{gbs(t):.2f} GB/s ({ms:.2f} ms/batch)",
                f"{t.n}×{cases[name].chunk}",
                spread(t),
                f"Feeder(numpy) = {feeder / gbs(t):.2f}×",
            )
        )

    progress("W2: start-up (construction or iter() + first batch)")
    start = wl.interleave(wl.startup_cases(path), 2 if quick else 3, warmup=0)
    for name, secs in start.items():
        t = wl.Timing(tuple(secs))
        table.add(Row("W2 start-up", name, f"{t.median * 1e3:.1f} ms", str(t.n), spread(t)))

    copy = gbs(res[wl.W2_COPY])
    numpy_rows = [n for n, c in cases.items() if c.kind == "numpy" and "in RAM" in n]
    best = max(numpy_rows, key=lambda n: gbs(res[n]))
    loader = gbs(res[wl.W2_LOADER0])
    tuned = max((wl.w2_hand_tuned(n) for n in wl.w2_thread_counts()), key=lambda n: gbs(res[n]))
    for label, ref, goal in (
        (f"W2: Feeder / copy limit ({wl.W2_COPY})", copy, 0.8),
        (f"W2: Feeder / best NumPy ({best})", gbs(res[best]), 1.2),
        (f"W2: Feeder / {wl.W2_LOADER0}", loader, 6.0),
        (f"W2: Feeder (all defaults) / the best hand-tuned num_threads ({tuned})", gbs(res[tuned]), 0.9),
    ):
        r = feeder / ref
        table.add(Row("Target", label, f"{r:.2f}×", target=verdict(r >= goal, f"≥ {goal:g}×")))


def run_loop(table: Table, path: str, in_ram: np.ndarray, rounds: int, batches: int, quick: bool) -> None:
    progress(f"training loop: {rounds} interleaved rounds of {batches} batches per source, and of compute alone")
    res, compute_s = wl.measure_loop(
        path, in_ram, batches, rounds, feeder_warmup=60 if quick else wl.FEEDER_WARMUP_BATCHES
    )
    w = f"Loop (~{compute_s * 1e3:.1f} ms torch compute/batch, 1 thread)"
    for name, r in res.items():
        if name == wl.LOOP_COMPUTE:
            table.add(
                Row(
                    w,
                    name,
                    f"{r.median_batch_s * 1e3:.2f} ms/batch; {r.median_core_wait:.1%} without a core (other processes)",
                    f"{len(r.batch_s)}×{batches}",
                )
            )
            continue
        held = r.held_up
        table.add(
            Row(
                w,
                name + (f" ({r.shape})" if r.shape else ""),
                f"{r.median_wait:.1%} waiting for data, {r.median_core_wait:.1%} for a core "
                f"({r.median_batch_s * 1e3:.2f} ms/batch)",
                f"{len(r.wait_fraction)}×{batches}",
                f"{min(r.wait_fraction):.1%}–{max(r.wait_fraction):.1%}; both {min(held):.1%}–{max(held):.1%}",
                f"{r.median_slowdown:+.1%} vs compute alone",
            )
        )
    feeder = res[wl.LOOP_TUNED].median_wait
    table.add(
        Row(
            "Target",
            f"Loop: {wl.LOOP_TUNED} share of wall time waiting for data",
            f"{feeder:.1%}",
            target=verdict(feeder <= 0.05, "≤ 5%"),
        )
    )
    defaults = res[wl.LOOP_DEFAULTS]
    for label, value in (
        ("waiting for data", defaults.median_wait),
        ("waiting for data or for a core", defaults.median_held_up),
    ):
        table.add(
            Row(
                "Target",
                f"Loop: {wl.LOOP_DEFAULTS} share of wall time {label}",
                f"{value:.1%}",
                target=verdict(value <= 0.05, "≤ 5%"),
            )
        )
    inline = res[wl.LOOP_INLINE].median_wait
    table.add(
        Row(
            "Target",
            f"Loop: {wl.LOOP_INLINE} share of wall time assembling",
            f"{inline:.1%}",
            target="about 20–30% (reference, not a goal)",
        )
    )


def run_sparse(table: Table, tmpdir: str, repeat: int) -> None:
    w = "Sparse 8 GiB .npy (2^33 uint8), cold"
    st = os.statvfs(tmpdir)
    free = st.f_bavail * st.f_frsize
    # The file is sparse (a hole), so it needs almost no disk: check that this file system
    # really makes holes rather than writing 8 GiB of zeros.
    probe = wl.create_sparse_file(tmpdir)
    used = wl.allocated_bytes(probe)
    os.remove(probe)
    if used > 64 << 20:
        table.add(Row(w, "skipped", f"{tmpdir} does not make sparse files ({used >> 20} MiB allocated)"))
        return
    progress(
        f"sparse: {repeat} cold starts per mode, a fresh 8 GiB sparse file each "
        f"({used} bytes on disk, {free / 2**30:.0f} GiB free)"
    )
    results: Dict[str, List[Dict[str, float]]] = {mode: [] for mode in wl.SPARSE_MODES}
    for i in range(repeat):  # interleaved, like the other workloads
        for mode in wl.SPARSE_MODES:
            results[mode].append(wl.run_sparse(tmpdir, mode, seed=i))

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    for mode, text in wl.SPARSE_MODES.items():
        totals = [r["total_s"] * 1e3 for r in results[mode]]
        extra = f"; close() {med(mode, 'close_s') * 1e3:.0f} ms" if mode.startswith("feeder") else ""
        table.add(
            Row(
                w,
                f"{text}: construct + first batch",
                f"{med(mode, 'total_s') * 1e3:.1f} ms (construct {med(mode, 'construct_s') * 1e3:.2f} ms{extra})",
                str(len(totals)),
                f"{min(totals):.0f}–{max(totals):.0f} ms",
            )
        )
        table.add(
            Row(
                w,
                f"{text}: RSS growth (peak)",
                f"{med(mode, 'rss_growth_mib'):.1f} MiB ({med(mode, 'peak_growth_mib'):.1f} MiB)",
            )
        )
    for mode, name in (("feeder", "window 256, batch 256"), ("feeder-small", "window 4, batch 64")):
        total = med(mode, "total_s") * 1e3
        table.add(
            Row(
                "Target",
                f"Sparse: Feeder ({name}) construct + first batch",
                f"{total:.1f} ms",
                target=verdict(total < 100, "< 100 ms"),
            )
        )
        rss = max(r["peak_growth_mib"] for r in results[mode])
        table.add(
            Row(
                "Target",
                f"Sparse: Feeder ({name}) RSS growth (largest peak)",
                f"{rss:.1f} MiB",
                target=verdict(rss < 512, "< 512 MB"),
            )
        )


def run_w3(table: Table, tmpdir: str, rounds: int) -> None:
    lengths = w3.w3_lengths()
    seqs = w3.w3_sequences(lengths)
    progress(f"W3: {len(seqs):,} sequences ({lengths.sum() * 4 / 1e6:.0f} MB of int32); writing a dataset directory")
    dataset = w3.write_w3_dataset(seqs, tmpdir)
    progress(f"W3: {rounds} interleaved rounds of {w3.W3_CHUNK} batches per producer")
    res = w3.measure_w3(seqs, dataset, rounds)
    name = "W3 padded sequences (batch 64, shuffled)"
    feeder = res["Feeder (list of arrays, output=torch)"]
    for case, t in res.items():
        per_batch = t.median / w3.W3_CHUNK * 1e3
        table.add(
            Row(
                name,
                case,
                f"{t.rate():,.0f} seqs/s ({per_batch:.3f} ms/batch)",
                f"{t.n}×{w3.W3_CHUNK}",
                spread(t),
                f"Feeder(list) = {t.median / feeder.median:.2f}×",
            )
        )
    if dataset is None:
        table.add(Row(name, "Feeder (dataset directory)", "write_dataset not available"))
    progress("W3: padding fractions over one epoch")
    fractions = w3.padding_fractions(seqs)
    for case, frac in fractions.items():
        table.add(Row("W3 padding (padded steps / all steps)", case, f"{frac:.2%}"))
    for label, ref, goal in (
        ("W3: Feeder / NumPy row-copy padder", "NumPy row-copy padder", 1.5),
        ("W3: Feeder / DataLoader + pad_sequence, 0 workers", "DataLoader + pad_sequence, 0 workers", 5.0),
    ):
        r = res[ref].median / feeder.median
        table.add(Row("Target", label, f"{r:.2f}×", target=verdict(r >= goal, f"≥ {goal:g}×")))
    for label, case, goal in (
        ("W3: padding with bucket=True", "bucket=True", 0.04),
        ("W3: padding with pack=True", "pack=True, max_len=2048", 0.01),
    ):
        table.add(
            Row("Target", label, f"{fractions[case]:.2%}", target=verdict(fractions[case] <= goal, f"≤ {goal:.0%}"))
        )


# ----- main ----------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=os.environ.get("FASTFEED_BENCH_PROG"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="few rounds: checks the script, numbers are rough")
    p.add_argument("--skip-sparse", action="store_true", help="skip the 8 GiB sparse-file workload")
    p.add_argument("--skip-w1", action="store_true", help="skip W1 (the seed's sine wave)")
    p.add_argument("--skip-w2", action="store_true", help="skip W2 and the training loop (no 512 MB file)")
    p.add_argument("--skip-w3", action="store_true", help="skip W3 (variable-length sequences)")
    p.add_argument(
        "--tmpdir",
        default=None,
        help="where to write the 512 MB and sparse 8 GiB files (default: the system temp dir); "
        "a fresh sub-directory is made and removed",
    )
    return p.parse_args(argv)


def header(argv: Sequence[str]) -> str:
    info = wl.machine_info()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "## fastfeed benchmarks",
        "",
        " · ".join(f"**{k}** {v}" for k, v in info.items()),
        "",
        f"`{' '.join(['bench/run.py', *argv])}` · load average at start {load} (1/5/15 min; the machine may be shared)",
        "",
    ]
    return "\n".join(lines)


def background(table: Table, workload: str, load: wl.BackgroundLoad) -> None:
    """A row saying how busy other processes kept the machine while `workload` ran."""
    table.add(Row(workload, "(CPU used by other processes meanwhile)", f"{load.cores:.2f} of {os.cpu_count()} cores"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    began = time.perf_counter()
    top = header(argv)
    table = Table()
    q = args.quick

    if not args.skip_w1:
        with wl.BackgroundLoad() as load:
            run_w1(table, rounds=8 if q else 40)
        background(table, "W1", load)

    tmpdir = tempfile.mkdtemp(prefix="fastfeed-bench-", dir=args.tmpdir)
    try:
        if not args.skip_w2:
            progress(f"W2: writing {wl.W2_ROWS:,} × {wl.W2_FEATS} float32 to {tmpdir}")
            path = wl.create_w2_file(tmpdir)
            wl.warm_page_cache(path)
            in_ram = np.load(path)  # the in-RAM baselines' contiguous copy
            with wl.BackgroundLoad() as load:
                run_w2(table, path, in_ram, rounds=3 if q else 10, quick=q)
            background(table, "W2", load)
            with wl.BackgroundLoad() as load:
                run_loop(table, path, in_ram, rounds=2 if q else 5, batches=40 if q else 100, quick=q)
            background(table, "Loop", load)
            del in_ram
            os.remove(path)
        if not args.skip_w3:
            with wl.BackgroundLoad() as load:
                run_w3(table, tmpdir, rounds=3 if q else 7)
            background(table, "W3", load)
        if not args.skip_sparse:
            with wl.BackgroundLoad() as load:
                run_sparse(table, tmpdir, repeat=1 if q else 3)
            background(table, "Sparse", load)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    load_avg = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(top)
    print(table.render())
    print()
    print(
        f"Medians of repetitions; the cases of a workload run in interleaved rounds (W1's interleaved "
        f"epochs start with caches cold from the other cases and a gc.collect(), like an epoch after a "
        f"training step, the garbage collector off while they run; each back-to-back repetition is the "
        f"mean epoch of 200 in a row of one case, the collector on, as in a training loop). "
        f"Reps: repetitions (× batches each, or × epochs). Spread: ±half "
        f"the (max − min) range relative to the median (Loop: the range of the share waiting for data, "
        f"and of the share waiting for data or for a core: the loop's thread ready to compute but "
        f"without a core, its run-queue delay from /proc/thread-self/schedstat). Loop ratio: the "
        f"round's wall time against the same compute alone in the same round (noisy on a VM). "
        f"Ratio: W1, this row's epoch time ÷ the Feeder's (interleaved); W2, the Feeder's GB/s ÷ "
        f"this row's. W2 rows are steady state: every producer is warmed up first (the Feeder with "
        f"{wl.FEEDER_WARMUP_BATCHES} batches, which maps the whole file), start-up is measured "
        f"separately. Load average at end {load_avg}; total {time.perf_counter() - began:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
