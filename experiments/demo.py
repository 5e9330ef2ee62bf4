"""``make demo`` (``python -m experiments.demo``): the library's three layers on their built-in defaults.

1. Certified minimum-norm points: :math:`\\min_{\\alpha\\in\\Delta}\\alpha^\\top G\\alpha` solved with the
   default method of :func:`minmax.min_norm_point` on a few instances, with the recomputed certificate: the
   value :math:`\\|M\\alpha\\|^2`, the duality gap (an upper bound on the distance to the optimal value), the
   tolerance it was certified against, the status and the time.
2. The paper's synthetic problems (:mod:`experiments.figures.synthetic`): Figure 1 (DDi against the
   single-adversary method) and the one-sided derivatives of counterexamples 1 and 2.
3. Adversarial training (:mod:`experiments.train`) with DDi on the generated dataset (``--preset quick``).

Everything is written under ``--out`` (default ``results/demo``).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np

from minmax import gram, min_norm_point

__all__ = ["fresh_run_dir", "instances", "main", "qp_table"]


def instances(seed: int = 0) -> dict[str, np.ndarray]:
    """The demo's gradient sets, ``name -> (m, d)`` array, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    # Two maximizers whose gradients conflict (the situation of the paper's counterexamples): each one
    # alone is an ascent direction for the other; the min-norm point (0, 0.1) is a descent direction for both.
    conflicting = np.array([[1.0, 0.1], [-1.0, 0.1]])
    # Gradient norms from 1e-6 to 1e6 in random directions: the optimum sits near the shortest ones.
    dirs = rng.standard_normal((13, 18))
    badly_scaled = dirs / np.linalg.norm(dirs, axis=1, keepdims=True) * np.logspace(-6, 6, 13)[:, None]
    # Three gradients around the origin in the plane: the origin is in the hull, the optimum is 0
    # (a stationary point: no descent direction exists).
    origin_inside = np.array([[2.0, 1.0], [-1.0, 2.0], [-1.0, -3.0]])
    # m = 128 gradients with a shared component, as many restarts of an attack produce.
    many = 3.0 * rng.standard_normal(264) + rng.standard_normal((128, 264))
    return {
        "conflicting gradients": conflicting,
        "norms 1e-6..1e6": badly_scaled,
        "origin in the hull": origin_inside,
        "m = 128, shared part": many,
    }


def qp_table(method: str | None = None) -> str:
    """Solve and certify every instance of :func:`instances`; return the table as text."""
    if method is None:
        method = inspect.signature(min_norm_point).parameters["method"].default
    headers = ("instance", "method", "m", "value", "gap", "tolerance", "status", "time")
    rows = []
    for name, grads in instances().items():
        G = gram(grads)
        min_norm_point(G, method=method)  # warm-up: the first call imports the method's module
        start = time.perf_counter()
        res = min_norm_point(G, method=method)
        elapsed = time.perf_counter() - start
        rows.append(
            (
                name,
                res.method,
                str(G.shape[0]),
                f"{res.value:.6e}",
                f"{res.gap:.1e}",
                f"{res.tolerance:.1e}",
                res.status.value,
                f"{elapsed * 1e3:.2f} ms",
            )
        )
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]
    lines = [_line(headers, widths), "  ".join("-" * w for w in widths)]
    lines += [_line(r, widths) for r in rows]
    return "\n".join(lines)


def _line(cells, widths) -> str:
    # Text columns (instance, method) left-aligned, numbers right-aligned.
    return "  ".join(
        c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def main(argv=None) -> int:
    """Run the three parts of the demo; return the training command's exit status."""
    from experiments.figures import synthetic
    from experiments.train.command import main as train

    parser = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/demo"), help="output directory")
    parser.add_argument("--no-train", action="store_true", help="skip the training run")
    args = parser.parse_args(argv)

    print("== 1. Minimum-norm point of the convex hull of m gradients, "
          "min_{alpha in simplex} alpha^T G alpha,")
    print("certified by the duality gap recomputed from G and the weights (optimal: gap <= tolerance).\n")
    print(qp_table())
    print("\n== 2. The paper's synthetic problems: Figure 1 and counterexamples 1-2\n")
    synthetic.main(["--out", str(args.out / "synthetic")])
    if args.no_train:
        return 0
    print("\n== 3. Adversarial training with DDi on generated data (--preset quick)\n")
    return train(["--preset", "quick", "--out", str(fresh_run_dir(args.out / "train")), "--no-progress"])


def fresh_run_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ...: the first that does not exist yet.

    ``experiments.train`` refuses to overwrite a run (no lost work), so a second ``make demo`` trains into
    a new folder beside the earlier one instead of failing.
    """
    candidate, k = path, 1
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.name}-{k}")
    return candidate


if __name__ == "__main__":
    sys.exit(main())
