"""``python -m ctexplore``: the same command line as the ``ctexplore`` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
