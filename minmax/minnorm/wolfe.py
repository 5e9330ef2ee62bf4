r"""Wolfe's minimum-norm-point algorithm on the Gram matrix (the default method).

Wolfe's active-set method [1]_ finds :math:`x^* = M\alpha^*`, the point of the convex hull of the columns
:math:`g_1, \dots, g_m` of :math:`M` nearest the origin, in finitely many steps. It only ever needs inner
products of the points, so it runs on :math:`G = M^\top M` and never sees :math:`M`.

The state is a *corral* :math:`S` (affinely independent points) and weights :math:`\alpha_S > 0` that are
the minimizer of :math:`\|M_S y\|^2` over the affine hull :math:`\{y : \mathbf 1^\top y = 1\}`.

*Major cycle.* With :math:`G\alpha` at hand, stop when the Frank-Wolfe gap
:math:`2(\alpha^\top G\alpha - \min_i (G\alpha)_i)` passes the certificate of
:mod:`minmax.minnorm.certificate`; otherwise add :math:`j = \operatorname{argmin}_i (G\alpha)_i` to
:math:`S` (in exact arithmetic :math:`g_j` is then affinely independent of the corral, since every point
:math:`p` of its affine hull has :math:`p^\top M\alpha = \alpha^\top G\alpha > (G\alpha)_j`).

*Minor cycle.* The affine minimizer of the corral solves :math:`G_S y = \lambda \mathbf 1`,
:math:`\mathbf 1^\top y = 1`; equivalently, for any :math:`c > 0`,

.. math::

    (c\,\mathbf 1\mathbf 1^\top + G_S)\, u = \mathbf 1, \qquad y = u / \mathbf 1^\top u,

(Wolfe's formulation, with :math:`c = 1` there). The matrix :math:`A_S = c\,\mathbf 1\mathbf 1^\top + G_S
= [\sqrt c\,\mathbf 1;\ M_S]^\top[\sqrt c\,\mathbf 1;\ M_S]` is positive definite exactly when the corral is
affinely independent, so it has a Cholesky factor :math:`A_S = R^\top R`. If :math:`y > 0` it becomes the
new :math:`\alpha_S`; otherwise move from :math:`\alpha_S` toward :math:`y` until the first weight reaches
zero, drop the points whose weight vanished, and repeat.

Factorization. Adding a point appends a column to :math:`R` (one triangular solve, :math:`O(|S|^2)`) and
one entry to :math:`w = R^{-\top}\mathbf 1`, so the affine minimizer costs one more triangular solve,
:math:`u = R^{-1} w`. Dropping points re-factors :math:`A_S` with LAPACK: :math:`|S|^3/3` flops of
compiled code take tens of microseconds for :math:`|S| \le 256`, less than the Python-level loop of
:math:`|S|` Givens rotations a downdate needs, and re-factoring from :math:`G` discards the rounding that
successive appends accumulate. Drops are at most as many as adds.

The scale :math:`c` is the smallest positive diagonal entry of :math:`G`. Cholesky's rounding error is
relative to :math:`\sqrt{A_{ii}A_{jj}}`, so :math:`c` must not dwarf the small gradients (with norms over
1e-6 .. 1e6, :math:`c = \max_i G_{ii}` would erase the gradients of norm 1e-6), while any :math:`c > 0`
gives the same :math:`y` when :math:`G_S` is nonsingular (Sherman-Morrison).

Degeneracy. A candidate that is affinely dependent on the corral in floating point (duplicate, collinear
with corral points, or a stale argmin) is never regularized: the factorization is rebuilt from :math:`G`
once and the step retried; if there is still no progress the solve ends as ``STALLED`` with the best
point seen, and :func:`minmax.minnorm.min_norm_point` reports the recomputed certificate.

References
----------
.. [1] P. Wolfe. "Finding the nearest point in a polytope." Mathematical Programming 11 (1976), 128-149.
.. [2] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023 (Theorem 2: the steepest descent direction is :math:`-M\alpha^*/\|M\alpha^*\|`).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

from .certificate import DEFAULT_TOL, fw_gap, gap_tolerance
from .result import Status

__all__ = ["DEFAULT_MAX_ITER", "solve"]

#: Default limit on major plus minor cycles (typical solves need about 2 |S*| of them).
DEFAULT_MAX_ITER = 10_000

_EPS = np.finfo(np.float64).eps
# A candidate whose new Cholesky pivot is below this * |S| * u * A_jj is affinely dependent in floating
# point: its distance to the corral's affine hull is lost in the rounding of A_jj.
_DEPENDENCE_FACTOR = 16.0
# Stop (STALLED) after this many consecutive major cycles that do not lower f.
_MAX_NO_PROGRESS = 3
# Refine the affine minimizer when the corral's squared norms span more than this ratio.
_REFINE_RANGE = 1e4


class _Corral:
    r"""An affinely independent set S with the inverse Cholesky factor of A_S = c 11^T + G_S.

    ``Rinv`` is :math:`R^{-1}` (upper triangular, :math:`A_S = R^\top R`) and ``w`` is
    :math:`R^{-\top}\mathbf{1}`. The inverse factor is kept rather than R itself so that every solve is a
    matrix-vector product: at these sizes a triangular solve costs more in call overhead than in flops.
    """

    def __init__(self, G: np.ndarray):
        self.G = G
        self.c = self.dmin = self.dmax = 1.0
        m = G.shape[0]
        self.Rinv = np.zeros((m, m))
        self.w = np.zeros(m)
        self.idx = np.zeros(m, dtype=np.intp)
        self.k = 0

    @property
    def S(self) -> np.ndarray:
        """The corral's point indices, in factorization order (a view: copy before changing the corral)."""
        return self.idx[: self.k]

    def append(self, j: int) -> bool:
        """Add point j; return False (and change nothing) if it is affinely dependent on S."""
        g_jj = float(self.G[j, j])
        if self.k == 0:
            self.c, self.dmin, self.dmax = _scale(np.array([g_jj]))
        elif (
            g_jj > 0.0
            and not 0.25 * self.c <= np.sqrt(min(g_jj, self.dmin) * max(g_jj, self.dmax)) <= 4 * self.c
        ):
            # j widens the corral's range of norms: re-factor with the new c (see the module docstring).
            S = self.S.tolist()
            if self.refactor(S + [int(j)]):
                self.refactor(S)
                return False
            return True
        return self._append(j)

    def _append(self, j: int) -> bool:
        k = self.k
        a_jj = self.c + self.G[j, j]
        Rinv = self.Rinv[:k, :k]
        r = Rinv.T @ (self.c + self.G[j][self.S])  # R^T r = a_j: the new column of R
        pivot2 = a_jj - float(r @ r)
        if not pivot2 > _DEPENDENCE_FACTOR * (k + 1) * _EPS * a_jj:
            return False
        pivot = np.sqrt(pivot2)
        self.Rinv[:k, k] = (Rinv @ r) / -pivot
        self.Rinv[k, k] = 1.0 / pivot
        self.Rinv[k, :k] = 0.0
        self.w[k] = (1.0 - float(r @ self.w[:k])) / pivot
        self.idx[k] = j
        self.k = k + 1
        return True

    def refactor(self, S: list[int]) -> list[int]:
        """Factor A_S from G for the points S; return the points rejected as affinely dependent.

        A subset of a corral is affinely independent in exact arithmetic, so LAPACK's Cholesky normally
        succeeds; if rounding makes it fail, the points are appended one at a time and dependent ones left
        out (the caller removes their weight).
        """
        k = len(S)
        idx = np.asarray(S, dtype=np.intp)
        self.c, self.dmin, self.dmax = _scale(self.G[idx, idx])
        A = self.c + self.G[np.ix_(idx, idx)]
        try:
            L = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            L = None
        if L is not None and np.all(np.diag(L) ** 2 > _DEPENDENCE_FACTOR * k * _EPS * np.diag(A)):
            self.idx[:k] = S
            self.k = k
            Linv = solve_triangular(L, np.eye(k), lower=True, check_finite=False)
            self.Rinv[:k, :k] = Linv.T
            self.w[:k] = Linv.sum(axis=1)
            return []
        self.k = 0
        return [i for i in S if not self._append(i)]

    def coordinates(self, j: int) -> np.ndarray:
        """Affine coordinates z of point j on the corral: A_S z = c 1 + G_{S,j}."""
        Rinv = self.Rinv[: self.k, : self.k]
        return Rinv @ (Rinv.T @ (self.c + self.G[j][self.S]))

    def affine_minimizer(self, refine: bool = False) -> np.ndarray:
        """Weights y (summing to 1) of the point of least norm in the affine hull of the corral."""
        Rinv = self.Rinv[: self.k, : self.k]
        u = Rinv @ self.w[: self.k]
        if refine or self.dmax > _REFINE_RANGE * self.dmin:
            # One step of iterative refinement, the residual computed without rounding c + G_ij.
            residual = 1.0 - self.c * u.sum() - self.G[np.ix_(self.S, self.S)] @ u
            u = u + Rinv @ (Rinv.T @ residual)
        return u / u.sum()


