"""Sources that are not C-contiguous NumPy arrays (pandas objects, Fortran order, strided and
misaligned views) are copied once into a C-contiguous array, logged at INFO with the copy's
size; a C-contiguous array is read in place, never copied, and logs nothing."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import numpy as np
import pytest

from fastfeed import Feeder, reference
from fastfeed.io.sources import as_series_array, as_table_array, load_source

from helpers import assert_same_batches, collect

KW = dict(window=4, horizon=1, batch_size=3)


def _copy_logs(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name == "fastfeed" and "copied once" in r.getMessage()]


def _loaded(obj, caplog, what="source"):
    """`load_source(obj)`'s arrays, with the copy messages it logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        ss = load_source(obj, what)
    return ss, _copy_logs(caplog)


def _misaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `a` whose data starts one byte past an aligned address."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    odd = np.frombuffer(raw.data, a.dtype, offset=1, count=a.size).reshape(a.shape)
    odd[...] = a
    assert odd.flags.c_contiguous and not odd.flags.aligned
    return odd


def _same_as_reference(obj, want_source, **kw):
    got = collect(Feeder(obj, output="numpy", **KW, **kw))
    assert_same_batches(got, reference.batches(want_source, **KW, **kw))


A = np.arange(300, dtype=np.float64).reshape(100, 3) * 0.5

# name -> (what is passed, its values as a C-contiguous array, how the copy's message starts and ends)
ARRAYS = {
    "fortran": (np.asfortranarray(A), A, "is not C-contiguous (shape (100, 3), strides (8, 800), float64)", "2.3 KiB"),
    "column": (A[:, 1], A[:, 1].copy(), "is not C-contiguous (shape (100,), strides (24,), float64)", "800 B"),
    "every_other": (A[::2], A[::2].copy(), "is not C-contiguous (shape (50, 3), strides (48, 8), float64)", "1.2 KiB"),
    "misaligned": (_misaligned(A), A, "is not aligned (its data starts at address", "2.3 KiB"),
}


# ---- C-contiguous arrays: in place --------------------------------------------------------------


@pytest.mark.parametrize("a", [A, A[10:20], np.arange(7, dtype=np.int16), np.zeros((5, 2, 2), bool)])
def test_c_contiguous_array_is_read_in_place_and_logs_nothing(a, caplog):
    ss, logs = _loaded(a, caplog)
    assert ss.items[0] is a and np.shares_memory(ss.items[0], a)
    assert logs == []
    ss, logs = _loaded([a, a], caplog)
    assert all(np.shares_memory(item, a) for item in ss.items)
    assert logs == []
    assert as_series_array(a, "source") is a
    assert as_table_array(a, "static") is a


