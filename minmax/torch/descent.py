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

Variants (``parse_variant`` names; K = ``steps``, the attack's usual number of steps)

==================  ====================================================  ====================================
name                sets the gradients are taken at                       update written to ``p.grad``
==================  ====================================================  ====================================
pgd                 1 PGD-K attack                                        its gradient g
pgd-max-m           m PGD-K restarts, per-sample worst → 1 batch          its gradient g
pgd-min-m           m PGD-K restarts → m batches                          the g_i of lowest norm
pgd-K', pgd-K'-1/t  one PGD-K' (1/t step decay after step K + 1)          its gradient g
fast, fast-max-m    FGSM random start, step 1.25 ε (10/255 at ε = 8/255)  as pgd / pgd-max
ddi-m, fast-ddi-m   m restarts → m batches                                Mα*/‖Mα*‖ (Danskin, Theorem 2)
ddi-comb-k          2 attacks; k batches from random bit-vectors          Mα*/‖Mα*‖ over the k batches
ddi-decay-m0        m_t restarts, m_t linear from m0 to 1 (total_steps)   Mα*/‖Mα*‖
==================  ====================================================  ====================================

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
import re
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from minmax.danskin import steepest_descent
from minmax.gram import gram
from minmax.minnorm.optimality import fw_gap
from minmax.torch import distributed as _dist
from minmax.torch import gradients as _grads
from minmax.torch._checks import positive_float, positive_int
from minmax.torch.attacks import FGSM, PGD, AttackResult, worst_case

__all__ = ["VARIANTS", "DescentStep", "NonFiniteLossError", "StepRecord", "VariantSpec", "parse_variant"]

VARIANTS = ("pgd", "pgd-max", "pgd-min", "pgd-long", "fast", "fast-max", "ddi", "fast-ddi", "ddi-comb",
            "ddi-decay")
DANSKIN = ("ddi", "fast-ddi", "ddi-comb", "ddi-decay")

_FORMS = (
    ("pgd", r"pgd"), ("fast", r"fast"), ("pgd-max", r"pgd-max-(\d+)"), ("pgd-min", r"pgd-min-(\d+)"),
    ("pgd-long", r"pgd-(\d+)(-1/t)?"), ("fast-max", r"fast-max-(\d+)"), ("ddi", r"ddi-(\d+)"),
    ("fast-ddi", r"fast-ddi-(\d+)"), ("ddi-comb", r"ddi-comb-(\d+)"), ("ddi-decay", r"ddi-decay-(\d+)"),
)
_ACCEPTED = ("pgd, pgd-max-M, pgd-min-M, pgd-K, pgd-K-1/t, fast, fast-max-M, ddi-M, fast-ddi-M, ddi-comb-K, "
             "ddi-decay-M (M, K integers >= 1, e.g. ddi-10, pgd-70-1/t)")


class NonFiniteLossError(FloatingPointError):
    """The loss (or, without a gradient scaler, a gradient) at a perturbation set is NaN or infinite."""


@dataclass(frozen=True)
class VariantSpec:
    """A parsed variant name (made by :func:`parse_variant`; a hand-made one is checked the same way).

    Attributes
    ----------
    name : str
        The name as given, e.g. ``"ddi-10"``.
    family : str
        One of :data:`VARIANTS`.
    m : int
        Restarts (pgd-max, pgd-min, fast-max, ddi, fast-ddi), batches k (ddi-comb) or m0 (ddi-decay); 1 for
        pgd, fast and pgd-long.
    steps : int or None
        K' for pgd-long, else None (the step's ``steps``).
    decay : bool
        pgd-K'-1/t: 1/t step decay after step K + 1.

    Raises
    ------
    TypeError, ValueError
        An unknown family, a count below 1, m > 1 for a one-attack family, ``steps`` given other than for
        pgd-long (or missing there), or ``decay`` other than for pgd-long.
    """

    name: str
    family: str
    m: int = 1
    steps: int | None = None
    decay: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"VariantSpec.name must be a string, got {type(self.name).__name__}")
        if self.family not in VARIANTS:
            raise ValueError(f"VariantSpec.family must be one of {VARIANTS}, got {self.family!r}")
        positive_int(self.m, "VariantSpec.m")
        if self.family in ("pgd", "fast", "pgd-long") and self.m != 1:
            raise ValueError(f"VariantSpec: {self.family} takes one attack (m = 1), got m = {self.m}")
        if (self.steps is None) == (self.family == "pgd-long"):
            raise ValueError(f"VariantSpec: steps (K') is required for pgd-long and only there, got "
                             f"family {self.family!r} with steps={self.steps!r}")
        if self.steps is not None:
            positive_int(self.steps, "VariantSpec.steps")
        if not isinstance(self.decay, bool) or (self.decay and self.family != "pgd-long"):
            raise ValueError(f"VariantSpec.decay must be a bool, True only for pgd-long, got {self.decay!r}")

    @property
    def danskin(self) -> bool:
        """Whether the update is the Danskin direction."""
        return self.family in DANSKIN


