r"""Compact sets :math:`S` for the inner maximization :math:`\max_{\delta \in S} g(\theta, \delta)`.

Each set knows its dimension, its Euclidean projection :math:`P_S`, uniform sampling, membership up to a
tolerance and its diameter. Points are NumPy float64 vectors of shape ``(dim,)``; :meth:`CompactSet.project`,
:meth:`CompactSet.contains` and :meth:`CompactSet.sample` also work on batches of shape ``(..., dim)``
(one point per row), which is how the multi-start inner maximizer of :mod:`minmax.maxfunc` uses them.

* :class:`Box` -- :math:`\{\delta : l \le \delta \le u\}`; an interval is a 1-D box, ``Box(-1, 1)``.
* :class:`LinfBall` -- :math:`\{\delta : \|\delta - c\|_\infty \le r\}` (a box with equal sides).
* :class:`L2Ball` -- :math:`\{\delta : \|\delta - c\|_2 \le r\}`; sampled uniformly *in* the ball.
* :class:`Simplex` -- :math:`\Delta_n = \{\delta \ge 0, \sum_i \delta_i = 1\}`.
* :class:`FiniteSet` -- finitely many points (compact, not convex): how :mod:`minmax.problems` describes a
  finite set of maximizers :math:`S^*(\theta)`.

Examples
--------
>>> import numpy as np
>>> from minmax.sets import Box, L2Ball
>>> Box(-1, 1).project(np.array([3.0]))
array([1.])
>>> ball = L2Ball(np.zeros(2), 1.0)
>>> ball.project(np.array([3.0, 4.0]))
array([0.6, 0.8])
>>> bool(ball.contains(ball.sample(5, np.random.default_rng(0))).all())
True
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Box", "CompactSet", "FiniteSet", "L2Ball", "LinfBall", "Simplex"]

_DEFAULT_ATOL = 1e-12


def _finite_vector(x, name: str) -> np.ndarray:
    """A finite float64 vector (a scalar becomes a vector of length 1)."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number or a vector of real numbers") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a scalar or a non-empty 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return arr


def _positive(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be finite and positive, got {x}")
    return x


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng), got {type(rng)}")
    return rng


