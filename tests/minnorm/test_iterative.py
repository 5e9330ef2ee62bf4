"""What is specific to the iterative QP methods (APG, Frank-Wolfe) and to the cvxpy reference.

The sweep of every method over every edge case lives in the other ``test_*.py`` files; here: warm starts,
APG's tangent-space step, Frank-Wolfe's drop steps and linear rate, iteration limits, and the cvxpy
reference against Wolfe's method.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from minmax import check_min_norm, min_norm_point
from minmax.minnorm import Status, apg, frank_wolfe

from .cases import edge_case, family_case

ITERATIVE = ("apg", "fw-away", "fw-pairwise")


def _perturbed(G: np.ndarray, grads: np.ndarray, scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    moved = grads + scale * rng.standard_normal(grads.shape)
    return moved @ moved.T


# ------------------------------------------------------------------------------------------------ warm start


def _solver(method):
    """The method's ``solve`` with its variant bound, the face polishing switched off."""
    if method == "apg":
        return lambda G, **kw: apg.solve(G, polish=False, **kw)
    variant = method.split("-", 1)[1]
    return lambda G, **kw: frank_wolfe.solve(G, variant=variant, polish=False, **kw)


@pytest.mark.parametrize("method", ITERATIVE)
@pytest.mark.parametrize("family", ["well-conditioned", "multi-task", "conflicting"])
def test_warm_start_from_a_nearby_problem_takes_fewer_iterations(method, family):
    # The use case: consecutive training steps solve nearby QPs; the previous weights are a warm start.
    # Counted on the first-order iterations alone (polishing off), which the warm start is meant to save.
    solve = _solver(method)
    case = family_case(family, 16, seed=1)
    first, _, status = solve(case.G, tol=1e-12)
    assert status is Status.OPTIMAL
    G2 = _perturbed(case.G, case.grads, 1e-3 * np.sqrt(np.mean(np.diag(case.G)) / case.grads.shape[1]), 2)
    cold, cold_iterations, cold_status = solve(G2, tol=1e-12)
    warm, warm_iterations, warm_status = solve(G2, tol=1e-12, init=first)
    assert cold_status is Status.OPTIMAL and warm_status is Status.OPTIMAL
    assert warm_iterations < cold_iterations
    # Through the public entry point (polishing on) the warm start is accepted and certified too.
    res = min_norm_point(G2, method=method, init=first)
    ref = min_norm_point(G2, method="wolfe")
    assert res.success
    # Both certified: each value is within its tolerance of f* (the gap itself can round below 0).
    assert abs(res.value - ref.value) <= res.tolerance + ref.tolerance


@pytest.mark.parametrize("method", ITERATIVE)
def test_warm_start_at_the_optimum_stops_at_once(method):
    case = family_case("well-conditioned", 12)
    ref = min_norm_point(case.G, method="wolfe")
    res = min_norm_point(case.G, method=method, init=ref.weights)
    assert res.success
    assert res.iterations <= 1


@pytest.mark.parametrize("method", ITERATIVE)
def test_iteration_limit_is_a_status_not_an_exception(method):
    case = family_case("conflicting", 32)
    res = min_norm_point(case.G, method=method, max_iter=2)
    assert res.status is Status.MAX_ITER
    assert res.iterations == 2
    assert not res.success
    # Still a feasible point with an honest certificate.
    assert np.all(res.weights >= 0) and abs(res.weights.sum() - 1) < 1e-12
    assert res.gap > res.tolerance


# --------------------------------------------------------------------------------------------------- APG


def _tangent_lambda_max(G: np.ndarray) -> float:
    m = G.shape[0]
    P = np.eye(m) - np.ones((m, m)) / m
    return float(np.linalg.eigvalsh(P @ G @ P)[-1])


