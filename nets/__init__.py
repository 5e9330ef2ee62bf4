"""PyTorch models for the experiments: CIFAR ResNet18 / PreActResNet18, a small CNN and an MLP.

Every model built by :func:`build_model` takes images in [0, 1] and starts with :class:`Normalize`, so
attacks measure ε in pixel units (the conventions of DESIGN.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from nets.layers import ACTIVATIONS, GROUPS, NORMS, Normalize, check_choice, make_activation, make_norm
from nets.resnet import PreActResNet18, ResNet18
from nets.small import MLP, SmallCNN

__all__ = [
    "ACTIVATIONS", "GROUPS", "MLP", "NETS", "NORMS", "Normalize", "PreActResNet18", "ResNet18", "SmallCNN",
    "build_model", "make_activation", "make_norm",
]

NETS = ("resnet18", "preact-resnet18", "cnn", "mlp")


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    activation: str = "relu",
    norm: str = "batch",
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    **kwargs,
) -> nn.Module:
    """Build a model whose first module is ``Normalize(mean, std)``.

    Parameters
    ----------
    name : {"resnet18", "preact-resnet18", "cnn", "mlp"}
        The network (:data:`NETS`).
    num_classes : int
        Number of outputs.
    input_shape : tuple of int
        Shape of one input, ``(C, H, W)`` (the MLP accepts any shape and flattens it).
    activation : {"relu", "celu", "elu", "softplus"}
        :data:`ACTIVATIONS`.
    norm : {"batch", "group", "none"}
        :data:`NORMS`; ``"group"`` is GroupNorm with 8 groups (the paper's choice, with CELU, for ResNet18);
        ``"none"`` removes every norm layer and gives the convolutions a bias.
    mean, std : float, sequence of float, or None
        Per-channel input statistics for :class:`Normalize`; None and None gives the identity.
    **kwargs
        Passed to the network: ``channels=(32, 64), hidden=128`` for ``"cnn"``; ``hidden=(256, 256)`` for
        ``"mlp"``.

    Returns
    -------
    torch.nn.Sequential
        ``model[0]`` (also ``model.normalize``) is the :class:`Normalize` layer, ``model[1]`` (``model.net``)
        the network.

    Raises
    ------
    ValueError
        If ``name``, ``activation`` or ``norm`` is not a valid choice (the message lists them), or
        ``mean``/``std`` do not have one value per input channel.
    TypeError
        If a keyword is not accepted by the chosen network.

    Examples
    --------
    >>> import torch
    >>> model = build_model("resnet18", activation="celu", norm="group",
    ...                     mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616))
    >>> type(model[0]).__name__, model(torch.rand(2, 3, 32, 32)).shape
    ('Normalize', torch.Size([2, 10]))
    >>> build_model("mlp", input_shape=(1, 28, 28), hidden=(32,))(torch.rand(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    """
    check_choice(name, NETS, "net")
    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(norm, NORMS, "norm")
    shape = tuple(int(s) for s in input_shape)
    normalize = Normalize(mean, std)
    if normalize.channels is not None and (len(shape) < 2 or normalize.channels != shape[0]):
        raise ValueError(
            f"mean/std have {normalize.channels} values but input_shape {shape} has "
            f"{shape[0] if len(shape) >= 2 else 'no'} channels"
        )
    common = dict(num_classes=num_classes, activation=activation, norm=norm)
    if name in ("resnet18", "preact-resnet18"):
        if len(shape) != 3:
            raise ValueError(f"{name} needs input_shape (C, H, W), got {shape}")
        cls = ResNet18 if name == "resnet18" else PreActResNet18
        net = cls(in_channels=shape[0], **common, **kwargs)
    elif name == "cnn":
        net = SmallCNN(shape, **common, **kwargs)
    else:
        net = MLP(shape, **common, **kwargs)
    return nn.Sequential(OrderedDict(normalize=normalize, net=net))
