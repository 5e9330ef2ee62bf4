r"""The minimum-norm point of the convex hull, :math:`\min_{\alpha\in\Delta}\alpha^\top G\alpha`.

One entry point, :func:`min_norm_point`, dispatches on a method name; each method lives in its own
module and exposes ``solve(G, *, tol, max_iter, init) -> (weights, iterations, status)``. The result's
certificate is always recomputed from ``G`` and the weights (:mod:`minmax.minnorm.optimality`).
"""

from __future__ import annotations

import importlib
import numbers
import sys

import numpy as np

from .optimality import (
    DEFAULT_TOL,
    MinNormCertificate,
    check_min_norm,
    finalize,
    power_of_two_scale,
    validate_gram,
    validate_tol,
    validate_weights,
)
from .result import MESSAGES, MinNormResult, Status

__all__ = [
    "DEFAULT_TOL",
    "METHODS",
    "MESSAGES",
    "MinNormCertificate",
    "MinNormResult",
    "Status",
    "check_min_norm",
    "min_norm_point",
]

#: Method name -> module implementing it. Tests iterate over this.
_MODULES = {
    "wolfe": "minmax.minnorm.wolfe",
    "apg": "minmax.minnorm.apg",
    "fw-away": "minmax.minnorm.frank_wolfe",
    "fw-pairwise": "minmax.minnorm.frank_wolfe",
    "cvxpy": "minmax.minnorm.cvxpy_ref",
}
METHODS = tuple(_MODULES)

# Tolerance for accepting a warm start as a point of the simplex (it is then renormalized).
_INIT_SIMPLEX_TOL = 1e-8


def _validate_init(init, m: int) -> np.ndarray:
    alpha = validate_weights(init, m, name="init")
    if np.any(alpha < 0) or abs(float(alpha.sum()) - 1.0) > _INIT_SIMPLEX_TOL:
        raise ValueError(
            "init must lie on the probability simplex (non-negative, summing to 1); got min "
            f"{alpha.min():.3e} and sum {alpha.sum():.12g}"
        )
    return alpha / alpha.sum()


def _validate_max_iter(max_iter) -> int | None:
    if max_iter is None:
        return None
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral):
        raise TypeError(f"max_iter must be an int or None, got {type(max_iter).__name__}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    return int(max_iter)


def min_norm_point(
    G,
    *,
    method: str = "wolfe",
    tol: float = DEFAULT_TOL,
    max_iter: int | None = None,
    init=None,
) -> MinNormResult:
    r"""Minimum-norm point of the convex hull of m gradients, given their Gram matrix.

    Solves

    .. math::

        \alpha^* \in \operatorname*{argmin}_{\alpha \in \Delta_m} \alpha^\top G \alpha,
        \qquad \Delta_m = \{\alpha \ge 0,\ \textstyle\sum_i \alpha_i = 1\},

    the quadratic program of Theorem 2 in [1]_: with :math:`G = M^\top M`, :math:`M\alpha^*` is the point
    of the convex hull of the gradients closest to the origin, and :math:`-M\alpha^*/\|M\alpha^*\|` is the
    steepest descent direction over the corresponding maximizers.

    Parameters
    ----------
    G : array_like of shape (m, m)
        Positive semidefinite Gram matrix; cast to float64 (the QP always runs in float64 NumPy).
    method : {"wolfe", "apg", "fw-away", "fw-pairwise", "cvxpy"}, default "wolfe"
        ``"wolfe"``: Wolfe's active-set minimum-norm-point algorithm (finite termination, exact support).
        ``"apg"``: accelerated projected gradient with restart. ``"fw-away"`` / ``"fw-pairwise"``:
        Frank-Wolfe with away / pairwise steps. ``"cvxpy"``: a reference through cvxpy (imported lazily,
        slow, for checking only).
    tol : float, default 1e-12
        Relative tolerance on the duality gap: stop when ``gap <= max(tol * f, floor)`` where ``floor`` is
        the rounding error of the gap itself.
    max_iter : int, optional
        Iteration limit; each method has its own default.
    init : array_like of shape (m,), optional
        Warm start on the simplex (e.g. an interrupted solve's weights).

    Returns
    -------
    MinNormResult
        Weights, value, duality gap and its tolerance, iterations, status, message, support.

    Raises
    ------
    ValueError
        Unknown method (the message lists the valid ones); ``G`` empty, not square, non-finite, not
        symmetric or not PSD beyond round-off; a negative ``tol``; ``max_iter < 1``; ``init`` off the
        simplex.
    TypeError
        ``G`` not real-valued, ``method`` not a string, ``tol`` or ``max_iter`` of the wrong type.

    References
    ----------
    .. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
       Training." ICLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import min_norm_point
    >>> M = np.array([[1.0, -0.5], [0.0, 1.0]])     # two gradients as columns
    >>> res = min_norm_point(M.T @ M)
    >>> res.status.value, round(res.value, 6)
    ('optimal', 0.307692)
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    name = method.lower()
    if name not in _MODULES:
        raise ValueError(f"unknown method {method!r}; valid methods are {', '.join(METHODS)}")
    G = validate_gram(G)
    tol = validate_tol(tol)
    max_iter = _validate_max_iter(max_iter)
    if init is not None:
        init = _validate_init(init, G.shape[0])
    # sys.modules first: import_module's own look-up costs about 2 us, a tenth of a solve at m = 10.
    module_name = _MODULES[name]
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    # solve_certified, where a module has it, also returns the certificate of its weights (below).
    solve = getattr(module, "solve_certified", None) or module.solve
    kwargs = {"tol": tol, "init": init}
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    if name.startswith("fw-"):
        kwargs["variant"] = name[3:]
    # The optional fourth item: an optimality.Certified, the optimality module's own certificate of exactly
    # the returned (read-only) weights; finalize reuses it only if it is that, else recomputes.
    # Tiny or huge G (near the subnormal or overflow range): the method runs on 2^k G, which has the same
    # minimizers, and the certificate below is computed on G itself.
    factor = power_of_two_scale(max(G.diagonal().tolist()))  # a PSD G's largest entry is on its diagonal
    weights, iterations, status, *certified = solve(G * factor if factor != 1.0 else G, **kwargs)
    return finalize(
        G,
        weights,
        method=name,
        iterations=iterations,
        status=status,
        rtol=tol,
        certified=certified[0] if certified else None,
    )
