"""Fixtures for bench/test_bench.py: the W2 file (written once per session, deleted after) and
a scratch directory for the sparse file. See bench/workloads.py for the workloads."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads as wl


@pytest.fixture(scope="session")
def bench_dir() -> Iterator[str]:
    # Not tmp_path_factory: pytest keeps its last temp dirs, and these files are large.
    d = tempfile.mkdtemp(prefix="fastfeed-bench-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def w2_path(bench_dir: str) -> str:
    """The 512 MB W2 file, in the page cache (so that benchmarks read memory, not the disk)."""
    path = wl.create_w2_file(bench_dir)
    wl.warm_page_cache(path)
    return path


@pytest.fixture(scope="session")
def w2_in_ram(w2_path: str) -> np.ndarray:
    """The W2 file loaded without mmap: the in-RAM NumPy baselines' contiguous array."""
    return np.load(w2_path)


# ----- the targets' ratios, printed after pytest-benchmark's tables -----------------------------

_RESULTS = pytest.StashKey[Dict[Tuple[str, str], float]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = {}


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[str, str, float], None]:
    """record(workload, case, value): keeps a benchmark's headline number for the summary
    (W1: median seconds per epoch; W2: GB/s; Loop: waiting share; Sparse: seconds, MiB)."""
    results = request.config.stash[_RESULTS]

    def put(workload: str, case: str, value: float) -> None:
        results[(workload, case)] = value

    return put


def _target_lines(r: Dict[Tuple[str, str], float]) -> List[str]:
    lines: List[str] = []

    def line(label: str, value: Optional[float], fmt: str, ok: Optional[bool], goal: str) -> None:
        if value is None:
            lines.append(f"  {label}: not measured ({goal})")
        else:
            lines.append(f"  {label}: {fmt.format(value)}  target {goal}  {'met' if ok else 'MISSED'}")

    for name in ("Feeder (output=numpy)", "Feeder (output=torch)"):
        v = r.get(("W1", name))
        line(
            f"W1 one {name} epoch", None if v is None else v * 1e3, "{:.3f} ms", v is not None and v <= 1e-3, "<= 1 ms"
        )
    compat = r.get(("W1", "compat.TimeseriesGenerator"))
    for ref in ("Keras algorithm (re-implemented)", "Keras TimeseriesGenerator (tf_keras)"):
        v = r.get(("W1", ref))
        ratio = v / compat if v is not None and compat else None
        line(f"W1 compat speed-up vs {ref}", ratio, "{:.1f}x", ratio is not None and ratio >= 4, ">= 4x")
    feeder = r.get(("W2", wl.W2_FEEDER))
    numpy_best = max((v for (w, n), v in r.items() if w == "W2" and "NumPy" in n and "in RAM" in n), default=None)
    for label, ref, goal in (
        ("copy limit", r.get(("W2", wl.W2_COPY)), 0.8),
        ("best NumPy (in RAM)", numpy_best, 1.2),
        ("DataLoader 0 workers", r.get(("W2", wl.W2_LOADER0)), 6.0),
    ):
        ratio = feeder / ref if feeder and ref else None
        line(f"W2 Feeder / {label}", ratio, "{:.2f}x", ratio is not None and ratio >= goal, f">= {goal:g}x")
    tuned = max(
        (v for (w, n), v in r.items() if w == "W2" and n.startswith("Feeder (output=numpy, num_threads=")), default=None
    )
    ratio = feeder / tuned if feeder and tuned else None
    line(
        "W2 Feeder (defaults) / best hand-tuned num_threads",
        ratio,
        "{:.2f}x",
        ratio is not None and ratio >= 0.9,
        ">= 0.9x",
    )
    for name in (wl.LOOP_TUNED, wl.LOOP_DEFAULTS):
        v = r.get(("Loop", name))
        line(f"Loop: {name} waiting share", v, "{:.1%}", v is not None and v <= 0.05, "<= 5%")
    v = r.get(("Loop", wl.LOOP_INLINE))
    line(
        "Loop: in-line NumPy (memmap) assembling share", v, "{:.1%}", v is not None and 0.2 <= v <= 0.3, "about 20-30%"
    )
    v = r.get(("Sparse", "feeder"))
    line(
        "Sparse: Feeder construct + first batch",
        None if v is None else v * 1e3,
        "{:.1f} ms",
        v is not None and v < 0.1,
        "< 100 ms",
    )
    v = r.get(("Sparse RSS", "feeder"))
    line("Sparse: Feeder RSS peak growth", v, "{:.1f} MiB", v is not None and v < 512, "< 512 MB")
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, {})
    if not results:
        return
    terminalreporter.section("fastfeed targets (from this session's medians; run bench/run.py for interleaved numbers)")
    for text in _target_lines(results):
        terminalreporter.write_line(text)
