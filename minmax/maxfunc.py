r"""Max-functions :math:`\varphi(\theta) = \max_{\delta \in S} g(\theta, \delta)`: inner and outer loops.

* :class:`MaxFunction` -- the protocol: ``value``, ``grad_theta``, ``grad_delta`` and the compact ``set``.
* :func:`maximize` -- multi-start projected gradient ascent returning up to m distinct maximizers.
* :func:`ddi` -- Algorithm 1 of [1]_ (Danskin's Descent Direction) on a max-function.
* :func:`single_adversary` -- the classic adversarial-training baseline: the gradient at one maximizer.
* :func:`constant`, :func:`inverse_sqrt` -- step-size schedules :math:`\eta_k` (k = 1, 2, ...).

Everything runs in float64 NumPy; the problems of :mod:`minmax.problems` are the intended inputs. The
same loops for a :math:`g` written in PyTorch, with gradients by autograd and the starts batched, are in
:mod:`minmax.torch.maxfunc`; both share their outer loop and records (:class:`History`,
:class:`Maximizers`).

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import numbers
from typing import Protocol, runtime_checkable

import numpy as np

from . import _outer
from ._outer import Constant, History, InverseSqrt, Maximizers, constant, inverse_sqrt
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
    if rng is None:
        raise TypeError("rng is required (a numpy.random.Generator or an int seed) to draw the starts")
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


# ----------------------------------------------------------------------------------------------------------
# inner maximization


def maximize(
    problem: MaxFunction,
    theta,
    *,
    m: int | None = None,
    steps: int = 10,
    step_size: float = 0.1,
    rng=None,
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
    m : int, optional
        Number of starts (restarts of the "attack"): 10 by default, or the number of rows of ``init``
        (which must then agree with ``m`` when both are given).
    steps : int, default 10
        Ascent steps per start (0 returns the starts themselves).
    step_size : float, default 0.1
        :math:`\eta > 0`.
    rng : numpy.random.Generator or int
        Draws the starts uniformly from S; required unless ``init`` is given.
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
    steps = _outer.count(steps, "steps", 0)
    eta = _outer.positive(step_size, "step_size")
    merge_tol, value_tol = _outer.tolerances(merge_tol, value_tol)
    S = problem.set
    if init is None:
        starts = S.sample(_outer.starts_count(m, None), _rng(rng))
    else:
        starts = np.array(init, dtype=np.float64)
        if starts.ndim == 1 and S.dim == 1:
            starts = starts[:, None]
        if starts.ndim != 2 or starts.shape[1] != S.dim:
            raise ValueError(f"init must have shape (m, p) with p = {S.dim}, got shape {starts.shape}")
        _outer.starts_count(m, starts.shape[0])
        starts = S.project(starts)
    m = starts.shape[0]
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
    distances = np.stack([np.linalg.norm(best - best[i], axis=1) for i in range(m)])
    idx, counts = _outer.merge(best_values, distances, merge_tol, value_tol)
    deltas, values = best[idx], best_values[idx]
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


def _grads(problem, theta, maxs: Maximizers) -> np.ndarray:
    grads = np.array([np.asarray(problem.grad_theta(theta, d), dtype=np.float64) for d in maxs.deltas])
    if grads.shape != (len(maxs), theta.size):
        raise ValueError(f"grad_theta must return shape ({theta.size},), got {grads.shape[1:]}")
    return _finite(grads, "grad_theta")


# eta_k = 0.5 / sqrt(k), the outer step sizes of Figure 1 of [1]: the loops' default (a frozen dataclass).
_FIGURE1_STEPS = InverseSqrt(0.5)

_NUMPY = _outer.Backend(check=_check_problem, theta=lambda problem, theta: _theta(theta), rng=_rng,
                        maximize=maximize, grads=_grads)


def ddi(
    problem: MaxFunction,
    theta0,
    *,
    m: int = 10,
    inner_steps: int = 10,
    inner_step_size: float = 0.1,
    step_size=_FIGURE1_STEPS,
    iterations: int = 50,
    rng,
    lipschitz: float | None = None,
    radius=None,
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
    :math:`\max_i\langle\gamma^*, g_i\rangle < -L\varepsilon_k`); :math:`\varepsilon_k` may change with
    the iterate (``radius`` a callable of :math:`\theta_k`, or ``"exact"``).

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
    lipschitz : float, optional
        L of Theorem 3: a Lipschitz constant of :math:`\delta \mapsto \nabla_\theta g(\theta, \delta)`
        (give it with ``radius``, or neither).
    radius : float, callable or "exact", optional
        :math:`\varepsilon_k` of Theorem 3 at each iterate: a float (the same at every iterate), a callable
        ``theta_k -> epsilon_k``, or ``"exact"``: the covering radius
        :math:`\sup_{\delta \in S^*(\theta_k)}\min_i\|\delta - \delta_i\|_2` of the exact maximizers
        ``problem.maximizers(theta_k)`` (a finite set or an interval) by the maximizers found; the
        certificate is then exact whenever L is.
    qp_method : str, default "wolfe"
        Method of :func:`minmax.min_norm_point`.

    Returns
    -------
    History

    Raises
    ------
    TypeError, ValueError
        As :func:`maximize`; also ``iterations < 0``, a non-positive step size, only one of
        ``lipschitz`` / ``radius``, a negative L or :math:`\varepsilon_k`, ``radius="exact"`` for a
        problem without ``maximizers``.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.maxfunc import ddi
    >>> from minmax.problems import Figure1
    >>> h = ddi(Figure1(), [2.0, 0.05], iterations=5, inner_step_size=1.0, rng=0)
    >>> bool(np.all(np.diff(h.phi) < 0))
    True
    """
    inner = {"m": m, "steps": inner_steps, "step_size": inner_step_size, "merge_tol": merge_tol,
             "value_tol": value_tol}
    return _outer.run("ddi", _NUMPY, problem, theta0, _outer.ddi_choice(qp_method), inner=inner,
                      step_size=step_size, iterations=iterations, rng=rng, lipschitz=lipschitz, radius=radius)


