"""The contract of min_norm_point and check_min_norm: result fields, dtypes, bad input, the certificate."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from minmax import METHODS, MinNormResult, Status, check_min_norm, min_norm_point
from minmax.minnorm import MESSAGES
from minmax.minnorm.optimality import power_of_two_scale

from .cases import edge_case, family_case

# Looser tolerance for the cvxpy reference, which stops near relative gaps of 1e-8 (see test_methods).
TOL = {"cvxpy": 1e-6}


def _good_G():
    return family_case("well-conditioned", 6, 0).G


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["m1", "m2", "origin-inside", "nearly-parallel"])
def test_every_method_fills_every_field(method, name):
    G = edge_case(name).G
    res = min_norm_point(G, method=method, tol=TOL.get(method, 1e-12))
    assert isinstance(res, MinNormResult)
    fields = {f.name for f in dataclasses.fields(res)}
    assert fields == {
        "weights",
        "value",
        "gap",
        "tolerance",
        "iterations",
        "status",
        "message",
        "support",
        "method",
    }
    m = G.shape[0]
    assert (
        isinstance(res.weights, np.ndarray) and res.weights.dtype == np.float64 and res.weights.shape == (m,)
    )
    assert not res.weights.flags.writeable
    assert np.all(res.weights >= 0) and abs(res.weights.sum() - 1) <= 8 * m * np.finfo(float).eps
    for name_ in ("value", "gap", "tolerance"):
        assert type(getattr(res, name_)) is float, name_
        assert np.isfinite(getattr(res, name_))
    assert res.tolerance >= 0
    assert type(res.iterations) is int and res.iterations >= 0
    assert isinstance(res.status, Status)
    assert res.message == MESSAGES[res.status]
    assert isinstance(res.support, np.ndarray) and res.support.dtype.kind == "i"
    np.testing.assert_array_equal(res.support, np.flatnonzero(res.weights > 0))
    assert res.method == method
    assert res.success is (res.status is Status.OPTIMAL)
    # the certificate fields are the ones recomputed from the inputs
    cert = check_min_norm(G, res.weights, rtol=TOL.get(method, 1e-12))
    assert (cert.value, cert.gap, cert.tolerance, cert.optimal) == (
        res.value,
        res.gap,
        res.tolerance,
        res.success,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.value = 0.0


@pytest.mark.parametrize("method", METHODS)
def test_float32_input_is_solved_in_float64(method):
    grads = family_case("multi-task", 8, 3).grads
    G32 = (grads.astype(np.float32) @ grads.astype(np.float32).T).astype(np.float32)
    G32 = (G32 + G32.T) / 2
    res = min_norm_point(G32, method=method, tol=TOL.get(method, 1e-12))
    assert res.weights.dtype == np.float64
    if method != "cvxpy":
        assert res.success
    # certified against the float64 cast of the float32 matrix, which is what was solved
    cert = check_min_norm(G32.astype(np.float64), res.weights, rtol=TOL.get(method, 1e-12))
    assert cert.value == res.value and cert.gap == res.gap


def test_integer_and_nested_list_input():
    res = min_norm_point([[2, 1], [1, 2]])
    assert res.success and res.value == pytest.approx(1.5)
    np.testing.assert_allclose(res.weights, [0.5, 0.5])


def test_torch_input(device):
    torch = pytest.importorskip("torch")
    G = _good_G()
    res = min_norm_point(torch.tensor(G, device=device))
    ref = min_norm_point(G)
    assert res.success and res.value == pytest.approx(ref.value, rel=1e-12)


def test_round_off_asymmetry_and_indefiniteness_are_accepted():
    case = edge_case("m256-rank20")  # rank 20 of 256: eigenvalues of order -1e-13 from round-off
    assert np.linalg.eigvalsh(case.G)[0] < 0
    assert min_norm_point(case.G).success
    G = _good_G()
    G_asym = G.copy()
    G_asym[0, 1] *= 1 + 1e-15
    assert min_norm_point(G_asym).success


def _bad_inputs():
    G = _good_G()
    nonsym = G.copy()
    nonsym[0, 1] += 1e-3 * np.abs(G).max()
    indefinite = G - 2 * np.linalg.eigvalsh(G)[-1] * np.outer(np.eye(6)[0], np.eye(6)[0])
    nan, inf = G.copy(), G.copy()
    nan[1, 1] = np.nan
    inf[2, 3] = inf[3, 2] = np.inf
    return [
        ("non-square", G[:, :5], {}, ValueError),
        ("1-d", np.diag(G), {}, ValueError),
        ("3-d", G[None], {}, ValueError),
        ("non-symmetric", nonsym, {}, ValueError),
        ("indefinite", indefinite, {}, ValueError),
        ("negative diagonal", -np.eye(3), {}, ValueError),
        ("nan", nan, {}, ValueError),
        ("inf", inf, {}, ValueError),
        ("empty", np.zeros((0, 0)), {}, ValueError),
        ("complex", G.astype(complex), {}, TypeError),
        ("bool", np.eye(3, dtype=bool), {}, TypeError),
        ("object", np.array([[1, None], [None, 1]], dtype=object), {}, TypeError),
        ("string", "G", {}, TypeError),
        ("negative tol", G, {"tol": -1e-12}, ValueError),
        ("nan tol", G, {"tol": float("nan")}, ValueError),
        ("string tol", G, {"tol": "1e-12"}, TypeError),
        ("max_iter 0", G, {"max_iter": 0}, ValueError),
        ("max_iter negative", G, {"max_iter": -5}, ValueError),
        ("max_iter float", G, {"max_iter": 10.0}, TypeError),
        ("max_iter bool", G, {"max_iter": True}, TypeError),
        ("init wrong length", G, {"init": np.full(5, 0.2)}, ValueError),
        ("init negative", G, {"init": np.array([1.5, -0.5, 0, 0, 0, 0])}, ValueError),
        ("init not summing to 1", G, {"init": np.full(6, 0.5)}, ValueError),
        ("init nan", G, {"init": np.array([np.nan, 1, 0, 0, 0, 0])}, ValueError),
        ("init complex", G, {"init": np.full(6, 1 / 6, dtype=complex)}, TypeError),
    ]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scale", [1e-310, 1e-300, 1e300, 1e306])
@pytest.mark.parametrize("family", ["well-conditioned", "badly-scaled"])
def test_tiny_and_huge_gram_matrices_are_solved_like_moderate_ones(method, scale, family):
    # A valid G at any scale: its entries subnormal (gradient norms near 1e-155) or near overflow. The
    # methods run on 2^k G (same minimizers, exact) and the certificate on G itself.
    G1 = family_case(family, 10).G
    G = G1 / np.abs(G1).max() * scale
    ref = min_norm_point(G / np.abs(G).max())
    res = min_norm_point(G, method=method, tol=TOL.get(method, 1e-12))
    if method != "cvxpy":
        assert res.success, (res.status, res.gap, res.tolerance)
    ratio = np.abs(G).max()
    assert abs(res.value - ratio * ref.value) <= res.gap + res.tolerance + ratio * (ref.gap + ref.tolerance)


def test_power_of_two_scale_is_exact_and_only_where_needed():
    assert power_of_two_scale(1.0) == power_of_two_scale(2.0**300) == power_of_two_scale(0.0) == 1.0
    for largest in (5e-324, 1e-310, 2.0**-301, 2.0**301, 1.7e308):
        factor = power_of_two_scale(largest)
        assert math.frexp(factor)[0] == 0.5  # a power of two: scaling by it rounds nothing
        assert 2.0**-80 <= largest * factor <= 1.0


def test_subnormal_scale_still_rejects_an_indefinite_matrix():
    with pytest.raises(ValueError, match="positive semidefinite"):
        min_norm_point(1e-310 * np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert min_norm_point(1e-310 * np.array([[1.0, -1.0], [-1.0, 1.0]])).success  # g and -g: f* = 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("label", "G", "kwargs", "error"), _bad_inputs(), ids=[b[0] for b in _bad_inputs()])
def test_bad_input_raises_a_clear_error(method, label, G, kwargs, error):
    with pytest.raises(error) as info:
        min_norm_point(G, method=method, **kwargs)
    assert str(info.value), label  # the message names the problem


def test_error_messages_name_the_problem():
    G = _good_G()
    with pytest.raises(ValueError, match="square"):
        min_norm_point(G[:, :5])
    with pytest.raises(ValueError, match="symmetric"):
        bad = G.copy()
        bad[0, 1] += 1.0
        min_norm_point(bad)
    with pytest.raises(ValueError, match="semidefinite"):
        min_norm_point(-np.eye(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        min_norm_point(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="empty"):
        min_norm_point(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="tol"):
        min_norm_point(G, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        min_norm_point(G, max_iter=0)
    with pytest.raises(ValueError, match="init"):
        min_norm_point(G, init=np.full(6, 0.5))


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        min_norm_point(_good_G(), method="simplex-magic")
    for name in METHODS:
        assert name in str(info.value)
    with pytest.raises(TypeError):
        min_norm_point(_good_G(), method=None)
    assert min_norm_point(_good_G(), method="WOLFE").method == "wolfe"  # names are case-insensitive


@pytest.mark.parametrize("method", METHODS)
def test_iteration_limit_is_a_status_with_a_feasible_point(method):
    G = family_case("conflicting", 40, 2).G
    res = min_norm_point(G, method=method, max_iter=1)
    assert res.status in (Status.MAX_ITER, Status.OPTIMAL, Status.SOLVER_ERROR, Status.STALLED)
    assert res.status is not Status.OPTIMAL or res.gap <= res.tolerance
    assert np.all(res.weights >= 0) and res.weights.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_warm_start_at_the_optimum_is_accepted(method):
    G = family_case("low-rank", 12, 4).G
    opt = min_norm_point(G)
    res = min_norm_point(G, method=method, init=opt.weights, tol=TOL.get(method, 1e-12))
    if method != "cvxpy":
        assert res.success
        assert res.value == pytest.approx(opt.value, rel=1e-9)


# ---------------------------------------------------------------------------------------------- certificate


def test_certificate_accepts_the_optimum_and_reports_its_fields():
    G = np.array([[1.0, 0.0], [0.0, 4.0]])
    cert = check_min_norm(G, [0.8, 0.2])
    assert cert.feasible and cert.optimal
    assert cert.value == pytest.approx(0.8) and cert.gap <= cert.tolerance
    assert cert.lower_bound <= cert.value and cert.infeasibility == 0.0


def test_certificate_detects_a_suboptimal_point():
    G = np.array([[1.0, 0.0], [0.0, 4.0]])
    cert = check_min_norm(G, [0.5, 0.5])
    assert cert.feasible and not cert.optimal
    # gap = 2 (f - min_i (G a)_i) = 2 (1.25 - 0.5) and it bounds f - f* = 1.25 - 0.8
    assert cert.gap == pytest.approx(1.5)
    assert cert.value - 0.8 <= cert.gap
    assert cert.lower_bound <= 0.8
    # slightly off the optimum: detected at the default tolerance, accepted at a loose one
    near = [0.8 + 1e-6, 0.2 - 1e-6]
    assert not check_min_norm(G, near).optimal
    assert check_min_norm(G, near, rtol=1e-3).optimal


@pytest.mark.parametrize(
    "weights",
    [[1.2, -0.2], [0.5, 0.6], [0.4, 0.4], [-1e-9, 1.0 + 1e-9], [0.8, 0.2 + 1e-9]],
)
def test_certificate_detects_an_infeasible_point(weights):
    G = np.array([[1.0, 0.0], [0.0, 4.0]])
    cert = check_min_norm(G, weights)
    assert not cert.feasible and not cert.optimal
    assert cert.infeasibility > 0


def test_certificate_validates_its_input():
    G = np.eye(2)
    with pytest.raises(ValueError):
        check_min_norm(G, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        check_min_norm(G, [np.nan, 1.0])
    with pytest.raises(ValueError):
        check_min_norm(G, [0.5, 0.5], rtol=-1.0)
    with pytest.raises(ValueError):
        check_min_norm(np.array([[1.0, 2.0], [0.0, 1.0]]), [0.5, 0.5])
    with pytest.raises(TypeError):
        check_min_norm(G, np.array([0.5, 0.5], dtype=complex))


def test_result_is_never_optimal_with_a_wrong_answer():
    """finalize recomputes the certificate: a solver claiming OPTIMAL on a bad point is reported STALLED."""
    from minmax.minnorm.optimality import finalize

    G = np.array([[1.0, 0.0], [0.0, 4.0]])
    res = finalize(G, np.array([0.5, 0.5]), method="wolfe", iterations=3, status=Status.OPTIMAL, rtol=1e-12)
    assert res.status is Status.STALLED and not res.success
