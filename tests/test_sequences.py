"""Whole sequences (window=None): padding, masks, buckets and packing, against the reference,
PyTorch's padding utilities and Keras' pad_sequences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastfeed import Feeder, FeedError, compat, reference
from fastfeed.dtypes import OUTPUT_DTYPES, SOURCE_DTYPES
from test_reference_property import FEATS, draw_normalize, make_values

from helpers import lengths_of, mask_of, to_numpy

FIELDS = ("mask", "lengths", "segment_ids", "position_ids", "cu_seqlens")


def as_dict(batch) -> dict:
    x, y = batch
    out = {"x": to_numpy(x).copy(), "y": None if y is None else to_numpy(y).copy()}
    for name in FIELDS:
        v = getattr(batch, name)
        out[name] = None if v is None else to_numpy(v).copy()
    return out


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want), f"{len(got)} batches, reference has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        for name in ("x", "y") + FIELDS:
            wv = w.get(name)
            if wv is None:
                assert g[name] is None, f"batch {i}: {name} should be None"
                continue
            assert g[name].shape == wv.shape, f"batch {i}: {name} shape {g[name].shape} != {wv.shape}"
            assert g[name].dtype == wv.dtype, f"batch {i}: {name} dtype {g[name].dtype} != {wv.dtype}"
            np.testing.assert_array_equal(g[name], wv, err_msg=f"batch {i}: {name}")


@st.composite
def sequence_configs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(SOURCE_DTYPES))
    feat = draw(st.sampled_from(FEATS))
    lengths = draw(st.lists(st.integers(0, 25), min_size=1, max_size=30))
    seqs = [make_values(rng, (n,) + feat, dtype) for n in lengths]
    mode = draw(st.sampled_from(["pad", "pad", "bucket", "pack"]))
    kind = draw(st.sampled_from(["none", "labels", "steps"] if mode != "pack" else ["none", "steps"]))
    targets = None
    if kind == "labels":
        targets = make_values(rng, (len(seqs),) + draw(st.sampled_from(FEATS)), draw(st.sampled_from(SOURCE_DTYPES)))
    elif kind == "steps":
        tdtype, tfeat = draw(st.sampled_from(SOURCE_DTYPES)), draw(st.sampled_from(FEATS))
        targets = [make_values(rng, (n,) + tfeat, tdtype) for n in lengths]
    check_finite = False
    if draw(st.integers(0, 3)) == 0:  # NaN/Inf in some sequences, labels or step targets: dropped
        check_finite = "skip"
        pieces = seqs + (targets if isinstance(targets, list) else [targets] if targets is not None else [])
        for a in pieces:
            if a.dtype.kind == "f" and a.size and draw(st.booleans()):
                flat = a.reshape(-1)
                flat[rng.integers(0, flat.size)] = rng.choice([np.nan, np.inf, -np.inf])
    out = draw(st.sampled_from([None] + list(OUTPUT_DTYPES)))
    normalize, out = draw_normalize(draw, rng, feat, out)
    cfg = dict(
        batch_size=draw(st.integers(1, 6)),
        shuffle=draw(st.booleans()),
        seed=draw(st.integers(0, 2**40)),
        drop_last=draw(st.booleans()),
        dtype=out,
        normalize=normalize,
        pad_value=draw(st.sampled_from([0, 1])),
        check_finite=check_finite,
    )  # valid for every dtype, bool included
    if mode == "pack":
        cfg.update(pack=True, max_len=draw(st.integers(1, 12)))
    else:
        if draw(st.booleans()):
            cfg["max_len"] = draw(st.integers(1, 12))
        cfg.update(
            pad_multiple=draw(st.sampled_from([1, 1, 4])),
            padding_side=draw(st.sampled_from(["right", "left"])),
            truncation_side=draw(st.sampled_from(["right", "left"])),
        )
        if mode == "bucket":
            cfg.update(bucket=True, bucket_pool=draw(st.integers(1, 4)))
    world = draw(st.sampled_from([1, 1, 2, 3]))
    cfg.update(
        rank=draw(st.integers(0, world - 1)),
        world_size=world,
        steps_per_epoch=draw(st.sampled_from([None, None, 1, 5])),
    )
    run = dict(num_threads=draw(st.integers(1, 3)), prefetch=draw(st.integers(1, 4)), epoch=draw(st.integers(0, 4)))
    return seqs, targets, cfg, run


def run_both(seqs, targets, cfg, run, output):
    try:
        want = reference.sequence_batches(seqs, targets, epoch=run["epoch"], **cfg)
    except (ZeroDivisionError, IndexError):  # no batch in a pass at all, or every sequence dropped
        want = []
    if len(want) == 0:
        with pytest.raises(ValueError):
            Feeder(seqs, window=None, targets=targets, output=output, **cfg)
        return
    f = Feeder(
        seqs,
        window=None,
        targets=targets,
        output=output,
        num_threads=run["num_threads"],
        prefetch=run["prefetch"],
        **cfg,
    )
    f.set_epoch(run["epoch"])
    got = [as_dict(b) for b in f]
    assert len(got) == len(f)
    assert_same(got, want)


@given(sequence_configs())
def test_sequences_match_reference_numpy(c):
    seqs, targets, cfg, run = c
    if cfg["dtype"] == "bfloat16":
        cfg["dtype"] = "float32"
    run_both(seqs, targets, cfg, run, "numpy")


@given(sequence_configs())
def test_sequences_match_reference_torch(c):
    pytest.importorskip("torch")
    run_both(*c, "torch")


# ----- exact comparisons with PyTorch and Keras -------------------------------------------


def ragged(lengths, feat=(), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n,) + feat).astype(dtype) for n in lengths]


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_equals_torch_pad_sequence(side):
    torch = pytest.importorskip("torch")
    seqs = ragged([3, 1, 5, 2, 4], feat=(2,))
    batch = next(iter(Feeder(seqs, window=None, batch_size=5, padding_side=side, pad_value=-1.5)))
    want = torch.nn.utils.rnn.pad_sequence(
        [torch.from_numpy(s) for s in seqs], batch_first=True, padding_value=-1.5, padding_side=side
    )
    assert torch.equal(batch.x, want)
    assert batch.lengths.tolist() == [3, 1, 5, 2, 4] and batch.lengths.dtype == torch.int64
    assert batch.mask.dtype == torch.bool and batch.mask.shape == (5, 5)
    assert batch.mask.sum(1).tolist() == [3, 1, 5, 2, 4]
    assert torch.equal(batch.mask, want[..., 0] != -1.5)


@pytest.mark.parametrize("padding,truncating", [("pre", "pre"), ("post", "post"), ("pre", "post"), ("post", "pre")])
def test_max_len_equals_keras_pad_sequences(padding, truncating):
    seqs = [np.arange(n, dtype=np.int32) + 10 * i for i, n in enumerate([7, 2, 4, 0, 5])]
    f = Feeder(
        seqs,
        window=None,
        batch_size=5,
        max_len=4,
        output="numpy",
        pad_value=-1,
        padding_side="left" if padding == "pre" else "right",
        truncation_side="left" if truncating == "pre" else "right",
    )
    batch = next(iter(f))
    want = compat.pad_sequences(seqs, maxlen=4, padding=padding, truncating=truncating, value=-1)
    np.testing.assert_array_equal(batch.x, want)
    assert batch.lengths.tolist() == [4, 2, 4, 0, 4]
    np.testing.assert_array_equal(batch.mask, want != -1)


def test_outputs_work_with_pack_padded_sequence():
    torch = pytest.importorskip("torch")
    seqs = ragged([6, 1, 4, 3], feat=(3,), seed=4)
    torch.manual_seed(0)
    rnn = torch.nn.GRU(3, 5, batch_first=True)
    batch = next(iter(Feeder(seqs, window=None, batch_size=4)))
    assert batch.lengths.device.type == "cpu"
    packed = torch.nn.utils.rnn.pack_padded_sequence(batch.x, batch.lengths, batch_first=True, enforce_sorted=False)
    _, h = rnn(packed)
    with torch.no_grad():
        for i, s in enumerate(seqs):
            _, hi = rnn(torch.from_numpy(s)[None])
            torch.testing.assert_close(h[0, i], hi[0, 0])


def test_pad_multiple_and_labels():
    seqs = ragged([5, 9, 2])
    labels = np.array([0, 1, 2], dtype=np.int64)
    (batch,) = list(Feeder(seqs, window=None, targets=labels, batch_size=3, pad_multiple=8, output="numpy"))
    assert batch.x.shape == (3, 16)
    np.testing.assert_array_equal(batch.y, labels)
    assert batch.y.dtype == np.int64
    np.testing.assert_array_equal(batch.x[1, :9], seqs[1])
    assert (batch.x[1, 9:] == 0).all() and (batch.x[2, 2:] == 0).all()


def test_step_targets_are_padded_like_inputs():
    seqs = ragged([3, 1])
    tags = [np.array([1, 2, 3], np.int16), np.array([4], np.int16)]
    (batch,) = list(
        Feeder(seqs, window=None, targets=tags, batch_size=2, padding_side="left", pad_value=9, output="numpy")
    )
    np.testing.assert_array_equal(batch.y, [[1, 2, 3], [9, 9, 4]])
    np.testing.assert_array_equal(batch.mask, [[True, True, True], [False, False, True]])


def test_last_partial_batch_and_empty_sequence():
    seqs = ragged([2, 0, 3, 1, 4])
    got = list(Feeder(seqs, window=None, batch_size=2, output="numpy"))
    assert [len(b.x) for b in got] == [2, 2, 1]
    assert got[0].lengths.tolist() == [2, 0] and not got[0].mask[1].any()
    assert got[2].x.shape == (1, 4)
    assert len(list(Feeder(seqs, window=None, batch_size=2, drop_last=True))) == 2


def test_huge_values_survive_padding():
    seqs = [np.array([np.finfo(np.float64).max, -np.finfo(np.float64).max]), np.array([2.0**60])]
    (batch,) = list(Feeder(seqs, window=None, batch_size=2, output="numpy"))
    np.testing.assert_array_equal(batch.x, [[np.finfo(np.float64).max, -np.finfo(np.float64).max], [2.0**60, 0]])
    ints = [np.array([2**63 - 1, -(2**63)], np.int64), np.array([], np.int64)]
    (batch,) = list(Feeder(ints, window=None, batch_size=2, output="numpy", pad_value=-1))
    np.testing.assert_array_equal(batch.x, [[2**63 - 1, -(2**63)], [-1, -1]])


# ----- packing ----------------------------------------------------------------------------


def test_packing_loses_no_step_and_describes_rows():
    lengths = [5, 12, 0, 3, 7, 1, 9]
    seqs = [np.arange(n, dtype=np.int64) + 1000 * (i + 1) for i, n in enumerate(lengths)]
    f = Feeder(
        seqs, window=None, batch_size=2, pack=True, max_len=8, shuffle=True, seed=3, output="numpy", pad_value=-1
    )
    steps = []
    for b in f:
        assert b.x.shape[1] == 8 and b.segment_ids.dtype == np.int32 and b.cu_seqlens.dtype == np.int32
        flat_seg = b.segment_ids.reshape(-1)
        mask = mask_of(b)
        real = b.x.reshape(-1)[mask.reshape(-1)]
        steps.extend(real.tolist())
        np.testing.assert_array_equal(mask, b.segment_ids > 0)
        np.testing.assert_array_equal(lengths_of(b), mask.sum(1))
        assert (b.x[~mask] == -1).all()
        # cu_seqlens: boundaries of the segments in the flattened real steps, as flash-attention takes them.
        assert b.cu_seqlens[0] == 0 and b.cu_seqlens[-1] == len(real)
        for k in range(len(b.cu_seqlens) - 1):
            piece = real[b.cu_seqlens[k] : b.cu_seqlens[k + 1]]
            assert len({p // 1000 for p in piece}) == 1  # one sequence per segment
            assert np.all(np.diff(piece) == 1)  # consecutive steps of it
        for r in range(len(b.x)):
            for s in set(b.segment_ids[r].tolist()) - {0}:
                cols = np.nonzero(b.segment_ids[r] == s)[0]
                np.testing.assert_array_equal(b.position_ids[r, cols], np.arange(len(cols)))
        assert len(flat_seg) == b.x.size
    assert sorted(steps) == sorted(int(v) for s in seqs for v in s)
    rows = -(-sum(lengths) // 8)  # packed rows of 8 steps, in batches of 2
    assert len(f) == -(-rows // 2)


def test_pack_continues_a_long_sequence_in_the_next_row():
    seqs = [np.arange(1, 11, dtype=np.int32)]  # 10 steps, rows of 4
    (batch,) = list(
        Feeder(seqs + [np.array([], np.int32)], window=None, batch_size=3, pack=True, max_len=4, output="numpy")
    )
    np.testing.assert_array_equal(batch.x, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]])
    np.testing.assert_array_equal(batch.cu_seqlens, [0, 4, 8, 10])
    np.testing.assert_array_equal(batch.lengths, [4, 4, 2])


# ----- buckets ----------------------------------------------------------------------------


def lognormal_lengths(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(150), 1.0, n).astype(int), 1, 2048)


def test_bucketing_cuts_padding_and_keeps_every_sequence_once():
    lengths = lognormal_lengths(5000)
    seqs = [np.full(n, i, dtype=np.int32) for i, n in enumerate(lengths)]
    plain = Feeder(seqs, window=None, batch_size=64, shuffle=True, output="numpy")
    list(plain)
    bucketed = Feeder(seqs, window=None, batch_size=64, shuffle=True, bucket=True, output="numpy")
    seen = []
    for b in bucketed:
        seen.extend(b.x[np.arange(len(b.x)), 0].tolist())
    assert sorted(seen) == list(range(len(seqs)))
    assert plain.stats().padding_fraction > 0.7
    # One sorted pool of 5,000: the long tail still pads ~5% (W3's 200,000 sequences: under 2%).
    assert bucketed.stats().padding_fraction < plain.stats().padding_fraction / 10
    # A pure function of (seed, epoch): the same epoch twice, another epoch differs.
    again = Feeder(seqs, window=None, batch_size=64, shuffle=True, bucket=True, output="numpy")
    a = [lengths_of(b).tolist() for b in again]
    again.set_epoch(0)
    assert [lengths_of(b).tolist() for b in again] == a
    assert [lengths_of(b).tolist() for b in again] != a  # epoch 1


def test_bucketed_batches_go_out_shuffled_even_without_shuffle():
    # Bucketed batches are cut from length-sorted pools and then shuffled, with or without shuffle=True.
    # With shuffle=False the pools are cut from the sequences in order, and still the batches
    # of a pool must not run from the shortest to the longest.
    lengths = [int(n) for n in lognormal_lengths(64 * 20, seed=3)]
    seqs = [np.full(n, i, dtype=np.int32) for i, n in enumerate(lengths)]
    f = Feeder(seqs, window=None, batch_size=64, bucket=True, output="numpy")
    epoch0 = [lengths_of(b).max() for b in f]
    assert epoch0 != sorted(epoch0)
    sorted_cut = sorted(range(len(seqs)), key=lambda i: lengths[i])  # one pool: all 20 batches
    want = {tuple(sorted_cut[s : s + 64]) for s in range(0, len(seqs), 64)}
    f.set_epoch(0)
    assert {tuple(b.x[:, 0].tolist()) for b in f} == want  # the same batches, in a shuffled order
    assert [lengths_of(b).max() for b in f] != epoch0  # epoch 1: another order


# ----- bad input --------------------------------------------------------------------------


def test_mask_and_lengths_are_set_in_every_batch_of_whole_sequences():
    # Also where no step was padded: a loop (pack_padded_sequence(x, batch.lengths)) never meets None.
    even = list(Feeder([np.arange(4.0)] * 4, window=None, batch_size=2, output="numpy"))
    for b in even:
        np.testing.assert_array_equal(b.mask, np.ones((2, 4), bool))
        assert b.lengths.dtype == np.int64
        np.testing.assert_array_equal(b.lengths, [4, 4])
    mixed = list(
        Feeder(
            [np.arange(4.0), np.arange(4.0), np.arange(3.0), np.arange(4.0)], window=None, batch_size=2, output="numpy"
        )
    )
    np.testing.assert_array_equal(mixed[0].mask, [[True] * 4, [True] * 4])  # two full rows
    np.testing.assert_array_equal(mixed[1].mask, [[True, True, True, False], [True, True, True, True]])
    np.testing.assert_array_equal(mixed[1].lengths, [3, 4])
    rounded = next(iter(Feeder([np.arange(4.0)] * 2, window=None, batch_size=2, pad_multiple=8, output="numpy")))
    np.testing.assert_array_equal(rounded.lengths, [4, 4])
    assert rounded.mask.shape == (2, 8) and rounded.mask[:, 4:].sum() == 0
    full_rows = next(
        iter(Feeder([np.arange(4.0)] * 2, window=None, batch_size=2, pack=True, max_len=4, output="numpy"))
    )
    np.testing.assert_array_equal(full_rows.mask, np.ones((2, 4), bool))  # packed full rows: a mask still
    np.testing.assert_array_equal(full_rows.lengths, [4, 4])
    np.testing.assert_array_equal(full_rows.segment_ids, [[1, 1, 1, 1], [1, 1, 1, 1]])


def test_as_dict_holds_exactly_the_fields_that_are_set():
    padded = next(iter(Feeder([np.arange(4.0), np.arange(2.0)], window=None, batch_size=2, output="numpy")))
    d = padded.as_dict()
    assert list(d) == ["x", "mask", "lengths"]  # no targets: no y
    assert d["x"] is padded.x and d["mask"] is padded.mask and d["lengths"] is padded.lengths
    labelled = next(
        iter(
            Feeder(
                [np.arange(4.0), np.arange(2.0)], window=None, targets=np.array([5, 6]), batch_size=2, output="numpy"
            )
        )
    )
    assert set(labelled.as_dict()) == {"x", "y", "mask", "lengths"}
    np.testing.assert_array_equal(labelled.as_dict()["y"], [5, 6])
    packed = next(
        iter(Feeder([np.arange(4.0), np.arange(2.0)], window=None, batch_size=2, pack=True, max_len=3, output="numpy"))
    )
    assert set(packed.as_dict()) == {"x", "mask", "lengths", "segment_ids", "position_ids", "cu_seqlens"}
    window = next(iter(Feeder(np.arange(10.0), window=3, horizon=1, batch_size=2, output="numpy")))
    assert list(window.as_dict()) == ["x", "y"]
    assert window.mask is None and window.lengths is None and window.segment_ids is None
    x_only = next(iter(Feeder(np.arange(10.0), window=3, batch_size=2, output="numpy")))
    assert list(x_only.as_dict()) == ["x"]


def test_virtual_epochs_continue_the_stream_of_sequences_in_full_batches():
    seqs = [np.full(2, i, np.int64) for i in range(7)]
    f = Feeder(seqs, window=None, batch_size=3, steps_per_epoch=3, output="numpy")
    first = [b.x[:, 0].tolist() for b in f]
    second = [b.x[:, 0].tolist() for b in f]
    assert first == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]  # the second pass starts inside a batch
    assert second == [[2, 3, 4], [5, 6, 0], [1, 2, 3]]
    packed = Feeder(seqs, window=None, batch_size=2, steps_per_epoch=4, pack=True, max_len=5, output="numpy")
    rows = [row.tolist() for b in packed for row in b.x]
    assert all(len(b.x) == 2 for b in packed)
    # 14 steps pack into rows of 5, 5, 4 (the last one padded); the next pass's rows follow.
    assert rows == [
        [0, 0, 1, 1, 2],
        [2, 3, 3, 4, 4],
        [5, 5, 6, 6, 0],
        [0, 0, 1, 1, 2],
        [2, 3, 3, 4, 4],
        [5, 5, 6, 6, 0],
        [0, 0, 1, 1, 2],
        [2, 3, 3, 4, 4],
    ]


def test_virtual_epochs_stream_every_sequence_with_drop_last_too():
    # drop_last drops a pass's short last batch; a stream of full batches has none, so every
    # sequence (or packed row) of a pass still comes, as every window does.
    seqs = [np.full(2, i, np.int64) for i in range(7)]
    f = Feeder(seqs, window=None, batch_size=3, steps_per_epoch=3, drop_last=True, output="numpy")
    assert [b.x[:, 0].tolist() for b in f] == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]
    windows = Feeder(np.arange(7), window=1, batch_size=3, steps_per_epoch=3, drop_last=True, output="numpy")
    assert [b.x[:, 0].tolist() for b in windows] == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]
    packed = Feeder(
        seqs, window=None, batch_size=2, steps_per_epoch=2, drop_last=True, pack=True, max_len=5, output="numpy"
    )
    assert [row.tolist() for b in packed for row in b.x] == [
        [0, 0, 1, 1, 2],
        [2, 3, 3, 4, 4],
        [5, 5, 6, 6, 0],
        [0, 0, 1, 1, 2],
    ]
    # A pass shorter than a batch still feeds the stream; bucketed batches are cut per pass, so
    # there drop_last leaves nothing.
    short = Feeder(seqs[:2], window=None, batch_size=3, steps_per_epoch=2, drop_last=True, output="numpy")
    assert [b.x[:, 0].tolist() for b in short] == [[0, 1, 0], [1, 0, 1]]
    with pytest.raises(
        ValueError, match="drop_last=True with batch_size=3 leaves no batch: there are only 2 sequences"
    ):
        Feeder(seqs[:2], window=None, batch_size=3, steps_per_epoch=2, drop_last=True, bucket=True)


def test_sequence_argument_errors():
    seqs = ragged([3, 2])
    with pytest.raises(ValueError, match="window is required for a single series"):
        Feeder(seqs[0], window=None)
    with pytest.raises(ValueError, match="pack=True needs max_len"):
        Feeder(seqs, window=None, pack=True)
    with pytest.raises(ValueError, match="pack=True and bucket=True are alternatives"):
        Feeder(seqs, window=None, pack=True, max_len=4, bucket=True)
    with pytest.raises(ValueError, match="horizon, stride apply to windows"):
        Feeder(seqs, window=None, horizon=1, stride=2)
    with pytest.raises(ValueError, match="max_len, pack apply to whole sequences"):
        Feeder(seqs, window=2, max_len=4, pack=True)
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left', got 'top'"):
        Feeder(seqs, window=None, padding_side="top")
    with pytest.raises(ValueError, match="max_len must be >= 1, got 0"):
        Feeder(seqs, window=None, max_len=0)
    with pytest.raises(ValueError, match=r"pad_value=300 does not fit the output dtype uint8 \(integers 0..255\)"):
        Feeder([s.astype(np.uint8) for s in seqs], window=None, pad_value=300)
    with pytest.raises(ValueError, match="one row per sequence: the source has 2 sequences, targets have 3 rows"):
        Feeder(seqs, window=None, targets=np.zeros(3))
    with pytest.raises(ValueError, match=r"targets\[1\] has 5 steps but sequence 1 has 2"):
        Feeder(seqs, window=None, targets=[np.zeros(3), np.zeros(5)])
    with pytest.raises(ValueError, match="pack=True cannot carry one label per sequence"):
        Feeder(seqs, window=None, targets=np.zeros(2), pack=True, max_len=4)
    with pytest.raises(ValueError, match="every sequence is empty"):
        Feeder([np.zeros(0), np.zeros(0)], window=None, pack=True, max_len=4)
    with pytest.raises(ValueError, match="pad_multiple=8, padding_side='left' do not apply with pack=True"):
        Feeder(seqs, window=None, pack=True, max_len=4, pad_multiple=8, padding_side="left")
    with pytest.raises(ValueError, match="truncation_side='left' does not apply with pack=True"):
        Feeder(seqs, window=None, pack=True, max_len=4, truncation_side="left")
    with pytest.raises(ValueError, match="bucket_pool=8 applies with bucket=True or pack='best_fit' only"):
        Feeder(seqs, window=None, bucket_pool=8)


def test_check_finite_names_the_sequence_and_step():
    seqs = ragged([3, 4, 2])
    seqs[1][2] = np.nan
    f = Feeder(seqs, window=None, batch_size=1, check_finite="raise", output="numpy")
    it = iter(f)
    next(it)
    with pytest.raises(FeedError, match=r"batch 1 of epoch 0 .*sequence 1 at step 2"):
        next(it)


def test_labels_as_a_plain_list_of_numbers():
    seqs = ragged([2, 3])
    (batch,) = list(Feeder(seqs, window=None, targets=[7, 9], batch_size=2, output="numpy"))
    np.testing.assert_array_equal(batch.y, [7, 9])
