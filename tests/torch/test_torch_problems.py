"""The paper's problems as torch callables (minmax.torch.problems) against their NumPy twins
(minmax.problems): the same values, autograd gradients, phi, maximizers, inner maximizations and DDi /
single-adversary histories; float32 and CUDA; bad input named by the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minmax import maxfunc as np_loops
from minmax import problems as P
from minmax import torch as mt
from minmax.minnorm import DEFAULT_TOL
from minmax.sets import Box, FiniteSet
from minmax.torch import problems as T

RNG = np.random.default_rng(2024)
PAIRS = [
    P.Counterexample1(),
    P.Counterexample2([1.0, 0.0], [-0.6, 0.8]),
    P.Counterexample2.random(3, RNG),
    P.Figure1(),
    P.Figure1(curvature=1.0),
    P.Figure1(curvature=-3.0),
    P.AppendixA.random(2, 3, RNG, lam=0.5),
    P.AppendixA([[0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]]),
]
EPS64 = float(np.finfo(np.float64).eps)


def _ids(p):
    return repr(p)[:40]


def _thetas(p, rng, n=5):
    """Random points and the points where maximizers tie (the kinks)."""
    pts = [rng.normal(size=p.theta_dim) for _ in range(n)] + [np.zeros(p.theta_dim)]
    if isinstance(p, P.Figure1):
        pts += [np.array([0.7, 0.0]), np.array([-1.2, 0.0])]
    if isinstance(p, P.Counterexample2):
        pts.append(p.u + p.v)
    return pts


def _deltas(p, rng, n=5):
    """Random points of S and its extreme points (endpoints, vertices: where the entropy is floored)."""
    S = p.set
    extreme = np.array([S.lower, S.upper]) if isinstance(S, Box) else np.eye(S.dim)
    return np.concatenate([S.sample(n, rng), extreme])


def _close(a, b, scale=1.0, ulps=64):
    """Agreement to ``ulps`` float64 rounding errors of the magnitude ``scale`` (the formulas are the same,
    evaluated in a different order by autograd)."""
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=0,
                               atol=ulps * EPS64 * max(1.0, scale))


def _numpy(x):
    return x.detach().cpu().numpy()


@pytest.mark.parametrize("p", PAIRS, ids=_ids)
def test_values_and_gradients_match_numpy(p, device):
    q = T.from_numpy(p, device=device)
    rng = np.random.default_rng(0)
    for theta in _thetas(p, rng):
        scale = 1.0 + float(np.sum(np.abs(theta))) ** 2
        for delta in _deltas(p, rng):
            _close(float(q.value(theta, delta)), p.value(theta, delta), scale)
            _close(_numpy(q.grad_theta(theta, delta)), p.grad_theta(theta, delta), scale)
            # at a vertex of the simplex the entropy's derivative is floored at log(tiny) + 1, as in NumPy
            _close(_numpy(q.grad_delta(theta, delta)), p.grad_delta(theta, delta), scale * 1e3)


@pytest.mark.parametrize("p", PAIRS, ids=_ids)
def test_batched_evaluations_equal_the_pointwise_ones(p):
    q = T.from_numpy(p)
    rng = np.random.default_rng(1)
    theta = torch.as_tensor(rng.normal(size=p.theta_dim))
    deltas = torch.as_tensor(_deltas(p, rng))
    grads, values = q.grad_delta_and_value(theta, deltas)
    gt = q.grads_theta(theta, deltas)
    for i, d in enumerate(deltas):
        atol = 8 * EPS64 * (1 + abs(float(values[i])))
        torch.testing.assert_close(values[i], q.value(theta, d), rtol=0, atol=atol)
        torch.testing.assert_close(grads[i], q.grad_delta(theta, d), rtol=4 * EPS64, atol=8 * EPS64)
        torch.testing.assert_close(gt[i], q.grad_theta(theta, d), rtol=4 * EPS64, atol=8 * EPS64)
    torch.testing.assert_close(q.values(theta, deltas), values, rtol=0, atol=0)


@pytest.mark.parametrize("p", PAIRS, ids=_ids)
def test_phi_and_maximizers_are_the_closed_forms(p):
    q = T.from_numpy(p)
    for theta in _thetas(p, np.random.default_rng(2)):
        t = torch.as_tensor(theta)
        assert q.phi(t) == p.phi(theta)
        assert repr(q.maximizers(t)) == repr(p.maximizers(theta))
        # phi is attained on S*: the torch g agrees at the exact maximizers
        S = q.maximizers(t)
        pts = S.points if isinstance(S, FiniteSet) else np.array([S.lower, S.upper])
        for d in pts:
            _close(float(q.value(t, d)), q.phi(t), 1 + float(np.sum(np.abs(theta))) ** 2)


@pytest.mark.parametrize("p", PAIRS, ids=_ids)
def test_maximize_matches_numpy(p):
    q = T.from_numpy(p)
    theta = np.random.default_rng(3).normal(size=p.theta_dim)
    for kw in ({"m": 10, "steps": 10, "step_size": 0.1}, {"m": 12, "steps": 30, "step_size": 0.5,
                                                          "value_tol": 1e-9}):
        a = np_loops.maximize(p, theta, rng=5, **kw)
        b = mt.maximize(q, theta, rng=5, **kw)
        np.testing.assert_array_equal(_numpy(b.starts), a.starts)  # the same stream of starts
        assert b.counts.tolist() == a.counts.tolist()
        _close(_numpy(b.deltas), a.deltas, ulps=1e3)
        _close(_numpy(b.values), a.values, 1 + float(np.sum(np.abs(theta))) ** 2)


@pytest.mark.parametrize("p", PAIRS, ids=_ids)
@pytest.mark.parametrize("method", ["ddi", "single_adversary"])
def test_histories_match_numpy(p, method):
    q = T.from_numpy(p)
    theta0 = np.full(p.theta_dim, 0.4)
    theta0[0] = 1.2
    kw = {"iterations": 8, "inner_steps": 10, "inner_step_size": 0.2, "rng": 11, "lipschitz": 2.0,
          "radius": "exact"}
    if method == "ddi":
        kw["m"] = 6
    a = getattr(np_loops, method)(p, theta0, **kw)
    b = getattr(mt, method)(q, theta0, **kw)
    assert b.method == a.method
    assert isinstance(b.thetas, torch.Tensor) and b.thetas.dtype == torch.float64
    # The QP certifies |M alpha - x*|^2 <= gap <= tol f*, so two solves on gradients that differ by round-off
    # may return directions sqrt(tol) apart (when G is nearly singular: nearby maximizers); a unit step
    # moves theta by eta_k times that, and phi by at most |grad| times the move.
    direction_tol = 4 * np.sqrt(DEFAULT_TOL)
    theta_tol = direction_tol * float(np.sum(a.step_sizes)) + 1e-12
    lip_phi = 2 * (1 + float(np.max(np.abs(a.thetas))))
    np.testing.assert_allclose(_numpy(b.directions), a.directions, rtol=0, atol=direction_tol)
    np.testing.assert_allclose(_numpy(b.thetas), a.thetas, rtol=0, atol=theta_tol)
    np.testing.assert_allclose(b.phi, a.phi, rtol=0, atol=lip_phi * theta_tol)
    np.testing.assert_allclose(b.phi_estimates, a.phi_estimates, rtol=0, atol=lip_phi * theta_tol)
    np.testing.assert_allclose(b.slopes, a.slopes, rtol=0, atol=lip_phi * direction_tol)
    np.testing.assert_array_equal(b.step_sizes, a.step_sizes)
    np.testing.assert_array_equal(b.stationary, a.stationary)
    for ma, mb in zip(a.maximizers, b.maximizers, strict=True):
        assert mb.counts.tolist() == ma.counts.tolist()
    for ca, cb in zip(a.certificates, b.certificates, strict=True):
        assert (ca is None) == (cb is None)
        if ca is not None:
            assert cb.certified == ca.certified
            np.testing.assert_allclose(cb.radius, ca.radius, rtol=0, atol=theta_tol)
            np.testing.assert_allclose(cb.slope, ca.slope, rtol=0, atol=lip_phi * direction_tol)


def test_figure1_ddi_descends_and_single_adversary_zigzags_in_torch():
    # The claim of Figure 1 of the paper, on the torch problem: DDi's phi decreases while it is far from
    # the minimizer; the single adversary crosses the kink theta_2 = 0 at most steps.
    q = T.Figure1()
    kw = {"inner_steps": 10, "inner_step_size": 0.1, "iterations": 30, "rng": 0}
    h = mt.ddi(q, [2.0, 0.1], m=10, **kw)
    s = mt.single_adversary(q, [2.0, 0.1], **kw)
    far = torch.linalg.vector_norm(h.thetas[:-1], dim=1).numpy() > 2 * h.step_sizes
    assert far.sum() >= 5 and np.all(np.diff(h.phi)[far] < 0)
    crossings = lambda hist: int(torch.sum(hist.thetas[1:, 1] * hist.thetas[:-1, 1] < 0))  # noqa: E731
    assert crossings(s) >= 5 * max(crossings(h), 1)


@pytest.mark.parametrize("p", [PAIRS[1], PAIRS[4], PAIRS[6]], ids=_ids)
def test_float32(p, device):
    q32 = T.from_numpy(p, dtype=torch.float32, device=device)
    q64 = T.from_numpy(p, device=device)
    theta = np.random.default_rng(4).normal(size=p.theta_dim)
    eps32 = float(torch.finfo(torch.float32).eps)
    for delta in _deltas(p, np.random.default_rng(5)):
        v32 = q32.value(theta, delta)
        assert v32.dtype == torch.float32 and v32.device.type == torch.device(device).type
        g32 = q32.grad_theta(theta, delta)
        assert g32.dtype == torch.float32
        np.testing.assert_allclose(float(v32), float(q64.value(theta, delta)), atol=64 * eps32 * 10)
        np.testing.assert_allclose(_numpy(g32), _numpy(q64.grad_theta(theta, delta)), atol=64 * eps32 * 10)
    h = mt.ddi(q32, theta, iterations=3, m=4, rng=0)
    assert h.thetas.dtype == torch.float32 and h.directions.dtype == torch.float32
    assert all(m.deltas.dtype == torch.float32 for m in h.maximizers)


def test_cuda_matches_cpu(device):
    if device != "cuda":
        pytest.skip("needs CUDA")
    p = PAIRS[6]
    a = mt.ddi(T.from_numpy(p), np.ones(3), iterations=4, m=6, rng=1)
    b = mt.ddi(T.from_numpy(p, device="cuda"), np.ones(3), iterations=4, m=6, rng=1)
    assert b.thetas.device.type == "cuda"
    _close(_numpy(b.thetas), _numpy(a.thetas), ulps=1e4)


# -- bad input ---------------------------------------------------------------------------------------------


def test_bad_input_names_the_problem():
    q = T.Figure1()
    with pytest.raises(ValueError, match=r"Figure1.*theta must have shape \(2,\)"):
        q.value([1.0, 2.0, 3.0], [0.5])
    with pytest.raises(ValueError, match=r"Figure1.*delta must have shape \(1,\)"):
        q.value([1.0, 2.0], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"Figure1.*lies outside S"):
        q.grad_delta([1.0, 2.0], [1.5])
    with pytest.raises(ValueError, match=r"Figure1.*theta contains NaN"):
        q.grad_theta([np.nan, 2.0], [0.5])
    with pytest.raises(TypeError, match=r"Figure1.*dtype torch.float32.*computes in torch.float64"):
        q.value(torch.zeros(2, dtype=torch.float32), [0.5])
    with pytest.raises(TypeError, match=r"Figure1.*real floating"):
        q.value(torch.zeros(2, dtype=torch.int64), [0.5])
    with pytest.raises(TypeError, match=r"Figure1.*theta must be a tensor or an array of real numbers"):
        q.value("theta", [0.5])
    with pytest.raises(ValueError, match=r"Figure1.*m must be at least 1"):
        mt.maximize(q, [1.0, 0.0], m=0, rng=0)
    with pytest.raises(ValueError, match=r"Figure1.*iterations must be at least 0"):
        mt.ddi(q, [1.0, 0.0], iterations=-1, rng=0)


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: T.Counterexample2([1.0, 0.0], [0.6, 0.8]), ValueError, "obtuse"),
        (lambda: T.Counterexample2([2.0, 0.0], [-0.6, 0.8]), ValueError, "unit"),
        (lambda: T.AppendixA([[1.0, 0.0], [0.0, 1.0]]), ValueError, "obtuse partner"),
        (lambda: T.AppendixA([[1.0, 0.0], [-1.0, 0.0]], lam=0.0), ValueError, "lam"),
        (lambda: T.Figure1("1"), TypeError, "curvature"),
        (lambda: T.Figure1(dtype=torch.int32), TypeError, "float64 or torch.float32"),
        (lambda: T.Figure1(dtype=torch.float16), TypeError, "float64 or torch.float32"),
        (lambda: T.Figure1(dtype="float64"), TypeError, "torch.dtype"),
        (lambda: T.from_numpy(object()), TypeError, "minmax.problems"),
    ],
)
def test_bad_parameters(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_random_twins_use_the_same_draws():
    a = P.AppendixA.random(2, 4, np.random.default_rng(9), lam=0.3)
    b = T.AppendixA.random(2, 4, np.random.default_rng(9), lam=0.3)
    np.testing.assert_array_equal(_numpy(b.vectors), a.vectors)
    c = P.Counterexample2.random(5, np.random.default_rng(9))
    d = T.Counterexample2.random(5, np.random.default_rng(9))
    np.testing.assert_array_equal(_numpy(d.u), c.u)
