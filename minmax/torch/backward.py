r"""A composable Danskin step: from m losses (or m gradients) to the certified direction in ``p.grad``.

:func:`danskin_backward` is to Algorithm 1 of [1]_ what ``loss.backward()`` is to gradient descent. The
caller builds the m losses :math:`L_1, \dots, L_m` with any attack and any loss — one entry per
perturbation set, e.g. the mean loss of the batch at restart i — as a tensor of shape ``(m,)`` attached to the
parameters; the function takes the m gradients :math:`g_i = \nabla_\theta L_i`, the float64 Gram matrix
:math:`G = M^\top M` of :math:`M = [g_1 \dots g_m]`, the certified minimum-norm point

.. math:: \alpha^* = \operatorname{argmin}_{\alpha \in \Delta} \alpha^\top G \alpha,

and writes :math:`-\gamma^* = M\alpha^*/\|M\alpha^*\|` (Theorem 2; ``normalize=False``: :math:`M\alpha^*`)
into ``p.grad``, so that any ``torch.optim`` optimizer's :math:`\theta \leftarrow \theta - \eta\,
\mathrm{p.grad}` moves along the steepest descent direction of :math:`\max_i L_i`::

    deltas = my_attack(model, x, y)                       # (m, B, ...), any attack
    losses = torch.stack([my_loss(model(x + d), y) for d in deltas])
    record = danskin_backward(losses, model.parameters())
    optimizer.step()

:func:`write_direction` is the layer below, for gradients the caller already has (per-parameter blocks
``(m, *p.shape)``, e.g. from :func:`minmax.torch.gradients.set_gradients`); it also applies the baselines'
rules (:data:`RULES`). :class:`minmax.torch.descent.DescentStep` is the composition attack → gradients →
:func:`write_direction` for every variant of the paper.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding actual descent directions for adversarial
   training." ICLR 2023.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

import minmax
from minmax.minnorm.optimality import fw_gap
from minmax.torch import distributed as _dist
from minmax.torch import gradients as _grads

__all__ = ["RULES", "NonFiniteLossError", "StepRecord", "danskin_backward", "write_direction"]

#: How m gradients become the update: the Danskin direction, the gradient of lowest norm (pgd-min), the
#: gradient of the only set (pgd, pgd-max, fast, ...).
RULES = ("danskin", "min-norm", "single")


class NonFiniteLossError(FloatingPointError, ValueError):
    """A loss (or, without a gradient scaler, a gradient) at a perturbation set is NaN or infinite.

    A :class:`FloatingPointError` (what a training loop catches to stop) and a :class:`ValueError` (bad
    input at the public boundary).
    """


@dataclass(frozen=True)
class StepRecord:
    r"""What one step (:func:`danskin_backward`, :func:`write_direction` or a
    :class:`~minmax.torch.descent.DescentStep` call) did.

    Attributes
    ----------
    loss : float
        :math:`\max_i L_i`, the finite-set robust loss the update descends (the single batch loss for
        single-set variants); NaN when no losses were given.
    losses : tuple of float
        The losses :math:`L_i` at the m gradient sets (empty when none were given).
    weights : numpy.ndarray
        α (float64, on the simplex): α* for the Danskin rule, one-hot for the others.
    gap : float
        Frank-Wolfe duality gap of α for :math:`\min_{\alpha\in\Delta}\alpha^\top G\alpha`
        (0 for m = 1).
    slope : float
        :math:`\max_i \langle \gamma, g_i\rangle` for the unit applied direction γ: ``-norm`` for DDi
        (Theorem 2), possibly positive for pgd-min (a gradient that does not descend on all sets).
    negative_inner_products : int
        Pairs i < j with :math:`G_{ij} < 0`.
    m : int
        Number of gradient sets (1 for pgd, pgd-max, fast, fast-max, pgd-long).
    times : dict of str to float
        Seconds spent in ``attack`` (:class:`~minmax.torch.descent.DescentStep` only), ``gradients``,
        ``gram``, ``qp`` (QP and Mα), ``combine`` (writing ``p.grad``) and ``total``.
    norm : float
        :math:`\|M\alpha\|`, the norm of the combination before normalization.
    skipped : bool
        A gradient-scaler overflow: ``p.grad`` holds NaN so ``scaler.step`` skips the update.
    strategy : str
        How the gradients were taken: "loop" or "func" (:mod:`minmax.torch.gradients`), "" when they were
        given (:func:`write_direction`).
    """

    loss: float
    losses: tuple
    weights: np.ndarray
    gap: float
    slope: float
    negative_inner_products: int
    m: int
    times: dict = field(default_factory=dict)
    norm: float = float("nan")
    skipped: bool = False
    strategy: str = ""


def _sync(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def as_parameters(params) -> list[torch.Tensor]:
    """``params`` as a list of distinct leaf tensors that require grad (a module: its trainable parameters).

    Raises
    ------
    TypeError
        If ``params`` is not a module, a tensor or an iterable of tensors.
    ValueError
        If it is empty, or a tensor does not require grad, is not a leaf, or appears twice.
    """
    if isinstance(params, torch.nn.Module):
        return [p for _, p in _grads.trainable_parameters(params)]
    if isinstance(params, torch.Tensor):
        params = [params]
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"params must be a module, a tensor or an iterable of tensors (model.parameters()), "
                        f"got {type(params).__name__}") from None
    if not params:
        raise ValueError("params is empty: at least one tensor that requires grad is needed")
    seen = set()
    for k, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params[{k}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.requires_grad:
            raise ValueError(f"params[{k}] (shape {tuple(p.shape)}) does not require grad; pass only "
                             f"trainable parameters, e.g. [p for p in model.parameters() if p.requires_grad]")
        if not p.is_leaf:
            raise ValueError(f"params[{k}] is not a leaf tensor: p.grad is written only for leaves "
                             f"(parameters)")
        if id(p) in seen:
            raise ValueError(f"params[{k}] appears twice: its gradient would count twice in the Gram matrix")
        seen.add(id(p))
    return params


def _loss_scale(scaler, device) -> float | None:
    """The GradScaler's current scale S (None without an enabled scaler); creates its scale lazily."""
    if scaler is None:
        return None
    if not (callable(getattr(scaler, "scale", None)) and callable(getattr(scaler, "is_enabled", None))):
        raise TypeError(f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}")
    if not scaler.is_enabled():
        return None
    # scaler.scale() also creates the scale tensor lazily, as scaler.step() requires.
    return float(scaler.scale(torch.ones((), device=device)))


