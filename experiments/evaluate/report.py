"""The report of ``python -m experiments.evaluate``: resumable partial results, checks, JSON, Markdown.

While an evaluation runs, each finished batch's per-sample flags go into a partial file (``REPORT.partial``,
rewritten atomically after every batch) under a key of everything that determines the numbers (checkpoint
hash, split, examples, batch size, ε, threat model, attack settings, seed, device type). A rerun with the
same key skips the batches already done; any other key starts over. The final report is:

- ``REPORT.json``: RobustBench's model-info fields (``clean_acc``, ``autoattack_acc`` as percentage
  strings with two decimals, ``eps`` as a fraction, ``threat_model`` ``"Linf"``/``"L2"``, ``architecture``,
  ``dataset``, ``unreliable``) plus ``results`` (every attack's robust accuracy as a fraction and its
  settings), ``checks`` (the gradient-masking checks), ``warnings``, ``training`` (variant, epochs, best
  epoch, the training run's own PGD numbers), ``evaluation`` (examples, split, seed, device) and
  ``versions``;
- ``REPORT.md``: the same numbers as a short Markdown table, which the command also prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from fractions import Fraction

import numpy as np

from experiments.common.logs import write_atomic

__all__ = ["FORMAT", "Partial", "checks_and_warnings", "eps_text", "file_sha256", "markdown", "percent",
           "summarize", "versions", "write_report"]

FORMAT = "minmax-robustness/1"

#: Share of the examples above which a per-sample disagreement between attacks is reported as a warning
#: (a single example never is: with a few hundred examples one is within the attacks' own randomness).
TOLERANCE = 0.01

WHITE_BOX = ("pgd-ce", "pgd-cw", "autoattack", "pgd-weak")


def eps_text(eps: float) -> str:
    """ε as RobustBench writes it: a short decimal, or k/255 (pixel levels).

    Examples
    --------
    >>> eps_text(8 / 255), eps_text(0.5), eps_text(0.1234567)
    ('8/255', '0.5', '0.1234567')
    """
    if float(f"{eps:.4g}") == eps:
        return f"{eps:g}"
    k = round(eps * 255)
    if k and float(Fraction(k, 255)) == eps:
        return f"{k}/255"
    return f"{eps:.10g}"


class Partial:
    """Per-batch results of an evaluation in progress, saved atomically after every batch.

    Parameters
    ----------
    path : str or None
        The partial file (None: in memory only).
    key : dict
        Everything that determines the numbers; results saved under another key are discarded.
    """

    def __init__(self, path: str, key: dict):
        self.path, self.key = path, json.loads(json.dumps(key))
        self.batches: dict[str, dict] = {}
        self.resumed = False
        if path is None:
            return
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        except (FileNotFoundError, ValueError):
            return
        if isinstance(saved, dict) and saved.get("key") == self.key:
            self.batches = saved.get("batches", {})
            self.resumed = bool(self.batches)

    def done(self, b: int) -> bool:
        return str(b) in self.batches

    def save(self, b: int, record: dict) -> None:
        """Record batch ``b`` (flags as ``"0"``/``"1"`` strings, per-restart counts, messages)."""
        self.batches[str(b)] = record
        if self.path is None:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        write_atomic(self.path, json.dumps({"key": self.key, "batches": self.batches}))

    def flags(self, name: str) -> np.ndarray | None:
        """The per-sample flags of ``name`` over all batches in order, or None if it was not run."""
        parts = [self.batches[b].get(name) for b in sorted(self.batches, key=int)]
        if not parts or any(p is None for p in parts):
            return None
        return np.array([c == "1" for c in "".join(parts)], dtype=bool)

    def remove(self) -> None:
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)


def _counts(partial: Partial, name: str) -> list[int] | None:
    rows = [partial.batches[b].get(name + ":restarts") for b in sorted(partial.batches, key=int)]
    if not rows or any(r is None for r in rows):
        return None
    return [int(v) for v in np.sum(np.array(rows, dtype=np.int64), axis=0)]


def summarize(partial: Partial, settings: dict) -> tuple[dict, dict]:
    """Robust accuracy of every attack that ran, and the per-sample flags, from the finished batches.

    Returns ``(results, flags)``: ``results[name] = {"robust_acc", "robust", **settings[name]}`` for each
    attack, plus ``"pgd"`` (worst case over the PGD losses), ``"white-box"`` (over every white-box attack)
    and ``"worst-case"`` (over every attack at the nominal ε, black-box included).
    """
    flags = {name: f for name in settings if (f := partial.flags(name)) is not None}
    n = len(flags["clean"])
    groups = {"pgd": ("pgd-ce", "pgd-cw"), "white-box": WHITE_BOX, "worst-case": (*WHITE_BOX, "blackbox")}
    for group, members in groups.items():
        present = [flags[m] for m in members if m in flags]
        if present and (group != "pgd" or len(present) > 1):
            flags[group] = np.logical_and.reduce(present)
    results = {}
    for name, f in flags.items():
        entry = {"robust_acc": float(f.sum()) / n, "robust": int(f.sum())}
        entry.update(settings.get(name, {"combines": list(groups.get(name, ()))}))
        counts = _counts(partial, name)
        if counts is not None:
            entry["robust_acc_by_restarts"] = [c / n for c in counts]
        results[name] = entry
    results["clean"]["n"] = n
    return results, flags


def checks_and_warnings(results: dict, flags: dict, messages: list[str]) -> tuple[dict, list[str]]:
    """The gradient-masking checks (see the Notes of :mod:`experiments.evaluate`) and their warnings."""
    n = len(flags["clean"])
    allowed = max(1.0, TOLERANCE * n)
    checks, warnings = {}, []
    if "pgd-weak" in flags and "pgd-ce" in flags:
        weak, strong = results["pgd-weak"]["robust_acc"], results["pgd-ce"]["robust_acc"]
        only_weak = int((~flags["pgd-weak"] & flags["pgd-ce"]).sum())
        checks["more_steps_and_restarts"] = {"weak_robust_acc": weak, "strong_robust_acc": strong,
                                             "broken_by_weak_only": only_weak,
                                             "passed": strong <= weak and only_weak <= allowed}
        if strong > weak:
            warnings.append(f"robust accuracy rises with more PGD steps and restarts ({100 * weak:.2f}% with "
                            f"{results['pgd-weak']['steps']} steps x 1 restart, {100 * strong:.2f}% with "
                            f"{results['pgd-ce']['steps']} x {results['pgd-ce']['restarts']}): a sign of "
                            f"gradient masking or an attack that does not converge")
        elif only_weak > allowed:
            warnings.append(f"{only_weak} examples are broken by the weaker PGD but not by the stronger one "
                            f"(more than {100 * TOLERANCE:g}% of {n}): the attack is unreliable here")
    for name in ("pgd-ce", "pgd-cw"):
        curve = results.get(name, {}).get("robust_acc_by_restarts")
        if curve and len(curve) > 1 and (curve[-2] - curve[-1]) * n > allowed:
            warnings.append(f"{name}: the last restart still lowered robust accuracy by "
                            f"{100 * (curve[-2] - curve[-1]):.2f} points; the evaluation has not converged "
                            f"(use more --restarts)")
    if "large-eps" in flags:
        acc = results["large-eps"]["robust_acc"]
        checks["large_eps"] = {"eps": results["large-eps"]["eps"], "robust_acc": acc,
                               "passed": acc <= TOLERANCE}
        if acc > TOLERANCE:
            warnings.append(f"robust accuracy is still {100 * acc:.2f}% at eps = "
                            f"{results['large-eps']['eps']:.4g}, where every image can be changed to any "
                            f"other class's: the gradients do not lead the attack (gradient masking)")
    if "blackbox" in flags and "white-box" in flags:
        black, white = results["blackbox"]["robust_acc"], results["white-box"]["robust_acc"]
        only_black = int((~flags["blackbox"] & flags["white-box"]).sum())
        checks["black_box_vs_white_box"] = {"black_box_robust_acc": black, "white_box_robust_acc": white,
                                            "broken_by_black_box_only": only_black,
                                            "passed": black >= white and only_black <= allowed}
        if black < white:
            warnings.append(f"the black-box random search ({100 * black:.2f}%) beats the white-box attacks "
                            f"({100 * white:.2f}%): gradient masking")
        elif only_black > allowed:
            warnings.append(f"the black-box random search breaks {only_black} examples that every white-box "
                            f"attack missed (more than {100 * TOLERANCE:g}% of {n}): gradient masking")
    for message in dict.fromkeys(messages):
        warnings.append(f"AutoAttack: {message}")
    return checks, warnings


def versions(device) -> dict:
    """Python, platform, torch, NumPy, minmax and (when installed) pyautoattack versions, and the device."""
    from importlib import metadata

    import torch

    found = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
             "numpy": np.__version__}
    for package in ("minmax", "pyautoattack"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["device"] = (torch.cuda.get_device_name(device) if torch.device(device).type == "cuda"
                       else platform.processor() or "cpu")
    return found


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (identifies the checkpoint an evaluation belongs to)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def percent(value: float | None) -> str | None:
    """A fraction as RobustBench writes accuracies: a percentage string with two decimals (None: None)."""
    return None if value is None else f"{100 * value:.2f}"


_TITLES = {"clean": "clean", "pgd-ce": "PGD (cross-entropy)", "pgd-cw": "PGD (CW margin)",
           "pgd": "PGD (worst of CE and CW)", "autoattack": "AutoAttack (standard)",
           "white-box": "all white-box attacks", "blackbox": "black-box random search",
           "worst-case": "worst case over all attacks", "pgd-weak": "check: weaker PGD",
           "large-eps": "check: large eps"}


def _describe(name: str, entry: dict) -> str:
    if name.startswith("pgd-"):
        restarts = f"{entry['restarts']} restart" + ("s" if entry["restarts"] != 1 else "")
        return (f"{entry['steps']} steps x {restarts}, step {entry['step_size']:.4g}"
                + (f", eps {entry['eps']:.4g}" if name == "large-eps" else ""))
    if name == "large-eps":
        return f"PGD-{entry['steps']}, eps {entry['eps']:.4g}"
    if name == "blackbox":
        return f"{entry['queries']} queries"
    if name == "autoattack":
        return "APGD-CE, APGD-T, FAB-T, Square"
    return ""


def markdown(report: dict) -> str:
    """The report as a short Markdown document: a header, one table row per attack, the warnings."""
    ev, tr = report["evaluation"], report["training"]
    lines = [f"# Robustness of `{report['checkpoint']['path']}`", "",
             f"{report['architecture']}, {tr['variant']} ({tr['epochs_completed']}/{tr['epochs']} epochs), "
             f"{report['dataset']} {ev['split']}, {ev['n_examples']} examples, "
             f"{report['threat_model']} eps = {report['eps']}", "",
             "| attack | settings | accuracy (%) |", "|---|---|---:|"]
    for name in ("clean", "pgd-ce", "pgd-cw", "pgd", "autoattack", "blackbox", "worst-case", "pgd-weak",
                 "large-eps"):
        if name in report["results"]:
            entry = report["results"][name]
            lines.append(f"| {_TITLES[name]} | {_describe(name, entry)} | {percent(entry['robust_acc'])} |")
    lines.append("")
    if report["warnings"]:
        lines += ["**Warnings (the evaluation may be unreliable):**", ""]
        lines += [f"- {w}" for w in report["warnings"]]
    else:
        lines.append("Gradient-masking checks: " + (", ".join(report["checks"]) + " passed."
                                                   if report["checks"] else "none run."))
    return "\n".join(lines) + "\n"


def write_report(path: str, report: dict) -> str:
    """Write ``report`` to ``path`` (JSON) and its Markdown beside it (``.md``); return the Markdown."""
    text = markdown(report)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, json.dumps(report, indent=2) + "\n")
    write_atomic(os.path.splitext(path)[0] + ".md", text)
    return text


def training_info(state: dict, config: dict, path: str) -> dict:
    """The report's ``training`` entry: the run's variant, length, best epoch and its own PGD numbers."""
    history = state.get("history") or []
    last = history[-1] if history else {}
    return {"variant": config.get("variant"), "epochs": config.get("epochs"),
            "epochs_completed": state.get("progress", {}).get("epoch"),
            "checkpoint": os.path.splitext(os.path.basename(path))[0],
            "best_epoch": (state.get("best") or {}).get("epoch"), "seed": config.get("seed"),
            "train_eps": config.get("eps"), "train_threat": config.get("threat"),
            "train_steps": config.get("steps"),
            "training_eval": {k: last.get(k) for k in ("epoch", "test_clean_acc", "test_robust_acc",
                                                      "val_robust_acc") if k in last},
            "training_eval_attack": f"PGD-{config.get('eval_steps')} x {config.get('eval_restarts')}"}


def architecture(config: dict) -> str:
    """RobustBench's ``architecture`` field, e.g. ``"resnet18 (celu, group norm)"``."""
    net = config.get("net", "?")
    if net == "mlp":
        net += " " + "-".join(str(h) for h in config.get("hidden", ()))
    norm = "no" if config.get("norm") == "none" else config.get("norm")
    return f"{net} ({config.get('activation')}, {norm} norm)"
