"""The ``fastfeed`` command line (also ``python -m fastfeed``): demo, inspect, bench, convert."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from ._version import __version__

# torch and matplotlib are imported inside the commands that need them: `inspect` must work
# without torch, and `--help` or `convert` should answer without paying seconds for the import.


def _positive(kind: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {name}: {text!r}") from None
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value

    return parse


_pos_int = _positive(int, "an integer")
_pos_float = _positive(float, "a number")


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    value = _nonneg_int(text)
    if value >= 2**63:  # torch.manual_seed takes a signed 64-bit integer
        raise argparse.ArgumentTypeError(f"must be < 2**63, got {text}")
    return value


def _fail(command: str, message: str, status: int) -> int:
    print(f"fastfeed {command}: error: {message}", file=sys.stderr)
    return status


# ----- demo -----------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        return _fail("demo", "the demo trains a PyTorch model: pip install torch", 1)
    if args.forecast:
        return _cmd_demo_forecast(args)
    from .demo import DEFAULT_PLOT, run_demo

    plot = None if args.no_plot else (DEFAULT_PLOT if args.plot is None else args.plot)
    problem = _unwritable(plot) if plot is not None else None
    if problem:  # said before a minute of training, not after it
        return _fail("demo", f"cannot write the loss plot to {plot}: {problem} (or pass --no-plot)", 2)
    try:
        run_demo(
            epochs=args.epochs or 20,
            batch_size=args.batch_size or 1,
            window=args.window or 10,
            lr=args.lr or 1e-3,
            seed=args.seed,
            plot=plot,
            threads=args.threads,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the plot could not be written after all (disk full, removed meanwhile)
        return _fail("demo", f"cannot write the loss plot to {plot}: {e.strerror or e}", 1)
    except (ValueError, RuntimeError, OverflowError) as e:  # settings the model or the data refuse
        return _fail("demo", str(e).splitlines()[0] if str(e) else type(e).__name__, 2)
    return 0


def _cmd_demo_forecast(args: argparse.Namespace) -> int:
    from .demo_forecast import DEFAULT_FORECAST_PLOT, _statsmodels_missing, run_forecast_demo

    missing = _statsmodels_missing()
    if missing:
        return _fail("demo", missing, 1)
    plot = None if args.no_plot else (DEFAULT_FORECAST_PLOT if args.plot is None else args.plot)
    problem = _unwritable(plot) if plot is not None else None
    if problem:
        return _fail("demo", f"cannot write the forecast plot to {plot}: {problem} (or pass --no-plot)", 2)
    # Options left out keep run_forecast_demo's own defaults.
    given = {name: getattr(args, name) for name in ("epochs", "batch_size", "window", "lr")}
    try:
        run_forecast_demo(
            **{name: value for name, value in given.items() if value is not None},
            seed=args.seed,
            plot=plot,
            threads=args.threads,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except OSError as e:
        return _fail("demo", f"cannot write the forecast plot to {plot}: {e.strerror or e}", 1)
    except (ValueError, RuntimeError, OverflowError) as e:
        return _fail("demo", str(e).splitlines()[0] if str(e) else type(e).__name__, 2)
    return 0


def _unwritable(path: str) -> Optional[str]:
    """Why a file cannot be written at `path`, or None when it looks writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "it is a directory"
    if not os.path.isdir(folder):
        return f"the directory {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"the directory {folder} is not writable"
    return None


