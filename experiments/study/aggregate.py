"""Aggregate a study's runs: curves over seeds, final numbers, paired differences, cost per step."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from experiments.common.logs import read_evals
from experiments.study.runs import Run

__all__ = ["aggregate", "mean_sd", "paired_difference"]


def mean_sd(values) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and count of a list of numbers."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_sd of no values")
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0, "n": int(x.size)}


def paired_difference(a, b, confidence: float = 0.95) -> dict:
    """Mean of ``a_i − b_i`` over paired seeds with a two-sided Student-t confidence interval.

    With n seeds the half-width is ``t_{(1+c)/2, n−1} · sd / √n``; with one seed it is undefined (NaN).
    Runs with the same seed share the initialization, the data order and the evaluation examples, so the
    paired difference removes their common noise.
    """
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    summary = mean_sd(d)
    n = summary["n"]
    half = (float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * summary["sd"] / math.sqrt(n)) if n > 1 \
        else math.nan
    low, high = summary["mean"] - half, summary["mean"] + half
    return {**summary, "confidence": confidence, "low": low, "high": high}


def _curve(rows_by_seed: list[list[dict]]) -> dict:
    """Mean and sd over seeds at the steps every seed evaluated."""
    steps = sorted(set.intersection(*(set(r["step"] for r in rows) for rows in rows_by_seed)))
    by_step = [{r["step"]: r for r in rows} for rows in rows_by_seed]
    curve = {"step": steps}
    for key in ("robust_acc", "clean_acc", "train_time", "train_cpu_time"):
        if all(key in rows[s] for rows in by_step for s in steps):
            stats = [mean_sd([rows[s][key] for rows in by_step]) for s in steps]
            curve[key] = [st["mean"] for st in stats]
            curve[f"{key}_sd"] = [st["sd"] for st in stats]
    return curve


def aggregate(runs: list[Run], reference: str) -> dict:
    """The study's numbers from the finished runs (unfinished ones are counted and left out)."""
    variants: dict[str, dict] = {}
    for run in runs:
        entry = variants.setdefault(run.variant, {"seeds": [], "evals": [], "summaries": [], "missing": []})
        if not run.complete:
            entry["missing"].append(run.seed)
            continue
        with open(os.path.join(run.run_dir, "summary.json"), encoding="utf-8") as f:
            entry["summaries"].append(json.load(f))
        entry["evals"].append(read_evals(run.run_dir))
        entry["seeds"].append(run.seed)
    out = {"reference": reference, "variants": {}}
    for variant, entry in variants.items():
        result = {"seeds": entry["seeds"], "missing_seeds": entry["missing"]}
        if entry["seeds"]:
            last = [s["test_last"] for s in entry["summaries"]]
            result["final_robust_acc"] = mean_sd([t["robust_acc"] for t in last])
            result["final_clean_acc"] = mean_sd([t["clean_acc"] for t in last])
            result["final_examples"] = last[0]["n"]
            result["final_robust_acc_by_seed"] = dict(zip(entry["seeds"], [t["robust_acc"] for t in last],
                                                          strict=True))
            result["steps"] = entry["summaries"][0]["global_step"]
            if all(rows for rows in entry["evals"]):
                result["curve"] = _curve(entry["evals"])
                ends = [rows[-1] for rows in entry["evals"]]
                result["train_seconds_per_step"] = mean_sd([r["train_time"] / max(r["step"], 1)
                                                            for r in ends])
                if all("train_cpu_time" in r for r in ends):
                    result["cpu_seconds_per_step"] = mean_sd([r["train_cpu_time"] / max(r["step"], 1)
                                                              for r in ends])
        out["variants"][variant] = result
    ref = out["variants"].get(reference, {}).get("final_robust_acc_by_seed", {})
    for variant, result in out["variants"].items():
        mine = result.get("final_robust_acc_by_seed", {})
        common = sorted(set(mine) & set(ref))
        if variant != reference and common:
            result["robust_acc_minus_reference"] = paired_difference([mine[s] for s in common],
                                                                     [ref[s] for s in common])
    return out
