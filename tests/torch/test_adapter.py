"""AttackAdapter: an attack that returns x_adv (torchattacks' convention) used where minmax expects δ."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minmax import steepest_descent
from minmax.torch.adapter import AttackAdapter
from minmax.torch.attacks import PGD, AttackResult
from minmax.torch.descent import DescentStep

EPS = 8 / 255


class TorchattacksStylePGD:
    """Written like a torchattacks attack: holds the model, ``atk(images, labels)`` returns adversarial
    images; random start, signed steps, projection onto the ε-ball and [0, 1], model in eval mode."""

    def __init__(self, model, eps=EPS, alpha=2 / 255, steps=3):
        self.model, self.eps, self.alpha, self.steps = model, eps, alpha, steps

    def __call__(self, images, labels):
        training = self.model.training
        self.model.eval()
        images = images.clone().detach()
        adv = (images + torch.empty_like(images).uniform_(-self.eps, self.eps)).clamp(0, 1)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            cost = F.cross_entropy(self.model(adv), labels)
            (grad,) = torch.autograd.grad(cost, adv)
            adv = adv.detach() + self.alpha * grad.sign()
            adv = (images + (adv - images).clamp(-self.eps, self.eps)).clamp(0, 1).detach()
        self.model.train(training)
        return adv


def _net(norm="none"):
    torch.manual_seed(0)
    layer = {"batch": nn.BatchNorm2d(4), "none": nn.Identity()}[norm]
    net = nn.Sequential(nn.Conv2d(3, 4, 3), layer, nn.CELU(), nn.Flatten(), nn.Linear(36, 3))
    return net.double().train()


def _batch(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 5, 5, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (b,), generator=g)


def test_perturbations_are_the_attacks_examples_minus_x_and_losses_score_them():
    net = _net("batch")
    x, y = _batch()
    atk = TorchattacksStylePGD(net)
    torch.manual_seed(3)
    expected = [atk(x, y) for _ in range(3)]
    torch.manual_seed(3)
    result = AttackAdapter(atk, restarts=3, eps=EPS).run(net, x, y)
    assert isinstance(result, AttackResult) and result.deltas.shape == (3, *x.shape)
    ulp = torch.finfo(x.dtype).eps
    for i in range(3):  # x + (x_adv - x) is x_adv up to the rounding of the two operations
        torch.testing.assert_close(x + result.deltas[i], expected[i], rtol=0, atol=2 * ulp)
    assert not torch.equal(result.deltas[0], result.deltas[1])  # each call drew its own random start
    assert float(result.deltas.abs().max()) <= EPS + 4 * ulp
    net.eval()
    with torch.no_grad():
        scored = torch.stack([F.cross_entropy(net(x + d), y, reduction="none") for d in result.deltas])
    torch.testing.assert_close(result.losses, scored, rtol=1e-12, atol=0)
    assert all(m.training for m in _net("batch").modules())  # the fixture is in train mode ...
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    AttackAdapter(atk, restarts=2).run(net, x, y)
    assert all(m.training for m in net.modules())  # ... and the adapter restores it,
    for k, v in net.state_dict().items():  # never moving BatchNorm's running statistics
        assert torch.equal(v, before[k]), k


def test_call_returns_perturbations_like_pgd():
    """Both conventions side by side: minmax's attacks return δ, the adapter turns x_adv into δ."""
    net = _net()
    x, y = _batch()
    deltas = PGD(eps=EPS, steps=2, restarts=2)(net, x, y)
    assert deltas.shape == (2, *x.shape) and float(deltas.abs().max()) <= EPS * (1 + 1e-12)
    adapter = AttackAdapter(lambda a, b: (a + deltas[0]).clamp(0, 1), restarts=1)
    torch.testing.assert_close(adapter(net, x, y)[0], (x + deltas[0]).clamp(0, 1) - x, rtol=0, atol=0)


def test_descent_step_trains_with_a_wrapped_attack():
    """DescentStep(attack=AttackAdapter(...)): the Danskin direction at the wrapped attack's examples."""
    net = _net()
    x, y = _batch()
    adapter = AttackAdapter(TorchattacksStylePGD(net), restarts=3)
    torch.manual_seed(5)
    rec = DescentStep(net, "ddi-3", attack=adapter)(x, y)
    torch.manual_seed(5)
    examples = [TorchattacksStylePGD(net)(x, y) for _ in range(3)]
    rows = []
    for e in examples:
        ref = copy.deepcopy(net)
        F.cross_entropy(ref(e), y).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in ref.parameters()]))
    direction = steepest_descent(torch.stack(rows)).direction
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in net.parameters()]), -direction,
                               rtol=1e-8, atol=1e-12)
    assert rec.m == 3 and rec.slope < 0
    # pgd-max reads the adapter's per-sample losses to keep each sample's worst restart
    assert DescentStep(net, "pgd-max-3", attack=adapter)(x, y).m == 1


def test_bad_attacks_and_arguments_get_clear_errors():
    net = _net()
    x, y = _batch()
    with pytest.raises(TypeError, match="callable"):
        AttackAdapter("pgd")
    with pytest.raises(ValueError, match="restarts"):
        AttackAdapter(lambda a, b: a, restarts=0)
    with pytest.raises(ValueError, match="eps"):
        AttackAdapter(lambda a, b: a, eps=0.0)
    with pytest.raises(ValueError, match="norm"):
        AttackAdapter(lambda a, b: a, norm="l1")
    with pytest.raises(TypeError, match="loss"):
        AttackAdapter(lambda a, b: a, loss=3)
    cases = [
        (lambda a, b: a.numpy(), TypeError, "tensor"),
        (lambda a, b: a[:3], ValueError, "shape"),
        (lambda a, b: a * float("nan"), ValueError, "non-finite"),
        (lambda a, b: torch.full_like(a, -EPS / 2), ValueError, r"\[0, 1\]"),  # δ instead of x_adv
        (lambda a, b: (a + 2 * EPS).clamp(0, 1), ValueError, "linf norm"),
    ]
    for attack, error, match in cases:
        with pytest.raises(error, match=match):
            AttackAdapter(attack, eps=EPS).run(net, x, y)
    # l∞ distance 0.05 (within ε = 0.1) but l2 distance 0.05·sqrt(75) per sample: outside the l2 ball
    with pytest.raises(ValueError, match="l2 norm"):
        AttackAdapter(lambda a, b: (a + 0.05).clamp(0, 1), eps=0.1, norm="l2").run(net, x * 0.5, y)
    with pytest.raises(ValueError, match="per-sample"):
        AttackAdapter(lambda a, b: a, loss=lambda logits, t: logits.sum()).run(net, x, y)
