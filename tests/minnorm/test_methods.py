"""Every method on every edge case and random family, against exact references and closed forms.

Weights are never compared (they are not unique when G is singular); values and G @ alpha are. For any
feasible alpha, x = M alpha and the minimum-norm point x* satisfy ||x - x*||^2 <= f(alpha) - f* <= gap, so
|(G alpha)_i - (G alpha*)_i| = |<g_i, x - x*>| <= sqrt(G_ii * gap): the tolerances below follow from the
certificate, plus the round-off of a float64 matrix-vector product.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from minmax.minnorm import METHODS, Status, min_norm_point

from .cases import EDGE_CASES, FAMILIES, edge_case, family_case, gram_of
from .exact import exact_gram, exact_min_norm

EPS = np.finfo(np.float64).eps

# The tolerance each method is asked for. Wolfe, APG and both Frank-Wolfe variants reach the default 1e-12
# on every case (APG and FW polish their final support). cvxpy is a reference for checking only: Clarabel
# stops near relative gaps of 1e-8 and rescales G by its largest diagonal entry, so it is asked for 1e-6
# and held to honesty (optimal only when right) instead of to certifying every case.
TEST_TOL = {"wolfe": 1e-12, "apg": 1e-12, "fw-away": 1e-12, "fw-pairwise": 1e-12, "cvxpy": 1e-6}
REFERENCE_ONLY = {"cvxpy"}


def _tol(method: str) -> float:
    return TEST_TOL.get(method, 1e-12)


def _slack(G: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Round-off of the float64 product G @ alpha, entrywise."""
    return 8 * G.shape[0] * EPS * (np.abs(G) @ np.abs(alpha)) + np.finfo(np.float64).tiny


def assert_matches(G, res, f_star: float, g_star: np.ndarray, *, where: str = "") -> None:
    """The result's value and G alpha agree with the optimum (f*, G alpha*) within its certificate."""
    alpha = np.asarray(res.weights)
    assert np.all(alpha >= 0) and abs(alpha.sum() - 1.0) <= 8 * len(alpha) * EPS, where
    # The computed gap can undershoot the true one by its own rounding floor (<= tolerance).
    bound = res.gap + 2 * res.tolerance
    assert res.value - f_star <= bound, (where, res.value, f_star, res.gap, res.tolerance)
    assert res.value - f_star >= -res.tolerance, (where, res.value, f_star, res.tolerance)
    g_alpha = G @ alpha
    err = np.abs(g_alpha - g_star)
    allowed = np.sqrt(np.clip(np.diag(G), 0, None) * bound) + _slack(G, alpha) + 1e-300
    assert np.all(err <= allowed), (where, float(np.max(err / allowed)))


def _solve(G, method, **kwargs):
    return min_norm_point(G, method=method, tol=_tol(method), **kwargs)


def _check_status(res, method, where):
    if method in REFERENCE_ONLY:
        return res.success
    assert res.status is Status.OPTIMAL, (where, res.status, res.gap, res.tolerance, res.iterations)
    return True


# ------------------------------------------------------------------------------ exact rational references


def _exact_reference(grads):
    alpha, value = exact_min_norm(exact_gram(grads))
    G_exact = exact_gram(grads)
    g_star = np.array(
        [float(sum((gij * aj for gij, aj in zip(row, alpha, strict=True)), Fraction(0))) for row in G_exact]
    )
    return float(value), g_star


INTEGER_CASES = [name for name in EDGE_CASES if edge_case(name).integer]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", INTEGER_CASES)
def test_integer_edge_cases_match_exact_wolfe(method, name):
    case = edge_case(name)
    f_star, g_star = _exact_reference(case.grads)
    if case.f_star is not None:
        assert f_star == case.f_star  # the exact reference reproduces the closed form
    res = _solve(case.G, method)
    # Every feasible point has f - f* <= gap: even an uncertified answer must not contradict it.
    assert res.value - f_star <= res.gap + 2 * res.tolerance
    if _check_status(res, method, name):
        assert_matches(case.G, res, f_star, g_star, where=name)


