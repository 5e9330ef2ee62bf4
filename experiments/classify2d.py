"""``python -m experiments.classify2d``: the 2-D binary classification problem (Figure 3).

The command's code is :mod:`experiments.figures.classify2d`.
"""

import sys

from experiments.figures.classify2d import main

if __name__ == "__main__":
    sys.exit(main())
