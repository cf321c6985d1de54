"""Boot storm: the read from N worker processes x T threads at once, each raw
driver, SQLAlchemy Core and the repository on it in turn, with the
connections each side held as the server counts them.

Core (the repository's SELECT on a Connection each thread holds) is the
floor of any read that runs on a SQLAlchemy Connection, as the repository's
must: what the repository could reach with no code of its own.
"""

import array
import contextlib
import dataclasses
import functools
import multiprocessing
import random
import statistics
import threading
import time
import traceback

from sqlalchemy.engine import make_url

from benchmarks import database as databases
from benchmarks import harness
from benchmarks import raw
from benchmarks.scenarios import read_cost
from role_stash.db import api
from role_stash.db import dialects

DEFAULT_LAYOUTS = ((8, 4), (16, 1))
# A lone single-threaded worker, run first: how many connections does a
# read-only API worker hold?
LONE_WORKER = (1, 1)
LONE_WORKER_SECONDS = 1.0
WARMUP_READS = 20
UUIDS_PER_THREAD = 2000
SAMPLE_INTERVAL = 0.1
BARRIER_TIMEOUT = 120
SIDES = ("raw", "core", "repository")


def parse_layouts(text):
    """Return ((workers, threads), ...) of "8x4,16x1"."""
    layouts = []
    for item in text.split(","):
        workers, _, threads = item.strip().partition("x")
        layouts.append((int(workers), int(threads)))
        if min(layouts[-1]) < 1:
            raise ValueError(f"a layout needs at least 1x1, not {item}")
    return tuple(layouts)


def layout_name(layout):
    """Return "8x4" of (8, 4)."""
    return "{}x{}".format(*layout)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What each worker process of one storm does."""

    side: str  # "raw", "core" or "repository"
    driver: str
    url: str  # with its password: a worker opens its own connections
    arrays: bool
    populated: int
    threads: int
    seconds: float
    application_name: str
    # Whose engine the repository runs on: "role_stash" (its own, from the
    # URL) or "nova" (a Nova context manager's, as a metadata API worker
    # has it; see scenarios/nova_engine.py).
    engine: str = "role_stash"


def _read_until(plan, read, rng, barrier):
    """Warm up, wait for every thread of every worker, then read for
    plan.seconds; return (each read's time in ns, the thread's CPU time
    in ns over them, user and system)."""
    uuids = [databases.uuid_for(rng.randrange(plan.populated))
             for _ in range(UUIDS_PER_THREAD)]
    for instance_uuid in uuids[:WARMUP_READS]:
        read(instance_uuid)
    times = array.array("q")
    barrier.wait(timeout=BARRIER_TIMEOUT)
    deadline = time.perf_counter_ns() + int(plan.seconds * 1e9)
    cpu_began = time.thread_time_ns()
    index = 0
    while True:
        began = time.perf_counter_ns()
        read(uuids[index % UUIDS_PER_THREAD])
        ended = time.perf_counter_ns()
        if ended > deadline:
            return times, time.thread_time_ns() - cpu_began
        times.append(ended - began)
        index += 1


def _thread(plan, open_read, rng, barrier, outcomes, index):
    try:
        read, close = open_read()
        try:
            outcomes[index] = _read_until(plan, read, rng, barrier)
        finally:
            close()
    except BaseException as error:
        barrier.abort()
        outcomes[index] = error


def _raw_read(plan):
    """A thread's (read, close) on the raw driver: a raw driver connection
    is not thread-safe, so each thread opens its own, as a raw-driver
    service would have to."""
    client = raw.RawClient(raw.DRIVERS[plan.driver], make_url(plan.url),
                           plan.arrays, plan.application_name, writes=False)
    return client.get_stash, client.close


def _reads_of(plan):
    """Return (open_read, close) of a worker process of the repository's
    side or the core side: open_read() gives a thread its (read, close).

    The repository: one per process, shared by its threads, as an API
    worker process opens it; on Nova's engine, the read a metadata API
    worker makes. Core: the repository's SELECT on a Connection of the
    engine its lone reads use, each thread holding its own, so the floor
    of a read that runs on a SQLAlchemy Connection.
    """
    if plan.engine == "nova":
        from benchmarks.scenarios import nova_engine
        from role_stash.nova import repositories
        context = nova_engine.nova_context(plan.url)
        close = context.db_connection.dispose_pool
        if plan.side == "repository":
            from benchmarks.scenarios import nova_calls
            read = nova_calls.get_stash_of(context)
            return (lambda: (read, _nothing)), close
        repository = repositories.repository_for(context)
        statements = nova_engine.statements_of(
            repository.lone_engines.reader())
    else:
        repository = api.StashRepository.from_url(plan.url)
        close = repository.close
        if plan.side == "repository":
            return (lambda: (repository.get_stash, _nothing)), close
        statements = dialects.for_dialect(
            repository.lone_engines.reader().dialect.name)

    def open_read():
        stack = contextlib.ExitStack()
        return read_cost.floor_read(repository.lone_engines, statements,
                                    stack), stack.close

    return open_read, close


def _nothing():
    pass


def worker(plan, seed, barrier, results):
    """Run one worker process of a storm: plan.threads reading threads;
    put ("times", bytes, CPU ns) or ("error", traceback) on results."""
    try:
        if plan.side == "raw":
            open_read, close = functools.partial(_raw_read, plan), None
        else:
            open_read, close = _reads_of(plan)
        outcomes = [None] * plan.threads
        threads = [threading.Thread(
            target=_thread, args=(plan, open_read,
                                  random.Random(seed * 1000 + i),
                                  barrier, outcomes, i))
            for i in range(plan.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if close is not None:
            close()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        times = array.array("q")
        for outcome, _ in outcomes:
            times.extend(outcome)
        results.put(("times", times.tobytes(),
                     sum(cpu for _, cpu in outcomes)))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))


_context = None


def _multiprocessing_context(drivers, preload=()):
    """Return the forkserver context, its server preloaded with the
    repository, the drivers and the modules of preload (at the first call
    only), so a worker starts without importing them."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(
            [__name__, "role_stash.db.api", *preload]
            + [driver.module for driver in drivers])
    return _context


