"""`Stream`: windows over a series that arrives in chunks while the consumer trains.

Producers `push()` new steps of one series, in chunks of any size, and `close()` at the end;
iterating yields batches as soon as their windows are complete. Unshuffled, a Stream yields
exactly the windows (and batches) that a Feeder over the concatenated steps yields. Memory is
bounded by `capacity` steps: `push` blocks while the buffer is full, or, with
`on_full="drop_oldest"`, makes room by dropping the oldest steps (the windows that needed them
are lost). `stats().dropped_steps` counts the steps that lost windows would have read and no
window handed out did: the data the consumer missed, the same however the pushes were cut
(steps between windows, which a stride skips anyway, do not count).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Deque, Iterator, Optional, Tuple

import numpy as np

from ._core import WindowSpec
from .arguments import check_bool, check_int
from .batch import Batch
from .dtypes import dtype_name
from .run.stats import FeedStats, StatsRecorder

_POLL_S = 0.05  # waits are sliced so Ctrl-C reaches a blocked thread


class StreamClosed(RuntimeError):
    """push() on a Stream that was closed."""


class Stream:
    """Batches of windows over a series whose steps producers push while the consumer trains.

    Producers `push()` new steps, in chunks of any size, and `close()` at the end; iterating
    yields a [`Batch`][fastfeed.Batch] as soon as its windows are complete, and ends after the
    last complete windows once the stream is closed. A Stream yields exactly the windows (and
    batches) that a Feeder over the concatenated steps yields. At most `capacity` steps are
    buffered: `push()` blocks while the buffer is full, or, with ``on_full="drop_oldest"``,
    makes room by dropping the oldest steps; the windows that needed them are lost, and
    ``stats().dropped_steps`` counts the steps only those windows would have read (the same
    however the pushes were cut).

    Args:
        window: steps per sample.
        horizon: target steps after each window (0: no targets).
        batch_size: windows per batch.
        capacity: steps buffered at most. Default: four times the steps one batch of windows
            spans, and at least 65,536; it must hold at least one batch's span.
        sampling_rate: take every ``sampling_rate``-th step inside a window.
        stride: distance between consecutive window starts.
        drop_last: leave out the short last batch when the stream ends.
        on_full: ``"block"`` or ``"drop_oldest"``: what `push()` does while the buffer is full.
        dtype: output dtype (NumPy or torch dtype, or a name such as ``"bfloat16"``).
        output: ``"torch"`` (the default when torch imports) or ``"numpy"``.

    Raises:
        ValueError: an argument is out of range, or `capacity` cannot hold one batch.
    """

    def __init__(
        self,
        *,
        window: int,
        horizon: int = 0,
        batch_size: int = 1,
        capacity: Optional[int] = None,
        sampling_rate: int = 1,
        stride: int = 1,
        drop_last: bool = False,
        on_full: str = "block",
        dtype: Any = None,
        output: Optional[str] = None,
    ) -> None:
        self.window = check_int("window", window, 1)
        self.horizon = check_int("horizon", horizon, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.sampling_rate = check_int("sampling_rate", sampling_rate, 1)
        self.stride = check_int("stride", stride, 1)
        self.drop_last = check_bool("drop_last", drop_last)
        self.span = WindowSpec(window=self.window, sampling_rate=self.sampling_rate, horizon=self.horizon).span
        # The steps a full batch of windows needs at once, plus room for the next chunk.
        need = self.span + (self.batch_size - 1) * self.stride
        self.capacity = max(4 * need, 1 << 16) if capacity is None else check_int("capacity", capacity, 1)
        if self.capacity < need:
            raise ValueError(
                f"capacity={self.capacity} steps cannot hold one batch: {self.batch_size} windows "
                f"spanning {self.span} steps every {self.stride} need {need} steps"
            )
        if on_full not in ("block", "drop_oldest"):
            raise ValueError(f"on_full must be 'block' or 'drop_oldest', got {on_full!r}")
        self.on_full = on_full
        self._out_dtype = None if dtype is None else dtype_name(dtype)
        if output is None:
            try:
                import torch  # noqa: F401

                output = "torch"
            except ImportError:
                output = "numpy"
        if output not in ("torch", "numpy"):
            raise ValueError(f"output must be 'torch' or 'numpy', got {output!r}")
        self.output = output

        self._cv = threading.Condition()
        self._chunks: Deque[np.ndarray] = collections.deque()
        self._base = 0  # absolute step number of the first buffered step
        self._buffered = 0  # steps in _chunks
        self._next_start = 0  # absolute start of the next window to yield
        self._closed = False
        self._feat: Optional[Tuple[Tuple[int, ...], np.dtype]] = None
        self._dropped = 0
        self._dropping = False  # set by the first drop: only then can a step go unread
        self._delivered: Deque[Tuple[int, int]] = collections.deque()  # (first start, windows) per batch
        self._stats = StatsRecorder()

    # ----- producers ---------------------------------------------------------------------

    def push(self, steps: Any, timeout: Optional[float] = None) -> None:
        """Appends steps (shape (n, *feat)) to the series. Blocks while the buffer is full
        (at most `timeout` seconds, then TimeoutError) unless on_full="drop_oldest"."""
        a = np.asarray(steps)
        self._check_chunk(a)
        deadline = None if timeout is None else time.monotonic() + timeout
        for first in range(0, len(a), self.capacity):  # a chunk larger than the buffer goes in pieces
            self._push_piece(a[first : first + self.capacity], deadline, first, len(a))

    def _check_chunk(self, a: np.ndarray) -> None:
        if a.dtype == object or a.ndim < 1:
            raise ValueError(f"push() takes an array of steps, shape (n, *feat), got {a.dtype} of shape {a.shape}")
        with self._cv:
            if self._closed:
                raise StreamClosed("push() on a closed Stream")
            if self._feat is None:
                self._feat = (a.shape[1:], a.dtype)
            elif (a.shape[1:], a.dtype) != self._feat:
                raise ValueError(
                    f"push(): steps of shape {a.shape[1:]} and dtype {a.dtype} do not match the stream's "
                    f"{self._feat[0]} and {self._feat[1]}"
                )

    def _push_piece(self, piece: np.ndarray, deadline: Optional[float], done: int, total: int) -> None:
        piece = np.array(piece, copy=True)  # the producer may reuse its buffer
        with self._cv:
            while len(piece):
                if self._closed:
                    raise StreamClosed("push() on a closed Stream")
                self._release(self._next_start)  # steps a stride skips over are never needed
                room = self.capacity - self._buffered
                if room == 0 and self.on_full == "drop_oldest":
                    self._drop(min(len(piece), self._buffered))
                    room = self.capacity - self._buffered
                if room > 0:
                    # As much as fits: the consumer may need these steps to free the rest.
                    self._chunks.append(piece[:room])
                    self._buffered += min(room, len(piece))
                    done += min(room, len(piece))
                    piece = piece[room:]
                    self._cv.notify_all()
                    continue
                wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError(
                        f"push() waited for room in a full Stream (capacity {self.capacity} steps); "
                        f"the first {done} of the {total} steps went in"
                    )
                self._cv.wait(wait)

    def _pop_front(self, steps: int) -> int:
        """Removes up to `steps` of the oldest buffered steps; returns how many went."""
        if self._dropping and steps > 0:
            end = self._base + min(steps, self._buffered)
            self._dropped += self._missed(self._base, end, end)
        gone = 0
        while gone < steps and self._chunks:
            head = self._chunks[0]
            cut = min(steps - gone, len(head))
            if cut == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[cut:]
            self._base += cut
            self._buffered -= cut
            gone += cut
        return gone

    def _drop(self, steps: int) -> None:
        """Drops the oldest `steps` buffered steps; windows that needed them are skipped."""
        self._dropping = True
        self._pop_front(steps)
        if self._next_start < self._base:  # the next window lost its first steps: move on by strides
            self._next_start += -(-(self._base - self._next_start) // self.stride) * self.stride

    def _missed(self, lo: int, hi: int, before: int) -> int:
        """How many of the steps lo..hi-1 a window starting before step `before` reads but no
        window handed out did. Steps are counted as they leave the buffer, when every window
        that reads them was handed out or lost (those start before `before`), so each is
        counted once whatever the chunks were."""
        offsets = np.arange(self.window + self.horizon) * self.sampling_rate  # steps a window reads
        missed = 0
        rows = max(1, (1 << 20) // len(offsets))  # steps at a time: bounds the (steps x offsets) arrays
        for first_step in range(lo, hi, rows):
            t = np.arange(first_step, min(first_step + rows, hi))
            starts = t[:, None] - offsets[None, :]  # the window starts that would read each step
            needed = ((starts >= 0) & (starts < before) & (starts % self.stride == 0)).any(axis=1)
            read = np.zeros(len(t), bool)
            for first, count in self._delivered:
                k = starts - first
                read |= ((k >= 0) & (k % self.stride == 0) & (k // self.stride < count)).any(axis=1)
            missed += int((needed & ~read).sum())
        return missed

    def close(self) -> None:
        """No more steps: the consumer gets the remaining complete windows, then stops."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    # ----- consumer ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        self._stats.start()
        try:
            while True:
                got = self._take_batch()
                if got is None:
                    return
                self._stats.stop()
                yield got
                self._stats.start()
        finally:
            self._stats.stop()

    def _ready_windows(self) -> int:
        end = self._base + self._buffered
        if end - self.span < self._next_start:
            return 0
        return (end - self.span - self._next_start) // self.stride + 1

    def _take_batch(self) -> Optional[Batch]:
        t0 = time.perf_counter()
        with self._cv:
            while self._ready_windows() < self.batch_size and not self._closed:
                self._cv.wait(_POLL_S)
            n = min(self._ready_windows(), self.batch_size)
            if n == 0 or (n < self.batch_size and self.drop_last):
                self._settle_missed()
                return None
            steps = self._window_steps(n)
            first = self._next_start
            self._remember_delivered(first, n)
            self._next_start += n * self.stride
            self._release(self._next_start)
            self._cv.notify_all()
        waited = time.perf_counter() - t0
        x, y = self._cut(steps, first, n)
        self._stats.block(waited, 0.0, 1, 0)
        self._stats.batch(n, x.nbytes + (y.nbytes if y is not None else 0))
        return tuple.__new__(Batch, (self._as_output(x), self._as_output(y)))

    def _remember_delivered(self, first: int, n: int) -> None:
        """Notes a batch's windows, for _missed: a step they read may leave the buffer only
        later, dropped. Batches whose windows all end before the buffer's first step are forgotten."""
        self._delivered.append((first, n))
        reach = (self.window + self.horizon - 1) * self.sampling_rate
        while self._delivered[0][0] + (self._delivered[0][1] - 1) * self.stride + reach < self._base:
            self._delivered.popleft()

    def _settle_missed(self) -> None:
        """At the end, counts the steps still buffered that only lost windows read (a lost
        window's last steps can lie past the next window's start), and empties the buffer."""
        if self._dropping:
            self._dropped += self._missed(self._base, self._base + self._buffered, self._next_start)
        self._dropping = False  # the count is final: what leaves now was never needed
        self._pop_front(self._buffered)

    def _window_steps(self, n: int) -> np.ndarray:
        """The buffered steps the next n windows read, as one array starting at _next_start."""
        start = self._next_start - self._base
        stop = start + (n - 1) * self.stride + self.span
        parts, pos = [], 0
        for chunk in self._chunks:
            lo, hi = max(start - pos, 0), min(stop - pos, len(chunk))
            if lo < hi:
                parts.append(chunk[lo:hi])
            pos += len(chunk)
            if pos >= stop:
                break
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _release(self, keep_from: int) -> None:
        """Frees the steps before absolute step `keep_from`: no later window reads them."""
        self._pop_front(keep_from - self._base)

    def _cut(self, steps: np.ndarray, first: int, n: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        r = self.sampling_rate
        starts = np.arange(n) * self.stride
        x = steps[starts[:, None] + np.arange(self.window) * r]
        y = None
        if self.horizon:
            y = steps[starts[:, None] + (self.window - 1 + np.arange(1, self.horizon + 1)) * r]
        if self._out_dtype is not None and self._out_dtype != "bfloat16":
            x = x.astype(self._out_dtype)
            y = None if y is None else y.astype(self._out_dtype)
        return x, y

    def _as_output(self, a: Optional[np.ndarray]) -> Any:
        if a is None or self.output == "numpy":
            return a
        import torch

        t = torch.from_numpy(a)
        return t.to(torch.bfloat16) if self._out_dtype == "bfloat16" else t

    # ----- observing ---------------------------------------------------------------------

    def stats(self) -> FeedStats:
        """Batches, samples, waits so far; `dropped_steps` counts what on_full="drop_oldest" dropped."""
        return self._stats.snapshot(dropped_steps=self._dropped)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
