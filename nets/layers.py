"""Building blocks shared by the nets: input normalization, and activation / normalization factories.

The adversarial conventions of the project (DESIGN.md) put normalization *inside* the model: attacks see
images in [0, 1] and measure ε in pixel units, and :class:`Normalize` maps them to the network's scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "GROUPS", "NORMS", "Normalize", "make_activation", "make_norm"]

ACTIVATIONS = ("relu", "celu", "elu", "softplus")
NORMS = ("batch", "group", "none")
#: GroupNorm's number of groups (the paper's ResNet18 uses GroupNorm with 8 groups).
GROUPS = 8

_ACTIVATION_CLASSES = {"relu": nn.ReLU, "celu": nn.CELU, "elu": nn.ELU, "softplus": nn.Softplus}


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel (dimension 1); the identity when ``mean`` and ``std`` are None.

    Parameters
    ----------
    mean, std : float, sequence of float, or None
        Per-channel statistics (one value per channel, or one value for all). ``None`` for one of them means 0
        (mean) or 1 (std). Stored as buffers, so they follow ``.to(device)`` and are saved in the state dict.

    Raises
    ------
    ValueError
        If ``std`` has a non-positive entry, an entry is not finite, or ``mean`` and ``std`` disagree in
        length (both longer than 1).

    Examples
    --------
    >>> import torch
    >>> norm = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    >>> norm(torch.full((1, 3, 2, 2), 0.75))[0, :, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    >>> Normalize()(torch.ones(2, 3)).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(
        self, mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.identity = mean is None and std is None
        if self.identity:
            return
        mean_t = _as_vector(0.0 if mean is None else mean, "mean")
        std_t = _as_vector(1.0 if std is None else std, "std")
        if mean_t.numel() > 1 and std_t.numel() > 1 and mean_t.numel() != std_t.numel():
            raise ValueError(
                f"mean and std must have one value per channel each: got {mean_t.numel()} and {std_t.numel()}"
            )
        if (std_t <= 0).any():
            raise ValueError(f"std must be > 0 in every channel, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    @property
    def channels(self) -> int | None:
        """Number of channels the statistics are for (None: identity or one value for all channels)."""
        if self.identity:
            return None
        n = max(self.mean.numel(), self.std.numel())
        return None if n == 1 else n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        if self.identity:
            return "identity"
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


def make_activation(name: str) -> nn.Module:
    """A new activation module: ``"relu"``, ``"celu"``, ``"elu"`` or ``"softplus"`` (torch's defaults).

    Not in place, so the module composes with ``torch.func`` transforms and with hooks that read inputs.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`ACTIVATIONS`.
    """
    try:
        cls = _ACTIVATION_CLASSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}") from None
    return cls()


def make_norm(name: str, channels: int, *, dim: int = 2) -> nn.Module:
    """A new normalization layer over ``channels`` features.

    Parameters
    ----------
    name : {"batch", "group", "none"}
        ``"batch"``: BatchNorm (``dim=2``: ``BatchNorm2d``, ``dim=1``: ``BatchNorm1d``); ``"group"``:
        ``GroupNorm`` with :data:`GROUPS` = 8 groups, as in the paper; ``"none"``: the identity (layers before
        it then carry a bias, see :func:`needs_bias`).
    channels : int
        Number of channels (features). Must be divisible by 8 for ``"group"``.
    dim : {1, 2}
        Feature maps (2) or flat features (1); only BatchNorm distinguishes them.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`NORMS`, or ``channels`` is not divisible by 8 for ``"group"``.
    """
    if name == "batch":
        return nn.BatchNorm2d(channels) if dim == 2 else nn.BatchNorm1d(channels)
    if name == "group":
        if channels % GROUPS:
            raise ValueError(f"group norm needs channels divisible by {GROUPS}, got {channels}")
        return nn.GroupNorm(GROUPS, channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; expected one of {NORMS}")


def needs_bias(norm: str) -> bool:
    """Whether a conv/linear layer followed by ``norm`` needs its own bias (only without a norm layer).

    BatchNorm and GroupNorm subtract the mean and add their own shift, which would cancel a bias before them.
    """
    check_choice(norm, NORMS, "norm")
    return norm == "none"


def check_choice(value, choices: tuple[str, ...], what: str) -> str:
    """Return ``value`` if it is one of ``choices``; else raise a ValueError naming the valid ones."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {choices}")
    return value


def _as_vector(value, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten().clone()
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; give one value per channel")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t
