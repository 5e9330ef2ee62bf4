r"""Theorem 3 of [1]_: when a direction computed from finitely many maximizers is a true descent direction.

A finite set :math:`\{\delta_1, \dots, \delta_m\}` rarely holds every maximizer of
:math:`g(\theta, \cdot)`, so :math:`\max_i \langle\gamma, g_i\rangle` is only a lower bound of the
directional derivative :math:`D_\gamma\varphi(\theta)`. If the maximizers :math:`S^*(\theta)` lie within
:math:`\epsilon` of the finite set and :math:`\delta \mapsto \nabla_\theta g(\theta, \delta)` is
:math:`L`-Lipschitz, the missing maximizers raise it by at most :math:`L\epsilon\|\gamma\|`, and
:math:`\max_i \langle\gamma, g_i\rangle < -L\epsilon\|\gamma\|` certifies descent (for a unit
:math:`\gamma`, the paper's :math:`-L\epsilon`).

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import array_api_compat
import numpy as np

from .danskin import _gamma_blocks, _is_block_list, inner_products
from .gram import as_blocks
from .minnorm.optimality import validate_tol

__all__ = ["DescentCertificate", "certify_descent", "covering_radius", "estimate_lipschitz"]

# Distance norms accepted for δ (the norm of Theorem 3's ε and L must be the same one).
_NORMS = {"l2": 2, "linf": np.inf, 2: 2, np.inf: np.inf}


@dataclass(frozen=True)
class DescentCertificate:
    r"""Outcome of the Theorem 3 test :math:`\max_i\langle\gamma, g_i\rangle < -L\epsilon`.

    Attributes
    ----------
    certified : bool
        :math:`\max_i \langle\gamma, g_i\rangle < -L\epsilon\|\gamma\|`: under the hypotheses of
        :func:`certify_descent`, :math:`D_{\hat\gamma}\varphi(\theta) \le` ``slope - bound`` :math:`< 0`
        for :math:`\hat\gamma = \gamma/\|\gamma\|`, and :math:`\gamma` is a descent direction of
        :math:`\varphi`.
    slope : float
        :math:`\max_i \langle\hat\gamma, g_i\rangle` over the finite set, for the unit direction
        :math:`\hat\gamma` (float64 accumulation).
    bound : float
        :math:`-L\epsilon`.
    margin : float
        ``bound - slope``; positive exactly when certified, and then a lower bound on the decrease rate
        :math:`-D_{\hat\gamma}\varphi(\theta)` along the unit direction.
    norm : float
        :math:`\|\gamma\|_2` of the direction as given (float64), by which the test was scaled.
    lipschitz : float
        :math:`L` used.
    radius : float
        :math:`\epsilon` used.
    """

    certified: bool
    slope: float
    bound: float
    margin: float
    norm: float
    lipschitz: float
    radius: float


def _norm(gamma, grads) -> float:
    """‖γ‖ in float64 (of γ's entries as stored, whatever their dtype); γ must be finite and nonzero."""
    blocks, xp, _ = as_blocks(grads)
    gblocks = _gamma_blocks(gamma, blocks, xp, single=not _is_block_list(grads), name="gamma")
    sq = 0.0
    for g in gblocks:
        g64 = xp.astype(g, xp.float64)
        sq += float(xp.sum(g64 * g64))
    norm = float(np.sqrt(sq))
    if not np.isfinite(norm):
        raise ValueError("gamma contains NaN or infinite entries")
    if norm == 0.0:
        raise ValueError("gamma is zero: Theorem 3 needs a nonzero direction (a stationary point has none)")
    return norm


def certify_descent(grads, gamma, *, lipschitz, radius) -> DescentCertificate:
    r"""Certify a direction as a descent direction of :math:`\varphi` (Theorem 3 of [1]_).

    Parameters
    ----------
    grads : array of shape (m, d), or sequence of arrays of shape (m, *shape_k)
        :math:`g_i = \nabla_\theta g(\theta, \delta_i)` at the finite set :math:`\delta_1, \dots,
        \delta_m \in S`, in either layout of :mod:`minmax.gram`, any array-API backend.
    gamma : array of shape (d,), or sequence of arrays of shape shape_k
        A nonzero direction in the layout and array type of ``grads``, in any floating dtype -- typically
        :attr:`SteepestDescentResult.direction`, but any direction is covered by the theorem. It need not
        be of unit norm: the test is scaled by its norm (see Notes).
    lipschitz : float
        :math:`L \ge 0`: :math:`\|\nabla_\theta g(\theta, \delta) - \nabla_\theta g(\theta, \delta')\|_2
        \le L \|\delta - \delta'\|` for the :math:`\delta, \delta'` involved (see Notes).
    radius : float
        :math:`\epsilon \ge 0`: every maximizer :math:`\delta \in S^*(\theta)` is within
        :math:`\epsilon` of some :math:`\delta_i` (in the norm :math:`L` is measured in), e.g.
        :func:`covering_radius` of a sample of :math:`S^*(\theta)`.

    Returns
    -------
    DescentCertificate

    Raises
    ------
    TypeError
        Bad array types or layouts, ``lipschitz`` or ``radius`` not real numbers.
    ValueError
        Mismatched shapes, an empty set, non-finite entries, a ``gamma`` that is zero, a negative or
        non-finite ``lipschitz`` or ``radius``.

    Notes
    -----
    **Hypotheses (exact).** (i) :math:`S` is compact, :math:`g` is continuous on :math:`\Theta\times S`,
    :math:`g(\cdot, \delta)` is differentiable and :math:`\nabla_\theta g` is continuous on
    :math:`\Theta\times S` -- the hypotheses of Danskin's theorem (Theorem 1), which make
    :math:`D_\gamma\varphi(\theta) = \max_{\delta\in S^*(\theta)}\langle\gamma, \nabla_\theta
    g(\theta,\delta)\rangle`; (ii) for every :math:`\delta \in S^*(\theta)` there is an :math:`i` with
    :math:`\|\delta - \delta_i\| \le \epsilon` (the :math:`\delta_i \in S` need not be maximizers
    themselves); (iii) :math:`\|\nabla_\theta g(\theta,\delta) - \nabla_\theta g(\theta,\delta_i)\|_2 \le
    L\|\delta - \delta_i\|` for those pairs (it suffices that :math:`\nabla_\theta g(\theta, \cdot)` is
    :math:`L`-Lipschitz on :math:`S`); (iv) :math:`\gamma \ne 0`.

    **Conclusion.** By Cauchy-Schwarz, for :math:`\delta \in S^*(\theta)` and its nearby :math:`\delta_i`,
    :math:`\langle\gamma, \nabla_\theta g(\theta,\delta)\rangle \le \langle\gamma, g_i\rangle +
    L\epsilon\|\gamma\|`, so :math:`D_\gamma\varphi(\theta) \le \max_i\langle\gamma, g_i\rangle +
    L\epsilon\|\gamma\|`. If :math:`\max_i\langle\gamma, g_i\rangle < -L\epsilon\|\gamma\|` then
    :math:`D_\gamma\varphi(\theta) < 0`: :math:`\gamma` is a descent direction
    (:math:`\varphi(\theta + t\gamma) < \varphi(\theta)` for all small :math:`t > 0`). For a unit
    :math:`\gamma` this is the paper's test :math:`\max_i\langle\gamma, g_i\rangle < -L\epsilon`; scaling
    by the norm keeps it sound for a direction that is only nearly unit (a bfloat16 or float16 vector
    normalized in its own precision is off by up to a few parts in a thousand, which the unscaled test
    would turn into a wrong certificate) and for unnormalized steps such as :math:`-\nabla_\theta g`. The
    test is sufficient, not necessary: a withheld certificate proves nothing.

    The certificate is only as sound as :math:`L` and :math:`\epsilon`: with the empirical estimates of
    :func:`estimate_lipschitz` (a lower estimate of :math:`L`) or a radius computed from sampled rather
    than exact maximizers, it is a heuristic. The inner products and :math:`\|\gamma\|` are computed in
    float64 from the entries of ``grads`` and ``gamma`` as stored, and the strict inequality is tested on
    :math:`\max_i\langle\gamma, g_i\rangle / \|\gamma\|` as is (no round-off allowance).

    References
    ----------
    .. [1] Latorre et al., ICLR 2023 (see the module docstring).

    Examples
    --------
    Counterexample 2 with :math:`u = e_1`, :math:`v = (-0.6, 0.8)` and approximate maximizers
    :math:`\delta \in \{0.01, 0.98\}` of :math:`g = \delta\langle\theta,u\rangle + (1-\delta)\langle\theta,
    v\rangle + \delta(\delta-1)` at :math:`\theta = 0`, where :math:`S^* = \{0, 1\}`,
    :math:`\nabla_\theta g = v + \delta(u - v)` and :math:`L = \|u - v\|`:

    >>> import numpy as np
    >>> from minmax import certify_descent, covering_radius, steepest_descent
    >>> u, v = np.array([1.0, 0.0]), np.array([-0.6, 0.8])
    >>> deltas = np.array([[0.01], [0.98]])
    >>> grads = v + deltas * (u - v)
    >>> eps = covering_radius(np.array([[0.0], [1.0]]), deltas)
    >>> cert = certify_descent(grads, steepest_descent(grads).direction,
    ...                        lipschitz=np.linalg.norm(u - v), radius=eps)
    >>> cert.certified, round(eps, 12), round(cert.margin, 4)
    (True, 0.02, 0.4114)
    """
    lipschitz = validate_tol(lipschitz, name="lipschitz")
    radius = validate_tol(radius, name="radius")
    norm = _norm(gamma, grads)
    slope = float(np.max(inner_products(grads, gamma))) / norm
    bound = -lipschitz * radius
    return DescentCertificate(
        certified=bool(slope < bound),
        slope=slope,
        bound=bound,
        margin=bound - slope,
        norm=norm,
        lipschitz=lipschitz,
        radius=radius,
    )


def _points(x, name: str) -> np.ndarray:
    """A non-empty set of points, shape (n, *shape), as a finite float64 (n, k) NumPy array."""
    if array_api_compat.is_torch_array(x):
        x = x.detach().to("cpu")
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have shape (n, *shape) (one point per row), got a scalar")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one point is needed")
    arr = arr.astype(np.float64).reshape(arr.shape[0], -1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return arr


def _norm_order(norm):
    try:
        return _NORMS[norm]
    except (KeyError, TypeError):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}") from None


