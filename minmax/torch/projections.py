r"""Euclidean projections onto the attacks' feasible sets :math:`S(x)` = ε-ball ∩ image box, per sample.

For a clean input :math:`x \in [0, 1]^n` the perturbations allowed by an attack are

.. math:: S(x) = \{\delta : \|\delta\|_p \le \varepsilon,\ 0 \le x + \delta \le 1\},
          \qquad p \in \{\infty, 2\}.

:func:`project` maps every row of a batch of perturbations ``v`` (shape ``(N, ...)``, one row per sample)
to its nearest point of :math:`S(x_i)`. The attacks of :mod:`minmax.torch.attacks` use it for their
random start and after every ascent step.

Notes
-----
**l∞.** The set is a box, :math:`[\max(-\varepsilon, -x), \min(\varepsilon, 1 - x)]`, and the projection is a
coordinatewise clamp. It is computed as ``clamp(clamp(x + v, 0, 1) - x, -ε, ε)``, which keeps both
constraints exact in floating point.

**l2.** The set is a ball intersected with the box :math:`[-x, 1 - x]`. With :math:`\lambda \ge 0` the
multiplier of the ball constraint, the KKT conditions give the projection as
:math:`\operatorname{clip}_{[-x, 1-x]}(s v)` with :math:`s = 1/(1+\lambda)`: the largest
:math:`s \in (0, 1]` whose clipped point lies in the ball (projecting onto the ball and then clipping, the
usual shortcut, is feasible but not the nearest point). With F the coordinates not clipped at the current s
and b the squared norm of the clipped ones,

.. math:: s \leftarrow \sqrt{(\varepsilon^2 - b)/\|v_F\|^2}, \qquad \text{from } s = \varepsilon/\|v\|:

the clipped coordinates stay clipped, at the same values, for every larger s, so the iterates increase to
the solution, every one is feasible, and the last is exact once F settles (a few iterations; see
:data:`ACTIVE_SET_STEPS`).

Examples
--------
>>> import torch
>>> x = torch.tensor([[0.9, 0.5]])
>>> d = project(torch.tensor([[0.3, -0.3]]), x, eps=0.2, norm="linf")  # the box binds, then the ball
>>> [round(v, 6) for v in d[0].tolist()]
[0.1, -0.2]
>>> d = project(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 0.0]]), eps=1.0, norm="l2")
>>> [round(v, 6) for v in d[0].tolist()]
[0.6, 0.8]
"""

from __future__ import annotations

import torch

__all__ = ["ACTIVE_SET_STEPS", "project", "project_l2", "project_linf"]

#: Iterations of the l2-ball ∩ box projection's active-set search. Every iterate is feasible; it is exact
#: once the set of clipped coordinates settles, which took at most 4 iterations to float32 precision on
#: images with saturated pixels and steps far outside the ball.
ACTIVE_SET_STEPS = 8


def project(v: torch.Tensor, x: torch.Tensor, *, eps: float, norm: str) -> torch.Tensor:
    """Per-row Euclidean projection of ``v`` onto :math:`S(x)` for ``norm`` in ``("linf", "l2")``.

    Parameters
    ----------
    v : torch.Tensor
        Perturbations, shape ``(N, ...)``, one row per sample.
    x : torch.Tensor
        The clean inputs of the same shape, in [0, 1].
    eps : float
        Radius ε > 0.
    norm : {"linf", "l2"}
        The ball.

    Returns
    -------
    torch.Tensor
        The projections, shape and dtype of ``v``.

    Raises
    ------
    ValueError
        If ``norm`` is neither ``"linf"`` nor ``"l2"``.
    """
    if norm == "linf":
        return project_linf(v, x, eps)
    if norm == "l2":
        return project_l2(v, x, eps)
    raise ValueError(f"unknown norm {norm!r}; expected 'linf' or 'l2'")


def project_linf(v: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Projection onto {δ : ‖δ‖∞ <= ε, 0 <= x + δ <= 1} (a clamp; see the module notes)."""
    # clamping to the image first, then to the ball, keeps both constraints exact in floating point
    return ((x + v).clamp(0, 1) - x).clamp(-eps, eps)


def project_l2(v: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Projection onto {δ : ‖δ‖₂ <= ε, 0 <= x + δ <= 1}, per row (active-set search; see the module notes)."""
    lo, hi = -x, 1 - x
    tiny = torch.finfo(v.dtype).tiny
    s = (eps / norms(v).clamp_min(tiny)).clamp(max=1)  # feasible: clipping only shrinks
    for _ in range(ACTIVE_SET_STEPS):
        sv = expand(s, v) * v
        free = (sv > lo) & (sv < hi)
        a = sums(v * v * free)  # ‖s v_F‖² = s² a on the free coordinates
        # the clipped coordinates stay clipped, at the same values, for every larger s
        b = sums(torch.where(free, 0, torch.clamp(sv, lo, hi)) ** 2)
        s_next = torch.where(a > 0, ((eps**2 - b).clamp_min(0) / a.clamp_min(tiny)).sqrt(), 1.0)
        s = torch.maximum(s, s_next.to(s.dtype).clamp(max=1))
    delta = torch.clamp(expand(s, v) * v, lo, hi)
    # guard against rounding: the last iterate may exceed ε by an ulp
    scale = (eps / norms(delta).clamp_min(tiny)).clamp(max=1)
    return delta * expand(scale, delta)


# -- per-row reductions shared with the attacks ------------------------------------------------------------


def norms(t: torch.Tensor) -> torch.Tensor:
    """Per-row l2 norms of a (N, ...) tensor, accumulated in at least float32."""
    acc = torch.promote_types(t.dtype, torch.float32)
    return torch.linalg.vector_norm(t.flatten(1), dim=1, dtype=acc).to(t.dtype)


def sums(t: torch.Tensor) -> torch.Tensor:
    """Per-row sums of a (N, ...) tensor, accumulated in at least float32."""
    return t.flatten(1).sum(dim=1, dtype=torch.promote_types(t.dtype, torch.float32))


def expand(per_row: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a (N,) tensor as (N, 1, …, 1) to broadcast against ``like`` of shape (N, ...)."""
    return per_row.view(-1, *([1] * (like.dim() - 1)))
