"""Every database test runs on each backend: SQLite, a private PostgreSQL
started by testing.postgresql (once through psycopg2, once through psycopg
3), and MariaDB on the running server, each in throw-away databases made
for this run. A backend's `name` is its database ("postgresql" for both
drivers); the test ids name the driver too.

A backend that cannot be had fails the run when ROLE_STASH_REQUIRE_ALL_BACKENDS
or CI is set (as .ci/run does); elsewhere its tests skip, and the summary
says so in capitals. ROLE_STASH_TEST_BACKENDS (names, comma separated)
runs the database tests on those backends only: the others' are not
collected at all (mutation testing runs one set of backends, then another).
"""

import collections
import contextlib
import fcntl
import logging
import os
import pathlib
import random
import re
import sqlite3
import string
import struct
import tempfile
import termios
import threading
import time

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from oslo_db.sqlalchemy import provision
from pymysql import connections as pymysql_connections
from pymysql.constants import COMMAND as PYMYSQL_COMMAND
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
import testing.postgresql

from role_stash.db import api
from role_stash.db import dialects
from role_stash import exception
from role_stash.db import migration
from role_stash.db import models

ALL_BACKENDS = ("sqlite", "postgresql", "postgresql-psycopg", "mariadb")


def _chosen_backends(names):
    """The backends of ROLE_STASH_TEST_BACKENDS, in ALL_BACKENDS' order;
    all of them when it is empty. An unknown name fails the run: a typo
    must not leave a backend untested unnoticed."""
    chosen = {name.strip() for name in names.split(",") if name.strip()}
    unknown = chosen.difference(ALL_BACKENDS)
    if unknown:
        raise pytest.UsageError(
            f"ROLE_STASH_TEST_BACKENDS names no backend {sorted(unknown)}; "
            f"the backends are {', '.join(ALL_BACKENDS)}")
    return tuple(name for name in ALL_BACKENDS
                 if name in chosen) or ALL_BACKENDS


BACKENDS = _chosen_backends(os.environ.get("ROLE_STASH_TEST_BACKENDS", ""))
MARIADB_ADMIN_URL = os.environ.get(
    "ROLE_STASH_TEST_MARIADB_URL",
    "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
STRICT = bool(os.environ.get("ROLE_STASH_REQUIRE_ALL_BACKENDS")
              or os.environ.get("CI"))
PG_WRAPPER = pathlib.Path(__file__).with_name("pg_as_postgres.sh")

_unavailable = {}
_outcomes = collections.defaultdict(collections.Counter)

# Property-based tests (hypothesis). The default profile, "ci", is what the
# README's test command and CI run: derandomized (the same cases on every
# run, so a red CI run is reproducible), no example database on disk, no
# deadline (this machine is shared: no timed assertion). ROLE_STASH_HYPOTHESIS
# =long runs many more cases, each run a new random draw (a failure prints
# the blob that replays it: @reproduce_failure).
_HYPOTHESIS_COMMON = {
    "database": None,
    "deadline": None,
    "print_blob": True,
    # One cleaned repository per test serves all of its examples: each
    # example writes under UUIDs of its own.
    "suppress_health_check": [HealthCheck.function_scoped_fixture,
                              HealthCheck.too_slow,
                              HealthCheck.data_too_large],
}
hypothesis_settings.register_profile(
    "ci", max_examples=250, derandomize=True, **_HYPOTHESIS_COMMON)
hypothesis_settings.register_profile(
    "long", max_examples=5000, derandomize=False, **_HYPOTHESIS_COMMON)
# Mutation testing runs every mutant's tests: fewer cases each.
hypothesis_settings.register_profile(
    "mutation", max_examples=25, derandomize=True, **_HYPOTHESIS_COMMON)
HYPOTHESIS_PROFILE = os.environ.get("ROLE_STASH_HYPOTHESIS", "ci")
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)
_generated_cases = collections.Counter()


@pytest.fixture(scope="session")
def generated_cases():
    """A counter of the generated cases run, by backend (or "no database"),
    reported in the terminal summary."""
    return _generated_cases


