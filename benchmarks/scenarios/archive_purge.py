"""Archive and purge at scale, while the repository reads and writes.

The database is filled, server side, with N soft-deleted stashes of 3 roles
each, a cached vendordata reply for every tenth of their instances, and
some live stashes after them. A reader thread then reads live stashes
(get_stash, every answer checked) and a writer thread stashes new
instances (stash_roles), each call after the last, without pause, through
three phases:

  idle     nothing else runs: the baseline
  archive  `role-stash-manage archive-deleted --until-complete`
  purge    `role-stash-manage purge --all --until-complete`

Archive and purge run as an operator runs them, in a process of their own.
Per phase it reports the rows per second of the operation (its own
--json summary: rows and seconds), and of the reads and of the writes
started during it: how many, p50, p99, and the longest, the worst stall.
Afterwards it checks the counts: every deleted stash, role and reply
archived and then purged, every live and written stash still there whole.
"""

import dataclasses
import datetime
import functools
import json
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid

import sqlalchemy as sa

from benchmarks import harness
from role_stash.db import api
from role_stash.db import archive
from role_stash.db import models

ROLES = ("member", "reader", "admin")
# Numbers are made server side, CHUNK at a time, from a cross join of
# digits: one INSERT ... SELECT per chunk.
CHUNK = 100_000
_DIGITS = sa.union_all(*(sa.select(sa.literal(digit).label("d"))
                         for digit in range(10))).subquery()
# Of ANALYZE, which no transaction may hold on PostgreSQL.
ANALYZE_SQL = {
    "postgresql": "VACUUM ANALYZE",
    "mysql": "ANALYZE TABLE role_stashes, role_stash_roles, "
             "role_stash_vendordata",
    "sqlite": "ANALYZE",
}
# The deleted_at of stash number n: base plus n milliseconds, as deletions
# come one after another (one shared deleted_at would give an index on it
# nothing to order by).
SPREAD = {
    "postgresql": lambda base, n: sa.literal(base, models.Timestamp)
    + sa.func.make_interval(0, 0, 0, 0, 0, 0, n / 1000.0,
                            type_=sa.Interval),
    "mysql": lambda base, n: sa.func.timestampadd(
        sa.text("MICROSECOND"), n * 1000, sa.literal(base, models.Timestamp),
        type_=models.Timestamp),
    "sqlite": lambda base, n: sa.func.strftime(
        "%Y-%m-%d %H:%M:%f", base.isoformat(" "),
        sa.literal("+", sa.String) + sa.cast(n / 1000.0, sa.String)
        + sa.literal(" seconds", sa.String), type_=sa.String),
}
DELETED_PREFIX = "00000000-0000-4000-8000-"
LIVE_PREFIX = "11111111-1111-4111-8111-"
PHASES = ("idle", "archive", "purge")


def numbered_uuid(prefix, number):
    """The SQL of the UUID prefix followed by number in 12 digits."""
    digits = sa.func.substr(sa.cast(
        number + sa.literal(10 ** 12, sa.BigInteger), sa.String(13)), 2)
    return sa.literal(prefix, sa.String) + digits


def _numbers(low, high):
    """A subquery of the numbers from low to high - 1 (at most CHUNK)."""
    tables = [_DIGITS.alias(f"d{power}") for power in range(5)]
    number = sum((table.c.d * 10 ** power
                  for power, table in enumerate(tables)), sa.literal(low))
    product = functools.reduce(
        lambda joined, table: joined.join(table, sa.true()), tables)
    return (sa.select(number.label("n")).select_from(product)
            .where(number < high).subquery())


def _insert_stashes(connection, prefix, low, high, deleted_at):
    """Stash numbers low to high - 1 under prefix, 3 roles each,
    soft-deleted at deleted_at unless it is None."""
    stashes = archive.STASHES
    last_id = connection.scalar(sa.select(sa.func.coalesce(
        sa.func.max(stashes.c.id), 0)))
    numbers = _numbers(low, high)
    created_at = deleted_at or api.timeutils.utcnow()
    deleted_when = (sa.literal(None, models.Timestamp) if deleted_at is None
                    else SPREAD[connection.dialect.name](deleted_at,
                                                         numbers.c.n))
    connection.execute(sa.insert(stashes).from_select(
        ["instance_uuid", "project_id", "user_id", "created_at",
         "deleted_at", "deleted"],
        sa.select(numbered_uuid(prefix, numbers.c.n),
                  sa.literal("project-", sa.String)
                  + sa.cast(numbers.c.n % 1000, sa.String(8)),
                  sa.literal("user"), sa.literal(created_at, models.Timestamp),
                  deleted_when,
                  numbers.c.n + 1 if deleted_at else sa.literal(0))))
    roles = sa.union_all(*(
        sa.select(sa.literal(position).label("position"),
                  sa.literal(name).label("name"))
        for position, name in enumerate(ROLES))).subquery()
    new = sa.select(stashes.c.id).where(stashes.c.id > last_id).subquery()
    connection.execute(sa.insert(archive.ROLES).from_select(
        ["stash_id", "position", "name"],
        sa.select(new.c.id, roles.c.position, roles.c.name)
        .select_from(new.join(roles, sa.true()))))
    if deleted_at is not None:
        connection.execute(sa.insert(archive.REPLIES).from_select(
            ["instance_uuid", "target", "body", "stored_at", "keep_until"],
            sa.select(stashes.c.instance_uuid, sa.literal("service"),
                      sa.literal('{"cached": true}'),
                      sa.literal(deleted_at, models.Timestamp),
                      sa.literal(deleted_at, models.Timestamp))
            .where(stashes.c.id > last_id, stashes.c.id % 10 == 0)))


