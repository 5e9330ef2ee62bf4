"""Launch a study's runs as ``experiments.train`` processes, a few at a time, keeping finished ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from experiments.study.config import StudyConfig

__all__ = ["Run", "plan", "run_all"]


@dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    run_dir: str
    argv: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return os.path.exists(os.path.join(self.run_dir, "summary.json"))

    @property
    def started(self) -> bool:
        return os.path.exists(os.path.join(self.run_dir, "config.json"))

    def command(self) -> list[str]:
        """A new run, or ``--resume`` of one that was interrupted (it continues exactly)."""
        tail = ["--resume", self.run_dir] if self.started else list(self.argv)
        return [sys.executable, "-m", "experiments.train", *tail]


def plan(config: StudyConfig, out: str) -> list[Run]:
    """All runs, seed by seed (so that a study cut short has every variant for its first seeds)."""
    return [Run(v, s, config.run_dir(out, v, s), tuple(config.train_argv(out, v, s)))
            for s in config.seeds for v in config.variants]


def run_all(runs: list[Run], *, jobs: int = 1, threads: int = 1, progress: bool = True) -> dict[str, int]:
    """Run the unfinished runs, ``jobs`` processes at once, each with ``threads`` BLAS/OpenMP threads.

    Returns the exit status of each run that failed, by run directory (empty when every run finished).
    A run's output goes to ``<run_dir>/train.out``.
    """
    from tqdm.auto import tqdm

    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs and threads must be >= 1, got {jobs} and {threads}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    todo = [r for r in runs if not r.complete]
    failed, active = {}, []
    with tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc="study",
              disable=not progress, file=sys.stderr) as bar:
        while todo or active:
            while todo and len(active) < jobs:
                run = todo.pop(0)
                os.makedirs(run.run_dir, exist_ok=True)
                log = open(os.path.join(run.run_dir, "train.out"), "a", encoding="utf-8")
                active.append((run, subprocess.Popen(run.command(), env=env, stdout=log,
                                                     stderr=subprocess.STDOUT), log))
            time.sleep(0.2)
            for item in list(active):
                run, proc, log = item
                if proc.poll() is None:
                    continue
                log.close()
                active.remove(item)
                if proc.returncode != 0:
                    failed[run.run_dir] = proc.returncode
                bar.update(1)
                bar.set_postfix_str(f"{run.variant} seed {run.seed}: exit {proc.returncode}")
    return failed