def _ident():
    return "role_stash_" + "".join(random.choices(string.ascii_lowercase, k=10))


class SQLiteServer:
    """Hands out SQLite files in a folder of this run."""

    name = param = "sqlite"

    def __init__(self):
        # In memory where the machine has a tmpfs: a commit's fsync is
        # what a SQLite test waits on most, and a test database needs no
        # durability.
        shared_memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self._folder = tempfile.TemporaryDirectory(prefix="role_stash_",
                                                   dir=shared_memory)

    def new_database(self):
        return f"sqlite:///{self._folder.name}/{_ident()}.sqlite"

    def drop_database(self, url):
        pathlib.Path(make_url(url).database).unlink(missing_ok=True)

    def close(self):
        self._folder.cleanup()

    @contextlib.contextmanager
    def statements_run(self, statements):
        """Yield while SQLite's trace of every connection (set when each
        connects, see _trace_sqlite) appends to statements."""
        with _recording_into(statements):
            yield


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

    @contextlib.contextmanager
    def statements_run(self, statements):
        """Yield; meanwhile every statement the server receives goes to
        statements: on PostgreSQL read from its statement log afterwards
        (log_statement=all), on MariaDB counted as PyMySQL sends each
        command (see _counted_pymysql_command)."""
        if self._server is None:
            with _recording_into(statements):
                yield
            return
        log = pathlib.Path(self._server.base_dir, f"{self._server.name}.log")
        start = log.stat().st_size
        yield
        with log.open("rb") as lines:
            lines.seek(start)
            statements.extend(_logged_statements(lines.read().decode(
                "utf-8", "replace")))


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
    # Every statement in the server's log, its lines marked with the
    # session: what count_statements reads.
    settings["postgres_args"] = (
        testing.postgresql.Postgresql.DEFAULT_SETTINGS["postgres_args"]
        + f" -c log_statement=all -c log_line_prefix={_LOG_MARK}%p@@")
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


@pytest.fixture(autouse=True)
def _statements_built_in_each_test():
    """Under mutmut (MUTANT_UNDER_TEST set: "stats", or a mutant's name),
    each test builds the dialects' Statements anew. Built once per
    process, they would be built by the first test alone: mutmut would
    credit only that test with the statement builders, and a child
    forked after they were built would never run a mutated builder."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        dialects._built.clear()


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


def _empty_tables(engine):
    with engine.begin() as connection:
        for table in reversed(models.Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def repository(_session_repository):
    """A StashRepository on a migrated database, emptied after the test."""
    yield _session_repository
    _empty_tables(_session_repository.context_manager.writer.get_engine())


@pytest.fixture(autouse=True)
def _shared_database_emptied(request):
    """After a test that took the shared migrated database without the
    repository fixture (which empties it), its tables are emptied too: a
    row it left would count in whichever test comes next, and mutmut runs
    a mutant's tests in an order of its own."""
    yield
    if ("migrated_url" in request.fixturenames
            and "repository" not in request.fixturenames):
        engine = sa.create_engine(request.getfixturevalue("migrated_url"))
        try:
            _empty_tables(engine)
        finally:
            engine.dispose()


@pytest.fixture
def table_rows(repository):
    """table_rows(table): every row of a role_stash table (a name or a
    Table), as tuples in the order of its primary key."""
    engine = repository.context_manager.writer.get_engine()

    def read(table):
        if isinstance(table, str):
            table = models.Base.metadata.tables[table]
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                sa.select(table).order_by(*table.primary_key.columns))]

    return read


# The audit of a load run: what its callers were told, against what the
# database holds.

class Call(collections.namedtuple(
        "Call", "instance action payload outcome started ended result")):
    """One repository call of a load run, as its caller saw it: action
    create, replace, delete or read; payload (project_id, user_id, roles)
    of a write; outcome "ok" or the error's class name ("raw ..." for an
    error that is not role_stash's); result the payload a write or read
    returned (None for no stash), or a delete's bool."""

    @property
    def in_doubt(self):
        """A write or delete that failed with a database error: it may
        have committed."""
        return self.outcome in ("DatabaseError", "DatabaseUnavailable",
                                "DatabaseDeadlock")


