r"""The candidate update directions of one batch, each a unit vector over all trainable parameters.

One PGD attack with m restarts (the *direction attack*, the run's training attack: its ε, step and K)
gives m perturbed batches :math:`x + \delta_i` and, per sample, the worst of them. The parameter gradients
:math:`g_1, \dots, g_m` at the m batches and :math:`g_{\max}` at the per-sample worst batch come from
:func:`minmax.torch.gradients.set_gradients` in one call, and define the five directions the training
variants of the paper step along (each normalized, :math:`\|\gamma\| = 1` over the concatenation of all
parameters):

=============  ========================================================================================
``ddi``        :math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|`, :math:`\alpha^* = \operatorname{argmin}_{\alpha\in
               \Delta}\|M\alpha\|^2`, :math:`M = [g_1 \dots g_m]` (Theorem 2; :func:`minmax.steepest_descent`)
``pgd``        :math:`-g_1/\|g_1\|`: the gradient at one PGD attack (restart 1 is one ordinary attack)
``pgd-max``    :math:`-g_{\max}/\|g_{\max}\|`: the gradient at the per-sample worst of the m restarts
``pgd-min``    :math:`-g_k/\|g_k\|`, :math:`k = \operatorname{argmin}_i \|g_i\|`: the lowest-norm gradient
``mean``       :math:`-\bar g/\|\bar g\|`, :math:`\bar g = \frac1m\sum_i g_i`
=============  ========================================================================================

For each, the *model slope* :math:`\max_i\langle\gamma, g_i\rangle` is the one-sided slope of the
linearized finite-set loss :math:`\max_i L_i + \langle g_i, t\gamma\rangle` that DDi minimizes: by
Theorem 2 no unit direction has a lower one than ``ddi``'s :math:`-\|M\alpha^*\|`. It is measured on the
very attacks that built the directions (in-sample); the probe's independent attack gives the out-of-sample
slope (:mod:`experiments.directions.probe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from minmax.danskin import inner_products, steepest_descent
from minmax.gram import combine, gram
from minmax.torch.attacks import worst_case
from minmax.torch.gradients import set_gradients

__all__ = ["DIRECTIONS", "Candidates", "ProbeError", "build_directions", "unit_direction"]

#: The directions, in report order.
DIRECTIONS = ("ddi", "pgd", "pgd-max", "pgd-min", "mean")


class ProbeError(ValueError):
    """The probe cannot go on: a loss or gradient is not finite (the message says where)."""


@dataclass(frozen=True, eq=False)
class Candidates:
    """The directions of one batch and what the direction attack saw.

    Attributes
    ----------
    directions : dict of str to list of torch.Tensor or None
        Per name of :data:`DIRECTIONS`, one block per trainable parameter (``trainable_parameters``
        order), of unit norm over all blocks; None when the vector to normalize is zero (DDi at a certified
        stationary point, where no direction decreases every :math:`g_i`).
    model_slopes : dict of str to float
        :math:`\\max_i\\langle\\gamma, g_i\\rangle` over the m restart gradients (NaN when undefined).
    cosines : numpy.ndarray
        ``(5, 5)`` inner products of the unit directions (NaN where one is undefined).
    gram : numpy.ndarray
        ``(m + 1, m + 1)`` float64 Gram matrix of :math:`g_1, \\dots, g_m, g_{\\max}`.
    losses : numpy.ndarray
        ``(m + 1,)`` batch losses at the m restarts and at the per-sample worst batch.
    attack_loss : float
        The direction attack's robust batch loss: per sample the worst of the m restarts, mean over the
        batch (equal to ``losses[-1]`` up to rounding).
    negative_inner_products : int
        Pairs :math:`i < j \\le m` with :math:`\\langle g_i, g_j\\rangle < 0`, of ``pairs`` = m(m-1)/2.
    pairs : int
    ddi : dict
        The QP behind ``ddi``: ``weights`` (α*), ``norm`` (:math:`\\|M\\alpha^*\\|`), ``gap``, ``status``,
        ``stationary``.
    start : torch.Tensor
        The raw random start ``(m, B, ...)`` of the direction attack (kept so a test can check that the
        probe never reuses it).
    """

    directions: dict
    model_slopes: dict
    cosines: np.ndarray
    gram: np.ndarray
    losses: np.ndarray
    attack_loss: float
    negative_inner_products: int
    pairs: int
    ddi: dict
    start: torch.Tensor


def unit_direction(blocks) -> list | None:
    r""":math:`-v/\|v\|` for the vector ``v`` given as one tensor per parameter, the norm taken in float64.

    Returns None when :math:`\|v\|` is zero or not finite (there is no unit direction to give).

    Examples
    --------
    >>> import torch
    >>> v = [torch.tensor([3.0], dtype=torch.float64), torch.tensor([[0.0, 4.0]], dtype=torch.float64)]
    >>> [b.tolist() for b in unit_direction(v)]
    [[-0.6], [[-0.0, -0.8]]]
    >>> unit_direction([torch.zeros(3)]) is None
    True
    """
    norm = math.sqrt(sum(float(torch.sum(b.double() ** 2)) for b in blocks))
    if not (norm > 0 and math.isfinite(norm)):
        return None
    return [(b.double() / -norm).to(b.dtype) for b in blocks]


def _dot(a, b) -> float:
    return float(sum(torch.sum(u.double() * v.double()) for u, v in zip(a, b, strict=True)))


def build_directions(model, x: torch.Tensor, y: torch.Tensor, attack, *, start: torch.Tensor,
                     strategy: str = "auto", qp_method: str = "wolfe") -> Candidates:
    r"""Attack the batch with m restarts and build the five candidate directions.

    Parameters
    ----------
    model : torch.nn.Module
        Used in its current mode for the gradients (the probe puts it in eval mode, so the gradients and
        the probe's losses are of the same function); the attack runs in eval mode.
    x, y : torch.Tensor
        The batch: inputs in [0, 1] and class labels.
    attack : minmax.torch.attacks.PGD
        The direction attack, with ``restarts = m >= 2``.
    start : torch.Tensor
        Its raw random start ``(m, B, *x.shape[1:])`` (:meth:`~minmax.torch.attacks.PGD.draw_start`), drawn
        by the caller from the batch's direction seed.
    strategy : {"auto", "loop", "func"}
        How :func:`~minmax.torch.gradients.set_gradients` takes the m + 1 gradients.
    qp_method : str
        The min-norm-point method of :func:`minmax.steepest_descent`.

    Returns
    -------
    Candidates

    Raises
    ------
    ValueError
        If the attack has fewer than 2 restarts.
    ProbeError
        If a loss or gradient at the attacked batches is not finite (an unusable checkpoint).
    """
    m = attack.restarts
    if m < 2:
        raise ValueError(f"the direction attack needs m >= 2 restarts to build DDi and pgd-max/min, got {m}")
    result = attack.run(model, x, y, start=start)
    x = x.detach()
    sets = torch.cat([x + result.deltas, (x + worst_case(result)).unsqueeze(0)]).clamp(0, 1)
    sg = set_gradients(model, sets, y, strategy=strategy)
    losses = sg.losses.double().cpu().numpy()
    if not sg.finite or not np.all(np.isfinite(losses)):
        raise ProbeError(f"non-finite loss or gradient at the attacked batches (losses {losses.tolist()}): "
                         f"the checkpoint's model is unusable")
    blocks = sg.blocks
    G = gram(blocks).cpu().numpy()
    restarts = [b[:m] for b in blocks]

    sd = steepest_descent(restarts, gram=G[:m, :m], method=qp_method)
    k = int(np.argmin(np.diag(G)[:m]))
    mean = combine(restarts, np.full(m, 1.0 / m))
    directions = {
        "ddi": None if sd.stationary else list(sd.direction),
        "pgd": unit_direction([b[0] for b in blocks]),
        "pgd-max": unit_direction([b[m] for b in blocks]),
        "pgd-min": unit_direction([b[k] for b in blocks]),
        "mean": unit_direction(mean),
    }
    model_slopes = {name: float(np.max(inner_products(restarts, d))) if d is not None else float("nan")
                    for name, d in directions.items()}
    cos = np.full((len(DIRECTIONS), len(DIRECTIONS)), np.nan)
    for i, a in enumerate(DIRECTIONS):
        for j, b in enumerate(DIRECTIONS[i:], start=i):
            if directions[a] is not None and directions[b] is not None:
                cos[i, j] = cos[j, i] = _dot(directions[a], directions[b])
    attack_loss = float(result.losses.max(0).values.double().mean())
    return Candidates(
        directions=directions, model_slopes=model_slopes, cosines=cos, gram=G, losses=losses,
        attack_loss=attack_loss, negative_inner_products=int(np.sum(np.triu(G[:m, :m], 1) < 0)),
        pairs=m * (m - 1) // 2,
        ddi={"weights": sd.weights.tolist(), "norm": float(sd.norm), "gap": float(sd.qp.gap),
             "status": sd.qp.status.value, "stationary": bool(sd.stationary)},
        start=start)
