"""Dataset directories: the format round trip, appends, damage, crashes, the Feeder on them."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastfeed
from fastfeed import DatasetInfo, Feeder, FeedError, FormatError, append_dataset, open_dataset, reference, write_dataset
from fastfeed.device.cache import host_view
from fastfeed.dtypes import SOURCE_DTYPES
from fastfeed.errors import MissingFileError
from fastfeed.io.dataset import TargetsInfo, load_dataset_series, read_sequences, read_targets
from fastfeed.io.sources import load_source

from helpers import assert_same_batches, collect


def rand(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    return rng.standard_normal(shape).astype(dt)


def assert_sequences(path, want) -> None:
    got = read_sequences(path)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"sequence {i}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype.newbyteorder("<"), f"sequence {i}: dtype {g.dtype} != {w.dtype}"
        np.testing.assert_array_equal(g, w, err_msg=f"sequence {i}")


# ----- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", SOURCE_DTYPES)
def test_round_trip_every_dtype(tmp_path, dtype):
    rng = np.random.default_rng(1)
    seqs = [rand(rng, (n, 2), dtype) for n in (7, 0, 1, 30)]
    info = write_dataset(tmp_path / "ds", seqs)
    assert isinstance(info, DatasetInfo)
    assert (info.version, info.dtype, info.feat) == (1, dtype, (2,))
    assert (info.num_sequences, info.num_steps) == (4, 38)
    assert info.lengths.dtype == np.int64 and info.lengths.tolist() == [7, 0, 1, 30]
    assert info.targets is None
    assert info.nbytes == 38 * 2 * np.dtype(dtype).itemsize + 5 * 8
    assert_sequences(tmp_path / "ds", seqs)
    assert (tmp_path / "ds" / "values.bin").stat().st_size == 38 * 2 * np.dtype(dtype).itemsize


@pytest.mark.parametrize("feat", [(), (3,), (2, 3), (0,), (4, 0)])
def test_round_trip_feature_shapes(tmp_path, feat):
    rng = np.random.default_rng(2)
    seqs = [rand(rng, (n, *feat), "float32") for n in (5, 0, 9)]
    info = write_dataset(tmp_path / "ds", seqs)
    assert info.feat == feat
    assert_sequences(tmp_path / "ds", seqs)
    again = open_dataset(tmp_path / "ds")
    assert again.feat == feat and again.lengths.tolist() == [5, 0, 9]


def test_only_empty_sequences_make_empty_files(tmp_path):
    info = write_dataset(tmp_path / "ds", [np.zeros((0, 4), np.float64)] * 3)
    assert (info.num_sequences, info.num_steps) == (3, 0)
    assert (tmp_path / "ds" / "values.bin").stat().st_size == 0
    assert [s.shape for s in read_sequences(tmp_path / "ds")] == [(0, 4)] * 3
    series = load_dataset_series(tmp_path / "ds")
    assert series.values.count == 3 and series.values.lengths().tolist() == [0, 0, 0]


def test_values_are_stored_little_endian_in_c_order(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(6, 4)
    seqs = [base.astype(">f4"), base[::2], np.asfortranarray(base)]
    write_dataset(tmp_path / "ds", seqs)
    raw = np.fromfile(tmp_path / "ds" / "values.bin", dtype="<f4")
    np.testing.assert_array_equal(raw, np.concatenate([base.ravel(), base[::2].ravel(), base.ravel()]))
    offsets = np.fromfile(tmp_path / "ds" / "offsets.bin", dtype="<i8")
    assert offsets.tolist() == [0, 6, 9, 15]
    header = json.loads((tmp_path / "ds" / "header.json").read_text())
    assert header == {
        "format": "fastfeed-dataset",
        "version": 1,
        "dtype": "float32",
        "feat": [4],
        "num_sequences": 3,
        "num_steps": 15,
    }


def test_round_trip_labels(tmp_path):
    rng = np.random.default_rng(3)
    seqs = [rand(rng, (n, 2), "float32") for n in (4, 0, 6)]
    labels = np.array([[1, 2], [3, 4], [5, 6]], np.int16)
    info = write_dataset(tmp_path / "ds", seqs, targets=labels)
    assert info.targets == TargetsInfo("labels", "int16", (2,))
    assert info.nbytes == 10 * 8 + 4 * 8 + 3 * 4
    got = read_targets(tmp_path / "ds")
    assert isinstance(got, np.ndarray) and not got.flags.writeable
    np.testing.assert_array_equal(got, labels)
    # For the core, the labels are its own (guarded) map of targets.bin.
    mapped = load_dataset_series(tmp_path / "ds").labels
    assert (mapped.path, mapped.dtype, mapped.shape) == (str(tmp_path / "ds" / "targets.bin"), "int16", (3, 2))
    np.testing.assert_array_equal(host_view(mapped), labels)


def test_round_trip_step_targets(tmp_path):
    rng = np.random.default_rng(4)
    seqs = [rand(rng, (n,), "float64") for n in (4, 0, 6)]
    targets = [rand(rng, (n, 3), "uint8") for n in (4, 0, 6)]
    info = write_dataset(tmp_path / "ds", seqs, targets=targets)
    assert info.targets == TargetsInfo("steps", "uint8", (3,))
    got = read_targets(tmp_path / "ds")
    assert isinstance(got, list) and len(got) == 3
    for g, w in zip(got, targets):
        np.testing.assert_array_equal(g, w)


def test_info_is_frozen_and_lengths_read_only(tmp_path):
    info = write_dataset(tmp_path / "ds", [np.zeros(3), np.zeros(5)])
    with pytest.raises(AttributeError):
        info.num_steps = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        info.lengths[0] = 7
    text = repr(info)
    assert "2 sequences" in text and "8 steps" in text and "float64" in text and str(tmp_path / "ds") in text


# ----- append -----------------------------------------------------------------------------------


def test_append_adds_sequences(tmp_path):
    rng = np.random.default_rng(5)
    first = [rand(rng, (n, 3), "int32") for n in (3, 0)]
    more = [rand(rng, (n, 3), "int32") for n in (8, 1, 0)]
    write_dataset(tmp_path / "ds", first)
    info = append_dataset(tmp_path / "ds", more)
    assert (info.num_sequences, info.num_steps) == (5, 12)
    assert info.lengths.tolist() == [3, 0, 8, 1, 0]
    info = append_dataset(tmp_path / "ds", [more[0]])
    assert info.num_sequences == 6
    assert_sequences(tmp_path / "ds", first + more + [more[0]])
    assert append_dataset(tmp_path / "ds", []).num_sequences == 6  # nothing to add


def test_append_labels_and_step_targets(tmp_path):
    rng = np.random.default_rng(6)
    write_dataset(tmp_path / "l", [np.zeros((2, 1))], targets=np.array([7]))
    info = append_dataset(tmp_path / "l", [np.ones((3, 1)), np.ones((1, 1))], targets=np.array([8, 9]))
    assert info.num_sequences == 3
    assert read_targets(tmp_path / "l").tolist() == [7, 8, 9]

    seqs = [rand(rng, (n,), "float32") for n in (3, 5)]
    tgts = [rand(rng, (n,), "bool") for n in (3, 5)]
    write_dataset(tmp_path / "s", seqs[:1], targets=tgts[:1])
    append_dataset(tmp_path / "s", seqs[1:], targets=tgts[1:])
    assert_sequences(tmp_path / "s", seqs)
    for g, w in zip(read_targets(tmp_path / "s"), tgts):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    "stored, sequences, targets, message",
    [
        (
            None,
            [np.zeros((2, 3), np.float64)],
            None,
            r"sequences\[0\] has dtype float64, but the dataset at .* has float32",
        ),
        (
            None,
            [np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)],
            None,
            r"sequences\[1\] has feature shape \(4,\), but the dataset at .* has \(3,\)",
        ),
        (None, [np.zeros((2, 3), np.float32)], np.array([1]), r"has no targets, so an append cannot add any"),
        ("labels", [np.zeros((2, 3), np.float32)], None, r"stores labels: pass targets as an array .* not None"),
        (
            "labels",
            [np.zeros((2, 3), np.float32)],
            [np.zeros(2)],
            r"stores labels: pass targets as an array .* not list",
        ),
        (
            "labels",
            [np.zeros((2, 3), np.float32)],
            np.array([1.5]),
            r"targets has dtype float64, but the dataset at .* has int64",
        ),
        ("labels", [np.zeros((2, 3), np.float32)], np.array([1, 2]), r"2 rows, but there are 1 sequences"),
        (
            "steps",
            [np.zeros((2, 3), np.float32)],
            np.array([1]),
            r"stores step targets: pass targets as a list .* not ndarray",
        ),
        (
            "steps",
            [np.zeros((2, 3), np.float32)],
            [np.zeros(3, np.int64)],
            r"targets\[0\] has 3 steps, but sequences\[0\] has 2",
        ),
        (
            "steps",
            [np.zeros((2, 3), np.float32)],
            [np.zeros((2, 2), np.int64)],
            r"targets\[0\] has feature shape \(2,\), but the dataset at .* has \(\)",
        ),
    ],
)
def test_append_mismatches_say_what_differs(tmp_path, stored, sequences, targets, message):
    base = [np.zeros((4, 3), np.float32)]
    stored_targets = {None: None, "labels": np.array([1]), "steps": [np.zeros(4, np.int64)]}[stored]
    write_dataset(tmp_path / "ds", base, targets=stored_targets)
    before = (tmp_path / "ds" / "header.json").read_bytes()
    with pytest.raises(ValueError, match=message):
        append_dataset(tmp_path / "ds", sequences, targets=targets)
    assert (tmp_path / "ds" / "header.json").read_bytes() == before
    assert open_dataset(tmp_path / "ds").num_sequences == 1


def test_append_to_a_missing_dataset(tmp_path):
    with pytest.raises(MissingFileError, match="no such dataset directory"):
        append_dataset(tmp_path / "nope", [np.zeros(3)])


# ----- invalid input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sequences, targets, message",
    [
        (np.zeros((3, 2)), None, r"must be a list or tuple of arrays .* not ndarray; for one series pass \[array\]"),
        ([], None, r"sequences is empty"),
        ([np.zeros(3), [1.0, 2.0]], None, r"sequences\[1\] must be a NumPy array, not list"),
        ([np.zeros(3), np.array([None, 1], dtype=object)], None, r"sequences\[1\] is an object array"),
        ([np.zeros(3, np.complex64)], None, r"sequences\[0\] has unsupported dtype complex64"),
        ([np.zeros(3), np.array(1.0)], None, r"sequences\[1\] is a 0-d array"),
        (
            [np.zeros(3), np.zeros(2), np.zeros(4, np.float32)],
            None,
            r"sequences\[2\] has dtype float32, but sequences\[0\] has float64",
        ),
        (
            [np.zeros((3, 2)), np.zeros((3, 5))],
            None,
            r"sequences\[1\] has feature shape \(5,\), but sequences\[0\] has \(2,\)",
        ),
        ([np.zeros(3), np.zeros(2)], np.array([1, 2, 3]), r"targets .* has 3 rows, but there are 2 sequences"),
        ([np.zeros(3), np.zeros(2)], [np.zeros(3)], r"targets .* has 1 arrays, but there are 2 sequences"),
        ([np.zeros(3), np.zeros(2)], [np.zeros(3), np.zeros(5)], r"targets\[1\] has 5 steps, but sequences\[1\] has 2"),
        (
            [np.zeros(3), np.zeros(2)],
            [np.zeros(3), np.zeros(2, np.int8)],
            r"targets\[1\] has dtype int8, but targets\[0\] has float64",
        ),
        ([np.zeros(3)], np.array(5), r"targets is a 0-d array"),
        ([np.zeros(3)], {"a": 1}, r"targets must be None, an array .* not dict"),
    ],
)
def test_invalid_input_is_refused_before_writing(tmp_path, sequences, targets, message):
    with pytest.raises(ValueError, match=message):
        write_dataset(tmp_path / "ds", sequences, targets=targets)
    assert not (tmp_path / "ds").exists()


def test_write_refuses_a_non_empty_directory(tmp_path):
    write_dataset(tmp_path / "ds", [np.zeros(3)])
    with pytest.raises(FileExistsError, match=r"not empty .* overwrite=True"):
        write_dataset(tmp_path / "ds", [np.ones(2)])
    assert_sequences(tmp_path / "ds", [np.zeros(3)])
    info = write_dataset(tmp_path / "ds", [np.ones((2, 2), np.int8)], overwrite=True)
    assert (info.dtype, info.num_steps) == ("int8", 2)
    assert_sequences(tmp_path / "ds", [np.ones((2, 2), np.int8)])

    # A dataset with labels replaced by one without: no stale targets.bin is left behind.
    write_dataset(tmp_path / "l", [np.zeros(3)], targets=np.array([1]))
    write_dataset(tmp_path / "l", [np.zeros(3)], overwrite=True)
    assert not (tmp_path / "l" / "targets.bin").exists()

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not part of a fastfeed dataset \(notes.txt\)"):
        write_dataset(tmp_path / "other", [np.zeros(3)], overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"

    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is not a directory"):
        write_dataset(tmp_path / "file", [np.zeros(3)])
    (tmp_path / "empty").mkdir()
    assert write_dataset(tmp_path / "empty", [np.zeros(3)]).num_steps == 3


# ----- damaged datasets ---------------------------------------------------------------------------


def _edit_header(ds: Path, **changes) -> None:
    h = json.loads((ds / "header.json").read_text())
    for k, v in changes.items():
        if v is _DELETE:
            del h[k]
        else:
            h[k] = v
    (ds / "header.json").write_text(json.dumps(h))


_DELETE = object()


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def _write_offsets(ds: Path, offsets) -> None:
    np.asarray(offsets, "<i8").tofile(ds / "offsets.bin")


DAMAGES = {
    "no header": (lambda ds: (ds / "header.json").unlink(), "header.json", r"missing"),
    "no values": (lambda ds: (ds / "values.bin").unlink(), "values.bin", r"missing"),
    "no offsets": (lambda ds: (ds / "offsets.bin").unlink(), "offsets.bin", r"missing"),
    "no targets": (lambda ds: (ds / "targets.bin").unlink(), "targets.bin", r"missing"),
    "header not JSON": (lambda ds: (ds / "header.json").write_text("{'version': 1"), "header.json", r"not JSON"),
    "header not an object": (
        lambda ds: (ds / "header.json").write_text("[1]"),
        "header.json",
        r"expected a JSON object",
    ),
    "header not ours": (lambda ds: _edit_header(ds, format="other"), "header.json", r"not a fastfeed dataset header"),
    "header without counts": (
        lambda ds: _edit_header(ds, num_steps=_DELETE, feat=_DELETE),
        "header.json",
        r"missing keys 'feat', 'num_steps'",
    ),
    "version 2": (lambda ds: _edit_header(ds, version=2), "header.json", r"version 2, this fastfeed reads version 1"),
    "unknown dtype": (lambda ds: _edit_header(ds, dtype="complex64"), "header.json", r"unknown dtype 'complex64'"),
    "bad feat": (lambda ds: _edit_header(ds, feat=[-1]), "header.json", r"'feat' must be a list of integers"),
    "negative count": (
        lambda ds: _edit_header(ds, num_steps=-1),
        "header.json",
        r"'num_steps' must be an integer in \[0, 2\*\*62\), got -1",
    ),
    "bad targets kind": (
        lambda ds: _edit_header(ds, targets={"kind": "x", "dtype": "int64", "feat": []}),
        "header.json",
        r"targets kind 'x' is unknown",
    ),
    "values short": (
        lambda ds: _truncate(ds / "values.bin", 10 * 8 - 1),
        "values.bin",
        r"too short: 10 steps of 8 bytes \(float32\) need 80 bytes, but the file holds 79",
    ),
    "offsets short": (
        lambda ds: _truncate(ds / "offsets.bin", 3 * 8),
        "offsets.bin",
        r"too short: 3 sequences need 4 offsets \(32 bytes\), but the file holds 24 bytes",
    ),
    "offsets not from 0": (
        lambda ds: _write_offsets(ds, [1, 3, 3, 10]),
        "offsets.bin",
        r"offsets\[0\] is 1, but the first sequence must start at 0",
    ),
    "offsets decrease": (
        lambda ds: _write_offsets(ds, [0, 3, 2, 10]),
        "offsets.bin",
        r"offsets decrease at index 2: offsets\[2\] = 2 < offsets\[1\] = 3",
    ),
    "offsets end wrong": (
        lambda ds: _write_offsets(ds, [0, 3, 3, 9]),
        "offsets.bin",
        r"the last offset \(offsets\[3\]\) is 9, but the header says there are 10 steps",
    ),
    "labels short": (
        lambda ds: _truncate(ds / "targets.bin", 2 * 8),
        "targets.bin",
        r"too short: 3 labels of 8 bytes \(int64\) need 24 bytes, but the file holds 16",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_dataset_raises_format_error_naming_the_file(tmp_path, damage):
    ds = tmp_path / "ds"
    write_dataset(
        ds,
        [np.zeros((3, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros((7, 2), np.float32)],
        targets=np.array([1, 2, 3]),
    )
    mutate, file, message = DAMAGES[damage]
    mutate(ds)
    for attempt in (lambda: open_dataset(ds), lambda: Feeder(str(ds), window=2), lambda: append_dataset(ds, [])):
        with pytest.raises(FormatError, match=re.escape(str(ds / file)) + r".*" + message) as info:
            attempt()
        assert isinstance(info.value, ValueError)
        if message == "missing":  # a missing file, not a missing header key
            assert isinstance(info.value, MissingFileError) and isinstance(info.value, FileNotFoundError)


def test_damaged_step_targets(tmp_path):
    ds = tmp_path / "ds"
    write_dataset(
        ds, [np.zeros(4, np.float32), np.zeros(2, np.float32)], targets=[np.zeros(4, np.int16), np.zeros(2, np.int16)]
    )
    _truncate(ds / "targets.bin", 11)
    with pytest.raises(FormatError, match=r"targets\.bin: too short: 6 steps of 2 bytes \(int16\) need 12 bytes"):
        open_dataset(ds)


def test_not_a_dataset(tmp_path):
    with pytest.raises(MissingFileError, match="no such dataset directory"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(FormatError, match="not a directory"):
        open_dataset(tmp_path / "f")
    with pytest.raises(FormatError, match=r"is a directory but not a fastfeed dataset: .*header\.json is missing"):
        Feeder(str(tmp_path), window=1)


# ----- torn writes and crashes -------------------------------------------------------------------


def test_torn_bytes_past_the_committed_end_are_ignored_then_replaced(tmp_path):
    rng = np.random.default_rng(7)
    ds = tmp_path / "ds"
    seqs = [rand(rng, (n, 2), "float32") for n in (5, 3)]
    tgts = [rand(rng, (n,), "int32") for n in (5, 3)]
    write_dataset(ds, seqs, targets=tgts)
    for name, junk in (("values.bin", 13), ("offsets.bin", 20), ("targets.bin", 7)):
        with open(ds / name, "ab") as f:
            f.write(b"\xff" * junk)  # an append killed before it committed its header
    (ds / "header.json.tmp").write_text("{half a hea")
    info = open_dataset(ds)
    assert (info.num_sequences, info.num_steps) == (2, 8)
    assert_sequences(ds, seqs)

    more = [rand(rng, (n, 2), "float32") for n in (4,)]
    more_t = [rand(rng, (4,), "int32")]
    info = append_dataset(ds, more, targets=more_t)
    assert (info.num_sequences, info.num_steps) == (3, 12)
    assert_sequences(ds, seqs + more)
    for g, w in zip(read_targets(ds), tgts + more_t):
        np.testing.assert_array_equal(g, w)
    assert (ds / "values.bin").stat().st_size == 12 * 2 * 4  # the junk is gone
    assert (ds / "offsets.bin").stat().st_size == 4 * 8


def test_failure_before_the_header_commit_leaves_the_old_dataset(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    write_dataset(ds, [np.arange(3.0)])

    def crash(*args, **kwargs):
        raise OSError("simulated crash before the commit")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        append_dataset(ds, [np.arange(100.0)])
    monkeypatch.undo()
    assert (ds / "values.bin").stat().st_size > 3 * 8  # the new rows were written, but not committed
    assert open_dataset(ds).num_steps == 3
    assert_sequences(ds, [np.arange(3.0)])
    append_dataset(ds, [np.arange(2.0)])
    assert_sequences(ds, [np.arange(3.0), np.arange(2.0)])


_WRITER = r"""
import sys
import numpy as np
from fastfeed.io.dataset import append_dataset, open_dataset

