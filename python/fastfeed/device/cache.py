"""`device_cache=True`: a source kept whole in GPU memory, batches gathered there.

The source is uploaded once (series or sequences back to back, in chunks: never a second host
copy). Per batch only indices cross the bus, from the core, which keeps the order, shuffle,
buckets, packing and rank shares: the samples' start steps for windows, and for whole
sequences the pieces of each row (row, col, sequence, first step, steps, segment). On a GPU
the core's kernels gather them (`_core.CudaGather`) on the caller's current stream, a whole
block of window batches in one launch; elsewhere (the tests' CPU device) PyTorch's indexing
does. Conversion and normalisation, when asked for, are
PyTorch's kernels, done as the reference does them: standardised in float64, then cast
(bfloat16 through float32). tests/test_source_cache.py checks both against the reference.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._core import CudaGather, NpyFile, Ragged, RaggedFile

# Dtypes PyTorch can index on a GPU (its unsigned types beyond uint8 have few kernels).
CACHEABLE = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64")
_CHUNK_BYTES = 64 << 20


def host_view(item: Any) -> np.ndarray:
    """An item of a SeriesSet as a NumPy array without copying (memory maps for files)."""
    if isinstance(item, np.ndarray):
        return item
    if isinstance(item, NpyFile):
        return np.memmap(
            item.path, dtype=np.dtype(item.dtype), mode="r", offset=item.data_offset, shape=tuple(item.shape)
        )
    if isinstance(item, RaggedFile):
        return np.memmap(
            item.values_path,
            dtype=np.dtype(item.dtype).newbyteorder("<"),
            mode="r",
            shape=(item.num_steps, item.row_elems),
        )
    raise TypeError(f"cannot keep {type(item).__name__} on a device")


def host_views(item: Any) -> List[np.ndarray]:
    """An item of a SeriesSet as NumPy arrays (views, never copies) whose rows, one after the
    other, are the rows of the item's series in order: one array, or for a Ragged (Arrow,
    Hugging Face, Megatron sources) a slice of its values per run of adjacent sequences."""
    if not isinstance(item, Ragged):
        return [host_view(item)]
    values = [host_view(v) for v in item.values]
    chunk, begin, end = item.chunk, item.begin, item.end
    cuts = np.flatnonzero((chunk[1:] != chunk[:-1]) | (begin[1:] != end[:-1])) + 1
    firsts = np.concatenate(([0], cuts)).tolist()
    lasts = (np.concatenate((cuts, [len(chunk)])) - 1).tolist()
    return [values[chunk[a]][begin[a] : end[b]] for a, b in zip(firsts, lasts)]


def _views(items: Sequence[Any], feat: Tuple[int, ...]) -> List[np.ndarray]:
    """Every item's host views, shaped ``(rows, *feat)``."""
    return [v.reshape((-1,) + feat) for i in items for v in host_views(i)]


def check_cacheable(dtypes: Sequence[Tuple[str, Optional[str]]]) -> None:
    """Refuses data or outputs (`what`, dtype) PyTorch cannot index on a GPU; outputs may be bfloat16."""
    for what, dt in dtypes:
        if dt and dt not in CACHEABLE and not (what.endswith("output") and dt == "bfloat16"):
            raise ValueError(
                f"device_cache=True: the {what} dtype {dt} cannot be gathered on a GPU "
                f"(supported: {', '.join(CACHEABLE)}, and bfloat16 for outputs)"
            )


