"""minmax.torch max-functions: MaxProblem from a user's torch g, the batched inner maximization (one vmap pass
per ascent step, same results as the NumPy loop and as one start at a time), the outer loops' radius rules,
estimate_lipschitz by autograd, float32 / CUDA, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minmax import DescentCertificate, covering_radius
from minmax import maxfunc as np_loops
from minmax.maxfunc import History, Maximizers
from minmax.problems import Figure1 as NumpyFigure1
from minmax.sets import Box, CompactSet, L2Ball, Simplex
from minmax.torch import MaxProblem, ddi, estimate_lipschitz, maximize, single_adversary
from minmax.torch.problems import Counterexample1, Counterexample2, Figure1

EPS64 = float(np.finfo(np.float64).eps)
N, P = 5, 3
_B = np.random.default_rng(0).normal(size=(N, P))


def _quadratic(dtype=torch.float64, device="cpu"):
    r"""g = 1/2 |theta - B delta|^2: grad_delta = -B^T (theta - B delta), grad_theta = theta - B delta."""
    B = torch.as_tensor(_B, dtype=dtype, device=device)

    def g(theta, delta):
        r = theta - B @ delta
        return 0.5 * (r @ r)

    return g


class NumpyQuadratic:
    """The same g written by hand in NumPy (a minmax.maxfunc.MaxFunction)."""

    def __init__(self, S):
        self.set = S

    def value(self, theta, delta):
        r = theta - _B @ delta
        return float(0.5 * r @ r)

    def grad_theta(self, theta, delta):
        return theta - _B @ delta

    def grad_delta(self, theta, delta):
        return -_B.T @ (theta - _B @ delta)


SETS = [L2Ball(np.zeros(P), 1.0), Box(-0.5, 0.5 * np.ones(P)), Simplex(P)]


@pytest.mark.parametrize("S", SETS, ids=repr)
def test_maximize_matches_the_numpy_loop(S, device):
    # The same g by hand in NumPy and by autograd in torch, the same starts: the same maximizers, values,
    # merging and counts.
    theta = np.random.default_rng(1).normal(size=N)
    q = MaxProblem(_quadratic(device=device), S, device=device)
    kw = {"m": 8, "steps": 15, "step_size": 0.2, "merge_tol": 1e-3}
    a = np_loops.maximize(NumpyQuadratic(S), theta, rng=3, **kw)
    b = maximize(q, theta, rng=3, **kw)
    assert isinstance(b, Maximizers) and b.deltas.device.type == torch.device(device).type
    assert b.counts.tolist() == a.counts.tolist()
    scale = 1 + float(np.sum(np.abs(theta))) ** 2
    np.testing.assert_allclose(b.deltas.cpu().numpy(), a.deltas, rtol=0, atol=1e3 * EPS64 * scale)
    np.testing.assert_allclose(b.values.cpu().numpy(), a.values, rtol=0, atol=1e3 * EPS64 * scale)
    assert bool(S.contains(b.deltas.cpu().numpy(), atol=1e-12).all())


def test_batched_starts_equal_one_start_at_a_time():
    q = MaxProblem(_quadratic(), SETS[0])
    theta = torch.as_tensor(np.random.default_rng(2).normal(size=N))
    starts = q.torch_set.sample(6, torch.Generator().manual_seed(0))
    together = maximize(q, theta, init=starts, steps=12, step_size=0.3, merge_tol=0.0)
    alone = torch.cat([maximize(q, theta, init=starts[i:i + 1], steps=12, step_size=0.3).deltas
                       for i in range(6)])
    # merge_tol = 0 keeps every distinct run; each lone run is one of the batched ones
    assert len(together) == 6
    assert float(torch.cdist(alone, together.deltas).min(dim=1).values.max()) <= 64 * EPS64


def test_one_vmap_pass_per_ascent_step():
    # g's Python body runs once per batched pass, whatever m: steps passes with gradients, one to evaluate
    # the last iterates, and (the first time for a shape of theta) two checks of what g returns.
    calls = []
    inner = _quadratic()

    def g(theta, delta):
        calls.append(1)
        return inner(theta, delta)

    q = MaxProblem(g, SETS[0])
    theta = torch.zeros(N, dtype=torch.float64)
    for m in (3, 30):
        calls.clear()
        maximize(q, theta, m=m, steps=7, rng=0)
        assert len(calls) == 7 + 1 + (2 if m == 3 else 0)
    calls.clear()
    q.grads_theta(theta, torch.zeros(10, P, dtype=torch.float64))
    assert len(calls) == 1


def test_maximize_options():
    q = Figure1()
    theta = [0.5, 0.01]
    res = maximize(q, theta, m=12, steps=3, step_size=0.1, rng=5, merge_tol=0.0)
    assert len(res) == 12 and bool(torch.all(res.values[:-1] >= res.values[1:]))
    coarse = maximize(q, theta, m=12, steps=3, step_size=0.1, rng=5, merge_tol=0.3)
    assert int(coarse.counts.sum()) == 12 and len(coarse) < 12
    d = torch.cdist(coarse.deltas, coarse.deltas)
    assert bool((d[~torch.eye(len(coarse), dtype=torch.bool)] > 0.3).all())
    assert float(coarse.values[0]) == float(res.values[0])
    top = maximize(q, theta, m=12, steps=3, step_size=0.1, rng=5, value_tol=1e-3)
    assert bool((top.values >= top.values[0] - 1e-3).all()) and len(top) < 12
    # steps = 0 returns the projected starts; m is inferred from init
    init = torch.tensor([[0.2], [0.9], [2.0]], dtype=torch.float64)
    res = maximize(q, [0.0, 1.0], steps=0, init=init, merge_tol=0.0)
    assert sorted(res.deltas.ravel().tolist()) == [0.2, 0.9, 1.0]
    assert maximize(q, [0.0, 1.0], steps=5, step_size=1.0, init=init).deltas.tolist() == [[1.0]]


def test_random_generators():
    q = Figure1()
    a = maximize(q, [1.0, 0.0], m=5, steps=0, rng=torch.Generator().manual_seed(4), merge_tol=0.0)
    b = maximize(q, [1.0, 0.0], m=5, steps=0, rng=torch.Generator().manual_seed(4), merge_tol=0.0)
    torch.testing.assert_close(a.starts, b.starts, rtol=0, atol=0)
    torch.manual_seed(7)
    c = maximize(q, [1.0, 0.0], m=5, steps=0)
    torch.manual_seed(7)
    d = maximize(q, [1.0, 0.0], m=5, steps=0)
    torch.testing.assert_close(c.starts, d.starts, rtol=0, atol=0)
    # an int seeds NumPy's generator: the starts of minmax.maxfunc
    e = maximize(q, [1.0, 0.0], m=5, steps=0, rng=3)
    np.testing.assert_array_equal(e.starts.numpy(), np_loops.maximize(NumpyFigure1(), [1.0, 0.0], m=5,
                                                                       steps=0, rng=3).starts)


# -- the outer loops ---------------------------------------------------------------------------------------


def test_history_types_and_the_steps_it_claims():
    q = Figure1()
    h = ddi(q, [2.0, 0.1], m=8, inner_steps=10, inner_step_size=0.25, iterations=5, rng=7, lipschitz=4.0,
            radius=0.01)
    assert isinstance(h, History) and h.method == "ddi"
    assert h.thetas.shape == (6, 2) and h.directions.shape == (5, 2)
    assert isinstance(h.thetas, torch.Tensor) and isinstance(h.step_sizes, np.ndarray)
    steps = torch.as_tensor(h.step_sizes)[:, None] * h.directions
    torch.testing.assert_close(h.thetas[1:], h.thetas[:-1] + steps, rtol=0, atol=4 * EPS64)
    for k in range(5):
        grads = q.grads_theta(h.thetas[k], h.maximizers[k].deltas)
        assert h.slopes[k] == pytest.approx(float(torch.max(grads @ h.directions[k])), abs=16 * EPS64)
        cert = h.certificates[k]
        assert isinstance(cert, DescentCertificate) and cert.radius == 0.01
        assert cert.certified == (h.slopes[k] < -4.0 * 0.01)
    empty = ddi(q, [1.0, 1.0], iterations=0, rng=0)
    assert empty.thetas.shape == (1, 2) and empty.directions.shape == (0, 2)


def test_radius_may_change_with_the_iterate():
    seen = []

    def radius(theta):
        seen.append(theta.clone())
        return 0.01 * float(theta[0])

    h = ddi(Figure1(), [2.0, 0.1], m=6, iterations=4, rng=1, lipschitz=4.0, radius=radius)
    moving = [k for k in range(4) if not h.stationary[k]]
    assert len(seen) == len(moving) == 4
    for k, theta in zip(moving, seen, strict=True):
        torch.testing.assert_close(theta, h.thetas[k], rtol=0, atol=0)
        assert h.certificates[k].radius == pytest.approx(0.01 * float(h.thetas[k, 0]))


def _interval_radius_by_grid(lower, upper, points, n=200_001):
    grid = np.linspace(lower, upper, n)
    return float(np.max(np.min(np.abs(grid[:, None] - np.asarray(points)[None, :]), axis=1)))


def test_exact_radius_is_the_covering_radius_of_s_star():
    # Figure 1 exactly on its kink: S*(theta) = [0, 1] for theta_2 = 0, so the exact epsilon is the
    # largest gap left by the maximizers found in [0, 1]. Off the kink S* = {0} or {1}.
    q = Figure1()
    h = ddi(q, [1.0, 0.0], m=5, inner_steps=0, iterations=3, rng=2, lipschitz=4.0, radius="exact")
    d0 = h.maximizers[0].deltas.numpy()[:, 0]
    expected = _interval_radius_by_grid(0.0, 1.0, d0)
    assert h.certificates[0].radius == pytest.approx(expected, abs=1e-5)
    # the gradients (2, 4 delta - 2) straddle (2, 0): gamma = (-1, 0) with slope -2, the true derivative of
    # phi = theta_1^2 + (1 + |theta_2|)^2 along it, and -2 < -L eps
    cert = h.certificates[0]
    assert cert.certified == (cert.slope < -4.0 * expected) and cert.slope == pytest.approx(-2.0)
    for k in range(1, 3):
        S = q.maximizers(h.thetas[k])
        assert h.certificates[k].radius == pytest.approx(
            covering_radius(S.points, h.maximizers[k].deltas.numpy()), abs=0)
    # the NumPy loop computes the same radius for the same starts
    a = np_loops.ddi(NumpyFigure1(), [1.0, 0.0], m=5, inner_steps=0, iterations=1, rng=2, lipschitz=4.0,
                     radius="exact")
    assert a.certificates[0].radius == h.certificates[0].radius


def test_single_adversary_with_a_certificate():
    q = Counterexample2([1.0, 0.0], [-0.6, 0.8])
    h = single_adversary(q, [0.5, 0.5], m=3, inner_steps=20, inner_step_size=0.5, step_size=0.1,
                         iterations=3, rng=0, lipschitz=float(np.hypot(1.6, 0.8)), radius="exact")
    for k in range(3):
        g = q.grad_theta(h.thetas[k], h.maximizers[k].deltas[0])
        torch.testing.assert_close(h.directions[k], -g / torch.linalg.vector_norm(g), rtol=0, atol=4 * EPS64)
        assert h.weights[k][0] == 1.0 and h.weights[k].sum() == 1.0
        assert h.certificates[k] is not None
    raw = single_adversary(q, [0.5, 0.5], inner_steps=20, inner_step_size=0.5, step_size=0.1, iterations=1,
                           rng=0, normalize=False)
    g = q.grad_theta(raw.thetas[0], raw.maximizers[0].deltas[0])
    torch.testing.assert_close(raw.thetas[1], raw.thetas[0] - 0.1 * g, rtol=0, atol=4 * EPS64)


def test_stationary_point_stays_put():
    h = ddi(Counterexample1(), 0.0, m=10, inner_steps=0, iterations=2, rng=0)
    assert h.stationary[0] and bool((h.directions[0] == 0).all())
    assert float(h.thetas[1]) == float(h.thetas[0]) == 0.0


def test_float32_problem():
    q = MaxProblem(_quadratic(torch.float32), SETS[0], dtype=torch.float32)
    theta = torch.ones(N, dtype=torch.float32)
    res = maximize(q, theta, m=4, steps=5, rng=0)
    assert res.deltas.dtype == res.values.dtype == torch.float32
    ref = maximize(MaxProblem(_quadratic(), SETS[0]), theta.double(), m=4, steps=5, rng=0)
    eps32 = float(torch.finfo(torch.float32).eps)
    torch.testing.assert_close(res.deltas.double(), ref.deltas, rtol=0, atol=1e3 * eps32)
    h = ddi(q, theta, m=4, iterations=2, rng=0, lipschitz=3.0, radius=0.0)
    assert h.thetas.dtype == torch.float32


# -- estimate_lipschitz ------------------------------------------------------------------------------------


def test_estimate_lipschitz_by_autograd():
    # grad_theta = theta - B delta is affine in delta: L = sigma_max(B), attained along the top right
    # singular vector; random pairs give a lower estimate.
    q = MaxProblem(_quadratic(), SETS[0])
    theta = torch.zeros(N, dtype=torch.float64)
    sigma = float(np.linalg.svd(_B, compute_uv=False)[0])
    sampled = estimate_lipschitz(q, theta, n=64, rng=0)
    assert 0.3 * sigma < sampled <= sigma * (1 + 64 * EPS64)
    v = np.linalg.svd(_B)[2][0]
    exact = estimate_lipschitz(q, theta, deltas=np.stack([v, -v]) * 0.5)
    assert exact == pytest.approx(sigma, rel=64 * EPS64)
    assert estimate_lipschitz(Figure1(), [0.3, 0.2], n=8, rng=1) == pytest.approx(4.0, rel=64 * EPS64)
    assert estimate_lipschitz(Figure1(), [0.3, 0.2], n=8, rng=1, norm="linf") == pytest.approx(4.0)
    with pytest.raises(ValueError, match="two distinct"):
        estimate_lipschitz(Figure1(), [0.3, 0.2], deltas=[[0.5], [0.5]])
    with pytest.raises(ValueError, match="n must be at least 2"):
        estimate_lipschitz(Figure1(), [0.3, 0.2], n=1)


# -- bad input ---------------------------------------------------------------------------------------------


def _named(name):
    return rf"MaxProblem\({name}"


def test_construction_errors():
    g = _quadratic()
    with pytest.raises(TypeError, match="g must be a callable"):
        MaxProblem(3.0, SETS[0])
    with pytest.raises(TypeError, match="CompactSet"):
        MaxProblem(g, [0, 1])
    with pytest.raises(TypeError, match="float64 or torch.float32"):
        MaxProblem(g, SETS[0], dtype=torch.int64)
    with pytest.raises(TypeError, match="maximizers must be a callable"):
        MaxProblem(g, SETS[0], maximizers=1)
    with pytest.raises(ValueError, match="theta_dim"):
        MaxProblem(g, SETS[0], theta_dim=0)


@pytest.mark.parametrize(
    "g, err, match",
    [
        (lambda theta, delta: theta * delta[0], ValueError, r"must return a 0-d tensor.*shape \(5,\)"),
        (lambda theta, delta: 1.0, TypeError, "must return a torch.Tensor"),
        (lambda theta, delta: (theta @ theta * delta[0]).float(), TypeError, "dtype torch.float32"),
        (lambda theta, delta: theta[0] * delta[0].item(), TypeError, "cannot be batched"),
        (lambda theta, delta: torch.log(delta[0] - 2.0) + theta[0], ValueError, "non-finite"),
        # finite values, NaN gradients (sqrt'(0) * 0 = inf * 0 in the chain rule)
        (lambda theta, delta: torch.sqrt(0.0 * delta[0]) + theta[0], ValueError, "non-finite"),
    ],
    ids=["non-scalar", "not a tensor", "wrong dtype", ".item()", "nan value", "nan gradient"],
)
def test_bad_g(g, err, match):
    q = MaxProblem(g, L2Ball(np.zeros(3), 1.0), name="my_g")
    with pytest.raises(err, match=_named("my_g") + ".*" + match):
        maximize(q, torch.ones(N, dtype=torch.float64), m=4, steps=3, rng=0)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"m": 0}, ValueError, "m must be at least 1"),
        ({"m": 2.0}, TypeError, "m must be an int"),
        ({"steps": -1}, ValueError, "steps"),
        ({"step_size": 0.0}, ValueError, "step_size"),
        ({"merge_tol": -1.0}, ValueError, "merge_tol"),
        ({"init": np.zeros((2, 2))}, ValueError, r"init must have shape \(k, 3\)"),
        ({"init": np.zeros((2, 3)), "m": 3}, ValueError, "m = 3 rows, got 2"),
        ({"init": np.full((2, 3), np.nan)}, ValueError, "init contains NaN"),
        ({"rng": "seed"}, TypeError, "rng must be"),
    ],
)
def test_maximize_bad_input(kwargs, err, match):
    q = MaxProblem(_quadratic(), L2Ball(np.zeros(3), 1.0), name="quad")
    with pytest.raises(err, match=_named("quad") + ".*" + match):
        maximize(q, np.ones(N), **kwargs)


def test_theta_and_problem_errors():
    q = MaxProblem(_quadratic(), SETS[0], name="quad", theta_dim=N)
    with pytest.raises(ValueError, match=_named("quad") + r".*theta must have shape \(5,\)"):
        maximize(q, np.ones(4), rng=0)
    with pytest.raises(ValueError, match=_named("quad") + ".*theta must be a scalar or a non-empty 1-D"):
        maximize(q, np.ones((2, 2)), rng=0)
    with pytest.raises(ValueError, match=_named("quad") + ".*theta contains NaN"):
        maximize(q, [np.inf] * N, rng=0)
    with pytest.raises(TypeError, match=_named("quad") + ".*real floating tensor"):
        maximize(q, torch.ones(N, dtype=torch.int32), rng=0)
    # without theta_dim, a theta that does not fit g is caught when g is first called on it
    loose = MaxProblem(_quadratic(), SETS[0], name="loose")
    with pytest.raises(ValueError, match=_named("loose") + r".*failed for theta of shape \(4,\)"):
        maximize(loose, np.ones(4), rng=0)
    with pytest.raises(TypeError, match="minmax.torch.MaxProblem"):
        maximize(NumpyFigure1(), [0.0, 0.0], rng=0)
    with pytest.raises(ValueError, match=_named("quad") + ".*both lipschitz and radius"):
        ddi(q, np.ones(N), iterations=1, rng=0, lipschitz=1.0)
    with pytest.raises(ValueError, match=_named("quad") + ".*has no maximizers"):
        ddi(q, np.ones(N), iterations=1, rng=0, lipschitz=1.0, radius="exact")
    with pytest.raises(ValueError, match=_named("quad") + ".*radius must be a float, a callable"):
        ddi(q, np.ones(N), iterations=1, rng=0, lipschitz=1.0, radius="approximate")
    negative = _named("quad") + r".*radius\(theta\) must be finite and non-negative"
    with pytest.raises(ValueError, match=negative):
        ddi(q, np.ones(N), iterations=1, rng=0, lipschitz=1.0, radius=lambda theta: -1.0)
    with pytest.raises(TypeError, match=_named("quad") + ".*normalize must be a bool"):
        single_adversary(q, np.ones(N), iterations=1, rng=0, normalize=1)


def test_exact_radius_needs_a_finite_set_or_an_interval():
    class Square(CompactSet):
        dim = 2
        diameter = 2 ** 0.5

        def _project(self, x):
            return np.clip(x, 0, 1)

        def _sample(self, n, rng):
            return rng.random((n, 2))

    def g(theta, delta):
        return theta[0] * delta.sum()

    q = MaxProblem(g, Square(), maximizers=lambda theta: Box([0, 0], [1, 1]), name="flat")
    with pytest.raises(ValueError, match="2-dimensional box"):
        ddi(q, [1.0], iterations=1, rng=0, lipschitz=1.0, radius="exact", m=3)
    # any other CompactSet goes through its NumPy projection: the ascent ends in the corner (1, 1)
    res = maximize(q, [1.0], m=3, steps=10, step_size=1.0, rng=0)
    assert res.deltas.tolist() == [[1.0, 1.0]]


def test_wrong_device_is_refused(device):
    if device != "cuda":
        pytest.skip("needs CUDA")
    q = MaxProblem(_quadratic(device="cuda"), SETS[0], device="cuda", name="quad")
    with pytest.raises(ValueError, match=_named("quad") + ".*is on cpu"):
        maximize(q, torch.ones(N, dtype=torch.float64), rng=0)
    with pytest.raises(ValueError, match="generator on cpu"):
        maximize(q, torch.ones(N, dtype=torch.float64, device="cuda"), rng=torch.Generator())


def test_public_batched_methods_check_their_input():
    q = MaxProblem(_quadratic(), SETS[0], name="quad")
    theta = torch.ones(N, dtype=torch.float64)
    with pytest.raises(ValueError, match=_named("quad") + r".*deltas\[1\].*lies outside S"):
        q.values(theta, torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=_named("quad") + r".*deltas must have shape \(k, 3\)"):
        q.grads_theta(theta, torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=_named("quad") + ".*dtype torch.float32"):
        q.grad_delta_and_value(theta, torch.zeros(2, 3))