def count(seed, j):
    return int(np.random.default_rng([seed, j, 0]).integers(1, 5))

def batch(seed, j):
    rng = np.random.default_rng([seed, j, 1])
    lengths = rng.integers(0, 1000, count(seed, j))
    seqs = [rng.standard_normal((int(n), 3)).astype(np.float32) for n in lengths]
    tgts = [rng.integers(0, 1000, int(n)).astype(np.int16) for n in lengths]
    return seqs, tgts

if __name__ == "__main__":
    path, seed = sys.argv[1], int(sys.argv[2])
    have, j = open_dataset(path).num_sequences, 0
    while have > 0:  # the appends already committed
        have -= count(seed, j)
        j += 1
    assert have == 0, "the dataset is not a prefix of the appends"
    print("ready", flush=True)
    while True:
        append_dataset(path, *batch(seed, j))
        j += 1
"""


def _committed_prefix(info: DatasetInfo, seed: int, writer) -> int:
    """How many appends the dataset holds, checking that it holds exactly whole appends."""
    total, j = 0, 0
    while total < info.num_sequences:
        total += writer.count(seed, j)
        j += 1
    assert total == info.num_sequences, f"{info.num_sequences} sequences is not a whole number of appends"
    return j


def test_kill_9_during_appends_leaves_a_consistent_dataset(tmp_path):
    """SIGKILL a writer at random moments: every time, the dataset holds exactly the sequences of
    the appends that completed, and the next writer carries on from there."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    # The same functions the subprocess runs, to recompute what each append wrote.
    spec = importlib.util.spec_from_file_location("fastfeed_crash_writer", script)
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    seed, ds = 12345, tmp_path / "ds"
    write_dataset(ds, *writer.batch(seed, 0))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    rnd = random.Random(99)
    started = time.monotonic()
    prefixes, torn = [], 0
    batches = {}
    kills = 0
    while kills < 25 and time.monotonic() - started < 15:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(ds), str(seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.stderr.read()
            time.sleep(rnd.uniform(0.0, 0.15))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += 1
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
        info = open_dataset(ds)
        m = _committed_prefix(info, seed, writer)
        prefixes.append(m)
        torn += (ds / "values.bin").stat().st_size > info.num_steps * 12
        seqs, tgts = [], []
        for j in range(m):
            if j not in batches:
                batches[j] = writer.batch(seed, j)
            seqs += batches[j][0]
            tgts += batches[j][1]
        assert info.num_steps == sum(len(s) for s in seqs)
        got = read_sequences(ds)
        assert all(np.array_equal(g, w) for g, w in zip(got, seqs)), f"values differ after kill {kills}"
        assert all(np.array_equal(g, w) for g, w in zip(read_targets(ds), tgts)), f"targets differ after kill {kills}"
    assert kills >= 10
    assert prefixes == sorted(prefixes) and prefixes[-1] > 5, prefixes  # appends committed, never lost
    # Kills landed inside appends (rows written past the committed end), not only between them.
    assert torn >= 1, f"no kill left torn rows in {kills} kills; the test did not exercise a torn append"


def test_concurrent_appends_are_serialised(tmp_path):
    ds = tmp_path / "ds"
    write_dataset(ds, [np.zeros((1, 2), np.int64)])
    errors = []

    def append_many(k: int) -> None:
        try:
            for i in range(10):
                append_dataset(ds, [np.full((k + 1, 2), 100 * k + i, np.int64)])
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=append_many, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    info = open_dataset(ds)
    assert info.num_sequences == 41
    got = read_sequences(ds)[1:]
    # Every appended sequence is there once, whole, with the length its value says.
    values = sorted(int(s[0, 0]) for s in got)
    assert values == sorted(100 * k + i for k in range(4) for i in range(10))
    for s in got:
        assert len(s) == int(s[0, 0]) // 100 + 1 and (s == s[0, 0]).all()


# ----- the Feeder on a dataset directory ----------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(window=3, horizon=1, batch_size=4),
        dict(window=2, horizon=2, batch_size=5, stride=2, sampling_rate=2),
        dict(window=4, horizon=0, batch_size=3, shuffle=True, seed=7),
        dict(window=3, horizon=1, batch_size=8, drop_last=True, normalize="standard", dtype="float32"),
    ],
)
def test_feeder_on_a_dataset_matches_the_reference(tmp_path, kw):
    rng = np.random.default_rng(8)
    seqs = [rand(rng, (n, 2), "float64") for n in (20, 0, 3, 11, 1, 40)]
    write_dataset(tmp_path / "ds", seqs[:3])
    append_dataset(tmp_path / "ds", seqs[3:])
    got = collect(Feeder(str(tmp_path / "ds"), output="numpy", num_threads=2, **kw))
    want = reference.batches(seqs, **kw)
    exact = "normalize" not in kw
    assert_same_batches(got, want, exact=exact, rtol=1e-6, atol=1e-6)


