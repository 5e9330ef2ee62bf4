"""Inner maximization and the outer loops: the maximizer finds the exact S* of the paper's problems; on the
Figure 1 problem DDi decreases the robust loss and steps along true descent directions while the single
adversary does not; the history records what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from minmax import certify_descent, steepest_descent
from minmax.maxfunc import History, Maximizers, constant, ddi, inverse_sqrt, maximize, single_adversary
from minmax.problems import AppendixA, Counterexample1, Counterexample2, Figure1
from minmax.sets import Box

CE2 = Counterexample2([1.0, 0.0], [-0.6, 0.8])
# The Figure 1 set-up of experiments.synthetic: start near the kink theta_2 = 0, 10 maximizers, 10 ascent
# steps, outer steps 0.5 / sqrt(k).
FIG1_START = np.array([2.0, 0.1])
FIG1 = {"inner_steps": 10, "inner_step_size": 0.1, "step_size": inverse_sqrt(0.5), "iterations": 30}


def _in_s_star(p, theta, deltas, atol=1e-9):
    return bool(np.all(p.maximizers(theta).contains(deltas, atol=atol)))


@pytest.mark.parametrize("theta", [[0.0, 0.0], [1.0, 0.5], [-0.3, 0.2], [1.0, 0.4]])
def test_maximize_finds_s_star_counterexample2(theta):
    theta = np.array(theta)
    res = maximize(CE2, theta, m=10, steps=50, step_size=0.5, rng=0, value_tol=1e-12)
    assert isinstance(res, Maximizers)
    assert _in_s_star(CE2, theta, res.deltas)
    # every point of S* is found (both endpoints at a tie)
    assert len(res) == len(CE2.maximizers(theta))
    np.testing.assert_allclose(res.values, CE2.phi(theta), atol=1e-12)
    # without value_tol the local maxima (the other endpoint: g is convex in delta) are kept too
    every = maximize(CE2, theta, m=10, steps=50, step_size=0.5, rng=0)
    assert every.counts.sum() == 10 and every.values[0] == res.values[0]
    assert set(every.deltas.ravel().tolist()) <= {0.0, 1.0}


def test_maximize_counterexample1_and_figure1_variant():
    res = maximize(Counterexample1(), 0.5, m=5, steps=10, step_size=1.0, rng=1)
    assert res.deltas.tolist() == [[1.0]] and res.counts.tolist() == [5]
    q = Figure1(curvature=1.0)
    res = maximize(q, [0.7, 0.0], m=10, steps=30, step_size=0.5, rng=2)
    assert sorted(res.deltas.ravel().tolist()) == [0.0, 1.0]  # exactly S* = {0, 1}


def test_maximize_appendix_a_finds_all_vertices_at_zero():
    p = AppendixA.random(2, 3, np.random.default_rng(0), lam=0.5)
    res = maximize(p, np.zeros(3), m=40, steps=20, step_size=0.5, rng=3)
    assert _in_s_star(p, np.zeros(3), res.deltas)
    assert len(res) == 4  # all four vertices
    theta = np.random.default_rng(1).normal(size=3)
    res = maximize(p, theta, m=20, steps=20, step_size=0.5, rng=4)
    assert res.values[0] == pytest.approx(p.phi(theta), abs=1e-12)
    assert p.maximizers(theta).contains(res.deltas[0])


def test_maximize_merging_and_order():
    theta = np.array([0.5, 0.01])
    p = Figure1()  # slow ascent near the kink: the runs end at distinct points
    res = maximize(p, theta, m=12, steps=3, step_size=0.1, rng=5, merge_tol=0.0)
    assert len(res) == 12 and np.all(np.diff(res.values) <= 0)
    coarse = maximize(p, theta, m=12, steps=3, step_size=0.1, rng=5, merge_tol=0.3)
    assert coarse.counts.sum() == 12 and len(coarse) < 12
    d = np.abs(coarse.deltas[:, None, 0] - coarse.deltas[None, :, 0])
    assert np.all(d[~np.eye(len(coarse), dtype=bool)] > 0.3)  # kept points are merge_tol apart
    assert coarse.values[0] == res.values[0]  # merging never loses the best run
    np.testing.assert_array_equal(coarse.starts, res.starts)


def test_maximize_init_and_zero_steps():
    init = np.array([[0.2], [0.9], [2.0]])
    res = maximize(Figure1(), [0.0, 1.0], m=3, steps=0, rng=0, init=init, merge_tol=0.0)
    assert sorted(res.deltas.ravel().tolist()) == [0.2, 0.9, 1.0]  # starts projected onto S
    res = maximize(Figure1(), [0.0, 1.0], m=3, steps=5, step_size=1.0, rng=0, init=init)
    assert res.deltas.tolist() == [[1.0]]


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"m": 0}, ValueError, "m must be at least 1"),
        ({"steps": -1}, ValueError, "steps"),
        ({"step_size": 0.0}, ValueError, "step_size"),
        ({"merge_tol": -1.0}, ValueError, "merge_tol"),
        ({"value_tol": -1.0}, ValueError, "value_tol"),
        ({"init": np.zeros((2, 1))}, ValueError, "init must have shape"),
        ({"rng": "seed"}, TypeError, "rng"),
        ({"m": 2.0}, TypeError, "m must be an int"),
    ],
)
def test_maximize_bad_input(kwargs, err, match):
    args = {"m": 3, "steps": 2, "step_size": 0.1, "rng": 0} | kwargs
    with pytest.raises(err, match=match):
        maximize(Figure1(), [0.0, 0.0], **args)


def test_maximize_rejects_non_problems_and_bad_theta():
    with pytest.raises(TypeError, match="MaxFunction"):
        maximize(object(), [0.0], rng=0)
    with pytest.raises(ValueError, match="NaN"):
        maximize(Figure1(), [np.nan, 0.0], rng=0)


def _exact_slope(p, theta, gamma):
    """D_gamma phi(theta) from Danskin's formula over the exact S* (gradients are affine in delta)."""
    S = p.maximizers(theta)
    pts = np.array([S.lower, S.upper]) if isinstance(S, Box) else S.points
    return max(float(gamma @ p.grad_theta(theta, d)) for d in pts)


