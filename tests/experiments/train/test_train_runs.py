"""End-to-end training runs: every variant, kill (SIGKILL, SIGTERM) and resume, and torchrun with gloo.

All on the generated dataset with a tiny MLP on 1×6×6 images, so each run takes a second or two.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.common import data as D
from experiments.common.checkpoints import CheckpointError, load_checkpoint
from experiments.common.seeds import derive_seed
from experiments.train.command import main
from experiments.train.evaluation import evaluate
from experiments.train.model import build_model_from_config

# the repository root (the checkout whose experiments the subprocesses must run, not an installed copy)
ROOT = str(next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists()))
TINY = ["--generated-size", "96", "--generated-shape", "1x6x6", "--net", "mlp", "--hidden", "8",
        "--norm", "none", "--batch-size", "16", "--steps", "2", "--eval-steps", "2", "--eval-examples", "16",
        "--no-progress"]
VARIANTS = ["pgd", "pgd-max-2", "pgd-min-2", "pgd-4", "pgd-4-1/t", "fast", "fast-max-2", "ddi-2",
            "fast-ddi-2", "ddi-comb-2", "ddi-decay-3"]


def _rows(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _numbers(row):
    """A metrics row without the wall-clock fields (the only ones allowed to differ between runs)."""
    return {k: v for k, v in row.items() if not k.startswith("time_") and k != "wall_time"}


def _reevaluate(run, model_state, split_name, seed):
    """Rebuild the model from config.json and the state, and evaluate it as the run did."""
    from minmax.torch.attacks import PGD

    with open(os.path.join(run, "config.json")) as f:
        cfg = json.load(f)["config"]
    train, test = D.load_dataset("generated", generated_size=cfg["generated_size"],
                                 generated_shape=cfg["generated_shape"], data_seed=cfg["data_seed"])
    train, val = D.split_validation(train, min(cfg["val_size"], len(train) // 10), seed=cfg["data_seed"])
    model = build_model_from_config(cfg, train.input_shape, 10)
    model.load_state_dict(model_state)
    attack = PGD(eps=cfg["eps"], alpha=cfg["eval_step_size"], steps=cfg["eval_steps"], restarts=1)
    split = {"val": val, "test": test}[split_name]
    return evaluate(model, split, attack, seed=seed, limit=cfg["eval_examples"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_its_files_hold_what_they_claim(tmp_path, variant):
    run = str(tmp_path / "run")
    assert main([*TINY, "--epochs", "2", "--variant", variant, "--out", run, "--log-steps"]) == 0
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["global_step"] == 10
    for key in ("train_loss", "val_robust_acc", "test_robust_acc", "test_clean_loss", "gap_mean", "lr",
                "negative_inner_products_mean", "time_attack", "time_qp", "time_eval"):
        assert key in rows[0], key
    assert rows[0]["lr"] == 0.1 and rows[1]["lr"] == pytest.approx(0.01)  # ×0.1 after 50% of 2 epochs
    with open(os.path.join(run, "metrics.csv")) as f:
        assert f.readline().startswith("epoch,global_step,lr,") and len(f.readlines()) == 2
    with open(os.path.join(run, "steps.jsonl")) as f:
        steps = [json.loads(line) for line in f]
    assert [s["step"] for s in steps] == list(range(1, 11))
    expected_m = {"ddi-2": 2, "fast-ddi-2": 2, "pgd-min-2": 2, "ddi-comb-2": 2}.get(variant)
    if expected_m:
        assert all(s["m"] == expected_m for s in steps)
    if variant == "ddi-decay-3":  # m goes down from 3 towards 1 over the run
        assert steps[0]["m"] == 3 and steps[-1]["m"] < 3

    last = load_checkpoint(os.path.join(run, "checkpoints", "last.pt"))
    assert last["progress"] == {"epoch": 2, "step_in_epoch": 0, "global_step": 10}
    assert last["descent"]["t"] == 10 and last["config"]["variant"] == variant
    assert [_numbers(r) for r in last["history"]] == [_numbers(r) for r in rows]
    best = load_checkpoint(os.path.join(run, "checkpoints", "best.pt"))
    best_epoch = rows[-1]["best_epoch"]
    assert best["progress"]["epoch"] == best_epoch
    assert rows[best_epoch - 1]["val_robust_acc"] == max(r["val_robust_acc"] for r in rows)
    # the best checkpoint's weights reproduce the validation numbers logged for its epoch
    again = _reevaluate(run, best["model"], "val", derive_seed(0, 7, best_epoch - 1, 1))
    assert again["robust_acc"] == rows[best_epoch - 1]["val_robust_acc"]
    assert again["clean_loss"] == pytest.approx(rows[best_epoch - 1]["val_clean_loss"], rel=1e-6)
    # and the last checkpoint's weights reproduce the final test numbers of summary.json
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "complete" and summary["best_epoch"] == best_epoch
    final = _reevaluate(run, last["model"], "test", derive_seed(0, 8))
    assert final["robust_acc"] == summary["test_last"]["robust_acc"]
    if best_epoch == 2:  # the same weights, evaluated with the same seed: the same numbers
        assert summary["test_best"] == summary["test_last"]


def _command(*args):
    return [sys.executable, "-m", "experiments.train", *TINY, "--threads", "1", "--deterministic", *args]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def _mid_epoch_checkpoint(path):
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return None
    progress = state["progress"]
    return progress if progress["epoch"] >= 1 and progress["step_in_epoch"] > 0 else None


@pytest.mark.slow
def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    args = ["--epochs", "3", "--variant", "ddi-comb-2", "--checkpoint-every", "3"]
    reference = str(tmp_path / "reference")
    subprocess.run(_command(*args, "--out", reference), cwd=ROOT, env=_env(), check=True,
                   stderr=subprocess.DEVNULL, timeout=120)

    run = str(tmp_path / "killed")
    ckpt = os.path.join(run, "checkpoints", "last.pt")
    proc = subprocess.Popen(_command(*args, "--out", run, "--debug-step-delay", "0.3"), cwd=ROOT, env=_env(),
                            stderr=subprocess.DEVNULL)
    deadline, progress = time.monotonic() + 120, None
    while progress is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        progress = _mid_epoch_checkpoint(ckpt) if os.path.exists(ckpt) else None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert progress is not None and progress["global_step"] < 15
    killed_at = load_checkpoint(ckpt)["progress"]
    assert killed_at["global_step"] < 15  # really interrupted: not at the end of the run

    subprocess.run([sys.executable, "-m", "experiments.train", "--resume", run, "--threads", "1"], cwd=ROOT,
                   env=_env(), check=True, stderr=subprocess.DEVNULL, timeout=120)
    a = load_checkpoint(os.path.join(reference, "checkpoints", "last.pt"))
    b = load_checkpoint(ckpt)
    assert a["progress"] == b["progress"] == {"epoch": 3, "step_in_epoch": 0, "global_step": 15}
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key  # bit for bit
    assert a["descent"] == b["descent"]
    assert [_numbers(r) for r in _rows(reference)] == [_numbers(r) for r in _rows(run)]
    with open(os.path.join(reference, "summary.json")) as f, open(os.path.join(run, "summary.json")) as g:
        sa, sb = json.load(f), json.load(g)
    assert sa["test_last"] == sb["test_last"] and sa["test_best"] == sb["test_best"]

    # SIGTERM (a cluster's preemption): the run checkpoints the step it finished, exits 143, resumes exactly
    run = str(tmp_path / "terminated")
    ckpt = os.path.join(run, "checkpoints", "last.pt")
    command = _command(*args, "--out", run, "--debug-step-delay", "0.3", "--checkpoint-every", "0",
                       "--log-steps")
    proc = subprocess.Popen(command, cwd=ROOT, env=_env(), stderr=subprocess.DEVNULL)
    steps = os.path.join(run, "steps.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if os.path.exists(steps):
            with open(steps) as f:
                if len(f.readlines()) >= 7:  # inside the second epoch
                    break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    stopped = load_checkpoint(ckpt)["progress"]
    assert 7 <= stopped["global_step"] < 15 and stopped["step_in_epoch"] > 0  # saved mid-epoch, on the signal
    with open(os.path.join(run, "log.txt")) as f:
        assert "stopped by a termination signal" in f.read()
    subprocess.run([sys.executable, "-m", "experiments.train", "--resume", run, "--threads", "1"], cwd=ROOT,
                   env=_env(), check=True, stderr=subprocess.DEVNULL, timeout=120)
    c = load_checkpoint(ckpt)
    for key, value in a["model"].items():
        assert torch.equal(value, c["model"][key]), key
    assert [_numbers(r) for r in _rows(reference)] == [_numbers(r) for r in _rows(run)]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun not installed next to the interpreter")
def test_two_process_gloo_run_matches_the_single_process_run(tmp_path):
    args = ["--epochs", "2", "--variant", "ddi-2", "--checkpoint-every", "0"]
    single = str(tmp_path / "single")
    subprocess.run(_command(*args, "--out", single), cwd=ROOT, env=_env(), check=True,
                   stderr=subprocess.DEVNULL, timeout=120)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    double = str(tmp_path / "double")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "experiments.train", *_command(*args)[3:],
           "--out", double]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(double, "config.json")) as f:
        assert json.load(f)["world_size"] == 2
    a = load_checkpoint(os.path.join(single, "checkpoints", "last.pt"))
    b = load_checkpoint(os.path.join(double, "checkpoints", "last.pt"))
    assert len(b["rng"]) == 2  # one generator state per rank
    # the same steps up to the rounding of the cross-rank average: every rank draws the union batch's random
    # starts (per-rank starts would move the weights by ~5e-2 here; tests/torch/test_distributed.py)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5)
    for ra, rb in zip(_rows(single), _rows(double), strict=True):
        for key, value in _numbers(ra).items():
            if key.endswith("_acc") or key in ("epoch", "global_step", "best_epoch"):
                assert rb[key] == value, key
            elif isinstance(value, float) and key != "gap_max" and key != "gap_mean":
                assert rb[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