@pytest.mark.parametrize("m", [2, 5, 32, 33, 64, 200])
@pytest.mark.parametrize("family", ["well-conditioned", "low-rank", "multi-task", "badly-scaled"])
def test_apg_step_comes_from_a_valid_upper_bound_on_the_tangent_curvature(family, m):
    G = family_case(family, m, seed=3).G
    exact = 2.0 * _tangent_lambda_max(G)  # independent: the explicit projector, a full eigendecomposition
    L = apg.tangent_curvature(G)
    assert L >= exact * (1 - 1e-12)
    # Exact for small m; within the Schatten-norm factor m^(1/64) above.
    assert L <= exact * (1 + 1e-9 if m <= 32 else m ** (1 / 64) * (1 + 1e-9))


def test_apg_descent_lemma_holds_on_the_simplex_with_the_tangent_curvature():
    # f(b) <= f(a) + grad f(a).(b - a) + L/2 |b - a|^2 for points a, b of the simplex: the step 1/L is safe.
    rng = np.random.default_rng(0)
    G = family_case("multi-task", 40, seed=4).G
    L = apg.tangent_curvature(G)
    for _ in range(200):
        a, b = rng.dirichlet(np.full(40, 0.3), size=2)
        u = b - a
        assert b @ G @ b <= a @ G @ a + 2 * (G @ a) @ u + 0.5 * L * (u @ u) + 1e-9 * (a @ G @ a)


def test_tangent_curvature_ignores_a_component_shared_by_all_gradients():
    # A shared component inflates lambda_max(G) (the full-space Lipschitz constant the fixed-step
    # variant uses) but not the curvature on the simplex, so the tangent step is much longer.
    case = family_case("multi-task", 20, seed=5)
    assert apg.tangent_curvature(case.G) < 0.2 * 2.0 * np.linalg.eigvalsh(case.G)[-1]


def test_apg_restarts_and_keeps_every_iterate_on_the_simplex():
    G = family_case("conflicting", 24, seed=6).G
    steps = []
    w, it, status = apg.solve(G, tol=1e-12, polish=False, callback=steps.append)
    assert status is Status.OPTIMAL and len(steps) == it - 1  # the last, certified, iterate is returned
    assert any(s.restart for s in steps)  # the adaptive restart fires on this problem
    for s in steps:
        assert np.all(s.weights >= 0)
        assert abs(s.weights.sum() - 1) <= 1e-12
        assert 0.0 <= s.momentum < 1.0


@pytest.mark.parametrize("grads", [np.zeros((3, 2)), np.tile([[3.0, -4.0]], (4, 1))])
def test_apg_with_zero_tangent_curvature_returns_at_once(grads):
    # All gradients equal: PGP = 0, f is constant on the simplex, and there is no step to take.
    G = grads @ grads.T
    assert apg.tangent_curvature(G) == 0.0
    res = min_norm_point(G, method="apg")
    assert res.success and res.iterations == 0
    assert res.value == pytest.approx(float(grads[0] @ grads[0]))


# -------------------------------------------------------------------------------------------- Frank-Wolfe


@pytest.mark.parametrize("variant", frank_wolfe.VARIANTS)
def test_fw_drop_steps_keep_the_iterate_on_the_simplex(variant):
    # From the barycentre most weights must leave the support: drop steps are needed.
    case = family_case("conflicting", 30, seed=7)
    G = case.G
    steps = []
    w, it, status = frank_wolfe.solve(
        G, tol=1e-12, init=np.full(30, 1 / 30), variant=variant, polish=False, callback=steps.append
    )
    assert status is Status.OPTIMAL
    drops = [s for s in steps if s.drop >= 0]
    assert len(drops) >= 5
    W = np.array([s.weights for s in steps])
    assert np.all(W >= 0)
    assert np.all(np.abs(W.sum(axis=1) - 1) <= 1e-12)
    assert all(s.step >= 0.0 for s in steps)
    # The maintained G alpha stays the product (it is re-anchored periodically).
    g_alpha = np.array([s.g_alpha for s in steps])
    np.testing.assert_allclose(g_alpha, W @ G, rtol=0, atol=1e-10 * np.abs(G).max())
    for s in drops:
        assert s.weights[s.drop] == 0.0  # exactly, not up to round-off
    assert check_min_norm(G, w).optimal


