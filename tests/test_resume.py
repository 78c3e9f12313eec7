"""The training-loop contract: exact resume, virtual epochs, rank shares, stats."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastfeed import Feeder, reference

from helpers import mask_of, to_numpy

SERIES = np.arange(500, dtype=np.float32).reshape(250, 2)
SEQS = [np.arange(n, dtype=np.int32) + 1000 * i for i, n in enumerate([5, 0, 9, 3, 12, 7, 1, 4, 8, 6, 2])]


def window_feeder(**kw):
    base = dict(window=6, horizon=2, batch_size=7, shuffle=True, seed=11, output="numpy")
    base.update(kw)
    return Feeder(SERIES, **base)


def sequence_feeder(**kw):
    base = dict(window=None, batch_size=3, shuffle=True, seed=5, output="numpy")
    base.update(kw)
    return Feeder(SEQS, **base)


def xs(batches):
    return [to_numpy(b[0]).copy() for b in batches]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for i, (p, q) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(p, q, err_msg=f"batch {i}")


MAKERS = {
    "windows": window_feeder,
    "windows-virtual-ranks": lambda **kw: window_feeder(steps_per_epoch=9, rank=1, world_size=2, **kw),
    "sequences": sequence_feeder,
    "buckets": lambda **kw: sequence_feeder(bucket=True, bucket_pool=2, **kw),
    "packed-virtual": lambda **kw: sequence_feeder(pack=True, max_len=5, steps_per_epoch=4, **kw),
    "packed-ranks": lambda **kw: sequence_feeder(pack=True, max_len=4, rank=2, world_size=3, **kw),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
@given(stop=st.integers(0, 12), epoch=st.integers(0, 3), threads=st.integers(1, 3), prefetch=st.integers(1, 5))
def test_resume_yields_exactly_the_next_batches(kind, stop, epoch, threads, prefetch):
    make = MAKERS[kind]
    whole = make(num_threads=2, prefetch=3)
    whole.set_epoch(epoch)
    want = xs(whole)
    following = xs(whole)  # the epoch after
    stop = min(stop, len(want))

    first = make(num_threads=threads, prefetch=prefetch)
    first.set_epoch(epoch)
    it = iter(first)
    got = [to_numpy(next(it)[0]).copy() for _ in range(stop)]  # the workers have prefetched more than this
    state = json.loads(json.dumps(first.state_dict()))  # plain values only
    del it

    second = make(num_threads=4 - threads, prefetch=6 - prefetch)
    second.load_state_dict(state)
    if stop < len(want):
        assert_batches_equal(got + xs(second), want)
    else:  # the whole epoch was delivered: what comes next is the next epoch
        assert_batches_equal(got, want)
    assert_batches_equal(xs(second), following)


def test_state_between_epochs_and_after_the_last_batch():
    f = window_feeder()
    list(f)
    assert f.state_dict()["epoch"] == 1 and f.state_dict()["batch"] == 0
    it = iter(f)
    for _ in range(len(f)):
        next(it)
    state = f.state_dict()  # every batch of epoch 1 delivered, StopIteration not reached yet
    assert (state["epoch"], state["batch"]) == (2, 0)
    g = window_feeder()
    g.load_state_dict(state)
    h = window_feeder()
    h.set_epoch(2)
    assert_batches_equal(xs(g), xs(h))


def test_resume_in_a_new_process(tmp_path):
    np.save(tmp_path / "s.npy", SERIES)
    f = Feeder(str(tmp_path / "s.npy"), window=6, horizon=2, batch_size=7, shuffle=True, seed=11, output="numpy")
    it = iter(f)
    for _ in range(5):
        next(it)
    (tmp_path / "state.json").write_text(json.dumps(f.state_dict()))
    want = to_numpy(next(it)[0])
    script = textwrap.dedent(f"""
        import json, numpy as np
        from fastfeed import Feeder
        f = Feeder({str(tmp_path / "s.npy")!r}, window=6, horizon=2, batch_size=7, shuffle=True, seed=11,
                   output="numpy", num_threads=1)
        f.load_state_dict(json.load(open({str(tmp_path / "state.json")!r})))
        np.save({str(tmp_path / "next.npy")!r}, next(iter(f))[0])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    np.testing.assert_array_equal(np.load(tmp_path / "next.npy"), want)


def test_state_fits_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    f = sequence_feeder()
    it = iter(f)
    next(it)
    torch.save(f.state_dict(), tmp_path / "s.pt")
    g = sequence_feeder()
    g.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert_batches_equal(xs(g), xs(sequence_feeder())[1:])


