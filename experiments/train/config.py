"""The configuration of a training run: the options of ``python -m experiments.train``, presets, resume rules.

A run is described by one flat configuration dict (saved as ``config.json`` in the run directory and inside
every checkpoint). Presets fill in the options the user did not give; options given explicitly always win.
On ``--resume RUN_DIR`` the configuration comes from the run directory; only the options in
:data:`RESUME_OVERRIDABLE` (where to run, how often to save, how to display) may be changed then.
"""

from __future__ import annotations

import argparse
import json
import os

from experiments.common.data import DATASETS
from experiments.common.options import parse_fraction
from minmax.torch.variants import parse_variant, variant_help

__all__ = ["ADDED_OPTIONS", "PRESETS", "RESUME_OVERRIDABLE", "SCHEDULES", "ConfigError", "build_parser",
           "parse_config", "run_config"]

DESCRIPTION = """\
Adversarial training with Danskin's Descent Direction (DDi) and the paper's baselines.

A first run needs nothing and takes about a minute on a laptop CPU (generated 28x28 images, an MLP, DDi):
  python -m experiments.train --preset quick --out runs/first
The paper's CIFAR10 setting (ResNet18, CELU, GroupNorm, DDi with m = 10):
  python -m experiments.train --preset paper --data-root ~/data --out runs/paper-ddi
Continue an interrupted run exactly where it stopped:
  python -m experiments.train --resume runs/paper-ddi
Several GPUs (one process per GPU, the batch is split across them):
  torchrun --standalone --nproc_per_node 4 -m experiments.train --preset paper --out runs/ddp
"""

EPILOG = """\
variants (--variant), as named in the paper (the table minmax.torch.variants.FAMILIES):
""" + "\n".join("  " + line for line in variant_help().splitlines()) + """

the run directory holds config.json, metrics.jsonl / metrics.csv (one row per epoch), steps.jsonl
(--log-steps), evals.jsonl (--eval-every), log.txt, summary.json and checkpoints/{last,best}.pt. Exit
status: 0 done, 2 bad command line, missing data or unusable checkpoint, 3 non-finite loss (the last good
checkpoint is kept), 143 stopped by SIGTERM (the finished step is checkpointed first; continue with
--resume).
"""

#: Values a preset fills in when the option is not given on the command line.
PRESETS = {
    "paper": dict(dataset="cifar10", net="resnet18", activation="celu", norm="group", variant="ddi-10",
                  epochs=200, batch_size=128, lr=0.1, momentum=0.0, weight_decay=5e-4, eps="8/255",
                  step_size="2/255", steps=7, eval_steps=20),
    "paper-pgd": dict(dataset="cifar10", net="resnet18", activation="celu", norm="group", variant="pgd",
                      epochs=200, batch_size=128, lr=0.1, momentum=0.0, weight_decay=5e-4, eps="8/255",
                      step_size="2/255", steps=7, eval_steps=20),
    "pgd-relu-bn": dict(dataset="cifar10", net="resnet18", activation="relu", norm="batch", variant="pgd",
                        epochs=200, batch_size=128, lr=0.1, momentum=0.0, weight_decay=5e-4, eps="8/255",
                        step_size="2/255", steps=7, eval_steps=20),
    "quick": dict(dataset="generated", generated_size=2000, generated_shape=(1, 28, 28), net="mlp",
                  activation="celu", norm="none", variant="ddi-10", epochs=5, batch_size=128),
}

#: Options added after runs were first saved, with the value that reproduces those runs (a resume of an
#: older run directory or checkpoint takes these).
ADDED_OPTIONS = {"train_size": 0, "max_steps": 0, "eval_every": 0, "schedule": "step", "channels": [32, 64]}

#: Options that may differ from the saved configuration when resuming (they do not change the numbers,
#: except ``device``, which a user may need to change and is warned about).
RESUME_OVERRIDABLE = {"resume", "device", "progress", "checkpoint_every", "threads", "log_steps",
                      "debug_step_delay", "debug_nan_at_step"}

