"""The training loop behind ``python -m experiments.train``: set-up, epochs, evaluation, checkpoints, resume.

See :mod:`experiments.train` for the run-directory layout and the exact-resume argument.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from experiments.cli import ADDED_OPTIONS, RESUME_OVERRIDABLE, ConfigError
from experiments.common import data as D
from experiments.common.checkpoints import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from experiments.common.logs import EVALS_JSONL, RunLog
from experiments.evaluate import evaluate
from minmax.torch.descent import DescentStep

__all__ = ["StopRequested", "Trainer", "build_model_from_config", "new_stats", "restore_model", "run_config"]

AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_TIME_KEYS = ("data", "attack", "gradients", "gram", "qp", "combine", "optimizer", "checkpoint")


def run_config(config: dict) -> dict:
    """The part of a configuration that determines the numbers (what a resume may not change), JSON-normal."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in RESUME_OVERRIDABLE | {"out"}}))


def build_model_from_config(config: dict, input_shape, num_classes: int, mean=None, std=None):
    """``nets.build_model`` with the configuration's net, activation, norm (and hidden widths for mlp)."""
    import nets

    kwargs = {"hidden": tuple(config["hidden"])} if config["net"] == "mlp" else {}
    return nets.build_model(config["net"], num_classes=num_classes, input_shape=tuple(input_shape),
                            activation=config["activation"], norm=config["norm"], mean=mean, std=std,
                            **kwargs)


class StopRequested(Exception):
    """A termination signal arrived; the state at the last finished step has been checkpointed."""


class _DebugLoss:
    """Cross-entropy that turns NaN on request (the ``--debug-nan-at-step`` test hook)."""

    poison = False

    def __call__(self, logits, y):
        loss = F.cross_entropy(logits, y)
        return loss * float("nan") if self.poison else loss


def new_stats() -> dict:
    return {"steps": 0, "loss": 0.0, "gap": 0.0, "gap_max": 0.0, "slope": 0.0, "neg": 0, "neg_steps": 0,
            "m": 0, "skipped": 0, "time": dict.fromkeys(_TIME_KEYS, 0.0)}


