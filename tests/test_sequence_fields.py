"""Whole sequences with the fields beside them: static rows, the index (series, start) and the
observed masks of check_finite="mask"."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed import Feeder, reference


def _compare(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = {k: v for k, v in e.items() if v is not None}
        assert set(g) == set(e)
        for name in e:
            assert g[name].dtype == e[name].dtype, name
            np.testing.assert_array_equal(g[name], e[name], err_msg=name)  # NaN == NaN here


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    batch_size=st.integers(1, 4),
    shuffle=st.booleans(),
    bucket=st.booleans(),
    with_index=st.booleans(),
    static_dtype=st.sampled_from(["float64", "int16", "float32"]),
    dtype=st.sampled_from([None, "float32"]),
    finite=st.sampled_from([False, "skip", "mask"]),
    targets=st.sampled_from([None, "steps", "labels"]),
    pack=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
)
def test_fields_beside_sequences_match_the_reference(
    lengths, batch_size, shuffle, bucket, with_index, static_dtype, dtype, finite, targets, pack, seed
):
    rng = np.random.default_rng(seed % 2**32)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    static = (rng.normal(size=(len(seqs), 3)) * 10).astype(static_dtype)
    tgt = None
    if targets == "steps":
        tgt = [rng.normal(size=(n,)) for n in lengths]
    elif targets == "labels":
        tgt = rng.normal(size=(len(seqs), 2))
    if finite:  # a few NaN and Inf among the values, targets and static rows
        for arr in [*seqs[::2], *(tgt if isinstance(tgt, list) else [])][::3]:
            arr.flat[rng.integers(arr.size)] = np.nan
        if isinstance(tgt, np.ndarray):
            tgt[rng.integers(len(seqs)), 1] = np.inf
        if static_dtype != "int16":
            static[rng.integers(len(seqs))] = np.nan
    pack = pack and targets != "labels" and not bucket
    if pack:  # a packed row holds several sequences: no static row or index
        static, with_index = None, False
    kw = dict(
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        bucket=bucket,
        bucket_pool=2 if bucket else None,
        static=static,
        with_index=with_index,
        dtype=dtype,
        check_finite=finite,
        targets=tgt,
        pack=pack,
        max_len=4 if pack else None,
    )
    try:
        feeder = Feeder(seqs, window=None, output="numpy", **kw)
    except ValueError as e:  # every sequence dropped
        assert finite == "skip" and "dropped every sequence" in str(e)
        return
    kw["bucket_pool"] = kw["bucket_pool"] or 256
    for epoch in range(2):
        feeder.set_epoch(epoch)
        got = [b.as_dict() for b in feeder]
        _compare(got, reference.sequence_batches(seqs, epoch=epoch, **kw))
        if finite == "mask":  # nothing non-finite is handed out
            assert all(np.isfinite(b[k]).all() for b in got for k in ("x", "y", "static") if k in b)


def test_static_rows_and_index_by_hand():
    seqs = [np.arange(3.0), np.arange(5.0), np.arange(2.0)]
    static = np.array([[10, 11], [20, 21], [30, 31]], np.int32)
    (first, second) = list(Feeder(seqs, window=None, batch_size=2, static=static, with_index=True, output="numpy"))
    np.testing.assert_array_equal(first.static, [[10, 11], [20, 21]])
    np.testing.assert_array_equal(first.series, [0, 1])
    np.testing.assert_array_equal(first.start, [0, 0])
    np.testing.assert_array_equal(second.static, [[30, 31]])
    np.testing.assert_array_equal(second.series, [2])
    assert first.static.dtype == np.int32 and first.series.dtype == np.int64


def test_static_and_index_are_refused_with_packing():
    seqs = [np.arange(3.0), np.arange(5.0)]
    with pytest.raises(ValueError, match="pack=True puts several sequences in a row"):
        Feeder(seqs, window=None, max_len=4, pack=True, static=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="pack=True puts several sequences in a row"):
        Feeder(seqs, window=None, max_len=4, pack=True, with_index=True)


def test_static_rows_must_match_the_sequences():
    seqs = [np.arange(3.0), np.arange(5.0)]
    with pytest.raises(ValueError, match=r"static has 3 rows, but the source has 2 series"):
        Feeder(seqs, window=None, static=np.zeros((3, 1)))
