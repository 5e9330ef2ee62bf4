r"""``python -m experiments.evaluate CHECKPOINT``: the robustness evaluation reviewers ask for, with a report.

PGD-20 during training is a progress signal; a robustness claim needs a strong, standard attack. For any
checkpoint of ``experiments.train`` (``best.pt`` or ``last.pt``) this measures, on the first
``--n-examples`` examples of the run's test split:

- clean accuracy;
- PGD-K with R nested restarts (per-sample worst case), with the cross-entropy and the Carlini-Wagner
  margin loss (:func:`experiments.robustness.cw_margin_loss`);
- AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square; Croce and Hein, 2020), l∞ or l2, through
  the optional package ``pyautoattack`` (``pip install 'minmax[autoattack]'``);
- three checks against gradient masking, reported as warnings (see Notes).

It writes ``CHECKPOINT_STEM.robustness-NORM.json`` (RobustBench-style) and ``.md`` beside the checkpoint
(see :mod:`experiments.report`) and prints the Markdown table. Long evaluations are resumable: finished
batches are saved atomically, and rerunning the same command skips them.

Notes
-----
The checks (Carlini et al., "On evaluating adversarial robustness", 2019):

1. **More steps and restarts must not raise robust accuracy.** A weaker PGD (K/5 steps, one restart, its
   own random start) runs beside the main PGD-K×R (cross-entropy); if the stronger attack reports the
   higher accuracy, or more than 1% of the examples (and more than one) fall to the weaker attack only,
   the attack is not converging. The accuracy after each restart is also reported; a last restart that
   still removes more than 1% of the examples (and more than one) means R is too small.
2. **A large ε must break everything.** PGD at ε = 0.5 (l∞; every image is within 0.5 of the uniform grey
   image) or ε = 0.5·√n (l2, whose ball holds that cube) must bring the accuracy to at most 1%.
3. **A black-box attack must not beat the white-box ones.** A score-based random search
   (:class:`experiments.blackbox.RandomSearch`, which never uses a gradient) must not reach a lower
   accuracy than the white-box attacks together, nor break more than 1% of the examples (and more than
   one) that they all missed.

AutoAttack's own checks (randomized defense, zero gradients, Square beating APGD) are added to the
warnings. Any warning marks the report ``"unreliable": true``.

References
----------
.. [1] Croce, Hein. "Reliable evaluation of adversarial robustness with an ensemble of diverse
   parameter-free attacks." ICML 2020.
.. [2] Croce, Andriushchenko, Sehwag, Debenedetti, Flammarion, Chiang, Mittal, Hein. "RobustBench: a
   standardized adversarial robustness benchmark." NeurIPS Datasets and Benchmarks 2021.
.. [3] Carlini, Athalye, Papernot, Brendel, Rauber, Tsipras, Goodfellow, Madry, Kurakin. "On evaluating
   adversarial robustness." arXiv:1902.06705, 2019.
.. [4] Carlini, Wagner. "Towards evaluating the robustness of neural networks." IEEE S&P 2017.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from experiments import report as R
from experiments import robustness as A

__all__ = ["ATTACKS", "build_parser", "main", "run_attacks"]

ATTACKS = ("pgd-ce", "pgd-cw", "autoattack", "pgd-weak", "large-eps", "blackbox")
CHECKS = ("pgd-weak", "large-eps", "blackbox")
_IDS = {name: i + 1 for i, name in enumerate(ATTACKS)}  # seed streams: one per attack
DEFAULT_EPS = {"linf": 8 / 255, "l2": 0.5}  # RobustBench's CIFAR10 threat models
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

DESCRIPTION = """\
Measure the robustness of a checkpoint of experiments.train the way reviewers expect: clean accuracy,
PGD-K with R restarts (cross-entropy and CW margin losses, worst case per example), AutoAttack (standard
version, needs pip install 'minmax[autoattack]'), and three checks against gradient masking (a weaker vs
the stronger PGD, a large eps, a black-box random search). Writes a RobustBench-style JSON report and a
Markdown table beside the checkpoint; an interrupted evaluation continues where it stopped when rerun.
"""

EPILOG = """\
attacks (--attacks, comma-separated): pgd-ce, pgd-cw, autoattack, and the checks pgd-weak, large-eps,
blackbox ("checks" names all three; "all" everything). Default: all.

