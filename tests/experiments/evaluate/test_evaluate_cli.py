"""``python -m experiments.evaluate CHECKPOINT`` on a checkpoint of a short real training run (CPU, seconds).

The run: ``experiments.train`` with PGD on the generated dataset (1x6x6 images, an MLP), 6 epochs, which
leaves a model with clean accuracy well above chance and non-trivial robust accuracy at ε = 8/255.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.common.checkpoints import load_checkpoint, save_checkpoint
from experiments.evaluate import suite
from experiments.evaluate.command import main

# the repository root (the checkout whose experiments the subprocesses must run, not an installed copy)
ROOT = str(next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists()))
TRAIN = ["--generated-size", "600", "--generated-shape", "1x6x6", "--net", "mlp", "--hidden", "32", "--norm",
         "none", "--batch-size", "32", "--steps", "2", "--eval-steps", "2", "--eval-examples", "50",
         "--no-progress", "--epochs", "6", "--variant", "pgd", "--lr", "0.2", "--checkpoint-every", "0"]
FAST = ["--n-examples", "48", "--batch-size", "16", "--steps", "5", "--restarts", "3", "--blackbox-queries",
        "100", "--attacks", "pgd-ce,pgd-cw,checks", "--no-progress"]


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from experiments.train.command import main as train

    folder = str(tmp_path_factory.mktemp("evaluate") / "run")
    with contextlib.redirect_stderr(io.StringIO()):
        assert train([*TRAIN, "--out", folder]) == 0
    return folder


@pytest.fixture(scope="module")
def evaluated(run):
    checkpoint = os.path.join(run, "checkpoints", "best.pt")
    code, out, err = _run([checkpoint, *FAST])
    assert code == 0, err
    return checkpoint, out


def _printed_rows(text):
    """The Markdown table rows as {title: percentage string}."""
    return dict(re.findall(r"^\| ([^|]+?) \| [^|]*\| ([0-9.]+) \|$", text, flags=re.M))


def test_report_files_exist_parse_and_hold_the_numbers_printed(evaluated):
    checkpoint, printed = evaluated
    stem = os.path.splitext(checkpoint)[0]
    with open(stem + ".robustness-linf.json") as f:
        report = json.load(f)
    with open(stem + ".robustness-linf.md") as f:
        assert f.read() in printed
    assert not os.path.exists(stem + ".robustness-linf.json.partial")  # cleaned up once complete
    rows = _printed_rows(printed)
    results = report["results"]
    assert rows["clean"] == report["clean_acc"] == f"{100 * results['clean']['robust_acc']:.2f}"
    assert rows["PGD (cross-entropy)"] == f"{100 * results['pgd-ce']['robust_acc']:.2f}"
    assert rows["PGD (CW margin)"] == f"{100 * results['pgd-cw']['robust_acc']:.2f}"
    assert rows["PGD (worst of CE and CW)"] == report["pgd_acc"]
    assert rows["worst case over all attacks"] == report["robust_acc"]
    assert rows["black-box random search"] == f"{100 * results['blackbox']['robust_acc']:.2f}"
    assert report["threat_model"] == "Linf" and report["eps"] == "8/255" and report["dataset"] == "generated"
    assert report["architecture"].startswith("mlp 32") and report["autoattack_acc"] is None
    assert report["training"]["variant"] == "pgd" and report["training"]["epochs"] == 6
    assert report["training"]["checkpoint"] == "best"
    assert report["evaluation"]["n_examples"] == 48 and report["versions"]["torch"] == torch.__version__
    assert set(report["checks"]) == {"more_steps_and_restarts", "large_eps", "black_box_vs_white_box"}
    assert report["unreliable"] == bool(report["warnings"])
    # the numbers are the model's: clean accuracy recounted independently, robust never above clean
    from experiments.train.model import restore_model

    model, _, splits = restore_model(checkpoint)
    x, y = splits["test"].batch(range(48))
    with torch.no_grad():
        assert int((model(x).argmax(1) == y).sum()) == results["clean"]["robust"]
    assert 0 < results["pgd"]["robust"] <= results["pgd-ce"]["robust"] <= results["clean"]["robust"]
    curve = results["pgd-ce"]["robust_acc_by_restarts"]
    assert len(curve) == 3 and curve == sorted(curve, reverse=True)
    assert curve[-1] == results["pgd-ce"]["robust_acc"]


def test_more_restarts_never_report_higher_robust_accuracy(evaluated, tmp_path):
    checkpoint, _ = evaluated
    with open(os.path.splitext(checkpoint)[0] + ".robustness-linf.json") as f:
        three = json.load(f)["results"]
    out = str(tmp_path / "one.json")
    argv = [checkpoint, *FAST, "--out", out]
    argv[argv.index("--restarts") + 1] = "1"
    assert _run(argv)[0] == 0
    with open(out) as f:
        one = json.load(f)["results"]
    for name in ("pgd-ce", "pgd-cw"):  # the same seed: the 1-restart run is the first restart of the 3
        assert one[name]["robust_acc_by_restarts"] == three[name]["robust_acc_by_restarts"][:1]
        assert three[name]["robust"] <= one[name]["robust"]
    assert three["pgd"]["robust"] <= one["pgd"]["robust"]


def test_at_eps_one_robust_accuracy_is_zero(run, tmp_path):
    checkpoint = os.path.join(run, "checkpoints", "last.pt")
    code, _, err = _run([checkpoint, "--eps", "1", "--n-examples", "48", "--steps", "10", "--restarts", "1",
                         "--attacks", "pgd-ce,pgd-cw", "--out", str(tmp_path / "r.json"), "--no-progress"])
    assert code == 0, err
    with open(tmp_path / "r.json") as f:
        report = json.load(f)
    assert report["results"]["clean"]["robust"] > 0
    assert report["results"]["pgd-ce"]["robust"] == report["results"]["pgd-cw"]["robust"] == 0
    assert report["pgd_acc"] == "0.00" and report["eps"] == "1"


def test_an_interrupted_evaluation_resumes_where_it_stopped_with_the_same_numbers(run, evaluated, tmp_path,
                                                                                   monkeypatch):
    checkpoint, _ = evaluated
    out = str(tmp_path / "resumed.json")
    real, calls = suite.evaluate_batch, []

    def interrupted(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(suite, "evaluate_batch", interrupted)
    code, _, err = _run([checkpoint, *FAST, "--out", out])
    assert code == 130 and "rerun the same command" in err and os.path.exists(out + ".partial")

    def counted(*args, **kwargs):
        calls.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(suite, "evaluate_batch", counted)
    code, _, err = _run([checkpoint, *FAST, "--out", out])
    assert code == 0 and "resuming: 1 batches" in err
    assert calls == [0, 1, 2]  # batch 0 before the interruption; 1 and 2 after it
    with open(out) as f:
        resumed = json.load(f)
    with open(os.path.splitext(checkpoint)[0] + ".robustness-linf.json") as f:
        uninterrupted = json.load(f)
    strip = ("seconds",)
    for name, entry in uninterrupted["results"].items():
        assert {k: v for k, v in resumed["results"][name].items() if k not in strip} == \
               {k: v for k, v in entry.items() if k not in strip}
    assert resumed["evaluation"]["resumed"] is True


def test_autoattack_runs_through_the_real_package(run, tmp_path):
    pytest.importorskip("pyautoattack", reason="the optional extra minmax[autoattack] (pyautoattack) is not "
                                               "installed")
    checkpoint = os.path.join(run, "checkpoints", "best.pt")
    out = str(tmp_path / "aa.json")
    code, printed, err = _run([checkpoint, "--attacks", "autoattack,pgd-cw", "--norm", "l2", "--n-examples",
                               "6", "--steps", "5", "--restarts", "1", "--out", out, "--no-progress"])
    assert code == 0, err
    with open(out) as f:
        report = json.load(f)
    assert report["threat_model"] == "L2" and report["eps"] == "0.5"
    assert report["results"]["autoattack"]["version"] == "standard"
    assert report["autoattack_acc"] == _printed_rows(printed)["AutoAttack (standard)"]
    assert report["results"]["autoattack"]["robust"] <= report["results"]["clean"]["robust"]
    assert report["versions"]["pyautoattack"]


def test_missing_autoattack_names_the_extra(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # makes the import fail as if not installed
    code, _, err = _run([os.path.join(run, "checkpoints", "best.pt"), "--attacks", "autoattack"])
    assert code == 2 and "pip install 'minmax[autoattack]'" in err and "Traceback" not in err


def test_a_checkpoint_of_another_architecture_is_refused(run, tmp_path):
    state = load_checkpoint(os.path.join(run, "checkpoints", "best.pt"))
    for change in ({"net": "cnn"}, {"hidden": (64,)}):
        state["config"] = {**state["config"], **change}
        other = str(tmp_path / "other.pt")
        save_checkpoint(other, state)
        code, _, err = _run([other, "--no-progress"])
        assert code == 2 and err.startswith("error:") and "do not fit" in err, err


def test_a_corrupted_checkpoint_is_refused_without_a_traceback(run, tmp_path):
    raw = bytearray(open(os.path.join(run, "checkpoints", "last.pt"), "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    corrupted = tmp_path / "corrupted.pt"
    corrupted.write_bytes(bytes(raw))
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", str(corrupted)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and "corrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(str(corrupted).replace(".pt", ".robustness-linf.json"))


@pytest.mark.parametrize("argv", [["--eps", "0"], ["--restarts", "0"], ["--attacks", "cw"],
                                  ["--n-examples", "-1"]])
def test_bad_command_lines_exit_with_a_message(run, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([os.path.join(run, "checkpoints", "best.pt"), *argv])
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_final_comparison_plot_has_one_point_per_run_and_checkpoint(run, evaluated, tmp_path, capsys):
    from experiments.figures import curves as plot
    from experiments.figures import final as compare

    code, _, err = _run([os.path.join(run, "checkpoints", "last.pt"), *FAST])
    assert code == 0, err
    other = str(tmp_path / "report-l2.json")
    assert _run([os.path.join(run, "checkpoints", "last.pt"), *FAST, "--norm", "l2", "--out", other])[0] == 0
    out = str(tmp_path / "final.png")
    assert plot.main(["--final", run, "--out", out]) == 0
    assert os.path.getsize(out) > 0 and "wrote" in capsys.readouterr().out
    points, metric = compare.load_points([run])
    assert metric == "pgd" and sorted(p["checkpoint"] for p in points) == ["best", "last"]
    for p in points:
        with open(p["path"]) as f:
            report = json.load(f)
        assert (p["clean"], p["robust"]) == (float(report["clean_acc"]), float(report["pgd_acc"]))
    assert plot.main(["--final", run, other, "--out", out]) == 2  # Linf and L2 are not one comparison
    assert "different threat models" in capsys.readouterr().err
    assert plot.main(["--final", str(tmp_path / "empty"), "--out", out]) == 2
    assert "experiments.evaluate" in capsys.readouterr().err
