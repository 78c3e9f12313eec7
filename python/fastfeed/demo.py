"""The ``fastfeed demo``: a Keras seed example (next-step prediction of a sine wave) in PyTorch.

The original: a sine wave ``np.sin(np.arange(0, 100, 0.1))``, windows of 10 steps, the next step
as target, two stacked SimpleRNN(50, relu) layers and a Dense(1) head, Adam, MSE, batch size 1,
20 epochs of ``model.fit`` on a generator. Its final loss was about 1e-4.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, List, Optional

import numpy as np

from .feeder import Feeder

DEFAULT_PLOT = "fastfeed-demo-loss.png"


def sine_series() -> np.ndarray:
    """The seed's 1000-step sine wave as a (T, 1) float32 series: one feature per step, as an RNN wants."""
    return np.sin(np.arange(0, 100, 0.1)).astype(np.float32).reshape(-1, 1)


def _build_model(torch: Any) -> Any:
    class SineRNN(torch.nn.Module):
        """Two stacked ReLU RNN layers of 50 units and a linear head on the last step's output."""

        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.RNN(1, 50, num_layers=2, nonlinearity="relu", batch_first=True)
            self.head = torch.nn.Linear(50, 1)

        def forward(self, x: Any) -> Any:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    return SineRNN()


def _matplotlib_missing() -> Optional[str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed, so no loss plot: pip install matplotlib (or pip install 'fastfeed[demo]')"
    return None


def save_loss_plot(losses: List[float], path: str) -> None:
    """Writes the per-epoch losses as a PNG (Agg backend: works without a display)."""
    import matplotlib

    matplotlib.use("Agg")  # headless machines and CI have no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        epochs = range(1, len(losses) + 1)
        ax.plot(epochs, losses, marker="o")
        # The loss falls by orders of magnitude; a linear axis would show only the first epoch.
        if all(v > 0 and math.isfinite(v) for v in losses):
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean training MSE")
        ax.set_title("fastfeed demo: next-step prediction of a sine wave")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None  # the per-epoch lines still report progress
    # leave=False: the finished bar gives way to the one-line epoch summary. In logs (stderr not a
    # terminal) the bar still shows, redrawn less often: its carriage returns are noise there.
    every = 0.2 if sys.stderr.isatty() else 2.0
    return tqdm(total=total, desc=desc, unit="batch", leave=False, mininterval=every, file=sys.stderr)


def run_demo(
    epochs: int = 20,
    batch_size: int = 1,
    window: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
    plot: Optional[str] = DEFAULT_PLOT,
    threads: Optional[int] = None,
    progress: bool = True,
) -> List[float]:
    """Trains the seed's model on the sine wave and returns the mean training MSE of each epoch.

    ``plot`` is where the loss plot (PNG) goes, None for none. ``threads`` is torch's intra-op
    thread count; the default 1 is fastest for this tiny model (more threads only add overhead).
    """
    import torch

    plot_problem = _matplotlib_missing() if plot is not None else None
    if plot_problem:
        print(plot_problem, file=sys.stderr)  # said up front, not after a minute of training
        plot = None

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    torch.manual_seed(seed)  # the model's initial weights: torch's default initialisation
    model = _build_model(torch)
    # The seed left Adam at Keras's defaults: lr=1e-3 as here (Keras's eps=1e-7 vs torch's 1e-8
    # makes no visible difference).
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()

    losses: List[float] = []
    feed_seconds = 0.0
    start = time.perf_counter()
    # Keras's fit shuffles a generator's batches each epoch, so this does too (set_epoch reshuffles).
    # One worker thread: the whole epoch is a few kB, assembled in microseconds; more would only
    # compete with the training loop for the cores.
    feeder = Feeder(
        sine_series(),
        window=window,
        horizon=1,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        dtype=torch.float32,
        output="torch",
        num_threads=1,
    )
    # Batch-1 Adam at a constant rate keeps jumping around the minimum (the epoch loss wanders
    # between 1e-4 and 1e-3); a cosine decay to lr/4 lets the last epochs settle.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(feeder), eta_min=lr / 4)
    try:
        with feeder:
            for epoch in range(epochs):
                feeder.set_epoch(epoch)
                bar = _progress_bar(len(feeder), f"epoch {epoch + 1}/{epochs}", progress)
                total, count = 0.0, 0
                epoch_start = time.perf_counter()
                batches = iter(feeder)
                while True:
                    t0 = time.perf_counter()
                    batch = next(batches, None)  # timed apart from training: the Feeder's share
                    feed_seconds += time.perf_counter() - t0
                    if batch is None:
                        break
                    x, y = batch
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x), y[:, 0])  # y: (B, horizon=1, 1) -> (B, 1)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    n = x.shape[0]
                    total += loss.item() * n  # weighted: a short last batch counts per sample
                    count += n
                    if bar is not None:
                        bar.update(1)
                        if bar.n % 50 == 0:  # formatting the postfix every batch would cost more than the feed
                            bar.set_postfix(loss=f"{total / count:.3e}", refresh=False)
                if bar is not None:
                    bar.close()
                losses.append(total / count)
                print(
                    f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  loss {losses[-1]:.3e}  "
                    f"({time.perf_counter() - epoch_start:.1f} s)",
                    flush=True,
                )
    finally:
        torch.set_num_threads(previous_threads)  # run_demo is also called as a library function

    wall = time.perf_counter() - start
    samples = feeder.num_samples
    # The trained model on every window at once: the training loss without its per-step noise.
    with (
        torch.no_grad(),
        Feeder(
            sine_series(),
            window=window,
            horizon=1,
            batch_size=samples,
            dtype=torch.float32,
            output="torch",
            num_threads=1,
        ) as everything,
    ):
        x, y = next(iter(everything))
        fit_mse = loss_fn(model(x), y[:, 0]).item()
    print(
        f"final loss {losses[-1]:.3e} (mean training MSE of epoch {epochs}); "
        f"MSE of the trained model over all {samples} windows {fit_mse:.3e}"
    )
    print(
        f"{epochs} epochs x {len(feeder)} batches in {wall:.1f} s; "
        f"waiting on the Feeder took {feed_seconds:.3f} s ({100 * feed_seconds / wall:.2f}% of it)"
    )
    if plot is not None:
        save_loss_plot(losses, plot)
        print(f"loss plot written to {os.path.abspath(plot)}")
    return losses