def fill(engine, stashes, live):
    """Fill an empty migrated database: stashes soft-deleted ones, a reply
    for each tenth, then live ones; return the live instance UUIDs."""
    deleted_at = (api.timeutils.utcnow() - datetime.timedelta(days=30)
                  ).replace(microsecond=0)
    for prefix, count, when in ((DELETED_PREFIX, stashes, deleted_at),
                                (LIVE_PREFIX, live, None)):
        for low in range(0, count, CHUNK):
            with engine.begin() as connection:
                _insert_stashes(connection, prefix, low,
                                min(count, low + CHUNK), when)
    with engine.connect().execution_options(
            isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(ANALYZE_SQL[engine.dialect.name])
    return [f"{LIVE_PREFIX}{number:012d}" for number in range(live)]


@dataclasses.dataclass
class Calls:
    """The calls of one thread: when each started, how long it took."""

    started: list = dataclasses.field(default_factory=list)
    seconds: list = dataclasses.field(default_factory=list)
    errors: list = dataclasses.field(default_factory=list)

    def during(self, begin, end):
        """The durations of the calls started from begin to end."""
        return [took for start, took in zip(self.started, self.seconds)
                if begin <= start < end]


def _loop(calls, stop, call):
    while not stop.is_set():
        started = time.monotonic()
        try:
            call()
        except Exception as error:
            calls.errors.append(repr(error))
        calls.started.append(started)
        calls.seconds.append(time.monotonic() - started)


def _reader(repository, live_uuids, calls, stop):
    rng = random.Random(7)

    def read():
        instance = rng.choice(live_uuids)
        found = repository.get_stash(instance)
        if found.instance_uuid != instance or found.roles != ROLES:
            raise AssertionError(f"read {found} for {instance}")

    _loop(calls, stop, read)


def _writer(repository, written, calls, stop):
    def write():
        instance = str(uuid.uuid4())
        repository.stash_roles(instance, project_id="project-new",
                               user_id="user", roles=list(ROLES))
        written.append(instance)

    _loop(calls, stop, write)


def _manage(url, *arguments):
    """Run role-stash-manage on url; return its --json summary and the
    time it ended."""
    result = subprocess.run(
        [sys.executable, "-m", "role_stash.cmd.manage", "--database-url", url,
         *arguments, "--json"], capture_output=True, text=True)
    ended = time.monotonic()
    if result.returncode != 0:
        raise RuntimeError(f"role-stash-manage {' '.join(arguments)} exited "
                           f"{result.returncode}: {result.stderr}")
    return json.loads(result.stdout), ended


def _latency(durations):
    """count, p50, p99, max (ms) of durations in seconds."""
    if len(durations) < 2:
        return {"count": len(durations), "p50_ms": None, "p99_ms": None,
                "max_ms": round(max(durations, default=0) * 1000, 2)}
    cuts = statistics.quantiles(durations, n=100, method="inclusive")
    return {"count": len(durations), "p50_ms": round(cuts[49] * 1000, 2),
            "p99_ms": round(cuts[98] * 1000, 2),
            "max_ms": round(max(durations) * 1000, 2)}


def _count(engine, table, *where):
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(
            table).where(*where))


