"""The attack suite of ``python -m experiments.evaluate``, run batch by batch and resumable.

:func:`attack_settings` turns the command line into one settings dict per attack (what the report records and
the partial file's key holds); :func:`run_attacks` runs them on each batch of the split, saves each finished
batch's per-sample flags in a :class:`~experiments.evaluate.report.Partial`, and summarizes them with the
gradient-masking checks. Batch ``b``, attack ``a`` and restart ``r`` draw their random numbers from
``derive_seed(seed, b, a, r)``, so a batch evaluates the same whether it runs first, last, or after a resume.
"""

from __future__ import annotations

import time

import torch

from experiments.common.seeds import derive_seed
from experiments.evaluate import attacks as A
from experiments.evaluate import report as R

__all__ = ["ATTACKS", "CHECKS", "attack_settings", "evaluate_batch", "run_attacks"]

ATTACKS = ("pgd-ce", "pgd-cw", "autoattack", "pgd-weak", "large-eps", "blackbox")
CHECKS = ("pgd-weak", "large-eps", "blackbox")
_IDS = {name: i + 1 for i, name in enumerate(ATTACKS)}  # seed streams: one per attack


def attack_settings(args, attacks, input_shape) -> dict:
    """``{"clean": {}, name: {...}}`` for each chosen attack: the main PGD-K x R (cross-entropy and CW
    margin), AutoAttack, and the checks (a weaker PGD, a large ε, the black-box search)."""
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


def evaluate_batch(model, x, y, settings: dict, seed: int, b: int, *, status=None) -> dict:
    """Run every attack of ``settings`` on batch ``b``; return the record saved in the partial file.

    Per-sample flags are encoded as strings of ``0``/``1``; ``time:<name>`` holds each attack's seconds,
    ``<name>:restarts`` the accuracy after each PGD restart, ``messages`` AutoAttack's own warnings.
    """
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
    partial : experiments.evaluate.report.Partial or None
        Where finished batches are saved and found again (None: kept in memory only).
    progress : bool
        Show a tqdm progress bar with the running accuracies.

    Returns
    -------
    results, checks : dict
        As in the report (:func:`experiments.evaluate.report.summarize`,
        :func:`experiments.evaluate.report.checks_and_warnings`).
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
                    partial.save(b, evaluate_batch(model, x, y, settings, seed, b, status=status))
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
