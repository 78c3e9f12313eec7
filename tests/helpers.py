"""Shared helpers for the tests: turning Feeder output into NumPy, comparing with the reference,
counting this process's threads."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np


def to_numpy(a: Any) -> Optional[np.ndarray]:
    """A batch field as NumPy; bfloat16 tensors become their uint16 bit patterns."""
    if a is None or isinstance(a, np.ndarray):
        return a
    import torch

    if a.dtype == torch.bfloat16:
        return a.view(torch.int16).cpu().numpy().view(np.uint16)
    return a.cpu().numpy()


def mask_of(batch: Any) -> np.ndarray:
    """A padded batch's mask, all True where the Feeder left it None (no padding happened)."""
    return np.ones(batch.x.shape[:2], bool) if batch.mask is None else to_numpy(batch.mask)


def lengths_of(batch: Any) -> np.ndarray:
    """A padded batch's lengths, each the full row where the Feeder left them None."""
    return np.full(len(batch.x), batch.x.shape[1]) if batch.lengths is None else to_numpy(batch.lengths)


def collect(feeder: Any) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """One epoch as NumPy copies (copies, so later batches cannot alias earlier ones)."""
    out = []
    for x, y in feeder:
        xn, yn = to_numpy(x), to_numpy(y)
        out.append((xn.copy(), None if yn is None else yn.copy()))
    return out


def bfloat16_values(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16, as to_numpy gives them) as float32 values."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def assert_same_batches(
    got, want, exact: bool = True, rtol: float = 0.0, atol: float = 0.0, bf16: bool = False
) -> None:
    """`bf16`: uint16 fields are bfloat16 bit patterns, compared (when not exact) as values."""
    assert len(got) == len(want), f"{len(got)} batches, reference has {len(want)}"
    for i, ((gx, gy), (wx, wy)) in enumerate(zip(got, want)):
        for name, g, w in (("x", gx, wx), ("y", gy, wy)):
            if w is None:
                assert g is None, f"batch {i}: {name} should be None"
                continue
            assert g.shape == w.shape, f"batch {i}: {name} shape {g.shape} != {w.shape}"
            assert g.dtype == w.dtype, f"batch {i}: {name} dtype {g.dtype} != {w.dtype}"
            if exact:
                np.testing.assert_array_equal(g, w, err_msg=f"batch {i}: {name}")
            else:
                if bf16 and g.dtype == np.uint16:
                    g, w = bfloat16_values(g), bfloat16_values(w)
                np.testing.assert_allclose(
                    g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol, err_msg=f"batch {i}: {name}"
                )


def native_threads() -> int:
    """Threads of this process, native ones included (Linux: /proc/self/task)."""
    return len(os.listdir("/proc/self/task"))


def wait_for_threads(n: int, timeout: float = 5.0) -> int:
    """The thread count once it is down to `n`, or after `timeout` seconds (threads end asynchronously)."""
    deadline = time.monotonic() + timeout
    while native_threads() > n and time.monotonic() < deadline:
        time.sleep(0.01)
    return native_threads()


@contextlib.contextmanager
def feeding_knobs(tune_window: Optional[int] = None, block_samples: Optional[int] = None) -> Iterator[None]:
    """Inside the block, the tuner of num_threads=None / prefetch=None decides every
    `tune_window` blocks, and Feeders made over windows put at most `block_samples` samples in a
    block (so that a small epoch has many blocks, and the workers and the tuner take part)."""
    import fastfeed.modes.windows
    import fastfeed.run.tuning

    saved = fastfeed.run.tuning.TUNE_WINDOW, fastfeed.modes.windows._BLOCK_SAMPLES
    if tune_window is not None:
        fastfeed.run.tuning.TUNE_WINDOW = tune_window
    if block_samples is not None:
        fastfeed.modes.windows._BLOCK_SAMPLES = block_samples
    try:
        yield
    finally:
        fastfeed.run.tuning.TUNE_WINDOW, fastfeed.modes.windows._BLOCK_SAMPLES = saved
