"""Simplex projection: against an independent bisection reference, at scale 1e9, with -inf, any backend."""

from __future__ import annotations

import numpy as np
import pytest

from minmax import project_simplex


def bisection_projection(v: np.ndarray, s: float = 1.0) -> np.ndarray:
    """Reference: theta is the root of sum_i max(v_i - theta, 0) = s, found by bisection (no sorting)."""
    finite = v[np.isfinite(v)]
    lo, hi = finite.max() - s, finite.max()  # the sum is >= s at lo and 0 at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0.0).sum() > s:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - 0.5 * (lo + hi), 0.0)


def assert_kkt(v: np.ndarray, a: np.ndarray, s: float, rtol: float = 1e-12) -> None:
    """a = max(v - theta, 0) for one theta, a >= 0, sum(a) = s: the optimality conditions."""
    scale = max(s, 1.0)
    assert np.all(a >= 0)
    assert abs(a.sum() - s) <= rtol * scale * len(a)
    support = a > 0
    theta = v[support] - a[support]
    assert np.ptp(theta) <= rtol * max(np.abs(v[support]).max(), scale)
    assert np.all(v[~support] <= theta.mean() + rtol * scale * 10)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 100])
@pytest.mark.parametrize("s", [1.0, 0.3, 7.0])
def test_matches_bisection_reference(n, s):
    rng = np.random.default_rng(n)
    for _ in range(5):
        v = rng.standard_normal(n) * rng.choice([0.01, 1.0, 100.0])
        a = project_simplex(v, s)
        np.testing.assert_allclose(a, bisection_projection(v, s), rtol=0, atol=1e-12 * max(s, 1))
        assert_kkt(v, a, s)


def test_known_values():
    np.testing.assert_allclose(project_simplex(np.array([0.5, 0.2, -1.0])), [0.65, 0.35, 0.0])
    np.testing.assert_array_equal(project_simplex(np.array([2.0, 0.0])), [1.0, 0.0])
    np.testing.assert_array_equal(project_simplex(np.array([0.25, 0.75])), [0.25, 0.75])  # on the simplex
    np.testing.assert_array_equal(project_simplex(np.zeros(4)), np.full(4, 0.25))
    np.testing.assert_array_equal(project_simplex(np.array([5.0])), [1.0])


def test_exact_at_scale_1e9():
    """Rows at 1e9 are projected as exactly as rows at 1 (shift invariance, dyadic offsets)."""
    offsets = np.array([0.5, 0.25, 0.0, -0.75])
    expected = project_simplex(offsets)
    np.testing.assert_array_equal(project_simplex(1e9 + offsets), expected)
    np.testing.assert_array_equal(project_simplex(-1e9 + offsets), expected)
    np.testing.assert_array_equal(project_simplex(np.array([1e9, 0.0, -1e9])), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(project_simplex(np.array([1e9, 1e9])), [0.5, 0.5])
    # total mass at scale 1e9 too
    np.testing.assert_array_equal(project_simplex(np.array([3e9, 1e9]), s=1e9), [1e9, 0.0])
    a = project_simplex(np.array([1.5e9, 1e9, 0.0]), s=1e9)
    np.testing.assert_array_equal(a, [0.75e9, 0.25e9, 0.0])


def test_neg_inf_entries_get_zero_weight():
    ninf = -np.inf
    np.testing.assert_array_equal(project_simplex(np.array([ninf, 0.3, ninf])), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([0.5, ninf, 0.2, -1.0])), [0.65, 0.0, 0.35, 0.0])
    batch = np.array([[ninf, 1.0, 1.0], [2.0, ninf, ninf]])
    np.testing.assert_array_equal(project_simplex(batch), [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize("bad", [[np.nan, 1.0], [np.inf, 1.0], [-np.inf, -np.inf]])
def test_rejects_nan_inf_and_all_neg_inf_rows(bad):
    with pytest.raises(ValueError):
        project_simplex(np.array(bad))
    with pytest.raises(ValueError):
        project_simplex(np.array([[0.0, 1.0], bad]))


def test_batch_along_any_axis_matches_row_by_row():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 5, 4))
    for axis in (0, 1, 2, -1):
        a = project_simplex(v, 2.0, axis=axis)
        assert a.shape == v.shape
        moved_v, moved_a = np.moveaxis(v, axis, -1), np.moveaxis(a, axis, -1)
        for idx in np.ndindex(moved_v.shape[:-1]):
            np.testing.assert_allclose(moved_a[idx], bisection_projection(moved_v[idx], 2.0), atol=1e-12)


def test_dtypes():
    assert project_simplex(np.array([1, 2, 3])).dtype == np.float64  # integers are cast
    a32 = project_simplex(np.array([0.5, 0.2, -1.0], dtype=np.float32))
    assert a32.dtype == np.float32
    np.testing.assert_allclose(a32, [0.65, 0.35, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((np.ones(3), 0.0), {}, ValueError),
        ((np.ones(3), -1.0), {}, ValueError),
        ((np.ones(3), np.inf), {}, ValueError),
        ((np.ones(3), np.nan), {}, ValueError),
        ((np.ones(3), True), {}, TypeError),
        ((np.ones(3), "1"), {}, TypeError),
        ((np.ones(3, dtype=complex),), {}, TypeError),
        ((np.ones(3, dtype=bool),), {}, TypeError),
        (([0.5, 0.5],), {}, TypeError),
        ((np.float64(1.0),), {}, ValueError),
        ((np.ones((2, 0)),), {}, ValueError),
        ((np.ones((2, 3)),), {"axis": 2}, ValueError),
    ],
)
def test_bad_input(args, kwargs, error):
    with pytest.raises(error):
        project_simplex(*args, **kwargs)


def test_torch_matches_numpy(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    v = rng.standard_normal((6, 7))
    v[0, 2] = -np.inf
    for dtype in (torch.float64, torch.float32):
        t = torch.tensor(v, dtype=dtype, device=device)
        a = project_simplex(t, 1.5, axis=1)
        assert isinstance(a, torch.Tensor) and a.dtype == dtype and a.device == t.device
        atol = 1e-12 if dtype == torch.float64 else 1e-5
        np.testing.assert_allclose(a.cpu().double().numpy(), project_simplex(v, 1.5, axis=1), atol=atol)
    t = torch.tensor(1e9 + np.array([0.5, 0.25, 0.0]), dtype=torch.float64, device=device)
    np.testing.assert_array_equal(
        project_simplex(t).cpu().numpy(), project_simplex(np.array([0.5, 0.25, 0.0]))
    )
    with pytest.raises(ValueError):
        project_simplex(torch.tensor([float("nan"), 1.0], device=device))


def test_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    v = np.array([[0.5, 0.2, -1.0], [3.0, 1.0, 1.0]])
    a = project_simplex(xp.asarray(v), axis=0)
    assert type(a) is type(xp.asarray(v))
    np.testing.assert_allclose(np.asarray(a), project_simplex(v, axis=0), atol=1e-15)
