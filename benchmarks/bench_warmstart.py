"""Does the previous batch's α* speed up the next batch's QP? Cold against warm, on DDi's Gram matrices.

A DDi-10 run of a small CNN (CPU, random 28x28 batches, unit steps of SGD lr 0.05) records the Gram
matrix G_t of every step. Each G_t is then solved by :func:`minmax.min_norm_point` three ways, timed in turns
(:func:`benchmarks._common.round_robin`): cold, warm-started at α*_{t-1} (what ``DescentStep`` passed
until this measurement: the previous batch's weights), and, as a bound on what any warm start could give,
warm-started at α*_t itself. Restarts are exchangeable across batches (restart i of one batch has nothing
to do with restart i of the next), so α*_{t-1} is a guess, not a neighbour.
"""

from __future__ import annotations

import statistics

import numpy as np
import torch

from ._common import format_table, round_robin


def gram_matrices(steps: int = 30, *, m: int = 10, batch: int = 64, seed: int = 0) -> list[np.ndarray]:
    """The float64 Gram matrices of ``steps`` consecutive DDi-m steps of a small CNN."""
    import nets
    from minmax import gram, steepest_descent
    from minmax.torch.attacks import PGD
    from minmax.torch.gradients import set_gradients

    torch.manual_seed(seed)
    model = nets.build_model("cnn", input_shape=(1, 28, 28), activation="celu", norm="group",
                             channels=(16, 32), hidden=64).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    attack = PGD(eps=8 / 255, alpha=2 / 255, steps=3, restarts=m)
    out = []
    for _ in range(steps):
        x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
        deltas = attack.run(model, x, y).deltas
        sg = set_gradients(model, (x + deltas).clamp(0, 1), y, strategy="loop")
        G = gram(sg.blocks).numpy()
        res = steepest_descent(sg.blocks, gram=G)
        for p, c in zip(model.parameters(), res.combination, strict=True):
            p.grad = c / res.norm  # the paper's unit step: the optimizer moves along -M alpha / |M alpha|
        opt.step()
        out.append(G)
    return out


def main() -> None:
    from minmax import min_norm_point

    Gs = gram_matrices()
    cold = [min_norm_point(G) for G in Gs]
    rows, ratios = [], []
    for t in range(1, len(Gs)):
        G, prev, own = Gs[t], cold[t - 1].weights, cold[t].weights
        timed = round_robin({
            "cold": lambda G=G: min_norm_point(G),
            "warm (previous batch)": lambda G=G, w=prev: min_norm_point(G, init=w),
            "warm (own optimum)": lambda G=G, w=own: min_norm_point(G, init=w),
        }, repeats=5, budget=0.2)
        assert all(r[2].success for r in timed.values())
        us = {k: v[0] * 1e6 for k, v in timed.items()}
        ratios.append(us["warm (previous batch)"] / us["cold"])
        rows.append(us)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    support = statistics.median(int(np.count_nonzero(r.weights)) for r in cold)
    print(f"DDi-10 on a small CNN, {len(Gs) - 1} consecutive steps' Gram matrices (m = 10), median support "
          f"{support}; per-call medians over the steps\n")
    print(format_table(["start", "median us per QP", "x cold"],
                       [[k, f"{v:.1f}", f"{v / med['cold']:.2f}"] for k, v in med.items()]))
    faster = sum(r < 1 for r in ratios)
    print(f"\nwarm (previous batch) / cold per step: median {statistics.median(ratios):.2f}, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}; faster on {faster} of {len(ratios)} steps")


if __name__ == "__main__":
    main()
