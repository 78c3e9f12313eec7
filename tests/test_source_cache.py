"""device_cache=True gathers windows, and padded or packed whole sequences, from a source kept
whole on the device: with PyTorch's indexing on a CPU device (everywhere), and with the core's
CUDA kernels on a GPU (where there is one; skipped with the reason elsewhere). Both are checked
against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fastfeed
from fastfeed import Feeder, reference, write_dataset
from fastfeed.device.cache import CACHEABLE
from test_sequences import FIELDS, as_dict, sequence_configs

from helpers import assert_same_batches, bfloat16_values, collect

torch = pytest.importorskip("torch")
CACHE_DTYPES = ["int16", "int64", "uint8", "float16", "float32", "float64"]
GPU = fastfeed.cuda_available() and torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not GPU, reason="no usable CUDA device"))]


def cached(source, device="cpu", **kw):
    f = Feeder(source, output="torch", **kw)
    f._mode.attach_cache(device)
    return f


@pytest.mark.parametrize("device", DEVICES)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(CACHE_DTYPES),
    out=st.sampled_from([None, "float32", "float64", "bfloat16", "int32"]),
    many=st.booleans(),
    window=st.integers(1, 6),
    rate=st.integers(1, 3),
    horizon=st.integers(0, 2),
    shuffle=st.booleans(),
    batch=st.integers(1, 9),
    world=st.sampled_from([1, 2]),
    steps=st.sampled_from([None, 3]),
    normalize=st.booleans(),
    separate=st.booleans(),
)
def test_cached_windows_match_the_reference(
    device, seed, dtype, out, many, window, rate, horizon, shuffle, batch, world, steps, normalize, separate
):
    rng = np.random.default_rng(seed)
    span = (window - 1 + horizon) * rate + 1
    lengths = [int(n) for n in rng.integers(span, span + 30, 3 if many else 1)]
    feat = tuple(int(d) for d in rng.integers(1, 4, rng.integers(0, 3)))  # odd row sizes: narrow vectors
    series = [rng.integers(0, 100, (n,) + feat).astype(dtype) for n in lengths]
    targets = None
    if horizon and separate:
        targets = [rng.integers(0, 50, (n, 3)).astype("float32") for n in lengths]
    if normalize:
        out = out if out in ("float32", "float64", "bfloat16") else "float32"
    kw = dict(
        window=window,
        sampling_rate=rate,
        horizon=horizon,
        batch_size=batch,
        shuffle=shuffle,
        seed=seed,
        dtype=out,
        normalize="standard" if normalize else None,
        rank=world - 1,
        world_size=world,
        steps_per_epoch=steps,
    )
    src = series if many else series[0]
    tgt = None if targets is None else (targets if many else targets[0])
    if sum(n - span + 1 for n in lengths) < world:  # fewer samples than ranks: a rank would get nothing
        # (with virtual epochs every rank needs an equal share of each pass, which the message names)
        with pytest.raises(ValueError, match=r"leaves rank 1 nothing|equal share of each pass, but a pass has only"):
            Feeder(src, targets=tgt, **kw)
        return
    f = cached(src, device, targets=tgt, **kw)
    want = reference.batches(src, targets=tgt, **kw)
    # Normalised bfloat16 may round the other way where the mean's last bit differs (one bf16 step).
    tol = 8e-3 if out == "bfloat16" else 1e-6
    assert_same_batches(collect(f), want, exact=not normalize, rtol=tol, atol=1e-6, bf16=out == "bfloat16")


@pytest.mark.parametrize("device", DEVICES)
def test_cached_from_files_and_datasets_with_skipped_nans(tmp_path, device):
    s = np.arange(600, dtype=np.float32).reshape(300, 2)
    s[17, 1] = np.nan
    np.save(tmp_path / "s.npy", s)
    kw = dict(window=5, horizon=1, batch_size=16, shuffle=True, check_finite="skip")
    assert_same_batches(collect(cached(str(tmp_path / "s.npy"), device, **kw)), reference.batches(s, **kw))
    seqs = [np.arange(n, dtype=np.float64) for n in (40, 3, 25)]
    write_dataset(tmp_path / "ds", seqs)
    kw = dict(window=4, horizon=2, batch_size=5, shuffle=True)
    assert_same_batches(collect(cached(str(tmp_path / "ds"), device, **kw)), reference.batches(seqs, **kw))


def test_device_cache_errors():
    s = np.arange(100.0)
    with pytest.raises(ValueError, match="device_cache=True needs a CUDA device"):
        Feeder(s, window=4, device_cache=True)
    f = Feeder(s.astype(np.uint32), window=4, output="torch")
    with pytest.raises(ValueError, match="the source dtype uint32 cannot be gathered on a GPU"):
        f._mode.attach_cache("cpu")


@pytest.mark.parametrize("device", DEVICES)
@given(c=sequence_configs())
def test_cached_sequences_match_the_reference(device, c):
    seqs, targets, cfg, run = c
    arrays = seqs + (targets if isinstance(targets, list) else [] if targets is None else [targets])
    assume(all(a.dtype.name in CACHEABLE for a in arrays))
    assume(cfg["dtype"] in (None, "bfloat16") + CACHEABLE)
    try:
        want = reference.sequence_batches(seqs, targets, epoch=run["epoch"], **cfg)
    except (ZeroDivisionError, IndexError):  # no batch in a pass at all, or every sequence dropped
        want = []
    assume(len(want) > 0)
    f = Feeder(
        seqs,
        window=None,
        targets=targets,
        output="torch",
        num_threads=run["num_threads"],
        prefetch=run["prefetch"],
        **cfg,
    )
    f._mode.attach_cache(device)
    f.set_epoch(run["epoch"])
    got = [as_dict(b) for b in f]
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        for name in ("x", "y") + FIELDS:
            if w.get(name) is None:
                assert g[name] is None, f"batch {i}: {name} should be None"
                continue
            assert g[name].dtype == w[name].dtype and g[name].shape == w[name].shape, f"batch {i}: {name}"
            if name == "x" and cfg["normalize"] is not None:
                # torch rounds float64 to float16 by way of float32 (twice), NumPy once: where the two
                # differ it is by one step of the 16-bit float.
                gv, wv = (
                    (bfloat16_values(g[name]), bfloat16_values(w[name]))
                    if cfg["dtype"] == "bfloat16"
                    else (g[name], w[name])
                )
                tol = {2: 8e-3}.get(g[name].dtype.itemsize, 1e-6)
                np.testing.assert_allclose(gv, wv, rtol=tol, atol=1e-6, err_msg=f"batch {i}: {name}")
            else:
                np.testing.assert_array_equal(g[name], w[name], err_msg=f"batch {i}: {name}")
