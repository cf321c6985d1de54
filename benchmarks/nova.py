"""The stash read as Nova runs it: on Nova's engine, beside Nova's own path.

Usage: python -m benchmarks.nova [--short] [--sizes 10000,100000]
           [--blocks N] [--rounds N] [--storm 8x4,16x1] [--storm-seconds S]
           [--storm-rounds N]
           [--backends postgresql,mariadb,sqlite]
           [--postgresql-url URL] [--mariadb-url URL] [--sqlite-url URL]
           [--use-existing-database] [--json PATH] [--plot FILE.png]

Needs the `nova` extra (Nova is a test dependency of role_stash, never a
runtime one): without it the run prints why it is skipped and exits 0.

Per backend, in a database it creates and drops (--use-existing-database:
the empty database of each given URL, left holding both schemas): Nova's
main schema by Nova's own migrations, role_stash's beside it; instances
made by Nova's objects (scenarios/nova_engine.py), the rest of each size
copied from them, each with its stash. Every side runs on every driver of
the backend (PostgreSQL: psycopg2 and psycopg 3; MariaDB: PyMySQL), on a
context manager of Nova's create_context_manager with Nova's [database]
defaults, as a guest's metadata request is served
(scenarios/nova_calls.py):

  read      repository_for(context).get_stash(uuid) against each raw
            driver's SELECT on a held connection, interleaved call by call
            with Nova's boot_roles path (Instance.get_by_uuid(...,
            expected_attrs=['system_metadata'])) and Nova's InstanceMetadata
            build (get_metadata_by_instance_id, Neutron answering no
            security groups); at every size
  read_cpu  each layer's client CPU per read (thread user + system time),
            from the raw driver up to the repository, on the engine of
            the repository's lone reads; and time.sleep(0) alone
  create    Nova's instance.create() in its writer transaction, with and
            without stash_from_context, at the largest size
  write     (MariaDB) requests per lone stash write, counted by the server
  storm     at the largest size, N processes x T threads (--storm), each
            side's --storm-seconds cut into --storm-rounds rounds, the
            sides taking turns round by round

The sides of a comparison take turns call by call; the calls are cut in
--blocks blocks: a p50 is the median of the blocks' medians, a ratio the
median of the blocks' ratios, with the blocks' min and max beside it.

--json PATH writes the records: read records have the keys of the main
benchmark's (backend, driver, raw_driver, operation, rows, p50_us, ...,
ratio_p50), and engine "nova", ratio_p50_min, ratio_p50_max, blocks,
boot_roles_p50_us, instance_metadata_p50_us, boot_roles_ratio_p50,
share_of_metadata_pct (the read's p50 in % of InstanceMetadata's) with its _min
and _max, core_p50_us and core_ratio_p50 (_min, _max): the same of SQLAlchemy
Core alone, the repository's SELECT on a held Connection, the floor of a read
on a SQLAlchemy Connection; create records the same timing keys (raw: the
create without a stash) and raw_stash_p50_us, raw_stash_ratio_p50 (_min, _max):
the create with the raw driver writing a stash's rows on Nova's connection
instead, the floor of any stash written in Nova's transaction; storm records
the main benchmark's storm keys (reads_per_s the median of the rounds',
ratio_reads_per_s the median of the rounds' ratios, with its _min and _max;
core_* the same of SQLAlchemy Core alone); read_cpu records backend, driver,
layer, rows, reads, cpu_per_read_us (_min, _max), added_to (the layer it adds
to) and added (its CPU over that layer's); write records round_trips and
raw_round_trips. --plot FILE.png draws the reads and the storm, and writes the
results file beside it (FILE.json: the command, seconds, machine with its load
at the start and the end, versions with each server's, and the records), which
the docs quote.
"""

import argparse
import dataclasses
import shlex
import sys
import time

from benchmarks import database as databases
from benchmarks import harness
from benchmarks import nova_import
from benchmarks import report
from benchmarks.scenarios import boot_storm

