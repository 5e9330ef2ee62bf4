r"""The adversarial training step: every variant of the paper, writing its direction into ``p.grad``.

One :class:`DescentStep` per training run. For a batch ``(x, y)`` it runs the variant's attack, takes the
parameter gradients at the variant's perturbation sets (:mod:`minmax.torch.gradients`), builds the update
direction and writes it into ``p.grad`` of every trainable parameter, so that any ``torch.optim`` optimizer,
weight decay and learning-rate scheduler apply it unchanged::

    step = DescentStep(model, "ddi-10")
    for x, y in loader:
        optimizer.zero_grad(set_to_none=False)  # optional: the step overwrites p.grad anyway
        record = step(x, y)
        optimizer.step()

The variants (``parse_variant`` names) are rows of the table :data:`minmax.torch.variants.FAMILIES`:
which attack, how many restarts, which perturbation sets the gradients are taken at, which rule turns them
into the update, and the schedule of m. A step is the composition

    attack (:mod:`minmax.torch.attacks`) → the perturbation sets → their m gradients
    (:func:`minmax.torch.gradients.set_gradients`) → :func:`minmax.torch.backward.write_direction`

with the variant's choices; :func:`minmax.torch.backward.danskin_backward` is the same step for losses a
caller built with their own attack.

.. minmax-variants::

``p.grad`` holds the negated direction: the optimizer's ``θ ← θ - lr·p.grad`` moves along
:math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|`.

Scale (``normalize``)
---------------------
The paper normalizes the Danskin direction to unit norm (``normalize=True``, the default); the baselines use
the raw mean-loss gradient, whose norm changes over training (large early, shrinking as the loss flattens).
With SGD at lr 0.1 a DDi step therefore moves θ by exactly 0.1 while a PGD step moves it by 0.1·‖g‖: the two
agree when ‖g‖ ≈ 1, and the unit direction keeps moving when gradients shrink (the paper's lr 0.1 was tuned
for both). ``StepRecord.norm`` logs ‖Mα‖ so the two scales can be compared in a run. ``normalize=False``
writes :math:`M\alpha^*` itself (the minimum-norm element of the hull, a gradient-scale vector).
``normalize`` only affects the Danskin variants.

BatchNorm, mixed precision, distributed: see :class:`DescentStep`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import replace

import torch

from minmax.torch import distributed as _dist
from minmax.torch import gradients as _grads
from minmax.torch._checks import positive_float, positive_int
from minmax.torch.attacks import FGSM, PGD, AttackResult, worst_case
from minmax.torch.backward import NonFiniteLossError, StepRecord, write_direction
from minmax.torch.variants import VARIANTS, VariantSpec, parse_variant

# StepRecord, NonFiniteLossError (minmax.torch.backward) and the variant table's names
# (minmax.torch.variants) stay importable from here, where they used to live.
__all__ = ["VARIANTS", "DescentStep", "NonFiniteLossError", "StepRecord", "VariantSpec", "parse_variant"]


def _sync(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _unwrap(model):
    """The module inside a DistributedDataParallel or DataParallel wrapper, and whether it was DDP."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.module, True
    if isinstance(model, torch.nn.DataParallel):
        return model.module, False
    return model, False


