"""``python -m experiments.train`` (see :mod:`experiments.train.command`)."""

import sys

from experiments.train.command import main

if __name__ == "__main__":
    sys.exit(main())
