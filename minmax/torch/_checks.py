"""Input checks of the attacks (:mod:`minmax.torch.attacks`): clear errors at the public boundary."""

from __future__ import annotations

import math
import numbers

import torch


def set_eval(model) -> list | None:
    """Put ``model`` in eval mode; return every submodule's previous mode, to restore exactly."""
    if not isinstance(model, torch.nn.Module):
        return None
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    return modes


def validate_batch(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """A clean batch: x floating, finite, in [0, 1], (B, ...) with B >= 1; y with B rows, on x's device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point (images in [0, 1]), got dtype {x.dtype}")
    if x.dim() < 2 or x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"x must be a non-empty batch of shape (B, ...), got shape {tuple(x.shape)}")
    if y.dim() < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size: x has shape {tuple(x.shape)}, "
            f"y has shape {tuple(y.shape)}"
        )
    if x.is_inference():  # a tensor made under inference_mode cannot enter autograd; a copy can
        x = x.clone()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x has non-finite entries (nan or inf); inputs must be finite and in [0, 1]")
    lo, hi = torch.aminmax(x)
    if lo < 0 or hi > 1:
        raise ValueError(
            f"x must lie in [0, 1] (normalization belongs inside the model), got values in [{float(lo):.6g}, "
            f"{float(hi):.6g}]"
        )
    return x.detach(), y.to(x.device)


def positive_float(value, name: str) -> float:
    """``value`` as a float, which must be finite and > 0 (``name`` for the error)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def positive_int(value, name: str) -> int:
    """``value`` as an int, which must be an integer >= 1 (``name`` for the error)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def validate_start(start, x: torch.Tensor, restarts: int) -> torch.Tensor:
    """A raw attack start: finite, floating, of shape (restarts, B, *x.shape[1:]); in x's device and dtype."""
    if not isinstance(start, torch.Tensor):
        raise TypeError(f"start must be a torch.Tensor or None, got {type(start).__name__}")
    if not start.is_floating_point():
        raise TypeError(f"start must be floating point, got dtype {start.dtype}")
    shape = (restarts, x.shape[0], *x.shape[1:])
    if tuple(start.shape) != shape:
        raise ValueError(f"start must have shape (restarts, B, *x.shape[1:]) = {shape}, got "
                         f"{tuple(start.shape)}")
    start = start.detach().to(device=x.device, dtype=x.dtype)
    if not bool(torch.isfinite(start).all()):
        raise ValueError("start has non-finite entries (nan or inf)")
    return start
