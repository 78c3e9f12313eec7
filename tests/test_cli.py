"""The command line (`fastfeed ...`, `python -m fastfeed ...`) and the demo behind it."""

from __future__ import annotations

import contextlib
import io
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastfeed import cli
from fastfeed.demo import run_demo

torch = pytest.importorskip("torch")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastfeed", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# ----- demo -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """One short default-settings run shared by the tests below (training is the slow part)."""
    plot = tmp_path_factory.mktemp("demo") / "loss.png"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        losses = run_demo(epochs=2, plot=str(plot), progress=False)
    return losses, plot, out.getvalue()


def test_demo_losses_are_finite_and_fall(two_epochs):
    losses, _, _ = two_epochs
    assert len(losses) == 2
    assert all(math.isfinite(v) and v > 0 for v in losses)
    # The first epoch starts from random weights; by the second the fit is an order of magnitude better.
    assert losses[1] < losses[0] / 5
    assert losses[1] < 1e-2


def test_demo_reports_each_epoch(two_epochs):
    losses, _, out = two_epochs
    assert "epoch 1/2" in out and "epoch 2/2" in out
    assert f"final loss {losses[-1]:.3e}" in out


def test_demo_writes_png(two_epochs):
    pytest.importorskip("matplotlib", reason="the demo plots its loss with matplotlib")
    _, plot, out = two_epochs
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert plot.stat().st_size > 1000
    assert str(plot) in out


def test_demo_is_reproducible_and_restores_threads(two_epochs):
    before = torch.get_num_threads()
    with contextlib.redirect_stdout(io.StringIO()):
        again = run_demo(epochs=2, plot=None, progress=False)
    assert again == two_epochs[0]  # same seed: same weights, same shuffle, same schedule, same losses
    assert torch.get_num_threads() == before


def test_demo_other_settings(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        a = run_demo(epochs=1, batch_size=64, window=5, seed=1, plot=None, progress=False)
        b = run_demo(epochs=1, batch_size=64, window=5, seed=2, plot=None, progress=False)
    assert math.isfinite(a[0]) and math.isfinite(b[0])
    assert a != b  # the seed reaches the weights and the shuffle


def test_demo_without_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    plot = tmp_path / "loss.png"
    losses = run_demo(epochs=1, batch_size=128, plot=str(plot), progress=False)
    assert len(losses) == 1
    assert "pip install matplotlib" in capsys.readouterr().err
    assert not plot.exists()


def test_cli_demo(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the demo plots its loss with matplotlib")
    plot = tmp_path / "cli.png"
    assert cli.main(["demo", "--epochs", "1", "--batch-size", "128", "--plot", str(plot), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "final loss" in out
    assert plot.read_bytes()[:8] == PNG_SIGNATURE


def test_cli_demo_without_a_plot(tmp_path, capsys):
    plot = tmp_path / "cli.png"
    assert cli.main(["demo", "--epochs", "1", "--batch-size", "128", "--plot", str(plot), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "final loss" in out
    assert not plot.exists()


def test_cli_demo_refuses_a_plot_it_cannot_write_before_training(tmp_path, capsys):
    missing = tmp_path / "no such dir" / "loss.png"
    assert cli.main(["demo", "--epochs", "1", "--batch-size", "128", "--plot", str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"fastfeed demo: error: cannot write the loss plot to {missing}: the directory" in captured.err
    assert "does not exist" in captured.err and "epoch 1/1" not in captured.out  # no training first
    assert cli.main(["demo", "--epochs", "1", "--plot", str(tmp_path)]) == 2
    assert "it is a directory" in capsys.readouterr().err


def test_cli_demo_refuses_settings_it_cannot_train_with_in_one_line(capsys):
    assert cli.main(["demo", "--window", "1000", "--no-plot", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastfeed demo: error: a window of 1000 steps") and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--seed", str(2**64), "--no-plot"])
    assert exit_.value.code == 2 and "argument --seed: must be < 2**63" in capsys.readouterr().err


def test_cli_demo_shows_a_progress_bar_in_logs_too(capsys):
    pytest.importorskip("tqdm")
    assert cli.main(["demo", "--epochs", "1", "--batch-size", "128", "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"epoch 1/1: +0%\|.*\| 0/8 ", captured.err), captured.err  # 990 windows / 128: 8 batches
    assert "epoch 1/1" in captured.out


def test_cli_forecast_without_statsmodels_says_what_to_install(monkeypatch, capsys):
    # The forecasting demo's data come with the demo extra (statsmodels, pandas): without them the
    # command says what to install (whichever of the two is missing), in one line.
    monkeypatch.setitem(sys.modules, "statsmodels", None)  # `import statsmodels` raises ImportError
    assert cli.main(["demo", "--forecast", "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert "pip install statsmodels pandas" in err and "Traceback" not in err


# ----- inspect --------------------------------------------------------------------------------


def test_inspect_via_python_m(tmp_path):
    path = tmp_path / "series.npy"
    np.save(path, np.zeros((1000, 3), np.float32))
    r = _run_module("inspect", str(path), "--window", "10", "--batch-size", "32", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "float32" in r.stdout
    assert "(1000, 3)" in r.stdout
    assert "12000 B" in r.stdout  # 1000 * 3 * 4 bytes of data
    assert "samples: 990" in r.stdout  # 1000 - 10 - 1 + 1
    assert "batches: 31 " in r.stdout  # ceil(990 / 32)


def test_inspect_without_window_and_other_dtype(tmp_path, capsys):
    path = tmp_path / "labels.npy"
    np.save(path, np.arange(500, dtype=np.int16))
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "int16" in out and "(500,)" in out and "1000 B" in out
    assert "samples" not in out  # no --window, no counting

    assert (
        cli.main(
            [
                "inspect",
                str(path),
                "--window",
                "100",
                "--horizon",
                "0",
                "--stride",
                "10",
                "--drop-last",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "samples: 41" in out  # starts 0, 10, ..., 400
    assert "batches: 10 " in out  # 41 // 4 with drop_last


def test_inspect_errors(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "missing.npy")]) == 1
    assert "no such file" in capsys.readouterr().err

    text = tmp_path / "notes.txt"
    text.write_text("not an array")
    assert cli.main(["inspect", str(text)]) == 1
    assert "not a .npy file" in capsys.readouterr().err

    path = tmp_path / "short.npy"
    np.save(path, np.zeros(20, np.float64))
    assert cli.main(["inspect", str(path), "--window", "20"]) == 2  # window + horizon > 20 steps
    assert "longer than the series" in capsys.readouterr().err


# ----- bench, arguments (convert: test_convert.py) --------------------------------------------


def test_version_via_python_m(tmp_path):
    import fastfeed

    r = _run_module("--version", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.strip() == f"fastfeed {fastfeed.__version__}"


@pytest.mark.parametrize(
    "argv, mentions",
    [
        ([], "COMMAND"),
        (["frobnicate"], "frobnicate"),
        (["demo", "--epochs", "0"], "--epochs"),
        (["demo", "--lr", "fast"], "--lr"),
        (["demo", "--batch-size", "-3"], "--batch-size"),
        (["demo", "--bogus"], "--bogus"),
        (["inspect"], "SOURCE"),
        (["inspect", "x.npy", "--window", "ten"], "--window"),
        (["convert"], "INPUT"),
        (["convert", "a.npy"], "OUTPUT_DIR"),
        (["convert", "a.npy", "out", "--bogus"], "--bogus"),
        (["convert", "a.csv", "out", "--label-column"], "--label-column"),
        (["convert", "a.csv", "out", "--target-dtype"], "--target-dtype"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, mentions, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fastfeed" in err and mentions in err


def test_convert_help_names_labels_arrow_and_dtypes(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["convert", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option in ("--label-column L", "--target-column T", "--dtype D", "--target-dtype D", "--column C"):
        assert option in out
    assert ".arrow file (Arrow IPC file or stream)" in out
    assert "narrowest integer type" in out


def test_convert_labels_reach_a_torch_feeder(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    from fastfeed import Feeder

    (tmp_path / "t.csv").write_text("id,step,y\ns1,1,0\ns2,7,2\ns1,2,0\ns3,250,1\ns2,8,2\n")
    argv = ["convert", str(tmp_path / "t.csv"), str(tmp_path / "csv"), "--id-column", "id"]
    assert cli.main([*argv, "--value-column", "step", "--label-column", "y", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 sequences, 5 steps of uint8 (feature shape ())" in out
    assert "dtype uint8: the narrowest integer type for the integers of column 'step' (1 to 250)" in out
    assert "labels (one per sequence): int64 (feature shape ()) from 'y'" in out
    with Feeder(str(tmp_path / "csv"), window=None, batch_size=3) as feeder:
        batch = next(iter(feeder))
    assert batch.y.dtype == torch.int64 and batch.y.tolist() == [0, 2, 1]
    assert batch.x.dtype == torch.uint8 and batch.x.tolist() == [[1, 2], [7, 8], [250, 0]]
    assert batch.lengths.tolist() == [2, 2, 1]

    table = pa.table({"ids": pa.array([[3, 4, 5], [6]], pa.list_(pa.int64())), "next": [[4, 5, 0], [0]]})
    with pa.OSFile(str(tmp_path / "t.arrow"), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)
    argv = ["convert", str(tmp_path / "t.arrow"), str(tmp_path / "arrow"), "--column", "ids"]
    assert cli.main([*argv, "--target-column", "next", "--no-progress"]) == 0
    assert "step targets: int64 (feature shape ()) from 'next'" in capsys.readouterr().out
    with Feeder(str(tmp_path / "arrow"), window=None, batch_size=2) as feeder:
        batch = next(iter(feeder))
    assert batch.x.tolist() == [[3, 4, 5], [6, 0, 0]] and batch.y.tolist() == [[4, 5, 0], [0, 0, 0]]


def test_bench_passes_arguments_and_status(tmp_path, monkeypatch, capfd):
    script = tmp_path / "run.py"
    script.write_text("import sys\nprint('bench args', sys.argv[1:])\nsys.exit(3)\n")
    monkeypatch.setattr(cli, "_find_bench_script", lambda: script)
    assert cli.main(["bench", "--quick", "x"]) == 3  # the script's own status
    assert "bench args ['--quick', 'x']" in capfd.readouterr().out


def test_bench_help_works_from_any_folder(tmp_path):
    # bench/run.py's own help where a checkout is found (an editable install), else the installed
    # package's short help (a wheel); either way it succeeds and names the command typed.
    r = _run_module("bench", "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: fastfeed bench [-h]")


def test_bench_help_of_the_checkouts_script_names_the_command_typed(monkeypatch, capfd):
    # The checkout's bench/ lies beside tests/ (the installed-wheel check copies both).
    script = Path(__file__).resolve().parents[1] / "bench" / "run.py"
    monkeypatch.setattr(cli, "_find_bench_script", lambda: script)
    assert cli.main(["bench", "--help"]) == 0
    assert capfd.readouterr().out.startswith("usage: fastfeed bench [-h] [--quick]")


def test_bench_help_outside_a_checkout(monkeypatch, capsys):
    # An installed wheel has no bench/: --help still works and says where the benchmarks run.
    monkeypatch.setattr(cli, "_find_bench_script", lambda: None)
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastfeed bench [-h]")
    assert "source checkout" in out
    assert cli.main(["bench", "-h"]) == 0
    assert capsys.readouterr().out == out


def test_bench_outside_a_checkout(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_find_bench_script", lambda: None)
    assert cli.main(["bench"]) == 1
    assert "source checkout" in capsys.readouterr().err


def test_bench_found_from_current_directory(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "run.py").write_text("")
    # As if installed from a wheel: nothing next to the package, only the checkout we stand in.
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "lib" / "site-packages" / "fastfeed" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert cli._find_bench_script() == tmp_path / "bench" / "run.py"
    monkeypatch.chdir(tmp_path / "bench")
    assert cli._find_bench_script() is None
