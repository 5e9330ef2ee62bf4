"""The Gram matrix and the combination M·alpha: layouts, float64 accumulation, backends, bad input."""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

from minmax import combine, gram

torch = pytest.importorskip("torch")

SHAPES = [(3, 2), (5,), (2, 2, 2)]  # per-parameter block shapes; d = 6 + 5 + 8 = 19


def _blocks(flat: np.ndarray) -> list[np.ndarray]:
    """Split an (m, d) array into blocks (m, *shape_k) following SHAPES."""
    m, out, start = flat.shape[0], [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        out.append(flat[:, start:start + size].reshape((m, *shape)))
        start += size
    assert start == flat.shape[1]
    return out


@pytest.fixture
def grads():
    return np.random.default_rng(0).standard_normal((4, 19))


def test_layouts_agree(grads):
    ref = grads @ grads.T
    np.testing.assert_allclose(gram(grads), ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gram(_blocks(grads)), ref, rtol=1e-13, atol=1e-13)
    w = np.array([0.1, 0.2, 0.3, 0.4])
    single = combine(grads, w)
    blocks = combine(_blocks(grads), w)
    assert isinstance(blocks, list) and [b.shape for b in blocks] == SHAPES
    np.testing.assert_allclose(np.concatenate([b.ravel() for b in blocks]), single, rtol=1e-14)
    np.testing.assert_allclose(single, w @ grads, rtol=1e-14)


def test_tuple_of_blocks_is_a_block_layout(grads):
    out = combine(tuple(_blocks(grads)), np.full(4, 0.25))
    assert isinstance(out, list) and len(out) == len(SHAPES)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_float64_accumulation_from_low_precision(dtype, device):
    # Large entries with cancellation: a float32 accumulation would lose most digits.
    rng = np.random.default_rng(1)
    base = rng.standard_normal(4000)
    flat = np.stack([base + 1e-3 * rng.standard_normal(4000) for _ in range(3)]) * 100
    low = torch.tensor(flat, dtype=getattr(torch, dtype), device=device)
    exact = low.to(torch.float64).cpu().numpy()  # the values actually stored, exactly
    ref = exact @ exact.T
    G = gram(low)
    assert isinstance(G, torch.Tensor) and G.dtype == torch.float64 and G.device.type == device
    np.testing.assert_allclose(G.cpu().numpy(), ref, rtol=1e-13)
    # The float64 result resolves differences that the inputs' own precision could not accumulate.
    diffs = ref[0, 0] - ref[0, 1]
    assert abs((G[0, 0] - G[0, 1]).item() - diffs) <= 1e-10 * abs(ref[0, 0])

    blocks = [low[:, :1000].reshape(3, 10, 100), low[:, 1000:]]
    G_blocks = gram(blocks)
    np.testing.assert_allclose(G_blocks.cpu().numpy(), ref, rtol=1e-13)


def test_numpy_float32_accumulates_in_float64():
    rng = np.random.default_rng(2)
    flat = rng.standard_normal((3, 50_000)).astype(np.float32)
    G = gram(flat)
    assert G.dtype == np.float64
    exact = flat.astype(np.float64)
    np.testing.assert_allclose(G, exact @ exact.T, rtol=1e-13)


def test_backends_agree(grads, device):
    w = np.array([0.4, 0.3, 0.2, 0.1])
    ref_G, ref_c = gram(grads), combine(grads, w)

    t = torch.tensor(grads, device=device)
    G_t = gram(t)
    c_t = combine(t, w)
    assert isinstance(c_t, torch.Tensor) and c_t.dtype == torch.float64 and c_t.device.type == device
    np.testing.assert_allclose(G_t.cpu().numpy(), ref_G, rtol=1e-13)
    np.testing.assert_allclose(c_t.cpu().numpy(), ref_c, rtol=1e-13)

    t32 = torch.tensor(grads, dtype=torch.float32, device=device)
    c32 = combine([b for b in (t32[:, :7], t32[:, 7:])], w)
    assert all(b.dtype == torch.float32 and b.device.type == device for b in c32)
    np.testing.assert_allclose(torch.cat(c32).cpu().numpy(), ref_c, rtol=1e-5, atol=1e-6)
    assert gram(t32).dtype == torch.float64

    # Blocks of mixed dtypes: each combination in its own block's dtype (the weights are moved once per
    # dtype and device).
    mixed = combine([t32[:, :7], t[:, 7:], t32[:, 7:]], w)
    assert [c.dtype for c in mixed] == [torch.float32, torch.float64, torch.float32]
    np.testing.assert_allclose(mixed[1].cpu().numpy(), ref_c[7:], rtol=1e-13)
    np.testing.assert_allclose(mixed[2].cpu().numpy(), ref_c[7:], rtol=1e-5, atol=1e-6)


def test_array_api_strict(grads):
    xp = array_api_strict
    a = xp.asarray(grads)
    G = gram(a)
    assert isinstance(G, type(a)) and G.dtype == xp.float64
    np.testing.assert_allclose(np.asarray(G), grads @ grads.T, rtol=1e-13)
    w = np.array([0.25, 0.25, 0.25, 0.25])
    blocks = [xp.asarray(b) for b in _blocks(grads)]
    out = combine(blocks, w)
    assert all(isinstance(b, type(a)) for b in out)
    np.testing.assert_allclose(np.concatenate([np.asarray(b).ravel() for b in out]), w @ grads, rtol=1e-13)
    a32 = xp.asarray(grads.astype(np.float32))
    assert combine(a32, w).dtype == xp.float32 and gram(a32).dtype == xp.float64


def test_bad_input(grads):
    with pytest.raises(TypeError, match="mixes array types"):
        gram([grads[:, :3], torch.tensor(grads[:, 3:])])
    with pytest.raises(ValueError, match="same m"):
        gram([grads[:, :3], grads[:3, 3:]])
    with pytest.raises(ValueError, match="m = 0"):
        gram(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="m = 0"):
        combine([np.zeros((0, 2)), np.zeros((0, 3))], np.zeros(0))
    with pytest.raises(ValueError, match="empty list"):
        gram([])
    with pytest.raises(ValueError, match=r"shape \(m, d\)"):
        gram(np.ones(5))
    with pytest.raises(TypeError, match="must be an array"):
        gram([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match="real floating"):
        gram(np.ones((2, 3), dtype=np.int64))
    bad = grads.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gram(bad)
    with pytest.raises(ValueError, match="NaN"):
        gram(torch.tensor(bad))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        combine(grads, np.ones(3) / 3)
    with pytest.raises(ValueError, match="NaN"):
        combine(grads, [np.nan, 0, 0, 1])
