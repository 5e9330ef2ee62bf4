"""Attack random starts that do not depend on how the batch is split across processes.

Under ``torchrun`` each rank trains on its chunk of the global batch (:func:`experiments.data.batch_indices`)
and ``DescentStep(distributed=True)`` averages the m gradients across ranks, so the update is the union
batch's — except for the attacks' random starts, which each rank would draw for its own chunk alone.
Here every rank draws the random start of the **whole** global batch (the same numbers a single process
draws, since the training loop reseeds the global generator identically on every rank at every step) and
keeps its own rows. With that, a run on w processes takes the steps of the single-process run, up to the
rounding of the cross-rank average.

The cost is the random start of the global batch on every rank (one ``rand`` of ``m·B`` images per step);
the attack itself still runs on the local chunk only.

This relies on :class:`minmax.torch.attacks.PGD` drawing its start in ``_start(xs)`` with the m restarts
stacked restart-major (rows ``j·b … (j+1)·b − 1``); a public hook for the start would make it cleaner.
"""

from __future__ import annotations

import torch

from minmax.torch.descent import DescentStep

__all__ = ["ShardedDescentStep", "shard_attack"]


def shard_attack(attack, rank: int, world_size: int):
    """Make ``attack`` (PGD or FGSM) draw the union batch's random starts and keep this rank's rows."""
    if world_size == 1 or not hasattr(attack, "_start"):
        return attack
    draw = attack._start

    def _start(xs: torch.Tensor) -> torch.Tensor:
        m = attack.restarts
        local = xs.shape[0] // m
        union = xs.new_zeros((m, local * world_size, *xs.shape[1:]))
        union[:, rank * local:(rank + 1) * local] = xs.view(m, local, *xs.shape[1:])
        # The start is projected per row onto the ball ∩ [−x, 1−x]; rows of other ranks (zeros here) are
        # drawn but discarded, so this rank's rows are exactly the single-process draw for those samples.
        delta = draw(union.view(m * local * world_size, *xs.shape[1:]))
        delta = delta.view(m, local * world_size, *xs.shape[1:])[:, rank * local:(rank + 1) * local]
        return delta.reshape(xs.shape).contiguous()

    attack._start = _start
    return attack


class ShardedDescentStep(DescentStep):
    """:class:`DescentStep` whose attacks draw their random starts for the union batch (see the module)."""

    def __init__(self, *args, rank: int = 0, world_size: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.rank, self.world_size = rank, world_size

    def _make_attack(self, restarts: int):
        return shard_attack(super()._make_attack(restarts), self.rank, self.world_size)
