"""Files that shrink, vanish or are replaced under a running Feeder: a FeedError, never a crash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastfeed import Feeder, FeedError


def run_isolated(code: str) -> subprocess.CompletedProcess:
    # In a child process: if the guard failed, SIGBUS would kill the child, not the test run.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_file_shrinking_mid_epoch_raises_feed_error(tmp_path, threads):
    path = tmp_path / "big.npy"
    np.save(path, np.arange(4_000_000, dtype=np.float32).reshape(-1, 8))  # 16 MB
    proc = run_isolated(f"""
        import os, faulthandler
        faulthandler.enable()  # as pytest has it: the guard must still win
        from fastfeed import Feeder, FeedError
        f = Feeder({str(path)!r}, window=16, batch_size=64, shuffle=True, num_threads={threads}, prefetch=2,
                   output="numpy")
        it = iter(f)
        sizes = [len(next(it).x) for _ in range(3)]
        os.truncate({str(path)!r}, 4096)
        try:
            for batch in it:
                sizes.append(len(batch.x))
        except FeedError as e:
            print("FEEDERROR", e)
        else:
            print("NO ERROR")
        print("HANDED", len(sizes), "EMPTY", sizes.count(0))
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FEEDERROR" in proc.stdout and "the source file changed while the epoch ran" in proc.stdout
    assert "big.npy shrank" in proc.stdout
    # Raised at the first batch that could not be trusted (the one after those handed out),
    # naming its first sample; no empty batch handed out before it.
    handed = int(re.search(r"HANDED (\d+) EMPTY 0", proc.stdout).group(1))
    assert re.search(
        rf"assembling batch {handed} of epoch 0 failed: sample \d+ \(series 0, steps from \d+\) "
        r"onwards: the source file changed",
        proc.stdout,
    ), proc.stdout


def test_a_vanished_or_replaced_file_is_refused_at_the_next_epoch(tmp_path):
    path = tmp_path / "s.npy"
    np.save(path, np.arange(100, dtype=np.float64))
    f = Feeder(str(path), window=4, batch_size=8, output="numpy")
    first = [x.copy() for x, _ in f]
    os.remove(path)
    with pytest.raises(FeedError, match=r"s.npy is gone"):
        list(f)
    np.save(path, np.arange(100, dtype=np.float64))
    with pytest.raises(FeedError, match=r"s.npy was replaced by another file"):
        list(f)
    assert len(first) == len(f)


@pytest.mark.parametrize("sequences", [False, True])
def test_a_file_vanishing_mid_epoch_raises_feed_error(tmp_path, sequences):
    import time

    path = tmp_path / "v.npy"
    np.save(path, np.arange(200_000, dtype=np.float32).reshape(-1, 4))
    source = str(path) if not sequences else [str(path)] * 50
    kw = dict(window=None) if sequences else dict(window=8)
    f = Feeder(source, batch_size=2048 if not sequences else 1, num_threads=1, prefetch=1, output="numpy", **kw)
    it = iter(f)
    next(it)
    os.remove(path)
    time.sleep(0.3)  # the files are looked at every 0.2 s
    which = (
        r"sequence \d+ and the rest of its batch" if sequences else r"sample \d+ \(series 0, steps from \d+\) onwards"
    )
    sizes = []
    with pytest.raises(FeedError, match=which + r": the source file changed while the epoch ran: .*v.npy is gone"):
        for batch in it:
            sizes.append(len(batch.x))
    assert 0 not in sizes  # nothing spoiled is handed out, not even as an empty batch
