"""fastfeed._torch_views: row views made without torch's dispatcher must be the very tensors
that indexing makes (values, shape, strides, storage), and are used only under the torch they
were built for."""

from __future__ import annotations

import gc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastfeed  # noqa: E402
from fastfeed import Feeder, reference  # noqa: E402
from fastfeed.run import views  # noqa: E402

native = pytest.importorskip("fastfeed._torch_views", reason="built only where the build could import torch")

DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.bool,
]


def same_view(got, want):
    assert type(got) is torch.Tensor
    assert got.dtype == want.dtype and got.device == want.device
    assert got.shape == want.shape and got.stride() == want.stride()
    assert got.storage_offset() == want.storage_offset() and got.data_ptr() == want.data_ptr()
    assert got.untyped_storage().data_ptr() == want.untyped_storage().data_ptr()
    assert got.is_contiguous() == want.is_contiguous()
    assert not got.requires_grad and got.grad_fn is None
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_are_the_tensors_indexing_makes(dtype):
    block = (torch.arange(7 * 3 * 4) % 5).to(dtype).reshape(7, 3, 4)
    for t in [block, block[2:], block[:, 1:], block.transpose(1, 2), block[::2], block[:, :, 0]]:
        for start, stop in [(0, len(t)), (1, len(t) - 1), (len(t), len(t))]:
            got = native.rows(t, start, stop)
            assert len(got) == stop - start
            for k, row in enumerate(got):
                same_view(row, t[start + k])


def test_rows_share_the_storage_and_keep_it_alive():
    block = torch.zeros(4, 3)
    rows = native.rows(block, 0, 4)
    block[2, 1] = 7.0
    assert rows[2][1].item() == 7.0
    rows[3].fill_(2.0)  # a write through a row lands in the block
    assert block[3].tolist() == [2.0, 2.0, 2.0]
    del block
    gc.collect()
    assert rows[3].tolist() == [2.0, 2.0, 2.0] and rows[2].sum().item() == 7.0


def test_rows_are_ordinary_tensors_for_autograd_and_resizing():
    rows = native.rows(torch.ones(3, 2), 0, 3)
    w = torch.full((2,), 3.0, requires_grad=True)
    (rows[1] * w).sum().backward()
    assert w.grad.tolist() == [1.0, 1.0]
    r = rows[0]
    r.unsqueeze_(0)  # in-place metadata changes stay with that one tensor
    assert r.shape == (1, 2) and rows[1].shape == (2,)
    assert r.clone().requires_grad_().requires_grad


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((torch.zeros(3, 2), -1, 2), IndexError, r"\[-1, 2\) is not a range of the tensor's 3 rows"),
        ((torch.zeros(3, 2), 2, 1), IndexError, r"\[2, 1\) is not a range of the tensor's 3 rows"),
        ((torch.zeros(3, 2), 0, 4), IndexError, r"\[0, 4\) is not a range of the tensor's 3 rows"),
        ((torch.zeros(()), 0, 0), ValueError, "at least one dimension"),
        ((torch.zeros(3, requires_grad=True), 0, 1), ValueError, "does not require grad"),
        ((torch.zeros(3).to_sparse(), 0, 1), ValueError, "a strided tensor"),
        ((torch.zeros(3).as_subclass(type("Sub", (torch.Tensor,), {})), 0, 1), ValueError, "not a subclass"),
        ((np.zeros(3), 0, 1), TypeError, "expected a torch.Tensor, got numpy.ndarray"),
        ((torch.zeros(3), 0), TypeError, "takes 3 arguments, got 2"),
        ((torch.zeros(3), 0, "1"), TypeError, "integer"),
    ],
)
def test_rows_refuses_what_it_cannot_view(args, error, message):
    with pytest.raises(error, match=message):
        native.rows(*args)


def test_native_rows_are_used_only_under_the_torch_they_were_built_for(monkeypatch):
    assert torch.__version__ == native.TORCH_VERSION  # this build's own torch
    assert fastfeed.build_info()["torch_views"] == torch.__version__
    assert views.native_row_views() is native.rows
    monkeypatch.setattr(native, "TORCH_VERSION", "0.0.0")
    assert views.native_row_views() is None
    monkeypatch.setattr(views, "_row_views", None)
    assert views.row_views() is views.unbound_rows
    s = np.sin(np.arange(0, 20, 0.1))
    got = [
        (x.numpy().copy(), y.numpy().copy()) for x, y in Feeder(s, window=10, horizon=1, batch_size=3, output="torch")
    ]
    want = reference.batches(s, window=10, horizon=1, batch_size=3)
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)
