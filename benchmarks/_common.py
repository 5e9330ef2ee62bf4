"""Shared helpers of the benchmarks: the machine-and-versions header, an interleaved timer, text tables."""

from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import TypeVar

__all__ = ["format_table", "header", "round_robin"]

T = TypeVar("T")

_PACKAGES = ("minmax", "numpy", "scipy", "cvxpy", "clarabel", "torch")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header() -> str:
    """Machine, Python and package versions: printed before every benchmark run.

    Versions come from the installed distributions' metadata, so an optional package (torch, cvxpy) is
    never imported just to name its version.
    """
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# {now}",
            f"# machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} "
            f"{platform.release()}, OMP_NUM_THREADS={threads}",
            f"# python {platform.python_version()} ({platform.python_implementation()}); "
            + ", ".join(versions),
        ]
    )


def _timed(fn: Callable[[], object], calls: int = 1) -> float:
    """Seconds per call of ``calls`` back-to-back calls, with the garbage collector off (as ``timeit``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        if enabled:
            gc.enable()


def round_robin(
    fns: Mapping[str, Callable[[], T]], *, repeats: int = 7, budget: float = 1.0, batch: float = 2e-3
) -> dict[str, tuple[float, float, T]]:
    """Median seconds per call of each function, timed in turns: a batch of each, then the next round.

    Interleaving makes the ratios between the functions robust to the machine's load drifting during
    the measurement (timing one function fully, then the next, is not). In each turn a function is
    called once untimed, then once timed on its own (the *single-call* time: still partly in the caches
    and allocator state the previous function left), then a batch of calls lasting about ``batch``
    seconds is timed (at least one call; the count is fixed from the first call, like ``timeit``'s
    autorange) for the *per-call* time, the steady state ``timeit`` reports. One whose timed calls
    already add up to ``budget`` seconds sits out the remaining rounds (every function is timed at least
    once). Returns ``name -> (median per-call seconds, median single-call seconds, result of the first
    call)``.
    """
    results, calls = {}, {}
    for name, fn in fns.items():
        start = time.perf_counter()
        results[name] = fn()
        calls[name] = max(1, int(batch / max(time.perf_counter() - start, 1e-9)))
    per_call: dict[str, list[float]] = {name: [] for name in fns}
    single: dict[str, list[float]] = {name: [] for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        gc.collect()  # the garbage of the last round (cvxpy makes a lot), outside any timed call
        for name, fn in fns.items():
            if per_call[name] and spent[name] >= budget:
                continue
            fn()
            single[name].append(_timed(fn))
            per_call[name].append(_timed(fn, calls[name]))
            spent[name] += single[name][-1] + per_call[name][-1] * calls[name]
    return {
        name: (statistics.median(per_call[name]), statistics.median(single[name]), results[name])
        for name in fns
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (aligned in plain text too): the first column left-aligned, the rest right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])
