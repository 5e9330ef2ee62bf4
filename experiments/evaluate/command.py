r"""The command ``python -m experiments.evaluate CHECKPOINT``: options, set-up, the report written beside it.

See :mod:`experiments.evaluate` for what it measures and the checks against gradient masking.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from experiments.common.checkpoints import CheckpointError, load_checkpoint
from experiments.common.data import DataError
from experiments.common.options import parse_fraction
from experiments.evaluate import attacks as A
from experiments.evaluate import report as R
from experiments.evaluate.suite import ATTACKS, CHECKS, attack_settings, run_attacks
from experiments.train.model import restore_model

__all__ = ["build_parser", "main"]

DEFAULT_EPS = {"linf": 8 / 255, "l2": 0.5}  # RobustBench's CIFAR10 threat models
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

DESCRIPTION = """\
Measure the robustness of a checkpoint of experiments.train the way reviewers expect: clean accuracy,
PGD-K with R restarts (cross-entropy and CW margin losses, worst case per example), AutoAttack (standard
version, needs pip install 'minmax[autoattack]'), and three checks against gradient masking (a weaker vs
the stronger PGD, a large eps, a black-box random search). Writes a RobustBench-style JSON report and a
Markdown table beside the checkpoint; an interrupted evaluation continues where it stopped when rerun.
"""

EPILOG = """\
attacks (--attacks, comma-separated): pgd-ce, pgd-cw, autoattack, and the checks pgd-weak, large-eps,
blackbox ("checks" names all three; "all" everything). Default: all.

examples:
  python -m experiments.evaluate runs/paper-ddi/checkpoints/best.pt
  python -m experiments.evaluate runs/paper-ddi/checkpoints/last.pt --n-examples 10000 --device cuda
  python -m experiments.evaluate best.pt --norm l2 --eps 0.5 --attacks pgd-ce,pgd-cw,checks