def test_pandas_is_not_imported_for_arrays():
    code = (
        "import sys, numpy as np, fastfeed\n"
        "list(fastfeed.Feeder(np.asfortranarray(np.zeros((10, 2))), window=2, output='numpy'))\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_c_contiguous_memmap_is_read_in_place(tmp_path, caplog):
    path = tmp_path / "a.npy"
    np.save(path, A)
    m = np.load(path, mmap_mode="r")
    ss, logs = _loaded(m, caplog)
    assert np.shares_memory(ss.items[0], m) and logs == []


# ---- arrays that are not C-contiguous or not aligned: copied once ----------------------------------


@pytest.mark.parametrize("name", list(ARRAYS))
def test_array_copied_once_and_logged(name, caplog):
    obj, want, start, size = ARRAYS[name]
    ss, logs = _loaded(obj, caplog)
    arr = ss.items[0]
    assert isinstance(arr, np.ndarray) and arr.flags.c_contiguous and arr.flags.aligned
    assert not np.shares_memory(arr, obj)
    np.testing.assert_array_equal(arr, want)
    assert arr.dtype == want.dtype and ss.lengths == [len(want)] and ss.feat == want.shape[1:]
    assert len(logs) == 1, logs
    assert logs[0].startswith(f"fastfeed: source {start}")
    assert logs[0].endswith(f"); copied once into a C-contiguous array of {size}")


def test_copy_size_is_written_in_binary_units(caplog):
    big = np.asfortranarray(np.ones((5000, 3)))  # 120000 bytes
    _, logs = _loaded(big, caplog)
    assert logs == [
        "fastfeed: source is not C-contiguous (shape (5000, 3), strides (8, 40000), float64); "
        "copied once into a C-contiguous array of 117.2 KiB"
    ]
    _, logs = _loaded(A[::2, 0], caplog)
    assert logs[0].endswith("copied once into a C-contiguous array of 400 B")


def test_list_of_such_items(caplog):
    c = np.ascontiguousarray(A)
    ss, logs = _loaded([ARRAYS["fortran"][0], c, ARRAYS["every_other"][0], ARRAYS["misaligned"][0]], caplog)
    for got, want in zip(ss.items, [A, A, A[::2], A]):
        np.testing.assert_array_equal(got, want)
        assert got.flags.c_contiguous
    assert ss.items[1] is c  # the C-contiguous item in place
    assert [m.split(" ")[1] for m in logs] == ["source[0]", "source[2]", "source[3]"]
    assert all(re.search(r"copied once into a C-contiguous array of [\d.]+ (B|KiB)$", m) for m in logs)


def test_targets_and_other_fields_are_loaded_under_the_same_rules(caplog):
    _, logs = _loaded(np.asfortranarray(A), caplog, what="covariates")
    assert logs[0].startswith("fastfeed: covariates is not C-contiguous")
    _, logs = _loaded([A, A[::2]], caplog, what="known")
    assert len(logs) == 1 and logs[0].startswith("fastfeed: known[1] is not C-contiguous")


def test_refusals_stay():
    with pytest.raises(ValueError, match=r"source\[1\] is an object array"):
        load_source([A, np.array([[1, "a", None]] * 3, dtype=object).T], "source")
    with pytest.raises(ValueError, match=r"covariates has unsupported dtype complex128"):
        load_source(np.ones((5, 2), np.complex128, order="F"), "covariates")
    with pytest.raises(ValueError, match=r"source has unsupported dtype >f8"):
        load_source(A.astype(">f8")[::2], "source")
    with pytest.raises(ValueError, match=r"static is a 0-d array; a table needs one row per series"):
        as_table_array(np.array(3.0), "static")
    with pytest.raises(ValueError, match=r"static must be a NumPy array or a pandas DataFrame/Series, not list"):
        as_table_array([[1.0]], "static")


def test_torch_tensor_stays_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"source\[1\] is a torch tensor; pass tensor\.numpy\(\)"):
        load_source([A, torch.zeros(4, 3, dtype=torch.float64)], "source")


def test_table_array_copies_a_fortran_table(caplog):
    t = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        out = as_table_array(t, "static")
    np.testing.assert_array_equal(out, t)
    assert out.flags.c_contiguous
    assert _copy_logs(caplog) == [
        "fastfeed: static is not C-contiguous (shape (4, 3), strides (4, 16), float32); "
        "copied once into a C-contiguous array of 48 B"
    ]


# ---- pandas -------------------------------------------------------------------------------------


def _frame(rows: int = 5000):
    pd = pytest.importorskip("pandas")
    i = np.arange(rows)
    return pd.DataFrame({"count": i * 3, "price": i * 0.25, "flag": (i % 7).astype(np.int8)})


def test_dataframe_with_int_and_float_columns(caplog):
    df = _frame()
    ss, logs = _loaded([A, A, df], caplog)
    arr = ss.items[2]
    np.testing.assert_array_equal(arr, df.to_numpy())
    assert arr.dtype == np.float64 and arr.flags.c_contiguous and arr.shape == (5000, 3)
    assert logs == [
        "fastfeed: source[2] is not C-contiguous (a pandas DataFrame, shape (5000, 3) float64); "
        "copied once into a C-contiguous array of 117.2 KiB"
    ]
    for col in df.columns:
        assert not np.shares_memory(arr, df[col].to_numpy())


def test_dataframe_of_one_dtype_keeps_it(caplog):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(10, dtype=np.int32), "b": np.arange(10, 20, dtype=np.int32)})
    ss, logs = _loaded(df, caplog)
    assert ss.dtype == "int32" and ss.feat == (2,)
    np.testing.assert_array_equal(ss.items[0], df.to_numpy())
    assert logs[0].endswith("(a pandas DataFrame, shape (10, 2) int32); copied once into a C-contiguous array of 80 B")


