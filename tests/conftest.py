"""Every database test runs on each backend: SQLite, PostgreSQL (through
psycopg2 and psycopg 3) and MariaDB, in throw-away databases made for this
run (tests/fixtures/servers.py says how, and which environment variables
choose the backends). The fixtures live in tests/fixtures/, one module a
concern; plain constants and functions in tests/helpers.py."""

import os

import pytest

from role_stash.db import dialects

# Its asserts (wait_until's) report as a test's own do.
pytest.register_assert_rewrite("tests.helpers")

# pytest calls the summaries of the plugins registered last first: listed
# so that the run's summary gives the backends' counts, then the load
# runs' audits, then the generated cases. statements comes before servers,
# which imports it.
pytest_plugins = [
    "tests.fixtures.terminal",
    "tests.fixtures.logs",
    "tests.fixtures.generated_cases",
    "tests.fixtures.audit",
    "tests.fixtures.statements",
    "tests.fixtures.servers",
    "tests.fixtures.repositories",
]


@pytest.fixture(autouse=True)
def _statements_built_in_each_test():
    """Under mutmut (MUTANT_UNDER_TEST set: "stats", or a mutant's name),
    each test builds the dialects' Statements anew. Built once per
    process, they would be built by the first test alone: mutmut would
    credit only that test with the statement builders, and a child
    forked after they were built would never run a mutated builder."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        dialects._built.clear()
