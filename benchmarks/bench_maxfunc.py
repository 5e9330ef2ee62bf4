r"""Max-functions written in PyTorch (issue 12): autodiff loops against NumPy, batched starts against a loop.

(a) 30 DDi iterations with m = 10 maximizers (10 ascent steps each) on Figure 1's problem: the hand-written
    NumPy problem (:func:`minmax.maxfunc.ddi`) against its torch twin, whose gradients come from autograd
    and whose 10 starts are batched (:func:`minmax.torch.ddi`), both float64 on the CPU, same seed: the
    histories must agree. Target: torch no slower (ratio torch / NumPy <= 1).
(b) :math:`d = 10^4` parameters, m = 10 starts, 10 ascent steps of :func:`minmax.torch.maximize` (all starts
    in one ``vmap`` pass per step) against a Python loop over the starts doing the same ascent one start at
    a time, with the same projection: the gradient of one point by ``torch.func.grad_and_value`` (what
    :meth:`MaxProblem.grad_delta` does) or by plain autograd (``requires_grad`` and
    ``torch.autograd.grad``), and against calling ``maximize`` once per start. The same arithmetic batched
    by hand (g rewritten for a (m, p) matrix of points, no ``vmap``) is the ceiling: what batching the
    starts can gain on this machine, whatever does the batching. Functions of
    :math:`\theta \in \mathbb{R}^{d}` and :math:`\delta \in \mathbb{R}^{p}` (p = 10 and 100, the unit
    l2 ball): the quadratic :math:`\tfrac12\|\theta - B\delta\|^2` written directly, the same quadratic
    expanded as :math:`\tfrac12\|\theta\|^2 - \langle B^\top\theta, \delta\rangle + \tfrac12\delta^\top
    (B^\top B)\delta` (inside ``vmap`` the :math:`\theta`-only terms are computed once for all starts; a
    loop computes them for every start), and the logistic loss of a linear model under an input
    perturbation, :math:`\log(1 + \exp(-\langle\theta, x + B\delta\rangle))`. Target: batched >= 5x
    faster than the faster loop. :func:`report_batched_vs_loop` takes a device: ``benchmarks.gpu_check``
    runs (b) on CUDA.

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


def _problems(p: int = P, device="cpu", seed: int = 0):
    """The three g of (b) as MaxProblems, each with the same arithmetic batched by hand (no ``vmap``)."""
    from minmax.sets import L2Ball
    from minmax.torch import MaxProblem

    gen = torch.Generator().manual_seed(seed)
    B = (torch.randn(D, p, generator=gen, dtype=torch.float64) / np.sqrt(p)).to(device)
    x = (torch.randn(D, generator=gen, dtype=torch.float64) / np.sqrt(D)).to(device)
    theta = torch.randn(D, generator=gen, dtype=torch.float64).to(device)
    ball = L2Ball(np.zeros(p), 1.0)
    BtB = B.T @ B

    def quadratic(theta, delta):
        r = theta - B @ delta
        return 0.5 * (r @ r)

    def quadratic_by_hand(theta, deltas):
        r = theta - deltas @ B.T
        return 0.5 * (r * r).sum(dim=1)

    def expanded(theta, delta):
        return 0.5 * (theta @ theta) - (B.T @ theta) @ delta + 0.5 * (delta @ (BtB @ delta))

    def expanded_by_hand(theta, deltas):
        return 0.5 * (theta @ theta) - deltas @ (B.T @ theta) + 0.5 * ((deltas @ BtB) * deltas).sum(dim=1)

    def logistic(theta, delta):
        return torch.nn.functional.softplus(-(theta @ (x + B @ delta)))

    def logistic_by_hand(theta, deltas):
        return torch.nn.functional.softplus(-((x + deltas @ B.T) @ theta))

    def problem(g):
        return MaxProblem(g, ball, device=device)

    return {"1/2 |theta - B delta|^2": (problem(quadratic), quadratic_by_hand),
            "the same, expanded": (problem(expanded), expanded_by_hand),
            "log(1 + exp(-<theta, x + B delta>))": (problem(logistic), logistic_by_hand)}, theta


def _autograd_grad_and_value(g):
    """Plain autograd (``requires_grad`` and ``torch.autograd.grad``): the gradient in delta and the value of
    ``g(theta, delta)`` at one point, or of the m values of a g batched by hand at m rows (one reverse pass
    of their sum: row i depends on delta_i alone)."""
    def grad_value(theta, delta):
        delta = delta.detach().requires_grad_(True)
        value = g(theta, delta)
        (grad,) = torch.autograd.grad(value.sum(), delta)
        return grad, value.detach()

    return grad_value


def _ascent(problem, theta, starts, eta, grad_value, value_fn):
    """``STEPS`` projected ascent steps from ``starts`` (one point (p,) or rows (k, p) advanced together),
    the best iterate of each kept: :func:`minmax.torch.maximize` without validation and merging, with no
    device sync. ``grad_value(theta, delta) -> (gradient, value)`` and ``value_fn(theta, delta)``, batched
    or not as ``starts`` is."""
    delta, best, best_value = starts, starts, None
    for step in range(STEPS + 1):
        if step < STEPS:
            g, value = grad_value(theta, delta)
        else:
            with torch.no_grad():
                value = value_fn(theta, delta)
        if best_value is None:
            best_value = value
        else:
            better = value > best_value
            best = torch.where(better[..., None], delta, best)
            best_value = torch.where(better, value, best_value)
        if step < STEPS:
            step_to = (delta + eta * g).reshape(-1, delta.shape[-1])  # project takes rows
            delta = problem.torch_set.project(step_to).reshape(delta.shape)
    return best


def _loop(problem, theta, starts, eta, grad_value):
    """The ascent one start at a time (a Python loop over the starts)."""
    return torch.stack([_ascent(problem, theta, starts[i], eta, grad_value, problem.g)
                        for i in range(starts.shape[0])])


def batched_vs_loop(p: int = P, device="cpu", budget: float = 2.0):
    """Part (b) at ``p``: rows of the table and, per g, (faster loop / batched, by hand / batched,
    maximize per start / batched, largest distance of a loop's maximizer to the batched ones)."""
    from minmax.torch import maximize

    device = torch.device(device)
    problems, theta = _problems(p, device)
    eta = 0.05

    def synced(fn):
        if device.type != "cuda":
            return fn
        return lambda: (fn(), torch.cuda.synchronize(device))[0]

    rows, ratios = [], {}
    for name, (problem, batched) in problems.items():
        starts = problem.torch_set.sample(M, torch.Generator(device).manual_seed(1))
        kw = {"steps": STEPS, "step_size": eta, "init": starts, "merge_tol": 0.0}
        fns = {
            "batched (maximize)": lambda problem=problem, kw=kw: maximize(problem, theta, **kw).deltas,
            "batched by hand, no vmap": lambda problem=problem, batched=batched, starts=starts: _ascent(
                problem, theta, starts, eta, _autograd_grad_and_value(batched), batched),
            "loop, torch.func": lambda problem=problem, starts=starts: _loop(
                problem, theta, starts, eta, torch.func.grad_and_value(problem.g, argnums=1)),
            "loop, autograd": lambda problem=problem, starts=starts: _loop(
                problem, theta, starts, eta, _autograd_grad_and_value(problem.g)),
            "maximize per start": lambda problem=problem, starts=starts: torch.cat([
                maximize(problem, theta, steps=STEPS, step_size=eta, init=starts[i:i + 1]).deltas
                for i in range(M)]),
        }
        timed = round_robin({k: synced(fn) for k, fn in fns.items()}, repeats=5, budget=budget)
        batched_deltas = timed["batched (maximize)"][2]
        # every other way ended where the batched runs did
        gap = max(float(torch.cdist(timed[k][2], batched_deltas).min(dim=1).values.max())
                  for k in fns if k != "batched (maximize)")
        base = timed["batched (maximize)"][0]
        for label, t in timed.items():
            rows.append([name, label, f"{t[0] * 1e3:.1f}", f"{t[0] / base:.2f}"])
        loop = min(timed["loop, torch.func"][0], timed["loop, autograd"][0])
        ratios[name] = (loop / base, timed["batched by hand, no vmap"][0] / base,
                        timed["maximize per start"][0] / base, gap)
    return rows, ratios


def report_batched_vs_loop(p: int = P, device="cpu", budget: float = 2.0) -> dict:
    """Print the table of part (b) at ``p`` and return the ratios."""
    rows, ratios = batched_vs_loop(p, device, budget)
    print(f"(b) maximize at d = {D} parameters, p = {p}, m = {M} starts, {STEPS} steps, float64, {device}\n")
    print(format_table(["g", "starts", "ms", "x batched"], rows))
    print()
    for name, (loop, hand, per_call, gap) in ratios.items():
        met = "met" if loop >= 5.0 else "NOT met"
        print(f"{name}: batched is {loop:.2f}x faster than the faster loop (target >= 5: {met}), "
              f"{per_call:.2f}x faster than maximize per start; batched by hand without vmap is "
              f"{loop / hand:.2f}x faster than the loop; same maximizers to {gap:.1e}")
    print()
    return ratios


def main() -> None:
    torch.set_num_threads(1)
    rows, ratio, agree = _figure1()
    print(f"(a) DDi on Figure 1: {ITERATIONS} iterations, m = {M}, {STEPS} ascent steps, float64, CPU\n")
    print(format_table(["implementation", "ms per run", "ms per iteration"], rows))
    met = "met" if ratio <= 1.0 else "NOT met"
    print(f"\ntorch / numpy = {ratio:.2f} (target <= 1: {met}); histories agree to {agree:.1e} in theta\n")
    for p in (10, P):
        report_batched_vs_loop(p)


if __name__ == "__main__":
    main()
