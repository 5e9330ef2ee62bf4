"""CIFAR ResNet18 and PreActResNet18, with the activation and the normalization selectable.

The CIFAR variants of He et al. [1]_ [2]_: a 3×3 stride-1 stem (no max-pool), four stages of two basic blocks
with 64, 128, 256, 512 channels and strides 1, 2, 2, 2, global average pooling and a linear classifier. The
paper trains ResNet18 with CELU and GroupNorm (8 groups) [3]_; ReLU and BatchNorm give the usual network.
Global *adaptive* average pooling makes the nets run on any input size (4×4 pooling for 32×32 images).

References
----------
.. [1] He, Zhang, Ren, Sun. "Deep residual learning for image recognition." CVPR 2016.
.. [2] He, Zhang, Ren, Sun. "Identity mappings in deep residual networks." ECCV 2016.
.. [3] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding actual descent directions for adversarial
   training." ICLR 2023.
"""

from __future__ import annotations

import torch
from torch import nn

from nets.layers import ACTIVATIONS, NORMS, check_choice, make_activation, make_norm, needs_bias

__all__ = ["BasicBlock", "PreActBlock", "PreActResNet18", "ResNet18"]

_WIDTHS = (64, 128, 256, 512)
_STRIDES = (1, 2, 2, 2)
_BLOCKS = (2, 2, 2, 2)


def _conv3x3(cin: int, cout: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=bias)


class BasicBlock(nn.Module):
    """Post-activation basic block: ``act(norm(conv(act(norm(conv(x))))) + shortcut(x))``.

    The shortcut is the identity, or a strided 1×1 convolution (followed by the norm) when the shape changes.
    """

    def __init__(self, cin: int, cout: int, stride: int, activation: str, norm: str):
        super().__init__()
        bias = needs_bias(norm)
        self.conv1 = _conv3x3(cin, cout, stride, bias)
        self.norm1 = make_norm(norm, cout)
        self.act1 = make_activation(activation)
        self.conv2 = _conv3x3(cout, cout, 1, bias)
        self.norm2 = make_norm(norm, cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=bias), make_norm(norm, cout)
            )
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block [2]_: ``conv(act(norm(conv(act(norm(x)))))) + shortcut``.

    When the shape changes, the shortcut is a strided 1×1 convolution of the pre-activated input
    ``act(norm(x))``; otherwise it is ``x`` itself.
    """

    def __init__(self, cin: int, cout: int, stride: int, activation: str, norm: str):
        super().__init__()
        bias = needs_bias(norm)
        self.norm1 = make_norm(norm, cin)
        self.act1 = make_activation(activation)
        self.conv1 = _conv3x3(cin, cout, stride, bias)
        self.norm2 = make_norm(norm, cout)
        self.act2 = make_activation(activation)
        self.conv2 = _conv3x3(cout, cout, 1, bias)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.norm2(out)))
        return out + skip


class _ResNet(nn.Module):
    block: type[nn.Module]
    preact: bool

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        activation: str = "relu",
        norm: str = "batch",
    ):
        super().__init__()
        check_choice(activation, ACTIVATIONS, "activation")
        check_choice(norm, NORMS, "norm")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        self.activation, self.norm = activation, norm
        bias = needs_bias(norm)
        self.conv1 = _conv3x3(in_channels, _WIDTHS[0], 1, bias)
        # the post-activation net normalizes the stem's output; the pre-activation net does so in its blocks
        self.stem = nn.Identity() if self.preact else nn.Sequential(
            make_norm(norm, _WIDTHS[0]), make_activation(activation)
        )
        stages, cin = [], _WIDTHS[0]
        for width, stride, n in zip(_WIDTHS, _STRIDES, _BLOCKS, strict=True):
            blocks = []
            for i in range(n):
                blocks.append(self.block(cin, width, stride if i == 0 else 1, activation, norm))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.head = nn.Sequential(make_norm(norm, cin), make_activation(activation)) if self.preact else (
            nn.Identity()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(self.conv1(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.pool(self.head(out)).flatten(1)
        return self.linear(out)


class ResNet18(_ResNet):
    """CIFAR ResNet18 [1]_ (post-activation basic blocks); about 11.17M parameters for 10 classes.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    in_channels : int
        Input channels (3 for CIFAR).
    activation : {"relu", "celu", "elu", "softplus"}
    norm : {"batch", "group", "none"}
        ``"group"``: GroupNorm with 8 groups; ``"none"``: no norm layer, and every convolution has a bias.

    Raises
    ------
    ValueError
        If ``activation`` or ``norm`` is not a valid choice (the message lists them).

    Examples
    --------
    >>> import torch
    >>> net = ResNet18(activation="celu", norm="group")
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    block = BasicBlock
    preact = False


class PreActResNet18(_ResNet):
    """CIFAR PreActResNet18 [2]_ (the net of FAST adversarial training); about 11.17M parameters.

    A final norm + activation precedes the pooling, as in the pre-activation design. Parameters and errors as
    in :class:`ResNet18`.

    Examples
    --------
    >>> import torch
    >>> PreActResNet18(num_classes=5)(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 5])
    """

    block = PreActBlock
    preact = True
