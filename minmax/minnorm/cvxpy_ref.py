r"""A cvxpy reference for :math:`\min_{\alpha\in\Delta}\alpha^\top G\alpha` (CPU-only, slow, for checking).

cvxpy is imported inside :func:`solve`, so ``import minmax`` never needs it; install it with the extra
``pip install 'minmax[cvxpy]'``. Every call builds and compiles a new cvxpy problem (milliseconds of set-up),
which is what a user of cvxpy pays per solve: this method exists to check the other methods against an
independent interior-point solver, not to be used in a training loop.
"""

from __future__ import annotations

import warnings

import numpy as np

from .result import Status

__all__ = ["SOLVER", "solve"]

#: The conic solver cvxpy is asked to use: Clarabel is an interior-point method that takes the quadratic
#: objective directly (no second-order-cone reformulation), is cvxpy's default for QPs and ships with it.
SOLVER = "CLARABEL"
# Clarabel's defaults stop at relative gaps of ~1e-8; this is the tightest it reliably attains in float64.
_SOLVER_TOL_FLOOR = 1e-13
_SOLVER_FEAS_TOL = 1e-12


def _factor(G: np.ndarray) -> np.ndarray:
    r"""A factor :math:`R` with :math:`R^\top R = G / \max_i G_{ii}`, from the eigendecomposition.

    Eigenvalues are clipped at 0: a validated Gram matrix is PSD up to round-off, and a negative
    eigenvalue of that size carries no information. Dividing by the largest diagonal entry leaves the
    minimizer unchanged and puts the objective on the scale the solver's tolerances assume.
    """
    scale = float(np.max(np.diag(G)))
    lam, V = np.linalg.eigh(G / scale)
    keep = lam > 0.0
    return np.sqrt(lam[keep])[:, None] * V[:, keep].T


def solve(
    G: np.ndarray,
    *,
    tol: float,
    max_iter: int | None = None,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, int, Status]:
    r"""Solve :math:`\min_{\alpha\ge0,\ \sum\alpha=1} \|R\alpha\|^2` with cvxpy, :math:`R^\top R \propto G`.

    Parameters
    ----------
    G : ndarray of shape (m, m)
        Validated float64 positive semidefinite Gram matrix.
    tol : float
        Relative tolerance; passed to the solver as its gap tolerance, but not below 1e-13 (what an
        interior-point method attains in float64). The result is certified afterwards like every other
        method's, so a solve that cannot reach ``tol`` is reported as stalled, never as optimal.
    max_iter : int, optional
        The solver's iteration limit (its default when None).
    init : ndarray of shape (m,), optional
        Not used as a starting point (interior-point methods start from the central path); returned as
        the best known feasible point if the solver fails.

    Returns
    -------
    weights : ndarray of shape (m,)
        The solver's point projected onto the simplex (interior-point iterates satisfy the constraints
        only up to the solver's feasibility tolerance; the projection makes them exactly feasible).
    iterations : int
        The solver's iteration count (0 if it failed before reporting one).
    status : Status
        ``OPTIMAL`` when cvxpy reports optimal (or optimal-inaccurate; the certificate decides),
        ``MAX_ITER`` when the solver hit its limit, ``SOLVER_ERROR`` on any other outcome.

    Raises
    ------
    ImportError
        If cvxpy is not installed (the message names the ``minmax[cvxpy]`` extra).

    Notes
    -----
    With :math:`G/\max_i G_{ii} = V\Lambda V^\top` and :math:`R = \Lambda_+^{1/2}V_+^\top` (positive
    eigenvalues only), :math:`\|R\alpha\|^2 = \alpha^\top G\alpha/\max_i G_{ii}`: the same minimizer, with
    a factor of rank :math:`\operatorname{rank} G` so that the solver sees a convex quadratic whatever the
    round-off in :math:`G`. CPU-only.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.minnorm.cvxpy_ref import solve
    >>> w, it, status = solve(np.array([[1.0, 0.0], [0.0, 4.0]]), tol=1e-12)
    >>> status.value, np.round(w, 6).tolist()
    ('optimal', [0.8, 0.2])
    """
    try:
        import cvxpy as cp
    except ImportError as exc:
        raise ImportError(
            "method 'cvxpy' needs cvxpy, which is an optional dependency: pip install 'minmax[cvxpy]'"
        ) from exc
    from ..simplex import project_simplex

    m = G.shape[0]
    fallback = np.full(m, 1.0 / m) if init is None else np.array(init, dtype=np.float64)
    if m == 1 or not np.any(np.diag(G) > 0):
        # Nothing to solve (and a zero matrix has no factor): every point of the simplex is optimal.
        return fallback, 0, Status.OPTIMAL
    R = _factor(G)
    alpha = cp.Variable(m)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(R @ alpha)), [alpha >= 0, cp.sum(alpha) == 1])
    solver_tol = max(tol, _SOLVER_TOL_FLOOR)
    options = {"tol_gap_abs": solver_tol, "tol_gap_rel": solver_tol, "tol_feas": _SOLVER_FEAS_TOL}
    if max_iter is not None:
        options["max_iter"] = int(max_iter)
    try:
        with warnings.catch_warnings():
            # cvxpy warns on "optimal_inaccurate"; the certificate recomputed afterwards says what holds.
            warnings.filterwarnings("ignore", message="Solution may be inaccurate", category=UserWarning)
            problem.solve(solver=getattr(cp, SOLVER), **options)
    except (cp.error.SolverError, ValueError, ArithmeticError):
        return fallback, 0, Status.SOLVER_ERROR
    stats = problem.solver_stats
    iterations = int(stats.num_iters) if stats is not None and stats.num_iters is not None else 0
    value = alpha.value
    if value is None or not np.all(np.isfinite(value)):
        return fallback, iterations, Status.SOLVER_ERROR
    weights = np.asarray(project_simplex(np.asarray(value, dtype=np.float64)), dtype=np.float64)
    if problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return weights, iterations, Status.OPTIMAL
    if problem.status == cp.USER_LIMIT:
        return weights, iterations, Status.MAX_ITER
    return fallback, iterations, Status.SOLVER_ERROR