def test_series(caplog):
    pd = pytest.importorskip("pandas")
    s = pd.Series(np.arange(1000, dtype=np.float32) / 8, name="load")
    ss, logs = _loaded(s, caplog)
    arr = ss.items[0]
    np.testing.assert_array_equal(arr, s.to_numpy())
    assert arr.dtype == np.float32 and ss.feat == () and ss.single
    assert not np.shares_memory(arr, s.to_numpy())  # a copy: changing the Series later changes nothing
    assert logs == [
        "fastfeed: source is not C-contiguous (a pandas Series, shape (1000,) float32); "
        "copied once into a C-contiguous array of 3.9 KiB"
    ]


def test_nullable_columns_become_float64_with_nan(caplog):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
            "x": pd.array([0.5, 1.5, None, 3.5], dtype="Float64"),
            "k": np.arange(4, dtype=np.int16),
        }
    )
    ss, logs = _loaded(df, caplog, what="covariates")
    want = np.array([[1, 0.5, 0], [np.nan, 1.5, 1], [3, np.nan, 2], [4, 3.5, 3]])
    np.testing.assert_array_equal(ss.items[0], want)
    assert ss.dtype == "float64" and len(logs) == 1
    ss, _ = _loaded(pd.Series([1, None, 2], dtype="Int64"), caplog)
    np.testing.assert_array_equal(ss.items[0], [1.0, np.nan, 2.0])


def test_pandas_without_a_common_numeric_dtype_is_refused():
    pd = pytest.importorskip("pandas")
    obj = pd.DataFrame({"a": [1.0, 2.0], "b": pd.Series(["x", None], dtype=object)})
    assert obj.to_numpy().dtype == object
    with pytest.raises(ValueError, match=r"covariates\[3\] column 'b' is an object array \(dtype object"):
        load_source([A, A, A, obj], "covariates")
    text = pd.DataFrame({"a": [1.0, 2.0], "name": ["x", "y"]})
    with pytest.raises(ValueError, match=r"source column 'name' has dtype (str|string|object)"):
        load_source(text, "source")
    mixed = pd.DataFrame({"a": [1.0, 2.0], "b": [True, False]})
    with pytest.raises(ValueError, match=r"source is a pandas DataFrame whose columns have no common numeric dtype"):
        load_source(mixed, "source")
    with pytest.raises(ValueError, match=r"source has unsupported dtype datetime64"):
        load_source(pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"])), "source")
    with pytest.raises(ValueError, match=r"static column 'b' has dtype boolean"):
        as_table_array(pd.DataFrame({"a": [1.0], "b": pd.array([None], dtype="boolean")}), "static")


def test_table_array_from_a_dataframe(caplog):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"size": [1, 2, 3], "region": [0.5, 0.25, 0.125]})
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        out = as_table_array(df, "static")
    np.testing.assert_array_equal(out, df.to_numpy())
    assert out.flags.c_contiguous
    assert _copy_logs(caplog)[0].startswith("fastfeed: static is not C-contiguous (a pandas DataFrame, shape (3, 2)")


# ---- end to end: a Feeder's batches equal the reference's over the C-contiguous values -------------


@pytest.mark.parametrize("name", list(ARRAYS))
def test_feeder_over_array(name):
    obj, want, _, _ = ARRAYS[name]
    _same_as_reference(obj, want)


def test_feeder_over_list():
    items = [ARRAYS[name][0] for name in ("fortran", "every_other", "misaligned")] + [A]  # all (T_i, 3)
    _same_as_reference(items, [np.ascontiguousarray(a) for a in items])


def test_feeder_with_strided_targets():
    y = np.arange(400, dtype=np.float32).reshape(100, 4)
    got = collect(Feeder(np.asfortranarray(A), targets=y[:, ::2], output="numpy", **KW))
    assert_same_batches(got, reference.batches(A, targets=np.ascontiguousarray(y[:, ::2]), **KW))


def test_feeder_over_dataframe():
    df = _frame(200)
    _same_as_reference(df, np.ascontiguousarray(df.to_numpy()))


def test_feeder_over_series():
    pd = pytest.importorskip("pandas")
    s = pd.Series(np.sin(np.arange(100) / 5))
    _same_as_reference(s, np.ascontiguousarray(s.to_numpy()))


def test_feeder_over_list_of_pandas_objects():
    pd = pytest.importorskip("pandas")
    frames = [_frame(50), _frame(31), pd.DataFrame(np.asfortranarray(A))]
    _same_as_reference(frames, [np.ascontiguousarray(f.to_numpy(dtype=np.float64)) for f in frames])
