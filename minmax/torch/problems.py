r"""The paper's synthetic max-functions written as torch callables (:class:`~minmax.torch.MaxProblem`).

Each class here is the twin of the one of the same name in :mod:`minmax.problems`: :math:`g` is written in
torch and differentiated by autograd, while the set S, the input validation and the closed forms of
:math:`\varphi(\theta)` and :math:`S^*(\theta)` are those of the NumPy problem (kept as ``reference``), so
the two give the same values, gradients and maximizers up to round-off.

* :class:`Counterexample1` -- :math:`g = \theta\delta` on [-1, 1].
* :class:`Counterexample2` -- :math:`g = \delta\langle\theta,u\rangle + (1-\delta)\langle\theta,v\rangle
  + \delta(\delta-1)` on [0, 1].
* :class:`Figure1` -- :math:`g = \theta_1^2 + (\theta_2-1)^2 + 4\theta_2\delta + c\,\delta(\delta-1)` on
  [0, 1] (``curvature`` c; 0 is Figure 1 of [1]_).
* :class:`AppendixA` -- :math:`g = \sum_i\delta_i\langle\theta,u_i\rangle + \lambda\sum_i\delta_i\log
  \delta_i` on the simplex.
* :func:`from_numpy` -- the torch twin of a :mod:`minmax.problems` instance.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import numpy as np
import torch

from minmax import problems as _np
from minmax._outer import to_numpy
from minmax.torch.maxproblem import MaxProblem

__all__ = ["AppendixA", "Counterexample1", "Counterexample2", "Figure1", "from_numpy"]


class _Twin(MaxProblem):
    """A MaxProblem whose set, phi and maximizers come from a :class:`minmax.problems.SyntheticProblem`."""

    def __init__(self, reference: _np.SyntheticProblem, g, *, dtype, device):
        self.reference = reference
        super().__init__(g, reference.set, dtype=dtype, device=device, maximizers=self._maximizers,
                         phi=self._phi, theta_dim=reference.theta_dim, name=repr(reference))

    def _const(self, x) -> torch.Tensor:
        return torch.as_tensor(np.array(x), dtype=self.dtype, device=self.device)

    def _phi(self, theta) -> float:
        r"""The closed-form :math:`\varphi(\theta)` of the reference problem."""
        return self.reference.phi(to_numpy(theta))

    def _maximizers(self, theta):
        r"""The exact :math:`S^*(\theta)` of the reference problem (a :class:`~minmax.sets.CompactSet`)."""
        return self.reference.maximizers(to_numpy(theta))

    def __repr__(self):
        return f"minmax.torch.problems.{self.reference!r} [{self.dtype}, {self.device}]"


class Counterexample1(_Twin):
    r"""Counterexample 1 of [1]_: :math:`g(\theta, \delta) = \theta\delta` on :math:`S = [-1, 1]`.

    Parameters
    ----------
    dtype : torch.dtype, default torch.float64
    device : torch.device or str, optional

    See :class:`minmax.problems.Counterexample1` for :math:`\varphi` and :math:`S^*`.
    """

    def __init__(self, *, dtype=torch.float64, device=None):
        super().__init__(_np.Counterexample1(), lambda theta, delta: theta[0] * delta[0], dtype=dtype,
                         device=device)


class Counterexample2(_Twin):
    r"""Counterexample 2 of [1]_: :math:`g = \delta\langle\theta,u\rangle + (1-\delta)\langle\theta,v\rangle
    + \delta(\delta-1)` on [0, 1].

    Parameters
    ----------
    u, v : array_like of shape (n,)
        Unit vectors with :math:`\langle u, v\rangle < 0`.
    dtype : torch.dtype, default torch.float64
    device : torch.device or str, optional

    Raises
    ------
    ValueError
        As :class:`minmax.problems.Counterexample2`.
    """

    def __init__(self, u, v, *, dtype=torch.float64, device=None):
        ref = _np.Counterexample2(u, v)
        super().__init__(ref, self._g, dtype=dtype, device=device)
        self.u, self.v = self._const(ref.u), self._const(ref.v)

    @classmethod
    def random(cls, dim: int, rng: np.random.Generator, *, dtype=torch.float64, device=None):
        """As :meth:`minmax.problems.Counterexample2.random` (the same u, v for the same generator state)."""
        ref = _np.Counterexample2.random(dim, rng)
        return cls(ref.u, ref.v, dtype=dtype, device=device)

    def _g(self, theta, delta):
        d = delta[0]
        return d * (theta @ self.u) + (1.0 - d) * (theta @ self.v) + d * (d - 1.0)


class Figure1(_Twin):
    r"""The function of Figure 1 of [1]_, optionally with a term :math:`c\,\delta(\delta-1)`:
    :math:`g = \theta_1^2 + (\theta_2-1)^2 + 4\theta_2\delta + c\,\delta(\delta-1)` on [0, 1].

    Parameters
    ----------
    curvature : float, default 0.0
        c (0: the paper's function; 1: the variant whose maximizers are the endpoints only).
    dtype : torch.dtype, default torch.float64
    device : torch.device or str, optional

    See :class:`minmax.problems.Figure1` for :math:`\varphi` and :math:`S^*` in each case.
    """

    def __init__(self, curvature: float = 0.0, *, dtype=torch.float64, device=None):
        ref = _np.Figure1(curvature)
        c = ref.curvature

        def g(theta, delta):
            d = delta[0]
            return theta[0] ** 2 + (theta[1] - 1.0) ** 2 + 4.0 * theta[1] * d + c * d * (d - 1.0)

        super().__init__(ref, g, dtype=dtype, device=device)
        self.curvature = c


def _xlogx(delta: torch.Tensor) -> torch.Tensor:
    r""":math:`\delta\log\delta` (0 at 0) whose autograd derivative is :math:`\log\max(\delta, \mathrm{tiny})
    + 1`, the floored derivative of :class:`minmax.problems.AppendixA` (the true one is :math:`-\infty` on the
    boundary of the simplex).

    The value is ``xlogy(pos, pos)``, ``pos = max(delta, 0)``; the derivative is attached by the
    stop-gradient identity :math:`h = \mathrm{sg}(h) + (\delta - \mathrm{sg}(\delta))\,\mathrm{sg}(h')`, which
    leaves the value unchanged and has first derivative :math:`h'` (only first derivatives are used).
    """
    pos = delta.clamp(min=0.0)
    value = torch.special.xlogy(pos, pos)
    slope = torch.log(delta.clamp(min=torch.finfo(delta.dtype).tiny)) + 1.0
    return value.detach() + (delta - delta.detach()) * slope.detach()


class AppendixA(_Twin):
    r"""The Appendix A family: :math:`g = \sum_i\delta_i\langle\theta,u_i\rangle + \lambda\sum_i\delta_i\log
    \delta_i` on the simplex :math:`\Delta_k`.

    Parameters
    ----------
    vectors : array_like of shape (k, n)
        Unit rows :math:`u_i`, each with an obtuse partner.
    lam : float, default 1.0
        :math:`\lambda > 0`.
    dtype : torch.dtype, default torch.float64
    device : torch.device or str, optional

    Raises
    ------
    ValueError
        As :class:`minmax.problems.AppendixA`.

    Notes
    -----
    :math:`\partial g/\partial\delta_i = \langle\theta, u_i\rangle + \lambda(\log\delta_i + 1)` is
    :math:`-\infty` on the boundary; as in the NumPy problem it is evaluated with :math:`\delta_i` floored
    at the smallest positive number of the dtype (about :math:`-708\lambda` in float64, :math:`-87\lambda`
    in float32), which pushes the ascent to the boundary as the true derivative does.
    """

    def __init__(self, vectors, lam: float = 1.0, *, dtype=torch.float64, device=None):
        ref = _np.AppendixA(vectors, lam=lam)
        super().__init__(ref, self._g, dtype=dtype, device=device)
        self.vectors, self.lam = self._const(ref.vectors), ref.lam

    @classmethod
    def random(cls, pairs: int, dim: int, rng: np.random.Generator, lam: float = 1.0, *, dtype=torch.float64,
               device=None):
        """As :meth:`minmax.problems.AppendixA.random` (the same vectors for the same generator state)."""
        ref = _np.AppendixA.random(pairs, dim, rng, lam=lam)
        return cls(ref.vectors, ref.lam, dtype=dtype, device=device)

    def _g(self, theta, delta):
        return delta @ (self.vectors @ theta) + self.lam * _xlogx(delta).sum()


def from_numpy(problem: _np.SyntheticProblem, *, dtype=torch.float64, device=None) -> _Twin:
    """The torch twin of a :mod:`minmax.problems` problem (same parameters, ``dtype``, ``device``).

    Raises
    ------
    TypeError
        ``problem`` is not one of the paper's problems of :mod:`minmax.problems`.

    Examples
    --------
    >>> from minmax.problems import Figure1
    >>> from minmax.torch.problems import from_numpy
    >>> from_numpy(Figure1(curvature=1.0))
    minmax.torch.problems.Figure1(curvature=1.0) [torch.float64, cpu]
    """
    if isinstance(problem, _np.Counterexample1):
        return Counterexample1(dtype=dtype, device=device)
    if isinstance(problem, _np.Counterexample2):
        return Counterexample2(problem.u, problem.v, dtype=dtype, device=device)
    if isinstance(problem, _np.Figure1):
        return Figure1(problem.curvature, dtype=dtype, device=device)
    if isinstance(problem, _np.AppendixA):
        return AppendixA(problem.vectors, problem.lam, dtype=dtype, device=device)
    raise TypeError(f"problem must be one of minmax.problems' problems, got {type(problem).__name__}")