def test_state_from_another_configuration_or_data_is_refused():
    state = window_feeder().state_dict()
    window_feeder(batch_size=8).load_state_dict(state)  # windows resume elastically (tests/test_elastic.py)
    with pytest.raises(ValueError, match="window: saved 6, this feeder 5"):
        window_feeder(window=5).load_state_dict(state)
    with pytest.raises(ValueError, match="seed: saved 11, this feeder 12"):
        window_feeder(seed=12).load_state_dict(state)
    for row in (-1, 0, 125):  # the last, the first, and one in the middle
        other = SERIES.copy()
        other[row, 1] += 1
        with pytest.raises(ValueError, match="data: saved"):
            Feeder(other, window=6, horizon=2, batch_size=7, shuffle=True, seed=11).load_state_dict(state)
    targets = SERIES[:, :1].copy()
    with_targets = window_feeder(targets=targets).state_dict()
    targets[100] += 1
    with pytest.raises(ValueError, match="data: saved"):
        window_feeder(targets=targets).load_state_dict(with_targets)
    with pytest.raises(ValueError, match="not a fastfeed Feeder state"):
        window_feeder().load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match=r"normalize: saved None, this feeder '[0-9a-f]+'"):
        window_feeder(normalize="standard").load_state_dict(state)
    scaled = window_feeder(normalize=([1.0, 2.0], [3.0, 4.0])).state_dict()
    with pytest.raises(ValueError, match="normalize: saved"):
        window_feeder(normalize=([1.0, 2.0], [3.0, 5.0])).load_state_dict(scaled)
    window_feeder(normalize=([1.0, 2.0], [3.0, 4.0])).load_state_dict(scaled)  # the same values: accepted
    padded = sequence_feeder(normalize="standard").state_dict()
    with pytest.raises(ValueError, match=r"normalize: saved '[0-9a-f]+', this feeder None"):
        sequence_feeder().load_state_dict(padded)
    older = dict(state, fastfeed_state=3)
    with pytest.raises(ValueError, match="has version 3, from another fastfeed release; this one reads version 4"):
        window_feeder().load_state_dict(older)
    bad = dict(state, batch=10_000)
    with pytest.raises(ValueError, match="out of range"):
        window_feeder().load_state_dict(bad)
    assert len(json.dumps(state)) < 1000  # small: no per-sample data


def test_set_epoch_and_load_state_dict_set_the_epoch_attribute():
    f = window_feeder()
    assert f.epoch == 0
    f.set_epoch(3)
    assert f.epoch == 3  # set_epoch sets it at once, before the iteration starts
    it = iter(f)
    next(it)
    state = f.state_dict()
    assert f.epoch == 3 and state["epoch"] == 3
    list(it)
    list(f)
    assert f.epoch == 4  # advanced when the next iteration started
    g = window_feeder()
    g.load_state_dict(state)
    assert g.epoch == 3


def test_set_epoch_of_the_loaded_epoch_keeps_the_loaded_position():
    # The usual loop after resuming: load_state_dict(state), then set_epoch(epoch) each epoch,
    # starting with the epoch the state was taken in.
    f = window_feeder()
    f.set_epoch(2)
    it = iter(f)
    for _ in range(3):
        next(it)
    state = f.state_dict()
    rest = xs(it)
    g = window_feeder()
    g.load_state_dict(state)
    g.set_epoch(2)
    assert len(rest) == len(f) - 3
    assert_batches_equal(xs(g), rest)
    h = window_feeder()  # another epoch: from its first batch
    h.load_state_dict(state)
    h.set_epoch(3)
    fresh = window_feeder()
    fresh.set_epoch(3)
    assert h.epoch == 3
    assert_batches_equal(xs(h), xs(fresh))


# ----- virtual epochs ---------------------------------------------------------------------


def test_virtual_epochs_continue_the_stream_and_reshuffle_each_pass():
    series = np.arange(20, dtype=np.int64)
    f = Feeder(series, window=1, batch_size=3, shuffle=True, seed=2, steps_per_epoch=4, output="numpy")
    stream = []
    for _ in range(5):
        batches = list(f)
        assert len(batches) == 4 == len(f)
        assert all(len(b[0]) == 3 for b in batches)
        stream.extend(int(v) for b in batches for v in b[0].reshape(-1))
    passes = [stream[i : i + 20] for i in range(0, 60, 20)]
    for p in passes:
        assert sorted(p) == list(range(20))  # every pass is a permutation
    assert passes[0] != passes[1]  # a new pass reshuffles
    assert passes[0] == reference.permutation(20, 2, 0).tolist()
    assert passes[1] == reference.permutation(20, 2, 1).tolist()


