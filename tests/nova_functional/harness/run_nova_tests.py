"""Run Nova's own test classes, unit or functional, in this process, on the
Nova that PYTHONPATH puts first (the patched copy), and print one JSON line
of counts last. Started as a process of its own by tests/nova_functional:
Nova's test packages monkey-patch the process with eventlet.

    python run_nova_tests.py [--pattern REGEX] NAME [NAME ...]

NAME is a dotted test module, class or method; --pattern keeps the tests
whose id it matches. Exit 0 when every test ran passed, 1 otherwise.
"""

import argparse
import json
import os
import re
import sys
import unittest
import warnings

# As Nova's own test packages do, before anything else is imported.
from nova import monkey_patch

monkey_patch.patch()

from nova.tests import fixtures as nova_fixtures  # noqa: E402
from sqlalchemy import exc as sqla_exc  # noqa: E402

# Nova's WarningsFixture turns every SQLAlchemy deprecation raised by
# Nova's code into an error; SQLAlchemy 2.1 deprecates noload(), which
# Nova's own _build_instance_get still calls. That one warning is let be.
_fixture_set_up = nova_fixtures.WarningsFixture.setUp


def _set_up_with_noload_allowed(self):
    _fixture_set_up(self)
    warnings.filterwarnings(
        "ignore", message=r"The noload\(\) option is deprecated",
        category=sqla_exc.SADeprecationWarning)


nova_fixtures.WarningsFixture.setUp = _set_up_with_noload_allowed


def _flattened(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _flattened(test)
        else:
            yield test


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pattern", default=None)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    tests = list(_flattened(unittest.defaultTestLoader.loadTestsFromNames(
        args.names)))
    if args.pattern is not None:
        wanted = re.compile(args.pattern)
        tests = [test for test in tests if wanted.search(test.id())]
    # Nova's fixtures swap sys.stdout and sys.stderr per test: the report
    # goes to the process's own descriptors.
    report = os.fdopen(os.dup(2), "w")
    result = unittest.TextTestRunner(stream=report, verbosity=2).run(
        unittest.TestSuite(tests))
    report.flush()
    counts = {"run": result.testsRun, "failures": len(result.failures),
              "errors": len(result.errors), "skipped": len(result.skipped),
              "unexpected_successes": len(result.unexpectedSuccesses)}
    with os.fdopen(os.dup(1), "w") as out:
        print(json.dumps(counts), file=out, flush=True)
    return 0 if result.wasSuccessful() and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main())
