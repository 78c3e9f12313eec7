"""Hostile dataset directories and .npy files: they are read as data, never as pointers.

A file of a dataset directory that is a symlink leading outside it, a FIFO, a device or a socket
is refused with a FormatError naming it, before anything opens it for reading (opening a FIFO
blocks until a writer comes, so every FIFO case runs in a child process with a timeout: a
regression fails the test instead of hanging the suite). header.json is read with a size and
a nesting limit, and the values it states are bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastfeed import Feeder, FormatError, append_dataset, open_dataset, write_dataset
from fastfeed.io.dataset import read_sequences

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and symlinks need POSIX")

SEQS = [np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(6, dtype=np.float32).reshape(3, 2)]
# (file, targets): each file a dataset may hold, with targets that make it exist.
DATA_FILES = [
    ("header.json", None),
    ("values.bin", None),
    ("offsets.bin", None),
    ("targets.bin", "labels"),
    ("targets.bin", "steps"),
]
DATA_IDS = ["header", "values", "offsets", "labels", "step-targets"]


def make_ds(root: Path, targets=None) -> Path:
    ds = root / "ds"
    t = None
    if targets == "labels":
        t = np.array([7, 8])
    elif targets == "steps":
        t = [np.arange(5, dtype=np.int16), np.arange(3, dtype=np.int16)]
    write_dataset(ds, SEQS, targets=t)
    return ds


def opening(ds: Path):
    """The ways in that read a dataset directory."""
    return [lambda: open_dataset(ds), lambda: Feeder(str(ds), window=None, batch_size=2), lambda: read_sequences(ds)]


def run_child(code: str, *args: object) -> str:
    """Runs `code` in a fresh interpreter (argv[1:] = args) and returns its output; a child
    that blocks fails the test after 10 s rather than hanging the suite."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=10, check=False
    )
    return proc.stdout + proc.stderr


# Prints what opening the source in argv[1] (a dataset directory or a .npy file) does; argv[2]
# optionally names a .npy file of targets.
CHILD = """
import sys
import fastfeed
try:
    if len(sys.argv) > 2:
        fastfeed.Feeder(sys.argv[1], window=1, horizon=1, targets=sys.argv[2], output="numpy")
    elif sys.argv[1].endswith(".npy"):
        fastfeed.Feeder(sys.argv[1], window=1)
    else:
        fastfeed.open_dataset(sys.argv[1])
        fastfeed.Feeder(sys.argv[1], window=None, batch_size=2)
except fastfeed.FormatError as e:
    print("FormatError:", e)
except BaseException as e:
    print("other error:", type(e).__name__, e)
else:
    print("accepted")
"""


# ----- symlinks --------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("name,targets", DATA_FILES, ids=DATA_IDS)
def test_a_symlink_leading_outside_the_directory_is_refused(tmp_path, name, targets):
    ds = make_ds(tmp_path, targets)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(str(ds / name), str(outside / name))  # the very same bytes, now outside
    os.symlink(os.path.join("..", "elsewhere", name), ds / name)
    message = re.escape(f"{ds / name}: a symbolic link to {outside / name}, outside the dataset directory {ds}")
    for attempt in opening(ds):
        with pytest.raises(FormatError, match=message):
            attempt()


@posix_only
@pytest.mark.skipif(not os.path.isfile("/etc/passwd"), reason="needs /etc/passwd")
def test_values_linked_to_a_system_file_are_not_fed(tmp_path):
    ds = tmp_path / "ds"
    write_dataset(ds, [np.zeros(4, np.uint8), np.zeros(4, np.uint8)])
    (ds / "values.bin").unlink()
    os.symlink("/etc/passwd", ds / "values.bin")
    with pytest.raises(FormatError, match=re.escape(f"{ds / 'values.bin'}: a symbolic link to /etc/passwd")):
        Feeder(str(ds), window=None, batch_size=2)


@posix_only
def test_a_chain_of_links_is_judged_by_where_it_ends(tmp_path):
    ds = make_ds(tmp_path)
    shutil.move(str(ds / "values.bin"), str(tmp_path / "values.bin"))
    os.symlink(tmp_path / "values.bin", ds / "hop")  # a file of the directory, but leading out
    os.symlink("hop", ds / "values.bin")
    with pytest.raises(FormatError, match=re.escape(f"{ds / 'values.bin'}: a symbolic link to {tmp_path}")):
        open_dataset(ds)


@posix_only
def test_symlinks_inside_the_directory_are_followed(tmp_path):
    ds = make_ds(tmp_path, "labels")
    want = [b.x.tolist() for b in Feeder(str(ds), window=None, batch_size=2, output="numpy")]
    (ds / "data").mkdir()
    for name in ("values.bin", "offsets.bin", "targets.bin", "header.json"):
        shutil.move(str(ds / name), str(ds / "data" / name))
        os.symlink(os.path.join("data", name), ds / name)
    assert open_dataset(ds).num_sequences == 2
    assert [b.x.tolist() for b in Feeder(str(ds), window=None, batch_size=2, output="numpy")] == want
    # The directory itself may be reached through a link.
    os.symlink(ds, tmp_path / "alias")
    assert open_dataset(tmp_path / "alias").num_steps == 8