def _scale(diag: np.ndarray) -> tuple[float, float, float]:
    """The constant c of A_S = c 11^T + G_S and the range of positive squared norms in the corral."""
    positive = diag[diag > 0]
    if not positive.size:
        return 1.0, 1.0, 1.0
    dmin, dmax = float(positive.min()), float(positive.max())
    return float(np.sqrt(dmin) * np.sqrt(dmax)), dmin, dmax


def _minor_cycles(corral: _Corral, x: np.ndarray, budget: int, new: int | None):
    """Run minor cycles from weights x > 0 on the corral until the affine minimizer is interior.

    Returns ``(x, cycles, progress)``; ``progress`` is False when the point just added (``new``) is dropped
    at once with a zero step, which only rounding can cause.
    """
    cycles = 0
    while True:
        y = corral.affine_minimizer()
        if not np.all(y > 0):  # a drop is decided on the signs of y: make sure of them first
            y = corral.affine_minimizer(refine=True)
        cycles += 1
        if np.all(y > 0):
            return y, cycles, True
        if cycles >= budget:
            return x, cycles, True
        neg = y <= 0
        ratios = np.full(x.shape, np.inf)
        # y_i <= 0 <= x_i; a point with x_i = y_i = 0 leaves at once (ratio 0, not 0/0).
        step = x[neg] - y[neg]
        ratios[neg] = np.where(step > 0, x[neg] / np.where(step > 0, step, 1.0), 0.0)
        theta = float(ratios.min())
        x = x + theta * (y - x)
        drop = (ratios <= theta) | (x <= 0)
        if new is not None and theta == 0.0 and drop[corral.S == new].any():
            return x, cycles, False
        keep = corral.S[~drop]  # a copy
        x = x[~drop]
        rejected = corral.refactor(keep.tolist())
        if rejected:  # rounding made a subset of the corral dependent: its points leave with their weight
            x = x[np.isin(keep, corral.S)]
        x = x / x.sum()
        new = None


