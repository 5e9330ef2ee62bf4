r"""Inner maximization for adversarial training: PGD (l∞ / l2, batched restarts, 1/t decay) and FGSM/FAST.

The attacks approximately solve, for every sample of a batch, the inner problem of the min-max objective

.. math:: \max_{\delta \in S(x)} \ell(f_\theta(x + \delta), y), \qquad
          S(x) = \{\delta : \|\delta\|_p \le \varepsilon,\ 0 \le x + \delta \le 1\},

whose maximizers are the set :math:`S^*(\theta)` over which Danskin's theorem takes its max (the paper's
eq. 4). The m restarts of an attack are m points of (an approximation of) that set: the adapter's training
step builds the matrix of gradients :math:`M = [g_1, \dots, g_m]` from them.

Conventions (those of torchattacks, AutoAttack and RobustBench): inputs in [0, 1], normalization inside the
model, ε in pixel units, the model in eval mode during the attack (then restored), uniform random start,
restarts scored per sample. One convention differs from torchattacks': an attack returns the
**perturbations** δ, not the adversarial examples — ``PGD(...)(model, x, y)`` is δ of shape ``(m, B, ...)``
(``x + δ[i]`` is restart i's adversarial batch), where a torchattacks attack ``atk(x, y)`` returns
:math:`x_{adv} = x + \delta`. :class:`minmax.torch.adapter.AttackAdapter` wraps an attack of that
convention for minmax. Attacks differentiate with respect to the input only
(:func:`torch.autograd.grad`), so they never touch ``p.grad`` of any parameter, and they work when called
under :func:`torch.no_grad`. Random numbers come from the global torch RNG of ``x``'s device, so saving and
restoring RNG states replays an attack exactly.

References
----------
.. [1] Madry, Makelov, Schmidt, Tsipras, Vladu. "Towards deep learning models resistant to adversarial
   attacks." ICLR 2018.
.. [2] Wong, Rice, Kolter. "Fast is better than free: revisiting adversarial training." ICLR 2020.
.. [3] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding actual descent directions for adversarial
   training." ICLR 2023.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minmax.torch._checks import positive_float, positive_int, set_eval, validate_batch, validate_start
from minmax.torch.projections import expand as _expand
from minmax.torch.projections import norms as _norms
from minmax.torch.projections import project

__all__ = ["FGSM", "NORMS", "PGD", "AttackResult", "worst_case"]

NORMS = ("linf", "l2")


@dataclass(frozen=True, eq=False)  # tensors have no single truth value: compare fields
class AttackResult:
    """What an attack returns: the perturbations and their per-sample losses.

    Attributes
    ----------
    deltas : torch.Tensor
        Shape ``(m, B, *x.shape[1:])``: ``x + deltas[i]`` is restart ``i``'s adversarial batch, inside the
        ε-ball and [0, 1]. Each entry is the per-sample best iterate of its restart (or the last iterate when
        the attack was built with ``keep_best=False``). Detached.
    losses : torch.Tensor
        Shape ``(m, B)``: the per-sample loss of the model (in the mode the attack ran in) at exactly the
        returned ``deltas``. Detached.
    """

    deltas: torch.Tensor
    losses: torch.Tensor

    @property
    def restarts(self) -> int:
        """The number m of restarts."""
        return self.deltas.shape[0]


def worst_case(result: AttackResult) -> torch.Tensor:
    """Per-sample worst perturbation over the restarts (the pgd-max / fast-max choice).

    Parameters
    ----------
    result : AttackResult
        The output of :meth:`PGD.run` or :meth:`FGSM.run`.

    Returns
    -------
    torch.Tensor
        Shape ``(B, *x.shape[1:])``: for sample ``b``, ``result.deltas[i_b, b]`` with
        ``i_b = argmax_i result.losses[i, b]`` (the first restart on ties).

    Raises
    ------
    TypeError
        If ``result`` is not an :class:`AttackResult`.

    Examples
    --------
    >>> import torch
    >>> r = AttackResult(deltas=torch.arange(6.0).reshape(3, 2, 1), losses=torch.tensor([[0., 5.], [2., 1.],
    ...                  [1., 1.]]))
    >>> worst_case(r).flatten().tolist()
    [2.0, 1.0]
    """
    if not isinstance(result, AttackResult):
        raise TypeError(f"worst_case expects an AttackResult, got {type(result).__name__}")
    worst = result.losses.argmax(dim=0)  # (B,)
    batch = torch.arange(result.deltas.shape[1], device=result.deltas.device)
    return result.deltas[worst.to(result.deltas.device), batch]


class PGD:
    r"""Projected gradient ascent on the per-sample loss, with m restarts in one batched pass.

    Parameters
    ----------
    eps : float
        Radius ε of the threat model, in pixel units (8/255 on CIFAR10). Must be > 0.
    alpha : float
        Step size α (> 0).
    steps : int
        Number K of ascent steps (>= 1).
    norm : {"linf", "l2"}
        Threat model: the l∞ ball (steps along ``sign(∇)``) or the l2 ball (steps along ``∇ / ‖∇‖₂``).
    restarts : int
        Number m of restarts (>= 1), each from its own random start, computed together: the model sees one
        batch of m·B inputs per step.
    random_start : bool
        Start from a uniformly random point of the ball (see Notes); otherwise from δ = 0 (then all restarts
        coincide).
    decay_after : int or None
        Switch to the 1/t step schedule after this step (>= 1); None keeps α constant. PGD-70-1/t of the
        paper [3]_ uses ``steps=70, decay_after=K + 1`` with K = 7 the usual number of steps.
    loss : "ce" or callable
        ``"ce"``: per-sample cross-entropy. A callable ``loss(logits, y)`` must return per-sample losses of
        shape ``(N,)`` for N = m·B rows.
    eval_mode : bool
        Put the model in eval mode for the attack and restore every submodule's mode afterwards. With False
        the model runs in whatever mode it is in; in train mode, BatchNorm then normalizes with statistics of
        the whole m·B batch and updates its running statistics at every step of the attack.
    keep_best : bool
        Return, per sample and restart, the iterate with the highest loss (True), or the last iterate.

    Raises
    ------
    ValueError
        If a number is out of range (ε <= 0, α <= 0, steps < 1, restarts < 1, decay_after < 1) or ``norm``
        is not one of :data:`NORMS`.
    TypeError
        If ``loss`` is neither ``"ce"`` nor callable, or a count is not an integer.

    Notes
    -----
    Restart j runs, for t = 1, …, K,

    .. math:: \delta^{t} = \Pi_{S(x)}\big(\delta^{t-1}
              + \alpha_t\, d(\nabla_\delta \ell(f(x + \delta^{t-1}), y))\big),
              \qquad d(g) = \operatorname{sign}(g) \ (\ell_\infty), \quad d(g) = g / \|g\|_2 \ (\ell_2),

    with :math:`\Pi_{S(x)}` the exact Euclidean projection onto :math:`S(x)` = ε-ball ∩ [0, 1]^n: a
    coordinatewise clamp for l∞, an active-set search for l2 (:mod:`minmax.torch.projections`).

    **Step schedule.** :math:`\alpha_t = \alpha` for :math:`t \le T` and :math:`\alpha_t = \alpha T / t` for
    :math:`t > T`, where T = ``decay_after`` (continuous at t = T). See :attr:`step_sizes`.

    **Random start.** l∞: :math:`\delta^0 \sim U([-\varepsilon, \varepsilon]^n)`. l2: uniform in the ball,
    :math:`\delta^0 = \varepsilon\, u^{1/n} z/\|z\|_2` with :math:`z \sim N(0, I_n)`, :math:`u \sim U(0, 1)`
    (the direction is uniform on the sphere and the radius has the density :math:`\propto r^{n-1}`; in high
    dimension it is close to ε). Either is then projected onto [0, 1]^n, as in [2]_. The draw is
    :meth:`draw_start`, which depends on the shape ``(m, B, ...)`` only; the projection needs x. Passing
    ``start=`` to :meth:`run` replaces the draw, so that, e.g., each process of a distributed run can draw
    the start of the union batch and attack its own rows (:class:`minmax.torch.descent.DescentStep`).

    **Best iterate.** The loss at :math:`\delta^t` is the one computed in the forward pass that yields the
    gradient of step t+1 (one extra forward pass without gradient scores :math:`\delta^K`), so the returned
    loss is the loss at the returned iterate, not at a neighbour. A sample keeps the earliest iterate of
    highest loss among :math:`\delta^0, \dots, \delta^K`.

    **Return value.** ``attack(model, x, y)`` returns the perturbations δ (shape ``(m, B, ...)``), not
    the adversarial examples :math:`x + \delta` that a torchattacks attack returns; :meth:`run` returns
    them with their per-sample losses.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> x, y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    >>> attack = PGD(eps=8 / 255, alpha=2 / 255, steps=7, restarts=4)
    >>> result = attack.run(model, x, y)
    >>> result.deltas.shape, result.losses.shape
    (torch.Size([4, 5, 3, 2, 2]), torch.Size([4, 5]))
    >>> bool(result.deltas.abs().max() <= 8 / 255)
    True
    >>> worst_case(result).shape
    torch.Size([5, 3, 2, 2])
    """

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 7,
        norm: str = "linf",
        restarts: int = 1,
        random_start: bool = True,
        decay_after: int | None = None,
        loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "ce",
        eval_mode: bool = True,
        keep_best: bool = True,
    ) -> None:
        self.eps = positive_float(eps, "eps")
        self.alpha = positive_float(alpha, "alpha")
        self.steps = positive_int(steps, "steps")
        self.restarts = positive_int(restarts, "restarts")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        self.norm = norm
        self.decay_after = None if decay_after is None else positive_int(decay_after, "decay_after")
        self.loss = check_loss(loss)
        self.random_start = bool(random_start)
        self.eval_mode = bool(eval_mode)
        self.keep_best = bool(keep_best)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps:.6g}, alpha={self.alpha:.6g}, steps={self.steps}, "
            f"norm={self.norm!r}, restarts={self.restarts}, random_start={self.random_start}, "
            f"decay_after={self.decay_after}, loss={self.loss!r}, eval_mode={self.eval_mode}, "
            f"keep_best={self.keep_best})"
        )

    @property
    def step_sizes(self) -> tuple[float, ...]:
        """The step sizes α_1, …, α_K: α up to ``decay_after`` = T, then α·T/t."""
        T = self.decay_after
        a = self.alpha
        return tuple(a if T is None or t <= T else a * T / t for t in range(1, self.steps + 1))

    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 start: torch.Tensor | None = None) -> torch.Tensor:
        """The perturbations δ, shape ``(restarts, B, *x.shape[1:])`` — not the adversarial examples.

        ``x + δ[i]`` is restart i's adversarial batch (torchattacks' ``atk(x, y)`` returns that sum; to
        use such an attack here, wrap it in :class:`minmax.torch.adapter.AttackAdapter`). See :meth:`run`.
        """
        return self.run(model, x, y, start=start).deltas

    def draw_start(self, shape, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw the raw random start of a batch: a point of the ε-ball per restart and sample.

        Parameters
        ----------
        shape : tuple of int
            ``(m, B, *x.shape[1:])``: m restarts of a batch of B inputs (at least 3 dimensions).
        device : torch.device or str, optional
            Where to draw (the global RNG of that device is used); default the CPU.
        dtype : torch.dtype
            A floating dtype; :meth:`run` draws in ``x``'s dtype.

        Returns
        -------
        torch.Tensor
            Of ``shape``: row ``(j, b)`` uniform in the ε-ball (see Notes of the class), not yet projected
            onto the image box; zeros when ``random_start`` is False (nothing is drawn then).

        Raises
        ------
        ValueError
            If ``shape`` has fewer than 3 dimensions or a dimension < 1.
        TypeError
            If ``dtype`` is not a floating dtype.

        Notes
        -----
        The numbers depend on the shape and the RNG state only, never on ``x``: with the same RNG state,
        ``run(model, x, y)`` and ``run(model, x, y, start=draw_start((m, B, *x.shape[1:]), ...))`` return
        the same result, and the draw consumes the RNG exactly as :meth:`run` does without ``start``. The
        rows of restart j are ``[j, :]``, so the start of a sub-batch of rows ``b0 … b1 - 1`` of a larger
        batch is ``draw_start((m, B_large, ...))[:, b0:b1]``.

        Examples
        --------
        >>> import torch
        >>> attack = PGD(eps=0.1, restarts=2)
        >>> _ = torch.manual_seed(0)
        >>> start = attack.draw_start((2, 5, 3))
        >>> start.shape, bool(start.abs().max() <= 0.1)
        (torch.Size([2, 5, 3]), True)
        """
        shape = tuple(shape)
        if len(shape) < 3 or not all(isinstance(n, numbers.Integral) and n >= 1 for n in shape):
            raise ValueError(f"shape must be (restarts, B, *x.shape[1:]) with positive sizes, got {shape}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        if not self.random_start:
            return torch.zeros(shape, device=device, dtype=dtype)
        if self.norm == "linf":
            return (torch.rand(shape, device=device, dtype=dtype) * 2 - 1) * self.eps
        rows = shape[0] * shape[1]
        z = torch.randn((rows, *shape[2:]), device=device, dtype=dtype)
        radius = self.eps * torch.rand(rows, device=device, dtype=dtype) ** (1.0 / z[0].numel())
        return (z * _expand(radius / _norms(z).clamp_min(torch.finfo(dtype).tiny), z)).view(shape)

    def run(
        self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
        start: torch.Tensor | None = None,
    ) -> AttackResult:
        """Attack the batch ``(x, y)``.

        Parameters
        ----------
        model : torch.nn.Module or callable
            Maps a batch ``(N, *x.shape[1:])`` to logits ``(N, C)`` (normalization inside the model).
        x : torch.Tensor
            Clean inputs ``(B, ...)``, floating point, finite, in [0, 1].
        y : torch.Tensor
            Targets with ``y.shape[0] == B`` (class indices for ``"ce"``); moved to ``x``'s device.
        start : torch.Tensor, optional
            A raw start ``(restarts, B, *x.shape[1:])`` in place of :meth:`draw_start`'s (which is then not
            called and draws nothing): converted to ``x``'s device and dtype and projected onto
            :math:`S(x)` exactly as the attack's own draw is. Used even when ``random_start`` is False.

        Returns
        -------
        AttackResult
            ``deltas`` ``(m, B, ...)`` in ``x``'s dtype and ``losses`` ``(m, B)`` in the loss's dtype, both
            on ``x``'s device.

        Raises
        ------
        TypeError
            If ``x``, ``y`` or ``start`` is not a tensor, or ``x`` or ``start`` is not floating point.
        ValueError
            If ``x`` is empty, non-finite or outside [0, 1], ``y``'s batch size differs from ``x``'s,
            ``start`` has the wrong shape or non-finite entries, or the model or loss returns the wrong
            shape.
        RuntimeError
            If called under :func:`torch.inference_mode` (attacks need autograd).
        """
        x, y = validate_batch(x, y)
        if start is not None:
            start = validate_start(start, x, self.restarts)
        if torch.is_inference_mode_enabled():
            raise RuntimeError("attacks need autograd: call them outside torch.inference_mode()")
        modes = set_eval(model) if self.eval_mode else None
        try:
            with torch.enable_grad():
                return self._run(model, x, y, start)
        finally:
            if modes is not None:
                for module, training in modes:
                    module.training = training

    # -- the attack proper -------------------------------------------------------------------------------

    def _run(self, model, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor | None) -> AttackResult:
        m, B = self.restarts, x.shape[0]
        shape = (m, B, *x.shape[1:])
        xs = x.repeat(m, *([1] * (x.dim() - 1)))  # restart j occupies rows j·B … (j+1)·B - 1
        ys = y.repeat(m, *([1] * (y.dim() - 1)))
        if start is None and not self.random_start:
            delta = torch.zeros_like(xs)  # inside S(x) already: nothing to draw or project
        else:
            if start is None:
                start = self.draw_start(shape, device=x.device, dtype=x.dtype)
            delta = self._project(start.reshape(xs.shape), xs)
        best_delta, best_loss = delta, None
        for step in (*self.step_sizes, None):
            last = step is None
            loss, grad = self._loss_and_grad(model, xs, ys, delta, need_grad=not last)
            if best_loss is None:
                best_loss = loss
            elif self.keep_best:
                improved = loss > best_loss
                best_delta = torch.where(_expand(improved, delta), delta, best_delta)
                best_loss = torch.where(improved, loss, best_loss)
            else:
                best_delta, best_loss = delta, loss
            if not last:
                delta = self._project(delta + step * self._direction(grad), xs)
        return AttackResult(
            deltas=best_delta.detach().reshape(shape), losses=best_loss.detach().reshape(m, B)
        )

    def _loss_and_grad(self, model, xs, ys, delta, *, need_grad: bool):
        if not need_grad:
            with torch.no_grad():
                return self._loss(model(xs + delta), ys).detach(), None
        delta = delta.detach().requires_grad_(True)
        loss = self._loss(model(xs + delta), ys)
        if loss.requires_grad:
            # w.r.t. the input only: parameter .grad fields are neither read nor written
            (grad,) = torch.autograd.grad(loss.sum(), delta, allow_unused=True)
        else:
            grad = None
        if grad is None:  # the loss does not depend on the input: no ascent direction
            grad = torch.zeros_like(delta)
        return loss.detach(), grad

    def _loss(self, logits, ys) -> torch.Tensor:
        return per_sample_loss(self.loss, logits, ys)

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return grad.sign()
        return grad * _expand(1.0 / _norms(grad).clamp_min(torch.finfo(grad.dtype).tiny), grad)

    def _project(self, v: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Euclidean projection of ``v`` onto {δ : ‖δ‖ <= ε, 0 <= xs + δ <= 1}, per row."""
        return project(v, xs, eps=self.eps, norm=self.norm)


class FGSM(PGD):
    r"""FGSM with random start, the attack of FAST adversarial training [2]_: one step of size α from a random
    point of the ball, projected back.

    Parameters
    ----------
    eps : float
        Radius ε (> 0); 8/255 on CIFAR10.
    alpha : float
        Step size; FAST uses α = 1.25 ε = 10/255 at ε = 8/255.
    restarts, random_start, norm, loss, eval_mode, keep_best
        As in :class:`PGD`. With ``keep_best=True`` a sample whose step lowers the loss keeps its random
        start (the returned loss is that of the returned point); ``keep_best=False`` is FAST exactly as
        published (the stepped point).

    Notes
    -----
    :math:`\delta^0 \sim U([-\varepsilon, \varepsilon]^n)`,
    :math:`\delta = \Pi_{S(x)}(\delta^0 + \alpha \operatorname{sign}\nabla_\delta \ell(f(x + \delta^0), y))`.
    This is :class:`PGD` with ``steps=1``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> deltas = FGSM(restarts=2)(model, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]))
    >>> deltas.shape
    torch.Size([2, 3, 1, 2, 2])
    """

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        alpha: float = 10 / 255,
        restarts: int = 1,
        random_start: bool = True,
        norm: str = "linf",
        loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "ce",
        eval_mode: bool = True,
        keep_best: bool = True,
    ) -> None:
        super().__init__(
            eps=eps, alpha=alpha, steps=1, norm=norm, restarts=restarts, random_start=random_start,
            decay_after=None, loss=loss, eval_mode=eval_mode, keep_best=keep_best,
        )


def check_loss(loss):
    """``"ce"`` or a callable ``(logits, y) -> (N,)``, returned as is; anything else raises."""
    if isinstance(loss, str):
        if loss != "ce":
            raise ValueError(f"unknown loss {loss!r}; expected 'ce' or a callable (logits, y) -> (N,)")
    elif not callable(loss):
        raise TypeError(f"loss must be 'ce' or a callable (logits, y) -> (N,), got {type(loss).__name__}")
    return loss


def per_sample_loss(loss, logits, ys) -> torch.Tensor:
    """The attack's per-sample losses: cross-entropy for ``loss="ce"``, else ``loss(logits, ys)`` checked.

    Raises
    ------
    ValueError
        If the model did not return one row of logits per input, or the loss callable did not return
        shape ``(n,)``.
    """
    n = ys.shape[0]
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or logits.shape[0] != n:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the model must return one row of logits per input ({n} rows), got {got}")
    if loss == "ce":
        return F.cross_entropy(logits, ys, reduction="none")
    out = loss(logits, ys)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n,):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the loss callable must return per-sample losses of shape ({n},), got {got}")
    return out
