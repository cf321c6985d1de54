"""Archive and purge at scale: rows per second, reads and writes beside them.

Usage: python -m benchmarks.archive [--stashes N] [--live N]
           [--batch-size N] [--idle-seconds S]
           [--backends postgresql,mariadb,sqlite]
           [--postgresql-url URL] [--mariadb-url URL] [--sqlite-url URL]
           [--use-existing-database] [--json PATH]

Per backend, in a database it creates and drops (--use-existing-database:
the empty database of each given URL, migrated, and emptied again), it
fills --stashes soft-deleted stashes (default 1,000,000) and --live live
ones, then times `role-stash-manage archive-deleted --until-complete` and
`purge --all --until-complete` while a reader thread reads live stashes and
a writer thread stashes new ones (scenarios/archive_purge.py). The
repository and role-stash-manage run on psycopg 3 on PostgreSQL, PyMySQL
on MariaDB.

--json PATH writes one record per backend and phase (idle, archive,
purge) with the keys backend, driver, phase, stashes, live, replies,
batch_size, seconds, rows, rows_per_s, stashes_per_s (null for idle),
reads, read_p50_ms, read_p99_ms, read_max_ms, writes, write_p50_ms,
write_p99_ms, write_max_ms, read_errors, write_errors.
"""

import argparse
import sys
import time

from benchmarks import database as databases
from benchmarks import harness
from benchmarks import report as reports
from benchmarks.scenarios import archive_purge
from role_stash.db import archive as role_stash_archive

# The driver each backend runs on: the repository's recommended one.
DRIVERS = {"postgresql": "psycopg", "mariadb": "pymysql",
           "sqlite": "sqlite3"}


def parse_args(argv):
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.archive",
        description=__doc__.splitlines()[0])
    parser.add_argument("--stashes", type=int, default=1_000_000,
                        metavar="N", help="soft-deleted stashes to archive "
                        "and purge (default 1,000,000)")
    parser.add_argument("--live", type=int, default=10_000, metavar="N",
                        help="live stashes the reader reads (default "
                        "10,000)")
    parser.add_argument("--batch-size", type=int,
                        default=role_stash_archive.BATCH_SIZE, metavar="N",
                        help="role-stash-manage's --batch-size (default "
                        f"{role_stash_archive.BATCH_SIZE})")
    parser.add_argument("--idle-seconds", type=float, default=10,
                        metavar="S", help="length of the baseline, reads "
                        "and writes alone (default 10)")
    databases.add_arguments(parser, ("postgresql", "mariadb"))
    parser.add_argument("--json", metavar="PATH",
                        help="write the records here")
    args = parser.parse_args(argv)
    databases.check_arguments(parser, args)
    if args.stashes < 1 or args.live < 1 or args.batch_size < 1:
        parser.error("--stashes, --live and --batch-size must be positive")
    return args


def main(argv=None):
    """Run the benchmark; return 0."""
    args = parse_args(argv)
    started = time.perf_counter()
    records = []
    for name in args.backends:
        url = getattr(args, f"{name}_url") or databases.DEFAULT_URLS[name]
        backend = databases.BACKENDS[name]
        with databases.Database(backend, url,
                                args.use_existing_database) as database:
            driver = next(driver for driver in database.drivers
                          if driver.name == DRIVERS[name])
            backend_records, _ = archive_purge.run(
                name, database.url_for(driver).render_as_string(
                    hide_password=False),
                stashes=args.stashes, live=args.live,
                batch_size=args.batch_size, idle_seconds=args.idle_seconds)
            records += backend_records
    print(archive_purge.report(records))
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        reports.write_json(records, args.json)
    return 0


if __name__ == "__main__":
    harness.progress("python -m benchmarks.archive")
    sys.exit(main())
