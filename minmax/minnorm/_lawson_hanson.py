r"""A cold start for Wolfe's method: the equivalent non-negative least-squares problem, solved in C.

For any :math:`c > 0` and :math:`u \ge 0`, write :math:`u = t\alpha` with :math:`t = \mathbf 1^\top u`
and :math:`\alpha \in \Delta`. Then

.. math::

    u^\top G u + c\,(\mathbf 1^\top u - 1)^2 = t^2\,\alpha^\top G\alpha + c\,(t - 1)^2,

which for every t is smallest at a minimizer :math:`\alpha^*` of :math:`\alpha^\top G\alpha` on the
simplex, and then at :math:`t = c / (c + f^*) > 0`. So every minimizer :math:`u^*` of the left side over
:math:`u \ge 0` gives :math:`\alpha^* = u^* / \mathbf 1^\top u^*`. This is Lawson and Hanson's reduction of
least-distance programming to non-negative least squares [1]_: with :math:`G = M^\top M` the left side is
:math:`\|Eu - \sqrt c\,e_0\|^2` for :math:`E = [\sqrt c\,\mathbf 1^\top;\ M]`.

Only :math:`G` is known, so :math:`E` is replaced by any factor with the same Gram matrix
:math:`H = G + c\,\mathbf 1\mathbf 1^\top = A^\top A`: the Cholesky factor with symmetric pivoting
(LAPACK ``dpstrf``), whose rank r is below m when the points are affinely dependent (duplicates, more
points than dimensions plus one). The right-hand side :math:`b` solves :math:`A^\top b = c\,\mathbf 1`
(:math:`c\mathbf 1 = E^\top \sqrt c\, e_0` lies in the range of H); then
:math:`\|Au - b\|^2 = u^\top H u - 2c\,\mathbf 1^\top u + \|b\|^2`, the left side above up to a
constant. SciPy's compiled Lawson-Hanson active-set solver (:func:`scipy.optimize.nnls`) solves it.

Lawson-Hanson's active-set method is the NNLS counterpart of Wolfe's: both add one improving point at a
time and drop points along the segment to an affine minimizer. Here it runs in C, without the Python
and NumPy call overhead of each cycle, which is most of a Wolfe solve's time at small m. Its answer is
not trusted: :mod:`minmax.minnorm.wolfe` certifies it from G and, when the certificate fails (the
factor's rounding, e.g. gradient norms spread over many orders of magnitude), continues Wolfe's cycles
from it. The constant c is the corral's (``minmax.minnorm._corral.scale``), the geometric mean of
the extreme positive squared norms.

References
----------
.. [1] C. L. Lawson and R. J. Hanson. *Solving Least Squares Problems.* Prentice-Hall, 1974; SIAM, 1995.
   Chapter 23 (NNLS, and least-distance programming through NNLS).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.linalg.lapack import dpstrf, dtrtrs
from scipy.optimize import nnls

from ._corral import scale

__all__ = ["lawson_hanson_start"]


def lawson_hanson_start(G: np.ndarray) -> np.ndarray | None:
    """Weights on the simplex from the NNLS problem of the module docstring, or None if it failed.

    Parameters
    ----------
    G : ndarray of shape (m, m), float64
        Validated Gram matrix (symmetric positive semidefinite up to round-off).

    Returns
    -------
    ndarray of shape (m,) or None
        ``u / sum(u)`` (exact zeros off the active set), not certified; None when the factorization or
        the NNLS solver fails (e.g. SciPy's iteration limit).

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.minnorm._lawson_hanson import lawson_hanson_start
    >>> G = np.diag([1.0, 1.0, 2.0, 4.0])       # orthogonal: alpha_i proportional to 1 / G_ii
    >>> np.round(lawson_hanson_start(G) * 11, 12)
    array([4., 4., 2., 1.])
    """
    m = G.shape[0]
    c = scale(G.diagonal().tolist())[0]
    # H = G + c 11^T; dpstrf: P^T H P = R^T R with R upper triangular, its first `rank` rows nonzero.
    R, piv, rank, info = dpstrf(G + c, lower=0, overwrite_a=1)
    if info < 0 or rank < 1:
        return None
    R = R[:rank] * _upper(rank, m)  # dpstrf leaves H's entries below the diagonal
    b, info = dtrtrs(R[:, :rank], np.full(rank, c), lower=0, trans=1)  # R_11^T b = c 1
    if info != 0:
        return None
    # ||R v - b|| over v >= 0 is the problem in pivoted order, v = P^T u (A = R P^T has A^T A = H).
    try:
        v = nnls(R, b)[0]
    except RuntimeError:  # SciPy's iteration limit
        return None
    total = math.fsum(v.tolist())
    if not total > 0.0 or not math.isfinite(total):
        return None
    u = np.empty(m)
    u[piv - 1] = v  # piv is 1-based
    u /= total
    return u


@functools.lru_cache(maxsize=64)
def _upper(rows: int, columns: int) -> np.ndarray:
    """A read-only 0/1 mask of the upper triangle of a rows x columns matrix (cheaper than np.triu)."""
    mask = np.triu(np.ones((rows, columns)))
    mask.setflags(write=False)
    return mask
