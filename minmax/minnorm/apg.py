r"""Accelerated projected gradient with restart for :math:`\min_{\alpha\in\Delta}\alpha^\top G\alpha`.

FISTA [1]_ on :math:`f(\alpha) = \alpha^\top G\alpha` over the probability simplex, with the gradient
restart of O'Donoghue and Candès [2]_, a step :math:`1/L` from the curvature of :math:`f` on the simplex's
tangent space, and the certificate's duality gap as the stopping test. This is the method the paper uses
for the QP of Theorem 2 [3]_, there with a fixed number of steps and no stopping test; here it stops when
its answer is certified, and says so when it is not.

A first-order method needs :math:`O(\sqrt{\kappa}\log 1/\epsilon)` iterations, hopeless at the relative
gaps of 1e-12 this library certifies when gradient norms span orders of magnitude (:math:`\kappa` ~ 1e24
for norms over 1e-6 .. 1e6). Once the iterates' support settles, :func:`polish_repeatedly` therefore
solves the QP exactly on that face and the faces it leads to (the active-set analogue of OSQP's solution
polishing); the accelerated iterations identify the face, the polish finishes. ``polish=False`` gives
the first-order method alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.linalg import solve_triangular

from ..simplex import project_simplex
from .optimality import GapTest, fw_gap
from .result import Status

__all__ = ["APGStep", "DEFAULT_MAX_ITER", "polish_repeatedly", "polish_support", "solve", "tangent_curvature"]

DEFAULT_MAX_ITER = 20_000
_EPS = np.finfo(np.float64).eps
# Up to this m the largest eigenvalue is computed exactly (eigvalsh costs ~30 us at m = 32); above, the
# Schatten-norm bound below is cheaper (a few matrix products) and overestimates by at most m^(1/64).
_EXACT_MAX_M = 32
_SQUARINGS = 5
# Without a new smallest gap for this many iterations (plus 10 per vertex) the method is cycling in
# floating point.
_STALL_ITERS = 1000
# Polish once the support has stayed the same for this many iterations (each support is polished once).
_POLISH_AFTER = 3
_POLISH_EVERY = 16
# A Cholesky pivot below this * k * u * A_ii means the face's points are affinely dependent in floating point.
_DEPENDENCE_FACTOR = 16.0


class APGStep(NamedTuple):
    """What one iteration did, passed to the optional ``callback``.

    ``weights`` and ``g_alpha`` (read-only) are the new iterate :math:`\\alpha_{k+1}` and
    :math:`G\\alpha_{k+1}`; ``restart`` says whether the momentum was reset at this iteration.
    """

    iteration: int
    restart: bool
    momentum: float
    weights: np.ndarray
    g_alpha: np.ndarray


def tangent_curvature(G: np.ndarray) -> float:
    r"""An upper bound on the curvature :math:`L = 2\lambda_{\max}(PGP)` of :math:`f` on the simplex.

    :math:`P = I - \mathbf 1\mathbf 1^\top/m` projects onto the tangent space :math:`\{\sum_i u_i = 0\}`.

    Parameters
    ----------
    G : ndarray of shape (m, m)
        Symmetric positive semidefinite matrix.

    Returns
    -------
    float
        :math:`\hat L \ge 2\lambda_{\max}(PGP)`; exact up to round-off for :math:`m \le 32`, within a factor
        :math:`m^{1/64}` (1.08 at m = 128) above.

    Notes
    -----
    Every point FISTA evaluates (iterates and extrapolations) has coordinates summing to 1, so any two
    differ by a tangent vector :math:`u` and :math:`f(\alpha + u) = f(\alpha) + \nabla f(\alpha)^\top u +
    u^\top PGPu`: the descent lemma holds with :math:`L = 2\lambda_{\max}(PGP)`, which can be much smaller
    than :math:`2\lambda_{\max}(G)` (a shared component of all gradients, common in practice, adds to
    :math:`\lambda_{\max}(G)` but not to :math:`PGP`). Euclidean projection onto the simplex ignores
    gradient components along :math:`\mathbf 1`, so the step :math:`1/L` is the right one.

    For :math:`m \le 32` the eigenvalue comes from ``eigvalsh`` plus its backward-error bound. Above, with
    :math:`A = PGP \succeq 0`, :math:`\lambda_{\max}(A) \le (\operatorname{tr} A^{2p})^{1/2p} \le
    m^{1/2p}\lambda_{\max}(A)` for :math:`p = 2^5`: five normalized squarings
    :math:`B \leftarrow B^2/\|B^2\|_F` with :math:`\operatorname{tr} A^{2p} = \|A^p\|_F^2`. Unlike a power
    iteration estimate, which approaches :math:`\lambda_{\max}` from below, this is a guaranteed upper bound.
    """
    m = G.shape[0]
    if m == 1:
        return 0.0
    r = G.mean(axis=1)
    A = G - r[:, None] - r[None, :] + r.mean()
    A = 0.5 * (A + A.T)
    norm = float(np.linalg.norm(A))  # Frobenius: tr(A^2)^(1/2) >= lambda_max
    if norm == 0.0:
        return 0.0
    if m <= _EXACT_MAX_M:
        lam = float(np.linalg.eigvalsh(A)[-1])
        return 2.0 * min(lam + 4.0 * m * _EPS * norm, norm)
    B = A / norm
    log_scale = math.log(norm)  # A^(2^j) = exp(log_scale) * B with ||B||_F = 1
    for _ in range(_SQUARINGS):
        B = B @ B
        nb = float(np.linalg.norm(B))
        if nb == 0.0:  # A nilpotent in floating point: only possible for A = 0 up to round-off
            return 2.0 * norm
        B /= nb
        log_scale = 2.0 * log_scale + math.log(nb)
    bound = math.exp(log_scale / 2**_SQUARINGS)
    # Each product is exact to a relative m*u; the bound inherits at most that much (a 2^-j share each).
    return 2.0 * min(bound * (1.0 + 4.0 * m * _EPS), norm)


def _face_minimizer(G: np.ndarray, S: np.ndarray, order: np.ndarray) -> np.ndarray:
    r"""Weights :math:`y` on S (summing to 1) minimizing :math:`y^\top G_{SS}\,y` on the face's affine hull.

    Solves :math:`(c\mathbf 1\mathbf 1^\top + G_{TT})u = \mathbf 1`, :math:`y_T = u/\mathbf 1^\top u`
    by Cholesky, with two steps of iterative refinement: the Lagrange system of the equality-constrained
    QP with the multiplier eliminated. Any :math:`c > 0` gives the same :math:`y`; the geometric mean of
    the extreme positive :math:`G_{ii}` keeps the factor accurate when the norms span many orders of
    magnitude. :math:`T \subseteq S` is a maximal affinely independent subset, grown greedily in the
    given ``order`` (positions in S, most wanted first): a point is left out when its Cholesky pivot is
    lost in the rounding of its own diagonal entry (a test relative to each point's own scale, so that
    short gradients are not mistaken for dependent ones). :math:`T` spans the same affine hull as
    :math:`S`, so :math:`y` (zero off :math:`T`) minimizes over the whole face.
    """
    H = G[np.ix_(S, S)]
    d = np.diag(H)
    positive = d[d > 0]
    c = float(np.sqrt(positive.min()) * np.sqrt(positive.max())) if positive.size else 1.0
    A = c + H
    try:
        L = np.linalg.cholesky(A)
        T = np.arange(len(S))
        if not np.all(np.diag(L) ** 2 > _DEPENDENCE_FACTOR * len(S) * _EPS * np.diag(A)):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        T, L = _independent_subset(A, order)
    ones = np.ones(len(T))

    def chol_solve(b: np.ndarray) -> np.ndarray:
        z = solve_triangular(L, b, lower=True, check_finite=False)
        return solve_triangular(L, z, lower=True, trans="T", check_finite=False)

    u = chol_solve(ones)
    H_T = H[np.ix_(T, T)]
    for _ in range(2):
        u += chol_solve(ones - c * u.sum() - H_T @ u)
    y = np.zeros(len(S))
    y[T] = u / u.sum()
    return y


def _independent_subset(A: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximal subset with a numerically positive definite block of A, and its Cholesky factor."""
    k = len(order)
    L = np.zeros((k, k))
    chosen: list[int] = []
    for j in order:
        n = len(chosen)
        r = solve_triangular(L[:n, :n], A[chosen, j], lower=True, check_finite=False) if n else np.zeros(0)
        pivot2 = float(A[j, j] - r @ r)
        if pivot2 > _DEPENDENCE_FACTOR * (n + 1) * _EPS * A[j, j]:
            L[n, :n] = r
            L[n, n] = np.sqrt(pivot2)
            chosen.append(int(j))
    n = len(chosen)
    return np.asarray(chosen, dtype=np.intp), L[:n, :n]