exit status: 0 done (warnings included), 2 bad command line, unusable checkpoint, missing data or missing
pyautoattack, 130 interrupted (rerun the same command to continue).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", epilog=EPILOG,
                                     description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("checkpoint", metavar="CHECKPOINT", help="best.pt or last.pt written by experiments.train")
    add("--n-examples", type=int, default=1000, metavar="N",
        help="first N examples of the split (0: all; RobustBench uses all 10000 of CIFAR10) (default: 1000)")
    add("--split", choices=("test", "val"), default="test", help="which split of the run (default: test)")
    add("--data-root", help="dataset folder, if not where the run found it")
    add("--batch-size", type=int, default=256, metavar="B", help="evaluation batch size (default: 256)")
    add("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    add("--norm", choices=("linf", "l2"), help="threat model (default: the run's)")
    add("--eps", type=parse_fraction,
        help="radius, e.g. 8/255 (default: the run's for its norm, else 8/255 in linf and 0.5 in l2)")
    add("--steps", type=int, default=50, metavar="K", help="PGD steps K (default: 50)")
    add("--restarts", type=int, default=5, metavar="R",
        help="PGD random restarts R, worst case per example (default: 5)")
    add("--step-size", type=parse_fraction, help="PGD step size (default: eps/4)")
    add("--attacks", default="all", metavar="LIST", help="what to run, see below (default: all)")
    add("--blackbox-queries", type=int, default=1000, metavar="Q",
        help="queries of the black-box check (default: 1000)")
    add("--seed", type=int, default=0, help="seed of every attack's random choices (default: 0)")
    add("--out", metavar="REPORT.json",
        help="report path (default: CHECKPOINT_STEM.robustness-NORM.json beside the checkpoint; the Markdown "
             "goes beside it as .md)")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _parse_attacks(parser, text: str) -> tuple[str, ...]:
    chosen = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        names = ATTACKS if item == "all" else CHECKS if item == "checks" else (item,)
        for name in names:
            if name not in ATTACKS:
                parser.error(f"--attacks: unknown attack {item!r}; expected names from {', '.join(ATTACKS)}, "
                             f"'checks' or 'all'")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        parser.error("--attacks: nothing to run")
    return tuple(a for a in ATTACKS if a in chosen)


def main(argv=None) -> int:
    """Run the command line; return the exit status (see ``--help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    attacks = _parse_attacks(parser, args.attacks)
    for flag, value, low in (("--n-examples", args.n_examples, 0), ("--batch-size", args.batch_size, 1),
                             ("--steps", args.steps, 1), ("--restarts", args.restarts, 1),
                             ("--blackbox-queries", args.blackbox_queries, 1)):
        if value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    for flag, value in (("--eps", args.eps), ("--step-size", args.step_size)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be > 0, got {value}")
    try:
        if "autoattack" in attacks:
            A.load_autoattack()  # before minutes of PGD, not after
        device = torch.device(args.device if args.device != "auto"
                              else "cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
        state = load_checkpoint(args.checkpoint)
        model, config, splits = restore_model(args.checkpoint, device=device, data_root=args.data_root)
    except (CheckpointError, DataError, A.AutoAttackUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.norm is None:
        args.norm = config["threat"]
    if args.eps is None:
        args.eps = config["eps"] if args.norm == config["threat"] else DEFAULT_EPS[args.norm]
    args.step_size = args.step_size or args.eps / 4
    data = splits[args.split]
    n = len(data) if args.n_examples == 0 else min(args.n_examples, len(data))
    if n == 0:
        print(f"error: the {args.split} split of this run is empty", file=sys.stderr)
        return EXIT_USAGE
    chosen = attack_settings(args, attacks, data.input_shape)
    out = args.out or f"{os.path.splitext(args.checkpoint)[0]}.robustness-{args.norm}.json"
    key = {"checkpoint_sha256": R.file_sha256(args.checkpoint), "split": args.split, "n": n,
           "batch_size": args.batch_size, "seed": args.seed, "device": device.type, "settings": chosen}
    partial = R.Partial(out + ".partial", key)
    if partial.resumed:
        print(f"resuming: {len(partial.batches)} batches already done in {partial.path}", file=sys.stderr)
    started = time.perf_counter()
    try:
        results, checks, warnings = run_attacks(model, data, chosen, n=n, batch_size=args.batch_size,
                                                seed=args.seed, partial=partial, progress=args.progress)
    except A.AutoAttackUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"interrupted after {len(partial.batches)} of {-(-n // args.batch_size)} batches; rerun the "
              f"same command to continue ({partial.path})", file=sys.stderr)
        return EXIT_INTERRUPTED

    def acc(name):
        return results[name]["robust_acc"] if name in results else None

    report = {
        "format": R.FORMAT, "dataset": config["dataset"],
        "threat_model": {"linf": "Linf", "l2": "L2"}[args.norm],
        "eps": R.eps_text(args.eps), "architecture": R.architecture(config),
        "clean_acc": R.percent(acc("clean")), "autoattack_acc": R.percent(acc("autoattack")),
        "pgd_acc": R.percent(next((acc(k) for k in ("pgd", "pgd-ce", "pgd-cw") if k in results), None)),
        "robust_acc": R.percent(acc("worst-case")), "additional_data": False, "number_forward_passes": 1,
        "unreliable": bool(warnings), "warnings": warnings, "results": results, "checks": checks,
        "training": R.training_info(state, config, args.checkpoint),
        "evaluation": {"n_examples": n, "split": args.split, "seed": args.seed, "batch_size": args.batch_size,
                       "eps": args.eps, "norm": args.norm, "device": str(device), "attacks": list(attacks),
                       "resumed": partial.resumed, "wall_time_s": time.perf_counter() - started},
        "checkpoint": {"path": args.checkpoint, "sha256": key["checkpoint_sha256"]},
        "versions": R.versions(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = R.write_report(out, report)
    partial.remove()
    print(text, end="")
    print(f"wrote {out} and {os.path.splitext(out)[0]}.md")
    return EXIT_OK
