r"""Numerical one- and two-sided directional derivatives: the limits of Definition 1 in [1]_, from values.

Danskin's formula (:mod:`minmax.danskin`) gives :math:`D_\gamma\varphi(\theta)` from gradients at the
maximizers. The estimators here need only a callable :math:`\varphi`: they evaluate the difference quotients

.. math::

    q(t) = \frac{\varphi(\theta + t\gamma) - \varphi(\theta)}{t}, \qquad t = t_0, t_0 r, t_0 r^2, \dots

and extrapolate them to :math:`t \to 0^+`, with an error estimate, so that any claimed derivative (Danskin's
formula over a subset of maximizers, the slope of a steepest descent direction, a training step's
direction) can be checked independently. :func:`two_sided_derivative` also returns both one-sided limits,
whose sum is positive at a kink (Lemma 1).

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DerivativeEstimate", "one_sided_derivative", "two_sided_derivative"]

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
