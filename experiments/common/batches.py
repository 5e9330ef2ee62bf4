"""The training batches: the order of an epoch, one rank's share of a global batch, and its augmentation.

Every random choice is a function of integer seeds (:mod:`experiments.common.seeds`): the order of the
examples of epoch ``e`` is ``epoch_permutation(n, seed, e)``, global batch ``s`` is the ``s``-th block of
``batch_size`` entries of that order, and its crops and flips are drawn from a generator seeded per batch.
A resumed run therefore finds the same batches from the epoch number and the position inside it, and rank
``r`` of ``w`` can load and augment only its own contiguous share (:func:`load_shard`): the shards of all
ranks, in rank order, are exactly the batch a single process would train on.
"""

from __future__ import annotations

import torch

from experiments.common.data import ImageSet
from experiments.common.seeds import EPOCH_ORDER, derive_seed

__all__ = ["augment", "batch_indices", "epoch_permutation", "load_shard"]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training examples in ``epoch`` (a function of ``seed`` and ``epoch`` only)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch, EPOCH_ORDER))
    return torch.randperm(n, generator=generator)


def batch_indices(order: torch.Tensor, step: int, batch_size: int, *, rank: int = 0, world_size: int = 1):
    """Indices of this rank's share of global batch ``step`` (full batches only).

    The global batch is ``order[step*B:(step+1)*B]``; rank ``r`` of ``w`` takes the ``r``-th of ``w`` equal
    contiguous chunks, so the union over ranks is exactly the single-process batch and the mean of the
    per-rank mean losses is the single-process mean loss. ``batch_size`` must be divisible by ``world_size``.

    Raises
    ------
    ValueError
        If ``batch_size`` is not divisible by ``world_size``, or ``rank`` is outside ``[0, world_size)``.

    Examples
    --------
    >>> import torch
    >>> order = torch.arange(10, 20)
    >>> batch_indices(order, 1, 4).tolist(), batch_indices(order, 1, 4, rank=1, world_size=2).tolist()
    ([14, 15, 16, 17], [16, 17])
    """
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} is not divisible by the number of processes {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    chunk = batch_size // world_size
    start = step * batch_size + rank * chunk
    return order[start:start + chunk]


def augment(x: torch.Tensor, seed: int, *, padding: int = 4, flip: bool = True, first: int = 0,
            total: int | None = None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip (the standard CIFAR10 augmentation).

    Randomness comes from ``seed`` alone (derived per batch by the caller), so it never touches the global
    generator used by the attacks and is identical after a resume.

    Parameters
    ----------
    x : torch.Tensor of shape (n, C, H, W)
        The images, or rows ``first, ..., first + n - 1`` of a batch of ``total`` images.
    seed : int
        Seed of the batch's crops and flips.
    padding : int, default 4
        Zero padding on each side before the crop (offsets ``0 .. 2 * padding``).
    flip : bool, default True
        Flip each image horizontally with probability 1/2.
    first, total : int
        Where ``x`` sits in its batch: the random numbers of all ``total`` rows are drawn (three numbers a
        row) and rows ``first ..`` are used, so augmenting each rank's shard gives exactly the shards of the
        augmented batch. Default: ``x`` is the whole batch.

    Raises
    ------
    ValueError
        If ``x`` does not fit at ``first`` in a batch of ``total``.
    """
    n, _, h, w = x.shape
    total = n if total is None else total
    if first < 0 or first + n > total:
        raise ValueError(f"rows {first}..{first + n - 1} do not fit in a batch of {total}")
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 2 * padding + 1, (total, 2), generator=generator)[first:first + n].tolist()
    flips = (torch.rand(total, generator=generator) < 0.5)[first:first + n]
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    out = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])
    if flip:
        out = torch.where(flips.to(x.device).view(n, 1, 1, 1), out.flip(-1), out)
    return out


def load_shard(data: ImageSet, order: torch.Tensor, step: int, batch_size: int, *, rank: int = 0,
               world_size: int = 1, augment_seed: int | None = None, device=None):
    """This rank's share of global batch ``step``: loaded, augmented (with ``augment_seed``), on ``device``.

    Only the ``batch_size / world_size`` examples of the share are read from ``data`` and augmented; the
    augmentation uses the whole batch's random numbers (:func:`augment` with ``first``/``total``), so the
    shards of ranks ``0 .. world_size - 1``, concatenated, are the single-process batch.

    Returns
    -------
    x, y : torch.Tensor
        Images in [0, 1] (float32) and labels, moved to ``device`` without blocking.
    """
    x, y = data.batch(batch_indices(order, step, batch_size, rank=rank, world_size=world_size))
    if augment_seed is not None:
        x = augment(x, augment_seed, first=rank * (batch_size // world_size), total=batch_size)
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)
