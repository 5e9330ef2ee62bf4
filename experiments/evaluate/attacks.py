r"""The attacks of ``python -m experiments.evaluate``, one batch at a time, as per-sample robustness flags.

Every function here takes a model in eval mode, a batch ``(x, y)`` in [0, 1] and the per-sample mask of
examples still standing, and returns the ``(B,)`` bool mask of examples that remain correctly classified
after the attack. An example counts as robust against an attack only if it is classified correctly at the
clean input *and* at every point the attack returns (RobustBench's convention), so combining attacks is a
per-sample ``and`` (the worst case over attacks).

Random numbers: each call reseeds the global generator inside :func:`torch.random.fork_rng` from the seed
it is given, so results do not depend on what ran before and the caller's generator is left untouched.
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch

from experiments.evaluate.blackbox import RandomSearch, margin

__all__ = ["AUTOATTACK_EXTRA", "AutoAttackUnavailable", "autoattack_robust", "cw_margin_loss",
           "large_eps", "load_autoattack", "pgd_robust", "random_search_robust"]

#: What to install for AutoAttack (the PyPI package ``pyautoattack``, imported as ``pyautoattack``).
AUTOATTACK_EXTRA = "pip install 'minmax[autoattack]'"


class AutoAttackUnavailable(ImportError):
    """AutoAttack was asked for but the optional package ``pyautoattack`` is not installed."""


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-sample Carlini-Wagner margin loss :math:`\max_{j \ne y} z_j - z_y` (positive: misclassified).

    A loss callable for :class:`minmax.torch.attacks.PGD` (``loss=cw_margin_loss``). Unlike the
    cross-entropy it does not saturate when the softmax does, which defeats one common form of gradient
    masking (Carlini and Wagner, 2017), and because PGD keeps each sample's best iterate, a sample is
    misclassified at the returned point whenever any iterate misclassified it.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, K)`` logits.
    y : torch.Tensor
        ``(N,)`` class indices.

    Returns
    -------
    torch.Tensor
        ``(N,)`` margins, differentiable with respect to ``logits``.

    Examples
    --------
    >>> import torch
    >>> cw_margin_loss(torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]]), torch.tensor([0, 2])).tolist()
    [-1.0, 2.0]
    """
    return -margin(logits, y)


def _seeded(seed: int, device: torch.device):
    @contextlib.contextmanager
    def context():
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield

    return context()


@torch.no_grad()
def _correct(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x.clamp(0, 1)).argmax(dim=1) == y


def pgd_robust(model, x, y, standing, *, eps: float, alpha: float, steps: int, norm: str, loss, restarts: int,
               seeds) -> tuple[torch.Tensor, list[int]]:
    """PGD-``steps`` with ``restarts`` nested restarts; the per-sample worst case over them.

    Restart ``r`` starts from its own seed ``seeds[r]`` and attacks only the examples that survived
    restarts ``0, …, r-1``. The first R' restarts of an R-restart run are therefore exactly the R'-restart
    run, so more restarts can only lower the robust accuracy, and each extra restart costs only the
    examples still standing.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode.
    x, y : torch.Tensor
        The batch.
    standing : torch.Tensor
        ``(B,)`` bool: examples to attack (the clean-correct ones); the others stay non-robust.
    eps, alpha, steps, norm, loss
        As in :class:`minmax.torch.attacks.PGD` (``loss`` is ``"ce"`` or e.g. :func:`cw_margin_loss`).
    restarts : int
        Number of restarts R.
    seeds : sequence of int
        One seed per restart.

    Returns
    -------
    robust : torch.Tensor
        ``(B,)`` bool.
    counts : list of int
        Robust examples after 1, 2, …, R restarts (non-increasing).
    """
    from minmax.torch.attacks import PGD

    attack = PGD(eps=eps, alpha=alpha, steps=steps, norm=norm, restarts=1, loss=loss)
    robust = standing.clone()
    counts = []
    for r in range(restarts):
        index = robust.nonzero().squeeze(1)
        if index.numel():
            with _seeded(seeds[r], x.device):
                delta = attack(model, x[index], y[index])[0]
            robust[index] = _correct(model, x[index] + delta, y[index])
        counts.append(int(robust.sum()))
    return robust, counts