def _check_losses(losses, m: int | None = None, *, attached: bool = False) -> torch.Tensor:
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"losses must be a torch.Tensor of shape (m,), got {type(losses).__name__}")
    if not losses.is_floating_point():
        raise TypeError(f"losses must be floating point, got dtype {losses.dtype}")
    if losses.ndim != 1 or losses.shape[0] < 1:
        raise ValueError(f"losses must have shape (m,) with m >= 1 (one loss per perturbation set), got "
                         f"shape {tuple(losses.shape)}; stack the m scalar losses with torch.stack")
    if m is not None and losses.shape[0] != m:
        raise ValueError(f"losses has {losses.shape[0]} entries but the gradients have m = {m}")
    if attached and losses.grad_fn is None:
        raise ValueError("losses is not attached to an autograd graph (no grad_fn): build it from the "
                         "model's outputs, outside torch.no_grad() and without .detach()")
    return losses


def _check_blocks(blocks, params) -> int:
    if isinstance(blocks, torch.Tensor) or not isinstance(blocks, (list, tuple)):
        raise TypeError(f"blocks must be a list of tensors (m, *p.shape), one per parameter, got "
                        f"{type(blocks).__name__}")
    if len(blocks) != len(params):
        raise ValueError(f"blocks holds {len(blocks)} tensors for {len(params)} parameters")
    m = None
    for k, (b, p) in enumerate(zip(blocks, params, strict=True)):
        if not isinstance(b, torch.Tensor) or not b.is_floating_point():
            raise TypeError(f"blocks[{k}] must be a floating torch.Tensor, got "
                            f"{b.dtype if isinstance(b, torch.Tensor) else type(b).__name__}")
        m = b.shape[0] if m is None and b.ndim >= 1 else m
        if b.ndim < 1 or tuple(b.shape) != (m, *p.shape):
            want = (m, *p.shape)
            raise ValueError(f"blocks[{k}] must have shape (m, *p.shape) = {want}, got {tuple(b.shape)}")
    if m < 1:
        raise ValueError("the blocks hold m = 0 gradients; at least one is needed")
    return m


