"""Time role_stash's repository against the raw database drivers.

Usage: python benchmarks/run.py [--quick] [--calls N] [--json PATH]
           [--backends sqlite,postgresql,mariadb] [--postgresql-url URL]
           [--mariadb-url URL] [--sqlite-url URL] [--use-existing-database]
           [--profile BACKEND]

Per backend, in a database it creates and drops (--use-existing-database:
in the empty database of each given URL, migrated and emptied again), it
times the repository call and the raw driver doing the equivalent SQL, in
alternation, call by call (--calls: timed calls per operation):
  read       get_stash(uuid) vs the same indexed SELECT (one kept-open
             autocommit connection); at every table size. On PostgreSQL
             both read a stash's role names as an array (one row per
             stash), elsewhere one row per role.
  bulk_read  get_stashes(100 uuids) vs the same SELECT with an IN list
             (PostgreSQL: = ANY of one array parameter); at every size
  write      stash_roles of a new instance (3 roles) vs an INSERT of the
             stash row then one multi-row INSERT of its roles, committed
             (PostgreSQL: the repository's one statement, in autocommit);
             at the largest table size
Table sizes are 10k, 100k and 1M stashed instances (--quick: 10k only).

It then counts the round trips per call of each side, over a repository
and raw connections of their own, on the server's side of the driver:
every request PyMySQL sends (queries, BEGIN/COMMIT, pings); every
statement PostgreSQL logs (log_statement=all, sent back as notices; this
needs a superuser); every statement SQLite runs (its trace callback).

--json PATH writes a list of records. Timing records have the keys
backend, operation ("read", "write", "bulk_read"), rows, p50_us, p99_us,
raw_p50_us, raw_p99_us, ratio_p50, ratio_p99 (ratio: API / raw), and
round_trips, raw_round_trips (per call, API and raw). One record per
backend has operation "memory" and the keys backend, operation, rows,
reads, rss_before_kb, rss_after_kb, growth_kb: the resident set size
around 100k API reads (--quick: 5k) at the largest table size.
"""

import argparse
import contextlib
import dataclasses
import datetime
import functools
import gc
import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash import api
from role_stash import migration

DEFAULT_URLS = {
    "sqlite": "sqlite:////tmp/role_stash_bench.sqlite",
    "postgresql":
        "postgresql+psycopg2://postgres@127.0.0.1:5432/role_stash_bench",
    "mariadb":
        "mysql+pymysql://root@127.0.0.1:3306/role_stash_bench?charset=utf8mb4",
}
ROLES = ("member", "reader", "admin")
BULK = 100
# API and raw calls alternate one by one: a shared machine's slow spells
# (a busy neighbour, a server process descheduled) then fall on both sides
# alike. In blocks of 100 the same code measured read ratios from 1.2 to
# 2.4 on PostgreSQL from run to run; one by one, 0.9 to 1.3.
BLOCK = 1
POPULATE_BATCH = 5000
ROUND_TRIP_CALLS = 50
PROFILE_READS = 2000
TABLE_COLUMNS = ("backend", "operation", "rows", "p50_us", "p99_us",
                 "raw_p50_us", "raw_p99_us", "ratio_p50", "ratio_p99")

_STASH_COLUMNS = ("s.id, s.instance_uuid, s.project_id, s.user_id, "
                  "s.project_domain_id, s.user_domain_id, s.created_at, "
                  "s.updated_at")
# The repository's SELECTs, as each backend reads them: one row per role,
# or on PostgreSQL one row per stash with its role names in an array.
READ_SQL = (f"SELECT {_STASH_COLUMNS}, r.name FROM role_stashes s "
            "LEFT OUTER JOIN role_stash_roles r ON r.stash_id = s.id "
            "WHERE s.instance_uuid {match} AND s.deleted = 0 "
            "ORDER BY s.id, r.position")
READ_SQL_ROLE_ARRAY = (
    f"SELECT {_STASH_COLUMNS}, ARRAY(SELECT r.name FROM role_stash_roles r "
    "WHERE r.stash_id = s.id ORDER BY r.position) FROM role_stashes s "
    "WHERE s.instance_uuid {match} AND s.deleted = 0 ORDER BY s.id")
