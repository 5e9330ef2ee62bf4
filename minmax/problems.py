r"""The paper's synthetic max-functions, with :math:`\varphi` and :math:`S^*(\theta)` in closed form.

Each problem is a max-function object (:class:`minmax.maxfunc.MaxFunction`): ``value(theta, delta)``
:math:`= g(\theta, \delta)`, ``grad_theta``, ``grad_delta``, the compact set ``set`` :math:`= S`, plus
``phi(theta)`` :math:`= \max_{\delta \in S} g(\theta, \delta)` and ``maximizers(theta)``, which returns
:math:`S^*(\theta)` as a compact set (a :class:`~minmax.sets.FiniteSet`, or a :class:`~minmax.sets.Box`
when the maximizers form an interval). ``theta`` and ``delta`` are 1-D float vectors (a scalar is accepted
when the dimension is 1).

* :class:`Counterexample1` -- :math:`g = \theta\delta` on [-1, 1] (Section 3 of [1]_).
* :class:`Counterexample2` -- :math:`g = \delta\langle\theta,u\rangle + (1-\delta)\langle\theta,v\rangle
  + \delta(\delta-1)` on [0, 1], u, v unit with :math:`\langle u, v\rangle < 0`.
* :class:`Figure1` -- :math:`g = \delta(\theta_1^2 + (\theta_2+1)^2) + (1-\delta)(\theta_1^2 + (\theta_2-1)^2)
  + c\,\delta(\delta-1)` on [0, 1]; ``curvature=0`` is the paper's Figure 1, ``curvature=1`` adds
  :math:`-\delta(1-\delta)`.
* :class:`AppendixA` -- :math:`g = \sum_i \delta_i\langle\theta,u_i\rangle
  + \lambda\sum_i\delta_i\log\delta_i` on the simplex, every :math:`u_i` with an obtuse partner.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import xlogy

from .sets import Box, CompactSet, FiniteSet, Simplex

__all__ = ["AppendixA", "Counterexample1", "Counterexample2", "Figure1", "SyntheticProblem"]

# Tolerance on ||u|| - 1 when validating unit vectors (they are usually normalized in float64 by the caller).
_UNIT_TOL = 1e-10
# The entropy's derivative log(delta_i) + 1 is -inf on the boundary; it is evaluated at this floor instead.
_LOG_FLOOR = np.finfo(np.float64).tiny


def _ties(vectors: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Mask of the rows u_i attaining max_i <theta, u_i>, up to the rounding error of the inner products
    (4 n u sum_j |u_ij theta_j|), so that a tie such as theta = u + v in counterexample 2 is seen as one."""
    scores = vectors @ theta
    slack = 4.0 * theta.size * np.finfo(np.float64).eps * (np.abs(vectors) @ np.abs(theta))
    return scores >= scores.max() - slack


