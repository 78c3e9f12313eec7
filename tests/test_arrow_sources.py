"""Arrow and Hugging Face sources: .arrow files (IPC file and stream), pyarrow tables, record
batches and arrays, datasets.Dataset (in memory, saved and memory-mapped, with an indices
mapping), against the reference on the same sequences as NumPy arrays; that values are read in
place (never copied whole); and the refusals (nulls, missing/string/nested columns, column=
where there are no columns). Also the core's Ragged type's own refusals."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastfeed import Feeder, FormatError, _core, reference
from fastfeed.io.sources import load_source

from helpers import assert_same_batches, collect, to_numpy

pa = pytest.importorskip("pyarrow")
ipc = pytest.importorskip("pyarrow.ipc")

FIELDS = ("mask", "lengths", "segment_ids", "position_ids", "cu_seqlens")


def as_dict(batch) -> dict:
    x, y = batch
    out = {"x": to_numpy(x).copy(), "y": None if y is None else to_numpy(y).copy()}
    for name in FIELDS:
        v = getattr(batch, name)
        out[name] = None if v is None else to_numpy(v).copy()
    return out


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want), f"{len(got)} batches, reference has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        for name in ("x", "y") + FIELDS:
            wv = w.get(name)
            if wv is None:
                assert g[name] is None, f"batch {i}: {name} should be None"
                continue
            assert g[name].shape == wv.shape, f"batch {i}: {name} shape {g[name].shape} != {wv.shape}"
            assert g[name].dtype == wv.dtype, f"batch {i}: {name} dtype {g[name].dtype} != {wv.dtype}"
            np.testing.assert_array_equal(g[name], wv, err_msg=f"batch {i}: {name}")


def make_seqs(n=23, dtype="int32", feat=(), seed=0, max_len=12):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_len, n)
    lengths[1] = 0  # an empty sequence among them
    return [rng.integers(0, 1000, (int(k),) + feat).astype(dtype) for k in lengths]


def list_array(seqs, large=False, dtype=None):
    """A ListArray (int32 offsets) or LargeListArray (int64) of `seqs`; a feature shape (k,)
    becomes fixed_size_list<k>."""
    dtype = np.dtype(dtype or seqs[0].dtype)
    feat = seqs[0].shape[1:]
    flat = np.concatenate([s.reshape(-1) for s in seqs]).astype(dtype) if seqs else np.empty(0, dtype)
    values = pa.array(flat)
    for k in reversed(feat):
        values = pa.FixedSizeListArray.from_arrays(values, k)
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in seqs])))
    if large:
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def table_of(seqs, large=False, chunk_rows=None):
    arr = list_array(seqs, large)
    t = pa.table({"tokens": arr, "n": pa.array([len(s) for s in seqs], pa.int64())})
    if chunk_rows:
        t = pa.Table.from_batches(t.to_batches(max_chunksize=chunk_rows))
    return t


def write_ipc(path, table, stream=False, chunk_rows=None):
    opener = ipc.new_stream if stream else ipc.new_file
    with opener(str(path), table.schema) as w:
        for b in table.to_batches(max_chunksize=chunk_rows):
            w.write_batch(b)
    return str(path)


CONFIGS = [
    dict(batch_size=4),
    dict(batch_size=3, shuffle=True, seed=7, max_len=6, pad_multiple=4, padding_side="left", drop_last=True),
    dict(batch_size=2, bucket=True, bucket_pool=2, shuffle=True, seed=1),
    dict(batch_size=2, pack=True, max_len=8, shuffle=True, seed=3),
]


def feed(source, **kw):
    kw.setdefault("window", None)
    return [as_dict(b) for b in Feeder(source, output="numpy", num_threads=2, **kw)]


# ----- the core's Ragged ------------------------------------------------------------------------


def test_ragged_expands_to_its_rows():
    a = np.arange(12, dtype=np.int16).reshape(6, 2)
    b = np.arange(100, 108, dtype=np.int16).reshape(4, 2)
    r = _core.Ragged([a, b], np.array([1, 0, 0], np.int32), np.array([1, 0, 5]), np.array([4, 2, 5]))
    assert (r.count, r.num_steps, r.dtype, r.feat, r.row_elems) == (3, 5, "int16", (2,), 2)
    assert r.lengths().tolist() == [3, 2, 0]
    assert r.values[0] is a and r.values[1] is b
    assert (r.chunk.tolist(), r.begin.tolist(), r.end.tolist()) == ([1, 0, 0], [1, 0, 5], [4, 2, 5])
    # The core sees three series (expanded in C++): one NaN scan result and the rows' moments.
    assert len(_core.non_finite_steps([r], 1)) == 3
    rows = np.concatenate([b[1:4], a[0:2]]).astype(np.float64)
    mean, std, count = _core.moments([r])
    assert count == 5
    np.testing.assert_allclose(mean, rows.mean(axis=0))
    np.testing.assert_allclose(std, rows.std(axis=0))


@pytest.mark.parametrize(
    "args, match",
    [
        (([], [0], [0], [0]), "values is empty"),
        (([np.zeros(3)], [1], [0], [0]), r"chunk\[0\] = 1 is not a chunk \(there are 1\)"),
        (([np.zeros(3)], [-1], [0], [0]), r"chunk\[0\] = -1"),
        (([np.zeros(3)], [0, 0], [0, 2], [1, 1]), r"sequence 1 has begin 2 and end 1.*<= 3"),
        (([np.zeros(3)], [0], [0], [4]), r"end 4.*<= 3 \(the rows of values\[0\]\)"),
        (([np.zeros(3)], [0], [-1], [0]), "begin -1"),
        (([np.zeros(3)], [0, 0], [0], [0]), "one length, got 2, 1 and 1"),
        (([np.zeros(3), np.zeros(3, np.float32)], [0], [0], [0]), r"values\[1\] has dtype float32.*float64"),
        (([np.zeros((3, 2)), np.zeros((3, 3))], [0], [0], [0]), r"feature shape \(3,\).*\(2,\)"),
        (([np.zeros(3)], np.array([0.0]), [0], [0]), "chunk must be an integer array"),
        (([np.zeros(3)], [0], np.zeros((1, 1), np.int64), [0]), "begin must be 1-D"),
        (([np.zeros(3)], [0], [0], np.array([2**64 - 1], np.uint64)), "out of range"),
        (([np.zeros((4, 2))[:, 0]], [0], [0], [0]), "C-contiguous"),
        (([np.array(["a", "b"], dtype=object)], [0], [0], [0]), "unsupported dtype"),
        (([np.zeros(3, ">f4")], [0], [0], [0]), "unsupported dtype"),
        (([np.float64(1.0)], [0], [0], [0]), "must be a NumPy array"),
        (([np.zeros(())], [0], [0], [0]), "0-d"),
    ],
)
def test_ragged_refusals(args, match):
    values, chunk, begin, end = args
    with pytest.raises(ValueError, match=match):
        _core.Ragged(values, np.asarray(chunk), np.asarray(begin), np.asarray(end))


def test_ragged_refuses_misaligned_values():
    raw = np.zeros(8 * 5 + 1, np.uint8)
    odd = np.frombuffer(raw.data, np.float64, offset=1, count=5)
    with pytest.raises(ValueError, match="not aligned"):
        _core.Ragged([odd], np.zeros(1, np.int32), np.zeros(1, np.int64), np.ones(1, np.int64))


# ----- .arrow files ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["file", "stream"])
@pytest.mark.parametrize("large", [False, True], ids=["int32-offsets", "int64-offsets"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=["plain", "shuffle-maxlen", "bucket", "pack"])
def test_arrow_file_sequences_match_reference(tmp_path, stream, large, cfg):
    seqs = make_seqs(dtype="uint16")
    path = write_ipc(tmp_path / "tokens.arrow", table_of(seqs, large), stream=stream, chunk_rows=5)
    assert_same(feed(path, column="tokens", **cfg), reference.sequence_batches(seqs, **cfg))


@pytest.mark.parametrize("stream", [False, True], ids=["file", "stream"])
def test_arrow_file_feature_rows(tmp_path, stream):
    seqs = make_seqs(dtype="float32", feat=(3,))
    path = write_ipc(tmp_path / "x.arrow", table_of(seqs), stream=stream, chunk_rows=7)
    cfg = dict(batch_size=5, shuffle=True, seed=2)
    assert_same(feed(path, column="tokens", **cfg), reference.sequence_batches(seqs, **cfg))
    f = Feeder(path, column="tokens", output="numpy")
    assert f._mode.series.feat == (3,) and f._mode.series.dtype == "float32"


def test_arrow_file_without_suffix_is_told_by_its_magic(tmp_path):
    seqs = make_seqs()
    path = write_ipc(tmp_path / "tokens.data", table_of(seqs))
    assert_same(feed(path, column="tokens", batch_size=4), reference.sequence_batches(seqs, batch_size=4))


@pytest.mark.parametrize("stream", [False, True], ids=["file", "stream"])
def test_windows_over_arrow_sequences(tmp_path, stream):
    seqs = make_seqs(dtype="int64", max_len=20, seed=4)
    path = write_ipc(tmp_path / "t.arrow", table_of(seqs, large=True), stream=stream, chunk_rows=6)
    kw = dict(window=4, horizon=2, stride=2, batch_size=5, shuffle=True, seed=9)
    got = collect(Feeder(path, column="tokens", output="numpy", **kw))
    assert_same_batches(got, reference.batches(seqs, **kw))


def test_numeric_column_is_one_series_in_place(tmp_path, caplog):
    values = np.random.default_rng(0).standard_normal(200).astype(np.float32)
    table = pa.table({"y": values, "i": np.arange(200)})
    kw = dict(window=8, horizon=1, batch_size=16, shuffle=True, seed=5)
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        f = Feeder(table, column="y", output="numpy", **kw)
    assert "copied" not in caplog.text
    (item,) = f._mode.series.items
    arrow_view = np.frombuffer(table.column("y").chunk(0).buffers()[1], np.float32)
    assert np.shares_memory(item, arrow_view)  # read in place
    assert_same_batches(collect(f), reference.batches(values, **kw))
    with pytest.raises(ValueError, match="window is required for a single series"):
        Feeder(table, column="y")


def test_numeric_column_in_chunks_is_copied_once_and_logged(tmp_path, caplog):
    values = np.arange(100, dtype=np.int32)
    path = write_ipc(tmp_path / "v.arrow", pa.table({"v": values}), chunk_rows=30)
    kw = dict(window=5, target_shift=1, batch_size=8)
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        f = Feeder(path, output="numpy", **kw)  # one column: column= may be left out
    assert "4 chunks" in caplog.text and "copied once" in caplog.text
    got = collect(f)
    want = reference.window_batches(values, window=5, target_shift=1, batch_size=8)
    assert len(got) == len(want)
    for (gx, gy), w in zip(got, want):
        np.testing.assert_array_equal(gx, w["x"])
        np.testing.assert_array_equal(gy, w["y"])


def test_fixed_size_numeric_column_is_a_series_with_features():
    rows = np.arange(60, dtype=np.float64).reshape(20, 3)
    col = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 3)
    kw = dict(window=4, batch_size=3)
    f = Feeder(pa.table({"xyz": col}), column="xyz", output="numpy", **kw)
    assert f._mode.series.feat == (3,)
    assert_same_batches(collect(f), reference.batches(rows, **kw))


def test_boolean_lists_are_copied_once(caplog):
    seqs = [np.array([True, False, True]), np.array([False]), np.array([True, True])]
    arr = pa.array([s.tolist() for s in seqs], pa.list_(pa.bool_()))
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        got = feed(pa.table({"b": arr}), column="b", batch_size=3)
    assert "booleans" in caplog.text
    assert_same(got, reference.sequence_batches(seqs, batch_size=3))


# ----- in-memory Arrow objects, slices ---------------------------------------------------------


def test_table_shares_memory_with_arrow_buffers():
    seqs = make_seqs(dtype="int32")
    table = table_of(seqs, chunk_rows=10)
    f = Feeder(table, column="tokens", output="numpy", batch_size=4)
    (ragged,) = f._mode.series.items
    assert isinstance(ragged, _core.Ragged) and len(ragged.values) == 3  # one chunk per record batch
    for chunk, values in zip(table.column("tokens").chunks, ragged.values):
        buf = np.frombuffer(chunk.values.buffers()[1], np.int32)
        assert np.shares_memory(values, buf)
    assert_same(feed(table, column="tokens", batch_size=4), reference.sequence_batches(seqs, batch_size=4))


def test_sliced_arrays(tmp_path):
    seqs = make_seqs(n=30, dtype="int16")
    table = table_of(seqs, chunk_rows=8).slice(5, 17)  # starts inside a batch, ends inside another
    assert_same(feed(table, column="tokens", batch_size=4), reference.sequence_batches(seqs[5:22], batch_size=4))
    # The list array itself sliced, over child values that are a slice too (their own offset).
    flat = np.arange(50, dtype=np.int32)
    child = pa.array(flat).slice(3)  # values start at element 3
    lists = pa.ListArray.from_arrays(pa.array([0, 4, 4, 9, 20, 25], pa.int32()), child).slice(1, 3)
    want = [flat[3 + 4 : 3 + 4], flat[3 + 4 : 3 + 9], flat[3 + 9 : 3 + 20]]
    assert_same(feed(pa.chunked_array([lists]), batch_size=3), reference.sequence_batches(want, batch_size=3))
    # A sliced column of fixed-size rows inside lists, and a sliced numeric column.
    feats = make_seqs(n=9, dtype="float32", feat=(2,), seed=3)
    fsl = list_array(feats).slice(2, 6)
    assert_same(feed(pa.table({"f": fsl}), batch_size=2), reference.sequence_batches(feats[2:8], batch_size=2))
    numbers = np.arange(40, dtype=np.float64)
    sliced = pa.table({"v": numbers}).slice(7, 20)
    got = collect(Feeder(sliced, column="v", window=3, batch_size=4, output="numpy"))
    assert_same_batches(got, reference.batches(numbers[7:27], window=3, batch_size=4))


def test_record_batch_chunked_array_and_list_views():
    seqs = make_seqs(n=10, dtype="float64", seed=8)
    batch = pa.RecordBatch.from_arrays([list_array(seqs)], names=["x"])
    assert_same(feed(batch, column="x", batch_size=3), reference.sequence_batches(seqs, batch_size=3))
    chunked = pa.chunked_array([list_array(seqs[:4]), list_array(seqs[4:])])
    assert_same(feed(chunked, batch_size=3), reference.sequence_batches(seqs, batch_size=3))
    assert_same(feed(list_array(seqs, large=True), batch_size=3), reference.sequence_batches(seqs, batch_size=3))
    if not hasattr(pa, "ListViewArray"):
        return
    flat = np.arange(20, dtype=np.float64)
    view = pa.ListViewArray.from_arrays(pa.array([10, 0, 4], pa.int32()), pa.array([5, 3, 0], pa.int32()), flat)
    want = [flat[10:15], flat[0:3], flat[4:4]]
    assert_same(feed(view, batch_size=3), reference.sequence_batches(want, batch_size=3))


# ----- refusals --------------------------------------------------------------------------------


def test_nulls_name_the_row(tmp_path):
    rows = [[1, 2], [3], [4, 5, 6], [7], None, [8]]
    t = pa.Table.from_batches(pa.table({"t": pa.array(rows, pa.list_(pa.int32()))}).to_batches(max_chunksize=3))
    with pytest.raises(ValueError, match=r"column 't' has a null at row 4 \(a missing list\)"):
        Feeder(t, column="t")
    rows = [[1, 2], [3], [4, 5, 6], [7], [8, None], [9]]
    path = write_ipc(tmp_path / "n.arrow", pa.table({"t": pa.array(rows, pa.list_(pa.int64()))}), chunk_rows=2)
    with pytest.raises(ValueError, match=r"n.arrow\) column 't' has a null at row 4 \(a null value inside its list\)"):
        Feeder(path, column="t")
    with pytest.raises(ValueError, match=r"null at row 5 \(a missing value\)"):
        Feeder(pa.table({"v": pa.array([1.0, 2, 3, 4, 5, None, 7])}), column="v", window=2)
    # The first row fed is named, whichever kind of null it holds and whichever chunk it is in.
    rows = [[1], [2, None], None, [4], None]
    t = pa.Table.from_batches(pa.table({"t": pa.array(rows, pa.list_(pa.int32()))}).to_batches(max_chunksize=2))
    with pytest.raises(ValueError, match=r"null at row 1 \(a null value inside its list\)"):
        Feeder(t, column="t")
    # A null the slice leaves out is no error; one inside fixed-size rows is.
    t = pa.table({"t": pa.array([None, [1], [2, 3]], pa.list_(pa.int32()))}).slice(1)
    assert len(feed(t, batch_size=2)) == 1
    inner = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2, None, 4], pa.float32()), 2)
    lists = pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), inner)
    with pytest.raises(ValueError, match=r"null at row 1 \(a null value inside its list\)"):
        Feeder(pa.table({"f": lists}), column="f")


def test_bad_columns_are_named(tmp_path):
    t = pa.table(
        {
            "tokens": pa.array([[1], [2, 3]], pa.list_(pa.int32())),
            "text": ["a", "bc"],
            "words": pa.array([["a"], ["b"]], pa.list_(pa.string())),
            "nested": pa.array([[[1]], [[2, 3]]], pa.list_(pa.list_(pa.int32()))),
            "deep": pa.array([[[[1]]], [[[2]]]], pa.list_(pa.list_(pa.list_(pa.int8())))),
            "cat": pa.array(["x", "y"]).dictionary_encode(),
            "rec": pa.array([{"a": 1}, {"a": 2}]),
            "when": pa.array([0, 1], pa.timestamp("s")),
        }
    )
    path = write_ipc(tmp_path / "t.arrow", t)
    for src in (t, path):
        with pytest.raises(ValueError, match=r"no column 'token'; its columns are 'tokens', 'text', 'words'"):
            Feeder(src, column="token")
        with pytest.raises(ValueError, match=r"has 8 columns \('tokens', 'text'.*say which to read with column="):
            Feeder(src)
    with pytest.raises(ValueError, match=r"column 'text' holds strings"):
        Feeder(t, column="text")
    with pytest.raises(ValueError, match=r"column 'words' holds strings"):
        Feeder(t, column="words")
    for name in ("nested", "deep"):
        with pytest.raises(ValueError, match=rf"column '{name}' is nested deeper than one list level"):
            Feeder(t, column=name)
    with pytest.raises(ValueError, match=r"column 'cat' holds dictionary-encoded values"):
        Feeder(t, column="cat")
    with pytest.raises(ValueError, match=r"column 'rec' holds struct"):
        Feeder(t, column="rec")
    with pytest.raises(ValueError, match=r"column 'when' holds timestamp"):
        Feeder(t, column="when", window=1)
    with pytest.raises(ValueError, match="column must be a column name"):
        Feeder(t, column=3)  # type: ignore[arg-type]


def test_column_is_refused_without_columns(tmp_path):
    with pytest.raises(ValueError, match=r"column='x' applies to sources with columns.*a ndarray"):
        Feeder(np.zeros(10), column="x", window=2)
    np.save(tmp_path / "a.npy", np.zeros(10))
    with pytest.raises(ValueError, match=r"column='x' applies.*the path"):
        Feeder(str(tmp_path / "a.npy"), column="x", window=2)
    with pytest.raises(ValueError, match=r"column='x' applies.*pyarrow ChunkedArray"):
        Feeder(pa.chunked_array([[1.0, 2.0]]), column="x", window=1)


def test_empty_and_unreadable_arrow(tmp_path):
    with pytest.raises(ValueError, match="has no rows"):
        Feeder(pa.table({"t": pa.array([], pa.list_(pa.int32()))}), column="t")
    bad = tmp_path / "broken.arrow"
    bad.write_bytes(b"ARROW1\x00\x00garbage")
    with pytest.raises(FormatError, match=r"broken.arrow: not a readable Arrow IPC file"):
        Feeder(str(bad), column="t")
    with pytest.raises(ValueError, match="pick a split"):
        load_source(type("DatasetDict", (), {"__module__": "datasets.dataset_dict"})())


def test_unknown_paths_name_the_accepted_kinds(tmp_path):
    raw = tmp_path / "tokens.bin"
    np.arange(100, dtype=np.uint16).tofile(raw)
    with pytest.raises(FormatError) as e:
        Feeder(str(raw), window=4)
    msg = str(e.value)
    for kind in (".npy file", "dataset directory", "Arrow IPC file", "Megatron-LM", "np.memmap(path, dtype="):
        assert kind in msg
    assert "tokens.idx is missing" in msg
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FormatError, match=r"notes.txt is not a file fastfeed reads.*np.memmap"):
        Feeder(str(text), window=1)
    # The suggestion works: a raw token file as a memory map is one series.
    f = Feeder(np.memmap(raw, dtype=np.uint16, mode="r"), window=4, batch_size=8, output="numpy")
    assert next(iter(f)).x[0].tolist() == [0, 1, 2, 3]


# ----- nothing copied whole --------------------------------------------------------------------


def file_mappings(path):
    """The address ranges where this process maps the file at `path` (/proc/self/maps)."""
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == real:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["file", "stream"])
def test_arrow_file_values_are_read_from_its_memory_map(tmp_path, stream):
    seqs = make_seqs(n=200, dtype="int32", feat=(2,), max_len=40)
    path = write_ipc(tmp_path / "m.arrow", table_of(seqs), stream=stream, chunk_rows=64)
    f = Feeder(path, column="tokens", output="numpy")
    (ragged,) = f._mode.series.items
    assert len(ragged.values) == 4
    ranges = file_mappings(path)
    assert ranges, "the file is not memory-mapped"
    for v in ragged.values:
        lo = v.__array_interface__["data"][0]
        assert any(a <= lo and lo + v.nbytes <= b for a, b in ranges), "values outside the file's map"


def test_memory_mapped_file_is_not_copied(tmp_path):
    """A 256 MiB .arrow file: making a Feeder and reading batches maps it; the process's own
    (anonymous) memory grows by far less than the file (measured in a fresh process, after a
    warm-up on a small file so that imports and allocator arenas are not counted)."""
    rows, per = 65536, 1024
    tokens = np.arange(rows * per, dtype=np.int32) % 50000
    offsets = pa.array(np.arange(0, rows * per + 1, per, dtype=np.int32))
    table = pa.table({"ids": pa.ListArray.from_arrays(offsets, tokens)})
    path = write_ipc(tmp_path / "big.arrow", table, stream=True, chunk_rows=8192)
    small = write_ipc(tmp_path / "small.arrow", table.slice(0, 100), stream=True, chunk_rows=30)
    del table, tokens
    size = os.path.getsize(path)
    script = textwrap.dedent(
        f"""
        import fastfeed

        def anonymous():
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))

        def some_batches(path):
            f = fastfeed.Feeder(path, column="ids", batch_size=8, shuffle=True, output="numpy", prefetch=1)
            it = iter(f)
            for _ in range(4):
                b = next(it)
            assert b.x.shape == (8, {per}), b.x.shape
            return f

        warm = some_batches({small!r})
        before = anonymous()
        f = some_batches({path!r})
        print(anonymous() - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.split()[-1])
    assert grown < size // 8, f"anonymous memory grew by {grown:,} bytes for a {size:,}-byte file"