def _far(h):
    # Steps shorter than half the distance to the minimizer theta* = 0: an increase of phi there is not
    # an overshoot of the minimum but a bad direction.
    return np.linalg.norm(h.thetas[:-1], axis=1) > 2 * h.step_sizes


def _crossings(h):
    return int(np.sum(np.sign(h.thetas[1:, 1]) * np.sign(h.thetas[:-1, 1]) < 0))


def test_ddi_descends_on_figure1_and_single_adversary_does_not():
    # DDi: every step is a true descent direction of phi (Danskin's formula over the exact S*), and phi
    # decreases at every step that cannot overshoot the minimizer. The single adversary steps along ascent
    # directions of phi and zig-zags across the kink theta_2 = 0.
    p = Figure1()
    for seed in range(3):
        h = ddi(p, FIG1_START, m=10, rng=seed, **FIG1)
        far = _far(h)
        assert far.sum() >= 5
        assert np.all(np.diff(h.phi)[far] < 0)
        assert all(_exact_slope(p, t, g) <= 1e-9 for t, g in zip(h.thetas[:-1], h.directions, strict=True))
        s = single_adversary(p, FIG1_START, rng=seed, **FIG1)
        slopes = [_exact_slope(p, t, g) for t, g in zip(s.thetas[:-1], s.directions, strict=True)]
        assert sum(d > 0 for d in slopes) >= 1
        assert _crossings(s) >= 5 * max(_crossings(h), 1)
        assert s.phi[-1] > 1.0 and h.phi[-1] > 1.0


def test_ddi_history_holds_what_it_claims():
    p = Figure1()
    K = 6
    h = ddi(p, FIG1_START, m=8, inner_steps=10, inner_step_size=0.25, step_size=inverse_sqrt(0.5),
            iterations=K, rng=7, lipschitz=4.0, radius=0.01)
    assert isinstance(h, History) and h.method == "ddi"
    assert h.thetas.shape == (K + 1, 2) and h.directions.shape == (K, 2)
    assert len(h.maximizers) == K + 1 and len(h.weights) == K and len(h.certificates) == K
    np.testing.assert_array_equal(h.thetas[0], FIG1_START)
    np.testing.assert_allclose(h.step_sizes, 0.5 / np.sqrt(np.arange(1, K + 1)))
    np.testing.assert_allclose(h.thetas[1:], h.thetas[:-1] + h.step_sizes[:, None] * h.directions)
    np.testing.assert_allclose(h.phi, [p.phi(t) for t in h.thetas])
    np.testing.assert_array_equal(h.robust_loss, h.phi)
    for k in range(K + 1):
        maxs = h.maximizers[k]
        np.testing.assert_allclose(maxs.values, [p.value(h.thetas[k], d) for d in maxs.deltas])
        assert h.phi_estimates[k] == maxs.values[0] <= h.phi[k] + 1e-12
    for k in range(K):
        grads = np.array([p.grad_theta(h.thetas[k], d) for d in h.maximizers[k].deltas])
        ref = steepest_descent(grads)
        np.testing.assert_allclose(h.directions[k], ref.direction, atol=1e-9)
        assert h.slopes[k] == pytest.approx(np.max(grads @ h.directions[k]))
        assert h.slopes[k] == pytest.approx(ref.slope, abs=1e-9)
        assert h.stationary[k] == ref.stationary
        w = h.weights[k]
        assert w.shape == (len(h.maximizers[k]),) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
        if not h.stationary[k]:
            assert np.linalg.norm(h.directions[k]) == pytest.approx(1.0)
            cert = h.certificates[k]
            assert cert == certify_descent(grads, h.directions[k], lipschitz=4.0, radius=0.01)
            assert cert.certified == (h.slopes[k] < -4.0 * 0.01)


