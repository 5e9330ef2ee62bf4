r"""Multi-process training with ``torch.distributed``: every rank takes the step of the union batch.

Launched by ``torchrun`` (one process per GPU, or several CPU processes with gloo). The model is **not**
wrapped in DDP: ``DescentStep(distributed=True)`` computes the m gradients on the local batch and averages
each of the m per-parameter blocks across ranks before the Gram matrix (:func:`average_sets`). Every rank
then holds the same m gradients, solves the same QP and writes the same ``p.grad``, so the ranks take the
identical step a single process would take on the union of the batches.

Exactness, and where it needs care
----------------------------------
* **Losses are per-rank means.** The union-batch mean loss is :math:`\sum_r (B_r / B)\,L_r`, so the blocks
  and losses are averaged with weights :math:`B_r / B` (local batch sizes are all-gathered each step), which
  is exact also for an uneven last batch. A custom ``loss`` must be a mean over the batch for this to hold.
* **Per-sample worst-case selection (pgd-max) is local**, and that is exact: each sample's restarts are
  scored on that sample alone.
* **pgd-min picks by the averaged norms**: it picks from the Gram matrix of the averaged blocks, i.e. the
  union-batch gradients, identically on every rank.
* **Random numbers are the union batch's.** Every random draw of a step that depends on the batch — the
  attack's random start (:meth:`minmax.torch.attacks.PGD.draw_start`, shape ``(m, B, ...)``) and ddi-comb's
  k bit-vectors (:func:`shared_bits`) — is drawn on every rank for the whole union batch of
  :math:`B = \sum_r B_r` samples, and rank r keeps its rows :math:`o_r, \dots, o_r + B_r - 1` with
  :math:`o_r = \sum_{s<r} B_s` (:func:`local_rows`). Every rank thus consumes its global RNG exactly as one
  process does on the union batch, and when the ranks' generators are in the single process's state (the
  same seed on every rank, as ``experiments.train`` does), every sample gets the very numbers one process
  gives it. With different states (e.g. a seed per rank) the draws are still uniform and independent
  across samples, merely not the same numbers. The cost is one draw of ``m·B`` start images per step on
  every rank; the attack itself runs on the local rows only.
* **Randomness inside the model** (dropout) draws per rank, for the local batch.
* **BatchNorm** normalizes with per-rank batch statistics (as DDP does without SyncBatchNorm); the running
  statistics' per-set updates are averaged like the gradients, so all ranks keep identical buffers. Exact
  equality with one process therefore holds for models without BatchNorm in train mode (GroupNorm, the
  paper's choice) and without dropout.
* **Rounding**: the cross-rank average sums the ranks' weighted blocks in another order than one process
  sums its batch, so the parameters agree up to the rounding of that sum (about 1e-15 relative in float64
  per step); an attack could in principle branch differently where it compares nearly equal numbers (a
  gradient coordinate's sign at zero, tied losses).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_mean", "any_rank", "average_sets", "batch_sizes", "broadcast_parameters",
           "cleanup", "is_main", "local_rows", "setup", "shared_bits"]


@dataclass(frozen=True)
class DistInfo:
    """The process's place: ``rank``, ``world_size``, ``local_rank`` and its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def setup(backend: str | None = None) -> DistInfo:
    """Initialize the default process group from torchrun's environment variables.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. The backend is
    nccl when CUDA is available, else gloo; with nccl the device is ``cuda:LOCAL_RANK``, with gloo the
    CPU. Without ``WORLD_SIZE`` (a plain ``python`` launch) nothing is initialized and the info of a single
    process is returned.

    Raises
    ------
    ValueError
        If the environment variables are malformed.
    """
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if "WORLD_SIZE" not in os.environ:
        return DistInfo(0, 1, 0, torch.device("cuda" if backend == "nccl" else "cpu"))
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"torchrun environment incomplete or malformed (RANK, WORLD_SIZE, LOCAL_RANK): "
                         f"{exc}") from None
    device = torch.device(f"cuda:{local}") if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, device)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that logs and writes checkpoints."""
    return not _active() or dist.get_rank() == 0


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (call once after building the model)."""
    if not _active():
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


def all_reduce_mean(tensors):
    """Average the tensors across ranks, in place; returns them (a list)."""
    tensors = list(tensors)
    if _active():
        world = dist.get_world_size()
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(world)
    return tensors


def cleanup() -> None:
    """Destroy the default process group, if one was initialized."""
    if _active():
        dist.destroy_process_group()


def batch_sizes(batch: int, device) -> list[int]:
    """The local batch sizes of all ranks, in rank order (one all-gather); ``[batch]`` in a single process.

    :class:`minmax.torch.descent.DescentStep` gathers them once per step and passes them to
    :func:`local_rows`, :func:`average_sets` and :func:`shared_bits`.
    """
    if not _active():
        return [int(batch)]
    local = torch.tensor([batch], device=device, dtype=torch.int64)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in sizes]


def local_rows(sizes) -> slice:
    """This rank's rows of the union batch: ``slice(o_r, o_r + B_r)``, ``o_r`` the sum of lower ranks' sizes.

    Raises
    ------
    ValueError
        If ``sizes`` does not hold one batch size per rank.

    Examples
    --------
    >>> local_rows([5])  # a single process holds the whole batch
    slice(0, 5, None)
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if _active() else (0, 1)
    if len(sizes) != world:
        raise ValueError(f"sizes must hold one batch size per rank ({world}), got {list(sizes)}")
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def average_sets(blocks, losses, buffers, batch: int, sizes=None):
    r"""Batch-size-weighted average across ranks of the m gradient blocks, losses and per-set buffers.

    Rank r contributes with weight :math:`B_r / \sum_s B_s`, so the result is the gradient (loss) of the
    mean loss over the union batch. Floating buffers (running statistics) are averaged the same way, integer
    buffers are equal on every rank. Works in place on the given tensors; returns ``(blocks, losses,
    buffers)``. ``sizes``: the ranks' batch sizes from :func:`batch_sizes` (gathered here when None). A
    single process returns them unchanged.
    """
    if not _active():
        return blocks, losses, buffers
    sizes = batch_sizes(batch, losses.device) if sizes is None else sizes
    w = batch / sum(sizes)
    tensors = [*blocks, losses, *[b for b in (buffers or {}).values() if b.is_floating_point()]]
    for t in tensors:
        t.mul_(w)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return blocks, losses, buffers


def any_rank(flags, device) -> tuple:
    """Per position, whether the flag is True on some rank (one all-reduce); the flags in one process."""
    if not _active():
        return tuple(bool(f) for f in flags)
    t = torch.tensor([bool(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def shared_bits(k: int, batch: int, device, sizes=None) -> torch.Tensor:
    """This rank's rows of k random bit-vectors over the union batch (ddi-comb; see the module notes).

    Returns an int64 tensor ``(k, batch)`` on ``device``: every rank draws ``torch.randint(0, 2, (k, B))``
    for the union batch of B samples from the global CPU RNG, as one process does for a batch of B, and
    keeps its rows (:func:`local_rows`). ``sizes``: as in :func:`average_sets`.
    """
    sizes = batch_sizes(batch, device) if sizes is None else sizes
    return torch.randint(0, 2, (k, sum(sizes)))[:, local_rows(sizes)].to(device)
