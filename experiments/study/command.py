"""``python -m experiments.study CONFIG --out OUT``: run a study's variants × seeds, then aggregate them."""

from __future__ import annotations

import argparse
import json
import os
import sys

from experiments.common.logs import write_atomic
from experiments.study.aggregate import aggregate
from experiments.study.config import PRESETS, StudyError, load_config
from experiments.study.report import markdown, plot
from experiments.study.runs import plan, run_all

EXAMPLE = """\
example (the study of docs/tutorials/study.rst, about an hour on two CPU cores):
  python -m experiments.study fashion-mnist-cpu --out results/fm-study --jobs 2
CONFIG is a preset or a JSON file {"name": ..., "variants": [...], "seeds": [...], "train_args": [...]};
train_args are experiments.train options shared by every run and must include --eval-every.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.study", epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Run a study's variants x seeds of experiments.train "
                                     "with one budget, then aggregate them (see experiments.study).")
    parser.add_argument("config", help=f"a preset ({', '.join(sorted(PRESETS))}) or a JSON file")
    parser.add_argument("--out", required=True,
                        help="study directory (runs/, study.json, study.md, study.png)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--threads", type=int, default=1, help="threads per run (default: 1)")
    parser.add_argument("--aggregate-only", action="store_true", help="do not train; aggregate what exists")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be >= 1")
    try:
        config = load_config(args.config)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    saved = os.path.join(args.out, "study-config.json")
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            before = json.load(f)
        if before != json.loads(json.dumps(config.to_json())):
            print(f"error: {args.out!r} holds another study ({before.get('name')!r}); choose another --out",
                  file=sys.stderr)
            return 2
    write_atomic(saved, json.dumps(config.to_json(), indent=2) + "\n")
    runs = plan(config, args.out)
    failed = {} if args.aggregate_only else run_all(runs, jobs=args.jobs, threads=args.threads,
                                                   progress=args.progress)
    study = aggregate(runs, reference=config.variants[0])
    write_atomic(os.path.join(args.out, "study.json"), json.dumps(study, indent=2, default=str) + "\n")
    write_atomic(os.path.join(args.out, "study.md"), markdown(study, config.to_json()))
    plot(study, os.path.join(args.out, "study.png"))
    print(markdown(study, config.to_json()))
    for run_dir, code in failed.items():
        print(f"error: {run_dir} exited with status {code} (see {run_dir}/train.out)", file=sys.stderr)
    return 1 if failed else 0