def large_eps(norm: str, input_shape) -> float:
    r"""The radius of the large-ε check: 0.5 in l∞; :math:`0.5\sqrt{n}` in l2, whose ball holds that cube.

    Within l∞ distance 0.5 every image reaches the uniform grey image, so no classifier is robust there
    and a sound attack must bring the robust accuracy to about 0.

    Examples
    --------
    >>> large_eps("linf", (3, 32, 32)), round(large_eps("l2", (1, 4, 4)), 6)
    (0.5, 2.0)
    """
    return 0.5 if norm == "linf" else 0.5 * math.sqrt(math.prod(input_shape))


def random_search_robust(model, x, y, standing, *, eps: float, norm: str, queries: int, seed: int):
    """Robustness flags under the black-box :class:`experiments.evaluate.blackbox.RandomSearch` attack."""
    robust = standing.clone()
    index = standing.nonzero().squeeze(1)
    if index.numel():
        with _seeded(seed, x.device):
            x_adv, _ = RandomSearch(eps=eps, norm=norm, queries=queries).run(model, x[index], y[index])
        robust[index] = _correct(model, x_adv, y[index])
    return robust


def load_autoattack():
    """Import AutoAttack from the optional ``pyautoattack`` package.

    Raises
    ------
    AutoAttackUnavailable
        If the package is not installed; the message says what to install.
    """
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise AutoAttackUnavailable(
            f"AutoAttack needs the optional package 'pyautoattack', which is not installed: run "
            f"{AUTOATTACK_EXTRA} (or pip install pyautoattack), or leave AutoAttack out with "
            f"--attacks pgd-ce,pgd-cw,checks") from None
    return AutoAttack


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def autoattack_robust(model, x, y, standing, *, eps: float, norm: str, seed: int):
    """Robustness flags under AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square) [1]_.

    Returns ``(robust, warnings)``: the flags, and the warnings AutoAttack's own checks raised (a
    randomized defense, zero gradients, Square beating the white-box attacks: signs of gradient masking).
    The adversarial points are checked here: each must lie in the ε-ball (with a float32 rounding
    slack) and is re-classified by the model.

    Raises
    ------
    AutoAttackUnavailable
        If ``pyautoattack`` is not installed.
    RuntimeError
        If AutoAttack returns a point outside the threat model.

    References
    ----------
    .. [1] Croce, Hein. "Reliable evaluation of adversarial robustness with an ensemble of diverse
       parameter-free attacks." ICML 2020.
    """
    AutoAttack = load_autoattack()
    robust = standing.clone()
    index = standing.nonzero().squeeze(1)
    if index.numel() == 0:
        return robust, []
    xs, ys = x[index], y[index]
    logger = logging.getLogger("auto-attack")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # into the report, not onto the progress bar
    try:
        with _seeded(seed, x.device):
            attack = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard",
                                seed=seed % 2**32, device=x.device)
            x_adv, _ = attack.run_standard_evaluation(xs, ys, batch_size=len(ys))
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    change = (x_adv - xs).flatten(1)
    size = change.abs().amax(dim=1) if norm == "linf" else change.norm(dim=1)
    if bool((size > eps * (1 + 1e-4) + 1e-6).any()) or bool(((x_adv < 0) | (x_adv > 1)).any()):
        raise RuntimeError(f"AutoAttack returned a point outside the {norm} ball of radius {eps:.6g} or "
                           f"[0, 1] "
                           f"(largest perturbation {float(size.max()):.6g})")
    robust[index] = _correct(model, x_adv, ys)
    return robust, handler.messages
