"""--train-size, --max-steps and --eval-every: the options that make small studies (experiments.study)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from test_train_runs import TINY, _reevaluate  # tests/experiments is on sys.path (rootdir imports)

from experiments.common import data as D
from experiments.common.checkpoints import load_checkpoint
from experiments.common.logs import read_evals, read_metrics
from experiments.common.seeds import derive_seed
from experiments.train.command import main

BUDGET = [*TINY, "--train-size", "48", "--epochs", "10", "--max-steps", "5", "--eval-every", "2",
          "--variant", "ddi-2"]


def _numbers(rows):
    return [{k: v for k, v in r.items() if k not in ("train_time", "train_cpu_time")} for r in rows]


def test_training_subset_depends_on_the_data_seed_only():
    data = D.make_generated(50, shape=(1, 4, 4), seed=0)
    a, b = D.training_subset(data, 20, seed=3), D.training_subset(data, 20, seed=3)
    assert len(a) == 20 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, D.training_subset(data, 20, seed=4).images)
    assert D.training_subset(data, 0) is data
    with pytest.raises(ValueError, match="in \\[1, 50\\]"):
        D.training_subset(data, 51)


def test_max_steps_ends_the_run_and_eval_every_logs_reproducible_rows(tmp_path):
    run = str(tmp_path / "run")
    assert main([*BUDGET, "--out", run]) == 0
    with open(os.path.join(run, "config.json")) as f:
        derived = json.load(f)["derived"]
    # 87 training examples after the validation split, 48 kept: 3 steps per epoch; 5 steps need 2 epochs
    assert derived["train_examples"] == 48 and derived["steps_per_epoch"] == 3
    assert derived["epochs"] == 2 and derived["total_steps"] == 5
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["global_step"] == 5
    assert rows[0]["lr"] == 0.1 and rows[1]["lr"] == pytest.approx(0.01)  # milestones over the 2 epochs
    evals = read_evals(run)
    assert [r["step"] for r in evals] == [0, 2, 4, 5]  # at the start, every 2 steps and at the end
    times = [r["train_time"] for r in evals]
    with open(os.path.join(run, "summary.json")) as f:
        assert times == sorted(times) and times[-1] < json.load(f)["wall_time"]
    assert all(r["n"] == 16 for r in evals)
    cpu = [r["train_cpu_time"] for r in evals]
    assert cpu == sorted(cpu) and cpu[0] > 0
    # the last row is the last weights evaluated on the test split with the progress seed
    last = load_checkpoint(os.path.join(run, "checkpoints", "last.pt"))
    assert last["progress"]["global_step"] == 5
    again = _reevaluate(run, last["model"], "test", derive_seed(0, 9))
    assert again["robust_acc"] == evals[-1]["robust_acc"]
    assert again["clean_loss"] == pytest.approx(evals[-1]["clean_loss"], rel=1e-6)


def test_a_run_stopped_and_resumed_logs_the_same_evaluations(tmp_path):
    reference, run = str(tmp_path / "reference"), str(tmp_path / "run")
    assert main([*BUDGET, "--out", reference, "--deterministic"]) == 0
    # a non-finite loss at step 4 stops the run at the checkpoint of step 3 (exit status 3)
    assert main([*BUDGET, "--out", run, "--deterministic", "--checkpoint-every", "1",
                 "--debug-nan-at-step", "4"]) == 3
    assert [r["step"] for r in read_evals(run)] == [0, 2]
    assert main(["--resume", run, "--debug-nan-at-step", "0", "--no-progress"]) == 0
    assert _numbers(read_evals(run)) == _numbers(read_evals(reference))


@pytest.mark.parametrize("flag, value", [("--train-size", "1000"), ("--max-steps", "-1"),
                                         ("--eval-every", "-2")])
def test_bad_budget_options_exit_with_status_2(tmp_path, capsys, flag, value):
    try:
        code = main([*TINY, flag, value, "--out", str(tmp_path / "r")])
    except SystemExit as exc:  # the command-line checks exit through argparse
        code = exc.code
    assert code == 2 and flag in capsys.readouterr().err


def test_channels_sets_the_cnn_widths():
    from experiments.train.config import parse_config
    from experiments.train.model import build_model_from_config

    config = parse_config(["--net", "cnn", "--channels", "4,6", "--generated-shape", "1x8x8"])
    model = build_model_from_config(config, (1, 8, 8), 10)
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [4, 6]
