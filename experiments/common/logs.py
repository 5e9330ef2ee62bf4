"""Run logs: per-epoch metrics as JSONL and CSV, per-step records, a human-readable log, and reading back.

The per-epoch history also lives in the checkpoint, and ``metrics.jsonl`` / ``metrics.csv`` are rewritten
from it (atomically) after every epoch: a run killed between writing its logs and its checkpoint, then
resumed, never ends up with a duplicated or missing epoch. ``steps.jsonl`` and ``evals.jsonl`` are
append-only and are cut back to the checkpoint's step on resume.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time

__all__ = ["EVALS_JSONL", "METRICS_CSV", "METRICS_JSONL", "RunLog", "read_evals", "read_metrics",
           "write_atomic"]

METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
STEPS_JSONL = "steps.jsonl"
EVALS_JSONL = "evals.jsonl"
LOG_TXT = "log.txt"


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_value(value):
    # JSON has no NaN/inf; null keeps the file valid for every reader.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """Writes a run's logs into ``run_dir``; every method is a no-op when ``enabled`` is False (ranks > 0)."""

    def __init__(self, run_dir: str, *, enabled: bool = True, echo: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled
        self.echo = echo

    def _path(self, name: str) -> str:
        # created on first write, so a run that fails before starting leaves no empty folder behind
        os.makedirs(self.run_dir, exist_ok=True)
        return os.path.join(self.run_dir, name)

    def info(self, message: str) -> None:
        """Print ``message`` (to stderr, so it does not fight the progress bar) and append it to log.txt."""
        if not self.enabled:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        if self.echo:
            print(line, file=sys.stderr, flush=True)
        with open(self._path(LOG_TXT), "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite metrics.jsonl and metrics.csv from the whole per-epoch ``history``."""
        if not self.enabled:
            return
        rows = [{key: _json_value(value) for key, value in row.items()} for row in history]
        write_atomic(self._path(METRICS_JSONL), "".join(json.dumps(row) + "\n" for row in rows))
        columns: list[str] = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self._path(METRICS_CSV), buffer.getvalue())

    def append_step(self, record: dict, name: str = STEPS_JSONL) -> None:
        """Append one record (a dict with a ``step`` key) to ``steps.jsonl`` or another JSONL log."""
        if not self.enabled:
            return
        with open(self._path(name), "a", encoding="utf-8") as f:
            f.write(json.dumps({key: _json_value(value) for key, value in record.items()}) + "\n")

    def truncate_steps(self, global_step: int, name: str = STEPS_JSONL) -> None:
        """Keep only the records with ``step <= global_step`` of a JSONL log (used on resume)."""
        path = self._path(name)
        if not self.enabled or not os.path.exists(path):
            return
        kept = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    if json.loads(line)["step"] <= global_step:
                        kept.append(line)
                except (ValueError, KeyError):
                    break  # a line cut by the kill: everything after it is newer than the checkpoint
        write_atomic(path, "".join(kept))

    def write_json(self, name: str, obj: dict) -> None:
        if self.enabled:
            write_atomic(self._path(name), json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_metrics(run_dir: str) -> list[dict]:
    """The per-epoch rows of a run (from metrics.jsonl), oldest first.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no metrics.jsonl (the message names the file).
    """
    path = os.path.join(run_dir, METRICS_JSONL)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {METRICS_JSONL} in {run_dir!r}: is it a run directory of "
                                f"experiments.train that finished at least one epoch?")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_evals(run_dir: str) -> list[dict]:
    """The ``--eval-every`` rows of a run (from evals.jsonl), by step; empty if the run wrote none."""
    path = os.path.join(run_dir, EVALS_JSONL)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