def polish_support(G: np.ndarray, alpha: np.ndarray, g_alpha: np.ndarray) -> np.ndarray:
    r"""Polish :math:`\alpha`: minimize :math:`f` exactly on its face, enlarged by the violating vertices.

    The face is the support of :math:`\alpha` plus every vertex with :math:`(G\alpha)_i < f(\alpha)`
    (those whose weight would grow along the negative gradient: at the optimum there are none). Starting
    from :math:`x = \alpha`: compute the minimizer :math:`y` of :math:`f` on the face's affine hull; if
    :math:`y > 0`, done; otherwise move to :math:`x + \theta(y - x)` with the largest :math:`\theta \le 1`
    keeping the weights non-negative (:math:`f` does not increase along the segment, by convexity),
    remove the vertices that block or would keep decreasing at 0, and repeat: at most as many rounds as
    the face has vertices, O(k^3) each. The active-set analogue of OSQP's solution polishing [1]_.

    Returns a point of the simplex with :math:`f` at most :math:`f(\alpha)` up to rounding (callers
    compare before keeping it).

    References
    ----------
    .. [1] Stellato, Banjac, Goulart, Bemporad, Boyd. "OSQP: an operator splitting solver for quadratic
       programs." Mathematical Programming Computation 12, 2020 (section 5.2, solution polishing).
    """
    f = float(alpha @ g_alpha)
    S = np.flatnonzero((alpha > 0) | (g_alpha < f))
    x = alpha[S] / alpha.sum()
    while S.size:
        # On a face that is affinely dependent in floating point, the entering vertices (most violating
        # first) are kept in the independent subset, then the support by decreasing weight: a violator
        # nearly on the affine hull of the support (e.g. g and 2g with a tiny gradient) must come in.
        entering = x == 0
        order = np.lexsort((np.where(entering, g_alpha[S], 0.0), -x, ~entering))
        y = _face_minimizer(G, S, order)
        if not np.all(np.isfinite(y)):
            return alpha
        if np.all(y > 0):
            x = y
            break
        shrink = np.flatnonzero(y < x)
        theta, blocking = 1.0, -1
        if shrink.size:
            ratios = x[shrink] / (x[shrink] - y[shrink])
            k = int(np.argmin(ratios))
            if ratios[k] < 1.0:
                theta, blocking = float(ratios[k]), int(shrink[k])
        x = x + theta * (y - x)
        # Remove what reached 0 and is not entering: the blocking vertex, the vertices y puts at or below
        # 0 (theta = 1); a vertex at 0 with y > 0 (a violator) stays, to enter.
        drop = (x <= 0) & (y <= 0)
        drop[shrink] |= x[shrink] <= _EPS * x.max()
        if blocking >= 0:
            drop[blocking] = True
        S, x = S[~drop], np.maximum(x[~drop], 0.0)
        x /= x.sum()
    if not S.size:  # cannot happen in exact arithmetic (y sums to 1, so some weight grows)
        return alpha
    polished = np.zeros_like(alpha)
    polished[S] = x
    return polished