def _random_integer_grads(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m, d = int(rng.integers(2, 9)), int(rng.integers(1, 6))
    grads = rng.integers(-4, 5, size=(m, d))
    if seed % 3 == 0:  # repeated and scaled gradients: degenerate corrals
        grads = np.concatenate([grads, 2 * grads[: m // 2]])
    if seed % 4 == 1:  # a common offset: the origin far from the hull
        grads = grads + rng.integers(3, 6, size=(1, d))
    return grads


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(12))
def test_random_integer_problems_match_exact_wolfe(method, seed):
    grads = _random_integer_grads(seed)
    G = gram_of(grads)
    f_star, g_star = _exact_reference(grads)
    res = _solve(G, method)
    assert res.value - f_star <= res.gap + 2 * res.tolerance
    if _check_status(res, method, seed):
        assert_matches(G, res, f_star, g_star, where=seed)


# -------------------------------------------------------------------------------------------- closed forms


def _two_point(G):
    """alpha_1 = clip((G22 - G12) / (G11 - 2 G12 + G22), 0, 1): the minimum of a parabola on [0, 1]."""
    denom = G[0, 0] - 2 * G[0, 1] + G[1, 1]
    a = 0.5 if denom <= 0 else float(np.clip((G[1, 1] - G[0, 1]) / denom, 0.0, 1.0))
    alpha = np.array([a, 1.0 - a])
    return float(alpha @ G @ alpha), G @ alpha


@pytest.mark.parametrize("method", METHODS)
def test_two_gradients_match_the_closed_form(method):
    rng = np.random.default_rng(11)
    for trial in range(8):
        grads = rng.standard_normal((2, 4)) * 10.0 ** rng.uniform(-2, 2, size=(2, 1))
        if trial == 0:
            grads[1] = -3.0 * grads[0]  # opposite: f* = 0
        if trial == 1:
            grads[1] = grads[0] + 1e-3 * rng.standard_normal(4)  # nearly equal
        G = gram_of(grads)
        f_star, g_star = _two_point(G)
        res = _solve(G, method)
        if _check_status(res, method, trial):
            assert_matches(G, res, f_star, g_star, where=trial)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["orthogonal", "orthogonal-rotated"])
def test_orthogonal_gradients_weigh_inversely_to_their_squared_norms(method, name):
    case = edge_case(name)
    inv = 1.0 / np.diag(case.G)
    alpha_star = inv / inv.sum()  # unique here: G is nonsingular
    f_star = float(1.0 / inv.sum())
    assert f_star == pytest.approx(case.f_star, rel=1e-12)
    res = _solve(case.G, method)
    if _check_status(res, method, name):
        assert_matches(case.G, res, f_star, case.G @ alpha_star, where=name)


# ------------------------------------------------------------------------------- edge cases and families


def _reference(G):
    """Wolfe's certified solution: (f*, G alpha*) up to its own gap, which the bounds below absorb."""
    ref = min_norm_point(G, method="wolfe")
    assert ref.success
    return ref


def _assert_agrees(G, res, ref, where):
    # Both results bound f*: f* in [value - gap, value]; compare each with the other's bracket.
    slack = res.tolerance + ref.tolerance
    assert res.value - ref.value <= res.gap + ref.gap + 2 * slack, where
    assert ref.value - res.value <= ref.gap + res.gap + 2 * slack, where
    err = np.abs(G @ res.weights - G @ ref.weights)
    diag = np.clip(np.diag(G), 0, None)
    allowed = (
        np.sqrt(diag * (res.gap + 2 * res.tolerance))
        + np.sqrt(diag * (ref.gap + 2 * ref.tolerance))
        + _slack(G, res.weights)
        + _slack(G, ref.weights)
    )
    assert np.all(err <= allowed), (where, float(np.max(err / allowed)))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases_are_certified(method, name):
    case = edge_case(name)
    res = _solve(case.G, method)
    if not _check_status(res, method, name):
        return
    if case.f_star is not None:
        assert res.value - case.f_star <= res.gap + 2 * res.tolerance, (res.value, case.f_star)
        assert res.value - case.f_star >= -res.tolerance, (res.value, case.f_star)
    if method != "wolfe":
        _assert_agrees(case.G, res, _reference(case.G), name)


def test_edge_cases_with_a_zero_optimum_reach_it():
    """All-zero G, a zero gradient, the origin in the hull, opposite gradients: f* = 0 exactly."""
    for name in ("all-zero", "zero-gradient", "origin-inside", "collinear-opposite"):
        case = edge_case(name)
        assert case.f_star == 0.0
        res = min_norm_point(case.G)
        assert res.success
        assert res.value <= res.tolerance, name


def test_duplicates_and_collinear_gradients_share_weight_freely():
    """Duplicate columns make alpha non-unique; Wolfe's corral keeps affinely independent points only."""
    for name in ("duplicates", "collinear", "rank-deficient"):
        case = edge_case(name)
        res = min_norm_point(case.G)
        assert res.success
        rank = np.linalg.matrix_rank(case.grads)
        assert len(res.support) <= rank + 1, name


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_random_families_agree_with_wolfe(method, family):
    for m in (2, 5, 17, 48):
        for seed in range(2):
            case = family_case(family, m, seed)
            res = _solve(case.G, method)
            if _check_status(res, method, case.name):
                if method != "wolfe":
                    _assert_agrees(case.G, res, _reference(case.G), case.name)


@pytest.mark.parametrize("method", METHODS)
def test_warm_start_reaches_the_same_optimum(method):
    rng = np.random.default_rng(5)
    for family in FAMILIES:
        case = family_case(family, 12, 7)
        init = rng.dirichlet(np.ones(12))
        res = _solve(case.G, method, init=init)
        if _check_status(res, method, case.name):
            _assert_agrees(case.G, res, _reference(case.G), case.name)  # for Wolfe: warm against cold


@pytest.mark.parametrize("family", list(FAMILIES))
def test_wolfe_warm_start_from_a_nearby_problem_saves_iterations(family):
    """Consecutive training steps solve nearby QPs: the previous support is nearly the new corral.

    m = 160 is beyond the Lawson-Hanson cold start's range (``wolfe._START_M``), so both counts are of
    Wolfe's cycles; within it the compiled cold start is often faster than a warm start (see the benchmark).
    """
    case = family_case(family, 160, 1)
    first = min_norm_point(case.G)
    rng = np.random.default_rng(3)
    scale = 1e-3 * np.sqrt(np.mean(np.diag(case.G)) / case.grads.shape[1])
    G2 = gram_of(case.grads + scale * rng.standard_normal(case.grads.shape))
    cold = min_norm_point(G2)
    warm = min_norm_point(G2, init=first.weights)
    assert cold.success and warm.success
    assert warm.iterations < cold.iterations, (warm.iterations, cold.iterations)
    _assert_agrees(G2, warm, cold, family)


@pytest.mark.parametrize("family", ["well-conditioned", "badly-scaled"])
def test_wolfe_corral_factor_stays_accurate_through_appends_and_removals(family):
    """The updated F (F F^T = A^-1, A = c 11^T + G_S) stays as accurate as a freshly computed factor."""
    from minmax.minnorm._corral import Corral

    G = family_case(family, 24, 2).G
    corral = Corral(G)
    rng = np.random.default_rng(0)
    worst_cond = 1.0
    for step in range(80):
        outside = [i for i in range(24) if not corral.member[i]]
        if corral.k < 3 or (outside and rng.random() < 0.6):
            corral.append(int(rng.choice(outside)))
        else:
            drop = np.zeros(corral.k, dtype=bool)
            drop[rng.choice(corral.k, size=int(rng.integers(1, 3)), replace=False)] = True
            corral.remove(drop)
        k, S = corral.k, corral.S
        A = corral.c + G[np.ix_(S, S)]
        F = corral.F[:k, :k]
        # A backward-stable factor leaves a residual of order cond(A) u (a fresh Cholesky inverse's does too);
        # an updated one carries the error of the worst-conditioned corral it went through.
        worst_cond = max(worst_cond, np.linalg.cond(A))
        residual = np.abs(F @ F.T @ A - np.eye(k)).max()
        assert residual <= 16 * k * EPS * worst_cond, (step, residual, worst_cond)
        np.testing.assert_allclose(corral.w[:k], F.sum(axis=0), rtol=0, atol=1e-13 * k * np.abs(F).max())
        assert sorted(S.tolist()) == [i for i in range(24) if corral.member[i]]


def test_wolfe_exchange_on_a_one_point_corral_is_silent(capfd):
    """An exchange that empties a one-point corral refactors nothing: LAPACK is not called with n = 0 (its
    xerbla used to print "On entry to DTRTRI parameter number 5 had an illegal value" to stderr)."""
    from minmax.minnorm import wolfe
    from minmax.minnorm._corral import Corral

    G = np.array([[1.0, 0.5], [0.5, 2.0]])
    corral = Corral(G)
    assert corral.append(1)
    x, ok = wolfe._exchange(corral, np.array([1.0]), 0)
    assert ok and corral.S.tolist() == [0]
    np.testing.assert_array_equal(x, [1.0])
    assert corral.refactor([]) == [] and corral.k == 0
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
