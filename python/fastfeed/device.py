"""Moving assembled batches to a CUDA device: the Feeder's `device="cuda"` path.

The core assembles batches straight into page-locked (pinned) pool buffers; each block is
copied to the device on a side stream, so the copy of the next batch overlaps the caller's
work on the current one. The caller's current stream waits for the copy (on the GPU, not the
CPU), and every tensor is recorded on that stream, so PyTorch's caching allocator never hands
its memory to anyone else while the caller may still use it. The host buffer stays referenced
until its copy has finished.

NOT YET RUN ON A GPU: written in a session without one; tests/test_gpu.py checks it against
the reference where a GPU is present.
"""
from __future__ import annotations

import collections
from typing import Any, Deque, Optional, Sequence, Tuple

import numpy as np


class DeviceUploader:
    """Copies host arrays to one CUDA device on a stream of its own."""

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self._stream = torch.cuda.Stream(device=self.device)
        # (event, host arrays) of copies that may still be running: the buffers must live.
        self._in_flight: Deque[Tuple[Any, tuple]] = collections.deque()

    def upload(self, arrays: Sequence[Optional[np.ndarray]], bfloat16: Sequence[bool],
               keep_on_host: Sequence[bool]) -> tuple:
        """Device tensors of `arrays` (None stays None; `keep_on_host` ones become CPU tensors),
        ready for the caller's current stream. `bfloat16[i]`: the array holds bfloat16 bits."""
        torch = self._torch
        self._forget_finished()
        current = torch.cuda.current_stream(self.device)
        out = []
        with torch.cuda.stream(self._stream):  # allocations and copies belong to the side stream
            for a, bf16, host in zip(arrays, bfloat16, keep_on_host):
                if a is None:
                    out.append(None)
                    continue
                t = torch.from_numpy(a)
                if bf16:
                    t = t.view(torch.bfloat16)
                out.append(t if host else t.to(self.device, non_blocking=True))
            done = torch.cuda.Event()
            done.record(self._stream)
        current.wait_event(done)
        for t in out:
            if t is not None and t.is_cuda:
                t.record_stream(current)  # not reused before the caller's stream is done with it
        self._in_flight.append((done, tuple(arrays)))
        return tuple(out)

    def _forget_finished(self) -> None:
        while self._in_flight and self._in_flight[0][0].query():
            self._in_flight.popleft()

    def close(self) -> None:
        """Waits for the copies still running, then lets their host buffers go."""
        self._stream.synchronize()
        self._in_flight.clear()


def cuda_device_ready(device: str) -> Optional[str]:
    """None when `device` can be fed, else why not."""
    from .build import build_info, cuda_available

    if not build_info()["cuda"]:
        return "this build of fastfeed has no CUDA support (fastfeed.build_info()['cuda'] is False)"
    if not cuda_available():
        return "no CUDA device is usable here (fastfeed.cuda_available() is False)"
    try:
        import torch
    except ImportError:
        return "feeding a GPU needs PyTorch with CUDA: pip install torch"
    if not torch.cuda.is_available():
        return "this PyTorch has no CUDA support or sees no GPU (torch.cuda.is_available() is False)"
    index = torch.device(device).index
    if index is not None and index >= torch.cuda.device_count():
        return f"there is no CUDA device {index} (this machine has {torch.cuda.device_count()})"
    return None
