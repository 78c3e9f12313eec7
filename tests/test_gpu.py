"""device="cuda": batches on the GPU equal the reference, in order, ready on the current stream.

These need a CUDA device; elsewhere they are skipped with the reason. tests/test_source_cache.py
checks device_cache=True's kernel against the reference over random configurations."""

from __future__ import annotations

import numpy as np
import pytest

import fastfeed
from fastfeed import Feeder, reference

from helpers import assert_same_batches, collect, to_numpy

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not (fastfeed.cuda_available() and torch.cuda.is_available()),
    reason="no usable CUDA device (fastfeed.cuda_available() or torch.cuda.is_available() is False)",
)


def host(t):
    return to_numpy(t)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int64"])
def test_windows_on_the_gpu_equal_the_reference(shuffle, dtype):
    rng = np.random.default_rng(0)
    series = rng.integers(-1000, 1000, (5000, 8)).astype(np.float32)
    f = Feeder(series, window=32, horizon=2, batch_size=64, shuffle=shuffle, dtype=dtype, device="cuda")
    want = reference.batches(series, window=32, horizon=2, batch_size=64, shuffle=shuffle, dtype=dtype)
    got = list(f)
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        assert x.is_cuda and y.is_cuda
        np.testing.assert_array_equal(host(x), wx)
        np.testing.assert_array_equal(host(y), wy)


def test_every_window_field_is_uploaded_with_the_batch():
    rng = np.random.default_rng(2)
    series = [rng.normal(size=(n, 2)).astype(np.float32) for n in (300, 250)]
    series[0][7, 1] = np.nan
    kw = dict(
        window=24,
        horizon=6,
        covariates=[rng.normal(size=(len(s), 3)) for s in series],
        known=[rng.normal(size=(len(s),)).astype(np.float32) for s in series],
        static=rng.normal(size=(2, 4)),
        with_index=True,
        scale="standard",
        check_finite="mask",
        end_index=-5,
        batch_size=32,
        shuffle=True,
        dtype="float32",
    )
    got = list(Feeder(series, device="cuda", **kw))
    want = reference.window_batches(series, **kw)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        fields = g.as_dict()
        assert set(fields) == set(w)
        for name, value in fields.items():
            assert value.is_cuda, name
            np.testing.assert_allclose(host(value), w[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_padded_and_packed_sequences_on_the_gpu():
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 100, int(n), dtype=np.int32) for n in rng.integers(1, 300, 500)]
    for kw in (dict(shuffle=True, bucket=True), dict(pack=True, max_len=256)):
        got = list(Feeder(seqs, window=None, batch_size=16, device="cuda", **kw))
        want = reference.sequence_batches(seqs, batch_size=16, **kw)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.x.is_cuda
            np.testing.assert_array_equal(host(g.x), w["x"])
            assert g.mask.is_cuda and not g.lengths.is_cuda  # set also where every row is full
            np.testing.assert_array_equal(host(g.mask), w["mask"])
            np.testing.assert_array_equal(g.lengths.numpy(), w["lengths"])
            if "cu_seqlens" in w:
                np.testing.assert_array_equal(host(g.cu_seqlens), w["cu_seqlens"])


def test_batches_are_ready_on_the_current_stream_and_survive_reuse():
    series = np.arange(200_000, dtype=np.float32).reshape(-1, 4)
    side = torch.cuda.Stream()
    f = Feeder(series, window=64, batch_size=256, device="cuda", prefetch=1)
    kept = []
    with torch.cuda.stream(side):
        for x, _ in f:
            kept.append(x)  # held across later uploads: their memory must not be reused
            (x * 2).sum()  # work on the caller's stream right away
    torch.cuda.synchronize()
    want = reference.batches(series, window=64, batch_size=256)
    for x, (wx, _) in zip(kept, want):
        np.testing.assert_array_equal(host(x), wx)


def test_device_cache_gathers_on_the_gpu_like_the_reference():
    rng = np.random.default_rng(2)
    series = rng.standard_normal((20_000, 4)).astype(np.float32)
    kw = dict(window=16, horizon=1, batch_size=128, shuffle=True, normalize="standard")
    got = list(Feeder(series, device="cuda", device_cache=True, **kw))
    want = reference.batches(series, **kw)
    assert len(got) == len(want)
    for (x, y), (wx, wy) in zip(got, want):
        assert x.is_cuda
        np.testing.assert_allclose(host(x), wx, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(host(y), wy, rtol=1e-6, atol=1e-6)


def test_device_cache_through_the_public_api_with_targets_rate_and_conversion():
    rng = np.random.default_rng(3)
    series = [rng.integers(-500, 500, (n, 3)).astype(np.int16) for n in (700, 45, 1200)]
    targets = [rng.standard_normal((len(s), 2)).astype(np.float32) for s in series]
    kw = dict(
        targets=targets, window=7, sampling_rate=3, horizon=2, batch_size=33, shuffle=True, seed=5, dtype="bfloat16"
    )
    f = Feeder(series, device="cuda", device_cache=True, **kw)
    got = collect(f)
    assert_same_batches(got, reference.batches(series, **kw))


def test_device_cache_refuses_a_source_larger_than_free_memory(monkeypatch):
    series = np.zeros((1000, 4), dtype=np.float32)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 80_000_000_000))
    with pytest.raises(ValueError, match=r"needs 16,000 bytes of GPU memory, but only 1,000 are free"):
        Feeder(series, window=4, device="cuda", device_cache=True)
