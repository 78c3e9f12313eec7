"""fastfeed.reference's forecasting options for windows, against hand-written expectations:
per-series ranges, target_shift, covariates/known/static, index fields, per-field
normalisation, per-window scaling and missing values (check_finite "skip" and "mask")."""

from __future__ import annotations

import numpy as np
import pytest

from fastfeed import reference
from fastfeed.reference import normalization_stats, series_range, window_batches

T, F = True, False
NAN, INF = np.nan, np.inf


def one_batch(source, **kw):
    """The only batch of an epoch (batch_size large enough for every sample)."""
    kw.setdefault("batch_size", 100)
    [batch] = window_batches(source, **kw)
    return batch


def same(got: np.ndarray, want, dtype=None) -> None:
    want = np.asarray(want, dtype=dtype if dtype is not None else got.dtype)
    assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_array_equal(got, want)


def close(got: np.ndarray, want, dtype=None) -> None:
    want = np.asarray(want, dtype=np.float64)
    if dtype is not None:
        assert got.dtype == np.dtype(dtype), f"dtype {got.dtype} != {dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-12, atol=1e-12)


# ----- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "start", "end", "want"),
    [
        (10, 0, None, (0, 10)),
        (10, -3, None, (7, 10)),
        (10, 2, -2, (2, 8)),
        (5, -8, 20, (0, 5)),  # clipped into [0, T]
        (5, 7, None, (5, 5)),
        (5, 0, -7, (0, 0)),
        (4, 1, 3, (1, 3)),
    ],
)
def test_series_range_follows_python_slicing(length, start, end, want):
    assert series_range(length, start, end) == want


def test_negative_indices_count_from_each_series_end():
    a = np.arange(6.0)  # lo, hi = 2, 5: only start 2 (reads 2, 3 and target 4)
    b = np.arange(10.0, 14.0)  # lo, hi = 0, 3: only start 0 (reads 10, 11 and target 12)
    got = one_batch([a, b], window=2, horizon=1, start_index=-4, end_index=-1, with_index=True)
    same(got["x"], [[2, 3], [10, 11]])
    same(got["y"], [[4], [12]])
    same(got["series"], [0, 1], np.int64)
    same(got["start"], [2, 0], np.int64)
    assert set(got) == {"x", "y", "series", "start"}


def test_indices_past_a_series_end_stand_for_that_end():
    a, b = np.arange(3.0), np.arange(10.0, 15.0)
    got = one_batch([a, b], window=3, start_index=-100, end_index=100, with_index=True)
    same(got["x"], [[0, 1, 2], [10, 11, 12], [11, 12, 13], [12, 13, 14]])
    same(got["series"], [0, 1, 1, 1], np.int64)
    same(got["start"], [0, 0, 1, 2], np.int64)
    assert "y" not in got


def test_starts_run_from_lo_in_strides():
    got = one_batch(np.arange(20.0), window=2, horizon=1, stride=3, start_index=-11, end_index=-2, with_index=True)
    # lo, hi = 9, 18: starts 9, 12, 15 (15 + 2 <= 17)
    same(got["start"], [9, 12, 15], np.int64)
    same(got["y"], [[11], [14], [17]])


# ----- targets -----------------------------------------------------------------------------


def test_target_shift_gives_the_window_shifted_later():
    got = one_batch(np.arange(8.0), window=3, target_shift=2)
    # starts t with t + (3 - 1 + 2) <= 7: 0..3; y[j] = t + j + 2
    same(got["x"], [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]])
    same(got["y"], [[2, 3, 4], [3, 4, 5], [4, 5, 6], [5, 6, 7]])


def test_target_shift_with_sampling_rate_and_known():
    src = np.arange(12.0)
    known = 100 + np.arange(12.0)
    got = one_batch(src, window=2, target_shift=1, sampling_rate=2, stride=3, known=known)
    # t + (2 - 1 + 1) * 2 <= 11: t <= 7, so starts 0, 3, 6
    same(got["x"], [[0, 2], [3, 5], [6, 8]])
    same(got["y"], [[2, 4], [5, 7], [8, 10]])
    same(got["known"], [[100, 102, 104], [103, 105, 107], [106, 108, 110]])  # w + k = 3 steps


