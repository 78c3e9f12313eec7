"""Elastic resume: a state saved with another world_size or batch_size goes on from the same
point of the epoch's order, over all ranks together: nothing repeated, nothing skipped beyond
the fewer-than-world_size leftovers."""

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed import Feeder, mix, reference

SERIES = [np.arange(0, 300, dtype=np.float32), np.arange(1000, 1200, dtype=np.float32)]
WINDOWS = (300 - 2) + (200 - 2)  # window 2 with horizon 1: span 3


def _feeders(world, batch, steps=None, **kw):
    return [
        Feeder(
            SERIES,
            window=2,
            horizon=1,
            batch_size=batch,
            shuffle=True,
            seed=4,
            rank=r,
            world_size=world,
            steps_per_epoch=steps,
            output="numpy",
            **kw,
        )
        for r in range(world)
    ]


def _take(feeder, count=None):
    out = []
    for i, b in enumerate(feeder):
        out.append(b.x[:, 0])
        if count is not None and i + 1 == count:
            break
    return out


@settings(max_examples=25, deadline=None)
@given(
    old=st.tuples(st.integers(1, 4), st.integers(1, 9)),
    new=st.tuples(st.integers(1, 4), st.integers(1, 9)),
    done=st.integers(1, 10),
    drop_last=st.booleans(),
)
def test_an_epoch_goes_on_over_all_ranks_with_other_world_and_batch_sizes(old, new, done, drop_last):
    old_feeders = _feeders(*old, drop_last=drop_last)
    done = min(done, len(old_feeders[0]) - 1)
    first = [_take(f, done) for f in old_feeders]
    states = [json.loads(json.dumps(f.state_dict())) for f in old_feeders]
    assert all(s["stream"] == states[0]["stream"] for s in states)  # every rank saves the same point
    new_feeders = _feeders(*new, drop_last=drop_last)
    for r, f in enumerate(new_feeders):
        f.load_state_dict(states[r % len(states)])
    rest = [_take(f) for f in new_feeders]
    assert len({len(r) for r in rest}) == 1  # every rank the same number of batches
    seen = Counter(np.concatenate([x for part in first + rest for x in part]).tolist())
    assert max(seen.values()) == 1
    offset = done * old[0] * old[1]
    assert states[0]["stream"] == {"pass": 0, "offset": offset, "origin": None}
    # The new ranks read exactly their shares of the rest of the pass, in the pass's order.
    order = reference.permutation(WINDOWS, 4, 0)
    starts = reference.window_starts([300, 200], 2, horizon=1)
    for r, part in enumerate(rest):
        positions = reference.resumed_share(WINDOWS, offset, r, new[0], drop_last, new[1])
        if drop_last:
            positions = positions[: len(positions) // new[1] * new[1]]
        want = [SERIES[s][t] for s, t in (starts[order[p]] for p in positions)]
        np.testing.assert_array_equal(np.concatenate(part) if part else [], want)
    assert WINDOWS - offset - sum(sum(len(x) for x in part) for part in rest) < new[0] * (new[1] if drop_last else 1)


def test_virtual_epochs_go_on_from_the_same_point_and_keep_their_length():
    old = _feeders(2, 8, steps=30)
    first = [_take(f, 21) for f in old]
    state = old[0].state_dict()
    assert state["stream"] == {"pass": 0, "offset": 2 * 8 * 21, "origin": None}
    new = _feeders(3, 5, steps=30)
    for f in new:
        f.load_state_dict(state)
    rest = [_take(f) for f in new]
    assert [len(r) for r in rest] == [9, 9, 9]  # the epoch's 30 batches: 21 before, 9 after
    seen = Counter(np.concatenate([x for part in first + rest for x in part]).tolist())
    assert max(seen.values()) == 1 and sum(seen.values()) == 336 + 135
    # A state saved after the resume, loaded with the same sizes, goes on exactly.
    again = _feeders(3, 5, steps=30)
    for f in again:
        f.load_state_dict(state)
    it = iter(again[1])
    next(it)
    saved = again[1].state_dict()
    follow = list(it)
    exact = _feeders(3, 5, steps=30)[1]
    exact.load_state_dict(saved)
    for a, b in zip(follow, exact):
        np.testing.assert_array_equal(a.x, b.x)


def test_mixtures_resume_elastically_on_the_same_stream():
    comps = {"a": np.arange(60.0), "b": np.arange(1000.0, 1200.0)}
    kw = dict(window=2, target_shift=1, steps_per_epoch=12, shuffle=True, seed=2, with_index=True, output="numpy")
    one = Feeder(mix(comps, {"a": 1, "b": 2}), batch_size=4, **kw)
    it = iter(one)
    taken = [next(it) for _ in range(5)]
    state = one.state_dict()
    assert state["mix"]["position"] == 20
    ranks = [Feeder(mix(comps, {"a": 1, "b": 2}), batch_size=3, rank=r, world_size=2, **kw) for r in range(2)]
    for f in ranks:
        f.load_state_dict(state)
    got = {}  # stream position -> (source, start)
    for r, f in enumerate(ranks):
        q = 0
        for b in f:
            for src, start in zip(b.source, b.start):
                got[20 + q * 2 + r] = (int(src), int(start))
                q += 1
    single = Feeder(mix(comps, {"a": 1, "b": 2}), batch_size=1, **{**kw, "steps_per_epoch": 20 + len(got)})
    stream = [(int(b.source[0]), int(b.start[0])) for b in single]
    assert [got[n] for n in sorted(got)] == stream[20 : 20 + len(got)]
    assert [(int(s), int(t)) for b in taken for s, t in zip(b.source, b.start)] == stream[:20]


def test_what_cannot_resume_elastically_is_refused():
    seqs = [np.arange(n, dtype=np.float32) for n in (3, 5, 2, 7)]
    f = Feeder(seqs, window=None, batch_size=2, bucket=True)
    next(iter(f))
    old_release = {k: v for k, v in f.state_dict().items() if k != "stream"}  # as saved before stream positions
    with pytest.raises(ValueError, match=r"another batch_size \(saved 2, this feeder 3\).*holds no stream position"):
        Feeder(seqs, window=None, batch_size=3, bucket=True).load_state_dict(old_release)
    g = _feeders(2, 4)[0]
    with pytest.raises(ValueError, match="window: saved 2, this feeder 3"):
        Feeder(SERIES, window=3, horizon=1, batch_size=4, shuffle=True, seed=4).load_state_dict(g.state_dict())


@pytest.mark.parametrize("old,new", [((3, 5), (2, 5)), ((2, 5), (3, 4)), ((3, 3), (4, 2)), ((1, 7), (3, 5))])
def test_virtual_epochs_resume_elastically_after_passes_end(old, new):
    # 115 windows, shuffled: each pass gives every rank 115 // world_size of them (the rest sit
    # it out), and passes end inside the run, before and after the resume.
    x = np.arange(117, dtype=np.float32)

    def make(world, batch, rank):
        return Feeder(
            x,
            window=3,
            batch_size=batch,
            shuffle=True,
            seed=11,
            steps_per_epoch=6,
            rank=rank,
            world_size=world,
            with_index=True,
            output="numpy",
        )

    olds = [make(*old, r) for r in range(old[0])]
    for f in olds:
        _take_batches(f, 6)  # epoch 0
        _take_batches(f, 2)  # and 2 batches of epoch 1
    states = [f.state_dict() for f in olds]
    assert all(s["stream"] == states[0]["stream"] for s in states)
    consumed = 8 * old[1]  # by each old rank
    per_old = 115 // old[0]
    point = {"pass": consumed // per_old, "offset": consumed % per_old * old[0], "origin": None}
    assert states[0]["stream"] == point
    news = [make(*new, r) for r in range(new[0])]
    for r, f in enumerate(news):
        f.load_state_dict(states[r % len(states)])
        rest = _take_batches(f, 6) + _take_batches(f, 6)  # the rest of epoch 1 (4 batches), then epoch 2
        assert len(rest) == 10
        got = np.concatenate([b.start for b in rest])
        want, pass_, offset = [], point["pass"], point["offset"]
        while len(want) < len(got):  # the rest of the resumed pass, then whole passes
            order = reference.permutation(115, 11, pass_)
            share = (115 - offset) // new[0]
            want += [int(order[offset + q * new[0] + r]) for q in range(share)]
            pass_, offset = pass_ + 1, 0
        np.testing.assert_array_equal(got, want[: len(got)])


def _take_batches(feeder, count):
    out = []
    for i, b in enumerate(feeder):
        out.append(b)
        if i + 1 == count:
            break
    return out


# ----- whole sequences (padded, without bucket, batch_tokens or pack) ------------------------

_rng = np.random.default_rng(7)
SEQS = [np.arange(1000 * i, 1000 * i + int(_rng.integers(1, 9)), dtype=np.float32) for i in range(41)]


def _seq_feeders(world, batch, steps=None, **kw):
    return [
        Feeder(
            SEQS,
            window=None,
            batch_size=batch,
            shuffle=True,
            seed=5,
            rank=r,
            world_size=world,
            steps_per_epoch=steps,
            with_index=True,
            output="numpy",
            **kw,
        )
        for r in range(world)
    ]


def _numbers(batches):
    return [int(s) for b in batches for s in b.series]


@settings(max_examples=25, deadline=None)
@given(
    old=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    new=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    done=st.integers(1, 8),
    drop_last=st.booleans(),
)
def test_whole_sequences_go_on_over_all_ranks_with_other_world_and_batch_sizes(old, new, done, drop_last):
    olds = _seq_feeders(*old, drop_last=drop_last)
    done = min(done, len(olds[0]) - 1)
    first = [_take_batches(f, done) for f in olds]
    states = [json.loads(json.dumps(f.state_dict())) for f in olds]
    offset = done * old[0] * old[1]
    assert all(s["stream"] == {"pass": 0, "offset": offset, "origin": None} for s in states)
    news = _seq_feeders(*new, drop_last=drop_last)
    for r, f in enumerate(news):
        f.load_state_dict(states[(r + 1) % len(states)])  # any rank's state serves every rank
    lengths = [len(f) for f in news]
    rest = [_take_batches(f, 10**6) for f in news]
    assert len({len(r) for r in rest}) == 1  # every rank the same number of batches
    # len() of an epoch resumed so is what its pass has left (as saved, the whole epoch)
    assert lengths == [len(r) + (done if old == new else 0) for r in rest]
    seen = Counter(_numbers([b for part in first + rest for b in part]))
    assert max(seen.values()) == 1  # no sequence twice in the epoch, over old and new ranks
    skipped = len(SEQS) - sum(seen.values())
    assert skipped < new[0] * (new[1] if drop_last else 1) + (old[0] * old[1] if drop_last else 0)
    if not drop_last:
        assert skipped < new[0]
    # Exactly the new ranks' shares of the rest of the pass, in the pass's order.
    order = reference.permutation(len(SEQS), 5, 0)
    for r, part in enumerate(rest):
        positions = reference.resumed_share(len(SEQS), offset, r, new[0], drop_last, new[1])
        if drop_last:
            positions = positions[: len(positions) // new[1] * new[1]]
        assert _numbers(part) == [int(order[p]) for p in positions]
        want = reference.sequence_batches(
            SEQS,
            batch_size=new[1],
            shuffle=True,
            seed=5,
            drop_last=drop_last,
            rank=r,
            world_size=new[0],
            with_index=True,
            resume=(0, 0, offset),
        )
        assert len(want) == len(part)
        for got, w in zip(part, want):
            for key in ("x", "mask", "lengths", "series"):
                np.testing.assert_array_equal(getattr(got, key), w[key])
    # The next epoch is a whole pass again, as the new configuration deals it.
    for r, f in enumerate(news):
        nxt = list(f)
        assert len(nxt) == len(_seq_feeders(*new, drop_last=drop_last)[r])
        order1 = reference.permutation(len(SEQS), 5, 1)
        share = reference.rank_share(len(SEQS), r, new[0], drop_last, new[1])
        if drop_last:
            share = share[: len(share) // new[1] * new[1]]
        assert _numbers(nxt) == [int(order1[p]) for p in share]


def test_whole_sequences_resumed_at_the_end_of_a_pass_start_the_next_epoch():
    olds = _seq_feeders(1, 41)
    _take_batches(olds[0], 1)
    state = olds[0].state_dict()  # every sequence of pass 0 read: the state names epoch 1
    news = _seq_feeders(2, 4)
    news[0].load_state_dict(state)
    assert news[0].epoch == 1 and len(news[0]) == len(_seq_feeders(2, 4)[0])
    order = reference.permutation(len(SEQS), 5, 1)
    assert _numbers(list(news[0])) == [int(order[p]) for p in reference.rank_share(41, 0, 2, False, 4)]


@pytest.mark.parametrize("old,new", [((3, 5), (2, 5)), ((2, 5), (3, 4)), ((3, 3), (4, 2)), ((1, 7), (3, 5))])
def test_virtual_epochs_of_whole_sequences_resume_elastically_across_passes(old, new):
    # 41 sequences: each pass gives every rank 41 // world_size of them (the rest sit it out),
    # and passes end inside the run, before and after the resume.
    olds = _seq_feeders(*old, steps=6)
    assert all(f.state_dict()["fingerprint"].get("stream_shares") == ("equal" if old[0] > 1 else None) for f in olds)
    first = []
    for f in olds:
        first.append(_take_batches(f, 6) + _take_batches(f, 2))  # epoch 0, then 2 batches of epoch 1
    states = [f.state_dict() for f in olds]
    assert all(s["stream"] == states[0]["stream"] for s in states)
    consumed, per_old = 8 * old[1], 41 // old[0]
    point = {"pass": consumed // per_old, "offset": consumed % per_old * old[0], "origin": None}
    assert states[0]["stream"] == point
    news = _seq_feeders(*new, steps=6)
    firsts = []
    for r, f in enumerate(news):
        f.load_state_dict(states[r % len(states)])
        assert len(f) == 6  # virtual epochs keep their length
        rest = _take_batches(f, 6) + _take_batches(f, 6)  # the rest of epoch 1 (4 batches), then epoch 2
        assert len(rest) == 10 and all(len(b.series) == new[1] for b in rest)
        want, pass_, offset = [], point["pass"], point["offset"]
        while len(want) < 10 * new[1]:  # the rest of the resumed pass, then whole passes
            order = reference.permutation(41, 5, pass_)
            want += [int(order[offset + q * new[0] + r]) for q in range((41 - offset) // new[0])]
            pass_, offset = pass_ + 1, 0
        assert _numbers(rest) == want[: 10 * new[1]]
        # The epoch keeps counting batches: the new ranks take over at batch 2 of epoch 1 (step 8).
        ref = [
            b
            for e in (1, 2)
            for b in reference.sequence_batches(
                SEQS,
                batch_size=new[1],
                shuffle=True,
                seed=5,
                epoch=e,
                rank=r,
                world_size=new[0],
                steps_per_epoch=6,
                with_index=True,
                resume=(8, point["pass"], point["offset"]),
            )
        ]
        assert [int(s) for b in ref for s in b["series"]] == _numbers(rest)
        firsts.append(rest)
    # The pass the state fell in, over old and new ranks: no sequence twice, fewer than the new
    # world_size left out.
    k = consumed % per_old  # each old rank's items of that pass
    olds_part = [n for part in first for n in (_numbers(part)[-k:] if k else [])]
    news_part = [n for part in firsts for n in _numbers(part)[: (41 - point["offset"]) // new[0]]]
    seen = Counter(olds_part + news_part)
    assert max(seen.values()) == 1 and 0 <= 41 - len(seen) < new[0]


def test_virtual_epochs_of_whole_sequences_give_every_rank_an_equal_share_of_each_pass():
    feeders = _seq_feeders(3, 4, steps=5)
    for r, f in enumerate(feeders):
        got = _numbers(list(f) + list(f))  # 40 sequences: 41 // 3 = 13 a pass, crossing into pass 3
        want = reference.sequence_batches(
            SEQS, batch_size=4, shuffle=True, seed=5, epoch=0, rank=r, world_size=3, steps_per_epoch=5, with_index=True
        ) + reference.sequence_batches(
            SEQS, batch_size=4, shuffle=True, seed=5, epoch=1, rank=r, world_size=3, steps_per_epoch=5, with_index=True
        )
        assert got == [int(s) for b in want for s in b["series"]]
        positions = [q * 3 + r for q in range(13)]
        assert got[:13] == [int(reference.permutation(41, 5, 0)[p]) for p in positions]
        assert got[13:26] == [int(reference.permutation(41, 5, 1)[p]) for p in positions]


def test_whole_sequences_resumed_elastically_then_saved_resume_exactly():
    for steps in (None, 7):
        olds = _seq_feeders(2, 3, steps=steps)
        for f in olds:
            _take_batches(f, 2)
        state = olds[0].state_dict()
        news = _seq_feeders(3, 2, steps=steps)
        for f in news:
            f.load_state_dict(state)
        it = iter(news[2])
        next(it)
        saved = news[2].state_dict()
        assert saved["stream"]["origin"] is not None
        follow = list(it)
        exact = _seq_feeders(3, 2, steps=steps)[2]
        exact.load_state_dict(json.loads(json.dumps(saved)))
        again = list(exact)
        assert len(again) == len(follow) > 0
        for a, b in zip(follow, again):
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.series, b.series)
        # and a state of the same configuration with no elastic resume in it is exact as before
        plain = _seq_feeders(2, 3, steps=steps)[1]
        it = iter(plain)
        next(it)
        s = plain.state_dict()
        rest = list(it)
        same = _seq_feeders(2, 3, steps=steps)[1]
        same.load_state_dict(s)
        assert [b.series.tolist() for b in same] == [b.series.tolist() for b in rest]


def test_another_token_budget_is_refused():
    t = Feeder(SEQS, window=None, batch_tokens=16)
    next(iter(t))
    with pytest.raises(ValueError, match=r"batch_tokens: saved 16, this feeder 24.*another budget cuts other batches"):
        Feeder(SEQS, window=None, batch_tokens=24, rank=1, world_size=2).load_state_dict(t.state_dict())


def test_virtual_epochs_of_whole_sequences_resumed_with_fewer_than_world_size_left_go_to_the_next_pass():
    old = _seq_feeders(1, 1, steps=50)[0]
    _take_batches(old, 40)
    state = old.state_dict()
    assert state["stream"] == {"pass": 0, "offset": 40, "origin": None}  # one sequence of pass 0 left
    news = _seq_feeders(2, 3, steps=50)
    order = reference.permutation(41, 5, 1)
    for r, f in enumerate(news):
        f.load_state_dict(state)
        assert _numbers(_take_batches(f, 3)) == [int(order[q * 2 + r]) for q in range(9)]


def test_windows_whose_resumed_pass_has_too_few_samples_left_go_on_to_the_next_pass():
    x = np.arange(43, dtype=np.float32)  # 41 windows of 3 steps

    def make(world, rank):
        return Feeder(
            x,
            window=3,
            batch_size=1,
            shuffle=True,
            seed=3,
            steps_per_epoch=50,
            rank=rank,
            world_size=world,
            with_index=True,
            output="numpy",
        )

    one = make(1, 0)
    it = iter(one)
    for _ in range(40):
        next(it)
    state = one.state_dict()
    assert state["stream"]["offset"] == 40  # one window of pass 0 left: fewer than two ranks
    for r in range(2):
        f = make(2, r)
        f.load_state_dict(state)
        got = [int(b.start[0]) for b in _take_batches(f, 3)]
        want = [int(reference.permutation(41, 3, 1)[q * 2 + r]) for q in range(3)]
        assert got == want  # pass 1 from its start


def _elastic_state():
    """A state of 2 ranks x 4 after 3 batches of the second 12-batch virtual epoch of 40 windows."""
    x = np.arange(42, dtype=np.float32)
    old = Feeder(x, window=3, batch_size=4, world_size=2, rank=0, steps_per_epoch=12, output="numpy")
    _take_batches(old, 12)
    _take_batches(old, 3)
    return x, old.state_dict()


def test_an_epoch_before_the_resume_point_is_this_configurations_own():
    x, state = _elastic_state()
    kw = dict(window=3, batch_size=3, steps_per_epoch=12, output="numpy")
    f = Feeder(x, **kw)
    f.load_state_dict(state)
    f.set_epoch(0)  # start over, before the point it resumed at (epoch 1): as a new Feeder would
    fresh = Feeder(x, **kw)
    for a, b in zip(_take_batches(f, 12), _take_batches(fresh, 12)):
        np.testing.assert_array_equal(a.x, b.x)


def test_a_refused_state_changes_nothing_and_a_later_load_reads_its_own_epoch():
    x, state = _elastic_state()
    kw = dict(window=3, batch_size=3, output="numpy")
    f = Feeder(x, **kw, steps_per_epoch=12)
    f.load_state_dict(state)
    bad = json.loads(json.dumps(state))
    bad["stream"]["origin"] = [1, -5, 0]
    bad["fingerprint"]["batch_size"] = 3
    with pytest.raises(ValueError, match="origin pass must be >= 0, got -5"):
        f.load_state_dict(bad)
    want = Feeder(x, **kw, steps_per_epoch=12)
    want.load_state_dict(state)
    for a, b in zip(_take_batches(f, 4), _take_batches(want, 4)):  # still the first load's stream
        np.testing.assert_array_equal(a.x, b.x)
    plain = Feeder(x, **kw)  # real epochs: a second load is checked against a whole epoch
    first = Feeder(x, window=3, batch_size=4, world_size=2, rank=0, output="numpy")
    _take_batches(first, 2)
    plain.load_state_dict(first.state_dict())
    assert len(plain) == 8  # the 24 windows the pass has left, in batches of 3
    own = Feeder(x, **kw)
    _take_batches(own, 10)
    plain.load_state_dict(own.state_dict())
    assert len(plain) == 14 and [float(b.x[0, 0]) for b in plain] == [30.0, 33.0, 36.0, 39.0]
    with pytest.raises(ValueError, match="not a fastfeed Feeder state"):
        plain.load_state_dict(5)


def test_stream_positions_past_64_bits_are_refused():
    f = Feeder(np.arange(10.0), window=2, batch_size=4, steps_per_epoch=2**61)
    with pytest.raises(ValueError, match="past position 2\\*\\*63 - 1 of the stream"):
        iter(f)
    with pytest.raises(ValueError, match="span 18446744073709551621 steps"):
        Feeder(np.arange(10.0), window=2, target_shift=2**62, sampling_rate=4)


# ----- whole sequences packed back to back (pack=True) -------------------------------------
# A pass's rows are cut from its order alone (whatever batch_size and world_size are), so the
# ranks share the rows left from the saved row offset on, as they share sequences.

_ROWS_0 = reference.packed_rows([len(s) for s in SEQS], 4, True, 5, 0)


def _pack_feeders(world, batch, steps=None, pack=True, **kw):
    return [
        Feeder(
            SEQS,
            window=None,
            batch_size=batch,
            shuffle=True,
            seed=5,
            rank=r,
            world_size=world,
            steps_per_epoch=steps,
            pack=pack,
            max_len=4,
            output="numpy",
            **({"bucket_pool": 2} if pack == "best_fit" else {}),
            **kw,
        )
        for r in range(world)
    ]


def _rows(batches):
    """Each packed row as the tuple of its steps' values (every step of SEQS has its own value)."""
    return [tuple(float(v) for v in x[m.astype(bool)]) for b in batches for x, m in zip(b.x, b.mask)]


def _row_values(rows):
    return [tuple(float(1000 * seq + first + k) for seq, first, count in row for k in range(count)) for row in rows]


def _pass_rows(pass_, pack=True):
    lengths = [len(s) for s in SEQS]
    if pack == "best_fit":  # every row of the pass, as cut (all ranks')
        plan = reference.best_fit_plan(lengths, 4, 1, True, 5, pass_, False, 2, keep_short=True)
        return _row_values([r for b in plan for r in b])
    return _row_values(reference.packed_rows(lengths, 4, True, 5, pass_))


def _pack_reference(world, batch, rank, pack=True, **kw):
    return reference.sequence_batches(
        SEQS,
        batch_size=batch,
        shuffle=True,
        seed=5,
        rank=rank,
        world_size=world,
        pack=pack,
        max_len=4,
        **({"bucket_pool": 2} if pack == "best_fit" else {}),
        **kw,
    )


def _same_batches(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in ("x", "mask", "segment_ids", "position_ids"):
            np.testing.assert_array_equal(getattr(g, key), w[key])


@settings(max_examples=20, deadline=None)
@given(
    old=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    new=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    done=st.integers(1, 8),
    drop_last=st.booleans(),
)
def test_packed_rows_go_on_over_all_ranks_with_other_world_and_batch_sizes(old, new, done, drop_last):
    n_rows = len(_ROWS_0)
    olds = _pack_feeders(*old, drop_last=drop_last)
    done = min(done, len(olds[0]) - 1)
    first = [_take_batches(f, done) for f in olds]
    states = [json.loads(json.dumps(f.state_dict())) for f in olds]
    offset = done * old[0] * old[1]
    assert all(s["stream"] == {"pass": 0, "offset": offset, "origin": None} for s in states)
    news = _pack_feeders(*new, drop_last=drop_last)
    for r, f in enumerate(news):
        f.load_state_dict(states[(r + 1) % len(states)])
    lengths = [len(f) for f in news]
    rest = [_take_batches(f, 10**6) for f in news]
    assert len({len(r) for r in rest}) == 1  # every rank the same number of batches
    assert lengths == [len(r) + (done if old == new else 0) for r in rest]
    seen = Counter(_rows([b for part in first + rest for b in part]))
    assert max(seen.values()) == 1  # no row twice in the epoch, over old and new ranks
    skipped = n_rows - sum(seen.values())
    assert skipped < new[0] * (new[1] if drop_last else 1) + (old[0] * old[1] if drop_last else 0)
    if not drop_last:
        assert skipped < new[0]
    rows = _pass_rows(0)
    for r, part in enumerate(rest):
        positions = reference.resumed_share(n_rows, offset, r, new[0], drop_last, new[1])
        if drop_last:
            positions = positions[: len(positions) // new[1] * new[1]]
        assert _rows(part) == [rows[p] for p in positions]
        _same_batches(part, _pack_reference(*new, r, drop_last=drop_last, resume=(0, 0, offset)))
    for r, f in enumerate(news):  # the next epoch is a whole pass again
        share = reference.rank_share(n_rows, r, new[0], drop_last, new[1])
        if drop_last:
            share = share[: len(share) // new[1] * new[1]]
        rows1 = _pass_rows(1)
        assert _rows(list(f)) == [rows1[p] for p in share]


@pytest.mark.parametrize("old,new", [((3, 5), (2, 5)), ((2, 5), (3, 4)), ((3, 3), (4, 2)), ((1, 7), (3, 5))])
def test_virtual_epochs_of_packed_rows_resume_elastically_across_passes(old, new):
    n_rows = len(_ROWS_0)
    olds = _pack_feeders(*old, steps=6)
    assert all(f.state_dict()["fingerprint"].get("stream_shares") == ("equal" if old[0] > 1 else None) for f in olds)
    first = [_take_batches(f, 6) + _take_batches(f, 2) for f in olds]
    states = [f.state_dict() for f in olds]
    consumed, per_old = 8 * old[1], n_rows // old[0]
    point = {"pass": consumed // per_old, "offset": consumed % per_old * old[0], "origin": None}
    assert all(s["stream"] == point for s in states)
    assert point["pass"] >= 1  # a pass ended before the state
    firsts = []
    for r, f in enumerate(_pack_feeders(*new, steps=6)):
        f.load_state_dict(states[r % len(states)])
        assert len(f) == 6
        rest = _take_batches(f, 6) + _take_batches(f, 6)
        assert len(rest) == 10 and all(len(b.x) == new[1] for b in rest)
        want, pass_, offset = [], point["pass"], point["offset"]
        while len(want) < 10 * new[1]:  # the rest of the resumed pass, then whole passes
            rows = _pass_rows(pass_)
            want += [rows[offset + q * new[0] + r] for q in range((n_rows - offset) // new[0])]
            pass_, offset = pass_ + 1, 0
        assert pass_ > point["pass"] + 1  # the new ranks crossed a pass too
        assert _rows(rest) == want[: 10 * new[1]]
        ref = [
            b
            for e in (1, 2)
            for b in _pack_reference(*new, r, epoch=e, steps_per_epoch=6, resume=(8, point["pass"], point["offset"]))
        ]
        _same_batches(rest, ref)
        firsts.append(rest)
    k = consumed % per_old  # each old rank's rows of the pass the state fell in
    olds_part = [row for part in first for row in (_rows(part)[-k:] if k else [])]
    news_part = [row for part in firsts for row in _rows(part)[: (n_rows - point["offset"]) // new[0]]]
    seen = Counter(olds_part + news_part)
    assert max(seen.values()) == 1 and 0 <= n_rows - len(seen) < new[0]


def test_virtual_epochs_of_packed_rows_give_every_rank_an_equal_share_of_each_pass():
    n_rows = len(_ROWS_0)
    per = n_rows // 3
    for r, f in enumerate(_pack_feeders(3, 4, steps=per // 4 + 2)):
        got = list(f) + list(f)
        want = _pack_reference(3, 4, r, epoch=0, steps_per_epoch=per // 4 + 2) + _pack_reference(
            3, 4, r, epoch=1, steps_per_epoch=per // 4 + 2
        )
        _same_batches(got, want)
        rows = _rows(got)
        assert rows[:per] == [_pass_rows(0)[q * 3 + r] for q in range(per)]
        assert rows[per : 2 * per] == [_pass_rows(1)[q * 3 + r] for q in range(per)]


def test_packed_rows_resumed_elastically_then_saved_resume_exactly():
    for steps in (None, 7):
        olds = _pack_feeders(2, 3, steps=steps)
        for f in olds:
            _take_batches(f, 2)
        news = _pack_feeders(3, 2, steps=steps)
        for f in news:
            f.load_state_dict(olds[0].state_dict())
        it = iter(news[2])
        next(it)
        saved = news[2].state_dict()
        assert saved["stream"]["origin"] is not None
        follow = list(it)
        exact = _pack_feeders(3, 2, steps=steps)[2]
        exact.load_state_dict(json.loads(json.dumps(saved)))
        again = list(exact)
        assert len(again) == len(follow) > 0
        for a, b in zip(follow, again):
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.segment_ids, b.segment_ids)
        plain = _pack_feeders(2, 3, steps=steps)[1]  # the same configuration, no elastic resume
        it = iter(plain)
        next(it)
        s = plain.state_dict()
        rest = list(it)
        same = _pack_feeders(2, 3, steps=steps)[1]
        same.load_state_dict(s)
        assert _rows(list(same)) == _rows(rest)


# ----- whole sequences cut by batch_tokens ----------------------------------------------------
# A pass is cut into batches by batch_tokens alone (world_size and batch_size play no part), and
# the ranks share those batches by position: another world_size takes over from the saved batch.

_LENGTHS = [len(s) for s in SEQS]


def _token_batches(pass_, bucket, drop_last=False):
    """Every batch of a pass, as cut (all ranks')."""
    return reference.token_plan(_LENGTHS, 16, None, 1, True, 5, pass_, drop_last, bucket, 2)


def _token_feeders(world, steps=None, **kw):
    return [
        Feeder(
            SEQS,
            window=None,
            batch_tokens=16,
            shuffle=True,
            seed=5,
            rank=r,
            world_size=world,
            steps_per_epoch=steps,
            with_index=True,
            output="numpy",
            **({"bucket_pool": 2} if kw.get("bucket") else {}),
            **kw,
        )
        for r in range(world)
    ]


def _token_reference(world, rank, **kw):
    return reference.sequence_batches(
        SEQS,
        batch_size=1,
        shuffle=True,
        seed=5,
        rank=rank,
        world_size=world,
        batch_tokens=16,
        bucket_pool=2,
        with_index=True,
        **kw,
    )


def _series(batches):
    return [[int(s) for s in b.series] for b in batches]


@settings(max_examples=20, deadline=None)
@given(
    old=st.integers(1, 4),
    new=st.integers(1, 4),
    done=st.integers(1, 3),
    bucket=st.booleans(),
    drop_last=st.booleans(),
)
def test_token_budget_batches_go_on_over_all_ranks_with_another_world_size(old, new, done, bucket, drop_last):
    everything = _token_batches(0, bucket, drop_last)
    olds = _token_feeders(old, bucket=bucket, drop_last=drop_last)
    first = [_take_batches(f, done) for f in olds]
    states = [json.loads(json.dumps(f.state_dict())) for f in olds]
    offset = done * old
    assert all(s["stream"] == {"pass": 0, "offset": offset, "origin": None} for s in states)
    news = _token_feeders(new, bucket=bucket, drop_last=drop_last)
    for r, f in enumerate(news):
        f.load_state_dict(states[(r + 1) % len(states)])
    lengths = [len(f) for f in news]
    rest = [_take_batches(f, 10**6) for f in news]
    assert len({len(r) for r in rest}) == 1  # every rank the same number of batches
    assert lengths == [len(r) + (done if old == new else 0) for r in rest]
    seen = Counter(n for part in first + rest for b in _series(part) for n in b)
    assert max(seen.values()) == 1  # no sequence twice in the epoch
    taken = sum(len(part) for part in first + rest)
    assert 0 <= len(everything) - taken < new  # fewer than world_size batches of the pass skipped
    for r, part in enumerate(rest):
        assert _series(part) == [everything[offset + q * new + r] for q in range((len(everything) - offset) // new)]
        want = _token_reference(new, r, drop_last=drop_last, bucket=bucket, resume=(0, 0, offset))
        assert len(want) == len(part)
        for got, w in zip(part, want):
            for key in ("x", "mask", "lengths", "series"):
                np.testing.assert_array_equal(getattr(got, key), w[key])
    nxt = _token_batches(1, bucket, drop_last)
    for r, f in enumerate(news):  # the next epoch is a whole pass again
        assert _series(list(f)) == [nxt[q * new + r] for q in range(len(nxt) // new)]


@pytest.mark.parametrize("old,new", [(3, 2), (2, 3), (1, 4), (4, 1)])
@pytest.mark.parametrize("bucket", [False, True])
def test_virtual_epochs_of_token_budget_batches_resume_elastically_across_passes(old, new, bucket):
    olds = _token_feeders(old, steps=5, bucket=bucket)
    epochs = len(_token_batches(0, bucket)) // old // 5 + 1  # whole epochs, past the end of pass 0
    first = [[b for _ in range(epochs) for b in _take_batches(f, 5)] + _take_batches(f, 2) for f in olds]
    states = [f.state_dict() for f in olds]
    step = epochs * 5 + 2
    pass_, left = 0, step  # where the old ranks' last batch ends
    while left >= len(_token_batches(pass_, bucket)) // old:
        left -= len(_token_batches(pass_, bucket)) // old
        pass_ += 1
    point = {"pass": pass_, "offset": left * old, "origin": None}
    assert pass_ >= 1 and all(s["stream"] == point for s in states)
    firsts = []
    for r, f in enumerate(_token_feeders(new, steps=5, bucket=bucket)):
        f.load_state_dict(states[r % len(states)])
        assert len(f) == 5  # virtual epochs keep their length
        rest = _take_batches(f, 3) + [b for _ in range(7) for b in _take_batches(f, 5)]
        want, p, at = [], point["pass"], point["offset"]
        while len(want) < 38:  # the rest of the resumed pass, then whole passes
            cut = _token_batches(p, bucket)
            want += [cut[at + q * new + r] for q in range((len(cut) - at) // new)]
            p, at = p + 1, 0
        assert p > point["pass"] + 1  # the new ranks crossed a pass too
        assert _series(rest) == want[:38]
        ref = [
            b
            for e in range(epochs, epochs + 8)
            for b in _token_reference(
                new, r, bucket=bucket, epoch=e, steps_per_epoch=5, resume=(step, pass_, left * old)
            )
        ]
        assert [[int(s) for s in b["series"]] for b in ref] == _series(rest)
        for got, w in zip(rest, ref):
            np.testing.assert_array_equal(got.x, w["x"])
        firsts.append(rest)
    # the pass the state fell in, over old and new ranks: no batch twice, fewer than new left out
    cut = _token_batches(point["pass"], bucket)
    olds_part = [tuple(b) for part in first for b in (_series(part)[-left:] if left else [])]
    news_part = [tuple(b) for part in firsts for b in _series(part)[: (len(cut) - point["offset"]) // new]]
    seen = Counter(olds_part + news_part)
    assert max(seen.values()) == 1 and 0 <= len(cut) - len(seen) < new


def test_token_budget_batches_resumed_elastically_then_saved_resume_exactly():
    for steps in (None, 4):
        olds = _token_feeders(2, steps=steps)
        for f in olds:
            _take_batches(f, 2)
        news = _token_feeders(3, steps=steps)
        for f in news:
            f.load_state_dict(olds[0].state_dict())
        it = iter(news[2])
        next(it)
        saved = news[2].state_dict()
        assert saved["stream"]["origin"] is not None
        follow = list(it)
        exact = _token_feeders(3, steps=steps)[2]
        exact.load_state_dict(json.loads(json.dumps(saved)))
        again = list(exact)
        assert len(again) == len(follow) > 0
        assert _series(again) == _series(follow)
        plain = _token_feeders(2, steps=steps)[1]  # the same configuration, no elastic resume
        it = iter(plain)
        next(it)
        s = plain.state_dict()
        rest = list(it)
        same = _token_feeders(2, steps=steps)[1]
        same.load_state_dict(s)
        assert _series(list(same)) == _series(rest)


# ----- best-fit packed rows ------------------------------------------------------------------
# Best-fit rows come from pools of the pass's order, whatever batch_size and world_size are: the
# ranks share the rows left from the saved row offset on; passes differ in how many rows they hold.


@settings(max_examples=20, deadline=None)
@given(
    old=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    new=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    done=st.integers(1, 8),
    drop_last=st.booleans(),
)
def test_best_fit_rows_go_on_over_all_ranks_with_other_world_and_batch_sizes(old, new, done, drop_last):
    rows = _pass_rows(0, "best_fit")
    olds = _pack_feeders(*old, pack="best_fit", drop_last=drop_last)
    done = min(done, len(olds[0]) - 1)
    first = [_take_batches(f, done) for f in olds]
    states = [json.loads(json.dumps(f.state_dict())) for f in olds]
    offset = done * old[0] * old[1]
    assert all(s["stream"] == {"pass": 0, "offset": offset, "origin": None} for s in states)
    news = _pack_feeders(*new, pack="best_fit", drop_last=drop_last)
    for r, f in enumerate(news):
        f.load_state_dict(states[(r + 1) % len(states)])
    lengths = [len(f) for f in news]
    rest = [_take_batches(f, 10**6) for f in news]
    assert len({len(r) for r in rest}) == 1
    assert lengths == [len(r) + (done if old == new else 0) for r in rest]
    seen = Counter(_rows([b for part in first + rest for b in part]))
    assert max(seen.values()) == 1
    skipped = len(rows) - sum(seen.values())
    assert skipped < new[0] * (new[1] if drop_last else 1) + (old[0] * old[1] if drop_last else 0)
    if not drop_last:
        assert skipped < new[0]
    for r, part in enumerate(rest):
        positions = reference.resumed_share(len(rows), offset, r, new[0], drop_last, new[1])
        if drop_last:
            positions = positions[: len(positions) // new[1] * new[1]]
        assert _rows(part) == [rows[p] for p in positions]
        _same_batches(part, _pack_reference(*new, r, pack="best_fit", drop_last=drop_last, resume=(0, 0, offset)))


@pytest.mark.parametrize("old,new", [((3, 5), (2, 5)), ((2, 5), (3, 4)), ((1, 9), (3, 5)), ((4, 2), (1, 6))])
def test_virtual_epochs_of_best_fit_rows_resume_elastically_across_passes(old, new):
    olds = _pack_feeders(*old, steps=6, pack="best_fit")
    assert all(f.state_dict()["fingerprint"].get("stream_shares") == ("equal" if old[0] > 1 else None) for f in olds)
    first = [_take_batches(f, 6) + _take_batches(f, 2) for f in olds]
    states = [f.state_dict() for f in olds]
    pass_, left = 0, 8 * old[1]  # each old rank's rows read
    while left >= len(_pass_rows(pass_, "best_fit")) // old[0]:
        left -= len(_pass_rows(pass_, "best_fit")) // old[0]
        pass_ += 1
    point = {"pass": pass_, "offset": left * old[0], "origin": None}
    assert pass_ >= 1 and all(s["stream"] == point for s in states)
    firsts = []
    for r, f in enumerate(_pack_feeders(*new, steps=6, pack="best_fit")):
        f.load_state_dict(states[r % len(states)])
        assert len(f) == 6
        rest = _take_batches(f, 4) + _take_batches(f, 6) + _take_batches(f, 6)
        assert len(rest) == 16 and all(len(b.x) == new[1] for b in rest)
        want, p, at = [], point["pass"], point["offset"]
        while len(want) < 16 * new[1]:
            rows = _pass_rows(p, "best_fit")
            want += [rows[at + q * new[0] + r] for q in range((len(rows) - at) // new[0])]
            p, at = p + 1, 0
        assert p > point["pass"] + 1
        assert _rows(rest) == want[: 16 * new[1]]
        ref = [
            b
            for e in (1, 2, 3)
            for b in _pack_reference(
                *new, r, pack="best_fit", epoch=e, steps_per_epoch=6, resume=(8, point["pass"], point["offset"])
            )
        ]
        _same_batches(rest, ref)
        firsts.append(rest)
    n_rows = len(_pass_rows(point["pass"], "best_fit"))
    olds_part = [row for part in first for row in (_rows(part)[-left:] if left else [])]
    news_part = [row for part in firsts for row in _rows(part)[: (n_rows - point["offset"]) // new[0]]]
    seen = Counter(olds_part + news_part)
    assert max(seen.values()) == 1 and 0 <= n_rows - len(seen) < new[0]


def test_best_fit_rows_resumed_elastically_then_saved_resume_exactly():
    for steps in (None, 7):
        olds = _pack_feeders(2, 3, steps=steps, pack="best_fit")
        for f in olds:
            _take_batches(f, 2)
        news = _pack_feeders(3, 2, steps=steps, pack="best_fit")
        for f in news:
            f.load_state_dict(olds[0].state_dict())
        it = iter(news[2])
        next(it)
        saved = news[2].state_dict()
        assert saved["stream"]["origin"] is not None
        follow = list(it)
        exact = _pack_feeders(3, 2, steps=steps, pack="best_fit")[2]
        exact.load_state_dict(json.loads(json.dumps(saved)))
        again = list(exact)
        assert len(again) == len(follow) > 0
        assert _rows(again) == _rows(follow)
        plain = _pack_feeders(2, 3, steps=steps, pack="best_fit")[1]
        it = iter(plain)
        next(it)
        s = plain.state_dict()
        rest = list(it)
        same = _pack_feeders(2, 3, steps=steps, pack="best_fit")[1]
        same.load_state_dict(s)
        assert _rows(list(same)) == _rows(rest)


# ----- bucketed whole sequences (batches of batch_size cut from each rank's share) ----------------

# Lengths 1 to 30 so that sorting by length moves sequences across the pool.
_brng = np.random.default_rng(11)
BSEQS = [np.arange(1000 * i, 1000 * i + int(_brng.integers(1, 31)), dtype=np.float32) for i in range(57)]


def _bucket_feeders(world, batch, steps=None, pool=2, **kw):
    return [
        Feeder(
            BSEQS,
            window=None,
            batch_size=batch,
            bucket=True,
            bucket_pool=pool,
            shuffle=True,
            seed=9,
            rank=r,
            world_size=world,
            steps_per_epoch=steps,
            with_index=True,
            output="numpy",
            **kw,
        )
        for r in range(world)
    ]


def _bucket_reference(world, batch, rank, pool=2, **kw):
    return reference.sequence_batches(
        BSEQS,
        batch_size=batch,
        bucket=True,
        bucket_pool=pool,
        shuffle=True,
        seed=9,
        rank=rank,
        world_size=world,
        with_index=True,
        **kw,
    )


def _same_as_reference(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in ("x", "mask", "lengths", "series"):
            np.testing.assert_array_equal(getattr(g, key), w[key])


@settings(max_examples=25, deadline=None)
@given(
    old=st.tuples(st.integers(1, 4), st.integers(1, 6)),
    new=st.tuples(st.integers(1, 4), st.integers(1, 6)),
    done=st.integers(1, 9),
    drop_last=st.booleans(),
    pool=st.sampled_from([1, 2, 64]),
)
def test_bucketed_sequences_go_on_over_all_ranks_with_other_world_and_batch_sizes(old, new, done, drop_last, pool):
    olds = _bucket_feeders(*old, pool=pool, drop_last=drop_last)
    done = min(done, len(olds[0]) - 1)
    if done < 1:
        return
    first = [_take_batches(f, done) for f in olds]
    states = [json.loads(json.dumps(f.state_dict())) for f in olds]
    read = sum(len(b.series) for part in first for b in part)  # what the old ranks read, counted here
    assert all(s["stream"] == {"pass": 0, "offset": read, "origin": None, "reads": [[*old, done]]} for s in states)
    news = _bucket_feeders(*new, pool=pool, drop_last=drop_last)
    for r, f in enumerate(news):
        f.load_state_dict(states[(r + 1) % len(states)])  # any rank's state serves every rank
    lengths = [len(f) for f in news]
    rest = [_take_batches(f, 10**6) for f in news]
    assert len({len(r) for r in rest}) == 1  # every rank the same number of batches
    # len() of an epoch resumed so is what its pass has left (as saved, the whole epoch)
    assert lengths == [len(r) + (done if old == new else 0) for r in rest]
    seen = Counter(_numbers([b for part in first + rest for b in part]))
    assert max(seen.values()) == 1  # no sequence twice in the epoch, over old and new ranks
    if old == new:  # the same configuration goes on exactly as it was
        for r, part in enumerate(rest):
            _same_as_reference(part, _bucket_reference(*new, r, pool=pool, drop_last=drop_last)[done:])
        return
    # Nothing skipped beyond the new ranks' leftovers (with drop_last, their short batches too,
    # and what the old ranks would have dropped is read by the new ones).
    skipped = len(BSEQS) - sum(seen.values())
    assert skipped < (new[0] * new[1] if drop_last else new[0])
    # Each new rank buckets its share of what the old ranks left, in the pass's order.
    order = [int(i) for i in reference.permutation(len(BSEQS), 9, 0)]
    read_numbers = set(_numbers([b for part in first for b in part]))
    left = [i for i in order if i not in read_numbers]
    for r, part in enumerate(rest):
        share = {left[q] for q in reference.rank_share(len(left), r, new[0], drop_last, new[1])}
        assert set(_numbers(part)) <= share
        for b in part:  # a bucketed batch: its sequences sorted by length
            assert len(b.series) <= new[1] and list(b.lengths) == sorted(b.lengths)
        _same_as_reference(
            part, _bucket_reference(*new, r, pool=pool, drop_last=drop_last, resume=(0, 0, read, [(*old, done)]))
        )
    # The next epoch is a whole pass again, as the new configuration buckets it.
    for r, f in enumerate(news):
        _same_as_reference(list(f), _bucket_reference(*new, r, pool=pool, drop_last=drop_last, epoch=1))


@pytest.mark.parametrize("old,new", [((3, 5), (2, 5)), ((2, 5), (3, 4)), ((3, 3), (4, 2)), ((1, 7), (3, 5))])
def test_virtual_epochs_of_bucketed_sequences_resume_elastically_across_passes(old, new):
    steps = 5
    olds = _bucket_feeders(*old, steps=steps)
    taken = [[] for _ in olds]
    for _ in range(2):  # two epochs: passes end inside them
        for r, f in enumerate(olds):
            taken[r] += list(f)
    it = [iter(f) for f in olds]
    for r, i in enumerate(it):
        taken[r] += [next(i), next(i), next(i)]
    state = json.loads(json.dumps(olds[0].state_dict()))
    assert state["epoch"] == 2 and state["batch"] == 3
    stream = state["stream"]
    per_pass = len(_bucket_reference(*old, 0))  # each rank's bucketed batches of a pass
    done = 2 * steps + 3
    assert stream["pass"] == done // per_pass and stream["reads"] == [[*old, done % per_pass]]
    news = _bucket_feeders(*new, steps=steps)
    for f in news:
        f.load_state_dict(state)
    got = [[] for _ in news]
    for _ in range(3):
        for r, f in enumerate(news):
            got[r] += list(f)
    resume = (2 * steps + 3, stream["pass"], stream["offset"], [tuple(x) for x in stream["reads"]])
    for r, part in enumerate(got):
        assert len(part) == 3 * steps - 3  # the resumed epoch keeps its length
        want = []
        for e in (2, 3, 4):
            want += _bucket_reference(*new, r, steps_per_epoch=steps, epoch=e, resume=resume)
        _same_as_reference(part, want)
    # Within the pass the resume took over, no sequence comes twice over old and new ranks.
    p = stream["pass"]
    old_in_pass = [b for part in taken for b in part[len(part) - done % per_pass :]]
    new_plans = [_bucket_reference(*new, r, epoch=p, resume=(p, p, stream["offset"], resume[3])) for r in range(new[0])]
    counts = Counter(_numbers(old_in_pass) + [int(s) for plan in new_plans for b in plan for s in b["series"]])
    assert max(counts.values()) == 1
    assert len(BSEQS) - sum(counts.values()) < new[0]


def test_bucketed_sequences_resumed_elastically_twice_in_a_pass_leave_nothing_twice():
    a = _bucket_feeders(3, 4)
    first = [_take_batches(f, 2) for f in a]
    b = _bucket_feeders(2, 3)
    for f in b:
        f.load_state_dict(a[1].state_dict())
    second = [_take_batches(f, 3) for f in b]
    state = json.loads(json.dumps(b[0].state_dict()))
    assert state["stream"]["reads"] == [[3, 4, 2], [2, 3, 3]]
    assert state["stream"]["origin"][3] == [[3, 4, 2]]
    c = _bucket_feeders(4, 2)
    for f in c:
        f.load_state_dict(state)
    third = [list(f) for f in c]
    counts = Counter(_numbers([x for part in first + second + third for x in part]))
    assert max(counts.values()) == 1
    assert len(BSEQS) - sum(counts.values()) < 4
    s = state["stream"]
    for r, part in enumerate(third):
        _same_as_reference(part, _bucket_reference(4, 2, r, resume=(0, 0, s["offset"], [(3, 4, 2), (2, 3, 3)])))


def test_bucketed_sequences_resumed_elastically_then_saved_resume_exactly():
    for steps in (None, 7):
        olds = _bucket_feeders(2, 3, steps=steps)
        for f in olds:
            _take_batches(f, 2)
        news = _bucket_feeders(3, 2, steps=steps)
        for f in news:
            f.load_state_dict(olds[0].state_dict())
        it = iter(news[2])
        next(it)
        saved = json.loads(json.dumps(news[2].state_dict()))
        step = 0 if steps is None else 2  # the epoch, or the batch of the stream, taken over at
        assert saved["stream"]["origin"] == [step, 0, saved["stream"]["origin"][2], [[2, 3, 2]]]
        follow = list(it)
        exact = _bucket_feeders(3, 2, steps=steps)[2]
        exact.load_state_dict(saved)  # the same configuration: exactly the batches that were next
        again = list(exact)
        assert len(again) == len(follow) > 0
        for a, b in zip(follow, again):
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.series, b.series)


def test_bucketed_states_whose_reads_disagree_are_refused():
    olds = _bucket_feeders(2, 3)
    for f in olds:
        _take_batches(f, 2)
    state = json.loads(json.dumps(olds[0].state_dict()))
    new = _bucket_feeders(3, 2)[0]
    bad = json.loads(json.dumps(state))
    bad["stream"]["offset"] += 1
    with pytest.raises(ValueError, match=r"malformed stream position.*read \d+ sequences of pass 0, the offset says"):
        new.load_state_dict(bad)
    bad = json.loads(json.dumps(state))
    bad["stream"]["reads"] = [[2, 3, 99]]
    with pytest.raises(ValueError, match=r"malformed stream position.*read 99 bucketed batches of 3 of pass 0"):
        new.load_state_dict(bad)
    bad["stream"]["reads"] = [[0, 3, 1]]
    with pytest.raises(ValueError, match=r"malformed stream position.*reads\[0\] world_size must be >= 1"):
        new.load_state_dict(bad)
    bad["stream"]["reads"] = [[2, 3, 2], [1, 1, 0]]  # a saving Feeder names no configuration that read nothing
    with pytest.raises(ValueError, match=r"malformed stream position.*reads\[1\] batches must be >= 1"):
        new.load_state_dict(bad)
    for huge in ([2, 3, 2], [10**12, 1, 1]), ([2, 3, 2], [1, 2**63 - 1, 1]):  # more ranks or rows than sequences
        bad["stream"]["reads"] = list(huge)
        with pytest.raises(
            ValueError, match=r"malformed stream position.*reads\[1\] names world_size=.*of 57 sequences"
        ):
            new.load_state_dict(bad)
    # windows have no reads of bucketed batches
    w = _feeders(2, 4)[0]
    next(iter(w))
    bad = json.loads(json.dumps(w.state_dict()))
    bad["stream"]["reads"] = [[2, 4, 1]]
    with pytest.raises(ValueError, match=r"malformed stream position.*belong to bucketed whole sequences"):
        _feeders(3, 4)[0].load_state_dict(bad)
    # the refused loads changed nothing: the good state still loads, exactly
    new.load_state_dict(state)
    _same_as_reference(list(new), _bucket_reference(3, 2, 0, resume=(0, 0, state["stream"]["offset"], [(2, 3, 2)])))


def test_a_state_saved_before_the_point_an_elastic_resume_took_over_is_this_configurations_own():
    for steps in (None, 4):
        a = _bucket_feeders(1, 3, steps=steps)[0]
        for e in range(2):
            a.set_epoch(e)
            list(a)
        b = _bucket_feeders(2, 2, steps=steps)[0]
        b.load_state_dict(a.state_dict())  # resumes in epoch 2
        b.set_epoch(0)  # ... but goes back to epoch 0, which is its own
        state = json.loads(json.dumps(b.state_dict()))
        assert state["epoch"] == 0 and state["stream"] == {"pass": 0, "offset": 0, "origin": None, "reads": []}
        c = _bucket_feeders(3, 2, steps=steps)[1]
        c.load_state_dict(state)
        want = _bucket_reference(3, 2, 1, **({} if steps is None else {"steps_per_epoch": steps}))
        _same_as_reference(list(c), want)
