"""Exact expectations for the edges, written out by hand (not computed by fastfeed)."""

from __future__ import annotations

import numpy as np
import pytest

from fastfeed import Batch, Feeder, reference
from fastfeed.dtypes import SOURCE_DTYPES

from helpers import assert_same_batches, collect


def test_seed_example_first_and_last_batch():
    x = np.sin(np.arange(0, 100, 0.1))
    f = Feeder(x, window=10, horizon=1, batch_size=1, output="numpy")
    batches = collect(f)
    assert len(f) == len(batches) == 990
    np.testing.assert_array_equal(batches[0][0], x[None, 0:10])
    np.testing.assert_array_equal(batches[0][1], x[None, 10:11])
    np.testing.assert_array_equal(batches[-1][0], x[None, 989:999])
    np.testing.assert_array_equal(batches[-1][1], x[None, 999:1000])


def test_one_step_series_window_one():
    f = Feeder(np.array([7.5], np.float32), window=1, batch_size=4, output="numpy")
    [(x, y)] = collect(f)
    assert y is None
    np.testing.assert_array_equal(x, np.array([[7.5]], np.float32))


def test_window_equal_to_series():
    s = np.arange(6, dtype=np.int32).reshape(3, 2)
    [(x, _y)] = collect(Feeder(s, window=3, batch_size=2, output="numpy"))
    np.testing.assert_array_equal(x, s[None])
    with pytest.raises(ValueError, match="longer than the series"):
        Feeder(s, window=3, horizon=1, output="numpy")


def test_last_partial_batch_and_drop_last():
    s = np.arange(10, dtype=np.int64)
    got = collect(Feeder(s, window=2, batch_size=4, output="numpy"))  # 9 windows
    assert [len(x) for x, _ in got] == [4, 4, 1]
    np.testing.assert_array_equal(got[-1][0], [[8, 9]])
    f = Feeder(s, window=2, batch_size=4, drop_last=True, output="numpy")
    assert len(f) == 2
    assert [len(x) for x, _ in collect(f)] == [4, 4]


def test_sampling_rate_stride_and_horizon_by_hand():
    s = np.arange(20, dtype=np.int16)
    got = collect(Feeder(s, window=3, sampling_rate=2, stride=5, horizon=2, batch_size=10, output="numpy"))
    # span (3 - 1 + 2) * 2 + 1 = 9: starts 0, 5, 10 (10 + 8 = 18 <= 19), 15 does not fit
    np.testing.assert_array_equal(got[0][0], [[0, 2, 4], [5, 7, 9], [10, 12, 14]])
    np.testing.assert_array_equal(got[0][1], [[6, 8], [11, 13], [16, 18]])


def test_start_and_end_index_are_inclusive_exclusive():
    s = np.arange(10, dtype=np.float64)
    got = collect(Feeder(s, window=2, horizon=1, start_index=3, end_index=8, batch_size=10, output="numpy"))
    np.testing.assert_array_equal(got[0][0], [[3, 4], [4, 5], [5, 6]])
    np.testing.assert_array_equal(got[0][1], [[5], [6], [7]])


def test_short_series_among_longer_ones_are_skipped_and_windows_stay_inside():
    a = np.arange(0, 5, dtype=np.float32)
    b = np.arange(100, 102, dtype=np.float32)  # shorter than a window
    c = np.arange(200, 204, dtype=np.float32)
    got = collect(Feeder([a, b, c], window=3, batch_size=100, output="numpy"))
    np.testing.assert_array_equal(got[0][0], [[0, 1, 2], [1, 2, 3], [2, 3, 4], [200, 201, 202], [201, 202, 203]])


def test_explicit_targets_keep_their_dtype_and_shape():
    s = np.arange(12, dtype=np.float64).reshape(6, 2)
    labels = np.arange(6, dtype=np.int64) * 10
    [(x, y)] = collect(Feeder(s, targets=labels, window=2, batch_size=8, dtype="float32", output="numpy"))
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert y.shape == (4, 1)  # the horizon axis is always there
    np.testing.assert_array_equal(y[:, 0], [20, 30, 40, 50])


