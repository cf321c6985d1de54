"""Engines and pools: the enginefacade context managers and the engines of the
calls a repository makes alone.

A repository runs on an enginefacade transaction context manager: its own,
made from a URL or a [database] section, or the caller's (Nova's), whose
transactions it then joins. For calls made alone it adds an engine of its
own for reads (in autocommit where the dialect says so, and then also
PostgreSQL's one-statement write), built by oslo.db from the same
[database] settings as the context manager's engines, with the options of
dialects.Statements.read_engine_options; with [database] slave_connection,
one more, built the same way on the replica, for the lone metadata reads.
Lone writes run on the context manager's own writer engine, or, where the
dialect gives write_engine_options (MySQL, MariaDB), on one more engine
built the same way. Each engine's pool follows the caller's max_pool_size
and max_overflow, and opens its connections only when a call needs them.
Their retries are retries', their errors errors', and what is read of
oslo.db's private state is oslo_internals'.
"""

import datetime
import logging
import os
import sys
import threading
import weakref

from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import engines as oslo_engines
from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash import exception
from role_stash.db import errors
from role_stash.db import kept_connections
from role_stash.db import oslo_internals
from role_stash.db import retries
from role_stash.db import urls

LOG = logging.getLogger(__name__)

# [database] options handed from an oslo.config group to enginefacade.
_CONFIG_OPTIONS = (
    "slave_connection", "mysql_sql_mode", "mysql_wsrep_sync_wait",
    "connection_recycle_time", "connection_debug", "max_pool_size",
    "max_overflow", "pool_timeout", "sqlite_synchronous", "connection_trace",
    "max_retries", "retry_interval", "connection_parameters",
) + retries.RETRY_OPTIONS
# Taken from a [database] section only where the operator set them: their
# oslo.db defaults (20 call retries; a start-up connection test retried 10
# times 10 s apart) would replace role_stash's bounded ones.
_OPERATOR_ONLY = retries.RETRY_OPTIONS + ("max_retries", "retry_interval")

# After a read on the replica ([database] slave_connection) fails, lone
# reads go to the primary this long before the replica is tried again: a
# replica that is down then costs a failed connect and a log line per
# interval, not per metadata GET.
REPLICA_RETRY_INTERVAL = datetime.timedelta(seconds=10)


# The context managers made here for a mysql:// URL that named no
# charset, whose utf8mb4 role_stash chose: Nova's engines on the same URL
# get oslo.db's 3-byte utf8.
_utf8mb4_chosen = weakref.WeakSet()


def chose_utf8mb4(context_manager):
    """Whether role_stash, not the operator's URL, chose the utf8mb4 of a
    context manager's MySQL connections."""
    return context_manager in _utf8mb4_chosen


def _hide_parameters(engine):
    # Error messages, and oslo.db's log of them, then carry the SQL but
    # never the bound values (role names, ids).
    engine.hide_parameters = True


# The engines role_stash built, whose pooled connections a forked child
# drops without closing them (SQLAlchemy's advice for os.fork()): oslo.db's
# fork guard discards a parent's connection in the child by invalidating
# it, which closes it, and the driver then ends the parent's session on
# the server.
_ENGINES_OF_THIS_PROCESS = weakref.WeakSet()


def _forget_parent_connections():
    kept_connections.forget_parent_connections()
    for engine in list(_ENGINES_OF_THIS_PROCESS):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parent_connections)


def _set_up_engine(engine):
    """What every engine role_stash builds gets: hidden parameters, and
    its parent's connections left alone in a forked child."""
    _hide_parameters(engine)
    _ENGINES_OF_THIS_PROCESS.add(engine)


def context_manager_from_url(url=None, **options):
    """Return a new enginefacade transaction context manager for a URL.

    options are enginefacade's and [database]'s (max_pool_size,
    db_max_retries, ...). Unless given, the engine is not test-connected
    at start-up (max_retries=0): an unreachable database fails the call,
    after role_stash's own bounded retries, instead of blocking it while
    oslo.db retries the first connect.
    """
    url = urls.resolve_url(url)
    _create_private_sqlite_file(url)
    # thread_checkin's sleep(0) on every check-in is for eventlet; in a
    # threaded process it gives the CPU away on each call. slave_connection
    # is named even when None: enginefacade would take anything unnamed
    # from the global cfg.CONF's [database] section.
    chosen = urls.oslo_db_asks_for_utf8(url, options)
    options = {"sqlite_fk": True, "thread_checkin": False,
               "slave_connection": None, "max_retries": 0,
               **urls.with_utf8mb4(url, options)}
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=url, **options)
    context_manager.append_on_engine_create(_set_up_engine)
    if chosen:
        _utf8mb4_chosen.add(context_manager)
    return context_manager