DEFAULT_URLS = {
    "postgresql":
        "postgresql+psycopg2://postgres@127.0.0.1:5432/role_stash_nova_bench",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/role_stash_nova_bench"
               "?charset=utf8mb4",
    "sqlite": "sqlite:////tmp/role_stash_nova_bench.sqlite",
}
# The modules a storm worker would import: its server loads them once.
STORM_PRELOAD = ("benchmarks.scenarios.nova_calls", "nova.objects",
                 "nova.context", "nova.db.main.api")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much work one run does."""

    sizes: tuple[int, ...]
    object_instances: int  # made by Nova's objects; the rest copied
    blocks: int
    rounds: int  # per block: one read of each side per round
    warmup: int
    create_rounds: int  # per block
    cpu_reads: int  # per layer and block
    storm: tuple
    storm_seconds: float  # per side, driver and layout
    storm_rounds: int  # the sides take turns, round by round


FULL = Settings(sizes=(10_000, 100_000), object_instances=1000, blocks=5,
                rounds=400, warmup=40, create_rounds=20, cpu_reads=500,
                storm=boot_storm.DEFAULT_LAYOUTS, storm_seconds=20,
                storm_rounds=5)
# For CI: every side and record, little of each.
SHORT = Settings(sizes=(120,), object_instances=30, blocks=3, rounds=12,
                 warmup=4, create_rounds=4, cpu_reads=20, storm=((2, 2),),
                 storm_seconds=0.5, storm_rounds=2)


def parse_args(argv):
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nova",
        description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help="a few instances and calls of each side")
    parser.add_argument("--sizes", type=lambda value: tuple(
        int(size) for size in value.split(",")),
        help="instance counts, comma-separated (default 10000,100000)")
    parser.add_argument("--blocks", type=int, help="blocks (default 5)")
    parser.add_argument("--rounds", type=int,
                        help="rounds of reads per block (default 400)")
    parser.add_argument("--storm", help="storm layouts, WORKERSxTHREADS, "
                        "comma-separated; 'none' skips the storm")
    parser.add_argument("--storm-seconds", type=float,
                        help="per side, driver and layout (default 20)")
    parser.add_argument("--storm-rounds", type=int,
                        help="rounds a storm's seconds are cut into, the "
                        "sides taking turns (default 5)")
    databases.add_arguments(parser, ("postgresql", "mariadb"))
    parser.add_argument("--json", metavar="PATH",
                        help="write the records here")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw the reads and the storm (needs "
                        "matplotlib)")
    args = parser.parse_args(argv)
    databases.check_arguments(parser, args)
    settings = SHORT if args.short else FULL
    changes = {key: getattr(args, key) for key in (
        "sizes", "blocks", "rounds", "storm_seconds", "storm_rounds")
        if getattr(args, key) is not None}
    if args.storm is not None:
        try:
            changes["storm"] = (() if args.storm == "none"
                                else boot_storm.parse_layouts(args.storm))
        except ValueError as error:
            parser.error(f"--storm: {error}")
    args.settings = dataclasses.replace(settings, **changes)
    if min(args.settings.sizes) < 1 or args.settings.blocks < 1 or (
            args.settings.rounds < 1) or args.settings.storm_rounds < 1:
        parser.error("--sizes, --blocks, --rounds and --storm-rounds must "
                     "be positive")
    return args


def run_backend(name, url, existing, settings):
    """Run every part on one backend; return (records, samples, notes,
    the server's version)."""
    from benchmarks.scenarios import nova_calls
    from benchmarks.scenarios import nova_engine

    database = databases.Database(databases.BACKENDS[name], url)
    first_url = database.url_for(database.drivers[0]).render_as_string(
        hide_password=False)
    records, samples, notes = [], [], []
    if not existing:
        nova_import.create_database(first_url)
    try:
        nova_engine.progress(name, "Nova's schema by its own migrations, "
                             "then role_stash's")
        nova_engine.make_schemas(first_url)
        server = nova_engine.server_version(first_url,
                                            database.backend.version_sql)
        population = nova_engine.Population(first_url,
                                            settings.object_instances)
        clients = nova_calls.NovaClients(database)
        try:
            for size in settings.sizes:
                nova_engine.progress(name, f"{size} instances (the first "
                                     f"{min(size, settings.object_instances)}"
                                     " by Nova's objects)")
                population.grow(size)
                database.populated = size
                reads, read_samples = nova_calls.time_reads(clients, size,
                                                            settings)
                records += reads
                samples += read_samples
                records += nova_calls.cpu_by_layer(clients, size, settings)
            records += nova_calls.time_creates(clients, settings)
            if name == "mariadb":
                ours, theirs = nova_calls.mariadb_write_round_trips(clients)
                records.append({
                    "backend": name, "engine": "nova", "driver": "pymysql",
                    "raw_driver": "pymysql", "operation": "write",
                    "rows": database.populated, "round_trips": ours,
                    "raw_round_trips": theirs})
        finally:
            clients.close()
        if settings.storm:
            storm_records, storm_notes = boot_storm.run(
                database, settings.storm, settings.storm_seconds,
                engine="nova", preload=STORM_PRELOAD,
                rounds=settings.storm_rounds)
            records += storm_records
            notes += storm_notes
    finally:
        if not existing:
            nova_import.drop_database(first_url)
    return records, samples, notes, server


READ_COLUMNS = ("backend", "driver", "raw_driver", "rows", "p50_us",
                "raw_p50_us", "ratio_p50", "ratio_p50_min", "ratio_p50_max",
                "core_p50_us", "core_ratio_p50",
                "boot_roles_p50_us", "instance_metadata_p50_us",
                "share_of_metadata_pct")
CREATE_COLUMNS = ("backend", "driver", "rows", "p50_us", "raw_p50_us",
                  "ratio_p50", "ratio_p50_min", "ratio_p50_max",
                  "raw_stash_p50_us", "raw_stash_ratio_p50")
CPU_COLUMNS = ("backend", "driver", "layer", "rows", "cpu_per_read_us",
               "cpu_per_read_us_min", "cpu_per_read_us_max", "added_to",
               "added")
STORM_COLUMNS = ("backend", "driver", "raw_driver", "layout", "reads_per_s",
                 "raw_reads_per_s", "ratio_reads_per_s",
                 "ratio_reads_per_s_min", "ratio_reads_per_s_max",
                 "cpu_per_read_us", "raw_cpu_per_read_us",
                 "core_ratio_reads_per_s", "core_cpu_per_read_us",
                 "connections", "raw_connections")
WRITE_COLUMNS = ("backend", "driver", "round_trips", "raw_round_trips")


def text(records, notes, seconds):
    """Return the run's report: one table per operation."""
    parts = []
    for operation, title, columns in (
            ("read", "read on Nova's engine (p50 us; share: % of "
                     "InstanceMetadata)", READ_COLUMNS),
            ("create", "Nova's create with its stash (raw: without; "
                       "raw_stash: with the raw driver's stash instead)",
             CREATE_COLUMNS),
            ("read_cpu", "client CPU per read by layer (us)", CPU_COLUMNS),
            ("write", "lone write, requests counted by the server",
             WRITE_COLUMNS),
            ("storm", "boot storm", STORM_COLUMNS)):
        found = [record for record in records
                 if record["operation"] == operation]
        if found:
            parts.append(f"{title}:\n"
                         + report.format_table(found, columns))
    parts += notes
    parts.append(f"total {seconds:.1f} s")
    return "\n\n".join(parts)


def main(argv=None):
    """Run the benchmark; return 0 (also when Nova is not installed)."""
    from benchmarks.scenarios import nova_engine

    args = parse_args(argv)
    try:
        nova_engine.prepare_nova()
    except nova_engine.NovaMissing as error:
        print(f"skipped: {error}")
        return 0
    started = time.perf_counter()
    load_start = report.load()
    records, samples, notes, servers = [], [], [], {}
    for name in args.backends:
        url = getattr(args, f"{name}_url") or DEFAULT_URLS[name]
        found = run_backend(name, url, args.use_existing_database,
                            args.settings)
        records += found[0]
        samples += found[1]
        notes += found[2]
        servers[name] = found[3]
    seconds = time.perf_counter() - started
    print(text(records, notes, seconds))
    if args.json:
        report.write_json(records, args.json)
    if args.plot:
        # The results file the docs quote, beside its plot.
        report.write_results(
            report.results_path(args.plot), records,
            command="python -m benchmarks.nova " + shlex.join(
                sys.argv[1:] if argv is None else argv),
            seconds=seconds, load_start=load_start, servers=servers)
        report.plot(records, samples, args.plot)
    return 0


if __name__ == "__main__":
    harness.progress("python -m benchmarks.nova")
    sys.exit(main())
