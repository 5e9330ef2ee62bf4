"""Hypothesis properties (deterministic profile of tests/conftest.py): the projection and the certificate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minmax import METHODS, check_min_norm, min_norm_point, project_simplex

from .cases import gram_of
from .exact import exact_gram, exact_min_norm

EPS = np.finfo(np.float64).eps
TOL = {"cvxpy": 1e-6}  # the cvxpy reference stops near relative gaps of 1e-8 (see test_methods)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
vectors = hnp.arrays(np.float64, st.integers(1, 12), elements=finite)
masses = st.floats(1e-3, 1e3)


def _sum_tol(v, s):
    return 16 * len(v) * EPS * (s + np.abs(v).max())


# ----------------------------------------------------------------------------------------------- projection


@given(vectors, masses)
def test_projection_is_on_the_simplex(v, s):
    a = project_simplex(v, s)
    assert a.shape == v.shape
    assert np.all(a >= 0)
    assert abs(a.sum() - s) <= _sum_tol(v, s)


@given(vectors, masses)
def test_projection_is_idempotent(v, s):
    a = project_simplex(v, s)
    np.testing.assert_allclose(project_simplex(a, s), a, rtol=0, atol=_sum_tol(v, s))


@given(vectors, masses, st.floats(-1e6, 1e6))
def test_projection_is_shift_invariant(v, s, c):
    a = project_simplex(v, s)
    np.testing.assert_allclose(
        project_simplex(v + c, s), a, rtol=0, atol=_sum_tol(v + c, s) + 4 * EPS * abs(c)
    )


@given(vectors, masses, st.integers(0, 2**32 - 1))
def test_projection_is_nearest(v, s, seed):
    """No point of the simplex is closer to v (checked against random points and the vertices)."""
    a = project_simplex(v, s)
    rng = np.random.default_rng(seed)
    others = np.concatenate([s * rng.dirichlet(np.ones(len(v)), size=20), s * np.eye(len(v))])
    d_a = np.sum((v - a) ** 2)
    d_others = np.sum((v - others) ** 2, axis=1)
    assert np.all(d_a <= d_others + 64 * len(v) * EPS * (np.abs(v).max() + s) ** 2)


# ------------------------------------------------------------------------------------------ min-norm point

int_grads = st.integers(1, 7).flatmap(
    lambda m: st.integers(1, 5).flatmap(lambda d: hnp.arrays(np.int64, (m, d), elements=st.integers(-5, 5)))
)


@st.composite
def float_grads(draw):
    m, d = draw(st.integers(1, 12)), draw(st.integers(1, 8))
    base = draw(hnp.arrays(np.float64, (m, d), elements=st.floats(-10, 10, allow_subnormal=False)))
    scales = draw(hnp.arrays(np.float64, (m, 1), elements=st.sampled_from([1e-3, 1e-1, 1.0, 10.0, 1e3])))
    shared = draw(hnp.arrays(np.float64, (1, d), elements=st.floats(-10, 10, allow_subnormal=False)))
    return (base + shared) * scales


def _assert_certificate(G, res, f_low, f_high, method):
    """The certificate holds for ``res`` when the optimum f* is known to lie in [f_low, f_high]."""
    cert = check_min_norm(G, res.weights, rtol=TOL.get(method, 1e-12))
    assert cert.feasible
    assert cert.gap >= 0, (method, cert.gap)
    assert (cert.value, cert.gap, cert.tolerance) == (res.value, res.gap, res.tolerance)
    # f - f* <= gap (up to the gap's own rounding floor, <= tolerance), and f >= f* up to rounding
    assert res.value - f_high <= res.gap + 2 * res.tolerance, (method, res.value, f_high, res.gap)
    assert res.value - f_low >= -res.tolerance, (method, res.value, f_low)
    if method != "cvxpy":
        assert res.success, (method, res.status, res.gap, res.tolerance)


@pytest.mark.parametrize("method", METHODS)
@given(grads=int_grads)
@example(grads=np.ones((6, 1), dtype=np.int64))  # G = 11^T: 2 (f - min) was -2.2e-16 before fw_gap's fix
def test_certificate_holds_against_the_exact_optimum(method, grads):
    G = gram_of(grads)
    f_star = float(exact_min_norm(exact_gram(grads))[1])
    res = min_norm_point(G, method=method, tol=TOL.get(method, 1e-12))
    _assert_certificate(G, res, f_star, f_star, method)


@pytest.mark.parametrize("method", METHODS)
@given(grads=float_grads())
# Examples hypothesis found: zero gradients next to small ones (the floor scales with |G| alpha, so
# rounding-level weights off the zero gradients are not certified), an entry at 1e-256 (G_11 underflows
# to 0 while G_12 does not), and equal gradients (a negative gap from rounding before fw_gap's fix).
@example(grads=np.array([[-1e-3, 0.0], [0.00834375, 0.00793555], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
@example(grads=np.array([[1e-3], [-3.86089939e-256]]))
@example(grads=np.array([[0.005], [0.005], [0.01431305], [0.005], [0.005]]))
# The origin in the hull and a zero gradient: Wolfe's value rounds to -1.9e-13 (its floor is 6e-9), APG
# lands on the zero gradient (0 exactly, floor 0).
@example(
    grads=np.array(
        [
            [0.0, 0.0],
            [-2.699076844834587, -8.427399256687202],
            [3052.29152673277, -4523.018028008856],
            [40.53041413195725, 88.76028538841815],
            [-74.63657954775044, 72.95565908015483],
            [-0.00881071696799323, -0.0023845898337822116],
            [-0.14045187764284678, -0.022300906333071427],
        ]
    )
)
def test_certificate_holds_for_any_psd_gram_matrix(method, grads):
    G = gram_of(grads)
    ref = min_norm_point(G)
    assert ref.success
    # Wolfe's certified answer brackets f*: f_w - gap_w <= f* <= f_w, each end up to its rounding floor
    f_low, f_high = ref.value - ref.gap - ref.tolerance, ref.value + ref.tolerance
    res = min_norm_point(G, method=method, tol=TOL.get(method, 1e-12))
    _assert_certificate(G, res, f_low, f_high, method)
