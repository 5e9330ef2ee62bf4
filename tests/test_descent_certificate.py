"""Theorem 3 certificates, checked against the numerical one-sided derivative on problems with known S*.

The problem is the Figure 1 variant with endpoint maximizers,
g(θ, δ) = δ(θ₁² + (θ₂+1)²) + (1-δ)(θ₁² + (θ₂-1)²) - δ(1-δ) on S = [0, 1]: g is convex in δ, so
φ(θ) = θ₁² + (|θ₂| + 1)², S*(θ) = {1} (θ₂ > 0), {0} (θ₂ < 0), {0, 1} (θ₂ = 0), and
∇_θ g(θ, δ) = (2θ₁, 2θ₂ + 4δ - 2) is Lipschitz in δ with L = 4. Counterexample 2 supplies a case where
the certificate is withheld and descent indeed fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from minmax import (
    certify_descent,
    covering_radius,
    directional_derivative,
    estimate_lipschitz,
    one_sided_derivative,
    steepest_descent,
)

torch = pytest.importorskip("torch")

L_FIG1 = 4.0


def phi_fig1(th):
    return th[0] ** 2 + (abs(th[1]) + 1.0) ** 2


def grads_fig1(theta, deltas):
    deltas = np.asarray(deltas, dtype=np.float64).ravel()
    return np.stack([np.full_like(deltas, 2 * theta[0]), 2 * theta[1] + 4 * deltas - 2], axis=1)


def maximizers_fig1(theta):
    return [0.0, 1.0] if theta[1] == 0 else ([1.0] if theta[1] > 0 else [0.0])


def test_theorem_3_certified_directions_descend():
    rng = np.random.default_rng(0)
    outcomes = {"certified": 0, "withheld": 0, "withheld_ascent": 0}
    for trial in range(150):
        theta2 = 0.0 if trial % 2 else rng.choice([-1, 1]) * rng.uniform(0.02, 0.2)
        theta = np.array([rng.uniform(-1, 1), theta2])
        s_star = np.array(maximizers_fig1(theta))
        # Approximate maximizers near each true one (sometimes missing one), plus stray points of S.
        near = [np.clip(d + rng.uniform(-1, 1, size=2) * rng.uniform(0, 0.4), 0, 1) for d in s_star]
        if len(near) == 2 and trial % 5 == 0:
            near = near[:1]
        finite = np.concatenate([*near, rng.uniform(0, 1, size=int(rng.integers(0, 2)))])
        grads = grads_fig1(theta, finite)
        res = steepest_descent(grads)
        if res.stationary:
            continue
        eps = covering_radius(s_star[:, None], finite[:, None])
        cert = certify_descent(grads, res.direction, lipschitz=L_FIG1, radius=eps)
        assert cert.margin == pytest.approx(cert.bound - cert.slope)
        num = one_sided_derivative(phi_fig1, theta, res.direction)
        # The inequality behind Theorem 3 holds in every case: D_γ φ <= max_i <γ, g_i> + L ε.
        assert num.estimate <= cert.slope + L_FIG1 * eps + 1e-8
        # ... and Danskin over the exact S* agrees with the numerical limit.
        exact = directional_derivative(grads_fig1(theta, s_star), res.direction)
        assert num.estimate == pytest.approx(exact, abs=1e-8)
        if cert.certified:
            outcomes["certified"] += 1
            assert num.estimate + num.error < 0  # a true descent direction
            assert -num.estimate >= cert.margin - 1e-8
        else:
            outcomes["withheld"] += 1
            outcomes["withheld_ascent"] += bool(num.estimate > 0)
    # Both outcomes occur, and some withheld directions really are ascent directions.
    assert outcomes["certified"] >= 20 and outcomes["withheld"] >= 10 and outcomes["withheld_ascent"] >= 1


def test_theorem_3_withheld_on_counterexample_2():
    # At θ = 0, S* = {0, 1}; a finite set near δ = 0 only misses the maximizer δ = 1.
    u, v = np.array([1.0, 0.0]), np.array([-0.6, 0.8])
    phi = lambda th: max(float(th @ u), float(th @ v))  # noqa: E731
    finite = np.array([0.0, 0.05])
    grads = v + finite[:, None] * (u - v)  # ∇_θ g(0, δ) = δu + (1-δ)v
    res = steepest_descent(grads)
    eps = covering_radius(np.array([[0.0], [1.0]]), finite[:, None])
    assert eps == pytest.approx(0.95)
    L = estimate_lipschitz(lambda d: v + d[0] * (u - v), np.linspace(0, 1, 11)[:, None])
    assert L == pytest.approx(np.linalg.norm(u - v), rel=1e-12)
    cert = certify_descent(grads, res.direction, lipschitz=L, radius=eps)
    assert cert.slope < 0  # over the finite set, γ* looks like descent...
    assert not cert.certified and cert.margin < 0
    num = one_sided_derivative(phi, np.zeros(2), res.direction)
    assert num.estimate - num.error > 0  # ...but it ascends: withholding was right
    # Adding a point near δ = 1 makes the certificate hold, and the direction then descends.
    finite = np.array([0.0, 0.05, 0.97])
    grads = v + finite[:, None] * (u - v)
    res = steepest_descent(grads)
    eps = covering_radius(np.array([[0.0], [1.0]]), finite[:, None])
    cert = certify_descent(grads, res.direction, lipschitz=L, radius=eps)
    assert cert.certified
    assert one_sided_derivative(phi, np.zeros(2), res.direction).estimate < 0


def test_certificate_backends(device):
    theta = np.array([0.7, 0.0])
    grads = grads_fig1(theta, [0.02, 0.99])
    ref = certify_descent(grads, steepest_descent(grads).direction, lipschitz=L_FIG1, radius=0.02)
    t = torch.tensor(grads, dtype=torch.float32, device=device)
    res = steepest_descent([t[:, :1], t[:, 1:]])
    cert = certify_descent([t[:, :1], t[:, 1:]], res.direction, lipschitz=L_FIG1, radius=0.02)
    assert cert.certified == ref.certified is True
    assert cert.slope == pytest.approx(ref.slope, abs=1e-6)


def test_certify_descent_bad_input():
    grads = np.array([[1.0, 0.0], [0.0, 1.0]])
    gamma = -np.ones(2) / np.sqrt(2)
    ok = certify_descent(grads, gamma, lipschitz=0.0, radius=0.0)
    assert ok.certified and ok.bound == 0.0  # L ε = 0: the finite set is exact
    with pytest.raises(ValueError, match="zero"):
        certify_descent(grads, np.zeros(2), lipschitz=1.0, radius=0.1)
    with pytest.raises(ValueError, match="lipschitz"):
        certify_descent(grads, gamma, lipschitz=-1.0, radius=0.1)
    with pytest.raises(ValueError, match="radius"):
        certify_descent(grads, gamma, lipschitz=1.0, radius=-0.1)
    with pytest.raises(ValueError, match="radius"):
        certify_descent(grads, gamma, lipschitz=1.0, radius=np.inf)
    with pytest.raises(ValueError, match="lipschitz"):
        certify_descent(grads, gamma, lipschitz=np.nan, radius=0.1)
    with pytest.raises(TypeError, match="lipschitz"):
        certify_descent(grads, gamma, lipschitz=True, radius=0.1)
    with pytest.raises(ValueError, match="does not match"):
        certify_descent(grads, np.ones(3) / np.sqrt(3), lipschitz=1.0, radius=0.1)
    with pytest.raises(ValueError, match="m = 0"):
        certify_descent(np.zeros((0, 2)), gamma, lipschitz=1.0, radius=0.1)
    with pytest.raises(TypeError, match="same kind"):
        certify_descent(torch.tensor(grads), gamma, lipschitz=1.0, radius=0.1)
    # float32 round-off of a normalized vector is accepted.
    g32 = torch.tensor(gamma, dtype=torch.float32)
    assert certify_descent(torch.tensor(grads, dtype=torch.float32), g32, lipschitz=0.1, radius=0.1).certified


def test_covering_radius():
    rng = np.random.default_rng(1)
    ref, fin = rng.standard_normal((50, 3)), rng.standard_normal((7, 3))
    brute = max(min(np.linalg.norm(r - f) for f in fin) for r in ref)
    assert covering_radius(ref, fin) == pytest.approx(brute, rel=1e-14)
    brute_inf = max(min(np.abs(r - f).max() for f in fin) for r in ref)
    assert covering_radius(ref, fin, norm="linf") == pytest.approx(brute_inf, rel=1e-14)
    assert covering_radius(fin[:3], fin) == 0.0
    # Points may be arrays of any shape (one per row).
    assert covering_radius(ref.reshape(50, 3, 1), fin.reshape(7, 3, 1)) == pytest.approx(brute, rel=1e-14)
    with pytest.raises(ValueError, match="empty"):
        covering_radius(np.zeros((0, 3)), fin)
    with pytest.raises(ValueError, match="empty"):
        covering_radius(ref, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="same shape"):
        covering_radius(ref, fin[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        covering_radius(np.full((1, 3), np.nan), fin)
    with pytest.raises(ValueError, match="norm"):
        covering_radius(ref, fin, norm="l1")


def test_estimate_lipschitz_is_a_lower_estimate():
    # ∇_θ g(θ, δ) = (sin δ, cos δ) on [0, 2]: the true constant is 1 (unit speed on a circle).
    grad = lambda d: np.array([np.sin(d[0]), np.cos(d[0])])  # noqa: E731
    coarse = estimate_lipschitz(grad, np.linspace(0, 2, 4)[:, None])
    fine = estimate_lipschitz(grad, np.linspace(0, 2, 200)[:, None])
    assert coarse < fine <= 1.0 + 1e-12
    assert fine == pytest.approx(1.0, abs=1e-4)
    deltas = np.linspace(0, 2, 9)[:, None]
    pre = np.stack([grad(d) for d in deltas])
    assert estimate_lipschitz(pre, deltas) == estimate_lipschitz(grad, deltas)
    # Linear in δ: exact, in either norm of δ.
    A = np.array([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]])
    pts = np.random.default_rng(2).standard_normal((30, 2))
    est = estimate_lipschitz(lambda d: A @ d, pts)
    assert est <= np.linalg.norm(A, 2) + 1e-12
    with pytest.raises(ValueError, match="distinct"):
        estimate_lipschitz(grad, np.ones((3, 1)))
    with pytest.raises(ValueError, match="gradients for"):
        estimate_lipschitz(pre[:3], deltas)
    with pytest.raises(TypeError, match="callable"):
        estimate_lipschitz(3.0, deltas)
    with pytest.raises(ValueError, match="norm"):
        estimate_lipschitz(grad, deltas, norm="l3")


@pytest.mark.parametrize("scale", [1e-6, 1 + 1e-9, 2.0, 1e6])
def test_certificate_is_invariant_to_the_scale_of_gamma(scale):
    # Theorem 3 holds for any nonzero gamma when the bound is scaled by its norm: the certificate of
    # c * gamma is that of gamma, for every c > 0.
    grads = grads_fig1(np.array([0.7, 0.0]), [0.02, 0.99])
    gamma = steepest_descent(grads).direction
    unit = certify_descent(grads, gamma, lipschitz=L_FIG1, radius=0.02)
    scaled = certify_descent(grads, scale * gamma, lipschitz=L_FIG1, radius=0.02)
    assert scaled.certified == unit.certified
    assert scaled.slope == pytest.approx(unit.slope, rel=1e-12)
    assert scaled.norm == pytest.approx(scale * unit.norm, rel=1e-12)


def test_a_nearly_unit_bfloat16_gamma_is_not_certified_by_its_length():
    # A bfloat16 gamma normalized in bfloat16 has norm 1.0078 (1 + 2^-7). Along the unit direction its
    # slope is exactly -1 > -L eps = -1.005: no certificate. The unscaled test read the slope as -1.0078 and
    # certified it.
    gamma = torch.tensor([-1.0078125, 0.0], dtype=torch.bfloat16)
    grads = torch.tensor([[1.0, 0.0], [1.0, 0.5]], dtype=torch.bfloat16)
    cert = certify_descent(grads, gamma, lipschitz=1.0, radius=1.005)
    assert cert.norm == 1.0078125 and cert.slope == -1.0
    assert not cert.certified and cert.margin < 0
    assert certify_descent(grads, gamma, lipschitz=1.0, radius=0.995).certified  # -1 < -0.995