def single_adversary(
    problem: MaxFunction,
    theta0,
    *,
    m: int = 1,
    inner_steps: int = 10,
    inner_step_size: float = 0.1,
    step_size=_FIGURE1_STEPS,
    iterations: int = 50,
    rng,
    normalize: bool = True,
    lipschitz: float | None = None,
    radius=None,
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
    lipschitz : float, optional
        L of Theorem 3: a Lipschitz constant of :math:`\delta \mapsto \nabla_\theta g(\theta, \delta)`
        (give it with ``radius``, or neither).
    radius : float, callable or "exact", optional
        :math:`\varepsilon_k` of Theorem 3 at each iterate: a float (the same at every iterate), a callable
        ``theta_k -> epsilon_k``, or ``"exact"``: the covering radius
        :math:`\sup_{\delta \in S^*(\theta_k)}\min_i\|\delta - \delta_i\|_2` of the exact maximizers
        ``problem.maximizers(theta_k)`` (a finite set or an interval) by the maximizers found; the
        certificate is then exact whenever L is.

    Returns
    -------
    History
        ``weights`` are one-hot on the maximizer used; ``slopes`` (and the certificates) take the max over
        all the maximizers found, :math:`\max_i\langle\gamma_k, g_i\rangle` (with ``m = 1``:
        :math:`\langle\gamma_k, g\rangle`).

    Raises
    ------
    TypeError, ValueError
        As :func:`ddi`; also a ``normalize`` that is not a bool.
    """
    choose = _outer.single_adversary_choice(normalize)
    inner = {"m": m, "steps": inner_steps, "step_size": inner_step_size}
    return _outer.run("single-adversary", _NUMPY, problem, theta0, choose, inner=inner, step_size=step_size,
                      iterations=iterations, rng=rng, lipschitz=lipschitz, radius=radius)
