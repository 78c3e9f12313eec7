"""Worker threads and prefetch chosen while feeding (num_threads=None, prefetch=None): bounded by
the cores and the memory budget, explicit values obeyed exactly, the choice visible in stats(),
repr() and the epoch's log line, and the batches never depending on it."""

from __future__ import annotations

import logging
from typing import Any, List

import numpy as np
import pytest

import fastfeed.memory
import fastfeed.spec
from fastfeed import Feeder, reference

from helpers import assert_same_batches, feeding_knobs, native_threads, to_numpy, wait_for_threads

S = np.random.default_rng(0).normal(size=(6000, 4)).astype(np.float32)
SEQS = [np.arange(n, dtype=np.int32) + 1 for n in np.random.default_rng(1).integers(1, 40, size=600)]
WINDOWS = dict(window=32, horizon=1, batch_size=16, shuffle=True, seed=5)


def small_blocks(batches: int = 2) -> Any:
    """Window blocks of `batches` batches of 16 (instead of hundreds): an epoch of many blocks."""
    return feeding_knobs(block_samples=16 * batches)


def tune_window(blocks: int) -> Any:
    """The tuner decides every `blocks` hand-overs."""
    return feeding_knobs(tune_window=blocks)


def pipelines(f: Feeder) -> List[Any]:
    return list(f._pipelines)


def retune(f: Feeder, threads: int, prefetch: int) -> None:
    """Sets the running pipeline's shape, as the tuner would."""
    for p in pipelines(f):
        p.retune(threads, prefetch)


