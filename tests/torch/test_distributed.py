"""Two gloo processes on the CPU take exactly the steps one process takes on the union batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from minmax.torch import distributed
from minmax.torch.attacks import PGD, AttackResult
from minmax.torch.descent import DescentStep

SIZES = (5, 3)  # uneven local batches: the average must weight ranks by batch size
VARIANTS = ("pgd", "pgd-max-3", "pgd-min-3", "ddi-3", "ddi-comb-3")
STEPS = 3


class SampleWiseAttack:
    """Deterministic per-sample perturbations, distinct per restart: the same sample gets the same
    perturbation whichever process and batch it is in (random starts would differ across layouts)."""

    def __init__(self, restarts: int):
        self.restarts = restarts

    def run(self, model, x, y):
        deltas = torch.stack([torch.sin(97.0 * (i + 1) * x) * (8 / 255) for i in range(self.restarts)])
        mode = model.training
        model.eval()
        with torch.no_grad():
            losses = torch.stack([F.cross_entropy(model(x + d), y, reduction="none") for d in deltas])
        model.train(mode)
        return AttackResult(deltas, losses)


def _attack(variant):
    if variant == "pgd":
        return PGD(steps=2, random_start=False)  # per-sample deterministic from a zero start
    return SampleWiseAttack(2 if variant.startswith("ddi-comb") else 3)


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.CELU(), nn.Flatten(), nn.Linear(36, 3))
    return net.double().train()


def _batches():
    g = torch.Generator().manual_seed(3)
    n = sum(SIZES)
    return [(torch.rand(n, 3, 5, 5, generator=g, dtype=torch.float64) * 0.8 + 0.1,
             torch.randint(0, 3, (n,), generator=g)) for _ in range(STEPS)]


def _train(variant, *, rank=None):
    net = _net()
    if rank is not None:
        distributed.broadcast_parameters(net)
    torch.manual_seed(11)  # the global RNG of rank 0 and of the single process: ddi-comb's bit-vectors
    step = DescentStep(net, variant, attack=_attack(variant), distributed=rank is not None)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=5e-4)
    lo = 0 if rank is None else sum(SIZES[:rank])
    hi = sum(SIZES) if rank is None else lo + SIZES[rank]
    losses = []
    for x, y in _batches():
        rec = step(x[lo:hi], y[lo:hi])
        opt.step()
        losses.append(rec.losses)
    return [p.detach().clone() for p in net.parameters()], losses


def _worker(rank, port, out):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(len(SIZES)), LOCAL_RANK=str(rank))
    info = distributed.setup(backend="gloo")  # CPU even where CUDA is present
    assert info.world_size == len(SIZES) and info.device.type == "cpu"
    assert distributed.is_main() == (rank == 0)
    results = {v: _train(v, rank=rank) for v in VARIANTS}
    torch.save(results, f"{out}.{rank}")
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_take_the_union_batch_step(tmp_path):
    out = str(tmp_path / "params")
    # fork: no re-import of torch in the children (spawn costs ~10 s on a small machine)
    mp.start_processes(_worker, args=(_free_port(), out), nprocs=len(SIZES), join=True, start_method="fork")
    ranks = [torch.load(f"{out}.{r}") for r in range(len(SIZES))]
    for variant in VARIANTS:
        params, losses = _train(variant)
        for r, res in enumerate(ranks):
            got_params, got_losses = res[variant]
            for p, q in zip(got_params, params, strict=True):
                torch.testing.assert_close(p, q, rtol=1e-11, atol=1e-13, msg=f"{variant}, rank {r}")
            torch.testing.assert_close(torch.tensor(got_losses), torch.tensor(losses), rtol=1e-11, atol=0)
        assert not torch.equal(params[0], _net()[0].weight)  # the steps did move the parameters


def test_single_process_helpers_are_no_ops():
    t = [torch.ones(3)]
    assert distributed.all_reduce_mean(t)[0].tolist() == [1.0, 1.0, 1.0]
    assert distributed.is_main()
    if "WORLD_SIZE" not in os.environ:
        info = distributed.setup(backend="gloo")
        assert (info.rank, info.world_size, info.device.type) == (0, 1, "cpu")
    distributed.cleanup()


@pytest.mark.parametrize("bad", [{"WORLD_SIZE": "2", "RANK": "x"}])
def test_malformed_environment(monkeypatch, bad):
    for k, v in bad.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="torchrun"):
        distributed.setup(backend="gloo")