# ----- Hugging Face datasets -------------------------------------------------------------------


def hf_dataset(seqs, labels=True):
    datasets = pytest.importorskip("datasets")
    data = {"input_ids": [s.tolist() for s in seqs]}
    if labels:
        data["label"] = [float(i) for i in range(len(seqs))]
    features = datasets.Features(
        {"input_ids": datasets.Sequence(datasets.Value(str(seqs[0].dtype)))}
        | ({"label": datasets.Value("float32")} if labels else {})
    )
    return datasets.Dataset.from_dict(data, features=features)


def rows_of(ds, column, dtype):
    return [np.asarray(r, dtype=dtype) for r in ds[column]]


def test_hf_dataset_in_memory():
    seqs = make_seqs(dtype="int32", seed=11)
    ds = hf_dataset(seqs)
    for cfg in CONFIGS:
        assert_same(feed(ds, column="input_ids", **cfg), reference.sequence_batches(seqs, **cfg))
    with pytest.raises(ValueError, match=r"no column 'ids'; its columns are 'input_ids', 'label'"):
        Feeder(ds, column="ids")


def test_hf_dataset_saved_and_memory_mapped(tmp_path):
    datasets = pytest.importorskip("datasets")
    seqs = make_seqs(n=40, dtype="uint16", seed=12)
    hf_dataset(seqs).save_to_disk(str(tmp_path / "ds"))
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    assert ds.cache_files  # backed by files, memory-mapped
    cfg = dict(batch_size=4, shuffle=True, seed=3)
    assert_same(feed(ds, column="input_ids", **cfg), reference.sequence_batches(seqs, **cfg))
    f = Feeder(ds, column="input_ids", output="numpy")
    (ragged,) = f._mode.series.items
    chunk = ds.data.table.column("input_ids").chunk(0)
    assert np.shares_memory(ragged.values[0], np.frombuffer(chunk.values.buffers()[1], np.uint16))
    # The Arrow file save_to_disk wrote (the IPC stream format) is a source by itself.
    (arrow_file,) = [c["filename"] for c in ds.cache_files]
    assert_same(feed(arrow_file, column="input_ids", **cfg), reference.sequence_batches(seqs, **cfg))
    # The directory save_to_disk wrote is a source too (loaded with load_from_disk).
    assert_same(feed(str(tmp_path / "ds"), column="input_ids", **cfg), reference.sequence_batches(seqs, **cfg))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match="DatasetDict; pick a split"):
        Feeder(str(tmp_path / "dd"), column="input_ids")