class Trainer:
    """Holds one run: data, model, optimizer, scheduler, scaler, DescentStep, progress and history."""

    def __init__(self, config: dict, info):
        from minmax.torch import distributed

        self.config, self.rank, self.world = config, info.rank, info.world_size
        self.is_main = self.rank == 0
        self.device = self._device(config["device"], info)
        self.run_dir = self._run_dir(config)
        self.log = RunLog(self.run_dir, enabled=self.is_main)
        self.ckpt_dir = os.path.join(self.run_dir, "checkpoints")
        self.last_saved = None
        self.stop_requested = False  # set by the SIGTERM handler of experiments.train
        self.segment_start, self.elapsed_before = time.perf_counter(), 0.0
        self.amp = AMP[config["amp"]]
        if config["batch_size"] % self.world:
            raise ConfigError(f"--batch-size {config['batch_size']} must be divisible by the number of "
                              f"processes ({self.world})")

        def load():
            return D.load_dataset(
                config["dataset"], root=config["data_root"], download=config["download"] and self.is_main,
                generated_size=config["generated_size"], generated_shape=config["generated_shape"],
                data_seed=config["data_seed"])

        if self.world > 1 and config["download"]:  # rank 0 downloads while the others wait for the files
            import torch.distributed as dist

            if self.is_main:
                train, self.test_set = load()
            dist.barrier()
            if not self.is_main:
                train, self.test_set = load()
        else:
            train, self.test_set = load()
        val_size = min(config["val_size"], len(train) // 10)
        self.train_set, self.val_set = D.split_validation(train, val_size, seed=config["data_seed"])
        if config["train_size"] > len(self.train_set):
            raise ConfigError(f"--train-size {config['train_size']} exceeds the {len(self.train_set)} "
                              f"examples of the training split")
        self.train_set = D.training_subset(self.train_set, config["train_size"], seed=config["data_seed"])
        self.steps_per_epoch = len(self.train_set) // config["batch_size"]
        if self.steps_per_epoch < 1:
            raise ConfigError(f"the training split has {len(self.train_set)} examples, fewer than one batch "
                              f"of {config['batch_size']}")
        # the run's length: --epochs, or the epochs that --max-steps reaches into when it is shorter
        self.epochs, self.total_steps = config["epochs"], config["epochs"] * self.steps_per_epoch
        if 0 < config["max_steps"] < self.total_steps:
            self.epochs = math.ceil(config["max_steps"] / self.steps_per_epoch)
            self.total_steps = config["max_steps"]
        self.augment = config["augment"] == "crop-flip" or (config["augment"] == "auto"
                                                            and config["dataset"] == "cifar10")

        torch.manual_seed(config["seed"])  # the same initialization on every rank (and broadcast anyway)
        self.model = build_model_from_config(config, train.input_shape, train.num_classes, train.mean,
                                             train.std).to(self.device)
        distributed.broadcast_parameters(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config["lr"],
                                         momentum=config["momentum"], weight_decay=config["weight_decay"])
        milestones = sorted({max(1, round(f * self.epochs)) for f in config["lr_milestones"]})
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, config["lr_gamma"])
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config["amp"] == "fp16")
        self.debug_loss = _DebugLoss() if config["debug_nan_at_step"] else None
        # distributed: the attacks' random starts and comb's bits are the union batch's on every rank (the
        # generator is reseeded identically on every rank before each step), so w processes take the steps
        # of one process (see minmax.torch.distributed)
        self.step = DescentStep(
            self.model, config["variant"], eps=config["eps"], step_size=config["step_size"],
            steps=config["steps"], norm=config["threat"], loss=self.debug_loss, normalize=config["normalize"],
            strategy=config["strategy"], amp_dtype=self.amp, scaler=self.scaler if self.scaler.is_enabled()
            else None, distributed=self.world > 1, total_steps=self.total_steps)
        from minmax.torch.attacks import PGD

        self.eval_attack = PGD(eps=config["eps"], alpha=config["eval_step_size"], steps=config["eval_steps"],
                               norm=config["threat"], restarts=config["eval_restarts"])
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.eval_time = 0.0  # seconds spent evaluating, excluded from the training time of evals.jsonl
        self.history, self.best, self.stats = [], {"val_robust_acc": -1.0, "epoch": None}, new_stats()
        if config["resume"]:
            self._resume()
        else:
            self._start()

    # -- set-up ------------------------------------------------------------------------------------------
    @staticmethod
    def _device(name: str, info) -> torch.device:
        if name == "auto":
            return info.device
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        return device

    def _run_dir(self, config: dict) -> str:
        run_dir = config["resume"] or config["out"]
        if not run_dir:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            variant = config["variant"].replace("/", "")
            run_dir = os.path.join("runs", f"{config['dataset']}-{variant}-{stamp}")
        if self.world > 1:  # every rank must agree on the folder (the time stamp may differ)
            import torch.distributed as dist

            holder = [run_dir]
            dist.broadcast_object_list(holder, src=0)
            run_dir = holder[0]
        return run_dir

    def _start(self) -> None:
        if os.path.exists(os.path.join(self.run_dir, "config.json")):
            raise ConfigError(f"{self.run_dir!r} already holds a run; continue it with --resume "
                              f"{self.run_dir} or choose another --out")
        import nets

        self.log.write_json("config.json", {
            "config": self.config, "command": [sys.executable, *sys.argv], "world_size": self.world,
            "device": str(self.device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": np.__version__, "platform": platform.platform()},
            "derived": {"train_examples": len(self.train_set), "val_examples": len(self.val_set),
                        "test_examples": len(self.test_set), "steps_per_epoch": self.steps_per_epoch,
                        "epochs": self.epochs, "total_steps": self.total_steps,
                        "input_shape": list(self.train_set.input_shape), "augment": self.augment,
                        "parameters": sum(p.numel() for p in self.model.parameters()),
                        "nets_module": nets.__name__}})
        self.log.info(f"run {self.run_dir}: {self.config['variant']} on {self.config['dataset']} "
                      f"({len(self.train_set)} train / {len(self.val_set)} val / {len(self.test_set)} test), "
                      f"{self.config['net']} {self.config['activation']} {self.config['norm']}, "
                      f"{self.epochs} epochs x {self.steps_per_epoch} steps ({self.total_steps} in all), "
                      f"device {self.device}, "
                      f"{self.world} process(es)")

    def _resume(self) -> None:
        path = os.path.join(self.ckpt_dir, "last.pt")
        for folder in (self.run_dir, self.ckpt_dir):
            for name in os.listdir(folder) if os.path.isdir(folder) and self.is_main else ():
                if name.endswith(".tmp"):  # a write cut by the kill; the real file is intact
                    os.unlink(os.path.join(folder, name))
        state = load_checkpoint(path, map_location=self.device)
        self.load_state(state, path)
        self.log.truncate_steps(self.global_step)
        self.log.truncate_steps(self.global_step, EVALS_JSONL)
        self.log.write_metrics(self.history)
        self.log.info(f"resumed {self.run_dir} at epoch {self.epoch + 1}, step {self.step_in_epoch} of "
                      f"{self.steps_per_epoch} (global step {self.global_step})")

    def load_state(self, state: dict, path: str) -> None:
        """Restore everything from a checkpoint dict, checking that it belongs to this configuration."""
        if state.get("kind") != "minmax-train":
            raise CheckpointError(f"{path!r} is not a training checkpoint of experiments.train")
        mine, theirs = run_config(self.config), {**ADDED_OPTIONS, **state.get("config", {})}
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            shown = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs run {mine.get(k)!r}" for k in diff[:5])
            raise CheckpointError(f"{path!r} was written by a different configuration ({shown})")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.step.load_state_dict(state["descent"])
        except (RuntimeError, ValueError, KeyError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            detail = " ".join(lines[:3]) if lines else type(exc).__name__  # the first mismatches, no dump
            message = f"{path!r} does not fit the model/optimizer of this run: {detail}"
            raise CheckpointError(message) from None
        progress = state["progress"]
        self.epoch, self.step_in_epoch = progress["epoch"], progress["step_in_epoch"]
        self.global_step = progress["global_step"]
        self.history, self.best, self.stats = state["history"], state["best"], state["stats"]
        self.elapsed_before, self.eval_time = state["elapsed"], state.get("eval_time", 0.0)
        rng = state["rng"]
        restore_rng(rng[self.rank] if len(rng) == self.world else rng[0], self.device)
        self.last_saved = (path, self.epoch, self.step_in_epoch, self.global_step)

    # -- checkpoints -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.segment_start

    def state(self) -> dict:
        rng = capture_rng(self.device)
        if self.world > 1:
            import torch.distributed as dist

            gathered = [None] * self.world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        return {"kind": "minmax-train", "config": run_config(self.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "descent": self.step.state_dict(), "rng": rng,
                "progress": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                             "global_step": self.global_step},
                "history": self.history, "best": self.best, "stats": self.stats, "elapsed": self.elapsed(),
                "eval_time": self.eval_time,
                "world_size": self.world}

    def save(self, name: str, state: dict | None = None) -> float:
        """Write checkpoints/<name>.pt (rank 0; every rank must call, for the RNG gather); return seconds."""
        start = time.perf_counter()
        state = state if state is not None else self.state()
        if self.is_main:
            for p in self.model.parameters():  # never overwrite a good checkpoint with a broken model
                if not bool(torch.isfinite(p).all()):
                    from minmax.torch.descent import NonFiniteLossError

                    raise NonFiniteLossError("the parameters are non-finite; not overwriting the checkpoint")
            path = os.path.join(self.ckpt_dir, f"{name}.pt")
            save_checkpoint(path, state)
            if name == "last":
                self.last_saved = (path, self.epoch, self.step_in_epoch, self.global_step)
        return time.perf_counter() - start

    def stop_now(self) -> bool:
        """Whether any rank was asked to stop (every rank calls this after every step, so they agree)."""
        if self.world == 1:
            return self.stop_requested
        import torch.distributed as dist

        device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([float(self.stop_requested)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def describe_last_checkpoint(self) -> str:
        if self.last_saved is None:
            return "No checkpoint had been written yet."
        path, epoch, step, global_step = self.last_saved
        return (f"The last good checkpoint {path} (epoch {epoch + 1}, step {step}, global step "
                f"{global_step}) is intact; resume with --resume {self.run_dir}.")

    # -- training ----------------------------------------------------------------------------------------
    def run(self) -> None:
        from experiments.epochs import end_epoch, final_evaluation, progress_evaluation, train_epoch

        if self.epoch >= self.epochs and os.path.exists(os.path.join(self.run_dir, "summary.json")):
            self.log.info(f"{self.run_dir} is already complete ({self.epoch} epochs); nothing to do")
            return
        if self.config["eval_every"] and self.global_step == 0:
            self.log.truncate_steps(-1, EVALS_JSONL)  # a start killed during its first evaluation
            progress_evaluation(self)
        while self.epoch < self.epochs:
            train_epoch(self)
            end_epoch(self)
        final_evaluation(self)

    def evaluate(self, model, split: D.ImageSet, seed: int, limit: int) -> dict:
        return evaluate(model, split, self.eval_attack, seed=seed, batch_size=self.config["eval_batch_size"],
                        limit=limit, device=self.device, amp_dtype=self.amp, rank=self.rank,
                        world_size=self.world)


def restore_model(path: str, *, device="cpu", data_root: str | None = None):
    """Rebuild a trained model and its data splits from a checkpoint of ``experiments.train``.

    Returns ``(model, config, splits)`` with ``model`` in eval mode on ``device`` and ``splits`` a dict of
    :class:`experiments.common.data.ImageSet` with keys ``train``, ``val``, ``test`` (the run's own split).
    ``data_root`` overrides the dataset folder saved in the configuration (e.g. on another machine).

    Raises
    ------
    CheckpointError
        If the file is not a readable training checkpoint or does not fit the model its configuration names.
    DataError
        If the run's dataset cannot be found.
    """
    state = load_checkpoint(path, map_location=device)
    config = state.get("config")
    if state.get("kind") != "minmax-train" or not isinstance(config, dict):
        raise CheckpointError(f"{path!r} is not a training checkpoint of experiments.train")
    train, test = D.load_dataset(config["dataset"], root=data_root or config["data_root"],
                                 generated_size=config["generated_size"],
                                 generated_shape=config["generated_shape"], data_seed=config["data_seed"])
    val_size = min(config["val_size"], len(train) // 10)
    train, val = D.split_validation(train, val_size, seed=config["data_seed"])
    train = D.training_subset(train, config.get("train_size", 0), seed=config["data_seed"])
    model = build_model_from_config(config, train.input_shape, train.num_classes, train.mean, train.std)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"{path!r}: the weights do not fit the model of its configuration: "
                              f"{' '.join(lines[:3])}") from None
    return model.to(device).eval(), config, {"train": train, "val": val, "test": test}
