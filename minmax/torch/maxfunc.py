r"""Inner and outer loops for a max-function written in PyTorch (:class:`~minmax.torch.MaxProblem`).

The counterparts of :mod:`minmax.maxfunc` with gradients by autograd and the m starts of the inner
maximization batched:

* :func:`maximize` -- multi-start projected gradient ascent, all m starts in one :func:`torch.func.vmap`
  pass of :math:`g` per ascent step, on the CPU or CUDA, in float64 (default) or float32.
* :func:`ddi` -- Algorithm 1 of [1]_ (Danskin's Descent Direction).
* :func:`single_adversary` -- the gradient at one maximizer (the classic adversarial-training step).
* :func:`estimate_lipschitz` -- an empirical Lipschitz constant of :math:`\delta \mapsto \nabla_\theta
  g(\theta, \delta)` (for Theorem 3), the gradients by autograd.

The semantics, the merging rule, the records (:class:`~minmax.maxfunc.Maximizers`,
:class:`~minmax.maxfunc.History`) and the outer loop itself are those of :mod:`minmax.maxfunc`: the loop is
one piece of code for both. With the same seed (a NumPy generator or an int) the starts are the same points,
so a torch problem and its NumPy twin give the same histories up to round-off.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import torch

from minmax import _outer
from minmax._outer import History, InverseSqrt, Maximizers
from minmax.torch.maxproblem import MaxProblem

__all__ = ["ddi", "estimate_lipschitz", "maximize", "single_adversary"]

# eta_k = 0.5 / sqrt(k), the outer step sizes of Figure 1 of [1]: the loops' default (as minmax.maxfunc).
_FIGURE1_STEPS = InverseSqrt(0.5)


def _check_problem(problem) -> None:
    if not isinstance(problem, MaxProblem):
        raise TypeError(
            "problem must be a minmax.torch.MaxProblem (a torch g(theta, delta) and a set); got "
            f"{type(problem).__name__} (NumPy max-functions go to minmax.maxfunc)"
        )


def _names_the_problem(fn):
    """Prefix the ``TypeError`` / ``ValueError`` messages of ``fn(problem, ...)`` with the problem's repr
    (the checks shared with :mod:`minmax.maxfunc` do not know which problem they check)."""

    @functools.wraps(fn)
    def wrapper(problem, *args, **kwargs):
        try:
            return fn(problem, *args, **kwargs)
        except (TypeError, ValueError) as exc:
            name = repr(problem)
            if not isinstance(problem, MaxProblem) or type(exc) not in (TypeError, ValueError) or \
                    str(exc).startswith(name):
                raise
            raise type(exc)(f"{name}: {exc}") from exc

    return wrapper


def _rng(rng):
    """A NumPy generator (an int seeds one: the stream of minmax.maxfunc), a torch.Generator, or None."""
    if rng is None or isinstance(rng, (np.random.Generator, torch.Generator)):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        "rng must be a torch.Generator, a numpy.random.Generator, an int seed or None, got "
        f"{type(rng).__name__}"
    )


# ----------------------------------------------------------------------------------------------------------
# inner maximization


@_names_the_problem
def maximize(
    problem: MaxProblem,
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
    r"""Multi-start projected gradient ascent on :math:`\delta \mapsto g(\theta, \delta)` over S, batched.

    From each of m starts, ``steps`` iterations of
    :math:`\delta \leftarrow P_S(\delta + \eta\,\nabla_\delta g(\theta, \delta))`, keeping each run's best
    iterate, then greedy merging of near-duplicates: exactly :func:`minmax.maxfunc.maximize`, with the m
    runs advanced together. Each ascent step is one :func:`torch.func.vmap` pass of :math:`g` over the m
    points (which also yields the values of the previous step's iterates) and one reverse pass; a last
    forward pass evaluates the final iterates. Nothing waits for the device until the merging at the end.

    Parameters
    ----------
    problem : MaxProblem
    theta : Tensor or array_like of shape (n,)
        A tensor must be in the problem's dtype and on its device.
    m : int, optional
        Number of starts: 10 by default, or the number of rows of ``init``.
    steps : int, default 10
        Ascent steps per start (0 returns the starts themselves).
    step_size : float, default 0.1
        :math:`\eta > 0`.
    rng : int, numpy.random.Generator, torch.Generator or None
        Draws the starts uniformly from S (unused when ``init`` is given). An int or a NumPy generator draws
        them with :meth:`minmax.sets.CompactSet.sample`, the points :func:`minmax.maxfunc.maximize` would
        start from; a :class:`torch.Generator` (on the problem's device) or ``None`` (torch's global
        generator) draws them in torch, on the device.
    init : Tensor or array_like of shape (m, p), optional
        Starting points (projected onto S first).
    merge_tol : float, default 1e-6
        Runs are taken by decreasing value and a run within Euclidean distance ``merge_tol`` of an already
        kept maximizer is absorbed by it (see :func:`minmax.maxfunc.maximize`).
    value_tol : float, optional
        Keep only maximizers with value at least ``values[0] - value_tol``.

    Returns
    -------
    Maximizers
        ``deltas``, ``values`` and ``starts`` as tensors in the problem's dtype on its device; ``counts`` an
        int64 tensor on the CPU.

    Raises
    ------
    TypeError
        ``problem`` not a :class:`MaxProblem`, wrong argument types or dtypes, a ``g`` that does not return
        a tensor of the problem's dtype or cannot be batched.
    ValueError
        ``m < 1``, ``steps < 0``, non-positive ``step_size``, negative tolerances, ``init`` of the wrong
        shape, non-finite inputs, a ``g`` that is not scalar or returns a non-finite value or gradient.

    Examples
    --------
    Counterexample 2 of [1]_ at :math:`\theta = 0`, where :math:`S^* = \{0, 1\}`:

    >>> import torch
    >>> from minmax.torch import maximize
    >>> from minmax.torch.problems import Counterexample2
    >>> p = Counterexample2([1.0, 0.0], [-0.6, 0.8])
    >>> res = maximize(p, torch.zeros(2, dtype=torch.float64), m=10, steps=20, step_size=0.5, rng=0)
    >>> sorted(res.deltas.ravel().tolist()), int(res.counts.sum())
    ([0.0, 1.0], 10)
    """
    _check_problem(problem)
    theta = problem.check_theta(theta)
    steps = _outer.count(steps, "steps", 0)
    eta = _outer.positive(step_size, "step_size")
    merge_tol, value_tol = _outer.tolerances(merge_tol, value_tol)
    S = problem.torch_set
    if init is None:
        starts = S.sample(_outer.starts_count(m, None), _rng(rng))
    else:
        starts = problem.check_deltas(init, "init")
        _outer.starts_count(m, starts.shape[0])
        starts = S.project(starts)
    problem.probe(theta, starts[0])
    delta, best = starts, starts
    bad = torch.zeros(starts.shape[0], dtype=torch.bool, device=starts.device)
    best_values = None
    for step in range(steps + 1):
        if step < steps:
            grads, values = problem._grad_delta_and_value(theta, delta)
            bad |= ~torch.isfinite(grads).all(dim=1)
        else:
            values = problem._values(theta, delta)
        bad |= ~torch.isfinite(values)
        if best_values is None:
            best_values = values
        else:
            better = values > best_values
            best = torch.where(better[:, None], delta, best)
            best_values = torch.where(better, values, best_values)
        if step < steps:
            delta = S.project(delta + eta * grads)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise ValueError(f"{problem!r}: g returned a non-finite value or gradient on the run from start {i} "
                         f"(delta_0 = {starts[i].tolist()})")
    distances = torch.cdist(best, best, compute_mode="donot_use_mm_for_euclid_dist")
    idx, counts = _outer.merge(_outer.to_numpy(best_values), _outer.to_numpy(distances), merge_tol, value_tol)
    keep = torch.as_tensor(idx, device=best.device)
    return Maximizers(deltas=best[keep], values=best_values[keep], counts=torch.as_tensor(counts),
                      starts=starts)


# ----------------------------------------------------------------------------------------------------------
# outer loops


def _grads(problem: MaxProblem, theta: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    grads = problem._grads_theta(theta, deltas)
    if not bool(torch.isfinite(grads).all()):
        raise ValueError(f"{problem!r}: the gradient of g in theta is not finite at some of the points")
    return grads


_TORCH = _outer.Backend(check=_check_problem, theta=lambda problem, theta: problem.check_theta(theta),
                        rng=_rng, maximize=maximize, grads=lambda problem, theta, maxs: _grads(
                            problem, theta, maxs.deltas))


@_names_the_problem
def ddi(
    problem: MaxProblem,
    theta0,
    *,
    m: int = 10,
    inner_steps: int = 10,
    inner_step_size: float = 0.1,
    step_size=_FIGURE1_STEPS,
    iterations: int = 50,
    rng=None,
    lipschitz: float | None = None,
    radius=None,
    merge_tol: float = 1e-6,
    value_tol: float | None = None,
    qp_method: str = "wolfe",
) -> History:
    r"""Algorithm 1 of [1]_ (DDi) on a torch max-function: :func:`minmax.maxfunc.ddi` with autograd.

    At each iteration k = 1..K: up to m maximizers :math:`\delta_i` of :math:`g(\theta_k, \cdot)` by
    :func:`maximize` (starts batched), their gradients :math:`g_i = \nabla_\theta g(\theta_k, \delta_i)`
    in one batched pass, the steepest descent direction :math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|`,
    :math:`\alpha^* \in \operatorname{argmin}_{\alpha\in\Delta}\|M\alpha\|^2` (Theorem 2; the Gram matrix
    in float64, the QP on the host), and the step :math:`\theta_{k+1} = \theta_k + \eta_k\gamma^*`
    (:math:`\gamma^* = 0` when the origin is in the gradients' hull). With ``lipschitz`` and ``radius``
    each direction gets a Theorem 3 certificate, :math:`\max_i\langle\gamma^*, g_i\rangle <
    -L\varepsilon_k`.

    Parameters
    ----------
    problem : MaxProblem
    theta0 : Tensor or array_like of shape (n,)
    m, inner_steps, inner_step_size, merge_tol, value_tol
        Passed to :func:`maximize` as ``m``, ``steps``, ``step_size``, ``merge_tol``, ``value_tol``.
    step_size : float or callable, default ``inverse_sqrt(0.5)``
        :math:`\eta_k` as a schedule ``k -> eta_k`` (k from 1), or a constant.
    iterations : int, default 50
        K.
    rng : int, numpy.random.Generator, torch.Generator or None
        As in :func:`maximize`; an int seed gives the starts :func:`minmax.maxfunc.ddi` draws with it.
    lipschitz : float, optional
        L of Theorem 3 (give it with ``radius``, or neither); e.g. from :func:`estimate_lipschitz`.
    radius : float, callable or "exact", optional
        :math:`\varepsilon_k`: a float, a callable ``theta_k -> epsilon_k`` (``theta_k`` a tensor), or
        ``"exact"``, the covering radius of ``problem.maximizers(theta_k)`` by the maximizers found.
    qp_method : str, default "wolfe"
        Method of :func:`minmax.min_norm_point`.

    Returns
    -------
    History
        ``thetas`` and ``directions`` as tensors in the problem's dtype on its device; the rest as in
        :func:`minmax.maxfunc.ddi`.

    Raises
    ------
    TypeError, ValueError
        As :func:`maximize`; also ``iterations < 0``, a non-positive step size, only one of ``lipschitz``
        / ``radius``, a negative L or :math:`\varepsilon_k`, ``radius="exact"`` without
        ``problem.maximizers``, a non-finite :math:`\nabla_\theta g`.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax.torch import ddi
    >>> from minmax.torch.problems import Figure1
    >>> h = ddi(Figure1(), [2.0, 0.05], iterations=5, inner_step_size=1.0, rng=0)
    >>> bool(np.all(np.diff(h.phi) < 0)), h.thetas.dtype
    (True, torch.float64)
    """
    inner = {"m": m, "steps": inner_steps, "step_size": inner_step_size, "merge_tol": merge_tol,
             "value_tol": value_tol}
    return _outer.run("ddi", _TORCH, problem, theta0, _outer.ddi_choice(qp_method), inner=inner,
                      step_size=step_size, iterations=iterations, rng=rng, lipschitz=lipschitz, radius=radius)


@_names_the_problem
def single_adversary(
    problem: MaxProblem,
    theta0,
    *,
    m: int = 1,
    inner_steps: int = 10,
    inner_step_size: float = 0.1,
    step_size=_FIGURE1_STEPS,
    iterations: int = 50,
    rng=None,
    normalize: bool = True,
    lipschitz: float | None = None,
    radius=None,
) -> History:
    r"""The single-adversary baseline on a torch max-function: :func:`minmax.maxfunc.single_adversary`.

    At each iteration: :func:`maximize` with m starts, the best maximizer :math:`\hat\delta`, and the step
    :math:`\theta_{k+1} = \theta_k - \eta_k\nabla_\theta g(\theta_k, \hat\delta)`, normalized to unit
    length when ``normalize``. Section 3 of [1]_ shows this step can increase :math:`\varphi` whatever the
    step size.

    Parameters
    ----------
    problem : MaxProblem
    theta0 : Tensor or array_like of shape (n,)
    m : int, default 1
        Starts of the inner maximization; the best maximizer found is used.
    inner_steps, inner_step_size
        Passed to :func:`maximize` as ``steps`` and ``step_size``.
    step_size : float or callable, default ``inverse_sqrt(0.5)``
    iterations : int, default 50
    rng : int, numpy.random.Generator, torch.Generator or None
    normalize : bool, default True
        Step along :math:`-g/\|g\|` rather than :math:`-g`.
    lipschitz, radius
        As in :func:`ddi`.

    Returns
    -------
    History
        As :func:`minmax.maxfunc.single_adversary`, with ``thetas`` and ``directions`` as tensors.

    Raises
    ------
    TypeError, ValueError
        As :func:`ddi`; also a ``normalize`` that is not a bool.
    """
    choose = _outer.single_adversary_choice(normalize)
    inner = {"m": m, "steps": inner_steps, "step_size": inner_step_size}
    return _outer.run("single-adversary", _TORCH, problem, theta0, choose, inner=inner, step_size=step_size,
                      iterations=iterations, rng=rng, lipschitz=lipschitz, radius=radius)


# ----------------------------------------------------------------------------------------------------------
# Theorem 3's Lipschitz constant


@_names_the_problem
def estimate_lipschitz(problem: MaxProblem, theta, *, deltas=None, n: int = 256, rng=None,
                       norm: str = "l2") -> float:
    r"""Empirical Lipschitz constant of :math:`\delta \mapsto \nabla_\theta g(\theta, \delta)`, by autograd.

    .. math::

        \hat L = \max_{i < j,\ \delta_i \ne \delta_j}
            \frac{\|\nabla_\theta g(\theta,\delta_i) - \nabla_\theta g(\theta,\delta_j)\|_2}
                 {\|\delta_i - \delta_j\|}

    over the given points, or over ``n`` points drawn uniformly from S; the gradients come from one batched
    autograd pass. This is an **estimate from below** of the true constant L of Theorem 3 (a max over
    finitely many pairs of a sup over all pairs of S), so a certificate built on it is a heuristic; points
    close to the maximizers and to each other make it tighter. When :math:`\nabla_\theta g` is affine in
    :math:`\delta` (the paper's synthetic problems) any two distinct points along the direction of largest
    change give the exact L.

    Parameters
    ----------
    problem : MaxProblem
    theta : Tensor or array_like of shape (n,)
    deltas : Tensor or array_like of shape (k, p), optional
        The sample points :math:`\delta_i \in S` (at least two distinct); default: ``n`` uniform samples.
    n : int, default 256
        Number of samples when ``deltas`` is not given (at least 2).
    rng : int, numpy.random.Generator, torch.Generator or None
        Draws the samples (as in :func:`maximize`).
    norm : {"l2", "linf"}, default "l2"
        The norm of :math:`\delta` (the one in which :math:`\varepsilon` is measured).

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        Bad ``problem``, ``theta`` or ``deltas`` (as :func:`maximize`), ``n < 2``, fewer than two distinct
        points, non-finite gradients, an unknown ``norm``.

    Examples
    --------
    For counterexample 2, :math:`\nabla_\theta g = v + \delta(u - v)`, so :math:`L = \|u - v\|`:

    >>> import numpy as np
    >>> from minmax.torch import estimate_lipschitz
    >>> from minmax.torch.problems import Counterexample2
    >>> p = Counterexample2([1.0, 0.0], [-0.6, 0.8])
    >>> L = estimate_lipschitz(p, [0.3, -0.2], n=16, rng=0)
    >>> bool(np.isclose(L, np.hypot(1.6, 0.8)))
    True
    """
    from minmax import estimate_lipschitz as from_gradients

    _check_problem(problem)
    theta = problem.check_theta(theta)
    if deltas is None:
        points = problem.torch_set.sample(_outer.count(n, "n", 2), _rng(rng))
    else:
        points = problem.check_deltas(deltas)
    problem.probe(theta, points[0])
    return from_gradients(_grads(problem, theta, points), points, norm=norm)
