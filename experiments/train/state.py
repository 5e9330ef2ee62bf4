"""The checkpointed state of a training run: what a checkpoint holds, how it is written and read back.

A checkpoint of ``experiments.train`` (``checkpoints/last.pt`` every ``--checkpoint-every`` steps and at
every epoch end, ``checkpoints/best.pt`` at the best validation epoch) holds the model, optimizer, schedule,
scaler and ``DescentStep`` states, every rank's RNG states, the position (epoch, step in the epoch, global
step), the metrics history, the epoch's running sums and the elapsed time, under the part of the
configuration that determines the numbers (:func:`experiments.train.config.run_config`). A resume refuses
a checkpoint of another configuration. Files are written atomically by
:mod:`experiments.common.checkpoints`.
"""

from __future__ import annotations

import os
import time

import torch

from experiments.common.checkpoints import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from experiments.common.logs import EVALS_JSONL
from experiments.train.config import ADDED_OPTIONS, run_config
from experiments.train.model import CHECKPOINT_KIND

__all__ = ["RunState"]


class RunState:
    """Saving, restoring and resuming a run's state: the base of :class:`experiments.train.trainer.Trainer`.

    The trainer sets what these methods read and write: ``config``, ``rank``, ``world``, ``is_main``,
    ``device``, ``run_dir``, ``ckpt_dir``, ``log``; ``model``, ``optimizer``, ``schedule``, ``scaler``,
    ``step``; and the progress ``epoch``, ``step_in_epoch``, ``global_step``, ``steps_per_epoch``,
    ``history``, ``best``, ``stats``, ``segment_start``, ``elapsed_before``, ``eval_time``, the CPU-time
    counterparts ``cpu_segment_start``, ``cpu_before``, ``eval_cpu_time``, ``last_saved``,
    ``stop_requested``.
    """

    def resume(self) -> None:
        """Load ``checkpoints/last.pt`` of the run directory and cut the logs back to its step."""
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
        if state.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path!r} is not a training checkpoint of experiments.train")
        mine, theirs = run_config(self.config), {**ADDED_OPTIONS, **state.get("config", {})}
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            shown = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs run {mine.get(k)!r}" for k in diff[:5])
            raise CheckpointError(f"{path!r} was written by a different configuration ({shown})")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["scheduler"])
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
        self.cpu_before, self.eval_cpu_time = state.get("cpu_elapsed", 0.0), state.get("eval_cpu_time", 0.0)
        rng = state["rng"]
        restore_rng(rng[self.rank] if len(rng) == self.world else rng[0], self.device)
        self.last_saved = (path, self.epoch, self.step_in_epoch, self.global_step)

    # -- checkpoints -------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Wall-clock seconds of the run so far, over all its resumed segments."""
        return self.elapsed_before + time.perf_counter() - self.segment_start

    def cpu_elapsed(self) -> float:
        """CPU seconds of this process over the run (all segments): what other jobs on the machine do not
        inflate, unlike :meth:`elapsed`."""
        return self.cpu_before + time.process_time() - self.cpu_segment_start

    def state(self) -> dict:
        """Everything an exact resume needs (every rank must call: the RNG states are gathered)."""
        rng = capture_rng(self.device)
        if self.world > 1:
            import torch.distributed as dist

            gathered = [None] * self.world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        return {"kind": CHECKPOINT_KIND, "config": run_config(self.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "descent": self.step.state_dict(), "rng": rng,
                "progress": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                             "global_step": self.global_step},
                "history": self.history, "best": self.best, "stats": self.stats, "elapsed": self.elapsed(),
                "eval_time": self.eval_time, "cpu_elapsed": self.cpu_elapsed(),
                "eval_cpu_time": self.eval_cpu_time, "world_size": self.world}

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

