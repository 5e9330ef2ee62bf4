"""python -m experiments.study: configuration checks, the statistics, and a small study end to end."""

from __future__ import annotations

import json
import math
import os

import pytest

from experiments.study.aggregate import mean_sd, paired_difference
from experiments.study.command import main
from experiments.study.config import PRESETS, StudyConfig, StudyError, load_config

# the tiny runs of tests/experiments/train/test_train_runs.py: a second or two each
TINY = ["--generated-size", "96", "--generated-shape", "1x6x6", "--net", "mlp", "--hidden", "8",
        "--norm", "none", "--batch-size", "16", "--steps", "2", "--eval-steps", "2", "--eval-examples", "16",
        "--no-progress"]
SHARED = [*TINY, "--epochs", "2", "--max-steps", "4", "--eval-every", "2", "--threads", "1"]


def test_paired_difference_is_the_student_t_interval_of_the_differences():
    d = paired_difference([0.5, 0.6, 0.7], [0.4, 0.4, 0.4])
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t_{0.975, 2} = 4.302653
    assert d["mean"] == pytest.approx(0.2) and d["sd"] == pytest.approx(0.1) and d["n"] == 3
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert d["low"] == pytest.approx(0.2 - half, rel=1e-6)
    assert d["high"] == pytest.approx(0.2 + half, rel=1e-6)
    assert math.isnan(paired_difference([0.5], [0.4])["low"])  # one seed: no interval
    assert mean_sd([3.0]) == {"mean": 3.0, "sd": 0.0, "n": 1}


@pytest.mark.parametrize("kwargs, match", [
    (dict(variants=("pgd", "nope-3")), "nope-3"),
    (dict(variants=("pgd", "pgd")), "distinct"),
    (dict(seeds=()), "at least one"),
    (dict(seeds=(0, -1)), "non-negative"),
    (dict(train_args=("--seed", "3", "--eval-every", "2")), "--seed"),
    (dict(train_args=("--out=x", "--eval-every", "2")), "--out"),
    (dict(train_args=("--max-steps", "4")), "--eval-every"),
])
def test_bad_study_configurations_are_refused(kwargs, match):
    base = dict(name="s", variants=("pgd",), seeds=(0,), train_args=("--eval-every", "2"))
    with pytest.raises(StudyError, match=match):
        StudyConfig(**{**base, **kwargs})


def test_presets_and_files_load(tmp_path):
    assert load_config("fashion-mnist-cpu") is PRESETS["fashion-mnist-cpu"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"variants": ["pgd"], "seeds": [1], "train_args": ["--eval-every", "3"]}))
    assert load_config(str(path)) == StudyConfig("s", ("pgd",), (1,), ("--eval-every", "3"))
    path.write_text(json.dumps({"variants": ["pgd"]}))
    with pytest.raises(StudyError, match="needs variants, seeds, train_args"):
        load_config(str(path))
    with pytest.raises(StudyError, match="neither a preset"):
        load_config(str(tmp_path / "missing.json"))


@pytest.mark.slow
def test_a_small_study_runs_aggregates_and_resumes(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"name": "tiny", "variants": ["pgd", "ddi-2"], "seeds": [0, 1],
                                  "train_args": SHARED}))
    out = str(tmp_path / "study")
    assert main([str(config), "--out", out, "--jobs", "2", "--no-progress"]) == 0
    with open(os.path.join(out, "study.json")) as f:
        study = json.load(f)
    assert study["reference"] == "pgd" and set(study["variants"]) == {"pgd", "ddi-2"}
    finals = {}
    for variant, result in study["variants"].items():
        assert result["seeds"] == [0, 1] and result["steps"] == 4
        assert result["curve"]["step"] == [0, 2, 4]
        by_seed = []
        for seed in (0, 1):
            with open(os.path.join(out, "runs", variant, f"seed-{seed}", "summary.json")) as f:
                by_seed.append(json.load(f)["test_last"]["robust_acc"])
        assert result["final_robust_acc"]["mean"] == pytest.approx(sum(by_seed) / 2)
        finals[variant] = by_seed
    diff = study["variants"]["ddi-2"]["robust_acc_minus_reference"]
    assert diff["mean"] == pytest.approx(sum(finals["ddi-2"]) / 2 - sum(finals["pgd"]) / 2)
    assert os.path.getsize(os.path.join(out, "study.png")) > 0
    with open(os.path.join(out, "study.md")) as f:
        assert "| ddi-2 | 2 | 4 |" in f.read()
    # a second call trains nothing and gives the same numbers
    summary = os.path.join(out, "runs", "pgd", "seed-0", "summary.json")
    stamp = os.path.getmtime(summary)
    assert main([str(config), "--out", out, "--no-progress"]) == 0
    assert os.path.getmtime(summary) == stamp
    # another study may not reuse the folder
    config.write_text(json.dumps({"name": "other", "variants": ["pgd"], "seeds": [0], "train_args": SHARED}))
    capsys.readouterr()
    assert main([str(config), "--out", out, "--no-progress"]) == 2
    assert "holds another study" in capsys.readouterr().err