def _nonfinite_losses(values: np.ndarray) -> None:
    bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
    if bad:
        raise NonFiniteLossError(
            f"the loss is {values[bad[0]]} at perturbation set(s) {bad} of {len(values)}; lower the learning "
            f"rate, check the data, or use a GradScaler with float16 autocast")


def write_direction(blocks, params, *, rule: str = "danskin", losses=None, used=None, normalize: bool = True,
                    scaler=None, distributed: bool = False, batch_size: int | None = None,
                    method: str = "wolfe") -> StepRecord:
    r"""Write the update that ``rule`` makes of m given gradients into ``p.grad``; the lower layer of
    :func:`danskin_backward`.

    Parameters
    ----------
    blocks : list of torch.Tensor
        One block ``(m, *p.shape)`` per parameter: row i of block k is the gradient of :math:`L_i` with
        respect to ``params[k]`` (true gradients, not scaled by a GradScaler).
    params : iterable of torch.Tensor, or torch.nn.Module
        The parameters, in the blocks' order (a module: its parameters that require grad).
    rule : {"danskin", "min-norm", "single"}
        ``"danskin"``: :math:`-\gamma^* = M\alpha^*/\|M\alpha^*\|` (Theorem 2). ``"min-norm"``: the
        :math:`g_k` of lowest norm (the paper's pgd-min baseline). ``"single"``: :math:`g_1` (m must be
        1).
    losses : torch.Tensor of shape (m,), optional
        The losses :math:`L_i`, for the record and the finiteness check.
    used : sequence of bool, optional
        Per parameter, whether some loss reaches it; an unused parameter gets ``p.grad = None``, as
        ``loss.backward()`` leaves it. Default: all used.
    normalize : bool
        Danskin rule only: the unit direction (the paper), or :math:`M\alpha^*` itself (False).
    scaler : torch.amp.GradScaler, optional
        ``p.grad`` receives S·direction for the scaler's scale S, so that ``scaler.step(optimizer)``
        unscales it to exactly the direction; on non-finite gradients (an overflow) ``p.grad`` is NaN so
        ``scaler.step`` skips the update, and the record says ``skipped``.
    distributed : bool
        Average the blocks and losses across the ranks of the default process group first (in place), so
        that every rank writes the same ``p.grad`` (:mod:`minmax.torch.distributed`).
    batch_size : int, optional
        With ``distributed``: this rank's batch size B_r, to weight ranks by :math:`B_r / \sum_s B_s`
        (exact for per-rank mean losses with uneven batches); default equal weights.
    method : str
        The QP method (:func:`minmax.min_norm_point`).

    Returns
    -------
    StepRecord
        ``times`` holds ``gram``, ``qp``, ``combine`` and ``total``; ``strategy`` is "".

    Raises
    ------
    TypeError, ValueError
        Bad params, blocks that do not match them, a rule m does not allow, bad losses or used.
    NonFiniteLossError
        A non-finite loss, or non-finite gradients without an enabled scaler.
    """
    t0 = time.perf_counter()
    params = as_parameters(params)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    m = _check_blocks(blocks, params)
    if rule == "single" and m != 1:
        raise ValueError(f"the 'single' rule takes one gradient set, got m = {m}")
    if losses is not None:
        losses = _check_losses(losses, m).detach()
    used = (True,) * len(params) if used is None else tuple(bool(u) for u in used)
    if len(used) != len(params):
        raise ValueError(f"used must hold one flag per parameter ({len(params)}), got {len(used)}")
    device = blocks[0].device
    scale = _loss_scale(scaler, device)
    if distributed:
        if losses is None:
            losses = torch.zeros(m, device=device, dtype=torch.float64)
            given = False
        else:
            losses, given = losses.clone(), True
        sizes = None
        if batch_size is None:
            sizes, batch_size = [1] * _world(), 1
        blocks, losses, _ = _dist.average_sets(blocks, losses, None, int(batch_size), sizes)
        used = _dist.any_rank(used, device)
        losses = losses if given else None
    values = losses.double().cpu().numpy() if losses is not None else np.array([])
    _nonfinite_losses(values)
    loss = float(values.max()) if values.size else float("nan")
    if not bool(torch.stack([torch.isfinite(b).all() for b in blocks]).all()):
        if scale is None:
            raise NonFiniteLossError("finite losses but a NaN or infinite gradient")
        for p, u in zip(params, used, strict=True):
            p.grad = torch.full_like(p, float("nan")) if u else None
        nan = float("nan")
        return StepRecord(loss, tuple(values.tolist()), np.full(m, nan), nan, nan, 0, m,
                          {"total": _sync(device) - t0}, nan, True)
    t1 = _sync(device)
    G = minmax.gram(blocks).cpu().numpy()
    t2 = _sync(device)
    if rule == "danskin":
        res = minmax.steepest_descent(blocks, gram=G, method=method)
        alpha, comb, nrm, gap, slope = res.weights, res.combination, res.norm, res.qp.gap, res.slope
        factor = (1.0 / nrm if nrm > 0 and not res.stationary else 0.0) if normalize else 1.0
    else:
        k = int(np.argmin(np.diag(G))) if rule == "min-norm" else 0
        alpha = np.zeros(m)
        alpha[k] = 1.0
        comb = [b[k] for b in blocks]
        nrm = float(np.sqrt(G[k, k]))
        gap = fw_gap(alpha, G @ alpha)[1]
        slope = float(-np.min(G[:, k]) / nrm) if nrm > 0 else 0.0
        factor = 1.0
    t3 = _sync(device)
    if scale is not None:
        factor *= scale
    with torch.no_grad():
        for p, c, u in zip(params, comb, used, strict=True):
            if not u:
                p.grad = None  # as backward() leaves a parameter the loss does not reach
                continue
            if p.grad is None:
                p.grad = torch.empty_like(p)
            p.grad.copy_(c * factor if factor != 1.0 else c)
    t4 = _sync(device)
    times = {"gram": t2 - t1, "qp": t3 - t2, "combine": t4 - t3, "total": t4 - t0}
    neg = int(np.sum(np.triu(G, 1) < 0))
    return StepRecord(loss, tuple(values.tolist()), alpha, float(gap), float(slope), neg, m, times,
                      float(nrm))