def payload_of(stash):
    return None if stash is None else (stash.project_id, stash.user_id,
                                       tuple(stash.roles))


class Ledger:
    """The calls of a load run, as their callers saw them: each worker
    thread records its calls here; a forked worker records in its copy and
    hands back exported() for the parent to add()."""

    def __init__(self):
        self.calls = []
        self._lock = threading.Lock()

    def call(self, repository, instance, action, payload=None):
        """Run one repository call, record and return its Call (errors
        recorded, never raised)."""
        started = time.monotonic()
        result = None
        try:
            if action == "delete":
                result = repository.delete_stash(instance, missing_ok=True)
            elif action == "read":
                try:
                    result = payload_of(repository.get_stash(instance))
                except exception.StashNotFound:
                    result = None
            else:
                project_id, user_id, roles = payload
                result = payload_of(repository.stash_roles(
                    instance, project_id=project_id, user_id=user_id,
                    roles=list(roles), replace=action == "replace"))
            outcome = "ok"
        except exception.RoleStashError as error:
            outcome = type(error).__name__
        except Exception as error:
            outcome = f"raw {type(error).__name__}: {error}"
        call = Call(instance, action, payload, outcome, started,
                    time.monotonic(), result)
        with self._lock:
            self.calls.append(call)
        return call

    def exported(self):
        """The calls as plain tuples, to cross a process boundary."""
        with self._lock:
            return [tuple(call) for call in self.calls]

    def add(self, exported):
        with self._lock:
            self.calls.extend(Call._make(call) for call in exported)

    def outcomes(self):
        """{(action, outcome): count}."""
        return collections.Counter((call.action, call.outcome)
                                   for call in self.calls)


@pytest.fixture
def ledger():
    """A new Ledger for a load run."""
    return Ledger()


