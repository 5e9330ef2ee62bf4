r"""What a training run measures per epoch: the step records summed up, one metrics row, one log line.

Within an epoch, every optimizer step adds its :class:`minmax.torch.descent.StepRecord` (loss, duality gap of
the QP, slope :math:`-\|M\alpha^*\|`, negative inner products between the m gradients, times) to a dict
of sums (:func:`new_stats`, :func:`accumulate`); the dict is checkpointed with the run, so a resumed epoch
sums the same steps. At the end of the epoch :func:`epoch_row` turns the sums and the evaluation results into
the row written to ``metrics.jsonl`` / ``metrics.csv``.
"""

from __future__ import annotations

import math

__all__ = ["TIME_KEYS", "accumulate", "epoch_line", "epoch_row", "hms", "new_stats"]

#: Where a step's time goes (summed per epoch; ``time_<key>`` in the metrics rows).
TIME_KEYS = ("data", "attack", "gradients", "gram", "qp", "combine", "optimizer", "checkpoint")
_SPLITS = ("train", "val", "test")


def new_stats() -> dict:
    """The empty sums of an epoch."""
    return {"steps": 0, "loss": 0.0, "gap": 0.0, "gap_max": 0.0, "slope": 0.0, "neg": 0, "neg_steps": 0,
            "m": 0, "skipped": 0, "time": dict.fromkeys(TIME_KEYS, 0.0)}


def accumulate(stats: dict, record, data_time: float, optimizer_time: float) -> None:
    """Add one step's record (and the time spent loading its data and in ``optimizer.step``) to ``stats``."""
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


def epoch_row(stats: dict, results: dict, *, epoch: int, global_step: int, lr: float,
              eval_time: float) -> dict:
    """The metrics row of an epoch (1-based ``epoch``) from its sums and ``{split: evaluate(...)}``."""
    n = max(stats["steps"], 1)
    row = {"epoch": epoch, "global_step": global_step, "lr": lr, "train_loss": stats["loss"] / n}
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
    return row


def epoch_line(row: dict, epochs: int) -> str:
    """The line of ``log.txt`` for a finished epoch."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"lr {row['lr']:.4g}", f"train loss {row['train_loss']:.4f}"]
    for name in _SPLITS:
        if f"{name}_robust_acc" in row:
            clean, robust = row[f"{name}_clean_acc"], row[f"{name}_robust_acc"]
            parts.append(f"{name} clean/robust acc {clean:.3f}/{robust:.3f}")
    if row["m_mean"] > 1:
        parts.append(f"gap {row['gap_mean']:.2e} neg<g_i,g_j> {row['negative_inner_products_mean']:.2f}")
    parts.append(f"best epoch {row['best_epoch']}")
    parts.append(f"{row['wall_time']:.1f}s")
    return ", ".join(parts)


def hms(seconds: float) -> str:
    """``H:MM:SS`` (``"?"`` for an unknown time)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
