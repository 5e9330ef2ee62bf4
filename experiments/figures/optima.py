r"""``python -m experiments.optima CHECKPOINT``: how many different maximizers does the inner problem have?

The paper's Figures 2 and 6: for a trained network, run m PGD-K attacks (K = 7, ε = 8/255, random starts)
per image and look at (a) the pairwise :math:`\ell_2` distances between the m perturbations and (b) their
losses against the clean loss. Distances far from 0 with losses all well above the clean loss mean the
maximizer set :math:`S^*(\theta)` is effectively not a singleton — the situation in which one attack's
gradient need not be a descent direction (Danskin's theorem, eq. 4) and DDi's combination helps.

Distances are reported raw and in units of :math:`\varepsilon\sqrt d` (the :math:`\ell_2` length of a
corner of the :math:`\ell_\infty` ball, so the ball's :math:`\ell_2` diameter is 2). For reference, two
independent uniform points of the ball are :math:`\varepsilon\sqrt{2d/3}` apart on average (0.816 in
those units); two PGD optima at the same corner are 0 apart.

Outputs in ``--out`` (default: ``optima/`` next to the checkpoint's run): ``distances.png``,
``losses.png``, ``optima.csv`` (one row per image) and ``summary.json`` (also printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from experiments.common.checkpoints import CheckpointError
from experiments.common.data import DataError
from experiments.common.options import parse_fraction
from experiments.common.seeds import OPTIMA, derive_seed
from experiments.figures.drawing import pyplot, save
from experiments.train.model import restore_model

__all__ = ["analyze", "main"]


def analyze(model, data, *, m: int = 10, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 7,
            norm: str = "linf", examples: int = 500, batch_size: int = 100, seed: int = 0, device="cpu"):
    """Per image: clean loss, the m attack losses, the m(m-1)/2 pairwise l2 distances and predictions.

    Returns
    -------
    dict of numpy.ndarray
        ``clean_loss`` (n,), ``losses`` (n, m), ``distances`` (n, m(m-1)/2), ``labels`` (n,),
        ``adv_correct`` (n, m) and ``clean_correct`` (n,).
    """
    from minmax.torch.attacks import PGD

    attack = PGD(eps=eps, alpha=step_size, steps=steps, norm=norm, restarts=m)
    n = min(examples, len(data)) if examples > 0 else len(data)
    iu = np.triu_indices(m, 1)
    out = {k: [] for k in ("clean_loss", "losses", "distances", "labels", "adv_correct", "clean_correct")}
    model.eval()
    for b, start in enumerate(range(0, n, batch_size)):
        x, y = data.batch(range(start, min(start + batch_size, n)), device)
        torch.manual_seed(derive_seed(seed, OPTIMA, b))
        result = attack.run(model, x, y)
        with torch.no_grad():
            logits = model(x)
            out["clean_loss"].append(F.cross_entropy(logits, y, reduction="none").cpu().numpy())
            out["clean_correct"].append((logits.argmax(1) == y).cpu().numpy())
            adv = [model((x + d).clamp(0, 1)).argmax(1) == y for d in result.deltas]
        out["adv_correct"].append(torch.stack(adv, 1).cpu().numpy())
        out["losses"].append(result.losses.T.double().cpu().numpy())
        flat = result.deltas.transpose(0, 1).flatten(2).double()  # (B, m, d)
        out["distances"].append(torch.cdist(flat, flat).cpu().numpy()[:, iu[0], iu[1]])
        out["labels"].append(y.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def summarize(res: dict, *, eps: float, dim: int, m: int) -> dict:
    """Summary statistics of :func:`analyze`'s arrays (distances also in units of ε√d)."""
    unit = eps * math.sqrt(dim)
    dist = res["distances"] / unit
    losses, clean = res["losses"], res["clean_loss"]
    spread = losses.max(1) - losses.min(1)
    mixed = res["adv_correct"].any(1) & ~res["adv_correct"].all(1)

    def stats(v):
        return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()),
                "max": float(v.max()), "q10": float(np.quantile(v, 0.1)), "q90": float(np.quantile(v, 0.9))}

    return {
        "images": int(len(clean)), "m": m, "eps": eps, "dim": dim, "unit_eps_sqrt_d": unit,
        "distance_over_eps_sqrt_d": stats(dist),
        "distance_uniform_reference": math.sqrt(2 / 3),
        "fraction_pairs_closer_than_1pct": float((dist < 0.01).mean()),
        "clean_loss": stats(clean), "adversarial_loss": stats(losses),
        "fraction_attacks_above_clean_loss": float((losses > clean[:, None]).mean()),
        "loss_spread_max_minus_min": stats(spread),
        "relative_spread": stats(spread / np.maximum(losses.max(1), 1e-12)),
        "clean_acc": float(res["clean_correct"].mean()),
        "robust_acc_worst_of_m": float(res["adv_correct"].all(1).mean()),
        "fraction_images_where_attacks_disagree": float(mixed.mean()),
    }