class CompactSet(ABC):
    r"""A non-empty compact set :math:`S \subset \mathbb{R}^{d}` (convex, except :class:`FiniteSet`).

    Subclasses implement :meth:`_project` and :meth:`_sample` on validated ``(k, dim)`` arrays; the
    public methods here validate shapes and finiteness once.
    """

    #: The ambient dimension.
    dim: int

    @property
    @abstractmethod
    def diameter(self) -> float:
        r""":math:`\max_{x, y \in S} \|x - y\|_2`."""

    @abstractmethod
    def _project(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def _points(self, x, name: str = "x") -> np.ndarray:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of real numbers") from exc
        if arr.ndim == 0 and self.dim == 1:
            arr = arr.reshape(1)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(
                f"{name} must have shape ({self.dim},) or (..., {self.dim}) for this {type(self).__name__}, "
                f"got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite entries")
        return arr

    def project(self, x) -> np.ndarray:
        r"""Euclidean projection :math:`P_S(x) = \operatorname{argmin}_{y \in S} \|y - x\|_2`.

        Parameters
        ----------
        x : array_like of shape (dim,) or (..., dim)
            One point, or a batch of points (one per row).

        Returns
        -------
        ndarray of the same shape, float64

        Raises
        ------
        ValueError
            If the last axis is not ``dim`` long or ``x`` has a NaN or infinite entry.
        """
        arr = self._points(x)
        flat = arr.reshape(-1, self.dim)
        return self._project(flat).reshape(arr.shape)

    def contains(self, x, atol: float = _DEFAULT_ATOL):
        """Whether ``x`` lies in S up to ``atol`` (Euclidean distance to S at most ``atol``).

        Returns a bool for one point and a bool array of shape ``x.shape[:-1]`` for a batch.
        """
        if isinstance(atol, bool) or not isinstance(atol, numbers.Real) or not atol >= 0:
            raise ValueError(f"atol must be a non-negative real number, got {atol!r}")
        arr = self._points(x)
        flat = arr.reshape(-1, self.dim)
        dist = np.linalg.norm(flat - self._project(flat), axis=1)
        inside = (dist <= atol).reshape(arr.shape[:-1])
        return bool(inside) if inside.ndim == 0 else inside

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points drawn independently and uniformly (Lebesgue measure of S; for the simplex, of its
        affine hull), as an array of shape ``(n, dim)``.

        Raises
        ------
        TypeError
            If ``n`` is not an int or ``rng`` is not a :class:`numpy.random.Generator`.
        ValueError
            If ``n`` is negative.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        return self._sample(int(n), _check_rng(rng))


class Box(CompactSet):
    r"""The box :math:`\{\delta : l \le \delta \le u\}` (an interval when ``dim == 1``).

    Parameters
    ----------
    lower, upper : float or array_like of shape (dim,)
        Corners; a scalar paired with a vector is broadcast. ``lower == upper`` in a coordinate is allowed
        (a degenerate, still compact, box).

    Raises
    ------
    ValueError
        If a bound is non-finite, the shapes differ, or ``lower > upper`` in some coordinate.

    Notes
    -----
    :math:`P_S(x) = \min(\max(x, l), u)` coordinate-wise; uniform samples are :math:`l + (u - l) U`,
    :math:`U \sim \mathcal{U}[0, 1]^{\mathrm{dim}}`; the diameter is :math:`\|u - l\|_2`.
    """

    def __init__(self, lower, upper):
        lo = _finite_vector(lower, "lower")
        hi = _finite_vector(upper, "upper")
        if lo.size == 1 and hi.size > 1:
            lo = np.full_like(hi, lo[0])
        if hi.size == 1 and lo.size > 1:
            hi = np.full_like(lo, hi[0])
        if lo.shape != hi.shape:
            raise ValueError(f"lower and upper must have the same shape, got {lo.shape} and {hi.shape}")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"lower must not exceed upper; coordinate {i} has {lo[i]} > {hi[i]}")
        self.lower, self.upper = lo, hi
        self.lower.setflags(write=False)
        self.upper.setflags(write=False)
        self.dim = lo.size

    @property
    def diameter(self) -> float:
        return float(np.linalg.norm(self.upper - self.lower))

    def _project(self, x):
        return np.clip(x, self.lower, self.upper)

    def _sample(self, n, rng):
        return self.lower + (self.upper - self.lower) * rng.random((n, self.dim))

    def __repr__(self):
        return f"{type(self).__name__}(lower={self.lower.tolist()}, upper={self.upper.tolist()})"


class LinfBall(Box):
    r"""The :math:`\ell_\infty` ball :math:`\{\delta : \|\delta - c\|_\infty \le r\}`, a box of side ``2r``.

    Parameters
    ----------
    center : float or array_like of shape (dim,)
    radius : float
        Positive.

    Raises
    ------
    ValueError
        If ``radius`` is not positive and finite, or ``center`` is not finite.
    """

    def __init__(self, center, radius):
        self.center = _finite_vector(center, "center")
        self.radius = _positive(radius, "radius")
        super().__init__(self.center - self.radius, self.center + self.radius)
        self.center.setflags(write=False)

    def __repr__(self):
        return f"LinfBall(center={self.center.tolist()}, radius={self.radius})"


