r"""Inner maximization for adversarial training: PGD (l∞ / l2, batched restarts, 1/t decay) and FGSM/FAST.

The attacks approximately solve, for every sample of a batch, the inner problem of the min-max objective

.. math:: \max_{\delta \in S(x)} \ell(f_\theta(x + \delta), y), \qquad
          S(x) = \{\delta : \|\delta\|_p \le \varepsilon,\ 0 \le x + \delta \le 1\},

whose maximizers are the set :math:`S^*(\theta)` over which Danskin's theorem takes its max (the paper's
eq. 4). The m restarts of an attack are m points of (an approximation of) that set: the adapter's training
step builds the matrix of gradients :math:`M = [g_1, \dots, g_m]` from them.

Conventions (those of torchattacks, AutoAttack and RobustBench): inputs in [0, 1], normalization inside the
model, ε in pixel units, the model in eval mode during the attack (then restored), uniform random start,
restarts scored per sample. Attacks differentiate with respect to the input only
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

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["FGSM", "NORMS", "PGD", "AttackResult", "worst_case"]

NORMS = ("linf", "l2")

# Iterations of the l2-ball ∩ box projection's active-set search. Every iterate is feasible; it is exact once
# the set of clipped coordinates settles, which took at most 4 iterations to float32 precision on images with
# saturated pixels and steps far outside the ball.
_ACTIVE_SET_STEPS = 8


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

    with :math:`\Pi_{S(x)}` the exact Euclidean projection onto :math:`S(x)` = ε-ball ∩ [0, 1]^n. For l∞ it is
    a coordinatewise clamp. For l2, with :math:`\lambda \ge 0` the multiplier of the ball constraint, it is
    :math:`\operatorname{clip}_{[-x, 1-x]}(s v)` with :math:`s = 1/(1+\lambda)`, the largest
    :math:`s \in (0, 1]` whose point lies in the ball (projecting onto the ball and then clipping, the usual
    shortcut, is feasible but not the nearest point). With F the coordinates not clipped at the current s and
    b the squared norm of the clipped ones, :math:`s \leftarrow \sqrt{(\varepsilon^2 - b)/\|v_F\|^2}`
    from :math:`s = \varepsilon/\|v\|`: the iterates increase to the solution, every one is feasible, and
    the last is exact once F settles (a few iterations).

    **Step schedule.** :math:`\alpha_t = \alpha` for :math:`t \le T` and :math:`\alpha_t = \alpha T / t` for
    :math:`t > T`, where T = ``decay_after`` (continuous at t = T). See :attr:`step_sizes`.

    **Random start.** l∞: :math:`\delta^0 \sim U([-\varepsilon, \varepsilon]^n)`. l2: uniform in the ball,
    :math:`\delta^0 = \varepsilon\, u^{1/n} z/\|z\|_2` with :math:`z \sim N(0, I_n)`, :math:`u \sim U(0, 1)`
    (the direction is uniform on the sphere and the radius has the density :math:`\propto r^{n-1}`; in high
    dimension it is close to ε). Either is then projected onto [0, 1]^n, as in [2]_.

    **Best iterate.** The loss at :math:`\delta^t` is the one computed in the forward pass that yields the
    gradient of step t+1 (one extra forward pass without gradient scores :math:`\delta^K`), so the returned
    loss is the loss at the returned iterate, not at a neighbour. A sample keeps the earliest iterate of
    highest loss among :math:`\delta^0, \dots, \delta^K`.

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
        self.eps = _positive_float(eps, "eps")
        self.alpha = _positive_float(alpha, "alpha")
        self.steps = _positive_int(steps, "steps")
        self.restarts = _positive_int(restarts, "restarts")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        self.norm = norm
        self.decay_after = None if decay_after is None else _positive_int(decay_after, "decay_after")
        if isinstance(loss, str):
            if loss != "ce":
                raise ValueError(f"unknown loss {loss!r}; expected 'ce' or a callable (logits, y) -> (N,)")
        elif not callable(loss):
            raise TypeError(f"loss must be 'ce' or a callable (logits, y) -> (N,), got {type(loss).__name__}")
        self.loss = loss
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

    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        """The perturbations, shape ``(restarts, B, *x.shape[1:])``; see :meth:`run`."""
        return self.run(model, x, y).deltas

    def run(
        self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
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

        Returns
        -------
        AttackResult
            ``deltas`` ``(m, B, ...)`` in ``x``'s dtype and ``losses`` ``(m, B)`` in the loss's dtype, both
            on ``x``'s device.

        Raises
        ------
        TypeError
            If ``x`` or ``y`` is not a tensor, or ``x`` is not floating point.
        ValueError
            If ``x`` is empty, non-finite or outside [0, 1], ``y``'s batch size differs from ``x``'s, or the
            model or loss returns the wrong shape.
        RuntimeError
            If called under :func:`torch.inference_mode` (attacks need autograd).
        """
        x, y = _validate_batch(x, y)
        if torch.is_inference_mode_enabled():
            raise RuntimeError("attacks need autograd: call them outside torch.inference_mode()")
        modes = _set_eval(model) if self.eval_mode else None
        try:
            with torch.enable_grad():
                return self._run(model, x, y)
        finally:
            if modes is not None:
                for module, training in modes:
                    module.training = training

    # -- the attack proper -------------------------------------------------------------------------------

    def _run(self, model, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        m, B = self.restarts, x.shape[0]
        xs = x.repeat(m, *([1] * (x.dim() - 1)))  # restart j occupies rows j·B … (j+1)·B - 1
        ys = y.repeat(m, *([1] * (y.dim() - 1)))
        delta = self._start(xs)
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
        shape = (m, B, *x.shape[1:])
        return AttackResult(
            deltas=best_delta.detach().reshape(shape), losses=best_loss.detach().reshape(m, B)
        )

    def _start(self, xs: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return torch.zeros_like(xs)
        if self.norm == "linf":
            delta = (torch.rand_like(xs) * 2 - 1) * self.eps
        else:
            n = xs[0].numel()
            z = torch.randn_like(xs)
            radius = self.eps * torch.rand(xs.shape[0], device=xs.device, dtype=xs.dtype) ** (1.0 / n)
            delta = z * _expand(radius / _norms(z).clamp_min(torch.finfo(xs.dtype).tiny), z)
        return self._project(delta, xs)

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
        n = ys.shape[0]
        if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or logits.shape[0] != n:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"the model must return one row of logits per input ({n} rows), got {got}")
        if self.loss == "ce":
            return F.cross_entropy(logits, ys, reduction="none")
        loss = self.loss(logits, ys)
        if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (n,):
            got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"the loss callable must return per-sample losses of shape ({n},), got {got}")
        return loss

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return grad.sign()
        return grad * _expand(1.0 / _norms(grad).clamp_min(torch.finfo(grad.dtype).tiny), grad)

    def _project(self, v: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Euclidean projection of ``v`` onto {δ : ‖δ‖ <= ε, 0 <= xs + δ <= 1}, per sample."""
        if self.norm == "linf":
            # clamping to the image first, then to the ball, keeps both constraints exact in floating point
            return ((xs + v).clamp(0, 1) - xs).clamp(-self.eps, self.eps)
        lo, hi = -xs, 1 - xs
        tiny = torch.finfo(v.dtype).tiny
        s = (self.eps / _norms(v).clamp_min(tiny)).clamp(max=1)  # feasible: clipping only shrinks
        for _ in range(_ACTIVE_SET_STEPS):
            sv = _expand(s, v) * v
            free = (sv > lo) & (sv < hi)
            a = _sums(v * v * free)  # ‖s v_F‖² = s² a on the free coordinates
            # the clipped coordinates stay clipped, at the same values, for every larger s
            b = _sums(torch.where(free, 0, torch.clamp(sv, lo, hi)) ** 2)
            s_next = torch.where(a > 0, ((self.eps**2 - b).clamp_min(0) / a.clamp_min(tiny)).sqrt(), 1.0)
            s = torch.maximum(s, s_next.to(s.dtype).clamp(max=1))
        delta = torch.clamp(_expand(s, v) * v, lo, hi)
        # guard against rounding: the last iterate may exceed ε by an ulp
        scale = (self.eps / _norms(delta).clamp_min(tiny)).clamp(max=1)
        return delta * _expand(scale, delta)


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


# -- helpers ---------------------------------------------------------------------------------------------


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per-sample l2 norms of a (N, ...) tensor, accumulated in at least float32."""
    acc = torch.promote_types(t.dtype, torch.float32)
    return torch.linalg.vector_norm(t.flatten(1), dim=1, dtype=acc).to(t.dtype)


def _sums(t: torch.Tensor) -> torch.Tensor:
    """Per-sample sums of a (N, ...) tensor, accumulated in at least float32."""
    return t.flatten(1).sum(dim=1, dtype=torch.promote_types(t.dtype, torch.float32))


def _expand(per_sample: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (N,) tensor as (N, 1, …, 1) to broadcast against ``like`` of shape (N, ...)."""
    return per_sample.view(-1, *([1] * (like.dim() - 1)))


def _set_eval(model) -> list | None:
    """Put ``model`` in eval mode; return every submodule's previous mode, to restore exactly."""
    if not isinstance(model, torch.nn.Module):
        return None
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    return modes


def _validate_batch(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point (images in [0, 1]), got dtype {x.dtype}")
    if x.dim() < 2 or x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"x must be a non-empty batch of shape (B, ...), got shape {tuple(x.shape)}")
    if y.dim() < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size: x has shape {tuple(x.shape)}, "
            f"y has shape {tuple(y.shape)}"
        )
    if x.is_inference():  # a tensor made under inference_mode cannot enter autograd; a copy can
        x = x.clone()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x has non-finite entries (nan or inf); inputs must be finite and in [0, 1]")
    lo, hi = torch.aminmax(x)
    if lo < 0 or hi > 1:
        raise ValueError(
            f"x must lie in [0, 1] (normalization belongs inside the model), got values in [{float(lo):.6g}, "
            f"{float(hi):.6g}]"
        )
    return x.detach(), y.to(x.device)


def _positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)