@posix_only
def test_a_dangling_or_looping_link_is_a_format_error(tmp_path):
    ds = make_ds(tmp_path)
    (ds / "offsets.bin").unlink()
    os.symlink("offsets.bin", ds / "offsets.bin")  # points at itself
    with pytest.raises(FormatError, match=re.escape(str(ds / "offsets.bin"))):
        open_dataset(ds)
    (ds / "offsets.bin").unlink()
    os.symlink("gone.bin", ds / "offsets.bin")
    with pytest.raises(FormatError, match=re.escape(str(ds / "offsets.bin")) + r".*gone\.bin"):
        open_dataset(ds)


@posix_only
def test_a_header_linked_to_dev_zero_is_refused_at_once(tmp_path):
    ds = make_ds(tmp_path)
    (ds / "header.json").unlink()
    os.symlink("/dev/zero", ds / "header.json")
    # In a child whose address space is capped near what it uses: a regression reads /dev/zero
    # until MemoryError (or the timeout) instead of eating the machine's memory.
    code = (
        "import os, resource\n"
        "if os.path.exists('/proc/self/statm'):\n"
        "    used = int(open('/proc/self/statm').read().split()[0]) * os.sysconf('SC_PAGE_SIZE')\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), resource.RLIM_INFINITY))\n"
    ) + CHILD
    out = run_child(code, ds)
    assert out.startswith(f"FormatError: {ds / 'header.json'}: a symbolic link to /dev/zero, outside"), out


@posix_only
def test_an_append_never_writes_through_a_link_left_as_the_temporary_header(tmp_path):
    ds = make_ds(tmp_path)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    os.symlink(victim, ds / "header.json.tmp")
    append_dataset(ds, [np.zeros((2, 2), np.float32)])
    assert victim.read_text() == "keep me"
    assert open_dataset(ds).num_sequences == 3 and not (ds / "header.json.tmp").exists()


# ----- special files ---------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("name,targets", DATA_FILES, ids=DATA_IDS)
def test_a_fifo_in_a_dataset_is_refused_without_blocking(tmp_path, name, targets):
    ds = make_ds(tmp_path, targets)
    (ds / name).unlink()
    os.mkfifo(ds / name)
    out = run_child(CHILD, ds)
    assert out.startswith(f"FormatError: {ds / name}: a FIFO (named pipe), not a regular file"), out


@posix_only
def test_a_link_inside_the_directory_to_a_fifo_is_refused(tmp_path):
    ds = make_ds(tmp_path)
    (ds / "values.bin").unlink()
    os.mkfifo(ds / "pipe")
    os.symlink("pipe", ds / "values.bin")
    out = run_child(CHILD, ds)
    assert out.startswith(f"FormatError: {ds / 'values.bin'}: a FIFO (named pipe), not a regular file"), out


@posix_only
@pytest.mark.parametrize("where", ["source", "targets", "source-list", "link"])
def test_a_fifo_given_as_a_npy_file_is_refused_without_blocking(tmp_path, where):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(10, dtype=np.float32))
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    if where == "source":
        out = run_child(CHILD, fifo)
    elif where == "targets":
        out = run_child(CHILD, good, fifo)
    elif where == "link":
        os.symlink(fifo, tmp_path / "link.npy")
        fifo = tmp_path / "link.npy"
        out = run_child(CHILD, fifo)
    else:
        out = run_child(CHILD.replace("fastfeed.Feeder(sys.argv[1], window=1)", "fastfeed.Feeder([sys.argv[1]])"), fifo)
    assert re.match(r"FormatError: .*" + re.escape(f"{fifo}: a FIFO (named pipe), not a regular file"), out), out


@posix_only
def test_a_symlink_to_a_regular_npy_file_is_a_fine_source(tmp_path):
    np.save(tmp_path / "real.npy", np.arange(6, dtype=np.float32))
    os.symlink(tmp_path / "real.npy", tmp_path / "link.npy")
    assert len(list(Feeder(str(tmp_path / "link.npy"), window=2, batch_size=10, output="numpy"))) == 1


@posix_only
def test_a_device_given_as_a_npy_file_is_refused(tmp_path):
    with pytest.raises(FormatError, match=re.escape("/dev/null: a character device, not a regular file")):
        Feeder("/dev/null", window=1)


@posix_only
def test_a_socket_or_directory_in_a_dataset_is_refused(tmp_path):
    ds = make_ds(tmp_path)
    header = (ds / "header.json").read_bytes()
    (ds / "header.json").unlink()
    (ds / "header.json").mkdir()
    for attempt in opening(ds):
        with pytest.raises(FormatError, match=re.escape(f"{ds / 'header.json'}: a directory, not a regular file")):
            attempt()
    (ds / "header.json").rmdir()
    (ds / "header.json").write_bytes(header)
    (ds / "values.bin").unlink()
    os.symlink(".", ds / "values.bin")  # a link inside, to the directory itself
    with pytest.raises(FormatError, match=re.escape(f"{ds / 'values.bin'}: a directory, not a regular file")):
        open_dataset(ds)
    (ds / "header.json").unlink()
    if len(os.fsencode(ds / "header.json")) >= 100:
        pytest.skip("the path is too long for a Unix socket")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(ds / "header.json"))
        for attempt in opening(ds):
            with pytest.raises(FormatError, match=re.escape(f"{ds / 'header.json'}: a socket, not a regular file")):
                attempt()


