"""Every database test runs on each backend: SQLite, a private PostgreSQL
started by testing.postgresql (once through psycopg2, once through psycopg
3), and MariaDB on the running server, each in throw-away databases made
for this run. A backend's `name` is its database ("postgresql" for both
drivers); the test ids name the driver too.

A backend that cannot be had fails the run when ROLE_STASH_REQUIRE_ALL_BACKENDS
or CI is set (as .ci/run does); elsewhere its tests skip, and the summary
says so in capitals.
"""

import collections
import contextlib
import os
import pathlib
import random
import string
import tempfile

from oslo_db.sqlalchemy import provision
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
import testing.postgresql

from role_stash import api
from role_stash import migration
from role_stash import models

BACKENDS = ("sqlite", "postgresql", "postgresql-psycopg", "mariadb")
MARIADB_ADMIN_URL = os.environ.get(
    "ROLE_STASH_TEST_MARIADB_URL",
    "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
STRICT = bool(os.environ.get("ROLE_STASH_REQUIRE_ALL_BACKENDS")
              or os.environ.get("CI"))
PG_WRAPPER = pathlib.Path(__file__).with_name("pg_as_postgres.sh")

_unavailable = {}
_outcomes = collections.defaultdict(collections.Counter)


def _ident():
    return "role_stash_" + "".join(random.choices(string.ascii_lowercase, k=10))


class SQLiteServer:
    """Hands out SQLite files in a folder of this run."""

    name = param = "sqlite"

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="role_stash_")

    def new_database(self):
        return f"sqlite:///{self._folder.name}/{_ident()}.sqlite"

    def drop_database(self, url):
        pathlib.Path(make_url(url).database).unlink(missing_ok=True)

    def close(self):
        self._folder.cleanup()


class ProvisionedServer:
    """Hands out databases on a server, made and dropped by oslo.db."""

    def __init__(self, name, admin_url, server=None):
        self.name = make_url(admin_url).get_backend_name()
        self.param = name
        self._server = server
        self._admin_url = make_url(admin_url)
        self._impl = provision.BackendImpl.impl(self._admin_url.drivername)
        self._engine = sa.create_engine(self._admin_url)
        with self._engine.connect():
            pass

    def new_database(self):
        ident = _ident()
        self._impl.create_named_database(self._engine, ident)
        url = self._impl.provisioned_database_url(self._admin_url, ident)
        return url.render_as_string(hide_password=False)

    def drop_database(self, url):
        self._impl.drop_named_database(self._engine, make_url(url).database)

    def close(self):
        self._engine.dispose()
        if self._server is not None:
            self._server.stop()


def _private_postgresql(driver="psycopg2"):
    """Start a throw-away PostgreSQL server, reached through driver; as
    root, through the wrapper that runs its binaries as the postgres
    user."""
    settings = {}
    if os.geteuid() == 0:
        bindir = os.path.dirname(testing.postgresql.find_program(
            "initdb", ["bin"]))
        links = tempfile.mkdtemp(prefix="role_stash_pg_bin_")
        for program in ("initdb", "postgres"):
            os.symlink(PG_WRAPPER, os.path.join(links, program))
            settings[program] = os.path.join(links, program)
        os.environ["ROLE_STASH_PG_BINDIR"] = bindir
    server = testing.postgresql.Postgresql(**settings)
    admin_url = make_url(server.url()).set(drivername=f"postgresql+{driver}")
    return ProvisionedServer(
        "postgresql" if driver == "psycopg2" else f"postgresql-{driver}",
        admin_url, server)


_SERVER_FACTORIES = {
    "sqlite": SQLiteServer,
    "postgresql": _private_postgresql,
    "postgresql-psycopg": lambda: _private_postgresql("psycopg"),
    "mariadb": lambda: ProvisionedServer("mariadb", MARIADB_ADMIN_URL),
}


@pytest.fixture(scope="session", params=BACKENDS)
def server(request):
    """A backend that hands out throw-away databases."""
    name = request.param
    if name in _unavailable:
        _skip_or_fail(name)
    try:
        backend = _SERVER_FACTORIES[name]()
    except Exception as error:
        _unavailable[name] = f"{type(error).__name__}: {error}"
        _skip_or_fail(name)
    yield backend
    backend.close()


def _skip_or_fail(name):
    message = f"backend {name} unavailable: {_unavailable[name]}"
    if STRICT:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def database_url(server):
    """The URL of a new, empty database, dropped after the test."""
    url = server.new_database()
    yield url
    server.drop_database(url)


# Nothing listens on port 1; no folder /nonexistent-folder exists.
UNREACHABLE_URLS = {
    "sqlite": "sqlite:////nonexistent-folder/role_stash.sqlite",
    "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:1/test",
    "postgresql-psycopg": "postgresql+psycopg://postgres@127.0.0.1:1/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:1/test?charset=utf8mb4",
}


@pytest.fixture
def unreachable_url(server):
    """A URL on the test's backend that cannot be reached."""
    return UNREACHABLE_URLS[server.param]


@pytest.fixture(scope="session")
def migrated_url(server):
    """A database of this run, migrated to head, shared by the tests."""
    url = server.new_database()
    upgrade(url)
    yield url
    server.drop_database(url)


def upgrade(url, target="head"):
    """Migrate the database at url to target through Alembic."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            migration.upgrade(connection, target)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _session_repository(migrated_url):
    repository = api.StashRepository.from_url(migrated_url)
    yield repository
    repository.close()


@pytest.fixture
def repository(_session_repository):
    """A StashRepository on a migrated database, emptied after the test."""
    yield _session_repository
    engine = _session_repository._context_manager.writer.get_engine()
    with engine.begin() as connection:
        for table in reversed(models.Base.metadata.sorted_tables):
            connection.execute(table.delete())



class Statement(str):
    """A statement's SQL, and the parameters it was sent with."""

    def __new__(cls, sql, parameters):
        statement = super().__new__(cls, sql)
        statement.parameters = parameters
        return statement

    def __repr__(self):
        return f"Statement({str(self)!r}, {self.parameters!r})"


@pytest.fixture
def count_statements():
    """count_statements(): a block that collects every statement any
    engine sends while in it (SQLAlchemy's before_cursor_execute event,
    which sees every statement role_stash runs), but the BEGIN oslo.db
    emits itself on SQLite connections, which runs in-process."""

    @contextlib.contextmanager
    def counting():
        statements = []

        def record(conn, cursor, statement, parameters, context, many):
            if not (conn.dialect.name == "sqlite" and statement == "BEGIN"):
                statements.append(Statement(statement, parameters))

        sa.event.listen(sa.Engine, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", record)

    return counting


_backend_of = {}


def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "server" in callspec.params:
            _backend_of[item.nodeid] = callspec.params["server"]


def pytest_runtest_logreport(report):
    name = _backend_of.get(report.nodeid)
    if name and (report.when == "call" or report.outcome != "passed"):
        _outcomes[name][report.outcome] += 1


def pytest_terminal_summary(terminalreporter):
    for name in BACKENDS:
        counts = _outcomes[name]
        terminalreporter.write_line(
            f"role_stash backend {name}: " + ", ".join(
                f"{counts[outcome]} {outcome}"
                for outcome in ("passed", "failed", "skipped")))
    for name, reason in _unavailable.items():
        terminalreporter.write_line(
            f"BACKEND {name.upper()} MISSING: its tests did not run ({reason})",
            red=True, bold=True)
