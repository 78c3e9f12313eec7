"""Nothing leaks however Feeders end: OS threads, file descriptors and memory maps return to
their baseline after thousands of Feeders, and Ctrl-C in a blocked consumer exits cleanly.

Linux only: the counts come from /proc/self (task, fd, maps), which see native threads and
mappings that `threading` and Python objects do not.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fastfeed import Feeder, FeedError

from helpers import native_threads

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts come from /proc/self")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def maps_of(*paths: str) -> int:
    with open("/proc/self/maps") as fh:
        return sum(1 for line in fh if line.rstrip().endswith(paths))


def counts(*paths: str) -> dict:
    return {"threads": native_threads(), "fds": open_fds(), "maps": maps_of(*paths)}


def settle(baseline: dict, *paths: str, timeout: float = 5.0) -> dict:
    """Counts once they are back at the baseline, or whatever they are after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        now = counts(*paths)
        if all(now[k] <= baseline[k] for k in baseline) or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("leaks")
    rng = np.random.default_rng(0)
    good = str(d / "good.npy")
    np.save(good, rng.normal(size=(3000, 4)).astype(np.float32))
    bad = rng.normal(size=(3000, 4))
    bad[1500, 2] = np.nan  # a FeedError source: check_finite="raise" stops at the windows over step 1500
    bad_path = str(d / "nan.npy")
    np.save(bad_path, bad)
    return good, bad_path


def windowed(path: str, **kw) -> Feeder:
    kw.setdefault("output", "torch")
    return Feeder(path, window=16, horizon=1, batch_size=8, shuffle=True, num_threads=2, prefetch=2, **kw)


def one_life(i: int, good: str, bad: str, seqs: list) -> None:
    """One Feeder, ended one of several ways (chosen by i)."""
    case = i % 9
    if case == 0:  # an iteration started and abandoned mid-epoch
        it = iter(windowed(good))
        next(it)
        next(it)
        del it
    elif case == 1:  # break
        for k, _ in enumerate(windowed(good, output="numpy")):
            if k == 3:
                break
    elif case == 2:  # an exception raised inside the loop
        try:
            for k, _ in enumerate(windowed(good)):
                if k == 2:
                    raise KeyError("in the loop")
        except KeyError:
            pass
    elif case == 3:  # close() twice mid-iteration; a closed Feeder refuses to iterate
        f = windowed(good)
        it = iter(f)
        next(it)
        f.close()
        f.close()
        with pytest.raises(RuntimeError, match="closed during iteration"):
            for _ in it:  # the rest of the block already delivered, then the refusal
                pass
        with pytest.raises(RuntimeError, match="this Feeder is closed"):
            iter(f)
    elif case == 4:  # a FeedError, then iterating again (the next epoch fails the same way)
        f = Feeder(bad, window=16, batch_size=64, num_threads=2, prefetch=2, check_finite="raise", output="numpy")
        for _ in range(2):
            with pytest.raises(FeedError, match="non-finite"):
                for _ in f:
                    pass
    elif case == 5:  # a context manager left mid-epoch
        with windowed(good) as f:
            next(iter(f))
    elif case == 6:  # whole sequences, abandoned mid-epoch, batches kept past the Feeder
        f = Feeder(seqs, window=None, batch_size=4, shuffle=True, num_threads=2, prefetch=2)
        it = iter(f)
        kept = next(it)
        del it, f
        assert kept.mask is not None
    elif case == 7:  # never iterated
        windowed(good)
    else:  # a whole epoch, with a fresh iterator left unstarted
        f = Feeder(good, window=512, batch_size=256, num_threads=2, output="numpy")
        assert sum(1 for _ in f) == len(f)
        iter(f)


def test_thousands_of_feeders_leak_no_threads_fds_or_maps(files):
    pytest.importorskip("torch", reason="most of these Feeders hand out torch tensors")
    good, bad = files
    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(int(n), 3)).astype(np.float32) for n in rng.integers(1, 40, 64)]
    for i in range(9):  # warm-up: imports, torch's own pools, lazily created module state
        one_life(i, good, bad, seqs)
    baseline = settle(counts(good, bad), good, bad, timeout=0.5)
    assert baseline["maps"] == 0
    n = 2700
    peak_threads = 0
    for i in range(n):
        one_life(i, good, bad, seqs)
        if i % 97 == 0:
            peak_threads = max(peak_threads, native_threads())
    after = settle(baseline, good, bad)
    assert after == baseline, f"after {n} Feeders: {after}, baseline {baseline} (peak threads {peak_threads})"


def test_dropping_a_feeder_mid_epoch_without_gc_releases_at_once(files):
    pytest.importorskip("torch", reason="the Feeders dropped here hand out torch tensors")
    good, _ = files
    baseline = settle(counts(good), good, timeout=0.5)
    gc.disable()
    try:
        for _ in range(200):
            f = windowed(good)
            it = iter(f)
            next(it)
            del it, f  # plain reference counting: no cycle may keep the pipeline alive
        now = counts(good)
    finally:
        gc.enable()
    assert now == baseline


