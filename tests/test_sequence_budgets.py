"""Whole sequences cut by a token budget (batch_tokens=N) and packed by best fit
(pack="best_fit"): the Feeder against fastfeed.reference on random configurations, and the
edges by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fastfeed import Feeder, reference

from helpers import to_numpy

FIELDS = ("x", "y", "mask", "lengths", "segment_ids", "position_ids", "cu_seqlens")


def as_dict(batch) -> dict:
    return {name: None if getattr(batch, name) is None else to_numpy(getattr(batch, name)).copy() for name in FIELDS}


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want), f"{len(got)} batches, reference has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        for name in FIELDS:
            wv = w.get(name)
            if wv is None:
                assert g[name] is None, f"batch {i}: {name} should be None"
                continue
            assert g[name].dtype == wv.dtype, f"batch {i}: {name} dtype {g[name].dtype} != {wv.dtype}"
            np.testing.assert_array_equal(g[name], wv, err_msg=f"batch {i}: {name}")


def numbered(lengths, dtype=np.int32):
    """Sequence i holds i * 1000 + 1, i * 1000 + 2, ...: every step names its sequence and place."""
    return [(np.arange(n) + 1 + i * 1000).astype(dtype) for i, n in enumerate(lengths)]


def lognormal_lengths(n, seed=0):
    """W3's lengths: lognormal with median 150 and sigma 1, clipped to [1, 2048]."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(150), 1.0, n).astype(int), 1, 2048)


# ----- against the reference ----------------------------------------------------------------


