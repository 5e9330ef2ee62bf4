"""The PyTorch adapter of minmax: attacks (the inner maximization) and, built on them, the training step.

This is the only part of :mod:`minmax` that imports torch. The core (:mod:`minmax.danskin`,
:mod:`minmax.minnorm`, :mod:`minmax.gram`) works on the adapter's gradients through the array API.
"""

from __future__ import annotations

from minmax.torch import distributed
from minmax.torch.attacks import FGSM, PGD, AttackResult, worst_case
from minmax.torch.descent import (
    VARIANTS,
    DescentStep,
    NonFiniteLossError,
    StepRecord,
    VariantSpec,
    parse_variant,
)
from minmax.torch.gradients import STRATEGIES, SetGradients, commit_buffers, set_gradients

__all__ = [
    # attacks: the inner maximization (PGD l∞/l2 with batched restarts, FGSM/FAST)
    "FGSM", "PGD", "AttackResult", "worst_case",
    # the training step, its m gradients, and multi-process support
    "VARIANTS", "STRATEGIES", "DescentStep", "NonFiniteLossError", "SetGradients", "StepRecord",
    "VariantSpec", "commit_buffers", "distributed", "parse_variant", "set_gradients",
]
