"""Megatron-LM indexed datasets (P.bin + P.idx) as sources: files written here byte by byte with
NumPy (and by megatron-core's IndexedDatasetBuilder where it imports) against the reference on
the same sequences as NumPy arrays; that the .bin is memory-mapped, never copied; and that a
damaged or inconsistent index is a FormatError naming the file and what is wrong."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastfeed import Feeder, FeedError, FormatError, _core, reference
from fastfeed.errors import MissingFileError
from fastfeed.io.megatron import DTYPE_CODES

from helpers import assert_same_batches, collect, to_numpy

CODES = {name: code for code, name in DTYPE_CODES.items()}


def write_megatron(prefix, seqs, dtype=None, documents=None, modes=False, version=1, code=None):
    """P.bin and P.idx as megatron-core's IndexedDatasetBuilder writes them."""
    dtype = np.dtype(dtype or seqs[0].dtype)
    prefix = str(prefix)
    lengths = np.array([len(s) for s in seqs], dtype=np.int32)
    pointers = np.concatenate(([0], np.cumsum(lengths.astype(np.int64) * dtype.itemsize)[:-1])).astype(np.int64)
    if documents is None:
        documents = np.arange(len(seqs) + 1)  # one sequence per document
    with open(prefix + ".bin", "wb") as f:
        for s in seqs:
            f.write(np.asarray(s, dtype=dtype).tobytes())
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", version))
        f.write(struct.pack("<B", CODES[dtype.name] if code is None else code))
        f.write(struct.pack("<Q", len(seqs)))
        f.write(struct.pack("<Q", len(documents)))
        f.write(lengths.tobytes())
        f.write(pointers.tobytes())
        f.write(np.asarray(documents, dtype=np.int64).tobytes())
        if modes:
            f.write(np.zeros(len(seqs), np.int8).tobytes())
    return prefix


def make_seqs(n=25, dtype="uint16", seed=0, max_len=15):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_len, n)
    lengths[2] = 0
    return [rng.integers(0, 120, int(k)).astype(dtype) for k in lengths]


FIELDS = ("mask", "lengths", "segment_ids", "position_ids", "cu_seqlens")


def padded(source, **kw):
    out = []
    for b in Feeder(source, window=None, output="numpy", num_threads=2, **kw):
        d = {"x": to_numpy(b.x).copy()}
        for name in FIELDS:
            v = getattr(b, name)
            d[name] = None if v is None else to_numpy(v).copy()
        out.append(d)
    return out


def assert_same(got, want):
    assert len(got) == len(want), f"{len(got)} batches, reference has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        for name in ("x",) + FIELDS:
            if w.get(name) is None:
                assert g[name] is None, f"batch {i}: {name}"
                continue
            assert g[name].dtype == w[name].dtype, f"batch {i}: {name} dtype"
            np.testing.assert_array_equal(g[name], w[name], err_msg=f"batch {i}: {name}")


# ----- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(CODES))
def test_every_dtype_code_matches_reference(tmp_path, dtype):
    seqs = make_seqs(dtype=dtype, seed=CODES[dtype])
    prefix = write_megatron(tmp_path / "corpus_text_document", seqs)
    cfg = dict(batch_size=4, shuffle=True, seed=3)
    assert_same(padded(prefix, **cfg), reference.sequence_batches(seqs, **cfg))


def test_prefix_idx_bin_and_pathlike_name_the_same_dataset(tmp_path):
    seqs = make_seqs()
    prefix = write_megatron(tmp_path / "c", seqs)
    want = reference.sequence_batches(seqs, batch_size=5, max_len=8, pad_multiple=4)
    for src in (prefix, prefix + ".idx", prefix + ".bin", tmp_path / "c"):
        assert_same(padded(src, batch_size=5, max_len=8, pad_multiple=4), want)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(batch_size=3, bucket=True, bucket_pool=2, shuffle=True, seed=5),
        dict(batch_size=2, pack=True, max_len=10),
        dict(batch_size=4, rank=1, world_size=2, shuffle=True, seed=9, drop_last=True),
    ],
    ids=["bucket", "pack", "ranks"],
)
def test_padded_options_match_reference(tmp_path, cfg):
    seqs = make_seqs(n=40, dtype="int32", seed=1)
    prefix = write_megatron(tmp_path / "c", seqs)
    assert_same(padded(prefix, **cfg), reference.sequence_batches(seqs, **cfg))


def test_windows_over_megatron_sequences(tmp_path):
    seqs = make_seqs(n=30, dtype="uint16", seed=2, max_len=40)
    prefix = write_megatron(tmp_path / "c", seqs)
    kw = dict(window=6, horizon=1, stride=3, batch_size=7, shuffle=True, seed=1)
    got = collect(Feeder(prefix, output="numpy", **kw))
    assert_same_batches(got, reference.batches(seqs, **kw))
    # A language model's next-token pairs.
    f = Feeder(prefix, window=8, target_shift=1, batch_size=4, dtype="int64", output="numpy")
    want = reference.window_batches(seqs, window=8, target_shift=1, batch_size=4, dtype="int64")
    got = [(to_numpy(b.x), to_numpy(b.y)) for b in f]
    assert len(got) == len(want)
    for (gx, gy), w in zip(got, want):
        np.testing.assert_array_equal(gx, w["x"])
        np.testing.assert_array_equal(gy, w["y"])