# ----- inspect --------------------------------------------------------------------------------


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exp = min((n.bit_length() - 1) // 10, 4)
    return f"{n} B ({n / 1024**exp:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exp - 1]})"


def _cmd_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from ._core import NpyFile
    from .dtypes import numpy_storage
    from .errors import FormatError

    path = os.fspath(args.source)
    if os.path.isdir(path):
        status = _describe_dataset(path)
        return status if status != 0 or args.window is None else _inspect_windows(args, path)
    if not os.path.exists(path):
        return _fail("inspect", f"no such file: {path}", 1)
    try:
        npy = NpyFile.open(path)
    except (FormatError, OSError) as e:
        return _fail("inspect", str(e), 1)
    shape = tuple(int(d) for d in npy.shape)
    data_bytes = int(np.prod(shape, dtype=np.int64)) * numpy_storage(npy.dtype).itemsize
    print(f"source:  {npy.path}")
    print(f"dtype:   {npy.dtype}")
    print(f"shape:   {shape}")
    if shape:
        print(f"steps:   {shape[0]}, feature shape {shape[1:]}")
    print(f"data:    {_human_bytes(data_bytes)}")
    print(f"file:    {_human_bytes(os.path.getsize(path))} (header {int(npy.data_offset)} B)")
    if args.window is None:
        return 0
    return _inspect_windows(args, path)


def _describe_dataset(path: str) -> int:
    import numpy as np

    from .errors import FormatError
    from .io.dataset import open_dataset

    try:
        info = open_dataset(path)
    except (FormatError, OSError) as e:
        return _fail("inspect", str(e), 1)
    print(f"dataset: {info.path} (format version {info.version})")
    print(f"dtype:   {info.dtype}, feature shape {info.feat}")
    print(f"sequences: {info.num_sequences}, steps: {info.num_steps}")
    if info.num_sequences:
        lengths = info.lengths
        print(f"lengths: min {int(lengths.min())}, median {float(np.median(lengths)):g}, max {int(lengths.max())}")
    t = info.targets
    print("targets: none" if t is None else f"targets: {t.kind}, {t.dtype}, feature shape {t.feat}")
    print(f"data:    {_human_bytes(info.nbytes)}")
    return 0


def _inspect_windows(args: argparse.Namespace, path: str) -> int:
    from .errors import FormatError
    from .feeder import Feeder

    try:
        # output="numpy": counting batches needs no torch (and starts faster without it).
        with Feeder(
            path,
            window=args.window,
            horizon=args.horizon,
            batch_size=args.batch_size,
            sampling_rate=args.sampling_rate,
            stride=args.stride,
            drop_last=args.drop_last,
            output="numpy",
            num_threads=1,
        ) as feeder:
            print(
                f"window {feeder.window}, horizon {feeder.horizon}, sampling_rate {feeder.sampling_rate}, "
                f"stride {feeder.stride}:"
            )
            print(f"samples: {feeder.num_samples}")
            print(
                f"batches: {len(feeder)} of batch_size {feeder.batch_size}"
                f"{' (drop_last)' if feeder.drop_last else ''} per epoch"
            )
    except FormatError as e:
        return _fail("inspect", str(e), 1)
    except ValueError as e:  # the window configuration does not fit this source
        return _fail("inspect", str(e), 2)
    return 0


# ----- bench ----------------------------------------------------------------------------------


def _find_bench_script() -> Optional[Path]:
    # An editable install or a run from a checkout: python/fastfeed/cli.py -> <root>/bench/run.py.
    # An installed wheel has no bench/, so fall back to the current directory being a checkout.
    here = Path(__file__).resolve()
    for root in (here.parents[2], Path.cwd()):
        script = root / "bench" / "run.py"
        if script.is_file():
            return script
    return None


BENCH_HELP_OUTSIDE_CHECKOUT = """\
usage: fastfeed bench [-h] [ARGUMENTS ...]

Runs fastfeed's benchmarks (bench/run.py: W1 to W3, the training loop and the
sparse file) and prints their table. The benchmarks and their workloads live in
a source checkout of fastfeed, not in the installed package: run `fastfeed bench`
in the root folder of such a checkout, where `fastfeed bench --help` lists the
script's own options (--quick, --skip-w1, ...).
"""


def _cmd_bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
    script = _find_bench_script()
    if script is None and any(a in ("-h", "--help") for a in extra):
        # An installed wheel has no bench/: say what the command does and where it runs.
        print(BENCH_HELP_OUTSIDE_CHECKOUT, end="")
        return 0
    if script is None:
        return _fail(
            "bench",
            "the benchmarks are only available from a source checkout of fastfeed "
            "(run `fastfeed bench` or `python bench/run.py` there)",
            1,
        )
    try:
        # The script's --help then names the command the user typed.
        env = dict(os.environ, FASTFEED_BENCH_PROG="fastfeed bench")
        return subprocess.call([sys.executable, str(script), *extra], env=env)
    except KeyboardInterrupt:
        return 130


# ----- convert --------------------------------------------------------------------------------


def _cmd_convert(args: argparse.Namespace) -> int:
    from .errors import FormatError
    from .io.convert import ConvertError, UsageError, convert

    notes: List[str] = []
    try:
        info = convert(
            args.input,
            args.output,
            column=args.column,
            id_column=args.id_column,
            value_columns=args.value_column or (),
            label_columns=args.label_column or (),
            target_columns=args.target_column or (),
            dtype=args.dtype,
            target_dtype=args.target_dtype,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            header=args.header,
            report=notes.append,
        )
    except UsageError as e:
        return _fail("convert", str(e), 2)
    except KeyboardInterrupt:
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return 130
    except (ConvertError, FormatError, ValueError, OSError) as e:
        return _fail("convert", str(e), 1)
    print(
        f"wrote {info.num_sequences} sequence{'' if info.num_sequences == 1 else 's'}, "
        f"{info.num_steps} steps of {info.dtype} "
        f"(feature shape {info.feat}) to {info.path} ({_human_bytes(info.nbytes)})"
    )
    for note in notes:
        print(f"  {note}")
    t = info.targets
    if t is not None:
        named = args.label_column if t.kind == "labels" else args.target_column
        what = "labels (one per sequence)" if t.kind == "labels" else "step targets"
        print(f"  {what}: {t.dtype} (feature shape {t.feat}) from {', '.join(map(repr, named))}")
    return 0


# ----- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastfeed", description="Feed ordered data (time series, sequences, streams) into PyTorch training loops."
    )
    parser.add_argument("--version", action="version", version=f"fastfeed {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from .demo import DEFAULT_PLOT  # no heavy imports: demo.py loads torch only when run
    from .demo_forecast import DEFAULT_FORECAST_PLOT

    demo = sub.add_parser(
        "demo",
        help="train a small RNN on a sine wave (or, with --forecast, a forecaster on real data), fed by a Feeder",
        description="Next-step prediction of a sine wave with two stacked ReLU RNN layers "
        "(a Keras example redone in PyTorch). With --forecast: a GRU encoder-decoder forecasts "
        "a year of monthly El Nino sea surface temperatures (statsmodels' elnino data) from "
        "covariates and calendar features, validated on the last ten years against the "
        "seasonal-naive forecast.",
    )
    demo.add_argument(
        "--forecast",
        action="store_true",
        help="run the forecasting demo instead (needs statsmodels and pandas: pip install 'fastfeed[demo]')",
    )
    demo.add_argument("--epochs", type=_pos_int, default=None, help="epochs to train (default 20; 12 with --forecast)")
    demo.add_argument(
        "--batch-size", type=_pos_int, default=None, help="windows per batch (default 1; 32 with --forecast)"
    )
    demo.add_argument(
        "--window", type=_pos_int, default=None, help="steps per input window (default 10; 24 months with --forecast)"
    )
    demo.add_argument(
        "--lr", type=_pos_float, default=None, help="Adam learning rate (default 1e-3; 3e-3 with --forecast)"
    )
    demo.add_argument("--seed", type=_seed, default=0, help="seed of the weights and the shuffle (default 0)")
    demo.add_argument(
        "--plot",
        default=None,
        metavar="PATH",
        help=f"where the plot (PNG) goes (default {DEFAULT_PLOT}: the loss; "
        f"{DEFAULT_FORECAST_PLOT} with --forecast: forecasts against the truth)",
    )
    demo.add_argument("--no-plot", action="store_true", help="write no plot")
    demo.add_argument(
        "--threads",
        type=_pos_int,
        default=None,
        help="torch threads (default 1: the model is too small to gain from more)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars, only a line per epoch")

    inspect = sub.add_parser(
        "inspect", help="describe a .npy file or dataset directory (and what a Feeder would yield from it)"
    )
    inspect.add_argument("source", metavar="SOURCE", help="path of a .npy file or a dataset directory")
    inspect.add_argument("--window", type=_pos_int, default=None, help="count the samples/batches of this window")
    inspect.add_argument("--horizon", type=_nonneg_int, default=1, help="target steps per sample (default 1)")
    inspect.add_argument("--batch-size", type=_pos_int, default=1, help="windows per batch (default 1)")
    inspect.add_argument("--stride", type=_pos_int, default=1, help="steps between sample starts (default 1)")
    inspect.add_argument("--sampling-rate", type=_pos_int, default=1, help="steps between window rows (default 1)")
    inspect.add_argument("--drop-last", action="store_true", help="do not count a short last batch")

    sub.add_parser(
        "bench", help="run the benchmarks (source checkout only); further arguments go to bench/run.py", add_help=False
    )  # so that `fastfeed bench --help` reaches the script
    convert = sub.add_parser(
        "convert",
        help="turn .npy, CSV, Parquet or Arrow data (with labels) into a dataset directory",
        description="Writes a fastfeed dataset directory from a .npy file (one series), a directory of .npy "
        "files (one series each, by file name), or a CSV/Parquet/Arrow file (needs pyarrow: "
        "pip install 'fastfeed[arrow]'): a column of lists (one sequence per row), or value "
        "columns cut into sequences by an id column (in order of first appearance), with labels "
        "(--label-column) or step targets (--target-column) if asked. A CSV's integers are stored "
        "in the narrowest integer type that holds them (unsigned if none is negative); --dtype "
        "chooses another.",
    )
    convert.add_argument(
        "input",
        metavar="INPUT",
        help=".npy file, directory of .npy files, .csv, .parquet or .arrow file (Arrow IPC file or stream)",
    )
    convert.add_argument("output", metavar="OUTPUT_DIR", help="the dataset directory to write")
    convert.add_argument("--column", metavar="C", help="CSV/Parquet/Arrow: a column of lists, one sequence per row")
    convert.add_argument("--id-column", metavar="ID", help="CSV/Parquet/Arrow: rows with the same id form one sequence")
    convert.add_argument(
        "--value-column",
        metavar="V",
        action="append",
        help="CSV/Parquet/Arrow: a column of step values (repeat for steps of several features); "
        "without --id-column the whole file is one series",
    )
    convert.add_argument(
        "--label-column",
        metavar="L",
        action="append",
        help="a numeric column giving one label per sequence (batch.y): the row's value with --column, "
        "else the value all rows of the sequence hold; repeat for labels of several numbers",
    )
    convert.add_argument(
        "--target-column",
        metavar="T",
        action="append",
        help="targets per step (batch.y): with --column a column of lists as long as its lists, else a "
        "numeric column cut like the value columns (repeat for targets of several features)",
    )
    first_row = convert.add_mutually_exclusive_group()
    first_row.add_argument(
        "--header",
        dest="header",
        action="store_true",
        default=None,
        help="CSV: the first row holds the column names, even if they are numbers",
    )
    first_row.add_argument(
        "--no-header",
        dest="header",
        action="store_false",
        help="CSV: the first row is data, not column names; columns are then f0, f1, ... "
        "(default: names, unless the first row is all numbers, which is refused as ambiguous)",
    )
    convert.add_argument(
        "--dtype",
        metavar="D",
        help="store the values as this dtype (e.g. float32); default: the file's types, a CSV's "
        "integers in the narrowest type that holds them, its floats as float64",
    )
    convert.add_argument(
        "--target-dtype",
        metavar="D",
        help="store the labels or step targets as this dtype (default: the file's types; a CSV's "
        "integers int64, its floats float64)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUTPUT_DIR")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        return _cmd_bench(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "demo":
        return _cmd_demo(args)
    if args.command == "convert":
        return _cmd_convert(args)
    return _cmd_inspect(args)


if __name__ == "__main__":
    sys.exit(main())
