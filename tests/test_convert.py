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
    assert_dataset(tmp_path / "one", group_rows(ids, v.astype(np.int64)))

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
        (["a.npy", "d", "--column", "x"], 2, "apply to CSV and Parquet inputs only"),
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
    assert_dataset(tmp_path / "out", [np.array([[1, 2], [3, 4], [5, 6]])])
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
    assert_dataset(tmp_path / "out", [np.array([4, 6])])
    (tmp_path / "m.csv").write_text("1,b\n3,4\n")
    assert run([tmp_path / "m.csv", tmp_path / "out2", "--value-column", "b", "--no-progress"], capsys)[0] == 0
    assert_dataset(tmp_path / "out2", [np.array([4])])
    with pytest.raises(SystemExit) as exited:
        run([tmp_path / "d.csv", tmp_path / "out3", "--header", "--no-header"])
    assert exited.value.code == 2 and "not allowed with argument --header" in capsys.readouterr().err
