"""The benchmark workloads, shared by ``bench/run.py`` (one Markdown table) and
``bench/test_bench.py`` (pytest-benchmark).

Every workload is built by one function that returns plain callables or iterators, so that
both front ends time exactly the same code. Numbers are medians of repeated measurements:
the machines these run on are noisy, and a median ignores the odd descheduled repetition.

W1   the seed's case: a 1,000-step sine, window 10, next-step target, batch 1, one epoch.
W2   a 4,000,000 x 32 float32 .npy file (512 MB), window 256, shuffled batches of 256.
Loop a training loop that computes ~3 ms per batch, fed by the Feeder or assembling in-line.
Sparse  an 8 GiB sparse .npy: Feeder start-up time and resident memory.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

import fastfeed
from fastfeed import Feeder
from fastfeed.reference import KerasTimeseriesGenerator
from fastfeed.spec import cpu_count

# ----- timing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Seconds per repetition (or per chunk of a stream); `work` is what one repetition did
    (batches, bytes...) so that rates can be derived from the median."""

    seconds: Tuple[float, ...]
    work: float = 1.0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def n(self) -> int:
        return len(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repetitions were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median > 0 else 0.0

    def rate(self) -> float:
        """`work` per second at the median repetition."""
        return self.work / self.median


Probe = Callable[[], Any]  # one repetition of one case; returns what the repetition measured


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """A probe that runs `fn` once and returns the seconds it took."""

    def probe() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return probe


def interleave(probes: Dict[str, Probe], rounds: int, warmup: int = 1, collector: bool = False) -> Dict[str, List[Any]]:
    """Runs every probe once per round, round after round, and returns each probe's results.

    Interleaving is for shared, noisy machines: when load comes and goes, every case sees
    the same share of it, so ratios between cases stay fair even when absolute numbers move.
    Like timeit, the garbage collector is off during the rounds unless `collector`: a
    collection would land on a random repetition (it still runs between rounds). Probes long
    enough to see many collections measure what the collector costs with `collector=True`."""
    for probe in probes.values():
        for _ in range(warmup):
            probe()
    results: Dict[str, List[Any]] = {name: [] for name in probes}
    was_enabled = gc.isenabled()
    try:
        for _ in range(rounds):
            gc.collect()
            if not collector:
                gc.disable()
            for name, probe in probes.items():
                results[name].append(probe())
            gc.enable()
    finally:
        if was_enabled:
            gc.enable()
        else:
            gc.disable()
    return results


def measure(fn: Callable[[], Any], *, repeat: int, warmup: int = 1, work: float = 1.0) -> Timing:
    """`repeat` timed runs of `fn` (after `warmup` untimed ones), as a Timing."""
    return Timing(tuple(interleave({"fn": timed(fn)}, repeat, warmup)["fn"]), work)


def stream_probe(batches: Iterator[Any], chunk: int, drain: int, settle_s: float = 0.0) -> Callable[[], float]:
    """A probe that times `chunk` consecutive batches of a running stream.

    The `drain` batches before the timed ones are not timed: while other cases ran, a
    prefetching producer (the Feeder's threads, DataLoader workers) filled its queue, and
    timing those ready batches would flatter it. `drain` must cover the producer's queue.
    After the timed batches the probe sleeps `settle_s`: a prefetching producer goes on
    filling its queue in the background, and that work must not land on the next case."""

    def probe() -> float:
        for _ in range(drain):
            next(batches)
        t0 = time.perf_counter()
        for _ in range(chunk):
            next(batches)
        elapsed = time.perf_counter() - t0
        if settle_s:
            time.sleep(settle_s)
        return elapsed

    return probe


# ----- machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def machine_info() -> Dict[str, str]:
    """What a reader needs to compare two tables: hardware and versions."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} ({usable} usable)",
        "RAM": f"{_mem_total_gib():.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "fastfeed": fastfeed.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
    }


def nbytes(a: Any) -> int:
    """Bytes of a NumPy array or torch tensor (None counts 0)."""
    if a is None:
        return 0
    return int(a.nbytes) if hasattr(a, "nbytes") else int(a.element_size() * a.nelement())


# ----- shared baselines ----------------------------------------------------------------------


class WindowDataset:
    """The usual per-sample PyTorch Dataset: sample t is (x[t:t+window], x[t+window:t+window+horizon]),
    each copied into its own tensor (a memmap is read-only, and collate needs owned tensors).

    A path is opened lazily, in whichever process reads it, so DataLoader workers map the
    file themselves instead of receiving a pickled copy of it."""

    def __init__(self, source: Union[np.ndarray, str], window: int, horizon: int) -> None:
        self._source = source
        self._array: Optional[np.ndarray] = source if isinstance(source, np.ndarray) else None
        self.window = window
        self.horizon = horizon
        self._len = self._rows() - window - horizon + 1

    def _rows(self) -> int:
        if self._array is not None:
            return len(self._array)
        return int(np.load(self._source, mmap_mode="r").shape[0])

    def _data(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self._source, mmap_mode="r")
        return self._array

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        if not isinstance(self._source, np.ndarray):
            state["_array"] = None
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, t: int) -> Tuple[Any, Any]:
        import torch

        a = self._data()
        w, h = self.window, self.horizon
        return torch.from_numpy(a[t : t + w].copy()), torch.from_numpy(a[t + w : t + w + h].copy())


def _torch_loader(dataset: WindowDataset, batch_size: int, shuffle: bool, num_workers: int, seed: int = 0) -> Any:
    import torch
    from torch.utils.data import DataLoader

    # A Dataset subclass is not required: DataLoader only needs __len__ and __getitem__.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )  # type: ignore[arg-type]


def _forever(make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Restarts an epoch iterator when it ends, so that a stream never runs dry."""
    while True:
        yield from make()


# ----- W1: the seed's case -------------------------------------------------------------------

W1_WINDOW = 10
W1_HORIZON = 1


def w1_series() -> np.ndarray:
    return np.sin(np.arange(0, 100, 0.1))


def _count(it: Any) -> int:
    n = 0
    for _x, _y in it:
        n += 1
    return n


def w1_cases() -> Dict[str, Callable[[], int]]:
    """Name -> a callable that runs one epoch (990 batches of one sample) and returns the
    number of batches. Everything reusable across epochs (the Feeder, the generator, the
    DataLoader) is built here, once, as a training loop would."""
    s = w1_series()
    w, h = W1_WINDOW, W1_HORIZON
    cases: Dict[str, Callable[[], int]] = {}

    for output in ("numpy", "torch"):
        f = Feeder(s, window=w, horizon=h, batch_size=1, shuffle=False, output=output)
        cases[f"Feeder (output={output})"] = lambda f=f: _count(f)

    def feeder_new() -> int:
        with Feeder(s, window=w, horizon=h, batch_size=1, shuffle=False, output="numpy") as f:
            return _count(f)

    cases["Feeder (output=numpy), incl. construction"] = feeder_new

    compat = compat_generator(s, w)
    if compat is not None:
        cases["compat.TimeseriesGenerator"] = lambda: _count(compat[i] for i in range(len(compat)))

    keras = keras_generator(s, w)
    if keras is not None:
        cases["Keras TimeseriesGenerator (tf_keras)"] = lambda: _count(keras[i] for i in range(len(keras)))

    ref = KerasTimeseriesGenerator(s, s, length=w, batch_size=1)
    cases["Keras algorithm (re-implemented)"] = lambda: _count(ref[i] for i in range(len(ref)))

    loader = _torch_loader(WindowDataset(s, w, h), batch_size=1, shuffle=False, num_workers=0)
    cases["torch DataLoader (per-sample Dataset, 0 workers)"] = lambda: _count(loader)

    n = len(s) - w - h + 1
    # The cheapest possible loop: slices are views, nothing is copied (a batch aliases the series).
    cases["NumPy loop (slices, views)"] = lambda: _count(
        (s[None, t : t + w], s[None, t + w : t + w + h]) for t in range(n)
    )
    return cases


W1_BATCHES = 990


def measure_w1(rounds: int) -> Dict[str, Timing]:
    """Seconds per epoch of every W1 case, in interleaved rounds (Timing.work is batches)."""
    cases = w1_cases()
    for name, fn in cases.items():
        n = fn()
        if n != W1_BATCHES:
            raise AssertionError(f"{name}: an epoch has {n} batches, expected {W1_BATCHES}")
    raw = interleave({name: timed(fn) for name, fn in cases.items()}, rounds, warmup=2)
    return {name: Timing(tuple(raw[name]), W1_BATCHES) for name in cases}


def measure_w1_sustained(names: Tuple[str, ...], epochs: int, rounds: int) -> Dict[str, Timing]:
    """Mean seconds per epoch of some W1 cases over `epochs` epochs in a row, for comparison
    with `measure_w1`, where every epoch follows other cases' and a gc.collect() (caches cold,
    as after a training step). The garbage collector stays on, as in a training loop: every
    object a case leaves alive when a collection runs brings the next full collection nearer,
    and one costs tens of milliseconds once torch is imported; a single epoch's median never
    shows that, the mean over many does."""
    cases = w1_cases()

    def many(fn: Callable[[], int]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(epochs):
                fn()

        return run

    raw = interleave({name: timed(many(cases[name])) for name in names}, rounds, warmup=1, collector=True)
    return {name: Timing(tuple(t / epochs for t in raw[name]), W1_BATCHES) for name in names}


def compat_generator(s: np.ndarray, length: int) -> Optional[Any]:
    """fastfeed.compat.TimeseriesGenerator over (s, s) with batch 1, or None if it is not there."""
    cls = getattr(fastfeed.compat, "TimeseriesGenerator", None)
    if cls is None:
        return None
    return cls(s, s, length=length, batch_size=1)


def keras_generator(s: np.ndarray, length: int) -> Optional[Any]:
    """tf_keras' TimeseriesGenerator over (s, s) with batch 1, or None if tf_keras is absent."""
    try:
        from tf_keras.preprocessing.sequence import TimeseriesGenerator  # type: ignore
    except Exception:  # ImportError, or a broken TensorFlow install
        return None
    return TimeseriesGenerator(s, s, length=length, batch_size=1)


# ----- W2: a 512 MB memory-mapped file -------------------------------------------------------

W2_ROWS = 4_000_000
W2_FEATS = 32
W2_WINDOW = 256
W2_HORIZON = 1
W2_BATCH = 256
W2_ITEM = 4  # float32
W2_BATCH_BYTES = W2_BATCH * (W2_WINDOW + W2_HORIZON) * W2_FEATS * W2_ITEM  # x + y, 8.4 MB


def create_w2_file(directory: str, rows: int = W2_ROWS, feats: int = W2_FEATS, seed: int = 0) -> str:
    """Writes the W2 series to `directory`/w2.npy in chunks (never the whole array in RAM)."""
    path = os.path.join(directory, "w2.npy")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, feats))
    rng = np.random.default_rng(seed)
    step = 1 << 18
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        out[lo:hi] = rng.standard_normal((hi - lo, feats), dtype=np.float32)
    out.flush()
    del out
    return path


