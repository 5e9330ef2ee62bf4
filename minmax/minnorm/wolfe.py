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

Factorization. The corral keeps a square factor :math:`F` with :math:`FF^\top = A_S^{-1}` (the inverse
Cholesky factor :math:`R^{-1}` after a fresh factorization) and :math:`w = F^\top\mathbf 1`. Adding a
point appends a column: :math:`r = F^\top a_j`, pivot :math:`\rho = (A_{jj} - r^\top r)^{1/2}`, new column
:math:`(-Fr/\rho,\ 1/\rho)` and :math:`w_{k+1} = (1 - r^\top w)/\rho`, all :math:`O(|S|^2)`; the affine
minimizer is then :math:`u = Fw`, :math:`O(|S|^2)`. Dropping point p is a rank-one downdate of the
inverse, :math:`A'^{-1} = B(I - \rho_p\rho_p^\top/\|\rho_p\|^2)B^\top` (:math:`\rho_p` row p of F, B the
other rows), done by one Householder reflection, :math:`O(|S|^2)` (``_Corral.remove``). Keeping the
inverse factor turns every solve into a matrix-vector product, cheaper at these sizes than the call
overhead of a triangular solve, and no LAPACK call sits in the loop: a threaded LAPACK factorization
costs far more than its flops on a busy machine (measured: 0.23 s for one 170 x 170 Cholesky with
OpenBLAS threads on two loaded cores). The factor is rebuilt from :math:`G` (Cholesky, LAPACK) only when
a new point widens the corral's range of norms (below) and when the solve stalls. The corral also stores
the rows of :math:`G` of its points, so :math:`G\alpha` is one :math:`O(m|S|)` product per major cycle.

Scale. Any :math:`c > 0` gives the same :math:`y` (Sherman-Morrison when :math:`G_S` is nonsingular), but
not the same rounding: the :math:`c` term distinguishes points whose differences :math:`G_S` cannot see
(e.g. :math:`g` and :math:`-g`, resolved only if :math:`c \gtrsim u\max G_{ii}`), while entries
:math:`c + G_{ij}` lose the small gradients' inner products if :math:`c \gg \min G_{ii}/u`. The corral
uses :math:`c = (\min_S G_{ii}\,\max_S G_{ii})^{1/2}` over its positive diagonal, which satisfies both for
norm ratios up to about :math:`1/u`, and re-factors when a new point widens that range by more than 16x.
When the range exceeds 1e4, or a drop is about to be decided on the signs of :math:`y`, two steps of
iterative refinement recompute the residual :math:`\mathbf 1 - c\,\mathbf 1^\top u\,\mathbf 1 - G_S u`
without rounding :math:`c + G_{ij}`.

Degeneracy. Nothing is regularized. The Gram matrix resolves distances only to about
:math:`\sqrt u` times the norms, so an improving point can be affinely dependent on the corral in floating
point (duplicates, collinear points, antipodal pairs next to tiny gradients). Then, in order: the next
improving points are tried (any point with :math:`(G\alpha)_j < f` keeps Wolfe's finite-termination
argument); the argmin is pivoted in by a ratio test on its affine coordinates, keeping :math:`M\alpha`
(``_exchange``); the corral is re-factored from :math:`G` and re-solved once. A major cycle that does
not lower :math:`f` three times in a row, or a corral with no improving change, ends the solve as
``STALLED`` with the best point seen; a stalled warm start is retried from a cold start.