#: Learning-rate schedules (:func:`experiments.train.optim.build_schedule`); "step" is the paper's.
SCHEDULES = ("step", "cosine")

NETS = ("resnet18", "preact-resnet18", "cnn", "mlp")
ACTIVATIONS = ("relu", "celu", "elu", "softplus")
NORMS = ("batch", "group", "none")


class ConfigError(ValueError):
    """The command line or saved configuration is inconsistent; the message says what to change."""


def run_config(config: dict) -> dict:
    """The part of a configuration that determines the numbers (what a resume may not change), JSON-normal."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in RESUME_OVERRIDABLE | {"out"}}))


def _shape(text) -> tuple[int, int, int]:
    try:
        dims = tuple(int(t) for t in str(text).lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 3x32x32 or 1x28x28, got {text!r}")
    return dims


def _int_list(text) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        message = f"expected comma-separated integers like 256,256, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def build_parser(*, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The parser; with ``suppress_defaults`` only options given explicitly appear in the namespace."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.train", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS if suppress_defaults else None)

    def add(group, *flags, default=None, **kwargs):
        if not suppress_defaults:
            kwargs["default"] = default
            flag = kwargs.get("action") in ("store_true", "store_false")
            if default is not None and "help" in kwargs and not flag:
                kwargs["help"] += " (default: %(default)s)"
        group.add_argument(*flags, **kwargs)

    g = parser.add_argument_group("run")
    add(g, "--preset", choices=sorted(PRESETS),
        help="fill in a published setting; options given explicitly override it. paper: CIFAR10, ResNet18 "
             "CELU GroupNorm, ddi-10, 200 epochs; paper-pgd: the same with PGD; pgd-relu-bn: PGD on ResNet18 "
             "ReLU BatchNorm; quick: generated 1x28x28 data, MLP, ddi-10, 5 epochs (a minute on a CPU)")
    add(g, "--out", metavar="RUN_DIR", help="run directory (default: runs/<dataset>-<variant>-<time>)")
    add(g, "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    add(g, "--seed", type=int, default=0, help="seed for initialization, data order and attacks")
    add(g, "--deterministic", action="store_true", default=False,
        help="deterministic kernels (bit-for-bit reproducible and resumable on CPU; slower on GPU)")
    add(g, "--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    add(g, "--amp", choices=("none", "bf16", "fp16"), default="none",
        help="mixed precision for forward passes (the Gram matrix and QP stay float64)")
    add(g, "--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    add(g, "--checkpoint-every", type=int, default=100, metavar="STEPS",
        help="also save the last checkpoint every STEPS optimizer steps inside an epoch (0: epoch ends only)")
    add(g, "--no-progress", dest="progress", action="store_false", default=True, help="no progress bars")
    add(g, "--log-steps", action="store_true", default=False,
        help="write one line per optimizer step to steps.jsonl (loss, gap, slope, negative inner products)")

    g = parser.add_argument_group("data")
    add(g, "--dataset", choices=DATASETS, default="generated",
        help="generated needs no files; cifar10 reads DATA_ROOT/cifar-10-batches-py; fashion-mnist reads "
             "the idx files (default folder /usr/share/datasets/fashion-mnist)")
    add(g, "--data-root", help="folder holding the dataset (cifar10 default: ./data)")
    add(g, "--download", action="store_true", default=False, help="download CIFAR10 if it is missing")
    add(g, "--generated-size", type=int, default=6000, help="training examples of the generated dataset")
    add(g, "--generated-shape", type=_shape, default="3x32x32", metavar="CxHxW",
        help="image shape of the generated dataset")
    add(g, "--data-seed", type=int, default=0, help="seed of the generated dataset and validation split")
    add(g, "--val-size", type=int, default=1000,
        help="training examples held out for validation (capped at 10%% of the training set)")
    add(g, "--train-size", type=int, default=0, metavar="N",
        help="train on a fixed random subset of N examples of the training split, the same for every "
             "--seed and --variant (drawn with --data-seed; 0: all)")
    add(g, "--augment", choices=("auto", "none", "crop-flip"), default="auto",
        help="training augmentation (auto: crop-flip for cifar10, none otherwise)")

    g = parser.add_argument_group("model")
    add(g, "--net", choices=NETS, default="cnn", help="architecture")
    add(g, "--activation", choices=ACTIVATIONS, default="relu", help="activation function")
    add(g, "--norm", choices=NORMS, default="batch", help="normalization layers (group: 8 groups)")
    add(g, "--hidden", type=_int_list, default="256,256", metavar="W1,W2,...", help="hidden widths of mlp")
    add(g, "--channels", type=_int_list, default="32,64", metavar="C1,C2",
        help="channels of the two convolutions of cnn")

    g = parser.add_argument_group("training (the paper's values are the defaults)")
    add(g, "--variant", default="ddi-10", help="training method, see the list below")
    add(g, "--epochs", type=int, default=200, help="epochs")
    add(g, "--max-steps", type=int, default=0, metavar="N",
        help="stop after N optimizer steps (0: epochs x steps per epoch); the run then lasts "
             "ceil(N / steps per epoch) epochs, over which --lr-milestones are laid out")
    add(g, "--batch-size", type=int, default=128, help="global batch size (split across processes)")
    add(g, "--lr", type=float, default=0.1, help="SGD learning rate")
    add(g, "--momentum", type=float, default=0.0, help="SGD momentum")
    add(g, "--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    add(g, "--schedule", choices=SCHEDULES, default="step",
        help="learning-rate schedule: step (x --lr-gamma after the --lr-milestones epochs, the paper's) or "
             "cosine (annealed from --lr to 0 over the run's optimizer steps)")
    add(g, "--lr-milestones", type=str, default="0.5,0.75", metavar="F1,F2",
        help="step schedule: fractions of the epochs after which the learning rate is scaled by --lr-gamma")
    add(g, "--lr-gamma", type=float, default=0.1, help="step schedule: the learning-rate decay factor")
    add(g, "--eps", type=parse_fraction, default="8/255", help="l-inf (or l2) radius ε in pixel units")
    add(g, "--step-size", type=parse_fraction, default="2/255", help="PGD step size")
    add(g, "--steps", type=int, default=7, help="PGD steps K of the training attack")
    add(g, "--threat", choices=("linf", "l2"), default="linf", help="threat model")
    add(g, "--strategy", choices=("auto", "loop", "func"), default="auto",
        help="how the m parameter gradients are computed (auto: per device)")
    add(g, "--no-normalize", dest="normalize", action="store_false", default=True,
        help="do not scale the Danskin direction to unit norm (the paper normalizes)")

    g = parser.add_argument_group("evaluation (every epoch, on validation and test)")
    add(g, "--eval-every", type=int, default=0, metavar="STEPS",
        help="also evaluate the test split (--eval-examples, the same examples and random starts each time) "
             "every STEPS optimizer steps, at step 0 and at the last step, into evals.jsonl with the "
             "training wall-clock and CPU time (evaluation excluded); 0: only per epoch")
    add(g, "--eval-steps", type=int, default=20, help="PGD steps of the evaluation attack")
    add(g, "--eval-step-size", type=parse_fraction, default="2/255", help="its step size")
    add(g, "--eval-restarts", type=int, default=1, help="its random restarts (worst case per example)")
    add(g, "--eval-examples", type=int, default=1000,
        help="examples of each split evaluated per epoch (0: all)")
    add(g, "--final-eval-examples", type=int, default=0,
        help="test examples for the final evaluation of the best and last models (0: all)")
    add(g, "--eval-batch-size", type=int, default=256, help="evaluation batch size")

    g = parser.add_argument_group("testing hooks (for the test suite; do not use for experiments)")
    add(g, "--debug-nan-at-step", type=int, default=0, metavar="N",
        help="make the training loss non-finite at optimizer step N (tests the non-finite-loss exit)")
    add(g, "--debug-step-delay", type=float, default=0.0, metavar="SECONDS",
        help="sleep after every step (gives kill-and-resume tests time to interrupt)")
    return parser


def _validate(config: dict) -> None:
    try:
        parse_variant(config["variant"])
    except ValueError as exc:
        raise ConfigError(f"--variant {config['variant']!r}: {exc}") from None
    positive = {"eps": "ε", "step_size": "the PGD step size", "eval_step_size": "the evaluation step size",
                "lr": "the learning rate", "steps": "PGD steps", "epochs": "epochs",
                "batch_size": "batch size",
                "eval_steps": "evaluation steps", "eval_restarts": "evaluation restarts",
                "eval_batch_size": "evaluation batch size", "generated_size": "generated-size"}
    for key, what in positive.items():
        if not config[key] > 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be > 0 ({what}), got {config[key]}")
    for key in ("momentum", "weight_decay", "val_size", "eval_examples", "final_eval_examples",
                "checkpoint_every", "threads", "debug_nan_at_step", "debug_step_delay", "train_size",
                "max_steps", "eval_every"):
        if config[key] < 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 0, got {config[key]}")
    milestones = config["lr_milestones"]
    if not all(0 < f <= 1 for f in milestones) or list(milestones) != sorted(milestones):
        raise ConfigError(f"--lr-milestones must be increasing fractions in (0, 1], got {milestones}")


def parse_config(argv=None) -> dict:
    """Parse ``argv`` into a validated configuration dict (exits with status 2 and a message on error).

    With ``--resume RUN_DIR`` the configuration is read from ``RUN_DIR/config.json``, and options given
    on the command line must either be in :data:`RESUME_OVERRIDABLE` or equal the saved values.
    """
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    explicit = vars(build_parser(suppress_defaults=True).parse_args(argv))
    try:
        args["lr_milestones"] = tuple(float(t) for t in str(args["lr_milestones"]).split(",") if t.strip())
    except ValueError:
        parser.error(f"--lr-milestones: expected fractions like 0.5,0.75, got {args['lr_milestones']!r}")
    if args["resume"]:
        return _resume_config(parser, args, explicit)
    if args["preset"]:
        for key, value in PRESETS[args["preset"]].items():
            if key not in explicit:
                args[key] = value
    for key in ("eps", "step_size", "eval_step_size"):
        args[key] = parse_fraction(args[key])
    args["generated_shape"] = tuple(args["generated_shape"])
    args["hidden"], args["channels"] = tuple(args["hidden"]), tuple(args["channels"])
    try:
        _validate(args)
    except ConfigError as exc:
        parser.error(str(exc))
    return args


def _resume_config(parser, args: dict, explicit: dict) -> dict:
    path = os.path.join(args["resume"], "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)["config"]
    except FileNotFoundError:
        parser.error(f"--resume {args['resume']!r}: no config.json there (is it a run directory?)")
    except (ValueError, KeyError, TypeError) as exc:
        parser.error(f"--resume: {path!r} is not a valid run configuration: {exc}")
    for key, value in explicit.items():
        if key in RESUME_OVERRIDABLE:
            continue
        if key in ("eps", "step_size", "eval_step_size"):
            value = parse_fraction(value)
        if key == "lr_milestones":
            value = args[key]
        if json.loads(json.dumps(value)) != saved.get(key, ADDED_OPTIONS.get(key)):
            parser.error(f"--{key.replace('_', '-')} cannot change on resume (the run was started with "
                         f"{saved.get(key)!r}); start a new run with --out instead")
    config = {**ADDED_OPTIONS, **saved}
    for key in RESUME_OVERRIDABLE:
        config[key] = args[key]
    for key in ("generated_shape", "hidden", "channels", "lr_milestones"):
        config[key] = tuple(config[key])
    return config
