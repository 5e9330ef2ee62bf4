"""danskin_backward and write_direction: the Danskin step from m losses or m gradients, into p.grad."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minmax import steepest_descent
from minmax.torch.attacks import AttackResult
from minmax.torch.backward import RULES, NonFiniteLossError, danskin_backward, write_direction
from minmax.torch.descent import DescentStep
from minmax.torch.variants import FAMILIES

EPS = 8 / 255
F64 = torch.finfo(torch.float64).eps


def _net(dtype=torch.float64):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.CELU(), nn.Flatten(), nn.Linear(36, 3))
    return net.to(dtype).train()


def _batch(b=6, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 5, 5, generator=g, dtype=dtype) * 0.8 + 0.1
    return x, torch.randint(0, 3, (b,), generator=g)


def _deltas(m, x, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(m, *x.shape, generator=g, dtype=x.dtype) * 2 - 1) * EPS


def _losses(net, x, y, deltas):
    return torch.stack([F.cross_entropy(net(x + d), y) for d in deltas])


def _reference(net, x, y, deltas):
    """Gradients by loss.backward() on copies of the network: one flat row per perturbation set."""
    rows = []
    for d in deltas:
        ref = copy.deepcopy(net)
        F.cross_entropy(ref(x + d), y).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in ref.parameters()]))
    return torch.stack(rows)


def _pgrad(net):
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


@pytest.mark.parametrize("m", [1, 2, 5])
def test_writes_the_steepest_descent_direction_of_the_m_losses(m):
    net = _net()
    x, y = _batch()
    d = _deltas(m, x)
    for p in net.parameters():
        p.grad = torch.full_like(p, 1e6)  # overwritten, never accumulated into
    rec = danskin_backward(_losses(net, x, y, d), net.parameters())
    M = _reference(net, x, y, d)
    ref = steepest_descent(M)
    # float64 throughout: a few ulps per entry, times the accumulation length of the Gram matrix and Mα
    torch.testing.assert_close(_pgrad(net), -ref.direction, rtol=100 * M.shape[1] * F64, atol=0)
    gamma = -_pgrad(net)
    assert abs(float(gamma.norm()) - 1) < 100 * F64
    # Theorem 2: the slope over the set is max_i <g_i, γ*> = -‖Mα*‖ < 0
    np.testing.assert_allclose(rec.slope, float((M @ gamma).max()), rtol=1e-9)
    np.testing.assert_allclose(rec.slope, -rec.norm, rtol=1e-12)
    assert rec.slope < 0 and rec.m == m and rec.strategy == "loop" and not rec.skipped
    G = (M @ M.T).numpy()
    assert rec.negative_inner_products == int(np.sum(np.triu(G, 1) < 0))
    np.testing.assert_allclose(rec.weights @ G @ rec.weights, ref.qp.value, rtol=1e-9)
    with torch.no_grad():
        np.testing.assert_allclose(rec.losses, [F.cross_entropy(net(x + e), y).item() for e in d], rtol=1e-14)
    assert rec.loss == max(rec.losses)
    assert set(rec.times) == {"gradients", "gram", "qp", "combine", "total"}


def test_normalize_false_writes_the_min_norm_combination():
    net = _net()
    x, y = _batch()
    d = _deltas(3, x)
    danskin_backward(_losses(net, x, y, d), net, normalize=False)  # a module stands for its parameters
    ref = steepest_descent(_reference(net, x, y, d))
    torch.testing.assert_close(_pgrad(net), ref.combination, rtol=1e-10, atol=1e-14)


def test_one_batched_forward_pass_gives_the_same_step_as_m_passes():
    """Losses from one pass over the m·B stacked inputs, reshaped (m, B) and averaged: the same direction."""
    net = _net()
    x, y = _batch()
    d = _deltas(4, x)
    danskin_backward(_losses(net, x, y, d), net.parameters())
    one_by_one = _pgrad(net).clone()
    logits = net((x + d).flatten(0, 1))
    losses = F.cross_entropy(logits, y.repeat(4), reduction="none").view(4, -1).mean(dim=1)
    danskin_backward(losses, net.parameters())
    torch.testing.assert_close(_pgrad(net), one_by_one, rtol=1e-9, atol=1e-13)


def test_descent_step_is_attack_plus_danskin_backward():
    """DescentStep("ddi-3") with known perturbations writes what danskin_backward writes for their losses."""

    class Fixed:
        def run(self, model, x, y):
            return AttackResult(d, torch.zeros(d.shape[:2], dtype=x.dtype))

    net = _net()
    x, y = _batch()
    d = _deltas(3, x)
    rec_step = DescentStep(net, "ddi-3", attack=Fixed())(x, y)
    composed = _pgrad(net).clone()
    rec = danskin_backward(_losses(net, x, y, d), net.parameters())
    torch.testing.assert_close(_pgrad(net), composed, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rec.norm, rec_step.norm, rtol=1e-12)
    np.testing.assert_allclose(rec.losses, rec_step.losses, rtol=1e-14)
    assert rec.m == rec_step.m and rec.negative_inner_products == rec_step.negative_inner_products


def test_an_unreached_parameter_keeps_grad_none():
    net = _net()
    net.unused = nn.Parameter(torch.ones(2, dtype=torch.float64))
    net.unused.grad = torch.zeros(2, dtype=torch.float64)  # stale: cleared, as the step leaves it
    x, y = _batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=0.1)
    danskin_backward(_losses(net, x, y, _deltas(2, x)), net.parameters())
    assert net.unused.grad is None
    assert all(p.grad is not None for name, p in net.named_parameters() if name != "unused")
    opt.step()
    assert torch.equal(net.unused, torch.ones(2, dtype=torch.float64))


def test_retain_graph():
    net = _net()
    x, y = _batch()
    losses = _losses(net, x, y, _deltas(2, x))
    danskin_backward(losses, net.parameters(), retain_graph=True)
    first = _pgrad(net).clone()
    danskin_backward(losses, net.parameters())  # the graph was kept: the same direction again
    torch.testing.assert_close(_pgrad(net), first, rtol=0, atol=0)
    with pytest.raises(RuntimeError):  # ... and freed by the last call, as backward() frees it
        danskin_backward(losses, net.parameters())


def test_grad_scaler_gives_exactly_the_direction_and_skips_an_overflow():
    net = _net(torch.float32)
    x, y = _batch(dtype=torch.float32)
    d = _deltas(3, x)
    ref = copy.deepcopy(net)
    danskin_backward(_losses(ref, x, y, d), ref.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    rec = danskin_backward(_losses(net, x, y, d), net.parameters(), scaler=scaler)
    assert not rec.skipped
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, 2.0**10 * q.grad, rtol=1e-5, atol=1e-6)
    start = [p.detach().clone() for p in net.parameters()]
    scaler.step(torch.optim.SGD(net.parameters(), lr=0.1))
    scaler.update()
    for p, s, q in zip(net.parameters(), start, ref.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), s - 0.1 * q.grad, rtol=1e-5, atol=1e-6)
    big = torch.amp.GradScaler("cpu", init_scale=3e38)  # S·L overflows float32
    rec = danskin_backward(_losses(net, x, y, d), net.parameters(), scaler=big)
    assert rec.skipped and all(torch.isnan(p.grad).all() for p in net.parameters())
    start = [p.detach().clone() for p in net.parameters()]
    big.step(torch.optim.SGD(net.parameters(), lr=0.1))
    big.update()
    assert all(torch.equal(p, s) for p, s in zip(net.parameters(), start, strict=True))
    assert big.get_scale() < 3e38


def test_distributed_without_a_process_group_is_the_plain_step():
    net = _net()
    x, y = _batch()
    d = _deltas(3, x)
    danskin_backward(_losses(net, x, y, d), net.parameters())
    plain = _pgrad(net).clone()
    danskin_backward(_losses(net, x, y, d), net.parameters(), distributed=True, batch_size=6)
    assert torch.equal(_pgrad(net), plain)


def test_bad_input_gets_a_clear_error():
    net = _net()
    x, y = _batch()
    d = _deltas(2, x)
    params = list(net.parameters())
    with pytest.raises(ValueError, match=r"shape \(m,\)"):
        danskin_backward(F.cross_entropy(net(x), y), params)  # a scalar: m is unknown
    with pytest.raises(ValueError, match=r"shape \(m,\)"):
        danskin_backward(_losses(net, x, y, d).view(2, 1), params)
    with pytest.raises(ValueError, match="m >= 1"):
        danskin_backward(torch.zeros(0, requires_grad=True), params)
    with pytest.raises(TypeError, match="torch.Tensor"):
        danskin_backward([1.0, 2.0], params)
    with pytest.raises(TypeError, match="floating"):
        danskin_backward(torch.tensor([1, 2]), params)
    with pytest.raises(ValueError, match="not attached"):
        danskin_backward(_losses(net, x, y, d).detach(), params)
    with torch.no_grad():
        no_graph = _losses(net, x, y, d)
    with pytest.raises(ValueError, match="not attached"):
        danskin_backward(no_graph, params)
    # an entry detached inside torch.stack still reaches the parameters (through the stack, with gradient
    # zero): the origin is in the hull, the direction is zero, and a warning says why
    part = torch.stack([F.cross_entropy(net(x), y), F.cross_entropy(net(x + d[0]), y).detach()])
    with pytest.warns(RuntimeWarning, match=r"losses\[1\] have gradient exactly zero"):
        rec = danskin_backward(part, params)
    assert not _pgrad(net).any() and rec.norm == 0 and rec.weights.tolist() == [0.0, 1.0]
    other = nn.Linear(2, 2).double()
    with pytest.raises(ValueError, match=r"losses\[0\] does not depend"):
        danskin_backward(_losses(net, x, y, d), other.parameters())
    with pytest.raises(NonFiniteLossError, match="loss is nan") as info:
        danskin_backward(_losses(net, x, y, d) * float("nan"), params)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)
    with pytest.raises(ValueError, match="empty"):
        danskin_backward(_losses(net, x, y, d), [])
    with pytest.raises(TypeError, match=r"params\[1\]"):
        danskin_backward(_losses(net, x, y, d), [params[0], "bias"])
    with pytest.raises(TypeError, match="iterable"):
        danskin_backward(_losses(net, x, y, d), 3)
    with pytest.raises(ValueError, match="does not require grad"):
        danskin_backward(_losses(net, x, y, d), [*params, torch.zeros(2)])
    with pytest.raises(ValueError, match="twice"):
        danskin_backward(_losses(net, x, y, d), [*params, params[0]])
    with pytest.raises(ValueError, match="leaf"):
        danskin_backward(_losses(net, x, y, d), [params[0] * 2])
    with pytest.raises(TypeError, match="GradScaler"):
        danskin_backward(_losses(net, x, y, d), params, scaler=2.0)


def test_write_direction_applies_each_rule():
    net = _net()
    x, y = _batch()
    d = _deltas(4, x)
    d[2] = 0.0  # a set apart: its gradient norm differs from the others
    M = _reference(net, x, y, d)
    params = list(net.parameters())
    blocks = [b.reshape(4, *p.shape) for b, p in zip(M.split([p.numel() for p in params], dim=1), params,
                                                      strict=True)]
    k = int(M.norm(dim=1).argmin())
    rec = write_direction([b.clone() for b in blocks], params, rule="min-norm")
    torch.testing.assert_close(_pgrad(net), M[k], rtol=0, atol=0)
    assert rec.weights.tolist() == [float(i == k) for i in range(4)] and rec.losses == ()
    assert np.isnan(rec.loss) and rec.strategy == ""
    write_direction([b[1:2] for b in blocks], params, rule="single")
    torch.testing.assert_close(_pgrad(net), M[1], rtol=0, atol=0)
    write_direction(blocks, params)  # rule="danskin"
    torch.testing.assert_close(_pgrad(net), -steepest_descent(M).direction, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="one gradient set"):
        write_direction(blocks, params, rule="single")
    with pytest.raises(ValueError, match="rule"):
        write_direction(blocks, params, rule="mean")
    with pytest.raises(ValueError, match="blocks holds"):
        write_direction(blocks[:-1], params)
    with pytest.raises(ValueError, match=r"blocks\[1\] must have shape"):
        write_direction([blocks[0], blocks[1][:3], *blocks[2:]], params)
    with pytest.raises(TypeError, match="list of tensors"):
        write_direction(M, params)
    with pytest.raises(ValueError, match="m = 4"):
        write_direction(blocks, params, losses=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="one flag per parameter"):
        write_direction(blocks, params, used=[True])
    inf = [b.clone() for b in blocks]
    inf[0][0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="gradient"):
        write_direction(inf, params)


def test_rules_are_those_the_variant_table_names():
    assert {f.rule for f in FAMILIES.values()} == set(RULES)