# ----- header limits ---------------------------------------------------------------------------


def edit_header(ds: Path, **changes) -> dict:
    h = json.loads((ds / "header.json").read_text())
    h.update(changes)
    (ds / "header.json").write_text(json.dumps(h))
    return h


def test_a_header_over_the_size_limit_is_refused(tmp_path):
    ds = make_ds(tmp_path)
    h = json.loads((ds / "header.json").read_text())
    (ds / "header.json").write_text(json.dumps(h) + " " * (1 << 20))  # valid JSON, 1 MiB of blanks
    for attempt in opening(ds):
        with pytest.raises(
            FormatError, match=re.escape(f"{ds / 'header.json'}: larger than 1048576 bytes (1 MiB), the most")
        ):
            attempt()


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a": ' * 5000 + "0" + "}" * 5000])
def test_deeply_nested_json_is_a_format_error_not_a_recursion_error(tmp_path, text):
    ds = make_ds(tmp_path)
    (ds / "header.json").write_text(text)
    with pytest.raises(FormatError, match=re.escape(f"{ds / 'header.json'}: JSON nested deeper than 16 levels")):
        open_dataset(ds)


def test_nesting_is_counted_outside_strings_only(tmp_path):
    ds = make_ds(tmp_path)
    edit_header(ds, note='[[[[[[[[[[[[[[[[[[[[ {{{{{{{{{{{{{{{{{{{{ \\" [[[[[[[[[[[[[[[[[')
    assert open_dataset(ds).num_sequences == 2
    edit_header(ds, note=[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]])
    with pytest.raises(FormatError, match="nested deeper than 16 levels"):
        open_dataset(ds)


def test_an_integer_too_long_to_convert_is_a_format_error(tmp_path):
    ds = make_ds(tmp_path)
    text = (ds / "header.json").read_text().replace('"num_steps": 8', '"num_steps": 8' + "0" * 5000)
    (ds / "header.json").write_text(text)
    with pytest.raises(FormatError, match=re.escape(f"{ds / 'header.json'}: not JSON")):
        open_dataset(ds)


def test_a_feature_shape_of_ten_million_ones_is_refused(tmp_path):
    ds = make_ds(tmp_path)
    text = (ds / "header.json").read_text()
    assert '"feat": [2]' in text
    (ds / "header.json").write_text(text.replace('"feat": [2]', '"feat": [' + "1, " * 9_999_999 + "1]"))
    with pytest.raises(FormatError, match=re.escape(str(ds / "header.json"))):
        open_dataset(ds)


@pytest.mark.parametrize("rank", [33, 70])
def test_a_feature_shape_of_too_many_dimensions_is_refused(tmp_path, rank):
    ds = make_ds(tmp_path)
    edit_header(ds, feat=[2] + [1] * (rank - 1))
    for attempt in opening(ds):
        with pytest.raises(
            FormatError,
            match=re.escape(f"{ds / 'header.json'}: 'feat' has {rank} dimensions; a step may have at most 32"),
        ):
            attempt()
    edit_header(ds, feat=[1] * 31 + [2])  # 32 is fine
    assert open_dataset(ds).feat == (1,) * 31 + (2,)


def test_targets_feature_shape_is_bounded_too(tmp_path):
    ds = make_ds(tmp_path, "labels")
    edit_header(ds, targets={"kind": "labels", "dtype": "int64", "feat": [1] * 40})
    with pytest.raises(FormatError, match=r"header\.json: targets: 'feat' has 40 dimensions"):
        open_dataset(ds)


def test_a_step_larger_than_the_values_file_is_refused(tmp_path):
    ds = make_ds(tmp_path)
    edit_header(ds, feat=[2**40])
    with pytest.raises(FormatError, match=re.escape(str(ds / "values.bin")) + ": too short"):
        open_dataset(ds)


# ----- .npy headers ----------------------------------------------------------------------------


def npy_image(header: bytes, data: bytes = b"") -> bytes:
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def test_a_npy_header_that_is_not_utf8_is_a_format_error(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(npy_image(b"{'descr': '<\xff4', 'fortran_order': False, 'shape': (3,), }", bytes(12)))
    with pytest.raises(FormatError, match=re.escape(f"{path}: unsupported dtype '<\\xff4'")):
        Feeder(str(path), window=1)


def test_a_npy_header_with_non_ascii_bytes_is_a_format_error(tmp_path):
    path = tmp_path / "bad.npy"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'é': 1}".encode()
    path.write_bytes(npy_image(header, bytes(12)))
    with pytest.raises(FormatError, match=re.escape(f"{path}: the .npy header is not ASCII text (byte 0xc3 at")):
        Feeder(str(path), window=1)