def token_refusal(lengths, cfg):
    """What the Feeder must refuse of a token-budget configuration (a regex), or None."""
    n, max_len, multiple = cfg["batch_tokens"], cfg.get("max_len"), cfg.get("pad_multiple", 1)
    if max_len is not None and max_len > n:
        return f"batch_tokens={n} is smaller than max_len={max_len}"
    kept = [min(k, max_len) if max_len else k for k in lengths]
    padded = [max_len if max_len else max(1, -(-k // multiple) * multiple) for k in kept]
    if max(padded) > n:
        return f"batch_tokens={n} (is smaller than|cannot hold) sequence"
    fewest = -(-sum(padded) // n) - (1 if cfg.get("drop_last") else 0)
    if fewest // cfg.get("world_size", 1) < 1:
        return "batch_tokens=.* may (cut a pass|leave no batch)"
    return None


def best_fit_refusal(lengths, cfg):
    """What the Feeder must refuse of a best-fit configuration, or None: every rank must get a
    row (and a batch, without virtual epochs) from the fewest rows a pass can fill."""
    total = sum(lengths)
    if total == 0:
        return "every sequence is empty"
    rows = len(
        reference.rank_share(
            -(-total // cfg["max_len"]), cfg["rank"], cfg["world_size"], cfg["drop_last"], cfg["batch_size"]
        )
    )
    if rows == 0:
        return "leaves rank"
    batches = rows // cfg["batch_size"] if cfg["drop_last"] else -(-rows // cfg["batch_size"])
    if cfg.get("steps_per_epoch") is None and batches == 0:
        return "leaves no batch"
    return None


@st.composite
def budget_configs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lengths = draw(st.lists(st.integers(0, 30), min_size=1, max_size=40))
    feat = draw(st.sampled_from([(), (2,)]))
    seqs = [rng.integers(-100, 100, size=(n, *feat)).astype(np.float32) for n in lengths]
    mode = draw(st.sampled_from(["tokens", "tokens", "best_fit"]))
    world = draw(st.sampled_from([1, 1, 2, 3]))
    cfg = dict(
        shuffle=draw(st.booleans()),
        seed=draw(st.integers(0, 2**40)),
        drop_last=draw(st.booleans()),
        rank=draw(st.integers(0, world - 1)),
        world_size=world,
        steps_per_epoch=draw(st.sampled_from([None, None, 1, 4])),
    )
    kind = draw(st.sampled_from(["none", "steps"] + (["labels"] if mode == "tokens" else [])))
    targets = None
    if kind == "steps":
        targets = [np.arange(n, dtype=np.int64) * 7 for n in lengths]
    elif kind == "labels":
        targets = np.arange(len(lengths), dtype=np.int16)
    if mode == "tokens":
        cfg.update(
            batch_tokens=draw(st.one_of(st.integers(1, 40), st.integers(30, 200))),
            pad_multiple=draw(st.sampled_from([1, 1, 4])),
        )
        if draw(st.booleans()):
            cfg["max_len"] = draw(st.integers(1, 12))
        cfg["padding_side"] = draw(st.sampled_from(["right", "left"]))
        if draw(st.booleans()):
            cfg.update(bucket=True, bucket_pool=draw(st.integers(1, 3)))
    else:
        cfg.update(pack="best_fit", max_len=draw(st.integers(1, 12)), batch_size=draw(st.integers(1, 4)))
        cfg["bucket_pool"] = draw(st.integers(1, 4))
    run = dict(
        epoch=draw(st.integers(0, 4)),
        threads=draw(st.integers(1, 3)),
        resume_at=draw(st.one_of(st.none(), st.floats(0, 1, exclude_max=True))),
    )
    return lengths, seqs, targets, cfg, run


@settings(max_examples=300, deadline=None)
@given(budget_configs())
def test_budgets_and_best_fit_match_the_reference(c):
    lengths, seqs, targets, cfg, run = c
    why = token_refusal(lengths, cfg) if "batch_tokens" in cfg else best_fit_refusal(lengths, cfg)
    event(f"{'tokens' if 'batch_tokens' in cfg else 'best fit'}: {'refused' if why else 'compared'}")
    if why is not None:
        with pytest.raises(ValueError, match=why):
            Feeder(seqs, window=None, targets=targets, output="numpy", **cfg)
        return
    want = reference.sequence_batches(seqs, targets, epoch=run["epoch"], **cfg)
    f = Feeder(seqs, window=None, targets=targets, output="numpy", num_threads=run["threads"], prefetch=2, **cfg)
    f.set_epoch(run["epoch"])
    assert len(f) == len(want)
    if run["resume_at"] is None:
        got = [as_dict(b) for b in f]
    else:  # a state saved part way, loaded into a new Feeder (other threads), goes on exactly
        stop = int(run["resume_at"] * len(want))
        it = iter(f)
        got = [as_dict(next(it)) for _ in range(stop)]
        state = f.state_dict()
        g = Feeder(seqs, window=None, targets=targets, output="numpy", num_threads=1, prefetch=1, **cfg)
        g.load_state_dict(state)
        assert len(g) == len(want)
        got += [as_dict(b) for b in g]
    assert_same(got, want)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=4, max_size=60),
    world=st.integers(2, 4),
    budget=st.integers(30, 90),
    bucket=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_token_budget_ranks_are_disjoint_with_equal_counts(lengths, world, budget, bucket, seed):
    seqs = numbered(lengths)
    cfg = dict(batch_tokens=budget, shuffle=True, seed=seed, bucket=bucket, world_size=world)
    if token_refusal(lengths, cfg) is not None:
        return
    whole = reference.token_plan(lengths, budget, shuffle=True, seed=seed, bucket=bucket, bucket_pool=256)
    seen = []
    for rank in range(world):
        f = Feeder(seqs, window=None, rank=rank, output="numpy", **cfg)
        n = len(f)  # (epoch 0's: after the iteration, len() tells of epoch 1)
        batches = list(f)
        # Every rank the same number: the pass's batches dealt out, fewer than world_size left over.
        assert n == len(batches) == len(whole) // world
        for b in batches:
            assert b.x.size <= budget
            seen += [int(row[0]) // 1000 for row, n in zip(b.x, b.lengths) if n > 0]
    assert len(seen) == len(set(seen))  # disjoint
    dealt = {i for batch in whole[: len(whole) // world * world] for i in batch if lengths[i] > 0}
    assert set(seen) == dealt


# ----- batch_tokens by hand -------------------------------------------------------------------


def batch_lengths(feeder):
    return [b.lengths.tolist() for b in feeder]


def test_greedy_cut_by_hand_with_the_longest_equal_to_the_budget():
    f = Feeder(numbered([10, 3, 3, 10, 2]), window=None, batch_tokens=10, output="numpy")
    # [10] | [3, 3] (a third row of 10 would be 30) | [10] | [2]
    assert batch_lengths(f) == [[10], [3, 3], [10], [2]]
    assert len(f) == 4
    batches = list(Feeder(numbered([10, 3, 3, 10, 2]), window=None, batch_tokens=10, output="numpy"))
    assert [b.x.shape for b in batches] == [(1, 10), (2, 3), (1, 10), (1, 2)]


def test_as_many_as_fit_and_no_more():
    lengths = lognormal_lengths(3000, seed=1)
    f = Feeder(numbered(lengths), window=None, batch_tokens=4096, pad_multiple=8, output="numpy")
    order = [int(row[0]) // 1000 for b in f for row in b.x]
    assert order == list(range(len(lengths)))  # in order, each once
    start = 0
    for b in f:
        rows, length = b.x.shape
        assert rows * length <= 4096
        assert length == -(-int(b.lengths.max()) // 8) * 8
        start += rows
        if start < len(lengths):  # the next sequence would not have fitted
            longest = max(int(b.lengths.max()), int(lengths[start]))
            assert (rows + 1) * (-(-longest // 8) * 8) > 4096


def test_one_sequence_per_batch():
    f = Feeder(numbered([5] * 7), window=None, batch_tokens=9, output="numpy")
    assert len(f) == 7 and all(len(b.lengths) == 1 for b in f)
    f = Feeder(numbered([5] * 7), window=None, batch_tokens=10, output="numpy")
    assert batch_lengths(f) == [[5, 5]] * 3 + [[5]]


def test_a_sequence_longer_than_the_budget():
    seqs = numbered([3, 12, 4])
    with pytest.raises(
        ValueError, match=r"batch_tokens=8 is smaller than sequence 1, the longest, of 12 steps.*max_len <= 8"
    ):
        Feeder(seqs, window=None, batch_tokens=8)
    # max_len cuts it: every batch is max_len long, batch_tokens // max_len rows.
    f = Feeder(seqs, window=None, batch_tokens=8, max_len=4, output="numpy")
    assert [b.x.shape for b in f] == [(2, 4), (1, 4)]
    assert batch_lengths(f) == [[3, 4], [4]]
    f = Feeder(seqs, window=None, batch_tokens=8, max_len=8, output="numpy")
    assert batch_lengths(f) == [[3], [8], [4]]
    with pytest.raises(ValueError, match=r"batch_tokens=8 is smaller than max_len=9: every batch is padded"):
        Feeder(seqs, window=None, batch_tokens=8, max_len=9)
    with pytest.raises(
        ValueError, match=r"batch_tokens=6 cannot hold sequence 2: its 4 steps are padded to 8 by pad_multiple=8"
    ):
        Feeder(numbered([3, 2, 4]), window=None, batch_tokens=6, pad_multiple=8)


def test_a_skipped_sequence_is_not_the_one_named():
    seqs = [np.arange(n, dtype=np.float32) for n in (3, 20, 30)]
    seqs[2][0] = np.nan  # dropped: the longest left is sequence 1
    with pytest.raises(ValueError, match="smaller than sequence 1, the longest, of 20 steps"):
        Feeder(seqs, window=None, batch_tokens=10, check_finite="skip")


def test_batch_tokens_refuses_batch_size_windows_and_pack():
    seqs = numbered([3, 5, 2])
    with pytest.raises(ValueError, match="batch_tokens=16 and batch_size=4 are alternatives"):
        Feeder(seqs, window=None, batch_tokens=16, batch_size=4)
    with pytest.raises(ValueError, match="batch_tokens=16 and batch_size=1 are alternatives"):
        Feeder(seqs, window=None, batch_tokens=16, batch_size=1)  # given, even if it is the default
    assert Feeder(seqs, window=None).batch_size == 1  # batch_size=None means 1
    with pytest.raises(ValueError, match="batch_tokens applies to whole sequences"):
        Feeder(np.zeros(100, np.float32), window=5, batch_tokens=16)
    with pytest.raises(
        ValueError, match=r"batch_tokens=16 does not apply with pack=True: .* pass batch_size=4 instead"
    ):
        Feeder(seqs, window=None, pack=True, max_len=4, batch_tokens=16)
    with pytest.raises(ValueError, match=r"does not apply with pack='best_fit'.*smaller than one row \(max_len=32\)"):
        Feeder(seqs, window=None, pack="best_fit", max_len=32, batch_tokens=16)
    with pytest.raises(ValueError, match="batch_tokens must be >= 1, got 0"):
        Feeder(seqs, window=None, batch_tokens=0)


def test_too_small_a_pass_for_the_ranks_is_refused():
    with pytest.raises(ValueError, match=r"batch_tokens=100 may cut a pass into as few as 1 batches .*world_size=2"):
        Feeder(numbered([3, 4, 5]), window=None, batch_tokens=100, world_size=2, rank=1)
    with pytest.raises(ValueError, match=r"drop_last=True with batch_tokens=100 may leave no batch"):
        Feeder(numbered([3, 4, 5]), window=None, batch_tokens=100, drop_last=True)


def test_len_is_exact_for_each_epoch_and_resume_goes_on():
    lengths = np.random.default_rng(3).integers(1, 60, 400)
    seqs = numbered(lengths)
    f = Feeder(seqs, window=None, batch_tokens=128, shuffle=True, seed=5, output="numpy")
    sizes = []
    for epoch in range(4):
        n = len(f)  # the epoch the next iteration runs
        it = iter(f)
        first = next(it)
        assert f.epoch == epoch
        assert len(f) == n  # while it runs
        sizes.append(1 + sum(1 for _ in it))
        assert sizes[-1] == n
        del first
    assert len(set(sizes)) > 1  # the count follows the epoch's order
    f.set_epoch(2)
    assert len(f) == sizes[2]
    # A state saved mid-epoch (and one at the epoch's very end) resumes in a new Feeder.
    want = [b.x.copy() for b in Feeder(seqs, window=None, batch_tokens=128, shuffle=True, seed=5, output="numpy")]
    g = Feeder(seqs, window=None, batch_tokens=128, shuffle=True, seed=5, output="numpy")
    it = iter(g)
    for _ in range(7):
        next(it)
    h = Feeder(seqs, window=None, batch_tokens=128, shuffle=True, seed=5, output="numpy", num_threads=1)
    h.load_state_dict(g.state_dict())
    rest = [b.x for b in h]
    assert len(rest) == len(want) - 7
    for a, b in zip(rest, want[7:]):
        np.testing.assert_array_equal(a, b)
    for _ in it:
        pass
    end = g.state_dict()
    assert (end["epoch"], end["batch"]) == (1, 0)
    h.load_state_dict(end)
    assert len(h) == sizes[1]


def test_bucketed_budgets_pad_little_and_keep_every_sequence_once():
    lengths = lognormal_lengths(20000, seed=2)
    seqs = [np.full(n, i, dtype=np.int32) for i, n in enumerate(lengths)]
    f = Feeder(seqs, window=None, batch_tokens=16384, bucket=True, shuffle=True, output="numpy")
    seen = []
    for b in f:
        assert b.x.size <= 16384
        seen.extend(b.x[:, 0].tolist())
    assert sorted(seen) == list(range(len(seqs)))
    assert f.stats().padding_fraction < 0.05
    plain = Feeder(seqs, window=None, batch_tokens=16384, shuffle=True, output="numpy")
    list(plain)
    assert plain.stats().padding_fraction > 0.5


def test_virtual_epochs_of_token_batches_run_on_across_passes():
    lengths = [5, 9, 2, 7, 7, 1, 3, 8]
    seqs = numbered(lengths)
    cfg = dict(batch_tokens=16, shuffle=True, seed=9, steps_per_epoch=5)
    f = Feeder(seqs, window=None, output="numpy", **cfg)
    stream = [b.x.copy() for epoch in range(4) for b in f]
    assert len(stream) == 20 and len(f) == 5
    passes = [reference.token_plan(lengths, 16, shuffle=True, seed=9, pass_=p) for p in range(20)]
    flat = [batch for plan in passes for batch in plan][:20]
    assert [[int(r[0]) // 1000 for r in x] for x in stream] == flat


# ----- best fit by hand -----------------------------------------------------------------------


def rows_of(feeder):
    """Each row as the (sequence, first step, steps) of its pieces, from the numbered values."""
    out = []
    for b in feeder:
        for x, seg in zip(b.x, b.segment_ids):
            row = []
            for s in range(1, int(seg.max()) + 1):
                v = x[seg == s]
                row.append((int(v[0]) // 1000, int(v[0]) % 1000 - 1, len(v)))
            out.append(row)
    return out


def test_best_fit_decreasing_by_hand():
    f = Feeder(numbered([6, 5, 4, 3, 2]), window=None, pack="best_fit", max_len=10, batch_size=2, output="numpy")
    # 6 opens a row (4 left), 5 another (5 left); 4 fits the first exactly, 3 and 2 the second.
    assert rows_of(f) == [[(0, 0, 6), (2, 0, 4)], [(1, 0, 5), (3, 0, 3), (4, 0, 2)]]
    b = next(iter(f))
    np.testing.assert_array_equal(b.position_ids[1], [0, 1, 2, 3, 4, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(b.cu_seqlens, [0, 6, 10, 15, 18, 20])
    np.testing.assert_array_equal(b.lengths, [10, 10])


def test_best_fit_pieces_of_long_sequences():
    f = Feeder(numbered([10, 2, 3]), window=None, pack="best_fit", max_len=4, output="numpy")
    # Sequence 0's full pieces fill rows of their own; its last piece (2 steps) is placed like a
    # sequence: 3 opens a row, then the two pieces of 2 (in the pool's order) share one.
    assert rows_of(f) == [[(0, 0, 4)], [(0, 4, 4)], [(2, 0, 3)], [(0, 8, 2), (1, 0, 2)]]
    # A length that is a multiple of max_len leaves no last piece.
    assert rows_of(Feeder(numbered([8, 1]), window=None, pack="best_fit", max_len=4, output="numpy")) == [
        [(0, 0, 4)],
        [(0, 4, 4)],
        [(1, 0, 1)],
    ]


def test_best_fit_never_cuts_a_short_sequence_and_keeps_every_step_once():
    lengths = np.concatenate([lognormal_lengths(3000, seed=4) // 4, [0, 300, 256, 1000]])
    max_len = 256
    seqs = numbered(lengths)
    f = Feeder(seqs, window=None, pack="best_fit", max_len=max_len, batch_size=8, shuffle=True, seed=1, output="numpy")
    for _ in range(2):  # two epochs
        n = len(f)
        rows = rows_of(f)
        assert -(-len(rows) // 8) == n
        pieces = {}
        for row in rows:
            assert sum(p[2] for p in row) <= max_len
            for seq, first, count in row:
                pieces.setdefault(seq, []).append((first, count))
        for seq, n_steps in enumerate(lengths):
            got = sorted(pieces.get(seq, []))
            if n_steps == 0:
                assert got == []
            elif n_steps <= max_len:
                assert got == [(0, n_steps)]  # whole, in one row
            else:  # full pieces of max_len, and the rest
                want = [(s, min(max_len, n_steps - s)) for s in range(0, n_steps, max_len)]
                assert got == want
    # Rows are shuffled: the longest pieces are not all first.
    firsts = [row[0][2] for row in rows[:50]]
    assert firsts != sorted(firsts, reverse=True)


def test_best_fit_padding_on_w3_lengths():
    """W3's 200,000 int32 sequences (lognormal, median 150, sigma 1, clipped to [1, 2048]) packed
    by best fit into rows of 2048: under 1% padding (0.33% measured; pack=True is the floor)."""
    lengths = lognormal_lengths(200_000)
    values = np.ones(int(lengths.sum()), np.int32)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    seqs = [values[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]
    f = Feeder(seqs, window=None, pack="best_fit", max_len=2048, batch_size=64, shuffle=True, output="numpy")
    real = rows = 0
    for b in f:
        real += int(b.lengths.sum())
        rows += len(b.lengths)
    assert real == int(lengths.sum())  # every step, once
    padding = 1 - real / (rows * 2048)
    assert padding == pytest.approx(f.stats().padding_fraction)
    assert padding <= 0.01, padding
    assert rows < -(-real // 2048) * 1.01


def test_best_fit_len_follows_the_epoch_deterministically():
    lengths = np.random.default_rng(0).integers(1, 100, 500)
    seqs = numbered(lengths)

    def epochs(n):
        f = Feeder(seqs, window=None, pack="best_fit", max_len=128, bucket_pool=4, shuffle=True, seed=2, output="numpy")
        out = []
        for _ in range(n):
            m = len(f)
            out.append([b.x.copy() for b in f])
            assert len(out[-1]) == m
        return out

    a, b = epochs(3), epochs(3)
    for ea, eb in zip(a, b):  # a pure function of (seed, epoch)
        assert len(ea) == len(eb) and all(np.array_equal(x, y) for x, y in zip(ea, eb))
    assert not all(len(x) == len(y) and np.array_equal(x[0], y[0]) for x, y in zip(a[0], a[1]))


def test_best_fit_options():
    seqs = numbered([3, 4])
    with pytest.raises(ValueError, match=r"pack='best_fit' and bucket=True are alternatives"):
        Feeder(seqs, window=None, pack="best_fit", max_len=4, bucket=True)
    with pytest.raises(ValueError, match=r"pad_multiple=8 does not apply with pack='best_fit'"):
        Feeder(seqs, window=None, pack="best_fit", max_len=4, pad_multiple=8)
    with pytest.raises(ValueError, match=r"pack='best_fit' cannot carry one label per sequence"):
        Feeder(seqs, window=None, pack="best_fit", max_len=4, targets=np.zeros(2))
    f = Feeder(seqs, window=None, pack="best_fit", max_len=4, bucket_pool=2)
    assert f.pack == "best_fit" and f.bucket_pool == 2
    assert f.state_dict()["fingerprint"]["pack"] == "best_fit"
    g = Feeder(seqs, window=None, pack=True, max_len=4)
    with pytest.raises(ValueError, match="pack: saved 'best_fit', this feeder True"):
        g.load_state_dict(f.state_dict())


def test_a_device_cache_builds_the_same_batches():
    """device_cache=True builds batches from the core's pieces (here on a CPU device): token
    budgets and best-fit rows come out as the host builds them."""
    pytest.importorskip("torch")
    lengths = np.random.default_rng(5).integers(0, 40, 120)
    seqs = numbered(lengths, np.float32)
    for cfg in (
        dict(batch_tokens=96, bucket=True, shuffle=True, pad_multiple=4),
        dict(batch_tokens=96, max_len=24, shuffle=True),
        dict(pack="best_fit", max_len=16, batch_size=3, shuffle=True, bucket_pool=3),
    ):
        host = [as_dict(b) for b in Feeder(seqs, window=None, output="torch", **cfg)]
        f = Feeder(seqs, window=None, output="torch", **cfg)
        f._mode.attach_cache("cpu")
        assert_same([as_dict(b) for b in f], host)