def storm(database, driver, side, layout, seconds, engine="role_stash",
          preload=()):
    """Run one storm; return (read times in ns, the most connections the
    server saw at once, the reading threads' CPU time in ns)."""
    workers, threads = layout
    application_name = f"role_stash_storm_{side}_{driver.name}"
    url = database.url_for(driver)
    if engine == "nova" and side == "raw":
        # Beside Nova's tables, role_stash's are in a schema of their own.
        from benchmarks.scenarios import nova_engine
        url = nova_engine.raw_url(url)
    if database.backend.counts_by_application:
        url = url.update_query_dict({"application_name": application_name})
    plan = Plan(side, driver.name, url.render_as_string(hide_password=False),
                database.backend.arrays, database.populated, threads, seconds,
                application_name, engine)
    context = _multiprocessing_context(database.drivers, preload)
    barrier = context.Barrier(workers * threads + 1)
    results = context.Queue()
    counter = databases.ConnectionCounter(database, application_name,
                                         url.database)
    processes = [context.Process(target=worker,
                                 args=(plan, seed, barrier, results))
                 for seed in range(workers)]
    try:
        for process in processes:
            process.start()
        try:
            barrier.wait(timeout=BARRIER_TIMEOUT)
        except threading.BrokenBarrierError:
            pass
        connections = [counter.count()]
        end = time.monotonic() + seconds
        while not barrier.broken and time.monotonic() < end:
            time.sleep(SAMPLE_INTERVAL)
            connections.append(counter.count())
        outcomes = [results.get(timeout=BARRIER_TIMEOUT + seconds)
                    for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=BARRIER_TIMEOUT)
        counter.close()
    errors = [outcome[1] for outcome in outcomes if outcome[0] == "error"]
    if errors:
        raise RuntimeError(f"{database.backend.name}: a {side} {driver.name} "
                           f"storm worker failed:\n{errors[0]}")
    times = array.array("q")
    for _, detail, _ in outcomes:
        times.frombytes(detail)
    return times, max(connections), sum(cpu for _, _, cpu in outcomes)


def _throughputs(rounds, seconds):
    """Each round's reads/s, of a side's rounds over seconds in all."""
    round_seconds = seconds / len(rounds)
    return [len(times) / round_seconds for times, _, _ in rounds]


def _side(rounds, seconds):
    """Of a side's rounds, each (times, connections, CPU ns): the median
    of the rounds' reads/s, and the CPU per read in us."""
    reads = sum(len(times) for times, _, _ in rounds)
    cpu = sum(round_cpu for _, _, round_cpu in rounds)
    return (round(statistics.median(_throughputs(rounds, seconds))),
            round(cpu / reads / 1000, 1))


def _ratios(ours, theirs, seconds):
    """The median of the rounds' reads/s ratios of ours to theirs, with
    their range."""
    ratios = [mine / raw for mine, raw in zip(
        _throughputs(ours, seconds), _throughputs(theirs, seconds),
        strict=True)]
    return (round(statistics.median(ratios), 2), round(min(ratios), 2),
            round(max(ratios), 2))