def _database_rows(url, runs):
    """{instance: [(payload, live)]} of every stash row, deleted or not,
    of the instances whose UUID starts with one of runs (a load run's
    instances share their first group, so the rows of other tests are
    left out and the run's stray ones are not)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            stashes = connection.execute(sa.select(
                models.Stash.id, models.Stash.instance_uuid,
                models.Stash.project_id, models.Stash.user_id,
                models.Stash.deleted)).all()
            roles = collections.defaultdict(list)
            for stash_id, name in connection.execute(
                    sa.select(models.StashRole.stash_id, models.StashRole.name)
                    .order_by(models.StashRole.stash_id,
                              models.StashRole.position)):
                roles[stash_id].append(name)
    finally:
        engine.dispose()
    rows = collections.defaultdict(list)
    for stash_id, instance, project_id, user_id, deleted in stashes:
        if instance[:8] not in runs:
            continue
        rows[instance].append(
            ((project_id, user_id, tuple(roles[stash_id])), deleted == 0))
    return rows


def audit_calls(url, calls):
    """Compare what the callers were told with what the database at url
    holds; return the counts of the faults found (each must be 0) and of
    what was checked."""
    rows = _database_rows(url, {call.instance[:8] for call in calls})
    by_instance = collections.defaultdict(list)
    for call in calls:
        by_instance[call.instance].append(call)
    found = collections.Counter()
    for instance in set(by_instance) | set(rows):
        _audit_instance(by_instance[instance], rows[instance], found)
    found["calls"] = len(calls)
    found["acknowledged"] = sum(call.outcome == "ok" for call in calls)
    found["in doubt"] = sum(call.in_doubt for call in calls)
    found["raw errors"] = sum(call.outcome.startswith("raw")
                              for call in calls)
    return found


def _audit_instance(calls, rows, found):
    writes = [call for call in calls if call.action in ("create", "replace")]
    may_have_written = [call for call in writes
                        if call.outcome == "ok" or call.in_doubt]
    attempted = {call.payload for call in writes}
    # Torn: a row or a read holding a payload nobody sent (a partial role
    # set, one caller's ids with another's roles).
    found["torn"] += sum(payload not in attempted for payload, _ in rows)
    found["torn"] += sum(call.action == "read" and call.outcome == "ok"
                         and call.result not in attempted | {None}
                         for call in calls)
    found["rows"] += len(rows)
    if sum(live for _, live in rows) > 1:
        found["duplicate live rows"] += 1
    # Phantom: more rows of a payload than calls that may have written
    # one; more deleted rows than deletes that may have deleted one.
    held = collections.Counter(payload for payload, _ in rows)
    writers = collections.Counter(call.payload for call in may_have_written)
    found["phantom"] += sum(max(0, count - writers[payload])
                            for payload, count in held.items())
    deletes = [call for call in calls if call.action == "delete"]
    acknowledged_deletes = sum(call.outcome == "ok" and call.result
                               for call in deletes)
    deleted_rows = sum(not live for _, live in rows)
    found["phantom"] += max(0, deleted_rows - acknowledged_deletes - sum(
        call.in_doubt for call in deletes))
    # Lost: a delete that said it deleted and left no deleted row; a write
    # told to succeed whose payload is nowhere, though no replace that
    # could come after it wrote another over it.
    found["lost"] += max(0, acknowledged_deletes - deleted_rows)
    for write in writes:
        if write.outcome != "ok" or write.result in held:
            continue
        if not any(other.action == "replace" and other.payload != write.result
                   and other.ended > write.started
                   for other in may_have_written):
            found["lost"] += 1
    # The final state is one a serial order gives: that of the last call
    # told to succeed, or of a call that overlapped it.
    changes = [call for call in writes + deletes
               if call.outcome == "ok" or call.in_doubt]
    told = [call for call in changes if call.outcome == "ok"]
    if told:
        last = max(told, key=lambda call: call.ended)
        candidates = [call for call in changes if call.ended >= last.started]
        live = [payload for payload, is_live in rows if is_live]
        final = live[0] if live else None
        if not any(call.payload == final if call.action != "delete"
                   else final is None for call in candidates):
            found["lost"] += 1
    # A conflict is false when no other payload may have been live: a
    # replace never conflicts, a create only with another payload sent
    # before it ended.
    for call in calls:
        if call.outcome != "StashConflict":
            continue
        if call.action == "replace" or not any(
                other.payload != call.payload and other.started < call.ended
                for other in may_have_written):
            found["false conflicts"] += 1


_audits = []


@pytest.fixture
def audit(request):
    """audit(url, calls, **figures): the audit of a load run's calls
    against the database at url; each fault count must be 0, which the
    fixture asserts. The counts, with figures (writers, retries, faults
    injected), go to the run's summary."""
    backend = getattr(request.node, "callspec", None)
    backend = backend.params.get("server", "?") if backend else "?"

    def run(url, calls, **figures):
        found = audit_calls(url, calls)
        _audits.append((backend, request.node.name, found, figures))
        faults = {name: found[name] for name in (
            "lost", "phantom", "torn", "false conflicts", "raw errors",
            "duplicate live rows")}
        assert faults == dict.fromkeys(faults, 0), (found, [
            call for call in calls if call.outcome.startswith("raw")][:5])
        return found

    return run


class DatabaseEvents:
    """What oslo.db and SQLAlchemy saw while it listened: retries (oslo.db's
    "Performing DB retry" log line, per thread too) and database errors
    (SQLAlchemy's handle_error event), by kind."""

    def __init__(self):
        self.retries = 0
        self.retries_by_thread = collections.Counter()
        self.errors = collections.Counter()
        self._lock = threading.Lock()

    def retried(self, record):
        if record.getMessage().startswith("Performing DB retry"):
            with self._lock:
                self.retries += 1
                self.retries_by_thread[record.thread] += 1

    def failed(self, context):
        error = context.original_exception
        # MySQL's error number first: its deadlock's SQLSTATE is 40001.
        code = ((getattr(error, "args", None) or (None,))[0]
                if self._mysql(context) else
                getattr(error, "pgcode", None)
                or getattr(error, "sqlstate", None))
        kind = ("deadlock" if code in ("40P01", 1213)
                else "serialization failure" if code == "40001"
                else "disconnect" if context.is_disconnect
                else type(error).__name__)
        with self._lock:
            self.errors[kind] += 1

    @staticmethod
    def _mysql(context):
        return context.dialect.name in ("mysql", "mariadb")