def _world() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def danskin_backward(losses: torch.Tensor, params, *, normalize: bool = True, scaler=None,
                     distributed: bool = False, batch_size: int | None = None, method: str = "wolfe",
                     retain_graph: bool = False) -> StepRecord:
    r"""Write the Danskin direction of m losses into ``p.grad``: the DDi step of your own training loop.

    Parameters
    ----------
    losses : torch.Tensor of shape (m,)
        :math:`L_i`, one scalar loss per perturbation set (e.g. the mean loss of the batch at restart i),
        built with any attack and any loss and attached to ``params`` (``torch.stack`` of m scalar losses,
        or one batched forward pass reshaped to ``(m, B)`` and averaged over B). Under autocast, build it
        there; this function needs no autocast.
    params : iterable of torch.Tensor, or torch.nn.Module
        The tensors to update (``model.parameters()``); each must require grad and be a leaf. A module
        stands for its parameters that require grad.
    normalize : bool
        Write the unit direction :math:`M\alpha^*/\|M\alpha^*\|` (the paper's Algorithm 1), or
        :math:`M\alpha^*` itself, the minimum-norm element of the hull of the gradients (False).
    scaler : torch.amp.GradScaler, optional
        For float16 autocast: the gradients of :math:`S L_i` are taken and divided by the scale S before
        the Gram matrix and the QP, which never see it; ``p.grad`` receives S·direction, so that
        ``scaler.step(optimizer)`` applies exactly the direction. On overflow (non-finite gradients, finite
        losses) no QP runs, ``p.grad`` is NaN, ``scaler.step`` skips the update and ``scaler.update()``
        lowers the scale, as with ``scaler.scale(loss).backward()``.
    distributed : bool
        Average the m gradients and losses across the ranks of the default process group before the Gram
        matrix, so that every rank takes the step of the union batch (:mod:`minmax.torch.distributed`;
        do not wrap the model in DistributedDataParallel, whose all-reduce runs in ``backward()``, which
        this function does not call). Each rank's ``losses`` must be means over its local batch.
    batch_size : int, optional
        With ``distributed``: this rank's batch size, so that uneven batches are weighted exactly.
    method : str
        The QP method (:func:`minmax.min_norm_point`); ``"wolfe"`` by default.
    retain_graph : bool
        Keep the autograd graph of ``losses`` after the call (as ``backward(retain_graph=True)``).

    Returns
    -------
    StepRecord
        α*, the QP's duality gap, the slope :math:`\max_i\langle\gamma^*, g_i\rangle = -\|M\alpha^*\|`,
        the number of negative inner products :math:`\langle g_i, g_j\rangle < 0`, the losses and the
        times (``gradients``, ``gram``, ``qp``, ``combine``, ``total``).

    Raises
    ------
    TypeError
        ``losses`` not a floating tensor; ``params`` not tensors.
    ValueError
        ``losses`` not of shape (m,) with m >= 1, not attached to a graph, or with an entry that reaches
        none of ``params``; ``params`` empty, or holding a tensor that does not require grad, a non-leaf
        or a duplicate.
    NonFiniteLossError
        A NaN or infinite loss (a ValueError), or gradient without an enabled scaler.

    Notes
    -----
    The m gradients are m calls of :func:`torch.autograd.grad` on the graph of ``losses``
    (:func:`minmax.torch.gradients.loss_gradients`); nothing is accumulated into ``p.grad``, which is
    overwritten (not added to). A parameter no loss reaches gets ``p.grad = None``, as ``loss.backward()``
    leaves it, so weight decay and momentum skip it. The Gram matrix is accumulated in float64 whatever the
    gradients' dtype, and the QP is certified (:func:`minmax.steepest_descent`): when the origin is in the
    hull of the gradients up to the certificate's tolerance, no direction decreases every :math:`L_i` and
    the unit direction written is zero.

    BatchNorm in train mode normalizes each forward pass with its own batch statistics and updates the
    running statistics at every pass: build the m losses with m forward passes for per-set statistics, or
    use GroupNorm (the paper's choice); :class:`~minmax.torch.descent.DescentStep` handles this for you.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(3, 2)
    >>> x, y = torch.rand(8, 3), torch.randint(0, 2, (8,))
    >>> deltas = 0.1 * torch.randn(4, 8, 3)                    # 4 perturbations of the batch
    >>> losses = torch.stack([torch.nn.functional.cross_entropy(model(x + d), y) for d in deltas])
    >>> record = danskin_backward(losses, model.parameters())
    >>> record.m, bool(record.slope < 0), round(float(record.weights.sum()), 12)
    (4, True, 1.0)
    >>> grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    >>> round(float(grad.norm()), 6)                             # the unit direction
    1.0
    """
    t0 = time.perf_counter()
    losses = _check_losses(losses, attached=True)
    params = as_parameters(params)
    scale = _loss_scale(scaler, losses.device)
    blocks, used, reached = _grads.loss_gradients(losses, params, loss_scale=scale, retain_graph=retain_graph)
    if distributed:  # every rank raises alike below, never one rank alone (the others would wait)
        flags = _dist.any_rank(reached + used, losses.device)
        reached, used = flags[:len(reached)], flags[len(reached):]
    if not all(reached):
        bad = [i for i, r in enumerate(reached) if not r]
        raise ValueError(f"losses[{bad[0]}] does not depend on any of params (entries {bad} of "
                         f"{len(reached)}): it was detached, or built from other tensors than params")
    zero = ~torch.stack([b.flatten(1).any(dim=1) for b in blocks]).any(dim=0)
    if bool(zero.any()):  # legitimate (a loss constant in θ), but far more often a detached entry
        bad = zero.nonzero().flatten().tolist()
        warnings.warn(f"losses{bad} have gradient exactly zero for every parameter (detached inside "
                      f"torch.stack?): the origin is in the hull of the gradients, so the Danskin direction "
                      f"is zero", RuntimeWarning, stacklevel=2)
    t1 = _sync(losses.device)
    record = write_direction(blocks, params, rule="danskin", losses=losses, used=used, normalize=normalize,
                             scaler=scaler, distributed=distributed, batch_size=batch_size, method=method)
    times = {"gradients": t1 - t0, **record.times, "total": time.perf_counter() - t0}
    return replace(record, times=times, strategy="loop")
