"""Setting up a training run from its configuration: device, run directory, data, length, training step.

Each function builds one piece of :class:`experiments.train.trainer.Trainer` and raises
:class:`~experiments.train.config.ConfigError` when the configuration cannot work on this machine or data
(the command turns it into exit status 2).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from experiments.common import data as D
from experiments.train.config import ConfigError
from experiments.train.model import load_splits

__all__ = ["AMP", "DebugLoss", "RunLength", "build_descent_step", "build_eval_attack", "load_data",
           "resolve_device", "run_directory", "run_length", "run_record", "start_run"]

#: ``--amp`` -> autocast dtype.
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, info) -> torch.device:
    """``--device``: ``"auto"`` is the device :func:`minmax.torch.distributed.setup` chose for this rank."""
    if name == "auto":
        return info.device
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


def run_directory(config: dict, world: int) -> str:
    """``--resume`` or ``--out``, else ``runs/<dataset>-<variant>-<time>``; the same folder on every rank."""
    run_dir = config["resume"] or config["out"]
    if not run_dir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = os.path.join("runs", f"{config['dataset']}-{config['variant'].replace('/', '')}-{stamp}")
    if world > 1:  # the time stamps of the ranks may differ: rank 0's wins
        import torch.distributed as dist

        holder = [run_dir]
        dist.broadcast_object_list(holder, src=0)
        run_dir = holder[0]
    return run_dir


def start_run(run_dir: str, *, is_main: bool, world: int, write) -> None:
    """Claim ``run_dir`` for a new run: every rank checks that it holds no run, then rank 0 calls ``write()``
    (which writes ``config.json``).

    Under several processes a barrier separates the checks from the write: without it a rank that reaches
    the check after rank 0 has written finds ``config.json`` and refuses the run it belongs to.

    Raises
    ------
    ConfigError
        ``run_dir`` already holds a run (on every rank alike, before any collective).
    """
    if os.path.exists(os.path.join(run_dir, "config.json")):
        raise ConfigError(f"{run_dir!r} already holds a run; continue it with --resume {run_dir} or choose "
                          f"another --out")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if is_main:
        write()


def load_data(config: dict, *, is_main: bool, world: int):
    """The run's ``(train, val, test)``; ``train`` is the ``--train-size`` subset when one is asked for.

    With ``--download`` under several processes, rank 0 downloads while the others wait for the files.
    """
    def load():
        return load_splits(config, download=config["download"] and is_main)

    if world > 1 and config["download"]:
        import torch.distributed as dist

        if is_main:
            splits = load()
        dist.barrier()
        if not is_main:
            splits = load()
    else:
        splits = load()
    train, val, test = splits
    if config["train_size"] > len(train):
        raise ConfigError(f"--train-size {config['train_size']} exceeds the {len(train)} examples of the "
                          f"training split")
    return D.training_subset(train, config["train_size"], seed=config["data_seed"]), val, test


@dataclass(frozen=True)
class RunLength:
    """How long a run is: ``steps_per_epoch``, ``epochs`` and ``total_steps`` (``--max-steps`` may cut it).

    Every step is a full global batch; ``--max-steps`` shorter than ``--epochs`` gives
    ``ceil(max_steps / steps_per_epoch)`` epochs, the last one cut where the steps run out.
    """

    steps_per_epoch: int
    epochs: int
    total_steps: int


def run_length(config: dict, train_examples: int) -> RunLength:
    """The :class:`RunLength` of a configuration on a training split of ``train_examples`` examples."""
    steps_per_epoch = train_examples // config["batch_size"]
    if steps_per_epoch < 1:
        raise ConfigError(f"the training split has {train_examples} examples, fewer than one batch of "
                          f"{config['batch_size']}")
    epochs, total_steps = config["epochs"], config["epochs"] * steps_per_epoch
    if 0 < config["max_steps"] < total_steps:
        epochs, total_steps = math.ceil(config["max_steps"] / steps_per_epoch), config["max_steps"]
    return RunLength(steps_per_epoch, epochs, total_steps)


class DebugLoss:
    """Cross-entropy that turns NaN on request (the ``--debug-nan-at-step`` test hook)."""

    poison = False

    def __call__(self, logits, y):
        loss = F.cross_entropy(logits, y)
        return loss * float("nan") if self.poison else loss


def build_descent_step(model, config: dict, *, scaler, loss, world: int, total_steps: int):
    """The :class:`minmax.torch.descent.DescentStep` of the configuration's variant and training attack.

    Under several processes the attacks' random starts and ddi-comb's bits are the union batch's on every
    rank (the trainer reseeds the generator identically on every rank before each step), so ``world``
    processes take the steps of one process (see :mod:`minmax.torch.distributed`).
    """
    from minmax.torch.descent import DescentStep

    return DescentStep(
        model, config["variant"], eps=config["eps"], step_size=config["step_size"], steps=config["steps"],
        norm=config["threat"], loss=loss, normalize=config["normalize"], strategy=config["strategy"],
        amp_dtype=AMP[config["amp"]], scaler=scaler if scaler.is_enabled() else None, distributed=world > 1,
        total_steps=total_steps)


def build_eval_attack(config: dict):
    """The PGD attack of the evaluations during training (``--eval-steps``, ``--eval-restarts``, ...)."""
    from minmax.torch.attacks import PGD

    return PGD(eps=config["eps"], alpha=config["eval_step_size"], steps=config["eval_steps"],
               norm=config["threat"], restarts=config["eval_restarts"])


def run_record(trainer) -> dict:
    """The content of ``config.json``: the configuration, command, versions and what was derived from them."""
    import nets

    return {
        "config": trainer.config, "command": [sys.executable, *sys.argv], "world_size": trainer.world,
        "device": str(trainer.device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "platform": platform.platform()},
        "derived": {"train_examples": len(trainer.train_set), "val_examples": len(trainer.val_set),
                    "test_examples": len(trainer.test_set), "steps_per_epoch": trainer.steps_per_epoch,
                    "epochs": trainer.epochs, "total_steps": trainer.total_steps,
                    "input_shape": list(trainer.train_set.input_shape), "augment": trainer.augment,
                    "parameters": sum(p.numel() for p in trainer.model.parameters()),
                    "nets_module": nets.__name__}}