def test_target_shift_of_explicit_targets_keeps_their_integer_dtype():
    tokens = np.array([5, 6, 7, 8, 9], dtype=np.int32)
    labels = np.array([50, 60, 70, 80, 90], dtype=np.int64)
    got = one_batch(tokens, window=2, target_shift=1, targets=labels, dtype="float32")
    same(got["x"], [[5, 6], [6, 7], [7, 8]], np.float32)
    same(got["y"], [[60, 70], [70, 80], [80, 90]], np.int64)


def test_target_shift_and_horizon_exclude_each_other():
    with pytest.raises(ValueError, match="target_shift"):
        window_batches(np.arange(8.0), window=2, horizon=1, target_shift=1)


def test_targets_without_horizon_mean_horizon_one():
    tgt = np.array([[0.5], [1.5], [2.5], [3.5]])
    got = one_batch(np.arange(4.0), window=2, targets=tgt)
    same(got["y"], [[[2.5]], [[3.5]]])


# ----- covariates, known, static, index ----------------------------------------------------------


def test_covariates_and_known_with_horizon():
    src = np.arange(6.0)
    cov = np.array([[1, 10], [2, 20], [3, 30], [4, 40], [5, 50], [6, 60]], dtype=np.float64)
    known = 0.5 + 10 * np.arange(6.0)
    got = one_batch(src, window=2, horizon=2, covariates=cov, known=known)
    # t + (2 - 1 + 2) <= 5: starts 0, 1, 2
    same(got["x"], [[0, 1], [1, 2], [2, 3]])
    same(got["y"], [[2, 3], [3, 4], [4, 5]])
    same(got["covariates"], [[[1, 10], [2, 20]], [[2, 20], [3, 30]], [[3, 30], [4, 40]]])
    same(got["known"], [[0.5, 10.5, 20.5, 30.5], [10.5, 20.5, 30.5, 40.5], [20.5, 30.5, 40.5, 50.5]])


def test_known_without_targets_covers_the_window_only():
    got = one_batch(np.arange(4.0), window=3, known=np.arange(40.0, 44.0))
    same(got["known"], [[40, 41, 42], [41, 42, 43]])


def test_static_rows_follow_the_series():
    seqs = [np.arange(3.0), np.arange(10.0, 11.0), np.arange(20.0, 22.0)]  # series 1 is too short
    static = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int16)
    got = one_batch(seqs, window=2, static=static, with_index=True)
    same(got["x"], [[0, 1], [1, 2], [20, 21]])
    same(got["static"], [[1, 2], [1, 2], [5, 6]], np.int16)
    same(got["series"], [0, 0, 2], np.int64)
    same(got["start"], [0, 1, 0], np.int64)


def test_static_of_a_single_series_is_its_one_row():
    got = one_batch(np.arange(3.0), window=2, static=np.array([[7.0, 8.0]]))
    same(got["static"], [[7, 8], [7, 8]])


def test_fields_describe_the_same_samples_when_shuffled_and_shared():
    lengths = [9, 4, 13]
    seqs = [100.0 * s + np.arange(n) for s, n in enumerate(lengths)]
    cov = [-v for v in seqs]
    known = [v + 0.5 for v in seqs]
    static = np.array([[0], [1], [2]], dtype=np.int64)
    out = window_batches(
        seqs,
        window=3,
        horizon=1,
        covariates=cov,
        known=known,
        static=static,
        with_index=True,
        batch_size=4,
        shuffle=True,
        seed=5,
        rank=1,
        world_size=2,
        steps_per_epoch=3,
        epoch=2,
    )
    assert len(out) == 3
    for b in out:
        first = 100.0 * b["series"] + b["start"]
        same(b["x"][:, 0], first)
        same(b["y"][:, 0], first + 3)
        same(b["covariates"][:, 0], -first)
        same(b["known"][:, 3], first + 3.5)
        same(b["static"][:, 0], b["series"])
    plain = reference.batches(seqs, window=3, horizon=1, batch_size=4, shuffle=True, seed=5, rank=1, world_size=2)
    full = window_batches(seqs, window=3, horizon=1, batch_size=4, shuffle=True, seed=5, rank=1, world_size=2)
    assert len(plain) == len(full)
    for (x, y), d in zip(plain, full):
        same(x, d["x"])
        same(y, d["y"])


# ----- normalisation ---------------------------------------------------------------------


def test_standard_statistics_use_only_the_range():
    src = np.array([100.0, 1.0, 3.0, 1.0, 3.0, 100.0])  # steps 1..4: mean 2, std 1
    got = one_batch(src, window=4, start_index=1, end_index=-1, normalize="standard")
    close(got["x"], [[-1, 1, -1, 1]], np.float64)
    (mean, std) = normalization_stats(src, "standard", start_index=1, end_index=-1)["x"]
    same(mean, 2.0, np.float64)
    same(std, 1.0, np.float64)