def test_feeder_with_explicit_targets_from_a_dataset(tmp_path):
    rng = np.random.default_rng(9)
    seqs = [rand(rng, (n,), "float32") for n in (10, 6)]
    tgts = [rand(rng, (n, 2), "int32") for n in (10, 6)]
    write_dataset(tmp_path / "x", seqs)
    write_dataset(tmp_path / "y", tgts)
    got = collect(Feeder(str(tmp_path / "x"), targets=str(tmp_path / "y"), window=3, batch_size=4, output="numpy"))
    assert_same_batches(got, reference.batches(seqs, targets=tgts, window=3, batch_size=4))
    # A list as targets is aligned with the dataset's sequences too.
    got = collect(Feeder(str(tmp_path / "x"), targets=tgts, window=3, horizon=2, batch_size=4, output="numpy"))
    assert_same_batches(got, reference.batches(seqs, targets=tgts, window=3, horizon=2, batch_size=4))
    with pytest.raises(ValueError, match="the source is a list of 2 series, targets are a list of 1 series"):
        Feeder(str(tmp_path / "x"), targets=[tgts[0]], window=3)


def test_source_exposes_step_targets_and_labels(tmp_path):
    seqs = [np.arange(5.0), np.arange(3.0)]
    write_dataset(tmp_path / "s", seqs, targets=[np.arange(5, dtype=np.int8), np.arange(3, dtype=np.int8)])
    src = load_source(str(tmp_path / "s"))
    assert src.count == 2 and len(src.items) == 1 and not src.single
    assert src.lengths == [5, 3] and src.labels is None and src.dataset.num_steps == 8
    assert src.targets is not None and src.targets.count == 2 and src.targets.dtype == "int8"
    assert src.targets.lengths == [5, 3]

    write_dataset(tmp_path / "l", seqs, targets=np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    src = load_source(str(tmp_path / "l"))
    assert src.targets is None
    assert (src.labels.dtype, src.labels.shape) == ("float32", (2, 2))
    assert host_view(src.labels).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_feeder_refuses_datasets_it_cannot_feed(tmp_path):
    write_dataset(tmp_path / "e", [np.zeros(3)])
    (tmp_path / "e" / "header.json").write_text(
        json.dumps(
            {
                "format": "fastfeed-dataset",
                "version": 1,
                "dtype": "float64",
                "feat": [],
                "num_sequences": 0,
                "num_steps": 0,
            }
        )
    )
    with pytest.raises(ValueError, match="holds no sequences"):
        Feeder(str(tmp_path / "e"), window=1)
    write_dataset(tmp_path / "s", [np.zeros(2), np.zeros(0)])
    with pytest.raises(ValueError, match=r"longer than every series' range \(the longest range holds 2 steps"):
        Feeder(str(tmp_path / "s"), window=3)
    with pytest.raises(ValueError, match="a dataset directory is a source on its own"):
        Feeder([np.zeros(3), str(tmp_path / "s")], window=1)


def test_feeder_refuses_a_dataset_overwritten_under_it(tmp_path):
    """The maps still hold the old files, but feeding stale data silently would be worse: the
    next epoch says what happened."""
    seqs = [np.arange(10.0), np.arange(10.0, 30.0)]
    write_dataset(tmp_path / "ds", seqs)
    feeder = Feeder(str(tmp_path / "ds"), window=2, horizon=1, batch_size=4, output="numpy")
    write_dataset(tmp_path / "ds", [np.ones(50)], overwrite=True)  # unlinks and recreates the files
    with pytest.raises(FeedError, match=r"values.bin was replaced by another file; make a new Feeder"):
        list(feeder)


def test_top_level_exports():
    for name in ("write_dataset", "append_dataset", "open_dataset", "DatasetInfo"):
        assert name in fastfeed.__all__ and getattr(fastfeed, name) is not None


def test_whole_sequences_from_a_directory_match_the_reference(tmp_path):
    rng = np.random.default_rng(1)
    seqs = [rng.standard_normal((int(n), 2)).astype(np.float32) for n in rng.integers(0, 12, 40)]
    labels = np.arange(40, dtype=np.int64)
    write_dataset(tmp_path / "ds", seqs, targets=labels)
    for kw in (dict(shuffle=True, seed=4), dict(bucket=True, bucket_pool=2, shuffle=True), dict(max_len=5)):
        f = Feeder(str(tmp_path / "ds"), window=None, batch_size=6, output="numpy", **kw)
        want = reference.sequence_batches(seqs, labels, batch_size=6, **kw)
        got = list(f)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.x, w["x"])
            np.testing.assert_array_equal(g.y, w["y"])  # the stored labels
            np.testing.assert_array_equal(g.mask, w["mask"])
    steps = [np.full(len(s), i, np.int16) for i, s in enumerate(seqs)]
    write_dataset(tmp_path / "st", seqs, targets=steps)
    (batch,) = list(Feeder(str(tmp_path / "st"), window=None, batch_size=40, pack=True, max_len=500, output="numpy"))
    (want,) = reference.sequence_batches(seqs, steps, batch_size=40, pack=True, max_len=500)
    np.testing.assert_array_equal(batch.y, want["y"])


