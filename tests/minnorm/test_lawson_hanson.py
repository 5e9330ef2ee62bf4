"""Wolfe's cold start from the equivalent non-negative least-squares problem (Lawson-Hanson, in SciPy).

The start is never trusted: these tests check that it solves the QP where its arithmetic suffices, that
Wolfe returns it only when certified, and that an uncertified or failed start still ends at the optimum.
"""

from __future__ import annotations

import numpy as np
import pytest

from minmax import min_norm_point
from minmax.minnorm import Status, _lawson_hanson, wolfe
from minmax.minnorm._lawson_hanson import lawson_hanson_start

from .cases import FAMILIES, edge_case, family_case, gram_of
from .test_methods import INTEGER_CASES, _exact_reference, _random_integer_grads, assert_matches


def _integer_problems():
    for name in INTEGER_CASES:
        yield name, edge_case(name).grads
    for seed in range(12):
        yield f"seed {seed}", _random_integer_grads(seed)


@pytest.mark.parametrize(("name", "grads"), list(_integer_problems()))
def test_min_norm_point_is_exact_on_integer_problems_whatever_the_start_gives(name, grads):
    # The claim is the certified result, not the heuristic start: whether the start's rounding passes the
    # certificate depends on the BLAS kernel (OpenBLAS's Haswell kernel leaves f = 9e-32 on a zero gradient,
    # gap 1.9e-16 > floor 2.9e-30), and Wolfe finishes what it does not certify. Duplicates and affinely
    # dependent points (more points than dimensions + 1) included.
    G = gram_of(grads)
    start = lawson_hanson_start(G)
    if start is not None:  # whatever its accuracy, the start is a point of the simplex
        assert start.shape == (G.shape[0],) and np.all(start >= 0)
        assert abs(start.sum() - 1.0) <= 4 * G.shape[0] * np.finfo(float).eps
    res = min_norm_point(G)
    assert res.status is Status.OPTIMAL, (name, res.status, res.gap, res.tolerance)
    f_star, g_star = _exact_reference(grads)
    assert_matches(G, res, f_star, g_star, where=name)


def test_a_certified_start_is_the_answer():
    G = family_case("well-conditioned", 10).G
    start = lawson_hanson_start(G)
    res = min_norm_point(G)
    assert res.success
    np.testing.assert_array_equal(res.weights, start)
    assert res.iterations == np.count_nonzero(start)  # one outer Lawson-Hanson iteration per active point


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("bad_start", ["vertex", "spread", "none"])
def test_an_uncertified_or_failed_start_is_finished_by_wolfe(monkeypatch, family, bad_start):
    G = family_case(family, 12, seed=2).G
    expected = min_norm_point(G)
    m = G.shape[0]
    starts = {"vertex": np.eye(m)[int(np.argmax(np.diag(G)))], "spread": np.full(m, 1.0 / m), "none": None}
    monkeypatch.setattr(wolfe, "lawson_hanson_start", lambda G: starts[bad_start])
    res = min_norm_point(G)
    assert res.status is Status.OPTIMAL, (res.status, res.gap, res.tolerance)
    # Both certified: each value is within its tolerance of f*.
    assert abs(res.value - expected.value) <= res.tolerance + expected.tolerance


@pytest.mark.parametrize("max_iter", [1, 11, 12, 13])
def test_iterations_never_exceed_the_limit(monkeypatch, max_iter):
    # The start counts its active set (up to m iterations): it runs only when max_iter >= m.
    G = family_case("conflicting", 12).G
    spread = np.full(12, 1.0 / 12)  # not optimal, all 12 points active
    calls = []
    monkeypatch.setattr(wolfe, "lawson_hanson_start", lambda G: calls.append(1) or spread)
    res = min_norm_point(G, max_iter=max_iter)
    assert res.iterations <= max_iter
    assert bool(calls) == (max_iter >= 12)
    if max_iter == 12:  # the start used the whole budget: returned as it is, with an honest status
        assert res.status is Status.MAX_ITER and res.iterations == 12
        np.testing.assert_array_equal(res.weights, spread)


def test_scipy_iteration_limit_means_no_start(monkeypatch):
    def limit(A, b):
        raise RuntimeError("Maximum number of iterations reached.")

    monkeypatch.setattr(_lawson_hanson, "nnls", limit)
    G = family_case("conflicting", 10).G
    assert lawson_hanson_start(G) is None
    assert min_norm_point(G).success


@pytest.mark.parametrize("m", [3, 129])
def test_the_start_is_used_only_where_it_pays(monkeypatch, m):
    # Below 4 points Wolfe's cycles are as cheap; above 128 the compiled solver's cost grows faster.
    called = []
    monkeypatch.setattr(wolfe, "lawson_hanson_start", lambda G: called.append(G) or None)
    assert min_norm_point(family_case("well-conditioned", m).G).success
    assert not called
