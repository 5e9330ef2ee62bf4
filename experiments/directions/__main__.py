"""``python -m experiments.directions CHECKPOINT``: see :mod:`experiments.directions`."""

import sys

from experiments.directions.cli import main

sys.exit(main())
