"""Saved Feeder states from an earlier release still load, and resume at the same batch.

Each fixture in tests/fixtures/states/ was made by make_states.py (next to the fixtures) with
the release of commit acddcec: ``<name>.json`` holds the recipe of the data, the Feeder's
keyword arguments, the saved ``state_dict()`` and which batch fields were saved;
``<name>.npz`` holds the next three batches that release yielded after that state
(``b<i>_<field>``). Here the data is rebuilt from the recipe, a Feeder is made with the saved
arguments (output="numpy"), the state is loaded and the next three batches must be exactly the
saved ones, values and dtypes.

One rule changed on purpose since those fixtures were made: with whole sequences
(window=None), ``batch.mask`` and ``batch.lengths`` are always set. The old release left them
None in a batch where no step was padded, so such a fixture has no mask/lengths; there the new
batch's mask must be all True and its lengths all equal to the padded length L.

Only the public API is used. The data recipes below are also what make_states.py builds the
fixtures from, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pytest

from fastfeed import Feeder, write_dataset

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "states"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
NEXT_BATCHES = 3
PACK_FIELDS = ("segment_ids", "position_ids", "cu_seqlens")
ALL_FIELDS = ("x", "y", "mask", "lengths") + PACK_FIELDS


# ----- data recipes (shared with make_states.py) -------------------------------------------


def _rng(recipe: Dict[str, Any]) -> np.random.Generator:
    return np.random.default_rng(int(recipe["seed"]))


def _lengths(recipe: Dict[str, Any], rng: np.random.Generator) -> List[int]:
    if "lengths" in recipe:
        return [int(n) for n in recipe["lengths"]]
    return [int(n) for n in rng.integers(recipe["min_len"], recipe["max_len"] + 1, size=recipe["count"])]


def build_data(recipe: Optional[Dict[str, Any]], workdir: pathlib.Path) -> Any:
    """The source or targets a recipe describes (None stays None).

    kinds:
      series        one array of `shape`: loc + scale * standard normal, cast to `dtype`
      series_list   arrays of `lengths` x `feat` (same formula), one generator in turn
      sequences     int sequences: lengths from `lengths` or uniform in [min_len, max_len]
                    (`count` of them), values uniform in [0, high), cast to `dtype`
      labels        `count` integers in [0, high), cast to `dtype`
      step_targets  one array per sequence of the `of` recipe, aligned step for step
      dataset       write_dataset(workdir / `name`, sequences of `sequences`, targets of
                    `targets`); the directory's path is the source
    """
    if recipe is None:
        return None
    kind = recipe["kind"]
    if kind == "series":
        rng = _rng(recipe)
        values = recipe.get("loc", 0.0) + recipe.get("scale", 1.0) * rng.standard_normal(tuple(recipe["shape"]))
        return values.astype(recipe["dtype"])
    if kind == "series_list":
        rng = _rng(recipe)
        feat = tuple(recipe.get("feat", ()))
        return [
            (recipe.get("loc", 0.0) + recipe.get("scale", 1.0) * rng.standard_normal((n,) + feat)).astype(
                recipe["dtype"]
            )
            for n in recipe["lengths"]
        ]
    if kind == "sequences":
        rng = _rng(recipe)
        feat = tuple(recipe.get("feat", ()))
        return [
            rng.integers(0, recipe["high"], size=(n,) + feat).astype(recipe["dtype"]) for n in _lengths(recipe, rng)
        ]
    if kind == "labels":
        return _rng(recipe).integers(0, recipe["high"], size=recipe["count"]).astype(recipe["dtype"])
    if kind == "step_targets":
        rng = _rng(recipe)
        feat = tuple(recipe.get("feat", ()))
        return [
            rng.integers(0, recipe["high"], size=(len(s),) + feat).astype(recipe["dtype"])
            for s in build_data(recipe["of"], workdir)
        ]
    if kind == "dataset":
        path = workdir / recipe["name"]
        write_dataset(path, build_data(recipe["sequences"], workdir), build_data(recipe.get("targets"), workdir))
        return str(path)
    raise ValueError(f"unknown data recipe kind {kind!r}")


def make_feeder(fixture: Dict[str, Any], workdir: pathlib.Path, **extra: Any) -> Feeder:
    """A Feeder over the fixture's data with its saved keyword arguments, output="numpy"."""
    kwargs = dict(fixture["feeder_kwargs"])
    kwargs.update(extra)
    return Feeder(
        build_data(fixture["source"], workdir),
        targets=build_data(fixture["targets"], workdir),
        output="numpy",
        **kwargs,
    )