def run(backend, url, *, stashes, live, batch_size, idle_seconds):
    """Fill the empty migrated database at url, run the three phases;
    return (records, notes)."""
    engine = sa.create_engine(url)
    try:
        harness.progress(f"{backend}: filling {stashes} deleted stashes and "
                         f"{live} live ones")
        began = time.monotonic()
        live_uuids = fill(engine, stashes, live)
        replies = _count(engine, archive.REPLIES)
        harness.progress(f"{backend}: filled in "
                         f"{time.monotonic() - began:.0f} s")
        reader_calls, writer_calls, written = Calls(), Calls(), []
        stop = threading.Event()
        reader = api.StashRepository.from_url(url)
        writer = api.StashRepository.from_url(url)
        threads = [
            threading.Thread(target=_reader,
                             args=(reader, live_uuids, reader_calls, stop)),
            threading.Thread(target=_writer,
                             args=(writer, written, writer_calls, stop))]
        for thread in threads:
            thread.start()
        windows, summaries = {}, {}
        try:
            idle_began = time.monotonic()
            stop.wait(idle_seconds)  # the baseline's length, not a wait
            windows["idle"] = (idle_began, time.monotonic())
            for phase, arguments in (
                    ("archive", ["archive-deleted", "--until-complete"]),
                    ("purge", ["purge", "--all", "--until-complete"])):
                harness.progress(f"{backend}: {phase}")
                summary, ended = _manage(url, *arguments, "--batch-size",
                                         str(batch_size))
                windows[phase] = (ended - summary["seconds"], ended)
                summaries[phase] = summary
                harness.progress(
                    f"{backend}: {phase}: {summary['total']} rows in "
                    f"{summary['seconds']:.1f} s")
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            reader.close()
            writer.close()
        problems = _check(engine, summaries, stashes, live, replies,
                          len(written))
        problems += [f"read failed: {error}"
                     for error in reader_calls.errors[:5]]
        problems += [f"write failed: {error}"
                     for error in writer_calls.errors[:5]]
        if problems:
            raise RuntimeError(f"{backend}: " + "; ".join(problems))
    finally:
        engine.dispose()
    records = []
    for phase in PHASES:
        begin, end = windows[phase]
        summary = summaries.get(phase)
        record = {
            "backend": backend, "driver": sa.make_url(url).get_driver_name(),
            "phase": phase, "stashes": stashes, "live": live,
            "replies": replies, "batch_size": batch_size,
            "seconds": round(end - begin, 3),
            "rows": summary["total"] if summary else None,
            "rows_per_s": (round(summary["total"] / summary["seconds"])
                           if summary else None),
            "stashes_per_s": (round(stashes / summary["seconds"])
                              if summary else None),
            "read_errors": len(reader_calls.errors),
            "write_errors": len(writer_calls.errors),
        }
        for kind, calls in (("read", reader_calls), ("write", writer_calls)):
            for key, value in _latency(calls.during(begin, end)).items():
                record[f"{kind}_{key}" if key != "count" else f"{kind}s"] = (
                    value)
        records.append(record)
    return records, []


def _check(engine, summaries, stashes, live, replies, written):
    """Return what the counts say went wrong, if anything."""
    expected = {
        "archive": {"role_stashes": stashes, "role_stash_roles": 3 * stashes,
                    "role_stash_vendordata": replies},
        "purge": {"role_stashes_shadow": stashes,
                  "role_stash_roles_shadow": 3 * stashes,
                  "role_stash_vendordata_shadow": replies,
                  "role_stashes": 0, "role_stash_roles": 0,
                  "role_stash_vendordata": 0},
    }
    problems = [f"{phase} took {summaries[phase]['rows']}, expected {rows}"
                for phase, rows in expected.items()
                if summaries[phase]["rows"] != rows]
    left = {table.name: _count(engine, table)
            for table in models.Base.metadata.sorted_tables}
    kept = {"role_stashes": live + written,
            "role_stash_roles": 3 * (live + written)}
    if {name: count for name, count in left.items() if count} != kept:
        problems.append(f"rows left {left}, expected {kept}")
    return problems


def report(records):
    """The records as a text table."""
    lines = []
    for backend in dict.fromkeys(record["backend"] for record in records):
        rows = [record for record in records if record["backend"] == backend]
        head = rows[0]
        lines += [
            "",
            f"{backend} ({head['driver']}): {head['stashes']} deleted "
            f"stashes of 3 roles, {head['replies']} cached replies, "
            f"{head['live']} live stashes; batches of {head['batch_size']}",
            "| phase | seconds | rows | rows/s | stashes/s | reads | read "
            "p50 / p99 / max ms | writes | write p50 / p99 / max ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for record in rows:
            def cell(key, record=record):
                value = record[key]
                return "-" if value is None else f"{value:,}"
            lines.append(
                f"| {record['phase']} | {record['seconds']:.1f} | "
                f"{cell('rows')} | {cell('rows_per_s')} | "
                f"{cell('stashes_per_s')} | {record['reads']:,} | "
                f"{cell('read_p50_ms')} / {cell('read_p99_ms')} / "
                f"{cell('read_max_ms')} | {record['writes']:,} | "
                f"{cell('write_p50_ms')} / {cell('write_p99_ms')} / "
                f"{cell('write_max_ms')} |")
    return "\n".join(lines)
