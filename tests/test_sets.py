"""Compact sets: projections are the nearest point (checked against closed forms and scipy), sampling is
uniform (cheap statistical checks), bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import optimize, stats

from minmax.sets import Box, CompactSet, FiniteSet, L2Ball, LinfBall, Simplex

SETS = [
    Box(-1.0, 1.0),
    Box([0.0, -2.0, 1.0], [1.0, 3.0, 1.5]),
    LinfBall([0.5, -0.5], 0.25),
    L2Ball([1.0, 2.0, -1.0], 0.5),
    L2Ball(0.0, 2.0),
    Simplex(4),
    Simplex(1),
    FiniteSet([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]),
]
IDS = [repr(s) for s in SETS]


def _reference_projection(S: CompactSet, x: np.ndarray) -> np.ndarray:
    """Nearest point of S to x, computed independently (closed forms; a KKT root for the simplex)."""
    if isinstance(S, Box):
        return np.minimum(np.maximum(x, S.lower), S.upper)
    if isinstance(S, L2Ball):
        d = x - S.center
        n = np.linalg.norm(d)
        return x if n <= S.radius else S.center + S.radius * d / n
    if isinstance(S, FiniteSet):
        return S.points[np.argmin([np.linalg.norm(x - p) for p in S.points])]
    # KKT: P(x) = max(x - tau, 0) with tau the root of sum(max(x - tau, 0)) = 1 (bracketed, found by brentq).
    tau = optimize.brentq(lambda t: np.sum(np.maximum(x - t, 0.0)) - 1.0, x.min() - 1.0, x.max(), xtol=1e-15)
    return np.maximum(x - tau, 0.0)


@pytest.mark.parametrize("S", SETS, ids=IDS)
@given(data=st.data())
def test_projection_is_nearest_point_and_idempotent(S, data):
    x = data.draw(arrays(np.float64, (S.dim,), elements=st.floats(-10, 10)))
    p = S.project(x)
    assert p.shape == x.shape
    assert S.contains(p, atol=1e-12)
    np.testing.assert_allclose(S.project(p), p, atol=1e-13)
    np.testing.assert_allclose(p, _reference_projection(S, x), atol=1e-7)


@pytest.mark.parametrize("S", SETS, ids=IDS)
def test_projection_beats_sampled_points(S):
    # Nearest point: no point of S is closer to x than P(x).
    rng = np.random.default_rng(1)
    x = 3.0 * rng.standard_normal((20, S.dim))
    p = S.project(x)
    y = S.sample(500, rng)
    d_proj = np.linalg.norm(x - p, axis=1)
    d_all = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2).min(axis=1)
    assert np.all(d_proj <= d_all + 1e-12)


@pytest.mark.parametrize("S", SETS, ids=IDS)
def test_batched_projection_matches_rows(S):
    x = np.random.default_rng(2).normal(size=(2, 3, S.dim)) * 4
    p = S.project(x)
    assert p.shape == x.shape
    for idx in np.ndindex(2, 3):
        np.testing.assert_array_equal(p[idx], S.project(x[idx]))
    assert S.contains(p).shape == (2, 3)


def test_simplex_projection_at_scale_and_known_values():
    S = Simplex(3)
    np.testing.assert_allclose(S.project([1e9, 0.0, -1e9]), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(S.project([0.5, 0.5, 0.5]), [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(S.project([2.0, 1.0, -5.0]), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(S.project([0.6, 0.5, 0.0]), [0.55, 0.45, 0.0])


@pytest.mark.parametrize("S", SETS, ids=IDS)
def test_samples_lie_inside(S):
    y = S.sample(1000, np.random.default_rng(3))
    assert y.shape == (1000, S.dim)
    assert np.all(S.contains(y, atol=1e-12))
    assert S.sample(0, np.random.default_rng(0)).shape == (0, S.dim)


def test_box_samples_uniform():
    S = Box([0.0, -2.0], [1.0, 2.0])
    y = S.sample(4000, np.random.default_rng(4))
    for j in range(2):
        u = (y[:, j] - S.lower[j]) / (S.upper[j] - S.lower[j])
        assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_l2_ball_samples_uniform_in_ball(dim):
    # Uniform in the ball: P(||x - c|| <= r t) = t^dim, and the direction is uniform on the sphere
    # (mean zero). Sampling on the sphere, or radius ~ U[0, 1], fails the radial test.
    S = L2Ball(np.arange(dim, dtype=float), 2.0)
    y = S.sample(4000, np.random.default_rng(5))
    r = np.linalg.norm(y - S.center, axis=1) / S.radius
    assert stats.kstest(r**dim, "uniform").pvalue > 1e-3
    assert np.all(np.abs(np.mean(y - S.center, axis=0)) < 0.1)


def test_simplex_samples_uniform():
    # The flat Dirichlet: each coordinate is Beta(1, n - 1).
    S = Simplex(4)
    y = S.sample(4000, np.random.default_rng(6))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-12)
    for j in range(4):
        assert stats.kstest(y[:, j], stats.beta(1, 3).cdf).pvalue > 1e-3


def test_diameters():
    assert Box([0.0, 0.0], [3.0, 4.0]).diameter == 5.0
    assert LinfBall([0.0, 0.0], 1.0).diameter == pytest.approx(2 * np.sqrt(2))
    assert L2Ball([0.0, 0.0, 0.0], 1.5).diameter == 3.0
    assert Simplex(5).diameter == pytest.approx(np.sqrt(2))
    assert Simplex(1).diameter == 0.0
    assert FiniteSet([[0.0], [1.0], [-2.0]]).diameter == 3.0


def test_contains_tolerance():
    S = L2Ball([0.0, 0.0], 1.0)
    assert S.contains([1.0 + 1e-10, 0.0], atol=1e-9)
    assert not S.contains([1.0 + 1e-6, 0.0], atol=1e-9)
    assert not Simplex(2).contains([0.5, 0.6])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L2Ball([0.0], 0.0), "radius"),
        (lambda: L2Ball([0.0], -1.0), "radius"),
        (lambda: LinfBall([0.0], float("nan")), "radius"),
        (lambda: L2Ball([np.inf], 1.0), "center"),
        (lambda: Box([0.0, 2.0], [1.0, 1.0]), "lower must not exceed upper"),
        (lambda: Box([0.0, 0.0], [1.0, 1.0, 1.0]), "same shape"),
        (lambda: Box([], []), "non-empty"),
        (lambda: Box(0.0, np.nan), "upper"),
        (lambda: Simplex(0), "dim"),
        (lambda: FiniteSet(np.zeros((0, 2))), "points"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_types():
    with pytest.raises(TypeError):
        L2Ball([0.0], "1")
    with pytest.raises(TypeError):
        Simplex(2.5)
    with pytest.raises(TypeError, match="Generator"):
        Box(0, 1).sample(3, 0)
    with pytest.raises(TypeError, match="int"):
        Box(0, 1).sample(2.0, np.random.default_rng())
    with pytest.raises(ValueError, match="non-negative"):
        Box(0, 1).sample(-1, np.random.default_rng())


def test_bad_points():
    S = L2Ball([0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        S.project([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        S.project([np.nan, 0.0])
    with pytest.raises(ValueError, match="atol"):
        S.contains([0.0, 0.0], atol=-1.0)
    # a scalar is a point only of a 1-D set
    assert Box(-1, 1).project(3.0).tolist() == [1.0]
    with pytest.raises(ValueError):
        S.project(3.0)