def test_sentence_split_documents_and_modes(tmp_path):
    """Several sequences per document (preprocess_data.py --split-sentences): every sequence is an
    item; a multimodal index (a mode byte per sequence after the documents) reads the same."""
    seqs = make_seqs(n=12, dtype="int16", seed=4)
    for modes in (False, True):
        prefix = write_megatron(tmp_path / f"s{modes}", seqs, documents=[0, 3, 3, 7, 12], modes=modes)
        assert_same(padded(prefix, batch_size=5), reference.sequence_batches(seqs, batch_size=5))


def test_bin_is_the_cores_memory_map(tmp_path):
    seqs = make_seqs(n=10, dtype="int32")
    prefix = write_megatron(tmp_path / "c", seqs)
    f = Feeder(prefix, window=None, batch_size=2)
    (ragged,) = f._mode.series.items
    assert isinstance(ragged, _core.Ragged)
    (values,) = ragged.values
    assert isinstance(values, _core.NpyFile) and values.path == prefix + ".bin" and values.data_offset == 0
    assert ragged.lengths().tolist() == [len(s) for s in seqs]
    # Mapped by the core, so its file watch sees the .bin replaced.
    next(iter(f))
    os.replace(write_megatron(tmp_path / "other", seqs) + ".bin", prefix + ".bin")
    f.set_epoch(1)
    with pytest.raises(FeedError, match="changed under the Feeder"):
        next(iter(f))


