"""Time role_stash's repository against the raw database drivers.

Usage: python benchmarks/run.py [--quick] [--json PATH]
           [--backends sqlite,postgresql,mariadb] [--postgresql-url URL]
           [--mariadb-url URL] [--sqlite-path PATH] [--profile BACKEND]

Per backend, in a database it creates and drops, it times the repository
call and the raw driver doing the equivalent SQL, in alternating blocks:
  read       get_stash(uuid) vs the same indexed SELECT (one kept-open
             autocommit connection); at every table size
  bulk_read  get_stashes(100 uuids) vs the same SELECT with an IN list;
             at every table size
  write      stash_roles of a new instance (3 roles) vs an INSERT of the
             stash row then one multi-row INSERT of its roles, committed;
             at the largest table size
Table sizes are 10k, 100k and 1M stashed instances (--quick: 10k only).

--json PATH writes a list of records. Timing records have exactly the keys
backend, operation ("read", "write", "bulk_read"), rows, p50_us, p99_us,
raw_p50_us, raw_p99_us, ratio_p50, ratio_p99 (ratio: API / raw). One record
per backend has operation "memory" and the keys backend, operation, rows,
reads, rss_before_kb, rss_after_kb, growth_kb: the resident set size
around 100k API reads (--quick: 10k) at the largest table size.
"""

import argparse
import contextlib
import dataclasses
import datetime
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
BLOCK = 100
POPULATE_BATCH = 5000
STATEMENT_SAMPLE = 100
PROFILE_READS = 2000
TABLE_COLUMNS = ("backend", "operation", "rows", "p50_us", "p99_us",
                 "raw_p50_us", "raw_p99_us", "ratio_p50", "ratio_p99")

_STASH_COLUMNS = ("s.id, s.instance_uuid, s.project_id, s.user_id, "
                  "s.project_domain_id, s.user_domain_id, s.created_at, "
                  "s.updated_at, r.name")
READ_SQL = (f"SELECT {_STASH_COLUMNS} FROM role_stashes s "
            "LEFT OUTER JOIN role_stash_roles r ON r.stash_id = s.id "
            "WHERE s.instance_uuid {match} AND s.deleted = 0 "
            "ORDER BY s.id, r.position")
INSERT_STASHES_SQL = (
    "INSERT INTO role_stashes "
    "(instance_uuid, project_id, user_id, created_at, deleted) VALUES ")
INSERT_ROLES_SQL = (
    "INSERT INTO role_stash_roles (stash_id, position, name) VALUES ")
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


QUICK = Settings(sizes=(10_000,), calls=2000, bulk_calls=400,
                 memory_reads=10_000)
FULL = Settings(sizes=(10_000, 100_000, 1_000_000), calls=10_000,
                bulk_calls=2000, memory_reads=100_000)


def _connect_sqlite(url, autocommit):
    return sqlite3.connect(
        url.database, isolation_level=None if autocommit else "DEFERRED")


def _connect_postgresql(url, autocommit):
    import psycopg2
    connection = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username,
        password=url.password or "", dbname=url.database)
    connection.autocommit = autocommit
    return connection


def _connect_mariadb(url, autocommit):
    import pymysql
    return pymysql.connect(
        host=url.host, port=url.port or 3306, user=url.username,
        password=url.password or "", database=url.database,
        charset=url.query.get("charset", "utf8mb4"), autocommit=autocommit)


@dataclasses.dataclass(frozen=True)
class Backend:
    """How to reach a backend with its raw driver."""

    connect: object  # (url, autocommit) -> DB-API connection
    placeholder: str
    analyze_sql: str
    admin_database: str | None = None  # to CREATE/DROP from; None: a file
    create_sql: str | None = None
    drop_sql: str | None = None


