r"""The optimizer and the learning-rate schedule of a run, built from its configuration.

The paper trains with SGD (learning rate 0.1, momentum 0, weight decay :math:`5\cdot 10^{-4}`) and multiplies
the learning rate by 0.1 after 50% and 75% of the epochs; these are the defaults. ``--momentum`` gives SGD
momentum, and ``--schedule cosine`` anneals the learning rate instead:

.. math::

    \eta_t = \tfrac12\,\eta_0\,\bigl(1 + \cos(\pi t / T)\bigr), \qquad t = 0, 1, \dots, T,

with :math:`t` the optimizer steps taken and :math:`T` the run's total steps (``--epochs`` times the steps
per epoch, or ``--max-steps``). The step schedule moves at the end of an epoch, the cosine one after every
optimizer step; both are checkpointed with the run, so a resumed run continues the same learning rates. The
``lr`` of an epoch's metrics row is the learning rate reached at the epoch's end (before the step schedule's
decay there): for the step schedule the one the epoch trained with, for cosine the next step's.
"""

from __future__ import annotations

import torch

__all__ = ["Schedule", "build_optimizer", "build_schedule", "milestones"]


def build_optimizer(model: torch.nn.Module, config: dict) -> torch.optim.Optimizer:
    """SGD on the model's parameters with the configuration's ``lr``, ``momentum`` and ``weight_decay``."""
    return torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"],
                           weight_decay=config["weight_decay"])


def milestones(fractions, epochs: int) -> list[int]:
    """The epochs after which the step schedule decays: each fraction of ``epochs``, rounded, at least 1.

    Examples
    --------
    >>> milestones((0.5, 0.75), 200), milestones((0.5, 0.75), 2)
    ([100, 150], [1, 2])
    """
    return sorted({max(1, round(f * epochs)) for f in fractions})


class Schedule:
    """A learning-rate scheduler and when it moves: after each epoch (``"step"``) or each step (``"cosine"``).

    The trainer calls :meth:`after_step` after every optimizer step and :meth:`after_epoch` at the end of
    every epoch; the scheduler moves on the one its kind names. :meth:`state_dict` is the torch scheduler's.

    Attributes
    ----------
    kind : {"step", "cosine"}
    scheduler : torch.optim.lr_scheduler.LRScheduler
    """

    def __init__(self, kind: str, scheduler) -> None:
        self.kind, self.scheduler = kind, scheduler

    def __repr__(self) -> str:
        return f"Schedule({self.kind!r}, {type(self.scheduler).__name__})"

    def after_step(self) -> None:
        if self.kind == "cosine":
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.kind == "step":
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def build_schedule(optimizer: torch.optim.Optimizer, config: dict, *, epochs: int,
                   total_steps: int) -> Schedule:
    """The configuration's schedule over a run of ``epochs`` epochs and ``total_steps`` optimizer steps.

    ``"step"``: :class:`torch.optim.lr_scheduler.MultiStepLR` at :func:`milestones` of ``lr_milestones``
    over ``epochs``, factor ``lr_gamma``. ``"cosine"``: :class:`torch.optim.lr_scheduler.CosineAnnealingLR`
    with ``T_max = total_steps`` (to 0).

    Raises
    ------
    ValueError
        If ``config["schedule"]`` is not ``"step"`` or ``"cosine"``, or the run has no steps.
    """
    kind = config.get("schedule", "step")
    if epochs < 1 or total_steps < 1:
        raise ValueError(f"a schedule needs at least one epoch and one step, got {epochs} and {total_steps}")
    if kind == "step":
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones(config["lr_milestones"], epochs), config["lr_gamma"])
    elif kind == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        raise ValueError(f"unknown schedule {kind!r}; expected 'step' or 'cosine'")
    return Schedule(kind, scheduler)
