"""Bad input gets a clear error naming the argument or file and the numbers involved."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from fastfeed import Feeder, FeedError, FormatError

S = np.arange(100, dtype=np.float32)


@pytest.mark.parametrize("arg", ["window", "stride", "sampling_rate", "batch_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes(arg, value):
    kwargs = dict(window=5)
    kwargs[arg] = value
    with pytest.raises(ValueError, match=rf"{arg} must be >= 1, got {value}"):
        Feeder(S, **kwargs)


def test_non_integer_sizes():
    with pytest.raises(ValueError, match=r"window must be an integer, got 2\.5"):
        Feeder(S, window=2.5)
    with pytest.raises(ValueError, match="batch_size must be an integer, got True"):
        Feeder(S, window=2, batch_size=True)


def test_negative_horizon():
    with pytest.raises(ValueError, match="horizon must be >= 0, got -1"):
        Feeder(S, window=5, horizon=-1)


def test_window_longer_than_series_names_the_numbers():
    with pytest.raises(ValueError, match=r"spans 101 steps, longer than the series \(100 steps\)"):
        Feeder(S, window=101)
    with pytest.raises(ValueError, match=r"window of 50 steps with sampling_rate=3 .* spans 148 steps"):
        Feeder(S, window=50, sampling_rate=3)


@pytest.mark.parametrize(
    "start,end,msg",
    [
        (100, None, r"start_index=100 is out of range for a series of 100 steps"),
        (0, 101, r"end_index=101 is out of range for a series of 100 steps"),
        (50, 50, r"end_index=50 must be after start_index=50: they select steps \[50, 50\)"),
        (-101, None, r"start_index=-101 is out of range for a series of 100 steps \(from -100 to 99\)"),
        (0, -101, r"end_index=-101 is out of range for a series of 100 steps"),
        (-5, -10, r"end_index=-10 must be after start_index=-5: they select steps \[95, 95\)"),
        (90, None, r"spans 20 steps, longer than steps \[90, 100\) \(10 steps\)"),
        (-10, None, r"spans 20 steps, longer than steps \[90, 100\) \(10 steps\) selected by start_index=-10"),
    ],
)
def test_start_end_index_out_of_range(start, end, msg):
    with pytest.raises(ValueError, match=msg):
        Feeder(S, window=20, start_index=start, end_index=end)


def test_ranges_on_a_list_that_leave_no_window_name_the_numbers():
    with pytest.raises(
        ValueError,
        match=r"spans 20 steps, longer than every series' range of start_index=-30, end_index=-15 "
        r"\(the longest range holds 15 steps; the series have 40 to 100\)",
    ):
        Feeder([S, S[:40]], window=20, start_index=-30, end_index=-15)


def test_non_contiguous_array_is_copied_once_and_logged(caplog):
    # Once refused; now copied once into a C-contiguous array, logged at INFO (tests/test_sources_copy.py).
    with caplog.at_level("INFO", logger="fastfeed"):
        assert len(Feeder(S.astype(np.float64)[::2], window=2)) == 49
        assert len(Feeder([S, np.ones((10, 4), np.float32)[:, 1]], window=2)) == 99 + 9
    text = caplog.text
    assert "source is not C-contiguous (shape (50,), strides (16,), float64); copied once" in text
    assert "source[1] is not C-contiguous (shape (10,), strides (16,), float32); copied once" in text


def test_misaligned_array_is_copied_for_what_it_is(caplog):
    raw = np.zeros(8 * 20 + 1, np.uint8)
    odd = np.frombuffer(raw.data, np.float64, offset=1, count=20)  # C-contiguous, not aligned
    with caplog.at_level("INFO", logger="fastfeed"):
        assert len(Feeder(odd, window=2)) == 19
    assert re.search(r"source is not aligned .* 8-byte float64 elements\); copied once .* of 160 B", caplog.text)
    assert len(Feeder(odd.copy(), window=2)) == 19


def test_targets_of_another_kind_than_the_source():
    s = np.arange(10.0)
    with pytest.raises(
        ValueError, match=r"the source is one series \(an array or \.npy file\), targets are a list of 1"
    ):
        Feeder(s, window=3, targets=[s])
    with pytest.raises(ValueError, match=r"the source is a list of 2 series, targets are a list of 1 series"):
        Feeder([s, s], window=3, targets=[s])


def test_object_and_unsupported_arrays():
    with pytest.raises(ValueError, match="object array"):
        Feeder(np.array([1, "a", None], dtype=object), window=1)
    with pytest.raises(ValueError, match="unsupported dtype complex128"):
        Feeder(np.ones(5, np.complex128), window=1)
    with pytest.raises(ValueError, match="unsupported dtype >f4"):
        Feeder(np.ones(5, ">f4"), window=1)


def test_empty_inputs():
    with pytest.raises(ValueError, match=r"source is empty \(shape \(0, 3\)\)"):
        Feeder(np.zeros((0, 3)), window=1)
    with pytest.raises(ValueError, match="empty list"):
        Feeder([], window=1)


def test_mismatched_series():
    with pytest.raises(ValueError, match=r"source\[1\] has dtype float64, but source\[0\] has float32"):
        Feeder([S, S.astype(np.float64)], window=2)
    with pytest.raises(ValueError, match=r"source\[2\] has feature shape \(2,\), but source\[0\] has \(3,\)"):
        Feeder([np.ones((5, 3)), np.ones((5, 3)), np.ones((5, 2))], window=2)


def test_misaligned_targets():
    with pytest.raises(ValueError, match="targets have 99 steps but the source has 100"):
        Feeder(S, targets=S[:99], window=2)
    with pytest.raises(ValueError, match="targets of series 1 have 4 steps but the source has 5"):
        Feeder([S[:5], S[:5]], targets=[S[:5], S[:4]], window=2)
    with pytest.raises(ValueError, match="horizon=0 with targets"):
        Feeder(S, targets=S, horizon=0, window=2)


def test_no_sample_at_all_says_why():
    with pytest.raises(
        ValueError, match=r"spans 6 steps, longer than every series' range \(the longest range holds 4 steps"
    ):
        Feeder([S[:3], S[:4]], window=5, horizon=1)
    with pytest.raises(
        ValueError, match="drop_last=True with batch_size=50 leaves no batch: there are only 10 samples"
    ):
        Feeder(S[:10], window=1, batch_size=50, drop_last=True)


def test_bad_options():
    with pytest.raises(ValueError, match="output must be 'torch' or 'numpy', got 'jax'"):
        Feeder(S, window=2, output="jax")
    with pytest.raises(ValueError, match="dtype='complex64' is not supported"):
        Feeder(S, window=2, dtype="complex64")
    with pytest.raises(ValueError, match="bfloat16 needs output='torch'"):
        Feeder(S, window=2, dtype="bfloat16", output="numpy")
    with pytest.raises(ValueError, match="normalize needs a floating output dtype, got dtype=int32"):
        Feeder(S, window=2, dtype="int32", normalize="standard")
    with pytest.raises(ValueError, match="every std must be > 0"):
        Feeder(S, window=2, normalize=(0.0, 0.0))
    with pytest.raises(ValueError, match=r"must broadcast to the feature shape \(\)"):
        Feeder(S, window=2, normalize=([1.0, 2.0], 1.0))


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.npy")
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nope\.npy") as info:
        Feeder(path, window=2)
    assert isinstance(info.value, FormatError) and isinstance(info.value, ValueError)


def write_npy(path, arr, **kw):
    np.save(path, arr, **kw)
    return str(path)


def test_truncated_npy(tmp_path):
    path = write_npy(tmp_path / "t.npy", np.arange(1000, dtype=np.float64))
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size - 8)
    with pytest.raises(
        FormatError, match=r"t\.npy: truncated \.npy data: the shape needs 8000 bytes of values but the file holds 7992"
    ):
        Feeder(path, window=2)
    with open(path, "r+b") as fh:
        fh.truncate(40)
    with pytest.raises(FormatError, match=r"t\.npy: truncated \.npy header"):
        Feeder(path, window=2)


def test_random_bytes_file(tmp_path):
    path = tmp_path / "junk.npy"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(FormatError, match=r"junk\.npy: not a \.npy file"):
        Feeder(str(path), window=2)
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match=r"empty\.npy: not a \.npy file"):
        Feeder(str(empty), window=2)


def test_fortran_order_and_object_npy_refused(tmp_path):
    path = write_npy(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 3))))
    with pytest.raises(FormatError, match=r"f\.npy: Fortran-ordered arrays are not supported"):
        Feeder(path, window=2)
    path = write_npy(tmp_path / "o.npy", np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match=r"o\.npy: object arrays"):
        Feeder(path, window=1)
    path = write_npy(tmp_path / "b.npy", np.ones(4, ">f8"))
    with pytest.raises(FormatError, match=r"b\.npy: big-endian dtype '>f8'"):
        Feeder(path, window=1)
    path = write_npy(tmp_path / "s.npy", np.zeros(3, dtype=[("a", "<f4")]))
    with pytest.raises(FormatError, match=r"s\.npy: structured dtypes"):
        Feeder(path, window=1)


def test_directory_that_is_no_dataset_is_refused_clearly(tmp_path):
    with pytest.raises(FormatError, match=r"is a directory but not a fastfeed dataset: .*header\.json is missing"):
        Feeder(str(tmp_path), window=1)


def test_error_in_a_worker_surfaces_at_that_batch_as_feed_error():
    s = np.arange(200, dtype=np.float64)
    s[123] = np.inf
    f = Feeder(s, window=4, horizon=1, batch_size=10, check_finite="raise", output="numpy", num_threads=2, prefetch=2)
    seen = []
    with pytest.raises(FeedError, match=r"batch 11 .* sample 119 .* in the targets of series 0 at step 123"):
        for x, _ in f:
            seen.append(x[0, 0])
    assert seen == [float(10 * i) for i in range(11)]  # every batch before the bad one arrived


def test_check_finite_names_series_and_step_in_inputs():
    a, b = np.zeros(10), np.zeros(10)
    b[6] = np.nan
    f = Feeder([a, b], window=3, batch_size=100, check_finite="raise", output="numpy")
    with pytest.raises(FeedError, match=r"in the inputs of series 1 at step 6"):
        list(f)


def test_check_finite_names_the_sequence_of_a_bad_label_or_step():
    seqs = [np.zeros(3), np.zeros(4), np.array([0.0, 0.0, np.inf])]
    labels = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
    f = Feeder(seqs[:2], window=None, targets=labels[:2], batch_size=1, check_finite="raise", output="numpy")
    with pytest.raises(FeedError, match=r"in the label of sequence 1, element 1$"):  # a label has no steps
        list(f)
    f = Feeder(seqs, window=None, batch_size=1, check_finite="raise", output="numpy")
    with pytest.raises(FeedError, match=r"in the inputs of sequence 2 at step 2, element 0"):
        list(f)


def test_an_empty_npy_file_is_named(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match=r"source \(.*z\.npy\) is empty \(shape \(0, 3\)\)"):
        Feeder(str(tmp_path / "z.npy"), window=2)
    with pytest.raises(ValueError, match=r"source \(.*z\.npy\) is empty"):
        Feeder(tmp_path / "z.npy", window=2)  # a PathLike too


def test_build_info_and_cuda_available_agree():
    import fastfeed

    info = fastfeed.build_info()
    assert isinstance(info["cuda"], bool)
    assert info["fastfeed"] == fastfeed.__version__ and info["cxx_standard"] >= 201703
    assert isinstance(info["cuda_runtime"], int) and (info["cuda_runtime"] > 0) == info["cuda"]
    assert ("nvcc" in info and "cuda_architectures" in info) == info["cuda"]
    if not info["cuda"]:
        assert fastfeed.cuda_available() is False
        with pytest.raises(ValueError, match="no CUDA support"):
            Feeder(S, window=2, device="cuda")
    elif not fastfeed.cuda_available():  # compiled with nvcc, but no driver or GPU here
        with pytest.raises(ValueError, match="no CUDA device is usable here"):
            Feeder(S, window=2, device="cuda:0")
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda\\[:n\\]', got 'tpu'"):
        Feeder(S, window=2, device="tpu")
    with pytest.raises(ValueError, match="device_cache=True needs a CUDA device"):
        Feeder(S, window=2, device_cache=True)


SEQS = [np.arange(4.0), np.arange(3.0)]


@pytest.mark.parametrize(
    "arg, value, source, extra",
    [
        ("shuffle", "yes", S, dict(window=5)),
        ("shuffle", "no", S, dict(window=5)),
        ("drop_last", "no", S, dict(window=5)),
        ("drop_last", 1, S, dict(window=5)),
        ("progress", "yes", S, dict(window=5)),
        ("device_cache", "no", S, dict(window=5)),
        ("bucket", "no", SEQS, dict(window=None)),
        ("pack", 1, SEQS, dict(window=None, max_len=4)),
    ],
)
def test_booleans_must_be_booleans(arg, value, source, extra):
    # A string is never read as True: shuffle="no" must not shuffle, it must be refused.
    with pytest.raises(ValueError, match=rf"{arg} must be True or False, got {value!r}"):
        Feeder(source, **extra, **{arg: value})


def test_numpy_booleans_are_booleans():
    f = Feeder(S, window=5, shuffle=np.bool_(True), drop_last=np.bool_(False), output="numpy")
    assert f.shuffle is True and f.drop_last is False


def test_pack_takes_true_false_or_best_fit():
    with pytest.raises(ValueError, match=r"pack must be True .*'best_fit' .* or False, got 'first_fit'"):
        Feeder(SEQS, window=None, pack="first_fit", max_len=4)
    with pytest.raises(ValueError, match=r"pack='best_fit' needs max_len"):
        Feeder(SEQS, window=None, pack="best_fit")


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_seeds_outside_the_unsigned_64_bit_range_are_refused(seed):
    with pytest.raises(ValueError, match=rf"seed must be (>= 0|<= {2**64 - 1}), got {seed}"):
        Feeder(S, window=5, shuffle=True, seed=seed)


def test_the_largest_seed_is_a_seed_of_its_own():
    def starts(seed):
        return [
            int(w[0]) for b in Feeder(S, window=5, batch_size=8, shuffle=True, seed=seed, output="numpy") for w in b.x
        ]

    top, zero = starts(2**64 - 1), starts(0)
    assert sorted(top) == sorted(zero) == list(range(96)) and top != zero


def test_pad_value_that_an_integer_output_cannot_hold_names_pad_value():
    ints = [np.arange(4, dtype=np.int32), np.arange(2, dtype=np.int32)]
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"pad_value=.* does not fit the output dtype int32"):
            Feeder(ints, window=None, pad_value=bad)


@pytest.mark.parametrize("arg", ["num_threads", "prefetch"])
def test_thread_and_prefetch_counts_fit_the_core(arg):
    with pytest.raises(ValueError, match=rf"{arg} must be <= 2147483647, got 2147483648"):
        Feeder(S, window=5, **{arg: 2**31})


def test_check_finite_takes_numpy_booleans():
    assert Feeder(S, window=5, check_finite=np.True_).check_finite == "raise"
    assert Feeder(S, window=5, check_finite=np.False_).check_finite is False


@pytest.mark.parametrize(
    "source, kw, named",
    [
        (S, dict(window=4, batch_size=10**15), "batch_size=1000000000000000 with window=4"),
        (S, dict(window=4, batch_size=10**12, steps_per_epoch=5), "batch_size=1000000000000 with window=4"),
        ([np.arange(3), np.arange(5)], dict(window=None, max_len=2**40), "batch_size=1 with max_len=1099511627776"),
        ([np.arange(3), np.arange(5)], dict(window=None, pad_multiple=2**40), "pad_multiple=1099511627776"),
        ([np.arange(3), np.arange(5)], dict(window=None, pack=True, max_len=2**40), "max_len=1099511627776"),
    ],
)
def test_batches_larger_than_the_memory_budget_are_refused_before_anything_is_allocated(source, kw, named):
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(named)}.* makes batches of [0-9,]+ bytes, more than the "
        r"[0-9,]+ bytes a Feeder may hold on this machine",
    ):
        Feeder(source, output="numpy", **kw)


def test_a_prefetch_deeper_than_the_memory_budget_is_refused():
    big = np.zeros(100_000, np.float32)
    with pytest.raises(
        ValueError,
        match=r"prefetch=1000000 blocks of [0-9,]+ bytes would hold [0-9,]+ bytes, more "
        r"than the [0-9,]+ bytes a Feeder may hold.*lower prefetch \(at most \d+",
    ):
        Feeder(big, window=100, batch_size=1000, prefetch=10**6)


def test_more_threads_than_four_per_core_are_clamped():
    f = Feeder(S, window=5, batch_size=4, num_threads=10**6, output="numpy")
    assert f.num_threads == 4 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    assert sum(len(b.x) for b in f) == 96


@pytest.mark.parametrize(
    "source, kw, name",
    [
        (S, dict(window=2**63), "window"),
        (S, dict(window=5, stride=2**64), "stride"),
        (S, dict(window=5, sampling_rate=2**63), "sampling_rate"),
        (S, dict(window=5, horizon=2**63), "horizon"),
        (S, dict(window=5, batch_size=2**63), "batch_size"),
        (S, dict(window=5, start_index=2**63), "start_index"),
        (S, dict(window=5, end_index=2**63), "end_index"),
        (S, dict(window=5, steps_per_epoch=2**63), "steps_per_epoch"),
        (S, dict(window=5, rank=0, world_size=2**63), "world_size"),
        (S, dict(window=5, prefetch=2**63), "prefetch"),
        (SEQS, dict(window=None, max_len=2**63), "max_len"),
        (SEQS, dict(window=None, pad_multiple=2**63), "pad_multiple"),
        (SEQS, dict(window=None, bucket=True, bucket_pool=2**63), "bucket_pool"),
    ],
)
def test_integers_beyond_the_core_are_value_errors_naming_the_argument(source, kw, name):
    with pytest.raises(ValueError, match=rf"^{name} must be <= \d+, got \d+$"):
        Feeder(source, **kw)
    with pytest.raises(ValueError, match=r"epoch must be <= \d+"):
        Feeder(S, window=5).set_epoch(2**63)
