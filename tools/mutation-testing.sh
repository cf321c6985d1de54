#!/usr/bin/env bash
# Mutation testing of validation.py, api.py, engines.py and dialects.py
# with mutmut (doc/source/contributor/mutation-testing.rst): not part of the default test run.
# mutmut copies role_stash/ and tests/ into mutants/ and runs each mutant
# against the tests that reach the mutated function (pyproject.toml's
# [tool.mutmut]). The migrations go in as the installed package has them,
# mutants/role_stash/migrations: a copy of the root alembic/ folder beside
# role_stash/ would be on sys.path, where it must never stand for the
# alembic library.
#
#   tools/mutation-testing.sh            # run (resumes an earlier run)
#   tools/mutation-testing.sh --fresh    # forget the earlier run first
#   tools/mutation-testing.sh --fresh 'role_stash.db.validation.*'  # a module
#   ROLE_STASH_TEST_BACKENDS=postgresql,postgresql-psycopg,mariadb \
#       tools/mutation-testing.sh --max-children 2 <mutant names>  # rerun
#                                        # survivors on the server backends
#   .venv/bin/mutmut results             # list the survivors
#   .venv/bin/mutmut show <mutant name>  # a survivor's diff
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fresh" ]; then
    rm -rf mutants
    shift
fi
# Each mutant runs its tests' generated cases: 25 per test, not CI's 250.
export ROLE_STASH_HYPOTHESIS="${ROLE_STASH_HYPOTHESIS:-mutation}"
# The backends of the database tests (tests/fixtures/servers.py): SQLite, fast
# enough for every mutant, unless told otherwise.
export ROLE_STASH_TEST_BACKENDS="${ROLE_STASH_TEST_BACKENDS:-sqlite}"
mkdir -p mutants/role_stash
rm -rf mutants/role_stash/migrations
cp -r alembic mutants/role_stash/migrations
exec .venv/bin/mutmut run "$@"
