"""``make demo`` can run again: its training step never collides with an earlier demo's run."""

from __future__ import annotations

from experiments.demo import fresh_run_dir


def test_a_second_demo_trains_beside_the_first(tmp_path):
    first = fresh_run_dir(tmp_path / "train")
    assert first == tmp_path / "train"
    first.mkdir()
    second = fresh_run_dir(tmp_path / "train")
    assert second == tmp_path / "train-2"
    second.mkdir()
    assert fresh_run_dir(tmp_path / "train") == tmp_path / "train-3"
