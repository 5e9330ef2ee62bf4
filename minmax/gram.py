r"""The Gram matrix :math:`G = M^\top M` of m gradients and the combination :math:`M\alpha`, any backend.

Gradients come in one of two layouts, never concatenated into one copy:

* one array of shape ``(m, d)``: row ``i`` is the gradient :math:`g_i`;
* a list (or tuple) of per-parameter blocks, each of shape ``(m, *shape_k)``: row ``i`` of every block
  together form :math:`g_i` (the layout of a network's gradients, one block per parameter tensor).

Arrays may be NumPy arrays or any array-API array (torch tensors on CPU or CUDA, ``array_api_strict``);
the namespace is detected once here, with :func:`array_api_compat.array_namespace`.
"""

from __future__ import annotations

from collections.abc import Sequence

import array_api_compat
import numpy as np

__all__ = ["as_blocks", "combine", "gram"]


def as_blocks(grads, *, name: str = "grads") -> tuple[list, object, int]:
    """Normalize ``grads`` to a list of blocks; return ``(blocks, xp, m)``.

    Raises
    ------
    TypeError
        If ``grads`` is neither an array nor a sequence of arrays, or mixes array types.
    ValueError
        If there are no blocks, a block has fewer than 2 dimensions (for a single array: is not
        ``(m, d)``), the blocks disagree on m, m is 0, or a block has no entries.
    """
    if isinstance(grads, Sequence) and not isinstance(grads, str):
        blocks = list(grads)
        if not blocks:
            raise ValueError(f"{name} is an empty list: at least one block (m, *shape) is needed")
        single = False
    else:
        blocks = [grads]
        single = True
    for k, b in enumerate(blocks):
        if not array_api_compat.is_array_api_obj(b):
            raise TypeError(f"{name}[{k}] must be an array, got {type(b).__name__}")
    try:
        xp = array_api_compat.array_namespace(*blocks)
    except TypeError as exc:
        raise TypeError(f"{name} mixes array types: {exc}") from None
    if single and blocks[0].ndim != 2:
        raise ValueError(f"{name} must have shape (m, d), got shape {tuple(blocks[0].shape)}")
    m = blocks[0].shape[0] if blocks[0].ndim >= 1 else None
    for k, b in enumerate(blocks):
        if b.ndim < 1 or b.shape[0] != m:
            raise ValueError(
                f"every block of {name} must have shape (m, *shape) with the same m; block {k} has "
                f"shape {tuple(b.shape)} and block 0 has m = {m}"
            )
        if b.ndim < 2:
            raise ValueError(f"block {k} of {name} has shape {tuple(b.shape)}; expected (m, *shape)")
    if m == 0:
        raise ValueError(f"{name} holds no gradients (m = 0): the set of maximizers is empty")
    for k, b in enumerate(blocks):
        if not xp.isdtype(b.dtype, "real floating"):
            raise TypeError(f"block {k} of {name} must be real floating point, got dtype {b.dtype}")
    return blocks, xp, int(m)


def gram(grads):
    r"""Gram matrix :math:`G_{ij} = \langle g_i, g_j \rangle` accumulated in float64.

    Each block is cast to float64 on its own device and multiplied there, then the blocks' products
    are summed, so a network's gradients are never concatenated and low-precision gradients (float32,
    bfloat16) lose nothing to accumulation.

    Parameters
    ----------
    grads : array of shape (m, d), or sequence of arrays of shape (m, *shape_k)
        The m gradients :math:`g_1, \dots, g_m` (columns of :math:`M`), NumPy or any array-API backend.

    Returns
    -------
    array of shape (m, m), float64
        In the input's namespace and on its device.

    Raises
    ------
    TypeError, ValueError
        See :func:`as_blocks`; also ``ValueError`` when a gradient has a NaN or infinite entry.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import gram
    >>> gram(np.array([[1.0, 0.0], [1.0, 1.0]]))
    array([[1., 1.],
           [1., 2.]])
    """
    blocks, xp, m = as_blocks(grads)
    total = None
    for b in blocks:
        flat = xp.reshape(xp.astype(b, xp.float64), (m, -1))
        part = xp.matmul(flat, xp.matrix_transpose(flat))
        total = part if total is None else total + part
    if not bool(xp.all(xp.isfinite(total))):
        raise ValueError("grads contain NaN or infinite entries (their Gram matrix is not finite)")
    return total


def combine(grads, weights):
    r"""The combination :math:`M\alpha = \sum_i \alpha_i g_i` in the gradients' own backend and dtype.

    Parameters
    ----------
    grads : array of shape (m, d), or sequence of arrays of shape (m, *shape_k)
        The m gradients.
    weights : array_like of shape (m,)
        The coefficients :math:`\alpha` (any real vector; typically a point of the simplex).

    Returns
    -------
    array of shape (d,), or list of arrays of shape shape_k
        Same layout, namespace, device and dtype as ``grads``.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import combine
    >>> combine(np.array([[1.0, 0.0], [0.0, 1.0]]), [0.25, 0.75])
    array([0.25, 0.75])
    """
    blocks, xp, m = as_blocks(grads)
    w = np.array(weights, dtype=np.float64)  # a writable copy: torch cannot wrap read-only memory
    if w.shape != (m,):
        raise ValueError(f"weights must have shape ({m},) to match grads, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or infinite entries")
    out = []
    moved = {}  # the weights on each (dtype, device): one host-to-device copy, not one per block
    for b in blocks:
        key = (b.dtype, array_api_compat.device(b))
        wb = moved.get(key)
        if wb is None:
            wb = moved[key] = xp.asarray(w, dtype=b.dtype, device=key[1])
        flat = xp.reshape(b, (m, -1))
        out.append(xp.reshape(xp.matmul(wb[None, :], flat)[0, ...], tuple(b.shape[1:])))
    if isinstance(grads, Sequence) and not isinstance(grads, str):
        return out
    return out[0]
