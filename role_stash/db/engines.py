"""Engines, pools, retries and error translation, on oslo.db's enginefacade.

A repository runs on an enginefacade transaction context manager: its own,
made from a URL or a [database] section, or the caller's (Nova's), whose
transactions it then joins. For calls made alone it adds at most one engine
of its own, for reads (in autocommit where the dialect says so, and then
also PostgreSQL's one-statement write), built by oslo.db from the same
[database] settings as the context manager's engines, with the options of
dialects.Statements.read_engine_options; with [database] slave_connection,
one more, built the same way on the replica, for the lone metadata reads.
Lone writes run on the context manager's own writer engine.

oslo.db offers no public way to read a context manager's settings or an
open transaction's factory and mode: every such access is in the
"enginefacade internals" section below, and tests/test_engines.py fails
loudly if oslo.db changes them.
"""

import contextlib
import datetime
import logging
import os
import threading
import weakref

from oslo_config import cfg
from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import engines as oslo_engines
from oslo_db.sqlalchemy import exc_filters
from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy.engine import events as sa_events
from sqlalchemy.engine import make_url

from role_stash import exception

LOG = logging.getLogger(__name__)

# The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///role_stash.sqlite"
URL_ENVIRONMENT_VARIABLE = "ROLE_STASH_DATABASE_URL"

# [database] options of the retries of a call (oslo.db's DB API retries):
# followed where the operator set them, else DEFAULT_RETRIES.
RETRY_OPTIONS = ("db_max_retries", "db_retry_interval",
                 "db_inc_retry_interval", "db_max_retry_interval")
# [database] options handed from an oslo.config group to enginefacade.
_CONFIG_OPTIONS = (
    "slave_connection", "mysql_sql_mode", "mysql_wsrep_sync_wait",
    "connection_recycle_time", "connection_debug", "max_pool_size",
    "max_overflow", "pool_timeout", "sqlite_synchronous", "connection_trace",
    "max_retries", "retry_interval", "connection_parameters",
) + RETRY_OPTIONS
# Taken from a [database] section only where the operator set them: their
# oslo.db defaults (20 call retries; a start-up connection test retried 10
# times 10 s apart) would replace role_stash's bounded ones.
_OPERATOR_ONLY = RETRY_OPTIONS + ("max_retries", "retry_interval")

# Retries of a call made alone, where [database] says nothing: long
# enough to ride out a database restart or a failover, short enough that
# a guest's metadata GET still answers within cloud-init's 10 s request
# timeout; oslo.db's own twenty tries up to ten seconds apart would hold
# a worker for minutes. The first tries come quickly, for a dropped
# connection or a deadlock; the README gives the window this adds up to.
DEFAULT_RETRIES = {"max_retries": 10, "retry_interval": 0.05,
                   "inc_retry_interval": True, "max_retry_interval": 1.0}

# After a read on the replica ([database] slave_connection) fails, lone
# reads go to the primary this long before the replica is tried again: a
# replica that is down then costs a failed connect and a log line per
# interval, not per metadata GET.
REPLICA_RETRY_INTERVAL = datetime.timedelta(seconds=10)


def resolve_url(url=None):
    """Return url, else $ROLE_STASH_DATABASE_URL, else the SQLite default;
    InvalidArgument if it is not a database URL."""
    if url is None:
        url = os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL
    try:
        if "\x00" in str(url):
            raise ValueError("NUL")
        make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        # Not repeated: the URL may hold a password.
        raise exception.InvalidArgument(
            "database connection", "not a database URL "
            "(dialect+driver://user:password@host:port/database)") from None
    return url


def _names_no_charset(url, options):
    """Whether a MySQL or MariaDB URL and its options leave the
    connection's charset to the driver's caller (oslo.db then asks for
    3-byte utf8 on a mysql:// URL; on a mariadb:// one the driver's
    default holds)."""
    parsed = make_url(url)
    return (parsed.get_backend_name() in ("mysql", "mariadb")
            and "charset" not in parsed.query
            and "charset=" not in (options.get("connection_parameters") or ""))


def _oslo_db_asks_for_utf8(url, options):
    """Whether oslo.db connects through url and options in 3-byte utf8:
    its MySQL connection arguments are for mysql:// URLs alone."""
    return (make_url(url).get_backend_name() == "mysql"
            and _names_no_charset(url, options))


