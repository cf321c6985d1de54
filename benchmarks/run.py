"""`python benchmarks/run.py`: the benchmark's older command, kept working."""

import pathlib
import sys

# Run as a script, Python puts benchmarks/ itself first on the path; the
# package needs the folder above it instead.
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from benchmarks import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.main())
