"""One training epoch, the end-of-epoch evaluation and bookkeeping, and the final evaluation of a run.

These functions act on a :class:`experiments.runner.Trainer`; they are separate so that the loop reads
top to bottom. Every random choice in a step is a function of ``(seed, epoch, step)``: the example order,
the augmentation, and the global torch generator (reseeded before each step, identically on every rank).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time

import torch

from experiments.common import batches as B
from experiments.common.checkpoints import load_checkpoint
from experiments.common.logs import EVALS_JSONL
from experiments.common.seeds import derive_seed
from experiments.runner import StopRequested, new_stats

__all__ = ["end_epoch", "final_evaluation", "progress_evaluation", "train_epoch"]

# purposes mixed into derive_seed, so that no two streams share a seed
_AUGMENT, _STEP, _EVAL, _FINAL, _PROGRESS = 5, 6, 7, 8, 9


def _progress(trainer, initial: int):
    from tqdm.auto import tqdm

    cfg = trainer.config
    return tqdm(total=trainer.steps_per_epoch, initial=initial, unit="step", dynamic_ncols=True, leave=False,
                desc=f"epoch {trainer.epoch + 1}/{trainer.epochs}", file=sys.stderr,
                disable=not (cfg["progress"] and trainer.is_main))


def train_epoch(trainer) -> None:
    """Run the remaining steps of the current epoch (from ``trainer.step_in_epoch``)."""
    cfg, stats = trainer.config, trainer.stats
    batch, chunk = cfg["batch_size"], cfg["batch_size"] // trainer.world
    rows = slice(trainer.rank * chunk, (trainer.rank + 1) * chunk)
    order = B.epoch_permutation(len(trainer.train_set), cfg["seed"], trainer.epoch)
    total_steps = trainer.total_steps
    segment_steps, segment_start = 0, time.perf_counter()
    trainer.model.train()
    with _progress(trainer, trainer.step_in_epoch) as bar:
        for s in range(trainer.step_in_epoch, trainer.steps_per_epoch):
            if trainer.global_step >= total_steps:  # --max-steps ends the run inside this epoch
                break
            t0 = time.perf_counter()
            x, y = trainer.train_set.batch(B.batch_indices(order, s, batch))
            if trainer.augment:
                x = B.augment(x, derive_seed(cfg["seed"], _AUGMENT, trainer.epoch, s))
            x = x[rows].to(trainer.device, non_blocking=True)
            y = y[rows].to(trainer.device, non_blocking=True)
            torch.manual_seed(derive_seed(cfg["seed"], _STEP, trainer.global_step))
            if trainer.debug_loss is not None:
                trainer.debug_loss.poison = trainer.global_step + 1 == cfg["debug_nan_at_step"]
            t1 = time.perf_counter()
            record = trainer.step(x, y)
            t2 = time.perf_counter()
            if trainer.scaler.is_enabled():
                trainer.scaler.step(trainer.optimizer)
                trainer.scaler.update()
            else:
                trainer.optimizer.step()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            t3 = time.perf_counter()
            trainer.global_step += 1
            trainer.step_in_epoch = s + 1
            _accumulate(stats, record, t1 - t0, t3 - t2)
            if cfg["log_steps"]:
                trainer.log.append_step({
                    "step": trainer.global_step, "epoch": trainer.epoch + 1, "loss": record.loss,
                    "losses": list(record.losses), "weights": [float(w) for w in record.weights],
                    "gap": record.gap, "slope": record.slope, "m": record.m,
                    "negative_inner_products": record.negative_inner_products, "skipped": record.skipped,
                    "time": t3 - t0})
            segment_steps += 1
            rate = segment_steps / max(time.perf_counter() - segment_start, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{record.loss:.3f}", img_s=f"{rate * batch:.0f}",
                            run_eta=_hms((total_steps - trainer.global_step) / rate), refresh=False)
            if cfg["eval_every"] and (trainer.global_step % cfg["eval_every"] == 0
                                      or trainer.global_step == total_steps):
                progress_evaluation(trainer)  # before any checkpoint of this step: a resume never skips it
                trainer.model.train()
            saved = False
            if cfg["checkpoint_every"] and trainer.global_step % cfg["checkpoint_every"] == 0 \
                    and trainer.step_in_epoch < trainer.steps_per_epoch:
                stats["time"]["checkpoint"] += trainer.save("last")
                saved = True
            if trainer.stop_now():
                # a state between two steps is complete (even after the epoch's last step: the resume then
                # starts with the end-of-epoch evaluation), so save it and leave
                if not saved:
                    trainer.save("last")
                raise StopRequested(f"stopped by a termination signal after step {trainer.global_step}")
            if cfg["debug_step_delay"]:
                time.sleep(cfg["debug_step_delay"])


def _accumulate(stats: dict, record, data_time: float, optimizer_time: float) -> None:
    stats["steps"] += 1
    stats["loss"] += record.loss
    if not record.skipped:
        stats["gap"] += record.gap
        stats["gap_max"] = max(stats["gap_max"], record.gap)
        stats["slope"] += record.slope
    stats["neg"] += record.negative_inner_products
    stats["neg_steps"] += record.negative_inner_products > 0
    stats["m"] += record.m
    stats["skipped"] += bool(record.skipped)
    times = stats["time"]
    times["data"] += data_time
    times["optimizer"] += optimizer_time
    for key in ("attack", "gradients", "gram", "qp", "combine"):
        times[key] += record.times.get(key, 0.0)


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def progress_evaluation(trainer) -> None:
    """``--eval-every``: evaluate the test split now and append a row to evals.jsonl.

    Every row uses the same examples (the first ``--eval-examples``) and the same random starts, so the
    curve against steps moves only with the model. ``train_time`` is the run's wall-clock time without any
    evaluation (these and the per-epoch ones), the time axis of the paper's Figures 5 and 8.
    """
    cfg = trainer.config
    t0 = time.perf_counter()
    metrics = trainer.evaluate(trainer.model, trainer.test_set, derive_seed(cfg["seed"], _PROGRESS),
                               cfg["eval_examples"])
    trainer.eval_time += time.perf_counter() - t0
    trainer.log.append_step({
        "step": trainer.global_step, "epoch": trainer.epoch + trainer.step_in_epoch / trainer.steps_per_epoch,
        "train_time": trainer.elapsed() - trainer.eval_time, "lr": trainer.optimizer.param_groups[0]["lr"],
        **metrics}, EVALS_JSONL)


def end_epoch(trainer) -> None:
    """Evaluate, append the epoch's metrics, update the best checkpoint, save the last one, write the logs."""
    cfg, stats = trainer.config, trainer.stats
    lr = trainer.optimizer.param_groups[0]["lr"]
    trainer.scheduler.step()
    t0 = time.perf_counter()
    limit, seed = cfg["eval_examples"], cfg["seed"]
    results = {}
    for k, (name, split) in enumerate((("train", trainer.train_set), ("val", trainer.val_set),
                                       ("test", trainer.test_set))):
        if len(split):
            eval_seed = derive_seed(seed, _EVAL, trainer.epoch, k)
            results[name] = trainer.evaluate(trainer.model, split, eval_seed, limit)
    eval_time = time.perf_counter() - t0
    trainer.eval_time += eval_time
    n = max(stats["steps"], 1)
    row = {"epoch": trainer.epoch + 1, "global_step": trainer.global_step, "lr": lr,
           "train_loss": stats["loss"] / n}
    for name, metrics in results.items():
        for key in ("clean_loss", "clean_acc", "robust_loss", "robust_acc"):
            row[f"{name}_{key}"] = metrics[key]
    ok = max(stats["steps"] - stats["skipped"], 1)
    row.update({"m_mean": stats["m"] / n, "gap_mean": stats["gap"] / ok, "gap_max": stats["gap_max"],
                "slope_mean": stats["slope"] / ok, "negative_inner_products_mean": stats["neg"] / n,
                "steps_with_negative_inner_products": stats["neg_steps"] / n,
                "skipped_steps": stats["skipped"]})
    for key, value in stats["time"].items():
        row[f"time_{key}"] = value
    row["time_eval"] = eval_time
    if trainer.device.type == "cuda":
        row["gpu_max_memory_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    # selection by validation robust accuracy (training-subset robust accuracy when --val-size is 0)
    score = row.get("val_robust_acc", row.get("train_robust_acc"))
    improved = score > trainer.best["val_robust_acc"]
    if improved:
        trainer.best = {"val_robust_acc": score, "epoch": trainer.epoch + 1}
    row["best_val_robust_acc"], row["best_epoch"] = trainer.best["val_robust_acc"], trainer.best["epoch"]
    trainer.history.append(row)
    trainer.epoch += 1
    trainer.step_in_epoch = 0
    trainer.stats = new_stats()
    row["wall_time"] = trainer.elapsed()
    state = trainer.state()
    if improved:
        trainer.save("best", state)
    trainer.save("last", state)
    trainer.log.write_metrics(trainer.history)
    trainer.log.info(_epoch_line(row, trainer.epochs))


def _epoch_line(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"lr {row['lr']:.4g}", f"train loss {row['train_loss']:.4f}"]
    for name in ("train", "val", "test"):
        if f"{name}_robust_acc" in row:
            clean, robust = row[f"{name}_clean_acc"], row[f"{name}_robust_acc"]
            parts.append(f"{name} clean/robust acc {clean:.3f}/{robust:.3f}")
    if row["m_mean"] > 1:
        parts.append(f"gap {row['gap_mean']:.2e} neg<g_i,g_j> {row['negative_inner_products_mean']:.2f}")
    parts.append(f"best epoch {row['best_epoch']}")
    parts.append(f"{row['wall_time']:.1f}s")
    return ", ".join(parts)


def final_evaluation(trainer) -> None:
    """Evaluate the last and best models on the test set (``--final-eval-examples``); write summary.json."""
    cfg = trainer.config
    limit = cfg["final_eval_examples"]
    seed = derive_seed(cfg["seed"], _FINAL)  # one seed for both: the same weights give the same numbers
    summary = {"status": "complete", "epochs": trainer.epoch, "global_step": trainer.global_step,
               "best_epoch": trainer.best["epoch"], "best_val_robust_acc": trainer.best["val_robust_acc"]}
    summary["test_last"] = trainer.evaluate(trainer.model, trainer.test_set, seed, limit)
    best_path = os.path.join(trainer.ckpt_dir, "best.pt")
    if trainer.best["epoch"] is not None and os.path.exists(best_path):
        best_model = copy.deepcopy(trainer.model)
        best_model.load_state_dict(load_checkpoint(best_path, map_location=trainer.device)["model"])
        summary["test_best"] = trainer.evaluate(best_model, trainer.test_set, seed, limit)
    summary["wall_time"] = trainer.elapsed()
    summary["eval"] = {"attack": f"PGD-{cfg['eval_steps']}", "restarts": cfg["eval_restarts"],
                       "eps": cfg["eps"], "step_size": cfg["eval_step_size"], "norm": cfg["threat"]}
    trainer.log.write_json("summary.json", summary)
    last, best = summary["test_last"], summary.get("test_best", summary["test_last"])
    trainer.log.info(f"done: test robust acc {last['robust_acc']:.4f} (last), {best['robust_acc']:.4f} "
                     f"(best, epoch {trainer.best['epoch']}), clean {last['clean_acc']:.4f} / "
                     f"{best['clean_acc']:.4f}, on {last['n']} test examples; {trainer.run_dir}")
