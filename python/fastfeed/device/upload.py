"""Moving assembled batches to a CUDA device: the Feeder's `device="cuda"` path.

The core's workers assemble batches straight into page-locked (pinned) pool buffers. Each
block goes to the device in one allocation, its arrays copied on a side stream by the core
(`_core.CudaUploader`, one call per block, the GIL released), so the copy of the next block
overlaps the caller's work on the current one. The caller's current stream waits for the
copy on the GPU, never the CPU, and the block's memory is recorded on that stream, so
PyTorch's caching allocator never hands it to anyone else while the caller may still use it.
A host buffer goes back to the pool only once its copy has finished.
"""

from __future__ import annotations

import collections
from typing import AbstractSet, Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from .._core import CudaUploader

_ALIGN = 256  # each array of a block starts 256-byte aligned in the block's device memory
_MAX_IN_FLIGHT = 4  # blocks whose copies may still run; beyond that the caller waits


class DeviceUploader:
    """Copies host arrays to one CUDA device on a stream of its own."""

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        d = torch.device(device)
        self.device = torch.device("cuda", d.index if d.index is not None else torch.cuda.current_device())
        self._stream = torch.cuda.Stream(device=self.device)
        self._copier = CudaUploader(self.device.index, self._stream.cuda_stream)
        # (ticket, host arrays) of copies that may still be running: those buffers must live.
        self._in_flight: Deque[Tuple[int, tuple]] = collections.deque()
        self._dtypes: Dict[Tuple[str, bool], Any] = {}

    def upload(
        self, fields: Dict[str, np.ndarray], bfloat16: AbstractSet[str], keep_on_host: AbstractSet[str]
    ) -> Dict[str, Any]:
        """Device tensors of the named host arrays (those named in `keep_on_host` become CPU
        tensors), ready for the caller's current stream. Fields in `bfloat16` hold its bits."""
        torch = self._torch
        layout: List[Tuple[str, int]] = []  # (field, offset in the block's device memory)
        total = 0
        for name, a in fields.items():
            if name not in keep_on_host:
                layout.append((name, total))
                total += -(-a.nbytes // _ALIGN) * _ALIGN
        current = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._stream):  # the memory belongs to the copy stream first
            block = torch.empty(total, dtype=torch.uint8, device=self.device)
        base = block.data_ptr()
        copies = [(fields[name].__array_interface__["data"][0], base + at, fields[name].nbytes) for name, at in layout]
        ticket = self._copier.upload(copies, current.cuda_stream)
        block.record_stream(current)  # not reused before the caller's stream is done with it
        self._hold(ticket, tuple(fields.values()))
        out: Dict[str, Any] = {name: torch.from_numpy(a) for name, a in fields.items() if name in keep_on_host}
        for name, at in layout:
            a = fields[name]
            out[name] = block[at : at + a.nbytes].view(self._torch_dtype(a.dtype, name in bfloat16)).view(a.shape)
        return {name: out[name] for name in fields}  # in the block's order

    def _torch_dtype(self, dtype: np.dtype, bfloat16: bool) -> Any:
        key = (dtype.str, bfloat16)
        t = self._dtypes.get(key)
        if t is None:
            t = self._torch.bfloat16 if bfloat16 else self._torch.from_numpy(np.empty(0, dtype)).dtype
            self._dtypes[key] = t
        return t

    def _hold(self, ticket: int, arrays: tuple) -> None:
        """Keeps `arrays` until their copy is done; lets go of those whose copies finished. A
        caller far ahead of the bus waits here, so the host buffers held stay few."""
        self._in_flight.append((ticket, arrays))
        if len(self._in_flight) > _MAX_IN_FLIGHT:
            self._copier.wait(self._in_flight[0][0])
        done = self._copier.finished()
        while self._in_flight and self._in_flight[0][0] <= done:
            self._in_flight.popleft()

    def close(self) -> None:
        """Waits for the copies still running, then lets their host buffers go."""
        self._copier.synchronize()
        self._in_flight.clear()


def cuda_device_ready(device: str) -> Optional[str]:
    """None when `device` can be fed, else why not."""
    from ..build import build_info, cuda_available

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
