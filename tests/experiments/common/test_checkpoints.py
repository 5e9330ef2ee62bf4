"""Checkpoint files: atomic writes, exact round trips, and refusal of truncated or corrupted files."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from experiments.common.checkpoints import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def _state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "weights": np.array([0.25, 0.75]),
            "history": [{"epoch": 1, "acc": 0.5}], "pair": (1, "a")}


def test_round_trip_is_exact(tmp_path):
    state = _state()
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    for key, value in state["model"].items():
        assert torch.equal(back["model"][key], value)
    momentum = state["optimizer"]["state"][0]["momentum_buffer"]
    assert back["optimizer"]["state"][0]["momentum_buffer"].equal(momentum)
    np.testing.assert_array_equal(back["weights"], state["weights"])
    assert back["weights"].dtype == np.float64
    assert back["history"] == state["history"] and back["pair"] == (1, "a")
    assert os.listdir(tmp_path) == ["c.pt"]  # no temporary file left behind


def test_overwrite_keeps_one_file_and_the_new_content(tmp_path):
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 2 and os.listdir(tmp_path) == ["c.pt"]


def test_rng_states_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(1)  # noqa: NPY002 - the legacy global generator is what capture_rng saves
    torch.manual_seed(1)
    save_checkpoint(str(tmp_path / "r.pt"), {"rng": capture_rng()})
    expected = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    restore_rng(load_checkpoint(str(tmp_path / "r.pt"))["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


@pytest.mark.parametrize("cut", [1, 100, -1])
def test_truncated_file_is_refused(tmp_path, cut):
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, _state())
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[:cut] if cut > 0 else raw[:len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated|not a minmax checkpoint"):
        load_checkpoint(path)


def test_corrupted_file_is_refused(tmp_path):
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, _state())
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_foreign_and_missing_files_are_refused(tmp_path):
    torch.save({"model": {}}, str(tmp_path / "plain.pt"))
    with pytest.raises(CheckpointError, match="not a minmax checkpoint"):
        load_checkpoint(str(tmp_path / "plain.pt"))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "absent.pt"))


def test_loading_onto_a_device_keeps_numpy_state_on_the_host(tmp_path, device):
    """map_location moves tensors to the device; NumPy state (the RNG's, α) must still come back as NumPy."""
    path = str(tmp_path / "d.pt")
    save_checkpoint(path, {"rng": capture_rng(), "w": np.arange(3.0), "t": torch.ones(2)})
    state = load_checkpoint(path, map_location=device)
    assert state["t"].device.type == device
    np.testing.assert_array_equal(state["w"], np.arange(3.0))
    restore_rng(state["rng"])
