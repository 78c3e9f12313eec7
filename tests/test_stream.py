"""Stream: windows over steps pushed in chunks equal a Feeder over the concatenation."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastfeed import Feeder, Stream


def pushed_in_chunks(stream: Stream, data: np.ndarray, cuts) -> threading.Thread:
    def produce():
        with stream:
            for a, b in zip([0] + cuts, cuts + [len(data)]):
                stream.push(data[a:b])

    t = threading.Thread(target=produce)
    t.start()
    return t


@given(
    length=st.integers(1, 120),
    window=st.integers(1, 6),
    horizon=st.integers(0, 3),
    rate=st.integers(1, 3),
    stride=st.integers(1, 4),
    batch=st.integers(1, 7),
    drop_last=st.booleans(),
    cuts=st.lists(st.integers(0, 120), max_size=12),
    feat=st.sampled_from([(), (3,)]),
)
def test_stream_equals_feeder_over_the_concatenation(
    length, window, horizon, rate, stride, batch, drop_last, cuts, feat
):
    data = np.arange(length * int(np.prod(feat)), dtype=np.float32).reshape((length,) + feat)
    span = (window - 1 + horizon) * rate + 1
    cuts = sorted(c for c in set(cuts) if 0 < c < length)
    kw = dict(window=window, horizon=horizon, sampling_rate=rate, stride=stride, batch_size=batch, drop_last=drop_last)
    stream = Stream(**kw, capacity=span + batch * stride + 3, output="numpy")
    producer = pushed_in_chunks(stream, data, cuts)
    got = [(x.copy(), None if y is None else y.copy()) for x, y in stream]
    producer.join()
    if span > length or (drop_last and (length - span) // stride + 1 < batch):
        assert got == []
        return
    want = list(Feeder(data, **kw, output="numpy"))
    assert len(got) == len(want)
    for (gx, gy), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(gx, wx)
        if horizon:
            np.testing.assert_array_equal(gy, wy)
        else:
            assert gy is None


def test_push_blocks_when_full_and_drop_oldest_counts():
    s = Stream(window=2, batch_size=1, capacity=4, output="numpy")
    s.push(np.arange(4.0))
    with pytest.raises(TimeoutError, match=r"capacity 4 steps.*the first 0 of the 2 steps went in"):
        s.push(np.arange(2.0), timeout=0.1)
    it = iter(s)
    assert next(it)[0].tolist() == [[0.0, 1.0]]  # consuming frees room
    s.push(np.arange(1.0), timeout=1.0)

    d = Stream(window=2, batch_size=1, capacity=4, on_full="drop_oldest", output="numpy")
    d.push(np.arange(4.0))
    d.push(np.arange(4.0, 7.0))  # 3 oldest steps make room
    d.close()
    starts = [b[0][0, 0] for b in d]
    assert starts == [3.0, 4.0, 5.0] and d.stats().dropped_steps == 3


def test_consumer_waits_for_a_slow_producer_and_errors_are_clear():
    s = Stream(window=3, horizon=1, batch_size=2, output="numpy")

    def late():
        time.sleep(0.2)
        s.push(np.arange(10.0))
        s.close()

    threading.Thread(target=late).start()
    batches = list(s)
    assert [b[0][:, 0].tolist() for b in batches] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0]]
    assert s.stats().wait_total_s >= 0.1
    with pytest.raises(RuntimeError, match="closed Stream"):
        s.push(np.arange(2.0))
    t = Stream(window=2, batch_size=1)
    t.push(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"do not match the stream's \(2,\) and float32"):
        t.push(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="cannot hold one batch"):
        Stream(window=10, batch_size=4, capacity=5)
    with pytest.raises(ValueError, match="on_full must be 'block' or 'drop_oldest'"):
        Stream(window=2, on_full="wait")


@given(
    length=st.integers(1, 80),
    window=st.integers(1, 5),
    horizon=st.integers(0, 2),
    rate=st.integers(1, 3),
    stride=st.integers(1, 5),
    batch=st.integers(1, 3),
    spare=st.integers(0, 6),
    cuts=st.lists(st.integers(0, 80), max_size=10),
)
def test_dropped_steps_are_the_steps_only_lost_windows_read_however_the_pushes_are_cut(
    length, window, horizon, rate, stride, batch, spare, cuts
):
    data = np.arange(length, dtype=np.float64)  # each step's value is its number
    reach = (window - 1 + horizon) * rate
    cuts = sorted(c for c in set(cuts) if 0 < c < length)

    def run(pieces):  # everything pushed before the consumer starts, so drops do happen
        s = Stream(
            window=window,
            horizon=horizon,
            sampling_rate=rate,
            stride=stride,
            batch_size=batch,
            capacity=reach + 1 + (batch - 1) * stride + spare,
            on_full="drop_oldest",
            output="numpy",
        )
        for p in pieces:
            s.push(p)
        s.close()
        starts = [int(v) for x, _ in s for v in x[:, 0]]
        return starts, s.stats().dropped_steps

    starts, dropped = run([data[a:b] for a, b in zip([0] + cuts, cuts + [length])])
    assert (starts, dropped) == run([data[t : t + 1] for t in range(length)]) == run([data])
    assert dropped == steps_only_lost_windows_read(length, starts, window, horizon, rate, stride)


def steps_only_lost_windows_read(length, starts, window, horizon, rate, stride):
    """The steps that windows of the series not handed out (`starts` were) read, and no window
    handed out did."""

    def reads(s):
        return {s + j * rate for j in range(window + horizon)}

    whole = range(0, length - (window - 1 + horizon) * rate, stride)  # every window the series holds
    lost = [s for s in whole if s not in set(starts)]
    return len(set().union(set(), *(reads(s) for s in lost)) - set().union(set(), *(reads(s) for s in starts)))


def test_dropped_steps_while_the_consumer_runs_behind():
    s = Stream(window=5, horizon=1, stride=2, batch_size=4, capacity=40, on_full="drop_oldest", output="numpy")
    data = np.arange(5000, dtype=np.float64)
    producer = pushed_in_chunks(s, data, list(range(37, 5000, 37)))
    starts = []
    for x, _ in s:
        starts += [int(v) for v in x[:, 0]]
        time.sleep(0.0005)  # slower than the producer: the buffer overflows again and again
    producer.join()
    assert 0 < len(starts) < 2497 and starts == sorted(starts)
    assert s.stats().dropped_steps == steps_only_lost_windows_read(5000, starts, 5, 1, 1, 2) > 0