def _create_private_sqlite_file(url):
    """Create a SQLite URL's file, if it does not exist yet, readable and
    writable by its owner alone (SQLite would make it as the umask lets
    it): it holds cached vendordata replies, secrets among them. SQLite
    gives its journals the database file's permissions."""
    parsed = make_url(url)
    path = parsed.database
    if (parsed.get_backend_name() != "sqlite" or _is_in_memory(url)
            or path.startswith("file:")):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except (FileExistsError, FileNotFoundError):
        pass  # there already, or SQLite will say the folder is missing


def context_manager_from_config(conf, group="database"):
    """Return a new enginefacade transaction context manager for an
    oslo.config [database] section (oslo.db's options are registered if
    needed)."""
    conf.register_opts(db_options.database_opts, group)
    section = conf[group]
    if not section.connection:
        raise exception.InvalidArgument(
            f"[{group}] connection", "not set in the configuration")
    options = {name: section[name] for name in _CONFIG_OPTIONS
               if section[name] not in (None, "")
               and (name not in _OPERATOR_ONLY
                    or oslo_internals.set_by_operator(conf, name, group))}
    options.setdefault("slave_connection", None)
    return context_manager_from_url(section.connection, **options)


# Engines of calls made alone.

def _is_in_memory(url):
    parsed = make_url(url)
    return (parsed.get_backend_name() == "sqlite"
            and parsed.database in (None, "", ":memory:"))


class LoneEngines:
    """The engines of the calls a repository makes outside any caller's
    transaction, and the runners of those calls, retried."""

    def __init__(self, context_manager, read_engine_options,
                 write_engine_options=lambda dialect_name: None):
        """read_engine_options(dialect_name) gives the SQLAlchemy engine
        arguments of the engine of lone reads (see _own_engine);
        write_engine_options(dialect_name) those of an engine of lone
        writes, or None: they run on the context manager's writer."""
        self._context_manager = context_manager
        self.factory = oslo_internals.factory_of(context_manager)
        self._lock = threading.Lock()
        self._own = {}  # "reader", "writer", "replica": role_stash's engines
        self._kept = {}  # engine: its kept_connections.KeptConnections
        self._read_options = None
        self._write_options = None
        self._replica_url = None
        self._replica_failed_at = None
        configured = oslo_internals.configured(context_manager)
        if configured is None:
            self.dialect_name = self._callers_writer().dialect.name
            retry_settings = {}
        else:
            url, engine_args, retry_settings = configured
            self.dialect_name = make_url(url).get_backend_name()
            # An in-memory SQLite database exists once, in the context
            # manager's one connection: a second engine would see another.
            if not _is_in_memory(url):
                self._url = url
                # Where the caller's URL names no charset: oslo.db would
                # read 4-byte characters in 3-byte utf8, as "?".
                self._engine_args = urls.with_utf8mb4(url, engine_args)
                self._read_options = read_engine_options(self.dialect_name)
                self._write_options = write_engine_options(self.dialect_name)
                self._hooks = oslo_internals.on_engine_create_hooks(
                    context_manager)
                self._replica_url = oslo_internals.configured_replica(
                    context_manager)
        retry = retries.retry_policy(retry_settings)
        self.run = retry(self._run)
        self.run_in_autocommit = retry(self._run_in_autocommit)

    def _run(self, writer, work):
        """Return work(connection), retried: a write in a transaction of
        its own, a read on the reader engine."""
        if writer:
            with self.writer().begin() as connection:
                return work(connection)
        return self._run_on(self.reader(), work)

    def _run_on(self, engine, work):
        """Return work(connection) on engine: on a kept Connection where
        the engine keeps them (see kept_connections)."""
        kept = self._kept.get(engine)
        if kept is not None:
            return kept.run(work)
        with engine.connect() as connection:
            return work(connection)

    def _run_in_autocommit(self, work):
        """Return work(connection) on the autocommit engine, retried; None
        where lone reads are not in autocommit."""
        engine = self.autocommit()
        if engine is None:
            return None
        return self._run_on(engine, work)

    def _callers_writer(self):
        with errors.translated_errors():
            return self._context_manager.writer.get_engine()

    def _built(self, name, url, options):
        """The engine of role_stash's own kept as name, built at its first
        use; under the lock: threads making their first calls at once
        would each build one, and hold its connections."""
        engine = self._own.get(name)
        if engine is None:
            with self._lock:
                engine = self._own.get(name)
                if engine is None:
                    engine = _own_engine(
                        url, self._engine_args, options, self._hooks)
                    if _in_autocommit(options) and not green_threads():
                        self._kept[engine] = kept_connections.KeptConnections(
                            engine)
                    self._own[name] = engine
        return engine

    def writer(self):
        """The engine of lone writes: role_stash's own where the dialect
        gives it options, else the context manager's writer."""
        if self._write_options is None:
            return self._callers_writer()
        return self._built("writer", self._url, self._write_options)

    def reader(self):
        """The engine of lone reads: role_stash's own, else the context
        manager's writer."""
        if self._read_options is None:
            return self._callers_writer()
        return self._built("reader", self._url, self._read_options)

    def kept_reader(self):
        """The kept_connections.KeptConnections of the engine of lone
        reads, once it is built, where it keeps Connections and no replica
        is configured (reads then ask the replica first); else None."""
        if self._replica_url is not None:
            return None
        return self._kept.get(self._own.get("reader"))

    def replica(self):
        """The engine of lone reads on the replica ([database]
        slave_connection), built as reader() is; None when there is none,
        or when it failed less than REPLICA_RETRY_INTERVAL ago."""
        if self._replica_url is None:
            return None
        failed_at = self._replica_failed_at
        if failed_at is not None and (
                timeutils.utcnow() - failed_at < REPLICA_RETRY_INTERVAL):
            return None
        return self._built("replica", self._replica_url, self._read_options)

    def run_on_replica(self, engine, work):
        """Return work(connection) on the replica engine, once: a failure
        (a DatabaseError) is for the caller to answer from the primary,
        and sets the replica aside for REPLICA_RETRY_INTERVAL."""
        try:
            with errors.translated_errors():
                return self._run_on(engine, work)
        except exception.DatabaseError as error:
            with self._lock:
                first = self._replica_failed_at is None or (
                    timeutils.utcnow() - self._replica_failed_at
                    >= REPLICA_RETRY_INTERVAL)
                self._replica_failed_at = timeutils.utcnow()
            if first:
                LOG.warning(
                    "The read replica %s failed (%s): lone reads go to the "
                    "primary for %d s", engine.url.render_as_string(),
                    error, REPLICA_RETRY_INTERVAL.total_seconds())
            raise

    def autocommit(self):
        """The engine of lone reads if it is in autocommit, else None."""
        if not _in_autocommit(self._read_options):
            return None
        return self.reader()

    def close(self):
        """Dispose of the engines this object built (never the caller's)."""
        with self._lock:
            for kept in self._kept.values():
                kept.close()
            self._kept.clear()
            for engine in self._own.values():
                engine.dispose()
            self._own.clear()


