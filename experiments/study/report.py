"""The study's Markdown table and its figure (robust accuracy against steps, wall-clock and CPU time)."""

from __future__ import annotations

import math

__all__ = ["markdown", "plot"]


def _pm(stat: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if not stat:
        return "–"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['sd'] * scale:.{digits}f}"


def markdown(study: dict, config: dict) -> str:
    """A Markdown report: the setting, one row per variant, and how to read the uncertainty."""
    ref = study["reference"]
    lines = [f"# Study {config['name']}", "",
             f"`python -m experiments.train {' '.join(config['train_args'])} --variant V --seed S` for "
             f"V in {', '.join(config['variants'])} and S in {', '.join(map(str, config['seeds']))}.", "",
             "| variant | seeds | steps | final robust acc. % | final clean acc. % | robust − "
             f"{ref} (pp, 95% CI) | train s/step | CPU s/step |",
             "|---|---|---|---|---|---|---|---|"]
    for variant, r in study["variants"].items():
        diff = r.get("robust_acc_minus_reference")
        if diff:
            low = "?" if math.isnan(diff["low"]) else f"{diff['low'] * 100:+.1f}"
            high = "?" if math.isnan(diff["high"]) else f"{diff['high'] * 100:+.1f}"
            diff_text = f"{diff['mean'] * 100:+.1f} [{low}, {high}]"
        else:
            diff_text = "reference" if variant == ref else "–"
        seeds = f"{len(r['seeds'])}" + (f" (missing {r['missing_seeds']})" if r["missing_seeds"] else "")
        lines.append(f"| {variant} | {seeds} | {r.get('steps', '–')} | {_pm(r.get('final_robust_acc'))} | "
                     f"{_pm(r.get('final_clean_acc'))} | {diff_text} | "
                     f"{_pm(r.get('train_seconds_per_step'), 1, 2)} | "
                     f"{_pm(r.get('cpu_seconds_per_step'), 1, 2)} |")
    examples = next((r["final_examples"] for r in study["variants"].values() if "final_examples" in r), "?")
    lines += ["", f"Final accuracies: the last weights on {examples} test examples, mean ± standard "
              "deviation over seeds. The difference to the reference is paired by seed (same "
              "initialization, data order and test examples) with a Student-t interval; an interval that "
              "contains 0 means the study cannot tell the variants apart. Times exclude evaluation; CPU "
              "time is the process's (one thread), which other jobs on the machine do not inflate, unlike "
              "the wall-clock time.", ""]
    return "\n".join(lines)


def plot(study: dict, path: str) -> None:
    """Robust accuracy (mean ± sd over seeds) against steps, training wall-clock and CPU time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    axes_keys = [("step", "optimizer steps"), ("train_time", "training wall-clock time (s)"),
                 ("train_cpu_time", "training CPU time (s)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for variant, r in study["variants"].items():
        curve = r.get("curve")
        if not curve:
            continue
        y, sd = np.array(curve["robust_acc"]), np.array(curve["robust_acc_sd"])
        for ax, (key, label) in zip(axes, axes_keys, strict=True):
            if key not in curve:
                continue
            x = np.array(curve[key])
            (line,) = ax.plot(x, y, marker="o", markersize=3, label=f"{variant} ({len(r['seeds'])} seeds)")
            ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.2)
            ax.set_xlabel(label)
    axes[0].set_ylabel("PGD robust test accuracy")
    axes[0].legend(loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("robust accuracy, mean ± one standard deviation over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
