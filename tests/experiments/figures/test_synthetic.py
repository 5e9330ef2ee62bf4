"""experiments.figures.synthetic: the script runs into a directory and writes Figure 1's PNGs and the CSV
histories; the counterexample numbers are the paper's."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from experiments.figures import synthetic


def test_main_writes_figures_and_histories(tmp_path, capsys):
    out = tmp_path / "fig1"
    assert synthetic.main(["--out", str(out), "--iterations", "12"]) == 0
    for name in ("figure1a_contour.png", "figure1b_robust_loss.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    for name in ("figure1_DDi.csv", "figure1_single_adversary.csv"):
        with open(out / name) as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0]) == synthetic.CSV_COLUMNS
        assert [int(r["k"]) for r in rows] == list(range(13))
        assert float(rows[0]["theta1"]) == 2.0 and float(rows[0]["theta2"]) == 0.1
        phi = np.array([float(r["phi"]) for r in rows])
        theta = np.array([[float(r["theta1"]), float(r["theta2"])] for r in rows])
        np.testing.assert_allclose(phi, theta[:, 0] ** 2 + (1 + np.abs(theta[:, 1])) ** 2)
        assert rows[-1]["direction1"] == ""
    assert (out / "counterexamples.csv").exists()
    printed = capsys.readouterr().out
    assert "DDi" in printed and "single adversary" in printed and "counterexample 2" in printed


def test_figure1_histories_show_the_paper_claim():
    problem, hist = synthetic.run_figure1(iterations=15)
    ddi_, single = hist["DDi"], hist["single adversary"]
    ddi_slopes, _ = synthetic.exact_slopes(problem, ddi_)
    single_slopes, _ = synthetic.exact_slopes(problem, single)
    assert np.all(ddi_slopes < 0)  # every DDi step is a true descent direction of phi
    assert np.any(single_slopes > 0)  # the gradient at one maximizer sometimes ascends
    far = synthetic.far_from_minimizer(ddi_)
    assert np.all(np.diff(ddi_.phi)[far] < 0)
    rows = {r["method"]: r for r in synthetic.summary_rows(problem, hist)}
    assert int(rows["single adversary"]["kink crossings"]) > int(rows["DDi"]["kink crossings"])


def test_counterexample_checks(capsys):
    rows = synthetic.counterexample_checks(verbose=True)
    assert "counterexample 1" in capsys.readouterr().out
    for r in rows:
        if r["direction"].startswith("-grad"):
            # minus the gradient at a single maximizer increases phi (Corollary C.2 of Madry et al. fails)
            assert r["danskin"] > 0 and r["numerical"] == pytest.approx(r["danskin"], abs=1e-8)
    ce1 = [r for r in rows if r["problem"] == "counterexample 1"]
    assert [r["danskin"] for r in ce1[:2]] == [1.0, 1.0]  # Lemma 1: both directions ascend
    star = [r for r in rows if r["problem"] == "counterexample 2" and r["direction"].startswith("gamma*")][0]
    u, v = np.array([1.0, 0.0]), np.array([-0.6, 0.8])
    np.testing.assert_allclose(star["gamma"], -(u + v) / np.linalg.norm(u + v), atol=1e-6)
    assert star["danskin"] == pytest.approx(-np.linalg.norm(u + v) / 2)
    assert star["numerical"] == pytest.approx(star["danskin"], abs=1e-8)
    ce2 = [r for r in rows if r["problem"] == "counterexample 2" and r["direction"].startswith("-grad")]
    assert [r["danskin"] for r in ce2] == pytest.approx([0.6, 0.6])  # -<u, v>


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        synthetic.main([])  # --out is required
    with pytest.raises(ValueError, match="iterations"):
        synthetic.main(["--out", str(tmp_path), "--iterations", "-1", "--no-plots"])
