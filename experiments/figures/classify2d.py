r"""``python -m experiments.classify2d``: the paper's Figure 3, a 2-D binary classification problem.

A 2-layer ELU network (``nets`` mlp, one hidden layer) on 100 Gaussian points in the plane, trained
full-batch against an :math:`\ell_\infty` box of radius ε = 1 (10 inner PGD steps of 0.1 from random
starts), outer step 0.01, by

* **DDi** (Algorithm 1): m = 10 attacks, the Danskin direction :math:`-M\alpha^*/\|M\alpha^*\|`;
* **the single-adversary method** (PGD training): the gradient at one attack;
* the single-adversary method with its gradient scaled to unit norm, so that the comparison separates
  DDi's *direction* from its *step length* (DDi's direction has unit norm).

Recorded per iteration: the robust loss of each model (mean over points of the worst of ``--eval-restarts``
PGD attacks), and the number of pairs among the m = 10 attack gradients with a negative inner product
(out of 45) — at DDi's iterate and at the single-adversary iterate. Negative inner products mean the
attacks pull the weights in conflicting directions, so one attack's gradient need not decrease the others'
losses. At iteration ``--compare-at`` (250) the linearized finite-set robust loss
:math:`t \mapsto \max_i L_i + t\langle g_i, d\rangle` is compared along DDi's direction and along each
single (normalized) gradient :math:`d = -g_j/\|g_j\|`: DDi's decreases at rate :math:`-\|M\alpha^*\|`
(Theorem 2), a single gradient's may increase.

The data (two Gaussian blobs, or Gaussian points with random labels via ``--labels random``) and the hidden
width are this implementation's choices where the paper gives no number. The attacks act in [0, 1]
coordinates (the library's convention), mapped affinely onto the plane by the model's ``Normalize`` layer,
so the box of radius 1 in the plane is exactly the attack's box.

Outputs in ``--out``: ``negative_inner_products.png``, ``robust_loss.png``, ``linearized.png``,
``boundaries.png``, ``classify2d.csv`` (per iteration), ``linearized.csv``, ``summary.json`` (printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from experiments.figures.drawing import pyplot, save

__all__ = ["linearized_comparison", "main", "make_points", "train"]


def make_points(n: int = 100, *, labels: str = "blobs", separation: float = 3.0, seed: int = 0):
    """``n`` points of the plane and binary labels: two unit Gaussians ``separation`` apart (blobs), or
    standard Gaussian points with random labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rng.shuffle(y)
    x = rng.standard_normal((n, 2))
    if labels == "blobs":
        x += np.where(y[:, None] == 1, 1.0, -1.0) * (separation / 2 / np.sqrt(2))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def _grads(model, u, y, deltas):
    """Losses (m,) and flattened gradients (m, d) in float64 of the mean loss at each perturbation."""
    params = [p for p in model.parameters() if p.requires_grad]
    losses, rows = [], []
    for delta in deltas:
        loss = F.cross_entropy(model((u + delta).clamp(0, 1)), y)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]).double())
        losses.append(float(loss.detach()))
    return np.array(losses), torch.stack(rows).numpy()


def linearized_comparison(model, u, y, attack, *, t_max: float = 0.1, points: int = 41) -> dict:
    """Linearized finite-set robust loss along DDi's direction and along each single normalized gradient."""
    from minmax.danskin import steepest_descent

    deltas = attack(model, u, y)
    L, M = _grads(model, u, y, deltas)
    res = steepest_descent(M)
    G = M @ M.T
    t = np.linspace(0.0, t_max, points)
    directions = {"ddi": res.direction}
    for j in range(len(L)):
        directions[f"grad_{j}"] = -M[j] / max(np.linalg.norm(M[j]), 1e-300)
    active = L >= L.max() - 1e-9 * max(1.0, abs(L.max()))  # the attacks attaining the finite max
    curves, slopes, initial = {}, {}, {}
    for name, d in directions.items():
        rates = M @ d  # <g_i, d> for every i
        curves[name] = (L[None, :] + t[:, None] * rates[None, :]).max(1)
        slopes[name] = float(rates.max())  # Danskin's slope, all m attacks taken as maximizers (eq. 4)
        initial[name] = float(rates[active].max())  # slope at t = 0+ of the curve (only the top loss counts)
    return {"t": t, "curves": curves, "losses": L, "slopes": slopes, "initial_slopes": initial,
            "ddi_slope": float(res.slope), "negative_inner_products": int((np.triu(G, 1) < 0).sum()),
            "weights": res.weights}


