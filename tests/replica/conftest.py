"""A PostgreSQL streaming replica, started by the tests: a private primary
(testing.postgresql) and a hot standby made from it with
`pg_basebackup -R`, on ports of their own; as root, every PostgreSQL
program runs as the postgres user through tests/pg_as_postgres.sh (CI runs
as root).

Both servers log every statement with its session's application_name
first (log_statement=all, log_line_prefix='%a|'): a test gives each
repository a name of its own and counts, in each server's log, the reads
that server answered.
"""

import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import psycopg2
import pytest
from sqlalchemy.engine import make_url
import testing.postgresql

from tests import helpers

DATABASE = "test"
DRIVERS = ("psycopg2", "psycopg")
# How long the replica may take to start, or to replay what the primary
# wrote, on a busy machine.
REPLICA_SECONDS = 120
LOGGING = ("-c log_statement=all -c log_line_prefix=%a| "
           "-c logging_collector=off")
# An entry of either server's log: the session's application_name, the
# level, the message (a statement's text goes on in lines that start with
# a tab).
_ENTRY = re.compile(r"^([^|\n]*)\|(LOG|DETAIL|ERROR|STATEMENT|WARNING|FATAL):"
                    r"  (.*(?:\n\t.*)*)", re.MULTILINE)
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (.*)", re.DOTALL)


class ReplicaUnavailable(Exception):
    """What a streaming replica needs is missing, or it would not start."""


