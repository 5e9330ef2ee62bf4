"""``python -m experiments.synthetic``: the paper's synthetic experiments (Figure 1, counterexamples 1 and 2).

The command's code is :mod:`experiments.figures.synthetic`.
"""

import sys

from experiments.figures.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