def test_single_adversary_history():
    p = CE2
    h = single_adversary(p, [0.5, 0.5], m=3, inner_steps=20, inner_step_size=0.5, step_size=constant(0.1),
                         iterations=4, rng=0)
    assert h.method == "single-adversary" and h.certificates == (None,) * 4
    np.testing.assert_allclose(h.step_sizes, 0.1)
    for k in range(4):
        g = p.grad_theta(h.thetas[k], h.maximizers[k].deltas[0])
        np.testing.assert_allclose(h.directions[k], -g / np.linalg.norm(g))
        assert h.weights[k][0] == 1.0 and h.weights[k].sum() == 1.0
    raw = single_adversary(p, [0.5, 0.5], inner_steps=20, inner_step_size=0.5, step_size=0.1,
                           iterations=2, rng=0, normalize=False)
    g = p.grad_theta(raw.thetas[0], raw.maximizers[0].deltas[0])
    np.testing.assert_allclose(raw.thetas[1], raw.thetas[0] - 0.1 * g)


def test_single_adversary_unnormalized_steps_are_certified_like_unit_ones():
    # The raw step -g is certified by Theorem 3 scaled by its norm: the same verdict as the unit step.
    kwargs = dict(inner_steps=20, inner_step_size=0.5, step_size=0.1, iterations=3, rng=0, lipschitz=4.0,
                  radius=0.01)
    raw = single_adversary(Figure1(), [0.5, 0.3], normalize=False, **kwargs)
    unit = single_adversary(Figure1(), [0.5, 0.3], **kwargs)
    for k in range(3):
        g = Figure1().grad_theta(raw.thetas[k], raw.maximizers[k].deltas[0])
        cert = raw.certificates[k]
        assert cert.norm == pytest.approx(np.linalg.norm(g)) and cert.certified
        assert cert.slope == pytest.approx(-np.linalg.norm(g), rel=1e-12)  # one maximizer: <-g/|g|, g>
    assert unit.certificates[0].slope == pytest.approx(raw.certificates[0].slope, rel=1e-12)


def test_ddi_stationary_point_stays_put():
    # Counterexample 1 at theta = 0: S* = [-1, 1], gradients +-1, the origin is in their hull.
    h = ddi(Counterexample1(), 0.0, m=10, inner_steps=0, iterations=2, rng=0)
    assert h.maximizers[0].deltas.min() < 0 < h.maximizers[0].deltas.max()  # random starts on both sides
    assert h.stationary[0] and np.all(h.directions[0] == 0)
    assert h.thetas[1] == h.thetas[0]


def test_schedules():
    assert constant(0.3)(1) == constant(0.3)(100) == 0.3
    assert inverse_sqrt(0.5)(4) == 0.25
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError):
            inverse_sqrt(bad)
    with pytest.raises(TypeError):
        constant("1")


def test_outer_loop_bad_input():
    with pytest.raises(ValueError, match="both lipschitz and radius"):
        ddi(Figure1(), [0.0, 1.0], iterations=1, rng=0, lipschitz=1.0)
    with pytest.raises(ValueError, match="iterations"):
        single_adversary(Figure1(), [0.0, 1.0], iterations=-1, rng=0)
    with pytest.raises(ValueError, match="step_size"):
        ddi(Figure1(), [0.0, 1.0], iterations=2, rng=0, step_size=lambda k: -1.0)
    with pytest.raises(ValueError, match="theta must have shape"):
        ddi(Figure1(), [0.0, 1.0, 2.0], iterations=1, rng=0)
    h = ddi(Figure1(), [1.0, 1.0], iterations=0, rng=0)
    assert h.thetas.shape == (1, 2) and h.directions.shape == (0, 2)