def parse_variant(spec: str) -> VariantSpec:
    """Parse a variant name of the paper (``"pgd-max-10"``, ``"ddi-10"``, ``"pgd-70-1/t"``, ...).

    Raises
    ------
    TypeError
        If ``spec`` is not a string.
    ValueError
        On an unknown or ill-formed name, or a count below 1, listing the accepted forms.

    Examples
    --------
    >>> parse_variant("ddi-10")
    VariantSpec(name='ddi-10', family='ddi', m=10, steps=None, decay=False)
    >>> parse_variant("pgd-70-1/t").steps, parse_variant("pgd-70-1/t").decay
    (70, True)
    """
    if not isinstance(spec, str):
        raise TypeError(f"variant must be a string, got {type(spec).__name__}")
    s = spec.strip().lower()
    for family, pattern in _FORMS:
        match = re.fullmatch(pattern, s)
        if match is None:
            continue
        count = int(match.group(1)) if match.groups() else 1
        if count < 1:
            raise ValueError(f"variant {spec!r}: the count must be >= 1; accepted forms: {_ACCEPTED}")
        if family == "pgd-long":
            return VariantSpec(s, family, 1, count, match.group(2) is not None)
        return VariantSpec(s, family, count)
    raise ValueError(f"unknown variant {spec!r}; accepted forms: {_ACCEPTED}")


