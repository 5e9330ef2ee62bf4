"""``python -m experiments.plot``: accuracy curves of runs (Figures 4, 5, 8), or ``--final`` comparisons.

The command's code is :mod:`experiments.figures.curves`.
"""

import sys

from experiments.figures.curves import main

if __name__ == "__main__":
    sys.exit(main())
