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
from minmax.torch.attacks import AttackResult
from minmax.torch.backward import danskin_backward
from minmax.torch.descent import DescentStep

SIZES = (5, 3)  # uneven local batches: the average must weight ranks by batch size
# The variants' own attacks, with random starts (the default): every rank draws the union batch's start.
VARIANTS = ("pgd", "pgd-max-3", "pgd-min-3", "ddi-3", "ddi-comb-3", "fast-ddi-3", "ddi-decay-3")
CUSTOM = "ddi-3/custom"  # an attack without draw_start: called as run(model, x, y)
# DescentStep(DistributedDataParallel(net)) with the default distributed=None: unwrapped, the library's path
WRAPPED = ("pgd/ddp", "ddi-3/ddp")
UNUSED = "ddi-3/unused"  # a parameter the loss never reaches keeps grad None on every rank
BACKWARD = "ddi-3/backward"  # danskin_backward(distributed=True) on losses of the caller's own loop
RUNS = (*VARIANTS, CUSTOM, *WRAPPED, UNUSED, BACKWARD)
STEPS = 3


class SampleWiseAttack:
    """Deterministic per-sample perturbations, distinct per restart: the same sample gets the same
    perturbation whichever process and batch it is in."""

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
    name, _, kind = variant.partition("/")
    net = _net()
    if kind == "unused":
        net.unused = nn.Parameter(torch.ones(2, dtype=torch.float64))  # Sequential's forward never reads it
    if rank is not None:
        distributed.broadcast_parameters(net)
    torch.manual_seed(11)  # every rank's global RNG in the single process's state
    kwargs = {"attack": SampleWiseAttack(3)} if kind == "custom" else {"total_steps": STEPS}
    if kind == "ddp" and rank is not None:
        model, kwargs["distributed"] = nn.parallel.DistributedDataParallel(net), None
    else:
        model, kwargs["distributed"] = net, rank is not None
    if kind == "backward":
        attack = SampleWiseAttack(3)

        def step(x, y):  # the caller's own loop: attack, m mean losses, then the Danskin step
            deltas = attack.run(net, x, y).deltas
            losses = torch.stack([F.cross_entropy(net(x + d), y) for d in deltas])
            # batch_size weights the uneven ranks exactly (equal weights fail the comparison)
            return danskin_backward(losses, net.parameters(), distributed=rank is not None,
                                    batch_size=x.shape[0])
    else:
        step = DescentStep(model, name, steps=2, **kwargs)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=5e-4)
    rows = slice(None) if rank is None else slice(sum(SIZES[:rank]), sum(SIZES[:rank + 1]))
    losses = []
    for x, y in _batches():
        rec = step(x[rows], y[rows])
        opt.step()
        losses.append(rec.losses)
        if kind == "unused":
            assert net.unused.grad is None and torch.equal(net.unused, torch.ones(2, dtype=torch.float64))
    # the RNG's state after the run: every rank consumed it as the single process did
    return [p.detach().clone() for p in net.parameters()], losses, torch.get_rng_state()


def _worker(rank, port, out):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(len(SIZES)), LOCAL_RANK=str(rank))
    info = distributed.setup(backend="gloo")  # CPU even where CUDA is present
    assert info.world_size == len(SIZES) and info.device.type == "cpu"
    assert distributed.is_main() == (rank == 0)
    results = {v: _train(v, rank=rank) for v in RUNS}
    with pytest.raises(ValueError, match="distributed=True"):  # DDP's all-reduce would never run
        DescentStep(nn.parallel.DistributedDataParallel(_net()), "ddi-3", distributed=False)
    torch.save(results, f"{out}.{rank}")
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_take_the_union_batch_step(tmp_path):
    out = str(tmp_path / "params")
    # fork: no re-import of torch in the children (spawn costs ~10 s on a small machine). But autograd
    # cannot run in a child forked after CUDA work in this process (its device threads do not survive the
    # fork): on a GPU machine where earlier tests used CUDA, spawn.
    method = "spawn" if torch.cuda.is_initialized() else "fork"
    mp.start_processes(_worker, args=(_free_port(), out), nprocs=len(SIZES), join=True, start_method=method)
    ranks = [torch.load(f"{out}.{r}") for r in range(len(SIZES))]
    for variant in RUNS:
        params, losses, rng = _train(variant)
        for r, res in enumerate(ranks):
            got_params, got_losses, got_rng = res[variant]
            for p, q in zip(got_params, params, strict=True):
                torch.testing.assert_close(p, q, rtol=1e-11, atol=1e-13, msg=f"{variant}, rank {r}")
            for a, b in zip(got_losses, losses, strict=True):  # ddi-decay: m changes over the steps
                torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-11, atol=0)
            assert torch.equal(got_rng, rng), f"{variant}, rank {r}"
        assert not torch.equal(params[0], _net()[0].weight)  # the steps did move the parameters


def test_the_random_starts_matter():
    """The comparison above can fail: a different draw of the starts gives other parameters."""
    params, _, _ = _train("ddi-3")
    torch.manual_seed(12)
    step = DescentStep(_net(), "ddi-3", steps=2)
    net = step.model
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=5e-4)
    for x, y in _batches():
        step(x, y)
        opt.step()
    assert not torch.allclose(net[0].weight, params[0], rtol=1e-6, atol=1e-8)


def test_single_process_helpers_are_no_ops():
    t = [torch.ones(3)]
    assert distributed.all_reduce_mean(t)[0].tolist() == [1.0, 1.0, 1.0]
    assert distributed.is_main()
    assert distributed.batch_sizes(4, "cpu") == [4] and distributed.local_rows([4]) == slice(0, 4)
    with pytest.raises(ValueError, match="one batch size per rank"):
        distributed.local_rows([4, 4])
    torch.manual_seed(1)
    bits = distributed.shared_bits(2, 5, "cpu")
    torch.manual_seed(1)
    assert torch.equal(bits, torch.randint(0, 2, (2, 5)))
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
