"""``python -m experiments.evaluate`` (see :mod:`experiments.evaluate.command`)."""

import sys

from experiments.evaluate.command import main

if __name__ == "__main__":
    sys.exit(main())