@pytest.mark.parametrize("saved", [False, True], ids=["in-memory", "on-disk"])
def test_hf_indices_mapping_order(tmp_path, saved):
    datasets = pytest.importorskip("datasets")
    seqs = make_seqs(n=50, dtype="int64", seed=13)
    ds = hf_dataset(seqs)
    if saved:
        ds.save_to_disk(str(tmp_path / "ds"))
        ds = datasets.load_from_disk(str(tmp_path / "ds"))
    views = {
        "select": ds.select([7, 3, 3, 40, 0, 12]),
        "contiguous": ds.select(range(10, 30)),  # a slice of the table, no mapping
        "shuffle": ds.shuffle(seed=4),
        "filter": ds.filter(lambda r: len(r["input_ids"]) % 2 == 1),
        "shuffle-filter-select": ds.shuffle(seed=5).filter(lambda r: len(r["input_ids"]) > 2).select(range(3, 20)),
    }
    assert views["shuffle"]._indices is not None
    cfg = dict(batch_size=3)
    for name, view in views.items():
        want = rows_of(view, "input_ids", np.int64)
        assert_same(feed(view, column="input_ids", **cfg), reference.sequence_batches(want, **cfg))
        got = collect(Feeder(view, column="input_ids", window=2, horizon=1, batch_size=4, output="numpy"))
        assert_same_batches(got, reference.batches(want, window=2, horizon=1, batch_size=4)), name


