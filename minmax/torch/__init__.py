"""The PyTorch adapter of minmax: attacks (the inner maximization), the training step built on them, and
max-functions written in torch (autodiff gradients, batched multi-start ascent, DDi and the baseline).

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
from minmax.torch.maxfunc import ddi, estimate_lipschitz, maximize, single_adversary
from minmax.torch.maxproblem import MaxProblem
from minmax.torch.sets import TorchSet

__all__ = [
    # attacks: the inner maximization (PGD l∞/l2 with batched restarts, FGSM/FAST)
    "FGSM", "PGD", "AttackResult", "worst_case",
    # the training step, its m gradients, and multi-process support
    "VARIANTS", "STRATEGIES", "DescentStep", "NonFiniteLossError", "SetGradients", "StepRecord",
    "VariantSpec", "commit_buffers", "distributed", "parse_variant", "set_gradients",
    # max-functions in torch: autodiff gradients, batched inner maximization, DDi and the single adversary
    "MaxProblem", "TorchSet", "ddi", "estimate_lipschitz", "maximize", "single_adversary",
]
