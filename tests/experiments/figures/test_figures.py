"""The figure scripts: plot (Figures 4/5/8), optima (Figures 2/6), classify2d (Figure 3)."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest

from experiments.figures import classify2d, optima
from experiments.figures import curves as plot
from experiments.train.command import main as train_main

PNG = b"\x89PNG\r\n\x1a\n"


def _fake_run(path, variant, accs, seconds):
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"config": {"variant": variant, "net": "cnn", "activation": "relu", "norm": "batch",
                              "dataset": "generated", "seed": 0}}, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for epoch, (acc, t) in enumerate(zip(accs, seconds, strict=True), start=1):
            f.write(json.dumps({"epoch": epoch, "test_robust_acc": acc, "test_clean_acc": acc + 0.2,
                                "val_robust_acc": acc, "wall_time": t}) + "\n")
    return path


def test_plot_overlays_runs_and_prints_a_table(tmp_path, capsys):
    a = _fake_run(str(tmp_path / "a"), "ddi-10", [0.2, 0.35, 0.4], [100, 200, 300])
    b = _fake_run(str(tmp_path / "b"), "pgd", [0.25, 0.3, 0.38], [30, 60, 90])
    out = str(tmp_path / "fig" / "curves.png")
    assert plot.main([a, b, "--out", out, "--clean"]) == 0
    assert open(out, "rb").read(8) == PNG
    table = capsys.readouterr().out
    assert "ddi-10" in table and "pgd" in table and "40.00%" in table  # last = best = 40% for ddi-10
    runs = plot.load_runs([a, b])
    assert [r["label"] for r in runs] == ["ddi-10", "pgd"]


def test_plot_refuses_a_folder_without_logs(tmp_path, capsys):
    assert plot.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("optima") / "run")
    argv = ["--generated-size", "96", "--generated-shape", "1x6x6", "--net", "mlp", "--hidden", "8", "--norm",
            "none", "--batch-size", "16", "--epochs", "1", "--variant", "pgd", "--steps", "2", "--eval-steps",
            "2", "--eval-examples", "16", "--no-progress", "--out", run]
    assert train_main(argv) == 0
    return os.path.join(run, "checkpoints", "best.pt")


def test_optima_writes_histograms_and_a_consistent_summary(checkpoint, tmp_path, capsys):
    out = str(tmp_path / "optima")
    assert optima.main([checkpoint, "--m", "4", "--examples", "12", "--batch-size", "5", "--out", out]) == 0
    for name in ("distances.png", "losses.png"):
        assert open(os.path.join(out, name), "rb").read(8) == PNG
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["images"] == 12 and summary["m"] == 4 and summary["dim"] == 36
    d = summary["distance_over_eps_sqrt_d"]
    # every perturbation lies in the l-inf ball, so two of them are at most its l2 diameter 2·ε√d apart
    assert 0 <= d["min"] <= d["median"] <= d["max"] <= 2 + 1e-6
    assert summary["distance_uniform_reference"] == pytest.approx(math.sqrt(2 / 3))
    for key in ("fraction_pairs_closer_than_1pct", "clean_acc", "robust_acc_worst_of_m",
                "fraction_images_where_attacks_disagree", "fraction_attacks_above_clean_loss"):
        assert 0 <= summary[key] <= 1
    assert summary["robust_acc_worst_of_m"] <= summary["clean_acc"] + 1e-12 or summary["clean_acc"] < 1
    with open(os.path.join(out, "optima.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all(float(r["loss_min"]) <= float(r["loss_max"]) for r in rows)
    assert "pairwise l2 distance" in capsys.readouterr().out


def test_optima_distances_match_a_direct_computation(checkpoint):
    from experiments.train.model import restore_model

    model, config, splits = restore_model(checkpoint)
    res = optima.analyze(model, splits["test"], m=3, eps=config["eps"], examples=6, seed=1)
    assert res["distances"].shape == (6, 3) and res["losses"].shape == (6, 3)
    # same seed, same attack: the distances are reproducible
    again = optima.analyze(model, splits["test"], m=3, eps=config["eps"], examples=6, seed=1)
    np.testing.assert_array_equal(res["distances"], again["distances"])


def test_optima_refuses_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert optima.main([str(bad)]) == 2
    assert "not a minmax checkpoint" in capsys.readouterr().err


def test_classify2d_figure3(tmp_path, capsys):
    out = str(tmp_path / "c2d")
    argv = ["--iterations", "12", "--compare-at", "10", "--points", "30", "--m", "4", "--eval-every", "4",
            "--eval-restarts", "3", "--inner-steps", "4", "--out", out]
    assert classify2d.main(argv) == 0
    for name in ("negative_inner_products.png", "robust_loss.png", "linearized.png", "boundaries.png"):
        assert open(os.path.join(out, name), "rb").read(8) == PNG, name
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    at = summary["at_iteration"]
    assert at["iteration"] == 10 and at["ddi_slope"] <= 0 and 0 <= at["negative_inner_products"] <= 6
    with open(os.path.join(out, "classify2d.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 13))
    assert all(0 <= int(r["ddi_negative_inner_products"]) <= 6 for r in rows)
    assert rows[3]["ddi_robust_loss"] and not rows[0]["ddi_robust_loss"]  # evaluated every 4 iterations
    with open(os.path.join(out, "linearized.csv")) as f:
        lin = np.array([[float(v) for v in r] for r in list(csv.reader(f))[1:]])
    # all curves start at the finite-set robust loss max_i L_i; along DDi's direction every <g_i, γ*> is at
    # most the slope -||M a*|| < 0 (Theorem 2), so its curve decreases and stays under max L + t·slope
    np.testing.assert_allclose(lin[0, 1:], lin[0, 1])
    assert np.all(np.diff(lin[:, 1]) <= 1e-12)
    assert np.all(lin[:, 1] <= lin[0, 1] + lin[:, 0] * at["ddi_slope"] + 1e-9)
    assert "negative inner products per iteration" in capsys.readouterr().out