class _RetryLog(logging.Handler):
    def __init__(self, events):
        super().__init__(logging.DEBUG)
        self.events = events

    def emit(self, record):
        self.events.retried(record)


@pytest.fixture
def database_events():
    """A DatabaseEvents listening for the test's length (in forked
    children too: each counts its own)."""
    events = DatabaseEvents()
    logger = logging.getLogger("oslo_db.api")
    handler = _RetryLog(events)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    sa.event.listen(sa.Engine, "handle_error", events.failed)
    try:
        yield events
    finally:
        sa.event.remove(sa.Engine, "handle_error", events.failed)
        logger.removeHandler(handler)
        logger.setLevel(level)



class Statement(str):
    """A statement as the database received it (bound values inlined, but
    psycopg 3's, which the server logs apart as parameters)."""

    def __new__(cls, sql, parameters=None):
        statement = super().__new__(cls, sql)
        statement.parameters = parameters
        return statement

    def __repr__(self):
        return f"Statement({str(self)!r}, {self.parameters!r})"

    @property
    def verb(self):
        """The statement's first word, in capitals."""
        return (self.split(None, 1) or [""])[0].upper()

    @property
    def is_bookkeeping(self):
        """A pool's ping, a new connection's settings or transaction
        control: no work of the caller's."""
        return (self.verb in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT",
                              "RELEASE", "PING", "PRAGMA", "SET")
                # SQLAlchemy's pings: SELECT 1, and psycopg 3's empty ;
                or self.strip().upper() in ("SELECT 1", ";"))


# Statements go to _recording while a test counts them.
_recording = None


@contextlib.contextmanager
def _recording_into(statements):
    global _recording
    _recording = statements
    try:
        yield
    finally:
        _recording = None


# SQLite runs in-process: its trace sees every statement each connection
# runs. Its transaction control is left out: in-process, no round trip.
_IN_PROCESS = ("BEGIN", "COMMIT", "ROLLBACK")


def _sqlite_statement(sql):
    if _recording is not None and not sql.strip().upper().startswith(
            _IN_PROCESS):
        _recording.append(Statement(sql))


@sa.event.listens_for(sa.pool.Pool, "connect")
def _trace_sqlite(dbapi_connection, connection_record):
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.set_trace_callback(_sqlite_statement)


# MariaDB: every command PyMySQL sends the server (COMMIT and pings
# included), as the benchmark counts its round trips.
_send_pymysql_command = pymysql_connections.Connection._execute_command
_PYMYSQL_COMMANDS = {value: name[4:] for name, value in
                     vars(PYMYSQL_COMMAND).items() if name.startswith("COM_")}


def _counted_pymysql_command(connection, command, sql):
    if _recording is not None:
        if isinstance(sql, (bytes, bytearray)):
            sql = sql.decode("utf-8", "replace")
        _recording.append(Statement(
            sql if command == PYMYSQL_COMMAND.COM_QUERY
            else _PYMYSQL_COMMANDS.get(command, str(command))))
    return _send_pymysql_command(connection, command, sql)


pymysql_connections.Connection._execute_command = _counted_pymysql_command

# PostgreSQL's log: each message's first line starts with the mark and
# the session's pid; a statement's further lines follow unmarked.
_LOG_MARK = "@@role_stash@@"
_LOG_ENTRY = re.compile(re.escape(_LOG_MARK) + r"\d+@@(\w+):  ")
_LOGGED = re.compile(r"(?:statement|execute [^:]+): ", re.S)