class DescentStep:
    r"""One adversarial training step of a paper variant; fills ``p.grad`` with the update.

    Parameters
    ----------
    model : torch.nn.Module
        The network; its trainable parameters get the direction in ``p.grad``.
    variant : str or VariantSpec
        See :func:`parse_variant` and the module table.
    eps, step_size, steps, norm
        The threat model and PGD: radius ε (8/255), step (2/255), K (7), ``"linf"`` or ``"l2"``. FGSM
        variants step 1.25 ε; pgd-K' uses K' steps (1/t decay after step K + 1 for ``-1/t``).
    loss : callable, optional
        ``loss(logits, y) -> scalar`` for the gradients (mean over the batch); default cross-entropy. The
        attacks maximize the per-sample cross-entropy.
    normalize : bool
        Unit-norm Danskin direction (the paper). See the module notes.
    strategy : {"auto", "loop", "func"}
        How the m gradients are taken (:mod:`minmax.torch.gradients`).
    amp_dtype : torch.dtype, optional
        ``torch.bfloat16`` / ``torch.float16``: attack and gradient forward passes under ``torch.autocast``.
    scaler : torch.amp.GradScaler, optional
        For float16. The loss is multiplied by the scaler's current scale S before differentiating; the
        gradients are divided by S (true gradients) before the Gram matrix and the QP, which therefore never
        see the scale; ``p.grad`` receives S·direction, so ``scaler.step(optimizer)`` unscales it back to
        exactly the direction. On overflow (a non-finite gradient, finite loss) no QP runs, ``p.grad`` is
        filled with NaN, ``scaler.step`` skips the update and ``scaler.update()`` lowers the scale, as usual.
    distributed : bool, optional
        Take the step of the union of the ranks' batches (see Notes and :mod:`minmax.torch.distributed`).
        Default: True for a DistributedDataParallel model, False otherwise.
    total_steps : int, optional
        Length of the m schedule of ddi-decay (required there).
    qp_method : str
        The min-norm-point method (:func:`minmax.min_norm_point`).
    attack : object, optional
        Replaces the variant's attack: ``attack.run(model, x, y) -> AttackResult`` with the restarts the
        variant needs (m, or 2 for ddi-comb). Under ``distributed`` an attack with a ``draw_start`` method
        (as :class:`~minmax.torch.attacks.PGD`) is called as ``run(model, x, y, start=...)``, see Notes.
        An attack that returns adversarial examples (torchattacks' ``atk(x, y) -> x_adv``) fits through
        :class:`~minmax.torch.adapter.AttackAdapter`.

    Notes
    -----
    **BatchNorm** (the same for every variant): the gradients are taken in the model's mode — train mode in
    a training loop, with each set's own batch statistics; the attack runs in eval mode (the attacks'
    default). The running statistics move exactly once per step, to the α-weighted combination of the
    per-set updates (:func:`minmax.torch.gradients.commit_buffers`): ordinary for single-set variants.

    **Danskin direction**: with :math:`G = M^\top M` (float64), :math:`\alpha^* = \operatorname{argmin}_{
    \alpha \in \Delta} \alpha^\top G \alpha` (a cold start every step: ``python -m benchmarks
    warmstart`` found the previous batch's α* about 3x slower) and
    :math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` (Theorem 2; Algorithm 1). The linearized robust loss
    :math:`\max_i L_i + \langle g_i, t\gamma^*\rangle` decreases at rate ``slope`` :math:`= -\|M\alpha^*\|`.

    **Unused parameters**: a trainable parameter that the loss does not reach at any of the m sets gets
    ``p.grad = None``, as ``loss.backward()`` leaves it, so weight decay and momentum skip it; every other
    parameter gets a tensor (zero where its gradient is zero).

    **Wrapped models**: a :class:`~torch.nn.parallel.DistributedDataParallel` or
    :class:`~torch.nn.DataParallel` model is unwrapped to its ``.module``. DDP averages gradients in
    ``backward()``, which the m gradients (``torch.autograd.grad``) never call, so a DDP model takes the
    library's own cross-rank path: ``distributed`` defaults to True for it, and ``distributed=False``
    raises. A DataParallel model runs on its module's device.

    **Distributed** (``distributed=True``, under an initialized default process group; rank r holds a local
    batch of :math:`B_r` samples, the union batch is their concatenation in rank order). Each step
    all-gathers the :math:`B_r` once and then, on every rank:

    1. draws the attack's random start of the union batch, ``attack.draw_start((m, ΣB_r, ...))`` — the
       numbers, and the RNG consumption, of one process on the union batch — and attacks its own rows
       :math:`o_r \dots o_r + B_r - 1`, :math:`o_r = \sum_{s<r} B_s`, passing them as ``start=``;
    2. for ddi-comb, draws the k bit-vectors of the union batch and keeps its rows the same way;
    3. averages each of the m gradient blocks, the m losses and the per-set running-statistics updates
       across ranks with weights :math:`B_r / \sum_s B_s` (the gradients of the union batch's mean loss);
    4. solves the same QP and writes the same ``p.grad`` as every other rank.

    *Identical to one process on the union batch* (given the same parameters and, on every rank, the global
    RNG state of that process — the same seed everywhere): the starts, the bit-vectors, every attack
    iterate of every sample, the m gradients and losses, α*, the direction and the parameters after the
    optimizer step, for every variant (pgd, pgd-max, pgd-min, pgd-K', fast, fast-max, ddi, fast-ddi,
    ddi-comb, ddi-decay), with uneven local batches — up to the rounding of the cross-rank sum (about
    1e-15 relative per step in float64). *Not identical*: BatchNorm in train mode normalizes with per-rank
    batch statistics (the running statistics stay equal on all ranks); dropout and other randomness in the
    model draw per rank; with different RNG states per rank the draws are valid (uniform, independent over
    samples) but other numbers; and a custom attack without ``draw_start`` draws for its local rows.
    Without a process group (one process) ``distributed=True`` is the plain step.

    Examples
    --------
    >>> import torch
    >>> from minmax.torch.descent import DescentStep
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> step = DescentStep(net, "ddi-3", steps=2)
    >>> rec = step(torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))
    >>> rec.m, len(rec.losses), round(float(rec.weights.sum()), 6), rec.slope < 0
    (3, 3, 1.0, True)
    """

    def __init__(self, model, variant, *, eps=8 / 255, step_size=2 / 255, steps=7, norm="linf", loss=None,
                 normalize=True, strategy="auto", amp_dtype=None, scaler=None, distributed=None,
                 total_steps=None, qp_method="wolfe", attack=None):
        self.model, ddp = _unwrap(model)
        if distributed is None:
            distributed = ddp
        elif ddp and not distributed:
            raise ValueError(
                "model is wrapped in DistributedDataParallel, whose gradient all-reduce runs in backward(), "
                "which DescentStep never calls (it takes the m gradients with torch.autograd.grad): pass "
                "distributed=True (or leave it None), and DescentStep averages the gradients across ranks "
                "itself")
        self.params = [p for _, p in _grads.trainable_parameters(self.model)]
        if not isinstance(variant, (str, VariantSpec)):
            raise TypeError(f"variant must be a name or a VariantSpec, got {type(variant).__name__}")
        self.spec = variant if isinstance(variant, VariantSpec) else parse_variant(variant)
        # the attacks' own validators: the same numbers (np.float32, np.int64 included) pass both
        self.eps, self.step_size = positive_float(eps, "eps"), positive_float(step_size, "step_size")
        self.steps = positive_int(steps, "steps")
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
        if amp_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype!r}")
        if self.spec.row.schedule == "linear-decay":
            if total_steps is None:
                raise ValueError(f"{self.spec.family} needs total_steps (an integer >= 1), got None")
            total_steps = positive_int(total_steps, "total_steps")
        if loss is not None and not callable(loss):
            raise TypeError(f"loss must be a callable (logits, y) -> scalar, got {type(loss).__name__}")
        _grads.resolve_strategy(strategy, "cpu")  # validates the name
        self.norm, self.loss, self.normalize, self.strategy = norm, loss, bool(normalize), strategy
        self.amp_dtype, self.scaler, self.distributed = amp_dtype, scaler, bool(distributed)
        self.total_steps, self.qp_method, self.attack = total_steps, qp_method, attack
        self.t = 0
        self._fallback = None

    # -- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The variant's name and the step counter t (ddi-decay's schedule), for an exact resume."""
        return {"variant": self.spec.name, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the variant must match.

        States written before the QP's warm start was removed also hold ``"weights"``, which is ignored:
        each step's QP starts cold (``python -m benchmarks warmstart``: the previous batch's α* made it
        about 3x slower).
        """
        if state.get("variant") != self.spec.name:
            raise ValueError(f"state is for variant {state.get('variant')!r}, this step is "
                             f"{self.spec.name!r}")
        self.t = int(state["t"])

    def current_m(self) -> int:
        """The count m this step: the name's m, or under the linear-decay schedule (ddi-decay)
        m0 + (1 - m0)·t/total_steps rounded, 1 after the end."""
        if self.spec.row.schedule != "linear-decay":
            return self.spec.m
        frac = min(self.t / self.total_steps, 1.0)
        return max(1, int(round(self.spec.m + (1 - self.spec.m) * frac)))

    def restarts(self) -> int:
        """The restarts the variant's attack runs this step (its row's fixed number, or m)."""
        return self.spec.row.restarts or self.current_m()

    # -- the step ---------------------------------------------------------------------------------------
    def _make_attack(self, restarts: int):
        if self.attack is not None:
            return self.attack
        if self.spec.row.attack == "fgsm":
            return FGSM(eps=self.eps, alpha=1.25 * self.eps, restarts=restarts, norm=self.norm)
        steps = self.spec.steps or self.steps
        decay = self.steps + 1 if self.spec.decay else None
        return PGD(eps=self.eps, alpha=self.step_size, steps=steps, norm=self.norm, restarts=restarts,
                   decay_after=decay)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepRecord:
        return self.step(x, y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepRecord:
        """Run the variant on the batch ``(x, y)`` and write the update into ``p.grad``.

        Raises
        ------
        TypeError, ValueError
            Bad batch (not tensors, mismatched batch sizes, x outside [0, 1]).
        NonFiniteLossError
            A NaN or infinite loss (or gradient, without a scaler).
        """
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("x and y must be torch tensors")
        if x.ndim < 2 or y.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"x (B, ...) and y (B, ...) must share a batch size B >= 1, got shapes "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        row, dev = self.spec.row, x.device
        t0 = _sync(dev)
        restarts = self.restarts()
        sizes = _dist.batch_sizes(x.shape[0], dev) if self.distributed else None  # once per step
        result = self._attack(x, y, restarts, sizes)
        sets = self._sets(x.detach(), result, sizes).clamp(0, 1)  # x + δ in [0, 1] up to rounding
        t1 = _sync(dev)

        scale = None
        if self.scaler is not None and self.scaler.is_enabled():
            scale = float(self.scaler.scale(torch.ones((), device=dev)))  # also creates the scale lazily
        sg = self._gradients(sets, y.to(dev), scale)
        blocks, losses, buffers, used = sg.blocks, sg.losses, sg.buffers, sg.used
        if self.distributed:  # here rather than in write_direction: the buffers are averaged alike
            blocks, losses, buffers = _dist.average_sets(blocks, losses, buffers, x.shape[0], sizes)
            used = _dist.any_rank(used, dev)
        t2 = _sync(dev)
        try:
            rec = write_direction(blocks, self.params, rule=row.rule, losses=losses, used=used,
                                  normalize=self.normalize, scaler=self.scaler, method=self.qp_method)
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(f"{self.spec.name} (step {self.t}): {exc}") from None
        if not rec.skipped:
            _grads.commit_buffers(self.model, buffers, rec.weights)
        self.t += 1
        t3 = _sync(dev)
        times = {"attack": t1 - t0, "gradients": t2 - t1, "total": t3 - t0} if rec.skipped else {
            "attack": t1 - t0, "gradients": t2 - t1, "gram": rec.times["gram"], "qp": rec.times["qp"],
            "combine": t3 - t2 - rec.times["gram"] - rec.times["qp"], "total": t3 - t0}
        return replace(rec, times=times, strategy=sg.strategy)

    def _attack(self, x, y, restarts: int, sizes) -> AttackResult:
        attack = self._make_attack(restarts)
        amp = (torch.autocast(device_type=x.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            if sizes is not None and hasattr(attack, "draw_start"):
                # the union batch's start, drawn as one process draws it; this rank keeps its rows
                union = (restarts, sum(sizes), *x.shape[1:])
                start = attack.draw_start(union, device=x.device, dtype=x.dtype)[:, _dist.local_rows(sizes)]
                result = attack.run(self.model, x, y, start=start)
            else:
                result = attack.run(self.model, x, y)
        if not isinstance(result, AttackResult) or result.deltas.shape[0] != restarts:
            raise ValueError(f"{self.spec.name} needs an attack with {restarts} restarts")
        return result

    def _sets(self, x, result: AttackResult, sizes) -> torch.Tensor:
        """The perturbed batches ``(m, B, ...)`` the gradients are taken at (the row's ``sets``)."""
        kind = self.spec.row.sets
        if kind == "worst":
            return (x + worst_case(result)).unsqueeze(0)
        if kind == "comb":
            bits = self._bits(self.spec.m, x.shape[0], x.device, sizes)
            pick = bits.view(*bits.shape, *([1] * (x.ndim - 1))).bool()
            return x + torch.where(pick, result.deltas[1].unsqueeze(0), result.deltas[0].unsqueeze(0))
        return x + result.deltas

    def _gradients(self, sets, y, scale):
        strategy = self._fallback or _grads.resolve_strategy(self.strategy, sets.device)
        kwargs = {"loss_fn": self.loss, "amp_dtype": self.amp_dtype, "loss_scale": scale}
        try:
            return _grads.set_gradients(self.model, sets, y, strategy=strategy, **kwargs)
        except RuntimeError as exc:
            if self.strategy != "auto" or strategy != "func":
                raise
            # torch.func has no batching rule for some layers (e.g. BatchNorm under CPU autocast): say so
            # once and keep the loop, which computes the same gradients.
            warnings.warn(f"strategy 'auto': torch.func failed on this model ({exc}); using 'loop'",
                          RuntimeWarning, stacklevel=3)
            self._fallback = "loop"
            return _grads.set_gradients(self.model, sets, y, strategy="loop", **kwargs)

    def _bits(self, k: int, batch: int, device, sizes) -> torch.Tensor:
        """k random bit-vectors over the batch (Appendix B.4.1): bit 1 takes attack 2 for that sample.

        Drawn from the global torch RNG (CPU generator, so the draw does not depend on the device). Under
        ``distributed`` every rank draws the bits of the union batch and keeps its rows
        (:func:`minmax.torch.distributed.shared_bits`), so the k batches are those one process assembles.
        """
        if sizes is None:
            return torch.randint(0, 2, (k, batch)).to(device)
        return _dist.shared_bits(k, batch, device, sizes)
