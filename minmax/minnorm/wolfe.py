r"""Wolfe's minimum-norm-point algorithm on the Gram matrix (the default method).

Wolfe's active-set method [1]_ finds :math:`x^* = M\alpha^*`, the point of the convex hull of the columns
:math:`g_1, \dots, g_m` of :math:`M` nearest the origin, in finitely many steps. It only ever needs inner
products of the points, so it runs on :math:`G = M^\top M` and never sees :math:`M`.

The state is a *corral* :math:`S` (affinely independent points) and weights :math:`\alpha_S > 0` that are
the minimizer of :math:`\|M_S y\|^2` over the affine hull :math:`\{y : \mathbf 1^\top y = 1\}`.

*Major cycle.* With :math:`G\alpha` at hand, stop when the Frank-Wolfe gap
:math:`2(\alpha^\top G\alpha - \min_i (G\alpha)_i)` passes the certificate of
:mod:`minmax.minnorm.optimality`; otherwise add :math:`j = \operatorname{argmin}_i (G\alpha)_i` to
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

Factorization (:mod:`minmax.minnorm._corral`). The corral keeps a square factor :math:`F` with
:math:`FF^\top = A_S^{-1}` (the inverse Cholesky factor :math:`R^{-1}` after a fresh factorization) and
:math:`w = F^\top\mathbf 1`. Adding a point appends a column: :math:`r = F^\top a_j`, pivot
:math:`\rho = (A_{jj} - r^\top r)^{1/2}`, new column :math:`(-Fr/\rho,\ 1/\rho)` and
:math:`w_{k+1} = (1 - r^\top w)/\rho`, all :math:`O(|S|^2)`; the affine minimizer is then :math:`u = Fw`,
:math:`O(|S|^2)`. Dropping point p is a rank-one downdate of the inverse,
:math:`A'^{-1} = B(I - \rho_p\rho_p^\top/\|\rho_p\|^2)B^\top` (:math:`\rho_p` row p of F, B the other
rows), done by one Householder reflection, :math:`O(|S|^2)`. Keeping the inverse factor turns every solve
into a matrix-vector product, cheaper at these sizes than the call overhead of a triangular solve, and no
LAPACK call sits in the loop: a threaded LAPACK factorization costs far more than its flops on a busy
machine (measured: 0.23 s for one 170 x 170 Cholesky with OpenBLAS threads on two loaded cores). The
factor is rebuilt from :math:`G` (Cholesky) only when a new point widens the corral's range of norms
(below) and when the solve stalls. The corral also stores the rows of :math:`G` of its points, so
:math:`G\alpha` is one :math:`O(m|S|)` product per major cycle.

Scale. Any :math:`c > 0` gives the same :math:`y` (Sherman-Morrison when :math:`G_S` is nonsingular), but
not the same rounding: the :math:`c` term distinguishes points whose differences :math:`G_S` cannot see
(e.g. :math:`g` and :math:`-g`, resolved only if :math:`c \gtrsim u\max G_{ii}`), while entries
:math:`c + G_{ij}` lose the small gradients' inner products if :math:`c \gg \min G_{ii}/u`. The corral
uses :math:`c = (\min_S G_{ii}\,\max_S G_{ii})^{1/2}` over its positive diagonal, which satisfies both for
norm ratios up to about :math:`1/u`, and re-factors when a new point widens that range by more than 16x.
Two steps of iterative refinement recompute the residual
:math:`\mathbf 1 - c\,\mathbf 1^\top u\,\mathbf 1 - G_S u` without rounding :math:`c + G_{ij}` where the
accuracy of :math:`u` decides something: before a drop is decided on the signs of :math:`y`, and, when
the range exceeds 1e4, before a major cycle whose stopping test fails near the end or whose argmin is a
corral point (impossible at the exact affine minimizer). Elsewhere an unrefined :math:`u` only picks the
next point, and the final stopping test is the exact certificate either way.

Start. A cold start for :math:`4 \le m \le 128` (and ``max_iter >= m``) first solves an equivalent
non-negative least-squares problem with SciPy's compiled Lawson-Hanson active-set solver
(:mod:`minmax.minnorm._lawson_hanson`), counted as the size of its active set in the iterations. Its
weights are returned when they pass the certificate and otherwise warm-start the cycles below; the
answer is never taken on trust. Measured at m = 10 on the families of ``tests/minnorm/cases.py``: about
18 us for the start against 45-65 us of Wolfe's cycles in Python, certified on every family except
about a quarter of the badly scaled instances (norms over 1e-6..1e6, where the start's rounding exceeds
the certificate and the cycles finish the solve). Below m = 4 Wolfe's one to three cycles cost no more,
and above m = 128 the compiled solver's cost grows faster than Wolfe's; there, and for a warm start, the
solve begins from the point of least norm or from ``init``'s support.

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

from ._corral import Corral
from ._lawson_hanson import lawson_hanson_start
from .optimality import DEFAULT_TOL, Certified, fw_gap, gap_tolerance
from .result import Status

__all__ = ["DEFAULT_MAX_ITER", "solve", "solve_certified"]

#: Default limit on major plus minor cycles (typical solves need about 2 |S*| of them).
DEFAULT_MAX_ITER = 10_000

_EPS = np.finfo(np.float64).eps
# Stop (STALLED) after this many consecutive major cycles that do not lower f.
_MAX_NO_PROGRESS = 3
# Cold starts for m in this range begin with the Lawson-Hanson start (module docstring).
_START_M = (4, 128)
_ZERO = np.zeros(1)
_ONE = np.ones(1)


def _minor_cycles(corral: Corral, x: np.ndarray, budget: int, new: int | None):
    """Run minor cycles from weights x > 0 on the corral until the affine minimizer is interior.

    Returns ``(x, cycles, progress)``; ``progress`` is False when the point just added (``new``, the last
    of the corral) would leave at once with a zero step, which only rounding can cause; the corral is then
    left unchanged. With ``new`` given, ``x`` may leave out the new point's weight (zero): it is padded
    only when a drop needs it (a major cycle usually ends at the first affine minimizer).
    """
    cycles = 0
    while True:
        u = corral.affine_minimizer()
        # Signs and the sum on a Python list: cheaper than NumPy reductions on |S| <= m entries.
        u_list = u.tolist()
        low = min(u_list)
        if low <= 0.0:  # a drop is decided on the signs of u: make sure of them first
            u = corral.affine_minimizer(refine=True)
            u_list = u.tolist()
            low = min(u_list)
        cycles += 1
        total = math.fsum(u_list)
        if low > 0.0:
            return u / total, cycles, True
        if x.shape[0] < corral.k:
            x = np.concatenate((x, _ZERO))
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


def _enter_other(corral: Corral, g_alpha: np.ndarray, value: float) -> int | None:
    """Append the most improving point (``(G alpha)_i < f``) that is affinely independent of the corral."""
    outside = np.ones(g_alpha.shape, dtype=bool)
    outside[corral.S] = False
    candidates = np.flatnonzero((g_alpha < value) & outside)
    for i in candidates[np.argsort(g_alpha[candidates], kind="stable")][1:].tolist():
        if corral.append(i):
            return i
    return None


def _exchange(corral: Corral, x: np.ndarray, j: int) -> tuple[np.ndarray, bool]:
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
        Limit on the iterations, counted as below.
    init : ndarray of shape (m,), optional
        Warm start on the simplex; its support (largest weights first, affinely dependent points left
        out) is the initial corral.

    Returns
    -------
    weights : ndarray of shape (m,)
        Point of the simplex (exact zeros off the corral).
    iterations : int
        Major plus minor cycles, plus the size of the Lawson-Hanson start's active set when it ran (its
        number of outer iterations when it dropped no point; SciPy does not report the count).
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
    return solve_certified(G, tol=tol, max_iter=max_iter, init=init)[:3]


def solve_certified(
    G: np.ndarray,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, int, Status, Certified | None]:
    """:func:`solve`, plus the certificate of the returned weights when the stopping test computed it.

    The final stopping test is the certificate itself (:class:`minmax.minnorm.optimality.Certified`,
    computed from ``G`` and the returned read-only weights); :func:`minmax.min_norm_point` passes it on to
    ``finalize`` so it is not computed twice. ``None`` when the solve did not end on that test.
    """
    m = G.shape[0]
    iterations = 0
    # The start counts up to m iterations: with a smaller limit it would overrun it.
    if init is None and _START_M[0] <= m <= _START_M[1] and max_iter >= m:
        start = lawson_hanson_start(G)
        if start is not None:
            # SciPy does not report Lawson-Hanson's iterations; each outer one adds a point to its active
            # set, so the active set's size is their number when no point was dropped.
            iterations = max(int(np.count_nonzero(start)), 1)
            certified = Certified(G, start, tol)
            if certified.optimal:
                return certified.weights, iterations, Status.OPTIMAL, certified
            if max_iter <= iterations:
                return certified.weights, iterations, Status.MAX_ITER, None
            init = start
    weights, more, status, certified = _wolfe(G, tol, max_iter - iterations, init)
    iterations += more
    if status is Status.STALLED and init is not None and iterations < max_iter:
        # A warm start can leave rounding-level weights that no corral change removes (e.g. a zero
        # gradient among near-dependent points): start afresh from one point.
        cold, more, cold_status, cold_certified = _wolfe(G, tol, max_iter - iterations, None)
        iterations += more
        if cold_status is not Status.STALLED or _gap_ratio(G, cold, tol) < _gap_ratio(G, weights, tol):
            weights, status, certified = cold, cold_status, cold_certified
    return weights, iterations, status, certified


def _gap_ratio(G: np.ndarray, alpha: np.ndarray, tol: float) -> float:
    value, gap = fw_gap(alpha, G @ alpha)
    tolerance = gap_tolerance(G, alpha, value, tol)
    return gap / tolerance if tolerance > 0 else (0.0 if gap <= 0 else math.inf)


def _weights(m: int, S, x: np.ndarray) -> np.ndarray:
    alpha = np.zeros(m)
    alpha[S] = x
    alpha /= math.fsum(x.tolist())
    return alpha


def _wolfe(G: np.ndarray, tol: float, max_iter: int, init: np.ndarray | None):
    m = G.shape[0]
    corral = Corral(G)
    # The certificate's rounding floor is at most 8 m u max|G| on the simplex (alpha^T|G|alpha and
    # (|G|alpha)_i are <= max|G|, and max|G| = max_i G_ii for a PSD G, up to round-off): gaps above
    # max(tol f, 2 * this) skip the O(m^2) exact certificate.
    loose_floor = 16.0 * m * _EPS * max(corral.diag)
    iterations = 0
    if init is None:
        # A zero gradient is the optimum: the first point (argmin G_ii) then ends the solve at once.
        corral.append(int(G.diagonal().argmin()))
        x = _ONE.copy()
    else:
        # The support, largest weights first, factored at once (points dependent on it left out).
        corral.refactor([i for i in np.argsort(-init, kind="stable").tolist() if init[i] > 0])
        x = init[corral.S] / init[corral.S].sum()
        x, cycles, _ = _minor_cycles(corral, x, max_iter, None)
        iterations += cycles
    # x may come from an unrefined solve on a wide corral (_corral.Corral.wide): refined only where needed.
    unrefined = corral.wide

    best_gap, best = math.inf, None
    last_value = math.inf
    no_progress = 0
    retried = False
    # The corral's arrays and membership list are updated in place: bind them once (hot loop).
    idx, rows, member = corral.idx, corral.rows, corral.member
    while True:
        k = corral.k
        S = idx[:k]
        g_alpha = x.dot(rows[:k])
        j = int(g_alpha.argmin())
        value = float(x.dot(g_alpha[S]))
        gap = 2.0 * (value - g_alpha.item(j))
        near = gap <= tol * value or gap <= loose_floor
        if near:
            certified = Certified(G, _weights(m, S, x), tol)
            if certified.gap_passes:
                return certified.weights, iterations, Status.OPTIMAL, certified
        if unrefined and (member[j] or near):
            # On a wide corral the unrefined affine minimizer can be off by more than the certificate's
            # tolerance. That matters only when it decides something: when the stopping test fails near the
            # end, or when a corral point looks improving (impossible at the exact affine minimizer). Refine
            # then and redo this major cycle (cheaper than refining every solve: most never need it).
            unrefined = False
            u_list = corral.affine_minimizer(refine=True).tolist()
            if min(u_list) > 0.0:
                total = math.fsum(u_list)
                x = np.array([ui / total for ui in u_list])
                continue
        if gap < best_gap:
            best_gap, best = gap, (S.tolist(), x)
        if iterations >= max_iter:
            return _weights(m, S, x), iterations, Status.MAX_ITER, None
        if value < last_value:
            no_progress, last_value, retried = 0, value, False
        else:
            no_progress += 1
        progress = no_progress < _MAX_NO_PROGRESS and not member[j]
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
                    unrefined = corral.wide
                j = None
            else:
                j = entered
        if progress and j is not None:
            x_new, cycles, progress = _minor_cycles(corral, x, max_iter - iterations, j)
            iterations += cycles
            if progress:
                x = x_new
                unrefined = corral.wide
            else:  # the new point would leave at once: the corral goes back to what it was
                corral.pop()
        if not progress:
            if retried:
                return _weights(m, *best), iterations, Status.STALLED, None
            # Rebuild the factorization from G and re-solve the corral's affine problem once.
            retried = True
            no_progress = 0
            before = corral.S.copy()
            if corral.refactor(before.tolist()):
                x = x[np.isin(before, corral.S)]
            x, cycles, _ = _minor_cycles(corral, x / x.sum(), max_iter - iterations, None)
            iterations += cycles
            unrefined = corral.wide
