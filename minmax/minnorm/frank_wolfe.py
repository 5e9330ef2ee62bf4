r"""Frank-Wolfe with away steps or pairwise steps for :math:`\min_{\alpha\in\Delta}\alpha^\top G\alpha`.

Everything runs in Gram space: the iterate :math:`\alpha` and :math:`g = G\alpha` are maintained, the
linear minimization oracle over the simplex is ``argmin_i g_i`` (a vertex index), and the exact line
search along any of the three step directions needs only :math:`g`, :math:`f = \alpha^\top g` and at most
three entries of :math:`G`. The update of :math:`g` adds one or two columns of :math:`G`, so an iteration
costs O(m).

With :math:`s = \operatorname{argmin}_i g_i` (the Frank-Wolfe vertex) and
:math:`v = \operatorname{argmax}_{i:\alpha_i>0} g_i` (the away vertex), the directions, the derivative
:math:`d^\top g = \tfrac12\nabla f^\top d` and the curvature :math:`d^\top G d` are

=========  ========================  ==========================  ===========================================
step       :math:`d`                 :math:`d^\top g`            :math:`d^\top G d`
=========  ========================  ==========================  ===========================================
FW         :math:`e_s - \alpha`      :math:`g_s - f`             :math:`G_{ss} - 2g_s + f`
away       :math:`\alpha - e_v`      :math:`f - g_v`             :math:`G_{vv} - 2g_v + f`
pairwise   :math:`e_s - e_v`         :math:`g_s - g_v`           :math:`G_{ss} - 2G_{sv} + G_{vv}`
=========  ========================  ==========================  ===========================================

and :math:`f(\alpha + \gamma d) = f + 2\gamma d^\top g + \gamma^2 d^\top G d` is minimized in closed form at
:math:`\gamma = -d^\top g / d^\top G d`, clipped to :math:`[0, \gamma_{\max}]` with :math:`\gamma_{\max} = 1`
(FW), :math:`\alpha_v / (1 - \alpha_v)` (away) or :math:`\alpha_v` (pairwise). A step that reaches
:math:`\gamma_{\max}` on an away or pairwise direction is a *drop step*: :math:`\alpha_v` is set to exactly 0
and :math:`v` leaves the active set.

Once the active set has not changed for 20 iterations, :func:`minmax.minnorm.apg.polish_repeatedly` solves
the QP exactly on it (plus the vertices the gradient says should enter) and the iteration continues from
the polished point if it is better: the linear rate (Lacoste-Julien & Jaggi, 2015) degrades with the
condition number, and the polish is what makes 1e-12 relative gaps reachable on badly scaled problems.
``polish=False`` gives the Frank-Wolfe method alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .apg import polish_repeatedly
from .optimality import GapTest
from .result import Status

__all__ = ["FWStep", "VARIANTS", "solve"]

VARIANTS = ("away", "pairwise")
DEFAULT_MAX_ITER = 100_000
# g = G @ alpha is maintained by O(m) column updates; recomputing it every so many iterations keeps the
# accumulated rounding at the level of a single matrix-vector product (and it costs O(m) amortized).
_REANCHOR_EVERY = 32
# Without a new smallest gap for this many iterations (plus 10 per vertex) the method is cycling in
# floating point. f itself is no stall test: near the optimum its decrease (~ gap^2 / curvature) is below
# its round-off while the gap still shrinks.
_STALL_ITERS = 1000
# Polish once the active set has stayed the same for this many iterations (each active set once).
_POLISH_AFTER = 20


class FWStep(NamedTuple):
    """What one iteration did, passed to the optional ``callback``.

    ``kind`` is ``"fw"``, ``"away"`` or ``"pairwise"``; ``drop`` is the vertex that left the active set
    (or -1); ``weights`` and ``g_alpha`` are read-only copies of the state after the step.
    """

    iteration: int
    kind: str
    step: float
    drop: int
    weights: np.ndarray
    g_alpha: np.ndarray


def _start(G: np.ndarray, init: np.ndarray | None) -> np.ndarray:
    m = G.shape[0]
    if init is not None:
        alpha = np.array(init, dtype=np.float64)
        return alpha / alpha.sum()
    # The best vertex: Frank-Wolfe starts from a vertex, and the shortest gradient is the cheapest guess.
    alpha = np.zeros(m)
    alpha[int(np.argmin(np.diag(G)))] = 1.0
    return alpha


def _line_search(dg: float, dGd: float, gamma_max: float) -> float:
    """Exact minimizer of ``2*gamma*dg + gamma**2 * dGd`` over ``[0, gamma_max]``."""
    if dg >= 0.0:
        return 0.0
    if dGd <= 0.0:  # flat (or negative by round-off) curvature along a descent direction: go to the end
        return gamma_max
    return min(-dg / dGd, gamma_max)


def solve(
    G: np.ndarray,
    *,
    tol: float,
    max_iter: int = DEFAULT_MAX_ITER,
    init: np.ndarray | None = None,
    variant: str = "away",
    polish: bool = True,
    callback: Callable[[FWStep], None] | None = None,
) -> tuple[np.ndarray, int, Status]:
    r"""Frank-Wolfe with away steps or pairwise steps on :math:`\alpha^\top G\alpha` over the simplex.

    Parameters
    ----------
    G : ndarray of shape (m, m)
        Validated float64 positive semidefinite Gram matrix (see :func:`~minmax.min_norm_point`).
    tol : float
        Relative gap tolerance: stop when :func:`~minmax.minnorm.optimality.fw_gap` is at most
        :func:`~minmax.minnorm.optimality.gap_tolerance` (the certificate's own test).
    max_iter : int, default 100000
        Iteration limit. Away/pairwise Frank-Wolfe converge linearly on this problem, at a rate set by
        the condition number and the pyramidal width of the simplex [2]_; well-conditioned problems need
        a few hundred iterations, badly conditioned ones may hit the limit (status ``MAX_ITER``).
    init : ndarray of shape (m,), optional
        Warm start on the simplex; by default the vertex with the smallest :math:`G_{ii}`.
    variant : {"away", "pairwise"}, default "away"
        ``"away"``: at each iteration the better of the FW and the away direction [1]_ [2]_.
        ``"pairwise"``: always :math:`e_s - e_v`, moving mass from the away to the FW vertex [2]_.
    polish : bool, default True
        Solve the QP exactly on the active set once it has been stable for 20 iterations (each active
        set at most once), see the module docstring.
    callback : callable, optional
        Called after each iteration that does not stop with an :class:`FWStep` (for tests and
        diagnostics).

    Returns
    -------
    weights : ndarray of shape (m,)
        The last iterate, on the simplex.
    iterations : int
        Iterations performed.
    status : Status
        ``OPTIMAL`` when the recomputed gap is within tolerance, ``MAX_ITER`` at the limit, ``STALLED``
        when :math:`f` stopped decreasing in floating point.

    Raises
    ------
    ValueError
        If ``variant`` is not one of :data:`VARIANTS`.

    Notes
    -----
    The Frank-Wolfe gap :math:`2(f - g_s)` is the certificate's gap (``fw_gap``); it is read off the
    maintained :math:`g` every iteration (O(m)), and before stopping :math:`g` is recomputed as
    :math:`G\alpha` so that the decision is the one :func:`~minmax.check_min_norm` makes from scratch.

    References
    ----------
    .. [1] Guélat, Marcotte. "Some comments on Wolfe's 'away step'." Math. Programming 35, 1986.
    .. [2] Lacoste-Julien, Jaggi. "On the Global Linear Convergence of Frank-Wolfe Optimization
       Variants." NeurIPS 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.minnorm.frank_wolfe import solve
    >>> G = np.array([[1.0, 0.0], [0.0, 4.0]])     # orthogonal gradients: alpha_i ~ 1 / G_ii
    >>> w, it, status = solve(G, tol=1e-12)
    >>> status.value, np.round(w, 6).tolist()
    ('optimal', [0.8, 0.2])
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    pairwise = variant == "pairwise"
    m = G.shape[0]
    alpha = _start(G, init)
    g = G @ alpha
    diag = np.diag(G).copy()
    certified = GapTest(G, tol)
    active = alpha > 0
    best_gap = np.inf
    since_best = 0
    stall_iters = _STALL_ITERS + 10 * m
    zero_steps = 0  # consecutive steps of length 0: the state did not move
    same_active, last_key, tried = 0, b"", set()  # tried: faces already polished

    for it in range(max_iter + 1):
        f = float(alpha @ g)
        s = int(np.argmin(g))
        half_gap = f - float(g[s])
        if half_gap < best_gap:
            best_gap, since_best = half_gap, 0
        else:
            since_best += 1
        stalled = since_best >= stall_iters or zero_steps >= 2
        if 2.0 * half_gap <= max(tol * f, certified.loose_floor) or it == max_iter or stalled or zero_steps:
            alpha /= alpha.sum()
            g = G @ alpha
            done, f, _ = certified(alpha, g)
            if done:
                return alpha, it, Status.OPTIMAL
            if it == max_iter:
                return alpha, it, Status.MAX_ITER
            if stalled:
                return alpha, it, Status.STALLED
            s = int(np.argmin(g))
        elif it % _REANCHOR_EVERY == 0:
            alpha /= alpha.sum()
            g = G @ alpha
            f = float(alpha @ g)
            s = int(np.argmin(g))
        gs = float(g[s])
        v = int(np.argmax(np.where(active, g, -np.inf)))
        gv = float(g[v])
        drop = -1
        if pairwise:
            kind = "pairwise"
            gamma = _line_search(gs - gv, diag[s] - 2.0 * G[s, v] + diag[v], float(alpha[v]))
            if gamma > 0.0:
                g += gamma * (G[:, s] - G[:, v])
                alpha[s] += gamma
                active[s] = True
                if gamma >= alpha[v]:
                    drop = v
                else:
                    alpha[v] -= gamma
        elif f - gs >= gv - f:
            kind = "fw"
            gamma = _line_search(gs - f, diag[s] - 2.0 * gs + f, 1.0)
            if gamma >= 1.0:
                alpha[:] = 0.0
                alpha[s] = 1.0
                active[:] = False
                active[s] = True
                g = G[:, s].copy()
            elif gamma > 0.0:
                alpha *= 1.0 - gamma
                alpha[s] += gamma
                active[s] = True
                g *= 1.0 - gamma
                g += gamma * G[:, s]
        else:
            kind = "away"
            av = float(alpha[v])
            # With a single active vertex the away direction alpha - e_v is 0: no step.
            gamma_max = av / (1.0 - av) if av < 1.0 else 0.0
            gamma = _line_search(f - gv, diag[v] - 2.0 * gv + f, gamma_max)
            if gamma > 0.0:
                alpha *= 1.0 + gamma
                g *= 1.0 + gamma
                g -= gamma * G[:, v]
                if gamma >= gamma_max:
                    drop = v
                else:
                    alpha[v] -= gamma
        zero_steps = zero_steps + 1 if gamma == 0.0 else 0
        if drop >= 0:
            # A drop step empties alpha_v exactly; the other weights already sum to one up to rounding.
            alpha[drop] = 0.0
            active[drop] = False
        if callback is not None:
            # Copies: the state is updated in place by the next iterations.
            w_copy, g_copy = alpha.copy(), g.copy()
            w_copy.flags.writeable = False
            g_copy.flags.writeable = False
            callback(FWStep(it, kind, float(gamma), drop, w_copy, g_copy))
        if polish:
            key = np.packbits(active).tobytes()
            same_active = same_active + 1 if key == last_key else 0
            last_key = key
            if same_active >= _POLISH_AFTER:
                polished, g_polished, _ = polish_repeatedly(
                    G, alpha, g, certified=certified.passes, tried=tried
                )
                if polished is not alpha:  # the next iteration's test certifies it (or goes on from it)
                    alpha, g, active = polished, g_polished, polished > 0
                    same_active = 0
    raise AssertionError("unreachable")  # pragma: no cover
