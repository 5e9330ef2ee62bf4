r"""The probe: the robust batch loss along each candidate direction, measured by an independent attack.

For batch b with candidate directions :math:`\gamma` (:mod:`experiments.directions.candidates`), the probe
estimates

.. math:: \varphi_b(\theta + t\gamma) = \frac1B \sum_{n \in b} \max_{\delta_n \in S(x_n)}
          \ell(f_{\theta + t\gamma}(x_n + \delta_n), y_n)

at :math:`t = 0` and on a grid :math:`t_1 < \dots < t_T` by a *probe attack*: PGD with R restarts of
:math:`K_p` steps, the per-sample worst restart, averaged over the batch (:func:`robust_loss`). It is
independent of the direction attack: its random start comes from its own seed (:func:`batch_seeds`), it
never starts from the direction attack's perturbations, and it is re-run from scratch at every point. The
same start is used at every t and for every direction of a batch (common random numbers), so the
differences :math:`\hat\varphi_b(\theta + t\gamma) - \hat\varphi_b(\theta)` are not swamped by the
attack's own randomness.

Every forward pass runs in eval mode (BatchNorm uses its running statistics, which the probe never moves):
the gradients that build the directions and the losses that judge them are of one function of θ. Weight
decay is not part of :math:`\varphi`.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from experiments.common.seeds import derive_seed
from experiments.directions.candidates import DIRECTIONS, ProbeError, build_directions
from minmax.torch.gradients import trainable_parameters

__all__ = ["batch_seeds", "draw_start", "probe_batch", "robust_loss", "run_probe", "select_batches"]

# purpose tags of derive_seed: the batches, the direction attacks and the probe attacks draw from
# unrelated streams
_BATCHES, _DIRECTION_ATTACK, _PROBE_ATTACK = 71, 72, 73


def batch_seeds(seed: int, batch: int) -> dict:
    """The seeds of batch ``batch``'s direction attack and probe attack (different streams of ``seed``).

    Examples
    --------
    >>> s = batch_seeds(0, 3)
    >>> sorted(s), s["directions"] != s["probe"]
    (['directions', 'probe'], True)
    """
    return {"directions": derive_seed(seed, batch, _DIRECTION_ATTACK),
            "probe": derive_seed(seed, batch, _PROBE_ATTACK)}


def select_batches(n: int, batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``batches`` disjoint random batches of ``batch_size`` indices out of ``range(n)`` (seeded).

    Raises
    ------
    ValueError
        If a count is below 1 or ``batches * batch_size > n``.
    """
    if batches < 1 or batch_size < 1:
        raise ValueError(f"batches and batch size must be >= 1, got {batches} and {batch_size}")
    if batches * batch_size > n:
        raise ValueError(f"{batches} batches of {batch_size} need {batches * batch_size} examples; the "
                         f"split has {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, _BATCHES)))
    return [perm[b * batch_size:(b + 1) * batch_size] for b in range(batches)]


def draw_start(attack, shape, *, seed: int, device, dtype=torch.float32) -> torch.Tensor:
    """``attack.draw_start(shape)`` from ``seed``, leaving the global generators as they were."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return attack.draw_start(tuple(shape), device=device, dtype=dtype)


def robust_loss(model, x: torch.Tensor, y: torch.Tensor, attack, *, start: torch.Tensor) -> float:
    r"""Robust loss :math:`\hat\varphi = \frac1B\sum_n \max_r \ell(f(x_n + \delta_{r,n}), y_n)` by ``attack``.

    The per-sample losses are the attack's own, at exactly the returned perturbations
    (:class:`~minmax.torch.attacks.AttackResult`), so :math:`\hat\varphi \le \varphi` whatever the attack
    (a lower bound of the robust loss; equality when it finds every sample's maximizer).
    """
    result = attack.run(model, x, y, start=start)
    return float(result.losses.max(0).values.double().mean())


@contextlib.contextmanager
def displaced(params, theta, direction, t: float):
    """Set the parameters to ``theta + t * direction`` for the ``with`` block, then back to ``theta``."""
    try:
        with torch.no_grad():
            for p, p0, g in zip(params, theta, direction, strict=True):
                p.copy_(p0 + t * g)
        yield
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, theta, strict=True):
                p.copy_(p0)


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def probe_batch(model, x, y, *, direction_attack, probe_attack, grid, seeds: dict, strategy: str = "auto",
                tick=None) -> dict:
    r"""Build the directions of one batch and measure :math:`\hat\varphi` along each of them.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode; its parameters are moved and restored exactly (copied back from a saved copy).
    x, y : torch.Tensor
        The batch.
    direction_attack, probe_attack : minmax.torch.attacks.PGD
        The attack that builds the directions (m restarts) and the independent one that measures them.
    grid : sequence of float
        The steps :math:`t_1 < \dots < t_T`.
    seeds : dict
        ``{"directions": int, "probe": int}`` (:func:`batch_seeds`).
    strategy : str
        Gradient strategy (:func:`minmax.torch.gradients.set_gradients`).
    tick : callable, optional
        Called with no argument after the directions are built and after every probe evaluation (a
        progress bar's ``update``).

    Returns
    -------
    dict
        ``phi0`` (:math:`\hat\varphi(\theta)`), ``phi`` (name → T values, None where the direction is
        undefined), ``model_slope``, ``cosines``, ``negative_inner_products``, ``pairs``, ``losses`` (the m
        restart losses and the worst-case batch's), ``direction_attack_loss``, ``ddi`` (the QP), ``seeds``,
        ``start_equal_fraction`` (the share of equal entries between the two attacks' random starts,
        over the restarts they both have: about 0 for independent draws, 1 if a start were reused) and
        ``seconds`` (``directions``, ``probe``).

    Raises
    ------
    ProbeError
        A non-finite loss or gradient at the checkpoint, or a non-finite robust loss at a grid point.
    """
    tick = tick or (lambda: None)
    params = [p for _, p in trainable_parameters(model)]
    with _eval_mode(model):
        t0 = time.perf_counter()
        shape = (direction_attack.restarts, *x.shape)
        dir_start = draw_start(direction_attack, shape, seed=seeds["directions"], device=x.device,
                               dtype=x.dtype)
        cand = build_directions(model, x, y, direction_attack, start=dir_start, strategy=strategy)
        tick()
        t1 = time.perf_counter()
        start = draw_start(probe_attack, (probe_attack.restarts, *x.shape), seed=seeds["probe"],
                           device=x.device, dtype=x.dtype)
        phi0 = robust_loss(model, x, y, probe_attack, start=start)
        tick()
        theta = [p.detach().clone() for p in params]
        phi = {}
        for name in DIRECTIONS:
            direction = cand.directions[name]
            values = []
            for t in grid:
                if direction is None:
                    values.append(None)
                else:
                    with displaced(params, theta, direction, float(t)):
                        value = robust_loss(model, x, y, probe_attack, start=start)
                    if not np.isfinite(value):
                        raise ProbeError(f"the robust loss is {value} at t = {t:g} along {name}: the grid "
                                         f"reaches too far (choose smaller steps with --grid)")
                    values.append(value)
                tick()
            phi[name] = values
        t2 = time.perf_counter()
    shared = min(start.shape[0], dir_start.shape[0])
    same = float((start[:shared] == dir_start[:shared]).double().mean())
    return {
        "phi0": phi0, "phi": phi,
        "model_slope": {k: float(v) if np.isfinite(v) else None for k, v in cand.model_slopes.items()},
        "cosines": [[None if not np.isfinite(v) else float(v) for v in row] for row in cand.cosines],
        "negative_inner_products": cand.negative_inner_products, "pairs": cand.pairs,
        "losses": cand.losses.tolist(), "direction_attack_loss": cand.attack_loss, "ddi": cand.ddi,
        "seeds": dict(seeds), "start_equal_fraction": same,
        "seconds": {"directions": t1 - t0, "probe": t2 - t1},
    }


def run_probe(model, data, *, direction_attack, probe_attack, grid, batches: int, batch_size: int,
              seed: int = 0, device="cpu", strategy: str = "auto", progress: bool = True) -> list[dict]:
    """:func:`probe_batch` on ``batches`` seeded random batches of ``data`` (an ImageSet), with progress.

    Returns the per-batch records, each with its ``batch`` number and example ``indices`` added.
    """
    from tqdm.auto import tqdm

    index = select_batches(len(data), batches, batch_size, seed)
    per_batch = 2 + len(DIRECTIONS) * len(grid)
    records = []
    with tqdm(total=batches * per_batch, unit="eval", desc="directions", disable=not progress,
              dynamic_ncols=True) as bar:
        for b, idx in enumerate(index):
            x, y = data.batch(idx, device)
            rec = probe_batch(model, x, y, direction_attack=direction_attack, probe_attack=probe_attack,
                              grid=grid, seeds=batch_seeds(seed, b), strategy=strategy, tick=bar.update)
            rec = {"batch": b, "indices": idx.tolist(), **rec}
            records.append(rec)
            done = [r["phi"]["ddi"][0] - r["phi0"] for r in records if r["phi"]["ddi"][0] is not None]
            if done:
                bar.set_postfix(ddi_slope=f"{np.mean(done) / grid[0]:.3g}")
    return records
