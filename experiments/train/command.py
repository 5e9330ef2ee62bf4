"""The command ``python -m experiments.train``: parse, set up, train, and exit with a status that says why.

See :mod:`experiments.train` for what a step is, the run directory and the exact-resume argument.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from experiments.common.checkpoints import CheckpointError
from experiments.common.data import DataError
from experiments.train.config import ConfigError, parse_config
from experiments.train.trainer import StopRequested, Trainer

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

    config = parse_config(argv)
    _configure(config)
    info = distributed.setup()
    trainer = None
    try:
        trainer = Trainer(config, info)

        def request_stop(signum, frame):
            trainer.stop_requested = True  # acted on after the step in progress, see Trainer.train_epoch

        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            trainer.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return EXIT_OK
    except (DataError, CheckpointError, ConfigError) as exc:
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