@pytest.mark.parametrize("dtype", SOURCE_DTYPES)
def test_every_dtype_roundtrips_unchanged_including_extremes(dtype):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        s = np.array([True, False, True, True, False])
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        s = np.array([info.min, info.max, 0, 1, info.max - 1], dtype=dt)
    else:
        info = np.finfo(dt)
        s = np.array([info.min, info.max, info.tiny, -0.0, np.inf], dtype=dt)
    [(x, y)] = collect(Feeder(s, window=2, horizon=1, batch_size=8, output="numpy"))
    assert x.dtype == dt
    np.testing.assert_array_equal(x, np.stack([s[0:2], s[1:3], s[2:4]]))
    np.testing.assert_array_equal(y, s[2:5, None])


def test_huge_values_convert_like_numpy():
    s = np.array([1e300, -1e300, 65519.0, 65520.0, 1e-8, 2.0**-25, 3.0 * 2**-26, np.nan], dtype=np.float64)
    for out in ("float32", "float16"):
        [(x, _)] = collect(Feeder(s, window=8, dtype=out, output="numpy"))
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(x[0], s.astype(out))
    big = np.array([2**62 + 1, -(2**63), 2**53 + 1], dtype=np.int64)
    [(x, _)] = collect(Feeder(big, window=3, dtype="float64", output="numpy"))
    np.testing.assert_array_equal(x[0], big.astype(np.float64))


def test_bfloat16_rounds_like_torch():
    torch = pytest.importorskip("torch")
    s = np.array([1.0, 1.00390625, 1.01171875, 3.4e38, -2.5e-40, np.inf, np.nan], dtype=np.float32)
    [(x, _)] = list(Feeder(s, window=7, dtype=torch.bfloat16, output="torch"))
    assert x.dtype == torch.bfloat16
    want = torch.from_numpy(s).to(torch.bfloat16)
    assert torch.equal(x[0].view(torch.int16)[:-1], want.view(torch.int16)[:-1])
    assert torch.isnan(x[0, -1])


def test_batch_is_a_pair_with_names():
    b = next(iter(Feeder(np.arange(5.0), window=2, horizon=1, batch_size=2, output="numpy")))
    assert isinstance(b, Batch)
    x, y = b
    assert x is b.x and y is b.y
    assert b.mask is None and b.lengths is None
    assert "Batch(x=ndarray(2, 2) float64" in repr(b)


def test_torch_output_shares_the_buffer_and_stays_valid_while_held():
    torch = pytest.importorskip("torch")
    s = np.arange(4000, dtype=np.float32).reshape(1000, 4)
    f = Feeder(s, window=5, horizon=1, batch_size=16, output="torch", num_threads=2, prefetch=2)
    held = list(f)  # hold every batch: no buffer may be reused under us
    assert all(isinstance(x, torch.Tensor) for x, _ in held)
    assert_same_batches(
        [(x.numpy(), y.numpy()) for x, y in held], reference.batches(s, window=5, horizon=1, batch_size=16)
    )


def test_shuffle_is_a_permutation_and_changes_with_epoch_and_seed():
    s = np.arange(200, dtype=np.int64)
    f = Feeder(s, window=1, batch_size=200, shuffle=True, seed=1, output="numpy")
    e0 = collect(f)[0][0][:, 0]
    e1 = collect(f)[0][0][:, 0]
    assert sorted(e0.tolist()) == sorted(e1.tolist()) == list(range(200))
    assert not np.array_equal(e0, e1)  # the epoch advanced
    f.set_epoch(0)
    np.testing.assert_array_equal(collect(f)[0][0][:, 0], e0)
    g = Feeder(s, window=1, batch_size=200, shuffle=True, seed=2, output="numpy")
    assert not np.array_equal(collect(g)[0][0][:, 0], e0)


