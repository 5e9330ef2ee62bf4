"""The training batches: the epoch order, the ranks' shares of a global batch, the seeded augmentation."""

from __future__ import annotations

import pytest
import torch

from experiments.common import batches as B
from experiments.common import data as D


def test_epoch_order_and_shares():
    order = B.epoch_permutation(90, seed=1, epoch=2)
    assert torch.equal(order, B.epoch_permutation(90, seed=1, epoch=2))
    assert not torch.equal(order, B.epoch_permutation(90, seed=1, epoch=3))
    assert sorted(order.tolist()) == list(range(90))
    single = B.batch_indices(order, 3, 8)
    union = torch.cat([B.batch_indices(order, 3, 8, rank=r, world_size=4) for r in range(4)])
    assert torch.equal(single, union)
    with pytest.raises(ValueError, match="divisible"):
        B.batch_indices(order, 0, 10, rank=0, world_size=4)
    with pytest.raises(ValueError, match="rank"):
        B.batch_indices(order, 0, 8, rank=4, world_size=4)


def test_augment_is_a_seeded_crop_and_flip():
    x = torch.rand(6, 3, 8, 8)
    a, b = B.augment(x, 5, padding=2), B.augment(x, 5, padding=2)
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, B.augment(x, 6, padding=2))
    # every output is a shifted (and maybe mirrored) window of the zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)


class _Recording:
    """An ImageSet that records which examples were read."""

    def __init__(self, data):
        self.data, self.read = data, []

    def batch(self, index, device=None):
        self.read.append(torch.as_tensor(index).tolist())
        return self.data.batch(index, device)


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("augment", [True, False])
def test_each_rank_loads_only_its_share_and_the_shares_make_the_global_batch(world_size, augment):
    data = D.make_generated(64, shape=(3, 8, 8), seed=2)
    order = B.epoch_permutation(len(data), seed=0, epoch=1)
    batch, step, seed = 16, 2, 12345
    # the batch one process trains on: all of its rows loaded, then the whole batch augmented
    x_all, y_all = data.batch(order[step * batch:(step + 1) * batch])
    if augment:
        x_all = B.augment(x_all, seed)
    shards = []
    for rank in range(world_size):
        recording = _Recording(data)
        shards.append(B.load_shard(recording, order, step, batch, rank=rank, world_size=world_size,
                                   augment_seed=seed if augment else None))
        assert [len(r) for r in recording.read] == [batch // world_size]  # this rank's examples only
    assert torch.equal(torch.cat([x for x, _ in shards]), x_all)
    assert torch.equal(torch.cat([y for _, y in shards]), y_all)


def test_augment_rows_must_fit_their_batch():
    x = torch.rand(4, 1, 6, 6)
    with pytest.raises(ValueError, match="do not fit"):
        B.augment(x, 0, first=5, total=8)
    with pytest.raises(ValueError, match="do not fit"):
        B.augment(x, 0, first=-1, total=8)
