r"""The m parameter gradients of a batch loss at m perturbation sets, kept per parameter.

For a network with trainable parameters :math:`\theta = (\theta_1, \dots, \theta_P)` and m perturbed copies
:math:`x + \delta_1, \dots, x + \delta_m` of a batch, this module computes

.. math:: g_i = \nabla_\theta \, \ell(\theta; x + \delta_i, y), \qquad i = 1, \dots, m,

the columns of the matrix :math:`M = [g_1 \dots g_m]` of Theorem 2 of the paper, as one block of shape
``(m, *p.shape)`` per trainable parameter ``p`` (never concatenated). The Gram matrix :math:`G = M^\top M`
is then :func:`minmax.gram` on the blocks (float64, layer by layer).

Strategies
----------
``"loop"``
    m forward/backward passes, each with :func:`torch.autograd.grad` (nothing is written to ``p.grad``).
    Always supported; memory of one pass.
``"func"``
    :func:`torch.func.functional_call` with ``vmap(grad(loss))`` over the m sets: one batched pass of
    m·B inputs. Memory of m passes (the same as a batched m-restart attack).
``"auto"``
    ``"loop"`` on the CPU (measured by ``python -m benchmarks step``: on a small CNN at B = 128, m = 10 the
    loop is as fast or faster, since a CPU gains nothing from bigger kernels) and ``"func"`` on CUDA, where
    one batched pass replaces m launches of small kernels. ``benchmarks/gpu_check.py`` measures both on GPU.

Buffers (BatchNorm) — one policy for every variant
--------------------------------------------------
The gradients are taken in the model's current mode; a training loop calls ``model.train()``, so
BatchNorm normalizes each of the m sets with **that set's own batch statistics**, exactly as in ordinary
(single-adversary) adversarial training. Each set starts from the **same** running statistics; the m
passes do not move them. The per-set updated buffers are returned (``SetGradients.buffers``) and
:func:`commit_buffers` sets the model's running statistics to their combination with the weights
:math:`\alpha` of the update direction. Because one momentum update is affine in the batch statistics,

.. math:: \sum_i \alpha_i \big((1-\mu) r + \mu s_i\big) = (1-\mu) r + \mu \textstyle\sum_i \alpha_i s_i,

this is **exactly one** running-statistics update per step, with the statistics weighted like the
direction (``num_batches_tracked`` advances by one). For single-gradient variants (pgd, pgd-max, fast) it is
the ordinary update; for pgd-min it is the chosen set's; for DDi the α*-weighted one. In eval mode nothing is
tracked or updated. :mod:`minmax.torch.descent` applies this policy identically to DDi and the baselines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["STRATEGIES", "SetGradients", "commit_buffers", "loss_gradients", "resolve_strategy",
           "set_gradients", "trainable_parameters"]

STRATEGIES = ("auto", "loop", "func")


@dataclass(frozen=True)
class SetGradients:
    """The m gradients of :func:`set_gradients`.

    Attributes
    ----------
    blocks : list of torch.Tensor
        One block of shape ``(m, *p.shape)`` per trainable parameter, in ``trainable_parameters`` order,
        unscaled (true gradients even when a loss scale was used).
    losses : torch.Tensor
        The m batch losses, shape ``(m,)``, detached, in the loss's dtype (at least float32).
    buffers : dict of str to torch.Tensor, or None
        Per-set updated buffers ``(m, *b.shape)`` of the buffers that the passes changed (BatchNorm running
        statistics in train mode); None when none changed. Apply with :func:`commit_buffers`.
    finite : bool
        Whether every gradient entry is finite (False flags a loss-scale overflow).
    strategy : str
        ``"loop"`` or ``"func"``: the strategy that ran.
    used : tuple of bool
        Per parameter, whether the loss reaches it at some set (its block is then a gradient; otherwise
        zeros, and ``loss.backward()`` would leave its ``grad`` None).
    """

    blocks: list
    losses: torch.Tensor
    buffers: dict | None
    finite: bool
    strategy: str
    used: tuple


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The ``(name, parameter)`` pairs of ``model`` that require grad, in ``named_parameters`` order.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`torch.nn.Module`.
    ValueError
        If no parameter requires grad.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no parameters that require grad: there is nothing to train")
    return named


def resolve_strategy(strategy: str, device: torch.device | str) -> str:
    """Resolve ``"auto"`` to ``"loop"`` (CPU and others) or ``"func"`` (CUDA); validate the name."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy != "auto":
        return strategy
    return "func" if torch.device(device).type == "cuda" else "loop"


