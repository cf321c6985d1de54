"""The benchmark's database per backend: made, migrated, populated with
stashes, emptied and dropped; which drivers reach it; and the sessions the
server counts on it."""

import contextlib
import dataclasses
import hashlib
import os
import random
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from benchmarks import raw
from role_stash.db import migration
from role_stash.db import models

DEFAULT_URLS = {
    "sqlite": "sqlite:////tmp/role_stash_bench.sqlite",
    "postgresql":
        "postgresql+psycopg2://postgres@127.0.0.1:5432/role_stash_bench",
    "mariadb":
        "mysql+pymysql://root@127.0.0.1:3306/role_stash_bench?charset=utf8mb4",
}
POPULATE_BATCH = 5000
# A session counter's baseline: taken once the count holds still, tried
# this often, this far apart.
BASELINE_TRIES = 40
BASELINE_INTERVAL = 0.05
# Gives every stash above an id its 3 roles, server side.
POPULATE_ROLES_SQL = (
    "INSERT INTO role_stash_roles (stash_id, position, name) "
    "SELECT s.id, r.position, r.name FROM role_stashes s CROSS JOIN "
    "(SELECT 0 AS position, ? AS name UNION ALL SELECT 1, ? "
    "UNION ALL SELECT 2, ?) r WHERE s.id > ?")


@dataclasses.dataclass(frozen=True)
class Backend:
    """A database server family and the drivers the benchmark runs on it."""

    name: str
    dialect: str  # SQLAlchemy's: the part of the URL before "+"
    drivers: tuple[str, ...]  # every one, first the one that populates
    analyze_sql: str
    version_sql: str  # the server's version, for the results file
    admin_database: str | None = None  # to CREATE/DROP from; None: a file
    create_sql: str | None = None
    drop_sql: str | None = None
    # The repository reads role names as an array, one row per stash.
    arrays: bool = False
    # How many sessions the server holds on a database (for the boot
    # storm), and whether it tells them apart by application name.
    connections_sql: str | None = None
    counts_by_application: bool = False


BACKENDS = {backend.name: backend for backend in (
    Backend("sqlite", "sqlite", ("sqlite3",), "ANALYZE",
            "SELECT sqlite_version()"),
    Backend("postgresql", "postgresql", ("psycopg2", "psycopg"),
            "VACUUM ANALYZE", "SHOW server_version", "postgres",
            "CREATE DATABASE {}",
            "DROP DATABASE IF EXISTS {} WITH (FORCE)", arrays=True,
            connections_sql="SELECT COUNT(*) FROM pg_stat_activity "
            "WHERE datname = %(database)s "
            "AND application_name = %(application)s",
            counts_by_application=True),
    Backend("mariadb", "mysql", ("pymysql", "mysqldb"),
            "ANALYZE TABLE role_stashes, role_stash_roles",
            "SELECT VERSION()", "mysql",
            "CREATE DATABASE {} CHARACTER SET utf8mb4",
            "DROP DATABASE IF EXISTS {}",
            connections_sql="SELECT COUNT(*) FROM "
            "information_schema.PROCESSLIST WHERE DB = %(database)s "
            "AND ID <> CONNECTION_ID()"),
)}


def add_arguments(parser, backends):
    """Add the options that choose the databases: --backends (default: the
    names in backends), --NAME-url and --use-existing-database."""
    parser.add_argument("--backends", default=",".join(backends),
                        type=lambda value: value.split(","),
                        help="comma-separated, of: " + ", ".join(BACKENDS))
    for name, url in DEFAULT_URLS.items():
        parser.add_argument(f"--{name}-url", metavar="URL",
                            help=f"default: {url}")
    parser.add_argument("--use-existing-database", action="store_true",
                        help="use the given URLs' empty databases as they "
                        "are: migrate them, empty them afterwards")


def check_arguments(parser, args):
    """Refuse, through parser.error, unknown backends, and an existing
    database asked for without its URL."""
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.use_existing_database:
        implicit = [name for name in args.backends
                    if getattr(args, f"{name}_url") is None]
        if implicit:
            parser.error("--use-existing-database needs the URL of: "
                         + ", ".join(implicit))


def uuid_for(index):
    """Return the instance UUID of populated stash number index."""
    digest = hashlib.blake2b(index.to_bytes(8, "little"), digest_size=16)
    return str(uuid.UUID(bytes=digest.digest(), version=4))