INSERT_STASHES_SQL = (
    "INSERT INTO role_stashes "
    "(instance_uuid, project_id, user_id, created_at, deleted) VALUES ")
INSERT_ROLES_SQL = (
    "INSERT INTO role_stash_roles (stash_id, position, name) VALUES ")
# PostgreSQL's write of a new stash, as the repository's: one statement.
WRITE_SQL_ONE_STATEMENT = (
    "WITH s AS (" + INSERT_STASHES_SQL + "(%s, %s, %s, %s, 0) "
    "ON CONFLICT (instance_uuid, deleted) DO NOTHING RETURNING id), "
    "r AS (INSERT INTO role_stash_roles (stash_id, position, name) "
    "SELECT s.id, n.number - 1, n.name FROM s "
    "JOIN unnest(CAST(%s AS TEXT[])) WITH ORDINALITY AS n(name, number) "
    "ON true) SELECT id FROM s")
# Gives every stash above an id its 3 roles, server side.
POPULATE_ROLES_SQL = (
    "INSERT INTO role_stash_roles (stash_id, position, name) "
    "SELECT s.id, r.position, r.name FROM role_stashes s CROSS JOIN "
    "(SELECT 0 AS position, ? AS name UNION ALL SELECT 1, ? "
    "UNION ALL SELECT 2, ?) r WHERE s.id > ?")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much work one run does."""

    sizes: tuple[int, ...]
    calls: int  # timed calls per side; a tenth as many more warm up
    bulk_calls: int
    memory_reads: int


# --quick is for routine runs: under a minute for all three backends on a
# slow day of this 2-vCPU machine (bulk reads then take 10 ms each).
QUICK = Settings(sizes=(10_000,), calls=2000, bulk_calls=200,
                 memory_reads=5_000)
FULL = Settings(sizes=(10_000, 100_000, 1_000_000), calls=10_000,
                bulk_calls=2000, memory_reads=100_000)


def _connect_sqlite(url, autocommit):
    return sqlite3.connect(
        url.database, isolation_level=None if autocommit else "DEFERRED")


def _connect_postgresql(url, autocommit):
    import psycopg2
    connection = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username,
        password=url.password or "", dbname=url.database, **url.query)
    connection.autocommit = autocommit
    return connection


def _connect_mariadb(url, autocommit):
    import pymysql
    return pymysql.connect(
        host=url.host, port=url.port or 3306, user=url.username,
        password=url.password or "", database=url.database,
        charset=url.query.get("charset", "utf8mb4"), autocommit=autocommit)


@contextlib.contextmanager
def _sqlite_round_trips(url, tick):
    """Yield url and a watch(connection) ticking per statement SQLite runs."""
    yield url, lambda connection: connection.set_trace_callback(tick)


class _StatementNotices:
    """A psycopg2 notices list that ticks per statement the server logged."""

    def __init__(self, tick):
        self.tick = tick

    def append(self, notice):
        if notice.startswith("LOG:  statement: "):
            self.tick()


@contextlib.contextmanager
def _postgresql_round_trips(url, tick):
    """Yield url sending statement logs to the client, and a watch ticking."""
    options = url.query.get("options", "") + (
        " -c log_statement=all -c client_min_messages=log")
    yield (url.update_query_dict({"options": options.strip()}),
           lambda connection: setattr(
               connection, "notices", _StatementNotices(tick)))


@contextlib.contextmanager
def _mariadb_round_trips(url, tick):
    """Yield url and a no-op watch; meanwhile each PyMySQL request ticks."""
    from pymysql.connections import Connection
    send = Connection._execute_command

    def counted(connection, command, sql):
        tick()
        return send(connection, command, sql)

    Connection._execute_command = counted
    try:
        yield url, lambda connection: None
    finally:
        Connection._execute_command = send


@dataclasses.dataclass(frozen=True)
class Backend:
    """How to reach a backend with its raw driver."""

    connect: object  # (url, autocommit) -> DB-API connection
    placeholder: str
    analyze_sql: str
    # (url, tick) -> context of (url to count on, watch(DB-API connection))
    count_round_trips: object
    admin_database: str | None = None  # to CREATE/DROP from; None: a file
    create_sql: str | None = None
    drop_sql: str | None = None


BACKENDS = {
    "sqlite": Backend(_connect_sqlite, "?", "ANALYZE", _sqlite_round_trips),
    "postgresql": Backend(
        _connect_postgresql, "%s", "VACUUM ANALYZE", _postgresql_round_trips,
        "postgres", "CREATE DATABASE {}",
        "DROP DATABASE IF EXISTS {} WITH (FORCE)"),
    "mariadb": Backend(
        _connect_mariadb, "%s", "ANALYZE TABLE role_stashes, role_stash_roles",
        _mariadb_round_trips, "mysql",
        "CREATE DATABASE {} CHARACTER SET utf8mb4",
        "DROP DATABASE IF EXISTS {}"),
}


def _drop_database(backend, url):
    if backend.drop_sql is None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(url.database + suffix)
        return
    _admin_execute(backend, url, backend.drop_sql)


def _create_database(backend, url):
    _drop_database(backend, url)
    if backend.create_sql is not None:
        _admin_execute(backend, url, backend.create_sql)


def _admin_execute(backend, url, sql):
    connection = backend.connect(
        url.set(database=backend.admin_database), autocommit=True)
    try:
        connection.cursor().execute(sql.format(url.database))
    finally:
        connection.close()


def uuid_for(index):
    """Return the instance UUID of populated stash number index."""
    digest = hashlib.blake2b(index.to_bytes(8, "little"), digest_size=16)
    return str(uuid.UUID(bytes=digest.digest(), version=4))


def _timestamp():
    return datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None).isoformat(" ", "microseconds")


def _percentiles_us(samples_ns):
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[98] / 1000


def timing_record(backend, operation, rows, api_ns, raw_ns):
    """Return the JSON record of one compared operation."""
    p50, p99 = _percentiles_us(api_ns)
    raw_p50, raw_p99 = _percentiles_us(raw_ns)
    return {"backend": backend, "operation": operation, "rows": rows,
            "p50_us": round(p50, 1), "p99_us": round(p99, 1),
            "raw_p50_us": round(raw_p50, 1), "raw_p99_us": round(raw_p99, 1),
            "ratio_p50": round(p50 / raw_p50, 2),
            "ratio_p99": round(p99 / raw_p99, 2)}


def compare(api_call, raw_call, api_args, raw_args, warmup):
    """Time both sides in alternating blocks; return their times in ns."""
    for api_arg, raw_arg in zip(api_args[:warmup], raw_args[:warmup]):
        api_call(api_arg)
        raw_call(raw_arg)
    api_ns, raw_ns = [], []
    sides = [(api_call, api_args, api_ns), (raw_call, raw_args, raw_ns)]
    for start in range(warmup, len(api_args), BLOCK):
        for call, args, times in sides:
            for arg in args[start:start + BLOCK]:
                began = time.perf_counter_ns()
                call(arg)
                times.append(time.perf_counter_ns() - began)
        sides.reverse()
    return api_ns, raw_ns


def rss_kb():
    """Return this process's resident set size in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


