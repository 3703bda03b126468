"""`python -m services.launcher ...` is the same as `aoc ...`."""

import sys

from services.launcher.cli import main

if __name__ == "__main__":
    sys.exit(main())
