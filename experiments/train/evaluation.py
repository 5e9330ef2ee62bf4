"""The evaluation during training: clean and robust (PGD) loss and accuracy on a split, reproducible, sharded.

It runs at the end of every epoch (validation and test), every ``--eval-every`` steps and at the end of a
run; the evaluation a robustness claim needs is ``python -m experiments.evaluate``
(:mod:`experiments.evaluate`).

Each evaluation batch ``b`` gets its own generator seed ``derive_seed(seed, b)`` for the attack's random
start (inside :func:`torch.random.fork_rng`, so the training generator is untouched), and batches are dealt
to ranks round-robin: the numbers do not depend on the number of processes, and evaluating never changes
what training does next — a resumed run evaluates exactly like an uninterrupted one.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from experiments.common.data import ImageSet
from experiments.common.seeds import derive_seed

__all__ = ["evaluate"]


def evaluate(model: torch.nn.Module, data: ImageSet, attack, *, seed: int, batch_size: int = 256,
             limit: int = 0, device="cpu", amp_dtype=None, rank: int = 0, world_size: int = 1) -> dict:
    """Clean and robust loss and accuracy of ``model`` on the first ``limit`` examples of ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode for the evaluation, its mode restored after.
    data : ImageSet
        The split to evaluate.
    attack : minmax.torch.attacks.PGD
        The evaluation attack (e.g. PGD-20); with several restarts an example counts as robust only if
        every restart fails, and its robust loss is the largest over restarts.
    seed : int
        Seed of the attacks' random starts (combined with the batch number).
    batch_size, limit : int
        Evaluation batch size; number of examples (0: all).
    device, amp_dtype
        Where to run; ``torch.bfloat16`` / ``torch.float16`` for autocast forward passes, or None.
    rank, world_size : int
        Under torch.distributed: this process evaluates batches ``rank, rank + world_size, ...`` and the
        sums are all-reduced, so every rank returns the totals.

    Returns
    -------
    dict
        ``clean_loss``, ``clean_acc``, ``robust_loss``, ``robust_acc`` (means over examples) and ``n``.
    """
    device = torch.device(device)
    n = len(data) if limit <= 0 else min(limit, len(data))
    sums = torch.zeros(4, dtype=torch.float64)
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    was_training = model.training
    model.eval()
    forked = [device] if device.type == "cuda" else []
    try:
        for b, start in enumerate(range(0, n, batch_size)):
            if b % world_size != rank:
                continue
            x, y = data.batch(range(start, min(start + batch_size, n)), device)
            with torch.random.fork_rng(devices=forked):
                torch.manual_seed(derive_seed(seed, b))
                with torch.no_grad(), autocast:
                    logits = model(x)
                sums[0] += F.cross_entropy(logits.float(), y, reduction="sum").item()
                sums[1] += (logits.argmax(1) == y).sum().item()
                with autocast:
                    deltas = attack(model, x, y)
                robust = torch.ones_like(y, dtype=torch.bool)
                worst = torch.full(y.shape, -float("inf"), device=device)
                with torch.no_grad(), autocast:
                    for delta in deltas:
                        logits = model((x + delta).clamp(0, 1))
                        robust &= logits.argmax(1) == y
                        worst = torch.maximum(worst, F.cross_entropy(logits.float(), y, reduction="none"))
                sums[2] += worst.sum().item()
                sums[3] += robust.sum().item()
    finally:
        model.train(was_training)
    if world_size > 1:
        import torch.distributed as dist

        reduce_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
        sums = sums.to(reduce_device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    clean_loss, clean_correct, robust_loss, robust_correct = (float(v) / n for v in sums)
    return {"clean_loss": clean_loss, "clean_acc": clean_correct, "robust_loss": robust_loss,
            "robust_acc": robust_correct, "n": n}

