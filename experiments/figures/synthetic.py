r"""The synthetic experiments of Section 5.2 of [1]_: Figure 1 (a) and (b), and the counterexample checks.

``python -m experiments.synthetic --out DIR`` runs DDi (Algorithm 1, 10 maximizers) and the single-adversary
method (classic adversarial training: the gradient at one maximizer) on the Figure 1 function
:math:`g(\theta,\delta) = \delta(\theta_1^2 + (\theta_2+1)^2) + (1-\delta)(\theta_1^2 + (\theta_2-1)^2)`,
:math:`\delta \in [0, 1]` (:class:`minmax.problems.Figure1`), with 10 projected-gradient ascent steps for the
inner maximization and outer steps :math:`0.5/\sqrt{k}` along unit directions, from a start near the kink
:math:`\theta_2 = 0` of :math:`\varphi(\theta) = \theta_1^2 + (1 + |\theta_2|)^2`. It writes

* ``figure1a_contour.png`` -- contours of :math:`\varphi` with both trajectories;
* ``figure1b_robust_loss.png`` -- :math:`\varphi(\theta_k)` against k;
* ``figure1_ddi.csv``, ``figure1_single_adversary.csv`` -- the histories (one row per iterate);
* ``counterexamples.csv`` -- the numbers of :func:`counterexample_checks`;

and prints a summary table. :func:`counterexample_checks` prints, for counterexamples 1 and 2, the
one-sided derivative of :math:`\varphi` along minus the gradient at a single maximizer and along the
steepest descent direction :math:`\gamma^*`, from Danskin's formula over the exact :math:`S^*` and from
the numerical limit. Everything runs on the CPU in a few seconds.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from experiments.figures.drawing import pyplot, save
from minmax import covering_radius, one_sided_derivative, steepest_descent
from minmax.maxfunc import History, ddi, inverse_sqrt, single_adversary
from minmax.problems import Counterexample1, Counterexample2, Figure1
from minmax.sets import Box

__all__ = [
    "counterexample_checks", "exact_slopes", "far_from_minimizer", "main", "run_figure1", "summary_rows",
]

#: The Figure 1 set-up (the paper's: 10 maximizers, 10 inner ascent steps, outer steps 0.5/sqrt(k)).
DEFAULTS = {
    "start": (2.0, 0.1),
    "m": 10,
    "inner_steps": 10,
    "inner_step_size": 0.1,
    "step_scale": 0.5,
    "iterations": 30,
    "seed": 0,
}
CSV_COLUMNS = ("k", "theta1", "theta2", "phi", "phi_estimate", "num_maximizers", "step_size", "direction1",
               "direction2", "slope_found", "slope_exact", "covering_radius", "stationary")
# Lipschitz constant of delta -> grad_theta g = (2 theta_1, 2 theta_2 - 2 + 4 delta) on the Figure 1 problem.
FIGURE1_LIPSCHITZ = 4.0


def run_figure1(
    *,
    start=DEFAULTS["start"],
    m: int = DEFAULTS["m"],
    inner_steps: int = DEFAULTS["inner_steps"],
    inner_step_size: float = DEFAULTS["inner_step_size"],
    step_scale: float = DEFAULTS["step_scale"],
    iterations: int = DEFAULTS["iterations"],
    seed: int = DEFAULTS["seed"],
    curvature: float = 0.0,
) -> tuple[Figure1, dict[str, History]]:
    """Run DDi and the single adversary on the Figure 1 problem; return the problem and both histories.

    The two methods use the same inner ascent (steps and step size), the same outer schedule
    ``step_scale / sqrt(k)`` along unit directions and independent streams of the same seed; DDi uses
    ``m`` random starts, the single adversary one.
    """
    problem = Figure1(curvature=curvature)
    common = {
        "inner_steps": inner_steps,
        "inner_step_size": inner_step_size,
        "step_size": inverse_sqrt(step_scale),
        "iterations": iterations,
    }
    seeds = np.random.SeedSequence(seed).spawn(2)
    histories = {
        "DDi": ddi(problem, start, m=m, rng=np.random.default_rng(seeds[0]), **common),
        "single adversary": single_adversary(problem, start, rng=np.random.default_rng(seeds[1]), **common),
    }
    return problem, histories


def _reference_points(S, num: int = 101) -> np.ndarray:
    if isinstance(S, Box):  # an interval of maximizers (theta_2 = 0 exactly)
        return np.linspace(S.lower, S.upper, num)
    return S.points


def exact_slopes(problem, history: History) -> tuple[np.ndarray, np.ndarray]:
    r"""Per step: the true one-sided derivative :math:`D_{\gamma_k}\varphi(\theta_k)` (Danskin's formula over
    the exact :math:`S^*(\theta_k)`) and the covering radius :math:`\varepsilon_k` of :math:`S^*(\theta_k)` by
    the maximizers the step used (the :math:`\varepsilon` of Theorem 3)."""
    slopes, radii = [], []
    for theta, gamma, maxs in zip(history.thetas[:-1], history.directions, history.maximizers, strict=False):
        ref = _reference_points(problem.maximizers(theta))
        slopes.append(max(float(gamma @ problem.grad_theta(theta, d)) for d in ref))
        used = maxs.deltas if history.method == "ddi" else maxs.deltas[:1]
        radii.append(covering_radius(ref, used))
    return np.array(slopes), np.array(radii)


def far_from_minimizer(history: History) -> np.ndarray:
    r"""Steps k with :math:`\eta_k < \|\theta_k - \theta^*\|/2` (:math:`\theta^* = 0`): there a rise of
    :math:`\varphi` cannot be blamed on overshooting the minimizer, only on the direction."""
    return np.linalg.norm(history.thetas[:-1], axis=1) > 2 * history.step_sizes


def summary_rows(problem, histories: dict[str, History]) -> list[dict[str, str]]:
    """One row per method: first, final and best robust loss; how often phi went up, far from the minimizer
    (see :func:`far_from_minimizer`) and near it; how often the step was an ascent direction of phi (exact
    Danskin slope > 0); how often theta_2 changed sign (crossed the kink); how often Theorem 3 certified
    the step with the exact L = 4 and the exact covering radius of S*(theta_k)."""
    rows = []
    for name, h in histories.items():
        phi = h.robust_loss
        slopes, radii = exact_slopes(problem, h)
        certified = h.slopes < -FIGURE1_LIPSCHITZ * radii
        crossings = np.sum(np.sign(h.thetas[1:, 1]) * np.sign(h.thetas[:-1, 1]) < 0)
        up = np.diff(phi) > 0
        far = far_from_minimizer(h)
        rows.append({
            "method": name,
            "phi(theta_0)": f"{phi[0]:.4f}",
            "phi(theta_K)": f"{phi[-1]:.4f}",
            "min phi": f"{phi.min():.4f}",
            "phi up (far)": str(int(np.sum(up & far))),
            "phi up (near)": str(int(np.sum(up & ~far))),
            "ascent steps": str(int(np.sum(slopes > 0))),
            "kink crossings": str(int(crossings)),
            "certified (Thm 3)": f"{int(certified.sum())}/{len(certified)}",
            "theta_K": f"({h.thetas[-1, 0]:+.3f}, {h.thetas[-1, 1]:+.3f})",
        })
    return rows


def format_table(rows: list[dict[str, str]]) -> str:
    headers = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]

    def line(cells):
        return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths,
                                                                                          strict=True)))

    body = [line(list(r.values())) for r in rows]
    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *body])


def write_history_csv(problem, history: History, path: Path) -> None:
    """One row per iterate k = 0..K; the step columns are empty on the last row."""
    slopes, radii = exact_slopes(problem, history)
    K = len(history.step_sizes)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for k in range(K + 1):
            row = [k, *history.thetas[k], history.robust_loss[k], history.phi_estimates[k],
                   len(history.maximizers[k])]
            if k < K:
                row += [history.step_sizes[k], *history.directions[k], history.slopes[k], slopes[k], radii[k],
                        int(history.stationary[k])]
            else:
                row += [""] * 7
            w.writerow(row)


def plot_figure1(problem, histories: dict[str, History], out: Path) -> list[Path]:
    """Write Figure 1 (a) (contours and trajectories) and (b) (robust loss against iterations)."""
    plt = pyplot()

    styles = {"DDi": ("tab:blue", "o"), "single adversary": ("tab:red", "s")}
    pts = np.concatenate([h.thetas for h in histories.values()])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.15 * max(hi - lo) + 0.1
    t1 = np.linspace(lo[0] - pad, hi[0] + pad, 300)
    t2 = np.linspace(min(lo[1], -0.5) - pad, max(hi[1], 0.5) + pad, 300)
    T1, T2 = np.meshgrid(t1, t2)
    PHI = np.vectorize(lambda a, b: problem.phi([a, b]))(T1, T2)

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    cs = ax.contour(T1, T2, PHI, levels=20, cmap="Greys", linewidths=0.8)
    ax.clabel(cs, fontsize=7, fmt="%.1f")
    ax.axhline(0.0, color="0.6", lw=0.6, ls=":")
    for name, h in histories.items():
        color, marker = styles.get(name, ("k", "."))
        ax.plot(h.thetas[:, 0], h.thetas[:, 1], marker=marker, ms=3, lw=1.2, color=color, label=name)
    ax.plot(*histories["DDi"].thetas[0], "k*", ms=10, label=r"$\theta_0$")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(r"(a) contours of $\varphi$ and the iterates")
    ax.legend(loc="upper right", fontsize=8)
    path_a = out / "figure1a_contour.png"
    save(fig, path_a, dpi=120)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, h in histories.items():
        color, marker = styles.get(name, ("k", "."))
        ax.plot(np.arange(len(h.robust_loss)), h.robust_loss, marker=marker, ms=3, color=color, label=name)
    ax.axhline(1.0, color="0.6", lw=0.6, ls=":", label=r"$\min\varphi = 1$")
    ax.set_xlabel("iteration k")
    ax.set_ylabel(r"robust loss $\varphi(\theta_k)$")
    ax.set_title("(b) robust loss")
    ax.legend(fontsize=8)
    path_b = out / "figure1b_robust_loss.png"
    save(fig, path_b, dpi=120)
    return [path_a, path_b]


def counterexample_checks(*, verbose: bool = True) -> list[dict]:
    r"""The numbers behind counterexamples 1 and 2 at :math:`\theta = 0`.

    For each direction: Danskin's formula :math:`\max_{\delta\in S^*(0)}\langle\gamma,\nabla_\theta
    g(0,\delta)\rangle` over the exact maximizers, and the numerical one-sided limit of
    :math:`(\varphi(t\gamma) - \varphi(0))/t` (:func:`minmax.one_sided_derivative`). A positive value
    means :math:`\varphi` increases along :math:`\gamma`.

    * Counterexample 1 (:math:`g = \theta\delta`, :math:`S = [-1,1]`): :math:`-\nabla_\theta g(0, 1) = -1`
      and :math:`+1` both have derivative 1 > 0 (Lemma 1: no descent direction; :math:`\gamma^*` is 0).
    * Counterexample 2 (u = (1, 0), v = (-0.6, 0.8), :math:`\langle u,v\rangle = -0.6`): :math:`-u` and
      :math:`-v` have derivative 0.6 > 0, :math:`\gamma^* = -(u+v)/\|u+v\|` has :math:`-\|u+v\|/2 < 0`.

    Returns
    -------
    list of dict
        Keys ``problem``, ``direction``, ``gamma``, ``danskin``, ``numerical``, ``error``.
    """
    rows = []
    cases = [
        ("counterexample 1", Counterexample1(), np.zeros(1)),
        ("counterexample 2", Counterexample2([1.0, 0.0], [-0.6, 0.8]), np.zeros(2)),
    ]
    for name, p, theta in cases:
        S = p.maximizers(theta)
        ref = _reference_points(S)
        grads = np.array([p.grad_theta(theta, d) for d in ref])
        directions = [(f"-grad g(0, delta={d[0]:g})", -p.grad_theta(theta, d)) for d in ref[[-1, 0]]]
        sd = steepest_descent(grads)
        if not sd.stationary:
            directions.append(("gamma* (Theorem 2)", np.asarray(sd.direction)))
        for label, gamma in directions:
            est = one_sided_derivative(p.phi, theta, gamma)
            rows.append({
                "problem": name,
                "direction": label,
                "gamma": np.round(gamma, 6).tolist(),
                "danskin": float(np.max(grads @ gamma)),
                "numerical": float(est.estimate),
                "error": float(est.error),
            })
        if sd.stationary:
            rows.append({"problem": name, "direction": "gamma* (Theorem 2)", "gamma": "0 (stationary)",
                         "danskin": 0.0, "numerical": 0.0, "error": 0.0})
    if verbose:
        table = [{"problem": r["problem"], "direction": r["direction"], "gamma": str(r["gamma"]),
                  "D (Danskin)": f"{r['danskin']:+.6f}", "D (numerical)": f"{r['numerical']:+.6f}",
                  "verdict": "ascent" if r["danskin"] > 0 else ("descent" if r["danskin"] < 0 else "none")}
                 for r in rows]
        print("One-sided derivatives of phi at theta = 0 (counterexamples 1 and 2):")
        print(format_table(table))
    return rows


def main(argv=None) -> int:
    """Command line: ``python -m experiments.synthetic --out DIR [options]``."""
    parser = argparse.ArgumentParser(prog="python -m experiments.synthetic",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for the PNG and CSV files")
    parser.add_argument("--iterations", type=int, default=DEFAULTS["iterations"])
    parser.add_argument("--m", type=int, default=DEFAULTS["m"], help="maximizers for DDi")
    parser.add_argument("--inner-steps", type=int, default=DEFAULTS["inner_steps"])
    parser.add_argument("--inner-step-size", type=float, default=DEFAULTS["inner_step_size"])
    parser.add_argument("--step-scale", type=float, default=DEFAULTS["step_scale"], help="c in c/sqrt(k)")
    parser.add_argument("--start", type=float, nargs=2, default=DEFAULTS["start"],
                        metavar=("THETA1", "THETA2"))
    parser.add_argument("--curvature", type=float, default=0.0,
                        help="c of the term c*delta*(delta-1): 0 the paper's function, 1 the endpoints")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG files (no matplotlib needed)")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    problem, histories = run_figure1(
        start=tuple(args.start), m=args.m, inner_steps=args.inner_steps, inner_step_size=args.inner_step_size,
        step_scale=args.step_scale, iterations=args.iterations, seed=args.seed, curvature=args.curvature,
    )
    written = []
    for name, h in histories.items():
        path = args.out / f"figure1_{name.replace(' ', '_')}.csv"
        write_history_csv(problem, h, path)
        written.append(path)
    if not args.no_plots:
        written += plot_figure1(problem, histories, args.out)
    print(f"Figure 1: {problem!r}, start {tuple(args.start)}, DDi with m = {args.m}, {args.inner_steps} "
          f"inner steps of {args.inner_step_size}, outer steps {args.step_scale}/sqrt(k), "
          f"K = {args.iterations}")
    print(format_table(summary_rows(problem, histories)))
    print()
    rows = counterexample_checks(verbose=True)
    path = args.out / "counterexamples.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    written.append(path)
    print()
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