def _record(backend, engine, rows, layout, seconds, driver, raw_driver, ours,
            core, theirs):
    """The storm record of one pair of drivers: ours, core and theirs, the
    (times, connections, CPU ns) of each round of the repository's side,
    the core side's and the raw side's. reads_per_s and raw_reads_per_s
    are the medians of the rounds', ratio_reads_per_s the median of the
    rounds' ratios, with their range; core_* the same of the core side."""
    reads_per_s, cpu_per_read = _side(ours, seconds)
    raw_reads_per_s, raw_cpu_per_read = _side(theirs, seconds)
    core_reads_per_s, core_cpu_per_read = _side(core, seconds)
    ratio, low, high = _ratios(ours, theirs, seconds)
    core_ratio, core_low, core_high = _ratios(core, theirs, seconds)
    times, raw_times = array.array("q"), array.array("q")
    for (round_times, _, _), (raw_round_times, _, _) in zip(ours, theirs):
        times.extend(round_times)
        raw_times.extend(raw_round_times)
    return {"backend": backend, "engine": engine, "driver": driver,
            "raw_driver": raw_driver, "operation": "storm", "rows": rows,
            "layout": layout_name(layout), "workers": layout[0],
            "threads": layout[1], "seconds": seconds, "rounds": len(ours),
            "reads_per_s": reads_per_s, "raw_reads_per_s": raw_reads_per_s,
            "ratio_reads_per_s": ratio, "ratio_reads_per_s_min": low,
            "ratio_reads_per_s_max": high,
            **harness.comparison(times, raw_times),
            "connections": max(connections for _, connections, _ in ours),
            "raw_connections": max(
                connections for _, connections, _ in theirs),
            "cpu_per_read_us": cpu_per_read,
            "raw_cpu_per_read_us": raw_cpu_per_read,
            "core_reads_per_s": core_reads_per_s,
            "core_ratio_reads_per_s": core_ratio,
            "core_ratio_reads_per_s_min": core_low,
            "core_ratio_reads_per_s_max": core_high,
            "core_cpu_per_read_us": core_cpu_per_read}


def run(database, layouts, seconds, engine="role_stash", preload=(),
        rounds=1):
    """Run every layout's storm, the lone worker's first, the repository on
    engine's engines ("role_stash" or "nova"), the workers' server
    preloaded with the modules of preload; return the records and report
    lines. Each side storms for seconds per layout and driver, cut into
    rounds: the sides take turns round by round, so that a shared
    machine's slow spells fall on both."""
    name, records, notes = database.backend.name, [], []
    if database.backend.connections_sql is None:
        return records, [f"{name}: no boot storm: no server to count the "
                         "connections each side holds"]
    for number, layout in enumerate((LONE_WORKER, *layouts)):
        duration, layout_rounds = seconds, rounds
        if number == 0:
            duration, layout_rounds = min(LONE_WORKER_SECONDS, seconds), 1
        results = {}
        for turn in range(layout_rounds):
            # Raw first in one round, the repository first in the next:
            # each side meets the server's warm and cold moments alike.
            for side in SIDES if (number + turn) % 2 else reversed(SIDES):
                for driver in database.drivers:
                    harness.progress(
                        f"{name}: storm {layout_name(layout)}, round "
                        f"{turn + 1} of {layout_rounds}, {side} "
                        f"{driver.name}, {duration / layout_rounds:g} s")
                    results.setdefault((side, driver.name), []).append(
                        storm(database, driver, side, layout,
                              duration / layout_rounds, engine, preload))
        records += [_record(name, engine, database.populated, layout,
                            duration, ours.name, theirs.name,
                            results["repository", ours.name],
                            results["core", ours.name],
                            results["raw", theirs.name])
                    for ours in database.drivers
                    for theirs in database.drivers]
    shared = ("one StashRepository" if engine == "role_stash" else
              "one Nova context manager, each read through "
              "repository_for(context)")
    notes.append(f"{name}: storm: each raw thread opens its own connection "
                 "(a raw driver connection is not thread-safe); each "
                 f"repository worker process opens {shared}, shared by its "
                 "threads; each core thread holds a Connection of the "
                 "engine the repository's lone reads use; connections are "
                 "counted by the server while the storm runs (the most seen "
                 "at once)")
    for record in records:
        if record["layout"] == layout_name(LONE_WORKER) and (
                record["driver"] == record["raw_driver"]):
            notes.append(
                f"{name}: {record['driver']}: a single-threaded read-only "
                f"worker held {record['connections']} server connection(s), "
                f"raw {record['raw_connections']}")
    return records, notes
