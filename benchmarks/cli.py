"""The command line: which backends and scenarios run, how much, and where
the report goes."""

import argparse
import dataclasses
import shlex
import sys
import time

import benchmarks
from benchmarks import database as databases
from benchmarks import report
from benchmarks.scenarios import boot_storm
from benchmarks.scenarios import read_cost
from benchmarks.scenarios import single_call
from benchmarks.scenarios import vendordata_get


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much work one run does."""

    sizes: tuple[int, ...]
    calls: int  # timed calls per side; a tenth as many more warm up
    bulk_calls: int
    memory_reads: int
    storm_seconds: float  # per side, driver and layout


# --quick is for routine runs, short storms included: its budget is a
# minute and a half for all three backends on this 2-vCPU machine.
QUICK = Settings(sizes=(10_000,), calls=1000, bulk_calls=100,
                 memory_reads=3_000, storm_seconds=3)
FULL = Settings(sizes=(10_000, 100_000, 1_000_000), calls=10_000,
                bulk_calls=2000, memory_reads=100_000, storm_seconds=20)


# The vendordata GET's uncached side is an HTTP call: fewer calls do.
VENDORDATA_CALLS = 2000


def parse_args(argv):
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=benchmarks.__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10k rows, fewer calls, short storms")
    parser.add_argument("--calls", metavar="N", type=int,
                        help="timed calls per operation (smoke tests)")
    parser.add_argument("--json", metavar="PATH",
                        help="write the records here")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw latency distributions and storm "
                        "throughput here (needs matplotlib), and write the "
                        "results beside it, FILE.json")
    parser.add_argument("--results", metavar="PATH",
                        help="write the results here: the records, the "
                        "machine and the versions")
    databases.add_arguments(parser, databases.BACKENDS)
    parser.add_argument("--profile", metavar="BACKEND",
                        choices=databases.BACKENDS,
                        help="print pyinstrument's profile of API reads")
    parser.add_argument("--storm", metavar="LAYOUTS",
                        default=",".join(map(boot_storm.layout_name,
                                             boot_storm.DEFAULT_LAYOUTS)),
                        help="boot-storm layouts, WORKERSxTHREADS, "
                        "comma-separated; 'none' skips the storm")
    parser.add_argument("--storm-seconds", metavar="S", type=float,
                        help="seconds per storm (default: 20, --quick: 3)")
    parser.add_argument("--read-cost", action="store_true",
                        help="count each layer's client instructions per "
                        "read under valgrind (a few minutes per driver)")
    args = parser.parse_args(argv)
    databases.check_arguments(parser, args)
    if args.calls is not None and args.calls < 2:
        parser.error("--calls must be at least 2")
    if args.profile and args.profile not in args.backends:
        parser.error(f"--profile {args.profile} is not among --backends")
    try:
        args.storm = (() if args.storm == "none"
                      else boot_storm.parse_layouts(args.storm))
    except ValueError as error:
        parser.error(f"--storm: {error}")
    if args.storm_seconds is not None and args.storm_seconds <= 0:
        parser.error("--storm-seconds must be positive")
    return args


def main(argv=None):
    """Run the benchmark; return 0."""
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.calls is not None:
        settings = dataclasses.replace(settings, calls=args.calls,
                                       bulk_calls=args.calls)
    if args.storm_seconds is not None:
        settings = dataclasses.replace(settings,
                                       storm_seconds=args.storm_seconds)
    started = time.perf_counter()
    load_start = report.load()
    records, notes, samples, servers = [], [], [], {}
    for name in args.backends:
        url = getattr(args, f"{name}_url") or databases.DEFAULT_URLS[name]
        with databases.Database(databases.BACKENDS[name], url,
                                args.use_existing_database) as database:
            servers[name] = database.server_version()
            scenario = single_call.SingleCall(database, settings)
            backend_records, backend_notes = scenario.run(
                profile=args.profile == name)
            records += backend_records
            notes += backend_notes
            samples += scenario.samples
            vendordata_records, vendordata_notes = vendordata_get.run(
                database, min(settings.calls, VENDORDATA_CALLS))
            records += vendordata_records
            notes += vendordata_notes
            if args.storm:
                storm_records, storm_notes = boot_storm.run(
                    database, args.storm, settings.storm_seconds)
                records += storm_records
                notes += storm_notes
            if args.read_cost:
                cost_records, cost_notes = read_cost.run(
                    database, args.calls or read_cost.READS)
                records += cost_records
                notes += cost_notes
    seconds = time.perf_counter() - started
    print(report.text(records, notes, seconds))
    if args.json:
        report.write_json(records, args.json)
    command = "python -m benchmarks " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    results_paths = [args.results] if args.results else []
    if args.plot:
        results_paths.append(report.results_path(args.plot))
    for path in results_paths:
        report.write_results(path, records, command=command, seconds=seconds,
                             load_start=load_start, servers=servers)
    if args.plot:
        report.plot(records, samples, args.plot)
    return 0
