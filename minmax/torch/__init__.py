"""The PyTorch adapter of minmax: attacks (the inner maximization) and, built on them, the training step.

This is the only part of :mod:`minmax` that imports torch. The core (:mod:`minmax.danskin`,
:mod:`minmax.minnorm`, :mod:`minmax.gram`) works on the adapter's gradients through the array API.
"""

from __future__ import annotations

from minmax.torch import distributed
from minmax.torch.adapter import AttackAdapter
from minmax.torch.attacks import FGSM, PGD, AttackResult, worst_case
from minmax.torch.backward import RULES, NonFiniteLossError, StepRecord, danskin_backward, write_direction
from minmax.torch.descent import DescentStep
from minmax.torch.gradients import (
    STRATEGIES,
    SetGradients,
    commit_buffers,
    loss_gradients,
    set_gradients,
)
from minmax.torch.variants import FAMILIES, VARIANTS, Family, VariantSpec, parse_variant, variant_names

__all__ = [
    # attacks: the inner maximization (PGD l∞/l2 with batched restarts, FGSM/FAST)
    "FGSM", "PGD", "AttackResult", "worst_case",
    # an attack that returns x_adv (torchattacks' convention) as one that returns the perturbations δ
    "AttackAdapter",
    # the composable Danskin step: m losses or m gradients -> the direction in p.grad
    "RULES", "NonFiniteLossError", "StepRecord", "danskin_backward", "write_direction",
    # the paper's variants as data, and the training step that composes attack + gradients + rule
    "FAMILIES", "VARIANTS", "DescentStep", "Family", "VariantSpec", "parse_variant", "variant_names",
    # the m gradients, and multi-process support
    "STRATEGIES", "SetGradients", "commit_buffers", "distributed", "loss_gradients", "set_gradients",
]
