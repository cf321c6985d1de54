"""Run Nova's own test classes, unit or functional, in this process, on the
Nova that PYTHONPATH puts first (the patched copy), and print one JSON line
of counts last. Started as a process of its own by tests/nova_functional:
Nova's test packages monkey-patch the process with eventlet.

    python run_nova_tests.py NAME[:REGEX] [NAME[:REGEX] ...]

NAME is a dotted test module, class or method; REGEX keeps the tests of
NAME whose id it matches. The JSON line counts the tests run, failed,
in error and skipped, and the tests run of each NAME[:REGEX]. Exit 0 when
every NAME ran tests and every test ran passed, 1 otherwise.
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
    parser.add_argument("selections", nargs="+", metavar="NAME[:REGEX]")
    args = parser.parse_args(argv)
    tests = []
    selected = {}
    for selection in args.selections:
        name, _, pattern = selection.partition(":")
        found = [test for test in _flattened(
            unittest.defaultTestLoader.loadTestsFromName(name))
            if re.search(pattern, test.id())]
        selected[selection] = len(found)
        tests += found
    # Nova's fixtures swap sys.stdout and sys.stderr per test: the report
    # goes to the process's own descriptors.
    report = os.fdopen(os.dup(2), "w")
    result = unittest.TextTestRunner(stream=report, verbosity=2).run(
        unittest.TestSuite(tests))
    report.flush()
    counts = {"run": result.testsRun, "failures": len(result.failures),
              "errors": len(result.errors), "skipped": len(result.skipped),
              "expected_failures": len(result.expectedFailures),
              "unexpected_successes": len(result.unexpectedSuccesses),
              "selected": selected}
    with os.fdopen(os.dup(1), "w") as out:
        print(json.dumps(counts), file=out, flush=True)
    return 0 if result.wasSuccessful() and all(selected.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
