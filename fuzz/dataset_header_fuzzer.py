"""Fuzzes the dataset directory reader (header.json and offsets.bin) with atheris.

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/dataset_header_fuzzer.py -max_total_time=600 fuzz/corpus/dataset

Each input is a header (JSON text) and, after the first NUL byte, the bytes of offsets.bin; the
values file is a fixed valid one. Opening must either work or raise fastfeed.FormatError (a
ValueError, or MissingFileError for a missing file); any other exception or a crash is a bug.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris
import numpy as np

from fastfeed import Feeder
from fastfeed.errors import FormatError
from fastfeed.io.dataset import load_dataset_series, open_dataset

DIR = tempfile.mkdtemp(prefix="fastfeed-fuzz-")
np.arange(64, dtype="<f4").tofile(os.path.join(DIR, "values.bin"))
np.arange(64, dtype="<i2").tofile(os.path.join(DIR, "targets.bin"))


def write(name: str, data: bytes) -> None:
    with open(os.path.join(DIR, name), "wb") as f:
        f.write(data)


def one_input(data: bytes) -> None:
    header, _, offsets = data.partition(b"\0")
    write("header.json", header)
    write("offsets.bin", offsets)
    try:
        info = open_dataset(DIR)
        assert load_dataset_series(DIR).info == info  # the two ways in read the same header
        if info.num_steps > 0 and info.num_sequences > 0:
            for batch in Feeder(DIR, window=None, batch_size=4, output="numpy"):
                assert batch.x.shape[0] <= 4
    except FormatError:
        pass
    except ValueError as e:  # argument-level refusals (e.g. no sample) are fine, crashes are not
        if "yields no sample" not in str(e) and "empty" not in str(e) and "every sequence" not in str(e):
            raise
    del data


if __name__ == "__main__":
    # instrument_all, not instrument_imports: an editable install loads fastfeed through a
    # custom loader that import-time instrumentation misses.
    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
