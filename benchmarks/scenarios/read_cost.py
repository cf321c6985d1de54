"""Where a read's time goes: the client instructions per read of each layer,
from the raw driver up to get_stash, counted by valgrind's callgrind.

Instructions, not seconds: the same code, inputs and driver give the same
count whatever else the machine is doing, so the ladder is repeatable on a
shared machine where CPU times move from one run to the next. Each layer
runs in a process of its own under callgrind; the count covers only the
timed reads (collection is switched on by entering builtins.divmod, which
nothing on the read path calls), after untimed warm-up reads.

Run alone on a populated database (the benchmark does it with --read-cost):
    python -m benchmarks.scenarios.read_cost LAYER URL ARRAYS READS
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys

from sqlalchemy.engine import make_url

from benchmarks import harness
from benchmarks import raw

# Each layer adds one thing to the one below it.
LAYERS = (
    ("raw", "the raw driver: a cursor per read on a held connection"),
    ("pool", "+ SQLAlchemy's pool: the read engine's connection checked "
             "out and in per read, the driver's cursor on it"),
    ("core_held", "+ SQLAlchemy Core: the repository's SELECT executed on "
                  "a held Connection (events, compiled cache, result)"),
    ("core", "+ a Connection per read, as a lone read makes it"),
    ("plain_core", "the same on an engine without oslo.db's listeners "
                   "(for comparison: what its events cost)"),
    ("repository", "+ role_stash: get_stash (validation, retry, error "
                   "translation, the fold into a Stash)"),
)
READS = 1000
WARMUP = 300
_COLLECTED = re.compile(r"Collected : (\d+)")


def available():
    """Whether valgrind can be run here."""
    return shutil.which("valgrind") is not None


def pooled_read(engine, sql):
    """Return read(instance_uuid): sql on a cursor of the driver's
    connection, checked out of engine's pool and in again per read."""
    def read(instance_uuid):
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, (instance_uuid,))
            return cursor.fetchall()
        finally:
            connection.close()
    return read


def held_read(connection, statements):
    """Return read(instance_uuid): the repository's SELECT of one stash,
    statements.read_one, on a held SQLAlchemy Connection."""
    return lambda instance_uuid: connection.execute(
        statements.read_one, {"instance_uuid": instance_uuid}).all()


def per_connection_read(engine, statements):
    """Return read(instance_uuid): the same on a Connection of engine's
    per read."""
    def read(instance_uuid):
        with engine.connect() as connection:
            return connection.execute(
                statements.read_one, {"instance_uuid": instance_uuid}).all()
    return read


def floor_read(lone_engines, statements, stack):
    """Return read(instance_uuid): SQLAlchemy Core alone as a repository of
    lone_engines runs its lone reads, the floor of its read. Where they
    are in autocommit the repository keeps a Connection, and this holds
    one (its closing left to stack, a contextlib.ExitStack); elsewhere a
    held Connection would hold its transaction open, and SQLite's lock
    with it, so this takes one per read, as the repository does."""
    engine = lone_engines.reader()
    if lone_engines.autocommit() is None:
        return per_connection_read(engine, statements)
    return held_read(stack.enter_context(engine.connect()), statements)


def _read_of(layer, url, arrays, stack):
    """Return read(instance_uuid) of a layer, its connections opened and
    their closing left to stack (a contextlib.ExitStack)."""
    import sqlalchemy as sa

    from role_stash.db import api
    from role_stash.db import dialects

    url = make_url(url)
    driver = raw.DRIVERS["sqlite3" if url.get_backend_name() == "sqlite"
                         else url.get_driver_name()]
    if layer == "raw":
        client = raw.RawClient(driver, url, arrays, writes=False)
        stack.callback(client.close)
        return client.get_stash
    repository = api.StashRepository.from_url(
        url.render_as_string(hide_password=False))
    stack.callback(repository.close)
    if layer == "repository":
        return repository.get_stash
    statements = dialects.for_dialect(url.get_backend_name())
    engine = repository.lone_engines.reader()
    sql = raw.Statements(arrays, driver.placeholder).read
    if layer == "pool":
        return pooled_read(engine, sql)
    if layer == "core_held":
        return held_read(stack.enter_context(engine.connect()), statements)
    if layer == "plain_core":
        engine = sa.create_engine(
            url, **{key: value for key, value
                    in statements.read_engine_options.items()
                    if key != "pool_pre_ping"})
        stack.callback(engine.dispose)
    if layer in ("core", "plain_core"):
        return per_connection_read(engine, statements)
    raise ValueError(f"unknown layer {layer!r}")


class _Timed:
    """Its __divmod__ runs the timed reads: callgrind collects only inside
    builtins.divmod."""

    def __init__(self, read, uuids):
        self.read = read
        self.uuids = uuids

    def __divmod__(self, other):
        for instance_uuid in self.uuids:
            self.read(instance_uuid)
        return 0, 0


def _worker(layer, url, arrays, reads):
    read = _read_of(layer, url, arrays == "arrays", contextlib.ExitStack())
    populated = [line.strip() for line in sys.stdin if line.strip()]
    uuids = [populated[index % len(populated)] for index in range(reads)]
    for instance_uuid in populated[:WARMUP]:
        read(instance_uuid)
    divmod(_Timed(read, uuids), 1)


def count(layer, url, arrays, uuids, reads=READS):
    """Return the instructions per read of a layer, counted by callgrind."""
    command = [
        "valgrind", "--tool=callgrind", "--collect-atstart=no",
        "--toggle-collect=builtin_divmod",
        f"--callgrind-out-file={os.devnull}",
        sys.executable, "-m", __name__, layer,
        url.render_as_string(hide_password=False),
        "arrays" if arrays else "rows", str(reads)]
    result = subprocess.run(
        command, input="\n".join(uuids), capture_output=True, text=True,
        timeout=1800, cwd=os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))))
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{layer} under callgrind failed:\n"
                           f"{result.stderr[-2000:]}")
    return int(found.group(1)) / reads


def run(database, reads=READS):
    """Count each layer's instructions per read on each of the backend's
    drivers; return the records and report lines."""
    name = database.backend.name
    if not available():
        return [], [f"{name}: no read cost: valgrind is not installed"]
    uuids = database.random_uuids(max(reads, WARMUP))
    records = []
    for driver in database.drivers:
        below = None
        for layer, _ in LAYERS:
            harness.progress(f"{name}: read cost, {driver.name}, {layer} "
                             "(under callgrind)")
            instructions = count(layer, database.url_for(driver),
                                 database.backend.arrays, uuids, reads)
            records.append({
                "backend": name, "driver": driver.name,
                "operation": "read_cost", "layer": layer,
                "rows": database.populated, "reads": reads,
                "instructions_per_read": round(instructions),
                "added": (None if below is None or layer == "plain_core"
                          else round(instructions - below))})
            if layer != "plain_core":
                below = instructions
    return records, [f"{name}: read cost: client instructions per read, "
                     "counted by callgrind (the server's work is not in "
                     "them)"]


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
