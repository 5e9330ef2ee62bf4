"""Danskin's theorem (eq. 4) and Theorem 2, checked against the numerical limits of Definition 1.

The problems are written in closed form here (independently of minmax.problems):

* counterexample 1: g = θδ on [-1, 1], φ(θ) = |θ|, S*(0) = [-1, 1];
* counterexample 2: g = δ⟨θ,u⟩ + (1-δ)⟨θ,v⟩ + δ(δ-1) on [0, 1] with obtuse unit u, v. g is convex in δ,
  so the max is at an endpoint: φ(θ) = max(⟨θ,u⟩, ⟨θ,v⟩), and S*(0) = {0, 1} with gradients v and u;
* the Figure 1 variant g = δ(θ₁² + (θ₂+1)²) + (1-δ)(θ₁² + (θ₂-1)²) - δ(1-δ): φ(θ) = θ₁² + (|θ₂|+1)².
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minmax import (
    directional_derivative,
    one_sided_derivative,
    steepest_descent,
    two_sided_derivative,
)

torch = pytest.importorskip("torch")


def obtuse_pair(d: int, angle: float, seed: int):
    """Unit u, v in R^d with angle(u, v) = angle."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, 2)))
    u, w = q[:, 0], q[:, 1]
    return u, np.cos(angle) * u + np.sin(angle) * w


def phi_cex2(u, v):
    return lambda th: max(float(th @ u), float(th @ v))


def phi_fig1(th):
    return th[0] ** 2 + (abs(th[1]) + 1.0) ** 2


def grads_fig1(theta, deltas):
    """∇_θ g(θ, δ) = (2θ₁, 2θ₂ + 4δ - 2) for each δ."""
    deltas = np.asarray(deltas, dtype=np.float64)
    return np.stack([np.full_like(deltas, 2 * theta[0]), 2 * theta[1] + 4 * deltas - 2], axis=1)


def maximizers_fig1(theta):
    return [0.0, 1.0] if theta[1] == 0 else ([1.0] if theta[1] > 0 else [0.0])


# --- counterexample 1 and Lemma 1 -------------------------------------------------------------------


def test_counterexample_1_gradient_at_a_maximizer_ascends():
    phi = lambda th: abs(th[0])  # noqa: E731  (max over δ ∈ [-1, 1] of θδ)
    grad_at_1 = np.array([1.0])  # ∇_θ g(0, δ=1) = δ = 1
    res = one_sided_derivative(phi, np.zeros(1), -grad_at_1)
    assert res.estimate - res.error > 0  # Corollary 1 fails: -∇ increases φ
    assert res.estimate == pytest.approx(1.0, abs=1e-12)
    # Danskin over a sample of S*(0) = [-1, 1] gives the same value; over {δ = 1} alone it would not.
    s_star = np.linspace(-1, 1, 41)[:, None]
    assert directional_derivative(s_star, -grad_at_1) == pytest.approx(res.estimate, abs=1e-12)
    assert directional_derivative(np.array([[1.0]]), -grad_at_1) == -1.0


@pytest.mark.parametrize("gamma", [1.0, -1.0, 0.3])
def test_lemma_1_both_one_sided_derivatives_positive(gamma):
    res = two_sided_derivative(lambda th: abs(th[0]), np.zeros(1), np.array([gamma]))
    assert res.forward.estimate - res.forward.error > 0
    assert res.backward.estimate - res.backward.error > 0
    assert res.asymmetry == pytest.approx(2 * abs(gamma), abs=1e-12)  # no two-sided limit


# --- counterexample 2 -------------------------------------------------------------------------------


@given(
    d=st.integers(2, 5),
    angle=st.floats(np.pi / 2 + 0.05, np.pi - 0.05),
    seed=st.integers(0, 2**31 - 1),
)
def test_counterexample_2(d, angle, seed):
    u, v = obtuse_pair(d, angle, seed)
    phi, theta = phi_cex2(u, v), np.zeros(d)
    grads = np.stack([v, u])  # ∇_θ g(0, δ) at δ = 0 and δ = 1
    checks = {"-u": (-u, 1), "-v": (-v, 1), "-(u+v)": (-(u + v), -1)}
    for name, (gamma, sign) in checks.items():
        num = one_sided_derivative(phi, theta, gamma)
        assert sign * (num.estimate - sign * num.error) > 0, name
        assert directional_derivative(grads, gamma) == pytest.approx(num.estimate, abs=1e-9), name
    res = steepest_descent(grads)
    assert res.success and not res.stationary
    np.testing.assert_allclose(res.direction, -(u + v) / np.linalg.norm(u + v), atol=1e-10)
    np.testing.assert_allclose(res.weights, [0.5, 0.5], atol=1e-8)
    assert res.slope == pytest.approx(directional_derivative(grads, res.direction), abs=1e-12)
    assert res.slope == pytest.approx(-np.linalg.norm(u + v) / 2, rel=1e-12)


