"""The training command line: bad input exits non-zero with a clear message; checkpoints are validated."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from experiments.common.checkpoints import load_checkpoint, save_checkpoint
from experiments.train import config as cli
from experiments.train.command import main

TINY = ["--generated-size", "96", "--generated-shape", "1x6x6", "--net", "mlp", "--hidden", "8",
        "--norm", "none", "--batch-size", "16", "--epochs", "1", "--variant", "ddi-2", "--steps", "2",
        "--eval-steps", "2", "--eval-examples", "16", "--no-progress", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("runs") / "done")
    assert main([*TINY, "--out", run]) == 0
    return run


def _usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        cli.parse_config(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--variant", "ddi-ten"], "unknown variant"),
    (["--variant", "ddi-0"], "count must be >= 1"),
    (["--variant", "pgd-max-0"], "count must be >= 1"),
    (["--eps", "0"], "--eps must be > 0"),
    (["--eps=-8/255"], "--eps must be > 0"),
    (["--eps", "eight"], "fraction like 8/255"),
    (["--steps", "0"], "--steps must be > 0"),
    (["--batch-size", "0"], "--batch-size must be > 0"),
    (["--lr-milestones", "0.9,0.5"], "increasing fractions"),
    (["--dataset", "imagenet"], "invalid choice"),
])
def test_bad_command_lines_exit_2_with_a_message(capsys, argv, message):
    assert message in _usage_error(capsys, argv)


def test_missing_data_folder_exits_2_naming_it(tmp_path, capsys):
    missing = str(tmp_path / "no-data")
    code = main(["--dataset", "cifar10", "--data-root", missing, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "cifar-10-batches-py" in err and missing in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "run")  # nothing half-made
    code = main(["--dataset", "fashion-mnist", "--data-root", missing, "--out", str(tmp_path / "run")])
    assert code == 2 and "Fashion-MNIST folder not found" in capsys.readouterr().err


def test_help_explains_the_variants_and_the_paper_preset(capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_config(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("ddi-comb-K", "pgd-K'-1/t", "--preset", "--resume", "torchrun", "--debug-nan-at-step"):
        assert text in out


def test_paper_preset_is_the_papers_setting():
    config = cli.parse_config(["--preset", "paper"])
    expected = dict(dataset="cifar10", net="resnet18", activation="celu", norm="group", variant="ddi-10",
                    epochs=200, batch_size=128, lr=0.1, momentum=0.0, weight_decay=5e-4, steps=7,
                    eval_steps=20, lr_milestones=(0.5, 0.75), lr_gamma=0.1)
    assert {k: config[k] for k in expected} == expected
    assert config["eps"] == pytest.approx(8 / 255) and config["step_size"] == pytest.approx(2 / 255)
    # explicit options win over the preset
    assert cli.parse_config(["--preset", "paper", "--variant", "pgd", "--epochs", "3"])["variant"] == "pgd"


def test_resume_refuses_changed_options(finished_run, capsys):
    err = _usage_error(capsys, ["--resume", finished_run, "--lr", "0.5"])
    assert "--lr cannot change on resume" in err
    # options that do not change the numbers may differ
    assert cli.parse_config(["--resume", finished_run, "--checkpoint-every", "7"])["checkpoint_every"] == 7


def test_a_finished_run_has_its_files_and_resuming_it_is_a_no_op(finished_run, capsys):
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "log.txt", "summary.json",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert os.path.exists(os.path.join(finished_run, name)), name
    with open(os.path.join(finished_run, "config.json")) as f:
        saved = json.load(f)
    assert saved["config"]["variant"] == "ddi-2" and saved["derived"]["steps_per_epoch"] == 5
    assert main(["--resume", finished_run]) == 0
    assert "already complete" in capsys.readouterr().err


def _copy_run(src, dst):
    os.makedirs(os.path.join(dst, "checkpoints"))
    for name in ("config.json", "metrics.jsonl", "checkpoints/last.pt"):
        with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
            g.write(f.read())
    return dst


@pytest.mark.parametrize("damage, message", [("truncate", "truncated"), ("flip", "corrupted"),
                                             ("empty", "not a minmax checkpoint")])
def test_damaged_checkpoint_is_refused_clearly(finished_run, tmp_path, capsys, damage, message):
    run = _copy_run(finished_run, str(tmp_path / "copy"))
    path = os.path.join(run, "checkpoints", "last.pt")
    raw = bytearray(open(path, "rb").read())
    if damage == "truncate":
        raw = raw[:len(raw) - 1000]
    elif damage == "flip":
        raw[len(raw) // 3] ^= 0x55
    else:
        raw = b""
    open(path, "wb").write(bytes(raw))
    assert main(["--resume", run]) == 2
    err = capsys.readouterr().err
    assert message in err and path in err and "Traceback" not in err


def test_checkpoint_of_another_configuration_or_architecture_is_refused(finished_run, tmp_path, capsys):
    run = _copy_run(finished_run, str(tmp_path / "other"))
    config_path = os.path.join(run, "config.json")
    with open(config_path) as f:
        saved = json.load(f)
    saved["config"]["seed"] = 99
    with open(config_path, "w") as f:
        json.dump(saved, f)
    assert main(["--resume", run]) == 2
    assert "different configuration (seed: checkpoint 0 vs run 99)" in capsys.readouterr().err

    run = _copy_run(finished_run, str(tmp_path / "arch"))
    path = os.path.join(run, "checkpoints", "last.pt")
    state = load_checkpoint(path)
    state["model"] = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in state["model"].items()}
    save_checkpoint(path, state)
    assert main(["--resume", run]) == 2
    err = capsys.readouterr().err
    assert "does not fit the model" in err and "size mismatch" in err and "Traceback" not in err


def test_existing_run_directory_is_not_overwritten(finished_run, capsys):
    assert main([*TINY, "--out", finished_run]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = str(tmp_path / "nan")
    assert main([*TINY, "--out", run, "--debug-nan-at-step", "4"]) == 3
    err = capsys.readouterr().err
    assert "non-finite loss at optimizer step 4" in err and "Traceback" not in err
    assert "last.pt (epoch 1, step 2, global step 2) is intact" in err
    state = load_checkpoint(os.path.join(run, "checkpoints", "last.pt"))
    assert state["progress"]["global_step"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values())
    with open(os.path.join(run, "summary.json")) as f:
        assert json.load(f)["status"] == "non-finite loss"
    # the kept checkpoint is usable: resuming without the fault finishes the run
    assert main(["--resume", run]) == 0
    assert load_checkpoint(os.path.join(run, "checkpoints", "last.pt"))["progress"]["global_step"] == 5


def test_the_command_line_lists_exactly_the_table():
    from experiments.train import config as cli
    from minmax.torch.variants import FAMILIES

    section = cli.EPILOG.split("variants (--variant)", 1)[1].split("\n\n", 1)[0]
    # a family's line starts at column 2 with its forms, then two or more spaces (or the line's end)
    heads = [re.split(r"\s{2,}", line[2:], maxsplit=1)[0] for line in section.splitlines()[1:]
             if line.startswith("  ") and line[2] != " "]
    listed = [form for head in heads for form in head.split(", ")]
    assert listed == [form for f in FAMILIES.values() for form in f.forms]
    for f in FAMILIES.values():
        assert " ".join(f.inner.split()[:4]) in " ".join(section.split())
