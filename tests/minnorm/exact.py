r"""Wolfe's minimum-norm-point algorithm in exact rational arithmetic: an independent test reference.

For a Gram matrix with rational entries (``G = M^T M`` with integer ``M``) every quantity of Wolfe's
algorithm is rational, so it runs in :class:`fractions.Fraction` without rounding: affine independence is
decided exactly, the returned value is exactly :math:`f^* = \min_{\alpha\in\Delta}\alpha^\top G\alpha`,
and :math:`G\alpha^*` (unique even when :math:`\alpha^*` is not) is exact. It shares no code with
:mod:`minmax.minnorm.wolfe`: the corral's affine problem is the bordered KKT system, solved by Gaussian
elimination, instead of a Cholesky factor of :math:`c\,\mathbf 1\mathbf 1^\top + G_S`. Meant for m up to
about 15.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["exact_gram", "exact_min_norm"]


def exact_gram(grads) -> list[list[Fraction]]:
    """Exact Gram matrix of integer gradients given as the rows of ``grads``."""
    rows = [[int(v) for v in row] for row in np.asarray(grads).tolist()]
    return [[Fraction(sum(a * b for a, b in zip(gi, gj, strict=True))) for gj in rows] for gi in rows]


def _solve(A: list[list[Fraction]], b: list[Fraction]) -> list[Fraction] | None:
    """Solve A x = b exactly by Gaussian elimination; None if A is singular."""
    n = len(A)
    aug = [row[:] + [rhs] for row, rhs in zip(A, b, strict=True)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if aug[r][col] != 0), None)
        if pivot is None:
            return None
        aug[col], aug[pivot] = aug[pivot], aug[col]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                factor = aug[r][col] / aug[col][col]
                aug[r] = [a - factor * p for a, p in zip(aug[r], aug[col], strict=True)]
    return [aug[i][n] / aug[i][i] for i in range(n)]


def _affine_minimizer(G, S: list[int]) -> list[Fraction] | None:
    """Weights y (sum 1) minimizing y^T G_S y: solve [[G_S, 1], [1^T, 0]] [y; -lambda] = [0; 1]."""
    k = len(S)
    A = [[G[i][j] for j in S] + [Fraction(1)] for i in S] + [[Fraction(1)] * k + [Fraction(0)]]
    sol = _solve(A, [Fraction(0)] * k + [Fraction(1)])
    return None if sol is None else sol[:k]


def exact_min_norm(G, *, max_cycles: int = 10_000) -> tuple[list[Fraction], Fraction]:
    r"""Minimize :math:`\alpha^\top G\alpha` over the simplex exactly.

    Parameters
    ----------
    G : sequence of sequences of int or Fraction
        Symmetric positive semidefinite matrix with rational entries.

    Returns
    -------
    alpha : list of Fraction
        An optimal point of the simplex (exactly feasible, exactly optimal).
    value : Fraction
        :math:`f^*`.
    """
    G = [[Fraction(v) for v in row] for row in G]
    m = len(G)
    start = min(range(m), key=lambda i: G[i][i])
    S = [start]
    x = {start: Fraction(1)}
    for _ in range(max_cycles):
        g = [sum((G[i][j] * xj for j, xj in x.items()), Fraction(0)) for i in range(m)]
        value = sum((xj * g[j] for j, xj in x.items()), Fraction(0))
        j = min(range(m), key=lambda i: g[i])
        if g[j] >= value:  # the Frank-Wolfe gap 2 (f - min_i g_i) is exactly zero
            return [x.get(i, Fraction(0)) for i in range(m)], value
        if j in x:
            raise AssertionError("exact Wolfe: the entering point is already in the corral")
        S.append(j)
        x[j] = Fraction(0)
        while True:
            y = _affine_minimizer(G, S)
            if y is None:
                raise AssertionError("exact Wolfe: the corral became affinely dependent")
            if all(v > 0 for v in y):
                x = dict(zip(S, y, strict=True))
                break
            theta = min(x[i] / (x[i] - yi) for i, yi in zip(S, y, strict=True) if yi <= 0)
            x = {i: (1 - theta) * x[i] + theta * yi for i, yi in zip(S, y, strict=True)}
            S = [i for i in S if x[i] > 0]
            x = {i: x[i] for i in S}
    raise AssertionError("exact Wolfe did not terminate")
