"""The m parameter gradients: loop and torch.func agree with an independent float64 reference."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minmax import gram
from minmax.torch.gradients import commit_buffers, resolve_strategy, set_gradients, trainable_parameters


def _net(norm: str = "batch", dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    layer = {"batch": nn.BatchNorm2d(4), "group": nn.GroupNorm(2, 4), "none": nn.Identity()}[norm]
    net = nn.Sequential(nn.Conv2d(3, 4, 3), layer, nn.CELU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    return net.to(dtype).train()


def _data(m=3, b=6, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(1)
    xs = torch.rand(m, b, 3, 6, 6, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (b,), generator=g)
    return xs.to(device), y.to(device)


def _reference(net, xs, y):
    """Independent path: loss.backward() into p.grad on a copy, flattened and concatenated, per set."""
    rows, losses = [], []
    for x in xs:
        ref = copy.deepcopy(net)
        loss = F.cross_entropy(ref(x), y)
        loss.backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in ref.parameters()]).double())
        losses.append(loss.item())
    M = torch.stack(rows)
    return M, M @ M.T, losses


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("strategy", ["loop", "func"])
def test_gradients_and_gram_match_float64_reference(strategy, norm, device):
    net = _net(norm).to(device)
    xs, y = _data(device=device)
    res = set_gradients(net, xs, y, strategy=strategy)
    M_ref, G_ref, losses_ref = _reference(net, xs, y)
    assert res.strategy == strategy
    assert [tuple(b.shape) for b in res.blocks] == [(3, *p.shape) for p in net.parameters()]
    flat = torch.cat([b.reshape(3, -1) for b in res.blocks], dim=1)
    torch.testing.assert_close(flat, M_ref, rtol=1e-12, atol=1e-13)
    G = gram(res.blocks)
    assert G.dtype == torch.float64
    torch.testing.assert_close(G, G_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(res.losses.cpu().numpy(), losses_ref, rtol=1e-6)
    assert res.finite


def test_loop_and_func_agree_per_set_targets_and_buffers():
    net = _net("batch")
    xs, _ = _data()
    ys = torch.randint(0, 3, (3, 6), generator=torch.Generator().manual_seed(5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = set_gradients(net, xs, ys, strategy="loop")
    b = set_gradients(net, xs, ys, strategy="func")
    for u, v in zip(a.blocks, b.blocks, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-14)
    names = {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert a.buffers.keys() == b.buffers.keys() == names
    for k in a.buffers:
        torch.testing.assert_close(a.buffers[k], b.buffers[k])
    # the passes themselves leave the model's buffers and p.grad alone
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())


def test_commit_buffers_is_one_running_statistics_update():
    """Σ α_i (one update with set i) = one update with the α-weighted batch statistics (affinity)."""
    net = _net("batch")
    xs, y = _data()
    bn = net[1]
    res = set_gradients(net, xs, y, strategy="loop")
    alpha = np.array([0.2, 0.0, 0.8])
    inputs = [net[0](x).detach() for x in xs]  # the BatchNorm inputs of each set
    mu = bn.momentum
    mean = sum(a * z.mean(dim=(0, 2, 3)) for a, z in zip(alpha, inputs, strict=True))
    var = sum(a * z.var(dim=(0, 2, 3)) for a, z in zip(alpha, inputs, strict=True))  # unbiased, as BN
    r_mean, r_var = bn.running_mean.clone(), bn.running_var.clone()
    commit_buffers(net, res.buffers, alpha)
    torch.testing.assert_close(bn.running_mean, (1 - mu) * r_mean + mu * mean)
    torch.testing.assert_close(bn.running_var, (1 - mu) * r_var + mu * var)
    assert int(bn.num_batches_tracked) == 1
    # one-hot weights: exactly the ordinary train-mode update with that set
    ref = _net("batch")
    ref(xs[2])
    net2 = _net("batch")
    commit_buffers(net2, set_gradients(net2, xs, y, strategy="func").buffers, [0.0, 0.0, 1.0])
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(net2.state_dict()[k], v)


def test_eval_mode_tracks_no_buffers():
    net = _net("batch").eval()
    xs, y = _data()
    for strategy in ("loop", "func"):
        assert set_gradients(net, xs, y, strategy=strategy).buffers is None


def test_unused_parameter_gets_zero_not_stale():
    net = _net("none")
    net.add_module("unused", nn.Linear(2, 2))
    net.unused.weight.grad = torch.full_like(net.unused.weight, 7.0)
    xs, y = _data()

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = net[:5]
            self.unused = net.unused

        def forward(self, x):
            return self.body(x)

    model = Wrapped()
    for strategy in ("loop", "func"):
        res = set_gradients(model, xs, y, strategy=strategy)
        assert torch.count_nonzero(res.blocks[-2]) == 0 and torch.count_nonzero(res.blocks[-1]) == 0


def test_loss_scale_is_undone_and_overflow_is_flagged():
    net = _net("group", dtype=torch.float32)
    xs, y = _data(dtype=torch.float32)
    plain = set_gradients(net, xs, y, strategy="loop")
    scaled = set_gradients(net, xs, y, strategy="loop", loss_scale=2.0**12)
    for u, v in zip(plain.blocks, scaled.blocks, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(plain.losses, scaled.losses)
    assert scaled.finite
    for strategy in ("loop", "func"):
        over = set_gradients(net, xs, y, strategy=strategy, loss_scale=3e38)
        assert not over.finite


def test_autocast_bfloat16_close_to_float32():
    net = _net("group", dtype=torch.float32)
    xs, y = _data(dtype=torch.float32)
    ref = gram(set_gradients(net, xs, y, strategy="loop").blocks)
    for strategy in ("loop", "func"):
        G = gram(set_gradients(net, xs, y, strategy=strategy, amp_dtype=torch.bfloat16).blocks)
        assert G.dtype == torch.float64
        torch.testing.assert_close(G, ref, rtol=0.05, atol=0.05 * float(ref.diagonal().max()))


def test_bad_input():
    net = _net("none")
    xs, y = _data()
    with pytest.raises(ValueError, match="strategy"):
        set_gradients(net, xs, y, strategy="vmap")
    with pytest.raises(ValueError, match="batch size"):
        set_gradients(net, xs, y[:4])
    with pytest.raises(ValueError, match="empty"):
        set_gradients(net, [], y)
    with pytest.raises(ValueError, match="loss_scale"):
        set_gradients(net, xs, y, loss_scale=0.0)
    frozen = _net("none").requires_grad_(False)
    with pytest.raises(ValueError, match="require grad"):
        set_gradients(frozen, xs, y)
    with pytest.raises(TypeError, match="Module"):
        trainable_parameters(lambda x: x)
    assert resolve_strategy("auto", "cpu") == "loop"
    assert resolve_strategy("auto", "cuda") == "func"