class L2Ball(CompactSet):
    r"""The Euclidean ball :math:`\{\delta : \|\delta - c\|_2 \le r\}`.

    Parameters
    ----------
    center : float or array_like of shape (dim,)
    radius : float
        Positive.

    Raises
    ------
    ValueError
        If ``radius`` is not positive and finite, or ``center`` is not finite.

    Notes
    -----
    :math:`P_S(x) = c + (x - c)\min(1, r / \|x - c\|)`. Uniform samples *in* the ball (not on the
    sphere): :math:`c + r\,U^{1/\mathrm{dim}} Z/\|Z\|` with :math:`Z` standard normal and :math:`U` uniform
    on [0, 1], since the volume within radius :math:`\rho` grows as :math:`\rho^{\mathrm{dim}}`.
    """

    def __init__(self, center, radius):
        self.center = _finite_vector(center, "center")
        self.center.setflags(write=False)
        self.radius = _positive(radius, "radius")
        self.dim = self.center.size

    @property
    def diameter(self) -> float:
        return 2.0 * self.radius

    def _project(self, x):
        d = x - self.center
        norm = np.linalg.norm(d, axis=1, keepdims=True)
        # Points inside keep scale 1 exactly (projection is then the identity, bit for bit).
        scale = np.where(norm > self.radius, self.radius / np.maximum(norm, np.finfo(np.float64).tiny), 1.0)
        return self.center + d * scale

    def _sample(self, n, rng):
        z = rng.standard_normal((n, self.dim))
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        # A zero normal draw has probability 0; guard the division anyway.
        direction = z / np.where(norm > 0, norm, 1.0)
        rho = self.radius * rng.random((n, 1)) ** (1.0 / self.dim)
        return self.center + rho * direction

    def __repr__(self):
        return f"L2Ball(center={self.center.tolist()}, radius={self.radius})"


class Simplex(CompactSet):
    r"""The probability simplex :math:`\Delta_n = \{\delta \ge 0, \sum_i \delta_i = 1\} \subset \mathbb{R}^n`.

    Parameters
    ----------
    dim : int
        :math:`n \ge 1`, the number of coordinates.

    Notes
    -----
    The projection is the sort-based algorithm of Held, Wolfe and Crowder (1974) / Duchi et al. (2008):
    :math:`P(x) = \max(x - \tau, 0)` with the threshold :math:`\tau` found from the sorted entries.
    Uniform sampling on the simplex is the flat Dirichlet distribution :math:`\mathrm{Dir}(1, \dots, 1)`.
    The diameter is :math:`\sqrt{2}` (distance between two vertices) for :math:`n \ge 2`, and 0 for
    :math:`n = 1`.
    """

    def __init__(self, dim: int):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.dim = int(dim)

    @property
    def diameter(self) -> float:
        return float(np.sqrt(2.0)) if self.dim > 1 else 0.0

    def _project(self, x):
        # Shift by the row maximum first so that huge entries (1e9) do not swamp the threshold.
        shift = x.max(axis=1, keepdims=True)
        y = x - shift
        u = -np.sort(-y, axis=1)
        css = np.cumsum(u, axis=1) - 1.0
        k = np.arange(1, self.dim + 1)
        cond = u - css / k > 0
        rho = self.dim - np.argmax(cond[:, ::-1], axis=1)  # last index where cond holds (1-based)
        tau = css[np.arange(x.shape[0]), rho - 1] / rho
        return np.maximum(y - tau[:, None], 0.0)

    def _sample(self, n, rng):
        return rng.dirichlet(np.ones(self.dim), size=n)

    def __repr__(self):
        return f"Simplex(dim={self.dim})"


class FiniteSet(CompactSet):
    r"""A finite set of points :math:`\{p_1, \dots, p_k\}` (compact, not convex when :math:`k > 1`).

    Parameters
    ----------
    points : array_like of shape (k, dim)
        At least one finite point; duplicates are kept as given.

    Notes
    -----
    The projection maps to the nearest point (the first one on ties), :meth:`sample` picks points
    uniformly with replacement.
    """

    def __init__(self, points):
        try:
            pts = np.array(points, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError("points must be an array of real numbers") from exc
        if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] == 0:
            raise ValueError(f"points must have shape (k, dim) with k, dim >= 1, got shape {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("points contain NaN or infinite entries")
        pts.setflags(write=False)
        self.points = pts
        self.dim = pts.shape[1]

    def __len__(self) -> int:
        return self.points.shape[0]

    @property
    def diameter(self) -> float:
        diff = self.points[:, None, :] - self.points[None, :, :]
        return float(np.max(np.linalg.norm(diff, axis=2)))

    def _project(self, x):
        dist = np.linalg.norm(x[:, None, :] - self.points[None, :, :], axis=2)
        return self.points[np.argmin(dist, axis=1)]

    def _sample(self, n, rng):
        return self.points[rng.integers(0, len(self), size=n)]

    def __repr__(self):
        return f"FiniteSet({self.points.tolist()})"