def _in_autocommit(options):
    """Whether an engine of SQLAlchemy options (or None) is in autocommit."""
    return (options or {}).get("isolation_level") == "AUTOCOMMIT"


def green_threads():
    """Whether this process runs on eventlet's green threads (its time
    module patched), where oslo.db's thread_checkin yields to the hub.

    thread_checkin makes every pool check-in call time.sleep(0), so that a
    green thread doing database work on a driver eventlet cannot see into
    lets the others run. Under native threads that call is a system call
    per lone read and no more: the interpreter hands the GIL to the other
    threads on its own switch interval, and every read already waits on
    its socket with the GIL released. Under eventlet, time.sleep is
    eventlet's, and the yield is what the caller asked for.
    """
    patcher = sys.modules.get("eventlet.patcher")
    return patcher is not None and patcher.is_monkey_patched("time")


def _own_engine(url, engine_args, options, hooks):
    """Return an engine built by oslo.db from the context manager's
    engine_args (pool sizes, recycle time, sql_mode, fork guard, error
    filters, tracing), with the SQLAlchemy options given, its bound
    parameters hidden, and no start-up connection test (max_retries=0):
    the first call's own retry handles an unreachable database, within its
    bounds. Lone calls, reads and writes, open no savepoint on it (see
    drop_savepoint_cause_listeners). The caller's thread_checkin (oslo.db's
    time.sleep(0) at each pool check-in) is kept only where eventlet has
    patched time (see green_threads). Then, as enginefacade does with its
    own engines, the context manager's on_engine_create hooks. On psycopg
    3, its cursors describe each result shape once (see described_once)."""
    def create(url, **arguments):
        engine = sa.create_engine(url, **{**arguments, **options})
        _set_up_engine(engine)
        return engine, engine

    engine = oslo_engines.create_engine(
        url, **{**engine_args, "max_retries": 0,
                "thread_checkin": engine_args.get("thread_checkin", True)
                and green_threads()},
        _engine_target=create)
    oslo_internals.drop_savepoint_cause_listeners(engine)
    if engine.dialect.driver == "psycopg":
        # Imported here: it imports psycopg, which a process on another
        # driver never loads.
        from role_stash.db import described_once
        described_once.use_on(engine)
    for hook in hooks:
        hook(engine)
    return engine