class StreamingReplication:
    """A primary and its hot standby; close() stops both and removes
    their folders."""

    def __init__(self):
        self.folder = pathlib.Path(
            tempfile.mkdtemp(prefix="role_stash_replica_"))
        self.faults = {"replay paused": 0, "replica stopped": 0}
        # The postgres user goes through it to the standby's folder.
        self.folder.chmod(0o755)
        self._replica = None
        self.primary = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self):
        """Start the primary, copy it, start the standby."""
        self._programs = helpers.postgresql_programs(
            ("initdb", "postgres", "pg_basebackup"), self.folder / "bin")
        self.primary = testing.postgresql.Postgresql(
            postgres_args=f"-h 127.0.0.1 -F {LOGGING}",
            **{name: self._programs[name] for name in ("initdb", "postgres")})
        self.primary_log = (pathlib.Path(self.primary.base_dir)
                            / "Postgresql.log")
        self.primary_port = self.primary.settings["port"]
        self.replica_port = helpers.free_port()
        self.replica_data = self.folder / "standby" / "data"
        self.replica_log = self.folder / "standby.log"
        (self.folder / "standby" / "socket").mkdir(parents=True)
        copied = subprocess.run(
            [self._programs["pg_basebackup"], "-h", "127.0.0.1",
             "-p", str(self.primary_port), "-U", "postgres",
             "-D", str(self.replica_data), "-R", "-X", "stream",
             "-c", "fast", "--no-sync"],
            capture_output=True, text=True, timeout=REPLICA_SECONDS)
        if copied.returncode:
            raise ReplicaUnavailable(f"pg_basebackup failed: {copied.stderr}")
        self.start_replica()

    # The standby.

    def start_replica(self):
        """Start the hot standby; return once it answers queries."""
        with open(self.replica_log, "a") as log:
            self._replica = subprocess.Popen(
                [self._programs["postgres"], "-D", str(self.replica_data),
                 "-p", str(self.replica_port), "-h", "127.0.0.1",
                 "-k", str(self.folder / "standby" / "socket"), "-F",
                 *LOGGING.split()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + REPLICA_SECONDS
        while time.monotonic() < deadline:
            if self._replica.poll() is not None:
                raise ReplicaUnavailable(
                    "the replica exited: "
                    f"{self.replica_log.read_text()[-3000:]}")
            try:
                if self.query("replica",
                              "SELECT pg_is_in_recovery()") == [(True,)]:
                    return
            except psycopg2.OperationalError:
                pass
            time.sleep(0.05)
        raise ReplicaUnavailable("the replica did not start in time")

    def stop_replica(self):
        """Shut the standby down (fast shutdown) and wait for it."""
        self._replica.send_signal(signal.SIGINT)
        self._replica.wait(timeout=REPLICA_SECONDS)
        self.faults["replica stopped"] += 1

    def pause_replay(self):
        """Stop the standby applying what it receives; return once it has
        (from then on the primary's new writes are not on the replica)."""
        self.query("replica", "SELECT pg_wal_replay_pause()")
        self.faults["replay paused"] += 1
        self._wait_for("replica",
                       "SELECT pg_get_wal_replay_pause_state() = 'paused'")

    def resume_replay(self):
        self.query("replica", "SELECT pg_wal_replay_resume()")

    def wait_replayed(self):
        """Return once the standby has applied everything the primary had
        written when called."""
        [(position,)] = self.query("primary", "SELECT pg_current_wal_lsn()")
        self._wait_for("replica", "SELECT pg_last_wal_replay_lsn() >= "
                       f"'{position}'::pg_lsn")

    def _wait_for(self, server, condition):
        deadline = time.monotonic() + REPLICA_SECONDS
        while self.query(server, condition) != [(True,)]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{server}: never {condition}")
            time.sleep(0.02)

    # Connections and logs.

    def url(self, server, driver="psycopg2", application_name=None):
        """The URL of the test database on server ("primary" or
        "replica") through driver."""
        port = self.primary_port if server == "primary" else self.replica_port
        url = f"postgresql+{driver}://postgres@127.0.0.1:{port}/{DATABASE}"
        if application_name:
            url += f"?application_name={application_name}"
        return url

    def query(self, server, sql, parameters=()):
        """The rows of one statement on server, in autocommit, under the
        application_name "harness"."""
        url = make_url(self.url(server))
        connection = psycopg2.connect(
            host=url.host, port=url.port, user=url.username,
            dbname=url.database, application_name="harness",
            connect_timeout=5)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def statements(self, server, application_name):
        """The statements sessions named application_name ran on server,
        each with the DETAIL (bound parameters) that followed it."""
        log = (self.primary_log if server == "primary"
               else self.replica_log).read_text(errors="replace")
        statements = []
        for name, level, message in _ENTRY.findall(log):
            if name != application_name:
                continue
            statement = _STATEMENT.match(message)
            if level == "LOG" and statement:
                statements.append(statement.group(1))
            elif level == "DETAIL" and statements:
                statements[-1] += "\n" + message
        return statements

    def tests_stash_reads(self, server):
        """How many stash reads server answered to the tests' sessions."""
        log = (self.primary_log if server == "primary"
               else self.replica_log).read_text(errors="replace")
        return sum(
            1 for name, level, message in _ENTRY.findall(log)
            if name.startswith("role_stash_") and level == "LOG"
            and _STATEMENT.match(message)
            and message.split(": ", 1)[1].lstrip().upper().startswith("SELECT")
            and "role_stashes" in message)

    def stash_reads(self, server, application_name):
        """The reads of role_stashes that server answered to sessions
        named application_name."""
        return [statement for statement in
                self.statements(server, application_name)
                if statement.lstrip().upper().startswith("SELECT")
                and "role_stashes" in statement]

    def close(self):
        """Stop what started and remove the folders, whatever failed."""
        try:
            if self._replica is not None and self._replica.poll() is None:
                self.stop_replica()
        finally:
            if self.primary is not None:
                self.primary.stop()
            shutil.rmtree(self.folder, ignore_errors=True)


_unavailable = []
_figures = []


@pytest.fixture(scope="package")
def replication():
    """A primary with role_stash's schema at head, and its streaming hot
    standby, caught up."""
    began = time.monotonic()
    if _unavailable:
        _skip_or_fail(_unavailable[0])
    try:
        servers = StreamingReplication()
    except Exception as error:
        _unavailable.append(f"{type(error).__name__}: {error}")
        _skip_or_fail(_unavailable[0])
    try:
        helpers.upgrade(servers.url("primary"))
        servers.wait_replayed()
        ready = time.monotonic() - began
        yield servers
        _figures.append({
            "started_in_s": round(ready, 1),
            **{f"stash reads answered by the {server}":
               servers.tests_stash_reads(server)
               for server in ("primary", "replica")},
            **servers.faults})
    finally:
        servers.close()
        if _figures:
            _figures[-1]["up_for_s"] = round(time.monotonic() - began, 1)


def _skip_or_fail(reason):
    helpers.skip_or_fail(
        f"PostgreSQL streaming replica unavailable: {reason}")


def pytest_terminal_summary(terminalreporter):
    for figures in _figures:
        terminalreporter.write_line(
            "role_stash postgresql replica: " + ", ".join(
                f"{name} {value}" for name, value in figures.items()))
    for reason in _unavailable:
        terminalreporter.write_line(
            f"BACKEND POSTGRESQL REPLICA MISSING: its tests did not run "
            f"({reason})", red=True, bold=True)


@pytest.fixture(params=DRIVERS)
def driver(request):
    """The PostgreSQL driver of the test's URLs: psycopg2, or psycopg 3."""
    return request.param


@pytest.fixture
def application_name():
    """A session name of the test's own, to find its statements in the
    servers' logs."""
    return "role_stash_" + uuid.uuid4().hex[:12]


@pytest.fixture
def replica_urls(replication, driver, application_name):
    """(primary URL, replica URL) through the test's driver, the sessions
    named application_name; the test's rows are deleted after it, and the
    replica caught up."""
    yield (replication.url("primary", driver, application_name),
           replication.url("replica", driver, application_name))
    replication.resume_replay()
    replication.query("primary", "DELETE FROM role_stash_vendordata")
    replication.query("primary", "DELETE FROM role_stash_roles")
    replication.query("primary", "DELETE FROM role_stashes")
    replication.wait_replayed()
