r"""Max-functions :math:`\varphi(\theta) = \max_{\delta \in S} g(\theta, \delta)`: inner and outer loops.

* :class:`MaxFunction` -- the protocol: ``value``, ``grad_theta``, ``grad_delta`` and the compact ``set``.
* :func:`maximize` -- multi-start projected gradient ascent returning up to m distinct maximizers.
* :func:`ddi` -- Algorithm 1 of [1]_ (Danskin's Descent Direction) on a max-function.
* :func:`single_adversary` -- the classic adversarial-training baseline: the gradient at one maximizer.
* :func:`constant`, :func:`inverse_sqrt` -- step-size schedules :math:`\eta_k` (k = 1, 2, ...).

Everything runs in float64 NumPy; the problems of :mod:`minmax.problems` are the intended inputs.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .sets import CompactSet

__all__ = [
    "Constant",
    "History",
    "InverseSqrt",
    "MaxFunction",
    "Maximizers",
    "constant",
    "ddi",
    "inverse_sqrt",
    "maximize",
    "single_adversary",
]


@runtime_checkable
class MaxFunction(Protocol):
    r"""What the inner and outer loops need from :math:`g(\theta, \delta)`.

    ``theta`` and ``delta`` are 1-D float64 vectors (``delta`` a point of ``set``); ``value`` returns a
    float, the gradients return vectors of the shapes of ``theta`` and ``delta``. Optional extras used when
    present: ``phi(theta)`` (the exact robust loss) and ``maximizers(theta)`` (the exact :math:`S^*`).
    """

    set: CompactSet

    def value(self, theta, delta) -> float: ...

    def grad_theta(self, theta, delta) -> np.ndarray: ...

    def grad_delta(self, theta, delta) -> np.ndarray: ...


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


def _positive(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be finite and positive, got {x!r}")
    return float(x)


def constant(c: float) -> Constant:
    """The constant schedule :math:`\\eta_k = c` (``c > 0``)."""
    return Constant(_positive(c, "c"))


def inverse_sqrt(c: float) -> InverseSqrt:
    """The schedule :math:`\\eta_k = c/\\sqrt{k}` (``c > 0``); Figure 1 of [1]_ uses ``c = 0.5``."""
    return InverseSqrt(_positive(c, "c"))


def _schedule(step_size, name: str):
    if callable(step_size):
        return step_size
    return constant(_positive(step_size, name))


def _count(x, name: str, minimum: int) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {x}")
    return int(x)


def _check_problem(problem) -> None:
    if not isinstance(problem, MaxFunction) or not isinstance(problem.set, CompactSet):
        raise TypeError(
            "problem must provide value(theta, delta), grad_theta, grad_delta and a CompactSet `set` "
            f"(minmax.maxfunc.MaxFunction); got {type(problem).__name__}"
        )


def _theta(theta) -> np.ndarray:
    arr = np.array(theta, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"theta must be a scalar or a non-empty 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("theta contains NaN or infinite entries")
    return arr


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


# ----------------------------------------------------------------------------------------------------------
# inner maximization


@dataclass(frozen=True)
class Maximizers:
    r"""Result of :func:`maximize`: distinct approximate maximizers, best first.

    Attributes
    ----------
    deltas : ndarray of shape (k, p)
        The maximizers :math:`\delta_1, \dots, \delta_k` (``k <= m`` after merging), by decreasing value.
    values : ndarray of shape (k,)
        :math:`g(\theta, \delta_i)`; ``values[0]`` is the best estimate (a lower bound) of
        :math:`\varphi(\theta)`.
    counts : ndarray of int, shape (k,)
        How many of the m starts ended at (were merged into) each maximizer; sums to m unless
        ``value_tol`` dropped some.
    starts : ndarray of shape (m, p)
        The starting points.
    """

    deltas: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return self.deltas.shape[0]


def _merge(deltas: np.ndarray, values: np.ndarray, tol: float):
    order = np.argsort(-values, kind="stable")
    kept: list[int] = []
    counts: list[int] = []
    for i in order:
        for j, k in enumerate(kept):
            if np.linalg.norm(deltas[i] - deltas[k]) <= tol:
                counts[j] += 1
                break
        else:
            kept.append(int(i))
            counts.append(1)
    return deltas[kept], values[kept], np.array(counts, dtype=np.int64)


def maximize(
    problem: MaxFunction,
    theta,
    *,
    m: int = 10,
    steps: int = 10,
    step_size: float = 0.1,
    rng,
    init=None,
    merge_tol: float = 1e-6,
    value_tol: float | None = None,
) -> Maximizers:
    r"""Multi-start projected gradient ascent on :math:`\delta \mapsto g(\theta, \delta)` over S.

    From each of m starts, ``steps`` iterations of
    :math:`\delta \leftarrow P_S(\delta + \eta\,\nabla_\delta g(\theta, \delta))`, keeping each run's best
    iterate (the attack convention: an extra step never makes the returned point worse).

    Parameters
    ----------
    problem : MaxFunction
    theta : array_like of shape (n,)
    m : int, default 10
        Number of starts (restarts of the "attack").
    steps : int, default 10
        Ascent steps per start (0 returns the starts themselves).
    step_size : float, default 0.1
        :math:`\eta > 0`.
    rng : numpy.random.Generator or int
        Draws the starts uniformly from S (unused when ``init`` is given).
    init : array_like of shape (m, p), optional
        Starting points (projected onto S first).
    merge_tol : float, default 1e-6
        Near-duplicates are merged greedily: runs are taken by decreasing value, and a run within Euclidean
        distance ``merge_tol`` of an already kept maximizer is absorbed by it (its count grows) instead of
        being kept; so the kept points are pairwise more than ``merge_tol`` apart, and each kept point is the
        best of the runs it absorbed. ``merge_tol = 0`` merges exact duplicates only.
    value_tol : float, optional
        Keep only maximizers with value at least ``values[0] - value_tol`` (the :math:`\varepsilon`-maximizers
        of the best run). Default: keep every run's end point, local maxima included (as the paper's DDi does
        with its m PGD restarts).

    Returns
    -------
    Maximizers

    Raises
    ------
    TypeError
        ``problem`` not a :class:`MaxFunction`, wrong argument types.
    ValueError
        ``m < 1``, ``steps < 0``, non-positive ``step_size``, negative ``merge_tol``, ``init`` of the wrong
        shape, non-finite inputs, or a non-finite value or gradient returned by the problem.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.maxfunc import maximize
    >>> from minmax.problems import Counterexample2
    >>> p = Counterexample2([1.0, 0.0], [-0.6, 0.8])
    >>> res = maximize(p, np.zeros(2), m=10, steps=20, step_size=0.5, rng=0)
    >>> sorted(res.deltas.ravel().tolist()), int(res.counts.sum())   # both endpoints of S*(0) = {0, 1}
    ([0.0, 1.0], 10)
    """
    _check_problem(problem)
    theta = _theta(theta)
    m = _count(m, "m", 1)
    steps = _count(steps, "steps", 0)
    eta = _positive(step_size, "step_size")
    for name, tol in (("merge_tol", merge_tol), ("value_tol", 0.0 if value_tol is None else value_tol)):
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"{name} must be a non-negative real number, got {tol!r}")
    S = problem.set
    if init is None:
        starts = S.sample(m, _rng(rng))
    else:
        starts = np.array(init, dtype=np.float64)
        if starts.ndim == 1 and S.dim == 1 and starts.shape == (m,):
            starts = starts[:, None]
        if starts.shape != (m, S.dim):
            raise ValueError(f"init must have shape (m, p) = ({m}, {S.dim}), got shape {starts.shape}")
        starts = S.project(starts)
    best = starts.copy()
    best_values = np.empty(m)
    for i in range(m):
        delta = starts[i]
        best_values[i] = _finite(problem.value(theta, delta), "value")
        for _ in range(steps):
            grad = np.asarray(problem.grad_delta(theta, delta), dtype=np.float64).reshape(S.dim)
            delta = S.project(delta + eta * _finite(grad, "grad_delta"))
            val = _finite(problem.value(theta, delta), "value")
            if val > best_values[i]:
                best[i], best_values[i] = delta, val
    deltas, values, counts = _merge(best, best_values, float(merge_tol))
    if value_tol is not None:
        keep = values >= values[0] - value_tol
        deltas, values, counts = deltas[keep], values[keep], counts[keep]
    starts.setflags(write=False)
    for a in (deltas, values, counts):
        a.setflags(write=False)
    return Maximizers(deltas=deltas, values=values, counts=counts, starts=starts)


def _finite(x, what: str):
    if not np.all(np.isfinite(x)):
        raise ValueError(f"the problem returned a non-finite {what}: {x!r}")
    return x


# ----------------------------------------------------------------------------------------------------------
# outer loops


@dataclass(frozen=True)
class History:
    r"""Everything an outer loop did, iteration by iteration (K iterations, K + 1 iterates).

    Attributes
    ----------
    method : str
        ``"ddi"`` or ``"single-adversary"``.
    thetas : ndarray of shape (K + 1, n)
        :math:`\theta_0, \dots, \theta_K`.
    phi_estimates : ndarray of shape (K + 1,)
        The best inner value found at each iterate, a lower estimate of :math:`\varphi(\theta_k)`.
    phi : ndarray of shape (K + 1,) or None
        The exact :math:`\varphi(\theta_k)` when the problem has a closed-form ``phi``.
    directions : ndarray of shape (K, n)
        The direction :math:`\gamma_k` of each step (unit, or zero when ``stationary``; for the unnormalized
        single-adversary step, :math:`-\nabla_\theta g`): :math:`\theta_{k+1} = \theta_k + \eta_k\gamma_k`.
    step_sizes : ndarray of shape (K,)
        :math:`\eta_k`, k = 1..K.
    slopes : ndarray of shape (K,)
        :math:`\max_i \langle\gamma_k, \nabla_\theta g(\theta_k, \delta_i)\rangle` over the maximizers the
        step used: Danskin's formula over that finite set (for DDi :math:`-\|M\alpha^*\|`).
    stationary : ndarray of bool, shape (K,)
        No descent direction over the maximizers used (origin in their gradients' hull).
    weights : tuple of K ndarrays
        The weights on the maximizers used (DDi: :math:`\alpha^*`; single adversary: one-hot).
    maximizers : tuple of K + 1 Maximizers
        The inner maximization at each iterate (the last one only estimates :math:`\varphi(\theta_K)`).
    certificates : tuple of K objects or None
        :func:`minmax.certify_descent` results (Theorem 3) when ``lipschitz`` and ``radius`` were given,
        else ``None`` (also ``None`` at stationary steps, where there is no direction to certify).
    """

    method: str
    thetas: np.ndarray
    phi_estimates: np.ndarray
    phi: np.ndarray | None
    directions: np.ndarray
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


def _grads(problem, theta, maxs: Maximizers) -> np.ndarray:
    grads = np.array([np.asarray(problem.grad_theta(theta, d), dtype=np.float64) for d in maxs.deltas])
    if grads.shape != (len(maxs), theta.size):
        raise ValueError(f"grad_theta must return shape ({theta.size},), got {grads.shape[1:]}")
    return _finite(grads, "grad_theta")


def _run(method, problem, theta0, choose, *, inner, step_size, iterations, rng, lipschitz, radius):
    _check_problem(problem)
    theta = _theta(theta0)
    iterations = _count(iterations, "iterations", 0)
    schedule = _schedule(step_size, "step_size")
    rng = _rng(rng)
    certify = None
    if (lipschitz is None) != (radius is None):
        raise ValueError("give both lipschitz and radius (Theorem 3 needs L and epsilon), or neither")
    if lipschitz is not None:
        from .descent_certificate import certify_descent as certify  # imported only when used
    exact = callable(getattr(problem, "phi", None))
    thetas, estimates, phis, maxima = [], [], [], []
    directions, etas, slopes, flags, weights, certs = [], [], [], [], [], []
    for k in range(1, iterations + 2):
        maxs = maximize(problem, theta, rng=rng, **inner)
        thetas.append(theta.copy())
        estimates.append(float(maxs.values[0]))
        phis.append(float(problem.phi(theta)) if exact else np.nan)
        maxima.append(maxs)
        if k == iterations + 1:
            break
        grads = _grads(problem, theta, maxs)
        gamma, alpha, stationary = choose(grads)
        eta = _positive(schedule(k), f"step_size({k})")
        directions.append(gamma)
        etas.append(eta)
        slopes.append(float(np.max(grads @ gamma)))
        flags.append(stationary)
        weights.append(alpha)
        skip = certify is None or stationary
        certs.append(None if skip else certify(grads, gamma, lipschitz=lipschitz, radius=radius))
        theta = theta + eta * gamma
    n = theta.size
    return History(
        method=method,
        thetas=np.array(thetas),
        phi_estimates=np.array(estimates),
        phi=np.array(phis) if exact else None,
        directions=np.array(directions).reshape(iterations, n),
        step_sizes=np.array(etas),
        slopes=np.array(slopes),
        stationary=np.array(flags, dtype=bool),
        weights=tuple(weights),
        maximizers=tuple(maxima),
        certificates=tuple(certs),
    )


def ddi(
    problem: MaxFunction,
    theta0,
    *,
    m: int = 10,
    inner_steps: int = 10,
    inner_step_size: float = 0.1,
    step_size=InverseSqrt(0.5),
    iterations: int = 50,
    rng,
    lipschitz: float | None = None,
    radius: float | None = None,
    merge_tol: float = 1e-6,
    value_tol: float | None = None,
    qp_method: str = "wolfe",
) -> History:
    r"""Algorithm 1 of [1]_ (DDi) on a max-function.

    At each iteration k = 1..K: find up to m maximizers :math:`\delta_i` of :math:`g(\theta_k, \cdot)`
    (:func:`maximize`), stack :math:`g_i = \nabla_\theta g(\theta_k, \delta_i)` into M, take the steepest
    descent direction over them, :math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` with
    :math:`\alpha^* \in \operatorname{argmin}_{\alpha \in \Delta}\|M\alpha\|^2`
    (:func:`minmax.steepest_descent`, Theorem 2), and step :math:`\theta_{k+1} = \theta_k + \eta_k\gamma^*`.
    When :math:`0 \in \operatorname{conv}\{g_i\}` (within the QP's certified tolerance) there is no descent
    direction over the set: :math:`\gamma^* = 0` and the iterate stays put (fresh random starts at the next
    iteration may find another set). With ``lipschitz`` = L and ``radius`` = :math:`\varepsilon` each
    direction is checked by Theorem 3 (:func:`minmax.certify_descent`: certified when
    :math:`\max_i\langle\gamma^*, g_i\rangle < -L\varepsilon`).

    Parameters
    ----------
    problem : MaxFunction
    theta0 : array_like of shape (n,)
    m, inner_steps, inner_step_size, merge_tol, value_tol
        Passed to :func:`maximize` as ``m``, ``steps``, ``step_size``, ``merge_tol``, ``value_tol``.
    step_size : float or callable, default ``inverse_sqrt(0.5)``
        :math:`\eta_k` as a schedule ``k -> eta_k`` (k from 1), or a constant.
    iterations : int, default 50
        K.
    rng : numpy.random.Generator or int
    lipschitz, radius : float, optional
        L and :math:`\varepsilon` of Theorem 3 (both or neither).
    qp_method : str, default "wolfe"
        Method of :func:`minmax.min_norm_point`.

    Returns
    -------
    History

    Raises
    ------
    TypeError, ValueError
        As :func:`maximize`; also ``iterations < 0``, a non-positive step size, only one of
        ``lipschitz`` / ``radius``.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.maxfunc import ddi
    >>> from minmax.problems import Figure1
    >>> h = ddi(Figure1(), [2.0, 0.05], iterations=5, inner_step_size=1.0, rng=0)
    >>> bool(np.all(np.diff(h.phi) < 0))
    True
    """
    from .danskin import steepest_descent

    inner = {"m": m, "steps": inner_steps, "step_size": inner_step_size, "merge_tol": merge_tol,
             "value_tol": value_tol}

    def choose(grads):
        res = steepest_descent(grads, method=qp_method)
        return np.asarray(res.direction, dtype=np.float64), np.asarray(res.weights), bool(res.stationary)

    return _run("ddi", problem, theta0, choose, inner=inner, step_size=step_size, iterations=iterations,
                rng=rng, lipschitz=lipschitz, radius=radius)


def single_adversary(
    problem: MaxFunction,
    theta0,
    *,
    m: int = 1,
    inner_steps: int = 10,
    inner_step_size: float = 0.1,
    step_size=InverseSqrt(0.5),
    iterations: int = 50,
    rng,
    normalize: bool = True,
    lipschitz: float | None = None,
    radius: float | None = None,
) -> History:
    r"""Classic adversarial training on a max-function: step along the gradient at one maximizer.

    At each iteration: run :func:`maximize` with m starts, keep the best maximizer :math:`\hat\delta`
    (m = 1 is PGD with one random start; m > 1 is "pgd-max"), and step
    :math:`\theta_{k+1} = \theta_k - \eta_k\nabla_\theta g(\theta_k, \hat\delta)`, normalized to unit
    length when ``normalize`` (default) so that the comparison with :func:`ddi`, which takes unit steps, is
    about the direction only. This is the update Madry et al.'s Corollary C.2 justifies; Section 3 of [1]_
    shows it can increase :math:`\varphi` whatever the step size.

    Parameters
    ----------
    problem : MaxFunction
    theta0 : array_like of shape (n,)
    m : int, default 1
        Starts of the inner maximization; the best maximizer found is used.
    inner_steps, inner_step_size
        Passed to :func:`maximize` as ``steps`` and ``step_size``.
    step_size : float or callable, default ``inverse_sqrt(0.5)``
        :math:`\eta_k` as a schedule ``k -> eta_k`` (k from 1), or a constant.
    iterations : int, default 50
    rng : numpy.random.Generator or int
    normalize : bool, default True
        Step along the unit vector :math:`-g/\|g\|` (as :func:`ddi` does) rather than :math:`-g`.
    lipschitz, radius : float, optional
        L and :math:`\varepsilon` of Theorem 3, to certify each step (both or neither).

    Returns
    -------
    History
        ``weights`` are one-hot on the maximizer used; ``slopes`` are :math:`\langle\gamma_k, g\rangle`.
    """
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    inner = {"m": m, "steps": inner_steps, "step_size": inner_step_size}

    def choose(grads):
        g = grads[0]  # maximize() sorts by value: row 0 is the best maximizer
        alpha = np.zeros(grads.shape[0])
        alpha[0] = 1.0
        norm = float(np.linalg.norm(g))
        if norm == 0.0:
            return np.zeros_like(g), alpha, True
        return (-g / norm if normalize else -g), alpha, False

    return _run("single-adversary", problem, theta0, choose, inner=inner, step_size=step_size,
                iterations=iterations, rng=rng, lipschitz=lipschitz, radius=radius)
