"""The training step: each variant does what its definition says; the Danskin step descends."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minmax import steepest_descent
from minmax.torch.attacks import AttackResult
from minmax.torch.descent import VARIANTS, DescentStep, NonFiniteLossError, VariantSpec, parse_variant

EPS = 8 / 255


def _net(norm="none", dtype=torch.float64):
    torch.manual_seed(0)
    layer = {"batch": nn.BatchNorm2d(4), "group": nn.GroupNorm(2, 4), "none": nn.Identity()}[norm]
    net = nn.Sequential(nn.Conv2d(3, 4, 3), layer, nn.CELU(), nn.Flatten(), nn.Linear(36, 3))
    return net.to(dtype).train()


def _batch(b=6, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 5, 5, generator=g, dtype=dtype) * 0.8 + 0.1
    return x, torch.randint(0, 3, (b,), generator=g)


class FixedAttack:
    """Returns given perturbations (and per-sample losses, computed or given): makes the sets known."""

    def __init__(self, deltas, losses=None):
        self.deltas, self.losses = deltas, losses

    def run(self, model, x, y):
        losses = self.losses
        if losses is None:
            mode = model.training
            model.eval()  # like the real attacks: no running-statistics update
            with torch.no_grad():
                losses = torch.stack([F.cross_entropy(model(x + d), y, reduction="none")
                                      for d in self.deltas])
            model.train(mode)
        return AttackResult(self.deltas, losses)


def _deltas(m, x, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(m, *x.shape, generator=g, dtype=x.dtype) * 2 - 1) * EPS


def _grads(net, sets, y):
    """Reference gradients, one flat float64 row per set, via loss.backward on a copy."""
    rows, losses = [], []
    for s in sets:
        ref = copy.deepcopy(net)
        loss = F.cross_entropy(ref(s), y)
        loss.backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in ref.parameters()]))
        losses.append(loss.item())
    return torch.stack(rows), np.array(losses)


def _pgrad(net):
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def _robust_loss(net, sets, y):
    with torch.no_grad():
        return max(F.cross_entropy(net(s), y).item() for s in sets)


@pytest.mark.parametrize("strategy", ["loop", "func"])
def test_danskin_step_matches_steepest_descent_and_descends(strategy):
    net = _net()
    x, y = _batch()
    d = _deltas(4, x)
    step = DescentStep(net, "ddi-4", attack=FixedAttack(d), strategy=strategy)
    rec = step(x, y)
    M, losses = _grads(net, x + d, y)
    ref = steepest_descent(M)
    # p.grad is -γ*: the optimizer's θ - lr p.grad moves along γ*
    torch.testing.assert_close(_pgrad(net), -ref.direction, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rec.losses, losses, rtol=1e-12)
    assert not ref.stationary and rec.slope < 0
    np.testing.assert_allclose(rec.slope, -rec.norm, rtol=1e-9)
    np.testing.assert_allclose(rec.norm, ref.norm, rtol=1e-9)
    gamma = -_pgrad(net)
    # the linearized robust loss max_i L_i + t<g_i, γ> decreases at rate slope = max_i <g_i, γ> = -‖Mα*‖
    np.testing.assert_allclose(float((M @ gamma).max()), rec.slope, rtol=1e-8)
    assert np.isclose(float(gamma.norm()), 1.0)
    # ... and so does the true finite-set robust loss, for a small step
    before = _robust_loss(net, x + d, y)
    with torch.no_grad():
        for p in net.parameters():
            p -= 1e-4 * p.grad
    assert _robust_loss(net, x + d, y) < before
    assert rec.negative_inner_products == int(np.sum(np.triu((M @ M.T).numpy(), 1) < 0))


def test_normalize_false_writes_min_norm_combination():
    net = _net()
    x, y = _batch()
    d = _deltas(3, x)
    DescentStep(net, "ddi-3", attack=FixedAttack(d), normalize=False)(x, y)
    ref = steepest_descent(_grads(net, x + d, y)[0])
    torch.testing.assert_close(_pgrad(net), ref.combination, rtol=1e-9, atol=1e-12)


def test_pgd_min_picks_lowest_norm_gradient():
    net = _net()
    x, y = _batch()
    d = _deltas(5, x)
    d[3] = 0.0  # one set differs: its gradient norm differs from the others
    rec = DescentStep(net, "pgd-min-5", attack=FixedAttack(d))(x, y)
    M, _ = _grads(net, x + d, y)
    norms = M.norm(dim=1)
    k = int(norms.argmin())
    assert np.sort(norms.numpy())[1] > norms[k] * (1 + 1e-6)  # the choice is not a tie
    torch.testing.assert_close(_pgrad(net), M[k], rtol=1e-10, atol=1e-13)
    assert rec.weights.tolist() == [float(i == k) for i in range(5)]
    G = (M @ M.T).numpy()
    np.testing.assert_allclose(rec.slope, -np.min(G[:, k]) / np.sqrt(G[k, k]), rtol=1e-9)


def test_pgd_max_takes_gradient_at_per_sample_worst():
    net = _net()
    x, y = _batch(b=4)
    d = _deltas(3, x)
    losses = torch.tensor([[0.0, 5.0, 1.0, 0.0], [2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 3.0, 0.5]])
    DescentStep(net, "pgd-max-3", attack=FixedAttack(d, losses))(x, y)
    worst = torch.stack([d[1, 0], d[0, 1], d[2, 2], d[2, 3]])
    M, _ = _grads(net, (x + worst).unsqueeze(0), y)
    torch.testing.assert_close(_pgrad(net), M[0], rtol=1e-10, atol=1e-13)


def test_ddi_comb_assembles_batches_from_bit_vectors():
    net = _net()
    x, y = _batch(b=5)
    d = _deltas(2, x)
    torch.manual_seed(123)
    rec = DescentStep(net, "ddi-comb-4", attack=FixedAttack(d))(x, y)
    torch.manual_seed(123)
    bits = torch.randint(0, 2, (4, 5))
    sets = torch.stack([x + torch.stack([d[int(b), n] for n, b in enumerate(row)]) for row in bits])
    M, losses = _grads(net, sets, y)
    np.testing.assert_allclose(rec.losses, losses, rtol=1e-12)
    torch.testing.assert_close(_pgrad(net), -steepest_descent(M).direction, rtol=1e-9, atol=1e-12)


def test_ddi_decay_schedule_and_exact_resume():
    net = _net()
    x, y = _batch()
    step = DescentStep(net, "ddi-decay-4", steps=1, total_steps=3)
    assert [step(x, y).m for _ in range(3)] == [4, 3, 2]
    state = step.state_dict()
    again = DescentStep(net, "ddi-decay-4", steps=1, total_steps=3)
    again.load_state_dict(state)
    assert again.current_m() == step.current_m() == 1
    assert state == {"variant": "ddi-decay-4", "t": 3}  # no QP warm start: nothing else to restore
    again.load_state_dict({**state, "weights": np.ones(2) / 2})  # a state saved with the old warm start
    assert again.t == 3
    with pytest.raises(ValueError, match="variant"):
        DescentStep(net, "ddi-4").load_state_dict(state)


@pytest.mark.parametrize("name", ["pgd", "pgd-max-3", "pgd-min-3", "pgd-4", "pgd-4-1/t", "fast", "fast-max-3",
                                  "ddi-3", "fast-ddi-3", "ddi-comb-3", "ddi-decay-3"])
def test_every_variant_writes_fresh_gradient_into_every_parameter(name):
    net = _net("batch", dtype=torch.float32)
    x, y = _batch(dtype=torch.float32)
    for p in net.parameters():
        p.grad = torch.full_like(p, 1e6)  # a stale value the step must overwrite
    step = DescentStep(net, name, steps=2, total_steps=10)
    rec = step(x, y)
    first = [p.grad.clone() for p in net.parameters()]
    for g in first:
        assert torch.isfinite(g).all() and not torch.any(g == 1e6)
        assert g.numel() == 1 or g.std() > 0  # never one constant per parameter
    assert int(net[1].num_batches_tracked) == 1  # running statistics move once per step
    step(*_batch(dtype=torch.float32, seed=9))
    assert all(not torch.equal(a, p.grad) for a, p in zip(first, net.parameters(), strict=True))
    assert len(rec.losses) == rec.m and rec.weights.shape == (rec.m,) and np.isclose(rec.weights.sum(), 1)
    assert set(rec.times) >= {"attack", "gradients", "gram", "qp", "total"}
    assert parse_variant(name).family in VARIANTS


@pytest.mark.parametrize("name", ["pgd", "ddi-comb-3", "fast-ddi-2"])
def test_distributed_without_a_process_group_is_the_plain_step(name):
    """One process with distributed=True draws the (union = local) start itself: the same step exactly."""
    x, y = _batch()
    grads, states = [], []
    for dist in (False, True):
        net = _net()
        torch.manual_seed(4)
        DescentStep(net, name, steps=2, distributed=dist)(x, y)
        grads.append([p.grad.clone() for p in net.parameters()])
        states.append(torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert torch.equal(*states)


def test_pgd_running_statistics_are_those_of_plain_training():
    net = _net("batch")
    x, y = _batch()
    d = _deltas(1, x)
    plain = copy.deepcopy(net)
    plain(x + d[0])
    DescentStep(net, "pgd", attack=FixedAttack(d))(x, y)
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v)


def test_grad_scaler_applies_exactly_the_direction_and_skips_overflow():
    net = _net("group", dtype=torch.float32)
    x, y = _batch(dtype=torch.float32)
    d = _deltas(3, x)
    ref = copy.deepcopy(net)
    DescentStep(ref, "ddi-3", attack=FixedAttack(d))(x, y)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    rec = DescentStep(net, "ddi-3", attack=FixedAttack(d), scaler=scaler)(x, y)
    assert not rec.skipped
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, 2.0**10 * q.grad, rtol=1e-5, atol=1e-6)
    start = [p.detach().clone() for p in net.parameters()]
    scaler.step(opt)
    scaler.update()
    for p, s, q in zip(net.parameters(), start, ref.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), s - 0.1 * q.grad, rtol=1e-5, atol=1e-6)
    # an overflowing scale: NaN in p.grad, the scaler skips the update and lowers the scale
    big = torch.amp.GradScaler("cpu", init_scale=3e38)
    rec = DescentStep(net, "ddi-3", attack=FixedAttack(d), scaler=big)(x, y)
    assert rec.skipped and all(torch.isnan(p.grad).all() for p in net.parameters())
    start = [p.detach().clone() for p in net.parameters()]
    big.step(torch.optim.SGD(net.parameters(), lr=0.1))
    big.update()
    assert all(torch.equal(p, s) for p, s in zip(net.parameters(), start, strict=True))
    assert big.get_scale() < 3e38


@pytest.mark.parametrize("name, expected", [
    ("pgd", ("pgd", 1, None, False)), ("pgd-max-10", ("pgd-max", 10, None, False)),
    ("pgd-min-10", ("pgd-min", 10, None, False)), ("pgd-70", ("pgd-long", 1, 70, False)),
    ("pgd-70-1/t", ("pgd-long", 1, 70, True)), ("fast", ("fast", 1, None, False)),
    ("fast-max-10", ("fast-max", 10, None, False)), ("ddi-10", ("ddi", 10, None, False)),
    ("fast-ddi-10", ("fast-ddi", 10, None, False)), ("ddi-comb-10", ("ddi-comb", 10, None, False)),
    ("DDI-Decay-10", ("ddi-decay", 10, None, False)),
])
def test_parse_variant_accepts_paper_names(name, expected):
    s = parse_variant(name)
    assert (s.family, s.m, s.steps, s.decay) == expected


@pytest.mark.parametrize("bad", ["", "pgd-max", "ddi", "ddi-0", "pgd-min-0", "pgd-max-x", "ddi-10-1/t",
                                 "sgd", "pgd-70-1/s", "fast-10"])
def test_parse_variant_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="accepted forms"):
        parse_variant(bad)
    with pytest.raises(TypeError):
        parse_variant(10)


def test_bad_input():
    net = _net()
    x, y = _batch()
    with pytest.raises(ValueError, match=">= 1"):
        DescentStep(net, "ddi-0")
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            DescentStep(net, "pgd", eps=eps)
    with pytest.raises(ValueError, match="require grad"):
        DescentStep(_net().requires_grad_(False), "ddi-3")
    with pytest.raises(ValueError, match="total_steps"):
        DescentStep(net, "ddi-decay-3")
    with pytest.raises(ValueError, match="strategy"):
        DescentStep(net, "pgd", strategy="fast")
    step = DescentStep(net, "ddi-3", steps=1)
    with pytest.raises(ValueError, match="batch size"):
        step(x, y[:4])
    with pytest.raises(TypeError):
        step(x.numpy(), y)
    nan_loss = DescentStep(net, "ddi-3", steps=1, loss=lambda out, t: F.cross_entropy(out, t) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        nan_loss(x, y)
    assert issubclass(NonFiniteLossError, FloatingPointError)


def test_resume_gives_the_same_parameters_as_no_interruption():
    batches = [_batch(seed=s) for s in range(4)]

    def run(net, step, opt, items):
        for x, y in items:
            step(x, y)
            opt.step()

    torch.manual_seed(5)
    net = _net()
    step = DescentStep(net, "ddi-decay-3", steps=2, total_steps=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    run(net, step, opt, batches)

    torch.manual_seed(5)
    first = _net()
    step1 = DescentStep(first, "ddi-decay-3", steps=2, total_steps=4)
    run(first, step1, torch.optim.SGD(first.parameters(), lr=0.1), batches[:2])
    saved = copy.deepcopy({"model": first.state_dict(), "step": step1.state_dict(),
                           "rng": torch.get_rng_state()})
    resumed = _net()
    resumed.load_state_dict(saved["model"])
    step2 = DescentStep(resumed, "ddi-decay-3", steps=2, total_steps=4)
    step2.load_state_dict(saved["step"])
    torch.set_rng_state(saved["rng"])
    run(resumed, step2, torch.optim.SGD(resumed.parameters(), lr=0.1), batches[2:])
    for p, q in zip(resumed.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(family="sgd", m=1), "family"), (dict(family="ddi", m=0), ">= 1"),
    (dict(family="pgd", m=3), "m = 1"), (dict(family="pgd-long", m=1), "steps"),
    (dict(family="ddi", m=3, steps=20), "steps"),
    (dict(family="ddi", m=3, decay=True), "decay")])
def test_variant_spec_refuses_what_no_variant_is(kwargs, match):
    """A family outside VARIANTS used to run silently (m attacks, restart 0's gradient, no QP)."""
    with pytest.raises(ValueError, match=match):
        VariantSpec("hand-made", **kwargs)
    assert VariantSpec("hand-made", "ddi", 3).danskin  # a valid hand-made spec is accepted


def test_numpy_scalars_are_accepted_as_the_attacks_accept_them():
    net = _net()
    x, y = _batch()
    step = DescentStep(net, "ddi-3", eps=np.float32(EPS), step_size=np.float64(2 / 255), steps=np.int64(2))
    assert step(x, y).m == 3 and isinstance(step.eps, float) and isinstance(step.steps, int)
    with pytest.raises(ValueError, match="steps"):
        DescentStep(net, "ddi-3", steps=np.int64(0))
    with pytest.raises(TypeError, match="steps"):
        DescentStep(net, "ddi-3", steps=2.5)


@pytest.mark.parametrize("strategy", ["loop", "func"])
@pytest.mark.parametrize("variant", ["pgd", "ddi-3"])
def test_a_parameter_the_loss_never_reaches_keeps_grad_none(strategy, variant):
    """As loss.backward() leaves it: weight decay must not move a parameter that gets no gradient."""
    net = _net()
    net.unused = nn.Parameter(torch.ones(3, dtype=torch.float64))  # Sequential's forward never reads it
    x, y = _batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=0.1, momentum=0.9)
    DescentStep(net, variant, steps=1, strategy=strategy)(x, y)
    assert net.unused.grad is None
    assert all(p.grad is not None for name, p in net.named_parameters() if name != "unused")
    opt.step()
    torch.testing.assert_close(net.unused, torch.ones(3, dtype=torch.float64), rtol=0, atol=0)
    net.unused.grad = torch.zeros(3, dtype=torch.float64)  # a stale tensor from elsewhere is cleared too
    DescentStep(net, variant, steps=1, strategy=strategy)(x, y)
    assert net.unused.grad is None


def test_a_dead_parameter_with_zero_gradient_keeps_a_zero_tensor():
    """Reached but with gradient zero (a ReLU that is off everywhere): PyTorch gives zeros, not None."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(75, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        net[1].bias.fill_(-1e3)  # every hidden unit off: the first layer's gradient is exactly zero
    x, y = _batch()
    for strategy in ("loop", "func"):
        DescentStep(net, "ddi-3", steps=1, strategy=strategy)(x, y)
        assert net[1].weight.grad is not None and not net[1].weight.grad.any(), strategy


def test_a_data_parallel_model_is_unwrapped():
    net = _net()
    x, y = _batch()
    torch.manual_seed(4)
    DescentStep(nn.DataParallel(net), "ddi-3", steps=1)(x, y)
    wrapped = _pgrad(net).clone()
    torch.manual_seed(4)
    step = DescentStep(net, "ddi-3", steps=1)
    step(x, y)
    assert step.model is net and not step.distributed
    torch.testing.assert_close(_pgrad(net), wrapped, rtol=0, atol=0)