examples:
  python -m experiments.evaluate runs/paper-ddi/checkpoints/best.pt
  python -m experiments.evaluate runs/paper-ddi/checkpoints/last.pt --n-examples 10000 --device cuda
  python -m experiments.evaluate best.pt --norm l2 --eps 0.5 --attacks pgd-ce,pgd-cw,checks

exit status: 0 done (warnings included), 2 bad command line, unusable checkpoint, missing data or missing
pyautoattack, 130 interrupted (rerun the same command to continue).
"""


def _fraction(text):
    from experiments.common.options import parse_fraction

    return parse_fraction(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", epilog=EPILOG,
                                     description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("checkpoint", metavar="CHECKPOINT", help="best.pt or last.pt written by experiments.train")
    add("--n-examples", type=int, default=1000, metavar="N",
        help="first N examples of the split (0: all; RobustBench uses all 10000 of CIFAR10) (default: 1000)")
    add("--split", choices=("test", "val"), default="test", help="which split of the run (default: test)")
    add("--data-root", help="dataset folder, if not where the run found it")
    add("--batch-size", type=int, default=256, metavar="B", help="evaluation batch size (default: 256)")
    add("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    add("--norm", choices=("linf", "l2"), help="threat model (default: the run's)")
    add("--eps", type=_fraction, help="radius, e.g. 8/255 (default: the run's for its norm, else 8/255 in "
                                      "linf and 0.5 in l2)")
    add("--steps", type=int, default=50, metavar="K", help="PGD steps K (default: 50)")
    add("--restarts", type=int, default=5, metavar="R",
        help="PGD random restarts R, worst case per example (default: 5)")
    add("--step-size", type=_fraction, help="PGD step size (default: eps/4)")
    add("--attacks", default="all", metavar="LIST", help="what to run, see below (default: all)")
    add("--blackbox-queries", type=int, default=1000, metavar="Q",
        help="queries of the black-box check (default: 1000)")
    add("--seed", type=int, default=0, help="seed of every attack's random choices (default: 0)")
    add("--out", metavar="REPORT.json",
        help="report path (default: CHECKPOINT_STEM.robustness-NORM.json beside the checkpoint; the Markdown "
             "goes beside it as .md)")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _parse_attacks(parser, text: str) -> tuple[str, ...]:
    chosen = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        names = ATTACKS if item == "all" else CHECKS if item == "checks" else (item,)
        for name in names:
            if name not in ATTACKS:
                parser.error(f"--attacks: unknown attack {item!r}; expected names from {', '.join(ATTACKS)}, "
                             f"'checks' or 'all'")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        parser.error("--attacks: nothing to run")
    return tuple(a for a in ATTACKS if a in chosen)


def _settings(args, attacks, input_shape) -> dict:
    K, alpha = args.steps, args.step_size
    pgd = {"eps": args.eps, "norm": args.norm, "steps": K, "restarts": args.restarts, "step_size": alpha}
    big = A.large_eps(args.norm, input_shape)
    table = {"pgd-ce": {**pgd, "loss": "cross-entropy"}, "pgd-cw": {**pgd, "loss": "cw-margin"},
             "autoattack": {"eps": args.eps, "norm": args.norm, "version": "standard"},
             "pgd-weak": {**pgd, "steps": max(1, K // 5), "restarts": 1, "loss": "cross-entropy"},
             "large-eps": {**pgd, "eps": big, "restarts": 1, "step_size": 2.5 * big / K,
                           "loss": "cross-entropy"},
             "blackbox": {"eps": args.eps, "norm": args.norm, "queries": args.blackbox_queries}}
    return {"clean": {}, **{name: table[name] for name in attacks}}


def _evaluate_batch(model, x, y, settings: dict, seed: int, b: int, *, status=None) -> dict:
    from experiments.common.seeds import derive_seed

    record, messages = {}, []
    with torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    record["clean"] = correct
    for name, s in settings.items():
        if status is not None:
            status(name)
        start = time.perf_counter()
        seeds = [derive_seed(seed, b, _IDS.get(name, 0), r) for r in range(s.get("restarts", 1))]
        if name.startswith("pgd-") or name == "large-eps":
            loss = A.cw_margin_loss if s["loss"] == "cw-margin" else "ce"
            record[name], counts = A.pgd_robust(model, x, y, correct, eps=s["eps"], alpha=s["step_size"],
                                                steps=s["steps"], norm=s["norm"], loss=loss,
                                                restarts=s["restarts"], seeds=seeds)
            record[name + ":restarts"] = counts
        elif name == "autoattack":
            record[name], found = A.autoattack_robust(model, x, y, correct, eps=s["eps"], norm=s["norm"],
                                                      seed=seeds[0])
            messages += found
        elif name == "blackbox":
            record[name] = A.random_search_robust(model, x, y, correct, eps=s["eps"], norm=s["norm"],
                                                  queries=s["queries"], seed=seeds[0])
        record["time:" + name] = time.perf_counter() - start
    encoded = {k: "".join("1" if v else "0" for v in t.tolist()) if isinstance(t, torch.Tensor) else t
               for k, t in record.items()}
    encoded["messages"] = messages
    return encoded


def run_attacks(model, data, settings: dict, *, n: int, batch_size: int, seed: int, partial=None,
                progress: bool = False) -> tuple[dict, dict, list[str]]:
    """Run the attacks of ``settings`` on the first ``n`` examples of ``data``; summarize and check them.

    Parameters
    ----------
    model : torch.nn.Module
        On the device the batches should go to (its first parameter's; CPU if it has none). Put in eval mode
        for the evaluation, its mode restored after.
    data : experiments.common.data.ImageSet
        The split.
    settings : dict
        ``{"clean": {}, name: {...}}`` for names in :data:`ATTACKS`, as in the report's ``results``.
    n, batch_size, seed : int
        Examples, batch size, seed (batch ``b``, attack ``a``, restart ``r`` use
        ``derive_seed(seed, b, a, r)``).
    partial : experiments.report.Partial or None
        Where finished batches are saved and found again (None: kept in memory only).
    progress : bool
        Show a tqdm progress bar with the running accuracies.

    Returns
    -------
    results, checks : dict
        As in the report (:func:`experiments.report.summarize`,
        :func:`experiments.report.checks_and_warnings`).
    warnings : list of str

    Raises
    ------
    ValueError
        If ``n`` is not between 1 and ``len(data)``.
    AutoAttackUnavailable
        If ``settings`` names AutoAttack and ``pyautoattack`` is not installed.
    """
    from tqdm.auto import tqdm

    if not 0 < n <= len(data):
        raise ValueError(f"cannot evaluate {n} examples of a split of {len(data)}")
    partial = partial if partial is not None else R.Partial(None, {})
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()  # the attacks do this themselves; the clean pass and AutoAttack need it too
    try:
        with tqdm(total=n, unit="ex", desc="evaluate", disable=not progress, dynamic_ncols=True) as bar:
            for b, start in enumerate(range(0, n, batch_size)):
                stop = min(start + batch_size, n)
                if not partial.done(b):
                    x, y = data.batch(range(start, stop), device)
                    status = (lambda name: bar.set_description(f"evaluate: {name}")) if progress else None
                    partial.save(b, _evaluate_batch(model, x, y, settings, seed, b, status=status))
                bar.update(stop - start)
                if progress:
                    running, _ = R.summarize(partial, settings)
                    shown = [k for k in ("clean", "pgd", "pgd-ce", "pgd-cw", "autoattack") if k in running
                             and not (k.startswith("pgd-") and "pgd" in running)]
                    bar.set_postfix({k: f"{100 * running[k]['robust_acc']:.1f}%" for k in shown})
    finally:
        model.train(was_training)
    results, flags = R.summarize(partial, settings)
    for name in settings:
        results[name]["seconds"] = sum(r.get("time:" + name, 0.0) for r in partial.batches.values())
    messages = [m for r in partial.batches.values() for m in r.get("messages", [])]
    checks, warnings = R.checks_and_warnings(results, flags, messages)
    return results, checks, warnings


def _training_info(state: dict, config: dict, path: str) -> dict:
    history = state.get("history") or []
    last = history[-1] if history else {}
    return {"variant": config.get("variant"), "epochs": config.get("epochs"),
            "epochs_completed": state.get("progress", {}).get("epoch"),
            "checkpoint": os.path.splitext(os.path.basename(path))[0],
            "best_epoch": (state.get("best") or {}).get("epoch"), "seed": config.get("seed"),
            "train_eps": config.get("eps"), "train_threat": config.get("threat"),
            "train_steps": config.get("steps"),
            "training_eval": {k: last.get(k) for k in ("epoch", "test_clean_acc", "test_robust_acc",
                                                      "val_robust_acc") if k in last},
            "training_eval_attack": f"PGD-{config.get('eval_steps')} x {config.get('eval_restarts')}"}


def _architecture(config: dict) -> str:
    net = config.get("net", "?")
    if net == "mlp":
        net += " " + "-".join(str(h) for h in config.get("hidden", ()))
    norm = "no" if config.get("norm") == "none" else config.get("norm")
    return f"{net} ({config.get('activation')}, {norm} norm)"


def main(argv=None) -> int:
    """Run the command line; return the exit status (see ``--help``)."""
    from experiments.common.checkpoints import CheckpointError, load_checkpoint
    from experiments.common.data import DataError
    from experiments.train.model import restore_model

    parser = build_parser()
    args = parser.parse_args(argv)
    attacks = _parse_attacks(parser, args.attacks)
    for flag, value, low in (("--n-examples", args.n_examples, 0), ("--batch-size", args.batch_size, 1),
                             ("--steps", args.steps, 1), ("--restarts", args.restarts, 1),
                             ("--blackbox-queries", args.blackbox_queries, 1)):
        if value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    for flag, value in (("--eps", args.eps), ("--step-size", args.step_size)):
        if value is not None and not value > 0:
            parser.error(f"{flag} must be > 0, got {value}")
    try:
        if "autoattack" in attacks:
            A.load_autoattack()  # before minutes of PGD, not after
        device = torch.device(args.device if args.device != "auto"
                              else "cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
        state = load_checkpoint(args.checkpoint)
        model, config, splits = restore_model(args.checkpoint, device=device, data_root=args.data_root)
    except (CheckpointError, DataError, A.AutoAttackUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.norm is None:
        args.norm = config["threat"]
    if args.eps is None:
        args.eps = config["eps"] if args.norm == config["threat"] else DEFAULT_EPS[args.norm]
    args.step_size = args.step_size or args.eps / 4
    data = splits[args.split]
    n = len(data) if args.n_examples == 0 else min(args.n_examples, len(data))
    if n == 0:
        print(f"error: the {args.split} split of this run is empty", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(args, attacks, data.input_shape)
    out = args.out or f"{os.path.splitext(args.checkpoint)[0]}.robustness-{args.norm}.json"
    key = {"checkpoint_sha256": R.file_sha256(args.checkpoint), "split": args.split, "n": n,
           "batch_size": args.batch_size, "seed": args.seed, "device": device.type, "settings": settings}
    partial = R.Partial(out + ".partial", key)
    if partial.resumed:
        print(f"resuming: {len(partial.batches)} batches already done in {partial.path}", file=sys.stderr)
    started = time.perf_counter()
    try:
        results, checks, warnings = run_attacks(model, data, settings, n=n, batch_size=args.batch_size,
                                                seed=args.seed, partial=partial, progress=args.progress)
    except A.AutoAttackUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"interrupted after {len(partial.batches)} of {-(-n // args.batch_size)} batches; rerun the "
              f"same command to continue ({partial.path})", file=sys.stderr)
        return EXIT_INTERRUPTED

    def acc(name):
        return results[name]["robust_acc"] if name in results else None

    report = {
        "format": R.FORMAT, "dataset": config["dataset"],
        "threat_model": {"linf": "Linf", "l2": "L2"}[args.norm],
        "eps": R.eps_text(args.eps), "architecture": _architecture(config),
        "clean_acc": R.percent(acc("clean")), "autoattack_acc": R.percent(acc("autoattack")),
        "pgd_acc": R.percent(next((acc(k) for k in ("pgd", "pgd-ce", "pgd-cw") if k in results), None)),
        "robust_acc": R.percent(acc("worst-case")), "additional_data": False, "number_forward_passes": 1,
        "unreliable": bool(warnings), "warnings": warnings, "results": results, "checks": checks,
        "training": _training_info(state, config, args.checkpoint),
        "evaluation": {"n_examples": n, "split": args.split, "seed": args.seed, "batch_size": args.batch_size,
                       "eps": args.eps, "norm": args.norm, "device": str(device), "attacks": list(attacks),
                       "resumed": partial.resumed, "wall_time_s": time.perf_counter() - started},
        "checkpoint": {"path": args.checkpoint, "sha256": key["checkpoint_sha256"]},
        "versions": R.versions(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = R.write_report(out, report)
    partial.remove()
    print(text, end="")
    print(f"wrote {out} and {os.path.splitext(out)[0]}.md")
    return EXIT_OK
