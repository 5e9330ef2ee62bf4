"""``python -m experiments.plot RUN_DIR [RUN_DIR ...] --out FILE.png``: robust accuracy curves of runs.

The paper's Figures 4, 5 and 8 compare methods by robust test accuracy against the epoch and against
wall-clock time (DDi's extra gradients cost time; the comparison per hour is the fair one). This draws both
panels for any number of runs of ``experiments.train``, overlaid, from their ``metrics.jsonl``; the
wall-clock axis is the cumulative training + evaluation time the run logged (``wall_time``, which survives
resumes). A table of the last and best values is printed.

Examples
--------
::

    python -m experiments.plot runs/paper-ddi runs/paper-pgd --out figure4.png
    python -m experiments.plot runs/* --metric val_robust_acc --clean --out curves.png
    python -m experiments.plot --final runs/paper-ddi runs/paper-pgd --out final.png

``--final`` draws instead the final comparison of the runs (clean against AutoAttack accuracy, best and last
checkpoints) from the reports of ``python -m experiments.evaluate``; see :mod:`experiments.figures.final`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from experiments.common.logs import read_metrics
from experiments.figures.drawing import pyplot, save
from experiments.figures.final import main_final

__all__ = ["load_runs", "main", "plot_runs"]


def _label(run_dir: str, config: dict, differing: set[str]) -> str:
    if not config:
        return os.path.basename(os.path.normpath(run_dir))
    parts = [config.get("variant", "?")]
    parts += [str(config[key]) for key in ("net", "activation", "norm", "dataset", "seed")
              if key in differing and key in config]
    return " ".join(parts)


def load_runs(run_dirs, labels=None) -> list[dict]:
    """Read each run's per-epoch rows and configuration; label runs by what differs between them.

    Raises
    ------
    FileNotFoundError
        If a folder has no metrics.jsonl.
    """
    runs = []
    for run_dir in run_dirs:
        rows = read_metrics(run_dir)
        try:
            with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
                config = json.load(f)["config"]
        except (FileNotFoundError, ValueError, KeyError):
            config = {}
        runs.append({"dir": run_dir, "rows": rows, "config": config})
    keys = {"variant", "net", "activation", "norm", "dataset", "seed"}
    differing = {k for k in keys if len({json.dumps(r["config"].get(k)) for r in runs}) > 1}
    for i, run in enumerate(runs):
        run["label"] = labels[i] if labels else _label(run["dir"], run["config"], differing)
    names = [r["label"] for r in runs]
    for run in runs:
        if names.count(run["label"]) > 1:  # same settings: the folder tells them apart
            run["label"] += f" ({os.path.basename(os.path.normpath(run['dir']))})"
    return runs


def plot_runs(runs: list[dict], out: str, *, metric: str = "test_robust_acc", clean: bool = False,
              title: str | None = None) -> None:
    """Draw ``metric`` against epoch (left) and wall-clock hours (right) for each run into ``out``."""
    plt = pyplot()
    import matplotlib.ticker

    fig, (ax_epoch, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    seconds = max((r["rows"][-1].get("wall_time") or 0.0) for r in runs if r["rows"])
    unit, scale = ("hours", 3600.0) if seconds > 3 * 3600 else (("minutes", 60.0) if seconds > 180 else
                                                                ("seconds", 1.0))
    for run in runs:
        rows = [r for r in run["rows"] if r.get(metric) is not None]
        if not rows:
            print(f"warning: {run['dir']} has no {metric!r} values", file=sys.stderr)
            continue
        epochs = [r["epoch"] for r in rows]
        times = [(r.get("wall_time") or 0.0) / scale for r in rows]
        values = [100 * r[metric] for r in rows]
        (line,) = ax_epoch.plot(epochs, values, label=run["label"])
        ax_time.plot(times, values, color=line.get_color())
        clean_key = metric.replace("robust", "clean")
        if clean and clean_key != metric:
            ax_epoch.plot(epochs, [100 * (r.get(clean_key) or 0) for r in rows], "--", color=line.get_color(),
                          alpha=0.6)
    what = metric.replace("_", " ").replace("acc", "accuracy (%)")
    ax_epoch.set_xlabel("epoch")
    ax_epoch.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_epoch.set_ylabel(what + (" (dashed: clean)" if clean else ""))
    ax_time.set_xlabel(f"wall-clock {unit}")
    for ax in (ax_epoch, ax_time):
        ax.grid(alpha=0.3)
    ax_epoch.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save(fig, out)


def _table(runs: list[dict], metric: str) -> str:
    lines = [f"{'run':40s} {'epochs':>6s} {'last':>7s} {'best':>7s} {'at epoch':>8s} {'wall':>9s}"]
    for run in runs:
        rows = [r for r in run["rows"] if r.get(metric) is not None]
        if not rows:
            continue
        best = max(rows, key=lambda r: r[metric])
        wall = rows[-1].get("wall_time") or 0.0
        lines.append(f"{run['label'][:40]:40s} {rows[-1]['epoch']:6d} {100 * rows[-1][metric]:6.2f}% "
                     f"{100 * best[metric]:6.2f}% {best['epoch']:8d} {wall / 60:8.1f}m")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.plot", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of experiments.train")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="where to write the figure")
    parser.add_argument("--metric", default="test_robust_acc",
                        help="column of metrics.jsonl to plot (default: test_robust_acc; or val_robust_acc, "
                             "test_clean_acc, ...)")
    parser.add_argument("--clean", action="store_true", help="also draw the clean accuracy, dashed")
    parser.add_argument("--labels", help="comma-separated legend labels, one per run")
    parser.add_argument("--title", help="figure title")
    parser.add_argument("--final", action="store_true",
                        help="final comparison instead: clean vs AutoAttack accuracy, best and last "
                             "checkpoints, from the reports of experiments.evaluate (RUN_DIR or report.json)")
    parser.add_argument("--final-metric", choices=("auto", "autoattack", "pgd", "worst-case"), default="auto",
                        help="robust accuracy of --final (auto: AutoAttack if every report has it, else PGD)")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    if args.final:
        return main_final(args.runs, args.out, metric=args.final_metric, labels=labels, title=args.title)
    if labels and len(labels) != len(args.runs):
        parser.error(f"--labels has {len(labels)} entries for {len(args.runs)} runs")
    try:
        runs = load_runs(args.runs, labels)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not any(r["rows"] and args.metric in r["rows"][0] for r in runs):
        print(f"error: no run has the column {args.metric!r}", file=sys.stderr)
        return 2
    plot_runs(runs, args.out, metric=args.metric, clean=args.clean, title=args.title)
    print(_table(runs, args.metric))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