def test_fw_away_converges_linearly_once_the_active_set_settles():
    # Lacoste-Julien & Jaggi (2015), Thm 1: on a strongly convex problem the suboptimality h_k = f_k - f*
    # contracts by a constant factor (1 - rho) on every non-drop step, and drop steps are at most half
    # of all steps; once the support is fixed there are no drops, so h_k decays geometrically.
    rng = np.random.default_rng(8)
    grads = rng.standard_normal((12, 30)) + 0.4  # m < d: G positive definite, f strongly convex
    G = grads @ grads.T
    f_star = min_norm_point(G, method="wolfe").value
    steps = []
    frank_wolfe.solve(G, tol=1e-14, variant="away", polish=False, callback=steps.append)
    h = np.array([s.weights @ G @ s.weights - f_star for s in steps])
    supports = [tuple(np.flatnonzero(s.weights > 0)) for s in steps]
    settled = max(k for k in range(1, len(steps)) if supports[k] != supports[k - 1])
    tail = h[settled:]
    tail = tail[tail > 1e-11 * f_star]  # before rounding takes over
    assert len(tail) >= 20
    # Monotone (exact line search) ...
    assert np.all(np.diff(tail) <= 1e-14 * f_star)
    # ... and geometric: log h is close to a line of negative slope, and every window contracts.
    k = np.arange(len(tail))
    slope, intercept = np.polyfit(k, np.log(tail), 1)
    residual = np.log(tail) - (slope * k + intercept)
    assert slope < -0.05
    assert np.max(np.abs(residual)) < 0.25 * abs(slope) * len(tail)
    window = 10
    ratios = tail[window:] / tail[:-window]
    assert np.all(ratios < 0.9)


def test_fw_rejects_an_unknown_variant():
    with pytest.raises(ValueError, match="away, pairwise"):
        frank_wolfe.solve(np.eye(2), tol=1e-12, variant="vanilla")


# ------------------------------------------------------------------------------------------------- cvxpy


@pytest.mark.parametrize(
    "name, m",
    [
        ("well-conditioned", 10),
        ("low-rank", 12),
        ("multi-task", 10),
        ("conflicting", 16),
        ("badly-scaled", 40),
    ],
)
def test_cvxpy_reference_agrees_with_wolfe(name, m):
    pytest.importorskip("cvxpy")
    case = family_case(name, m, seed=9)
    ref = min_norm_point(case.G, method="cvxpy")
    wolfe = min_norm_point(case.G, method="wolfe")
    assert wolfe.success
    assert ref.status in (Status.OPTIMAL, Status.STALLED)  # the solver finished; the certificate decides
    # Both points are feasible, so each gap bounds |x - x*|^2 with x = M alpha: the two combinations
    # differ by at most sqrt(gap_1) + sqrt(gap_2), whatever alpha's non-uniqueness.
    d = ref.weights - wolfe.weights
    assert np.sqrt(max(d @ case.G @ d, 0.0)) <= np.sqrt(ref.gap) + np.sqrt(wolfe.gap) + 1e-12
    assert abs(ref.value - wolfe.value) <= ref.gap + wolfe.gap + 1e-14 * wolfe.value
    if ref.success:
        assert abs(ref.value - wolfe.value) <= max(ref.tolerance, wolfe.tolerance) * 2


def test_cvxpy_missing_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # makes `import cvxpy` raise ImportError
    with pytest.raises(ImportError, match=r"minmax\[cvxpy\]"):
        min_norm_point(np.eye(3), method="cvxpy")


def test_cvxpy_solver_failure_is_a_status(monkeypatch):
    cp = pytest.importorskip("cvxpy")

    def fail(self, *args, **kwargs):
        raise cp.error.SolverError("simulated failure")

    monkeypatch.setattr(cp.Problem, "solve", fail)
    res = min_norm_point(edge_case("m2").G, method="cvxpy")
    assert res.status is Status.SOLVER_ERROR
    assert np.all(res.weights >= 0) and res.weights.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------- polishing