def test_maximize_infers_m_from_init():
    init = np.array([[0.2], [0.9]])
    res = maximize(Figure1(), [0.0, 1.0], steps=0, init=init, merge_tol=0.0)
    assert res.starts.shape == (2, 1) and int(res.counts.sum()) == 2
    with pytest.raises(ValueError, match="m = 3 rows, got 2"):
        maximize(Figure1(), [0.0, 1.0], m=3, init=init)
    with pytest.raises(TypeError, match="rng is required"):
        maximize(Figure1(), [0.0, 1.0], m=3)


def test_radius_callable_of_theta():
    seen = []

    def radius(theta):
        seen.append(theta.copy())
        return 0.05 * abs(theta[1])

    h = ddi(Figure1(), FIG1_START, m=6, iterations=4, rng=1, lipschitz=4.0, radius=radius)
    moving = [k for k in range(4) if not h.stationary[k]]
    assert len(seen) == len(moving)
    for k, theta in zip(moving, seen, strict=True):
        np.testing.assert_array_equal(theta, h.thetas[k])
        assert h.certificates[k].radius == 0.05 * abs(h.thetas[k, 1])
        assert h.certificates[k].certified == (h.slopes[k] < -4.0 * h.certificates[k].radius)


def _grid_radius(lower, upper, points, n=400_001):
    grid = np.linspace(lower, upper, n)
    return float(np.max(np.min(np.abs(grid[:, None] - np.asarray(points)[None, :]), axis=1)))


@pytest.mark.parametrize("points", [[0.5], [0.0, 1.0], [0.1, 0.15, 0.7], [-0.4, 0.3], [1.2, 2.0]])
def test_exact_radius_of_an_interval(points):
    from minmax._radius import exact_radius

    got = exact_radius(Box(0.0, 1.0), np.array(points)[:, None])
    assert got == pytest.approx(_grid_radius(0.0, 1.0, points), abs=1e-5)


def test_exact_radius_in_the_loop():
    # Counterexample 1 at theta = 0: S* = [-1, 1] (an interval); the certificate's epsilon covers it.
    p = Counterexample1()
    h = ddi(p, 0.5, m=4, inner_steps=0, iterations=3, rng=0, lipschitz=1.0, radius="exact")
    for k in range(3):
        if h.stationary[k]:
            continue
        S = p.maximizers(h.thetas[k])
        found = h.maximizers[k].deltas
        if isinstance(S, Box):
            expected = _grid_radius(S.lower[0], S.upper[0], found[:, 0])
        else:
            expected = float(np.min(np.abs(found[:, 0] - S.points[0, 0])))
        assert h.certificates[k].radius == pytest.approx(expected, abs=1e-5)
    # Figure 1 with curvature 1 at the kink: S* = {0, 1} is found exactly, so epsilon = 0 and the
    # certificate is Danskin's formula over all of S*.
    q = Figure1(curvature=1.0)
    h = ddi(q, [0.7, 0.0], m=10, inner_steps=30, inner_step_size=0.5, iterations=1, rng=2, lipschitz=4.0,
            radius="exact")
    assert h.certificates[0].radius == 0.0 and h.certificates[0].certified


def test_radius_rules_bad_input():
    class NoMaximizers:
        set = Box(0.0, 1.0)

        def value(self, theta, delta):
            return float(theta[0] * delta[0])

        def grad_theta(self, theta, delta):
            return np.array([delta[0]])

        def grad_delta(self, theta, delta):
            return np.array([theta[0]])

    with pytest.raises(ValueError, match="no maximizers"):
        ddi(NoMaximizers(), [1.0], iterations=1, rng=0, lipschitz=1.0, radius="exact")
    with pytest.raises(ValueError, match="radius must be a float, a callable"):
        ddi(Figure1(), [1.0, 1.0], iterations=1, rng=0, lipschitz=1.0, radius="tight")
    with pytest.raises(ValueError, match="lipschitz must be finite and non-negative"):
        ddi(Figure1(), [1.0, 1.0], iterations=1, rng=0, lipschitz=-1.0, radius=0.1)
    with pytest.raises(ValueError, match=r"radius\(theta\) must be finite"):
        ddi(Figure1(), [1.0, 1.0], iterations=1, rng=0, lipschitz=1.0, radius=lambda t: float("nan"))