@dataclass(frozen=True)
class StepRecord:
    r"""What one :class:`DescentStep` call did.

    Attributes
    ----------
    loss : float
        :math:`\max_i L_i`, the finite-set robust loss the update descends (the single batch loss for
        single-set variants).
    losses : tuple of float
        The batch losses :math:`L_i` at the m gradient sets.
    weights : numpy.ndarray
        α (float64, on the simplex): α* for Danskin variants, one-hot for the others.
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
        Seconds spent in ``attack``, ``gradients``, ``gram``, ``qp`` (QP and Mα), ``combine`` (writing
        ``p.grad``) and ``total``.
    norm : float
        :math:`\|M\alpha\|`, the norm of the combination before normalization.
    skipped : bool
        A gradient-scaler overflow: ``p.grad`` holds NaN so ``scaler.step`` skips the update.
    strategy : str
        The gradient strategy that ran ("loop" or "func").
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
        if self.spec.family == "ddi-decay":
            if total_steps is None:
                raise ValueError("ddi-decay needs total_steps (an integer >= 1), got None")
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
        """Restarts this step: m, or for ddi-decay m0 + (1 - m0)·t/total_steps rounded, 1 after the end."""
        if self.spec.family != "ddi-decay":
            return self.spec.m
        frac = min(self.t / self.total_steps, 1.0)
        return max(1, int(round(self.spec.m + (1 - self.spec.m) * frac)))

    # -- the step ---------------------------------------------------------------------------------------
    def _make_attack(self, restarts: int):
        if self.attack is not None:
            return self.attack
        fam = self.spec.family
        if fam.startswith("fast"):
            return FGSM(eps=self.eps, alpha=1.25 * self.eps, restarts=restarts, norm=self.norm)
        steps = self.spec.steps or self.steps
        decay = self.steps + 1 if self.spec.decay else None
        return PGD(eps=self.eps, alpha=self.step_size, steps=steps, norm=self.norm, restarts=restarts,
                   decay_after=decay)

    def _sync(self, device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

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
        fam, dev = self.spec.family, x.device
        amp = (torch.autocast(device_type=dev.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        t0 = self._sync(dev)
        restarts = 2 if fam == "ddi-comb" else (1 if fam in ("pgd", "fast", "pgd-long") else self.current_m())
        sizes = _dist.batch_sizes(x.shape[0], dev) if self.distributed else None  # once per step
        attack = self._make_attack(restarts)
        with amp:
            if sizes is not None and hasattr(attack, "draw_start"):
                # the union batch's start, drawn as one process draws it; this rank keeps its rows
                union = (restarts, sum(sizes), *x.shape[1:])
                start = attack.draw_start(union, device=dev, dtype=x.dtype)[:, _dist.local_rows(sizes)]
                result = attack.run(self.model, x, y, start=start)
            else:
                result = attack.run(self.model, x, y)
        if not isinstance(result, AttackResult) or result.deltas.shape[0] != restarts:
            raise ValueError(f"{self.spec.name} needs an attack with {restarts} restarts")
        x = x.detach()
        if fam in ("pgd-max", "fast-max"):
            sets = (x + worst_case(result)).unsqueeze(0)
        elif fam == "ddi-comb":
            bits = self._bits(self.spec.m, x.shape[0], dev, sizes)
            pick = bits.view(*bits.shape, *([1] * (x.ndim - 1))).bool()
            sets = x + torch.where(pick, result.deltas[1].unsqueeze(0), result.deltas[0].unsqueeze(0))
        else:
            sets = x + result.deltas
        sets = sets.clamp(0, 1)  # x + δ is in [0, 1] up to the rounding of the addition
        t1 = self._sync(dev)

        scale = None
        if self.scaler is not None and self.scaler.is_enabled():
            # scaler.scale() also creates the scale tensor lazily, as scaler.step() requires.
            scale = float(self.scaler.scale(torch.ones((), device=dev)))
        sg = self._gradients(sets, y.to(dev), scale)
        blocks, losses, buffers, used = sg.blocks, sg.losses, sg.buffers, sg.used
        if self.distributed:
            blocks, losses, buffers = _dist.average_sets(blocks, losses, buffers, x.shape[0], sizes)
            used = _dist.any_rank(used, dev)
        losses_np = losses.double().cpu().numpy()
        if not np.all(np.isfinite(losses_np)):
            bad = [i for i, v in enumerate(losses_np) if not np.isfinite(v)]
            raise NonFiniteLossError(
                f"{self.spec.name}: the loss is {losses_np[bad[0]]} at perturbation set(s) {bad} of "
                f"{len(losses_np)} (step {self.t}); lower the learning rate, check the data, or use a "
                f"GradScaler with float16 autocast")
        finite = bool(torch.stack([torch.isfinite(b).all() for b in blocks]).all()) if self.distributed \
            else sg.finite
        t2 = self._sync(dev)
        if not finite:
            if scale is None:
                raise NonFiniteLossError(f"{self.spec.name}: finite losses but a NaN or infinite gradient "
                                         f"(step {self.t})")
            for p, u in zip(self.params, used, strict=True):
                p.grad = torch.full_like(p, float("nan")) if u else None
            self.t += 1
            nan = float("nan")
            return StepRecord(float(losses_np.max()), tuple(losses_np.tolist()), np.full(len(losses_np), nan),
                              nan, nan, 0, len(losses_np), {"total": self._sync(dev) - t0}, nan, True,
                              sg.strategy)
        G_t = gram(blocks)
        G = G_t.cpu().numpy()
        t3 = self._sync(dev)
        m = G.shape[0]
        if self.spec.danskin:
            res = steepest_descent(blocks, gram=G, method=self.qp_method)
            alpha, comb, nrm, gap = res.weights, res.combination, res.norm, res.qp.gap
            slope = res.slope
            factor = (1.0 / nrm if nrm > 0 and not res.stationary else 0.0) if self.normalize else 1.0
        else:
            k = int(np.argmin(np.diag(G))) if fam == "pgd-min" else 0
            alpha = np.zeros(m)
            alpha[k] = 1.0
            comb = [b[k] for b in blocks]
            nrm = float(np.sqrt(G[k, k]))
            gap = fw_gap(alpha, G @ alpha)[1]
            slope = float(-np.min(G[:, k]) / nrm) if nrm > 0 else 0.0
            factor = 1.0
        t4 = self._sync(dev)
        if scale is not None:
            factor *= scale
        with torch.no_grad():
            for p, c, u in zip(self.params, comb, used, strict=True):
                if not u:
                    p.grad = None  # as backward() leaves a parameter the loss does not reach
                    continue
                if p.grad is None:
                    p.grad = torch.empty_like(p)
                p.grad.copy_(c * factor if factor != 1.0 else c)
        _grads.commit_buffers(self.model, buffers, alpha)
        self.t += 1
        t5 = self._sync(dev)
        times = {"attack": t1 - t0, "gradients": t2 - t1, "gram": t3 - t2, "qp": t4 - t3, "combine": t5 - t4,
                 "total": t5 - t0}
        neg = int(np.sum(np.triu(G, 1) < 0))
        return StepRecord(float(losses_np.max()), tuple(losses_np.tolist()), alpha, float(gap), float(slope),
                          neg, m, times, float(nrm), False, sg.strategy)

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
