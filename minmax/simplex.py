r"""Euclidean projection onto the simplex :math:`\{a \ge 0,\ \sum_i a_i = s\}`, any array-API backend."""

from __future__ import annotations

import numbers

import array_api_compat

__all__ = ["project_simplex"]


def project_simplex(v, s: float = 1.0, *, axis: int = -1):
    r"""Project each row of ``v`` onto the simplex :math:`\Delta_s = \{a \ge 0,\ \mathbf 1^\top a = s\}`.

    Computes :math:`\Pi(v) = \operatorname*{argmin}_{a \in \Delta_s} \|a - v\|_2` along ``axis``, for every
    other index at once.

    Parameters
    ----------
    v : array of shape (..., n, ...)
        Points to project, NumPy or any array-API array (torch tensors on any device,
        ``array_api_strict``). Entries may be ``-inf`` (such coordinates get weight 0); ``nan`` and
        ``+inf`` are rejected. Integer input is cast to float64; floating input keeps its dtype.
    s : float, default 1.0
        Total mass :math:`s > 0`.
    axis : int, default -1
        The axis along which the entries sum to ``s``.

    Returns
    -------
    array
        :math:`\Pi(v)`, same shape, array type and device as ``v``.

    Raises
    ------
    TypeError
        If ``v`` is not an array of real numbers (complex, bool) or ``s`` is not a real number.
    ValueError
        If ``s`` is not finite and positive, ``v`` is 0-dimensional or empty along ``axis``, holds ``nan``
        or ``+inf``, or a row is entirely ``-inf`` (it has no projection).

    Notes
    -----
    The KKT conditions give :math:`\Pi(v)_i = \max(v_i - \theta, 0)` with :math:`\theta` the unique root
    of :math:`\sum_i \max(v_i - \theta, 0) = s`. With :math:`u` the entries of :math:`v` sorted in
    decreasing order and :math:`t_j = (\sum_{r \le j} u_r - s)/j`, the root is :math:`\theta = t_\rho`,
    :math:`\rho = \max\{j : u_j > t_j\}` ([1]_, [2]_). Since :math:`t_j = t_{j-1} + (u_j - t_{j-1})/j`,
    :math:`t_j` increases exactly while :math:`u_j > t_{j-1}`, i.e. for :math:`j \le \rho`, and never
    again after, so :math:`\theta = \max_j t_j`: one sort, one cumulative sum, one maximum, O(n log n)
    per row, no data-dependent indexing.

    Two rewritings keep the result exact where a direct implementation loses it, using
    :math:`\Pi(v + c\mathbf 1) = \Pi(v)`:

    * the row maximum is subtracted first, so rows at scale 1e9 are projected with the accuracy of
      rows at scale 1 (the subtraction is exact for the entries that matter, by Sterbenz's lemma);
    * entries below :math:`\max_i v_i - s` (``-inf`` among them) are raised to :math:`\max_i v_i - 2s`:
      :math:`\theta \ge \max_i v_i - s`, so they get weight 0 either way, and the cumulative sum never
      meets an infinity or a huge magnitude.

    References
    ----------
    .. [1] M. Held, P. Wolfe, H. P. Crowder. "Validation of subgradient optimization." Mathematical
       Programming 6 (1974), 62-88.
    .. [2] J. Duchi, S. Shalev-Shwartz, Y. Singer, T. Chandra. "Efficient projections onto the l1-ball
       for learning in high dimensions." ICML 2008.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import project_simplex
    >>> project_simplex(np.array([0.5, 0.2, -1.0]))
    array([0.65, 0.35, 0.  ])
    >>> project_simplex(np.array([[1e9 + 1.0, 1e9, -np.inf]]), s=2.0)
    array([[1.5, 0.5, 0. ]])
    """
    if isinstance(s, bool) or not isinstance(s, numbers.Real):
        raise TypeError(f"s must be a real number, got {type(s).__name__}")
    s = float(s)
    if not (s > 0.0 and s < float("inf")):
        raise ValueError(f"s must be finite and positive (the simplex's total mass), got {s}")
    if not array_api_compat.is_array_api_obj(v):
        raise TypeError(f"v must be an array (NumPy or array-API), got {type(v).__name__}")
    xp = array_api_compat.array_namespace(v)
    if xp.isdtype(v.dtype, "integral"):
        v = xp.astype(v, xp.float64)
    elif not xp.isdtype(v.dtype, "real floating"):
        raise TypeError(f"v must hold real numbers, got dtype {v.dtype}")
    if v.ndim == 0:
        raise ValueError("v must have at least one dimension (the axis that sums to s)")
    if not -v.ndim <= axis < v.ndim:
        raise ValueError(f"axis {axis} is out of range for v with {v.ndim} dimensions")
    n = v.shape[axis]
    if n == 0:
        raise ValueError(f"v is empty along axis {axis}: the simplex needs at least one coordinate")
    if array_api_compat.size(v) == 0:
        return v
    v = xp.moveaxis(v, axis, -1)
    if bool(xp.any(xp.isnan(v) | (v == xp.inf))):
        raise ValueError("v contains NaN or +inf entries; only -inf (weight 0) is allowed")
    top = xp.max(v, axis=-1, keepdims=True)
    if bool(xp.any(top == -xp.inf)):
        raise ValueError(f"a row of v is entirely -inf along axis {axis}: it has no projection")
    w = xp.clip(v - top, min=-2.0 * s)
    u = xp.flip(xp.sort(w, axis=-1), axis=-1)
    steps = xp.arange(1, n + 1, dtype=w.dtype, device=array_api_compat.device(w))
    theta = xp.max((xp.cumulative_sum(u, axis=-1) - s) / steps, axis=-1, keepdims=True)
    return xp.moveaxis(xp.clip(w - theta, min=0.0), -1, axis)
