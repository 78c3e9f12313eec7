"""Files that shrink, vanish or are replaced under a running Feeder: a FeedError, never a crash."""

from __future__ import annotations

import json
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


# Every kind of file the core maps, shrunk under a running Feeder, in a child process. The child
# first records the whole epoch from a Feeder that runs undisturbed, then runs the same Feeder
# again, shrinks the file after a few batches and goes on: each batch handed out must equal the
# recorded one, and the epoch must end in a FeedError naming the file (and, for whole sequences,
# the sequence), or, for a file the core reads only when the Feeder is made, run to its end with
# every batch right. Sizes span many pages, so the reads after the shrink hit pages that are gone.
_SHRINK_CHILD = """
import json, os, sys, faulthandler
import numpy as np
faulthandler.enable()  # as pytest has it: the guard must still win
from fastfeed import Feeder, FeedError, write_dataset

kind, d = sys.argv[1], sys.argv[2]
n = 20_000  # sequences of 50 steps: 8 MB of float64 values, 160 kB of int64 labels (40 pages)
seqs = [np.arange(50.0) + i for i in range(n)]
ds = os.path.join(d, "ds")
kw = dict(window=None, batch_size=32, shuffle=True, seed=1, output="numpy", num_threads=2, prefetch=2)
if kind in ("values.bin", "offsets.bin"):
    write_dataset(ds, seqs)
    source, shrink, size = ds, os.path.join(ds, kind), 8
elif kind == "step targets.bin":
    write_dataset(ds, seqs, targets=[np.full(50, i % 100, np.int16) for i in range(n)])
    source, shrink, size = ds, os.path.join(ds, "targets.bin"), 8
elif kind == "labels targets.bin":
    write_dataset(ds, seqs, targets=np.arange(n, dtype=np.int64))
    source, shrink, size = ds, os.path.join(ds, "targets.bin"), 8
elif kind == "labels .npy":
    write_dataset(ds, seqs)
    shrink = os.path.join(d, "labels.npy")
    np.save(shrink, np.arange(n, dtype=np.int64))
    source, size = ds, 128
    kw["targets"] = shrink
elif kind == "source .npy":
    source = shrink = os.path.join(d, "x.npy")
    np.save(shrink, np.arange(2_000_000, dtype=np.float32).reshape(-1, 4))  # 8 MB
    size = 4096
    kw.update(window=16, batch_size=64)
elif kind == "targets .npy":
    source = os.path.join(d, "x.npy")
    shrink = os.path.join(d, "y.npy")
    np.save(source, np.arange(2_000_000, dtype=np.float32).reshape(-1, 4))
    np.save(shrink, np.arange(500_000, dtype=np.int64))  # 4 MB
    size = 4096
    kw.update(window=16, batch_size=64, targets=shrink, horizon=1)
else:
    raise SystemExit("unknown kind " + kind)

def fields(b):
    return [a for a in (b.x, b.y, b.mask, b.lengths) if a is not None]


with Feeder(source, **kw) as f0:
    want = [[a.copy() for a in fields(b)] for b in f0]
f = Feeder(source, **kw)
it = iter(f)
got = [fields(next(it)) for _ in range(10)]
os.truncate(shrink, size)
error = None
try:
    for b in it:
        got.append(fields(b))
except FeedError as e:
    error = str(e)


def same(g, w):
    return len(g) == len(w) and all(np.array_equal(a, b) for a, b in zip(g, w))

wrong = [i for i, g in enumerate(got) if not same(g, want[i])]
result = {"file": shrink, "error": error, "handed": len(got), "batches": len(want), "wrong": wrong}
print("RESULT " + json.dumps(result))
"""


@pytest.mark.parametrize(
    "kind",
    [
        "values.bin",
        "offsets.bin",
        "step targets.bin",
        "labels targets.bin",  # was a SIGBUS: labels were a NumPy map the core read unguarded
        "labels .npy",
        "source .npy",
        "targets .npy",
    ],
)
def test_every_mapped_file_shrinking_mid_epoch_raises_feed_error(tmp_path, kind):
    proc = subprocess.run(
        [sys.executable, "-c", _SHRINK_CHILD, kind, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    # A crash (SIGBUS: -7, or 135 through a shell) fails here, not the test run.
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr[-2000:]
    r = json.loads(lines[-1][len("RESULT ") :])
    assert r["wrong"] == [], f"batches handed out with wrong data after {kind} shrank: {r}"
    if kind == "offsets.bin" and r["error"] is None:
        # The core reads the offsets once, when the Feeder is made (every sequence's place in the
        # values), and never again: the epoch runs on with the offsets it read, every batch right.
        assert r["handed"] == r["batches"], r
        return
    assert r["error"] is not None, f"no FeedError after {kind} shrank: {r}"
    assert r["handed"] < r["batches"], r
    assert "the source file changed while the epoch ran" in r["error"], r["error"]
    assert re.search(re.escape(r["file"]) + " shrank", r["error"]), r["error"]
    if kind not in ("source .npy", "targets .npy"):  # whole sequences: the error names the sequence
        assert re.search(r"sequence \d+ and the rest of its batch", r["error"]), r["error"]
    else:
        assert re.search(r"sample \d+ \(series 0, steps from \d+\) onwards", r["error"]), r["error"]
