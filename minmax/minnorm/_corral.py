r"""The corral of Wolfe's algorithm: affinely independent points and a factor of their affine system.

For the points S of the corral and a constant :math:`c > 0`, :class:`Corral` maintains a square factor
:math:`F` with :math:`FF^\top = A_S^{-1}`, :math:`A_S = c\,\mathbf 1\mathbf 1^\top + G_S`, so that the
affine minimizer of the corral is :math:`y = u/\mathbf 1^\top u` with :math:`u = A_S^{-1}\mathbf 1`. Points
are appended (a new column, :math:`O(|S|^2)`), removed (a Householder downdate, :math:`O(|S|^2)`) or the
factor rebuilt from G (Cholesky). :mod:`minmax.minnorm.wolfe` explains the choices.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dpotrf, dtrtri

__all__ = ["Corral", "scale"]

_EPS = np.finfo(np.float64).eps
# A candidate whose new Cholesky pivot is below this * |S| * u * A_jj is affinely dependent in floating
# point: its distance to the corral's affine hull is lost in the rounding of A_jj.
_DEPENDENCE_FACTOR = 16.0
# A corral whose squared norms span more than this ratio is "wide": its affine minimizer is refined
# before the solver relies on it (see minmax.minnorm.wolfe).
_REFINE_RANGE = 1e4
# Refinement steps (two: the factor comes from updates, not from G, and is only nearly exact).
_REFINE_STEPS = 2


def scale(diagonal) -> tuple[float, float, float]:
    """The constant c of A_S = c 11^T + G_S and the range of positive squared norms in the corral."""
    positive = [d for d in diagonal if d > 0.0]
    if not positive:
        return 1.0, 1.0, 1.0
    low, high = min(positive), max(positive)
    return math.sqrt(low) * math.sqrt(high), low, high


class Corral:
    r"""An affinely independent set S and a factor F with :math:`FF^\top = (c\,11^\top + G_S)^{-1}`.

    ``F[:k, :k]`` and ``w[:k]`` are F and :math:`F^\top\mathbf 1` (module docstring), ``rows[:k]`` the rows
    of G of the corral's points and ``idx[:k]`` their indices, in factorization order. Hot paths use a
    few NumPy calls on short vectors and Python floats for scalars: at m = 10 the per-call overhead, not
    the flops, is the cost.
    """

    __slots__ = ("G", "diag", "c", "low", "high", "F", "w", "rows", "idx", "member", "k")

    def __init__(self, G: np.ndarray):
        m = G.shape[0]
        self.G = G
        self.diag = G.diagonal().tolist()
        self.c = self.low = self.high = 1.0
        self.F = np.zeros((m, m))
        self.w = np.zeros(m)
        self.rows = np.zeros((m, m))
        self.idx = np.zeros(m, dtype=np.intp)
        self.member = [False] * m
        self.k = 0

    @property
    def S(self) -> np.ndarray:
        """The corral's point indices (a view: copy it before changing the corral)."""
        return self.idx[: self.k]

    def append(self, j: int) -> bool:
        """Add point j; return False (and change nothing) if it is affinely dependent on S."""
        g_jj = self.diag[j]
        if self.k == 0:
            self.c, self.low, self.high = scale([g_jj])
        elif (
            g_jj > 0.0
            and not 0.25 * self.c <= math.sqrt(min(g_jj, self.low) * max(g_jj, self.high)) <= 4.0 * self.c
        ):
            # j widens the corral's range of norms: re-factor with the new c (see the module docstring).
            saved = self.save()
            if self.refactor(self.S.tolist() + [j]):
                self.restore(saved)
                return False
            return True
        return self._append(j)

    def save(self) -> tuple:
        """A copy of the corral's state, for :meth:`restore` (the rare paths that try a change)."""
        k = self.k
        return (k, self.c, self.low, self.high, self.F[:k, :k].copy(), self.w[:k].copy(), self.S.copy())

    def restore(self, saved: tuple) -> None:
        k, self.c, self.low, self.high, F, w, idx = saved
        for i in self.S.tolist():
            self.member[i] = False
        self.F[:k, :k] = F
        self.w[:k] = w
        self.idx[:k] = idx
        self.rows[:k] = self.G[idx]
        for i in idx.tolist():
            self.member[i] = True
        self.k = k

    def _append(self, j: int) -> bool:
        k, c = self.k, self.c
        a_jj = c + self.diag[j]
        if k:
            Rk = self.F[:k, :k]
            r = (self.rows[:k, j] + c).dot(Rk)  # R^-T a_j, a_j = c 1 + G_{S,j}: the new column of R
            pivot2 = a_jj - float(r.dot(r))
        else:
            pivot2 = a_jj
        if not pivot2 > _DEPENDENCE_FACTOR * (k + 1) * _EPS * a_jj:
            return False
        pivot = math.sqrt(pivot2)
        if k:
            self.F[:k, k] = Rk.dot(r) * (-1.0 / pivot)
            self.F[k, :k] = 0.0
            self.w[k] = (1.0 - float(r.dot(self.w[:k]))) / pivot
        else:
            self.w[0] = 1.0 / pivot
        self.F[k, k] = 1.0 / pivot
        self.rows[k] = self.G[j]
        self.idx[k] = j
        self.member[j] = True
        self.k = k + 1
        return True

    def remove(self, drop: np.ndarray) -> None:
        """Remove the points at the corral positions where ``drop`` is True (Householder downdates)."""
        for p in np.flatnonzero(drop)[::-1].tolist():
            k = self.k
            F = self.F
            rho = F[p, :k].copy()
            self.member[int(self.idx[p])] = False
            if p < k - 1:
                F[p : k - 1, :k] = F[p + 1 : k, :k]
                self.rows[p : k - 1] = self.rows[p + 1 : k]
                self.idx[p : k - 1] = self.idx[p + 1 : k]
            rho[k - 1] += math.copysign(math.sqrt(float(rho.dot(rho))), rho[k - 1])
            B = F[: k - 1, :k]
            B -= np.multiply.outer(B.dot(rho), rho * (2.0 / float(rho.dot(rho))))
            self.k = k - 1
        self.w[: self.k] = self.F[: self.k, : self.k].sum(axis=0)

    def clear(self) -> None:
        """Empty the corral."""
        for i in self.S.tolist():
            self.member[i] = False
        self.k = 0

    def pop(self) -> None:
        """Remove the last point appended (its factor is the leading block: nothing to recompute)."""
        self.k -= 1
        self.member[int(self.idx[self.k])] = False

    def refactor(self, S: list[int]) -> list[int]:
        """Factor A_S from G for the points S; return the points rejected as affinely dependent.

        A subset of a corral is affinely independent in exact arithmetic, so LAPACK's Cholesky normally
        succeeds; if rounding makes it fail, the points are appended one at a time and dependent ones left
        out (the caller removes their weight).
        """
        if self.factor(S):
            return []
        self.k = 0
        return [i for i in S if not self._append(i)]

    def factor(self, S: list[int]) -> bool:
        """Factor A_S from G with LAPACK; False (corral emptied) if S is dependent in floating point."""
        for i in self.S.tolist():
            self.member[i] = False
        self.k = 0
        k = len(S)
        if k == 0:  # an exchange on a one-point corral empties it; LAPACK rejects (and prints on) n = 0
            return True
        idx = np.array(S, dtype=np.intp)
        rows = self.G[idx]
        A = rows.take(idx, axis=1)
        self.c, self.low, self.high = scale([self.diag[i] for i in S])
        A += self.c
        # LAPACK directly: np.linalg.cholesky's wrapper costs several times the factorization at these
        # sizes. clean=1 zeroes the upper triangle, which dtrtri then leaves as is.
        L, info = dpotrf(A, lower=1, clean=1)
        if info == 0 and (L.diagonal() ** 2 > _DEPENDENCE_FACTOR * k * _EPS * A.diagonal()).all():
            Linv, info = dtrtri(L, lower=1)
            if info == 0:
                self.F[:k, :k] = Linv.T
                self.w[:k] = Linv.sum(axis=1)
                self.rows[:k] = rows
                self.idx[:k] = idx
                for i in S:
                    self.member[i] = True
                self.k = k
                return True
        return False

    def coordinates(self, j: int) -> np.ndarray:
        """Affine coordinates z of point j on the corral: A_S z = c 1 + G_{S,j}."""
        Rk = self.F[: self.k, : self.k]
        return Rk.dot((self.rows[: self.k, j] + self.c).dot(Rk))

    @property
    def wide(self) -> bool:
        """Whether the corral's squared norms span so wide a range that its solves need refinement."""
        return self.high > _REFINE_RANGE * self.low

    def affine_minimizer(self, refine: bool = False) -> np.ndarray:
        """u = A_S^-1 1; the affine minimizer of the corral is y = u / sum(u) (and sum(u) > 0).

        ``refine``: two steps of iterative refinement (the caller asks for them where the accuracy of u
        decides something, see :mod:`minmax.minnorm.wolfe`).
        """
        k = self.k
        Rk = self.F[:k, :k]
        u = Rk.dot(self.w[:k])
        if refine:
            # Iterative refinement, the residual computed without rounding c + G_ij.
            G_S = self.rows[:k].take(self.idx[:k], axis=1)
            for _ in range(_REFINE_STEPS):
                residual = (1.0 - self.c * math.fsum(u.tolist())) - G_S.dot(u)
                u += Rk.dot(residual.dot(Rk))
        return u