@pytest.mark.parametrize("method", ITERATIVE)
def test_polishing_certifies_where_the_first_order_method_alone_cannot(method):
    # Norms spread over 1e-6 .. 1e6: the curvature 2e12 makes every first-order step ~1e-12 long on the
    # small gradients the optimum is made of. Alone, the method ends honestly uncertified; the face
    # solve on its support finishes the job exactly.
    G = edge_case("spread-norms").G
    w, _, status = _solver(method)(G, tol=1e-12, max_iter=3000)
    assert status is not Status.OPTIMAL
    assert not check_min_norm(G, w).optimal
    res = min_norm_point(G, method=method)
    assert res.success
    assert abs(res.value - min_norm_point(G, method="wolfe").value) <= 2 * res.tolerance


@pytest.mark.parametrize("seed", range(5))
def test_polish_support_never_increases_f_and_is_exact_on_the_optimal_face(seed):
    rng = np.random.default_rng(seed)
    grads = rng.standard_normal((15, 8)) + 0.3
    G = grads @ grads.T
    alpha = rng.dirichlet(np.full(15, 0.5))
    polished = apg.polish_support(G, alpha, G @ alpha)
    assert np.all(polished >= 0) and abs(polished.sum() - 1) <= 1e-12
    assert polished @ G @ polished <= alpha @ G @ alpha * (1 + 1e-12)
    # From any point whose support contains the optimal face, polishing lands on the optimum.
    ref = min_norm_point(G, method="wolfe")
    start = 0.5 * ref.weights + 0.5 * np.where(ref.weights > 0, 1.0, 0.0) / len(ref.support)
    exact = apg.polish_support(G, start, G @ start)
    assert check_min_norm(G, exact).optimal


def test_polish_brings_in_a_vertex_that_is_nearly_on_the_current_face():
    # g1 lies within |g2|/2 (1e-9 of its own norm) of the segment from the tiny g2 to g4 = 2 g1, so the face
    # {g0, g1, g2, g4} is affinely dependent in floating point. From the best point of the wrong face
    # {g0, g2, g4} the entering g1 must be kept and g4 dropped: f changes by 1e-9 relatively, the gap
    # (which weighs the error by |g1| ~ 1e5) by orders of magnitude.
    G = edge_case("collinear-spread").G
    ref = min_norm_point(G, method="wolfe")
    wrong_face = np.array([1.91794497e-07, 0.0, 9.99999808e-01, 0.0, 4.568515e-10, 0.0])
    wrong_face /= wrong_face.sum()
    assert not check_min_norm(G, wrong_face).optimal
    polished, g_polished, certified = apg.polish_repeatedly(
        G, wrong_face, G @ wrong_face, certified=lambda x, gx: check_min_norm(G, x).optimal, tried=set()
    )
    assert certified
    assert polished[1] > 0 and polished[4] == 0
    assert abs(polished @ G @ polished - ref.value) <= 2 * ref.tolerance


@pytest.mark.parametrize("method", ITERATIVE)
@pytest.mark.parametrize("seed", range(6))
def test_certified_with_norms_over_twelve_orders_and_more_gradients_than_dimensions(method, seed):
    # The regime where the first-order iterations alone cannot reach 1e-12 and faces are affinely dependent:
    # m > d, norms over 1e-6 .. 1e6 in random directions, often the origin in the hull.
    rng = np.random.default_rng(100 + seed)
    m, d = (15, 6) if seed % 2 else (40, 25)
    grads = rng.standard_normal((m, d)) * 10.0 ** rng.uniform(-6, 6, size=(m, 1))
    G = grads @ grads.T
    res = min_norm_point(G, method=method)
    ref = min_norm_point(G, method="wolfe")
    assert res.success and ref.success
    assert abs(res.value - ref.value) <= 2 * (res.tolerance + ref.tolerance)
