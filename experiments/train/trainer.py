"""One training run of ``python -m experiments.train``: its state, its epoch loop, its checkpoints.

:class:`Trainer` is built from a configuration (:mod:`experiments.train.config`) by the pieces of
:mod:`experiments.train.setup`, then :meth:`Trainer.run` trains epoch by epoch: :meth:`~Trainer.train_epoch`
(the optimizer steps, each on this rank's share of the global batch), :meth:`~Trainer.end_epoch` (the
evaluation, the metrics row, the best and last checkpoints) and, at the end,
:meth:`~Trainer.final_evaluation`.
Every random choice in a step is a function of ``(seed, epoch, step)`` (:mod:`experiments.common.seeds`): the
example order, the augmentation, and the global torch generator, reseeded before each step identically on
every rank. With the state of :meth:`~Trainer.state` checkpointed, a resumed run takes exactly the steps of an
uninterrupted one.
"""

from __future__ import annotations

import copy
import os
import sys
import time

import torch

from experiments.common import seeds
from experiments.common.batches import epoch_permutation, load_shard
from experiments.common.checkpoints import load_checkpoint
from experiments.common.logs import EVALS_JSONL, RunLog
from experiments.train import setup
from experiments.train.config import ConfigError
from experiments.train.evaluation import evaluate
from experiments.train.model import build_model_from_config
from experiments.train.optim import build_optimizer, build_schedule
from experiments.train.state import RunState
from experiments.train.stats import accumulate, epoch_line, epoch_row, hms, new_stats

__all__ = ["StopRequested", "Trainer"]


class StopRequested(Exception):
    """A termination signal arrived; the state at the last finished step has been checkpointed."""


