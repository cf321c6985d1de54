"""Single calls, one process: read, bulk_read and write timed against every
raw driver of the backend, round trips per call, prepared statements and
resident memory."""

import contextlib
import gc
import uuid

import sqlalchemy as sa

from benchmarks import harness
from benchmarks import raw
from role_stash.db import api

ROUND_TRIP_CALLS = 50
PROFILE_READS = 2000
OPERATIONS = ("read", "bulk_read", "write")


def _driver_of(dbapi_connection):
    """Return the import name of the driver a DB-API connection is of."""
    return type(dbapi_connection).__module__.split(".")[0]


@contextlib.contextmanager
def _pooled_connections():
    """Yield a list that gathers every DB-API connection SQLAlchemy's pools
    open meanwhile: the repository's, whatever its internals."""
    opened = []

    def gather(dbapi_connection, _record):
        opened.append(dbapi_connection)

    sa.event.listen(sa.pool.Pool, "connect", gather)
    try:
        yield opened
    finally:
        sa.event.remove(sa.pool.Pool, "connect", gather)


def prepared_statements(dbapi_connection):
    """Return how many statements a PostgreSQL session holds prepared."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT COUNT(*) FROM pg_prepared_statements")
    (count,) = cursor.fetchone()
    if not dbapi_connection.autocommit:
        dbapi_connection.rollback()
    return count


class Clients:
    """A repository and a raw client per driver, on one database."""

    def __init__(self, database, drivers, url_of=None):
        self.database = database
        self.repos, self.raws = {}, {}
        with contextlib.ExitStack() as stack:
            for driver in drivers:
                url = database.url_for(driver)
                if url_of is not None:
                    url = url_of(url)
                repo = api.StashRepository.from_url(
                    url.render_as_string(hide_password=False))
                stack.callback(repo.close)
                self.repos[driver.name] = repo
                client = raw.RawClient(driver, url, database.backend.arrays)
                stack.callback(client.close)
                self.raws[driver.name] = client
            self.close = stack.pop_all().close

    def calls(self, operation, side, driver):
        """Return the call of operation on a side ("repository" or "raw")."""
        if side == "raw":
            return getattr(self.raws[driver], {
                "read": "get_stash", "bulk_read": "get_stashes",
                "write": "stash_roles"}[operation])
        repo = self.repos[driver]
        if operation == "write":
            return lambda instance_uuid: repo.stash_roles(
                instance_uuid, project_id="project-w", user_id="user-w",
                roles=list(raw.ROLES))
        return {"read": repo.get_stash, "bulk_read": repo.get_stashes}[
            operation]

    def inputs(self, operation, count):
        """Return count arguments for operation; each side that writes needs
        its own, the reads share theirs."""
        if operation == "read":
            return self.database.random_uuids(count)
        if operation == "bulk_read":
            return [self.database.random_uuids(raw.BULK)
                    for _ in range(count)]
        return [str(uuid.uuid4()) for _ in range(count)]

    def check_same_answers(self):
        """Fail unless every side reads the same stashes and role names, in
        order, and every raw write stores what the repositories read back:
        the raw side must do the repository's work, no less."""
        uuids = self.database.random_uuids(raw.BULK)
        first = next(iter(self.repos.values()))
        expected = {key: stash.roles
                    for key, stash in first.get_stashes(uuids).items()}
        answers = []
        for repo in self.repos.values():
            answers.append({key: stash.roles for key, stash
                            in repo.get_stashes(uuids).items()})
            answers.append({key: repo.get_stash(key).roles for key in uuids})
        for client in self.raws.values():
            answers.append(client.statements.roles_by_uuid(
                client.get_stashes(uuids)))
            one = client.statements.roles_by_uuid(client.get_stash(uuids[0]))
            answers.append({**expected, **one})
            written = str(uuid.uuid4())
            client.stash_roles(written)
            for repo in self.repos.values():
                stash = repo.get_stash(written)
                if (stash.project_id, stash.user_id, stash.roles) != (
                        "project-w", "user-w", raw.ROLES):
                    raise RuntimeError(
                        f"{self.database.backend.name}: a {client.driver.name}"
                        f" raw write reads back as {stash}")
        if any(answer != expected for answer in answers) or len(
                expected) != len(uuids):
            raise RuntimeError(f"{self.database.backend.name}: the raw reads "
                               "and the repository's disagree")


