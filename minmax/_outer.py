r"""The parts of the max-function loops that do not depend on the array backend (private).

:mod:`minmax.maxfunc` (NumPy) and :mod:`minmax.torch.maxfunc` (PyTorch, autograd) share everything here:
argument checks, the step-size schedules, the :class:`Maximizers` and :class:`History` records, the greedy
merging of the inner maximizer's runs, and the outer loop :func:`run` (with the Theorem 3 radius rules of
:mod:`minmax._radius`) of Algorithm 1 (DDi) and of the single-adversary baseline. A backend supplies
only what touches its arrays (:class:`Backend`): validating :math:`\theta`, the multi-start inner
maximization and the gradients :math:`\nabla_\theta g(\theta, \delta_i)` at the maximizers found. Arrays
are handled through the array API (``array_api_compat``), so this module never imports torch.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from ._radius import radius_rule

# ----------------------------------------------------------------------------------------------------------
# argument checks


def positive(x, name: str) -> float:
    """``x`` as a float, which must be a finite real number > 0."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be finite and positive, got {x!r}")
    return float(x)


def count(x, name: str, minimum: int) -> int:
    """``x`` as an int, which must be at least ``minimum``."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {x}")
    return int(x)


def tolerances(merge_tol, value_tol) -> tuple[float, float | None]:
    """The merging tolerances of :func:`maximize`: non-negative reals (``value_tol`` may be ``None``)."""
    for name, tol in (("merge_tol", merge_tol), ("value_tol", 0.0 if value_tol is None else value_tol)):
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"{name} must be a non-negative real number, got {tol!r}")
    return float(merge_tol), (None if value_tol is None else float(value_tol))


def starts_count(m, init_rows: int | None) -> int:
    """The number of starts: ``m`` (default 10), or the rows of ``init``, which must agree with ``m``."""
    if m is not None:
        m = count(m, "m", 1)
    if init_rows is None:
        return 10 if m is None else m
    if m is not None and m != init_rows:
        raise ValueError(f"init must have shape (m, p) with m = {m} rows, got {init_rows} rows")
    return count(init_rows, "the number of rows of init (m)", 1)


def to_numpy(x) -> np.ndarray:
    """A host float64 NumPy copy of a NumPy array or a torch tensor (any device), without importing torch."""
    if array_api_compat.is_torch_array(x):
        x = x.detach().to("cpu")
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
# step-size schedules


@dataclass(frozen=True)
class Constant:
    r""":math:`\eta_k = c`."""

    c: float

    def __call__(self, k: int) -> float:
        return self.c


@dataclass(frozen=True)
class InverseSqrt:
    r""":math:`\eta_k = c / \sqrt{k}`, k = 1, 2, ..."""

    c: float

    def __call__(self, k: int) -> float:
        return self.c / math.sqrt(k)


def constant(c: float) -> Constant:
    """The constant schedule :math:`\\eta_k = c` (``c > 0``)."""
    return Constant(positive(c, "c"))


def inverse_sqrt(c: float) -> InverseSqrt:
    """The schedule :math:`\\eta_k = c/\\sqrt{k}` (``c > 0``); Figure 1 of [1]_ uses ``c = 0.5``."""
    return InverseSqrt(positive(c, "c"))


def schedule(step_size, name: str):
    """A schedule ``k -> eta_k``: a callable as given, or a positive constant."""
    if callable(step_size):
        return step_size
    return constant(positive(step_size, name))


# ----------------------------------------------------------------------------------------------------------
# the inner maximizer's result and its merging rule


@dataclass(frozen=True)
class Maximizers:
    r"""Result of ``maximize``: distinct approximate maximizers, best first.

    The arrays are of the problem's backend: NumPy float64 for :func:`minmax.maxfunc.maximize`, torch
    tensors on the problem's device and in its dtype for :func:`minmax.torch.maximize` (``counts`` is then
    an int64 tensor on the CPU).

    Attributes
    ----------
    deltas : array of shape (k, p)
        The maximizers :math:`\delta_1, \dots, \delta_k` (``k <= m`` after merging), by decreasing value.
    values : array of shape (k,)
        :math:`g(\theta, \delta_i)`; ``values[0]`` is the best estimate (a lower bound) of
        :math:`\varphi(\theta)`.
    counts : array of int, shape (k,)
        How many of the m starts ended at (were merged into) each maximizer; sums to m unless
        ``value_tol`` dropped some.
    starts : array of shape (m, p)
        The starting points (after projection onto S).
    """

    deltas: Any
    values: Any
    counts: Any
    starts: Any

    def __len__(self) -> int:
        return self.deltas.shape[0]


def merge(values: np.ndarray, distances: np.ndarray, merge_tol: float, value_tol: float | None):
    """Indices of the kept runs (best first) and how many runs each absorbed.

    Runs are taken by decreasing value (stable for ties); a run within ``distances[i, j] <= merge_tol`` of an
    already kept run ``j`` is absorbed by it, otherwise kept. With ``value_tol``, only the kept runs of value
    at least ``values[best] - value_tol`` remain. ``values`` (m,) and ``distances`` (m, m) are host arrays.
    """
    order = np.argsort(-values, kind="stable")
    kept: list[int] = []
    counts: list[int] = []
    for i in order:
        for j, k in enumerate(kept):
            if distances[i, k] <= merge_tol:
                counts[j] += 1
                break
        else:
            kept.append(int(i))
            counts.append(1)
    idx, absorbed = np.array(kept, dtype=np.int64), np.array(counts, dtype=np.int64)
    if value_tol is not None:
        keep = values[idx] >= values[idx[0]] - value_tol
        idx, absorbed = idx[keep], absorbed[keep]
    return idx, absorbed


# ----------------------------------------------------------------------------------------------------------
# the outer loops' record


@dataclass(frozen=True)
class History:
    r"""Everything an outer loop did, iteration by iteration (K iterations, K + 1 iterates).

    ``thetas`` and ``directions`` are arrays of the problem's backend (NumPy float64 for
    :mod:`minmax.maxfunc`; torch tensors on the problem's device and in its dtype for
    :mod:`minmax.torch`); the per-iteration numbers are NumPy float64 arrays on the host either way.

    Attributes
    ----------
    method : str
        ``"ddi"`` or ``"single-adversary"``.
    thetas : array of shape (K + 1, n)
        :math:`\theta_0, \dots, \theta_K`.
    phi_estimates : ndarray of shape (K + 1,)
        The best inner value found at each iterate, a lower estimate of :math:`\varphi(\theta_k)`.
    phi : ndarray of shape (K + 1,) or None
        The exact :math:`\varphi(\theta_k)` when the problem has a closed-form ``phi``.
    directions : array of shape (K, n)
        The direction :math:`\gamma_k` of each step (unit, or zero when ``stationary``; for the unnormalized
        single-adversary step, :math:`-\nabla_\theta g`): :math:`\theta_{k+1} = \theta_k + \eta_k\gamma_k`.
    step_sizes : ndarray of shape (K,)
        :math:`\eta_k`, k = 1..K.
    slopes : ndarray of shape (K,)
        :math:`\max_i \langle\gamma_k, \nabla_\theta g(\theta_k, \delta_i)\rangle` over all the maximizers
        found at :math:`\theta_k`: Danskin's formula over that finite set (for DDi :math:`-\|M\alpha^*\|`),
        computed in float64.
    stationary : ndarray of bool, shape (K,)
        No descent direction over the maximizers used (origin in their gradients' hull).
    weights : tuple of K ndarrays
        The weights on the maximizers found (DDi: :math:`\alpha^*`; single adversary: one-hot on the best).
    maximizers : tuple of K + 1 Maximizers
        The inner maximization at each iterate (the last one only estimates :math:`\varphi(\theta_K)`).
    certificates : tuple of K objects or None
        :func:`minmax.certify_descent` results (Theorem 3) over all the maximizers found, when ``lipschitz``
        and ``radius`` were given, else ``None`` (also ``None`` at stationary steps, where there is no
        direction to certify). Each holds the radius :math:`\varepsilon_k` it used.
    """

    method: str
    thetas: Any
    phi_estimates: np.ndarray
    phi: np.ndarray | None
    directions: Any
    step_sizes: np.ndarray
    slopes: np.ndarray
    stationary: np.ndarray
    weights: tuple
    maximizers: tuple
    certificates: tuple

    @property
    def robust_loss(self) -> np.ndarray:
        """The exact :math:`\\varphi(\\theta_k)` when known, else the estimates."""
        return self.phi if self.phi is not None else self.phi_estimates


# ----------------------------------------------------------------------------------------------------------
# the outer loop


@dataclass(frozen=True)
class Backend:
    """What an outer loop needs from an array backend.

    Attributes
    ----------
    check : callable
        ``check(problem)`` raises ``TypeError`` when ``problem`` is not of the backend's kind.
    theta : callable
        ``theta(problem, theta0)`` validates the starting point: a 1-D array of the backend.
    rng : callable
        ``rng(rng)`` validates the random generator argument.
    maximize : callable
        ``maximize(problem, theta, rng=..., m=..., steps=..., step_size=..., ...)`` returns
        :class:`Maximizers`.
    grads : callable
        ``grads(problem, theta, maximizers)`` returns the finite :math:`\\nabla_\\theta g(\\theta, \\delta_i)`
        at the maximizers' deltas, shape (k, n), an array of the backend.
    """

    check: Callable
    theta: Callable
    rng: Callable
    maximize: Callable
    grads: Callable


def ddi_choice(qp_method: str) -> Callable:
    r"""DDi's choice of direction: :math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` (Theorem 2 of [1]_)."""

    def choose(grads):
        from . import steepest_descent

        res = steepest_descent(grads, method=qp_method)
        return res.direction, np.asarray(res.weights, dtype=np.float64), bool(res.stationary)

    return choose


def single_adversary_choice(normalize: bool) -> Callable:
    r"""The single adversary's direction: :math:`-\nabla_\theta g(\theta, \hat\delta)` at the best maximizer
    (row 0: the maximizers are sorted by value), of unit length when ``normalize``."""
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")

    def choose(grads):
        xp = array_api_compat.array_namespace(grads)
        g = grads[0]
        alpha = np.zeros(grads.shape[0])
        alpha[0] = 1.0
        norm = float(xp.linalg.vector_norm(xp.astype(g, xp.float64)))
        if norm == 0.0:
            return xp.zeros_like(g), alpha, True
        return (-g / norm if normalize else -g), alpha, False

    return choose


def run(method: str, backend: Backend, problem, theta0, choose, *, inner: dict, step_size, iterations, rng,
        lipschitz, radius) -> History:
    """The outer loop shared by DDi and the single adversary (see :func:`minmax.maxfunc.ddi`)."""
    from . import certify_descent, directional_derivative

    backend.check(problem)
    theta = backend.theta(problem, theta0)
    iterations = count(iterations, "iterations", 0)
    steps = schedule(step_size, "step_size")
    rng = backend.rng(rng)
    epsilon = radius_rule(problem, lipschitz, radius)
    exact = callable(getattr(problem, "phi", None))
    xp = array_api_compat.array_namespace(theta)
    thetas, estimates, phis, maxima = [], [], [], []
    directions, etas, slopes, flags, weights, certs = [], [], [], [], [], []
    for k in range(1, iterations + 2):
        maxs = backend.maximize(problem, theta, rng=rng, **inner)
        thetas.append(theta)  # never modified in place: each step makes a new array
        estimates.append(float(maxs.values[0]))
        phis.append(float(problem.phi(theta)) if exact else np.nan)
        maxima.append(maxs)
        if k == iterations + 1:
            break
        grads = backend.grads(problem, theta, maxs)
        gamma, alpha, stationary = choose(grads)
        eta = positive(steps(k), f"step_size({k})")
        directions.append(gamma)
        etas.append(eta)
        slopes.append(directional_derivative(grads, gamma))
        flags.append(stationary)
        weights.append(alpha)
        if epsilon is None or stationary:
            certs.append(None)
        else:
            certs.append(certify_descent(grads, gamma, lipschitz=lipschitz, radius=epsilon(theta, maxs)))
        theta = theta + eta * gamma
    n = theta.shape[0]
    if directions:
        stacked = xp.stack(directions)
    else:
        stacked = xp.zeros((0, n), dtype=theta.dtype, device=array_api_compat.device(theta))
    return History(
        method=method,
        thetas=xp.stack(thetas),
        phi_estimates=np.array(estimates),
        phi=np.array(phis) if exact else None,
        directions=stacked,
        step_sizes=np.array(etas, dtype=np.float64),
        slopes=np.array(slopes, dtype=np.float64),
        stationary=np.array(flags, dtype=bool),
        weights=tuple(weights),
        maximizers=tuple(maxima),
        certificates=tuple(certs),
    )
