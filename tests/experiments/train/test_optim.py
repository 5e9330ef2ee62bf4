"""The optimizer and schedule factory: SGD and the step schedule by default, cosine annealing and momentum as
options, and a resumed run that continues the same learning rates (checkpoint/resume exact for both)."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from test_train_runs import TINY, _numbers, _rows  # tests/experiments/train is on sys.path (rootdir imports)

from experiments.common.checkpoints import load_checkpoint
from experiments.train.command import main
from experiments.train.optim import build_optimizer, build_schedule, milestones


def _config(**changes):
    base = {"lr": 0.1, "momentum": 0.0, "weight_decay": 5e-4, "lr_milestones": (0.5, 0.75), "lr_gamma": 0.1,
            "schedule": "step"}
    return {**base, **changes}


def _lrs(schedule, optimizer, epochs, steps_per_epoch):
    """The learning rate of every optimizer step, the trainer's way: after_step, and after_epoch."""
    seen = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_step()
        schedule.after_epoch()
    return seen


def test_the_default_is_the_papers_sgd_and_step_schedule():
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model, _config())
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.0, 5e-4)
    schedule = build_schedule(optimizer, _config(), epochs=8, total_steps=24)
    assert schedule.kind == "step" and milestones((0.5, 0.75), 8) == [4, 6]
    lrs = _lrs(schedule, optimizer, 8, 3)
    expected = [0.1] * 12 + [0.1 * 0.1] * 6 + [0.1 * 0.1 * 0.1] * 6  # x0.1 after epochs 4 and 6
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_momentum_is_an_option():
    optimizer = build_optimizer(torch.nn.Linear(3, 2), _config(momentum=0.9))
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_cosine_anneals_over_the_total_steps_whatever_the_epochs():
    optimizer = build_optimizer(torch.nn.Linear(3, 2), _config(schedule="cosine", lr=0.2))
    total = 10  # e.g. --max-steps 10 over 4 epochs of 3 steps: the last epoch is cut
    schedule = build_schedule(optimizer, _config(schedule="cosine", lr=0.2), epochs=4, total_steps=total)
    lrs = _lrs(schedule, optimizer, 4, 3)[:total]
    assert lrs == pytest.approx([0.1 * (1 + math.cos(math.pi * t / total)) for t in range(total)], abs=1e-12)
    assert lrs[0] == 0.2 and all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_bad_schedules_are_refused():
    optimizer = build_optimizer(torch.nn.Linear(3, 2), _config())
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        build_schedule(optimizer, _config(schedule="linear"), epochs=2, total_steps=4)
    with pytest.raises(ValueError, match="at least one"):
        build_schedule(optimizer, _config(), epochs=0, total_steps=0)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_a_stopped_and_resumed_run_takes_the_same_steps(tmp_path, schedule):
    args = [*TINY, "--epochs", "3", "--variant", "pgd", "--schedule", schedule, "--momentum", "0.9",
            "--lr-milestones", "0.34", "--deterministic"]
    reference, run = str(tmp_path / "reference"), str(tmp_path / "run")
    assert main([*args, "--out", reference]) == 0
    # a non-finite loss at step 9 (inside epoch 2 of 5 steps each) stops the run at the checkpoint of step 8
    assert main([*args, "--out", run, "--checkpoint-every", "1", "--debug-nan-at-step", "9"]) == 3
    assert main(["--resume", run, "--debug-nan-at-step", "0", "--no-progress"]) == 0
    a = load_checkpoint(os.path.join(reference, "checkpoints", "last.pt"))
    b = load_checkpoint(os.path.join(run, "checkpoints", "last.pt"))
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    rows = _rows(reference)
    assert [_numbers(r) for r in rows] == [_numbers(r) for r in _rows(run)]
    with open(os.path.join(reference, "config.json")) as f:
        derived = json.load(f)["derived"]
    steps, total = derived["steps_per_epoch"], derived["total_steps"]
    # the lr of an epoch's row is the one reached at its end, before the step schedule's end-of-epoch decay
    if schedule == "cosine":
        expected = [0.05 * (1 + math.cos(math.pi * steps * e / total)) for e in (1, 2, 3)]
    else:
        expected = [0.1, 0.01, 0.01]  # x0.1 after epoch round(0.34 * 3) = 1
    assert [r["lr"] for r in rows] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_an_unknown_schedule_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*TINY, "--schedule", "linear", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--schedule" in capsys.readouterr().err