def epoch_retuned(f: Feeder, shapes, every: int = 7) -> List[Any]:
    """One epoch of `f`, the running pipeline set to the next of `shapes` every `every` batches."""
    out = []
    for i, b in enumerate(f):
        if i % every == 0:
            retune(f, *shapes[(i // every) % len(shapes)])
        out.append(b)
    return out


SHAPES = [(1, 1), (4, 8), (2, 3), (3, 2), (1, 8), (4, 1)]


def test_shapes_changed_mid_epoch_leave_window_batches_as_the_reference_has_them():
    want = reference.batches(S, **WINDOWS, epoch=0)
    with small_blocks():
        f = Feeder(S, **WINDOWS, output="numpy")
    got = [(b.x.copy(), b.y.copy()) for b in epoch_retuned(f, SHAPES)]
    assert_same_batches(got, want)
    # The shapes reached the hand-over in the middle of the epoch (an epoch of many blocks).
    seen = {(t, p) for _, _, t, p in f.stats().tuning}
    assert len(seen) >= 4, f.stats().tuning
    assert all(0 < batch < len(want) for _, batch, _, _ in f.stats().tuning[1:])


def test_shapes_changed_mid_epoch_leave_sequence_batches_as_the_reference_has_them():
    cfg = dict(batch_size=4, shuffle=True, seed=3, bucket=True, bucket_pool=8)
    want = reference.sequence_batches(SEQS, **cfg, epoch=1)
    f = Feeder(SEQS, window=None, **cfg, output="torch")
    f.set_epoch(1)
    got = epoch_retuned(f, SHAPES, every=5)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        for name in ("x", "mask", "lengths"):
            np.testing.assert_array_equal(to_numpy(getattr(g, name)), w[name], err_msg=f"batch {i}: {name}")
    assert len({(t, p) for _, _, t, p in f.stats().tuning}) >= 4


def test_the_tuner_deciding_every_block_leaves_batches_as_the_reference_has_them():
    # The tuner's own decisions, every hand-over: a consumer that takes batches as fast as it
    # can (it waits: workers are added) and one that pauses (the ring fills: they retire).
    import time

    want = reference.batches(S, **WINDOWS, epoch=2)
    with small_blocks(), tune_window(1):
        f = Feeder(S, **WINDOWS, output="numpy")
        f.set_epoch(2)
        got = []
        for i, b in enumerate(f):
            got.append((b.x.copy(), b.y.copy()))
            if (i // 40) % 2:
                time.sleep(0.0005)
    assert_same_batches(got, want)
    st = f.stats()
    assert st.threads_auto and st.prefetch_auto
    assert all(1 <= t <= fastfeed.spec.cpu_count() for _, _, t, _ in st.tuning)


def test_explicit_values_are_obeyed_exactly():
    base = native_threads()
    with small_blocks(), tune_window(1):  # a tuner deciding at every block, were there one
        f = Feeder(S, **WINDOWS, num_threads=2, prefetch=3, output="numpy")
        assert (f.num_threads, f.prefetch) == (2, 3)
        for epoch in range(2):
            for i, _ in enumerate(f):
                if i == 10 and epoch == 0:
                    assert native_threads() == base + 2  # exactly two workers, none parked
    st = f.stats()
    assert (st.threads, st.prefetch, st.threads_auto, st.prefetch_auto) == (2, 3, False, False)
    assert st.tuning == ((0, 0, 2, 3),)  # as the first epoch started, and never changed
    assert "num_threads=2, prefetch=3" in repr(f)
    f.close()
    assert wait_for_threads(base) == base


def test_only_what_was_left_out_is_tuned():
    with small_blocks():
        threads_given = Feeder(S, **WINDOWS, num_threads=2, output="numpy")
        prefetch_given = Feeder(S, **WINDOWS, prefetch=5, output="numpy")
    assert not threads_given.stats().threads_auto and threads_given.stats().prefetch_auto
    assert threads_given.prefetch == 4  # two blocks per worker to start with
    assert prefetch_given.stats().threads_auto and not prefetch_given.stats().prefetch_auto
    assert (prefetch_given.num_threads, prefetch_given.prefetch) == (1, 5)  # auto starts with one worker
    for f in (threads_given, prefetch_given):
        list(f)
    assert threads_given.num_threads == 2 and prefetch_given.prefetch == 5


@pytest.mark.parametrize(
    ("cores", "cache", "most", "busy"),
    [(1, False, 1, 1), (2, False, 2, 1), (16, False, 16, 15), (64, False, 64, 63), (16, True, 8, 8), (2, True, 2, 1)],
)
def test_auto_workers_leave_the_training_loop_its_core(monkeypatch, cores, cache, most, busy):
    # On 2 cores one worker while the loop computes (two only while it mostly waits); on a
    # 16-core GPU machine 15 (16): the cap follows the cores, it is not a fixed number.
    monkeypatch.setattr(fastfeed.spec, "cpu_count", lambda: cores)
    assert fastfeed.spec.auto_thread_caps(cache) == (most, busy)


def test_auto_choice_is_bounded_by_the_cores_and_the_memory_budget(monkeypatch):
    # Batches of 64 windows of 256 x 32 float32 (+ the target step): one 2,105,344-byte block each.
    block = 64 * (256 * 32 * 4 + 32 * 4)
    a = np.zeros((4000, 32), np.float32)
    monkeypatch.setattr(fastfeed.spec, "cpu_count", lambda: 6)
    f = Feeder(a, window=256, horizon=1, batch_size=64, output="numpy")
    # The ring's ceiling: two blocks per possible worker (12), more than 32 MiB of blocks (16,
    # counted as 8 at most), within the memory budget (half the memory: far more here).
    assert "num_threads=auto (1 now, at most 6), prefetch=auto (2 now, at most 12)" in repr(f)
    # With half the memory 5 blocks, the ring stops there.
    monkeypatch.setattr(fastfeed.memory, "machine_memory", lambda: 2 * 5 * block + 1)
    g = Feeder(a, window=256, horizon=1, batch_size=64, output="numpy")
    assert "prefetch=auto (2 now, at most 5)" in repr(g)
    with tune_window(1):
        for _ in g:  # a consumer that only waits: the tuner adds what it may
            pass
    for _, _, threads, prefetch in g.stats().tuning:
        assert 1 <= threads <= 6 and 1 <= prefetch <= 5
    # Blocks too large for two in the budget: one block ahead, and an explicit prefetch refused.
    monkeypatch.setattr(fastfeed.memory, "machine_memory", lambda: 2 * block + 1)
    assert Feeder(a, window=256, horizon=1, batch_size=64, output="numpy").prefetch == 1
    with pytest.raises(ValueError, match="lower prefetch"):
        Feeder(a, window=256, horizon=1, batch_size=64, prefetch=2, output="numpy")


def test_the_next_epoch_starts_where_the_last_one_left_off():
    with small_blocks(), tune_window(10**6):  # the tuner never decides: only the forced shape counts
        f = Feeder(S, **WINDOWS, output="numpy")
        it = iter(f)
        next(it)
        retune(f, 3, 5)
        for _ in it:
            pass
        assert (f.num_threads, f.prefetch) == (min(3, fastfeed.spec.cpu_count()), 5)
        it = iter(f)
        next(it)
        assert [p.shape for p in pipelines(f)] == [(f.num_threads, 5)]
        it.close()


def test_stats_repr_and_epoch_log_show_the_choice(caplog):
    cores = fastfeed.spec.cpu_count()
    with small_blocks():
        f = Feeder(S, **WINDOWS, output="numpy")
    assert f"num_threads=auto (1 now, at most {cores})" in repr(f)
    assert f.stats().threads == 1 and f.stats().tuning == ()  # nothing fed yet
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        list(f)
    st = f.stats()
    assert st.threads_auto and st.prefetch_auto and 1 <= st.threads <= cores
    assert st.tuning[0][:2] == (0, 0) and st.tuning[-1][2:] == (st.threads, st.prefetch)
    assert f"threads {st.threads} (auto)" in str(st)
    assert f"num_threads=auto ({st.threads} now, at most {cores})" in repr(f)
    line = [r.getMessage() for r in caplog.records if "epoch 0 done" in r.getMessage()]
    assert len(line) == 1 and f"threads {st.threads} (auto, at most {cores}), prefetch {st.prefetch}" in line[0]
    f.reset_stats()
    assert f.stats().tuning == st.tuning  # a setting, not a counter: reset_stats keeps it

    g = Feeder(S, **WINDOWS, num_threads=1, prefetch=2, output="numpy")
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        list(g)
    assert any(r.getMessage().endswith("; threads 1, prefetch 2") for r in caplog.records)


def test_parked_workers_end_with_the_iteration():
    # num_threads=None starts every worker the cores allow and parks all but one: a break,
    # close() or the garbage collector ends the parked ones too.
    import gc

    base = native_threads()
    with small_blocks():
        f = Feeder(S, **WINDOWS, output="numpy")
        it = iter(f)
        next(it)
        assert native_threads() == base + fastfeed.spec.cpu_count()
        del it
        gc.collect()
        assert wait_for_threads(base) == base
        it = iter(f)
        next(it)
        f.close()
        assert wait_for_threads(base) == base
