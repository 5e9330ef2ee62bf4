"""The probe's outputs: the summary (``*.json``), a Markdown report (``*.md``) and the plot (``*.png``)."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from experiments.common.logs import write_atomic
from experiments.directions.candidates import DIRECTIONS
from experiments.directions.stats import direction_statistics, mean_se, paired_statistics

__all__ = ["LABELS", "markdown", "plot", "summarize", "write_outputs"]

#: How each direction is named in the report (m is filled in).
LABELS = {"ddi": "DDi-{m} γ*", "pgd": "PGD gradient", "pgd-max": "pgd-max-{m}", "pgd-min": "pgd-min-{m}",
          "mean": "mean of {m} gradients"}


def _nan(v):
    return float("nan") if v is None else float(v)


def summarize(records: list[dict], *, grid, settings: dict) -> dict:
    """Statistics over the batches of :func:`experiments.directions.probe.run_probe`'s ``records``.

    The keys are described in the tutorial (``docs/tutorials/directions.rst``); every number that is a
    mean over batches comes with its standard error and count (:func:`~experiments.directions.stats.mean_se`).
    """
    grid = [float(t) for t in grid]
    phi0 = np.array([r["phi0"] for r in records], dtype=float)
    directions = {}
    phis = {name: np.array([[_nan(v) for v in r["phi"][name]] for r in records], dtype=float)
            for name in DIRECTIONS}
    for name in DIRECTIONS:
        slopes = np.array([_nan(r["model_slope"][name]) for r in records], dtype=float)
        stats = direction_statistics(phi0, phis[name], grid, model_slope=slopes)
        stats["label"] = LABELS[name].format(m=settings["m"])
        if name != "ddi":
            stats["vs_ddi"] = paired_statistics(phi0, phis[name], phis["ddi"], grid)
        directions[name] = stats
    neg = np.array([r["negative_inner_products"] for r in records], dtype=float)
    pairs = records[0]["pairs"]
    attack = np.array([r["direction_attack_loss"] for r in records], dtype=float)
    cos = np.array([[[_nan(v) for v in row] for row in r["cosines"]] for r in records], dtype=float)
    with np.errstate(invalid="ignore"):
        defined = np.isfinite(cos).sum(0)
        cos_mean = np.where(defined > 0, np.nansum(cos, 0) / np.maximum(defined, 1), np.nan)
    statuses = [r["ddi"]["status"] for r in records]
    return {
        "settings": settings,
        "grid": grid,
        "batches": len(records),
        "directions": directions,
        "gradients": {
            "m": settings["m"], "pairs": pairs,
            "negative_inner_products": mean_se(neg),
            "negative_inner_products_per_batch": neg.astype(int).tolist(),
            "batches_with_a_negative_pair": int(np.sum(neg > 0)),
        },
        "attacks": {
            "probe_phi0": mean_se(phi0),
            "direction_attack_loss": mean_se(attack),
            "probe_minus_direction_attack": mean_se(phi0 - attack),
            "batches_probe_at_least_direction_attack": int(np.sum(phi0 >= attack)),
            "start_equal_fraction_max": max(r["start_equal_fraction"] for r in records),
        },
        "cosines": {"names": list(DIRECTIONS),
                    "mean": [[None if not math.isfinite(v) else float(v) for v in row] for row in cos_mean]},
        "ddi": {"stationary_batches": sum(r["ddi"]["stationary"] for r in records),
                "qp_status": {s: statuses.count(s) for s in sorted(set(statuses))},
                "support_size": mean_se([sum(w > 0 for w in r["ddi"]["weights"]) for r in records])},
        "seconds": {"directions": sum(r["seconds"]["directions"] for r in records),
                    "probe": sum(r["seconds"]["probe"] for r in records)},
        "per_batch": records,  # everything summarize() reads: the summary can be recomputed from the JSON
    }


def _pm(stat: dict, digits: int = 4) -> str:
    if stat["mean"] is None:
        return "—"
    se = "" if stat["se"] is None else f" ± {stat['se']:.{digits - 1}g}"
    return f"{stat['mean']:.{digits}g}{se}"


def markdown(summary: dict) -> str:
    """The report as Markdown: the settings, one table row per direction, the diagnostics."""
    s, grid = summary["settings"], summary["grid"]
    n, m = summary["batches"], s["m"]
    da, pa = s["direction_attack"], s["probe_attack"]
    lines = [
        f"# Descent directions: {s['checkpoint']}",
        "",
        f"Run: `{s['run']['variant']}` on {s['run']['dataset']}, {s['run']['net']} "
        f"{s['run']['activation']} {s['run']['norm']}. {n} batches of {s['batch_size']} from the "
        f"{s['split']} split (seed {s['seed']}), eval mode, device {s['device']}.",
        f"Direction attack: PGD-{da['steps']} ({s['threat']}, ε = {da['eps']:.4g}, step "
        f"{da['step_size']:.4g}) with m = {m} restarts. Probe attack: PGD-{pa['steps']} with "
        f"{pa['restarts']} restarts, step "
        f"{pa['step_size']:.4g}, its own seed, the same start at every t (common random numbers).",
        f"Grid t = {', '.join(f'{t:.4g}' for t in grid)} (units of the unit direction γ, ‖γ‖ = 1 over all "
        f"parameters).",
        "",
        f"| direction | slope at t₁ = {grid[0]:.3g} | slope − DDi's (paired) | descent batches "
        f"| model slope max_i⟨γ, g_i⟩ | best t | decrease at best t |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in DIRECTIONS:
        d = summary["directions"][name]
        best = "—" if d["best_t"] is None else f"{d['best_t']:.3g}"
        paired = _pm(d["vs_ddi"]["slope_difference"], 3) if "vs_ddi" in d else "—"
        lines.append(f"| {d['label']} | {_pm(d['slope'])} | {paired} | {d['descent_batches']} / "
                     f"{d['batches']} | {_pm(d['model_slope'])} | {best} | {_pm(d['decrease_at_best_t'])} |")
    g, a = summary["gradients"], summary["attacks"]
    cos = summary["cosines"]["mean"][0]
    lines += [
        "",
        f"- Negative inner products ⟨g_i, g_j⟩ among the m = {m} gradients: "
        f"{_pm(g['negative_inner_products'])} of {g['pairs']} pairs per batch; "
        f"{g['batches_with_a_negative_pair']} of {n} batches have at least one.",
        f"- Robust batch loss at θ: probe {_pm(a['probe_phi0'])}, direction attack (worst of m) "
        f"{_pm(a['direction_attack_loss'])}; probe − direction attack "
        f"{_pm(a['probe_minus_direction_attack'])}, "
        f"the probe is at least as strong in {a['batches_probe_at_least_direction_attack']} of {n} batches.",
        "- Cosine with DDi's γ* (mean over batches): " + ", ".join(
            f"{summary['directions'][k]['label']} {'—' if c is None else f'{c:.3f}'}"
            for k, c in zip(DIRECTIONS[1:], cos[1:], strict=True)) + ".",
        f"- DDi: {summary['ddi']['stationary_batches']} stationary batches; QP status "
        f"{summary['ddi']['qp_status']}; support of α* {_pm(summary['ddi']['support_size'], 3)} of {m}.",
        "",
        "All values: mean ± standard error over batches. "
        "Slope: (φ̂(θ + t₁γ) − φ̂(θ)) / t₁ per batch, a finite-difference estimate of the one-sided derivative "
        "D_γφ(θ) (biased by the curvature over [0, t₁] and by how much the probe attack falls short of the "
        "inner max at each point). φ̂ is a lower bound of the robust loss φ. Model slope: the linearized "
        "slope on the m direction-attack gradients themselves (in-sample; DDi's is the lowest by Theorem 2). "
        "Slope − DDi's: the per-batch difference of the two slopes (same batches, same probe start; "
        "negative: steeper than DDi). Descent batches: batches with a negative slope. Best t: the grid point "
        "of lowest mean change.",
        "",
        f"Time: {summary['seconds']['directions']:.1f} s building directions, "
        f"{summary['seconds']['probe']:.1f} s probing.",
    ]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str) -> None:
    """φ̂ along each direction, its change from φ̂(θ), and that change minus DDi's: mean ± SE over batches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    def band(ax, t, stats, k, label):
        mean = np.array([_nan(s["mean"]) for s in stats])
        se = np.array([0.0 if s["se"] is None else s["se"] for s in stats])
        ax.plot(t, mean, marker="o", ms=3, color=f"C{k}", label=label)
        ax.fill_between(t, mean - se, mean + se, color=f"C{k}", alpha=0.2, lw=0)

    for k, name in enumerate(DIRECTIONS):
        d = summary["directions"][name]
        t, c = np.array(d["curve"]["t"]), d["curve"]
        for ax, key in zip(axes[:2], ("phi", "change"), strict=True):
            band(ax, t, [{"mean": mu, "se": se} for mu, se in zip(c[f"{key}_mean"], c[f"{key}_se"],
                                                                     strict=True)], k, d["label"])
        paired = [{"mean": 0.0, "se": 0.0}, *d["vs_ddi"]["change_difference"]] if "vs_ddi" in d else \
            [{"mean": 0.0, "se": 0.0}] * len(t)
        band(axes[2], t, paired, k, d["label"])
    n = summary["batches"]
    axes[0].set_ylabel(r"$\hat\varphi(\theta + t\gamma)$ (probe attack)")
    axes[1].set_ylabel(r"$\hat\varphi(\theta + t\gamma) - \hat\varphi(\theta)$")
    axes[2].set_ylabel("change minus DDi's change (same batches)")
    for ax in axes[1:]:
        ax.axhline(0.0, color="k", lw=0.8)
    for ax in axes:
        ax.set_xlabel(r"step $t$ along the unit direction $\gamma$")
        ax.set_title(f"mean ± SE over {n} batches", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_outputs(summary: dict, prefix: str) -> list[str]:
    """Write ``PREFIX.json``, ``PREFIX.md`` and ``PREFIX.png`` (JSON and Markdown atomically); return them."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    paths = [prefix + ".json", prefix + ".md", prefix + ".png"]
    write_atomic(paths[0], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    write_atomic(paths[1], markdown(summary))
    plot(summary, paths[2])
    return paths