class Trainer(RunState):
    """One run: data, model, optimizer, schedule, scaler, DescentStep, progress and history.

    What is checkpointed, and how a run is saved and resumed, is :class:`~experiments.train.state.RunState`'s.

    Parameters
    ----------
    config : dict
        A configuration of :func:`experiments.train.config.parse_config`; with ``resume`` set, the state
        of the run directory's last checkpoint is loaded.
    info : minmax.torch.distributed.DistributedInfo
        This process's rank, the number of processes and its device.

    Raises
    ------
    ConfigError, DataError, CheckpointError
        A configuration that cannot run here, missing data, or an unusable checkpoint.
    """

    def __init__(self, config: dict, info):
        from minmax.torch import distributed

        self.config, self.rank, self.world = config, info.rank, info.world_size
        self.is_main = self.rank == 0
        self.device = setup.resolve_device(config["device"], info)
        self.run_dir = setup.run_directory(config, self.world)
        self.log = RunLog(self.run_dir, enabled=self.is_main)
        self.ckpt_dir = os.path.join(self.run_dir, "checkpoints")
        self.last_saved = None
        self.stop_requested = False  # set by the SIGTERM handler of experiments.train.command
        self.segment_start, self.elapsed_before = time.perf_counter(), 0.0
        self.cpu_segment_start, self.cpu_before = time.process_time(), 0.0
        self.amp = setup.AMP[config["amp"]]
        if config["batch_size"] % self.world:
            raise ConfigError(f"--batch-size {config['batch_size']} must be divisible by the number of "
                              f"processes ({self.world})")
        self.train_set, self.val_set, self.test_set = setup.load_data(config, is_main=self.is_main,
                                                                      world=self.world)
        length = setup.run_length(config, len(self.train_set))
        self.steps_per_epoch, self.epochs, self.total_steps = (length.steps_per_epoch, length.epochs,
                                                               length.total_steps)
        self.augment = config["augment"] == "crop-flip" or (config["augment"] == "auto"
                                                            and config["dataset"] == "cifar10")
        data = self.train_set
        torch.manual_seed(config["seed"])  # the same initialization on every rank (and broadcast anyway)
        self.model = build_model_from_config(config, data.input_shape, data.num_classes, data.mean,
                                             data.std).to(self.device)
        distributed.broadcast_parameters(self.model)
        self.optimizer = build_optimizer(self.model, config)
        self.schedule = build_schedule(self.optimizer, config, epochs=self.epochs,
                                       total_steps=self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config["amp"] == "fp16")
        self.debug_loss = setup.DebugLoss() if config["debug_nan_at_step"] else None
        self.step = setup.build_descent_step(self.model, config, scaler=self.scaler, loss=self.debug_loss,
                                             world=self.world, total_steps=self.total_steps)
        self.eval_attack = setup.build_eval_attack(config)
        self.epoch = self.step_in_epoch = self.global_step = 0
        # seconds (wall-clock, CPU) spent evaluating, excluded from the training times of evals.jsonl
        self.eval_time = self.eval_cpu_time = 0.0
        self.history, self.best, self.stats = [], {"val_robust_acc": -1.0, "epoch": None}, new_stats()
        if config["resume"]:
            self.resume()
        else:
            self._start()

    # -- start and resume --------------------------------------------------------------------------------
    def _start(self) -> None:
        setup.start_run(self.run_dir, is_main=self.is_main, world=self.world,
                        write=lambda: self.log.write_json("config.json", setup.run_record(self)))
        cfg = self.config
        self.log.info(f"run {self.run_dir}: {cfg['variant']} on {cfg['dataset']} ({len(self.train_set)} "
                      f"train / {len(self.val_set)} val / {len(self.test_set)} test), {cfg['net']} "
                      f"{cfg['activation']} {cfg['norm']}, {self.epochs} epochs x {self.steps_per_epoch} "
                      f"steps ({self.total_steps} in all), device {self.device}, {self.world} process(es)")

    # -- training ----------------------------------------------------------------------------------------
    def run(self) -> None:
        """Train the remaining epochs, then evaluate the last and best models (nothing if complete)."""
        if self.epoch >= self.epochs and os.path.exists(os.path.join(self.run_dir, "summary.json")):
            self.log.info(f"{self.run_dir} is already complete ({self.epoch} epochs); nothing to do")
            return
        if self.config["eval_every"] and self.global_step == 0:
            self.log.truncate_steps(-1, EVALS_JSONL)  # a start killed during its first evaluation
            self.progress_evaluation()
        while self.epoch < self.epochs:
            self.train_epoch()
            self.end_epoch()
        self.final_evaluation()

    def train_epoch(self) -> None:
        """Run the remaining steps of the current epoch (from ``step_in_epoch``)."""
        from tqdm.auto import tqdm

        cfg, stats = self.config, self.stats
        batch, seed = cfg["batch_size"], cfg["seed"]
        order = epoch_permutation(len(self.train_set), seed, self.epoch)
        segment_steps, segment_start = 0, time.perf_counter()
        self.model.train()
        with tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, unit="step", dynamic_ncols=True,
                  leave=False, desc=f"epoch {self.epoch + 1}/{self.epochs}", file=sys.stderr,
                  disable=not (cfg["progress"] and self.is_main)) as bar:
            for s in range(self.step_in_epoch, self.steps_per_epoch):
                if self.global_step >= self.total_steps:  # --max-steps ends the run inside this epoch
                    break
                t0 = time.perf_counter()
                augment_seed = seeds.derive_seed(seed, seeds.AUGMENT, self.epoch, s) if self.augment else None
                x, y = load_shard(self.train_set, order, s, batch, rank=self.rank, world_size=self.world,
                                  augment_seed=augment_seed, device=self.device)
                torch.manual_seed(seeds.derive_seed(seed, seeds.STEP, self.global_step))
                if self.debug_loss is not None:
                    self.debug_loss.poison = self.global_step + 1 == cfg["debug_nan_at_step"]
                t1 = time.perf_counter()
                record = self.step(x, y)
                t2 = time.perf_counter()
                if self.scaler.is_enabled():
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.schedule.after_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                t3 = time.perf_counter()
                self.global_step += 1
                self.step_in_epoch = s + 1
                accumulate(stats, record, t1 - t0, t3 - t2)
                if cfg["log_steps"]:
                    self.log.append_step({
                        "step": self.global_step, "epoch": self.epoch + 1, "loss": record.loss,
                        "losses": list(record.losses), "weights": [float(w) for w in record.weights],
                        "gap": record.gap, "slope": record.slope, "m": record.m,
                        "negative_inner_products": record.negative_inner_products, "skipped": record.skipped,
                        "time": t3 - t0})
                segment_steps += 1
                rate = segment_steps / max(time.perf_counter() - segment_start, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{record.loss:.3f}", img_s=f"{rate * batch:.0f}",
                                run_eta=hms((self.total_steps - self.global_step) / rate), refresh=False)
                self._after_step()

    def _after_step(self) -> None:
        """The progress evaluation, the periodic checkpoint and the stop request, after every step."""
        cfg = self.config
        if cfg["eval_every"] and (self.global_step % cfg["eval_every"] == 0
                                  or self.global_step == self.total_steps):
            self.progress_evaluation()  # before any checkpoint of this step: a resume never skips it
            self.model.train()
        saved = False
        if cfg["checkpoint_every"] and self.global_step % cfg["checkpoint_every"] == 0 \
                and self.step_in_epoch < self.steps_per_epoch:
            self.stats["time"]["checkpoint"] += self.save("last")
            saved = True
        if self.stop_now():
            # a state between two steps is complete (even after the epoch's last step: the resume then
            # starts with the end-of-epoch evaluation), so save it and leave
            if not saved:
                self.save("last")
            raise StopRequested(f"stopped by a termination signal after step {self.global_step}")
        if cfg["debug_step_delay"]:
            time.sleep(cfg["debug_step_delay"])

    def evaluate(self, model, split, seed: int, limit: int) -> dict:
        """:func:`experiments.train.evaluation.evaluate` with this run's attack, batch size, device, ranks."""
        return evaluate(model, split, self.eval_attack, seed=seed, batch_size=self.config["eval_batch_size"],
                        limit=limit, device=self.device, amp_dtype=self.amp, rank=self.rank,
                        world_size=self.world)

    def progress_evaluation(self) -> None:
        """``--eval-every``: evaluate the test split now and append a row to evals.jsonl.

        Every row uses the same examples (the first ``--eval-examples``) and the same random starts, so the
        curve against steps moves only with the model. ``train_time`` is the run's wall-clock time without
        any evaluation (these and the per-epoch ones), the time axis of the paper's Figures 5 and 8;
        ``train_cpu_time`` the same in CPU seconds of this process, which a shared machine does not inflate.
        """
        cfg = self.config
        t0, c0 = time.perf_counter(), time.process_time()
        seed = seeds.derive_seed(cfg["seed"], seeds.PROGRESS_EVAL)
        metrics = self.evaluate(self.model, self.test_set, seed, cfg["eval_examples"])
        self.eval_time += time.perf_counter() - t0
        self.eval_cpu_time += time.process_time() - c0
        self.log.append_step({
            "step": self.global_step, "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
            "train_time": self.elapsed() - self.eval_time,
            "train_cpu_time": self.cpu_elapsed() - self.eval_cpu_time,
            "lr": self.optimizer.param_groups[0]["lr"], **metrics}, EVALS_JSONL)

    def end_epoch(self) -> None:
        """Evaluate, append the epoch's metrics row, save the best and last checkpoints, write the logs."""
        cfg = self.config
        lr = self.optimizer.param_groups[0]["lr"]
        self.schedule.after_epoch()
        t0, c0 = time.perf_counter(), time.process_time()
        results = {}
        for k, (name, split) in enumerate((("train", self.train_set), ("val", self.val_set),
                                           ("test", self.test_set))):
            if len(split):
                eval_seed = seeds.derive_seed(cfg["seed"], seeds.EPOCH_EVAL, self.epoch, k)
                results[name] = self.evaluate(self.model, split, eval_seed, cfg["eval_examples"])
        eval_time = time.perf_counter() - t0
        self.eval_time += eval_time
        self.eval_cpu_time += time.process_time() - c0
        row = epoch_row(self.stats, results, epoch=self.epoch + 1, global_step=self.global_step, lr=lr,
                        eval_time=eval_time)
        if self.device.type == "cuda":
            row["gpu_max_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        # selection by validation robust accuracy (training-subset robust accuracy when --val-size is 0)
        score = row.get("val_robust_acc", row.get("train_robust_acc"))
        improved = score > self.best["val_robust_acc"]
        if improved:
            self.best = {"val_robust_acc": score, "epoch": self.epoch + 1}
        row["best_val_robust_acc"], row["best_epoch"] = self.best["val_robust_acc"], self.best["epoch"]
        self.history.append(row)
        self.epoch += 1
        self.step_in_epoch = 0
        self.stats = new_stats()
        row["wall_time"] = self.elapsed()
        state = self.state()
        if improved:
            self.save("best", state)
        self.save("last", state)
        self.log.write_metrics(self.history)
        self.log.info(epoch_line(row, self.epochs))

    def final_evaluation(self) -> None:
        """Evaluate the last and best models on the test set (``--final-eval-examples``) into summary.json."""
        cfg = self.config
        limit = cfg["final_eval_examples"]
        # one seed for both models: the same weights give the same numbers
        seed = seeds.derive_seed(cfg["seed"], seeds.FINAL_EVAL)
        summary = {"status": "complete", "epochs": self.epoch, "global_step": self.global_step,
                   "best_epoch": self.best["epoch"], "best_val_robust_acc": self.best["val_robust_acc"]}
        summary["test_last"] = self.evaluate(self.model, self.test_set, seed, limit)
        best_path = os.path.join(self.ckpt_dir, "best.pt")
        if self.best["epoch"] is not None and os.path.exists(best_path):
            best_model = copy.deepcopy(self.model)
            best_model.load_state_dict(load_checkpoint(best_path, map_location=self.device)["model"])
            summary["test_best"] = self.evaluate(best_model, self.test_set, seed, limit)
        summary["wall_time"] = self.elapsed()
        summary["eval"] = {"attack": f"PGD-{cfg['eval_steps']}", "restarts": cfg["eval_restarts"],
                           "eps": cfg["eps"], "step_size": cfg["eval_step_size"], "norm": cfg["threat"]}
        self.log.write_json("summary.json", summary)
        last, best = summary["test_last"], summary.get("test_best", summary["test_last"])
        self.log.info(f"done: test robust acc {last['robust_acc']:.4f} (last), {best['robust_acc']:.4f} "
                      f"(best, epoch {self.best['epoch']}), clean {last['clean_acc']:.4f} / "
                      f"{best['clean_acc']:.4f}, on {last['n']} test examples; {self.run_dir}")
