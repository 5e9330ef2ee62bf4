"""``python -m experiments.train``: adversarial training with every variant of the paper, resumable exactly.

Run ``python -m experiments.train --help`` for the options. One optimizer step is: the global batch (order
from :func:`experiments.common.batches.epoch_permutation`, augmentation seeded per batch), the global torch
generator reseeded from ``(seed, step)``, ``DescentStep`` (attacks, m gradients, Danskin direction into
``p.grad``), ``optimizer.step()``. Because every random choice is a function of the seed and the step counter,
and the model, optimizer, scheduler, scaler, ``DescentStep`` state, RNG states and per-epoch accumulators are
checkpointed atomically, a run killed at any moment and resumed with ``--resume`` takes exactly the steps of
an uninterrupted run (bit for bit on CPU with ``--deterministic``; also seen bit for bit on an H200 with
``--deterministic``). SIGTERM (a cluster's preemption) checkpoints the finished step first.

Run directory::

    RUN_DIR/config.json              the full configuration, command line, versions
    RUN_DIR/metrics.jsonl, .csv      one row per epoch (train/val/test clean and robust, lr, times, DDi)
    RUN_DIR/steps.jsonl              one row per step (--log-steps)
    RUN_DIR/log.txt                  human-readable log
    RUN_DIR/summary.json             final test evaluation of the best and last models
    RUN_DIR/checkpoints/last.pt      the latest state (every --checkpoint-every steps and each epoch end)
    RUN_DIR/checkpoints/best.pt      the state at the epoch of best validation robust accuracy
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from experiments import cli
from experiments.common.checkpoints import CheckpointError
from experiments.common.data import DataError
from experiments.runner import StopRequested, Trainer

__all__ = ["main"]

EXIT_OK, EXIT_USAGE, EXIT_NONFINITE, EXIT_TERMINATED = 0, 2, 3, 143


def _configure(config: dict) -> None:
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    if config["deterministic"]:
        # cuBLAS needs this before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = True


def main(argv=None) -> int:
    """Run the command line; return the exit status.

    0: done; 2: bad command line, missing data or unusable checkpoint; 3: non-finite loss (the last good
    checkpoint is kept); 143: stopped by SIGTERM (e.g. a cluster's preemption) after checkpointing the last
    finished step; 130: Ctrl-C (the last periodic checkpoint is kept).
    """
    from minmax.torch import distributed
    from minmax.torch.descent import NonFiniteLossError

    config = cli.parse_config(argv)
    _configure(config)
    info = distributed.setup()
    trainer = None
    try:
        trainer = Trainer(config, info)

        def request_stop(signum, frame):
            trainer.stop_requested = True  # acted on after the step in progress, see epochs.train_epoch

        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            trainer.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return EXIT_OK
    except (DataError, CheckpointError, cli.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLossError as exc:
        message = f"stopped: non-finite loss: {exc}"
        if trainer is not None:
            message = (f"stopped: non-finite loss at optimizer step {trainer.global_step + 1}: {exc}. "
                       f"{trainer.describe_last_checkpoint()}")
            trainer.log.info(message)
            trainer.log.write_json("summary.json", {"status": "non-finite loss", "message": message,
                                                    "global_step": trainer.global_step})
        if distributed.is_main():
            print(f"error: {message}", file=sys.stderr)
        return EXIT_NONFINITE
    except StopRequested as exc:
        trainer.log.info(f"{exc}; {trainer.describe_last_checkpoint()}")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        if trainer is not None:
            trainer.log.info(f"interrupted; {trainer.describe_last_checkpoint()}")
        return 130
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    sys.exit(main())
