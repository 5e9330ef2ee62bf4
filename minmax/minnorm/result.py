"""The result every minimum-norm-point method returns, and the table of its messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

__all__ = ["Status", "MinNormResult", "MESSAGES"]


class Status(enum.Enum):
    """How a minimum-norm-point solve ended.

    Not converging is a status, never an exception: callers inspect ``result.status`` (or
    ``result.success``) and decide.
    """

    OPTIMAL = "optimal"
    MAX_ITER = "max-iterations"
    STALLED = "stalled"
    SOLVER_ERROR = "solver-error"


MESSAGES = {
    Status.OPTIMAL: "The duality gap recomputed from G and the weights is within tolerance.",
    Status.MAX_ITER: "The iteration limit was reached before the duality gap fell within tolerance.",
    Status.STALLED: (
        "The method could make no further progress in floating point arithmetic, and the duality gap "
        "recomputed from G and the weights is above tolerance."
    ),
    Status.SOLVER_ERROR: "The external solver failed; the weights are the best feasible point known.",
}


@dataclass(frozen=True)
class MinNormResult:
    r"""Solution of :math:`\min_{\alpha \in \Delta} \alpha^\top G \alpha` with its certificate.

    Attributes
    ----------
    weights : ndarray of shape (m,), float64
        Feasible weights :math:`\alpha` (non-negative, summing to one). Not unique when ``G`` is
        singular: compare ``value`` or ``G @ weights``, never the weights themselves.
    value : float
        :math:`f(\alpha) = \alpha^\top G \alpha = \|M\alpha\|^2`.
    gap : float
        Frank-Wolfe duality gap :math:`2(\alpha^\top G\alpha - \min_i (G\alpha)_i)`, recomputed from
        the inputs; it bounds :math:`f(\alpha) - f^*` and :math:`\|M\alpha - x^*\|^2`.
    tolerance : float
        The gap below which ``status`` is ``OPTIMAL`` for this ``G`` and these weights.
    iterations : int
        Iterations the method performed.
    status : Status
        Why the method stopped.
    message : str
        Human-readable explanation of ``status``.
    support : ndarray of int
        Indices ``i`` with ``weights[i] > 0``, ascending.
    method : str
        The method that produced the result.
    """

    weights: np.ndarray
    value: float
    gap: float
    tolerance: float
    iterations: int
    status: Status
    message: str
    support: np.ndarray
    method: str

    @property
    def success(self) -> bool:
        """Whether ``status`` is :attr:`Status.OPTIMAL`."""
        return self.status is Status.OPTIMAL
