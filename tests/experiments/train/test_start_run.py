"""Claiming the run directory: every rank checks it is free before rank 0 writes config.json.

Without the barrier between the check and the write, a rank that reached the check after rank 0 had written
refused its own run ("already holds a run"): the two-process torchrun test failed about once in six runs on
a loaded 2-core machine. Here rank 1 is made slow on purpose, so the order that failed is the order tested.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from experiments.train.config import ConfigError
from experiments.train.setup import start_run


def _write(run_dir):
    def write():
        with open(os.path.join(run_dir, "config.json"), "x") as f:  # "x": a second write fails loudly
            json.dump({"config": {}}, f)

    return write


def _worker(rank, port, run_dir, delays):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=len(delays))
    try:
        time.sleep(delays[rank])
        try:
            start_run(run_dir, is_main=rank == 0, world=len(delays), write=_write(run_dir))
            outcome = "started"
        except ConfigError as exc:
            outcome = f"refused: {exc}"
        with open(os.path.join(run_dir, f"rank{rank}.txt"), "w") as f:
            f.write(outcome)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(run_dir, delays):
    method = "spawn" if torch.cuda.is_initialized() else "fork"  # as tests/torch/test_distributed.py
    mp.start_processes(_worker, args=(_free_port(), str(run_dir), delays), nprocs=len(delays), join=True,
                       start_method=method)
    return [(run_dir / f"rank{r}.txt").read_text() for r in range(len(delays))]


@pytest.mark.parametrize("delays", [(0.0, 1.0), (1.0, 0.0)], ids=["rank 1 late", "rank 0 late"])
def test_every_rank_starts_the_run_whichever_reaches_the_check_last(tmp_path, delays):
    assert _two_ranks(tmp_path, delays) == ["started", "started"]
    assert json.loads((tmp_path / "config.json").read_text()) == {"config": {}}  # written once, by rank 0


def test_every_rank_refuses_a_directory_that_holds_a_run(tmp_path):
    _write(str(tmp_path))()
    outcomes = _two_ranks(tmp_path, (0.0, 0.0))  # no rank waits in the barrier for one that refused
    assert all(o.startswith("refused:") and "already holds a run" in o for o in outcomes), outcomes


def test_one_process_writes_once_and_refuses_a_second_start(tmp_path):
    calls = []
    start_run(str(tmp_path), is_main=True, world=1, write=lambda: (calls.append(1), _write(str(tmp_path))()))
    assert calls == [1] and (tmp_path / "config.json").exists()
    with pytest.raises(ConfigError, match="already holds a run; continue it with --resume"):
        start_run(str(tmp_path), is_main=True, world=1, write=lambda: calls.append(2))
    assert calls == [1]
