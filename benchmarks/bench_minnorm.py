r"""Speed and accuracy of the min-norm-point methods, side by side: ``python -m benchmarks minnorm``.

Every method of :data:`minmax.minnorm.METHODS` is timed through the public entry point
:func:`minmax.min_norm_point` (input validation and the recomputed certificate included), next to the
paper's way of solving the QP re-implemented from its description: a fixed number (100 or 1000) of
accelerated projected-gradient steps with no stopping test (:func:`paper_apg`, timed bare, which
favours it). Problems: the random families of :mod:`tests.minnorm.cases`, one instance (seed 0) per
family and m in {2, 10, 32, 128}.

Reported per method and problem: the median wall-clock time per call (all methods of a problem timed in
turns by :func:`benchmarks._common.round_robin`: 7 rounds, in each a batch of calls lasting about 2 ms,
at most 1 s of timed calls per method), the relative gap, and the status. The targets also give the
speed-up on single calls timed on their own right after the other methods ran, where a 50 us solve
still runs partly in the caches they left (cvxpy's milliseconds hardly change).

* **relative gap** ``= gap / max(f, floor)``: ``gap = 2(αᵀGα - min_i (Gα)_i)`` is the certificate's
  bound on ``f(α) - f*``, ``f = αᵀGα`` and ``floor`` the certificate's rounding floor of the gap
  (:func:`minmax.minnorm.optimality.gap_tolerance` with ``rtol = 0``, ~ ``4 m u (αᵀ|G|α + max |G|α)``).
  For ``f`` above the floor it is ``gap / f``, the relative accuracy of the value. ``~0`` marks an
  optimum of 0 (the origin in the hull): ``f`` and the gap are both below the floor, zero to working
  precision. Certified (``O``) means ``gap <= max(1e-12 f, floor)``, so a certified relative gap can
  exceed 1e-12 only where the floor is above ``1e-12 f`` (cancellation in ``Gα``).
* **status**: ``O`` optimal (certified), ``M`` iteration limit, ``S`` stalled, ``E`` solver error; for the
  paper's APG, which has no status, ``c`` when its answer would pass the certificate at ``tol = 1e-12``
  and ``-`` when not. ``!`` marks a method that reports optimal while its value exceeds the best value
  any method found by more than its certified tolerance (a wrong answer presented as right).
"""

from __future__ import annotations

import inspect
import math
import statistics
from collections.abc import Callable

import numpy as np

from minmax import min_norm_point
from minmax.minnorm import DEFAULT_TOL, METHODS, Status, check_min_norm
from minmax.minnorm.optimality import gap_tolerance
from minmax.simplex import project_simplex
from tests.minnorm.cases import FAMILIES, family_case

from ._common import format_table, round_robin

SIZES = (2, 10, 32, 128)
PAPER_STEPS = (100, 1000)
DEFAULT_METHOD = inspect.signature(min_norm_point).parameters["method"].default
_STATUS_CODE = {Status.OPTIMAL: "O", Status.MAX_ITER: "M", Status.STALLED: "S", Status.SOLVER_ERROR: "E"}


def paper_apg(G: np.ndarray, steps: int) -> np.ndarray:
    r"""The paper's QP solver as described: ``steps`` accelerated projected-gradient steps, no stopping test.

    Nesterov/FISTA momentum, step :math:`1/L` with :math:`L = 2\lambda_{\max}(G)` (the Lipschitz constant
    of :math:`\nabla f` on the whole space), started at the uniform weights, no restart. Our own
    re-implementation from the description, for comparison only.
    """
    m = G.shape[0]
    step = 1.0 / max(2.0 * float(np.linalg.eigvalsh(G)[-1]), np.finfo(np.float64).tiny)
    alpha = np.full(m, 1.0 / m)
    beta, t = alpha, 1.0
    for _ in range(steps):
        new = np.asarray(project_simplex(beta - step * 2.0 * (G @ beta)), dtype=np.float64)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        beta = new + (t - 1.0) / t_next * (new - alpha)
        alpha, t = new, t_next
    return alpha


def _relative_gap(G: np.ndarray, weights: np.ndarray, value: float, gap: float) -> float:
    """``gap / max(f, floor)``; NaN for "zero to working precision" (f and gap both below the floor)."""
    floor = gap_tolerance(G, weights, value, 0.0)
    if value <= floor and gap <= floor:
        return float("nan")
    return max(gap, 0.0) / max(value, floor)


def _solver(G: np.ndarray, method: str) -> Callable[[], object] | None:
    """The call to time for one method on one problem; ``None`` when the method is not available."""
    if method.startswith("paper-apg-"):
        steps = int(method.rsplit("-", 1)[1])
        return lambda: paper_apg(G, steps)
    try:
        min_norm_point(G, method=method, tol=DEFAULT_TOL)
    except ImportError:
        return None
    return lambda: min_norm_point(G, method=method, tol=DEFAULT_TOL)