def _enter_other(corral: _Corral, g_alpha: np.ndarray, value: float) -> int | None:
    """Append the most improving point (``(G alpha)_i < f``) that is affinely independent of the corral."""
    in_corral = np.zeros(g_alpha.shape, dtype=bool)
    in_corral[corral.S] = True
    candidates = np.flatnonzero((g_alpha < value) & ~in_corral)
    for i in candidates[np.argsort(g_alpha[candidates], kind="stable")][1:]:
        if corral.append(int(i)):
            return int(i)
    return None


def _exchange(corral: _Corral, x: np.ndarray, j: int) -> tuple[np.ndarray, bool]:
    r"""Pivot the numerically dependent point j into the corral in place of one of its points.

    If :math:`g_j = \sum_i z_i g_i` with :math:`\sum_i z_i = 1` (``z`` solves
    :math:`A_S z = c\mathbf 1 + G_{S,j}`), then :math:`\sum_i (x_i - t z_i) g_i + t g_j` is the same point
    for every t; the ratio test takes the largest t keeping the weights non-negative, and the point whose
    weight vanishes leaves (the simplex method's pivot). Rounding in ``z`` moves the point a little; the
    caller's progress guard catches cycling. Returns the new weights and whether the exchange succeeded.
    """
    S = corral.S.tolist()
    z = corral.coordinates(j)
    positive = z > 0
    if not np.any(positive):
        return x, False
    ratios = np.full(len(S), np.inf)
    ratios[positive] = x[positive] / z[positive]
    leave = int(np.argmin(ratios))
    t = float(ratios[leave])
    weights = dict(zip(S, np.maximum(x - t * z, 0.0), strict=True))
    weights[j] = t
    corral.refactor(S[:leave] + S[leave + 1 :])
    if not corral.append(j):
        corral.refactor(S)
        return x, False
    x = np.array([weights[i] for i in corral.S])
    if not x.sum() > 0:
        corral.refactor(S)
        return x, False
    return x / x.sum(), True