def test_a_running_feeder_sees_appended_sequences_from_its_next_epoch(tmp_path):
    write_dataset(tmp_path / "ds", [np.arange(3, dtype=np.int32), np.arange(5, dtype=np.int32)])
    f = Feeder(str(tmp_path / "ds"), window=None, batch_size=2, output="numpy")
    it = iter(f)
    first = next(it)
    append_dataset(tmp_path / "ds", [np.arange(100, 104, dtype=np.int32)])
    assert list(it) == [] and first.x.shape == (2, 5)  # the running epoch goes on as it began
    batches = list(f)
    assert len(f) == 2 and [b.x.shape for b in batches] == [(2, 5), (1, 4)]
    np.testing.assert_array_equal(batches[1].x, [[100, 101, 102, 103]])


def test_a_state_taken_between_epochs_after_an_append_resumes_over_the_grown_dataset(tmp_path):
    write_dataset(tmp_path / "ds", [np.arange(3, dtype=np.int32), np.arange(5, dtype=np.int32)])

    def feeder():
        return Feeder(str(tmp_path / "ds"), window=None, batch_size=2, shuffle=True, seed=4, output="numpy")

    f = feeder()
    list(f)
    append_dataset(tmp_path / "ds", [np.arange(100, 104, dtype=np.int32)])
    state = f.state_dict()  # epoch 1, batch 0: the next batch comes from the grown dataset
    g = feeder()
    g.load_state_dict(state)
    want, got = list(f), list(g)
    assert len(got) == len(want) == 2 and sum(len(b.x) for b in got) == 3
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.x, b.x)
    mid = feeder()
    it = iter(mid)
    next(it)
    append_dataset(tmp_path / "ds", [np.arange(7, dtype=np.int32)])
    with pytest.raises(ValueError, match="data: saved"):  # mid-epoch the state is of the data it runs on
        feeder().load_state_dict(mid.state_dict())


