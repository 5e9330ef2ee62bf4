"""Small nets for quick experiments and tests: a CNN for 28×28 or 32×32 images, and an MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nets.layers import ACTIVATIONS, NORMS, check_choice, make_activation, make_norm, needs_bias

__all__ = ["MLP", "SmallCNN"]


class SmallCNN(nn.Module):
    """Two conv stages (3×3 conv, norm, activation, 2×2 max-pool) then a hidden linear layer.

    With the defaults on 28×28 inputs: 32 and 64 channels, 7×7×64 features, 128 hidden units (about 0.42M
    parameters); on 32×32 inputs the features are 8×8×64. Any size of at least 4×4 works.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` of one input.
    num_classes : int
        Number of outputs.
    activation : {"relu", "celu", "elu", "softplus"}
    norm : {"batch", "group", "none"}
        Norm after each convolution (group: 8 groups, so ``channels`` must be multiples of 8).
    channels : tuple of two int
        Channels of the two conv stages.
    hidden : int
        Width of the hidden linear layer (no norm there).

    Raises
    ------
    ValueError
        For an invalid choice, a shape that is not ``(C, H, W)`` with H, W >= 4, or non-positive sizes.

    Examples
    --------
    >>> import torch
    >>> SmallCNN((1, 28, 28))(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        *,
        activation: str = "relu",
        norm: str = "batch",
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
    ):
        super().__init__()
        check_choice(activation, ACTIVATIONS, "activation")
        check_choice(norm, NORMS, "norm")
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1 or shape[1] < 4 or shape[2] < 4:
            raise ValueError(f"the CNN needs input_shape (C, H, W) with H, W >= 4, got {tuple(input_shape)}")
        channels = tuple(int(c) for c in channels)
        if len(channels) != 2 or min(channels) < 1 or hidden < 1 or num_classes < 1:
            raise ValueError(
                f"channels must be two positive ints and hidden, num_classes >= 1; got channels={channels}, "
                f"hidden={hidden}, num_classes={num_classes}"
            )
        bias = needs_bias(norm)
        layers, cin = [], shape[0]
        for cout in channels:
            layers += [
                nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=bias),
                make_norm(norm, cout),
                make_activation(activation),
                nn.MaxPool2d(2),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        flat = cin * (shape[1] // 4) * (shape[2] // 4)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), make_activation(activation), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Flatten, then ``Linear → norm → activation`` per hidden layer, then a linear output layer.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one input; it is flattened to ``prod(input_shape)`` features.
    num_classes : int
        Number of outputs.
    activation : {"relu", "celu", "elu", "softplus"}
    norm : {"batch", "group", "none"}
        Norm after each hidden linear layer (``BatchNorm1d`` or ``GroupNorm`` with 8 groups).
    hidden : tuple of int
        Widths of the hidden layers; ``()`` gives a linear model.

    Raises
    ------
    ValueError
        For an invalid choice or non-positive sizes.

    Examples
    --------
    >>> import torch
    >>> MLP((1, 28, 28), hidden=(64, 32))(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        *,
        activation: str = "relu",
        norm: str = "batch",
        hidden: Sequence[int] = (256, 256),
    ):
        super().__init__()
        check_choice(activation, ACTIVATIONS, "activation")
        check_choice(norm, NORMS, "norm")
        shape = tuple(int(s) for s in input_shape)
        hidden = tuple(int(h) for h in hidden)
        if not shape or min(shape) < 1 or (hidden and min(hidden) < 1) or num_classes < 1:
            raise ValueError(
                f"input_shape and hidden need positive sizes and num_classes >= 1; got input_shape={shape}, "
                f"hidden={hidden}, num_classes={num_classes}"
            )
        width = 1
        for s in shape:
            width *= s
        bias = needs_bias(norm)
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(width, h, bias=bias), make_norm(norm, h, dim=1), make_activation(activation)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
