"""`fastfeed convert`: .npy, folders of .npy, CSV and Parquet into dataset directories."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from fastfeed import cli, open_dataset
from fastfeed.io import convert as convert_module
from fastfeed.io.dataset import read_sequences

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


def run(argv, capsys=None):
    """cli.main with a progress bar off unless asked; returns (status, stdout, stderr)."""
    status = cli.main(["convert", *map(str, argv)])
    if capsys is None:
        return status, "", ""
    out = capsys.readouterr()
    return status, out.out, out.err


def assert_dataset(path, want, dtype=None) -> None:
    got = read_sequences(path)
    assert len(got) == len(want), f"{len(got)} sequences, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.shape == w.shape, f"sequence {i}: shape {g.shape} != {w.shape}"
        assert g.dtype == np.dtype(dtype or w.dtype), f"sequence {i}: dtype {g.dtype}"
        np.testing.assert_array_equal(g, w.astype(dtype) if dtype else w, err_msg=f"sequence {i}")


def group_rows(ids, values):
    """The expected sequences: rows of each id in file order, ids in order of first appearance."""
    groups: OrderedDict[object, list] = OrderedDict()
    for i, v in zip(ids, values):
        groups.setdefault(i, []).append(v)
    return [np.array(g) for g in groups.values()]


# ----- .npy -----------------------------------------------------------------------------------


def test_one_npy_file_is_one_series(tmp_path, capsys):
    arr = np.random.default_rng(0).standard_normal((500, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    status, out, _ = run([tmp_path / "a.npy", tmp_path / "ds", "--no-progress"], capsys)
    assert status == 0
    assert "wrote 1 sequence, 500 steps of float32 (feature shape (3,))" in out
    assert_dataset(tmp_path / "ds", [arr])
    assert run([tmp_path / "a.npy", tmp_path / "ds16", "--dtype", "float16", "--no-progress"]) == (0, "", "")
    assert_dataset(tmp_path / "ds16", [arr], dtype="float16")


def test_a_folder_of_npy_files_in_name_order(tmp_path, capsys):
    rng = np.random.default_rng(1)
    folder = tmp_path / "in"
    folder.mkdir()
    arrays = {
        name: rng.integers(0, 100, (n, 2)).astype(np.int32)
        for name, n in (("b.npy", 5), ("a.npy", 0), ("c.npy", 17), ("a10.npy", 3))
    }
    for name, arr in arrays.items():
        np.save(folder / name, arr)
    (folder / "notes.txt").write_text("not data")
    status, _, err = run([folder, tmp_path / "ds"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "ds", [arrays[n] for n in ("a.npy", "a10.npy", "b.npy", "c.npy")])


def test_npy_folder_mismatches_name_the_file_and_leave_nothing(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "1.npy", np.zeros((4, 2), np.float32))
    np.save(folder / "2.npy", np.zeros((4, 3), np.float32))
    status, _, err = run([folder, tmp_path / "ds", "--no-progress"], capsys)
    assert status == 1
    assert "2.npy has steps of shape (3,), but" in err and "1.npy has (2,)" in err
    assert not (tmp_path / "ds").exists()

    np.save(folder / "2.npy", np.zeros((4, 2), np.float64))
    status, _, err = run([folder, tmp_path / "ds", "--no-progress"], capsys)
    assert status == 1 and "2.npy has dtype float64, but" in err and "pass --dtype" in err
    status, _, err = run([folder, tmp_path / "ds", "--dtype", "float64", "--no-progress"], capsys)
    assert status == 0, err
    assert open_dataset(tmp_path / "ds").dtype == "float64"


def test_bad_npy_inputs(tmp_path, capsys):
    np.save(tmp_path / "scalar.npy", np.float32(1.0))
    status, _, err = run([tmp_path / "scalar.npy", tmp_path / "ds"], capsys)
    assert status == 1 and "0-d array" in err
    np.save(tmp_path / "obj.npy", np.array([1, "x"], dtype=object), allow_pickle=True)
    status, _, err = run([tmp_path / "obj.npy", tmp_path / "ds"], capsys)
    assert status == 1 and "obj.npy: cannot read as .npy" in err
    (tmp_path / "empty").mkdir()
    status, _, err = run([tmp_path / "empty", tmp_path / "ds"], capsys)
    assert status == 1 and "no .npy files" in err
    status, _, err = run([tmp_path / "missing.npy", tmp_path / "ds"], capsys)
    assert status == 1 and "no such file" in err
    assert not (tmp_path / "ds").exists()


# ----- CSV and Parquet ----------------------------------------------------------------------------


def test_csv_grouped_by_id_in_first_appearance_order(tmp_path, capsys):
    rng = np.random.default_rng(2)
    ids = rng.choice(["zeta", "alpha", "mid", "beta"], 300)  # interleaved, not sorted
    v = rng.integers(-50, 50, 300)
    w = np.round(rng.standard_normal(300), 3)
    lines = ["id,v,w"] + [f"{i},{a},{b}" for i, a, b in zip(ids, v, w)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")

    status, _, err = run([tmp_path / "t.csv", tmp_path / "one", "--id-column", "id", "--value-column", "v"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "one", group_rows(ids, v.astype(np.int8)))  # -50..49: the narrowest integer type

    status, _, err = run(
        [
            tmp_path / "t.csv",
            tmp_path / "two",
            "--id-column",
            "id",
            "--value-column",
            "v",
            "--value-column",
            "w",
            "--dtype",
            "float32",
            "--no-progress",
        ],
        capsys,
    )
    assert status == 0, err
    both = np.stack([v, w], axis=1).astype(np.float64)
    assert_dataset(tmp_path / "two", group_rows(ids, both), dtype="float32")
    assert open_dataset(tmp_path / "two").feat == (2,)


def test_parquet_grouped_by_integer_id_and_single_series(tmp_path, capsys):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 20, 5000) * 7
    x = rng.standard_normal(5000).astype(np.float32)
    pq.write_table(pa.table({"x": x, "key": ids}), tmp_path / "t.parquet", row_group_size=700)
    status, _, err = run(
        [tmp_path / "t.parquet", tmp_path / "g", "--id-column", "key", "--value-column", "x", "--no-progress"], capsys
    )
    assert status == 0, err
    assert_dataset(tmp_path / "g", group_rows(ids.tolist(), x))
    status, _, err = run([tmp_path / "t.parquet", tmp_path / "s", "--value-column", "x", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "s", [x])


def test_parquet_list_columns(tmp_path, capsys):
    rng = np.random.default_rng(4)
    flat = [rng.standard_normal(n) for n in (3, 0, 8, 1)]
    nested = [rng.integers(0, 9, (n, 2)).astype(np.int16) for n in (2, 5, 0, 1)]
    table = pa.table(
        {
            "flat": pa.array([a.tolist() for a in flat], pa.list_(pa.float64())),
            "nested": pa.array([a.tolist() for a in nested], pa.list_(pa.list_(pa.int16(), 2))),
        }
    )
    pq.write_table(table, tmp_path / "l.parquet", row_group_size=3)
    assert run([tmp_path / "l.parquet", tmp_path / "f", "--column", "flat", "--no-progress"])[0] == 0
    assert_dataset(tmp_path / "f", flat)
    assert run([tmp_path / "l.parquet", tmp_path / "n", "--column", "nested", "--no-progress"])[0] == 0
    assert_dataset(tmp_path / "n", [a.reshape(-1, 2) for a in nested])


def test_csv_list_column_holds_json_lists(tmp_path, capsys):
    cells = [[1, 2, 3], [], [4.5], [0]]
    rows = [[1.0, 2.0], [3.0, 4.0]]
    (tmp_path / "l.csv").write_text(
        "name,seq,steps\n"
        + "".join(f'r{i},"{json.dumps(c)}","{json.dumps(rows[: i % 2 + 1])}"\n' for i, c in enumerate(cells))
    )
    status, _, err = run([tmp_path / "l.csv", tmp_path / "d", "--column", "seq", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "d", [np.array(c, np.float64).reshape(-1) for c in cells])
    status, _, err = run(
        [tmp_path / "l.csv", tmp_path / "s", "--column", "steps", "--dtype", "int8", "--no-progress"], capsys
    )
    assert status == 0, err
    assert_dataset(tmp_path / "s", [np.array(rows[: i % 2 + 1], np.int8) for i in range(4)])

    (tmp_path / "bad.csv").write_text('seq\n"[1, 2]"\n"[1, [2]]"\n')
    status, _, err = run([tmp_path / "bad.csv", tmp_path / "b", "--column", "seq", "--no-progress"], capsys)
    assert status == 1 and "column 'seq', row 1: not a JSON list" in err
    assert not (tmp_path / "b").exists()  # the first row's chunk never stays behind


def test_large_input_is_written_in_chunks(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(5)
    seqs = [rng.standard_normal((int(n), 4)) for n in rng.integers(0, 300, 200)]
    pq.write_table(
        pa.table({"s": pa.array([s.tolist() for s in seqs], pa.list_(pa.list_(pa.float64(), 4)))}),
        tmp_path / "big.parquet",
        row_group_size=50,
    )
    monkeypatch.setattr(convert_module, "CHUNK_BYTES", 64 * 1024)
    appends = []
    real_append = convert_module.append_dataset
    monkeypatch.setattr(convert_module, "append_dataset", lambda p, s: appends.append(len(s)) or real_append(p, s))
    status, _, err = run([tmp_path / "big.parquet", tmp_path / "d", "--column", "s", "--no-progress"], capsys)
    assert status == 0, err
    assert len(appends) > 10  # ~28 MB of floats over 64 KiB chunks
    assert_dataset(tmp_path / "d", seqs)


def test_grouped_input_is_written_in_chunks(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(6)
    ids = np.repeat(np.arange(40), rng.integers(1, 200, 40))[::-1].copy()
    vals = rng.standard_normal(len(ids))
    pq.write_table(pa.table({"id": ids, "v": vals}), tmp_path / "g.parquet")
    monkeypatch.setattr(convert_module, "CHUNK_BYTES", 2048)
    status, _, err = run(
        [tmp_path / "g.parquet", tmp_path / "d", "--id-column", "id", "--value-column", "v", "--no-progress"], capsys
    )
    assert status == 0, err
    assert_dataset(tmp_path / "d", group_rows(ids.tolist(), vals))


def test_progress_bar_with_and_without_tqdm(tmp_path, capsys, monkeypatch):
    pq.write_table(pa.table({"s": [[1.0, 2.0], [3.0]]}), tmp_path / "p.parquet")
    status, _, err = run([tmp_path / "p.parquet", tmp_path / "a", "--column", "s"], capsys)
    assert status == 0 and "seq" in err  # tqdm's bar, counting sequences
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    status, _, err = run([tmp_path / "p.parquet", tmp_path / "b", "--column", "s"], capsys)
    assert status == 0 and err == ""
    assert_dataset(tmp_path / "b", [[1.0, 2.0], [3.0]])


def test_without_pyarrow_says_what_to_install(tmp_path, capsys, monkeypatch):
    (tmp_path / "t.csv").write_text("id,v\n1,2\n")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    status, _, err = run([tmp_path / "t.csv", tmp_path / "d", "--value-column", "v"], capsys)
    assert status == 1
    assert "pip install 'fastfeed[arrow]'" in err
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert run([tmp_path / "a.npy", tmp_path / "n", "--no-progress"])[0] == 0  # .npy needs no pyarrow


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["t.csv", "d"], 2, "say which columns hold the data: --column C .* the columns are 'id', 'v', 's'"),
        (["t.csv", "d", "--value-column", "nope"], 2, "no column 'nope'; the columns are 'id', 'v', 's'"),
        (
            ["t.csv", "d", "--column", "v"],
            2,
            "column 'v' holds int64, not lists; for one series from it pass --value-column v",
        ),
        (["t.csv", "d", "--value-column", "s"], 1, "column 's' holds string, not numbers"),
        (["t.csv", "d", "--id-column", "id"], 2, "--id-column needs --value-column"),
        (["t.csv", "d", "--column", "s", "--value-column", "v"], 2, "are alternatives"),
        (["t.csv", "d", "--value-column", "v", "--dtype", "complex64"], 2, "--dtype complex64 is not supported"),
        (["a.npy", "d", "--column", "x"], 2, "apply to CSV, Parquet and Arrow inputs only"),
        (["t.txt", "d"], 2, "unknown input type"),
        (
            ["n.csv", "d", "--id-column", "id", "--value-column", "v"],
            1,
            "column 'v' has 2 missing values \\(the first at row 1\\)",
        ),
        (["n.csv", "d", "--id-column", "v", "--value-column", "id"], 1, "column 'v' has 2 missing values"),
    ],
)
def test_convert_errors(tmp_path, capsys, monkeypatch, args, status, message):
    monkeypatch.chdir(tmp_path)
    Path("t.csv").write_text("id,v,s\n1,2,x\n1,3,y\n")
    Path("n.csv").write_text("id,v\n1,2\n1,\n2,\n")
    Path("t.txt").write_text("")
    np.save("a.npy", np.zeros(3))
    got, _, err = run([*args, "--no-progress"], capsys)
    assert got == status, err
    assert re.search(message, err), err
    assert not Path("d").exists()


def test_existing_output_needs_overwrite(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.arange(5))
    np.save(tmp_path / "b.npy", np.arange(7.0))
    assert run([tmp_path / "a.npy", tmp_path / "d", "--no-progress"])[0] == 0
    status, _, err = run([tmp_path / "b.npy", tmp_path / "d", "--no-progress"], capsys)
    assert status == 1 and "already holds a dataset; pass --overwrite" in err
    assert_dataset(tmp_path / "d", [np.arange(5)])
    assert run([tmp_path / "b.npy", tmp_path / "d", "--overwrite", "--no-progress"])[0] == 0
    assert_dataset(tmp_path / "d", [np.arange(7.0)])

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    status, _, err = run([tmp_path / "b.npy", tmp_path / "mine", "--overwrite", "--no-progress"], capsys)
    assert status == 1 and "not part of a dataset (keep.txt)" in err
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"


def test_csv_type_guessed_from_the_first_rows(tmp_path, capsys):
    # pyarrow guesses a CSV column's type from the first block; a float far below fails it.
    lines = ["v"] + ["1"] * 700_000 + ["1.5"]
    (tmp_path / "late.csv").write_text("\n".join(lines) + "\n")
    status, _, err = run([tmp_path / "late.csv", tmp_path / "d", "--value-column", "v", "--no-progress"], capsys)
    assert status == 1 and "pass --dtype" in err
    assert not (tmp_path / "d").exists()
    status, _, err = run(
        [tmp_path / "late.csv", tmp_path / "d", "--value-column", "v", "--dtype", "float32", "--no-progress"], capsys
    )
    assert status == 0, err  # --dtype decides how the column is parsed
    assert_dataset(tmp_path / "d", [np.array([1.0] * 700_000 + [1.5], np.float32)])


# ----- entry points and inspect ------------------------------------------------------------------


def test_python_m_fastfeed_convert_and_inspect(tmp_path):
    arr = np.arange(60, dtype=np.float64).reshape(20, 3)
    np.save(tmp_path / "a.npy", arr)
    r = subprocess.run(
        [sys.executable, "-m", "fastfeed", "convert", "a.npy", "ds"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert_dataset(tmp_path / "ds", [arr])
    r = subprocess.run(
        [sys.executable, "-m", "fastfeed", "inspect", "ds", "--window", "5", "--batch-size", "4"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "sequences: 1, steps: 20" in r.stdout and "feature shape (3,)" in r.stdout
    assert "samples: 15" in r.stdout and "batches: 4 of batch_size 4" in r.stdout


def test_console_script_convert(tmp_path):
    script = Path(sys.executable).parent / ("fastfeed.exe" if os.name == "nt" else "fastfeed")
    if not script.exists():
        pytest.skip("the fastfeed console script is not installed next to this Python")
    np.save(tmp_path / "a.npy", np.ones((4, 2), np.int8))
    r = subprocess.run(
        [str(script), "convert", "a.npy", "out", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert_dataset(tmp_path / "out", [np.ones((4, 2), np.int8)])
    r = subprocess.run(
        [str(script), "convert", "data.csv", "out2"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1 and "data.csv: no such file" in r.stderr


def test_inspect_a_damaged_dataset(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros(10))
    assert run([tmp_path / "a.npy", tmp_path / "ds", "--no-progress"])[0] == 0
    (tmp_path / "ds" / "header.json").write_text("{")
    assert cli.main(["inspect", str(tmp_path / "ds")]) == 1
    assert "header.json: not JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    "values, dtype, bad",
    [
        ([1.0, 1.5, 2.0], "int32", "1.5 at step 1"),  # a fraction
        ([1.0, np.nan], "int64", "nan at step 1"),
        ([1.0, 1e6], "float16", "1000000.0 at step 1"),  # finite, but inf as float16
        ([3, -4], "uint8", "-4 at step 1"),
        ([100, 300], "int8", "300 at step 1"),
    ],
)
def test_dtype_refuses_a_cast_that_changes_values(tmp_path, capsys, values, dtype, bad):
    np.save(tmp_path / "s.npy", np.array(values))
    status, _, err = run([tmp_path / "s.npy", tmp_path / "out", "--dtype", dtype], capsys)
    assert status == 1 and f"s.npy: the value {bad} cannot be stored as {dtype}" in err
    assert not (tmp_path / "out").exists()


def test_dtype_still_rounds_floats_and_narrows_what_fits(tmp_path, capsys):
    s = np.array([0.1, -2.5, np.nan, np.inf])  # NaN and inf stay what they are in a float
    np.save(tmp_path / "s.npy", s)
    assert run([tmp_path / "s.npy", tmp_path / "f32", "--dtype", "float32"], capsys)[0] == 0
    assert_dataset(tmp_path / "f32", [s.astype(np.float32)])
    np.save(tmp_path / "i.npy", np.array([[1, -2], [127, -128]]))
    assert run([tmp_path / "i.npy", tmp_path / "i8", "--dtype", "int8"], capsys)[0] == 0
    assert_dataset(tmp_path / "i8", [np.array([[1, -2], [127, -128]], np.int8)])


def test_csv_values_out_of_range_name_column_and_row(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a\n3\n300\n-5\n")
    status, _, err = run([tmp_path / "d.csv", tmp_path / "out", "--value-column", "a", "--dtype", "int8"], capsys)
    assert status == 1 and "column 'a': the value 300 at row 1 cannot be stored as int8" in err


def test_csv_nan_and_inf_are_numbers_and_empty_cells_are_missing(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("v\n1.5\nnan\ninf\n-inf\n")
    assert run([tmp_path / "d.csv", tmp_path / "out", "--value-column", "v"], capsys)[0] == 0
    assert_dataset(tmp_path / "out", [np.array([1.5, np.nan, np.inf, -np.inf])])
    (tmp_path / "e.csv").write_text("v,w\n1.5,1\n,2\n")
    status, _, err = run([tmp_path / "e.csv", tmp_path / "out2", "--value-column", "v"], capsys)
    assert status == 1 and "column 'v' has 1 missing value (the first at row 1)" in err


def test_csv_without_a_header_row_keeps_its_first_row(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("1,2\n3,4\n5,6\n")
    assert (
        run(
            [
                tmp_path / "d.csv",
                tmp_path / "out",
                "--no-header",
                "--value-column",
                "f0",
                "--value-column",
                "f1",
                "--no-progress",
            ],
            capsys,
        )[0]
        == 0
    )
    assert_dataset(tmp_path / "out", [np.array([[1, 2], [3, 4], [5, 6]], np.uint8)])
    np.save(tmp_path / "a.npy", np.arange(3))
    status, _, err = run([tmp_path / "a.npy", tmp_path / "out2", "--no-header"], capsys)
    assert status == 2 and "--no-header applies to CSV inputs only" in err
    status, _, err = run([tmp_path / "a.npy", tmp_path / "out2", "--header"], capsys)
    assert status == 2 and "--header applies to CSV inputs only" in err


def test_a_first_row_of_numbers_is_not_taken_for_column_names_unasked(tmp_path, capsys):
    np.savetxt(tmp_path / "d.csv", np.array([[1, 2], [3, 4], [5, 6]]), delimiter=",", fmt="%d")
    status, _, err = run([tmp_path / "d.csv", tmp_path / "out", "--value-column", "2", "--no-progress"], capsys)
    assert status == 2 and "the first row (1, 2) is all numbers, so it looks like data" in err
    assert "--no-header" in err and not (tmp_path / "out").exists()
    # --header takes it as names all the same (years, say); mixed rows are names as ever.
    assert (
        run([tmp_path / "d.csv", tmp_path / "out", "--header", "--value-column", "2", "--no-progress"], capsys)[0] == 0
    )
    assert_dataset(tmp_path / "out", [np.array([4, 6], np.uint8)])
    (tmp_path / "m.csv").write_text("1,b\n3,4\n")
    assert run([tmp_path / "m.csv", tmp_path / "out2", "--value-column", "b", "--no-progress"], capsys)[0] == 0
    assert_dataset(tmp_path / "out2", [np.array([4], np.uint8)])
    with pytest.raises(SystemExit) as exited:
        run([tmp_path / "d.csv", tmp_path / "out3", "--header", "--no-header"])
    assert exited.value.code == 2 and "not allowed with argument --header" in capsys.readouterr().err


# ----- narrowest integer dtypes for CSV -----------------------------------------------------------


@pytest.mark.parametrize(
    "lo, hi, dtype",
    [
        (0, 0, "uint8"),
        (0, 255, "uint8"),
        (0, 256, "uint16"),
        (3, 65535, "uint16"),
        (0, 65536, "uint32"),
        (0, 2**32 - 1, "uint32"),
        (0, 2**32, "uint64"),
        (0, 2**63 - 1, "uint64"),
        (-1, 0, "int8"),
        (-128, 127, "int8"),
        (-129, 0, "int16"),
        (-1, 128, "int16"),
        (-(2**15), 2**15 - 1, "int16"),
        (-1, 2**15, "int32"),
        (-(2**31) - 1, 0, "int64"),
        (-(2**63), 2**63 - 1, "int64"),
    ],
)
def test_narrowest_int(lo, hi, dtype):
    assert convert_module.narrowest_int(lo, hi) == np.dtype(dtype)


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([0, 7, 255], "uint8"),
        ([1, 256], "uint16"),
        ([5, 70000], "uint32"),
        ([0, 2**40], "uint64"),
        ([-1, 127], "int8"),
        ([-200, 5], "int16"),
        ([-1, 40000], "int32"),
        ([-(2**40), 1], "int64"),
        ([2**63 - 1, -(2**63)], "int64"),
    ],
)
def test_csv_integers_are_stored_in_the_narrowest_dtype(tmp_path, capsys, values, dtype):
    (tmp_path / "v.csv").write_text("v\n" + "".join(f"{v}\n" for v in values))
    status, out, err = run([tmp_path / "v.csv", tmp_path / "d", "--value-column", "v", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "d", [np.array(values, dtype)])
    assert f"steps of {dtype} " in out
    assert (
        f"dtype {dtype}: the narrowest integer type for the integers of column 'v' "
        f"({min(values)} to {max(values)}); --dtype chooses another" in out
    )


def test_csv_narrowing_covers_all_value_columns_and_leaves_floats_alone(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,a,b,f\nx,1,300,0.5\ny,2,-4,1.5\nx,3,5,2.0\n")
    argv = [tmp_path / "t.csv", tmp_path / "ab", "--id-column", "id", "--value-column", "a", "--value-column", "b"]
    status, out, err = run([*argv, "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "ab", [np.array([[1, 300], [3, 5]], np.int16), np.array([[2, -4]], np.int16)])
    assert "columns 'a', 'b' (-4 to 300)" in out
    # A float column makes the steps float64, as parsed; nothing is narrowed or reported.
    status, out, err = run(
        [tmp_path / "t.csv", tmp_path / "af", "--value-column", "a", "--value-column", "f", "--no-progress"], capsys
    )
    assert status == 0, err
    assert_dataset(tmp_path / "af", [np.array([[1, 0.5], [2, 1.5], [3, 2.0]])])
    assert "narrowest" not in out and "steps of float64" in out
    # --dtype chooses: no narrowing, nothing reported.
    status, out, err = run(
        [tmp_path / "t.csv", tmp_path / "a64", "--value-column", "a", "--dtype", "int64", "--no-progress"], capsys
    )
    assert status == 0, err
    assert_dataset(tmp_path / "a64", [np.array([1, 2, 3], np.int64)])
    assert "narrowest" not in out
    status, _, err = run(
        [tmp_path / "t.csv", tmp_path / "a32", "--value-column", "a", "--dtype", "float32", "--no-progress"], capsys
    )
    assert status == 0, err
    assert_dataset(tmp_path / "a32", [np.array([1, 2, 3], np.float32)])


def test_parquet_integers_keep_their_type(tmp_path, capsys):
    pq.write_table(pa.table({"v": pa.array([1, 2, 3], pa.int64())}), tmp_path / "p.parquet")
    status, out, err = run([tmp_path / "p.parquet", tmp_path / "d", "--value-column", "v", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "d", [np.array([1, 2, 3], np.int64)])
    assert "narrowest" not in out


def test_csv_json_lists_of_integers_are_narrowed_too(tmp_path, capsys):
    (tmp_path / "i.csv").write_text('seq\n"[1, 2, 300]"\n"[]"\n"[4]"\n')
    status, out, err = run([tmp_path / "i.csv", tmp_path / "i", "--column", "seq", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(
        tmp_path / "i", [np.array([1, 2, 300], np.uint16), np.array([], np.uint16), np.array([4], np.uint16)]
    )
    assert "dtype uint16: the narrowest integer type for the integers of column 'seq' (1 to 300)" in out
    (tmp_path / "n.csv").write_text('seq\n"[[1, -2], [3, 4]]"\n"[[true, false]]"\n')
    status, out, err = run([tmp_path / "n.csv", tmp_path / "n", "--column", "seq", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "n", [np.array([[1, -2], [3, 4]], np.int8), np.array([[1, 0]], np.int8)])
    # One number with a fraction anywhere (here in the last row) makes all of them float64.
    (tmp_path / "f.csv").write_text('seq\n"[1, 2]"\n"[3.5]"\n')
    status, out, err = run([tmp_path / "f.csv", tmp_path / "f", "--column", "seq", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "f", [np.array([1.0, 2.0]), np.array([3.5])])
    assert "dtype float64: column 'seq' holds numbers that are not integers" in out
    (tmp_path / "z.csv").write_text('seq\n"[1, null]"\n')
    status, _, err = run([tmp_path / "z.csv", tmp_path / "z", "--column", "seq", "--no-progress"], capsys)
    assert status == 1 and "z.csv: column 'seq', row 0: a null inside its list" in err


BIG = [0, 9223372036854775813, 18446744073709551615]  # above int64's range: pyarrow parses them as doubles


def test_csv_integers_above_int64_are_stored_exactly_as_uint64(tmp_path, capsys):
    (tmp_path / "u.csv").write_text("id,v,w,k\n" + "".join(f"a,{v},{i},{i}\n" for i, v in enumerate(BIG)))
    status, out, err = run([tmp_path / "u.csv", tmp_path / "d", "--value-column", "v", "--no-progress"], capsys)
    assert status == 0, err
    assert f"dtype uint64: the narrowest integer type for the integers of column 'v' (0 to {2**64 - 1})" in out
    assert_dataset(tmp_path / "d", [np.array(BIG, np.uint64)])
    assert open_dataset(tmp_path / "d").dtype == "uint64"
    from fastfeed import Feeder

    with Feeder(str(tmp_path / "d"), window=None, batch_size=1, output="numpy") as feeder:
        (batch,) = list(feeder)
    assert batch.x.dtype == np.uint64 and [int(x) for x in batch.x[0]] == BIG
    # Beside another integer column (read again as uint64, exactly), and as step targets.
    status, _, err = run(
        [tmp_path / "u.csv", tmp_path / "vw", "--value-column", "w", "--value-column", "v", "--no-progress"], capsys
    )
    assert status == 0, err
    assert_dataset(tmp_path / "vw", [np.array([[i, v] for i, v in enumerate(BIG)], np.uint64)])
    status, _, err = run(
        [tmp_path / "u.csv", tmp_path / "t", "--id-column", "id", "--value-column", "k", "--target-column", "v"]
        + ["--no-progress"],
        capsys,
    )
    assert status == 0, err
    xs, ys = feed_all(tmp_path / "t")
    assert [x.tolist() for x in xs] == [[0, 1, 2]]
    assert ys[0].dtype == np.uint64 and [int(y) for y in ys[0]] == BIG
    # A CSV of floats is read as before.
    (tmp_path / "f.csv").write_text("v\n1.5\n1e19\n-2\n")
    status, _, err = run([tmp_path / "f.csv", tmp_path / "f", "--value-column", "v", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "f", [np.array([1.5, 1e19, -2.0])])
    # JSON lists too (NumPy makes [0, 2**63 + 5] float64).
    (tmp_path / "j.csv").write_text('seq\n"[1, 2]"\n"' + json.dumps(BIG) + '"\n')
    status, _, err = run([tmp_path / "j.csv", tmp_path / "j", "--column", "seq", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "j", [np.array([1, 2], np.uint64), np.array(BIG, np.uint64)])


@pytest.mark.parametrize(
    "column, args, message",
    [
        (
            "v\n0\n5\n18446744073709551616\n",
            [],
            "column 'v', row 2: the integer 18446744073709551616 is above uint64's",
        ),
        ("v\n3\n-9223372036854775809\n", [], "column 'v', row 1: the integer -9223372036854775809 is below int64's"),
        (
            "v\n-1\n9223372036854775813\n",
            [],
            "column 'v' holds integers that no one integer type holds together: -1 (row 0)",
        ),
        ("v,w\n-1,0\n2,9223372036854775813\n", ["--value-column", "w"], "columns 'v', 'w' hold integers that no one"),
        (
            "v,f\n9223372036854775813,0.5\n",
            ["--value-column", "f"],
            "column 'v', row 0: the integer 9223372036854775813 would be rounded",
        ),
        (
            'seq\n"[0, 18446744073709551616]"\n',
            None,
            "column 'seq', row 0: its integers (0 to 18446744073709551616) fit neither",
        ),
    ],
)
def test_csv_integers_no_integer_type_holds_are_refused(tmp_path, capsys, column, args, message):
    (tmp_path / "x.csv").write_text(column)
    argv = ["--column", "seq"] if args is None else ["--value-column", "v", *args]
    status, _, err = run([tmp_path / "x.csv", tmp_path / "d", *argv, "--no-progress"], capsys)
    assert status == 1 and f"x.csv: {message}" in err, err
    assert not (tmp_path / "d").exists()
    # --dtype float64 asks for floats: they are rounded, as asked.
    status, _, err = run([tmp_path / "x.csv", tmp_path / "d", *argv, "--dtype", "float64", "--no-progress"], capsys)
    assert status == 0, err


# ----- labels and step targets ------------------------------------------------------------------


def feed_all(path):
    """Every sequence and its y, in order, through Feeder(window=None) (numpy output)."""
    from fastfeed import Feeder

    xs, ys = [], []
    with Feeder(str(path), window=None, batch_size=3, output="numpy") as feeder:
        for batch in feeder:
            for i, n in enumerate(batch.lengths.tolist()):
                xs.append(np.asarray(batch.x[i, :n]))
                ys.append(np.asarray(batch.y[i]))
    return xs, ys


def test_csv_labels_one_per_id(tmp_path, capsys):
    rng = np.random.default_rng(10)
    ids = rng.choice(["c", "a", "b"], 60)
    klass = {"c": 2, "a": 0, "b": 7}
    weight = {"c": 0.25, "a": -1.5, "b": 3.0}
    v = rng.integers(0, 1000, 60)
    lines = ["id,v,klass,weight"] + [f"{i},{x},{klass[i]},{weight[i]}" for i, x in zip(ids, v)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    order = list(dict.fromkeys(ids))  # ids in order of first appearance
    argv = [tmp_path / "t.csv", tmp_path / "d", "--id-column", "id", "--value-column", "v", "--label-column", "klass"]
    status, out, err = run([*argv, "--no-progress"], capsys)
    assert status == 0, err
    assert "labels (one per sequence): int64 (feature shape ()) from 'klass'" in out
    info = open_dataset(tmp_path / "d")
    assert info.targets == convert_module.open_dataset(tmp_path / "d").targets
    assert (info.targets.kind, info.targets.dtype, info.targets.feat) == ("labels", "int64", ())
    assert info.dtype == "uint16"
    want = group_rows(ids, v.astype(np.uint16))
    xs, ys = feed_all(tmp_path / "d")
    for x, w in zip(xs, want):
        np.testing.assert_array_equal(x, w)
    assert [y.item() for y in ys] == [klass[i] for i in order]
    assert all(y.dtype == np.int64 for y in ys)

    # Two label columns give labels of shape (2,); --target-dtype chooses their dtype.
    two = ["--label-column", "klass", "--label-column", "weight", "--target-dtype", "float32", "--no-progress"]
    argv[1] = tmp_path / "d2"
    status, out, err = run([*argv[:-2], *two], capsys)
    assert status == 0, err
    assert "labels (one per sequence): float32 (feature shape (2,)) from 'klass', 'weight'" in out
    _, ys = feed_all(tmp_path / "d2")
    np.testing.assert_array_equal(np.stack(ys), np.array([[klass[i], weight[i]] for i in order], np.float32))
    assert ys[0].dtype == np.float32


def test_labels_must_be_one_value_per_sequence(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,v,y\na,1,3\nb,2,4\na,3,3\nb,4,5\n")
    argv = [tmp_path / "t.csv", tmp_path / "d", "--id-column", "id", "--value-column", "v", "--label-column", "y"]
    status, _, err = run([*argv, "--no-progress"], capsys)
    assert status == 1
    assert "t.csv: column 'y' holds more than one value for id 'b' (row 1: 4, row 3: 5)" in err
    assert "pass --target-column for a value per step" in err
    assert not (tmp_path / "d").exists()
    # The whole file as one series: its one label is the value every row holds.
    (tmp_path / "s.csv").write_text("v,y\n1.5,9\n2.5,9\n")
    status, _, err = run(
        [tmp_path / "s.csv", tmp_path / "s", "--value-column", "v", "--label-column", "y", "--no-progress"], capsys
    )
    assert status == 0, err
    xs, ys = feed_all(tmp_path / "s")
    np.testing.assert_array_equal(xs[0], [1.5, 2.5])
    assert ys[0].item() == 9
    status, _, err = run(
        [tmp_path / "t.csv", tmp_path / "s2", "--value-column", "v", "--label-column", "y", "--no-progress"], capsys
    )
    assert status == 1 and "column 'y' holds more than one value for the series (row 0: 3, row 1: 4)" in err


def test_parquet_labels_with_a_float_nan_and_integer_ids(tmp_path, capsys):
    ids = np.array([5, 5, 9, 5, 9])
    pq.write_table(
        pa.table({"id": ids, "v": np.arange(5, dtype=np.float32), "y": [np.nan, np.nan, 1.0, np.nan, 1.0]}),
        tmp_path / "p.parquet",
    )
    argv = [tmp_path / "p.parquet", tmp_path / "d", "--id-column", "id", "--value-column", "v", "--label-column", "y"]
    status, _, err = run([*argv, "--no-progress"], capsys)
    assert status == 0, err  # NaN labels are one value
    xs, ys = feed_all(tmp_path / "d")
    np.testing.assert_array_equal(xs[0], np.array([0, 1, 3], np.float32))
    assert np.isnan(ys[0]) and ys[1] == 1.0
    pq.write_table(pa.table({"id": [7, 7], "v": [1, 2], "y": [1, 2]}), tmp_path / "q.parquet")
    argv[0], argv[1] = tmp_path / "q.parquet", tmp_path / "q"
    status, _, err = run([*argv, "--no-progress"], capsys)
    assert status == 1 and "q.parquet: column 'y' holds more than one value for id 7 (row 0: 1, row 1: 2)" in err


def test_step_targets_cut_like_the_values(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,v,t,u\na,1,10,0.5\nb,2,20,1.5\na,3,300,2.5\n")
    argv = [tmp_path / "t.csv", tmp_path / "d", "--id-column", "id", "--value-column", "v", "--target-column", "t"]
    status, out, err = run([*argv, "--no-progress"], capsys)
    assert status == 0, err
    assert "step targets: int64 (feature shape ()) from 't'" in out
    info = open_dataset(tmp_path / "d")
    assert (info.targets.kind, info.targets.dtype, info.targets.feat) == ("steps", "int64", ())
    xs, ys = feed_all(tmp_path / "d")
    np.testing.assert_array_equal(xs[0], np.array([1, 3], np.uint8))
    np.testing.assert_array_equal(ys[0][:2], [10, 300])
    np.testing.assert_array_equal(ys[1][:1], [20])
    # Several target columns: steps of shape (2,); the single-series layout.
    status, out, err = run(
        [
            tmp_path / "t.csv",
            tmp_path / "s",
            "--value-column",
            "v",
            "--target-column",
            "t",
            "--target-column",
            "u",
            "--target-dtype",
            "float32",
            "--no-progress",
        ],
        capsys,
    )
    assert status == 0, err
    xs, ys = feed_all(tmp_path / "s")
    np.testing.assert_array_equal(xs[0], np.array([1, 2, 3], np.uint8))
    np.testing.assert_array_equal(ys[0], np.array([[10, 0.5], [20, 1.5], [300, 2.5]], np.float32))
    status, _, err = run(
        [argv[0], tmp_path / "e", "--value-column", "v", "--target-column", "t", "--target-dtype", "int8"], capsys
    )
    assert status == 1 and "column 't': the value 300 at row 2 cannot be stored as int8" in err
    assert "choose another --target-dtype" in err
    status, _, err = run(
        [argv[0], tmp_path / "e", "--value-column", "v", "--target-column", "u", "--target-dtype", "int8"], capsys
    )
    assert status == 1 and "invalid value '0.5'" in err and "--target-dtype" in err


def test_parquet_list_column_with_labels_and_step_targets(tmp_path, capsys):
    seqs = [[1, 2, 3], [], [4, 5]]
    table = pa.table(
        {
            "tokens": pa.array(seqs, pa.list_(pa.int32())),
            "label": pa.array([3, 1, 2], pa.int16()),
            "next": pa.array([[2, 3, 0], [], [5, 0]], pa.list_(pa.int32())),
            "bad": pa.array([[2, 3], [], [5, 0]], pa.list_(pa.int32())),
        }
    )
    pq.write_table(table, tmp_path / "l.parquet", row_group_size=2)
    status, _, err = run(
        [tmp_path / "l.parquet", tmp_path / "a", "--column", "tokens", "--label-column", "label", "--no-progress"],
        capsys,
    )
    assert status == 0, err
    xs, ys = feed_all(tmp_path / "a")
    assert [x.tolist() for x in xs] == seqs and [y.item() for y in ys] == [3, 1, 2]
    assert ys[0].dtype == np.int16 and xs[0].dtype == np.int32
    status, _, err = run(
        [tmp_path / "l.parquet", tmp_path / "b", "--column", "tokens", "--target-column", "next", "--no-progress"],
        capsys,
    )
    assert status == 0, err
    _, ys = feed_all(tmp_path / "b")
    assert [y[: len(s)].tolist() for y, s in zip(ys, seqs)] == [[2, 3, 0], [], [5, 0]]
    status, _, err = run(
        [tmp_path / "l.parquet", tmp_path / "c", "--column", "tokens", "--target-column", "bad", "--no-progress"],
        capsys,
    )
    assert status == 1
    assert "l.parquet: row 0: column 'bad' holds 2 steps, but column 'tokens' 3; step targets must be aligned" in err
    assert not (tmp_path / "c").exists()


def test_csv_list_column_with_labels_and_json_targets(tmp_path, capsys):
    (tmp_path / "l.csv").write_text('seq,y,t\n"[1, 2]",5,"[0.5, 1]"\n"[3]",6,"[2]"\n')
    status, out, err = run(
        [tmp_path / "l.csv", tmp_path / "a", "--column", "seq", "--label-column", "y", "--no-progress"], capsys
    )
    assert status == 0, err
    xs, ys = feed_all(tmp_path / "a")
    assert [x.tolist() for x in xs] == [[1, 2], [3]] and xs[0].dtype == np.uint8
    assert [y.item() for y in ys] == [5, 6] and ys[0].dtype == np.int64
    status, out, err = run(
        [tmp_path / "l.csv", tmp_path / "b", "--column", "seq", "--target-column", "t", "--no-progress"], capsys
    )
    assert status == 0, err
    assert "step targets: float64 (feature shape ()) from 't'" in out
    _, ys = feed_all(tmp_path / "b")
    assert ys[0].tolist() == [0.5, 1.0] and ys[1][:1].tolist() == [2.0]


# ----- Arrow IPC files ----------------------------------------------------------------------------


def write_arrow(path, table, stream, max_chunksize=None):
    with pa.OSFile(str(path), "wb") as f:
        writer = pa.ipc.new_stream if stream else pa.ipc.new_file
        with writer(f, table.schema) as w:
            w.write_table(table, max_chunksize=max_chunksize)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "file"])
@pytest.mark.parametrize("list_type", [pa.list_, pa.large_list], ids=["list", "large_list"])
def test_arrow_list_column_with_labels(tmp_path, capsys, stream, list_type):
    rng = np.random.default_rng(11)
    seqs = [rng.integers(0, 50_000, int(n)).astype(np.uint16) for n in rng.integers(0, 40, 25)]
    labels = rng.integers(0, 4, 25)
    table = pa.table(
        {
            "input_ids": pa.array([s.tolist() for s in seqs], list_type(pa.uint16())),
            "label": pa.array(labels, pa.int64()),
            "text": [f"doc {i}" for i in range(25)],
        }
    )
    # Several record batches, as Hugging Face datasets writes them (the stream format).
    write_arrow(tmp_path / "data.arrow", table, stream, max_chunksize=7)
    argv = [tmp_path / "data.arrow", tmp_path / "d", "--column", "input_ids", "--label-column", "label"]
    status, out, err = run([*argv, "--no-progress"], capsys)
    assert status == 0, err
    assert "wrote 25 sequences" in out and "of uint16" in out and "narrowest" not in out
    info = open_dataset(tmp_path / "d")
    assert info.dtype == "uint16" and (info.targets.kind, info.targets.dtype) == ("labels", "int64")
    assert_dataset(tmp_path / "d", seqs)
    xs, ys = feed_all(tmp_path / "d")
    assert all(np.array_equal(x, s) for x, s in zip(xs, seqs))
    assert [y.item() for y in ys] == labels.tolist()


def test_arrow_numeric_columns_and_sliced_tables(tmp_path, capsys):
    ids = np.array([3, 1, 3, 2, 1, 3])
    x = np.arange(6, dtype=np.float32) / 2
    y = np.array([7, 8, 7, 9, 8, 7], np.int8)
    write_arrow(tmp_path / "t.arrow", pa.table({"id": ids, "x": x, "y": y}), stream=False, max_chunksize=4)
    argv = [tmp_path / "t.arrow", tmp_path / "g", "--id-column", "id", "--value-column", "x", "--label-column", "y"]
    status, _, err = run([*argv, "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "g", group_rows(ids.tolist(), x))
    _, ys = feed_all(tmp_path / "g")
    assert [v.item() for v in ys] == [7, 8, 9] and ys[0].dtype == np.int8
    status, _, err = run([tmp_path / "t.arrow", tmp_path / "s", "--value-column", "x", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "s", [x])
    # A slice of a table written as it is: list offsets that do not start at 0.
    lists = pa.table({"s": pa.array([[i] * (i % 4) for i in range(20)], pa.list_(pa.int64()))}).slice(5, 10)
    write_arrow(tmp_path / "sl.arrow", lists, stream=True)
    status, _, err = run([tmp_path / "sl.arrow", tmp_path / "sl", "--column", "s", "--no-progress"], capsys)
    assert status == 0, err
    assert_dataset(tmp_path / "sl", [np.array([i] * (i % 4), np.int64) for i in range(5, 15)])


def test_arrow_bad_input(tmp_path, capsys):
    table = pa.table(
        {
            "ids": pa.array([[1, 2], [3, None], [4]], pa.list_(pa.int64())),
            "holes": pa.array([[1, 2], [3], None], pa.list_(pa.int64())),
            "steps": pa.array([[[1, 2]], [[3, None], [4, 5]], []], pa.list_(pa.list_(pa.int8()))),
            "text": ["a", "b", "c"],
            "num": pa.array([1, None, 3], pa.int32()),
        }
    )
    write_arrow(tmp_path / "b.arrow", table, stream=True)

    def err_of(*args):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        status, _, err = run([tmp_path / "b.arrow", out, *args, "--no-progress"], capsys)
        assert not out.exists()
        return status, err

    columns = "'ids', 'holes', 'steps', 'text', 'num'"
    assert err_of("--column", "nope") == (
        2,
        f"fastfeed convert: error: {tmp_path / 'b.arrow'}: no column 'nope'; the columns are {columns}\n",
    )
    status, err = err_of("--column", "ids")
    assert status == 1 and "b.arrow: column 'ids', row 1: a missing value inside its list, at step 1" in err
    status, err = err_of("--column", "holes")
    assert status == 1 and "b.arrow: column 'holes' has 1 missing value (the first at row 2)" in err
    status, err = err_of("--column", "steps")
    assert status == 1 and "column 'steps', row 1: a missing value inside its list, at step 0, element (1,)" in err
    status, err = err_of("--column", "text")
    assert status == 2 and "column 'text' holds string, not lists" in err
    status, err = err_of("--value-column", "text")
    assert status == 1 and "b.arrow: column 'text' holds string, not numbers" in err
    status, err = err_of("--value-column", "num")
    assert status == 1 and "column 'num' has 1 missing value (the first at row 1)" in err
    status, err = err_of("--column", "steps", "--label-column", "num")
    assert status == 1 and "column 'num' has 1 missing value (the first at row 1)" in err
    status, err = err_of("--column", "steps", "--label-column", "ids")
    assert status == 2 and "column 'ids' holds list<item: int64>; a label column holds one number per row" in err
    status, err = err_of("--column", "steps", "--label-column", "text")
    assert status == 1 and "column 'text' holds string, not numbers" in err

    (tmp_path / "junk.arrow").write_bytes(b"not arrow at all")
    status, _, err = run([tmp_path / "junk.arrow", tmp_path / "j", "--column", "x"], capsys)
    assert status == 1 and "junk.arrow: not an Arrow IPC file or stream" in err
    data = (tmp_path / "b.arrow").read_bytes()
    (tmp_path / "cut.arrow").write_bytes(data[: len(data) - 40])
    status, _, err = run([tmp_path / "cut.arrow", tmp_path / "j", "--column", "x"], capsys)
    assert status == 1 and "cut.arrow: cannot read record batch 0" in err and "damaged or cut short" in err
    # The nulls of a later record batch are named by their row in the whole file.
    write_arrow(tmp_path / "late.arrow", pa.table({"v": pa.array([1.0, 2.0, 3.0, None, 5.0])}), True, 2)
    status, _, err = run([tmp_path / "late.arrow", tmp_path / "l", "--value-column", "v"], capsys)
    assert status == 1 and "column 'v' has 1 missing value (the first at row 3)" in err


def test_arrow_without_pyarrow_says_what_to_install(tmp_path, capsys, monkeypatch):
    write_arrow(tmp_path / "a.arrow", pa.table({"s": [[1.0]]}), stream=True)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    status, _, err = run([tmp_path / "a.arrow", tmp_path / "d", "--column", "s"], capsys)
    assert status == 1 and "reading CSV, Parquet and Arrow files needs pyarrow: pip install 'fastfeed[arrow]'" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["t.csv", "d", "--value-column", "v", "--label-column", "y", "--target-column", "y"], "are alternatives"),
        (["t.csv", "d", "--value-column", "v", "--target-dtype", "int8"], "--target-dtype needs --label-column"),
        (["t.csv", "d", "--value-column", "v", "--label-column", "y", "--target-dtype", "int3"], "--target-dtype int3"),
        (["a.npy", "d", "--label-column", "y"], "apply to CSV, Parquet and Arrow inputs only"),
        (["t.csv", "d", "--column", "s", "--target-column", "s"], "is the --column itself"),
        (["t.csv", "d", "--column", "s", "--target-column", "a", "--target-column", "b"], "pass one --target-column"),
        (["t.csv", "d", "--value-column", "v", "--label-column", "nope"], "no column 'nope'; the columns are 'v', 'y'"),
        (["t.csv", "d", "--column", "s"], "no column 's'"),
    ],
)
def test_label_and_target_option_errors(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    Path("t.csv").write_text("v,y\n1,2\n")
    np.save("a.npy", np.zeros(3))
    status, _, err = run([*args, "--no-progress"], capsys)
    assert status == 2, err
    assert message in err
    assert not Path("d").exists()


def test_python_m_fastfeed_convert_arrow_with_labels(tmp_path):
    write_arrow(
        tmp_path / "train.arrow",
        pa.table({"tok": pa.array([[5, 6], [7]], pa.list_(pa.int32())), "y": pa.array([1, 0], pa.int64())}),
        stream=True,
    )
    r = subprocess.run(
        [sys.executable, "-m", "fastfeed", "convert", "train.arrow", "ds", "--column", "tok", "--label-column", "y"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "wrote 2 sequences, 3 steps of int32" in r.stdout
    assert "labels (one per sequence): int64 (feature shape ()) from 'y'" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "fastfeed", "inspect", "ds"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "targets: labels, int64, feature shape ()" in r.stdout