def _record(G: np.ndarray, seconds: float, single: float, out) -> dict:
    if isinstance(out, np.ndarray):  # the paper's APG returns bare weights: certify them here
        cert = check_min_norm(G, out, rtol=DEFAULT_TOL)
        weights, optimal, code = out, False, "c" if cert.optimal else "-"
    else:
        cert, weights, optimal, code = out, out.weights, out.success, _STATUS_CODE[out.status]
    return dict(
        time=seconds,
        single=single,
        value=cert.value,
        gap=cert.gap,
        tol=cert.tolerance,
        weights=weights,
        optimal=optimal,
        code=code,
    )


def _fmt_time(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def _fmt_rel(rel: float) -> str:
    return "~0" if math.isnan(rel) else "0" if rel == 0 else f"{rel:.0e}"


def run() -> dict:
    """Run every method on every (family, m); returns ``{(family, m, method): record}``."""
    methods = (*METHODS, *(f"paper-apg-{k}" for k in PAPER_STEPS))
    records: dict = {}
    for m in SIZES:
        for family in FAMILIES:
            G = family_case(family, m).G
            solvers = {meth: _solver(G, meth) for meth in methods}
            timed = round_robin({k: fn for k, fn in solvers.items() if fn is not None})
            cell = {meth: _record(G, *timed[meth]) if meth in timed else None for meth in methods}
            done = [r for r in cell.values() if r is not None]
            best = min(r["value"] for r in done)
            for meth, r in cell.items():
                if r is None:
                    continue
                r["rel"] = _relative_gap(G, r["weights"], r["value"], r["gap"])
                # A certified optimum satisfies f - f* <= gap <= tol, so exceeding the best value seen by more
                # than tol (plus the rounding of the two values) means the certificate was not honoured.
                slack = r["tol"] + 4 * m * np.finfo(float).eps * abs(best)
                r["wrong"] = r["optimal"] and r["value"] - best > slack
                records[(family, m, meth)] = r
    return records


def _tables(records: dict) -> list[str]:
    methods = list(dict.fromkeys(k[2] for k in records))
    out = []
    for m in SIZES:
        rows = []
        for meth in methods:
            row = [meth]
            for family in FAMILIES:
                r = records.get((family, m, meth))
                if r is None:
                    row.append("n/a")
                else:
                    flag = r["code"] + ("!" if r["wrong"] else "")
                    row.append(f"{_fmt_time(r['time'])} {_fmt_rel(r['rel'])} {flag}")
            rows.append(row)
        table = format_table(["method", *FAMILIES], rows)
        out.append(f"m = {m}: median time, relative gap, status\n\n{table}")
    summary = []
    for meth in methods:
        row = [meth]
        for m in SIZES:
            rs = [records[(f, m, meth)] for f in FAMILIES if (f, m, meth) in records]
            if not rs:
                row.append("n/a")
                continue
            t = statistics.median(r["time"] for r in rs)
            finite = [r["rel"] for r in rs if not math.isnan(r["rel"])]
            worst = max(finite) if finite else float("nan")
            ok = sum(r["code"] in ("O", "c") for r in rs)
            row.append(f"{_fmt_time(t)} ({_fmt_rel(worst)}, {ok}/{len(rs)})")
        summary.append(row)
    out.append(
        "Summary: median time over the families (worst relative gap, certified/total)\n\n"
        + format_table(["method", *(f"m = {m}" for m in SIZES)], summary)
    )
    return out


def _targets(records: dict) -> str:
    lines = [f"Targets (default method: {DEFAULT_METHOD!r}):"]
    d10 = [(f, records.get((f, 10, DEFAULT_METHOD)), records.get((f, 10, "cvxpy"))) for f in FAMILIES]
    if all(d is not None and c is not None for _, d, c in d10):
        speedups = {f: c["time"] / d["time"] for f, d, c in d10}
        single = {f: c["single"] / d["single"] for f, d, c in d10}
        certified = all(d["code"] == "O" for _, d, _ in d10)
        worst = min(speedups, key=speedups.get)
        lines.append(
            f"  m = 10: speedup vs cvxpy per call min {speedups[worst]:.0f}x ({worst}), median "
            f"{statistics.median(speedups.values()):.0f}x; certified (tol 1e-12) on every family: {certified}"
            f"  -> {'met' if certified and speedups[worst] >= 50 else 'NOT met'} (>= 50x)\n"
            f"          on single calls: min {min(single.values()):.0f}x, median "
            f"{statistics.median(single.values()):.0f}x"
        )
    d128 = {f: records.get((f, 128, DEFAULT_METHOD)) for f in FAMILIES}
    if all(d is not None for d in d128.values()):
        slowest = max(d128, key=lambda f: d128[f]["time"])
        t = d128[slowest]["time"]
        verdict = "met" if t < 0.02 else "NOT met"
        lines.append(f"  m = 128: slowest {_fmt_time(t)} ({slowest}) -> {verdict} (< 20 ms)")
    wrong = [f"{meth} on {f}, m = {m}" for (f, m, meth), r in records.items() if r["wrong"]]
    lines.append(f"  methods reporting optimal with a wrong answer: {', '.join(wrong) if wrong else 'none'}")
    return "\n".join(lines)


def main() -> None:
    """Print the per-m tables, the summary and the targets."""
    records = run()
    for table in _tables(records):
        print(table, end="\n\n", flush=True)
    print(_targets(records), flush=True)


if __name__ == "__main__":
    main()
