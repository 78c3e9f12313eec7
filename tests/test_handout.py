"""How an epoch's batches reach the consumer: made a block at a time (views and Batch pairs in
C), handed on by a chain over blocks, counted off the block's iterator."""

from __future__ import annotations

import contextlib
import gc
import sys
import types
from typing import ClassVar

import numpy as np
import pytest

from fastfeed import Batch, Feeder, FeedError, _core, reference

from helpers import native_threads, wait_for_threads

S = np.arange(300, dtype=np.float32).reshape(150, 2)


def small_batches(**kw) -> Feeder:
    base = dict(window=5, horizon=1, batch_size=1, shuffle=True, seed=3, output="numpy")
    base.update(kw)
    return Feeder(S, **base)


def test_state_dict_counts_every_batch_handed_out_within_a_block():
    f = small_batches()
    it = iter(f)
    assert f.state_dict()["batch"] == 0
    for k in range(1, len(f)):  # all inside one block of 145 batches
        next(it)
        assert (f.state_dict()["epoch"], f.state_dict()["batch"]) == (0, k)
    next(it)  # the last batch of the epoch: the next one comes from epoch 1
    assert (f.state_dict()["epoch"], f.state_dict()["batch"]) == (1, 0)
    assert next(it, None) is None


def test_resuming_from_the_middle_of_a_block_gives_the_remaining_batches():
    f = small_batches()
    it = iter(f)
    first = [next(it) for _ in range(37)]
    g = small_batches()
    g.load_state_dict(f.state_dict())
    rest = list(g)
    want = reference.batches(S, window=5, horizon=1, batch_size=1, shuffle=True, seed=3)
    got = first + rest
    assert len(got) == len(want) == 145
    for (x, y), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)


def test_closing_the_epoch_iterator_stops_its_threads_like_a_generator():
    base = native_threads()
    f = Feeder(np.zeros((20000, 4), np.float32), window=64, batch_size=4, num_threads=2, output="numpy")
    it = iter(f)
    next(it)
    assert native_threads() > base
    it.close()
    assert wait_for_threads(base) == base
    assert next(it, None) is None  # a closed iterator is exhausted, as a closed generator is
    assert len(list(f)) == len(f)  # the feeder itself goes on: the next epoch runs in full


def test_batches_are_exactly_the_batch_type():
    x, y = batch = next(iter(small_batches()))
    assert type(batch) is Batch and batch.x is x and batch.y is y and batch.mask is None


class RecordingBar:
    """Stands in for tqdm: records the bar's total and every update."""

    made: ClassVar[list] = []

    def __init__(self, total: int, initial: int, **kw) -> None:
        self.total, self.n, self.closed = total, initial, False
        RecordingBar.made.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def test_progress_bar_moves_once_per_batch_handed_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=RecordingBar))
    RecordingBar.made = []
    f = small_batches(progress=True, batch_size=4)
    it = iter(f)
    got = [next(it).x.copy() for _ in range(11)]
    bar = RecordingBar.made[0]
    assert bar.total == len(f) == 37
    assert bar.n == 10  # a batch counts once the loop comes back for the next
    got += [b.x.copy() for b in it]
    assert bar.n == 37 and bar.closed
    want = [b.x for b in small_batches(batch_size=4)]
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(want))


def test_make_pairs_refuses_what_it_cannot_pair():
    with pytest.raises(TypeError, match="tuple subclass"):
        _core.make_pairs(list, [1], [2])
    with pytest.raises(ValueError, match="2 xs but 1 ys"):
        _core.make_pairs(Batch, [1, 2], [3])
    pairs = _core.make_pairs(Batch, ["a", "b"], (None, "c"))
    assert pairs == [("a", None), ("b", "c")] and all(type(p) is Batch for p in pairs)
    assert [hash(p) for p in pairs] == [hash(("a", None)), hash(("b", "c"))]  # ordinary tuples to Python


