"""Per-step time of every training variant on a small CNN (CPU), side by side, with the time split.

Every variant runs on its own copy of the same network, round-robin (one step of each in turn, repeated),
so load on a shared machine hits them alike; each entry is the median over the timed rounds after one
untimed warm-up round. Every step takes a fresh random batch and an SGD step, so the QP's warm start sees a
changing problem as in training.

Reported: the split attack / gradients / Gram / QP (with the combination Mα and the p.grad write), DDi's
own overhead (Gram + QP + combination) as a share of its step, the ratio ddi-10 / pgd-max-10 (target
<= 1.15: same attack, m gradient passes instead of one, plus the overhead), and the gradient passes with
the loop against torch.func.
"""

from __future__ import annotations

import statistics
import time

import torch

from minmax.torch.variants import variant_names

from ._common import format_table

#: One name per example of every row of the variant table (minmax.torch.variants.FAMILIES), m = 10, K' = 70.
VARIANT_NAMES = variant_names(m=10, steps=70)


def _model():
    import nets

    # Small enough that 12 configurations x 3 rounds fit in a few minutes on a 2-core machine.
    return nets.build_model("cnn", input_shape=(1, 28, 28), activation="celu", norm="group",
                            channels=(16, 32), hidden=64).train()


def measure(configs, *, batch: int = 128, rounds: int = 3, total_steps: int = 10_000, seed: int = 0):
    """Median times (seconds) of each ``(variant, strategy)`` in ``configs``; returns a dict per config."""
    from minmax.torch.descent import DescentStep

    torch.manual_seed(seed)
    init = _model()
    runs = []
    for variant, strategy in configs:
        model = _model()
        model.load_state_dict(init.state_dict())
        step = DescentStep(model, variant, strategy=strategy, total_steps=total_steps)
        runs.append((step, torch.optim.SGD(model.parameters(), lr=0.01), []))
    for r in range(rounds + 1):
        for step, opt, times in runs:
            x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
            rec = step(x, y)
            opt.step()
            if r > 0:  # round 0 warms up (allocator, torch.func tracing)
                times.append({**rec.times, "m": rec.m})
    out = []
    for (variant, strategy), (_, _, times) in zip(configs, runs, strict=True):
        med = {k: statistics.median(t[k] for t in times) for k in times[0]}
        out.append({"variant": variant, "strategy": strategy, **med})
    return out


def main() -> None:
    start = time.perf_counter()
    configs = [(v, "loop") for v in VARIANT_NAMES] + [("ddi-10", "func")]
    print(f"small CNN (celu, GroupNorm, 16/32 channels), 28x28, batch 128, PGD-7 eps 8/255, m = 10, CPU, "
          f"{torch.get_num_threads()} threads; medians of 3 rounds\n", flush=True)
    res = measure(configs)
    by = {(r["variant"], r["strategy"]): r for r in res}
    base = by[("pgd", "loop")]["total"]
    rows = []
    for r in res:
        own = r["gram"] + r["qp"] + r["combine"]
        rows.append([r["variant"], r["strategy"], int(r["m"]), f"{r['attack']:.3f}", f"{r['gradients']:.3f}",
                     f"{r['gram'] * 1e3:.1f}", f"{(r['qp'] + r['combine']) * 1e3:.1f}",
                     f"{100 * own / r['total']:.2f}", f"{r['total']:.3f}", f"{r['total'] / base:.2f}"])
    print(format_table(["variant", "strategy", "grads", "attack s", "gradients s", "gram ms", "qp+comb ms",
                        "own %", "step s", "x pgd"], rows))
    ddi, pmax = by[("ddi-10", "loop")], by[("pgd-max-10", "loop")]
    own = ddi["gram"] + ddi["qp"] + ddi["combine"]
    ratio = ddi["total"] / pmax["total"]
    extra = (ddi["gradients"] - pmax["gradients"]) / pmax["total"]
    print(f"\nDDi-10 own overhead (Gram + QP + combination): {own * 1e3:.1f} ms = "
          f"{100 * own / ddi['total']:.2f}% of its step")
    verdict = "met" if ratio <= 1.15 else "NOT met"
    print(f"ddi-10 / pgd-max-10 step time: {ratio:.3f} (target <= 1.15: {verdict}); "
          f"the m - 1 extra gradient passes add {extra:.3f} of a pgd-max-10 step")
    func = by[("ddi-10", "func")]
    print(f"m = 10 gradients, loop vs torch.func on CPU: {ddi['gradients']:.3f} s vs "
          f"{func['gradients']:.3f} s "
          f"(func / loop = {func['gradients'] / ddi['gradients']:.2f}); 'auto' uses the loop on CPU")
    print(f"(bench_step: {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