# ----- ranks ------------------------------------------------------------------------------


@given(
    n=st.integers(1, 60),
    world=st.integers(1, 5),
    batch_size=st.integers(1, 7),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
)
def test_rank_shares_are_disjoint_with_equal_batch_counts(n, world, batch_size, drop_last, shuffle):
    series = np.arange(n, dtype=np.int64)
    kw = dict(window=1, batch_size=batch_size, shuffle=shuffle, seed=9, drop_last=drop_last, output="numpy")
    if n < world or (drop_last and n // world < batch_size):  # some rank would get no batch
        with pytest.raises(ValueError, match=r"leaves (rank 0 nothing|no batch)"):
            Feeder(series, rank=0, world_size=world, **kw)
        return
    shares, lengths = [], set()
    for rank in range(world):
        f = Feeder(series, rank=rank, world_size=world, **kw)
        batches = list(f)
        lengths |= {len(f), len(batches)}
        assert all(len(b[0]) == batch_size for b in batches[:-1])
        shares.append([int(v) for b in batches for v in b[0].reshape(-1)])
    assert len(lengths) == 1  # every rank the same number of batches, and len() says how many
    every = [v for share in shares for v in share]
    assert len(every) == len(set(every))  # disjoint
    left_out = n - len(every)
    if drop_last:
        assert left_out < world * batch_size
    elif n % world == 0 or (n // world) % batch_size != 0:
        assert left_out == 0  # the rest fits into the first ranks' last batches
    else:
        assert left_out == n % world  # it would have been one more batch on some ranks


@pytest.mark.parametrize("mode", ["plain", "bucket", "pack"])
@pytest.mark.parametrize("world", [2, 3, 5])
def test_rank_shares_of_whole_sequences_are_disjoint_and_lose_at_most_a_few(mode, world):
    seqs = [100 * i + np.arange(2 + i % 5, dtype=np.int64) for i in range(23)]  # a step's value names it
    kw = dict(window=None, batch_size=3, shuffle=True, seed=4, output="numpy")
    kw.update({"plain": {}, "bucket": dict(bucket=True, bucket_pool=2), "pack": dict(pack=True, max_len=8)}[mode])
    steps, lengths = [], set()
    for rank in range(world):
        f = Feeder(seqs, rank=rank, world_size=world, **kw)
        batches = list(f)
        lengths |= {len(f), len(batches)}
        steps += [int(v) for b in batches for v in b.x[mask_of(b)]]
    assert len(lengths) == 1  # every rank the same number of batches
    assert len(steps) == len(set(steps))  # disjoint: no step (so no sequence) read twice
    missing = {int(v) for s in seqs for v in s} - set(steps)
    if mode == "pack":  # at most world - 1 rows of max_len steps sit the pass out
        assert len(missing) < world * 8
    else:  # at most world - 1 whole sequences do
        lost = {v // 100 for v in missing}
        assert len(lost) < world and missing == {int(v) for i in lost for v in seqs[i]}


def test_rank_errors():
    with pytest.raises(ValueError, match=r"rank=2 is out of range for world_size=2 \(ranks are 0..1\)"):
        Feeder(SERIES, window=2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size must be >= 1"):
        Feeder(SERIES, window=2, rank=0, world_size=0)


def test_torchrun_two_ranks_cover_disjoint_equal_shares(tmp_path):
    pytest.importorskip("torch")
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, os
        import numpy as np
        import torch.distributed as dist
        from fastfeed import Feeder
        dist.init_process_group("gloo")
        series = np.arange(1001, dtype=np.int64)
        # rank and world_size come from torch.distributed
        f = Feeder(series, window=1, batch_size=16, shuffle=True, seed=3, output="numpy")
        seen = [int(v) for b in f for v in b[0].reshape(-1)]
        out = {{"rank": f.rank, "world": f.world_size, "batches": len(f), "seen": seen}}
        with open(os.path.join({str(tmp_path)!r}, f"rank{{dist.get_rank()}}.json"), "w") as fh:
            json.dump(out, fh)
        dist.barrier()
        dist.destroy_process_group()
    """)
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in results] == [0, 1] and all(r["world"] == 2 for r in results)
    assert results[0]["batches"] == results[1]["batches"] == 32  # ceil(501 / 16) and ceil(500 / 16)
    a, b = set(results[0]["seen"]), set(results[1]["seen"])
    assert len(results[0]["seen"]) == 501 and len(results[1]["seen"]) == 500  # rank 0 also has the odd one
    assert a | b == set(range(1001))
    assert not a & b  # disjoint


# ----- stats ------------------------------------------------------------------------------


def test_stats_count_what_was_delivered():
    f = window_feeder(shuffle=False)
    batches = list(f)
    s = f.stats()
    assert s.batches == len(batches) == len(f)
    assert s.samples == f.num_samples
    assert s.bytes == sum(b[0].nbytes + b[1].nbytes for b in batches)
    assert s.elapsed_s > 0 and s.samples_per_s > 0 and s.mb_per_s > 0
    assert 0 <= s.wait_p50_s <= s.wait_p99_s and s.wait_total_s >= 0
    assert s.padding_fraction == 0.0
    f.reset_stats()
    assert f.stats().batches == 0


def test_stats_padding_fraction_is_the_share_of_padded_steps():
    f = sequence_feeder(shuffle=False)
    masks = [mask_of(b).copy() for b in f]
    padded = sum((~m).sum() for m in masks)
    total = sum(m.size for m in masks)
    assert f.stats().padding_fraction == pytest.approx(padded / total)


def test_stats_count_every_batch_handed_out_also_inside_a_block():
    # Small batches travel in blocks of hundreds; stats() must not wait for a block to end.
    f = Feeder(np.arange(100_000.0), window=5, batch_size=10, output="numpy")
    it = iter(f)
    done = 0
    for upto in (1, 100, 409, 500, 1234):
        for _ in range(upto - done):
            next(it)
        done = upto
        s = f.stats()
        assert (s.batches, s.samples, s.bytes) == (upto, 10 * upto, 10 * upto * 5 * 8)
    f.reset_stats()
    for _ in range(7):
        next(it)
    assert f.stats().batches == 7
    it.close()
    assert f.stats().batches == 7  # what was counted as pending is counted once, when the loop ends


def test_epoch_summary_describes_that_epoch(caplog):
    f = window_feeder()
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        list(f)
        list(f)
    lines = [r.message for r in caplog.records if "done:" in r.message]
    n = len(f)
    samples = 250 - 6 - 2 + 1  # windows of 6 with horizon 2 over 250 steps
    assert lines[0].startswith(f"epoch 0 done: {n} batches, {samples} samples")
    assert lines[1].startswith(f"epoch 1 done: {n} batches, {samples} samples")  # that epoch's own, not a sum


def test_progress_bar_shows_the_epoch(capsys):
    pytest.importorskip("tqdm")
    list(window_feeder(progress=True))
    assert "epoch 0" in capsys.readouterr().err


def test_reset_stats_in_the_middle_of_an_epoch_keeps_counting():
    f = window_feeder(shuffle=False)
    it = iter(f)
    next(it)
    f.reset_stats()
    rest = list(it)
    s = f.stats()
    assert s.batches == len(rest) and s.elapsed_s > 0 and s.samples_per_s > 0


def test_a_state_saved_with_a_negative_seed_resumes_with_its_unsigned_equal():
    # The previous release took seed=-1 and shuffled by it as 2**64 - 1; seeds must now lie in
    # [0, 2**64). Its saved state (made by that release) resumes a Feeder with seed=2**64 - 1.
    saved = json.loads((Path(__file__).parent / "fixtures" / "negative_seed_state.json").read_text())
    s = np.arange(200, dtype=np.float32)
    f = Feeder(s, window=5, horizon=1, batch_size=4, shuffle=True, seed=2**64 - 1, output="numpy")
    f.load_state_dict(saved["state"])
    x, y = next(iter(f))
    np.testing.assert_array_equal(x, np.array(saved["next_x"], np.float32))
    np.testing.assert_array_equal(y, np.array(saved["next_y"], np.float32))
    other = Feeder(s, window=5, horizon=1, batch_size=4, shuffle=True, seed=7, output="numpy")
    with pytest.raises(ValueError, match=r"seed: saved 18446744073709551615, this feeder 7"):
        other.load_state_dict(saved["state"])


def test_stats_count_bytes_exactly_in_the_middle_of_a_block():
    # 125 batches of 8 windows (4 steps in, 2 out, float32: 192 bytes a batch) travel in one block
    # whose last batch is short: bytes handed out so far are whole batches' bytes, not an average.
    f = Feeder(np.arange(1000, dtype=np.float32), window=4, horizon=2, batch_size=8, output="numpy")
    it = iter(f)
    for _ in range(5):
        next(it)
    st = f.stats()
    assert (st.batches, st.samples, st.bytes) == (5, 40, 5 * 192)
    list(it)
    assert f.stats().bytes == 995 * 24  # 995 windows of 6 float32 steps
