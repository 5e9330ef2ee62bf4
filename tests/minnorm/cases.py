r"""Named test problems for :math:`\min_{\alpha\in\Delta}\alpha^\top G\alpha`, shared by tests and benchmarks.

Two kinds of generators:

* :data:`EDGE_CASES`: name -> function of no argument returning a :class:`Case` (the edge cases issue 2
  lists). Cases built from small integer gradients carry them in ``grads`` with ``integer=True``, so the
  exact rational reference (:mod:`tests.minnorm.exact`) applies to them.
* :data:`FAMILIES`: name -> function ``(m, rng) -> grads`` of shape ``(m, d)`` (row ``i`` is the gradient
  :math:`g_i`, the layout of :func:`minmax.gram`), the random families. :func:`family_case` wraps one into
  a :class:`Case`.

``G = grads @ grads.T`` throughout, so every G here is a true Gram matrix (PSD up to round-off).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["EDGE_CASES", "FAMILIES", "Case", "edge_case", "family_case", "gram_of"]


@dataclass(frozen=True)
class Case:
    """One minimum-norm-point problem.

    Attributes
    ----------
    name : str
    G : ndarray (m, m), float64
    grads : ndarray (m, d) or None
        The gradients as rows, when the case is built from them.
    f_star : float or None
        The optimal value when a closed form is known.
    integer : bool
        ``grads`` holds integers (``G`` is exact in float64 and in rationals).
    """

    name: str
    G: np.ndarray
    grads: np.ndarray | None = None
    f_star: float | None = None
    integer: bool = False

    @property
    def m(self) -> int:
        return self.G.shape[0]


def gram_of(grads: np.ndarray) -> np.ndarray:
    """Symmetric float64 Gram matrix of the rows of ``grads``."""
    grads = np.asarray(grads, dtype=np.float64)
    G = grads @ grads.T
    return 0.5 * (G + G.T)


def _from_grads(name, grads, f_star=None, integer=False) -> Case:
    grads = np.asarray(grads, dtype=np.float64)
    return Case(name, gram_of(grads), grads, f_star, integer)


# --------------------------------------------------------------------------------------------- edge cases


def _m1() -> Case:
    return _from_grads("m1", [[3.0, -4.0]], f_star=25.0, integer=True)


def _m2() -> Case:
    # Closed form: alpha_1 = clip((G22 - G12) / (G11 - 2 G12 + G22), 0, 1); here 0 < alpha_1 < 1.
    return _from_grads("m2", [[2.0, 1.0, 0.0], [-1.0, 2.0, 1.0]], integer=True)


def _m2_vertex() -> Case:
    # The clip is active: g_1 = (1, 0) lies closer to the origin than any other point of the segment.
    return _from_grads("m2-vertex", [[1.0, 0.0], [2.0, 1.0]], f_star=1.0, integer=True)


def _all_zero() -> Case:
    return Case("all-zero", np.zeros((4, 4)), np.zeros((4, 3)), 0.0, True)


def _zero_gradient() -> Case:
    grads = np.array([[1, 2, 0], [0, 0, 0], [-3, 1, 2], [2, 2, 2]])
    return _from_grads("zero-gradient", grads, f_star=0.0, integer=True)


def _origin_inside() -> Case:
    # Four corners of a square around the origin in the plane z = 0, plus two gradients off it: the origin is
    # the midpoint of g1 and g3 (and of g2 and g4), so the optimal weights are not unique.
    grads = np.array([[2, 1, 0], [-1, 2, 0], [-2, -1, 0], [1, -2, 0], [1, 1, 3], [0, -2, 5]])
    return _from_grads("origin-inside", grads, f_star=0.0, integer=True)


def _duplicates() -> Case:
    base = np.array([[3, 1, 0, 1], [1, 2, -1, 0], [0, 1, 2, 2]])
    grads = np.concatenate([base, base[[0, 1, 1]], base[[2]]])
    return _from_grads("duplicates", grads, integer=True)


def _collinear() -> Case:
    # g, 2g, 3g on one ray and h, 2h, 3h on another: only g and h can carry weight at the optimum.
    g = np.array([1, 2, 2])
    h = np.array([2, -1, 1])
    grads = np.stack([g, 2 * g, 3 * g, h, 2 * h, 3 * h])
    return _from_grads("collinear", grads, integer=True)


def _collinear_opposite() -> Case:
    # g and -2g: the origin lies on the segment between them.
    g = np.array([1, -2, 3])
    return _from_grads("collinear-opposite", np.stack([g, -2 * g, 3 * g]), f_star=0.0, integer=True)


def _rank_deficient() -> Case:
    # m = 12 gradients in d = 3: many affinely dependent subsets, G of rank 3.
    rng = np.random.default_rng(3)
    grads = rng.integers(-4, 5, size=(12, 3)) + np.array([6, 0, 0])  # first coordinate >= 2: f* > 0
    return _from_grads("rank-deficient", grads, integer=True)


def _orthogonal() -> Case:
    # Orthogonal gradients: alpha_i proportional to 1 / G_ii, f* = 1 / sum_i (1 / G_ii).
    norms = np.array([1.0, 2.0, 0.5, 3.0, 10.0])
    grads = np.diag(norms)
    return _from_grads("orthogonal", grads, f_star=float(1.0 / np.sum(1.0 / norms**2)))


def _orthogonal_rotated() -> Case:
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((8, 6)))
    norms = np.logspace(-2, 2, 6)
    grads = q.T * norms[:, None]
    return _from_grads("orthogonal-rotated", grads, f_star=float(1.0 / np.sum(1.0 / norms**2)))


def _spread_norms() -> Case:
    # Gradient norms spread over 1e-6 .. 1e6 in random directions (d > m: affinely independent).
    rng = np.random.default_rng(5)
    m = 13
    dirs = rng.standard_normal((m, m + 5))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return _from_grads("spread-norms", dirs * np.logspace(-6, 6, m)[:, None])


def _spread_norms_low_dim() -> Case:
    # Same spread with m > d: many gradients per direction, the hull can contain points far below 1e-6.
    rng = np.random.default_rng(6)
    m = 16
    dirs = rng.standard_normal((m, 4))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return _from_grads("spread-norms-low-dim", dirs * np.logspace(-6, 6, m)[:, None])


def _antipodal_spread() -> Case:
    # Norms 4e-5 .. 6e5 in the plane; g_4 and g_7 point in opposite directions, so f* = 0, but the small
    # gradients make the corrals {small, g_4, g_7} affinely independent only below G's round-off.
    dirs = np.array([[2, -1], [1, 0], [1, 1], [1, -1], [1, -3], [1, 0], [-1, 1], [3, 1]], dtype=float)
    scales = np.array([4.42e-5, 5.75e5, 7.73e-4, 5.26e4, 4.0e-5, 1.17e5, 1.88e3, 0.9])
    return _from_grads("antipodal-spread", dirs * scales[:, None], f_star=0.0)


def _mirrored_spread() -> Case:
    # Three gradients of norms 2e-3 .. 4e6 and their negatives, plus one more: f* = 0 (g_1 + g_5 = 0).
    base = np.array([[1, 0, -1, 0], [2, -2, 3, 3], [-3, 3, -1, -1]], dtype=float)
    base *= np.array([1.63e-3, 7.2e5, 4.45e-3])[:, None]
    extra = 3.33e5 * np.array([[-1.0, -2.0, -1.0, 1.0]])
    return _from_grads("mirrored-spread", np.concatenate([base, extra, -base]), f_star=0.0)


def _collinear_spread() -> Case:
    # Three integer directions at norms ~1e2, 4e4, 7e-5 and the same gradients doubled: the entering point
    # is often collinear with a corral point in floating point, which Wolfe must pivot in, not refuse.
    dirs = np.array(
        [[-1, 2, 0, -1, 3, -3, -3], [2, -2, 3, -2, -3, 3, 3], [-1, -3, -1, 2, 0, -3, -1]], dtype=float
    )
    grads = dirs * np.array([4.4940903456596082e01, 1.4255050666343768e04, 2.3866164887393901e-05])[:, None]
    return _from_grads("collinear-spread", np.concatenate([grads, 2.0 * grads]))


def _nearly_parallel() -> Case:
    # Unit gradients with pairwise cosine about 0.9999 (a common direction plus small perpendicular parts).
    rng = np.random.default_rng(7)
    m, d = 10, 20
    u = np.zeros(d)
    u[0] = 1.0
    perp = rng.standard_normal((m, d))
    perp[:, 0] = 0.0
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    grads = u + np.sqrt(2e-4) * perp  # cos(g_i, g_j) ~ 1 - 1e-4 for nearly orthogonal perp parts
    grads /= np.linalg.norm(grads, axis=1, keepdims=True)
    return _from_grads("nearly-parallel", grads)


def _large() -> Case:
    rng = np.random.default_rng(8)
    grads = rng.standard_normal((256, 300)) + 0.5
    return _from_grads("m256", grads)


def _large_low_rank() -> Case:
    rng = np.random.default_rng(9)
    grads = rng.standard_normal((256, 20)) + 0.3
    return _from_grads("m256-rank20", grads)


EDGE_CASES: dict[str, Callable[[], Case]] = {
    "m1": _m1,
    "m2": _m2,
    "m2-vertex": _m2_vertex,
    "all-zero": _all_zero,
    "zero-gradient": _zero_gradient,
    "origin-inside": _origin_inside,
    "duplicates": _duplicates,
    "collinear": _collinear,
    "collinear-opposite": _collinear_opposite,
    "rank-deficient": _rank_deficient,
    "orthogonal": _orthogonal,
    "orthogonal-rotated": _orthogonal_rotated,
    "spread-norms": _spread_norms,
    "spread-norms-low-dim": _spread_norms_low_dim,
    "antipodal-spread": _antipodal_spread,
    "mirrored-spread": _mirrored_spread,
    "collinear-spread": _collinear_spread,
    "nearly-parallel": _nearly_parallel,
    "m256": _large,
    "m256-rank20": _large_low_rank,
}


def edge_case(name: str) -> Case:
    """Build the edge case called ``name`` (a key of :data:`EDGE_CASES`)."""
    return EDGE_CASES[name]()


# ------------------------------------------------------------------------------------------ random families


def well_conditioned(m: int, rng: np.random.Generator) -> np.ndarray:
    """Independent Gaussian gradients in d = 2m + 8 dimensions (G well conditioned)."""
    return rng.standard_normal((m, 2 * m + 8)) + 0.2


def low_rank(m: int, rng: np.random.Generator) -> np.ndarray:
    """Gradients in a subspace of dimension r = min(m, max(2, m // 4)) < d (G singular for m > r)."""
    r = min(m, max(2, m // 4))
    return (rng.standard_normal((m, r)) + 0.5) @ rng.standard_normal((r, 2 * m + 8))


def conflicting(m: int, rng: np.random.Generator) -> np.ndarray:
    """Gradients that disagree: half along +v, half along -v, plus noise (the origin is near the hull)."""
    d = m + 8
    v = rng.standard_normal(d)
    signs = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
    return signs[:, None] * v * rng.uniform(0.5, 2.0, size=(m, 1)) + 0.3 * rng.standard_normal((m, d))


def multi_task(m: int, rng: np.random.Generator) -> np.ndarray:
    """A shared component plus smaller task-specific parts (as in multi-task learning and DDi restarts)."""
    d = 2 * m + 8
    shared = 3.0 * rng.standard_normal(d)
    return shared + rng.standard_normal((m, d))


def badly_scaled(m: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian gradients with norms spread over six orders of magnitude (1e-3 .. 1e3)."""
    grads = rng.standard_normal((m, 2 * m + 8)) + 0.2
    return grads * 10.0 ** rng.uniform(-3.0, 3.0, size=(m, 1))


FAMILIES: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "well-conditioned": well_conditioned,
    "low-rank": low_rank,
    "conflicting": conflicting,
    "multi-task": multi_task,
    "badly-scaled": badly_scaled,
}


def family_case(name: str, m: int, seed: int = 0) -> Case:
    """Draw one instance of the family ``name`` with m gradients, reproducibly from ``seed``."""
    grads = FAMILIES[name](m, np.random.default_rng(seed))
    return _from_grads(f"{name}-m{m}-s{seed}", grads)
