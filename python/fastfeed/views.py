"""Per-batch views of a block: the workers hand over blocks of many small batches, and each
batch the user gets is a view into its block (no copy)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, List, Optional

import numpy as np

_plain_views: Optional[Callable[[], ContextManager[Any]]] = None


def _plain_view_guard() -> ContextManager[Any]:
    """Makes views without autograd's view tracking, when this torch offers it.

    The blocks never require grad and the user never sees them, so tracking which tensor a
    batch is a view of buys nothing; it is a third of what a view costs to make, and W1 makes
    two views per batch. The batches are ordinary tensors that share the block's storage, so
    they keep it alive all the same."""
    global _plain_views
    if _plain_views is None:
        import torch

        _plain_views = getattr(torch._C, "_AutoDispatchBelowADInplaceOrView", contextlib.nullcontext)
    return _plain_views()


def split_batches(block: Any, rows: int, total: int, batch_size: int) -> List[Any]:
    """The batches among the first `rows` of a block's `total` rows, as views: one reshape and
    one C-level split per block, so that per batch only a view is made. `block` is a NumPy
    array or a torch tensor; `total` is given because len() of a tensor is a Python-level call."""
    if rows == total and 0 < rows <= batch_size:
        return [block]  # a block of one batch (large batches): hand it over as it is
    full = rows // batch_size
    parts = block[:full * batch_size].reshape((full, batch_size) + tuple(block.shape[1:]))
    if isinstance(parts, np.ndarray):
        out = list(parts)
    else:
        with _plain_view_guard():
            out = list(parts.unbind(0))
    if rows > full * batch_size:
        out.append(block[full * batch_size:rows])
    return out
