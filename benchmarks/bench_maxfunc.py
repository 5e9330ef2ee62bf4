"""Max-functions written in PyTorch (issue 12): autodiff loops against NumPy, batched starts against a loop.

(a) 30 DDi iterations with m = 10 maximizers (10 ascent steps each) on Figure 1's problem: the hand-written
    NumPy problem (:func:`minmax.maxfunc.ddi`) against its torch twin, whose gradients come from autograd
    and whose 10 starts are batched (:func:`minmax.torch.ddi`), both float64 on the CPU, same seed: the
    histories must agree. Target: torch no slower (ratio torch / NumPy <= 1).
(b) :math:`d = 10^4` parameters, m = 10 starts, 10 ascent steps of :func:`minmax.torch.maximize` (all starts
    in one ``vmap`` pass per step) against a Python loop over the starts doing the same ascent one start at
    a time, with the same projection: the gradient of one point by ``torch.func.grad_and_value`` (what
    :meth:`MaxProblem.grad_delta` does) or by plain autograd (``requires_grad`` and
    ``torch.autograd.grad``), and against calling ``maximize`` once per start. Functions of
    :math:`\\theta \\in \\mathbb{R}^{d}` and :math:`\\delta \\in \\mathbb{R}^{p}` (p = 100, the unit l2 ball):
    the quadratic :math:`\\tfrac12\\|\\theta - B\\delta\\|^2` written directly, the same quadratic expanded
    as :math:`\\tfrac12\\|\\theta\\|^2 - \\langle B^\\top\\theta, \\delta\\rangle + \\tfrac12\\delta^\\top
    (B^\\top B)\\delta` (inside ``vmap`` the :math:`\\theta`-only terms are computed once for all starts; a
    loop computes them for every start), and the logistic loss of a linear model under an input
    perturbation, :math:`\\log(1 + \\exp(-\\langle\\theta, x + B\\delta\\rangle))`. Target: batched >= 5x
    faster than the faster loop.

Every pair is timed in turns (:func:`benchmarks._common.round_robin`), one thread.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import format_table, round_robin

ITERATIONS, M, STEPS = 30, 10, 10
D, P = 10_000, 100


def _figure1() -> tuple[list, float]:
    from minmax.maxfunc import ddi as ddi_numpy
    from minmax.problems import Figure1
    from minmax.torch import ddi as ddi_torch
    from minmax.torch.problems import Figure1 as TorchFigure1

    kw = {"m": M, "iterations": ITERATIONS, "inner_steps": STEPS, "inner_step_size": 0.1, "rng": 0}
    numpy_problem, torch_problem = Figure1(), TorchFigure1()
    timed = round_robin({
        "numpy": lambda: ddi_numpy(numpy_problem, [2.0, 0.1], **kw),
        "torch": lambda: ddi_torch(torch_problem, [2.0, 0.1], **kw),
    }, repeats=5, budget=4.0)
    h_np, h_t = timed["numpy"][2], timed["torch"][2]
    agree = float(np.max(np.abs(h_np.thetas - h_t.thetas.numpy())))
    rows = [[name, f"{t[0] * 1e3:.0f}", f"{t[0] / ITERATIONS * 1e3:.2f}"] for name, t in timed.items()]
    return rows, timed["torch"][0] / timed["numpy"][0], agree


def _problems(seed: int = 0):
    from minmax.sets import L2Ball
    from minmax.torch import MaxProblem

    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(D, P, generator=gen, dtype=torch.float64) / np.sqrt(P)
    x = torch.randn(D, generator=gen, dtype=torch.float64) / np.sqrt(D)
    ball = L2Ball(np.zeros(P), 1.0)

    BtB = B.T @ B

    def quadratic(theta, delta):
        r = theta - B @ delta
        return 0.5 * (r @ r)

    def expanded(theta, delta):
        return 0.5 * (theta @ theta) - (B.T @ theta) @ delta + 0.5 * (delta @ (BtB @ delta))

    def logistic(theta, delta):
        return torch.nn.functional.softplus(-(theta @ (x + B @ delta)))

    theta = torch.randn(D, generator=gen, dtype=torch.float64)
    return {"1/2 |theta - B delta|^2": MaxProblem(quadratic, ball),
            "the same, expanded": MaxProblem(expanded, ball),
            "log(1 + exp(-<theta, x + B delta>))": MaxProblem(logistic, ball)}, theta


def _autograd_grad_and_value(g):
    def grad_value(theta, delta):
        delta = delta.detach().requires_grad_(True)
        value = g(theta, delta)
        (grad,) = torch.autograd.grad(value, delta)
        return grad, value.detach()

    return grad_value


def _loop(problem, theta, starts, eta, grad_value):
    """The same ascent one start at a time, the best iterate kept."""
    out = []
    for i in range(starts.shape[0]):
        delta = starts[i]
        best, best_value = delta, None
        for step in range(STEPS + 1):
            if step < STEPS:
                g, value = grad_value(theta, delta)
            else:
                with torch.no_grad():
                    value = problem.g(theta, delta)
            if best_value is None or value > best_value:
                best, best_value = delta, value
            if step < STEPS:
                delta = problem.torch_set.project((delta + eta * g)[None, :])[0]
        out.append(best)
    return torch.stack(out)


def _batched_vs_loop():
    from minmax.torch import maximize

    problems, theta = _problems()
    eta = 0.05
    rows, ratios = [], {}
    for name, problem in problems.items():
        starts = problem.torch_set.sample(M, torch.Generator().manual_seed(1))
        kw = {"steps": STEPS, "step_size": eta, "init": starts, "merge_tol": 0.0}
        timed = round_robin({
            "batched": lambda problem=problem, kw=kw: maximize(problem, theta, **kw),
            "loop, torch.func": lambda problem=problem, starts=starts: _loop(
                problem, theta, starts, eta, torch.func.grad_and_value(problem.g, argnums=1)),
            "loop, autograd": lambda problem=problem, starts=starts: _loop(
                problem, theta, starts, eta, _autograd_grad_and_value(problem.g)),
            "maximize per start": lambda problem=problem, starts=starts: [
                maximize(problem, theta, steps=STEPS, step_size=eta, init=starts[i:i + 1])
                for i in range(M)],
        }, repeats=5, budget=2.0)
        batched = timed["batched"][2]
        # every run of the loops ended where one of the batched runs did
        gap = max(float(torch.cdist(timed[k][2], batched.deltas).min(dim=1).values.max())
                  for k in ("loop, torch.func", "loop, autograd"))
        base = timed["batched"][0]
        for label, t in timed.items():
            rows.append([name, label, f"{t[0] * 1e3:.1f}", f"{t[0] / base:.2f}"])
        loop = min(timed["loop, torch.func"][0], timed["loop, autograd"][0])
        ratios[name] = (loop / base, timed["maximize per start"][0] / base, gap)
    return rows, ratios


def main() -> None:
    torch.set_num_threads(1)
    rows, ratio, agree = _figure1()
    print(f"(a) DDi on Figure 1: {ITERATIONS} iterations, m = {M}, {STEPS} ascent steps, float64, CPU\n")
    print(format_table(["implementation", "ms per run", "ms per iteration"], rows))
    met = "met" if ratio <= 1.0 else "NOT met"
    print(f"\ntorch / numpy = {ratio:.2f} (target <= 1: {met}); histories agree to {agree:.1e} in theta\n")
    rows, ratios = _batched_vs_loop()
    print(f"(b) maximize at d = {D} parameters, p = {P}, m = {M} starts, {STEPS} steps, float64, CPU\n")
    print(format_table(["g", "starts", "ms", "x batched"], rows))
    print()
    for name, (loop, per_call, gap) in ratios.items():
        met = "met" if loop >= 5.0 else "NOT met"
        print(f"{name}: batched is {loop:.2f}x faster than the faster loop (target >= 5: {met}), "
              f"{per_call:.2f}x faster than maximize per start; same maximizers to {gap:.1e}")


if __name__ == "__main__":
    main()