def _robust_loss(model, u, y, attack) -> float:
    result = attack.run(model, u, y)
    return float(result.losses.max(0).values.mean())


def _unit_grad_(params) -> None:
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
    if norm > 0:
        for p in params:
            p.grad.div_(norm.to(p.grad.dtype))


def train(args) -> dict:
    """Run the three methods side by side; return the per-iteration log and the comparison."""
    import nets
    from minmax.torch.attacks import PGD
    from minmax.torch.descent import DescentStep

    x, y = make_points(args.points, labels=args.labels, separation=args.separation, seed=args.seed)
    lo, hi = float(x.min()) - args.eps - 0.5, float(x.max()) + args.eps + 0.5
    s = hi - lo
    u = (x - lo) / s  # attacks act in [0, 1]; Normalize maps back: (u - (-lo/s)) / (1/s) = x
    eps, step = args.eps / s, args.inner_step / s

    def model():
        torch.manual_seed(args.seed)
        return nets.build_model("mlp", num_classes=2, input_shape=(2,), activation="elu", norm="none",
                                mean=-lo / s, std=1 / s, hidden=(args.hidden,))

    models = {"ddi": model(), "pgd": model(), "pgd_unit": model()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=args.lr) for k, m in models.items()}
    kw = dict(eps=eps, step_size=step, steps=args.inner_steps)
    steps = {"ddi": DescentStep(models["ddi"], f"ddi-{args.m}", **kw),
             "pgd": DescentStep(models["pgd"], "pgd", **kw),
             "pgd_unit": DescentStep(models["pgd_unit"], "pgd", **kw)}
    probe = DescentStep(models["pgd"], f"ddi-{args.m}", **kw)  # only counts, its p.grad is overwritten
    evaluation = PGD(eps=eps, alpha=step, steps=args.inner_steps, restarts=args.eval_restarts)
    attack_m = PGD(eps=eps, alpha=step, steps=args.inner_steps, restarts=args.m)
    rows, comparison = [], None
    torch.manual_seed(args.seed)
    for it in range(1, args.iterations + 1):
        if it == args.compare_at:
            comparison = linearized_comparison(models["ddi"], u, y, attack_m, t_max=args.compare_t)
        row = {"iteration": it}
        row["pgd_negative_inner_products"] = probe(u, y).negative_inner_products
        for name, step_fn in steps.items():
            record = step_fn(u, y)
            if name == "pgd_unit":
                _unit_grad_(step_fn.params)
            opts[name].step()
            row[f"{name}_train_loss"] = record.loss
            if name == "ddi":
                row["ddi_negative_inner_products"] = record.negative_inner_products
                row["ddi_slope"] = record.slope
        if it % args.eval_every == 0 or it == args.iterations:
            for name, m in models.items():
                row[f"{name}_robust_loss"] = _robust_loss(m, u, y, evaluation)
        rows.append(row)
    return {"rows": rows, "comparison": comparison, "models": models, "x": x, "y": y, "lo": lo, "s": s}


LABELS = {"ddi": "DDi", "pgd": "single adversary (PGD)", "pgd_unit": "single adversary, unit step"}


