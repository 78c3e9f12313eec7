"""Threads, buffers and mappings are released however an iteration ends."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import numpy as np
import pytest

from fastfeed import Feeder

from helpers import native_threads, wait_for_threads


def mappings_of(path: str) -> int:
    with open("/proc/self/maps") as fh:
        return sum(1 for line in fh if line.rstrip().endswith(path))


S = np.random.default_rng(0).normal(size=(20000, 8)).astype(np.float32)


def busy_feeder(**kw) -> Feeder:
    return Feeder(S, window=64, horizon=1, batch_size=32, shuffle=True, num_threads=3, prefetch=4, output="numpy", **kw)


def test_break_then_garbage_collection_stops_threads():
    base = native_threads()
    f = busy_feeder()
    it = iter(f)
    next(it)
    assert native_threads() >= base + 1  # workers are running
    del it
    gc.collect()
    assert wait_for_threads(base) == base


def test_close_stops_a_running_iteration_and_is_idempotent():
    base = native_threads()
    f = busy_feeder()
    it = iter(f)
    next(it)
    f.close()
    f.close()
    assert wait_for_threads(base) == base
    with pytest.raises(RuntimeError, match="closed during iteration"):
        for _ in it:
            pass
    with pytest.raises(RuntimeError, match="closed"):
        iter(f)


def test_context_manager_and_exception_in_loop():
    base = native_threads()
    with pytest.raises(ZeroDivisionError), busy_feeder() as f:
        for i, _ in enumerate(f):
            if i == 3:
                1 / 0  # noqa: B018
    assert wait_for_threads(base) == base


def test_iterating_again_after_an_early_break_gives_the_next_epoch_in_full():
    f = busy_feeder()
    for i, _ in enumerate(f):
        if i == 2:
            break
    assert f.epoch == 0
    assert sum(1 for _ in f) == len(f)
    assert f.epoch == 1


def test_many_feeders_created_and_dropped_leak_nothing(tmp_path):
    path = str(tmp_path / "s.npy")
    np.save(path, S[:2000])
    base_threads = native_threads()
    for _ in range(300):
        f = Feeder(path, window=16, horizon=1, batch_size=8, shuffle=True, num_threads=2, output="numpy")
        it = iter(f)
        next(it)
        del it, f
    gc.collect()
    assert wait_for_threads(base_threads) == base_threads
    assert mappings_of(path) == 0


def test_file_mapping_is_released_with_the_feeder(tmp_path):
    path = str(tmp_path / "m.npy")
    np.save(path, S[:100])
    f = Feeder(path, window=4, output="numpy")
    assert mappings_of(path) == 1
    batches = list(f)
    del f
    gc.collect()
    assert mappings_of(path) == 0
    assert len(batches) == 97


def test_held_batches_are_never_overwritten():
    f = Feeder(S, window=4, horizon=1, batch_size=64, num_threads=2, prefetch=1, output="numpy")
    first = next(iter(f))
    snapshot = first.x.copy()
    for _ in f:  # a whole further epoch recycles buffers, but not the one we hold
        pass
    np.testing.assert_array_equal(first.x, snapshot)


def test_ctrl_c_while_waiting_interrupts_promptly():
    big = np.zeros(4_000_000, np.float32)
    f = Feeder(big, window=1_000_000, batch_size=16, num_threads=1, prefetch=1, output="numpy")
    base = native_threads()
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in f:
            pass
    assert time.monotonic() - start < 5.0
    gc.collect()
    assert wait_for_threads(base) <= base


def test_numpy_output_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from fastfeed import Feeder; "
        "f = Feeder(np.arange(50.0), window=4, batch_size=8, output='numpy', shuffle=True); list(f); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # importing torch would cost seconds and hundreds of MB