def solve(
    G: np.ndarray,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, int, Status]:
    r"""Minimize :math:`\alpha^\top G\alpha` over the simplex with Wolfe's algorithm.

    Parameters
    ----------
    G : ndarray of shape (m, m), float64
        Validated symmetric positive semidefinite Gram matrix (see :func:`minmax.min_norm_point`).
    tol : float
        Relative gap tolerance; the stopping test is the certificate's,
        ``gap <= gap_tolerance(G, alpha, f, tol)``.
    max_iter : int
        Limit on major plus minor cycles.
    init : ndarray of shape (m,), optional
        Warm start on the simplex; its support (largest weights first, affinely dependent points left
        out) is the initial corral.

    Returns
    -------
    weights : ndarray of shape (m,)
        Point of the simplex (exact zeros off the corral).
    iterations : int
        Major plus minor cycles.
    status : Status
        ``OPTIMAL`` when the certificate holds, ``MAX_ITER``, or ``STALLED`` when rounding leaves no
        improving step (the best point seen is returned).

    Notes
    -----
    See the module docstring for the algorithm and its factorization. In exact arithmetic the value
    decreases strictly at every major cycle and no corral repeats, hence finite termination [1]_.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.minnorm.wolfe import solve
    >>> G = np.array([[1.0, 0.0], [0.0, 4.0]])      # orthogonal: alpha_i proportional to 1 / G_ii
    >>> weights, iterations, status = solve(G, tol=1e-12)
    >>> weights, status.value
    (array([0.8, 0.2]), 'optimal')
    """
    weights, iterations, status = _wolfe(G, tol, max_iter, init)
    if status is Status.STALLED and init is not None and iterations < max_iter:
        # A warm start can leave rounding-level weights that no corral change removes: start afresh.
        cold, more, cold_status = _wolfe(G, tol, max_iter - iterations, None)
        iterations += more
        if cold_status is not Status.STALLED or _gap_ratio(G, cold, tol) < _gap_ratio(G, weights, tol):
            weights, status = cold, cold_status
    return weights, iterations, status


def _gap_ratio(G: np.ndarray, alpha: np.ndarray, tol: float) -> float:
    value, gap = fw_gap(alpha, G @ alpha)
    tolerance = gap_tolerance(G, alpha, value, tol)
    return gap / tolerance if tolerance > 0 else (0.0 if gap <= 0 else np.inf)


def _wolfe(G: np.ndarray, tol: float, max_iter: int, init: np.ndarray | None):
    m = G.shape[0]
    corral = _Corral(G)
    # A loose bound on the certificate's tolerance: alpha on the simplex has alpha^T|G|alpha <= max|G| and
    # (|G|alpha)_i <= max|G|, so gaps above it skip the O(m^2) exact tolerance.
    loose_floor = 8.0 * m * _EPS * float(np.max(np.abs(G)))
    iterations = 0
    if init is None:
        corral.append(int(np.argmin(np.diag(G))))
        x = np.ones(1)
    else:
        for i in np.argsort(-init, kind="stable"):
            if init[i] > 0:
                corral.append(int(i))
        x = init[corral.S] / init[corral.S].sum()
        x, cycles, _ = _minor_cycles(corral, x, max_iter, None)
        iterations += cycles

    best = (np.inf, None)
    last_value = np.inf
    no_progress = 0
    retried = False
    while True:
        alpha = np.zeros(m)
        alpha[corral.S] = x
        alpha /= alpha.sum()
        g_alpha = G @ alpha
        value, gap = fw_gap(alpha, g_alpha)
        if gap < best[0]:
            best = (gap, alpha)
        if gap <= max(tol * value, loose_floor) and gap <= gap_tolerance(G, alpha, value, tol):
            return alpha, iterations, Status.OPTIMAL
        if iterations >= max_iter:
            return alpha, iterations, Status.MAX_ITER
        no_progress = no_progress + 1 if value >= last_value else 0
        last_value = min(value, last_value)
        j = int(np.argmin(g_alpha))
        progress = no_progress < _MAX_NO_PROGRESS and j not in corral.S
        if progress and not corral.append(j):
            # j is affinely dependent on the corral in floating point although improving in exact
            # arithmetic (the Gram matrix resolves distances only to sqrt(u) * norm). Any improving point
            # keeps Wolfe's finite-termination argument: try the others, best first, then pivot j in.
            j = _enter_other(corral, g_alpha, value)
            if j is None:
                x, progress = _exchange(corral, x, int(np.argmin(g_alpha)))
                if progress:
                    x, cycles, _ = _minor_cycles(corral, x, max_iter - iterations, None)
                    iterations += cycles
        if progress and j is not None:
            x, cycles, progress = _minor_cycles(corral, np.append(x, 0.0), max_iter - iterations, j)
            iterations += cycles
            if not progress:  # the new point left at once: restore the corral without it
                corral.refactor([i for i in corral.S.tolist() if i != j])
                x = alpha[corral.S] / alpha[corral.S].sum()
        if not progress:
            if retried:
                return best[1], iterations, Status.STALLED
            # Rebuild the factorization from G and re-solve the corral's affine problem once.
            retried = True
            no_progress = 0
            corral.refactor(corral.S.tolist())
            x = alpha[corral.S]
            x, cycles, _ = _minor_cycles(corral, x / x.sum(), max_iter - iterations, None)
            iterations += cycles