def covering_radius(reference, finite, *, norm="l2") -> float:
    r"""Covering radius :math:`\max_j \min_i \|r_j - \delta_i\|` of ``reference`` by ``finite``.

    With ``reference`` the maximizers :math:`S^*(\theta)` (or a dense sample of them) and ``finite`` the
    points :math:`\delta_i` whose gradients enter the steepest descent direction, this is the
    :math:`\epsilon` of Theorem 3 of [1]_ (from a sample it is a lower estimate of the true radius).

    Parameters
    ----------
    reference : array_like of shape (p, *shape)
        Points to be covered, one per row.
    finite : array_like of shape (m, *shape)
        The covering points, one per row (same trailing shape).
    norm : {"l2", "linf"}, default "l2"
        The distance; it must be the norm in which the Lipschitz constant is measured.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        Non-numeric input.
    ValueError
        An empty set, mismatched point shapes, non-finite entries, an unknown ``norm``.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import covering_radius
    >>> covering_radius(np.array([[0.0], [1.0]]), np.array([[0.1], [0.7]]))
    0.30000000000000004
    """
    ord_ = _norm_order(norm)
    ref_in, fin_in = np.shape(reference), np.shape(finite)
    if ref_in[1:] != fin_in[1:]:
        raise ValueError(
            f"reference and finite must hold points of the same shape, got {ref_in[1:]} and {fin_in[1:]}"
        )
    ref, fin = _points(reference, "reference"), _points(finite, "finite")
    radius = 0.0
    # Chunks keep the (chunk, m, k) difference array small for large samples.
    chunk = max(1, 2**22 // max(1, fin.size))
    for start in range(0, ref.shape[0], chunk):
        diff = ref[start:start + chunk, None, :] - fin[None, :, :]
        dist = np.linalg.norm(diff, ord=ord_, axis=-1)
        radius = max(radius, float(np.max(np.min(dist, axis=1))))
    return radius


def estimate_lipschitz(grad_theta, deltas, *, norm="l2") -> float:
    r"""Empirical Lipschitz constant of :math:`\delta \mapsto \nabla_\theta g(\theta, \delta)` from samples.

    .. math::

        \hat L = \max_{i < j,\ \delta_i \ne \delta_j}
            \frac{\|\nabla_\theta g(\theta,\delta_i) - \nabla_\theta g(\theta,\delta_j)\|_2}
                 {\|\delta_i - \delta_j\|}.

    This is a **lower** estimate of the true constant :math:`L` (a max over finitely many pairs of a
    sup over all pairs), so a Theorem 3 certificate built on it is heuristic; sample pairs where the
    gradient changes fastest (e.g. close pairs near the maximizers) to make it tight.

    Parameters
    ----------
    grad_theta : callable or array_like of shape (n, *shape_theta)
        Either :math:`\delta \mapsto \nabla_\theta g(\theta, \delta)` (called on each row of ``deltas``,
        returning an array), or the gradients already evaluated at the rows of ``deltas``.
    deltas : array_like of shape (n, *shape_delta)
        Sample points :math:`\delta_i \in S`, at least two of them distinct.
    norm : {"l2", "linf"}, default "l2"
        The norm of :math:`\delta` (the one the covering radius :math:`\epsilon` is measured in).

    Returns
    -------
    float

    Raises
    ------
    TypeError
        ``grad_theta`` neither callable nor an array, non-numeric values.
    ValueError
        Fewer than two distinct points, a number of gradients not matching the points, non-finite
        values, an unknown ``norm``.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import estimate_lipschitz
    >>> u, v = np.array([1.0, 0.0]), np.array([-0.6, 0.8])
    >>> L = estimate_lipschitz(lambda d: v + d[0] * (u - v), np.linspace(0, 1, 5)[:, None])
    >>> bool(np.isclose(L, np.linalg.norm(u - v)))
    True
    """
    ord_ = _norm_order(norm)
    pts = _points(deltas, "deltas")
    if callable(grad_theta):
        raw = np.asarray(deltas, dtype=np.float64)
        grads = _points(np.stack([np.asarray(grad_theta(raw[i]), dtype=np.float64)
                                  for i in range(raw.shape[0])]), "grad_theta(deltas)")
    elif array_api_compat.is_array_api_obj(grad_theta) or isinstance(grad_theta, (list, tuple)):
        grads = _points(grad_theta, "grad_theta")
    else:
        raise TypeError(f"grad_theta must be callable or an array, got {type(grad_theta).__name__}")
    n = pts.shape[0]
    if grads.shape[0] != n:
        raise ValueError(f"got {grads.shape[0]} gradients for {n} points deltas")
    best = -1.0
    for i in range(n - 1):
        dist = np.linalg.norm(pts[i + 1:] - pts[i], ord=ord_, axis=1)
        change = np.linalg.norm(grads[i + 1:] - grads[i], axis=1)
        distinct = dist > 0
        if np.any(distinct):
            best = max(best, float(np.max(change[distinct] / dist[distinct])))
    if best < 0:
        raise ValueError("deltas must hold at least two distinct points")
    return best
