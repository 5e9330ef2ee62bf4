r"""Use an attack that returns adversarial examples (torchattacks' convention) where minmax expects
perturbations.

Two conventions meet here:

* **torchattacks, AutoAttack, advertorch**: the attack holds the model, and ``attack(x, y)`` (advertorch:
  ``adversary.perturb(x, y)``) returns the adversarial examples :math:`x_{adv} = x + \delta`, one batch.
* **minmax**: :meth:`PGD.run(model, x, y) <minmax.torch.attacks.PGD.run>` returns an
  :class:`~minmax.torch.attacks.AttackResult` with the m perturbations :math:`\delta_i`, shape
  ``(m, B, ...)``, and their per-sample losses (which pgd-max's worst-case selection reads), and
  ``PGD.__call__(model, x, y)`` returns the perturbations :math:`\delta` — **not** :math:`x_{adv}`.

:class:`AttackAdapter` turns the first into the second: m calls of the wrapped attack (each with its own
random start, when the attack has one) give :math:`\delta_i = x_{adv,i} - x`, checked and scored. The
result plugs into :class:`~minmax.torch.descent.DescentStep` (``attack=``) or into a loop of one's own that
ends in :func:`~minmax.torch.backward.danskin_backward`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from minmax.torch._checks import positive_float, positive_int, set_eval, validate_batch
from minmax.torch.attacks import NORMS, AttackResult, check_loss, per_sample_loss
from minmax.torch.projections import norms as _norms

__all__ = ["AttackAdapter"]


class AttackAdapter:
    r"""Wrap an attack ``attack(x, y) -> x_adv`` as a minmax attack with m restarts.

    Parameters
    ----------
    attack : callable
        ``attack(x, y)`` returns adversarial examples of ``x``'s shape in [0, 1] (a torchattacks attack, an
        advertorch ``adversary.perturb``, a function of one's own). It attacks its own model: build it on
        the model being trained.
    restarts : int
        m: the number of calls per batch (>= 1). A random-start attack gives m different maximizers; a
        deterministic one m copies of the same.
    loss : "ce" or callable
        The per-sample loss that scores the perturbations (:attr:`AttackResult.losses
        <minmax.torch.attacks.AttackResult>`, read by pgd-max's per-sample worst-case choice):
        cross-entropy, or ``loss(logits, y) -> (N,)``.
    eps : float, optional
        The threat model's radius: when given, every returned :math:`\delta_i` is checked to lie in the
        ``norm`` ball of radius ε (up to the rounding of :math:`x_{adv} - x` in ``x``'s dtype).
    norm : {"linf", "l2"}
        The norm of that check.
    eval_mode : bool
        Score the perturbations with the model in eval mode and restore every submodule's mode after
        (the attacks' convention).

    Raises
    ------
    TypeError
        ``attack`` or ``loss`` not callable, a count not an integer.
    ValueError
        ``restarts < 1``, ``eps <= 0`` or an unknown ``norm``.

    Notes
    -----
    The perturbation of restart i is :math:`\delta_i = x_{adv,i} - x`, computed in ``x``'s dtype and
    detached; a wrong shape, a non-finite entry, an :math:`x_{adv}` outside [0, 1], or (with ``eps``) a
    :math:`\delta_i` outside the ball raises ``ValueError`` naming the restart. Under
    ``DescentStep(distributed=True)`` each rank's calls draw their own random starts (the wrapped attack
    has no :meth:`~minmax.torch.attacks.PGD.draw_start`): valid, but not the numbers one process would
    draw on the union batch.

    Examples
    --------
    A torchattacks-style attack (it holds the model and returns ``x_adv``): one signed-gradient step.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> def fgsm(x, y, eps=8 / 255):
    ...     x = x.clone().requires_grad_(True)
    ...     loss = torch.nn.functional.cross_entropy(model(x), y)
    ...     (grad,) = torch.autograd.grad(loss, x)
    ...     return (x + eps * grad.sign()).clamp(0, 1).detach()
    >>> attack = AttackAdapter(fgsm, restarts=2, eps=8 / 255)
    >>> x, y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    >>> result = attack.run(model, x, y)
    >>> result.deltas.shape, result.losses.shape
    (torch.Size([2, 5, 3, 2, 2]), torch.Size([2, 5]))
    >>> torch.allclose(x + attack(model, x, y)[0], fgsm(x, y))    # __call__ returns δ, not x_adv
    True
    """

    def __init__(self, attack: Callable, *, restarts: int = 1,
                 loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "ce",
                 eps: float | None = None, norm: str = "linf", eval_mode: bool = True) -> None:
        if not callable(attack):
            raise TypeError(f"attack must be a callable attack(x, y) -> x_adv, got {type(attack).__name__}")
        self.attack = attack
        self.restarts = positive_int(restarts, "restarts")
        self.loss = check_loss(loss)
        self.eps = None if eps is None else positive_float(eps, "eps")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
        self.norm = norm
        self.eval_mode = bool(eval_mode)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.attack!r}, restarts={self.restarts}, loss={self.loss!r}, "
                f"eps={self.eps}, norm={self.norm!r}, eval_mode={self.eval_mode})")

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The perturbations δ, shape ``(restarts, B, *x.shape[1:])`` (as :meth:`PGD.__call__
        <minmax.torch.attacks.PGD.__call__>`); see :meth:`run`."""
        return self.run(model, x, y).deltas

    def run(self, model, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        """Call the wrapped attack ``restarts`` times on ``(x, y)``: the perturbations and their losses.

        Parameters
        ----------
        model : torch.nn.Module or callable
            The model the wrapped attack attacks; used here only to score the perturbations.
        x : torch.Tensor
            Clean inputs ``(B, ...)``, floating point, finite, in [0, 1].
        y : torch.Tensor
            Targets with ``y.shape[0] == B``.

        Returns
        -------
        AttackResult
            ``deltas`` ``(m, B, ...)`` in ``x``'s dtype and ``losses`` ``(m, B)``, detached.

        Raises
        ------
        TypeError, ValueError
            Bad ``x``/``y`` (as :meth:`minmax.torch.attacks.PGD.run`), or an attack output that is not a
            tensor of ``x``'s shape, finite, in [0, 1] and (with ``eps``) in the ball.
        """
        x, y = validate_batch(x, y)
        deltas = torch.stack([self._delta(self.attack(x, y), x, i) for i in range(self.restarts)])
        modes = set_eval(model) if self.eval_mode else None
        try:
            with torch.no_grad():
                logits = model((x.unsqueeze(0) + deltas).flatten(0, 1))
                losses = self._loss(logits, y.repeat(self.restarts, *([1] * (y.dim() - 1))))
        finally:
            if modes is not None:
                for module, training in modes:
                    module.training = training
        return AttackResult(deltas=deltas, losses=losses.detach().reshape(self.restarts, x.shape[0]))

    def _delta(self, x_adv, x: torch.Tensor, i: int) -> torch.Tensor:
        if not isinstance(x_adv, torch.Tensor):
            raise TypeError(f"the attack must return a tensor x_adv (restart {i}), got "
                            f"{type(x_adv).__name__}")
        if tuple(x_adv.shape) != tuple(x.shape):
            raise ValueError(f"the attack must return x_adv of x's shape {tuple(x.shape)} (restart {i}), got "
                             f"{tuple(x_adv.shape)}")
        x_adv = x_adv.detach().to(device=x.device, dtype=x.dtype)
        if not bool(torch.isfinite(x_adv).all()):
            raise ValueError(f"the attack returned non-finite x_adv (restart {i})")
        lo, hi = torch.aminmax(x_adv)
        if lo < 0 or hi > 1:
            raise ValueError(f"the attack must return x_adv in [0, 1] (restart {i}), got values in "
                             f"[{float(lo):.6g}, {float(hi):.6g}]; an attack that returns the perturbation δ "
                             f"needs no adapter")
        delta = x_adv - x
        if self.eps is not None:
            size = float(_norms(delta).max()) if self.norm == "l2" else float(delta.abs().max())
            # x + δ (by the attack) and x_adv - x (here) each round by at most one ulp of an entry <= 1, per
            # coordinate; the attack's own projection onto the ball rounds by a few ulps of ε; an l2 norm
            # adds the n coordinate errors (at most sqrt(n) times one of them)
            ulp = torch.finfo(x.dtype).eps
            slack = 4 * ulp * (1 + self.eps) * (math.sqrt(x[0].numel()) if self.norm == "l2" else 1.0)
            if size > self.eps + slack:
                raise ValueError(f"restart {i}: the attack's perturbation has {self.norm} norm {size:.6g} > "
                                 f"eps = {self.eps:.6g}")
        return delta

    def _loss(self, logits, ys) -> torch.Tensor:
        return per_sample_loss(self.loss, logits, ys)
