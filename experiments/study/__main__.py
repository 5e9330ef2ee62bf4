"""``python -m experiments.study`` (see :mod:`experiments.study.command`)."""

import sys

from experiments.study.command import main

if __name__ == "__main__":
    sys.exit(main())