def _plots(res: dict, summary: dict, out_dir: str) -> None:
    plt = pyplot()

    dist = res["distances"].ravel() / summary["unit_eps_sqrt_d"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(dist, bins=60, color="C0")
    ax.axvline(summary["distance_uniform_reference"], color="k", ls="--", lw=1,
               label="two uniform points of the ball (mean)")
    ax.set_xlabel(r"pairwise $\ell_2$ distance between the m optima, in units of $\varepsilon\sqrt{d}$")
    ax.set_ylabel("pairs")
    ax.set_title(f"{summary['images']} images, m = {summary['m']} PGD attacks each")
    ax.legend(fontsize=8)
    save(fig, os.path.join(out_dir, "distances.png"))

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    losses, clean = res["losses"], res["clean_loss"]
    top = np.quantile(np.concatenate([losses.ravel(), clean]), 0.995)
    bins = np.linspace(0, top, 60)
    a.hist(clean, bins=bins, alpha=0.6, label="clean loss", color="C2")
    a.hist(losses.ravel(), bins=bins, alpha=0.6, label="loss at each of the m optima", color="C3")
    a.set_xlabel("cross-entropy")
    a.set_ylabel("count")
    a.legend(fontsize=8)
    b.hist(losses.max(1) - losses.min(1), bins=60, color="C1")
    b.set_xlabel("per image: max - min loss over the m optima")
    b.set_ylabel("images")
    save(fig, os.path.join(out_dir, "losses.png"))


def _write_csv(res: dict, path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "clean_loss", "clean_correct", "loss_min", "loss_mean", "loss_max",
                    "attacks_successful", "distance_min", "distance_mean", "distance_max"])
        for i in range(len(res["clean_loss"])):
            d, L = res["distances"][i], res["losses"][i]
            w.writerow([i, int(res["labels"][i]), f"{res['clean_loss'][i]:.6g}", int(res["clean_correct"][i]),
                        f"{L.min():.6g}", f"{L.mean():.6g}", f"{L.max():.6g}",
                        int((~res["adv_correct"][i]).sum()), f"{d.min():.6g}", f"{d.mean():.6g}",
                        f"{d.max():.6g}"])


def main(argv=None) -> int:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(prog="python -m experiments.optima",
                                     description=doc[1] + "\n\n" + doc[3],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoints/{best,last}.pt of a run")
    parser.add_argument("--m", type=int, default=10, help="attacks per image (default: 10)")
    parser.add_argument("--steps", type=int, default=7, help="PGD steps (default: 7)")
    parser.add_argument("--eps", type=parse_fraction, help="radius (default: the run's)")
    parser.add_argument("--step-size", type=parse_fraction, help="PGD step (default: the run's)")
    parser.add_argument("--examples", type=int, default=500, help="images analyzed (0: all; default: 500)")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test", help="default: test")
    parser.add_argument("--batch-size", type=int, default=100, help="images per attack batch (default: 100)")
    parser.add_argument("--data-root", help="dataset folder, if not where the run found it")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/optima)")
    args = parser.parse_args(argv)
    for name in ("m", "steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.m < 2:
        parser.error("--m must be >= 2 to have pairwise distances")
    try:
        model, config, splits = restore_model(args.checkpoint, device=args.device, data_root=args.data_root)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    eps = args.eps if args.eps is not None else config["eps"]
    step_size = args.step_size if args.step_size is not None else config["step_size"]
    if not eps > 0 or not step_size > 0:
        parser.error("--eps and --step-size must be > 0")
    data = splits[args.split]
    res = analyze(model, data, m=args.m, eps=eps, step_size=step_size, steps=args.steps,
                  norm=config["threat"], examples=args.examples, batch_size=args.batch_size, seed=args.seed,
                  device=args.device)
    summary = summarize(res, eps=eps, dim=int(np.prod(data.input_shape)), m=args.m)
    summary.update({"checkpoint": os.path.abspath(args.checkpoint), "split": args.split, "steps": args.steps,
                    "step_size": step_size, "variant": config["variant"], "net": config["net"]})
    out_dir = args.out or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.checkpoint))),
                                       "optima")
    os.makedirs(out_dir, exist_ok=True)
    _plots(res, summary, out_dir)
    _write_csv(res, os.path.join(out_dir, "optima.csv"))
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    d = summary["distance_over_eps_sqrt_d"]
    print(f"{summary['images']} {args.split} images, m = {args.m} PGD-{args.steps} attacks each "
          f"(eps {eps:.4g}, d = {summary['dim']}):")
    print(f"  pairwise l2 distance / (eps sqrt d): median {d['median']:.3f}, 10%-90% {d['q10']:.3f}-"
          f"{d['q90']:.3f} (uniform points: {summary['distance_uniform_reference']:.3f}); "
          f"pairs closer than 1%: {100 * summary['fraction_pairs_closer_than_1pct']:.1f}%")
    print(f"  loss: clean mean {summary['clean_loss']['mean']:.4f}, at the optima mean "
          f"{summary['adversarial_loss']['mean']:.4f}; above clean: "
          f"{100 * summary['fraction_attacks_above_clean_loss']:.1f}% of attacks; per-image spread median "
          f"{summary['loss_spread_max_minus_min']['median']:.4f}")
    disagree = 100 * summary["fraction_images_where_attacks_disagree"]
    print(f"  clean acc {summary['clean_acc']:.4f}, robust acc (worst of m) "
          f"{summary['robust_acc_worst_of_m']:.4f}, images where the m attacks disagree: {disagree:.1f}%")
    print(f"wrote {out_dir}/distances.png, losses.png, optima.csv, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