BACKENDS = {
    "sqlite": Backend(_connect_sqlite, "?", "ANALYZE"),
    "postgresql": Backend(
        _connect_postgresql, "%s", "VACUUM ANALYZE", "postgres",
        "CREATE DATABASE {}", "DROP DATABASE IF EXISTS {} WITH (FORCE)"),
    "mariadb": Backend(
        _connect_mariadb, "%s", "ANALYZE TABLE role_stashes, role_stash_roles",
        "mysql", "CREATE DATABASE {} CHARACTER SET utf8mb4",
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

    def __init__(self, name, url, settings):
        self.name = name
        self.backend = BACKENDS[name]
        self.url = make_url(url)
        self.settings = settings
        self.rng = random.Random(42)
        self.populated = 0
        self.read_sql = self.sql(READ_SQL.format(match="= ?"))
        self.bulk_read_sql = self.sql(READ_SQL.format(
            match="IN (" + ", ".join("?" * BULK) + ")"))
        self.write_sqls = (
            self.sql(INSERT_STASHES_SQL + "(?, ?, ?, ?, 0) RETURNING id"),
            self.sql(INSERT_ROLES_SQL
                     + ", ".join(["(?, ?, ?)"] * len(ROLES))))

    def __enter__(self):
        _create_database(self.backend, self.url)
        self.repo = api.StashRepository.from_url(
            self.url.render_as_string(hide_password=False))
        engine = self.repo._context_manager.writer.get_engine()
        with engine.begin() as connection:
            migration.sync(connection)
        self.reader = self.backend.connect(self.url, autocommit=True)
        self.writer = self.backend.connect(self.url, autocommit=False)
        return self

    def __exit__(self, *exc_info):
        self.reader.close()
        self.writer.close()
        self.repo.close()
        _drop_database(self.backend, self.url)

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

    def raw_read(self, params):
        """Run the repository's SELECT of one stash; return the rows."""
        cursor = self.reader.cursor()
        cursor.execute(self.read_sql, params)
        return cursor.fetchall()

    def raw_bulk_read(self, params):
        """Run the repository's SELECT of BULK stashes; return the rows."""
        cursor = self.reader.cursor()
        cursor.execute(self.bulk_read_sql, params)
        return cursor.fetchall()

    def raw_write(self, instance_uuid):
        """Insert a stash with its roles in one committed transaction."""
        insert_stash, insert_roles = self.write_sqls
        cursor = self.writer.cursor()
        cursor.execute(insert_stash, (instance_uuid, "project-w", "user-w",
                                      _timestamp()))
        (stash_id,) = cursor.fetchone()
        cursor.execute(insert_roles, [
            value for position, name in enumerate(ROLES)
            for value in (stash_id, position, name)])
        self.writer.commit()

    def api_write(self, instance_uuid):
        self.repo.stash_roles(instance_uuid, project_id="project-w",
                              user_id="user-w", roles=list(ROLES))

    def operations(self):
        """Return {operation: (api_call, raw_call, make_args(count))}."""
        def reads(count):
            uuids = self.random_uuids(count)
            return uuids, [(u,) for u in uuids]

        def bulk_reads(count):
            batches = [self.random_uuids(BULK) for _ in range(count)]
            return batches, batches

        def writes(count):
            return ([str(uuid.uuid4()) for _ in range(count)],
                    [str(uuid.uuid4()) for _ in range(count)])

        return {
            "read": (self.repo.get_stash, self.raw_read, reads),
            "bulk_read": (self.repo.get_stashes, self.raw_bulk_read,
                          bulk_reads),
            "write": (self.api_write, self.raw_write, writes),
        }

    def time_operation(self, operation):
        """Return the timing record of an operation at the current size."""
        api_call, raw_call, make_args = self.operations()[operation]
        calls = (self.settings.bulk_calls if operation == "bulk_read"
                 else self.settings.calls)
        api_args, raw_args = make_args(calls + calls // 10)
        api_ns, raw_ns = compare(api_call, raw_call, api_args, raw_args,
                                 calls // 10)
        return timing_record(self.name, operation, self.populated,
                             api_ns, raw_ns)

    def statements_per_call(self, operation):
        """Return the statements per API call, counted on every engine."""
        api_call, _, make_args = self.operations()[operation]
        count = 0

        def counted(*_):
            nonlocal count
            count += 1

        api_args, _ = make_args(STATEMENT_SAMPLE)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", counted)
        try:
            for arg in api_args:
                api_call(arg)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute",
                            counted)
        return count / STATEMENT_SAMPLE

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


def run_backend(name, url, settings, profile):
    """Benchmark one backend; return its records and report lines."""
    records, notes = [], []
    with BackendBench(name, url, settings) as bench:
        for size in settings.sizes:
            _progress(f"{name}: populating {size} stashes")
            bench.populate(size)
            for operation in ("read", "bulk_read"):
                _progress(f"{name}: {operation} at {size}")
                records.append(bench.time_operation(operation))
        _progress(f"{name}: write at {bench.populated}")
        records.append(bench.time_operation("write"))
        counts = ", ".join(
            f"{operation}={bench.statements_per_call(operation):g}"
            for operation in ("read", "bulk_read", "write"))
        notes.append(f"{name}: statements per API call "
                     f"(before_cursor_execute): {counts}")
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
                        help="10k rows and fewer calls (about a minute)")
    parser.add_argument("--json", metavar="PATH",
                        help="write the records here")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        type=lambda value: value.split(","),
                        help="comma-separated, of: " + ", ".join(BACKENDS))
    parser.add_argument("--postgresql-url", default=DEFAULT_URLS["postgresql"])
    parser.add_argument("--mariadb-url", default=DEFAULT_URLS["mariadb"])
    parser.add_argument("--sqlite-path",
                        default=make_url(DEFAULT_URLS["sqlite"]).database)
    parser.add_argument("--profile", metavar="BACKEND", choices=BACKENDS,
                        help="print pyinstrument's profile of API reads")
    args = parser.parse_args(argv)
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.profile and args.profile not in args.backends:
        parser.error(f"--profile {args.profile} is not among --backends")
    return args


def main(argv=None):
    """Run the benchmark; return 0."""
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    urls = {"sqlite": f"sqlite:///{os.path.abspath(args.sqlite_path)}",
            "postgresql": args.postgresql_url, "mariadb": args.mariadb_url}
    started = time.perf_counter()
    records, notes = [], []
    for name in args.backends:
        backend_records, backend_notes = run_backend(
            name, urls[name], settings, args.profile == name)
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