def test_large_bin_is_not_copied(tmp_path):
    """A 128 MiB .bin: the process's own (anonymous) memory grows by far less than that while a
    Feeder is made and read (measured in a fresh process after a warm-up on a small dataset)."""
    per, count = 1024, 65536
    prefix = str(tmp_path / "big")
    tokens = (np.arange(per * count, dtype=np.int64) % 50000).astype(np.uint16)
    tokens.tofile(prefix + ".bin")
    del tokens
    lengths = np.full(count, per, np.int32)
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, CODES["uint16"], count, count + 1))
        f.write(lengths.tobytes() + (np.arange(count, dtype=np.int64) * per * 2).tobytes())
        f.write(np.arange(count + 1, dtype=np.int64).tobytes())
    small = write_megatron(tmp_path / "small", make_seqs(n=50, max_len=1200))
    size = os.path.getsize(prefix + ".bin")
    script = textwrap.dedent(
        f"""
        import fastfeed

        def anonymous():
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))

        def some_batches(path):
            f = fastfeed.Feeder(path, window=512, target_shift=1, batch_size=16, shuffle=True,
                                dtype="int64", output="numpy", prefetch=1)
            it = iter(f)
            for _ in range(4):
                b = next(it)
            return f

        warm = some_batches({small!r})
        before = anonymous()
        f = some_batches({prefix!r})
        print(anonymous() - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.split()[-1])
    # The Feeder's own tables for 65,536 series take some MiB; a copy would take 128 (512 as int64).
    assert grown < size // 4, f"anonymous memory grew by {grown:,} bytes for a {size:,}-byte .bin"


def test_device_cache_on_cpu(tmp_path):
    pytest.importorskip("torch")
    seqs = make_seqs(n=30, dtype="int16", seed=6)
    prefix = write_megatron(tmp_path / "c", seqs)
    cfg = dict(batch_size=4, shuffle=True, seed=2)
    f = Feeder(prefix, window=None, output="torch", **cfg)
    f._mode.attach_cache("cpu")
    got = [{"x": to_numpy(b.x), "mask": to_numpy(b.mask), "lengths": to_numpy(b.lengths)} for b in f]
    want = reference.sequence_batches(seqs, **cfg)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for name in ("x", "mask", "lengths"):
            np.testing.assert_array_equal(g[name], w[name])


def test_megatron_core_builder(tmp_path):
    torch = pytest.importorskip("torch")
    try:
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    except Exception as e:
        pytest.skip(f"megatron.core does not import here ({type(e).__name__}: {e})")
    seqs = make_seqs(n=20, dtype="uint16", seed=7)
    prefix = str(tmp_path / "built")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for s in seqs:
        builder.add_item(torch.from_numpy(s.astype(np.int64)))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    assert_same(padded(prefix, batch_size=3), reference.sequence_batches(seqs, batch_size=3))
    # Documents of several sequences (sentence splitting), in a multimodal index (mode bytes).
    builder = IndexedDatasetBuilder(prefix + "2.bin", dtype=np.int32, multimodal=True)
    for a in range(0, 20, 5):
        doc = seqs[a : a + 5]
        builder.add_document(torch.from_numpy(np.concatenate(doc).astype(np.int64)), [len(s) for s in doc], [1] * 5)
    builder.finalize(prefix + "2.idx")
    want = [s.astype(np.int32) for s in seqs]
    assert_same(padded(prefix + "2", batch_size=4), reference.sequence_batches(want, batch_size=4))


# ----- refusals ----------------------------------------------------------------------------------


def damaged(tmp_path, change, seqs=None):
    """A fresh dataset, then `change(idx_bytes) -> idx_bytes` applied to its index."""
    prefix = write_megatron(tmp_path / "d", seqs or make_seqs(n=6, dtype="int32", seed=8))
    with open(prefix + ".idx", "rb") as f:
        data = bytearray(f.read())
    with open(prefix + ".idx", "wb") as f:
        f.write(change(data))
    return prefix


def poke(offset, fmt, value):
    def change(data):
        struct.pack_into(fmt, data, offset, value)
        return bytes(data)

    return change


S = 6  # sequences in damaged()'s dataset
LENGTHS, POINTERS, DOCS = 34, 34 + 4 * S, 34 + 12 * S


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: b"NOTMEGA\x00\x00" + d[9:], r"d.idx: not a Megatron-LM index \(it does not start with"),
        (lambda d: d[:20], r"d.idx: truncated: 20 bytes, but the header alone takes 34"),
        (poke(9, "<Q", 2), r"d.idx: version 2, but fastfeed reads Megatron-LM index version 1"),
        (poke(17, "<B", 9), r"d.idx: unknown dtype code 9 \(megatron-core's codes: 1 uint8"),
        (lambda d: d[:-5], r"d.idx: truncated: 157 bytes, but 6 sequences and 7 document indices need 162"),
        (
            lambda d: d + b"\x00" * 3,
            r"d.idx: 165 bytes, but 6 sequences and 7 document indices take 162 \(168 with sequence modes\)",
        ),
        (poke(18, "<Q", 7), r"d.idx: truncated: .* 7 sequences and 7 document indices need"),
        (poke(26, "<Q", 2**40), r"d.idx: truncated: .*1099511627776 document indices"),
        (poke(LENGTHS + 4, "<i", -3), r"d.idx: sequence 1 has length -3"),
        (
            poke(POINTERS + 8 * 2, "<q", 6),
            r"sequence 2 starts at byte 6 of .*d.bin, which is not a multiple of its 4-byte",
        ),
        (poke(POINTERS + 8 * 5, "<q", 10**6), r"sequence 5 .* ends at byte \d+, past the end of .*d.bin"),
        (poke(LENGTHS + 4 * 5, "<i", 10**5), r"sequence 5 .* past the end of .*d.bin"),
        (poke(DOCS + 8 * 6, "<q", 99), r"d.idx: its 7 document indices are not a non-decreasing run"),
        (poke(DOCS, "<q", 1), r"document indices are not a non-decreasing run from 0"),
    ],
    ids=[
        "magic",
        "short-header",
        "version",
        "dtype-code",
        "truncated",
        "extra-bytes",
        "count-too-big",
        "huge-doc-count",
        "negative-length",
        "misaligned-pointer",
        "pointer-past-bin",
        "length-past-bin",
        "document-past-count",
        "document-not-from-0",
    ],
)
def test_damaged_index_is_a_format_error(tmp_path, change, match):
    prefix = damaged(tmp_path, change)
    with pytest.raises(FormatError, match=match):
        Feeder(prefix, window=None)


def test_bin_size_must_agree_with_the_index(tmp_path):
    seqs = make_seqs(n=6, dtype="int32", seed=8)
    prefix = write_megatron(tmp_path / "d", seqs)
    size = os.path.getsize(prefix + ".bin")
    with open(prefix + ".bin", "ab") as f:
        f.write(b"\x00" * 8)
    with pytest.raises(
        FormatError, match=rf"d.bin: {size + 8} bytes, but its index .*d.idx says its 6 sequences end at byte {size}"
    ):
        Feeder(prefix, window=None)
    with open(prefix + ".bin", "r+b") as f:
        f.truncate(size - 4)
    with pytest.raises(FormatError, match=r"past the end of .*d.bin"):
        Feeder(prefix, window=None)


def test_missing_partner_and_empty_index(tmp_path):
    prefix = write_megatron(tmp_path / "d", make_seqs(n=3))
    os.remove(prefix + ".bin")
    with pytest.raises(MissingFileError, match=r"Megatron-LM dataset prefix, but .*d.bin is missing"):
        Feeder(prefix, window=None)
    with pytest.raises(FormatError, match=r"d.idx is not a file fastfeed reads \(.*d.bin is missing"):
        Feeder(prefix + ".idx", window=None)
    empty = write_megatron(tmp_path / "e", [np.zeros(0, np.uint16)])
    with open(empty + ".idx", "r+b") as f:  # zero sequences
        data = bytearray(f.read())
        struct.pack_into("<QQ", data, 18, 0, 1)
        f.seek(0)
        f.truncate()
        f.write(bytes(data[:34]) + struct.pack("<q", 0))
    with pytest.raises(ValueError, match="holds no sequences"):
        Feeder(empty, window=None)