def warm_page_cache(path: str) -> None:
    """Reads the file once so that every measurement reads memory, not the disk."""
    buf = bytearray(16 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def _w2_samples(rows: int) -> int:
    return rows - W2_WINDOW - W2_HORIZON + 1


def prefault(a: np.ndarray) -> np.ndarray:
    """Maps every page of a memory-mapped array into this process (reading one byte per page)
    and returns it. A fresh mapping of a cached file still costs a page fault per 64 KB on
    first touch (about 5 µs each on a VM), which would otherwise land on the first timed
    batches of whichever case touches the page first."""
    np.ndarray((a.nbytes,), np.uint8, buffer=a)[::4096].sum()
    return a


def _windows_view(a: np.ndarray) -> np.ndarray:
    """(N, window, feats) windows of a (T, feats) array, as a view: sliding_window_view puts the
    window axis last, and the transpose brings it back in front of the features."""
    return np.lib.stride_tricks.sliding_window_view(a, W2_WINDOW, axis=0).transpose(0, 2, 1)


def _shuffled_starts(n: int, seed: int) -> Iterator[np.ndarray]:
    """Batches of shuffled window starts, a new permutation each epoch, like DataLoader(shuffle=True)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for lo in range(0, n - W2_BATCH + 1, W2_BATCH):
            yield order[lo : lo + W2_BATCH]


def numpy_fancy_batches(a: np.ndarray, seed: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Hand-written NumPy: x = windows[starts] (fancy indexing makes a fresh copy per batch)."""
    windows = _windows_view(a)
    for starts in _shuffled_starts(_w2_samples(len(a)), seed):
        yield windows[starts], a[starts + W2_WINDOW][:, None]


def numpy_take_out_batches(a: np.ndarray, seed: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Hand-written NumPy into preallocated outputs: np.take(a, rows, axis=0, out=) with the
    rows of every window spelled out (np.take on the sliding-window view would first copy the
    whole view to a contiguous array). The same two buffers are reused every batch (cache-warm,
    and only valid until the next batch)."""
    x = np.empty((W2_BATCH, W2_WINDOW, a.shape[1]), a.dtype)
    y = np.empty((W2_BATCH, W2_HORIZON, a.shape[1]), a.dtype)
    steps = np.arange(W2_WINDOW)
    for starts in _shuffled_starts(_w2_samples(len(a)), seed):
        rows = (starts[:, None] + steps).reshape(-1)
        np.take(a, rows, axis=0, out=x.reshape(-1, a.shape[1]))
        np.take(a, starts + W2_WINDOW, axis=0, out=y[:, 0])
        yield x, y


def copy_limit_batches(
    path: str, nbytes_per_batch: int = W2_BATCH_BYTES, seed: int = 0, threads: int = 1, destinations: int = 1
) -> Iterator[np.ndarray]:
    """The memory-copy ceiling: np.copyto of one batch's bytes, as one contiguous region at a
    random offset of the memory-mapped file, into a preallocated destination.

    With destinations=1 the destination stays warm in the last-level cache (the brief's
    ceiling); with more, they rotate like the buffers of a producer that hands out batches
    and gets them back later. With threads > 1 each copy is split among threads (np.copyto
    releases the GIL)."""
    src = prefault(np.load(path, mmap_mode="r"))
    flat = np.ndarray((src.nbytes,), np.uint8, buffer=src)  # the mapped bytes, no copy
    dsts = [np.empty(nbytes_per_batch, np.uint8) for _ in range(destinations)]
    for d in dsts:
        d.fill(0)  # fault the pages in now, not in the first timed copies
    rng = np.random.default_rng(seed)
    bounds = [int(b) & ~63 for b in np.linspace(0, nbytes_per_batch, threads + 1)]
    bounds[-1] = nbytes_per_batch
    pool = None
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(threads)
    try:
        for k in itertools.count():
            dst = dsts[k % destinations]
            off = int(rng.integers(0, flat.size - nbytes_per_batch)) & ~63
            if pool is None:
                np.copyto(dst, flat[off : off + nbytes_per_batch])
            else:
                parts = [(dst[lo:hi], flat[off + lo : off + hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
                list(pool.map(lambda p: np.copyto(*p), parts))
            yield dst
    finally:
        if pool is not None:
            pool.shutdown()


def feeder_w2(path: str, output: str = "numpy", num_threads: Optional[int] = None, seed: int = 0) -> Feeder:
    return Feeder(
        path,
        window=W2_WINDOW,
        horizon=W2_HORIZON,
        batch_size=W2_BATCH,
        shuffle=True,
        seed=seed,
        output=output,
        num_threads=num_threads,
    )


def feeder_batches(f: Feeder) -> Iterator[Any]:
    """Epoch after epoch of a Feeder (a W2 epoch is 15,624 batches, so one is usually enough)."""
    return _forever(lambda: iter(f))


class FeederStream:
    """feeder_batches(feeder) that keeps the Feeder at hand (`.feeder`, for its stats)."""

    def __init__(self, feeder: Feeder) -> None:
        self.feeder = feeder
        self._batches = feeder_batches(feeder)

    def __iter__(self) -> FeederStream:
        return self

    def __next__(self) -> Any:
        return next(self._batches)

    def close(self) -> None:
        _close(self._batches)


def loader_w2(path: str, num_workers: int, seed: int = 0) -> Any:
    return _torch_loader(
        WindowDataset(path, W2_WINDOW, W2_HORIZON),
        batch_size=W2_BATCH,
        shuffle=True,
        num_workers=num_workers,
        seed=seed,
    )


@dataclass
class StreamCase:
    """A W2 producer: `make()` starts an endless stream of batches. `chunk` batches are timed per
    round (slow producers get fewer, to keep the run short); `drain` batches before them are
    not (they cover the producer's prefetch queue, see `stream_probe`); `kind` groups the
    case for the ratios ('feeder', 'numpy', 'loader', 'copy'); `warmup` batches are taken
    once, untimed, right after `make()`."""

    make: Callable[[], Iterator[Any]]
    chunk: int
    drain: int
    kind: str
    warmup: int = 2
    settle_s: float = 0.0  # see `stream_probe`


# Batches every fast producer runs, untimed, before its first timed chunk (~0.3 s). The Feeder
# maps the file itself, so it cannot be pre-faulted from here: 300 batches (2.5 GB of random
# windows) touch ~99% of the 512 MB file's pages. The NumPy producers need it too: their
# output buffers and, on a VM, memory the host has not backed yet warm up over ~100 batches.
FEEDER_WARMUP_BATCHES = 300


# Names the ratios (bench/run.py, bench/test_bench.py) refer to.
W2_FEEDER = "Feeder (output=numpy)"
W2_NUMPY_BEST = "NumPy sliding_window_view + fancy index (in RAM)"
W2_LOADER0 = "torch DataLoader, per-sample Dataset, 0 workers"
W2_COPY = "copy limit: np.copyto, 1 thread, 1 warm destination"


def w2_thread_counts() -> List[int]:
    """The num_threads the W2 Feeder is hand-tuned over, to compare the defaults with the best
    of them: 1, 2, half the cores, all but one, all, and one more (1, 2, 3 on 2 cores)."""
    cores = cpu_count()
    return sorted({1, 2, max(1, cores // 2), max(1, cores - 1), cores, cores + 1})


def w2_hand_tuned(threads: int) -> str:
    return f"Feeder (output=numpy, num_threads={threads})"


def w2_cases(path: str, in_ram: np.ndarray, quick: bool = False) -> Dict[str, StreamCase]:
    """Name -> a W2 producer. `in_ram` is the file loaded without mmap (contiguous, in RAM)."""
    c = 12 if quick else 40  # ~50 ms of Feeder batches per round
    slow = 2 if quick else 5  # ~50 ms of DataLoader(0 workers) batches per round
    # The Feeder queues up to 2 * num_threads blocks (here one batch each) plus one per busy
    # thread; 2 DataLoader workers queue 2 * prefetch_factor(2) batches plus one each in progress.
    q = max(8, 3 * max(w2_thread_counts()))
    fw = 60 if quick else FEEDER_WARMUP_BATCHES  # fast producers' warm-up
    # Refilling those queues takes the Feeder a few ms, the DataLoader workers ~100 ms
    # (several times that when the machine is busy): the settling times leave margin.
    fs, ls = 0.05, 0.4
    return {
        W2_FEEDER: StreamCase(lambda: FeederStream(feeder_w2(path, "numpy")), c, q, "feeder", fw, fs),
        "Feeder (output=torch)": StreamCase(lambda: FeederStream(feeder_w2(path, "torch")), c, q, "feeder", fw, fs),
        **{
            w2_hand_tuned(n): StreamCase(
                lambda n=n: FeederStream(feeder_w2(path, "numpy", num_threads=n)), c, q, "feeder", fw, fs
            )
            for n in w2_thread_counts()
        },
        W2_NUMPY_BEST: StreamCase(lambda: numpy_fancy_batches(in_ram), c, 1, "numpy", fw),
        "NumPy np.take(rows, out=) into reused buffers (in RAM)": StreamCase(
            lambda: numpy_take_out_batches(in_ram), c, 1, "numpy", fw
        ),
        "NumPy sliding_window_view + fancy index (memmap)": StreamCase(
            lambda: numpy_fancy_batches(prefault(np.load(path, mmap_mode="r"))), c, 1, "numpy", fw
        ),
        W2_LOADER0: StreamCase(lambda: _forever(lambda: iter(loader_w2(path, 0))), slow, 1, "loader", 4 * slow),
        "torch DataLoader, per-sample Dataset, 2 workers (steady)": StreamCase(
            lambda: _forever(lambda: iter(loader_w2(path, 2))), 2 * slow, q, "loader", q, ls
        ),
        W2_COPY: StreamCase(lambda: copy_limit_batches(path), c, 1, "copy", fw),
        "copy limit: np.copyto, 1 thread, 8 rotating destinations": StreamCase(
            lambda: copy_limit_batches(path, destinations=8), c, 1, "copy", fw
        ),
        "copy limit: np.copyto, 2 threads, 1 warm destination": StreamCase(
            lambda: copy_limit_batches(path, threads=2), c, 1, "copy", fw
        ),
    }


def check_w2_batch(batch: Any) -> None:
    """Every producer must produce the same bytes per batch, or GB/s would not compare."""
    got = nbytes(batch) if not isinstance(batch, (tuple, list)) else sum(nbytes(a) for a in batch)
    if got != W2_BATCH_BYTES:
        raise AssertionError(f"a batch has {got} bytes, expected {W2_BATCH_BYTES}")


def _close(it: Any) -> None:
    # Stops Feeder threads now rather than at garbage collection (generators propagate close()).
    close = getattr(it, "close", None)
    if close is not None:
        close()


def measure_w2(cases: Dict[str, StreamCase], rounds: int, shapes: Optional[Dict[str, str]] = None) -> Dict[str, Timing]:
    """Throughput of every W2 producer, all running at once and timed in interleaved rounds
    (Timing.work is in bytes, so Timing.rate() is bytes per second). `shapes`, when given, gets
    each Feeder's threads and prefetch at the end (feeder_shape)."""
    streams: Dict[str, Iterator[Any]] = {}
    try:
        for name, case in cases.items():
            streams[name] = case.make()
            check_w2_batch(next(streams[name]))
            for _ in range(case.warmup):
                next(streams[name])
        probes = {
            name: stream_probe(streams[name], case.chunk, case.drain, case.settle_s) for name, case in cases.items()
        }
        raw = interleave(probes, rounds)
        if shapes is not None:
            shapes.update({name: feeder_shape(it) for name, it in streams.items() if feeder_shape(it)})
    finally:
        for it in streams.values():
            _close(it)
        streams.clear()
        gc.collect()
    return {name: Timing(tuple(raw[name]), cases[name].chunk * W2_BATCH_BYTES) for name in cases}


def first_batch_probe(make: Callable[[], Iterator[Any]]) -> Callable[[], float]:
    """A probe of a producer's start-up: seconds from nothing to the first batch in hand."""

    def probe() -> float:
        t0 = time.perf_counter()
        it = make()
        next(it)
        elapsed = time.perf_counter() - t0
        _close(it)
        del it
        return elapsed

    return probe


def startup_cases(path: str) -> Dict[str, Callable[[], float]]:
    """Start-up probes: construction + first batch (the Feeder), or iter() + first batch
    (DataLoader, where workers=2 forks two processes)."""
    return {
        "Feeder(path, ...) + first batch": first_batch_probe(lambda: iter(feeder_w2(path, "numpy"))),
        "DataLoader 2 workers: iter() + first batch": first_batch_probe(lambda: iter(loader_w2(path, 2))),
        "DataLoader 0 workers: iter() + first batch": first_batch_probe(lambda: iter(loader_w2(path, 0))),
    }


# ----- training loop -------------------------------------------------------------------------

LOOP_COMPUTE_S = 0.003


def calibrated_work(target_s: float = LOOP_COMPUTE_S, size: int = 128) -> Callable[[], None]:
    """A single-threaded torch step that takes about `target_s`: `k` fixed-size matmuls, with
    `k` calibrated on this machine (call with torch.set_num_threads(1) already set)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g)
    b = torch.randn(size, size, generator=g)
    out = torch.empty(size, size)

    def step(k: int) -> None:
        for _ in range(k):
            torch.mm(a, b, out=out)

    one = measure(lambda: step(16), repeat=30, warmup=5).median / 16
    k = max(1, round(target_s / one))
    return lambda: step(k)


@dataclass(frozen=True)
class LoopResult:
    wait_fraction: Tuple[float, ...]  # per repetition: time getting batches / wall time
    batch_s: Tuple[float, ...]  # per repetition: wall time per batch
    # Per repetition: time the loop's thread was ready to compute but had no core (the kernel's
    # run-queue delay, /proc/thread-self/schedstat) during its compute, / wall time: what
    # workers (or other processes) competing for the cores cost it. Empty where not on Linux.
    core_wait: Tuple[float, ...] = ()
    # Per repetition: wall time / the same compute's wall time without data, in the same round,
    # minus one. On a VM whose cores' speed drifts (another guest's load) this moves by tens of
    # percent between rounds, with or without data: core_wait is the steadier measure.
    slowdown: Tuple[float, ...] = ()
    shape: str = ""  # a Feeder's threads and prefetch at the end (FeedStats), or ""

    @property
    def held_up(self) -> Tuple[float, ...]:
        """Per repetition: the share of wall time the loop waited for data or for a core."""
        if not self.core_wait:
            return self.wait_fraction
        return tuple(w + c for w, c in zip(self.wait_fraction, self.core_wait))

    @property
    def median_wait(self) -> float:
        return statistics.median(self.wait_fraction)

    @property
    def median_core_wait(self) -> float:
        return statistics.median(self.core_wait) if self.core_wait else float("nan")

    @property
    def median_held_up(self) -> float:
        return statistics.median(self.held_up)

    @property
    def median_batch_s(self) -> float:
        return statistics.median(self.batch_s)

    @property
    def median_slowdown(self) -> float:
        return statistics.median(self.slowdown) if self.slowdown else float("nan")


class RunQueueDelay:
    """Seconds this thread has waited on a run queue, ready but without a core (Linux's
    /proc/thread-self/schedstat, second field), read with one pread; 0 where unavailable.
    Open it in the thread to be measured."""

    def __init__(self) -> None:
        try:
            self._fd: Optional[int] = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def __call__(self) -> float:
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 64, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


LoopRound = Tuple[float, float, float]  # (seconds waiting for data, seconds waiting for a core, wall seconds)


def loop_probe(
    next_batch: Callable[[], Any],
    work: Callable[[], None],
    batches: int,
    drain: Union[int, Callable[[], int]],
    settle_s: float = 0.0,
) -> Callable[[], LoopRound]:
    """One stretch of a training loop: get a batch (timed: that is the waiting, or for
    in-line assembly the assembling), then compute (its run-queue delay counted: the time the
    loop had no core). Returns (seconds waiting, seconds without a core, wall seconds).
    `drain` (or what it returns as the round starts) and `settle_s` are as in `stream_probe`."""
    clock = time.perf_counter

    def probe() -> LoopRound:
        for _ in range(drain() if callable(drain) else drain):
            next_batch()
        delay = RunQueueDelay()
        waiting = no_core = 0.0
        start = clock()
        for _ in range(batches):
            t0 = clock()
            x, y = next_batch()
            waiting += clock() - t0
            d0 = delay()
            work()
            no_core += delay() - d0
            del x, y  # hand the buffer back before the next batch, as a real step would
        wall = clock() - start
        delay.close()
        if settle_s:
            time.sleep(settle_s)
        return waiting, no_core, wall

    return probe


def compute_probe(work: Callable[[], None], batches: int) -> Callable[[], LoopRound]:
    """The same stretch without data: `batches` steps of compute alone, (0, seconds without a
    core, wall seconds): how much other processes alone take the loop's core."""
    clock = time.perf_counter

    def probe() -> LoopRound:
        delay = RunQueueDelay()
        no_core = 0.0
        start = clock()
        for _ in range(batches):
            d0 = delay()
            work()
            no_core += delay() - d0
        wall = clock() - start
        delay.close()
        return 0.0, no_core, wall

    return probe


class FeederSource:
    """A Feeder's endless stream of torch batches as a `next_batch()` for the loop, warmed up
    by `warmup` batches taken at once (see FEEDER_WARMUP_BATCHES), the Feeder kept for its stats."""

    def __init__(self, feeder: Feeder, warmup: int) -> None:
        self.feeder = feeder
        self._batches = FeederStream(feeder)
        for _ in range(warmup):
            next(self._batches)

    def __call__(self) -> Any:
        return next(self._batches)

    def ring(self) -> int:
        """Blocks (here batches) the Feeder builds ahead now: what a round must drain first."""
        return int(self.feeder.prefetch)

    def close(self) -> None:
        _close(self._batches)


# Names the targets (bench/run.py, bench/test_bench.py) refer to.
LOOP_TUNED = "Feeder (output=torch, num_threads=1)"
LOOP_DEFAULTS = "Feeder (output=torch), all defaults"
LOOP_INLINE = "in-line NumPy fancy indexing (memmap)"
LOOP_COMPUTE = "compute alone (no data)"


def loop_sources(
    path: str, in_ram: np.ndarray, feeder_warmup: int = FEEDER_WARMUP_BATCHES
) -> Dict[str, Tuple[Callable[[], Callable[[], Any]], Optional[int]]]:
    """Name -> (factory of a `next_batch()` giving torch tensors, drain) for the training loop;
    a drain of None: a Feeder's, as deep as its ring is when the round starts (FeederSource.ring),
    the same rule for the hand-tuned Feeder and the defaults. Every source starts warm: the
    Feeders have run `feeder_warmup` batches, the memmap is pre-faulted (see
    FEEDER_WARMUP_BATCHES and `prefault`). The Feeder with all defaults is warmed up the same
    way, without compute: its tuner meets the loop's compute only in the first timed round, and
    must settle there."""
    import torch

    def tuned() -> Callable[[], Any]:
        # One worker thread, by hand: the loop's own thread keeps the other core.
        return FeederSource(feeder_w2(path, "torch", num_threads=1), feeder_warmup)

    def defaults() -> Callable[[], Any]:
        return FeederSource(feeder_w2(path, "torch"), feeder_warmup)

    def inline(a: np.ndarray) -> Callable[[], Any]:
        batches = numpy_fancy_batches(a)

        def next_batch() -> Tuple[Any, Any]:
            x, y = next(batches)
            return torch.from_numpy(x), torch.from_numpy(y)

        return next_batch

    return {
        LOOP_TUNED: (tuned, None),
        LOOP_DEFAULTS: (defaults, None),
        LOOP_INLINE: (lambda: inline(prefault(np.load(path, mmap_mode="r"))), 0),
        "in-line NumPy fancy indexing (in RAM)": (lambda: inline(in_ram), 0),
    }


@contextlib.contextmanager
def torch_single_thread() -> Iterator[None]:
    """torch limited to one thread inside the block: the loop's compute must leave the other
    core to the Feeder's worker, as the brief asks."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def feeder_shape(source: Any) -> str:
    """A Feeder's threads and prefetch at the end and their changes (FeedStats.tuning), for
    a source or stream that keeps its Feeder (`.feeder`); '' for others."""
    feeder = getattr(source, "feeder", None)
    if feeder is None:
        return ""
    st = feeder.stats()
    if not hasattr(st, "tuning"):  # a fastfeed from before the tuner (measuring the old defaults)
        return ""
    changes = "; ".join(f"{t}/{p} from batch {b}" for _, b, t, p in st.tuning)
    return f"threads {st.threads}, prefetch {st.prefetch} at the end (threads/prefetch: {changes})"


def measure_loop(
    path: str,
    in_ram: np.ndarray,
    batches: int,
    rounds: int,
    target_s: float = LOOP_COMPUTE_S,
    feeder_warmup: int = FEEDER_WARMUP_BATCHES,
) -> Tuple[Dict[str, LoopResult], float]:
    """The training-loop check, every source in interleaved rounds, torch on one thread, and in
    each round the same compute without data, which every source's round is compared with.
    Returns the results and the measured compute time per batch."""
    with torch_single_thread():
        work = calibrated_work(target_s)
        compute_s = measure(work, repeat=20, warmup=2).median
        sources = {name: (make(), drain) for name, (make, drain) in loop_sources(path, in_ram, feeder_warmup).items()}
        probes = {LOOP_COMPUTE: compute_probe(work, batches)}
        for name, (nb, drain) in sources.items():
            fed = drain is None  # a Feeder: drain its ring, and let its workers refill it after
            probes[name] = loop_probe(nb, work, batches, nb.ring if fed else drain, settle_s=0.05 if fed else 0.0)
        raw = interleave(probes, rounds)
        shapes = {name: feeder_shape(nb) for name, (nb, _) in sources.items()}
        for nb, _ in sources.values():
            _close(nb)
        del sources, probes
        gc.collect()
    alone = [t for _, _, t in raw[LOOP_COMPUTE]]
    measured = RunQueueDelay()
    results = {
        name: LoopResult(
            wait_fraction=tuple(w / t for w, _, t in r),
            batch_s=tuple(t / batches for _, _, t in r),
            core_wait=tuple(c / t for _, c, t in r) if measured.available else (),
            slowdown=tuple(t / a - 1 for (_, _, t), a in zip(r, alone)),
            shape=shapes.get(name, ""),
        )
        for name, r in raw.items()
    }
    measured.close()
    return results, compute_s


# ----- sparse: an 8 GiB file -----------------------------------------------------------------

SPARSE_ELEMS = 2**33


def create_sparse_file(directory: str, elems: int = SPARSE_ELEMS) -> str:
    """An (elems,) uint8 .npy whose data is a hole: the header, then truncate() to full size."""
    path = os.path.join(directory, "sparse.npy")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": (elems,)}
    with open(path, "wb") as f:
        # Version 1.0 headers suffice (the dict is short); NumPy pads the header to 64 bytes.
        np.lib.format.write_array_header_1_0(f, header)
        f.truncate(f.tell() + elems)
    return path


def allocated_bytes(path: str) -> int:
    """Disk blocks the file really uses (a sparse file uses almost none)."""
    return os.stat(path).st_blocks * 512


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


SPARSE_MODES = {
    "feeder": "Feeder(path, window=256, horizon=1, batch_size=256, shuffle=True, output='numpy')",
    "feeder-lean": "the same Feeder with num_threads=1, prefetch=1",
    "feeder-small": "Feeder(path, window=4, horizon=1, batch_size=64, shuffle=True) (a page per 4-byte window)",
    "numpy": "np.memmap baseline: 256 random windows, default read-ahead",
    "numpy-random": "np.memmap baseline: 256 random windows after madvise(MADV_RANDOM)",
}


def _sparse_numpy(path: str, seed: int, random_advice: bool) -> Tuple[np.ndarray, np.ndarray]:
    """256 random windows (and their next steps) read through a plain mmap of the file, as
    np.load(mmap_mode='r') maps it, optionally with the kernel's read-around turned off."""
    import mmap

    with open(path, "rb") as fh:
        np.lib.format.read_magic(fh)
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        offset = fh.tell()
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    if random_advice:
        mm.madvise(mmap.MADV_RANDOM)
    a = np.frombuffer(mm, dtype, count=shape[0], offset=offset)
    starts = np.random.default_rng(seed).integers(0, len(a) - 257, size=256)
    x = np.stack([a[s : s + 256] for s in starts])
    return x, a[starts + 256][:, None].copy()


def sparse_probe(path: str, mode: str, seed: int) -> Dict[str, float]:
    """One cold start on the sparse file, in a fresh process (see `run_sparse`), so that the
    memory counted is this start's alone. Times in seconds, memory in MiB."""
    rss0, hwm0 = _vm_kib("VmRSS"), _vm_kib("VmHWM")
    t0 = time.perf_counter()
    window, batch = (4, 64) if mode == "feeder-small" else (256, 256)
    if mode.startswith("feeder"):
        lean = {"num_threads": 1, "prefetch": 1} if mode == "feeder-lean" else {}
        f = Feeder(path, window=window, horizon=1, batch_size=batch, shuffle=True, seed=seed, output="numpy", **lean)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        it = iter(f)
        x, y = next(it)
    else:
        t1 = time.perf_counter()
        x, y = _sparse_numpy(path, seed, random_advice=mode == "numpy-random")
    t2 = time.perf_counter()
    rss1 = _vm_kib("VmRSS")
    if mode.startswith("feeder"):
        it.close()  # joins the workers, which may be in the middle of a block
        f.close()
    t3 = time.perf_counter()
    assert x.shape == (batch, window) and y.shape[:2] == (batch, 1), (x.shape, y.shape)
    return {
        "construct_s": t1 - t0,
        "first_batch_s": t2 - t1,
        "total_s": t2 - t0,
        "close_s": t3 - t2,
        "rss_growth_mib": (rss1 - rss0) / 1024,
        "peak_growth_mib": (_vm_kib("VmHWM") - max(hwm0, rss0)) / 1024,
    }


def run_sparse(directory: str, mode: str, seed: int, timeout_s: float = 120) -> Dict[str, float]:
    """Creates the sparse file, runs `sparse_probe` in a new interpreter, deletes the file.

    A new file each time: its page cache (the zero pages the kernel made for the holes read
    so far) goes with it, so every start is cold. A new interpreter: this one's heap (W2's
    arrays) would blur the RSS."""
    path = create_sparse_file(directory)
    try:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "sparse-probe", path, mode, str(seed)],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    finally:
        os.remove(path)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----- background load -----------------------------------------------------------------------


def _cpu_counters() -> Tuple[float, float]:
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its reaped
    children), from /proc/stat and getrusage."""
    import resource

    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return busy, own


class BackgroundLoad:
    """Cores kept busy by other processes (and steal) while the `with` block ran: numbers taken
    while others compete for a 2-core machine must say so."""

    def __enter__(self) -> BackgroundLoad:
        self._t0 = time.perf_counter()
        self._busy0, self._own0 = _cpu_counters()
        self.cores = float("nan")
        return self

    def __exit__(self, *exc: Any) -> None:
        busy, own = _cpu_counters()
        wall = time.perf_counter() - self._t0
        self.cores = max(0.0, (busy - self._busy0) - (own - self._own0)) / wall if wall > 0 else 0.0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "sparse-probe":
        print(json.dumps(sparse_probe(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        sys.exit("usage: workloads.py sparse-probe PATH MODE SEED  (run bench/run.py for the benchmarks)")