def _autocast(device: torch.device, amp_dtype):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _as_sets(inputs, target) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Stack ``inputs`` to ``(m, B, ...)``; return it, the targets and whether targets are per set."""
    if isinstance(inputs, Sequence):
        if len(inputs) == 0:
            raise ValueError("inputs is empty: at least one perturbation set is needed (m >= 1)")
        inputs = torch.stack(list(inputs))
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
        raise ValueError("inputs must be a tensor (m, B, ...) or a sequence of m tensors (B, ...)")
    m, b = inputs.shape[:2]
    if m < 1 or b < 1:
        raise ValueError(f"inputs must hold m >= 1 sets of B >= 1 samples, got shape {tuple(inputs.shape)}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a tensor, got {type(target).__name__}")
    if target.shape[:1] == (b,):
        return inputs, target, False
    if target.shape[:2] == (m, b):
        return inputs, target, True
    raise ValueError(f"target must have batch size {b} (shape (B, ...) or (m, B, ...)), got "
                     f"shape {tuple(target.shape)} for inputs of shape {tuple(inputs.shape)}")


def set_gradients(model: nn.Module, inputs, target: torch.Tensor, *,
                  loss_fn: Callable | None = None, strategy: str = "auto", amp_dtype=None,
                  loss_scale: float | None = None) -> SetGradients:
    r"""Gradients :math:`g_i = \nabla_\theta \ell(\theta; x_i, y)` at m input sets, one block per parameter.

    Parameters
    ----------
    model : torch.nn.Module
        Used in its current mode (see the module notes for the BatchNorm policy). Its ``p.grad`` and its
        buffers are left as they were.
    inputs : torch.Tensor of shape (m, B, ...) or sequence of m tensors (B, ...)
        The m perturbed batches :math:`x + \delta_i`.
    target : torch.Tensor of shape (B, ...) or (m, B, ...)
        Labels, shared by the sets or one per set.
    loss_fn : callable, optional
        ``loss_fn(logits, target) -> scalar``; default cross-entropy, mean over the batch.
    strategy : {"auto", "loop", "func"}
        See the module notes.
    amp_dtype : torch.dtype, optional
        ``torch.bfloat16`` or ``torch.float16``: forward passes under :func:`torch.autocast`.
    loss_scale : float, optional
        Multiply the loss by this before differentiating (a GradScaler's scale) and divide the gradients
        by it after, so the blocks are true gradients; an overflow shows as ``finite=False``.

    Returns
    -------
    SetGradients

    Raises
    ------
    TypeError, ValueError
        On a non-module model, no trainable parameters, bad shapes or an unknown strategy.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from minmax.torch.gradients import set_gradients
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Linear(4, 3)
    >>> res = set_gradients(net, torch.rand(2, 5, 4), torch.tensor([0, 1, 2, 0, 1]), strategy="loop")
    >>> [tuple(b.shape) for b in res.blocks], tuple(res.losses.shape)
    ([(2, 3, 4), (2, 3)], (2,))
    """
    named = trainable_parameters(model)
    xs, ys, per_set = _as_sets(inputs, target)
    strategy = resolve_strategy(strategy, xs.device)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    scale = 1.0 if loss_scale is None else float(loss_scale)
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"loss_scale must be a positive finite number, got {loss_scale!r}")
    if strategy == "loop":
        blocks, losses, bufs, used = _loop(model, named, xs, ys, per_set, loss_fn, amp_dtype, scale)
    else:
        blocks, losses, bufs = _func(model, named, xs, ys, per_set, loss_fn, amp_dtype, scale)
        used = _func_used(model, named, blocks, xs, ys, per_set, loss_fn)
    if scale != 1.0:
        blocks = [b / scale for b in blocks]
    finite = bool(torch.stack([torch.isfinite(b).all() for b in blocks]).all())
    return SetGradients(blocks, losses, bufs, finite, strategy, tuple(used))


def _detached(loss: torch.Tensor) -> torch.Tensor:
    return loss.detach().to(torch.promote_types(loss.dtype, torch.float32))


def _changed(per_set: dict, before: dict) -> dict | None:
    """Keep only the buffers that some pass changed (running statistics), stacked ``(m, ...)``."""
    out = {k: v for k, v in per_set.items() if not torch.equal(v, before[k].unsqueeze(0).expand_as(v))}
    return out or None


def _loop(model, named, xs, ys, per_set, loss_fn, amp_dtype, scale):
    params = [p for _, p in named]
    buffers = dict(model.named_buffers())
    before = {k: b.detach().clone() for k, b in buffers.items()}
    grads = [[] for _ in params]
    used = [False] * len(params)
    losses, seen = [], {k: [] for k in buffers}
    for i in range(xs.shape[0]):
        with _autocast(xs.device, amp_dtype):
            loss = loss_fn(model(xs[i]), ys[i] if per_set else ys)
        gs = torch.autograd.grad(loss * scale if scale != 1.0 else loss, params, allow_unused=True)
        _collect(gs, params, grads, used)
        losses.append(_detached(loss))
        with torch.no_grad():
            for k, b in buffers.items():
                seen[k].append(b.detach().clone())
                b.copy_(before[k])  # every set starts from the same running statistics
    blocks = [torch.stack(g) for g in grads]
    bufs = _changed({k: torch.stack(v) for k, v in seen.items()}, before) if buffers else None
    return blocks, torch.stack(losses), bufs, used


def _collect(gs, params, grads, used) -> bool:
    """Append one set's gradients ``gs`` to the per-parameter lists; a parameter the loss does not reach
    (``None``) gets zeros, never a stale value. Returns whether the loss reached any parameter."""
    for k, (g, p) in enumerate(zip(gs, params, strict=True)):
        grads[k].append(torch.zeros_like(p) if g is None else g.detach())
        used[k] = used[k] or g is not None
    return any(g is not None for g in gs)


def loss_gradients(losses: torch.Tensor, params, *, loss_scale: float | None = None,
                   retain_graph: bool = False) -> tuple[list, tuple, tuple]:
    r"""The m gradients :math:`g_i = \nabla_\theta L_i` of a loss vector's entries, one block per parameter.

    The lower layer of :func:`minmax.torch.backward.danskin_backward`, for losses the caller has already
    built (any attack, any loss, one batched forward pass or m of them): m calls of
    :func:`torch.autograd.grad` on the same graph, so nothing is written to ``p.grad``.

    Parameters
    ----------
    losses : torch.Tensor of shape (m,)
        Attached to the autograd graph of ``params``; checked by the caller.
    params : sequence of torch.Tensor
        Tensors that require grad.
    loss_scale : float, optional
        Differentiate :math:`S L_i` and divide the gradients by S (a GradScaler's scale), as in
        :func:`set_gradients`.
    retain_graph : bool
        Keep the graph after the last gradient (as ``backward(retain_graph=True)``); it is always kept
        between the m gradients.

    Returns
    -------
    blocks : list of torch.Tensor
        One block ``(m, *p.shape)`` per parameter (zeros where a loss does not reach it), unscaled.
    used : tuple of bool
        Per parameter, whether some loss reaches it.
    reached : tuple of bool
        Per loss, whether it reaches some parameter.
    """
    scale = 1.0 if loss_scale is None else float(loss_scale)
    params = list(params)
    grads = [[] for _ in params]
    used = [False] * len(params)
    reached = []
    m = losses.shape[0]
    for i in range(m):
        loss = losses[i] * scale if scale != 1.0 else losses[i]
        gs = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain_graph or i < m - 1)
        reached.append(_collect(gs, params, grads, used))
    blocks = [torch.stack(g) for g in grads]
    if scale != 1.0:
        blocks = [b / scale for b in blocks]
    return blocks, tuple(used), tuple(reached)


def _reached(loss: torch.Tensor, params) -> list[bool]:
    """Which of ``params`` the autograd graph of ``loss`` reaches (its AccumulateGrad leaves), no backward."""
    index = {id(p): k for k, p in enumerate(params)}
    hit = [False] * len(params)
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)
        if leaf is not None and id(leaf) in index:
            hit[index[id(leaf)]] = True
        stack.extend(nxt for nxt, _ in node.next_functions)
    return hit


def _func_used(model, named, blocks, xs, ys, per_set, loss_fn) -> list[bool]:
    """``used`` for the func strategy, whose ``grad`` returns zeros for unreached parameters.

    A parameter with a nonzero block is used. Only when some block is all zero does one forward pass at the
    first set (buffers and RNG state restored afterwards) decide which of those the loss reaches.
    """
    nonzero = torch.stack([b.any() for b in blocks]).tolist()
    if all(nonzero):
        return nonzero
    params = [p for _, p in named]
    before = {k: b.detach().clone() for k, b in model.named_buffers()}
    devices = [xs.device] if xs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        reached = _reached(loss_fn(model(xs[0]), ys[0] if per_set else ys), params)
    with torch.no_grad():
        for k, b in model.named_buffers():
            b.copy_(before[k])
    return [nz or r for nz, r in zip(nonzero, reached, strict=True)]


def _func(model, named, xs, ys, per_set, loss_fn, amp_dtype, scale):
    from torch.func import functional_call, grad, vmap

    m = xs.shape[0]
    trainable = {n: p.detach() for n, p in named}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    before = {n: b.detach() for n, b in model.named_buffers()}
    # Batched copies: each set updates its own running statistics, from the same starting values.
    batched = {n: b.unsqueeze(0).expand(m, *b.shape).clone() for n, b in before.items()}

    def loss_at(theta, bufs, x, y):
        with _autocast(x.device, amp_dtype):
            loss = loss_fn(functional_call(model, ({**theta, **frozen}, bufs), (x,)), y)
        return loss * scale if scale != 1.0 else loss, _detached(loss)

    g, losses = vmap(grad(loss_at, has_aux=True), in_dims=(None, 0, 0, 0 if per_set else None),
                     randomness="different")(trainable, batched, xs, ys)
    blocks = [g[n] for n, _ in named]
    return blocks, losses, (_changed(batched, before) if before else None)


def commit_buffers(model: nn.Module, buffers: dict | None, weights) -> None:
    r"""Set the model's changed buffers to :math:`\sum_i \alpha_i b_i` (one running-statistics update).

    Parameters
    ----------
    model : torch.nn.Module
    buffers : dict of str to torch.Tensor (m, ...), or None
        ``SetGradients.buffers``; None does nothing.
    weights : array_like of shape (m,)
        The weights α of the update direction (a point of the simplex; one-hot for single-gradient
        variants). Integer buffers (``num_batches_tracked``) take the value of the set with the largest
        weight (all sets agree on it).
    """
    if not buffers:
        return
    w = np.array(weights, dtype=np.float64)  # a copy: torch warns on read-only NumPy arrays
    own = dict(model.named_buffers())
    with torch.no_grad():
        for name, stacked in buffers.items():
            if w.shape != (stacked.shape[0],):
                raise ValueError(f"weights must have shape ({stacked.shape[0]},), got {w.shape}")
            if stacked.is_floating_point():
                wt = torch.as_tensor(w, dtype=torch.float64, device=stacked.device)
                value = torch.tensordot(wt, stacked.double(), dims=1).to(stacked.dtype)
            else:
                value = stacked[int(np.argmax(w))]
            own[name].copy_(value)