def _logged_statements(text):
    """The Statements of a stretch of PostgreSQL's log (psycopg 3's
    parameters from the DETAIL line after each)."""
    statements = []
    entries = _LOG_ENTRY.split(text)
    # ["", level, message, level, message, ...]
    for level, message in zip(entries[1::2], entries[2::2]):
        message = message.rstrip("\n")
        if level == "LOG" and _LOGGED.match(message):
            statements.append(Statement(_LOGGED.sub("", message, count=1)))
        elif (level == "DETAIL" and message.startswith("parameters: ")
              and statements):
            statements[-1].parameters = message[len("parameters: "):]
    return statements


@pytest.fixture
def count_statements(server):
    """count_statements(): a block that collects every statement the
    test's database receives while in it, counted on the database's side
    of the driver, as the benchmark counts round trips: PostgreSQL's
    statement log, every command PyMySQL sends, SQLite's trace (less its
    in-process BEGIN, COMMIT and ROLLBACK). Whatever path a statement
    takes (SQLAlchemy's Connection or a raw cursor), it is seen. A
    Statement's is_bookkeeping says it is a ping or transaction control."""

    @contextlib.contextmanager
    def counting():
        statements = []
        with server.statements_run(statements):
            yield statements

    return counting


@pytest.fixture
def transactions():
    """transactions(): a block that records every transaction any engine
    commits while in it, as the list of its statements: Statement values
    whose rowcount is the rows the server said each one changed (the
    driver's cursor.rowcount). Rolled-back transactions are left out."""

    @contextlib.contextmanager
    def recording():
        committed = []
        open_transactions = {}

        def begin(conn):
            open_transactions[id(conn)] = []

        def executed(conn, cursor, statement, parameters, context, many):
            recorded = open_transactions.get(id(conn))
            if recorded is not None and statement != "BEGIN":
                recorded.append(Statement(statement, parameters))
                recorded[-1].rowcount = cursor.rowcount

        def commit(conn):
            committed.append(open_transactions.pop(id(conn), []))

        def rollback(conn):
            open_transactions.pop(id(conn), None)

        listeners = (("begin", begin), ("after_cursor_execute", executed),
                     ("commit", commit), ("rollback", rollback))
        for name, listener in listeners:
            sa.event.listen(sa.Engine, name, listener)
        try:
            yield committed
        finally:
            for name, listener in listeners:
                sa.event.remove(sa.Engine, name, listener)

    return recording


_backend_of = {}


def pytest_collection_modifyitems(config, items):
    # A test's own choice of backend (parametrize("server", [...],
    # indirect=True)) is of the chosen ones too.
    kept, deselected = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "server" in callspec.params:
            if callspec.params["server"] not in BACKENDS:
                deselected.append(item)
                continue
            _backend_of[item.nodeid] = callspec.params["server"]
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


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
    for backend, test, found, figures in _audits:
        terminalreporter.write_line(
            f"role_stash audit {backend} {test}: " + ", ".join(
                [f"{name} {value}" for name, value in figures.items()]
                + [f"{name} {found[name]}" for name in (
                    "calls", "acknowledged", "in doubt", "rows", "lost",
                    "phantom", "torn", "false conflicts")]))
    if _generated_cases:
        terminalreporter.write_line(
            f"role_stash generated cases ({HYPOTHESIS_PROFILE} profile): {sum(_generated_cases.values())} in all; " + ", ".join(
                f"{name} {count}" for name, count in sorted(
                    _generated_cases.items())))
    for name, reason in _unavailable.items():
        terminalreporter.write_line(
            f"BACKEND {name.upper()} MISSING: its tests did not run ({reason})",
            red=True, bold=True)


class Terminal:
    """A pseudo-terminal of 24 rows of 80 columns, as a terminal has (a new
    one has none, and a progress bar sized to it draws nothing)."""

    def __init__(self):
        self._leader, self.fd = os.openpty()
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 24, 80, 0, 0))

    def read(self):
        """Close the terminal's end and return all that was written to it."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        drawn = b""
        while True:
            try:
                chunk = os.read(self._leader, 65536)
            except OSError:  # EIO: the other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
        return drawn.decode(errors="replace")

    def close(self):
        self.read()
        os.close(self._leader)


@pytest.fixture
def terminal():
    """A Terminal, closed after the test."""
    opened = Terminal()
    yield opened
    opened.close()
