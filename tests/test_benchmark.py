"""The benchmark runs quickly on each backend and writes its records."""

import contextlib
import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash.db import dialects

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The script's backend names, by SQLAlchemy's.
SCRIPT_BACKENDS = {"sqlite": "sqlite", "postgresql": "postgresql",
                   "mysql": "mariadb"}
# The drivers each backend is measured through, every one with every one:
# mysqlclient too where it is installed (it is not a dependency).
DRIVERS = {"sqlite": {"sqlite3"}, "postgresql": {"psycopg2", "psycopg"},
           "mariadb": {"pymysql"} | (
               {"mysqldb"} if importlib.util.find_spec("MySQLdb") else set())}
TIMING_KEYS = {"backend", "driver", "raw_driver", "operation", "rows",
               "p50_us", "p99_us", "raw_p50_us", "raw_p99_us", "ratio_p50",
               "ratio_p99"}
MEMORY_KEYS = {"backend", "driver", "operation", "rows", "reads",
               "rss_before_kb", "rss_after_kb", "growth_kb"}
STORM_KEYS = TIMING_KEYS - {"operation", "rows"} | {
    "operation", "rows", "layout", "workers", "threads", "seconds",
    "reads_per_s", "raw_reads_per_s", "ratio_reads_per_s", "connections",
    "raw_connections", "engine", "cpu_per_read_us", "raw_cpu_per_read_us",
    "rounds", "ratio_reads_per_s_min", "ratio_reads_per_s_max",
    "core_reads_per_s", "core_ratio_reads_per_s",
    "core_ratio_reads_per_s_min", "core_ratio_reads_per_s_max",
    "core_cpu_per_read_us"}
ROWS = 10_000


def _positive(value):
    return (isinstance(value, (int, float)) and math.isfinite(value)
            and value > 0)


