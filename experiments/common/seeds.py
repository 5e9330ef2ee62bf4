"""Integer seeds for every random choice of the experiments, so that none depends on a hidden generator state.

A random stream is seeded with :func:`derive_seed` of the run's seed, a *purpose* number naming the stream,
and the counters that locate the draw (epoch, step, batch). Because a seed is a function of integers only, a
resumed run, a second rank of a distributed run and a later evaluation all find the same random numbers.

=====================  =======================================  ============================================
purpose                key                                      stream
=====================  =======================================  ============================================
:data:`EPOCH_ORDER`    ``(seed, epoch, EPOCH_ORDER)``           the order of the training examples
:data:`VALIDATION`     ``(data_seed, VALIDATION)``              the held-out validation split
:data:`SUBSET`         ``(data_seed, SUBSET)``                  ``--train-size``'s fixed subset
:data:`GENERATED`      ``(data_seed, GENERATED)``               the generated dataset
:data:`AUGMENT`        ``(seed, AUGMENT, epoch, step)``         crops and flips of one global batch
:data:`STEP`           ``(seed, STEP, global_step)``            the torch generator before a step (attacks)
:data:`EPOCH_EVAL`     ``(seed, EPOCH_EVAL, epoch, split)``     the end-of-epoch PGD evaluation
:data:`FINAL_EVAL`     ``(seed, FINAL_EVAL)``                   the final evaluation of a run
:data:`PROGRESS_EVAL`  ``(seed, PROGRESS_EVAL)``                ``--eval-every``'s evaluations
:data:`OPTIMA`         ``(seed, OPTIMA, batch)``                ``experiments.optima``'s attacks
=====================  =======================================  ============================================

An evaluation seeded with ``s`` seeds its batch ``b`` with ``derive_seed(s, b)``
(:func:`experiments.train.evaluation.evaluate`); ``experiments.evaluate`` seeds attack ``a``'s restart ``r``
on batch ``b`` with ``derive_seed(seed, b, a, r)``. The numbers are those of the runs already made. Keys of
different lengths never collide; the one shared key (:data:`GENERATED` equals :data:`SUBSET`, two streams
that draw different things from it) is kept so that those runs stay reproducible.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AUGMENT", "EPOCH_EVAL", "EPOCH_ORDER", "FINAL_EVAL", "GENERATED", "OPTIMA", "PROGRESS_EVAL",
           "STEP", "SUBSET", "VALIDATION", "derive_seed"]

EPOCH_ORDER = 1
VALIDATION = 2
SUBSET = 3
GENERATED = 3
AUGMENT = 5
STEP = 6
EPOCH_EVAL = 7
FINAL_EVAL = 8
PROGRESS_EVAL = 9
OPTIMA = 9


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integers (e.g. ``(seed, purpose, epoch)``), well mixed by NumPy's SeedSequence.

    Examples
    --------
    >>> derive_seed(0, 1) == derive_seed(0, 1), derive_seed(0, 1) == derive_seed(1, 0)
    (True, False)
    """
    low, high = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32).tolist()
    return low | ((high & 0x7FFFFFFF) << 32)
