"""Rank-independent attack starts: a rank's chunk starts where the single process starts those samples."""

from __future__ import annotations

import pytest
import torch

from experiments.shard import shard_attack
from minmax.torch.attacks import FGSM, PGD


@pytest.mark.parametrize("make", [lambda: PGD(restarts=3, norm="linf"), lambda: PGD(restarts=2, norm="l2"),
                                  lambda: FGSM(restarts=2)])
@pytest.mark.parametrize("world", [2, 4])
def test_rank_chunks_draw_the_single_process_start(make, world):
    batch = 8
    x = torch.rand(batch, 1, 3, 3)
    attack = make()
    m = attack.restarts
    torch.manual_seed(5)
    single = attack._start(x.repeat(m, 1, 1, 1)).view(m, batch, 1, 3, 3)
    chunk = batch // world
    for rank in range(world):
        rows = slice(rank * chunk, (rank + 1) * chunk)
        sharded = shard_attack(make(), rank, world)
        torch.manual_seed(5)
        start = sharded._start(x[rows].repeat(m, 1, 1, 1)).view(m, chunk, 1, 3, 3)
        torch.testing.assert_close(start, single[:, rows], rtol=0, atol=0)


def test_single_process_attack_is_untouched():
    attack = PGD(restarts=2)
    assert shard_attack(attack, 0, 1) is attack and "_start" not in vars(attack)
