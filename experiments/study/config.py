"""A study's configuration: variants, seeds and the shared ``experiments.train`` options; presets."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

__all__ = ["PRESETS", "StudyConfig", "StudyError", "load_config"]

#: Options a study sets per run; the shared options may not contain them.
PER_RUN = ("--variant", "--seed", "--out", "--resume")


class StudyError(ValueError):
    """The study configuration is unusable; the message says what to change."""


@dataclass(frozen=True)
class StudyConfig:
    """``variants`` × ``seeds`` runs of ``python -m experiments.train TRAIN_ARGS --variant V --seed S``.

    The first variant is the reference of the paired differences in ``study.md``.
    """

    name: str
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    train_args: tuple[str, ...]

    def __post_init__(self):
        from minmax.torch.variants import parse_variant

        if not self.variants or not self.seeds:
            raise StudyError("a study needs at least one variant and one seed")
        if len(set(self.variants)) != len(self.variants) or len(set(self.seeds)) != len(self.seeds):
            raise StudyError(f"variants and seeds must be distinct, got {self.variants} and {self.seeds}")
        for variant in self.variants:
            try:
                parse_variant(variant)
            except ValueError as exc:
                raise StudyError(f"variant {variant!r}: {exc}") from None
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise StudyError(f"seeds must be non-negative integers, got {self.seeds}")
        for arg in self.train_args:
            if not isinstance(arg, str):
                raise StudyError(f"train_args must be strings, got {arg!r}")
            if arg.split("=")[0] in PER_RUN:
                raise StudyError(f"train_args may not contain {arg.split('=')[0]}: the study sets it per run")
        if "--eval-every" not in " ".join(self.train_args):
            raise StudyError("train_args must set --eval-every (the curves come from evals.jsonl)")

    def run_dir(self, out: str, variant: str, seed: int) -> str:
        return os.path.join(out, "runs", variant.replace("/", ""), f"seed-{seed}")

    def train_argv(self, out: str, variant: str, seed: int) -> list[str]:
        return [*self.train_args, "--variant", variant, "--seed", str(seed),
                "--out", self.run_dir(out, variant, seed)]

    def to_json(self) -> dict:
        return asdict(self)


_FASHION_CPU = (
    "--dataset", "fashion-mnist", "--net", "cnn", "--channels", "16,32", "--activation", "celu",
    "--norm", "group", "--momentum", "0", "--batch-size", "64", "--lr", "0.1", "--weight-decay", "5e-4",
    "--eps", "0.1", "--step-size", "0.03", "--steps", "5", "--train-size", "10000", "--val-size", "0",
    "--max-steps", "150", "--eval-every", "25", "--eval-examples", "500", "--eval-step-size", "0.01",
    "--eval-steps", "20", "--final-eval-examples", "1000", "--threads", "1", "--no-progress",
    "--checkpoint-every", "25")

#: Studies the project ran, both in docs/tutorials/study.rst (two CPU cores). ``fashion-mnist-cpu``
#: compares the paper's variants; ``fashion-mnist-cpu-unnormalized`` repeats ddi-10 stepping along
#: ``-M alpha*`` instead of the unit direction, to separate DDi's direction from its step length.
PRESETS = {
    "fashion-mnist-cpu": StudyConfig("fashion-mnist-cpu", ("pgd", "pgd-max-10", "ddi-10", "ddi-comb-10"),
                                     (0, 1, 2), _FASHION_CPU),
    "fashion-mnist-cpu-unnormalized": StudyConfig("fashion-mnist-cpu-unnormalized", ("ddi-10",), (0, 1, 2),
                                                  (*_FASHION_CPU, "--no-normalize")),
}


def load_config(source: str) -> StudyConfig:
    """A preset name or a JSON file ``{"name", "variants", "seeds", "train_args"}``."""
    if source in PRESETS:
        return PRESETS[source]
    if not os.path.isfile(source):
        raise StudyError(f"{source!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a JSON file")
    try:
        with open(source, encoding="utf-8") as f:
            raw = json.load(f)
        return StudyConfig(name=str(raw.get("name", os.path.splitext(os.path.basename(source))[0])),
                           variants=tuple(raw["variants"]), seeds=tuple(raw["seeds"]),
                           train_args=tuple(raw["train_args"]))
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, StudyError):
            raise
        raise StudyError(f"{source!r} is not a study configuration (needs variants, seeds, train_args): "
                         f"{exc}") from None
