r"""Danskin's theorem over a finite set of maximizers: directional derivatives and steepest descent.

For :math:`\varphi(\theta) = \max_{\delta \in S} g(\theta, \delta)` with :math:`S` compact and
:math:`g`, :math:`\nabla_\theta g` continuous, Danskin's theorem (Theorem 1 in [1]_) gives the one-sided
directional derivative (Definition 1) as a max over **all** maximizers :math:`S^*(\theta)` (eq. 4):

.. math::

    D_\gamma \varphi(\theta) = \lim_{t \to 0^+} \frac{\varphi(\theta + t\gamma) - \varphi(\theta)}{t}
        = \max_{\delta \in S^*(\theta)} \langle \gamma, \nabla_\theta g(\theta, \delta) \rangle .

Over a finite set with gradients :math:`M = [g_1 \dots g_m]` the steepest descent direction is
:math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` with :math:`\alpha^* \in \operatorname{argmin}_{\alpha \in \Delta}
\|M\alpha\|^2` (Theorem 2). The numerical limits here (:func:`one_sided_derivative`,
:func:`two_sided_derivative`) check any claimed derivative from values of :math:`\varphi` alone.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import array_api_compat
import numpy as np

from .gram import as_blocks, combine
from .gram import gram as _gram
from .minnorm import DEFAULT_TOL, MinNormResult, min_norm_point

__all__ = [
    "DerivativeEstimate",
    "SteepestDescentResult",
    "directional_derivative",
    "inner_products",
    "one_sided_derivative",
    "steepest_descent",
    "two_sided_derivative",
]


def _is_block_list(grads) -> bool:
    return isinstance(grads, Sequence) and not isinstance(grads, str)


def _to_numpy(x) -> np.ndarray:
    """A float64 NumPy copy of a small array of any backend (torch: detached and moved to the CPU)."""
    if array_api_compat.is_torch_array(x):
        x = x.detach().to("cpu")
    # np.asarray reads array_api_strict arrays directly; their to_device() rejects the name "cpu".
    return np.asarray(x, dtype=np.float64)


def _gamma_blocks(gamma, blocks, xp, *, single: bool, name: str) -> list:
    """Check that ``gamma`` has the layout, namespace and shapes of ``grads``; return its blocks."""
    if single:
        if not array_api_compat.is_array_api_obj(gamma):
            if _is_block_list(gamma) or isinstance(gamma, (int, float)):
                # Plain Python numbers are unambiguous for the (m, d) layout: adopt grads' namespace.
                gamma = xp.asarray(gamma, dtype=xp.float64, device=array_api_compat.device(blocks[0]))
            else:
                raise TypeError(f"{name} must be an array of shape (d,), got {type(gamma).__name__}")
        gblocks = [gamma]
    else:
        if not _is_block_list(gamma):
            raise TypeError(
                f"grads is a list of {len(blocks)} blocks, so {name} must be a list of {len(blocks)} "
                f"arrays of the blocks' shapes, got {type(gamma).__name__}"
            )
        gblocks = list(gamma)
        if len(gblocks) != len(blocks):
            raise ValueError(f"{name} has {len(gblocks)} blocks but grads has {len(blocks)}")
    for k, g in enumerate(gblocks):
        if not array_api_compat.is_array_api_obj(g):
            raise TypeError(f"{name}[{k}] must be an array, got {type(g).__name__}")
    try:
        array_api_compat.array_namespace(*blocks, *gblocks)
    except TypeError as exc:
        raise TypeError(f"{name} and grads must be arrays of the same kind: {exc}") from None
    for k, (g, b) in enumerate(zip(gblocks, blocks, strict=True)):
        if tuple(g.shape) != tuple(b.shape[1:]):
            where = "" if single else f" block {k}:"
            raise ValueError(
                f"{name}{where} shape {tuple(g.shape)} does not match the gradients' shape "
                f"{tuple(b.shape[1:])} (grads{'' if single else f'[{k}]'} has shape {tuple(b.shape)})"
            )
        if not (xp.isdtype(g.dtype, "real floating") or xp.isdtype(g.dtype, "integral")):
            raise TypeError(f"{name} must hold real numbers, got dtype {g.dtype}")
    return gblocks


def inner_products(grads, gamma, *, name: str = "gamma") -> np.ndarray:
    r"""The m inner products :math:`\langle g_i, \gamma \rangle`, accumulated in float64.

    Parameters
    ----------
    grads : array of shape (m, d), or sequence of arrays of shape (m, *shape_k)
        The gradients, in either layout of :mod:`minmax.gram`.
    gamma : array of shape (d,), or sequence of arrays of shape shape_k
        A direction in the matching layout and the same array type (for the ``(m, d)`` layout, a list
        of Python numbers is also accepted).

    Returns
    -------
    ndarray of shape (m,), float64
        On the CPU, whatever the backend of the inputs.

    Raises
    ------
    TypeError
        Mixed array types, a layout mismatch, or non-real dtypes.
    ValueError
        Mismatched shapes or numbers of blocks, an empty set (m = 0), non-finite entries.
    """
    blocks, xp, m = as_blocks(grads)
    gblocks = _gamma_blocks(gamma, blocks, xp, single=not _is_block_list(grads), name=name)
    total = None
    for b, g in zip(blocks, gblocks, strict=True):
        flat = xp.reshape(xp.astype(b, xp.float64), (m, -1))
        part = xp.matmul(flat, xp.reshape(xp.astype(g, xp.float64), (-1,)))
        total = part if total is None else total + part
    values = _to_numpy(total)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"grads or {name} contain NaN or infinite entries")
    return values


def directional_derivative(grads, gamma) -> float:
    r"""Danskin's formula (eq. 4 of [1]_) over a finite set: :math:`\max_i \langle g_i, \gamma\rangle`.

    When the rows of ``grads`` are :math:`\nabla_\theta g(\theta, \delta_i)` for **all** maximizers
    :math:`\delta_i \in S^*(\theta)`, this is the one-sided directional derivative
    :math:`D_\gamma\varphi(\theta)`; over a subset of the maximizers it is a lower bound of it (which is why
    a single maximizer's gradient need not give descent, Corollary 1 failing in counterexamples 1-2).

    Parameters
    ----------
    grads : array of shape (m, d), or sequence of arrays of shape (m, *shape_k)
        The gradients :math:`g_i = \nabla_\theta g(\theta, \delta_i)`, NumPy or any array-API backend.
    gamma : array of shape (d,), or sequence of arrays of shape shape_k
        The direction, in the layout and array type of ``grads`` (any norm: the formula is positively
        homogeneous in :math:`\gamma`).

    Returns
    -------
    float
        :math:`\max_i \langle g_i, \gamma \rangle`, the inner products accumulated in float64.

    Raises
    ------
    TypeError, ValueError
        See :func:`inner_products`.

    References
    ----------
    .. [1] Latorre et al., ICLR 2023 (see the module docstring).

    Examples
    --------
    Counterexample 2 with :math:`u = e_1`, :math:`v = (-0.6, 0.8)`: at :math:`\theta = 0` both endpoints
    of :math:`[0, 1]` are maximizers, and the negative gradient at one of them is an ascent direction.

    >>> import numpy as np
    >>> from minmax import directional_derivative
    >>> u, v = np.array([1.0, 0.0]), np.array([-0.6, 0.8])
    >>> directional_derivative(np.stack([u, v]), -u)
    0.6
    """
    return float(np.max(inner_products(grads, gamma)))


@dataclass(frozen=True)
class SteepestDescentResult:
    r"""The steepest descent direction over a finite set of maximizers (Theorem 2 of [1]_).

    Attributes
    ----------
    direction : array of shape (d,), or list of arrays of shape shape_k
        The unit direction :math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` in the gradients' layout, array
        type, device and dtype; all zeros when ``stationary``.
    weights : ndarray of shape (m,), float64
        :math:`\alpha^*` on the simplex (not unique when the Gram matrix is singular).
    slope : float
        :math:`-\|M\alpha^*\|`. When ``qp.success`` this is :math:`\max_i\langle\gamma^*, g_i\rangle`,
        the steepest slope over the set; for any feasible weights the true value is at most
        ``slope + qp.gap / (2 * norm)``. When ``stationary`` it is a round-off-sized number and no
        direction has a negative slope over the set.
    norm : float
        :math:`\|M\alpha^*\|`, computed in float64 from the combination itself (not from
        :math:`\sqrt{\alpha^\top G\alpha}`, which loses half the digits when the norm is small).
    stationary : bool
        The origin lies in the convex hull of the gradients within the QP's certified tolerance: no
        direction decreases all of them, and ``direction`` is zero instead of a division by zero. The rule
        is ``qp.value <= qp.tolerance`` (or a combination that is exactly zero), see
        :func:`steepest_descent`.
    qp : MinNormResult
        The minimum-norm-point solve, with its recomputed duality gap and status.
    combination : array of shape (d,), or list of arrays of shape shape_k
        :math:`M\alpha^*` (accumulated in float64, returned in the gradients' dtype).
    """

    direction: object
    weights: np.ndarray
    slope: float
    norm: float
    stationary: bool
    qp: MinNormResult
    combination: object

    @property
    def success(self) -> bool:
        """Whether the QP is certified optimal (``qp.status`` is OPTIMAL)."""
        return self.qp.success


def _validated_gram(G, m: int):
    if not array_api_compat.is_array_api_obj(G) and not _is_block_list(G):
        raise TypeError(f"gram must be an array of shape ({m}, {m}), got {type(G).__name__}")
    shape = tuple(G.shape) if array_api_compat.is_array_api_obj(G) else np.shape(G)
    if shape != (m, m):
        raise ValueError(f"gram must have shape ({m}, {m}) to match the {m} gradients, got shape {shape}")
    return G


def steepest_descent(
    grads,
    *,
    method: str = "wolfe",
    tol: float = DEFAULT_TOL,
    init=None,
    gram=None,
    max_iter: int | None = None,
) -> SteepestDescentResult:
    r"""Steepest descent direction over a finite set of maximizers (Theorem 2 of [1]_).

    Solves :math:`\min_{\|\gamma\| = 1} \max_i \langle \gamma, g_i \rangle`. By minimax duality the optimum
    is :math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` with :math:`\alpha^* \in \operatorname{argmin}_{\alpha
    \in \Delta} \alpha^\top G \alpha`, :math:`G = M^\top M`, and the optimal slope is
    :math:`\max_i \langle\gamma^*, g_i\rangle = -\|M\alpha^*\|`.

    Parameters
    ----------
    grads : array of shape (m, d), or sequence of arrays of shape (m, *shape_k)
        The gradients :math:`g_i = \nabla_\theta g(\theta, \delta_i)`, NumPy or any array-API backend
        (torch on CPU or CUDA, ``array_api_strict``); never concatenated.
    method : str, default "wolfe"
        The QP method, see :func:`minmax.min_norm_point`.
    tol : float, default 1e-12
        Relative duality-gap tolerance of the QP.
    init : array_like of shape (m,), optional
        Warm start for the weights (e.g. an interrupted solve's ``weights``).
    gram : array of shape (m, m), optional
        A precomputed Gram matrix of ``grads`` (e.g. averaged across processes); only its shape is
        checked against ``grads``. Computed with :func:`minmax.gram` (float64) when omitted.
    max_iter : int, optional
        QP iteration limit (the method's default when omitted).

    Returns
    -------
    SteepestDescentResult

    Raises
    ------
    TypeError, ValueError
        Bad ``grads`` (see :func:`minmax.gram.as_blocks`), a ``gram`` of the wrong shape or not a valid
        Gram matrix, or invalid QP arguments (see :func:`minmax.min_norm_point`).

    Notes
    -----
    **Stationarity rule.** Let :math:`f = \alpha^\top G\alpha` (``qp.value``) and ``qp.tolerance``
    :math:`= \max(\mathrm{tol}\cdot f, \mathrm{floor})`, where the floor is the rounding error of computing
    :math:`f` and the gap from ``G`` (:func:`minmax.minnorm.certificate.gap_tolerance`). The result is
    ``stationary`` iff :math:`f \le` ``qp.tolerance`` (for ``tol < 1``: iff :math:`f \le` floor), or the
    float64 combination :math:`M\alpha` is exactly zero. Then :math:`0 \le f^* \le f` is zero up to
    round-off: the hull point :math:`M\alpha` cannot be told apart from the origin, no direction
    decreases all gradients, and the direction returned is zero. Conversely, when the QP is certified
    (``qp.success``, so ``gap <= tolerance < f``) and the result is not stationary, :math:`f^* \ge f - `
    gap :math:`> 0`: the origin is certifiably outside the hull and :math:`\gamma^*` is a strict descent
    direction for every :math:`g_i`. With a QP that did not converge (``qp.status`` not OPTIMAL) the
    direction is still returned; its slope over the set is :math:`-(f - \mathrm{gap}/2)/\sqrt f`, negative
    whenever ``gap < 2 f``.

    **Precision.** The Gram matrix and the combination are accumulated in float64 whatever the
    gradients' dtype; the direction is divided by the float64 norm and only then cast back.

    References
    ----------
    .. [1] Latorre et al., ICLR 2023 (see the module docstring).

    Examples
    --------
    Counterexample 2: two obtuse unit gradients; the steepest descent direction is
    :math:`-(u + v)/\|u + v\|` and it decreases both.

    >>> import numpy as np
    >>> from minmax import steepest_descent, directional_derivative
    >>> u, v = np.array([1.0, 0.0]), np.array([-0.6, 0.8])
    >>> res = steepest_descent(np.stack([u, v]))
    >>> res.direction, round(res.slope, 9), res.stationary
    (array([-0.4472136 , -0.89442719]), -0.447213595, False)
    >>> round(directional_derivative(np.stack([u, v]), res.direction), 9)
    -0.447213595
    """
    blocks, xp, m = as_blocks(grads)
    G = _gram(grads) if gram is None else _validated_gram(gram, m)
    qp = min_norm_point(G, method=method, tol=tol, max_iter=max_iter, init=init)
    alpha = qp.weights
    combination = combine(blocks, alpha)  # in the gradients' own dtype, as the caller applies it
    # The norm of the combination actually formed (summed in float64, one device sync for all blocks),
    # not sqrt(alpha^T G alpha): with cancellation the two differ by more than the direction's round-off.
    sq_norm = xp.sum(xp.stack([xp.sum(xp.astype(c, xp.float64) ** 2) for c in combination]))
    norm = math.sqrt(float(sq_norm))
    stationary = bool(qp.value <= qp.tolerance) or norm == 0.0
    if stationary:
        direction = [xp.zeros(tuple(b.shape[1:]), dtype=b.dtype, device=array_api_compat.device(b))
                     for b in blocks]
    else:
        direction = [c / -norm for c in combination]
    if not _is_block_list(grads):
        direction, combination = direction[0], combination[0]
    return SteepestDescentResult(
        direction=direction,
        weights=alpha,
        slope=-norm,
        norm=norm,
        stationary=stationary,
        qp=qp,
        combination=combination,
    )


# --- numerical one-sided limits (Definition 1) -------------------------------------------------------

_EPS = float(np.finfo(np.float64).eps)
# phi is assumed to be evaluated to within this many ulps of its magnitude (round-off model of the
# quotients' noise; it only matters for the error estimate, never for the estimate itself).
_PHI_ULPS = 4.0


@dataclass(frozen=True)
class DerivativeEstimate:
    r"""A numerical limit of difference quotients, extrapolated to :math:`t \to 0^+`.

    Attributes
    ----------
    estimate : float
        The extrapolated limit.
    error : float
        An estimate of its absolute error: the larger of the disagreement between neighbouring entries of
        the extrapolation table and the propagated round-off of the quotients. A heuristic, not a bound.
    steps : ndarray
        The decreasing steps :math:`t_k > 0` used.
    quotients : ndarray
        The difference quotients at those steps (one-sided, or symmetric for the two-sided limit).
    order : int
        The extrapolation order of the entry chosen (0: a raw quotient; j: a degree-j polynomial in t
        through j + 1 consecutive quotients, evaluated at t = 0).
    kind : str
        ``"one-sided"`` or ``"two-sided"``.
    forward, backward : DerivativeEstimate or None
        For the two-sided limit: :math:`D_\gamma\varphi(\theta)` and :math:`D_{-\gamma}\varphi(\theta)`,
        from the same evaluations.
    """

    estimate: float
    error: float
    steps: np.ndarray
    quotients: np.ndarray
    order: int
    kind: str
    forward: DerivativeEstimate | None = None
    backward: DerivativeEstimate | None = None

    @property
    def asymmetry(self) -> float | None:
        r""":math:`D_\gamma\varphi + D_{-\gamma}\varphi` (two-sided only): 0 iff the two-sided limit exists.

        For a max-function it is never negative (:math:`\max_i\langle\gamma, g_i\rangle +
        \max_i\langle -\gamma, g_i\rangle \ge 0`); positive at a kink along :math:`\gamma`.
        """
        if self.forward is None or self.backward is None:
            return None
        return self.forward.estimate + self.backward.estimate


def _extrapolate(steps: np.ndarray, quotients: np.ndarray, noise: np.ndarray, max_order: int):
    """Neville extrapolation of q(t) = D + a_1 t + a_2 t^2 + ... to t = 0; pick the most consistent entry.

    ``T[k][j]`` is the degree-j polynomial through (t_{k-j}, q_{k-j}) ... (t_k, q_k) evaluated at 0; its
    error estimate is the larger of its distance to the two entries it was built from and the round-off
    of the quotients propagated through the recursion (which grows with the order).
    """
    n = len(steps)
    table = [[float(q)] for q in quotients]
    prop = [[float(e)] for e in noise]
    best = (float(quotients[-1]), np.inf, 0)
    for k in range(1, n):
        err0 = max(abs(quotients[k] - quotients[k - 1]), noise[k])
        if err0 < best[1]:
            best = (float(quotients[k]), float(err0), 0)
        for j in range(1, min(k, max_order) + 1):
            t_far, t_near = steps[k - j], steps[k]
            denom = t_far - t_near
            value = (t_far * table[k][j - 1] - t_near * table[k - 1][j - 1]) / denom
            noise_kj = (t_far * prop[k][j - 1] + t_near * prop[k - 1][j - 1]) / denom
            table[k].append(value)
            prop[k].append(noise_kj)
            err = max(abs(value - table[k][j - 1]), abs(value - table[k - 1][j - 1]), noise_kj)
            if err < best[1]:
                best = (float(value), float(err), j)
    return best


def _validate_point(theta, gamma):
    theta = np.asarray(theta, dtype=np.float64)
    gamma = np.asarray(gamma, dtype=np.float64)
    if theta.shape != gamma.shape:
        raise ValueError(f"gamma must have the shape of theta {theta.shape}, got {gamma.shape}")
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(gamma))):
        raise ValueError("theta and gamma must be finite")
    if not np.any(gamma):
        raise ValueError("gamma is zero: a direction is needed")
    return theta, gamma


def _validate_steps(steps, theta, gamma, t0, num, ratio) -> np.ndarray:
    if steps is None:
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must lie in (0, 1), got {ratio}")
        if num < 2:
            raise ValueError(f"num must be at least 2, got {num}")
        if t0 is None:
            t0 = 0.125 * max(1.0, float(np.linalg.norm(theta))) / float(np.linalg.norm(gamma))
        steps = float(t0) * ratio ** np.arange(num)
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or steps.size < 2:
        raise ValueError(f"steps must be a 1-d sequence of at least 2 steps, got shape {steps.shape}")
    if not (np.all(np.isfinite(steps)) and np.all(steps > 0) and np.all(np.diff(steps) < 0)):
        raise ValueError("steps must be finite, positive and strictly decreasing")
    return steps


def _evaluate(phi, x, what: str) -> float:
    if not callable(phi):
        raise TypeError(f"phi must be callable, got {type(phi).__name__}")
    value = phi(x)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"phi must return a real scalar, got {type(value).__name__}") from None
    if not np.isfinite(value):
        raise ValueError(f"phi returned {value} at {what}")
    return value


def _one_side(phi, theta, gamma, steps, phi0, max_order, sign):
    values = np.array([_evaluate(phi, theta + sign * t * gamma, f"theta {'+-'[sign < 0]} {t:g} gamma")
                       for t in steps])
    quotients = (values - phi0) / steps
    # Round-off of each quotient: phi's own error, and theta + t*gamma not being exactly t*gamma away.
    scale = float(np.linalg.norm(theta)) / float(np.linalg.norm(gamma))
    noise = (_PHI_ULPS * _EPS * (abs(phi0) + np.abs(values)) + _EPS * scale * np.abs(quotients)) / steps
    noise = noise + _EPS * np.abs(quotients)
    estimate, error, order = _extrapolate(steps, quotients, noise, max_order)
    result = DerivativeEstimate(estimate, error, steps, quotients, order, "one-sided")
    return result, values, noise


def one_sided_derivative(
    phi, theta, gamma, *, steps=None, t0: float | None = None, num: int = 12, ratio: float = 0.5,
    max_order: int = 4,
) -> DerivativeEstimate:
    r"""Numerical one-sided directional derivative :math:`D_\gamma\varphi(\theta)` (Definition 1 of [1]_).

    Evaluates the quotients :math:`q(t_k) = (\varphi(\theta + t_k\gamma) - \varphi(\theta))/t_k` on a
    decreasing sequence of steps and extrapolates them to :math:`t \to 0^+` (Richardson / Neville: for
    a max of finitely many smooth pieces, and for any :math:`\varphi` smooth along the ray,
    :math:`q(t) = D_\gamma\varphi(\theta) + a_1 t + a_2 t^2 + \dots` for small :math:`t > 0`). The
    entry of the extrapolation table that agrees best with its neighbours is returned with that
    disagreement as its error estimate, so a kink met by the larger steps only costs those steps.

    Parameters
    ----------
    phi : callable
        :math:`\varphi`, taking a NumPy float64 array of ``theta``'s shape and returning a real scalar.
    theta, gamma : array_like
        The point and the direction (same shape; any non-zero norm: the result is
        :math:`\|\gamma\|` times the derivative along the unit vector).
    steps : array_like, optional
        Strictly decreasing positive steps. Default: ``t0 * ratio**k``, ``k = 0 .. num-1``.
    t0 : float, optional
        First step; default ``0.125 * max(1, ||theta||) / ||gamma||``.
    num : int, default 12
        Number of steps (default sequence only).
    ratio : float, default 0.5
        Ratio of consecutive steps (default sequence only).
    max_order : int, default 4
        Highest extrapolation order (higher orders amplify round-off).

    Returns
    -------
    DerivativeEstimate

    Raises
    ------
    TypeError
        ``phi`` not callable or not returning a real scalar.
    ValueError
        Shapes of ``theta`` and ``gamma`` differ, non-finite inputs, zero ``gamma``, invalid steps, or
        ``phi`` not finite at a point it is evaluated at.

    References
    ----------
    .. [1] Latorre et al., ICLR 2023 (see the module docstring).

    Examples
    --------
    Counterexample 1: :math:`\varphi(\theta) = \max_{\delta\in[-1,1]} \theta\delta = |\theta|`. At 0 the
    gradient at the maximizer :math:`\delta = 1` is 1, yet the direction -1 increases :math:`\varphi`:

    >>> import numpy as np
    >>> from minmax import one_sided_derivative
    >>> res = one_sided_derivative(lambda th: abs(th[0]), np.zeros(1), -np.ones(1))
    >>> res.estimate, res.error < 1e-12
    (1.0, True)
    """
    theta, gamma = _validate_point(theta, gamma)
    steps = _validate_steps(steps, theta, gamma, t0, num, ratio)
    phi0 = _evaluate(phi, theta, "theta")
    return _one_side(phi, theta, gamma, steps, phi0, max_order, 1.0)[0]


def two_sided_derivative(
    phi, theta, gamma, *, steps=None, t0: float | None = None, num: int = 12, ratio: float = 0.5,
    max_order: int = 4,
) -> DerivativeEstimate:
    r"""Numerical two-sided (symmetric) directional derivative, with both one-sided limits.

    Extrapolates the symmetric quotients :math:`(\varphi(\theta + t\gamma) - \varphi(\theta - t\gamma))/(2t)`
    to :math:`t \to 0^+`; their limit is :math:`(D_\gamma\varphi(\theta) - D_{-\gamma}\varphi(\theta))/2`.
    The ordinary two-sided limit :math:`\lim_{t\to 0}(\varphi(\theta + t\gamma) - \varphi(\theta))/t`
    exists iff :math:`D_{-\gamma}\varphi(\theta) = -D_\gamma\varphi(\theta)`, i.e. iff ``asymmetry`` is 0,
    and then equals ``estimate`` (:math:`\langle\nabla\varphi(\theta), \gamma\rangle` when
    :math:`\varphi` is differentiable). At a kink along :math:`\gamma` both one-sided derivatives can be
    positive (Lemma 1 of [1]_, counterexample 1): ``forward`` and ``backward`` report them.

    Parameters
    ----------
    phi, theta, gamma, steps, t0, num, ratio, max_order
        As in :func:`one_sided_derivative` (the same steps are used on both sides).

    Returns
    -------
    DerivativeEstimate
        ``kind == "two-sided"``, with ``forward`` (:math:`D_\gamma`) and ``backward`` (:math:`D_{-\gamma}`).

    Raises
    ------
    TypeError, ValueError
        As in :func:`one_sided_derivative`.

    References
    ----------
    .. [1] Latorre et al., ICLR 2023 (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import two_sided_derivative
    >>> res = two_sided_derivative(lambda th: abs(th[0]), np.zeros(1), np.ones(1))
    >>> res.forward.estimate, res.backward.estimate, res.asymmetry   # a kink: no two-sided limit
    (1.0, 1.0, 2.0)
    >>> round(two_sided_derivative(lambda th: np.sin(th[0]), np.zeros(1), np.ones(1)).estimate, 10)
    1.0
    """
    theta, gamma = _validate_point(theta, gamma)
    steps = _validate_steps(steps, theta, gamma, t0, num, ratio)
    phi0 = _evaluate(phi, theta, "theta")
    forward, plus, noise_plus = _one_side(phi, theta, gamma, steps, phi0, max_order, 1.0)
    backward, minus, noise_minus = _one_side(phi, theta, gamma, steps, phi0, max_order, -1.0)
    quotients = (plus - minus) / (2.0 * steps)
    estimate, error, order = _extrapolate(steps, quotients, 0.5 * (noise_plus + noise_minus), max_order)
    return DerivativeEstimate(estimate, error, steps, quotients, order, "two-sided", forward, backward)
