"""``python -m experiments.directions``: its statistics, its probe on a model with a closed-form robust loss,
the independence of the probe attack, Theorem 2 on real gradients, the command line end to end, bad input.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.directions.candidates import DIRECTIONS, build_directions
from experiments.directions.cli import GRID_FACTORS, main, parse_grid
from experiments.directions.probe import batch_seeds, draw_start, probe_batch, select_batches
from experiments.directions.report import summarize
from experiments.directions.stats import direction_statistics, mean_se, paired_statistics
from experiments.train.command import main as train_main
from minmax.torch.attacks import PGD, worst_case

TINY = ["--generated-size", "96", "--generated-shape", "1x6x6", "--net", "mlp", "--hidden", "8",
        "--norm", "none", "--batch-size", "16", "--steps", "2", "--eval-steps", "2", "--eval-examples", "16",
        "--no-progress", "--epochs", "1", "--variant", "pgd", "--checkpoint-every", "0"]
PROBE = ["--batches", "3", "--batch-size", "8", "--m", "3", "--attack-steps", "3", "--device", "cpu",
         "--no-progress"]


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, out.getvalue(), err.getvalue()


# -- statistics -------------------------------------------------------------------------------------------

def test_statistics_of_a_known_quadratic_along_the_direction():
    # phi_b(t) = phi0_b + a_b t + c t^2: the forward difference at t1 is exactly a_b + c t1
    grid = np.array([0.01, 0.1, 0.3])
    a = np.array([-2.0, -0.5, 0.3, -1.0, np.nan])  # the last batch: the direction was undefined
    c = 4.0
    phi0 = np.array([1.0, 2.0, 1.5, 0.7, 1.1])
    phi = phi0[:, None] + a[:, None] * grid + c * grid ** 2
    s = direction_statistics(phi0, phi, grid, model_slope=[-1.0, -2.0, 0.0, -3.0, np.nan])
    expected = a[:4] + c * grid[0]
    np.testing.assert_allclose(s["slopes"][:4], expected, rtol=1e-10)
    assert s["slopes"][4] is None
    assert s["slope"]["n"] == 4
    assert s["slope"]["mean"] == pytest.approx(expected.mean(), rel=1e-10)
    assert s["slope"]["se"] == pytest.approx(expected.std(ddof=1) / 2, rel=1e-10)
    assert (s["descent_batches"], s["batches"], s["descent_fraction"]) == (3, 4, 0.75)
    # mean change at t: mean(a) t + c t^2 with mean(a) = -0.8: -0.0076, -0.04, +0.12 -> best t = 0.1
    assert s["best_t"] == 0.1
    assert s["decrease_at_best_t"]["mean"] == pytest.approx(0.8 * 0.1 - c * 0.01, rel=1e-10)
    assert s["curve"]["t"] == [0.0, 0.01, 0.1, 0.3] and s["curve"]["change_mean"][0] == 0.0
    assert s["curve"]["phi_mean"][0] == pytest.approx(phi0[:4].mean())
    assert s["model_slope"] == mean_se([-1.0, -2.0, 0.0, -3.0])


def test_paired_statistics_cancel_the_shared_batch_to_batch_spread():
    # very different batches (phi0 spread 10) but a fixed gap of 0.5 in slope: the paired SE is ~0
    grid = np.array([0.02, 0.2])
    phi0 = np.array([1.0, 5.0, 11.0, 3.0])
    a = np.array([-1.0, -6.0, 2.0, -3.0])
    ref = a + 0.5 + np.array([0.0, 0.1, -0.1, 0.0])
    curv = np.array([1.0, -2.0, 0.5, 3.0])[:, None] * grid ** 2  # shared curvature cancels too
    p = paired_statistics(phi0, phi0[:, None] + a[:, None] * grid + curv,
                          phi0[:, None] + ref[:, None] * grid + curv, grid)
    diff = a - ref
    assert p["slope_difference"]["mean"] == pytest.approx(diff.mean(), rel=1e-9)
    assert p["slope_difference"]["se"] == pytest.approx(diff.std(ddof=1) / 2, rel=1e-6)
    assert p["slope_difference"]["se"] < 0.1 < direction_statistics(phi0, phi0[:, None] + a[:, None] * grid,
                                                                     grid)["slope"]["se"]
    assert [c["mean"] for c in p["change_difference"]] == pytest.approx(list(diff.mean() * grid), rel=1e-9)
    assert (p["batches_steeper"], p["batches"]) == (4, 4)


def test_mean_se_with_too_few_values():
    assert mean_se([]) == {"mean": None, "se": None, "n": 0}
    assert mean_se([float("nan"), 2.0]) == {"mean": 2.0, "se": None, "n": 1}


@pytest.mark.parametrize("grid", [[0.1, 0.05], [0.0, 0.1], [-0.1], [], [0.1, float("inf")]])
def test_statistics_reject_a_bad_grid(grid):
    n = len(grid)
    with pytest.raises(ValueError, match="grid"):
        direction_statistics(np.zeros(2), np.zeros((2, n)), grid)


def test_statistics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        direction_statistics(np.zeros(3), np.zeros((2, 2)), [0.1, 0.2])


# -- the probe on a model whose robust loss has a closed form ---------------------------------------------

def _closed_form(weight, bias, x, y, eps):
    """Robust mean cross-entropy of a 2-class linear model over the l-inf ball (the box not binding).

    With u = w_1 - w_0, c = b_1 - b_0 and s = +1 for y = 1, -1 for y = 0, the loss is
    softplus(-s (u.x + c)), largest at delta = -s eps sign(u): softplus(eps |u|_1 - s (u.x + c)).
    """
    u, c = weight[1] - weight[0], bias[1] - bias[0]
    s = 2.0 * y.double() - 1.0
    return F.softplus(eps * u.abs().sum() - s * (x.flatten(1) @ u + c)).mean()


def test_probe_matches_the_closed_form_robust_loss_of_a_linear_model():
    torch.manual_seed(0)
    d, eps = 12, 0.05
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, 2)).double()
    x = 0.3 + 0.4 * torch.rand(16, 1, 3, 4, dtype=torch.float64)  # x +- eps stays inside [0, 1]
    y = torch.randint(0, 2, (16,))
    # sign steps reach the maximizing corner once K alpha >= 2 eps, from any start
    direction_attack = PGD(eps=eps, alpha=eps / 2, steps=5, restarts=3)
    probe_attack = PGD(eps=eps, alpha=eps / 3, steps=8, restarts=2)
    grid = [1e-4, 0.05, 0.3]
    seeds = {"directions": 11, "probe": 12}
    before = [p.detach().clone() for p in model.parameters()]
    start = draw_start(direction_attack, (3, *x.shape), seed=seeds["directions"], device="cpu",
                       dtype=x.dtype)
    cand = build_directions(model, x, y, direction_attack, start=start)
    rec = probe_batch(model, x, y, direction_attack=direction_attack, probe_attack=probe_attack, grid=grid,
                      seeds=seeds)
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, p0)  # moved along every direction and put back exactly
    (weight, bias) = before
    tol = 1e3 * torch.finfo(torch.float64).eps
    assert rec["phi0"] == pytest.approx(float(_closed_form(weight, bias, x, y, eps)), abs=tol)
    for name in DIRECTIONS:
        gw, gb = cand.directions[name]
        assert math.sqrt(float(gw.pow(2).sum() + gb.pow(2).sum())) == pytest.approx(1.0, abs=tol)
        exact = [float(_closed_form(weight + t * gw, bias + t * gb, x, y, eps)) for t in grid]
        np.testing.assert_allclose(rec["phi"][name], exact, rtol=0, atol=tol)
        # the one-sided derivative of the closed form, and the forward difference's curvature bias:
        # with z(t) the softplus argument (linear in t while sign(u) is fixed), phi'' <= mean(z'^2) / 4
        u, c = weight[1] - weight[0], bias[1] - bias[0]
        du, dc = gw[1] - gw[0], gb[1] - gb[0]
        s = 2.0 * y.double() - 1.0
        z = eps * u.abs().sum() - s * (x.flatten(1) @ u + c)
        dz = eps * (torch.sign(u) * du).sum() - s * (x.flatten(1) @ du + dc)
        derivative = float((torch.sigmoid(z) * dz).mean())
        slope = (rec["phi"][name][0] - rec["phi0"]) / grid[0]
        bias_bound = grid[0] / 2 * float(dz.pow(2).mean()) / 4
        assert abs(slope - derivative) <= bias_bound + 2 * tol / grid[0]
        assert derivative < 0  # one maximizer per sample: every gradient direction descends
    # a unique maximizer per sample: the m gradients coincide, so do the directions
    assert rec["negative_inner_products"] == 0
    np.testing.assert_allclose(np.array(rec["cosines"], dtype=float), 1.0, atol=1e-9)


# -- the probe attack is independent of the direction attack -----------------------------------------------

def test_probe_attack_never_reuses_the_direction_attack(monkeypatch):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 3))
    x, y = torch.rand(10, 2, 2, 2), torch.randint(0, 3, (10,))
    direction_attack = PGD(eps=0.1, alpha=0.05, steps=3, restarts=3)
    probe_attack = PGD(eps=0.1, alpha=0.05, steps=6, restarts=3)
    calls = []
    real_run = PGD.run

    def spy(self, model, x, y, *, start=None):
        calls.append((self, start.clone()))
        return real_run(self, model, x, y, start=start)

    monkeypatch.setattr(PGD, "run", spy)
    grid = [0.01, 0.1]
    rec = probe_batch(model, x, y, direction_attack=direction_attack, probe_attack=probe_attack, grid=grid,
                      seeds=batch_seeds(0, 0))
    assert [a is direction_attack for a, _ in calls] == [True] + [False] * (1 + len(DIRECTIONS) * len(grid))
    dir_start, probe_starts = calls[0][1], [s for _, s in calls[1:]]
    assert all(torch.equal(s, probe_starts[0]) for s in probe_starts)  # common random numbers
    assert float((probe_starts[0] == dir_start).double().mean()) < 1e-3
    assert rec["start_equal_fraction"] < 1e-3
    # the check can fail: with the probe's seed equal to the direction attack's, the start is reused
    same = probe_batch(model, x, y, direction_attack=direction_attack, probe_attack=probe_attack, grid=grid,
                       seeds={"directions": 5, "probe": 5})
    assert same["start_equal_fraction"] == 1.0
    seeds = [batch_seeds(0, b) for b in range(4)] + [batch_seeds(1, 0)]
    values = [v for s in seeds for v in s.values()]
    assert len(set(values)) == len(values)


def test_select_batches_are_disjoint_and_seeded():
    a = select_batches(50, 4, 12, seed=3)
    assert [len(b) for b in a] == [12] * 4 and len(set(torch.cat(a).tolist())) == 48
    assert all(torch.equal(u, v) for u, v in zip(a, select_batches(50, 4, 12, seed=3), strict=True))
    with pytest.raises(ValueError, match="need 60 examples"):
        select_batches(50, 5, 12, seed=0)


# -- Theorem 2 on a network's gradients --------------------------------------------------------------------

def test_ddi_has_the_lowest_model_slope_and_the_counts_are_right():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.CELU(),
                                torch.nn.Linear(12, 4)).eval()
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 4, (6,))
    m = 6
    attack = PGD(eps=0.3, alpha=0.1, steps=4, restarts=m)
    start = draw_start(attack, (m, *x.shape), seed=4, device="cpu")
    cand = build_directions(model, x, y, attack, start=start)
    params = [p for p in model.parameters()]
    result = attack.run(model, x, y, start=start)  # the same start gives the same attack
    sets = [*result.deltas, worst_case(result)]
    flat = []
    for delta in sets:  # the gradients recomputed at the attack's own batches, flattened, in float64
        g = torch.autograd.grad(F.cross_entropy(model((x + delta).clamp(0, 1)), y), params)
        flat.append(torch.cat([t.flatten() for t in g]).double())
    M = torch.stack(flat)
    G = (M @ M.T).numpy()
    scale = float(np.max(np.diag(G)))
    np.testing.assert_allclose(cand.gram, G, atol=1e-5 * scale)
    assert cand.negative_inner_products == int(np.sum(np.triu(G[:m, :m], 1) < 0))
    assert cand.pairs == m * (m - 1) // 2
    tol = 1e-5 * math.sqrt(scale)
    for name, d in cand.directions.items():
        norm = math.sqrt(sum(float(b.double().pow(2).sum()) for b in d))
        assert norm == pytest.approx(1.0, abs=1e-5), name
        assert cand.model_slopes["ddi"] <= cand.model_slopes[name] + tol, name
    assert cand.model_slopes["ddi"] == pytest.approx(-cand.ddi["norm"], abs=tol)
    k = int(np.argmin(np.diag(G)[:m]))
    np.testing.assert_allclose(torch.cat([b.flatten() for b in cand.directions["pgd-min"]]).double().numpy(),
                               -(M[k] / M[k].norm()).numpy(), atol=1e-5)


# -- the command line --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("directions") / "run")
    assert train_main([*TINY, "--out", run]) == 0
    return os.path.join(run, "checkpoints", "best.pt")


def test_probe_end_to_end_writes_its_report(checkpoint, tmp_path):
    out = str(tmp_path / "probe")
    code, stdout, err = _run([checkpoint, *PROBE, "--out", out])
    assert code == 0, err
    for ext in ("json", "md", "png"):
        assert os.path.getsize(os.path.join(out, f"directions.{ext}")) > 0
    with open(os.path.join(out, "directions.json")) as f:
        s = json.load(f)
    with open(os.path.join(os.path.dirname(os.path.dirname(checkpoint)), "config.json")) as f:
        config = json.load(f)["config"]
    assert s["batches"] == 3 and len(s["per_batch"]) == 3
    assert s["grid"] == pytest.approx([f * config["lr"] for f in GRID_FACTORS])
    assert s["settings"]["probe_attack"] == {"restarts": 2, "steps": 3, "step_size": config["step_size"],
                                             "eps": config["eps"]}
    assert s["settings"]["direction_attack"]["steps"] == config["steps"]
    assert set(s["directions"]) == set(DIRECTIONS)
    for name, d in s["directions"].items():
        assert d["slope"]["n"] == 3 and d["slope"]["se"] is not None
        assert ("vs_ddi" in d) == (name != "ddi")
        assert 0 <= d["descent_fraction"] <= 1 and d["best_t"] in s["grid"]
        assert set(d["decrease_at_best_t"]) == {"mean", "se", "n"}
        assert len(d["curve"]["t"]) == len(s["grid"]) + 1 and d["model_slope"]["n"] == 3
    assert s["gradients"]["pairs"] == 3 and len(s["gradients"]["negative_inner_products_per_batch"]) == 3
    assert s["attacks"]["start_equal_fraction_max"] < 1e-3
    assert "| DDi-3 γ* |" in stdout and "| pgd-max-3 |" in stdout
    again = summarize(s["per_batch"], grid=s["grid"], settings=s["settings"])  # the JSON is self-contained
    assert json.loads(json.dumps(again["directions"])) == s["directions"]


def test_probe_default_output_is_beside_the_checkpoint_and_steps_default_to_twice_k(checkpoint):
    code, _, err = _run([checkpoint, "--batches", "2", "--batch-size", "4", "--m", "2", "--grid", "0.02,1/10",
                         "--no-progress"])
    assert code == 0, err
    prefix = os.path.join(os.path.dirname(checkpoint), "best.directions")
    with open(prefix + ".json") as f:
        s = json.load(f)
    assert s["grid"] == [0.02, 0.1] and not s["settings"]["grid_from_lr"]
    assert s["settings"]["probe_attack"]["steps"] == 2 * s["settings"]["run"]["steps"]
    assert os.path.exists(prefix + ".md") and os.path.exists(prefix + ".png")


@pytest.mark.parametrize("grid", ["0,0.1", "-0.1", "abc", "0.1,0.1", ",", "inf"])
def test_bad_grid_exits_2(grid, tmp_path):
    code, _, err = _run([str(tmp_path / "missing.pt"), "--grid", grid])
    assert code == 2 and "--grid" in err


def test_parse_grid_sorts_and_reads_fractions():
    assert parse_grid("0.2,1/100, 0.05") == (0.01, 0.05, 0.2)


@pytest.mark.parametrize("make", ["text", "missing"])
def test_not_a_checkpoint_exits_2(make, tmp_path):
    path = tmp_path / "x.pt"
    if make == "text":
        path.write_text("not a checkpoint")
    code, _, err = _run([str(path), *PROBE])
    assert code == 2
    assert ("not a minmax checkpoint" in err) if make == "text" else ("not found" in err)


def test_bad_counts_exit_2(checkpoint):
    code, _, err = _run([checkpoint, *PROBE[:-5], "--m", "1", "--no-progress"])
    assert code == 2 and "--m must be >= 2" in err
    code, _, err = _run([checkpoint, "--batches", "50", "--batch-size", "8", "--m", "2", "--no-progress"])
    assert code == 2 and "need 400 examples" in err
    code, _, err = _run([checkpoint, "--batches", "0"])
    assert code == 2 and "--batches" in err


@pytest.mark.parametrize("module", ["candidates", "cli", "probe", "stats"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"experiments.directions.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_a_grid_that_reaches_non_finite_losses_exits_2(checkpoint, tmp_path):
    code, _, err = _run([checkpoint, *PROBE, "--grid", "0.1,1e38", "--out", str(tmp_path)])
    assert code == 2 and "the grid reaches too far" in err
    assert not os.path.exists(tmp_path / "directions.json")


def test_probe_batch_on_each_device_restores_the_parameters(device):
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 6), torch.nn.CELU(),
                                torch.nn.Linear(6, 3)).to(device)
    x, y = torch.rand(10, 2, 2, 2, device=device), torch.randint(0, 3, (10,), device=device)
    before = [p.detach().clone() for p in model.parameters()]
    rec = probe_batch(model, x, y, direction_attack=PGD(eps=0.1, alpha=0.05, steps=2, restarts=3),
                      probe_attack=PGD(eps=0.1, alpha=0.05, steps=4, restarts=2), grid=[0.01, 0.1],
                      seeds=batch_seeds(0, 0))
    assert all(torch.equal(p, p0) for p, p0 in zip(model.parameters(), before, strict=True))
    assert model.training  # the probe's eval mode is undone
    values = [rec["phi0"], *(v for vs in rec["phi"].values() for v in vs)]
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_exits_2(checkpoint):
    code, _, err = _run([checkpoint, *PROBE[:-3], "--device", "cuda", "--no-progress"])
    assert code == 2 and "CUDA is not available" in err
