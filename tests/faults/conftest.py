"""Database servers of these tests' own, which they stop and start: a
private PostgreSQL (reached through psycopg2 and through psycopg 3) and a
private MariaDB, each on its own port and data folder, never the shared
servers. Here `server` is one of them, so the root conftest's fixtures
(database_url, migrated_url, repository) hand out databases on it.

As root (CI), the servers run as their own system users: PostgreSQL's
binaries through tests/pg_as_postgres.sh, mariadbd with --user=mysql. The
folders and processes go at the end of the session. A server that cannot
be had fails the run when ROLE_STASH_REQUIRE_ALL_BACKENDS or CI is set,
else its tests skip.
"""

import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from oslo_db.sqlalchemy import provision
import pytest
import sqlalchemy as sa

from tests import helpers

START_TIMEOUT = 60
SERVERS = ("postgresql", "postgresql-psycopg", "mariadb")


def _owned_by(path, user):
    """As root, give path to a system user (its server refuses root)."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for folder, _, files in os.walk(path):
            for name in [folder] + [os.path.join(folder, f) for f in files]:
                os.chown(name, entry.pw_uid, entry.pw_gid)


class PrivateServer:
    """A database server process of the tests' own, stopped and started
    on the same port and data folder."""

    name = None

    def __init__(self):
        self.folder = pathlib.Path(
            tempfile.mkdtemp(prefix="role_stash_faults_"))
        self.port = helpers.free_port()
        self.process = None
        self._log = open(self.folder / "server.log", "ab")

    def start(self):
        """Start the server; return once it takes connections."""
        self.process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        engine = sa.create_engine(self.admin_url(), poolclass=sa.pool.NullPool)
        try:
            while True:
                try:
                    with engine.connect():
                        return
                except sa.exc.OperationalError:
                    if (self.process.poll() is not None
                            or time.monotonic() > deadline):
                        raise RuntimeError(
                            f"{self.name} did not start: see "
                            f"{self.folder / 'server.log'}") from None
                    time.sleep(0.05)
        finally:
            engine.dispose()

    def stop(self, stop_signal):
        """Stop the server (the process exits once every session is
        ended)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(stop_signal)
            self.process.wait(START_TIMEOUT)

    def close(self):
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait(START_TIMEOUT)
        finally:
            self._log.close()
            shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePostgreSQL(PrivateServer):
    name = "postgresql"

    def __init__(self):
        super().__init__()
        self.programs = helpers.postgresql_programs(
            ("initdb", "postgres"), self.folder / "bin")
        (self.folder / "sockets").mkdir()
        subprocess.run([self.programs["initdb"], "-D",
                        str(self.folder / "data"), "-U", "postgres",
                        "-A", "trust"], check=True, stdout=self._log,
                       stderr=subprocess.STDOUT)

    def command(self):
        return [self.programs["postgres"], "-D", str(self.folder / "data"),
                "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(self.folder / "sockets"), "-F"]

    def admin_url(self, driver="psycopg2"):
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self):
        # Fast shutdown: sessions are ended, running transactions rolled
        # back, as a service restart does.
        super().stop(signal.SIGINT)


class PrivateMariaDB(PrivateServer):
    name = "mariadb"

    def __init__(self):
        super().__init__()
        (self.folder / "data").mkdir()
        _owned_by(self.folder, "mysql")
        root = ["--user=mysql"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", "--no-defaults",
                        f"--datadir={self.folder / 'data'}",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db", *root],
                       check=True, stdout=self._log, stderr=subprocess.STDOUT)

    def command(self):
        root = ["--user=mysql"] if os.geteuid() == 0 else []
        return ["mariadbd", "--no-defaults", *root,
                f"--datadir={self.folder / 'data'}", f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.folder / 'mysqld.sock'}",
                f"--pid-file={self.folder / 'mysqld.pid'}",
                "--skip-name-resolve", "--skip-log-bin",
                "--innodb-buffer-pool-size=32M"]

    def admin_url(self, driver="pymysql"):
        return (f"mysql+{driver}://root@127.0.0.1:{self.port}/mysql"
                f"?charset=utf8mb4")

    def stop(self):
        super().stop(signal.SIGTERM)


class RestartableServer:
    """Throw-away databases on a private server reached through one
    driver, and the server's stop() and start()."""

    def __init__(self, param, private, driver):
        self.param = param
        self.private = private
        self.name = private.name
        self._admin_url = sa.make_url(private.admin_url(driver))
        self._impl = provision.BackendImpl.impl(self._admin_url.drivername)
        self._engine = sa.create_engine(self._admin_url,
                                        poolclass=sa.pool.NullPool)

    def new_database(self):
        ident = "role_stash_faults_" + os.urandom(5).hex()
        self._impl.create_named_database(self._engine, ident)
        return self._impl.provisioned_database_url(
            self._admin_url, ident).render_as_string(hide_password=False)

    def drop_database(self, url):
        self._impl.drop_named_database(self._engine,
                                       sa.make_url(url).database)

    def stop(self):
        self.private.stop()

    def start(self):
        self.private.start()


_privates = {}
_unavailable = {}


def _private(kind):
    """The private server of a kind, made and started once a session."""
    if kind in _unavailable:
        raise RuntimeError(_unavailable[kind])
    if kind not in _privates:
        try:
            private = (PrivatePostgreSQL if kind == "postgresql"
                       else PrivateMariaDB)()
        except Exception as error:
            _unavailable[kind] = f"{type(error).__name__}: {error}"
            raise
        _privates[kind] = private
        try:
            private.start()
        except Exception as error:
            _unavailable[kind] = f"{type(error).__name__}: {error}"
            raise
    return _privates[kind]


@pytest.fixture(scope="session", autouse=True)
def _private_servers_go_at_the_end():
    yield
    for private in _privates.values():
        private.close()


@pytest.fixture(scope="session", params=SERVERS)
def server(request):
    """A private server of these tests, which they may stop and start."""
    kind, driver = {"postgresql": ("postgresql", "psycopg2"),
                    "postgresql-psycopg": ("postgresql", "psycopg"),
                    "mariadb": ("mariadb", "pymysql")}[request.param]
    try:
        backend = RestartableServer(request.param, _private(kind), driver)
    except Exception as error:
        helpers.skip_or_fail(f"private {kind} server unavailable: {error}")
    yield backend
    # A test that failed midway may have left the server stopped.
    if backend.private.process.poll() is not None:
        backend.start()


@pytest.fixture
def migrated_database(server):
    """The URL of a new database on the private server, migrated to head,
    dropped after the test."""
    url = server.new_database()
    helpers.upgrade(url, poolclass=sa.pool.NullPool)
    yield url
    server.drop_database(url)