@given(th1=st.floats(-2, 2), th2=st.sampled_from([0.0, 0.3, -0.7, 1.5]), ang=st.floats(0, 2 * np.pi))
def test_danskin_matches_numerical_limit_with_curvature(th1, th2, ang):
    theta, gamma = np.array([th1, th2]), np.array([np.cos(ang), np.sin(ang)])
    exact = directional_derivative(grads_fig1(theta, maximizers_fig1(theta)), gamma)
    num = one_sided_derivative(phi_fig1, theta, gamma)
    assert num.estimate == pytest.approx(exact, abs=1e-8)
    assert abs(num.estimate - exact) <= 10 * num.error + 1e-12


# --- Theorem 2 ----------------------------------------------------------------------------------------


def sphere(d: int) -> tuple[np.ndarray, float]:
    """Dense unit vectors in R^d and the angular spacing between neighbours."""
    if d == 2:
        n = 200_000
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], axis=1), 2 * np.pi / n
    n = 200_000  # Fibonacci lattice
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    r, lon = np.sqrt(1 - z**2), np.pi * (1 + 5**0.5) * k
    return np.stack([r * np.cos(lon), r * np.sin(lon), z], axis=1), 2.0 * np.sqrt(4 * np.pi / n)


@pytest.mark.parametrize("d", [2, 3])
def test_theorem_2_direction_attains_min_over_sphere(d):
    rng = np.random.default_rng(d)
    dirs, spacing = sphere(d)
    n_stationary = 0
    for trial in range(12):
        m = int(rng.integers(1, 7))
        grads = rng.standard_normal((m, d)) * rng.uniform(0.1, 10)
        if trial % 3 == 0:
            grads[:, 0] += 3.0  # origin outside the hull: a descent direction exists
        res = steepest_descent(grads)
        sampled = (dirs @ grads.T).max(axis=1)  # max_i <γ, g_i> for each sampled unit γ
        best = float(sampled.min())
        scale = float(np.linalg.norm(grads, axis=1).max())
        if res.stationary:
            n_stationary += 1
            assert best >= -1e-12 * scale  # no direction decreases every g_i
            assert not np.any(res.direction)
            continue
        assert np.linalg.norm(res.direction) == pytest.approx(1.0, abs=1e-14)
        slope = directional_derivative(grads, res.direction)
        assert slope == pytest.approx(res.slope, abs=1e-12 * scale)
        assert best >= res.slope - 1e-12 * scale  # no sampled direction beats γ*
        assert best <= res.slope + spacing * scale  # and γ* is the (approximate) minimizer
    assert 0 < n_stationary < 12


def test_stationary_rule_and_zero_direction():
    # The origin is in the hull: g_2 = -2 g_1, so (2/3) g_1 + (1/3) g_2 = 0.
    res = steepest_descent(np.array([[0.0, 1.0], [0.0, -2.0]], dtype=np.float32))
    assert res.stationary and res.qp.value <= res.qp.tolerance
    assert res.direction.dtype == np.float32 and not np.any(res.direction)
    # All-zero gradients (θ a smooth stationary point).
    assert steepest_descent(np.zeros((3, 4))).stationary
    # Off the hull by a relative 1e-6: certified non-stationary, and γ* still decreases both.
    grads = np.array([[1e-6, 1.0], [1e-6, -2.0]])
    res = steepest_descent(grads)
    assert not res.stationary and res.success
    np.testing.assert_allclose(res.direction, [-1.0, 0.0], atol=1e-9)
    assert res.qp.value - res.qp.gap > 0  # f* > 0 certified
    assert directional_derivative(grads, res.direction) == pytest.approx(-1e-6, rel=1e-9)