def test_shuffle_is_independent_of_threads_and_prefetch():
    s = np.random.default_rng(0).normal(size=(3000, 3)).astype(np.float32)
    runs = [
        collect(
            Feeder(
                s, window=7, horizon=2, batch_size=33, shuffle=True, seed=9, output="numpy", num_threads=t, prefetch=p
            )
        )
        for t, p in [(1, 1), (2, 3), (4, 8)]
    ]
    for other in runs[1:]:
        assert_same_batches(other, runs[0])


def test_npy_file_source_matches_in_memory(tmp_path):
    s = np.random.default_rng(1).normal(size=(500, 2, 3))
    path = tmp_path / "s.npy"
    np.save(path, s)
    want = collect(Feeder(s, window=4, horizon=1, batch_size=7, shuffle=True, output="numpy"))
    got = collect(Feeder(str(path), window=4, horizon=1, batch_size=7, shuffle=True, output="numpy"))
    assert_same_batches(got, want)
    got = collect(Feeder(path, window=4, horizon=1, batch_size=7, shuffle=True, output="numpy"))  # PathLike
    assert_same_batches(got, want)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_header_versions(tmp_path, version):
    s = np.arange(30, dtype="<u2").reshape(10, 3)
    path = tmp_path / "v.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, s, version=version)
    [(x, _)] = collect(Feeder(str(path), window=10, output="numpy"))
    np.testing.assert_array_equal(x[0], s)


def test_standard_normalization_with_constant_feature():
    s = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    [(x, _)] = collect(Feeder(s, window=10, normalize="standard", output="numpy"))
    np.testing.assert_allclose(x[0, :, 0], (np.arange(10) - 4.5) / np.arange(10).std())
    np.testing.assert_array_equal(x[0, :, 1], np.zeros(10))  # centred, not divided by 0


def test_standard_normalization_of_a_large_offset_keeps_the_small_spread():
    # Values near 1e9 with unit spread: each running-mean update in plain doubles rounds at
    # ~1e-7 and the errors add up over the steps (3e-6 here before the core shifted the data).
    s = 1e9 + np.random.default_rng(0).standard_normal(10_000)
    [(x, _)] = collect(Feeder(s, window=1, batch_size=10_000, normalize="standard", output="numpy"))
    np.testing.assert_allclose(x[:, 0], (s - s.mean()) / s.std(), rtol=0, atol=1e-8)


def test_check_finite_skip_drops_exactly_the_windows_touching_a_nan():
    s = np.arange(20, dtype=np.float64)
    s[7] = np.nan
    s[18] = np.inf
    f = Feeder(s, window=3, horizon=1, batch_size=100, check_finite="skip", output="numpy")
    ((x, y),) = list(f)
    # Inputs t..t+2 and target t+3: step 7 rules out starts 4-7, step 18 starts 15 and 16.
    want = [t for t in range(17) if t not in (4, 5, 6, 7, 15, 16)]
    assert x[:, 0].tolist() == want and y[:, 0].tolist() == [t + 3 for t in want]
    assert f.skipped_samples == 6 and f.num_samples == len(want)


def test_check_finite_skip_drops_sequences_and_their_labels():
    seqs = [np.array([1.0, 2.0]), np.array([np.nan]), np.array([3.0]), np.array([4.0, 5.0])]
    labels = np.array([0.0, 1.0, 2.0, np.inf])
    f = Feeder(seqs, window=None, targets=labels, batch_size=4, check_finite="skip", output="numpy")
    (batch,) = list(f)
    np.testing.assert_array_equal(batch.x, [[1.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(batch.y, [0.0, 2.0])
    assert f.skipped_samples == 2


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_large_windows_copy_exactly_at_any_alignment(dtype):
    # Windows of 16 KiB and more take the streaming-store copy; odd row sizes put the
    # destination at every alignment and leave a ragged tail.
    rng = np.random.default_rng(3)
    s = rng.integers(-100, 100, size=(40, 4099)).astype(dtype)
    f = Feeder(s, window=5, horizon=1, batch_size=3, shuffle=True, output="numpy")
    assert_same_batches(collect(f), reference.batches(s, window=5, horizon=1, batch_size=3, shuffle=True))
