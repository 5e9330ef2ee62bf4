"""``python -m experiments.evaluate`` (interim: the command moves to experiments/evaluate/)."""

import sys

from experiments.robust_eval import main

if __name__ == "__main__":
    sys.exit(main())