References
----------
.. [1] P. Wolfe. "Finding the nearest point in a polytope." Mathematical Programming 11 (1976), 128-149.
.. [2] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023 (Theorem 2: the steepest descent direction is :math:`-M\alpha^*/\|M\alpha^*\|`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dtrtri

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
# Refinement steps (two: the factor comes from updates, not from G, and is only nearly exact).
_REFINE_STEPS = 2
_ZERO = np.zeros(1)


def _scale(diagonal) -> tuple[float, float, float]:
    """The constant c of A_S = c 11^T + G_S and the range of positive squared norms in the corral."""
    positive = [d for d in diagonal if d > 0.0]
    if not positive:
        return 1.0, 1.0, 1.0
    low, high = min(positive), max(positive)
    return math.sqrt(low) * math.sqrt(high), low, high


class _Corral:
    r"""An affinely independent set S and a factor F with :math:`FF^\top = (c\,11^\top + G_S)^{-1}`.

    ``F[:k, :k]`` and ``w[:k]`` are F and :math:`F^\top\mathbf 1` (module docstring), ``rows[:k]`` the rows
    of G of the corral's points and ``idx[:k]`` their indices, in factorization order. Hot paths use a
    few NumPy calls on short vectors and Python floats for scalars: at m = 10 the per-call overhead, not
    the flops, is the cost.
    """

    __slots__ = ("G", "diag", "c", "low", "high", "F", "w", "rows", "idx", "member", "k")

    def __init__(self, G: np.ndarray):
        m = G.shape[0]
        self.G = G
        self.diag = G.diagonal().tolist()
        self.c = self.low = self.high = 1.0
        self.F = np.zeros((m, m))
        self.w = np.zeros(m)
        self.rows = np.zeros((m, m))
        self.idx = np.zeros(m, dtype=np.intp)
        self.member = [False] * m
        self.k = 0

    @property
    def S(self) -> np.ndarray:
        """The corral's point indices (a view: copy it before changing the corral)."""
        return self.idx[: self.k]

    def append(self, j: int) -> bool:
        """Add point j; return False (and change nothing) if it is affinely dependent on S."""
        g_jj = self.diag[j]
        if self.k == 0:
            self.c, self.low, self.high = _scale([g_jj])
        elif (
            g_jj > 0.0
            and not 0.25 * self.c <= math.sqrt(min(g_jj, self.low) * max(g_jj, self.high)) <= 4.0 * self.c
        ):
            # j widens the corral's range of norms: re-factor with the new c (see the module docstring).
            saved = self.save()
            if self.refactor(self.S.tolist() + [j]):
                self.restore(saved)
                return False
            return True
        return self._append(j)

    def save(self) -> tuple:
        """A copy of the corral's state, for :meth:`restore` (the rare paths that try a change)."""
        k = self.k
        return (k, self.c, self.low, self.high, self.F[:k, :k].copy(), self.w[:k].copy(), self.S.copy())

    def restore(self, saved: tuple) -> None:
        k, self.c, self.low, self.high, F, w, idx = saved
        for i in self.S.tolist():
            self.member[i] = False
        self.F[:k, :k] = F
        self.w[:k] = w
        self.idx[:k] = idx
        self.rows[:k] = self.G[idx]
        for i in idx.tolist():
            self.member[i] = True
        self.k = k

    def _append(self, j: int) -> bool:
        k, c = self.k, self.c
        a_jj = c + self.diag[j]
        if k:
            Rk = self.F[:k, :k]
            r = (self.rows[:k, j] + c).dot(Rk)  # R^-T a_j, a_j = c 1 + G_{S,j}: the new column of R
            pivot2 = a_jj - float(r.dot(r))
        else:
            pivot2 = a_jj
        if not pivot2 > _DEPENDENCE_FACTOR * (k + 1) * _EPS * a_jj:
            return False
        pivot = math.sqrt(pivot2)
        if k:
            self.F[:k, k] = Rk.dot(r) * (-1.0 / pivot)
            self.F[k, :k] = 0.0
            self.w[k] = (1.0 - float(r.dot(self.w[:k]))) / pivot
        else:
            self.w[0] = 1.0 / pivot
        self.F[k, k] = 1.0 / pivot
        self.rows[k] = self.G[j]
        self.idx[k] = j
        self.member[j] = True
        self.k = k + 1
        return True

    def remove(self, drop: np.ndarray) -> None:
        """Remove the points at the corral positions where ``drop`` is True (Householder downdates)."""
        for p in np.flatnonzero(drop)[::-1].tolist():
            k = self.k
            F = self.F
            rho = F[p, :k].copy()
            self.member[int(self.idx[p])] = False
            if p < k - 1:
                F[p : k - 1, :k] = F[p + 1 : k, :k]
                self.rows[p : k - 1] = self.rows[p + 1 : k]
                self.idx[p : k - 1] = self.idx[p + 1 : k]
            rho[k - 1] += math.copysign(math.sqrt(float(rho.dot(rho))), rho[k - 1])
            B = F[: k - 1, :k]
            B -= np.multiply.outer(B.dot(rho), rho * (2.0 / float(rho.dot(rho))))
            self.k = k - 1
        self.w[: self.k] = self.F[: self.k, : self.k].sum(axis=0)

    def pop(self) -> None:
        """Remove the last point appended (its factor is the leading block: nothing to recompute)."""
        self.k -= 1
        self.member[int(self.idx[self.k])] = False

    def refactor(self, S: list[int]) -> list[int]:
        """Factor A_S from G for the points S; return the points rejected as affinely dependent.

        A subset of a corral is affinely independent in exact arithmetic, so LAPACK's Cholesky normally
        succeeds; if rounding makes it fail, the points are appended one at a time and dependent ones left
        out (the caller removes their weight).
        """
        if self.factor(S):
            return []
        self.k = 0
        return [i for i in S if not self._append(i)]

    def factor(self, S: list[int]) -> bool:
        """Factor A_S from G with LAPACK; False (corral emptied) if S is dependent in floating point."""
        for i in self.S.tolist():
            self.member[i] = False
        self.k = 0
        k = len(S)
        idx = np.array(S, dtype=np.intp)
        rows = self.G[idx]
        A = rows[:, idx]
        self.c, self.low, self.high = _scale([self.diag[i] for i in S])
        A += self.c
        try:
            L = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            L = None
        if L is not None and np.all(np.diagonal(L) ** 2 > _DEPENDENCE_FACTOR * k * _EPS * np.diagonal(A)):
            Linv, info = dtrtri(L, lower=1)
            if info == 0:
                self.F[:k, :k] = Linv.T
                self.w[:k] = Linv.sum(axis=1)
                self.rows[:k] = rows
                self.idx[:k] = idx
                for i in S:
                    self.member[i] = True
                self.k = k
                return True
        return False

    def coordinates(self, j: int) -> np.ndarray:
        """Affine coordinates z of point j on the corral: A_S z = c 1 + G_{S,j}."""
        Rk = self.F[: self.k, : self.k]
        return Rk.dot((self.rows[: self.k, j] + self.c).dot(Rk))

    def affine_minimizer(self, refine: bool = False) -> np.ndarray:
        """u = A_S^-1 1; the affine minimizer of the corral is y = u / sum(u) (and sum(u) > 0)."""
        k = self.k
        Rk = self.F[:k, :k]
        u = Rk.dot(self.w[:k])
        if refine or self.high > _REFINE_RANGE * self.low:
            # Iterative refinement, the residual computed without rounding c + G_ij.
            G_S = self.rows[:k, self.idx[:k]]
            for _ in range(_REFINE_STEPS):
                residual = 1.0 - self.c * float(u.sum()) - G_S.dot(u)
                u = u + Rk.dot(residual.dot(Rk))
        return u


def _minor_cycles(corral: _Corral, x: np.ndarray, budget: int, new: int | None):
    """Run minor cycles from weights x > 0 on the corral until the affine minimizer is interior.

    Returns ``(x, cycles, progress)``; ``progress`` is False when the point just added (``new``, the last
    of the corral) would leave at once with a zero step, which only rounding can cause; the corral is then
    left unchanged.
    """
    cycles = 0
    while True:
        u = corral.affine_minimizer()
        if min(u.tolist()) <= 0.0:  # a drop is decided on the signs of u: make sure of them first
            u = corral.affine_minimizer(refine=True)
        cycles += 1
        total = float(u.sum())
        if min(u.tolist()) > 0.0:
            return u / total, cycles, True
        if cycles >= budget:
            return x, cycles, True
        y = u / total
        neg = y <= 0
        ratios = np.full(x.shape, np.inf)
        # y_i <= 0 <= x_i; a point with x_i = y_i = 0 leaves at once (ratio 0, not 0/0).
        step = x[neg] - y[neg]
        ratios[neg] = np.where(step > 0, x[neg] / np.where(step > 0, step, 1.0), 0.0)
        theta = float(ratios.min())
        x = x + theta * (y - x)
        drop = (ratios <= theta) | (x <= 0)
        if new is not None and theta == 0.0 and drop[-1]:
            return x[:-1], cycles, False
        corral.remove(drop)
        x = x[~drop]
        x = x / x.sum()
        new = None


def _enter_other(corral: _Corral, g_alpha: np.ndarray, value: float) -> int | None:
    """Append the most improving point (``(G alpha)_i < f``) that is affinely independent of the corral."""
    outside = np.ones(g_alpha.shape, dtype=bool)
    outside[corral.S] = False
    candidates = np.flatnonzero((g_alpha < value) & outside)
    for i in candidates[np.argsort(g_alpha[candidates], kind="stable")][1:].tolist():
        if corral.append(i):
            return i
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
    saved = corral.save()
    z = corral.coordinates(j)
    positive = z > 0
    if not np.any(positive):
        return x, False
    ratios = np.full(len(S), np.inf)
    ratios[positive] = x[positive] / z[positive]
    leave = int(np.argmin(ratios))
    t = float(ratios[leave])
    weights = dict(zip(S, np.maximum(x - t * z, 0.0).tolist(), strict=True))
    weights[j] = t
    corral.refactor(S[:leave] + S[leave + 1 :])
    if corral.append(j):
        x_new = np.array([weights[i] for i in corral.S.tolist()])
        if x_new.sum() > 0:
            return x_new / x_new.sum(), True
    corral.restore(saved)
    return x, False


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
    return gap / tolerance if tolerance > 0 else (0.0 if gap <= 0 else math.inf)


def _weights(m: int, S: np.ndarray, x: np.ndarray) -> np.ndarray:
    alpha = np.zeros(m)
    alpha[S] = x
    return alpha / alpha.sum()


def _wolfe(G: np.ndarray, tol: float, max_iter: int, init: np.ndarray | None):
    m = G.shape[0]
    corral = _Corral(G)
    # The certificate's rounding floor is at most 8 m u max|G| on the simplex (alpha^T|G|alpha and
    # (|G|alpha)_i are <= max|G|, and max|G| = max_i G_ii for a PSD G, up to round-off): gaps above
    # max(tol f, 2 * this) skip the O(m^2) exact certificate.
    loose_floor = 16.0 * m * _EPS * max(corral.diag)
    iterations = 0
    if init is None:
        corral.append(int(G.diagonal().argmin()))
        x = np.ones(1)
    else:
        for i in np.argsort(-init, kind="stable").tolist():
            if init[i] > 0:
                corral.append(i)
        x = init[corral.S] / init[corral.S].sum()
        x, cycles, _ = _minor_cycles(corral, x, max_iter, None)
        iterations += cycles

    best_gap, best = math.inf, None
    last_value = math.inf
    no_progress = 0
    retried = False
    while True:
        k = corral.k
        g_alpha = x.dot(corral.rows[:k])
        j = int(g_alpha.argmin())
        value = float(x.dot(g_alpha[corral.idx[:k]]))
        gap = 2.0 * (value - float(g_alpha[j]))
        if gap <= max(tol * value, loose_floor):
            alpha = _weights(m, corral.S, x)
            value, gap = fw_gap(alpha, G.dot(alpha))
            if gap <= gap_tolerance(G, alpha, value, tol):
                return alpha, iterations, Status.OPTIMAL
        if gap < best_gap:
            best_gap, best = gap, (corral.S.copy(), x)
        if iterations >= max_iter:
            return _weights(m, corral.S, x), iterations, Status.MAX_ITER
        if value < last_value:
            no_progress, last_value, retried = 0, value, False
        else:
            no_progress += 1
        progress = no_progress < _MAX_NO_PROGRESS and not corral.member[j]
        if progress and not corral.append(j):
            # j is affinely dependent on the corral in floating point although improving in exact
            # arithmetic (the Gram matrix resolves distances only to sqrt(u) * norm). Any improving point
            # keeps Wolfe's finite-termination argument: try the others, best first, then pivot j in.
            entered = _enter_other(corral, g_alpha, value)
            if entered is None:
                x, progress = _exchange(corral, x, j)
                if progress:
                    x, cycles, _ = _minor_cycles(corral, x, max_iter - iterations, None)
                    iterations += cycles
                j = None
            else:
                j = entered
        if progress and j is not None:
            x_new, cycles, progress = _minor_cycles(
                corral, np.concatenate((x, _ZERO)), max_iter - iterations, j
            )
            iterations += cycles
            if progress:
                x = x_new
            else:  # the new point would leave at once: the corral goes back to what it was
                corral.pop()
        if not progress:
            if retried:
                return _weights(m, *best), iterations, Status.STALLED
            # Rebuild the factorization from G and re-solve the corral's affine problem once.
            retried = True
            no_progress = 0
            before = corral.S.copy()
            if corral.refactor(before.tolist()):
                x = x[np.isin(before, corral.S)]
            x, cycles, _ = _minor_cycles(corral, x / x.sum(), max_iter - iterations, None)
            iterations += cycles
