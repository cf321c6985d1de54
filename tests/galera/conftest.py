"""A MariaDB Galera cluster of three nodes on this machine, started and
stopped by the tests: Debian's galera-4 provider under the installed
mariadbd, each node with its own data folder and loopback ports (client,
gcomm, IST, SST), joined by rsync SST, and every server process running as
the mysql user (rsync SST fails as root, and CI runs as root).

The tests write through every node, kill nodes, and audit what the callers
were told against what each node holds. ROLE_STASH_GALERA=full runs the
long form (longer loads, more writers, every node killed in turn); the
default run, CI's, is the short form of the same tests. The cluster is
in cluster.py, the writers and their ledger in load.py; here, the
fixtures that give them to the tests.
"""

import contextlib
import threading
import time

import pymysql
import pytest
import sqlalchemy as sa

from role_stash.db import api
from role_stash.db import models
from tests import helpers
from tests.fixtures import logs
from tests.galera import cluster as galera_cluster
from tests.galera import load

# --- What the run measured, for the summary -------------------------------

_figures = []
_unavailable = []


@pytest.fixture(scope="session")
def galera_report():
    """galera_report(test, **figures): figures printed in the run's summary."""
    def record(test, **figures):
        _figures.append((test, figures))
    return record


def pytest_terminal_summary(terminalreporter):
    for test, figures in _figures:
        terminalreporter.write_line(
            f"role_stash galera {test}: " + ", ".join(
                f"{name} {value}" for name, value in figures.items()))
    for reason in _unavailable:
        terminalreporter.write_line(
            f"BACKEND GALERA MISSING: its tests did not run ({reason})",
            red=True, bold=True)


# --- Fixtures -------------------------------------------------------------

@pytest.fixture(scope="session")
def galera_run():
    return galera_cluster.GaleraRun()


@pytest.fixture(scope="package")
def galera(galera_report):
    """A running three-node cluster, every node Synced; stopped and
    removed after the last Galera test, whatever happened."""
    if _unavailable:
        _skip_or_fail(_unavailable[0])
    began = time.monotonic()
    try:
        cluster = galera_cluster.GaleraCluster()
    except galera_cluster.GaleraUnavailable as error:
        _unavailable.append(str(error))
        _skip_or_fail(str(error))
    try:
        cluster.start()
    except BaseException as error:
        cluster.stop()
        if isinstance(error, galera_cluster.GaleraUnavailable):
            _unavailable.append(str(error))
            _skip_or_fail(str(error))
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
        galera_report(
            "cluster", nodes=galera_cluster.NODES,
            mode="full" if galera_cluster.FULL else "short",
            started_in_s=round(cluster.started_seconds, 1),
            state_transfers=dict(cluster.state_transfers),
            up_for_s=round(time.monotonic() - began, 1))


def _skip_or_fail(reason):
    helpers.skip_or_fail(f"Galera cluster unavailable: {reason}")


@pytest.fixture(scope="package")
def galera_database(galera):
    """The test database, made through node 1 and migrated to head by
    role_stash's migrations; its name."""
    connection = galera.nodes[0].connect()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {galera_cluster.DATABASE} "
                       "CHARACTER SET utf8mb4")
    connection.close()
    helpers.upgrade(galera.nodes[0].url())
    return galera_cluster.DATABASE


@pytest.fixture
def node_repositories(galera, galera_database):
    """new(node, **options): a StashRepository through one node (options
    go to enginefacade), closed after the test; the tables are emptied
    then, through node 1."""
    made = []

    def new(node, **options):
        repository = api.StashRepository.from_url(node.url(), **options)
        made.append(repository)
        return repository

    yield new
    for repository in made:
        repository.close()
    connection = galera.nodes[0].connect(galera_database)
    with connection.cursor() as cursor:
        for table in reversed(models.Base.metadata.sorted_tables):
            cursor.execute(f"DELETE FROM {table.name}")
    connection.close()


class DeadlockCounter:
    """Counts what the client saw: error 1213 answers (certification
    failures and brute-force aborts), and oslo.db's retries of lone calls."""

    def __init__(self):
        self.deadlocks = 0
        self.retries = 0
        self._lock = threading.Lock()

    def on_error(self, context):
        error = context.original_exception
        if isinstance(error, pymysql.err.MySQLError) and (
                error.args[:1] == (galera_cluster.DEADLOCK,)):
            with self._lock:
                self.deadlocks += 1

    def emit(self, record):
        if record.getMessage().startswith("Performing DB retry"):
            with self._lock:
                self.retries += 1


@pytest.fixture
def deadlocks_seen():
    """A DeadlockCounter counting for the test's length."""
    counter = DeadlockCounter()
    with logs.retries_and_errors(counter.emit, counter.on_error):
        yield counter


def server_conflicts(cluster):
    """{node name: certification failures + brute-force aborts} so far."""
    conflicts = {}
    for node in cluster.nodes:
        status = node.status("wsrep_local_cert_failures",
                             "wsrep_local_bf_aborts")
        conflicts[node.name] = sum(int(value) for value in status.values())
    return conflicts


@pytest.fixture
def ledger():
    return load.Ledger()


@pytest.fixture
def own_writers():
    """own_writers(repository, node, ledger, stop, count): start count
    OwnWrites threads through repository; joined after the test."""
    started = []

    def start(repository, node, ledger, stop, count):
        writers = [load.OwnWrites(repository, node, ledger, stop,
                             seed=f"{node.name}-{len(started) + index}")
                   for index in range(count)]
        for writer in writers:
            writer.thread.start()
        started.extend(writers)
        return writers

    yield start
    for writer in started:
        writer.stop.set()
    for writer in started:
        writer.thread.join(timeout=120)


@contextlib.contextmanager
def before_commit_on(port, action):
    """While in it, run action() once, just before the first COMMIT any
    engine sends to the server on port."""
    fired = threading.Event()

    def listener(connection):
        if connection.engine.url.port == port and not fired.is_set():
            fired.set()
            action()

    sa.event.listen(sa.Engine, "commit", listener)
    try:
        yield fired
    finally:
        sa.event.remove(sa.Engine, "commit", listener)


@pytest.fixture
def galera_tools():
    """The module-level helpers, for tests (a conftest cannot be imported
    under --import-mode=importlib)."""
    class Tools:
        payload = staticmethod(helpers.payload_of)
        live_stashes = staticmethod(load.live_stashes)
        before_commit_on = staticmethod(before_commit_on)
        conflicts = staticmethod(server_conflicts)
    return Tools