def _run(arguments, database_url, tmp_path):
    """Run the benchmark on database_url's backend; return its records,
    which its results file names with the machine and the versions."""
    backend = SCRIPT_BACKENDS[make_url(database_url).get_backend_name()]
    output = tmp_path / "benchmark.json"
    results_file = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, *arguments, "--quick", "--calls", "50",
         "--backends", backend, f"--{backend}-url", database_url,
         "--use-existing-database", "--json", str(output),
         "--results", str(results_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads(output.read_text())
    assert isinstance(records, list)
    assert {record["backend"] for record in records} == {backend}
    results = json.loads(results_file.read_text())
    assert results["records"] == records
    assert results["command"].startswith("python -m benchmarks --")
    assert _positive(results["seconds"])
    assert results["machine"].keys() == {"cpu", "cores", "kernel",
                                         "load_start", "load_end"}
    assert _positive(results["machine"]["cores"])
    assert {"Python", "SQLAlchemy", "oslo.db", f"{backend} server"} <= (
        results["versions"].keys())
    return backend, records, result.stdout


def _assert_ratios_match(record):
    for percentile in ("p50", "p99"):
        api_us = record[f"{percentile}_us"]
        raw_us = record[f"raw_{percentile}_us"]
        ratio = record[f"ratio_{percentile}"]
        # The times are rounded to 0.1 us, the ratio to 0.01.
        slack = 0.0051 + 0.051 * (1 + ratio) / raw_us
        assert abs(ratio - api_us / raw_us) <= slack, record


def test_quick_benchmark_writes_well_formed_json(database_url, tmp_path):
    """A quick run of 50 calls per operation writes one record of each
    operation per pair of repository and raw driver, and one memory record
    per driver."""
    backend, records, _ = _run(["benchmarks/run.py", "--storm", "none"],
                               database_url, tmp_path)
    drivers = DRIVERS[backend]
    for operation in ("read", "write", "bulk_read"):
        found = [record for record in records
                 if record["operation"] == operation]
        assert {(record["driver"], record["raw_driver"])
                for record in found} == {(ours, theirs) for ours in drivers
                                         for theirs in drivers}
        assert len(found) == len(drivers) ** 2
        for record in found:
            assert TIMING_KEYS <= record.keys()
            assert record["rows"] == ROWS
            numbers = [record[key] for key in TIMING_KEYS - {
                "backend", "driver", "raw_driver", "operation"}]
            if "mysqldb" not in (record["driver"], record["raw_driver"]):
                # mysqlclient's requests are not counted: null there.
                numbers += [record["round_trips"], record["raw_round_trips"]]
            assert all(_positive(number) for number in numbers), record
            _assert_ratios_match(record)
            if backend == "postgresql":
                assert record["prepared_statements"] >= 0
                # psycopg 3 prepares what it has run often enough.
                assert (record["raw_prepared_statements"] > 0) == (
                    record["raw_driver"] == "psycopg"), record
    memories = [record for record in records
                if record["operation"] == "memory"]
    assert {memory["driver"] for memory in memories} == drivers
    for memory in memories:
        assert memory.keys() == MEMORY_KEYS
        assert memory["rows"] == ROWS
        assert _positive(memory["reads"])


def test_boot_storm_counts_reads_and_server_connections(database_url,
                                                         tmp_path):
    """A tiny boot storm through `python -m benchmarks`: a lone worker,
    then 2 processes x 2 threads, each side on each driver, with the
    connections the server saw."""
    backend, records, stdout = _run(
        ["-m", "benchmarks", "--storm", "2x2", "--storm-seconds", "0.5"],
        database_url, tmp_path)
    storms = [record for record in records if record["operation"] == "storm"]
    if backend == "sqlite":
        assert storms == []
        assert "sqlite: no boot storm" in stdout
        return
    drivers = DRIVERS[backend]
    assert {(record["layout"], record["driver"], record["raw_driver"])
            for record in storms} == {
        (layout, ours, theirs) for layout in ("1x1", "2x2")
        for ours in drivers for theirs in drivers}
    for record in storms:
        assert record.keys() == STORM_KEYS
        assert all(_positive(record[key]) for key in (
            "reads_per_s", "raw_reads_per_s", "ratio_reads_per_s",
            "p50_us", "p99_us", "raw_p50_us", "raw_p99_us")), record
        _assert_ratios_match(record)
        # One raw connection per thread; the repository at least one.
        assert record["raw_connections"] == (
            record["workers"] * record["threads"]), record
        assert record["connections"] >= record["workers"], record
        # A worker's threads share its one pool of lone reads.
        assert record["connections"] <= (
            record["workers"] * record["threads"]), record


def test_every_read_cost_layer_reads_the_same_stash(repository, monkeypatch):
    """Each layer the read-cost ladder counts under callgrind reads the
    stash the repository wrote: the instructions counted are a read's."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.scenarios import read_cost

    instance = "6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8c"
    roles = ("member", "reader", "admin")
    repository.stash_roles(instance, project_id="p", user_id="u",
                           roles=list(roles))
    url = repository.lone_engines.writer().url
    arrays = url.get_backend_name() == "postgresql"
    for layer, _ in read_cost.LAYERS:
        with contextlib.ExitStack() as stack:
            found = read_cost._read_of(layer, url, arrays, stack)(instance)
        if layer == "repository":
            assert found.roles == roles, layer
        elif arrays:
            [row] = found
            assert (row[1], tuple(row[8])) == (instance, roles), layer
        else:
            assert [(row[1], row[8]) for row in found] == [
                (instance, name) for name in roles], layer


ARCHIVE_PHASES = ("idle", "archive", "purge")


def test_archive_benchmark_short_form_counts_its_rows(database_url,
                                                       tmp_path):
    """`python -m benchmarks.archive` with 2,000 deleted stashes: archive
    and purge each take every deleted stash, role and reply (the benchmark
    checks the tables' counts itself, and fails otherwise), while reads and
    writes go on without an error."""
    backend = SCRIPT_BACKENDS[make_url(database_url).get_backend_name()]
    output = tmp_path / "archive.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.archive", "--stashes", "2000",
         "--live", "50", "--batch-size", "500", "--idle-seconds", "0.2",
         "--backends", backend, f"--{backend}-url", database_url,
         "--use-existing-database", "--json", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads(output.read_text())
    assert [record["phase"] for record in records] == list(ARCHIVE_PHASES)
    for record in records:
        assert record["backend"] == backend
        assert (record["stashes"], record["live"], record["replies"]) == (
            2000, 50, 200)
        assert record["read_errors"] == record["write_errors"] == 0
        if record["phase"] == "idle":
            assert record["rows"] is None
        else:
            # 2,000 stashes, 6,000 roles, 200 replies.
            assert record["rows"] == 8200
            assert _positive(record["rows_per_s"])
    # How many calls fall in a phase is the machine's affair; that some
    # were made, and none failed, is the benchmark's.
    assert sum(record["reads"] for record in records) > 0
    assert sum(record["writes"] for record in records) > 0
    assert "| archive |" in result.stdout


NOVA_READ_KEYS = TIMING_KEYS | {
    "engine", "ratio_p50_min", "ratio_p50_max", "blocks",
    "boot_roles_p50_us", "instance_metadata_p50_us", "boot_roles_ratio_p50",
    "share_of_metadata_pct", "share_of_metadata_pct_min",
    "share_of_metadata_pct_max", "core_p50_us", "core_ratio_p50",
    "core_ratio_p50_min", "core_ratio_p50_max"}
NOVA_CPU_LAYERS = ("raw", "pool", "core_held", "core", "repository",
                   "sleep0")
NOVA_ROWS = 120


def test_nova_engine_short_form_measures_every_side(database_url, tmp_path):
    """`python -m benchmarks.nova --short`: on Nova's schema, made by
    Nova's migrations, the read on Nova's engine against each raw driver
    beside Nova's own paths, the create with and without its stash, the
    CPU per read of each layer, on MariaDB a lone write's requests as the
    server counts them, and the storm with its CPU per read."""
    pytest.importorskip("nova", reason="the nova extra is not installed")
    backend = SCRIPT_BACKENDS[make_url(database_url).get_backend_name()]
    output = tmp_path / "nova.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.nova", "--short",
         "--backends", backend, f"--{backend}-url", database_url,
         "--use-existing-database", "--json", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads(output.read_text())
    drivers = DRIVERS[backend]
    by_operation = {}
    for record in records:
        assert record["backend"] == backend
        assert record["engine"] == "nova"
        by_operation.setdefault(record["operation"], []).append(record)
    reads = by_operation["read"]
    assert {(record["driver"], record["raw_driver"]) for record in reads} == {
        (ours, theirs) for ours in drivers for theirs in drivers}
    for record in reads:
        assert record.keys() == NOVA_READ_KEYS, record
        assert record["rows"] == NOVA_ROWS
        assert all(_positive(record[key]) for key in NOVA_READ_KEYS - {
            "backend", "engine", "driver", "raw_driver", "operation"}), record
        assert (record["ratio_p50_min"] <= record["ratio_p50"]
                <= record["ratio_p50_max"]), record
    creates = by_operation["create"]
    assert {record["driver"] for record in creates} == drivers
    for record in creates:
        # Beside the stash, the floor: the raw driver writing a stash's
        # rows on Nova's connection, in Nova's transaction.
        assert all(_positive(record[key]) for key in (
            "p50_us", "raw_p50_us", "ratio_p50", "raw_stash_p50_us",
            "raw_stash_ratio_p50")), record
        assert (record["raw_stash_ratio_p50_min"]
                <= record["raw_stash_ratio_p50"]
                <= record["raw_stash_ratio_p50_max"]), record
    cpu = by_operation["read_cpu"]
    assert sorted((record["driver"], record["layer"]) for record in cpu) == (
        sorted((driver, layer) for driver in drivers
               for layer in NOVA_CPU_LAYERS))
    assert all(_positive(record["cpu_per_read_us"]) for record in cpu)
    if backend == "mariadb":
        [write] = by_operation["write"]
        # INSERT, INSERT, COMMIT at the least, on either side.
        assert write["raw_round_trips"] == 3, write
        assert write["round_trips"] >= 3, write
    else:
        assert "write" not in by_operation
    if backend == "sqlite":
        assert "storm" not in by_operation
        return
    storms = by_operation["storm"]
    assert {(record["layout"], record["driver"], record["raw_driver"])
            for record in storms} == {
        (layout, ours, theirs) for layout in ("1x1", "2x2")
        for ours in drivers for theirs in drivers}
    for record in storms:
        assert record.keys() == STORM_KEYS, record
        # Beside the repository, its floor: Core on a held Connection.
        assert all(_positive(record[key]) for key in (
            "reads_per_s", "raw_reads_per_s", "cpu_per_read_us",
            "raw_cpu_per_read_us", "core_reads_per_s",
            "core_cpu_per_read_us")), record
        assert (record["core_ratio_reads_per_s_min"]
                <= record["core_ratio_reads_per_s"]
                <= record["core_ratio_reads_per_s_max"]), record
        # The short form cuts each side's storm in two rounds, but the
        # lone worker's.
        assert record["rounds"] == (1 if record["layout"] == "1x1" else 2)
        assert (record["ratio_reads_per_s_min"]
                <= record["ratio_reads_per_s"]
                <= record["ratio_reads_per_s_max"]), record
        # Nova's pool, and role_stash's reader made of its settings, hold
        # no more than a connection per reading thread.
        assert record["connections"] <= (
            record["workers"] * record["threads"]), record


def test_nova_engine_scenario_without_nova_says_it_is_skipped():
    """Without the nova extra the Nova scenario says why it measures
    nothing, and exits 0."""
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.modules['nova'] = None; "
         "from benchmarks import nova; sys.exit(nova.main([]))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        "skipped: the nova extra is not installed"), result.stdout


def _databases(url):
    """The databases of url's server, or the file of a SQLite URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {parsed.database} if pathlib.Path(
            parsed.database).exists() else set()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(sa.text(
                "SELECT datname FROM pg_database"
                if engine.dialect.name == "postgresql" else
                "SELECT schema_name FROM information_schema.schemata")))
    finally:
        engine.dispose()


def test_a_benchmark_database_is_dropped_with_role_stashs_beside_it(server):
    """The benchmarks on Nova's schema drop their database with role_stash's
    own database beside it (MySQL, where its tables go beside Nova's), so
    a next run finds neither."""
    url = server.new_database()
    name = make_url(url).database
    beside = dialects.mysql_own_database(name)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:  # SQLite's file made too
            if engine.dialect.name == "mysql":
                connection.execute(sa.text(f"CREATE DATABASE {beside}"))
    finally:
        engine.dispose()
    survivor = server.new_database()
    try:
        assert name in _databases(url)
        subprocess.run(
            [sys.executable, "-c", "import sys; from benchmarks import "
             "nova_import; nova_import.drop_database(sys.argv[1])", url],
            cwd=ROOT, check=True, timeout=120)
        left = _databases(survivor)
        assert name not in left and beside not in left
    finally:
        server.drop_database(survivor)
