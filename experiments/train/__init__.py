"""Training: ``python -m experiments.train``, adversarial training with every variant of the paper, resumable.

``python -m experiments.train``: adversarial training with every variant of the paper, resumable exactly.

Run ``python -m experiments.train --help`` for the options. One optimizer step is: the global batch (order
from :func:`experiments.common.batches.epoch_permutation`, augmentation seeded per batch), the global torch
generator reseeded from ``(seed, step)``, ``DescentStep`` (attacks, m gradients, Danskin direction into
``p.grad``), ``optimizer.step()``. Because every random choice is a function of the seed and the step counter,
and the model, optimizer, scheduler, scaler, ``DescentStep`` state, RNG states and per-epoch accumulators are
checkpointed atomically, a run killed at any moment and resumed with ``--resume`` takes exactly the steps of
an uninterrupted run (bit for bit on CPU with ``--deterministic``; also seen bit for bit on an H200 with
``--deterministic``). SIGTERM (a cluster's preemption) checkpoints the finished step first.

The package, in the order a step meets it:

- :mod:`~experiments.train.config`: the options, presets, validation and resume rules (one flat dict);
- :mod:`~experiments.train.command`: ``main``, the exit statuses and the SIGTERM handler;
- :mod:`~experiments.train.setup`: device, run directory, data, the run's length, the ``DescentStep``;
- :mod:`~experiments.train.model`: the network a configuration names, and
  :func:`~experiments.train.model.restore_model`, which rebuilds a trained one from a checkpoint;
- :mod:`~experiments.train.optim`: SGD and the learning-rate schedule (step or cosine);
- :mod:`~experiments.train.trainer`: :class:`~experiments.train.trainer.Trainer`, the epoch loop as methods;
- :mod:`~experiments.train.state`: what a checkpoint holds, saving, resuming;
- :mod:`~experiments.train.evaluation`: the clean and PGD evaluation during training;
- :mod:`~experiments.train.stats`: the per-epoch sums, metrics row and log line.

Run directory::

    RUN_DIR/config.json              the full configuration, command line, versions
    RUN_DIR/metrics.jsonl, .csv      one row per epoch (train/val/test clean and robust, lr, times, DDi)
    RUN_DIR/steps.jsonl              one row per step (--log-steps)
    RUN_DIR/evals.jsonl              test-split PGD every --eval-every steps, with the training time
    RUN_DIR/log.txt                  human-readable log
    RUN_DIR/summary.json             final test evaluation of the best and last models
    RUN_DIR/checkpoints/last.pt      the latest state (every --checkpoint-every steps and each epoch end)
    RUN_DIR/checkpoints/best.pt      the state at the epoch of best validation robust accuracy
"""
