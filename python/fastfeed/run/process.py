"""What a process may not do with fastfeed's threads: go on in a forked child with an epoch its
parent started, or feed batches inside each of several DataLoader worker processes."""

from __future__ import annotations

import os
import sys
import weakref
from typing import Any, Callable, Optional

_PARENT = os.getpid()
# Objects with an after_fork_in_child(parent_pid) method: the epochs running now and the
# Feeders' counters (a few, each tracked once).
_tracked: weakref.WeakSet[Any] = weakref.WeakSet()


def track_in_child(obj: Any) -> None:
    """`obj.after_fork_in_child(parent)` runs in every child forked while `obj` is alive."""
    _tracked.add(obj)


def _after_fork_in_child() -> None:
    global _PARENT
    parent, _PARENT = _PARENT, os.getpid()
    for obj in list(_tracked):
        obj.after_fork_in_child(parent)


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_after_fork_in_child)


_worker_info: Optional[Callable[[], Any]] = None  # torch.utils.data.get_worker_info, once torch is imported


def refuse_data_loader_workers() -> None:
    """Raises RuntimeError in a worker process of a torch DataLoader with several workers: each
    would feed the whole epoch, every batch once per worker. Only looked at when torch is
    already imported (the DataLoader imported it)."""
    global _worker_info
    if _worker_info is None:
        if "torch" not in sys.modules:
            return
        from torch.utils.data import get_worker_info

        _worker_info = get_worker_info
    info = _worker_info()
    if info is None or info.num_workers <= 1:
        return
    raise RuntimeError(
        f"a Feeder is being iterated inside DataLoader worker process {info.id} of {info.num_workers}: every "
        f"worker would feed the whole epoch, so the DataLoader would yield each batch {info.num_workers} times. "
        "Iterate the Feeder directly instead of through a DataLoader (it already assembles batches ahead on "
        "its own threads), or use DataLoader(num_workers=0)"
    )
