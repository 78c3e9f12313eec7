"""Feeders across fork() and threads: a child forked mid-epoch, a Feeder inside DataLoader
workers, one iterator shared by threads, stats() read from another thread.

Each case runs in a subprocess with a timeout, so that a regression (a hang, an abort at exit)
fails the test instead of the test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")

# Waits for a forked child, at most `seconds`: its exit code, or "hung" (then it is killed).
_WAIT = """
import os, signal, sys, time

def wait(pid, seconds=10.0):
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.01)
"""


def run_script(code: str, timeout: float = 30.0) -> str:
    """Runs `code` in a fresh interpreter; it must exit with 0 and print OK. Its stdout."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", _WAIT + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the script hung ({timeout} s); output so far:\n{e.stdout}\n{e.stderr}")
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), (
        f"exit code {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    )
    return r.stdout


# Explicit threads, and the defaults: every worker the cores allow started, all but one parked
# (a child forked then has none of them, parked or not).
THREADS = ["num_threads=2, prefetch=2,", ""]


@pytest.mark.parametrize("threads", THREADS)
def test_a_forked_child_cannot_go_on_with_its_parents_epoch(threads):
    run_script(
        """
        import sys
        import numpy as np
        from fastfeed import Feeder

        f = Feeder(np.arange(40000, dtype=np.float32), window=1, batch_size=4, THREADS
                   output="numpy")
        it = iter(f)
        next(it)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                next(it)
                code = 10  # a batch came: iterating on, the child waits for workers it does not have
            except RuntimeError as e:
                if "make a new Feeder in the child" not in str(e):
                    code = 11
            try:
                for _ in it:
                    pass
                code = code or 12
            except RuntimeError:
                pass
            try:
                for _ in f:  # a new iteration of the parent's Feeder starts threads of the child's own
                    pass
            except Exception as e:
                print("child: new iteration failed:", repr(e), flush=True)
                code = code or 13
            sys.exit(code)  # the normal way out: finalisers close the parent's pipeline here
        status = wait(pid)
        rest = sum(1 for _ in it)  # the parent goes on as if nothing happened
        assert rest + 1 == len(f), (rest, len(f))
        print("child exit:", status)
        print("OK" if status == 0 else "BAD")
    """.replace("THREADS", threads)
    )


@pytest.mark.parametrize("threads", THREADS)
def test_children_exit_cleanly_whatever_the_parent_was_doing(threads):
    run_script(
        """
        import multiprocessing, sys
        import numpy as np
        from fastfeed import Feeder

        f = Feeder(np.zeros((200000, 4), np.float32), window=16, batch_size=32, THREADS
                   output="numpy")
        it = iter(f)
        next(it)
        time.sleep(0.05)  # the workers fill the ring and wait for space

        def new_feeder_in_child():
            g = Feeder(np.arange(5000, dtype=np.float32), window=8, batch_size=16, shuffle=True, num_threads=2,
                       output="numpy")
            starts = sorted(int(s) for b in g for s in b.x[:, 0])
            assert starts == list(range(4993)), "the child's own Feeder lost or repeated windows"
            f.close()  # the parent's Feeder and its running epoch: nothing to join here
            it.close()

        codes = []
        for how in ("new Feeder", "nothing"):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                if how == "new Feeder":
                    new_feeder_in_child()
                sys.exit(0)  # interpreter shutdown collects the parent's iterator
            codes.append(wait(pid))
        p = multiprocessing.get_context("fork").Process(target=new_feeder_in_child)
        p.start()
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
            codes.append("hung")
        else:
            codes.append(p.exitcode)
        rest = sum(1 for _ in it)
        assert rest + 1 == len(f), (rest, len(f))
        print("children's exit codes:", codes)
        print("OK" if codes == [0, 0, 0] else "BAD")
    """.replace("THREADS", threads)
    )


def test_a_feeder_inside_dataloader_workers_is_refused_with_a_clear_error():
    pytest.importorskip("torch")
    run_script(
        """
        import numpy as np
        from torch.utils.data import DataLoader, IterableDataset
        from fastfeed import Feeder

        f = Feeder(np.arange(800, dtype=np.float32), window=1, batch_size=4, output="torch")  # 200 batches

        class Batches(IterableDataset):
            def __iter__(self):
                return iter(f)

        def count(workers):
            fork = {"multiprocessing_context": "fork"} if workers else {}
            loader = DataLoader(Batches(), batch_size=None, num_workers=workers, **fork)
            return sum(1 for _ in loader)

        try:
            print("num_workers=2 gave", count(2), "batches for", len(f))
        except RuntimeError as e:
            assert "DataLoader" in str(e) and "directly" in str(e), e
            print("refused:", str(e).splitlines()[-1])
            assert count(0) == len(f)  # in the main process the Feeder works as ever
            assert count(1) == len(f)  # and in one worker, which has the whole epoch to itself
            print("OK")
        """,
        timeout=45,
    )


def test_threads_sharing_one_iterator_get_every_batch_once():
    run_script("""
        import threading, types
        import numpy as np
        from fastfeed import Feeder

        def make(**kw):
            return Feeder(np.arange(30000, dtype=np.float32), window=1, batch_size=2, shuffle=True, seed=5,
                          num_threads=2, output="numpy", **kw)

        def key(b):
            return tuple(int(v) for v in b.x[:, 0])

        want = [key(b) for b in make()]
        pos = {k: i for i, k in enumerate(want)}

        def share(it, consume, threads=3):
            got = [[] for _ in range(threads)]
            errors = []

            def run(i):
                try:
                    consume(i, it, got[i])
                except BaseException as e:
                    errors.append(repr(e))

            ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(20)
            assert not any(t.is_alive() for t in ts), "a thread hung"
            assert not errors, errors
            for g in got:  # each thread sees its batches in the epoch's order
                assert [pos[k] for k in g] == sorted(pos[k] for k in g)
            return [k for g in got for k in g]

        def all_of_it(i, it, out):
            for n, b in enumerate(it):
                out.append(key(b))
                if n % 3 == i:
                    time.sleep(0)  # let the others in, in the middle of a chunk

        # A whole epoch: every batch exactly once, none lost, and the state says the epoch is done.
        f = make()
        got = share(iter(f), all_of_it)
        assert sorted(got) == sorted(want), (len(got), len(want), len(set(got)))
        assert (f.state_dict()["epoch"], f.state_dict()["batch"]) == (1, 0)
        assert f.stats().batches == len(f)

        # Part of an epoch: the state counts exactly the batches the threads took, and resumes after them.
        quota = 2000
        def some(i, it, out):
            for n in range(quota):
                out.append(key(next(it)))
                if n % 3 == i:
                    time.sleep(0)
        f = make()
        got = share(iter(f), some, threads=2)
        state = f.state_dict()
        assert (state["epoch"], state["batch"]) == (0, 2 * quota), state
        assert f.stats().batches == 2 * quota
        g = make()
        g.load_state_dict(state)
        assert sorted(got) == sorted(want[: 2 * quota]) and [key(b) for b in g] == want[2 * quota :]

        # An epoch that fails: every thread hears of it, none takes it for the end of the epoch.
        f = make()
        batches_of = f._mode.batches
        blocks = []
        def failing(fields, failed, finish):
            blocks.append(1)
            if len(blocks) == 3:
                raise ValueError("block 3 is broken")
            return batches_of(fields, failed, finish)
        f._mode.batches = failing
        it = iter(f)
        outcomes = []
        def until_it_fails(i, it, out):
            try:
                for b in it:
                    time.sleep(0)
            except Exception as e:
                outcomes.append(repr(e))
            else:
                outcomes.append("ended")
        share(it, until_it_fails)
        others = [o for o in outcomes if o != "ValueError('block 3 is broken')"]
        assert len(outcomes) == 3 and len(others) == 2, outcomes
        assert all(o.startswith("RuntimeError(") and "another thread" in o and "block 3" in o for o in others), others

        # With a progress bar (Python per batch): the same, and the bar counts each batch once.
        class Bar:
            made = []
            def __init__(self, total, initial, **kw):
                self.n = initial
                Bar.made.append(self)
            def update(self, n):
                self.n += n
            def close(self):
                pass
        sys.modules["tqdm"] = types.SimpleNamespace(tqdm=Bar)
        f = make(progress=True)
        got = share(iter(f), all_of_it)
        assert sorted(got) == sorted(want) and Bar.made[0].n == len(f)
        print("OK")
    """)


def test_stats_read_from_another_thread_never_go_backwards():
    run_script("""
        import threading
        import numpy as np
        from fastfeed import Feeder

        sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
        data = np.zeros(20000, np.float32)
        seen, errors = [], []
        rounds = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not seen and not errors:
            # A fresh Feeder each round keeps stats() cheap (its percentiles cover every block so
            # far), so the reader reads often; blocks of 256 batches close every few hundred us.
            f = Feeder(data, window=64, batch_size=4, num_threads=2, output="numpy")
            done = threading.Event()

            def read():
                last = 0
                try:
                    while not done.is_set():
                        n = f.stats().batches
                        if n < last:
                            seen.append((last, n))
                        last = n
                except BaseException as e:
                    errors.append(repr(e))

            reader = threading.Thread(target=read)
            reader.start()
            for _ in range(2):
                for _ in f:
                    pass
            done.set()
            reader.join()
            assert f.stats().batches == 2 * len(f)
            rounds += 1
        assert not errors, errors
        assert not seen, f"stats().batches went backwards: {seen[:5]} (round {rounds})"
        print("OK")
    """)