def _with_utf8mb4(url, options):
    """Return options with MySQL's connection in 4-byte utf8mb4, unless the
    URL or the options name a charset (oslo.db would ask for 3-byte utf8,
    and role names may hold any unicode character)."""
    if _names_no_charset(url, options):
        parameters = options.get("connection_parameters") or ""
        options = {**options, "connection_parameters": "&".join(
            filter(None, (parameters, "charset=utf8mb4")))}
    return options


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
    url = resolve_url(url)
    # thread_checkin's sleep(0) on every check-in is for eventlet; in a
    # threaded process it gives the CPU away on each call. slave_connection
    # is named even when None: enginefacade would take anything unnamed
    # from the global cfg.CONF's [database] section.
    chosen = _oslo_db_asks_for_utf8(url, options)
    options = {"sqlite_fk": True, "thread_checkin": False,
               "slave_connection": None, "max_retries": 0,
               **_with_utf8mb4(url, options)}
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=url, **options)
    context_manager.append_on_engine_create(_set_up_engine)
    if chosen:
        _utf8mb4_chosen.add(context_manager)
    return context_manager


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
                    or _set_by_operator(conf, name, group))}
    options.setdefault("slave_connection", None)
    return context_manager_from_url(section.connection, **options)


# enginefacade internals: the one place that reads them.

def factory_of(context_manager):
    """The transaction factory behind a context manager (a test suite may
    patch another one in: Nova's does, per test)."""
    return context_manager._factory


def _configured(context_manager):
    """Return (URL, engine arguments, [database] retry settings) as
    enginefacade starts, or started, the context manager's engines: its
    configure() values, else cfg.CONF's [database], else oslo.db's
    defaults. None for a factory made around a given engine (oslo.db's and
    Nova's test fixtures), whose settings are not known."""
    factory = factory_of(context_manager)
    if not hasattr(factory, "_url_cfg"):
        return None
    cfg.CONF.register_opts(db_options.database_opts, "database")
    url = factory._url_args_for_conf(cfg.CONF).get("connection")
    if url is None:
        return None
    retries = {key: value for key, value in factory._ignored_cfg.items()
               if not isinstance(value, enginefacade._Default)}
    retries.update({key: cfg.CONF.database[key] for key in RETRY_OPTIONS
                    if key not in retries and _set_by_operator(cfg.CONF, key)})
    return url, factory._engine_args_for_conf(cfg.CONF), retries


def _configured_replica(context_manager):
    """The [database] slave_connection URL the context manager's async
    reader uses (configure() value, else cfg.CONF's), or None."""
    factory = factory_of(context_manager)
    if not hasattr(factory, "_url_cfg"):
        return None
    return factory._url_args_for_conf(cfg.CONF).get("slave_connection") or None


def configured_url(context_manager):
    """The database URL a context manager was configured with, as given
    (None for a factory made around a given engine)."""
    configured = _configured(context_manager)
    return None if configured is None else configured[0]


def _set_by_operator(conf, key, group="database"):
    """Whether a [database] option has a value other than its default."""
    return (conf.get_location(key, group).location
            is not cfg.Locations.opt_default)


def on_engine_create_hooks(context_manager):
    """The functions enginefacade calls on each engine it creates for the
    context manager (append_on_engine_create: Nova's osprofiler tracing)."""
    return list(factory_of(context_manager)._facade_cfg["on_engine_create"])


# oslo.db registers its MySQL error filters under the dialect name "mysql",
# which SQLAlchemy's mariadb:// dialect does not bear (it is "mariadb"): on
# such a URL a duplicate entry, a deadlock, a lost connection or a missing
# table all come out as a bare DBError, so an exact repeat of a create
# fails instead of returning its stash, and nothing is retried. The
# mariadb dialect is the MySQL one for a MariaDB server: its errors are
# MySQL's, so it takes the same filters, for every engine of the process
# (Nova's on a mariadb:// URL too), unless oslo.db registers its own.

