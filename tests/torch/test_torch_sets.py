"""minmax.torch.sets: the torch projections and samplers agree with minmax.sets (to round-off, at scale 1e9),
samples lie in S, a NumPy generator gives the NumPy stream, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minmax.sets import Box, CompactSet, FiniteSet, L2Ball, LinfBall, Simplex
from minmax.torch.sets import TorchSet

EPS64 = float(np.finfo(np.float64).eps)


class Segment(CompactSet):
    """A set minmax.torch.sets has no formula for: the segment [a, b] in the plane (NumPy fallback)."""

    dim = 2
    a, b = np.array([0.0, 0.0]), np.array([1.0, 2.0])
    diameter = float(np.sqrt(5.0))

    def _project(self, x):
        t = np.clip((x - self.a) @ (self.b - self.a) / 5.0, 0.0, 1.0)
        return self.a + t[:, None] * (self.b - self.a)

    def _sample(self, n, rng):
        return self.a + rng.random((n, 1)) * (self.b - self.a)

    def __repr__(self):
        return "Segment()"


SETS = [Box([-1.0, 0.0], [1.0, 2.0]), LinfBall([0.0, 0.0, 0.0], 0.5), L2Ball([1.0, 2.0, 3.0], 2.0),
        Simplex(5), Simplex(1), FiniteSet([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]), Segment()]


def _points(S, rng, n=200):
    x = rng.normal(size=(n, S.dim)) * 3.0
    x[0] *= 1e9
    x[1] = -1e9
    x[2:20] = S.sample(18, rng)  # points already inside: the projection is the identity
    return x


@pytest.mark.parametrize("S", SETS, ids=repr)
def test_projection_matches_numpy(S, device):
    x = _points(S, np.random.default_rng(0))
    got = TorchSet(S, device=device).project(torch.as_tensor(x, device=device)).cpu().numpy()
    want = S.project(x)
    # a clamp and a nearest point are exact; the other formulas agree to a few ulps of the row's scale
    exact = isinstance(S, (Box, FiniteSet))
    scale = np.maximum(1.0, np.abs(x).max(axis=1, keepdims=True))
    assert np.all(np.abs(got - want) <= (0.0 if exact else 16 * EPS64 * scale))
    assert bool(np.all(S.contains(got, atol=1e-12 * float(scale.max()))))


@pytest.mark.parametrize("S", SETS, ids=repr)
def test_samples(S, device):
    T = TorchSet(S, device=device)
    a = T.sample(50, np.random.default_rng(3)).cpu().numpy()
    np.testing.assert_array_equal(a, S.sample(50, np.random.default_rng(3)))
    gen = torch.Generator(device=device).manual_seed(0)
    b = T.sample(400, gen)
    assert b.shape == (400, S.dim) and b.dtype == torch.float64 and b.device.type == torch.device(device).type
    assert bool(np.all(S.contains(b.cpu().numpy(), atol=1e-12)))
    if isinstance(S, Simplex) and S.dim > 1:
        # flat Dirichlet: each coordinate has mean 1/n (n = 5, 400 draws: standard error about 0.008)
        np.testing.assert_allclose(b.mean(dim=0).cpu().numpy(), 1.0 / S.dim, atol=0.05)
    if isinstance(S, L2Ball):
        # uniform in the ball: |delta - c| / r has the law of U^(1/dim), mean dim / (dim + 1)
        rho = torch.linalg.vector_norm(b - T.project(b).new_tensor(S.center), dim=1) / S.radius
        assert abs(float(rho.mean()) - S.dim / (S.dim + 1)) < 0.05
    assert T.sample(0).shape == (0, S.dim)


def test_float32():
    T = TorchSet(L2Ball([0.0, 0.0], 1.0), dtype=torch.float32)
    y = T.project(torch.tensor([[3.0, 4.0]]))
    assert y.dtype == torch.float32 and torch.allclose(y, torch.tensor([[0.6, 0.8]]))
    assert T.sample(3).dtype == torch.float32


def test_bad_input():
    with pytest.raises(TypeError, match="CompactSet"):
        TorchSet([0, 1])
    with pytest.raises(TypeError, match="float64 or torch.float32"):
        TorchSet(Simplex(2), dtype=torch.float16)
    T = TorchSet(Simplex(2))
    with pytest.raises(ValueError, match="non-negative"):
        T.sample(-1)
    with pytest.raises(TypeError, match="n must be an int"):
        T.sample(2.0)
    with pytest.raises(TypeError, match="rng must be"):
        T.sample(2, rng=0)
