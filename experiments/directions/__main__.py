"""``python -m experiments.directions CHECKPOINT``: see :mod:`experiments.directions`."""

import sys

from experiments.directions.cli import main

if __name__ == "__main__":
    sys.exit(main())