def polish_repeatedly(
    G: np.ndarray,
    alpha: np.ndarray,
    g_alpha: np.ndarray,
    *,
    certified: Callable[[np.ndarray, np.ndarray], bool],
    tried: set,
) -> tuple[np.ndarray, np.ndarray, bool]:
    r"""Apply :func:`polish_support` while it lowers :math:`f` on faces not tried before.

    Each round ends at the minimizer of :math:`f` on some face and :math:`f` does not increase from round
    to round; a face (support plus violators) is polished at most once, so the rounds end, in exact
    arithmetic at the optimum, like an active-set method that adds every violating vertex at once.
    ``tried`` holds the faces (packed) already polished by the caller, and is updated.

    Returns
    -------
    weights, g_weights : ndarray
        The best point found and :math:`G` times it (``alpha`` itself if no round improved).
    certified : bool
        Whether ``certified(weights, g_weights)`` holds.
    """
    best, g_best, f_best = alpha, g_alpha, float(alpha @ g_alpha)
    for _ in range(len(alpha)):
        key = np.packbits((best > 0) | (g_best < f_best)).tobytes()
        if key in tried:
            break
        tried.add(key)
        candidate = polish_support(G, best, g_best)
        g_candidate = G @ candidate
        if certified(candidate, g_candidate):
            return candidate, g_candidate, True
        f_candidate = float(candidate @ g_candidate)
        # Equal (up to the rounding of f) is progress too: a face minimizer, with its own violators.
        slack = 4.0 * len(alpha) * _EPS * float(best @ np.abs(G) @ best)
        if not f_candidate <= f_best + slack:
            break
        best, g_best, f_best = candidate, g_candidate, f_candidate
    return best, g_best, False