def share_mysql_error_filters_with_mariadb():
    """Make oslo.db's MySQL error filters apply to mariadb:// engines;
    return whether they do."""
    registry = exc_filters._registry
    if "mysql" in registry:
        registry.setdefault("mariadb", registry["mysql"])
    return "mariadb" in registry


share_mysql_error_filters_with_mariadb()


# oslo.db's error filters keep the cause of a failed savepoint rollback for
# the error that follows it: a rollback_savepoint listener stores it, and
# commit and rollback listeners clear it. {event: the listener's name}.
_SAVEPOINT_CAUSE_LISTENERS = {
    "rollback_savepoint": "rollback_savepoint",
    "commit": "pop_exc_tx",
    "rollback": "pop_exc_tx",
}
_CONNECTION_EVENTS = tuple(
    name for name in dir(sa_events.ConnectionEvents)
    if not name.startswith("_") and name != "dispatch")


def drop_savepoint_cause_listeners(engine):
    """Remove the savepoint-cause listeners of oslo.db's error filters from
    an engine on which no call opens a savepoint, where they never have
    anything to keep or clear; return the events they were removed from.

    Any listener of Connection events makes SQLAlchemy dispatch every
    event point of every Connection, and a lone read makes a Connection
    per call: their cost is paid on each read for nothing. The error
    filters themselves (handle_error) stay. When no Connection event
    listener is left, the engine's own "has events" flag goes: SQLAlchemy
    sets it again on the next listen, and a listener on the Engine class
    still counts through the class's flag.
    """
    removed = []
    for event, name in _SAVEPOINT_CAUSE_LISTENERS.items():
        for listener in list(getattr(engine.dispatch, event)):
            if (getattr(listener, "__module__", None) == exc_filters.__name__
                    and getattr(listener, "__name__", None) == name):
                sa.event.remove(engine, event, listener)
                removed.append(event)
    if not any(getattr(engine.dispatch, event)
               for event in _CONNECTION_EVENTS):
        engine.__dict__.pop("_has_events", None)
    return removed


def transaction_factory(transaction):
    """The factory an open enginefacade transaction belongs to."""
    return transaction.factory


def transaction_is_reader(transaction):
    """Whether an open enginefacade transaction is a reader's, on the
    primary or (an async reader's) on the replica."""
    return transaction.mode in (enginefacade._READER,
                                enginefacade._ASYNC_READER)


def same_factory(transaction, context_manager):
    """Whether an open transaction is of context_manager."""
    return transaction_factory(transaction) is factory_of(context_manager)


def open_transaction(context):
    """Return the enginefacade transaction context has open, or None."""
    if context is None:
        return None
    try:
        return context.transaction_ctx
    except (AttributeError, db_exc.NoEngineContextEstablished):
        return None


# Engines of calls made alone.

def _is_in_memory(url):
    parsed = make_url(url)
    return (parsed.get_backend_name() == "sqlite"
            and parsed.database in (None, "", ":memory:"))