def test_standard_statistics_per_value_over_finite_values():
    # feature 0: finite values 1, 3 (mean 2, std 1); feature 1: 10, 30 (mean 20, std 10);
    # feature 2: constant (std 0 -> 1); feature 3: no finite value (mean 0, std 1).
    cov = np.array(
        [[1, 10, 4, NAN], [NAN, 30, 4, INF], [3, NAN, 4, NAN], [NAN, NAN, 4, -INF]],
    )
    stats = normalization_stats(np.arange(4.0), {"covariates": "standard"}, covariates=cov, check_finite="mask")
    assert set(stats) == {"covariates"}
    same(stats["covariates"][0], [2, 20, 4, 0], np.float64)
    same(stats["covariates"][1], [1, 10, 1, 1], np.float64)
    got = one_batch(np.arange(4.0), window=4, covariates=cov, normalize={"covariates": "standard"}, check_finite="mask")
    same(got["x"], [[0, 1, 2, 3]])  # x is left out of the dict: not normalised
    close(got["covariates"], [[[-1, -1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]], np.float64)
    same(got["observed"], [[T, T, T, T]])


def test_standard_statistics_over_many_series_ranges():
    # end_index=-1 leaves each series' last step out: values 1, 3 and 5, 7 -> mean 4, std sqrt(5)
    seqs = [np.array([1.0, 3.0, NAN]), np.array([5.0, 7.0, 1000.0])]
    [mean, std] = normalization_stats(seqs, "standard", end_index=-1)["x"]
    same(mean, 4.0, np.float64)
    close(std, np.sqrt(5.0))


def test_normalize_string_applies_to_x_covariates_and_known_each_with_its_own_stats():
    src = np.array([1.0, 3.0, 1.0, 3.0])  # mean 2, std 1
    cov = np.array([[0.0], [10.0], [0.0], [10.0]])  # mean 5, std 5
    known = np.array([4.0, 4.0, 4.0, 4.0])  # mean 4, std 0 -> 1
    got = one_batch(src, window=2, horizon=1, covariates=cov, known=known, normalize="standard")
    close(got["x"], [[-1, 1], [1, -1]], np.float64)
    close(got["y"], [[-1], [1]], np.float64)  # targets from the source use x's statistics
    close(got["covariates"], [[[-1], [1]], [[1], [-1]]], np.float64)
    close(got["known"], [[0, 0, 0], [0, 0, 0]], np.float64)
    stats = normalization_stats(src, "standard", covariates=cov, known=known)
    assert set(stats) == {"x", "covariates", "known"}
    same(stats["covariates"][0], [5.0])
    same(stats["known"][1], 1.0, np.float64)


def test_normalize_dict_with_pairs_and_explicit_targets_never_normalised():
    src = np.array([[2.0, 4.0], [6.0, 8.0], [10.0, 12.0]])
    tgt = np.array([1.0, 2.0, 3.0])
    known = np.array([[1.0], [3.0], [5.0]])
    got = one_batch(
        src,
        window=2,
        targets=tgt,
        known=known,
        normalize={"x": (2.0, [2.0, 4.0]), "known": ([1.0], 2.0), "covariates": None},
        dtype="float32",
    )
    close(got["x"], [[[0, 0.5], [2, 1.5]]], np.float32)
    same(got["y"], [[3]], np.float32)
    close(got["known"], [[[0], [1], [2]]], np.float32)


def test_normalize_pair_applies_to_x_only():
    src = np.array([2.0, 4.0, 6.0])
    cov = np.array([2.0, 4.0, 6.0])
    got = one_batch(src, window=3, covariates=cov, normalize=(2.0, 2.0))
    close(got["x"], [[0, 1, 2]])
    same(got["covariates"], [[2, 4, 6]])


def test_non_finite_value_in_a_standardised_field_names_field_series_and_step():
    seqs = [np.arange(5.0), np.array([0.0, 1.0, 2.0, NAN, 4.0])]
    for check in (False, "raise"):
        with pytest.raises(ValueError, match=r"x.*series 1.*step 3"):
            window_batches(seqs, window=2, normalize="standard", check_finite=check)
    cov = [np.zeros(5), np.array([0.0, INF, 0.0, 0.0, 0.0])]
    with pytest.raises(ValueError, match=r"covariates.*series 1.*step 1"):
        window_batches(seqs, window=2, covariates=cov, normalize={"covariates": "standard"})
    # Outside [lo, hi) a NaN is never read by the statistics; a field not standardised is not checked.
    window_batches(seqs, window=2, end_index=3, normalize="standard")
    window_batches(seqs, window=2, covariates=cov, normalize={"x": (0.0, 1.0)})


# ----- scale -------------------------------------------------------------------------------


def test_scale_mean_divides_each_window_and_feature():
    src = np.array([[2.0, 0.0], [-4.0, 0.0], [6.0, 5.0], [NAN, 1.0], [1.0, 2.0]])
    got = one_batch(src, window=2, horizon=1, stride=2, scale="mean")
    # window 0: mean |v| = 3 and 0 -> 1; window 2: 6 (the NaN is not counted) and 3
    close(got["x"], [[[2 / 3, 0], [-4 / 3, 0]], [[1, 5 / 3], [NAN, 1 / 3]]], np.float64)
    close(got["y"], [[[2, 5]], [[1 / 6, 2 / 3]]], np.float64)
    same(got["scale"], [[3, 1], [6, 3]], np.float32)
    assert "loc" not in got


def test_scale_standard_centres_and_divides():
    src = np.array([0.0, 4.0, 6.0, 6.0, 10.0])
    got = one_batch(src, window=2, horizon=1, stride=2, scale="standard")
    # window 0: loc 2, scale 2; window 2: loc 6, scale 0 -> 1
    close(got["x"], [[-1, 1], [0, 0]], np.float64)
    close(got["y"], [[2], [4]], np.float64)
    same(got["scale"], [2, 1], np.float32)
    same(got["loc"], [2, 6], np.float32)
    explicit = one_batch(src, window=2, stride=2, targets=np.array([0.0, 0.0, 7.0, 0.0, 9.0]), scale="standard")
    same(explicit["y"], [[7], [9]])  # explicit targets are not scaled


def test_scale_of_a_window_without_finite_value_is_one_and_loc_zero():
    got = one_batch(np.array([NAN, NAN, 3.0]), window=2, horizon=1, scale="standard")
    same(got["scale"], [1], np.float32)
    same(got["loc"], [0], np.float32)
    close(got["y"], [[3]])
    assert np.isnan(got["x"]).all()


def test_scale_excludes_normalize_on_x():
    with pytest.raises(ValueError, match="scale"):
        window_batches(np.arange(5.0), window=2, scale="mean", normalize="standard")
    cov = np.arange(5.0)
    window_batches(np.arange(5.0), window=2, scale="mean", covariates=cov, normalize={"covariates": "standard"})


# ----- missing values --------------------------------------------------------------------


def test_mask_zeroes_non_finite_values_and_marks_them():
    src = np.array([1.0, NAN, 3.0, 4.0, INF])
    cov = np.array([[1.0], [2.0], [NAN], [4.0], [5.0]])
    static = np.array([[NAN, 7.0]])
    got = one_batch(src, window=2, horizon=1, covariates=cov, static=static, check_finite="mask")
    same(got["x"], [[1, 0], [0, 3], [3, 4]])
    same(got["y"], [[3], [4], [0]])
    same(got["observed"], [[T, F], [F, T], [T, T]])
    same(got["y_observed"], [[T], [T], [F]])
    same(got["covariates"], [[[1], [2]], [[2], [0]], [[0], [4]]])
    same(got["static"], [[0, 7], [0, 7], [0, 7]])


def test_mask_after_standardising_with_finite_statistics():
    src = np.array([1.0, NAN, 3.0, INF])  # finite values 1, 3: mean 2, std 1
    got = one_batch(src, window=2, horizon=1, normalize="standard", check_finite="mask", dtype="float32")
    same(got["x"], [[-1, 0], [0, 1]], np.float32)
    same(got["y"], [[1], [0]], np.float32)
    same(got["observed"], [[T, F], [F, T]])
    same(got["y_observed"], [[T], [F]])


def test_mask_without_targets_has_no_y_observed():
    got = one_batch(np.array([1, 2, 3], dtype=np.int8), window=2, check_finite="mask")
    same(got["observed"], [[T, T], [T, T]])
    assert "y" not in got and "y_observed" not in got


def test_skip_drops_samples_touched_by_covariates_known_or_static():
    src = np.arange(6.0)
    cov = np.array([0.0, 0.0, NAN, 0.0, 0.0, 0.0])  # read by starts 1 and 2
    got = one_batch(src, window=2, horizon=1, covariates=cov, check_finite="skip", with_index=True)
    same(got["start"], [0, 3], np.int64)
    same(got["x"], [[0, 1], [3, 4]])
    known = np.array([0.0, 0.0, 0.0, 0.0, 0.0, NAN])  # known reads t..t+2: start 3 reads step 5
    got = one_batch(src, window=2, horizon=1, covariates=cov, known=known, check_finite="skip", with_index=True)
    same(got["start"], [0], np.int64)
    seqs = [np.arange(3.0), np.arange(3.0)]
    got = one_batch(seqs, window=2, static=np.array([[1.0], [NAN]]), check_finite="skip", with_index=True)
    same(got["series"], [0, 0], np.int64)


def test_skip_keeps_samples_whose_reads_are_finite_under_target_shift():
    src = np.array([0.0, 1.0, 2.0, 3.0, NAN, 5.0])
    got = one_batch(src, window=2, target_shift=1, check_finite="skip", with_index=True)
    # starts 0..3; start t reads t..t+2: steps 4 rules out starts 2 and 3
    same(got["start"], [0, 1], np.int64)
    same(got["y"], [[1, 2], [2, 3]])


# ----- dtypes ------------------------------------------------------------------------------


def test_integer_covariates_keep_their_dtype_unless_normalised():
    src = np.arange(4.0, dtype=np.float64)
    cov = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], dtype=np.int32)
    got = one_batch(src, window=2, covariates=cov, dtype="float16")
    same(got["x"], [[0, 1], [1, 2], [2, 3]], np.float16)
    same(got["covariates"], [[[1, 2], [3, 4]], [[3, 4], [5, 6]], [[5, 6], [7, 8]]], np.int32)
    normed = one_batch(src, window=4, covariates=cov, normalize={"covariates": (1.0, 2.0)})
    same(normed["x"], [[0, 1, 2, 3]], np.float64)
    same(normed["covariates"], [[[0, 0.5], [1, 1.5], [2, 2.5], [3, 3.5]]], np.float32)
    typed = one_batch(src, window=4, covariates=cov, normalize={"covariates": (1.0, 2.0)}, dtype="float64")
    same(typed["covariates"], [[[0, 0.5], [1, 1.5], [2, 2.5], [3, 3.5]]], np.float64)


