r"""Danskin's theorem over a finite set of maximizers: directional derivatives and steepest descent.

For :math:`\varphi(\theta) = \max_{\delta \in S} g(\theta, \delta)` with :math:`S` compact and
:math:`g`, :math:`\nabla_\theta g` continuous, Danskin's theorem (Theorem 1 in [1]_) gives the one-sided
directional derivative (Definition 1) as a max over **all** maximizers :math:`S^*(\theta)` (eq. 4):

.. math::

    D_\gamma \varphi(\theta) = \lim_{t \to 0^+} \frac{\varphi(\theta + t\gamma) - \varphi(\theta)}{t}
        = \max_{\delta \in S^*(\theta)} \langle \gamma, \nabla_\theta g(\theta, \delta) \rangle .

Over a finite set with gradients :math:`M = [g_1 \dots g_m]` the steepest descent direction is
:math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` with :math:`\alpha^* \in \operatorname{argmin}_{\alpha \in \Delta}
\|M\alpha\|^2` (Theorem 2). The numerical limits of Definition 1 that check these formulas
from values of :math:`\varphi` alone live in :mod:`minmax.numerical`.

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
    "SteepestDescentResult",
    "directional_derivative",
    "inner_products",
    "steepest_descent",
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
    :math:`f` and the gap from ``G`` (:func:`minmax.minnorm.optimality.gap_tolerance`). The result is
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
