"""Time role_stash's repository against the raw database drivers.

Usage: python -m benchmarks [--quick] [--calls N] [--json PATH]
           [--results PATH] [--plot FILE.png]
           [--backends sqlite,postgresql,mariadb]
           [--postgresql-url URL] [--mariadb-url URL] [--sqlite-url URL]
           [--use-existing-database] [--profile BACKEND]
           [--storm 8x4,16x1] [--storm-seconds S] [--read-cost]
(python benchmarks/run.py takes the same arguments.) Archive and purge at
scale have a command of their own: python -m benchmarks.archive.

Per backend, in a database it creates and drops (--use-existing-database:
in the empty database of each given URL, migrated and emptied again), it
runs the repository on each of the backend's drivers, and each raw driver
doing the equivalent SQL: PostgreSQL on psycopg2 and psycopg (3, whose
ordinary autocommit connection prepares a statement on the server once it
has run a few times), MariaDB on PyMySQL and, if it can be imported,
mysqlclient (MySQLdb), SQLite on sqlite3. Every record compares the
repository on one driver with one raw driver: each with each.

Single calls (scenarios/single_call.py), every side in alternation, call
by call (--calls: timed calls per operation and side):
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
Before timing each size it checks that every side reads the same stashes
and role names, in order, and that each raw write reads back as written.
It then counts the round trips per call of each side, on the server's
side of the driver: every request PyMySQL sends (queries, BEGIN/COMMIT,
pings); every statement PostgreSQL logs (log_statement=all, sent back as
notices; this needs a superuser); every statement SQLite runs. On
PostgreSQL it counts the statements each side's sessions hold prepared
(pg_prepared_statements) after the timed calls.

Boot storm (scenarios/boot_storm.py), at the largest size: get_stash of
random stashes from N worker processes x T threads (--storm, default 8x4
and 16x1), all started together, for --storm-seconds each (default 20,
--quick 3); each raw driver, then the repository on it (the order swaps
from one layout to the next). A raw thread opens its own connection, since
a raw driver connection is not thread-safe; a repository worker process
opens one StashRepository, shared by its threads. The server counts the
connections each side holds while it runs. A single-threaded worker (1x1,
1 s) runs first. SQLite has no server to count with: no storm.

Read cost (scenarios/read_cost.py, --read-cost, at the largest size):
where a read's client time goes, as instructions per read counted by
valgrind's callgrind (repeatable on a busy machine, unlike seconds), layer
by layer from the raw driver up to get_stash: SQLAlchemy's pool, Core on a
held Connection, a Connection per read, role_stash; and Core on an engine
without oslo.db's listeners beside them. A few minutes per driver.

--json PATH writes a list of records. Timing records have the keys
backend, driver (the repository's), raw_driver, operation ("read",
"write", "bulk_read"), rows, p50_us, p99_us, raw_p50_us, raw_p99_us,
ratio_p50, ratio_p99 (ratio: API / raw), round_trips, raw_round_trips
(per call, API and raw; null where not counted), and on PostgreSQL
prepared_statements, raw_prepared_statements. One record per backend and
driver has operation "memory" and the keys backend, driver, operation,
rows, reads, rss_before_kb, rss_after_kb, growth_kb: the resident set
size around 100k API reads (--quick: 3k) at the largest table size. Storm
records have operation "storm" and the keys backend, driver, raw_driver,
rows, layout ("8x4"), workers, threads, seconds, reads_per_s,
raw_reads_per_s, ratio_reads_per_s, the p50/p99 keys above (latency under
load), connections, raw_connections (the most the server saw at once),
cpu_per_read_us, raw_cpu_per_read_us (the reading threads' CPU per read),
and core_reads_per_s, core_ratio_reads_per_s, core_cpu_per_read_us: the
same of SQLAlchemy Core alone, the repository's SELECT on a Connection
each thread holds (the floor of a read on a SQLAlchemy Connection).
Read-cost records have operation "read_cost" and the keys backend, driver,
layer, rows, reads, instructions_per_read, added (over the layer below;
null for the first and for the comparison layer plain_core).
--results PATH writes the run's results: an object with the keys command,
seconds, machine (cpu, cores, kernel, load_start, load_end: the load
average at the start and the end), versions (Python, SQLAlchemy, oslo.db,
alembic, every driver that can be imported, and "<backend> server" for each
server) and records (the list above). --plot FILE.png draws the read
latency distributions and the storm throughput, and writes the results
beside it, FILE.json.
"""
