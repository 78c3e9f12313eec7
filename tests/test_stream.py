"""Stream (SPEC 7): windows over steps pushed in chunks equal a Feeder over the concatenation."""
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


@given(length=st.integers(1, 120), window=st.integers(1, 6), horizon=st.integers(0, 3), rate=st.integers(1, 3),
       stride=st.integers(1, 4), batch=st.integers(1, 7), drop_last=st.booleans(),
       cuts=st.lists(st.integers(0, 120), max_size=12), feat=st.sampled_from([(), (3,)]))
def test_stream_equals_feeder_over_the_concatenation(length, window, horizon, rate, stride, batch, drop_last,
                                                     cuts, feat):
    data = np.arange(length * int(np.prod(feat)), dtype=np.float32).reshape((length,) + feat)
    span = (window - 1 + horizon) * rate + 1
    cuts = sorted(c for c in set(cuts) if 0 < c < length)
    kw = dict(window=window, horizon=horizon, sampling_rate=rate, stride=stride, batch_size=batch,
              drop_last=drop_last)
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
    with pytest.raises(TimeoutError, match="capacity 4 steps.*the first 0 of the 2 steps went in"):
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