class LoneEngines:
    """The engines of the calls a repository makes outside any caller's
    transaction, and the runners of those calls, retried."""

    def __init__(self, context_manager, read_engine_options):
        """read_engine_options(dialect_name) gives the SQLAlchemy engine
        arguments of the engine of lone reads (see _read_engine)."""
        self._context_manager = context_manager
        self.factory = factory_of(context_manager)
        self._lock = threading.Lock()
        self._reader = None
        self._read_options = None
        self._replica = None
        self._replica_url = None
        self._replica_failed_at = None
        configured = _configured(context_manager)
        if configured is None:
            self.dialect_name = self.writer().dialect.name
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
                self._engine_args = _with_utf8mb4(url, engine_args)
                self._read_options = read_engine_options(self.dialect_name)
                self._hooks = on_engine_create_hooks(context_manager)
                self._replica_url = _configured_replica(context_manager)
        retry = _retry_policy(retry_settings)
        self.run = retry(self._run)
        self.run_in_autocommit = retry(self._run_in_autocommit)

    def _run(self, writer, work):
        """Return work(connection), retried: a write in a transaction of
        its own, a read on the reader engine."""
        if writer:
            with self.writer().begin() as connection:
                return work(connection)
        with self.reader().connect() as connection:
            return work(connection)

    def _run_in_autocommit(self, work):
        """Return work(connection) on the autocommit engine, retried; None
        where lone reads are not in autocommit."""
        engine = self.autocommit()
        if engine is None:
            return None
        with engine.connect() as connection:
            return work(connection)

    def writer(self):
        """The engine of lone writes: the context manager's own."""
        with translated_errors():
            return self._context_manager.writer.get_engine()

    def reader(self):
        """The engine of lone reads: role_stash's own, else the writer."""
        if self._read_options is None:
            return self.writer()
        reader = self._reader
        if reader is None:
            with self._lock:
                if self._reader is None:
                    self._reader = _read_engine(
                        self._url, self._engine_args, self._read_options,
                        self._hooks)
                reader = self._reader
        return reader

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
        replica = self._replica
        if replica is None:
            with self._lock:
                if self._replica is None:
                    self._replica = _read_engine(
                        self._replica_url, self._engine_args,
                        self._read_options, self._hooks)
                replica = self._replica
        return replica

    def run_on_replica(self, engine, work):
        """Return work(connection) on the replica engine, once: a failure
        (a DatabaseError) is for the caller to answer from the primary,
        and sets the replica aside for REPLICA_RETRY_INTERVAL."""
        try:
            with translated_errors():
                with engine.connect() as connection:
                    return work(connection)
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
        if (self._read_options or {}).get("isolation_level") != "AUTOCOMMIT":
            return None
        return self.reader()

    def close(self):
        """Dispose of the engines this object built (never the caller's)."""
        with self._lock:
            for engine in (self._reader, self._replica):
                if engine is not None:
                    engine.dispose()
            self._reader = self._replica = None


def _read_engine(url, engine_args, options, hooks):
    """Return an engine built by oslo.db from the context manager's
    engine_args (pool sizes, recycle time, sql_mode, fork guard, error
    filters, tracing), with the SQLAlchemy options given, its bound
    parameters hidden, and no start-up connection test (max_retries=0):
    the first call's own retry handles an unreachable database, within its
    bounds. Lone calls open no savepoint on it (see
    drop_savepoint_cause_listeners). Then, as enginefacade does with its
    own engines, the context manager's on_engine_create hooks."""
    def create(url, **arguments):
        engine = sa.create_engine(url, **{**arguments, **options})
        _set_up_engine(engine)
        return engine, engine

    engine = oslo_engines.create_engine(
        url, **{**engine_args, "max_retries": 0}, _engine_target=create)
    drop_savepoint_cause_listeners(engine)
    for hook in hooks:
        hook(engine)
    return engine


def _retry_policy(settings):
    """Return a decorator retrying a lone call on deadlock, lost connection
    and a few more passing faults (see _worth_a_retry), as [database]
    db_max_retries and db_retry_interval say, else DEFAULT_RETRIES."""
    policy = dict(DEFAULT_RETRIES)
    for option, key in (("db_max_retries", "max_retries"),
                        ("db_retry_interval", "retry_interval"),
                        ("db_inc_retry_interval", "inc_retry_interval"),
                        ("db_max_retry_interval", "max_retry_interval")):
        if settings.get(option) is not None:
            policy[key] = settings[option]
    return oslo_db_api.wrap_db_retry(
        retry_on_disconnect=True, retry_on_deadlock=True,
        exception_checker=_worth_a_retry, **policy)


def _worth_a_retry(error):
    """Besides deadlock and disconnect: a serialization failure, a connect
    that failed in a way oslo.db does not recognize (libpq's "connection
    to server ... failed", which psycopg2 and psycopg raise while the
    server restarts), and SQLite's lock, taken by another writer; error
    may be oslo.db's DBError around SQLAlchemy's. Never a database that
    does not exist: no retry makes it."""
    if isinstance(error, db_exc.DBNonExistentDatabase):
        return False
    error = getattr(error, "inner_exception", None) or error
    if not isinstance(error, sa.exc.OperationalError):
        return False
    return (error.statement is None or _is_serialization_failure(error)
            or "database is locked" in str(error.orig))


# SQLSTATE of a transaction the server rolled back to keep it serializable
# (PostgreSQL's "could not serialize access"): retry it, as a deadlock.
_SERIALIZATION_FAILURE = "40001"