def solve(
    G: np.ndarray,
    *,
    tol: float,
    max_iter: int = DEFAULT_MAX_ITER,
    init: np.ndarray | None = None,
    polish: bool = True,
    callback: Callable[[APGStep], None] | None = None,
) -> tuple[np.ndarray, int, Status]:
    r"""Accelerated projected gradient (FISTA) with adaptive restart on :math:`\alpha^\top G\alpha`.

    Parameters
    ----------
    G : ndarray of shape (m, m)
        Validated float64 positive semidefinite Gram matrix (see :func:`~minmax.min_norm_point`).
    tol : float
        Relative gap tolerance: stop when :func:`~minmax.minnorm.optimality.fw_gap` is at most
        :func:`~minmax.minnorm.optimality.gap_tolerance` (the certificate's own test).
    max_iter : int, default 20000
        Iteration limit (status ``MAX_ITER`` when reached).
    init : ndarray of shape (m,), optional
        Warm start on the simplex; by default the barycentre :math:`\mathbf 1/m`.
    polish : bool, default True
        Solve the QP exactly on the iterates' face (:func:`polish_repeatedly`) once their support has
        been the same for 3 iterations, and every 16 iterations; each face at most once. The iteration
        continues from the polished point (momentum reset) when it is not yet certified.
    callback : callable, optional
        Called after each iteration that does not stop with an :class:`APGStep` (for tests and
        diagnostics).

    Returns
    -------
    weights : ndarray of shape (m,)
        The last iterate :math:`\alpha_k`, on the simplex.
    iterations : int
        Iterations performed (one projection and one product with :math:`G` each).
    status : Status
        ``OPTIMAL``, ``MAX_ITER``, or ``STALLED`` when the gap stopped improving in floating point.

    Notes
    -----
    With :math:`L` from :func:`tangent_curvature`, :math:`t_0 = 1` and :math:`\beta_0 = \alpha_0`,

    .. math::

        \alpha_{k+1} = \Pi_\Delta\bigl(\beta_k - \tfrac{2}{L} G\beta_k\bigr), \quad
        t_{k+1} = \tfrac12\bigl(1 + \sqrt{1 + 4t_k^2}\bigr), \quad
        \beta_{k+1} = \alpha_{k+1} + \tfrac{t_k - 1}{t_{k+1}}(\alpha_{k+1} - \alpha_k),

    and the momentum is reset (:math:`t_{k+1} = 1`, :math:`\beta_{k+1} = \alpha_{k+1}`) whenever the
    gradient-mapping step and the progress disagree, :math:`(\beta_k - \alpha_{k+1})^\top
    (\alpha_{k+1} - \alpha_k) > 0` [2]_. Restarting recovers the linear rate :math:`O(\sqrt{\kappa}\log
    1/\epsilon)` without knowing the (restricted) strong convexity :math:`\mu`, which for this problem
    is the quadratic growth on the optimal face and is often 0 on the whole simplex.
    :math:`G\beta_{k+1}` comes from the two last products by linearity, so each iteration costs one
    product with :math:`G` and one projection (:func:`minmax.simplex.project_simplex`). The gap is
    O(m) given :math:`G\alpha_{k+1}` and is checked every iteration; the O(m^2) tolerance only once the
    gap is below a cheap upper bound of it. The projection's output is renormalized to sum to 1 (its
    own rounding can exceed the certificate's feasibility allowance of :math:`8mu`).

    References
    ----------
    .. [1] Beck, Teboulle. "A Fast Iterative Shrinkage-Thresholding Algorithm for Linear Inverse
       Problems." SIAM J. Imaging Sciences 2(1), 2009.
    .. [2] O'Donoghue, Candès. "Adaptive Restart for Accelerated Gradient Schemes." Foundations of
       Computational Mathematics 15, 2015.
    .. [3] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
       Training." ICLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.minnorm.apg import solve
    >>> G = np.array([[1.0, 0.0], [0.0, 4.0]])     # orthogonal gradients: alpha_i ~ 1 / G_ii
    >>> w, it, status = solve(G, tol=1e-12)
    >>> status.value, np.round(w, 6).tolist()
    ('optimal', [0.8, 0.2])
    """
    m = G.shape[0]
    alpha = np.full(m, 1.0 / m) if init is None else np.array(init, dtype=np.float64)
    g = G @ alpha
    L = tangent_curvature(G)
    if L == 0.0:
        # PGP = (MP)^T (MP) = 0: all gradients are equal (m = 1, G = 0, duplicates), f is constant on the
        # simplex and every point is optimal.
        return alpha, 0, Status.OPTIMAL
    step = 2.0 / L
    certified = GapTest(G, tol)
    done, f, gap = certified(alpha, g)
    if done:
        return alpha, 0, Status.OPTIMAL

    beta, g_beta = alpha, g
    t = 1.0
    best_gap, since_best = gap, 0
    stall_iters = _STALL_ITERS + 10 * m
    support, same_support, tried = alpha > 0, 0, set()  # tried: faces already polished
    for it in range(1, max_iter + 1):
        new = np.asarray(project_simplex(beta - step * g_beta), dtype=np.float64)
        new /= new.sum()  # the projection sums to 1 up to its own rounding; the certificate wants m*u
        g_new = G @ new
        done, f, gap = certified(new, g_new)
        if done:
            return new, it, Status.OPTIMAL
        restart = float((beta - new) @ (new - alpha)) > 0.0
        if polish:
            # Polish when the support has settled, or every so often if it keeps changing.
            new_support = new > 0
            same_support = same_support + 1 if np.array_equal(new_support, support) else 0
            support = new_support
            if same_support >= _POLISH_AFTER or it % _POLISH_EVERY == 0:
                polished, g_polished, done = polish_repeatedly(
                    G, new, g_new, certified=certified.passes, tried=tried
                )
                if done:
                    return polished, it, Status.OPTIMAL
                if polished is not new:  # continue from the better point, without momentum
                    new, g_new, restart = polished, g_polished, True
                    f, gap = fw_gap(new, g_new)
        if gap < best_gap:
            best_gap, since_best = gap, 0
        else:
            since_best += 1
            if since_best >= stall_iters:
                return new, it, Status.STALLED
        if restart:
            t_next, momentum = 1.0, 0.0
        else:
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            momentum = (t - 1.0) / t_next
        beta = new + momentum * (new - alpha)
        g_beta = g_new + momentum * (g_new - g)
        alpha, g, t = new, g_new, t_next
        if callback is not None:
            w_view, g_view = alpha.view(), g.view()
            w_view.flags.writeable = False
            g_view.flags.writeable = False
            callback(APGStep(it, restart, momentum, w_view, g_view))
    return alpha, max_iter, Status.MAX_ITER
