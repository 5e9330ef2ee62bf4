"""``python -m experiments.optima``: the m PGD optima of each image of a trained network (Figures 2 and 6).

The command's code is :mod:`experiments.figures.optima`.
"""

import sys

from experiments.figures.optima import main

if __name__ == "__main__":
    sys.exit(main())