def batch_stream(feeder: Feeder) -> Iterator[Any]:
    """Batches on and on, across epoch ends (each new iteration runs the next epoch)."""
    while True:
        yielded = False
        for batch in feeder:
            yielded = True
            yield batch
        if not yielded:
            raise AssertionError("an epoch yielded no batch")


def batch_fields(batch: Any) -> Dict[str, np.ndarray]:
    """The batch's set fields, copied (x and y from the tuple, the rest as attributes)."""
    out = {"x": batch[0], "y": batch[1]}
    for name in ALL_FIELDS[2:]:
        out[name] = getattr(batch, name, None)
    return {k: np.array(v, copy=True) for k, v in out.items() if v is not None}


# ----- the test -----------------------------------------------------------------------------


def _load(path: pathlib.Path):
    fixture = json.loads(path.read_text())
    with np.load(path.with_suffix(".npz")) as z:
        saved = {k: z[k] for k in z.files}
    return fixture, saved


def _assert_same(name: str, got: Optional[np.ndarray], want: np.ndarray) -> None:
    assert got is not None, f"{name}: the batch has none, the saved batch has {want.shape} {want.dtype}"
    got = np.asarray(got)
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, saved {want.dtype}"
    np.testing.assert_array_equal(got, want, err_msg=name, strict=True)


def assert_unpadded_mask(where: str, batch: Any) -> None:
    """A batch of whole sequences with no padded step: mask all True over (B, L), lengths all L."""
    x = np.asarray(batch[0])
    rows, length = x.shape[0], x.shape[1]
    assert batch.mask is not None, f"{where}: mask is None (whole sequences always carry a mask now)"
    assert batch.lengths is not None, f"{where}: lengths is None (whole sequences always carry lengths now)"
    mask, lengths = np.asarray(batch.mask), np.asarray(batch.lengths)
    assert mask.dtype == np.bool_, f"{where}: mask dtype {mask.dtype}"
    assert mask.shape == (rows, length), f"{where}: mask shape {mask.shape}, want {(rows, length)}"
    assert mask.all(), f"{where}: a batch with no padding has False in its mask"
    assert lengths.shape == (rows,), f"{where}: lengths shape {lengths.shape}, want {(rows,)}"
    assert (lengths == length).all(), f"{where}: lengths {lengths.tolist()}, want all {length}"


def check_next_batches(fixture: Dict[str, Any], saved: Dict[str, np.ndarray], batches: Iterator[Any]) -> None:
    sequences = fixture["feeder_kwargs"].get("window", None) is None
    for i in range(fixture["next_batches"]):
        batch = next(batches)
        where = f"{fixture['name']}, batch {i} after the state"
        got = batch_fields(batch)
        for field in ("x", "y"):
            key = f"b{i}_{field}"
            if key in saved:
                _assert_same(f"{where}, {field}", got.get(field), saved[key])
            else:
                assert field not in got, f"{where}: {field} is set, the saved batch had none"
        if f"b{i}_mask" in saved or f"b{i}_lengths" in saved:
            for field in ("mask", "lengths"):
                _assert_same(f"{where}, {field}", got.get(field), saved[f"b{i}_{field}"])
        elif sequences:
            assert_unpadded_mask(where, batch)
        else:
            assert batch.mask is None and batch.lengths is None, f"{where}: windows carry no mask or lengths"
        for field in PACK_FIELDS:
            key = f"b{i}_{field}"
            if key in saved:
                _assert_same(f"{where}, {field}", got.get(field), saved[key])
            else:
                assert field not in got, f"{where}: {field} is set, the saved batch was not packed"


def test_fixture_folder_is_not_empty():
    assert FIXTURE_FILES, f"no saved-state fixtures in {FIXTURES} (run make_states.py there with the old build)"
    for path in FIXTURE_FILES:
        assert path.with_suffix(".npz").is_file(), f"{path.name} has no .npz of expected batches"


# An empty folder must fail, not skip (pytest skips an empty parameter list): [None] fails below.
@pytest.mark.parametrize("path", FIXTURE_FILES or [None], ids=lambda p: getattr(p, "stem", "no-fixtures"))
@pytest.mark.parametrize("resume", ["iter", "set_epoch"])
def test_saved_state_resumes_at_the_same_batch(path, resume, tmp_path):
    """'iter': load_state_dict, then iterate. 'set_epoch': the README's resume loop, which
    calls set_epoch(state["epoch"]) after loading (it keeps the loaded position)."""
    assert path is not None, f"no saved-state fixtures in {FIXTURES}"
    fixture, saved = _load(path)
    feeder = make_feeder(fixture, tmp_path)
    try:
        feeder.load_state_dict(fixture["state"])
        if resume == "set_epoch":
            feeder.set_epoch(fixture["state"]["epoch"])
        check_next_batches(fixture, saved, batch_stream(feeder))
    finally:
        feeder.close()
