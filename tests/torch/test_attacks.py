"""Tests of minmax.torch.attacks: feasibility, strength, restarts, honest best iterate, side effects."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minmax.torch.attacks import FGSM, PGD, AttackResult, worst_case

EPS = 8 / 255
N_CLASSES = 4
SHAPE = (3, 8, 8)


def _data(n, *, seed=0, device="cpu"):
    """Separable data: each class is a fixed random pattern in [0.4, 0.6] plus noise."""
    protos = 0.4 + 0.2 * torch.rand(N_CLASSES, *SHAPE, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    x = (protos[y] + 0.1 * torch.randn(n, *SHAPE, generator=g)).clamp(0, 1)
    return x.to(device), y.to(device)


def _net():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, N_CLASSES),
    )


_TRAINED = {}


def trained(device):
    """A tiny conv net with BatchNorm, trained for a few steps until it fits the data; in train mode."""
    if device not in _TRAINED:
        torch.manual_seed(0)
        model = _net().to(device)
        x, y = _data(64, device=device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(30):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        model.zero_grad(set_to_none=True)
        _TRAINED[device] = model
    model = _TRAINED[device]
    model.train()
    return model


def _in_ball(deltas, x, norm, eps, rtol=1e-6):
    adv = x + deltas
    assert adv.min() >= 0 and adv.max() <= 1
    flat = deltas.flatten(2)
    if norm == "linf":
        assert flat.abs().max() <= eps
    else:
        assert torch.linalg.vector_norm(flat, dim=2).max() <= eps * (1 + rtol)


@pytest.mark.parametrize("norm, eps, alpha", [("linf", EPS, 2 / 255), ("l2", 0.5, 0.1)])
def test_feasible_and_stronger_than_clean(device, norm, eps, alpha):
    model = trained(device)
    x, y = _data(16, seed=1, device=device)
    # images touching the box's faces, so the [0, 1] constraint is active
    x[:4] = x[:4].round()
    result = PGD(eps=eps, alpha=alpha, steps=10, norm=norm, restarts=3).run(model, x, y)
    assert result.deltas.shape == (3, 16, *SHAPE) and result.losses.shape == (3, 16)
    assert result.deltas.device == x.device
    _in_ball(result.deltas, x, norm, eps)
    model.eval()
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
    assert (result.losses > clean).float().mean() >= 0.9
    assert result.losses.mean() > 2 * clean.mean()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_reaches_the_closed_form_maximizer_of_a_linear_model(device, norm):
    # two classes, logits = W x: CE grows with the margin (w_1 - w_0)·δ for y = 0, so the maximizer over the
    # ball (x in the interior: the box is inactive) is ε·sign(w) (l∞) or ε·w/‖w‖ (l2), w = w_1 - w_0.
    torch.manual_seed(3)
    lin = torch.nn.Linear(12, 2, bias=False).to(device)
    model = torch.nn.Sequential(torch.nn.Flatten(), lin)
    x = 0.3 + 0.4 * torch.rand(5, 3, 2, 2, device=device)
    y = torch.zeros(5, dtype=torch.long, device=device)
    w = (lin.weight[1] - lin.weight[0]).detach().reshape(3, 2, 2)
    eps = 0.1
    expected = eps * (w.sign() if norm == "linf" else w / w.norm())
    deltas = PGD(eps=eps, alpha=eps / 4, steps=8, norm=norm, random_start=False)(model, x, y)
    torch.testing.assert_close(deltas[0], expected.expand(5, -1, -1, -1), rtol=1e-5, atol=1e-6)


def test_l2_projection_is_exact_on_the_ball_box_intersection(device):
    # one PGD step from δ = 0 gives Π(α g/‖g‖); the exact projection is clip(s·v) with ‖.‖ = ε, which is
    # closer to v than "project onto the ball, then clip" whenever the box is active.
    torch.manual_seed(0)
    x = torch.tensor([[0.0, 0.0, 0.5, 0.5]], device=device)
    target = torch.tensor([[-1.0, -1.0, 1.0, 0.5]], device=device)  # the gradient's direction

    def loss(logits, _y):
        return logits[:, 0]

    model = torch.nn.Linear(4, 1, bias=False).to(device)
    with torch.no_grad():
        model.weight.copy_(target)
    eps, alpha = 0.5, 10.0
    delta = PGD(eps=eps, alpha=alpha, steps=1, norm="l2", random_start=False, loss=loss)(model, x, x[:, 0])[0]
    v = alpha * target / target.norm()
    # independent reference: 1-D search over s of clip(s v) on a fine grid
    s = torch.linspace(0, 1, 200001, device=device, dtype=torch.float64)[:, None]
    cand = torch.clamp(s * v.double(), -x.double(), 1 - x.double())
    cand = cand[cand.norm(dim=1) <= eps]
    best = cand[(cand - v.double()).norm(dim=1).argmin()]
    assert abs(float(delta.norm()) - eps) < 1e-5
    torch.testing.assert_close(delta[0].double(), best, atol=1e-4, rtol=0)
    naive = (v * min(1.0, eps / float(v.norm()))).clamp(-x, 1 - x)
    assert (delta - v).norm() < (naive - v).norm() - 1e-3


def _bisection_reference(v, x, eps):
    """Nearest point of {‖d‖ <= ε, 0 <= x + d <= 1} to v in float64: clip(s v), the largest feasible s."""
    v, lo, hi = v.double(), -x.double(), 1 - x.double()
    s_lo, s_hi = torch.zeros(v.shape[0], dtype=torch.float64), torch.ones(v.shape[0], dtype=torch.float64)
    for _ in range(80):
        mid = (s_lo + s_hi) / 2
        ok = torch.clamp(mid.view(-1, 1, 1, 1) * v, lo, hi).flatten(1).norm(dim=1) <= eps
        s_lo, s_hi = torch.where(ok, mid, s_lo), torch.where(ok, s_hi, mid)
    return torch.clamp(s_lo.view(-1, 1, 1, 1) * v, lo, hi)


@pytest.mark.parametrize("eps, scale", [(0.5, 1.0), (3.0, 10.0), (20.0, 100.0)])
def test_l2_projection_matches_a_float64_bisection(eps, scale):
    g = torch.Generator().manual_seed(int(eps))
    x = torch.rand(32, 3, 8, 8, generator=g) ** 4  # many pixels near 0, so the box is active
    x[:, 0, :2] = 1.0
    v = scale * torch.randn(32, 3, 8, 8, generator=g) / 8 + 0.1 * scale * torch.rand(32, 3, 8, 8, generator=g)
    d = PGD(eps=eps, norm="l2")._project(v, x)
    ref = _bisection_reference(v, x, eps)
    assert ((x + d >= 0) & (x + d <= 1)).all()
    assert d.flatten(1).norm(dim=1).max() <= eps * (1 + 1e-6)
    torch.testing.assert_close(d.double(), ref, rtol=0, atol=1e-5 * eps)


def test_restarts_are_distinct_and_batched(device):
    model = trained(device)
    x, y = _data(6, device=device)
    seen = []
    hook = model[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        result = PGD(restarts=4, steps=3).run(model, x, y)
    finally:
        hook.remove()
    assert seen == [4 * 6] * 4  # one batch of m·B per step, plus the scoring of the last iterate
    flat = result.deltas.flatten(2)
    for i in range(4):
        for j in range(i + 1, 4):
            assert ((flat[i] - flat[j]).abs().amax(dim=1) > 0).all()


def test_returned_losses_are_honest_and_best_beats_last(device):
    model = trained(device)
    x, y = _data(16, seed=2, device=device)
    kw = dict(eps=EPS, alpha=6 / 255, steps=6, random_start=False, restarts=1)  # large steps oscillate
    best = PGD(**kw).run(model, x, y)
    last = PGD(keep_best=False, **kw).run(model, x, y)
    assert (best.losses >= last.losses).all()
    model.eval()
    with torch.no_grad():
        for r in (best, last):
            recomputed = F.cross_entropy(model(x + r.deltas[0]), y, reduction="none")
            torch.testing.assert_close(r.losses[0], recomputed, rtol=1e-5, atol=1e-6)


def test_worst_case_picks_the_highest_loss_restart(device):
    model = trained(device)
    x, y = _data(8, device=device)
    result = PGD(restarts=3, steps=2).run(model, x, y)
    worst = worst_case(result)
    idx = result.losses.argmax(dim=0)
    for b in range(8):
        assert torch.equal(worst[b], result.deltas[idx[b], b])
    with pytest.raises(TypeError, match="AttackResult"):
        worst_case((result.deltas, result.losses))
    assert isinstance(result, AttackResult) and result.restarts == 3


def test_mode_and_batchnorm_statistics_restored(device):
    model = trained(device)
    model[1].eval()  # a mixed-mode model: restored module by module, not with one model.train()
    bn = model[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x, y = _data(8, device=device)
    modes = []
    hook = model[1].register_forward_pre_hook(lambda m, _a: modes.append(m.training))
    try:
        PGD(restarts=2, steps=2)(model, x, y)
        assert modes and not any(modes)  # eval during the attack
        assert model.training and not model[1].training and model[0].training
        for k, v in bn.state_dict().items():
            assert torch.equal(v, before[k]), k
        modes.clear()
        model.train()
        PGD(restarts=2, steps=2, eval_mode=False)(model, x, y)
        assert modes and all(modes) and model.training
        # documented: in train mode the attack's forward passes move the running statistics
        assert not torch.equal(bn.running_mean, before["running_mean"])
    finally:
        hook.remove()
        bn.load_state_dict(before)


def test_no_parameter_gradients_left_and_works_under_no_grad(device):
    model = trained(device)
    x, y = _data(8, device=device)
    params = list(model.parameters())
    assert all(p.grad is None for p in params)
    with torch.no_grad():
        deltas = PGD(steps=2, restarts=2)(model, x, y)
    assert not deltas.requires_grad
    assert all(p.grad is None for p in params)
    for p in params:
        p.grad = torch.full_like(p, 0.5)
    FGSM(restarts=2)(model, x, y)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in params)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_one_over_t_schedule_is_applied(device, norm):
    attack = PGD(alpha=0.01, steps=12, decay_after=4, norm=norm, random_start=False, eps=1.0,
                 loss=lambda logits, _y: logits[:, 0])
    expected = [0.01] * 4 + [0.01 * 4 / t for t in range(5, 13)]
    assert attack.step_sizes == pytest.approx(expected, rel=1e-12)
    assert PGD(alpha=0.01, steps=5).step_sizes == pytest.approx([0.01] * 5)
    # a linear loss has a constant ascent direction: the final δ is the sum of the steps actually taken
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1)).to(device)
    x = torch.full((2, 1, 2, 2), 0.5, device=device)
    delta = attack(model, x, torch.zeros(2, device=device))[0]
    w = model[1].weight.detach().reshape(1, 2, 2)
    unit = w.sign() if norm == "linf" else w / w.norm()
    torch.testing.assert_close(delta, (sum(expected) * unit).expand(2, -1, -1, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm, eps", [("linf", EPS), ("l2", 0.5)])
def test_fgsm_fast_stays_feasible_and_random_start_is_uniform(device, norm, eps):
    model = trained(device)
    x, y = _data(16, device=device)
    fgsm = FGSM(eps=eps, restarts=2, norm=norm)
    assert fgsm.steps == 1 and fgsm.alpha == pytest.approx(10 / 255)
    result = fgsm.run(model, x, y)
    _in_ball(result.deltas, x, norm, eps)
    # the random start itself: x = 0.5 keeps the box inactive
    start = PGD(eps=eps, norm=norm, restarts=1).draw_start((1, 4000, 1, 1, 2), device=device)[0]
    torch.testing.assert_close(PGD(eps=eps, norm=norm)._project(start, torch.full_like(start, 0.5)), start)
    if norm == "linf":
        assert start.abs().max() <= eps and start.mean().abs() < 0.05 * eps
        assert start.std().item() == pytest.approx(eps / math.sqrt(3), rel=0.05)  # U(-ε, ε)
    else:  # uniform in the 2-dimensional disc: P(‖δ‖ <= r) = (r/ε)^2
        r = start.flatten(1).norm(dim=1) / eps
        assert (r <= 1 + 1e-6).all()
        assert (r <= 0.5).float().mean().item() == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize("make", [lambda: PGD(steps=3, restarts=3, decay_after=2),
                                  lambda: PGD(steps=2, restarts=2, norm="l2", eps=0.5),
                                  lambda: PGD(steps=2, restarts=2, random_start=False),
                                  lambda: FGSM(restarts=2)])
def test_an_explicit_start_from_draw_start_replays_the_attack_exactly(device, make):
    model = trained(device)
    x, y = _data(6, device=device)
    x[0] = 1.0  # a saturated image: the projection of the start is active
    attack = make()
    torch.manual_seed(7)
    ref = attack.run(model, x, y)
    after = torch.rand(3, device=device)  # the RNG's state after the attack
    torch.manual_seed(7)
    start = attack.draw_start((attack.restarts, *x.shape), device=device, dtype=x.dtype)
    got = attack.run(model, x, y, start=start)
    assert torch.equal(torch.rand(3, device=device), after)  # run(start=...) draws nothing
    assert torch.equal(got.deltas, ref.deltas) and torch.equal(got.losses, ref.losses)
    assert torch.equal(attack(model, x, y, start=start), ref.deltas)


def test_the_start_of_a_sub_batch_is_its_rows_of_the_union_draw(device):
    """What a rank of a distributed run does: draw the union batch's start, attack its own rows."""
    model = trained(device)
    x, y = _data(9, device=device)
    attack = PGD(steps=2, restarts=2, norm="l2", eps=0.5)
    torch.manual_seed(3)
    union = attack.run(model, x, y)
    for rows in (slice(0, 4), slice(4, 9)):
        torch.manual_seed(3)
        start = attack.draw_start((2, *x.shape), device=device)[:, rows]
        part = attack.run(model, x[rows], y[rows], start=start)
        torch.testing.assert_close(part.deltas, union.deltas[:, rows], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(part.losses, union.losses[:, rows], rtol=1e-5, atol=1e-6)


def test_draw_start_depends_on_the_shape_only_and_bad_starts_raise():
    attack = PGD(eps=0.25, restarts=2)
    torch.manual_seed(0)
    a = attack.draw_start((2, 3, 4), dtype=torch.float64)
    torch.manual_seed(0)
    b = attack.draw_start((2, 3, 4), dtype=torch.float64)
    assert torch.equal(a, b) and a.dtype == torch.float64 and a.abs().max() <= 0.25
    assert torch.equal(PGD(random_start=False, restarts=2).draw_start((2, 3, 4)), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="shape"):
        attack.draw_start((6, 4))
    with pytest.raises(TypeError, match="floating"):
        attack.draw_start((2, 3, 4), dtype=torch.int64)
    model = _net()
    x, y = _data(3)
    with pytest.raises(ValueError, match="shape"):
        attack.run(model, x, y, start=torch.zeros(1, *x.shape))
    with pytest.raises(ValueError, match="non-finite"):
        attack.run(model, x, y, start=torch.full((2, *x.shape), float("nan")))
    with pytest.raises(TypeError, match="start"):
        attack.run(model, x, y, start=[0.0])


def test_bad_input_raises():
    model = _net()
    x, y = _data(4)
    for kw, match in [
        (dict(eps=0), "eps"), (dict(eps=-1.0), "eps"), (dict(eps=float("nan")), "eps"),
        (dict(alpha=0), "alpha"),
        (dict(steps=0), "steps"), (dict(restarts=0), "restarts"), (dict(norm="l1"), "norm"),
        (dict(decay_after=0), "decay_after"), (dict(loss="mse"), "loss"),
    ]:
        with pytest.raises(ValueError, match=match):
            PGD(**kw)
    with pytest.raises(TypeError, match="steps"):
        PGD(steps=2.5)
    with pytest.raises(TypeError, match="loss"):
        PGD(loss=3)
    with pytest.raises(ValueError, match="restarts"):
        FGSM(restarts=0)
    attack = PGD(steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(model, x * 2, y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(model, x - 0.5, y)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        attack(model, bad, y)
    with pytest.raises(ValueError, match="batch size"):
        attack(model, x, y[:3])
    with pytest.raises(TypeError, match="floating"):
        attack(model, (x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="per-sample"):
        PGD(steps=1, loss=lambda logits, y: logits.sum())(model, x, y)
    with pytest.raises(RuntimeError, match="inference_mode"), torch.inference_mode():
        attack(model, x, y)


def test_attacks_a_built_model_with_normalization(device):
    from nets import build_model

    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(1, 28, 28), activation="celu", norm="group", mean=0.5, std=0.25,
                        channels=(8, 8), hidden=8).to(device)
    x, y = torch.rand(2, 1, 28, 28, device=device), torch.tensor([1, 2], device=device)
    for norm, eps in (("linf", EPS), ("l2", 0.5)):
        result = PGD(eps=eps, norm=norm, steps=2, restarts=2).run(model, x, y)
        _in_ball(result.deltas, x, norm, eps)
        # from δ = 0 the best iterate can never be worse than the clean input
        result = PGD(eps=eps, norm=norm, steps=2, random_start=False).run(model, x, y)
        with torch.no_grad():
            clean = F.cross_entropy(model(x), y, reduction="none")
        assert (result.losses >= clean - 1e-6).all()
