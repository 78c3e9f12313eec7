"""Per-batch views of a block: the workers hand over blocks of many small batches, and each
batch the user gets is a view into its block (no copy)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Iterator, List, Optional

import numpy as np

from ..build import torch_views_module

# Views are made this many batches at a time. Objects that are still alive when the garbage
# collector runs move to an older generation, and every object promoted brings the next full
# collection nearer (one costs tens of milliseconds once torch is imported): a whole block of
# tensors made at once and held while it is handed out cost W1 twice its time on average.
CHUNK_BATCHES = 64

_plain_views: Optional[Callable[[], ContextManager[Any]]] = None
RowViews = Callable[[Any, int, int], List[Any]]
_row_views: Optional[RowViews] = None


def _plain_view_guard() -> ContextManager[Any]:
    """Makes views without autograd's view tracking, when this torch offers it.

    The blocks never require grad and the user never sees them, so tracking which tensor a
    batch is a view of buys nothing; it is a third of what a view costs to make, and W1 makes
    two views per batch. The batches are ordinary tensors that share the block's storage, so
    they keep it alive all the same."""
    global _plain_views
    guard = _plain_views
    if guard is None:
        import torch

        found: Callable[[], ContextManager[Any]] = getattr(
            torch._C, "_AutoDispatchBelowADInplaceOrView", contextlib.nullcontext
        )
        guard = _plain_views = found
    return guard()


def unbound_rows(tensor: Any, start: int, stop: int) -> List[Any]:
    """[tensor[start], ..., tensor[stop - 1]] by torch's own unbind(), one call for them all."""
    with _plain_view_guard():  # only around the unbind: the loop's own code must keep autograd
        return list(tensor[start:stop].unbind(0))


def native_row_views() -> Optional[RowViews]:
    """fastfeed._torch_views.rows, which makes the same views in less than half the time, when
    it was built for exactly the torch imported now; else None."""
    import torch

    module = torch_views_module()
    if module is None or torch.__version__ != module.TORCH_VERSION:
        return None
    return module.rows


def row_views() -> RowViews:
    """How this process makes a tensor's row views: natively when it can, else by unbind()."""
    global _row_views
    if _row_views is None:
        _row_views = native_row_views() or unbound_rows
    return _row_views


def chunked_batches(block: Any, rows: int, total: int, batch_size: int) -> Iterator[List[Any]]:
    """The batches among the first `rows` of a block's `total` rows (all full but maybe the
    last), as lists of views, CHUNK_BATCHES at a time: per chunk one C-level call makes them
    all, so that per batch only a view is made. `block` is a NumPy array or a torch tensor.
    (`total` comes from NumPy: len() of a tensor is a Python-level call.)"""
    if rows == total and 0 < rows <= batch_size:
        yield [block]  # a block of one batch (large batches): hand it over as it is
        return
    full = rows // batch_size
    parts = block[: full * batch_size].reshape((full, batch_size) + tuple(block.shape[1:]))
    if isinstance(parts, np.ndarray):
        for lo in range(0, full, CHUNK_BATCHES):
            yield list(parts[lo : lo + CHUNK_BATCHES])
    else:
        rows_of = row_views()
        for lo in range(0, full, CHUNK_BATCHES):
            yield rows_of(parts, lo, min(lo + CHUNK_BATCHES, full))
    if rows > full * batch_size:
        yield [block[full * batch_size : rows]]