def _unit_vector(x, name: str) -> np.ndarray:
    arr = np.array(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    norm = float(np.linalg.norm(arr))
    if abs(norm - 1.0) > _UNIT_TOL:
        raise ValueError(f"{name} must have unit Euclidean norm, got norm {norm!r}")
    arr.setflags(write=False)
    return arr


class SyntheticProblem:
    """Shared input checks of the synthetic problems: ``theta`` of length ``theta_dim``, ``delta`` in ``set``.

    Subclasses define ``theta_dim``, ``set`` and the ``_value`` / ``_grad_theta`` / ``_grad_delta`` /
    ``_phi`` / ``_maximizers`` methods on validated float64 vectors.
    """

    theta_dim: int
    set: CompactSet
    #: Tolerance for accepting ``delta`` as a point of ``set`` (projected-gradient iterates are exactly in S).
    delta_atol: float = 1e-9

    def _theta(self, theta) -> np.ndarray:
        try:
            arr = np.asarray(theta, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError("theta must be a real number or a vector of real numbers") from exc
        if arr.ndim == 0 and self.theta_dim == 1:
            arr = arr.reshape(1)
        if arr.shape != (self.theta_dim,):
            raise ValueError(f"theta must have shape ({self.theta_dim},), got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("theta contains NaN or infinite entries")
        return arr

    def _delta(self, delta) -> np.ndarray:
        arr = np.asarray(delta, dtype=np.float64)
        if arr.ndim == 0 and self.set.dim == 1:
            arr = arr.reshape(1)
        if arr.shape != (self.set.dim,):
            raise ValueError(f"delta must have shape ({self.set.dim},), got shape {arr.shape}")
        if not self.set.contains(arr, atol=self.delta_atol):
            raise ValueError(f"delta = {arr.tolist()} lies outside S = {self.set!r}")
        return arr

    def value(self, theta, delta) -> float:
        r""":math:`g(\theta, \delta)`."""
        return float(self._value(self._theta(theta), self._delta(delta)))

    def grad_theta(self, theta, delta) -> np.ndarray:
        r""":math:`\nabla_\theta g(\theta, \delta)`, shape ``(theta_dim,)``."""
        return np.asarray(self._grad_theta(self._theta(theta), self._delta(delta)), dtype=np.float64)

    def grad_delta(self, theta, delta) -> np.ndarray:
        r""":math:`\nabla_\delta g(\theta, \delta)`, shape ``(set.dim,)``."""
        return np.asarray(self._grad_delta(self._theta(theta), self._delta(delta)), dtype=np.float64)

    def phi(self, theta) -> float:
        r"""The robust loss :math:`\varphi(\theta) = \max_{\delta \in S} g(\theta, \delta)` in closed form."""
        return float(self._phi(self._theta(theta)))

    def maximizers(self, theta) -> CompactSet:
        r"""The exact maximizer set :math:`S^*(\theta)` (ties decided up to the rounding of g's pieces)."""
        return self._maximizers(self._theta(theta))


class Counterexample1(SyntheticProblem):
    r"""Counterexample 1 of [1]_: :math:`g(\theta, \delta) = \theta\delta` on :math:`S = [-1, 1]`.

    Notes
    -----
    :math:`\varphi(\theta) = |\theta|` and :math:`S^*(\theta) = \{\operatorname{sign}\theta\}` for
    :math:`\theta \ne 0`, :math:`S^*(0) = [-1, 1]`. At :math:`\theta = 0` the maximizer :math:`\delta = 1`
    has :math:`-\nabla_\theta g(0, 1) = -1`, yet :math:`D_{-1}\varphi(0) = 1 > 0`: the negative gradient at a
    maximizer is an ascent direction (Madry et al.'s Corollary C.2 fails), and since both one-sided
    derivatives at 0 are positive, no descent direction exists (0 is the minimizer).

    Examples
    --------
    >>> from minmax.problems import Counterexample1
    >>> p = Counterexample1()
    >>> p.phi(-2.0), p.grad_theta(0.0, 1.0), p.maximizers(0.0)
    (2.0, array([1.]), Box(lower=[-1.0], upper=[1.0]))
    """

    theta_dim = 1

    def __init__(self):
        self.set = Box(-1.0, 1.0)

    def _value(self, theta, delta):
        return theta[0] * delta[0]

    def _grad_theta(self, theta, delta):
        return delta.copy()

    def _grad_delta(self, theta, delta):
        return theta.copy()

    def _phi(self, theta):
        return abs(theta[0])

    def _maximizers(self, theta):
        if theta[0] == 0.0:
            return Box(-1.0, 1.0)
        return FiniteSet([[np.sign(theta[0])]])

    def __repr__(self):
        return "Counterexample1()"


class Counterexample2(SyntheticProblem):
    r"""Counterexample 2 of [1]_: :math:`g = \delta\langle\theta,u\rangle + (1-\delta)\langle\theta,v\rangle
    + \delta(\delta-1)` on [0, 1].

    Parameters
    ----------
    u, v : array_like of shape (n,)
        Unit vectors with :math:`\langle u, v\rangle < 0` (an obtuse angle).

    Raises
    ------
    ValueError
        If u or v is not a finite unit vector, their lengths differ, or :math:`\langle u, v\rangle \ge 0`.

    Notes
    -----
    :math:`S = [0, 1]`. :math:`g` is strictly convex in :math:`\delta` (the :math:`\delta^2` term), so its
    maximum over [0, 1] is at an endpoint, where the quadratic term vanishes:
    :math:`g(\theta, 0) = \langle\theta, v\rangle`, :math:`g(\theta, 1) = \langle\theta, u\rangle`, hence
    :math:`\varphi(\theta) = \max(\langle\theta,u\rangle, \langle\theta,v\rangle)` and
    :math:`S^*(\theta) = \{1\}`, :math:`\{0\}` or :math:`\{0, 1\}` (the tie, e.g. :math:`\theta = 0`).
    At :math:`\theta = 0`: :math:`\nabla_\theta g(0, 1) = u`, :math:`\nabla_\theta g(0, 0) = v` and, by
    Danskin's formula, :math:`D_{-u}\varphi(0) = \max(-1, -\langle u,v\rangle) = -\langle u,v\rangle > 0`
    (likewise for :math:`-v`): the negative gradient at either maximizer is an ascent direction, while
    :math:`\gamma^* = -(u+v)/\|u+v\|` has :math:`D_{\gamma^*}\varphi(0) = -\|u+v\|/2 < 0` (Theorem 2;
    when :math:`v = -u`, the origin is in the hull and 0 is a minimizer).

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.problems import Counterexample2
    >>> p = Counterexample2([1.0, 0.0], [-0.6, 0.8])
    >>> p.phi([1.0, 1.0]), p.maximizers(np.zeros(2))
    (1.0, FiniteSet([[0.0], [1.0]]))
    """

    def __init__(self, u, v):
        self.u = _unit_vector(u, "u")
        self.v = _unit_vector(v, "v")
        if self.u.shape != self.v.shape:
            raise ValueError(f"u and v must have the same length, got {self.u.size} and {self.v.size}")
        cos = float(self.u @ self.v)
        if not cos < 0:
            raise ValueError(f"u and v must form an obtuse angle (<u, v> < 0), got <u, v> = {cos!r}")
        self.theta_dim = self.u.size
        self.set = Box(0.0, 1.0)

    @classmethod
    def random(cls, dim: int, rng: np.random.Generator) -> Counterexample2:
        """Random obtuse unit vectors u, v in dimension ``dim >= 2``: u uniform on the sphere, v uniform on
        the part of the sphere with :math:`\\langle u, v\\rangle \\le -0.05` (rejection sampling)."""
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 2:
            raise ValueError(f"dim must be an int >= 2, got {dim!r}")
        u = rng.standard_normal(dim)
        u /= np.linalg.norm(u)
        while True:
            v = rng.standard_normal(dim)
            v /= np.linalg.norm(v)
            if u @ v <= -0.05:
                return cls(u, v)

    def _value(self, theta, delta):
        d = delta[0]
        return d * (theta @ self.u) + (1.0 - d) * (theta @ self.v) + d * (d - 1.0)

    def _grad_theta(self, theta, delta):
        return delta[0] * self.u + (1.0 - delta[0]) * self.v

    def _grad_delta(self, theta, delta):
        return np.array([theta @ self.u - theta @ self.v + 2.0 * delta[0] - 1.0])

    def _phi(self, theta):
        return max(theta @ self.u, theta @ self.v)

    def _maximizers(self, theta):
        top = _ties(np.stack([self.v, self.u]), theta)  # endpoint delta = 0 has gradient v, delta = 1 has u
        return FiniteSet(np.array([[0.0], [1.0]])[top])

    def __repr__(self):
        return f"Counterexample2(u={self.u.tolist()}, v={self.v.tolist()})"


class Figure1(SyntheticProblem):
    r"""The function of Figure 1 of [1]_, optionally with a term :math:`c\,\delta(\delta - 1)`.

    .. math::

        g(\theta, \delta) = \delta\bigl(\theta_1^2 + (\theta_2+1)^2\bigr)
            + (1-\delta)\bigl(\theta_1^2 + (\theta_2-1)^2\bigr) + c\,\delta(\delta-1)
          = \theta_1^2 + (\theta_2-1)^2 + 4\theta_2\delta + c\,\delta(\delta-1),
        \qquad \delta \in [0, 1].

    Parameters
    ----------
    curvature : float, default 0.0
        :math:`c`. ``0`` is the paper's function; ``1`` adds :math:`-\delta(1-\delta)`.

    Notes
    -----
    **c = 0 (the paper's Figure 1).** :math:`g` is *linear* in :math:`\delta` with slope
    :math:`4\theta_2`, so :math:`S^*(\theta) = \{1\}` for :math:`\theta_2 > 0`, :math:`\{0\}` for
    :math:`\theta_2 < 0`, and for :math:`\theta_2 = 0` :math:`g` does not depend on :math:`\delta` at all:
    :math:`S^*` is the *whole interval* [0, 1], not only its two endpoints. In every case
    :math:`\varphi(\theta) = \theta_1^2 + (1 + |\theta_2|)^2`, minimized at :math:`\theta = 0`
    (:math:`\varphi = 1`) and not differentiable on the line :math:`\theta_2 = 0`, where
    :math:`\nabla_\theta g = (2\theta_1, 4\delta - 2)`, :math:`\delta \in [0, 1]`. Near that line the
    maximizer jumps between the endpoints, so the gradient at a single maximizer flips the sign of its
    :math:`\theta_2` component and the single-adversary method zig-zags across the kink. Also, for small
    :math:`|\theta_2|` the ascent on :math:`\delta` is slow (slope :math:`4\theta_2`), so a few ascent steps
    from random starts return points spread over [0, 1]: approximate maximizers (within :math:`4|\theta_2|`
    of :math:`\varphi`), whose gradients :math:`(2\theta_1, 2\theta_2 + 4\delta - 2)` straddle the kink;
    the Danskin direction then has a vanishing :math:`\theta_2` component.

    **c > 0 (c = 1: the** :math:`-\delta(1-\delta)` **variant).** :math:`g` is strictly *convex* in
    :math:`\delta` (not concave), so its maxima over [0, 1] are endpoints only. The term vanishes at both
    endpoints, hence :math:`\varphi` is the same function as for c = 0, and :math:`S^*(\theta) = \{1\}`,
    :math:`\{0\}`, or exactly :math:`\{0, 1\}` when :math:`\theta_2 = 0` (no interior maximizer). Projected
    gradient ascent now runs to an endpoint from every start other than the repelling point
    :math:`\delta = 1/2 - 2\theta_2/c`, so multi-start ascent finds *both* endpoints near the kink, as in
    counterexample 2.

    **c < 0.** :math:`g` is strictly concave in :math:`\delta`: the unique maximizer is
    :math:`\mathrm{clip}(1/2 - 2\theta_2/c, 0, 1)` and :math:`\varphi` is differentiable (Danskin's
    theorem with a singleton :math:`S^*`).

    Examples
    --------
    >>> from minmax.problems import Figure1
    >>> p = Figure1()
    >>> p.phi([1.0, -0.5]), p.maximizers([1.0, 0.0])
    (3.25, Box(lower=[0.0], upper=[1.0]))
    >>> Figure1(curvature=1.0).maximizers([1.0, 0.0])
    FiniteSet([[0.0], [1.0]])
    """

    theta_dim = 2

    def __init__(self, curvature: float = 0.0):
        if isinstance(curvature, bool) or not isinstance(curvature, numbers.Real):
            raise TypeError(f"curvature must be a real number, got {type(curvature).__name__}")
        if not np.isfinite(curvature):
            raise ValueError(f"curvature must be finite, got {curvature}")
        self.curvature = float(curvature)
        self.set = Box(0.0, 1.0)

    def _value(self, theta, delta):
        t1, t2 = theta
        d = delta[0]
        return t1**2 + (t2 - 1.0) ** 2 + 4.0 * t2 * d + self.curvature * d * (d - 1.0)

    def _grad_theta(self, theta, delta):
        return np.array([2.0 * theta[0], 2.0 * theta[1] - 2.0 + 4.0 * delta[0]])

    def _grad_delta(self, theta, delta):
        return np.array([4.0 * theta[1] + self.curvature * (2.0 * delta[0] - 1.0)])

    def _concave_argmax(self, theta):
        return float(np.clip(0.5 - 2.0 * theta[1] / self.curvature, 0.0, 1.0))

    def _phi(self, theta):
        if self.curvature < 0:
            return self._value(theta, [self._concave_argmax(theta)])
        return theta[0] ** 2 + (1.0 + abs(theta[1])) ** 2

    def _maximizers(self, theta):
        if self.curvature < 0:
            return FiniteSet([[self._concave_argmax(theta)]])
        if theta[1] > 0:
            return FiniteSet([[1.0]])
        if theta[1] < 0:
            return FiniteSet([[0.0]])
        return Box(0.0, 1.0) if self.curvature == 0 else FiniteSet([[0.0], [1.0]])

    def __repr__(self):
        return f"Figure1(curvature={self.curvature})"


class AppendixA(SyntheticProblem):
    r"""The Appendix A family: obtuse pairs on the simplex with a (negative) entropy term.

    .. math::

        g(\theta, \delta) = \sum_{i=1}^k \delta_i \langle \theta, u_i\rangle
            + \lambda \sum_{i=1}^k \delta_i \log \delta_i,
        \qquad \delta \in \Delta_k,\ \theta \in \mathbb{R}^n,

    with unit vectors :math:`u_i` each of which has an obtuse partner (some :math:`j` with
    :math:`\langle u_i, u_j\rangle < 0`), and :math:`\lambda > 0`. It generalizes counterexample 2 from two
    to k maximizers (with :math:`k = 2` the term :math:`\delta\log\delta + (1-\delta)\log(1-\delta)`
    plays the role of :math:`\delta(\delta - 1)`).

    Parameters
    ----------
    vectors : array_like of shape (k, n)
        The rows :math:`u_i`, unit norm, ``k >= 2``.
    lam : float, default 1.0
        :math:`\lambda > 0`.

    Raises
    ------
    ValueError
        Rows not unit, fewer than two rows, a row without an obtuse partner, ``lam`` not positive.

    Notes
    -----
    The entropy enters with the sign that makes :math:`g` strictly *convex* in :math:`\delta` (the negative
    entropy :math:`-H(\delta) = \sum_i \delta_i\log\delta_i`, zero at the vertices). A strictly convex
    function attains its maximum over a polytope only at vertices, where the term vanishes, so

    .. math::

        \varphi(\theta) = \max_i \langle\theta, u_i\rangle, \qquad
        S^*(\theta) = \{e_i : \langle\theta, u_i\rangle = \varphi(\theta)\},

    and :math:`\nabla_\theta g(\theta, e_i) = u_i`. At :math:`\theta = 0` every vertex is a maximizer and
    each :math:`-u_i` is an ascent direction: :math:`D_{-u_i}\varphi(0) = \max_j -\langle u_i, u_j\rangle
    > 0` thanks to the obtuse partner; a descent direction exists iff the origin is not in the hull of the
    :math:`u_i`, and it is :math:`\gamma^* = -U^\top\alpha^*/\|U^\top\alpha^*\|` (Theorem 2). (With the
    opposite sign :math:`g` is strictly concave, the maximizer unique -- a softmax -- and :math:`\varphi`
    smooth: no counterexample.) The partial derivative :math:`\lambda(\log\delta_i + 1)` is
    :math:`-\infty` on the boundary of the simplex; ``grad_delta`` evaluates it with :math:`\delta_i`
    floored at the smallest positive double (about :math:`-708\lambda`), which pushes ascent to the
    boundary, as the true derivative does.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.problems import AppendixA
    >>> p = AppendixA([[0.6, 0.8], [0.6, -0.8]])
    >>> p.phi([1.0, 0.0]), p.maximizers([1.0, 0.0])
    (0.6, FiniteSet([[1.0, 0.0], [0.0, 1.0]]))
    """

    def __init__(self, vectors, lam: float = 1.0):
        U = np.array(vectors, dtype=np.float64)
        if U.ndim != 2 or U.shape[0] < 2 or U.shape[1] < 1:
            raise ValueError(f"vectors must have shape (k, n) with k >= 2 and n >= 1, got shape {U.shape}")
        if not np.all(np.isfinite(U)):
            raise ValueError("vectors contain NaN or infinite entries")
        norms = np.linalg.norm(U, axis=1)
        if np.any(np.abs(norms - 1.0) > _UNIT_TOL):
            i = int(np.argmax(np.abs(norms - 1.0)))
            raise ValueError(f"every vector must have unit norm; row {i} has norm {norms[i]!r}")
        C = U @ U.T
        lonely = np.flatnonzero(~np.any(C < 0, axis=1))
        if lonely.size:
            raise ValueError(
                f"every vector needs an obtuse partner (<u_i, u_j> < 0 for some j); rows {lonely.tolist()} "
                "have none"
            )
        if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not (np.isfinite(lam) and lam > 0):
            raise ValueError(f"lam must be a finite positive number, got {lam!r}")
        U.setflags(write=False)
        self.vectors = U
        self.lam = float(lam)
        self.theta_dim = U.shape[1]
        self.set = Simplex(U.shape[0])

    @classmethod
    def random(cls, pairs: int, dim: int, rng: np.random.Generator, lam: float = 1.0) -> AppendixA:
        r"""``2 * pairs`` vectors in obtuse pairs :math:`a e \pm b w_j` (:math:`w_j \perp e` random unit,
        :math:`0 < a < b`, :math:`a^2 + b^2 = 1`) around a random unit axis :math:`e`.

        Every vector has :math:`\langle u_i, e\rangle = a > 0`, so the origin is outside their hull and
        :math:`\gamma^*` exists at :math:`\theta = 0`; each pair has
        :math:`\langle u, u'\rangle = a^2 - b^2 < 0`.
        """
        if isinstance(pairs, bool) or not isinstance(pairs, numbers.Integral) or pairs < 1:
            raise ValueError(f"pairs must be an int >= 1, got {pairs!r}")
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 2:
            raise ValueError(f"dim must be an int >= 2, got {dim!r}")
        e = rng.standard_normal(dim)
        e /= np.linalg.norm(e)
        rows = []
        for _ in range(pairs):
            w = rng.standard_normal(dim)
            w -= (w @ e) * e
            w /= np.linalg.norm(w)
            a = rng.uniform(0.1, 0.6)
            b = np.sqrt(1.0 - a * a)
            rows += [a * e + b * w, a * e - b * w]
        return cls(np.array(rows), lam=lam)

    def _value(self, theta, delta):
        pos = np.maximum(delta, 0.0)  # delta may sit within delta_atol outside the simplex
        return delta @ (self.vectors @ theta) + self.lam * float(np.sum(xlogy(pos, pos)))

    def _grad_theta(self, theta, delta):
        return self.vectors.T @ delta

    def _grad_delta(self, theta, delta):
        return self.vectors @ theta + self.lam * (np.log(np.maximum(delta, _LOG_FLOOR)) + 1.0)

    def _phi(self, theta):
        return float(np.max(self.vectors @ theta))

    def _maximizers(self, theta):
        return FiniteSet(np.eye(self.set.dim)[_ties(self.vectors, theta)])

    def __repr__(self):
        return f"AppendixA(vectors={self.vectors.tolist()}, lam={self.lam})"
