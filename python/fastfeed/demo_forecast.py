"""The ``fastfeed demo --forecast``: a year-ahead forecast of a real sea surface temperature series.

The data is statsmodels' ``elnino`` dataset (NOAA ERSST v3b, Nino 1+2 region: the monthly mean
sea surface temperature of the Pacific between 0-10 degrees South and 90-80 degrees West, in
degrees Celsius, January 1950 to December 2010: 732 months). It ships inside the statsmodels
wheel, so nothing is downloaded. The series has a strong annual cycle (about 20 to 26 degrees C)
with El Nino and La Nina episodes on top, which makes the seasonal-naive forecast (the value 12
months earlier) the natural baseline.

A Feeder cuts windows of ``window`` months with the ``horizon`` months after them as targets,
and hands the model, beside the temperatures, a covariate (the month's departure from the
training years' mean for that calendar month) and known-future calendar features (sine and
cosine of the month, for the window and the horizon). The split is by time: the training
Feeder reads nothing of the last ``validation`` months (``end_index=-validation``) and the
validation Feeder reads from ``window`` months before them (``start_index=-(validation +
window)``), with the training Feeder's statistics (``normalize=train.normalization``), so every
validation target lies in the held-out months and nothing about them leaks into training.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .demo import _matplotlib_missing, _progress_bar
from .feeder import Feeder

DEFAULT_FORECAST_PLOT = "fastfeed-demo-forecast.png"
SEASON = 12  # months: the seasonal-naive forecast is the value one year earlier
FIRST_YEAR = 1950  # the dataset's first year (January 1950)


@dataclass(frozen=True)
class MonthlySeries:
    """One monthly series with the fields the forecasting model reads beside it.

    Attributes:
        values: the temperatures, (T, 1) float32, degrees Celsius.
        covariates: (T, 1) float32: each month's departure from the mean of its calendar month
            over the training years (known only up to the window's last step).
        known: (T, 2) float32: sine and cosine of the calendar month (known ahead).
        months: (T,) ``datetime64[M]``: the month of each step.
    """

    values: np.ndarray
    covariates: np.ndarray
    known: np.ndarray
    months: np.ndarray


@dataclass(frozen=True)
class ForecastResult:
    """What :func:`run_forecast_demo` measured.

    Attributes:
        losses: mean training loss (MSE on normalised targets) of each epoch.
        model_mae: the model's mean absolute error over every validation window and horizon
            step, in degrees Celsius.
        naive_mae: the seasonal-naive forecast's, over the same targets.
        model_rmse: the model's root mean squared error, degrees Celsius.
        naive_rmse: the seasonal-naive forecast's.
        windows: number of validation windows.
        starts: (windows,) int64: the first step of each validation window, in order.
        plot: absolute path of the forecast plot, None when none was written.
    """

    losses: List[float]
    model_mae: float
    naive_mae: float
    model_rmse: float
    naive_rmse: float
    windows: int
    starts: np.ndarray
    plot: Optional[str]


def _statsmodels_missing() -> Optional[str]:
    """Why the data cannot be loaded (statsmodels or pandas missing), or None when it can."""
    for name in ("pandas", "statsmodels"):
        try:
            __import__(name)
        except ImportError:
            return (
                f"the forecasting demo reads the El Nino data that ships with statsmodels, and {name} is not "
                "installed: pip install statsmodels pandas (or pip install 'fastfeed[demo]')"
            )
    return None


def load_elnino(validation: int) -> MonthlySeries:
    """statsmodels' ``elnino`` data as one monthly series, with its covariate and calendar features.

    ``validation`` is the number of final months held out: the covariate's monthly means are
    taken over the months before them only.
    """
    # By name: statsmodels ships no type information (mypy would refuse the import).
    elnino = importlib.import_module("statsmodels.datasets.elnino")
    frame = elnino.load_pandas().data  # one row per year: YEAR, then JAN..DEC
    years = frame["YEAR"].to_numpy()
    if years[0] != FIRST_YEAR or np.any(np.diff(years) != 1):
        raise ValueError(f"unexpected years in statsmodels' elnino data: {years[0]:g}..{years[-1]:g}")
    table = frame.drop(columns="YEAR").to_numpy(dtype=np.float64)  # (years, 12)
    values = table.reshape(-1)  # row by row: January 1950, February 1950, ...
    steps = values.shape[0]
    if not 0 < validation < steps - SEASON:
        raise ValueError(f"validation must leave at least a year of the {steps} months for training, got {validation}")
    month = np.arange(steps) % SEASON
    train = steps - validation
    climatology = np.array([values[:train][month[:train] == m].mean() for m in range(SEASON)])
    angle = 2 * np.pi * month / SEASON
    return MonthlySeries(
        values=values.astype(np.float32).reshape(-1, 1),
        covariates=(values - climatology[month]).astype(np.float32).reshape(-1, 1),
        known=np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32),
        months=np.datetime64(f"{FIRST_YEAR}-01", "M") + np.arange(steps),
    )


def seasonal_naive(values: np.ndarray, starts: np.ndarray, window: int, horizon: int) -> np.ndarray:
    """The seasonal-naive forecasts of the windows starting at ``starts``: each target step's value a year earlier.

    Returns ``(len(starts), horizon, *feat)``. Needs ``horizon <= SEASON``, so that every value
    used lies in the window (known when the forecast is made).
    """
    if horizon > SEASON:
        raise ValueError(f"the seasonal-naive forecast needs horizon <= {SEASON}, got {horizon}")
    steps = starts[:, None] + window + np.arange(horizon)[None, :] - SEASON
    return values[steps]


def _build_model(torch: Any, window: int, horizon: int, feat: int, cfeat: int, kfeat: int, hidden: int) -> Any:
    class Forecaster(torch.nn.Module):
        """A GRU encoder over the window and an MLP decoder that reads the known future.

        The encoder reads each window step's target, covariates and known features; the
        decoder reads the encoder's last state and the known features of the horizon steps, and
        outputs all ``horizon`` steps at once (in the targets' normalised units).
        """

        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.GRU(feat + cfeat + kfeat, hidden, batch_first=True)
            width = hidden + horizon * kfeat
            self.decoder = torch.nn.Sequential(
                torch.nn.Linear(width, 2 * hidden),
                torch.nn.GELU(),
                torch.nn.Linear(2 * hidden, horizon * feat),
            )

        def forward(self, x: Any, covariates: Any, known: Any) -> Any:
            batch = x.shape[0]
            _, state = self.encoder(torch.cat([x, covariates, known[:, :window]], dim=-1))
            future = known[:, window:].reshape(batch, -1)
            out = self.decoder(torch.cat([state[-1], future], dim=-1))
            return out.reshape(batch, horizon, feat)

    return Forecaster()


def save_forecast_plot(
    data: MonthlySeries,
    starts: Sequence[int],
    window: int,
    forecasts: np.ndarray,
    naive: np.ndarray,
    path: str,
) -> None:
    """Plots forecasts against the truth for a few validation windows as a PNG (Agg backend).

    ``forecasts`` and ``naive`` are ``(len(starts), horizon, 1)`` in degrees Celsius.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless machines and CI have no display
    import matplotlib.pyplot as plt

    horizon = forecasts.shape[1]
    months = data.months.astype("datetime64[D]")  # matplotlib's date axis takes days, not months
    fig, axes = plt.subplots(len(starts), 1, figsize=(8, 2.6 * len(starts)), squeeze=False)
    try:
        for ax, start, model, base in zip(axes[:, 0], starts, forecasts, naive):
            past = slice(start, start + window)
            ahead = slice(start + window, start + window + horizon)
            ax.plot(months[past], data.values[past, 0], color="0.55", label="history (input window)")
            ax.plot(months[ahead], data.values[ahead, 0], color="black", marker=".", label="truth")
            ax.plot(months[ahead], model[:, 0], color="tab:blue", marker=".", label="model")
            ax.plot(months[ahead], base[:, 0], color="tab:orange", linestyle="--", label="seasonal naive")
            ax.axvline(months[start + window], color="0.8", linewidth=1)
            ax.set_ylabel("SST (°C)")
            ax.set_title(f"forecast from {data.months[start + window - 1]} for the next {horizon} months", fontsize=10)
            ax.grid(True, alpha=0.3)
        axes[0, 0].legend(loc="upper left", fontsize=8, ncol=4)
        fig.suptitle("fastfeed demo --forecast: Niño 1+2 sea surface temperature (validation windows)")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _collect(torch: Any, feeder: Feeder) -> Dict[str, Any]:
    """Every batch of an unshuffled Feeder, concatenated field by field."""
    parts: Dict[str, List[Any]] = {"x": [], "y": [], "covariates": [], "known": [], "start": []}
    for batch in feeder:
        for name, items in parts.items():
            items.append(getattr(batch, name))
    return {name: torch.cat(items) for name, items in parts.items()}


def run_forecast_demo(
    epochs: int = 12,
    batch_size: int = 32,
    window: int = 24,
    horizon: int = 12,
    validation: int = 120,
    hidden: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    plot: Optional[str] = DEFAULT_FORECAST_PLOT,
    threads: Optional[int] = None,
    progress: bool = True,
) -> ForecastResult:
    """Trains the forecaster on the El Nino series and compares it with the seasonal-naive forecast.

    The last ``validation`` months are held out; the model forecasts ``horizon`` months (at
    most 12) from windows of ``window`` months (at least 12). Prints the training loss and the
    validation MAE of each epoch, then the model's and the seasonal-naive forecast's validation
    errors in degrees Celsius. ``plot`` is where the PNG of a few validation forecasts goes
    (None for none); ``threads`` is torch's intra-op thread count (default 1: the model is tiny).
    """
    import torch

    problem = _statsmodels_missing()
    if problem:
        raise RuntimeError(problem)
    if not 1 <= horizon <= SEASON:
        raise ValueError(f"horizon must be 1..{SEASON} months (the seasonal-naive baseline's reach), got {horizon}")
    if window < SEASON:
        raise ValueError(
            f"window must be at least {SEASON} months (the seasonal-naive baseline reads the window's last year), "
            f"got {window}"
        )
    if validation < horizon:
        raise ValueError(f"validation ({validation} months) must hold at least one horizon ({horizon} months)")
    plot_problem = _matplotlib_missing() if plot is not None else None
    if plot_problem:
        print(plot_problem, file=sys.stderr)  # said up front, not after the training
        plot = None

    data = load_elnino(validation)
    steps = data.values.shape[0]
    if steps - validation < window + horizon:
        raise ValueError(
            f"a window of {window} months and a horizon of {horizon} leave no training window in the "
            f"{steps - validation} months before the last {validation}"
        )

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    torch.manual_seed(seed)  # the model's initial weights
    start_time = time.perf_counter()
    # The whole data set is 732 steps: one worker thread assembles a batch in microseconds.
    common = dict(
        covariates=data.covariates,
        known=data.known,
        window=window,
        horizon=horizon,
        dtype=torch.float32,
        output="torch",
        num_threads=1,
    )
    try:
        with ExitStack() as feeders:
            # Training: the windows whose every step, targets included, comes before the last
            # `validation` months; the statistics are computed over those steps only.
            train = feeders.enter_context(
                Feeder(
                    data.values,
                    end_index=-validation,
                    normalize="standard",
                    batch_size=batch_size,
                    shuffle=True,
                    seed=seed,
                    **common,
                )
            )
            # Validation: the windows whose targets all lie in the held-out months, normalised
            # with the training statistics, unshuffled, with their start steps (with_index).
            valid = feeders.enter_context(
                Feeder(
                    data.values,
                    start_index=-(validation + window),
                    normalize=train.normalization,
                    with_index=True,
                    batch_size=256,
                    shuffle=False,
                    **common,
                )
            )
            held_out = _collect(torch, valid)
            result, predictions = _train(torch, data, train, held_out, epochs, window, horizon, hidden, lr, progress)
    finally:
        torch.set_num_threads(previous_threads)  # also called as a library function

    wall = time.perf_counter() - start_time
    first, last = data.months[steps - validation], data.months[-1]
    print(
        f"validation: {result.windows} windows of {window} months, each forecast {horizon} months ahead; "
        f"targets {first}..{last}, held out from training"
    )
    print(f"model           MAE {result.model_mae:.3f} deg C   RMSE {result.model_rmse:.3f} deg C")
    print(f"seasonal naive  MAE {result.naive_mae:.3f} deg C   RMSE {result.naive_rmse:.3f} deg C")
    gain = 100 * (1 - result.model_mae / result.naive_mae)
    verdict = (
        f"beats the seasonal-naive forecast by {gain:.1f}%"
        if gain > 0
        else f"does NOT beat the seasonal-naive forecast ({-gain:.1f}% worse)"
    )
    print(f"in MAE the model {verdict}; {epochs} epochs x {len(train)} batches in {wall:.1f} s")
    if plot is not None:
        starts = result.starts
        picks = sorted({0, len(starts) // 2, len(starts) - 1})
        naive = seasonal_naive(data.values, starts[picks], window, horizon)
        save_forecast_plot(data, [int(s) for s in starts[picks]], window, predictions[picks], naive, plot)
        result = replace(result, plot=os.path.abspath(plot))
        print(f"forecast plot written to {result.plot}")
    return result


def _train(
    torch: Any,
    data: MonthlySeries,
    train: Feeder,
    held_out: Dict[str, Any],
    epochs: int,
    window: int,
    horizon: int,
    hidden: int,
    lr: float,
    progress: bool,
) -> Tuple[ForecastResult, np.ndarray]:
    """Trains the model on ``train``'s batches; returns the validation errors and the final forecasts (deg C)."""
    mean, std = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in train.normalization["x"])
    starts = held_out["start"].numpy().astype(np.int64)
    truth = data.values[starts[:, None] + window + np.arange(horizon)[None, :]].astype(np.float64)  # (n, h, 1)
    naive = seasonal_naive(data.values, starts, window, horizon).astype(np.float64)

    feat, cfeat, kfeat = data.values.shape[1], data.covariates.shape[1], data.known.shape[1]
    model = _build_model(torch, window, horizon, feat, cfeat, kfeat, hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    # A short warm-up, then a decay: the last epochs settle instead of jumping around.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(train))
    loss_fn = torch.nn.MSELoss()

    def forecast() -> np.ndarray:
        """The model's forecasts of every validation window, mapped back to degrees Celsius."""
        model.eval()
        with torch.no_grad():
            out = model(held_out["x"], held_out["covariates"], held_out["known"]) * std + mean
        model.train()
        return out.numpy().astype(np.float64)

    losses: List[float] = []
    for epoch in range(epochs):
        train.set_epoch(epoch)
        bar = _progress_bar(len(train), f"epoch {epoch + 1}/{epochs}", progress)
        total, count = 0.0, 0
        epoch_start = time.perf_counter()
        for batch in train:
            optimizer.zero_grad(set_to_none=True)
            # batch.y: the window's next `horizon` steps, normalised with the statistics of x.
            loss = loss_fn(model(batch.x, batch.covariates, batch.known), batch.y)
            loss.backward()
            optimizer.step()
            schedule.step()
            n = batch.x.shape[0]
            total += loss.item() * n  # weighted: a short last batch counts per sample
            count += n
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        losses.append(total / count)
        mae = float(np.abs(forecast() - truth).mean())
        print(
            f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  loss {losses[-1]:.3e}  "
            f"validation MAE {mae:.3f} deg C  ({time.perf_counter() - epoch_start:.2f} s)",
            flush=True,
        )
    predictions = forecast()
    model_err, naive_err = predictions - truth, naive - truth
    result = ForecastResult(
        losses=losses,
        model_mae=float(np.abs(model_err).mean()),
        naive_mae=float(np.abs(naive_err).mean()),
        model_rmse=float(np.sqrt(np.mean(model_err**2))),
        naive_rmse=float(np.sqrt(np.mean(naive_err**2))),
        windows=len(starts),
        starts=starts,
        plot=None,
    )
    return result, predictions