def _figures(out: dict, args, out_dir: str) -> None:
    plt = pyplot()

    rows = out["rows"]
    it = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    pairs = args.m * (args.m - 1) // 2
    ax.plot(it, [r["ddi_negative_inner_products"] for r in rows], lw=1, label="at DDi's iterate")
    ax.plot(it, [r["pgd_negative_inner_products"] for r in rows], lw=1, alpha=0.7,
            label="at the single-adversary iterate")
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"pairs with <g_i, g_j> < 0 (of {pairs})")
    ax.legend(fontsize=8)
    save(fig, os.path.join(out_dir, "negative_inner_products.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in out["models"]:
        pts = [(r["iteration"], r[f"{name}_robust_loss"]) for r in rows if f"{name}_robust_loss" in r]
        ax.plot(*zip(*pts, strict=True), label=LABELS[name])
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"robust loss (worst of {args.eval_restarts} PGD attacks)")
    ax.legend(fontsize=8)
    save(fig, os.path.join(out_dir, "robust_loss.png"))

    comp = out["comparison"]
    if comp is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, curve in comp["curves"].items():
            if name != "ddi":
                label = "single gradients" if name == "grad_0" else None
                ax.plot(comp["t"], curve, color="0.6", lw=0.8, label=label)
        ax.plot(comp["t"], comp["curves"]["ddi"], color="C3", lw=2, label="DDi direction")
        ax.set_xlabel("step length t")
        ax.set_ylabel(r"linearized robust loss $\max_i L_i + t\langle g_i, d\rangle$")
        ax.set_title(f"iteration {args.compare_at}")
        ax.legend(fontsize=8)
        save(fig, os.path.join(out_dir, "linearized.png"))

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    x, y = out["x"].numpy(), out["y"].numpy()
    grid = np.linspace(x.min() - 1.5, x.max() + 1.5, 200)
    gx, gy = np.meshgrid(grid, grid)
    plane = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    for ax, (name, model) in zip(axes, out["models"].items(), strict=True):
        with torch.no_grad():
            p = torch.softmax(model((plane - out["lo"]) / out["s"]), 1)[:, 1].reshape(gx.shape).numpy()
        ax.contourf(gx, gy, p, levels=20, cmap="RdBu", alpha=0.6)
        ax.contour(gx, gy, p, levels=[0.5], colors="k")
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu", edgecolors="k", s=18)
        ax.set_title(LABELS[name])
        ax.set_aspect("equal")
    save(fig, os.path.join(out_dir, "boundaries.png"), dpi=110)


def _summary(out: dict, args) -> dict:
    rows = out["rows"]
    last = rows[-1]
    n = len(rows)
    summary = {
        "iterations": n, "m": args.m, "eps": args.eps, "inner_steps": args.inner_steps,
        "inner_step": args.inner_step, "lr": args.lr, "points": args.points, "labels": args.labels,
        "final_robust_loss": {name: last[f"{name}_robust_loss"] for name in out["models"]},
        "mean_negative_inner_products": {
            "ddi": float(np.mean([r["ddi_negative_inner_products"] for r in rows])),
            "pgd": float(np.mean([r["pgd_negative_inner_products"] for r in rows]))},
        "iterations_with_negative_inner_products": {
            "ddi": int(sum(r["ddi_negative_inner_products"] > 0 for r in rows)),
            "pgd": int(sum(r["pgd_negative_inner_products"] > 0 for r in rows))},
    }
    comp = out["comparison"]
    if comp is not None:
        singles = [v for k, v in comp["slopes"].items() if k != "ddi"]
        initial = [v for k, v in comp["initial_slopes"].items() if k != "ddi"]
        summary["at_iteration"] = {
            "iteration": args.compare_at, "ddi_slope": comp["ddi_slope"],
            "attack_losses": comp["losses"].tolist(),
            "single_gradient_danskin_slopes": singles,
            "single_gradients_not_descending_all_m": int(sum(v > 0 for v in singles)),
            "single_gradient_initial_slopes": initial,
            "single_gradients_ascending_at_once": int(sum(v > 0 for v in initial)),
            "minimum_over_t": {"ddi": float(comp["curves"]["ddi"].min()),
                               "best_single": float(min(c.min() for k, c in comp["curves"].items()
                                                        if k != "ddi"))},
            "negative_inner_products": comp["negative_inner_products"],
            "linearized_loss_at_t_max": {"ddi": float(comp["curves"]["ddi"][-1]),
                                         "best_single": float(min(c[-1] for k, c in comp["curves"].items()
                                                                  if k != "ddi")),
                                         "t_max": float(comp["t"][-1])},
        }
    return summary


def main(argv=None) -> int:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(prog="python -m experiments.classify2d",
                                     description="\n\n".join(doc[:3]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--points", type=int, default=100, help="number of points (default: 100)")
    add("--labels", choices=("blobs", "random"), default="blobs", help="how labels arise (default: blobs)")
    add("--separation", type=float, default=3.0, help="distance between the blob means (default: 3)")
    add("--hidden", type=int, default=32, help="hidden width of the 2-layer ELU network (default: 32)")
    add("--eps", type=float, default=1.0, help="l-inf radius of the box (default: 1)")
    add("--inner-steps", type=int, default=10, help="PGD steps (default: 10)")
    add("--inner-step", type=float, default=0.1, help="PGD step size (default: 0.1)")
    add("--m", type=int, default=10, help="DDi's attacks (default: 10)")
    add("--lr", type=float, default=0.01, help="outer step (default: 0.01)")
    add("--iterations", type=int, default=500, help="full-batch iterations (default: 500)")
    add("--compare-at", type=int, default=250, help="iteration of the linearized comparison (default: 250)")
    add("--compare-t", type=float, default=0.1, help="largest step t in that comparison (default: 0.1)")
    add("--eval-restarts", type=int, default=20, help="attacks for the robust loss curve (default: 20)")
    add("--eval-every", type=int, default=5, help="iterations between robust-loss evaluations (default: 5)")
    add("--seed", type=int, default=0, help="seed of data, initialization and attacks (default: 0)")
    add("--out", default="runs/classify2d", help="output folder (default: runs/classify2d)")
    args = parser.parse_args(argv)
    for name in ("points", "hidden", "inner_steps", "iterations", "eval_restarts", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.m < 2:
        parser.error("--m must be >= 2 (DDi needs several attacks)")
    for name in ("eps", "inner_step", "lr", "compare_t"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    out = train(args)
    os.makedirs(args.out, exist_ok=True)
    rows = out["rows"]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(os.path.join(args.out, "classify2d.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    comp = out["comparison"]
    if comp is not None:
        with open(os.path.join(args.out, "linearized.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            names = list(comp["curves"])
            writer.writerow(["t", *names])
            for i, t in enumerate(comp["t"]):
                writer.writerow([f"{t:.6g}", *(f"{comp['curves'][k][i]:.8g}" for k in names)])
    summary = _summary(out, args)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    _figures(out, args, args.out)
    fr, neg = summary["final_robust_loss"], summary["mean_negative_inner_products"]
    print(f"{summary['iterations']} iterations, {args.points} points, eps {args.eps}, m = {args.m}:")
    print("  final robust loss: " + ", ".join(f"{LABELS[k]} {v:.4f}" for k, v in fr.items()))
    print(f"  negative inner products per iteration (of {args.m * (args.m - 1) // 2}): DDi {neg['ddi']:.2f}, "
          f"single adversary {neg['pgd']:.2f}")
    if comp is not None:
        at = summary["at_iteration"]
        print(f"  iteration {args.compare_at}: DDi slope {at['ddi_slope']:.4g} (descends for all {args.m} "
              f"attacks); single gradients with a positive slope on some attack: "
              f"{at['single_gradients_not_descending_all_m']} of {args.m}; whose linearized robust loss "
              f"rises at once: {at['single_gradients_ascending_at_once']} of {args.m}")
        print(f"    linearized robust loss at t = {at['linearized_loss_at_t_max']['t_max']:.3g}: DDi "
              f"{at['linearized_loss_at_t_max']['ddi']:.4f}, best single "
              f"{at['linearized_loss_at_t_max']['best_single']:.4f} (minimum over t: "
              f"{at['minimum_over_t']['ddi']:.4f} vs {at['minimum_over_t']['best_single']:.4f})")
    print(f"wrote {args.out}/negative_inner_products.png, robust_loss.png, linearized.png, boundaries.png, "
          f"classify2d.csv, linearized.csv, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