class Database:
    """One backend's benchmark database and the drivers that reach it."""

    def __init__(self, backend, url, existing=False):
        self.backend = backend
        self.url = make_url(url)
        self.existing = existing
        self.drivers = [raw.DRIVERS[name] for name in backend.drivers
                        if raw.DRIVERS[name].available()]
        self.missing = [name for name in backend.drivers
                        if not raw.DRIVERS[name].available()]
        self.populated = 0
        self.rng = random.Random(42)

    def url_for(self, driver):
        """Return the database's URL through driver."""
        if driver.name == "sqlite3":
            return self.url
        return self.url.set(drivername=f"{self.backend.dialect}+{driver.name}")

    def connect(self, driver, autocommit, database=None):
        """Return a raw connection of driver (to another database if given)."""
        url = self.url_for(driver)
        if database is not None:
            url = url.set(database=database)
        return driver.connect(url, autocommit=autocommit)

    def __enter__(self):
        with contextlib.ExitStack() as stack:
            if not self.existing:
                self._create()
                stack.callback(self._drop)
            self._migrate()
            self.writer = stack.enter_context(contextlib.closing(
                self.connect(self.drivers[0], autocommit=False)))
            if self.existing:
                stack.callback(self._empty)
            self._close = stack.pop_all().close
        return self

    def __exit__(self, *exc_info):
        self._close()

    def _admin_execute(self, sql):
        connection = self.connect(self.drivers[0], autocommit=True,
                                  database=self.backend.admin_database)
        try:
            connection.cursor().execute(sql.format(self.url.database))
        finally:
            connection.close()

    def _drop(self):
        if self.backend.drop_sql is None:
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.url.database + suffix)
            return
        self._admin_execute(self.backend.drop_sql)

    def _create(self):
        self._drop()
        if self.backend.create_sql is not None:
            self._admin_execute(self.backend.create_sql)

    def _migrate(self):
        engine = sa.create_engine(self.url_for(self.drivers[0]))
        try:
            with engine.begin() as connection:
                migration.sync(connection)
                stashed = connection.scalar(
                    sa.text("SELECT COUNT(*) FROM role_stashes"))
        finally:
            engine.dispose()
        if stashed:
            raise RuntimeError(
                f"{self.backend.name}: the database already holds {stashed} "
                "stashes; give an empty one")

    def _empty(self):
        cursor = self.writer.cursor()
        for table in reversed(models.Base.metadata.sorted_tables):
            cursor.execute(f"DELETE FROM {table.name}")
        self.writer.commit()

    def server_version(self):
        """Return the version the database server gives of itself."""
        cursor = self.writer.cursor()
        cursor.execute(self.backend.version_sql)
        (version,) = cursor.fetchone()
        self.writer.rollback()
        return version

    def populate(self, size):
        """Stash instances up to size, 3 roles each, in big batches."""
        placeholder = self.drivers[0].placeholder
        cursor = self.writer.cursor()
        for low in range(self.populated, size, POPULATE_BATCH):
            high = min(size, low + POPULATE_BATCH)
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM role_stashes")
            (last_id,) = cursor.fetchone()
            created_at = raw.timestamp()
            cursor.execute(
                (raw.INSERT_STASHES_SQL
                 + ", ".join(["(?, ?, ?, ?, 0)"] * (high - low))).replace(
                     "?", placeholder),
                [value for index in range(low, high) for value in (
                    uuid_for(index), f"project-{index % 1000}",
                    f"user-{index % 10000}", created_at)])
            cursor.execute(POPULATE_ROLES_SQL.replace("?", placeholder),
                           (*raw.ROLES, last_id))
            self.writer.commit()
        analyzer = self.connect(self.drivers[0], autocommit=True)
        try:
            analyzer.cursor().execute(self.backend.analyze_sql)
        finally:
            analyzer.close()
        self.populated = size

    def random_uuids(self, count):
        """Return count UUIDs of populated stashes, at random."""
        return [uuid_for(self.rng.randrange(self.populated))
                for _ in range(count)]


class ConnectionCounter:
    """Counts, on the server, the sessions storm workers hold."""

    def __init__(self, database, application_name, database_name):
        """database_name: the database the workers' sessions are in (on
        MariaDB, beside Nova's, the raw side's is role_stash's own)."""
        self.database = database
        self.application_name = application_name
        self.database_name = database_name
        self.connection = database.connect(
            database.drivers[0], autocommit=True,
            database=database.backend.admin_database)
        self.baseline = 0
        # Sessions of a storm just ended may linger a moment on the server
        # (MariaDB counts them by database alone): wait until the count
        # holds still before taking it as the baseline.
        counts = [self.count()]
        for _ in range(BASELINE_TRIES):
            time.sleep(BASELINE_INTERVAL)
            counts.append(self.count())
            if counts[-1] == counts[-2]:
                break
        self.baseline = counts[-1]

    def count(self):
        """Return the sessions on the database now, beyond the baseline."""
        cursor = self.connection.cursor()
        cursor.execute(self.database.backend.connections_sql, {
            "database": self.database_name,
            "application": self.application_name})
        (count,) = cursor.fetchone()
        return count - self.baseline

    def close(self):
        """Close the counting session."""
        self.connection.close()
