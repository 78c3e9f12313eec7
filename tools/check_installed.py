"""Checks that fastfeed is imported from an installed wheel, not from a source tree, before the
test suite runs against it (`make test-wheel`, and cibuildwheel's test-command).

    python tools/check_installed.py --cuda OFF

Run it with the venv's python from a folder outside the checkout. It asserts that fastfeed and
its native core come from this interpreter's site-packages, that the core was built with CUDA
as asked (ON or OFF), and that `fastfeed bench --help` works there; it prints what it found."""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", choices=["ON", "OFF"], required=True, help="whether the wheel was built with CUDA")
    args = parser.parse_args()

    import fastfeed
    from fastfeed import _core

    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    for name, module_file in (("fastfeed", fastfeed.__file__), ("fastfeed._core", _core.__file__)):
        where = Path(module_file).resolve()
        if not any(s in where.parents for s in site):
            print(f"{name} comes from {where}, not from site-packages ({', '.join(map(str, site))})")
            return 1

    info = fastfeed.build_info()
    if bool(info["cuda"]) != (args.cuda == "ON"):
        print(f"the wheel was to be built with CUDA {args.cuda}, but build_info()['cuda'] is {info['cuda']}")
        return 1

    # The console script pip installed beside this interpreter, run in an empty folder: no checkout.
    script = Path(sys.executable).parent / "fastfeed"
    with tempfile.TemporaryDirectory() as empty:
        bench = subprocess.run([str(script), "bench", "--help"], cwd=empty, capture_output=True, text=True, timeout=120)
    if bench.returncode != 0 or not bench.stdout.startswith("usage: fastfeed bench"):
        print(f"`fastfeed bench --help` exited {bench.returncode}:\n{bench.stdout}{bench.stderr}")
        return 1

    print(
        f"installed fastfeed {info['fastfeed']} at {Path(fastfeed.__file__).parent}: cuda={info['cuda']}, "
        f"torch={info['torch']}, torch_views={info['torch_views']}; `fastfeed bench --help` works"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
