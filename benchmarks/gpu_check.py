"""One prepared command for a lent GPU: ``python -m benchmarks.gpu_check OUTDIR [--quick]``.

Measures, on the CIFAR ResNet18 of the paper (CELU + GroupNorm) at batch 128 on generated CIFAR-shaped
data: the per-step time (split attack / gradients / Gram / QP) and peak GPU memory of pgd, pgd-max-10,
ddi-10 and ddi-comb-10, with the loop and the torch.func gradient strategies, AMP off and on (bfloat16);
then a 200-step training smoke run (SGD lr 0.1, momentum 0, weight decay 5e-4) that must end with a finite
loss; last, part (b) of ``benchmarks.bench_maxfunc`` on the device (batched starts of
:func:`minmax.torch.maximize` against a loop over starts at d = 10^4, p = 10 and 100, about 30 s). Every
measurement is wrapped on its own: an error is recorded and the next one runs. Results are rewritten after
each measurement to ``OUTDIR/gpu_check.json`` and ``OUTDIR/gpu_check.md``.

Exit status: 0 when the smoke run ends with a finite loss, 1 otherwise (non-finite loss or an error in the
smoke run). ``--quick`` is a CPU dry run with tiny sizes, to check the script end to end anywhere.
Designed to finish in under 5 minutes on an H100: the timing part stops starting new measurements after
``--budget`` seconds, and the smoke run stops early (recorded) past its own time limit.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from ._common import format_table


def _device_info(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


class Report:
    """Results so far, flushed to JSON and Markdown after every change."""

    def __init__(self, outdir: Path, info: dict, quick: bool):
        self.outdir, self.data = outdir, {"info": info, "quick": quick, "timings": [], "smoke": None,
                                          "maxfunc": None}
        outdir.mkdir(parents=True, exist_ok=True)

    def flush(self) -> None:
        (self.outdir / "gpu_check.json").write_text(json.dumps(self.data, indent=2))
        (self.outdir / "gpu_check.md").write_text(self.markdown())

    def markdown(self) -> str:
        info = self.data["info"]
        lines = [f"# minmax GPU check ({'quick CPU dry run' if self.data['quick'] else 'full'})", "",
                 ", ".join(f"{k}: {v}" for k, v in info.items()), ""]
        rows = []
        for t in self.data["timings"]:
            if "error" in t:
                rows.append([t["variant"], t["strategy"], t["amp"], "error", "", "", "", "", "", "",
                             t["error"][:60]])
                continue
            rows.append([t["variant"], t["strategy"], t["amp"], f"{t['total']:.3f}", f"{t['attack']:.3f}",
                         f"{t['gradients']:.3f}", f"{t['gram'] * 1e3:.1f}", f"{t['qp'] * 1e3:.1f}",
                         "" if t["peak_gib"] is None else f"{t['peak_gib']:.2f}", f"{t['norm']:.3g}",
                         t.get("note", "")])
        lines.append(format_table(["variant", "strategy", "amp", "step s", "attack s", "gradients s",
                                   "gram ms", "qp+comb ms", "peak GiB", "|M alpha|", "note"], rows))
        smoke = self.data["smoke"]
        if smoke is not None:
            lines += ["", "## Smoke run", "", json.dumps(smoke)]
        if self.data["maxfunc"] is not None:
            lines += ["", "## maximize: batched starts / loop over starts (bench_maxfunc part b)", "",
                      json.dumps(self.data["maxfunc"])]
        return "\n".join(lines) + "\n"


def _model(name: str, device):
    import nets

    if name == "tiny-cnn":  # --quick: the same code path on a network a loaded CPU runs in seconds
        net = nets.build_model("cnn", input_shape=(3, 32, 32), activation="celu", norm="group",
                               channels=(8, 16), hidden=16)
    else:
        net = nets.build_model(name, activation="celu", norm="group")
    return net.to(device).train()


def _batch(batch: int, device, generator=None):
    x = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    return x, y


def time_step(variant, strategy, amp, *, model_name, batch, rounds, device) -> dict:
    """Median split of ``rounds`` steps after one warm-up step, and the peak memory of all of them."""
    from minmax.torch.descent import DescentStep

    torch.manual_seed(0)
    model = _model(model_name, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=5e-4)
    step = DescentStep(model, variant, strategy=strategy, amp_dtype=torch.bfloat16 if amp else None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    records = []
    for _ in range(rounds + 1):
        rec = step(*_batch(batch, device))
        opt.step()
        records.append(rec)
    timed = records[1:]
    out = {k: statistics.median(r.times[k] for r in timed) for k in ("attack", "gradients", "gram", "total")}
    out["qp"] = statistics.median(r.times["qp"] + r.times.get("combine", 0.0) for r in timed)
    out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    out["strategy_ran"] = timed[-1].strategy
    out["loss"] = timed[-1].loss
    out["norm"] = statistics.median(r.norm for r in timed)  # gradient scale: ‖g‖ (pgd) or ‖Mα*‖ (ddi)
    if out["strategy_ran"] != strategy:
        out["note"] = f"ran {out['strategy_ran']}"
    return out


def smoke_run(variant, *, model_name, batch, steps, pool, device, amp, time_limit) -> dict:
    """Train ``steps`` steps on a fixed pool of generated images; the loss must stay finite."""
    from minmax.torch.descent import DescentStep

    torch.manual_seed(1)
    g = torch.Generator().manual_seed(2)
    xs, ys = _batch(pool, device, g)
    model = _model(model_name, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0, weight_decay=5e-4)
    step = DescentStep(model, variant, amp_dtype=torch.bfloat16 if amp else None)
    losses, norms, start = [], [], time.perf_counter()
    for t in range(steps):
        idx = torch.randint(0, pool, (batch,), generator=g).to(device)
        rec = step(xs[idx], ys[idx])
        opt.step()
        losses.append(rec.loss)
        norms.append(rec.norm)
        if t % 20 == 0 or t == steps - 1:
            print(f"  smoke step {t}: loss {rec.loss:.4f}, |M alpha| {rec.norm:.4f}", flush=True)
        if time.perf_counter() - start > time_limit:
            break
    k = max(1, min(20, len(losses) // 2))
    return {"variant": variant, "amp": "bf16" if amp else "off", "steps_done": len(losses), "steps": steps,
            "seconds": round(time.perf_counter() - start, 1), "first_loss": losses[0],
            "last_loss": losses[-1], "mean_first": sum(losses[:k]) / k, "mean_last": sum(losses[-k:]) / k,
            "norm_first": norms[0], "norm_last": norms[-1], "finite": all(math.isfinite(v) for v in losses)}


def maxfunc_check(device, quick: bool) -> dict:
    """Part (b) of ``bench_maxfunc`` on ``device``: per p and g, the faster loop / batched ratio (target
    >= 5) and the by-hand ceiling, or the error."""
    from . import bench_maxfunc

    out = {}
    for p in (10,) if quick else (10, 100):
        try:
            ratios = bench_maxfunc.report_batched_vs_loop(p, device, budget=0.05 if quick else 0.5)
            out[f"p={p}"] = {
                name: {"loop_over_batched": round(loop, 2), "loop_over_by_hand": round(loop / hand, 2),
                       "per_start_over_batched": round(per, 2), "max_gap": gap}
                for name, (loop, hand, per, gap) in ratios.items()}
        except Exception as exc:  # recorded; the smoke run decides the exit status
            out[f"p={p}"] = {"error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc(limit=4)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--quick", action="store_true", help="CPU dry run with tiny sizes")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for the timing part")
    parser.add_argument("--smoke-limit", type=float, default=90.0, help="seconds for the smoke run")
    parser.add_argument("--smoke-variant", default=None, help="default ddi-comb-10 (ddi-comb-2 with --quick)")
    args = parser.parse_args(argv)
    quick = args.quick
    device = torch.device("cpu" if quick or not torch.cuda.is_available() else "cuda")
    m, batch, rounds = (2, 4, 1) if quick else (10, 128, 3)
    smoke_steps, pool = (5, 16) if quick else (200, 2048)
    model_name = "tiny-cnn" if quick else "resnet18"
    report = Report(args.outdir, _device_info(device), quick)
    report.flush()
    print(f"gpu_check on {report.data['info']}", flush=True)
    start = time.perf_counter()
    variants = ["pgd", f"pgd-max-{m}", f"ddi-{m}", f"ddi-comb-{m}"]
    # loop and func side by side; AMP off first, so a spent budget cuts the bf16 rows last
    configs = [(v, s, amp) for amp in (False, True) for v in variants for s in ("loop", "func")]
    for variant, strategy, amp in configs:
        entry = {"variant": variant, "strategy": strategy, "amp": "bf16" if amp else "off"}
        if time.perf_counter() - start > args.budget:
            entry["error"] = "skipped: time budget spent"
        else:
            print(f"[{time.perf_counter() - start:6.1f} s] {variant} {strategy} amp={entry['amp']} ...",
                  flush=True)
            try:
                entry.update(time_step(variant, strategy, amp, model_name=model_name, batch=batch,
                                       rounds=rounds, device=device))
                print(f"  step {entry['total']:.3f} s (attack {entry['attack']:.3f}, gradients "
                      f"{entry['gradients']:.3f}), peak {entry['peak_gib']} GiB", flush=True)
            except Exception as exc:  # record, free memory, move on: one failure must not lose the rest
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc(limit=4)
                print(f"  FAILED {entry['error']}", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        report.data["timings"].append(entry)
        report.flush()
    smoke_variant = args.smoke_variant or f"ddi-comb-{m}"
    print(f"[{time.perf_counter() - start:6.1f} s] smoke run: {smoke_variant}, {smoke_steps} steps, bf16",
          flush=True)
    try:
        report.data["smoke"] = smoke_run(smoke_variant, model_name=model_name, batch=batch, steps=smoke_steps,
                                         pool=pool, device=device, amp=True, time_limit=args.smoke_limit)
    except Exception as exc:
        report.data["smoke"] = {"variant": smoke_variant, "error": f"{type(exc).__name__}: {exc}",
                                "traceback": traceback.format_exc(limit=4), "finite": False}
    report.flush()
    report.data["maxfunc"] = maxfunc_check(device, quick)
    report.data["seconds"] = round(time.perf_counter() - start, 1)
    report.flush()
    smoke = report.data["smoke"]
    print(report.markdown(), flush=True)
    ok = bool(smoke.get("finite")) and "error" not in smoke
    print(f"smoke run {'ok' if ok else 'FAILED'}; total {report.data['seconds']} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
