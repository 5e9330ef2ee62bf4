"""Tests of nets: every net × activation × norm builds and runs; Normalize first; choices validated."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import nets
from nets import ACTIVATIONS, NETS, NORMS, Normalize, build_model

# tiny inputs: ResNets on 2 images of 16×16 (four stages still leave 2×2 maps), CNN/MLP on 28×28
_SHAPES = {"resnet18": (3, 16, 16), "preact-resnet18": (3, 16, 16), "cnn": (1, 28, 28), "mlp": (1, 28, 28)}
_KWARGS = {"cnn": dict(channels=(8, 16), hidden=16), "mlp": dict(hidden=(16, 8))}
_NORM_TYPES = {"batch": (nn.BatchNorm1d, nn.BatchNorm2d), "group": (nn.GroupNorm,)}
_ACT_TYPES = {"relu": nn.ReLU, "celu": nn.CELU, "elu": nn.ELU, "softplus": nn.Softplus}


def test_contract_names():
    assert NETS == ("resnet18", "preact-resnet18", "cnn", "mlp")
    assert ACTIVATIONS == ("relu", "celu", "elu", "softplus")
    assert NORMS == ("batch", "group", "none")


@pytest.mark.parametrize("name, activation, norm", list(itertools.product(NETS, ACTIVATIONS, NORMS)))
def test_builds_and_runs(name, activation, norm):
    shape = _SHAPES[name]
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, input_shape=shape, activation=activation, norm=norm,
                        **_KWARGS.get(name, {}))
    assert isinstance(model[0], Normalize) and next(iter(model.children())) is model[0]
    out = model(torch.rand(2, *shape))  # train mode: BatchNorm uses batch statistics
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    model.eval()
    assert model(torch.rand(2, *shape)).shape == (2, 7)
    mods = list(model.modules())
    # the chosen activation is the only one, and the chosen norm is the only kind of norm layer
    assert any(isinstance(m, _ACT_TYPES[activation]) for m in mods)
    others = tuple(t for a, t in _ACT_TYPES.items() if a != activation)
    assert not any(isinstance(m, others) for m in mods)
    all_norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)
    norm_layers = [m for m in mods if isinstance(m, all_norms)]
    if norm == "none":
        assert not norm_layers
        # without a norm layer every convolution carries a bias
        assert all(m.bias is not None for m in mods if isinstance(m, nn.Conv2d))
    else:
        assert norm_layers and all(isinstance(m, _NORM_TYPES[norm]) for m in norm_layers)
        assert all(m.bias is None for m in mods if isinstance(m, nn.Conv2d))
    if norm == "group":
        assert all(m.num_groups == 8 for m in norm_layers)


def test_gradients_flow_to_every_parameter():
    model = build_model("preact-resnet18", input_shape=(3, 16, 16), activation="celu", norm="group")
    model(torch.rand(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_resnet_parameter_counts():
    # CIFAR ResNet18: 11,173,962 parameters (10 classes); GroupNorm has BatchNorm's 2 parameters per channel;
    # without norm, the biases of the 20 convolutions replace the norms' parameters.
    counts = {norm: sum(p.numel() for p in build_model("resnet18", norm=norm).parameters()) for norm in NORMS}
    assert counts["batch"] == counts["group"] == 11_173_962
    assert abs(counts["none"] - 11.17e6) < 0.01e6
    # PreActResNet18 (with the final norm before pooling, as in FAST): 1024 more than without
    assert sum(p.numel() for p in build_model("preact-resnet18").parameters()) == 11_172_170


def test_normalize():
    x = torch.rand(4, 3, 5, 5)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    norm = Normalize(mean, std)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    assert torch.equal(Normalize()(x), x) and not list(Normalize().buffers())
    # buffers: saved in the state dict and moved with the model
    assert set(norm.state_dict()) == {"mean", "std"}
    assert norm.to(torch.float64).mean.dtype == torch.float64
    model = build_model("cnn", input_shape=(3, 28, 28), mean=mean, std=std)
    torch.testing.assert_close(model[0].mean, torch.tensor(mean))
    # flat features: the MLP normalizes before flattening, one value per channel
    torch.testing.assert_close(Normalize(0.5, 0.5)(torch.ones(2, 4)), torch.ones(2, 4))


def test_normalize_on_device(device):
    model = build_model("cnn", input_shape=(3, 28, 28), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)).to(device)
    assert model[0].mean.device.type == device
    assert model(torch.rand(2, 3, 28, 28, device=device)).shape == (2, 10)


def test_invalid_choices_raise():
    with pytest.raises(ValueError, match=r"unknown net 'resnet50'.*resnet18"):
        build_model("resnet50")
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*celu"):
        build_model("cnn", activation="gelu")
    with pytest.raises(ValueError, match=r"unknown norm 'layer'.*group"):
        build_model("mlp", norm="layer")
    with pytest.raises(ValueError, match="activation"):
        nets.make_activation("tanh")
    with pytest.raises(ValueError, match="divisible by 8"):
        nets.make_norm("group", 12)
    with pytest.raises(ValueError, match="norm"):
        nets.ResNet18(norm="instance")
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="one value per channel"):
        Normalize((0.5, 0.5), (0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="channels"):
        build_model("resnet18", mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_model("cnn", input_shape=(784,))
    with pytest.raises(TypeError):
        build_model("resnet18", hidden=(3,))
