"""`python -m benchmarks`: run the benchmark from the command line."""

import sys

from benchmarks import cli

if __name__ == "__main__":
    sys.exit(cli.main())
