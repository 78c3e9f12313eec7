"""`device_cache=True`: a windowed source kept whole in GPU memory, batches gathered there.

The source is uploaded once (series back to back, in chunks: never a second host copy). Per
batch only the samples' start steps (int64, from the core, which keeps the order, shuffle and
rank shares) cross the bus. On a GPU the core's kernel gathers the windows of a whole block of
batches in one launch (`_core.CudaWindowGather`) on the caller's current stream; elsewhere (the
tests' CPU device) PyTorch's indexing does. Conversion and normalisation, when asked for, are
PyTorch's kernels, done as the reference does them: standardised in float64, then cast
(bfloat16 through float32). tests/test_source_cache.py checks both against the reference.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _core

# Dtypes PyTorch can index on a GPU (its unsigned types beyond uint8 have few kernels).
CACHEABLE = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64")
_CHUNK_BYTES = 64 << 20


def host_view(item: Any) -> np.ndarray:
    """An item of a SeriesSet as a NumPy array without copying (memory maps for files)."""
    if isinstance(item, np.ndarray):
        return item
    if isinstance(item, _core.NpyFile):
        return np.memmap(item.path, dtype=np.dtype(item.dtype), mode="r", offset=item.data_offset,
                         shape=tuple(item.shape))
    if isinstance(item, _core.RaggedFile):
        return np.memmap(item.values_path, dtype=np.dtype(item.dtype).newbyteorder("<"), mode="r",
                         shape=(item.num_steps, item.row_elems))
    raise TypeError(f"cannot keep {type(item).__name__} on a device")


class SourceCache:
    """Series (and their targets) concatenated in device memory; gathers windows by start."""

    def __init__(self, items: Sequence[Any], target_items: Optional[Sequence[Any]], feat: Tuple[int, ...],
                 tfeat: Tuple[int, ...], device: Any, window: int, sampling_rate: int, horizon: int,
                 x_dtype: str, y_dtype: str, x_norm: Tuple[list, list], y_norm: Tuple[list, list]) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.window, self.rate, self.horizon = window, sampling_rate, horizon
        self.x_dtype, self.y_dtype = x_dtype, y_dtype
        views = [host_view(i).reshape((-1,) + feat) for i in items]
        tviews = None if target_items is None else [host_view(i).reshape((-1,) + tfeat) for i in target_items]
        self._check_room(views, tviews)
        self.source = self._upload(views)
        self.targets = self.source if tviews is None else self._upload(tviews)
        self._x_norm = self._norm(x_norm, feat)
        self._y_norm = self._norm(y_norm, tfeat)
        self._x_steps = torch.arange(window, device=self.device) * sampling_rate
        self._y_steps = (window - 1 + torch.arange(1, horizon + 1, device=self.device)) * sampling_rate
        self._kernel = None
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            self._kernel = _core.CudaWindowGather(index)

    def _check_room(self, views: List[np.ndarray], tviews: Optional[List[np.ndarray]]) -> None:
        need = sum(v.nbytes for v in views) + (sum(v.nbytes for v in tviews) if tviews else 0)
        if self.device.type != "cuda":
            return
        free, _total = self._torch.cuda.mem_get_info(self.device)
        if need > free:
            raise ValueError(f"device_cache=True: the source needs {need:,} bytes of GPU memory, but only "
                             f"{free:,} are free on {self.device}; use device_cache=False (batches are uploaded)")

    def _upload(self, views: List[np.ndarray]) -> Any:
        torch = self._torch
        rows = sum(len(v) for v in views)
        dtype = getattr(torch, views[0].dtype.name)
        out = torch.empty((rows,) + views[0].shape[1:], dtype=dtype, device=self.device)
        at = 0
        for v in views:
            step = max(1, _CHUNK_BYTES // max(1, v[:1].nbytes))
            for a in range(0, len(v), step):
                piece = np.array(v[a:a + step])  # one chunk at a time (a writable copy), never the whole source
                out[at + a:at + a + len(piece)].copy_(torch.from_numpy(piece))
            at += len(v)
        return out

    def _norm(self, norm: Tuple[list, list], feat: Tuple[int, ...]) -> Optional[Tuple[Any, Any]]:
        mean, std = norm
        if not mean:
            return None
        t = self._torch
        return (t.tensor(mean, dtype=t.float64, device=self.device).reshape(feat),
                t.tensor(std, dtype=t.float64, device=self.device).reshape(feat))

    def _convert(self, x: Any, dtype: str, norm: Optional[Tuple[Any, Any]]) -> Any:
        torch = self._torch
        if norm is None and x.dtype == getattr(torch, dtype, None):
            return x
        if norm is not None:
            x = (x.to(torch.float64) - norm[0]) / norm[1]
        if dtype == "bfloat16":
            return x.to(torch.float32).to(torch.bfloat16)  # rounded like the reference: via float32
        return x.to(getattr(torch, dtype))

    def gather(self, starts: np.ndarray) -> Tuple[Any, Optional[Any]]:
        """(x, y) of the samples whose first input steps are `starts` (in the concatenation)."""
        if self._kernel is not None:
            x, y = self._gather_on_gpu(np.ascontiguousarray(starts, dtype=np.int64))
        else:
            x, y = self._gather_with_torch(starts)
        x = self._convert(x, self.x_dtype, self._x_norm)
        if y is not None:
            y = self._convert(y, self.y_dtype, self._y_norm)
        return x, y

    def _gather_with_torch(self, starts: np.ndarray) -> Tuple[Any, Optional[Any]]:
        s = self._torch.from_numpy(np.ascontiguousarray(starts, dtype=np.int64)).to(self.device)
        x = self.source[s[:, None] + self._x_steps]
        y = self.targets[s[:, None] + self._y_steps] if self.horizon else None
        return x, y

    def _gather_on_gpu(self, starts: np.ndarray) -> Tuple[Any, Optional[Any]]:
        torch = self._torch
        n = len(starts)
        x = torch.empty((n, self.window) + tuple(self.source.shape[1:]), dtype=self.source.dtype, device=self.device)
        parts = [self._rows(self.source, x, 0, self.window)]
        y = None
        if self.horizon:
            y = torch.empty((n, self.horizon) + tuple(self.targets.shape[1:]), dtype=self.targets.dtype,
                            device=self.device)
            parts.append(self._rows(self.targets, y, self.window * self.rate, self.horizon))
        # On the current stream: x and y were allocated for it, and the caller's work follows.
        self._kernel.gather(starts, parts, torch.cuda.current_stream(self.device).cuda_stream)
        return x, y

    def _rows(self, src: Any, out: Any, first: int, steps: int) -> tuple:
        row_bytes = src[:1].numel() * src.element_size()
        return (src.data_ptr(), out.data_ptr(), row_bytes, first, steps, self.rate)