def test_single_gradient_and_layouts():
    g = np.array([[3.0, 0.0, 4.0]])
    res = steepest_descent(g)
    np.testing.assert_allclose(res.direction, [-0.6, 0.0, -0.8], rtol=1e-15)
    assert res.slope == pytest.approx(-5.0)
    rng = np.random.default_rng(3)
    flat = rng.standard_normal((5, 7))
    blocks = [flat[:, :3].reshape(5, 3, 1), flat[:, 3:]]
    single, split = steepest_descent(flat), steepest_descent(blocks)
    assert [b.shape for b in split.direction] == [(3, 1), (4,)]
    np.testing.assert_allclose(np.concatenate([b.ravel() for b in split.direction]), single.direction,
                               atol=1e-12)
    assert directional_derivative(blocks, split.direction) == pytest.approx(single.slope, abs=1e-12)
    with_gram = steepest_descent(flat, gram=flat @ flat.T, method="wolfe")
    np.testing.assert_allclose(with_gram.direction, single.direction, atol=1e-12)


def test_backends_agree(device):
    rng = np.random.default_rng(4)
    flat = rng.standard_normal((6, 9)) + 0.5
    ref = steepest_descent(flat)
    t = torch.tensor(flat, dtype=torch.float32, device=device)
    res = steepest_descent([t[:, :4], t[:, 4:].reshape(6, 5, 1)])
    assert all(isinstance(b, torch.Tensor) and b.dtype == torch.float32 and b.device.type == device
               for b in res.direction + res.combination)
    direction = torch.cat([b.reshape(-1) for b in res.direction]).cpu().numpy()
    np.testing.assert_allclose(direction, ref.direction, atol=1e-5)
    assert abs(np.linalg.norm(direction.astype(np.float64)) - 1) <= 4 * np.finfo(np.float32).eps
    assert isinstance(res.weights, np.ndarray) and res.weights.dtype == np.float64
    t64 = torch.tensor(flat, device=device)
    res64 = steepest_descent(t64)
    np.testing.assert_allclose(res64.direction.cpu().numpy(), ref.direction, atol=1e-12)
    assert directional_derivative(t64, res64.direction) == pytest.approx(ref.slope, abs=1e-12)
    assert isinstance(directional_derivative(t64, res64.direction), float)
    # torch's precomputed Gram matrix is accepted (the adapter passes one).
    res_g = steepest_descent(t64, gram=t64 @ t64.T)
    np.testing.assert_allclose(res_g.direction.cpu().numpy(), ref.direction, atol=1e-12)


def test_array_api_strict():
    xp = array_api_strict
    rng = np.random.default_rng(5)
    flat = rng.standard_normal((4, 6)) + 1.0
    ref = steepest_descent(flat)
    a = xp.asarray(flat)
    res = steepest_descent([a[:, :2], a[:, 2:]])
    assert all(isinstance(b, type(a)) for b in res.direction)
    got = np.concatenate([np.asarray(b) for b in res.direction])
    np.testing.assert_allclose(got, ref.direction, atol=1e-12)
    gamma = xp.asarray(ref.direction)
    assert directional_derivative(a, gamma) == pytest.approx(ref.slope, abs=1e-12)
    assert steepest_descent(xp.asarray(np.array([[0.0, 1.0], [0.0, -1.0]]))).stationary


# --- bad input of the gradient functions ----------------------------------------------------------------


def test_gradient_functions_bad_input():
    grads = np.ones((3, 4))
    with pytest.raises(ValueError, match="does not match"):
        directional_derivative(grads, np.ones(5))
    with pytest.raises(ValueError, match="m = 0"):
        directional_derivative(np.zeros((0, 4)), np.ones(4))
    with pytest.raises(ValueError, match="m = 0"):
        steepest_descent(np.zeros((0, 4)))
    with pytest.raises(TypeError, match="same kind"):
        directional_derivative(torch.ones(3, 4, dtype=torch.float64), np.ones(4))
    with pytest.raises(TypeError, match="list of 2"):
        directional_derivative([grads[:, :2], grads[:, 2:]], np.ones(4))
    with pytest.raises(ValueError, match="blocks"):
        directional_derivative([grads[:, :2], grads[:, 2:]], [np.ones(2)])
    with pytest.raises(ValueError, match="NaN"):
        directional_derivative(grads, np.array([np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        steepest_descent(grads, gram=np.eye(2))
    with pytest.raises(ValueError, match="unknown method"):
        steepest_descent(grads, method="newton")
    # A plain list of numbers is accepted for the (m, d) layout.
    assert directional_derivative(grads, [1, 0, 0, 0]) == 1.0