class SingleCall:
    """The single-call scenario on one populated database."""

    def __init__(self, database, settings):
        self.database = database
        self.settings = settings
        self.backend = database.backend.name
        self.samples = []  # {"backend", "operation", "rows", "label", ...}

    def time_operation(self, clients, operation):
        """Return the records of operation at the current size: the
        repository on each driver against each raw driver."""
        calls = (self.settings.bulk_calls if operation == "bulk_read"
                 else self.settings.calls)
        count = calls + calls // 10
        shared = None if operation == "write" else clients.inputs(
            operation, count)
        sides = {}
        for side in ("repository", "raw"):
            for driver in clients.repos:
                sides[side, driver] = harness.Side(
                    f"{side} {driver}",
                    clients.calls(operation, side, driver),
                    shared or clients.inputs(operation, count))
        harness.interleave(list(sides.values()), calls // 10)
        rows = self.database.populated
        for side in sides.values():
            self.samples.append({
                "backend": self.backend, "operation": operation,
                "rows": rows, "label": side.label,
                "times_ns": side.times_ns})
        return [{"backend": self.backend, "driver": driver,
                 "raw_driver": raw_driver, "operation": operation,
                 "rows": rows, **harness.comparison(
                     sides["repository", driver].times_ns,
                     sides["raw", raw_driver].times_ns)}
                for driver in clients.repos for raw_driver in clients.raws]

    def round_trips(self):
        """Return {driver: {operation: (repository, raw) round trips per
        call}} for each driver that can count them, warmed up."""
        return {driver.name: self._round_trips_on(driver)
                for driver in self.database.drivers
                if driver.count_round_trips is not None}

    def _round_trips_on(self, driver):
        """Return {operation: (repository, raw) round trips per call} over
        a repository and raw connections of their own on driver."""
        count = 0

        def tick(*_):
            nonlocal count
            count += 1

        def per_call(call, args):
            warmup = ROUND_TRIP_CALLS // 10
            for arg in args[:warmup]:
                call(arg)
            before = count
            for arg in args[warmup:]:
                call(arg)
            return (count - before) / ROUND_TRIP_CALLS

        with driver.count_round_trips(
                self.database.url_for(driver), tick) as (url, watch):

            def watch_pooled(dbapi_connection, _record):
                watch(dbapi_connection)

            sa.event.listen(sa.pool.Pool, "connect", watch_pooled)
            clients = Clients(self.database, [driver], url_of=lambda _: url)
            try:
                for connection in clients.raws[driver.name].connections():
                    watch(connection)
                return {operation: tuple(
                    per_call(clients.calls(operation, side, driver.name),
                             clients.inputs(operation,
                                            ROUND_TRIP_CALLS * 11 // 10))
                    for side in ("repository", "raw"))
                    for operation in OPERATIONS}
            finally:
                clients.close()
                sa.event.remove(sa.pool.Pool, "connect", watch_pooled)

    def memory(self, driver, repo):
        """Return the memory record around many repository reads."""
        uuids = self.database.random_uuids(self.settings.memory_reads)
        gc.collect()
        before = harness.rss_kb()
        for instance_uuid in uuids:
            repo.get_stash(instance_uuid)
        gc.collect()
        after = harness.rss_kb()
        return {"backend": self.backend, "driver": driver,
                "operation": "memory", "rows": self.database.populated,
                "reads": len(uuids), "rss_before_kb": before,
                "rss_after_kb": after, "growth_kb": after - before}

    def profile(self, repo):
        """Return pyinstrument's text report of PROFILE_READS reads."""
        try:
            import pyinstrument
        except ImportError:
            return "pyinstrument is not installed: no profile"
        uuids = self.database.random_uuids(PROFILE_READS)
        profiler = pyinstrument.Profiler(interval=0.0001)
        with profiler:
            for instance_uuid in uuids:
                repo.get_stash(instance_uuid)
        return profiler.output_text(unicode=True, color=False)

    def prepared(self, clients, pooled):
        """Return {driver: (repository, raw) prepared statement counts} of
        the PostgreSQL sessions each side holds."""
        counts = {}
        for driver, client in clients.raws.items():
            repository = sum(
                prepared_statements(connection) for connection in pooled
                if _driver_of(connection) == client.driver.module
                and not connection.closed)
            counts[driver] = (repository,
                              prepared_statements(client.reader))
        return counts

    def run(self, profile=False):
        """Run the scenario; return its records and report lines."""
        name, records, notes = self.backend, [], []
        with _pooled_connections() as pooled:
            clients = Clients(self.database, self.database.drivers)
            try:
                for size in self.settings.sizes:
                    harness.progress(f"{name}: populating {size} stashes")
                    self.database.populate(size)
                    clients.check_same_answers()
                    for operation in ("read", "bulk_read"):
                        harness.progress(f"{name}: {operation} at {size}")
                        records += self.time_operation(clients, operation)
                harness.progress(f"{name}: write at {size}")
                records += self.time_operation(clients, "write")
                if self.database.backend.arrays:
                    counts = self.prepared(clients, pooled)
                    for record in records:
                        (record["prepared_statements"],
                         record["raw_prepared_statements"]) = (
                            counts[record["driver"]][0],
                            counts[record["raw_driver"]][1])
                    notes += [f"{name}: prepared statements on the server "
                              f"after the timed calls, {driver}: repository "
                              f"{ours}, raw {theirs}"
                              for driver, (ours, theirs) in counts.items()]
                for driver, repo in clients.repos.items():
                    harness.progress(f"{name}: {driver} memory over "
                                     f"{self.settings.memory_reads} reads")
                    memory = self.memory(driver, repo)
                    records.append(memory)
                    notes.append(
                        f"{name}: {driver}: RSS over {memory['reads']} "
                        f"repository reads: {memory['rss_before_kb']} kB -> "
                        f"{memory['rss_after_kb']} kB "
                        f"(growth {memory['growth_kb']} kB)")
                    if profile:
                        notes.append(
                            f"{name}: {driver}: pyinstrument over "
                            f"{PROFILE_READS} repository reads\n"
                            f"{self.profile(repo)}")
            finally:
                clients.close()
        harness.progress(f"{name}: round trips over {ROUND_TRIP_CALLS} calls")
        trips = self.round_trips()
        for record in records:
            if record["operation"] in OPERATIONS:
                record["round_trips"] = trips.get(record["driver"], {}).get(
                    record["operation"], (None, None))[0]
                record["raw_round_trips"] = trips.get(
                    record["raw_driver"], {}).get(
                        record["operation"], (None, None))[1]
        notes += [f"{name}: {driver}: round trips per call, repository / raw: "
                  + ", ".join(f"{operation} {ours:g} / {theirs:g}"
                              for operation, (ours, theirs) in by_op.items())
                  for driver, by_op in trips.items()]
        notes += [f"{name}: {driver} is not importable here: not measured"
                  for driver in self.database.missing]
        return records, notes
