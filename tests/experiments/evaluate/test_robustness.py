"""The evaluation's building blocks: the CW margin loss, nested PGD restarts, the black-box random search, the
gradient-masking checks, and the report helpers (on small models made in the test; no training)."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch

from experiments.evaluate import attacks as A
from experiments.evaluate import report as R
from experiments.evaluate.blackbox import RandomSearch, margin


@pytest.mark.parametrize("module", ["experiments.evaluate.blackbox", "experiments.evaluate.attacks",
                                    "experiments.evaluate.report"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_cw_margin_loss_matches_a_loop_and_is_positive_exactly_when_misclassified():
    torch.manual_seed(0)
    logits, y = torch.randn(50, 7), torch.randint(0, 7, (50,))
    expected = [max(float(logits[i, j]) for j in range(7) if j != y[i]) - float(logits[i, y[i]])
                for i in range(50)]
    loss = A.cw_margin_loss(logits, y)
    assert loss.tolist() == pytest.approx(expected)
    assert torch.equal(loss > 0, logits.argmax(1) != y)
    assert torch.equal(margin(logits, y), -loss)


def _linear(seed=0, d=16, k=4):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, k)).eval()


def test_pgd_restarts_are_nested_so_more_restarts_never_raise_robust_accuracy():
    model = _linear()
    x, y = torch.rand(64, 1, 4, 4), torch.randint(0, 4, (64,))
    standing = model(x).argmax(1) == y
    seeds = [11, 12, 13, 14, 15]
    runs = [A.pgd_robust(model, x, y, standing, eps=0.1, alpha=0.02, steps=3, norm="linf", loss="ce",
                         restarts=r, seeds=seeds) for r in range(1, 6)]
    for (fewer, counts_fewer), (more, counts_more) in zip(runs, runs[1:], strict=False):
        assert not bool((more & ~fewer).any())  # robust with more restarts => robust with fewer
        assert counts_more[:-1] == counts_fewer  # the first R restarts are the R-restart run
    counts = runs[-1][1]
    assert counts == sorted(counts, reverse=True) and counts[0] < int(standing.sum())
    assert counts[-1] == int(runs[-1][0].sum())


def test_a_sample_misclassified_at_the_clean_input_is_never_robust():
    model = _linear(1)
    x, y = torch.rand(32, 1, 4, 4), torch.randint(0, 4, (32,))
    standing = model(x).argmax(1) == y
    robust, _ = A.pgd_robust(model, x, y, standing, eps=1e-3, alpha=1e-3, steps=1, norm="l2", loss="ce",
                             restarts=1, seeds=[0])
    assert not bool((robust & ~standing).any())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_search_stays_in_the_threat_model_and_reports_what_the_model_says(norm):
    model = _linear(2)
    torch.manual_seed(3)
    x, y = torch.rand(40, 1, 4, 4), torch.randint(0, 4, (40,))
    eps = 0.3 if norm == "linf" else 1.0
    x_adv, fooled = RandomSearch(eps=eps, norm=norm, queries=300).run(model, x, y)
    change = (x_adv - x).flatten(1)
    size = change.abs().amax(1) if norm == "linf" else change.norm(dim=1)
    assert bool((size <= eps * (1 + 1e-5)).all())
    assert bool(((x_adv >= 0) & (x_adv <= 1)).all())
    assert torch.equal(fooled, model(x_adv).argmax(1) != y)
    assert int(fooled.sum()) > int((model(x).argmax(1) != y).sum())  # it found adversarial examples


def test_random_search_rejects_bad_settings():
    for kwargs in ({"eps": 0}, {"eps": 0.1, "norm": "l1"}, {"eps": 0.1, "queries": 0},
                   {"eps": 0.1, "p_init": 0}):
        with pytest.raises(ValueError):
            RandomSearch(**kwargs)


class _Quantized(torch.nn.Module):
    """The model on inputs rounded to 8 bits: the same outputs on 8-bit images, and zero input gradients.

    This is the textbook gradient masking (a shattered gradient): white-box attacks are blind, a black-box
    attack is not.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 255) / 255)


def _masking_settings(eps):
    pgd = {"eps": eps, "norm": "linf", "steps": 20, "restarts": 5, "step_size": eps / 4}
    return {"clean": {}, "pgd-ce": {**pgd, "loss": "cross-entropy"}, "pgd-cw": {**pgd, "loss": "cw-margin"},
            "pgd-weak": {**pgd, "steps": 1, "restarts": 1, "loss": "cross-entropy"},
            "large-eps": {**pgd, "eps": 0.5, "restarts": 1, "step_size": 0.25, "loss": "cross-entropy"},
            "blackbox": {"eps": eps, "norm": "linf", "queries": 200}}


def _imageset(n=96, seed=0):
    from experiments.common.data import make_generated

    return make_generated(n, shape=(1, 6, 6), seed=seed)


def _trained_mlp(data):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = data.batch(range(len(data)))
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_masking_checks_pass_on_a_plain_model_and_flag_a_masked_one():
    from experiments.evaluate.suite import run_attacks

    data = _imageset()
    model = _trained_mlp(data)
    settings = _masking_settings(0.1)
    results, checks, warnings = run_attacks(model, data, settings, n=len(data), batch_size=48, seed=0)
    assert results["clean"]["robust_acc"] > 0.5 and 0 < results["pgd"]["robust_acc"]
    assert all(check["passed"] for check in checks.values()), (checks, warnings)
    assert not warnings

    masked = _Quantized(model).eval()
    results_m, checks_m, warnings_m = run_attacks(masked, data, settings, n=len(data), batch_size=48, seed=0)
    assert results_m["clean"]["robust"] == results["clean"]["robust"]  # the same classifier on 8-bit images
    assert results_m["white-box"]["robust_acc"] > results["white-box"]["robust_acc"]  # PGD is fooled
    assert not checks_m["black_box_vs_white_box"]["passed"]
    assert any("black-box" in w for w in warnings_m)


def test_partial_results_survive_a_restart_and_a_changed_key_starts_over(tmp_path):
    path = str(tmp_path / "r.json.partial")
    partial = R.Partial(path, {"a": 1})
    partial.save(0, {"clean": "101"})
    partial.save(1, {"clean": "1"})
    again = R.Partial(path, {"a": 1})
    assert again.resumed and again.done(0) and again.done(1) and not again.done(2)
    np.testing.assert_array_equal(again.flags("clean"), [True, False, True, True])
    assert not R.Partial(path, {"a": 2}).resumed
    again.remove()
    assert not (tmp_path / "r.json.partial").exists()


def test_checks_warn_when_more_restarts_report_higher_accuracy():
    flags = {"clean": np.ones(100, bool), "pgd-ce": np.r_[np.ones(60, bool), np.zeros(40, bool)],
             "pgd-weak": np.r_[np.ones(50, bool), np.zeros(50, bool)]}
    results = {"pgd-ce": {"robust_acc": 0.6, "steps": 50, "restarts": 5},
               "pgd-weak": {"robust_acc": 0.5, "steps": 10, "restarts": 1}}
    checks, warnings = R.checks_and_warnings(results, flags, ["zero gradients", "zero gradients"])
    assert not checks["more_steps_and_restarts"]["passed"]
    assert any("rises with more PGD steps" in w for w in warnings)
    assert warnings.count("AutoAttack: zero gradients") == 1
