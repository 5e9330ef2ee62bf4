"""The command line ``python -m experiments.directions CHECKPOINT`` (see :mod:`experiments.directions`)."""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from fractions import Fraction

import torch

from experiments.common.checkpoints import CheckpointError
from experiments.common.data import DataError

__all__ = ["GRID_FACTORS", "build_parser", "main", "parse_grid"]

#: The default grid, in units of the run's learning rate (an SGD step moves θ by lr·γ along a unit γ).
GRID_FACTORS = (0.1, 0.5, 2.0)

DESCRIPTION = """\
Do the update directions of adversarial training descend the robust loss? For N random batches of a
checkpoint's data, build DDi-m's direction and those of pgd, pgd-max-m, pgd-min-m and the mean of the m
gradients (each a unit vector), then measure the robust batch loss along each with an independent PGD
attack (its own seed, more steps, several restarts) on a grid of steps t.

  python -m experiments.directions runs/ddi10/checkpoints/best.pt --threads 1
  python -m experiments.directions runs/r18/checkpoints/best.pt --device cuda --batches 32 --batch-size 128
"""

EPILOG = """\
writes PREFIX.json, PREFIX.md and PREFIX.png, with PREFIX = CHECKPOINT_DIR/<name>.directions (best.pt ->
best.directions.*) or --out DIR/directions. Exit status: 0 done, 2 bad command line, unusable checkpoint or
missing data.
"""


def _fraction(text: str) -> float:
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        message = f"expected a number or a fraction like 8/255, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return value


def parse_grid(text: str) -> tuple[float, ...]:
    """``"0.01,0.05,0.2"`` → the sorted steps; each must be a distinct positive finite number.

    Raises
    ------
    argparse.ArgumentTypeError
        Naming the offending entry.

    Examples
    --------
    >>> parse_grid("0.2, 1/100,0.05")
    (0.01, 0.05, 0.2)
    """
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated steps t > 0 like 0.01,0.05,0.2, got "
                                         f"{text!r}")
    values = []
    for part in parts:
        value = _fraction(part)
        if not (math.isfinite(value) and value > 0):
            message = f"every step t must be a finite number > 0, got {part.strip()!r}"
            raise argparse.ArgumentTypeError(message)
        values.append(value)
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"the steps t must be distinct, got {text!r}")
    return tuple(sorted(values))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _fraction(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.directions", description=DESCRIPTION,
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a checkpoints/{best,last}.pt of experiments.train")
    p.add_argument("--out", metavar="DIR", help="output folder (default: beside the checkpoint)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu, cuda, cuda:1, ... (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches and of both attacks (default: 0)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train",
                   help="where the batches come from (default: train, the split training descends)")
    p.add_argument("--batches", type=_positive_int, default=8, help="number N of batches (default: 8)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="examples per batch (default: 32)")
    p.add_argument("--m", type=_positive_int, default=10,
                   help="restarts of the direction attack, the m of DDi-m, pgd-max-m, pgd-min-m "
                        "(default: 10)")
    p.add_argument("--grid", type=parse_grid,
                   help="steps t > 0 along each unit direction, e.g. 0.01,0.05,0.2; the smallest gives the "
                        "slope (default: 0.1,0.5,2 times the run's learning rate)")
    p.add_argument("--attack-steps", type=_positive_int,
                   help="PGD steps of the probe attack (default: twice the run's training steps K)")
    p.add_argument("--attack-restarts", type=_positive_int, default=2,
                   help="restarts of the probe attack (default: 2)")
    p.add_argument("--attack-step-size", type=_positive_float,
                   help="step of the probe attack (default: the run's PGD step size)")
    p.add_argument("--strategy", choices=("auto", "loop", "func"), default="auto",
                   help="how the m + 1 parameter gradients are taken (default: auto)")
    p.add_argument("--data-root", help="dataset folder, if not where the run found it")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _settings(args, config: dict, grid, steps: int, step_size: float) -> dict:
    run_keys = ("variant", "dataset", "net", "activation", "norm", "eps", "step_size", "steps", "lr", "seed",
                "batch_size")
    return {
        "checkpoint": os.path.abspath(args.checkpoint), "run": {k: config.get(k) for k in run_keys},
        "split": args.split, "batches": args.batches, "batch_size": args.batch_size, "seed": args.seed,
        "m": args.m, "threat": config["threat"], "grid": list(grid),
        "grid_from_lr": args.grid is None,
        "direction_attack": {"restarts": args.m, "steps": config["steps"], "step_size": config["step_size"],
                             "eps": config["eps"]},
        "probe_attack": {"restarts": args.attack_restarts, "steps": steps, "step_size": step_size,
                         "eps": config["eps"]},
        "device": str(args.device), "threads": torch.get_num_threads(), "strategy": args.strategy,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }


def main(argv=None) -> int:
    """Run the probe; return the exit status (argparse exits with 2 on a bad command line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.m < 2:
        parser.error(f"--m must be >= 2 (DDi and pgd-max/min combine several restarts), got {args.m}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:1, ...)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")
    if args.threads:
        torch.set_num_threads(args.threads)

    from experiments.directions.candidates import ProbeError
    from experiments.directions.probe import run_probe
    from experiments.directions.report import summarize, write_outputs
    from experiments.train.model import restore_model
    from minmax.torch.attacks import PGD

    try:
        model, config, splits = restore_model(args.checkpoint, device=device, data_root=args.data_root)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    grid = args.grid if args.grid is not None else tuple(f * config["lr"] for f in GRID_FACTORS)
    steps = args.attack_steps or 2 * config["steps"]
    step_size = args.attack_step_size or config["step_size"]
    data = splits[args.split]
    if args.batches * args.batch_size > len(data):
        print(f"error: {args.batches} batches of {args.batch_size} need {args.batches * args.batch_size} "
              f"examples; the {args.split} split of {args.checkpoint!r} has {len(data)}", file=sys.stderr)
        return 2
    direction_attack = PGD(eps=config["eps"], alpha=config["step_size"], steps=config["steps"],
                           norm=config["threat"], restarts=args.m)
    probe_attack = PGD(eps=config["eps"], alpha=step_size, steps=steps, norm=config["threat"],
                       restarts=args.attack_restarts)
    settings = _settings(args, config, grid, steps, step_size)
    start = time.perf_counter()
    try:
        records = run_probe(model, data, direction_attack=direction_attack, probe_attack=probe_attack,
                            grid=grid, batches=args.batches, batch_size=args.batch_size, seed=args.seed,
                            device=device, strategy=args.strategy, progress=args.progress)
    except ProbeError as exc:  # a non-finite loss: an unusable checkpoint or a grid that reaches too far
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(records, grid=grid, settings=settings)
    summary["seconds"]["total"] = time.perf_counter() - start
    if args.out:
        prefix = os.path.join(args.out, "directions")
    else:
        stem = os.path.splitext(os.path.basename(args.checkpoint))[0]
        prefix = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), f"{stem}.directions")
    from experiments.directions.report import markdown

    print(markdown(summary), end="")
    paths = write_outputs(summary, prefix)
    print("wrote " + ", ".join(paths))
    return 0
