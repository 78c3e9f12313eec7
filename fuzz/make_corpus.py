"""Writes the seed corpus of the .npy header fuzzer (fuzz/corpus/npy/) from real np.save output.

    .venv/bin/python fuzz/make_corpus.py            # rewrites fuzz/corpus/npy/

Every supported dtype in little-endian, big-endian and native spellings; format versions
1.0, 2.0 and 3.0; C and Fortran order; 0-d, empty and multi-dimensional shapes; plus the
kinds the core refuses (objects, structured, strings, complex, datetimes) and truncations,
so the fuzzer starts from both sides of every check. Arrays are tiny: the header is the target.
"""

from __future__ import annotations

import io
import os
import shutil
import sys

import numpy as np
from numpy.lib import format as npformat

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "npy")

DTYPES = [
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
]
SHAPES = [(), (0,), (3,), (0, 4), (4, 0), (2, 3), (2, 1, 2)]
VERSIONS = [(1, 0), (2, 0), (3, 0)]


def image(arr: np.ndarray, version=None) -> bytes:
    f = io.BytesIO()
    if version is None:
        np.save(f, arr, allow_pickle=True)
    else:
        npformat.write_array(f, arr, version=version, allow_pickle=True)
    return f.getvalue()


def main() -> int:
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    files = {}
    for name in DTYPES:
        for shape in SHAPES:
            arr = (np.arange(int(np.prod(shape))) % 2).astype(name).reshape(shape)
            tag = f"{name}_{'x'.join(map(str, shape)) or 'scalar'}"
            files[f"{tag}.npy"] = image(arr)
            files[f"{tag}_be.npy"] = image(arr.astype(arr.dtype.newbyteorder(">")))
            if len(shape) >= 2:
                files[f"{tag}_fortran.npy"] = image(np.asfortranarray(arr))
        arr = np.arange(6).astype(name).reshape(2, 3)
        for v in VERSIONS:
            files[f"{name}_2x3_v{v[0]}.npy"] = image(arr, v)
    refused = {
        "object": np.array([1, "a", None], dtype=object),
        "structured": np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8")]),
        "unicode": np.array(["ab", "c"]),
        "bytes": np.array([b"ab", b"c"]),
        "complex": np.zeros(3, np.complex64),
        "datetime": np.zeros(3, "datetime64[s]"),
        "longdouble": np.zeros(3, np.longdouble),
        "subarray": np.zeros(2, dtype=("<f4", (2,))),
    }
    for tag, arr in refused.items():
        files[f"refused_{tag}.npy"] = image(arr)
    files["refused_structured_v3.npy"] = image(np.zeros(2, dtype=[("\u00e9", "<f4")]), (3, 0))
    big = image(np.zeros((5, 2), np.float32))
    files["truncated_data.npy"] = big[:-3]
    files["truncated_header.npy"] = big[:40]
    files["magic_only.npy"] = big[:8]
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(files)} seeds in {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
