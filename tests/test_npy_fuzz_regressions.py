"""Inputs that fuzz/npy_header_fuzzer.cpp (`make fuzz`) found in the .npy header parser, byte for byte.

Each was accepted by csrc/source/npy.cpp although the core cannot use it; now each is a FormatError
that names the file. The same bytes are checked in tests/cpp/core_tests.cpp.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import fastfeed

# Values at byte 75, not a multiple of the 4-byte item size: reading them in place through
# typed pointers is misaligned (undefined behaviour in the core).
MISALIGNED_VALUES = (
    b"\x93NUMPY\x01\x00A\x00{'descr': '<i4', 'fortran_order': False, 'shape': (4, 0), }" + b" " * 58 + b"\n"
)
# Shape "(0 36854775807 2504965052179677182, 4)": dimensions without commas were accepted, and
# the leading 0 hid that the other dimensions' product overflows int64.
ZERO_DIM_OVERFLOW = (
    b"\x93NUMPY\x01\x00v\x00{'descr': '|i1', 'fortran_order': False, 'shape': (000000000000000       "
    b"036854775807 000002504965052179677182, 4), \xb3}        036854775807    \n"
)


@pytest.mark.parametrize(
    "data,message",
    [
        (MISALIGNED_VALUES, r"the values start at byte 75, not a multiple of the 4-byte item size"),
        (ZERO_DIM_OVERFLOW, r"malformed 'shape'"),
    ],
    ids=["misaligned-values", "zero-dim-overflow"],
)
def test_fuzzer_crash_inputs_are_format_errors(tmp_path, data, message):
    assert len(MISALIGNED_VALUES) == 128 and len(ZERO_DIM_OVERFLOW) == 153  # the exact artifacts
    path = tmp_path / "crash.npy"
    path.write_bytes(data)
    with pytest.raises(fastfeed.FormatError, match=re.escape(str(path)) + ": " + message):
        fastfeed.Feeder(str(path), window=1)


def npy_image(header: str, data: bytes = b"") -> bytes:
    total = 10 + len(header) + 1
    header += " " * (-total % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


def test_zero_dimension_does_not_hide_an_overflowing_shape(tmp_path):
    path = tmp_path / "z.npy"
    path.write_bytes(
        npy_image("{'descr': '|i1', 'fortran_order': False, 'shape': (0, 36854775807, 2504965052179677182, 4), }")
    )
    with pytest.raises(
        fastfeed.FormatError, match=re.escape(str(path)) + ": the shape in the .npy header is too large"
    ):
        fastfeed.Feeder([str(path), str(path)], window=None)


def test_well_formed_shapes_still_parse(tmp_path):
    path = tmp_path / "ok.npy"
    path.write_bytes(
        npy_image(
            "{'descr': '<f4', 'fortran_order': False, 'shape': ( 3 , 2 , ), }", np.arange(6, dtype="<f4").tobytes()
        )
    )
    batches = list(fastfeed.Feeder(str(path), window=1, output="numpy"))
    assert [b.x.tolist() for b in batches] == [[[[0, 1]]], [[[2, 3]]], [[[4, 5]]]]
    path.write_bytes(
        npy_image("{'descr': '<f4', 'fortran_order': False, 'shape': (3 2), }", np.arange(6, dtype="<f4").tobytes())
    )
    with pytest.raises(fastfeed.FormatError, match="malformed 'shape'"):
        fastfeed.Feeder(str(path), window=1)


CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "corpus", "npy")
SUPPORTED = {
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
}


def numpy_header(path: str):
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, fortran, dtype = reader.get(version, np.lib.format.read_array_header_2_0)(fh)
        except ValueError:
            return None
        needed = int(np.prod(shape)) * dtype.itemsize
        if os.path.getsize(path) - fh.tell() < needed:
            return None  # truncated data
    return shape, fortran, dtype


@pytest.mark.skipif(not os.path.isdir(CORPUS), reason="no fuzz seed corpus in this checkout")
def test_seed_corpus_parses_as_numpy_reads_it():
    """The core's parser and NumPy's agree on every seed: same shape and dtype, or a FormatError
    for what the core cannot read in place (big-endian, Fortran order, other kinds, truncations)."""
    from fastfeed import _core

    names = sorted(os.listdir(CORPUS))
    assert len(names) > 200
    opened = 0
    for name in names:
        path = os.path.join(CORPUS, name)
        want = numpy_header(path)
        usable = (
            want is not None
            and not want[1]
            and want[2].fields is None
            and want[2].subdtype is None
            and want[2].name in SUPPORTED
            and want[2].byteorder in "=<|"
        )
        if usable:
            f = _core.NpyFile.open(path)
            assert (tuple(f.shape), f.dtype) == (want[0], want[2].name), name
            opened += 1
        else:
            with pytest.raises(fastfeed.FormatError, match=re.escape(path)):
                _core.NpyFile.open(path)
    assert opened >= 12 * 7 + 12 * 3  # every dtype in every shape, and in every format version
