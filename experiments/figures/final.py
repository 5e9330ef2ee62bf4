"""The final comparison of runs: clean against AutoAttack (or PGD) accuracy, one point per run and checkpoint.

``python -m experiments.plot --final RUN_DIR ... --out FILE.png`` draws it from the reports that
``python -m experiments.evaluate`` wrote beside the runs' checkpoints
(``RUN_DIR/checkpoints/{best,last}.robustness-NORM.json``); report files may also be named directly. Each
run is one colour, its best checkpoint a circle and its last a square, joined by a thin line: the gap
between them is robust overfitting. Runs up and to the right are better on both counts.
"""

from __future__ import annotations

import glob
import json
import os
import sys

from experiments.figures.drawing import pyplot, save

__all__ = ["find_reports", "load_points", "main_final", "plot_final"]

MARKERS = {"best": "o", "last": "s"}
_METRICS = {"autoattack": ("autoattack_acc", "AutoAttack"), "pgd": ("pgd_acc", "PGD (worst of CE and CW)"),
            "worst-case": ("robust_acc", "worst case over all attacks")}


def find_reports(paths) -> list[str]:
    """The report files under each path: a report ``.json`` itself, or a run directory's checkpoints'.

    Raises
    ------
    FileNotFoundError
        If a path is neither a report nor a folder holding reports (the message says how to make them).
    """
    found = []
    for path in paths:
        if os.path.isfile(path):
            found.append(path)
            continue
        hits = sorted(glob.glob(os.path.join(path, "checkpoints", "*.robustness-*.json"))
                      + glob.glob(os.path.join(path, "*.robustness-*.json")))
        if not hits:
            raise FileNotFoundError(f"no robustness report in {path!r}; make one with python -m "
                                    f"experiments.evaluate {os.path.join(path, 'checkpoints', 'best.pt')}")
        found += hits
    return found


def _run_of(report: dict, path: str) -> str:
    folder = os.path.dirname(os.path.abspath(report.get("checkpoint", {}).get("path") or path))
    return os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder


def load_points(paths, *, metric: str = "auto", labels=None) -> tuple[list[dict], str]:
    """Read the reports; return one point per report and the metric used.

    ``metric`` is ``"autoattack"``, ``"pgd"``, ``"worst-case"``, or ``"auto"`` (AutoAttack when every
    report has it, else PGD). A point is ``{"run", "label", "checkpoint", "clean", "robust", "threat",
    "unreliable", "path"}`` with accuracies in percent. ``labels`` (one per run, in order of first
    appearance) replace the run folders' names.

    Raises
    ------
    ValueError
        If a file is not a report of experiments.evaluate, the reports mix threat models, or one lacks the
        metric.
    """
    reports = []
    for path in find_reports(paths):
        try:
            with open(path, encoding="utf-8") as f:
                report = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path!r} is not a readable report: {exc}") from None
        if not isinstance(report, dict) or not str(report.get("format", "")).startswith("minmax-robustness/"):
            raise ValueError(f"{path!r} is not a report of python -m experiments.evaluate")
        reports.append((path, report))
    if metric == "auto":
        metric = "autoattack" if all(r.get("autoattack_acc") is not None for _, r in reports) else "pgd"
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected 'auto' or one of {sorted(_METRICS)}")
    threats = {f"{r['threat_model']} eps={r['eps']}" for _, r in reports}
    if len(threats) > 1:
        raise ValueError(f"the reports are for different threat models ({', '.join(sorted(threats))}); "
                         f"compare one at a time")
    threat = threats.pop()
    key = _METRICS[metric][0]
    runs = list(dict.fromkeys(_run_of(r, path) for path, r in reports))
    if labels and len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
    points = []
    for path, report in reports:
        if report.get(key) is None:
            raise ValueError(f"{path!r} has no {_METRICS[metric][1]} accuracy (evaluate with --attacks all, "
                             f"or choose another metric)")
        run = _run_of(report, path)
        variant = report["training"]["variant"]
        label = labels[runs.index(run)] if labels else f"{os.path.basename(run)} ({variant})"
        points.append({"run": run, "label": label, "checkpoint": report["training"]["checkpoint"],
                       "clean": float(report["clean_acc"]), "robust": float(report[key]), "threat": threat,
                       "unreliable": bool(report["unreliable"]), "path": path})
    return points, metric


def plot_final(points: list[dict], out: str, *, metric: str, title: str | None = None) -> None:
    """Scatter clean (x) against robust (y) accuracy, one colour per run, best ○ and last □ joined."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    runs = list(dict.fromkeys(p["run"] for p in points))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        mine = sorted((p for p in points if p["run"] == run), key=lambda p: p["checkpoint"])
        color = colors[i % len(colors)]
        if len(mine) > 1:
            ax.plot([p["clean"] for p in mine], [p["robust"] for p in mine], "-", color=color, alpha=0.4)
        for p in mine:
            ax.plot(p["clean"], p["robust"], MARKERS.get(p["checkpoint"], "^"), color=color, markersize=8,
                    markerfacecolor="none" if p["unreliable"] else color,
                    label=p["label"] if p is mine[0] else None)
    for checkpoint, marker in MARKERS.items():
        ax.plot([], [], marker, color="gray", label=f"{checkpoint} checkpoint")
    if any(p["unreliable"] for p in points):
        ax.plot([], [], "o", color="gray", markerfacecolor="none", label="unreliable (see its report)")
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"{_METRICS[metric][1]} accuracy (%)")
    ax.set_title(title or f"final comparison, {points[0]['threat']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out)


def _table(points: list[dict], metric: str) -> str:
    lines = [f"{'run':40s} {'checkpoint':>10s} {'clean':>7s} {metric:>12s}"]
    for p in points:
        flag = "  (unreliable)" if p["unreliable"] else ""
        lines.append(f"{p['label'][:40]:40s} {p['checkpoint']:>10s} {p['clean']:6.2f}% "
                     f"{p['robust']:11.2f}%{flag}")
    return "\n".join(lines)


def main_final(paths, out: str, *, metric: str = "auto", labels=None, title=None) -> int:
    """What ``python -m experiments.plot --final`` runs; returns the exit status (2 on a bad input)."""
    try:
        points, metric = load_points(paths, metric=metric, labels=labels)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plot_final(points, out, metric=metric, title=title)
    print(_table(points, metric))
    print(f"wrote {out}")
    return 0
