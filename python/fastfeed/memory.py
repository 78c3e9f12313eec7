"""How much memory a Feeder may plan to hold, checked before anything is allocated."""

from __future__ import annotations

import os
from typing import Optional

# A Feeder's batches in flight (the prefetched blocks) may take at most this share of memory:
# the rest is the training loop's, the model's and the page cache's.
_BUDGET_SHARE = 2


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def _cgroup_limit() -> Optional[int]:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def memory_budget() -> int:
    """Bytes the prefetched batches of one Feeder may take."""
    return machine_memory() // _BUDGET_SHARE


def check_batch_memory(batch_bytes: int, sized_by: str) -> None:
    """Refuses a batch larger than the budget; `sized_by` names the arguments that size it."""
    budget = memory_budget()
    if batch_bytes > budget:
        raise ValueError(
            f"{sized_by} makes batches of {batch_bytes:,} bytes, more than the {budget:,} bytes a Feeder may hold "
            f"on this machine (half of its {machine_memory():,} bytes of memory): use smaller batches"
        )


def check_prefetch_memory(prefetch: int, block_bytes: int) -> None:
    """Refuses a prefetch depth whose blocks would not fit the budget."""
    budget = memory_budget()
    if prefetch * block_bytes > budget:
        raise ValueError(
            f"prefetch={prefetch} blocks of {block_bytes:,} bytes would hold {prefetch * block_bytes:,} bytes, more "
            f"than the {budget:,} bytes a Feeder may hold on this machine (half of its {machine_memory():,} bytes "
            f"of memory): lower prefetch (at most {max(1, budget // max(1, block_bytes))} here)"
        )


def prefetch_that_fits(prefetch: int, block_bytes: int) -> int:
    """`prefetch`, lowered (to 1 at the least) until its blocks fit the budget."""
    return max(1, min(prefetch, memory_budget() // max(1, block_bytes)))
