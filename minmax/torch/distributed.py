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
* **ddi-comb's bit-vectors must be the union batch's**: rank 0 draws k bit-vectors over the union batch
  from its global RNG and broadcasts them; rank r keeps its slice (:func:`shared_bits`). One process with the
  same RNG state draws exactly the same bits.
* **Attack random starts** come from each rank's RNG over the local batch; they are distributed like a
  single process's but are not the same numbers (the equality test uses a deterministic attack).
* **BatchNorm** normalizes with per-rank batch statistics (as DDP does without SyncBatchNorm); the running
  statistics' per-set updates are averaged like the gradients, so all ranks keep identical buffers. Exact
  equality with one process therefore holds for models without BatchNorm in train mode (GroupNorm, the
  paper's choice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_mean", "average_sets", "broadcast_parameters", "cleanup", "is_main",
           "setup", "shared_bits"]


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


def _batch_sizes(batch: int, device) -> list[int]:
    local = torch.tensor([batch], device=device, dtype=torch.int64)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in sizes]


def average_sets(blocks, losses, buffers, batch: int):
    r"""Batch-size-weighted average across ranks of the m gradient blocks, losses and per-set buffers.

    Rank r contributes with weight :math:`B_r / \sum_s B_s`, so the result is the gradient (loss) of the
    mean loss over the union batch. Floating buffers (running statistics) are averaged the same way, integer
    buffers are equal on every rank. Works in place on the given tensors; returns ``(blocks, losses,
    buffers)``. A single process returns them unchanged.
    """
    if not _active():
        return blocks, losses, buffers
    device = losses.device
    sizes = _batch_sizes(batch, device)
    w = batch / sum(sizes)
    tensors = [*blocks, losses, *[b for b in (buffers or {}).values() if b.is_floating_point()]]
    for t in tensors:
        t.mul_(w)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return blocks, losses, buffers


def shared_bits(k: int, batch: int, device) -> torch.Tensor:
    """This rank's slice of k bit-vectors over the union batch, drawn by rank 0 (see the module notes).

    Returns an int64 tensor ``(k, batch)`` on ``device``. Rank 0 draws ``torch.randint(0, 2, (k, B))``
    from the global CPU RNG, as one process does for a batch of B.
    """
    if not _active():
        return torch.randint(0, 2, (k, batch)).to(device)
    sizes = _batch_sizes(batch, device)
    rank = dist.get_rank()
    if rank == 0:
        bits = torch.randint(0, 2, (k, sum(sizes))).to(device)
    else:
        bits = torch.empty((k, sum(sizes)), dtype=torch.int64, device=device)
    dist.broadcast(bits, src=0)
    start = sum(sizes[:rank])
    return bits[:, start:start + batch]