CHILD = textwrap.dedent("""
    import json, os, signal, sys, time
    import numpy as np
    from fastfeed import Feeder

    def threads():
        return len(os.listdir("/proc/self/task"))

    path, mode = sys.argv[1], sys.argv[2]
    # Shuffled windows of 1M float64 steps from a memory map with check_finite: each batch takes the
    # single worker far longer than the consumer needs, so the consumer waits inside pipe.next().
    f = Feeder(path, window=1_000_000, batch_size=4, shuffle=True, check_finite="raise", num_threads=1,
               prefetch=1, output="numpy")
    g = Feeder(path, window=1000, batch_size=64, shuffle=True, num_threads=8, prefetch=1, output="numpy")
    base = threads()
    held = iter(g)
    next(held)  # 8 workers running, all but one blocked on a full queue
    it = iter(f)
    next(it)
    print("ready", flush=True)
    if mode == "uncaught":
        for _ in it:  # KeyboardInterrupt propagates; `held` is still running at shutdown
            pass
    try:
        for _ in it:
            pass
    except KeyboardInterrupt:
        caught = time.monotonic()
        del it, held
        deadline = time.monotonic() + 5
        while threads() > base and time.monotonic() < deadline:
            time.sleep(0.01)
        print(json.dumps({"caught": caught, "threads": threads(), "base": base}), flush=True)
""")


@pytest.fixture(scope="module")
def huge_npy(tmp_path_factory):
    """A 1 GiB float64 .npy, sparse (a hole reads as zeros): costs no disk, only the pages read."""
    path = tmp_path_factory.mktemp("sigint") / "huge.npy"
    n = 1 << 27
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
        fh.truncate(fh.tell() + 8 * n)
    return str(path)


def run_child(path: str, mode: str):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", line + proc.stderr.read()
        time.sleep(0.3)  # well inside the wait for a batch
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        exited = time.monotonic()
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process hung after SIGINT ({mode}):\n{err}")
    return proc.returncode, out, err, sent, exited


def test_ctrl_c_in_a_blocked_consumer_raises_promptly_and_leaks_no_thread(huge_npy):
    import json

    code, out, err, sent, _ = run_child(huge_npy, "caught")
    assert code == 0, err
    report = json.loads(out)
    assert report["caught"] - sent < 2.0, f"KeyboardInterrupt came {report['caught'] - sent:.2f} s after SIGINT"
    assert report["threads"] == report["base"], report


def test_ctrl_c_uncaught_exits_without_hanging(huge_npy):
    code, _, err, sent, exited = run_child(huge_npy, "uncaught")
    assert "KeyboardInterrupt" in err, err
    assert code in (-signal.SIGINT, 128 + signal.SIGINT, 1), (code, err)
    assert exited - sent < 10.0


def test_close_from_another_thread_while_the_consumer_waits(files):
    """Feeder.close() in one thread and the iterator's own clean-up in the consumer both close
    the pipeline without the GIL: the second must wait for the first, not join its threads again."""
    import threading

    good, _ = files
    baseline = settle(counts(good), good, timeout=0.5)
    for i in range(60):
        f = Feeder(
            good, window=256, batch_size=64, shuffle=True, num_threads=4, prefetch=1, dtype="float64", output="numpy"
        )
        started = threading.Event()
        errors = []

        # consume() runs and is joined within this iteration, so reading the loop's f, started
        # and errors is safe (f is deleted only after the join).
        def consume():
            try:
                for _ in f:  # noqa: B023, F821
                    started.set()  # noqa: B023
            except RuntimeError as e:
                errors.append(str(e))  # noqa: B023 (not the exception: its traceback would keep the Feeder alive)
            started.set()  # noqa: B023

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        started.wait(5)
        time.sleep(0.0005 * (i % 4))
        f.close()
        t.join(10)
        assert not t.is_alive(), "the consumer hung after close()"
        assert all("closed during iteration" in e for e in errors), errors
        del f  # the last Feeder's map goes with it
    after = settle(baseline, good)
    assert after == baseline


SPARSE_CHILD = r"""
import json, sys, time
from fastfeed import Feeder

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

before = rss_kib()
f = Feeder(sys.argv[1], window=4, batch_size=64, shuffle=True, output="numpy")
it = iter(f)
x, _ = next(it)
first = rss_kib()
for _ in range(200):
    next(it)
time.sleep(0.5)  # the workers fill the prefetch ring meanwhile
steady = rss_kib()
print(json.dumps({"first": (first - before) / 1024, "steady": (steady - before) / 1024, "shape": list(x.shape)}))
"""


def test_small_shuffled_windows_of_a_cold_file_keep_little_of_it_resident(tmp_path):
    # Each shuffled window touches its own page of the file however few bytes it has. Blocks
    # sized by output bytes alone held 65,536 such windows: 540 MB of an 8 GiB sparse file was
    # resident at the first batch, and 2 GB once eight blocks were prefetched.
    path = tmp_path / "sparse.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (2**33,)})
        fh.truncate(fh.tell() + 2**33)
    out = subprocess.run([sys.executable, "-c", SPARSE_CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["shape"] == [64, 4]
    assert report["first"] < 128, report  # MiB
    assert report["steady"] < 256, report


def test_workers_behind_a_full_ring_sleep_rather_than_spin():
    # A training step leaves the ring full most of the time: the workers must not burn the CPU
    # the step needs. They polled every 200 us before: ~45% of a core for 24 of these threads.
    import resource

    a = np.zeros((20_000, 8), np.float32)
    feeders = [Feeder(a, window=64, batch_size=64, num_threads=8, output="numpy") for _ in range(3)]
    # With the defaults, every worker the cores allow is started and all but one wait, parked.
    feeders += [Feeder(a, window=64, batch_size=64, output="numpy") for _ in range(3)]
    loops = [iter(f) for f in feeders]
    for loop in loops:
        next(loop)  # started; every worker fills the ring, then waits for room
    time.sleep(0.3)

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    before, start = cpu(), time.perf_counter()
    time.sleep(1.0)
    used = (cpu() - before) / (time.perf_counter() - start)
    for f in feeders:
        f.close()
    assert used < 0.1, f"idle workers used {used:.0%} of a core"
