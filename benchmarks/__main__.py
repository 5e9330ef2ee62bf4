"""Run the benchmarks: ``python -m benchmarks [name ...]`` (all of them when no name is given).

A benchmark is a module ``benchmarks/bench_<name>.py`` with a ``main() -> None`` that prints its tables.
The machine and the package versions are printed first, so every pasted table carries its context.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

from ._common import header

# The QPs here are small (m <= 256): multi-threaded BLAS only adds start-up overhead and, on a shared
# machine, noise of 10x. Timings are single-threaded unless the caller chose otherwise. Nothing above
# imports NumPy, so this takes effect (the header prints the value in use).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def available() -> list[str]:
    """Names of the benchmark modules, ``bench_<name>.py`` -> ``<name>``, sorted."""
    here = str(Path(__file__).resolve().parent)
    modules = pkgutil.iter_modules([here])
    return sorted(m.name[len("bench_") :] for m in modules if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=f"benchmarks to run (default: all: {names})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
    print(header(), flush=True)
    for name in args.names or names:
        print(f"\n## {name}\n", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"benchmarks.bench_{name}").main()
        print(f"\n({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
