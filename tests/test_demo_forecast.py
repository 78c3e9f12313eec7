"""`fastfeed demo --forecast`: a forecaster on statsmodels' El Nino data against the seasonal-naive forecast."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastfeed import cli

torch = pytest.importorskip("torch")
pytest.importorskip("pandas", reason="the forecasting demo loads statsmodels' data as pandas frames")
pytest.importorskip("statsmodels", reason="the forecasting demo's data ships with statsmodels")
matplotlib_image = pytest.importorskip("matplotlib.image", reason="the forecasting demo plots with matplotlib")

from fastfeed.demo_forecast import SEASON, load_elnino, run_forecast_demo, seasonal_naive  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _error(name: str, out: str) -> float:
    """The MAE printed on the line starting with ``name`` (``model`` or ``seasonal naive``)."""
    found = re.search(rf"^{name}\s+MAE ([0-9.]+) deg C\s+RMSE ([0-9.]+) deg C$", out, re.MULTILINE)
    assert found, f"no '{name} MAE ... deg C' line in:\n{out}"
    return float(found.group(1))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The demo as a user runs it, in a subprocess, with default settings (a few seconds on 2 cores)."""
    cwd = tmp_path_factory.mktemp("forecast")
    r = subprocess.run(
        [sys.executable, "-m", "fastfeed", "demo", "--forecast", "--no-progress"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r, cwd


def test_cli_forecast_exits_0_and_beats_the_seasonal_naive_forecast(cli_run: tuple) -> None:
    r, _ = cli_run
    assert r.returncode == 0, r.stderr
    model, naive = _error("model", r.stdout), _error("seasonal naive", r.stdout)
    assert model < naive, r.stdout
    assert "the model beats the seasonal-naive forecast" in r.stdout
    assert len(re.findall(r"^epoch +\d+/12  loss \S+  validation MAE", r.stdout, re.MULTILINE)) == 12
    assert "Traceback" not in r.stderr


def test_cli_forecast_writes_a_png(cli_run: tuple) -> None:
    r, cwd = cli_run
    plot = cwd / "fastfeed-demo-forecast.png"  # the default name, in the working directory
    assert plot.is_file(), r.stdout
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib_image.imread(str(plot))  # decodes: not just a header
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert f"forecast plot written to {plot.resolve()}" in r.stdout


def test_in_process_run_is_reproducible_and_keeps_the_split(tmp_path: Path) -> None:
    plot = tmp_path / "forecast.png"
    runs = []
    for path in (str(plot), None):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runs.append(run_forecast_demo(epochs=4, plot=path, progress=False))
    a, b = runs
    assert a.losses == b.losses and a.model_mae == b.model_mae  # seeded: same weights, same shuffle
    assert a.plot == str(plot.resolve()) and plot.read_bytes()[:8] == PNG_SIGNATURE and b.plot is None
    assert a.model_mae < a.naive_mae
    # Validation windows: every start whose 12 targets lie in the last 120 months, in order.
    steps, window, horizon, validation = 732, 24, 12, 120
    assert a.starts.tolist() == list(range(steps - validation - window, steps - window - horizon + 1))
    assert a.windows == validation - horizon + 1


def test_seasonal_naive_is_the_value_a_year_earlier() -> None:
    values = np.arange(100, dtype=np.float32).reshape(-1, 1)
    starts = np.array([0, 5, 30])
    got = seasonal_naive(values, starts, window=12, horizon=12)
    assert got.shape == (3, 12, 1)
    # Target step t = start + window + j is forecast by the value at t - 12: inside the window.
    np.testing.assert_array_equal(got[:, :, 0], starts[:, None] + np.arange(12)[None, :])
    with pytest.raises(ValueError, match="horizon <= 12"):
        seasonal_naive(values, starts, window=24, horizon=13)


def test_elnino_fields() -> None:
    data = load_elnino(validation=120)
    assert data.values.shape == (732, 1) and data.values.dtype == np.float32
    assert data.covariates.shape == (732, 1) and data.known.shape == (732, 2)
    assert str(data.months[0]) == "1950-01" and str(data.months[-1]) == "2010-12"
    assert data.values.min() > 15 and data.values.max() < 32  # degrees Celsius
    # The covariate's monthly means come from the training years only: they average to 0 there.
    train = data.covariates[: 732 - 120, 0].reshape(-1, SEASON)
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.hypot(data.known[:, 0], data.known[:, 1]), 1, rtol=1e-6)


def test_cli_forecast_refuses_settings_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["demo", "--forecast", "--window", "6", "--no-plot", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastfeed demo: error: window must be at least 12 months") and "Traceback" not in err
    assert cli.main(["demo", "--forecast", "--plot", str(tmp_path / "missing" / "f.png")]) == 2
    assert "cannot write the forecast plot" in capsys.readouterr().err