def test_hf_numeric_column_through_a_mapping_is_copied(caplog):
    seqs = make_seqs(n=30, seed=14)
    ds = hf_dataset(seqs).shuffle(seed=1)
    labels = np.asarray(ds["label"], dtype=np.float32)
    with caplog.at_level(logging.INFO, logger="fastfeed"):
        f = Feeder(ds, column="label", window=3, batch_size=5, output="numpy")
    assert "indices mapping" in caplog.text
    assert_same_batches(collect(f), reference.batches(labels, window=3, batch_size=5))


def test_hf_nulls_and_wrong_objects():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"ids": [[1, 2], [3], None, [4]]})
    with pytest.raises(ValueError, match=r"column 'ids' has a null at row 2"):
        Feeder(ds, column="ids")
    shuffled = ds.select([3, 1, 2, 0])
    with pytest.raises(ValueError, match=r"null at row 2"):  # the row as fed: the mapping's position
        Feeder(shuffled, column="ids")
    assert len(feed(ds.select([0, 1, 3]), column="ids", batch_size=3)) == 1  # the null row left out
    two = datasets.Dataset.from_dict({"ids": [[1], None, [2], [None, 3]]})
    with pytest.raises(ValueError, match=r"null at row 0 \(a null value inside its list\)"):
        Feeder(two.select([3, 1]), column="ids")
    with pytest.raises(ValueError, match=r"null at row 1 \(a missing list\)"):
        Feeder(two.select([0, 1, 3]), column="ids")
    text = datasets.Dataset.from_dict({"text": ["a", "b"]})
    with pytest.raises(ValueError, match=r"column 'text' holds strings.*tokenize"):
        Feeder(text, column="text")
    with pytest.raises(ValueError, match="pick a split"):
        Feeder(datasets.DatasetDict({"train": ds}), column="ids")


def test_hf_device_cache_on_cpu():
    torch = pytest.importorskip("torch")
    seqs = make_seqs(n=40, dtype="int32", seed=15)
    ds = hf_dataset(seqs).shuffle(seed=2)
    want_seqs = rows_of(ds, "input_ids", np.int32)
    cfg = dict(batch_size=4, shuffle=True, seed=6)
    f = Feeder(ds, column="input_ids", window=None, output="torch", **cfg)
    f._mode.attach_cache("cpu")
    got = [as_dict(b) for b in f]
    assert_same(got, reference.sequence_batches(want_seqs, **cfg))
    assert isinstance(f._mode.cache.source, torch.Tensor)