def test_make_pairs_leaks_nothing_when_a_target_cannot_be_read():
    class Unreadable:
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> None:
            raise KeyError(i)

    x = object()
    before = sys.getrefcount(x)
    for _ in range(100):
        with pytest.raises(KeyError):
            _core.make_pairs(Batch, [x], Unreadable())
    assert sys.getrefcount(x) == before


torch = pytest.importorskip("torch")


def test_torch_batches_are_ordinary_tensors_for_autograd_and_in_place_ops():
    f = small_batches(output="torch", shuffle=False)
    batches = list(f)
    want = reference.batches(S, window=5, horizon=1, batch_size=1)
    x, _y = batches[3]
    assert x.shape == (1, 5, 2) and not x.requires_grad and x.grad_fn is None
    # As a model's input (Linear saves its input for the weight's gradient):
    lin = torch.nn.Linear(2, 1, bias=False)
    lin(x).sum().backward()
    np.testing.assert_array_equal(lin.weight.grad.numpy()[0], want[3][0][0].sum(axis=0))
    # As a leaf that needs a gradient:
    x.requires_grad_()
    (x * 3).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 3))
    # In place on one batch leaves its neighbours in the same block alone:
    x2 = batches[4].x
    x2.add_(1000)
    np.testing.assert_array_equal(batches[5].x.numpy(), want[5][0])
    np.testing.assert_array_equal(x2.numpy(), want[4][0] + 1000)


def test_torch_batches_keep_their_block_alive():
    f = small_batches(output="torch", shuffle=False)
    held = [b.x for b in f]  # every batch object dropped, the tensors kept
    gc.collect()
    for _ in range(3):
        for _ in f:  # later epochs reuse buffers: none of the held ones
            pass
    want = reference.batches(S, window=5, horizon=1, batch_size=1)
    for x, (wx, _) in zip(held, want):
        np.testing.assert_array_equal(x.numpy(), wx)


def test_views_made_the_plain_way_where_torch_has_no_guard(monkeypatch):
    from fastfeed.run import views

    monkeypatch.setattr(views, "_row_views", views.unbound_rows)
    monkeypatch.setattr(views, "_plain_views", contextlib.nullcontext)
    got = [(x.numpy().copy(), y.numpy().copy()) for x, y in small_batches(output="torch", batch_size=3)]
    want = reference.batches(S, window=5, horizon=1, batch_size=3, shuffle=True, seed=3)
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)


def test_autograd_records_in_the_loop_body_for_every_batch():
    # Views are made with autograd's dispatch keys excluded; that must never reach the loop's
    # own code, in any chunk of a block.
    w = torch.ones(2, requires_grad=True)
    f = small_batches(output="torch", batch_size=1)
    recorded = [((x * w).sum()).requires_grad for x, _ in f]
    assert len(recorded) == 145 and all(recorded)
    assert torch.is_grad_enabled() and (w * 2).grad_fn is not None


@pytest.mark.parametrize("output", ["numpy", "torch"])
def test_blocks_of_many_chunks_with_a_short_last_batch_match_the_reference(output):
    f = small_batches(output=output, batch_size=2)  # 145 windows: 72 batches of 2, one of 1
    got = [(np.asarray(x).copy(), np.asarray(y).copy()) for x, y in f]
    want = reference.batches(S, window=5, horizon=1, batch_size=2, shuffle=True, seed=3)
    assert len(got) == len(want) == 73 and len(got[-1][0]) == 1
    for (x, y), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)


def test_a_failed_sample_late_in_a_block_stops_at_its_batch():
    bad = S.copy()
    bad[120, 1] = np.nan  # the window starting at 120 is the 121st sample: batch 120 unshuffled
    f = Feeder(bad, window=1, batch_size=1, check_finite="raise", output="numpy")
    got = []
    with pytest.raises(FeedError, match=r"assembling batch 120 of epoch 0 failed: sample 120"):
        for x, _ in f:
            got.append(x.copy())
    assert len(got) == 120  # every batch before it, in chunks of views, and nothing spoiled
    np.testing.assert_array_equal(np.concatenate(got)[:, 0], S[:120])