class BackendBench:
    """One backend's database, repository and raw connections."""

    def __init__(self, name, url, settings, existing=False):
        self.name = name
        self.backend = BACKENDS[name]
        self.url = make_url(url)
        self.settings = settings
        self.existing = existing
        self.rng = random.Random(42)
        self.populated = 0
        # As the repository does on PostgreSQL: role names come back in an
        # array, a bulk read matches one array parameter, and a new stash
        # is one statement in autocommit.
        self.arrays = name == "postgresql"
        read_sql = READ_SQL_ROLE_ARRAY if self.arrays else READ_SQL
        self.read_sql = self.sql(read_sql.format(match="= ?"))
        self.bulk_read_sql = self.sql(read_sql.format(
            match="= ANY(?)" if self.arrays
            else "IN (" + ", ".join("?" * BULK) + ")"))
        self.write_sqls = (
            self.sql(INSERT_STASHES_SQL + "(?, ?, ?, ?, 0) RETURNING id"),
            self.sql(INSERT_ROLES_SQL
                     + ", ".join(["(?, ?, ?)"] * len(ROLES))))

    def __enter__(self):
        with contextlib.ExitStack() as stack:
            if not self.existing:
                _create_database(self.backend, self.url)
                stack.callback(_drop_database, self.backend, self.url)
            self.repo, self.reader, self.writer = stack.enter_context(
                self.clients(self.url))
            engine = self.repo._context_manager.writer.get_engine()
            with engine.begin() as connection:
                migration.sync(connection)
                stashed = connection.scalar(
                    sa.text("SELECT COUNT(*) FROM role_stashes"))
            if stashed:
                raise RuntimeError(f"{self.name}: the database already holds "
                                   f"{stashed} stashes; give an empty one")
            if self.existing:
                stack.callback(self.empty)
            self._close = stack.pop_all().close
        return self

    def __exit__(self, *exc_info):
        self._close()

    @contextlib.contextmanager
    def clients(self, url):
        """Yield a repository, a raw autocommit reader and a raw writer."""
        with contextlib.ExitStack() as stack:
            repo = api.StashRepository.from_url(
                url.render_as_string(hide_password=False))
            stack.callback(repo.close)
            reader = stack.enter_context(contextlib.closing(
                self.backend.connect(url, autocommit=True)))
            writer = stack.enter_context(contextlib.closing(
                self.backend.connect(url, autocommit=False)))
            yield repo, reader, writer

    def empty(self):
        """Delete every stash and role, leaving the migrated tables."""
        cursor = self.writer.cursor()
        cursor.execute("DELETE FROM role_stash_roles")
        cursor.execute("DELETE FROM role_stashes")
        self.writer.commit()

    def sql(self, text):
        """Return text with the driver's placeholder for '?'."""
        return text.replace("?", self.backend.placeholder)

    def populate(self, size):
        """Stash instances up to size, 3 roles each, in big batches."""
        cursor = self.writer.cursor()
        for low in range(self.populated, size, POPULATE_BATCH):
            high = min(size, low + POPULATE_BATCH)
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM role_stashes")
            (last_id,) = cursor.fetchone()
            created_at = _timestamp()
            cursor.execute(
                self.sql(INSERT_STASHES_SQL
                         + ", ".join(["(?, ?, ?, ?, 0)"] * (high - low))),
                [value for index in range(low, high) for value in (
                    uuid_for(index), f"project-{index % 1000}",
                    f"user-{index % 10000}", created_at)])
            cursor.execute(self.sql(POPULATE_ROLES_SQL), (*ROLES, last_id))
            self.writer.commit()
        self.reader.cursor().execute(self.backend.analyze_sql)
        self.populated = size

    def random_uuids(self, count):
        """Return count UUIDs of populated stashes, at random."""
        return [uuid_for(self.rng.randrange(self.populated))
                for _ in range(count)]

    @staticmethod
    def raw_select(reader, sql, params):
        """Run one of the repository's SELECTs; return the rows."""
        cursor = reader.cursor()
        cursor.execute(sql, params)
        return cursor.fetchall()

    def raw_write(self, writer, instance_uuid):
        """Insert a stash with its roles in one committed transaction (on
        PostgreSQL one statement, writer in autocommit)."""
        cursor = writer.cursor()
        if self.arrays:
            cursor.execute(WRITE_SQL_ONE_STATEMENT, (
                instance_uuid, "project-w", "user-w", _timestamp(),
                list(ROLES)))
            cursor.fetchone()
            return
        insert_stash, insert_roles = self.write_sqls
        cursor.execute(insert_stash, (instance_uuid, "project-w", "user-w",
                                      _timestamp()))
        (stash_id,) = cursor.fetchone()
        cursor.execute(insert_roles, [
            value for position, name in enumerate(ROLES)
            for value in (stash_id, position, name)])
        writer.commit()

    def operations(self, repo, reader, writer):
        """Return {operation: (api_call, raw_call, make_args(count))}."""
        def reads(count):
            uuids = self.random_uuids(count)
            return uuids, [(u,) for u in uuids]

        def bulk_reads(count):
            batches = [self.random_uuids(BULK) for _ in range(count)]
            if self.arrays:
                return batches, [(batch,) for batch in batches]
            return batches, batches

        def writes(count):
            return ([str(uuid.uuid4()) for _ in range(count)],
                    [str(uuid.uuid4()) for _ in range(count)])

        def api_write(instance_uuid):
            repo.stash_roles(instance_uuid, project_id="project-w",
                             user_id="user-w", roles=list(ROLES))

        return {
            "read": (repo.get_stash, functools.partial(
                self.raw_select, reader, self.read_sql), reads),
            "bulk_read": (repo.get_stashes, functools.partial(
                self.raw_select, reader, self.bulk_read_sql), bulk_reads),
            "write": (api_write, functools.partial(
                self.raw_write, reader if self.arrays else writer), writes),
        }

    def roles_by_uuid(self, rows):
        """Return {instance UUID: role names} of raw read rows."""
        if self.arrays:
            return {row[1]: tuple(row[8]) for row in rows}
        found = {}
        for row in rows:
            names = found.setdefault(row[1], [])
            if row[8] is not None:
                names.append(row[8])
        return {key: tuple(names) for key, names in found.items()}

    def check_same_answers(self):
        """Fail unless both sides read the same stashes and role names, in
        order, and a raw write stores what the API reads back: the raw side
        must do the repository's work, no less."""
        uuids = self.random_uuids(BULK)
        api = {key: stash.roles
               for key, stash in self.repo.get_stashes(uuids).items()}
        raw = self.roles_by_uuid(self.raw_select(
            self.reader, self.bulk_read_sql,
            (uuids,) if self.arrays else uuids))
        one = self.roles_by_uuid(self.raw_select(
            self.reader, self.read_sql, (uuids[0],)))
        written = str(uuid.uuid4())
        self.raw_write(self.reader if self.arrays else self.writer, written)
        stash = self.repo.get_stash(written)
        if not (api == raw == {key: self.repo.get_stash(key).roles
                               for key in uuids}
                and one == {uuids[0]: api[uuids[0]]}
                and (stash.project_id, stash.user_id, stash.roles)
                == ("project-w", "user-w", ROLES)):
            raise RuntimeError(f"{self.name}: the raw reads and the "
                               "repository's disagree")

    def time_operation(self, operation):
        """Return the timing record of an operation at the current size."""
        api_call, raw_call, make_args = self.operations(
            self.repo, self.reader, self.writer)[operation]
        calls = (self.settings.bulk_calls if operation == "bulk_read"
                 else self.settings.calls)
        api_args, raw_args = make_args(calls + calls // 10)
        api_ns, raw_ns = compare(api_call, raw_call, api_args, raw_args,
                                 calls // 10)
        return timing_record(self.name, operation, self.populated,
                             api_ns, raw_ns)

    def round_trips(self):
        """Return {operation: (api, raw) round trips per call}, warmed up."""
        count = 0
        warmup = ROUND_TRIP_CALLS // 10

        def tick(*_):
            nonlocal count
            count += 1

        def per_call(call, args):
            for arg in args[:warmup]:
                call(arg)
            before = count
            for arg in args[warmup:]:
                call(arg)
            return (count - before) / ROUND_TRIP_CALLS

        with self.backend.count_round_trips(self.url, tick) as (url, watch):
            def watch_pooled(dbapi_connection, _record):
                watch(dbapi_connection)

            sa.event.listen(sa.pool.Pool, "connect", watch_pooled)
            try:
                with self.clients(url) as (repo, reader, writer):
                    watch(reader)
                    watch(writer)
                    trips = {}
                    for operation, (api_call, raw_call, make_args) in (
                            self.operations(repo, reader, writer).items()):
                        api_args, raw_args = make_args(
                            warmup + ROUND_TRIP_CALLS)
                        trips[operation] = (per_call(api_call, api_args),
                                            per_call(raw_call, raw_args))
                    return trips
            finally:
                sa.event.remove(sa.pool.Pool, "connect", watch_pooled)

    def memory(self):
        """Return the memory record around many API reads."""
        uuids = self.random_uuids(self.settings.memory_reads)
        gc.collect()
        before = rss_kb()
        for instance_uuid in uuids:
            self.repo.get_stash(instance_uuid)
        gc.collect()
        after = rss_kb()
        return {"backend": self.name, "operation": "memory",
                "rows": self.populated, "reads": len(uuids),
                "rss_before_kb": before, "rss_after_kb": after,
                "growth_kb": after - before}

    def profile(self):
        """Return pyinstrument's text report of PROFILE_READS API reads."""
        try:
            import pyinstrument
        except ImportError:
            return "pyinstrument is not installed: no profile"
        uuids = self.random_uuids(PROFILE_READS)
        profiler = pyinstrument.Profiler(interval=0.0001)
        with profiler:
            for instance_uuid in uuids:
                self.repo.get_stash(instance_uuid)
        return profiler.output_text(unicode=True, color=False)


def run_backend(name, url, settings, profile, existing):
    """Benchmark one backend; return its records and report lines."""
    records, notes = [], []
    with BackendBench(name, url, settings, existing) as bench:
        for size in settings.sizes:
            _progress(f"{name}: populating {size} stashes")
            bench.populate(size)
            bench.check_same_answers()
            for operation in ("read", "bulk_read"):
                _progress(f"{name}: {operation} at {size}")
                records.append(bench.time_operation(operation))
        _progress(f"{name}: write at {bench.populated}")
        records.append(bench.time_operation("write"))
        _progress(f"{name}: round trips over {ROUND_TRIP_CALLS} calls")
        trips = bench.round_trips()
        for record in records:
            record["round_trips"], record["raw_round_trips"] = trips[
                record["operation"]]
        notes.append(f"{name}: round trips per call, API / raw: " + ", ".join(
            f"{operation} {api_trips:g} / {raw_trips:g}"
            for operation, (api_trips, raw_trips) in trips.items()))
        _progress(f"{name}: memory over {settings.memory_reads} reads")
        memory = bench.memory()
        records.append(memory)
        notes.append(f"{name}: RSS over {memory['reads']} API reads: "
                     f"{memory['rss_before_kb']} kB -> "
                     f"{memory['rss_after_kb']} kB "
                     f"(growth {memory['growth_kb']} kB)")
        if profile:
            notes.append(f"{name}: pyinstrument over {PROFILE_READS} API "
                         f"reads\n{bench.profile()}")
    return records, notes


def format_table(records):
    """Return the timing records as an aligned text table."""
    rows = [TABLE_COLUMNS] + [
        tuple(str(record[column]) for column in TABLE_COLUMNS)
        for record in records if record["operation"] != "memory"]
    widths = [max(len(row[i]) for row in rows)
              for i in range(len(TABLE_COLUMNS))]
    return "\n".join(
        "  ".join(cell.rjust(width) if i > 1 else cell.ljust(width)
                  for i, (cell, width) in enumerate(zip(row, widths)))
        for row in rows)


def _progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)


def parse_args(argv):
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10k rows and fewer calls (under a minute)")
    parser.add_argument("--calls", metavar="N", type=int,
                        help="timed calls per operation (smoke tests)")
    parser.add_argument("--json", metavar="PATH",
                        help="write the records here")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        type=lambda value: value.split(","),
                        help="comma-separated, of: " + ", ".join(BACKENDS))
    for name, url in DEFAULT_URLS.items():
        parser.add_argument(f"--{name}-url", metavar="URL",
                            help=f"default: {url}")
    parser.add_argument("--use-existing-database", action="store_true",
                        help="use the given URLs' empty databases as they "
                        "are: migrate them, empty them afterwards")
    parser.add_argument("--profile", metavar="BACKEND", choices=BACKENDS,
                        help="print pyinstrument's profile of API reads")
    args = parser.parse_args(argv)
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.calls is not None and args.calls < 2:
        parser.error("--calls must be at least 2")
    if args.use_existing_database:
        implicit = [name for name in args.backends
                    if getattr(args, f"{name}_url") is None]
        if implicit:
            parser.error("--use-existing-database needs the URL of: "
                         + ", ".join(implicit))
    if args.profile and args.profile not in args.backends:
        parser.error(f"--profile {args.profile} is not among --backends")
    return args


def main(argv=None):
    """Run the benchmark; return 0."""
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.calls is not None:
        settings = dataclasses.replace(settings, calls=args.calls,
                                       bulk_calls=args.calls)
    started = time.perf_counter()
    records, notes = [], []
    for name in args.backends:
        url = getattr(args, f"{name}_url") or DEFAULT_URLS[name]
        backend_records, backend_notes = run_backend(
            name, url, settings, args.profile == name,
            args.use_existing_database)
        records += backend_records
        notes += backend_notes
    print(format_table(records))
    print()
    print("\n".join(notes))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    if args.json:
        with open(args.json, "w") as output:
            json.dump(records, output, indent=2)
            output.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