class _Resident:
    """What both caches share: the upload, the room check and the conversions."""

    def __init__(self, device: Any) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        # The core's gather kernels (CudaGather), used only where the device is a GPU.
        self._kernel: Any = None
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            self._kernel = CudaGather(index)

    def _stream(self) -> int:
        return self._torch.cuda.current_stream(self.device).cuda_stream

    def _check_room(self, views: List[np.ndarray], tviews: Optional[List[np.ndarray]]) -> None:
        need = sum(v.nbytes for v in views) + (sum(v.nbytes for v in tviews) if tviews else 0)
        if self.device.type != "cuda":
            return
        free, _total = self._torch.cuda.mem_get_info(self.device)
        if need > free:
            raise ValueError(
                f"device_cache=True: the source needs {need:,} bytes of GPU memory, but only "
                f"{free:,} are free on {self.device}; use device_cache=False (batches are uploaded)"
            )

    def _upload(self, views: List[np.ndarray]) -> Any:
        torch = self._torch
        rows = sum(len(v) for v in views)
        dtype = getattr(torch, views[0].dtype.name)
        out = torch.empty((rows,) + views[0].shape[1:], dtype=dtype, device=self.device)
        at = 0
        pending: List[np.ndarray] = []  # small views (a shuffled dataset's rows) gathered into one copy
        pending_bytes = 0
        for v in views:
            step = max(1, _CHUNK_BYTES // max(1, v[:1].nbytes))
            for a in range(0, len(v), step):
                pending.append(v[a : a + step])
                pending_bytes += pending[-1].nbytes
                if pending_bytes >= _CHUNK_BYTES:
                    at = self._copy_rows(out, at, pending)
                    pending, pending_bytes = [], 0
        self._copy_rows(out, at, pending)
        return out

    def _copy_rows(self, out: Any, at: int, parts: List[np.ndarray]) -> int:
        """Copies `parts` into the rows of `out` from `at` on through one writable host chunk
        (never the whole source); returns the row after them."""
        if not parts:
            return at
        piece = np.concatenate(parts)
        out[at : at + len(piece)].copy_(self._torch.from_numpy(piece))
        return at + len(piece)

    def _norm(self, norm: Tuple[list, list], feat: Tuple[int, ...]) -> Optional[Tuple[Any, Any]]:
        mean, std = norm
        if not mean:
            return None
        t = self._torch
        return (
            t.tensor(mean, dtype=t.float64, device=self.device).reshape(feat),
            t.tensor(std, dtype=t.float64, device=self.device).reshape(feat),
        )

    def _convert(self, x: Any, dtype: str, norm: Optional[Tuple[Any, Any]]) -> Any:
        torch = self._torch
        if not self._needs_conversion(x, dtype, norm):
            return x
        if norm is not None:
            x = (x.to(torch.float64) - norm[0]) / norm[1]
        if dtype == "bfloat16":
            return x.to(torch.float32).to(torch.bfloat16)  # rounded like the reference: via float32
        return x.to(getattr(torch, dtype))

    def _needs_conversion(self, src: Any, dtype: str, norm: Optional[Tuple[Any, Any]]) -> bool:
        return norm is not None or src.dtype != getattr(self._torch, dtype)

    def _row_bytes(self, src: Any) -> int:
        """Bytes in one step of `src`."""
        return src[:1].numel() * src.element_size()


class SourceCache(_Resident):
    """Series (and their targets) concatenated in device memory; gathers windows by start."""

    def __init__(
        self,
        items: Sequence[Any],
        target_items: Optional[Sequence[Any]],
        feat: Tuple[int, ...],
        tfeat: Tuple[int, ...],
        device: Any,
        window: int,
        sampling_rate: int,
        horizon: int,
        x_dtype: str,
        y_dtype: str,
        x_norm: Tuple[list, list],
        y_norm: Tuple[list, list],
    ) -> None:
        super().__init__(device)
        torch = self._torch
        self.window, self.rate, self.horizon = window, sampling_rate, horizon
        self.x_dtype, self.y_dtype = x_dtype, y_dtype
        views = _views(items, feat)
        tviews = None if target_items is None else _views(target_items, tfeat)
        self._check_room(views, tviews)
        self.source = self._upload(views)
        self.targets = self.source if tviews is None else self._upload(tviews)
        self._source_row, self._target_row = self._row_bytes(self.source), self._row_bytes(self.targets)
        self._x_norm = self._norm(x_norm, feat)
        self._y_norm = self._norm(y_norm, tfeat)
        self._x_steps = torch.arange(window, device=self.device) * sampling_rate
        self._y_steps = (window - 1 + torch.arange(1, horizon + 1, device=self.device)) * sampling_rate

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
        parts = [self._part(self.source, self._source_row, x, 0, self.window)]
        y = None
        if self.horizon:
            y = torch.empty(
                (n, self.horizon) + tuple(self.targets.shape[1:]), dtype=self.targets.dtype, device=self.device
            )
            parts.append(self._part(self.targets, self._target_row, y, self.window * self.rate, self.horizon))
        # On the current stream: x and y were allocated for it, and the caller's work follows.
        self._kernel.gather_windows(starts, parts, self._stream())
        return x, y

    def _part(self, src: Any, row_bytes: int, out: Any, first: int, steps: int) -> tuple:
        return (src.data_ptr(), out.data_ptr(), row_bytes, first, steps, self.rate)


class SequenceCache(_Resident):
    """Whole sequences (and step targets) back to back in device memory; builds padded or
    packed batches there from the pieces the core lays out."""

    def __init__(
        self,
        items: Sequence[Any],
        step_items: Optional[Sequence[Any]],
        lengths: Sequence[int],
        feat: Tuple[int, ...],
        tfeat: Tuple[int, ...],
        device: Any,
        x_dtype: str,
        y_dtype: str,
        x_norm: Tuple[list, list],
        pad_value: float,
        pack: bool,
        max_len: int,
        pad_multiple: int,
    ) -> None:
        super().__init__(device)
        torch = self._torch
        views = _views(items, feat)
        tviews = None if step_items is None else _views(step_items, tfeat)
        self._check_room(views, tviews)
        self.source = self._upload(views)
        self.targets: Any = None if tviews is None else self._upload(tviews)
        self._source_row = self._row_bytes(self.source)
        self._target_row = 0 if self.targets is None else self._row_bytes(self.targets)
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(np.asarray(lengths, dtype=np.int64)[:-1], out=starts[1:])
        self._seq_offsets = torch.from_numpy(starts).to(self.device)  # where each sequence starts
        self.x_dtype, self.y_dtype = x_dtype, y_dtype
        self._x_norm = self._norm(x_norm, feat)
        self.pack, self.max_len, self.pad_multiple = pack, max_len, pad_multiple
        self._pad_x = self._pad_scalar(pad_value, x_dtype)
        self._pad_y = self._pad_scalar(pad_value, y_dtype)

    def _pad_scalar(self, value: float, dtype: str) -> Any:
        """pad_value as `dtype` holds it (rounded or truncated as NumPy and the core do)."""
        t = self._torch.tensor([value], dtype=self._torch.float64)
        if dtype == "bfloat16":
            return t.to(self._torch.float32).to(self._torch.bfloat16).item()
        return t.to(getattr(self._torch, dtype)).item()

    def _length(self, lengths: np.ndarray) -> int:
        if self.pack or self.max_len:
            return self.max_len
        longest = int(lengths.max()) if len(lengths) else 0
        return -(-longest // self.pad_multiple) * self.pad_multiple

    def batch(self, fields: Dict[str, Any]) -> Dict[str, Any]:
        """The core's fields for one batch of pieces, as the fields a host-built batch has: x, y,
        mask, segment and position ids on the device; lengths (NumPy) on the host."""
        torch = self._torch
        pieces, lengths = fields["pieces"], fields["lengths"]
        rows, L = len(lengths), self._length(lengths)
        mask = torch.zeros((rows, L), dtype=torch.bool, device=self.device)
        ids = None
        if self.pack:
            ids = (
                torch.zeros((rows, L), dtype=torch.int32, device=self.device),
                torch.zeros((rows, L), dtype=torch.int64, device=self.device),
            )
        x, x_direct = self._padded(self.source, rows, L, self.x_dtype, self._x_norm, self._pad_x)
        y, y_direct = None, True
        if self.targets is not None:
            y, y_direct = self._padded(self.targets, rows, L, self.y_dtype, None, self._pad_y)
        if self._kernel is not None:
            self._gather_on_gpu(pieces, L, x, y, mask, ids)
        else:
            self._gather_with_torch(pieces, x, y, mask, ids)
        if not x_direct:
            x = self._finish(x, mask, self.x_dtype, self._x_norm, self._pad_x)
        if y is not None and not y_direct:
            y = self._finish(y, mask, self.y_dtype, None, self._pad_y)
        if self.targets is None and "y" in fields:  # labels: one row per sequence, from the host
            y = self._host_to_device(fields["y"], self.y_dtype == "bfloat16")
        out = {"x": x} if y is None else {"x": x, "y": y}
        out.update(mask=mask, lengths=lengths)
        if ids is not None:
            out["segment_ids"], out["position_ids"] = ids
            out["cu_seqlens"] = self._host_to_device(fields["cu_seqlens"], False)
        return out

    def _padded(self, src: Any, rows: int, L: int, dtype: str, norm: Any, pad: Any) -> Tuple[Any, bool]:
        """The output to gather into: filled with the pad value when no conversion follows
        (direct), else uninitialised steps of the source's dtype."""
        torch = self._torch
        shape = (rows, L) + tuple(src.shape[1:])
        if self._needs_conversion(src, dtype, norm):
            return torch.empty(shape, dtype=src.dtype, device=self.device), False
        return torch.full(shape, pad, dtype=src.dtype, device=self.device), True

    def _finish(self, a: Any, mask: Any, dtype: str, norm: Any, pad: Any) -> Any:
        """Converts gathered steps, then puts the pad value where the mask is False."""
        a = self._convert(a, dtype, norm)
        return a.masked_fill_(~mask.view(mask.shape + (1,) * (a.dim() - 2)), pad)

    def _host_to_device(self, a: np.ndarray, bfloat16: bool) -> Any:
        t = self._torch.from_numpy(a)
        return (t.view(self._torch.bfloat16) if bfloat16 else t).to(self.device)

    def _gather_on_gpu(
        self, pieces: np.ndarray, L: int, x: Any, y: Optional[Any], mask: Any, ids: Optional[Tuple[Any, Any]]
    ) -> None:
        seg, pos = (ids[0].data_ptr(), ids[1].data_ptr()) if ids is not None else (0, 0)
        parts = [(self.source.data_ptr(), x.data_ptr(), self._source_row, L, mask.data_ptr(), seg, pos)]
        if y is not None:
            parts.append((self.targets.data_ptr(), y.data_ptr(), self._target_row, L, 0, 0, 0))
        self._kernel.gather_pieces(pieces, self._seq_offsets.data_ptr(), parts, self._stream())

    def _gather_with_torch(
        self, pieces: np.ndarray, x: Any, y: Optional[Any], mask: Any, ids: Optional[Tuple[Any, Any]]
    ) -> None:
        torch = self._torch
        for row, col, seq, first, count, segment in pieces.tolist():
            at = int(self._seq_offsets[seq]) + first
            x[row, col : col + count] = self.source[at : at + count]
            if y is not None:
                y[row, col : col + count] = self.targets[at : at + count]
            mask[row, col : col + count] = True
            if ids is not None:
                ids[0][row, col : col + count] = segment
                ids[1][row, col : col + count] = torch.arange(count)