def test_floating_fields_follow_dtype_and_static_integers_do_not():
    src = np.arange(3, dtype=np.int16)
    known = np.array([0.5, 1.5, 2.5], dtype=np.float64)
    static = np.array([[3]], dtype=np.int64)
    got = one_batch(src, window=3, known=known, static=static, dtype="float32")
    same(got["x"], [[0, 1, 2]], np.float32)
    same(got["known"], [[0.5, 1.5, 2.5]], np.float32)
    same(got["static"], [[3]], np.int64)
    plain = one_batch(src, window=3, known=known.astype(np.float32), static=static.astype(np.float16))
    same(plain["x"], [[0, 1, 2]], np.int16)
    same(plain["known"], [[0.5, 1.5, 2.5]], np.float32)
    same(plain["static"], [[3]], np.float16)


def test_normalised_float16_known_keeps_its_dtype_and_bfloat16_comes_as_bits():
    known = np.array([1.0, 3.0, 1.0], dtype=np.float16)
    got = one_batch(np.arange(3.0), window=3, known=known, normalize={"known": (1.0, 1.0)})
    same(got["known"], [[0, 2, 0]], np.float16)
    bits = one_batch(np.arange(3.0), window=3, covariates=np.array([1.0, -2.0, 0.0]), dtype="bfloat16")
    same(bits["covariates"], [[0x3F80, 0xC000, 0x0000]], np.uint16)
    same(bits["x"], [[0x0000, 0x3F80, 0x4000]], np.uint16)


def test_standard_statistics_skip_empty_series_and_ranges():
    seqs = [np.array([1.0, 3.0]), np.zeros(0), np.array([9.0])]
    [mean, std] = normalization_stats(seqs, "standard", end_index=2)["x"]
    same(mean, 4.0 + 1.0 / 3.0, np.float64)
    close(std, np.std([1.0, 3.0, 9.0]))
    [mean, std] = normalization_stats(seqs, "standard", start_index=5)["x"]  # no step at all
    same(mean, 0.0, np.float64)
    same(std, 1.0, np.float64)