def _is_serialization_failure(error):
    driver_error = getattr(error, "orig", None)
    return _SERIALIZATION_FAILURE in (
        getattr(driver_error, "sqlstate", None),   # psycopg 3
        getattr(driver_error, "pgcode", None))     # psycopg2


# Errors.

@contextlib.contextmanager
def translated_errors(conflict=None):
    """Turn oslo.db's and SQLAlchemy's errors into role_stash's, their
    bound parameters hidden; a duplicate entry becomes conflict (an
    exception) when given."""
    try:
        yield
    except (db_exc.DBError, sa.exc.SQLAlchemyError) as error:
        _hide_bound_parameters(error)
        raise _translated(error, conflict) from error


def _translated(error, conflict):
    if isinstance(error, sa.exc.ArgumentError):
        # A URL naming an unknown driver, or a bad engine setting.
        return exception.InvalidArgument("database connection", str(error))
    if isinstance(error, db_exc.DBDuplicateEntry):
        return conflict or exception.DatabaseError(
            "unexpected duplicate entry")
    if isinstance(error, db_exc.DBConnectionError):
        return exception.DatabaseUnavailable(
            f"the database connection failed or was lost ({_cause(error)})")
    if isinstance(error, db_exc.DBNonExistentDatabase):
        return exception.DatabaseUnavailable(
            f"the database does not exist or cannot be opened "
            f"({_cause(error)})")
    if isinstance(error, db_exc.DBDeadlock) or _is_serialization_failure(
            getattr(error, "inner_exception", None) or error):
        return exception.DatabaseDeadlock(
            "the transaction was rolled back, a deadlock's or a "
            "serialization failure's victim; retry it whole")
    if isinstance(error, sa.exc.TimeoutError):
        # Never retried: a retry would wait out pool_timeout once more.
        return exception.DatabaseUnavailable(
            f"no pooled connection came free within [database] "
            f"pool_timeout ({error.args[0]}); every connection of "
            f"max_pool_size and max_overflow was in use")
    if isinstance(error, sa.exc.DBAPIError) and error.statement is None:
        # Not raised by a statement: by the connect (psycopg's "connection
        # to server ... failed", which oslo.db does not recognize), or by
        # a COMMIT or ROLLBACK.
        return exception.DatabaseUnavailable(
            "the database could not be reached, or failed to end a "
            f"transaction ({_cause(error)})")
    return _database_error(error)


def _cause(error):
    """The driver's own words for a failure, on one line (they carry no
    bound values)."""
    cause = getattr(error, "inner_exception", None) or error
    return " ".join(str(getattr(cause, "orig", None) or cause).split())


# MySQL's "Incorrect string value": a character the connection's or the
# column's character set cannot hold.
_MYSQL_INCORRECT_STRING = 1366


def _database_error(error):
    cause = getattr(error, "inner_exception", None) or error
    driver_error = getattr(cause, "orig", None)
    code = getattr(driver_error, "args", (None,))[0]
    if code == _MYSQL_INCORRECT_STRING:
        return exception.DatabaseError(
            "MySQL refused a character its connection's character set "
            "cannot hold (4-byte characters such as emoji need utf8mb4): "
            "put charset=utf8mb4 in the [database] connection URL, and "
            "check that role_stash's tables are utf8mb4 "
            "(`role-stash-manage db sync` creates them so)")
    return exception.DatabaseError(
        f"database error ({type(cause).__name__}); if the schema is not "
        "at head, run `role-stash-manage db sync`")


def _hide_bound_parameters(error):
    """Strip the bound values from an error and everything it chains: on
    an engine that is not role_stash's (the caller's), SQLAlchemy put them
    in the message, and oslo.db copied that message into its own error."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sa.exc.StatementError):
            _hide(error)
        inner = getattr(error, "inner_exception", None)
        if isinstance(error, db_exc.DBError) and isinstance(
                inner, sa.exc.StatementError):
            _hide(inner)
            error.args = (str(inner),)
        error = error.__cause__ or error.__context__


def _hide(statement_error):
    # Its message then says "[SQL parameters hidden ...]" where the values
    # were.
    statement_error.hide_parameters = True
    if statement_error.params:
        statement_error.params = "hidden"