FUZZ_REGRESSIONS = os.path.join(os.path.dirname(__file__), "fuzz_regressions")


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(FUZZ_REGRESSIONS) if n.startswith("dataset-")))
def test_fuzzer_findings_raise_format_error(tmp_path, name):
    """Inputs the atheris fuzzer (fuzz/dataset_header_fuzzer.py) once crashed the reader with:
    a header, a NUL byte, then offsets.bin."""
    with open(os.path.join(FUZZ_REGRESSIONS, name), "rb") as fh:
        data = fh.read()
    header, _, offsets = data.partition(b"\0")
    (tmp_path / "header.json").write_bytes(header)
    (tmp_path / "offsets.bin").write_bytes(offsets)
    np.arange(64, dtype="<f4").tofile(tmp_path / "values.bin")
    np.arange(64, dtype="<i2").tofile(tmp_path / "targets.bin")
    with pytest.raises(FormatError, match=str(tmp_path)):
        open_dataset(tmp_path)


def test_counts_beyond_int64_are_refused(tmp_path):
    write_dataset(tmp_path / "ds", [np.arange(3.0)])
    header = json.loads((tmp_path / "ds" / "header.json").read_text())
    (tmp_path / "ds" / "header.json").write_text(json.dumps(dict(header, num_steps=2**70)))
    with pytest.raises(FormatError, match=r"'num_steps' must be an integer in \[0, 2\*\*62\)"):
        open_dataset(tmp_path / "ds")


def test_dataset_info_compares_by_value(tmp_path):
    write_dataset(tmp_path / "a", [np.arange(3.0), np.arange(2.0)])
    assert open_dataset(tmp_path / "a") == open_dataset(tmp_path / "a")
    append_dataset(tmp_path / "a", [np.arange(1.0)])
    before = open_dataset(tmp_path / "a")
    append_dataset(tmp_path / "a", [np.arange(4.0)])
    assert open_dataset(tmp_path / "a") != before


def test_overwrite_must_be_a_boolean(tmp_path):
    write_dataset(tmp_path / "ds", [np.arange(3.0)])
    with pytest.raises(ValueError, match="overwrite must be True or False, got 'no'"):
        write_dataset(tmp_path / "ds", [np.arange(5.0)], overwrite="no")
    assert open_dataset(tmp_path / "ds").num_steps == 3  # untouched
