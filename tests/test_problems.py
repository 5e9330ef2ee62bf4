"""The paper's synthetic problems: closed-form phi and S* against brute force, gradients against finite
differences, Danskin's formula over the exact S* against numerical one-sided derivatives, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from minmax import one_sided_derivative
from minmax.maxfunc import MaxFunction
from minmax.problems import AppendixA, Counterexample1, Counterexample2, Figure1
from minmax.sets import Box, FiniteSet

RNG = np.random.default_rng(12345)
CE2 = Counterexample2([1.0, 0.0], [-0.6, 0.8])
ONE_D = [Counterexample1(), CE2, Counterexample2.random(3, RNG), Figure1(), Figure1(curvature=1.0),
         Figure1(curvature=-3.0)]
ALL = [*ONE_D, AppendixA.random(2, 3, RNG, lam=0.5), AppendixA([[0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]])]


def _thetas(p, rng, n=8):
    """Random points plus the points where maximizers tie (the kinks the paper is about)."""
    pts = [rng.normal(size=p.theta_dim) for _ in range(n)] + [np.zeros(p.theta_dim)]
    if isinstance(p, Figure1):
        pts += [np.array([0.7, 0.0]), np.array([-1.2, 0.0])]
    if isinstance(p, Counterexample2):
        w = p.u + p.v  # <w, u> = <w, v>: a tie between the endpoints away from 0
        pts.append(w)
    return pts


def _extreme_points(S):
    """Points whose gradients' convex hull is that of the gradients over all of S* (grad_theta is affine in
    delta for every problem here)."""
    if isinstance(S, FiniteSet):
        return S.points
    assert isinstance(S, Box) and S.dim == 1
    return np.array([S.lower, S.upper])


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_is_a_max_function(p):
    assert isinstance(p, MaxFunction)


@pytest.mark.parametrize("p", ONE_D, ids=repr)
def test_phi_and_maximizers_match_a_fine_grid(p):
    rng = np.random.default_rng(0)
    grid = np.linspace(p.set.lower[0], p.set.upper[0], 2001)
    for theta in _thetas(p, rng):
        vals = np.array([p.value(theta, [d]) for d in grid])
        phi = p.phi(theta)
        S_star = p.maximizers(theta)
        # phi is the max: no grid point above it, and it is attained on S* (exactly for finite S*).
        assert vals.max() <= phi + 1e-12
        pts = _extreme_points(S_star)
        for d in pts:
            assert p.value(theta, d) == pytest.approx(phi, abs=1e-12)
        if not isinstance(p, Figure1) or p.curvature >= 0:
            # the maximizers lie on the grid: the grid max is phi, and S* is exactly where g attains it
            assert vals.max() == pytest.approx(phi, abs=1e-12)
            attained = vals >= phi - 1e-12
            inside = S_star.contains(grid[:, None], atol=1e-12)
            np.testing.assert_array_equal(attained, inside)


@pytest.mark.parametrize("p", ALL[-2:], ids=repr)
def test_appendix_a_phi_and_maximizers(p):
    rng = np.random.default_rng(1)
    k = p.set.dim
    for theta in _thetas(p, rng):
        phi = p.phi(theta)
        samples = p.set.sample(2000, rng)
        vals = np.array([p.value(theta, d) for d in samples])
        assert vals.max() < phi  # strictly convex: interior points are never maximizers
        vertex_vals = np.array([p.value(theta, e) for e in np.eye(k)])
        assert vertex_vals.max() == pytest.approx(phi, abs=1e-12)
        S_star = p.maximizers(theta)
        np.testing.assert_array_equal(S_star.contains(np.eye(k)), vertex_vals >= phi - 1e-12)
    # at theta = 0 every vertex is a maximizer and each -u_i is an ascent direction (obtuse partners)
    assert len(p.maximizers(np.zeros(p.theta_dim))) == k
    for u in p.vectors:
        assert np.max(p.vectors @ -u) > 0


def _central_difference(f, x, h=1e-6):
    out = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_gradients_match_finite_differences(p):
    rng = np.random.default_rng(2)
    for _ in range(5):
        theta = rng.normal(size=p.theta_dim)
        # interior point of S, away from the boundary (where the entropy derivative blows up)
        delta = 0.8 * p.set.sample(1, rng)[0] + 0.2 * p.set.project(np.zeros(p.set.dim) + 1.0 / p.set.dim)
        gt = _central_difference(lambda t, d=delta: p.value(t, d), theta)
        np.testing.assert_allclose(p.grad_theta(theta, delta), gt, rtol=1e-6, atol=1e-7)
        if p.set.dim > 1:
            # on the simplex only tangent directions are meaningful: compare along e_i - e_j
            g = p.grad_delta(theta, delta)
            for i, j in [(0, 1), (1, p.set.dim - 1)]:
                v = np.zeros(p.set.dim)
                v[i], v[j] = 1.0, -1.0
                h = 1e-6
                fd = (p.value(theta, delta + h * v) - p.value(theta, delta - h * v)) / (2 * h)
                assert g @ v == pytest.approx(fd, rel=1e-6, abs=1e-7)
        else:
            gd = _central_difference(lambda d, t=theta: p.value(t, d), delta)
            np.testing.assert_allclose(p.grad_delta(theta, delta), gd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("p", ALL, ids=repr)
def test_danskin_over_exact_maximizers_matches_numerical_derivative(p):
    # D_gamma phi(theta) = max over S*(theta) of <gamma, grad_theta g>: checks S* and grad_theta together,
    # at the kinks included.
    rng = np.random.default_rng(3)
    for theta in _thetas(p, rng, n=3):
        for _ in range(3):
            gamma = rng.normal(size=p.theta_dim)
            gamma /= np.linalg.norm(gamma)
            pts = _extreme_points(p.maximizers(theta))
            danskin = max(float(gamma @ p.grad_theta(theta, d)) for d in pts)
            est = one_sided_derivative(p.phi, theta, gamma)
            assert est.estimate == pytest.approx(danskin, abs=1e-6)


def test_counterexample_1_claims():
    p = Counterexample1()
    assert p.phi(-0.3) == 0.3
    assert p.maximizers(0.0).contains(np.linspace(-1, 1, 11)[:, None]).all()
    assert p.maximizers(2.0).points.tolist() == [[1.0]]
    # -grad at the maximizer delta = 1 of theta = 0 increases phi = |theta|
    g = p.grad_theta(0.0, 1.0)
    assert one_sided_derivative(p.phi, np.zeros(1), -g).estimate == pytest.approx(1.0)


def test_counterexample_2_claims():
    p = CE2
    theta = np.zeros(2)
    assert p.maximizers(theta).points.tolist() == [[0.0], [1.0]]
    for d in (0.0, 1.0):
        g = p.grad_theta(theta, d)
        assert one_sided_derivative(p.phi, theta, -g).estimate > 0  # ascent, whichever maximizer
    w = -(p.u + p.v) / np.linalg.norm(p.u + p.v)
    assert one_sided_derivative(p.phi, theta, w).estimate == pytest.approx(-np.linalg.norm(p.u + p.v) / 2)


def test_figure1_maximizer_structure():
    # c = 0: linear in delta; at theta_2 = 0 every delta maximizes (the whole interval)
    p = Figure1()
    assert isinstance(p.maximizers([0.3, 0.0]), Box)
    assert p.maximizers([0.3, 1e-300]).points.tolist() == [[1.0]]
    assert p.maximizers([0.3, -1e-300]).points.tolist() == [[0.0]]
    assert p.phi([0.0, 0.0]) == 1.0
    # c = 1: the -delta(1 - delta) term keeps phi but leaves only the two endpoints at theta_2 = 0
    q = Figure1(curvature=1.0)
    assert q.maximizers([0.3, 0.0]).points.tolist() == [[0.0], [1.0]]
    for theta in ([0.3, 0.2], [-1.0, -0.5], [2.0, 0.0]):
        assert q.phi(theta) == p.phi(theta)
        assert q.value(theta, 0.5) < p.value(theta, 0.5)
    # c < 0: unique interior maximizer 1/2 - 2 theta_2 / c
    r = Figure1(curvature=-4.0)
    assert r.maximizers([0.0, 0.25]).points.tolist() == [[0.625]]


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: Counterexample2([1.0, 0.0], [0.0, 1.0]), ValueError, "obtuse"),
        (lambda: Counterexample2([1.0, 0.0], [1.0, 0.0]), ValueError, "obtuse"),
        (lambda: Counterexample2([2.0, 0.0], [-1.0, 0.0]), ValueError, "unit"),
        (lambda: Counterexample2([1.0, 0.0], [-1.0, 0.0, 0.0]), ValueError, "unit|length"),
        (lambda: Counterexample2([1.0, np.nan], [-1.0, 0.0]), ValueError, "NaN"),
        (lambda: Counterexample2.random(1, RNG), ValueError, "dim"),
        (lambda: Figure1(curvature=np.inf), ValueError, "finite"),
        (lambda: Figure1(curvature="1"), TypeError, "curvature"),
        (lambda: AppendixA([[1.0, 0.0], [0.0, 1.0]]), ValueError, "obtuse partner"),
        (lambda: AppendixA([[1.0, 0.0]]), ValueError, "k >= 2"),
        (lambda: AppendixA([[1.0, 0.0], [-2.0, 0.0]]), ValueError, "unit norm"),
        (lambda: AppendixA([[1.0, 0.0], [-1.0, 0.0]], lam=0.0), ValueError, "lam"),
        (lambda: AppendixA.random(0, 3, RNG), ValueError, "pairs"),
    ],
)
def test_bad_construction(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_bad_arguments():
    p = Figure1()
    with pytest.raises(ValueError, match=r"theta must have shape \(2,\)"):
        p.phi([1.0])
    with pytest.raises(ValueError, match="NaN"):
        p.value([np.nan, 0.0], 0.5)
    with pytest.raises(ValueError, match="outside S"):
        p.value([0.0, 0.0], 1.5)
    with pytest.raises(ValueError, match=r"delta must have shape \(1,\)"):
        p.grad_theta([0.0, 0.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="outside S"):
        AppendixA([[1.0, 0.0], [-1.0, 0.0]]).grad_delta([0.0, 0.0], [0.7, 0.7])
