r"""Theorem 3's radius :math:`\varepsilon_k` in the outer loops of :mod:`minmax.maxfunc` and
:mod:`minmax.torch.maxfunc` (private): a constant, a callable of :math:`\theta_k`, or the exact covering
radius of the problem's maximizers :math:`S^*(\theta_k)` by the maximizers found.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import array_api_compat
import numpy as np

from .sets import Box, CompactSet, FiniteSet

__all__ = ["exact_radius", "radius_rule"]


def _to_numpy(x) -> np.ndarray:
    """A host float64 NumPy copy of a NumPy array or a torch tensor (any device), without importing torch."""
    if array_api_compat.is_torch_array(x):
        x = x.detach().to("cpu")
    return np.asarray(x, dtype=np.float64)


def _interval_radius(lower: float, upper: float, points: np.ndarray) -> float:
    r""":math:`\max_{x \in [l, u]} \min_i |x - d_i|`, exactly: the distance is piecewise linear in x, so its
    maximum over the interval is at an end or at a midpoint of two consecutive points."""
    pts = np.sort(points)
    candidates = np.concatenate([[lower, upper], np.clip((pts[:-1] + pts[1:]) / 2.0, lower, upper)])
    return float(np.max(np.min(np.abs(candidates[:, None] - pts[None, :]), axis=1)))


def exact_radius(s_star, deltas) -> float:
    r"""Covering radius :math:`\sup_{\delta \in S^*} \min_i \|\delta - \delta_i\|_2` of the exact maximizers.

    ``s_star`` is what ``problem.maximizers(theta)`` returned: a :class:`~minmax.sets.FiniteSet`, a
    :class:`~minmax.sets.Box` that is a point or an interval (dimension 1), or an array of points ``(q, p)``;
    ``deltas`` (k, p) are the maximizers found (any backend).
    """
    from . import covering_radius

    found = _to_numpy(deltas)
    if isinstance(s_star, FiniteSet):
        return covering_radius(s_star.points, found)
    if isinstance(s_star, Box):
        if np.array_equal(s_star.lower, s_star.upper):
            return covering_radius(s_star.lower[None, :], found)
        if s_star.dim == 1:
            return _interval_radius(float(s_star.lower[0]), float(s_star.upper[0]), found[:, 0])
        raise ValueError(
            f"radius='exact' needs S*(theta) finite or an interval; problem.maximizers returned a "
            f"{s_star.dim}-dimensional box {s_star!r}, whose covering radius is not computed: pass radius "
            "as a float or a callable of theta"
        )
    if isinstance(s_star, CompactSet):
        raise ValueError(
            f"radius='exact' needs S*(theta) as a FiniteSet, an interval Box or an array of points; "
            f"problem.maximizers returned {type(s_star).__name__}"
        )
    if array_api_compat.is_array_api_obj(s_star) or isinstance(s_star, (list, tuple)):
        return covering_radius(_to_numpy(s_star), found)
    raise TypeError(
        "problem.maximizers(theta) must return a CompactSet or an array of points, got "
        f"{type(s_star).__name__}"
    )


def _nonnegative(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be finite and non-negative, got {value!r}")
    return float(value)


def radius_rule(problem, lipschitz, radius) -> Callable | None:
    r"""``(theta_k, maximizers) -> epsilon_k`` for Theorem 3, or ``None`` when nothing is to be certified.

    ``radius`` is a float (the same :math:`\varepsilon` at every iterate), a callable of
    :math:`\theta_k` returning :math:`\varepsilon_k`, or ``"exact"``: the covering radius of
    ``problem.maximizers(theta_k)`` by the maximizers found (:func:`exact_radius`).
    """
    if (lipschitz is None) != (radius is None):
        raise ValueError("give both lipschitz and radius (Theorem 3 needs L and epsilon), or neither")
    if lipschitz is None:
        return None
    _nonnegative(lipschitz, "lipschitz")
    if isinstance(radius, str):
        if radius != "exact":
            raise ValueError(f"radius must be a float, a callable of theta or 'exact', got {radius!r}")
        if not callable(getattr(problem, "maximizers", None)):
            raise ValueError(
                "radius='exact' needs the exact maximizers: the problem has no maximizers(theta); pass "
                "radius as a float or a callable of theta"
            )
        return lambda theta, maxs: exact_radius(problem.maximizers(theta), maxs.deltas)
    if callable(radius):
        return lambda theta, maxs: _nonnegative(radius(theta), "radius(theta)")
    eps = _nonnegative(radius, "radius")
    return lambda theta, maxs: eps
