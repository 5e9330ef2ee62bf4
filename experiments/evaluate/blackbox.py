r"""A score-based black-box attack (random search in the style of Square Attack) for the masking check.

Gradient masking — shattered, vanishing or noisy gradients — makes white-box attacks such as PGD fail
while the model is not robust. An attack that never looks at a gradient cannot be fooled that way, so a
black-box attack that finds more adversarial examples than PGD or AutoAttack is the classic sign of an
unreliable evaluation (Athalye et al. [1]_, Carlini et al. [2]_). :class:`RandomSearch` is such an attack:
it only queries the model's logits.

References
----------
.. [1] Athalye, Carlini, Wagner. "Obfuscated gradients give a false sense of security." ICML 2018.
.. [2] Carlini, Athalye, Papernot, Brendel, Rauber, Tsipras, Goodfellow, Madry, Kurakin. "On evaluating
   adversarial robustness." arXiv:1902.06705, 2019.
.. [3] Andriushchenko, Croce, Flammarion, Hein. "Square Attack: a query-efficient black-box adversarial
   attack via random search." ECCV 2020.
"""

from __future__ import annotations

import math

import torch

__all__ = ["RandomSearch", "margin"]

# Square Attack's schedule [3]: the window's share of the image is halved after these iterations (of a
# 10 000-query budget; rescaled to the budget actually given).
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-sample classification margin :math:`z_y - \max_{j \ne y} z_j` (negative: misclassified).

    Examples
    --------
    >>> import torch
    >>> margin(torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]]), torch.tensor([0, 2])).tolist()
    [1.0, -2.0]
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -math.inf)
    return true - others.max(dim=1).values


class RandomSearch:
    r"""Score-based random search for adversarial examples in the l∞ or l2 ball (Square-Attack style).

    Parameters
    ----------
    eps : float
        Radius ε (> 0) in pixel units.
    norm : {"linf", "l2"}
        Threat model.
    queries : int
        Model queries per sample (>= 1), after the one at the starting point.
    p_init : float
        Initial share of the image covered by the square window, in (0, 1].

    Notes
    -----
    The attack minimizes the margin :math:`m(x') = z_y(x') - \max_{j \ne y} z_j(x')` over
    :math:`x' = x + \delta` with :math:`\delta` in the ε-ball and :math:`x'` in :math:`[0, 1]^n`; a sample
    is adversarial once :math:`m < 0`. Each iteration proposes, for every sample not yet adversarial, a
    change of :math:`\delta` inside a random square window of side
    :math:`s = \max(1, \operatorname{round}(\sqrt{p_t H W}))` and keeps it only if the margin decreases.

    - l∞ (as in Square Attack [3]_): the start is vertical stripes of :math:`\pm\varepsilon`; a proposal
      sets the window, per channel, to a random :math:`\pm\varepsilon`. Every iterate is a vertex of the
      ball, where l∞ adversarial examples are usually found.
    - l2 (a simpler random search than Square Attack's l2 version): the start is a uniformly random
      direction of norm ε; a proposal adds Gaussian noise restricted to the window, of norm
      :math:`\varepsilon\sqrt{p_t}`, then scales back into the ball.

    Both then clip to the image box, which keeps the perturbation inside the ball (clipping towards
    :math:`x \in [0, 1]^n` only shrinks coordinates). :math:`p_t` halves on Square Attack's schedule,
    rescaled to the query budget. Random numbers come from the global torch generator of ``x``'s device.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    >>> x_adv, fooled = RandomSearch(eps=0.5, queries=50).run(model, x, y)
    >>> bool((x_adv - x).abs().max() <= 0.5), fooled.dtype
    (True, torch.bool)
    """

    def __init__(self, *, eps: float, norm: str = "linf", queries: int = 1000, p_init: float = 0.8) -> None:
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if norm not in ("linf", "l2"):
            raise ValueError(f"unknown norm {norm!r}; expected 'linf' or 'l2'")
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
            raise ValueError(f"queries must be an integer >= 1, got {queries!r}")
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init!r}")
        self.eps, self.norm, self.queries, self.p_init = float(eps), norm, queries, float(p_init)

    def __repr__(self) -> str:
        return f"RandomSearch(eps={self.eps:.6g}, norm={self.norm!r}, queries={self.queries})"

    def share(self, t: int) -> float:
        """The window's share :math:`p_t` of the image at iteration ``t`` (0-based)."""
        scaled = t * 10000 / self.queries
        return self.p_init / 2 ** sum(scaled >= h for h in _HALVINGS)

    @torch.no_grad()
    def run(self, model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attack ``(x, y)``; return the adversarial inputs and which samples are misclassified there.

        Parameters
        ----------
        model : callable
            Maps images ``(B, C, H, W)`` in [0, 1] to logits ``(B, K)``; only its outputs are used. Put it
            in eval mode first.
        x, y : torch.Tensor
            Images ``(B, C, H, W)`` in [0, 1] and labels ``(B,)``.

        Returns
        -------
        x_adv : torch.Tensor
            Shape of ``x``: the point of lowest margin found per sample (inside the ball and [0, 1]).
        fooled : torch.Tensor
            ``(B,)`` bool: misclassified at ``x_adv`` (margin < 0).

        Raises
        ------
        ValueError
            If ``x`` is not a batch of images ``(B, C, H, W)``.
        """
        if x.dim() != 4:
            raise ValueError(f"RandomSearch needs images (B, C, H, W), got shape {tuple(x.shape)}")
        B, C, H, W = x.shape
        delta = self._start(x)
        best = margin(model(x + delta), y)
        rows = torch.arange(H, device=x.device).view(1, 1, H, 1)
        cols = torch.arange(W, device=x.device).view(1, 1, 1, W)
        for t in range(self.queries):
            active = (best >= 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            xa, d = x[active], delta[active]
            side = max(1, min(H, W, round(math.sqrt(self.share(t) * H * W))))
            top = torch.randint(0, H - side + 1, (active.numel(), 1, 1, 1), device=x.device)
            left = torch.randint(0, W - side + 1, (active.numel(), 1, 1, 1), device=x.device)
            window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            proposal = self._propose(d, window, side * side / (H * W))
            proposal = (xa + proposal).clamp(0, 1) - xa
            value = margin(model(xa + proposal), y[active])
            better = value < best[active]
            delta[active] = torch.where(better.view(-1, 1, 1, 1), proposal, d)
            best[active] = torch.where(better, value, best[active])
        return (x + delta).clamp(0, 1), best < 0

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.norm == "linf":
            stripes = torch.randint(0, 2, (B, C, 1, W), device=x.device, dtype=x.dtype) * 2 - 1
            delta = self.eps * stripes.expand(B, C, H, W)
        else:
            z = torch.randn_like(x)
            delta = z * (self.eps / z.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
        return (x + delta).clamp(0, 1) - x

    def _propose(self, delta: torch.Tensor, window: torch.Tensor, share: float) -> torch.Tensor:
        n, C = delta.shape[:2]
        if self.norm == "linf":
            signs = torch.randint(0, 2, (n, C, 1, 1), device=delta.device, dtype=delta.dtype) * 2 - 1
            return torch.where(window, self.eps * signs, delta)
        noise = torch.randn_like(delta) * window
        noise = noise * (self.eps * math.sqrt(share) / noise.flatten(1).norm(dim=1).clamp_min(1e-12)).view(
            -1, 1, 1, 1)
        proposal = delta + noise
        scale = (self.eps / proposal.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1)
        return proposal * scale.view(-1, 1, 1, 1)
