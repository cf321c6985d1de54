"""Engine and transaction set-up: oslo.db enginefacade, from a URL or a config."""

import contextlib
import functools
import os
import weakref

from oslo_db import exception as db_exc
from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import exc_filters
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash import exception

# The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite:///role_stash.sqlite"
URL_ENVIRONMENT_VARIABLE = "ROLE_STASH_DATABASE_URL"

# [database] options handed from an oslo.config group to enginefacade.
_CONFIG_OPTIONS = (
    "slave_connection", "mysql_sql_mode", "mysql_wsrep_sync_wait",
    "connection_recycle_time", "connection_debug", "max_pool_size",
    "max_overflow", "pool_timeout", "sqlite_synchronous", "connection_trace",
    "max_retries", "retry_interval", "connection_parameters",
)


def resolve_url(url=None):
    """Return url, else $ROLE_STASH_DATABASE_URL, else the SQLite default."""
    return url or os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL


def _backend_options(url, options):
    """Return enginefacade's options for url: role_stash's defaults, then
    options, with MySQL's connection always in 4-byte utf8mb4."""
    # thread_checkin's time.sleep(0) on every connection check-in is for
    # eventlet; in a threaded process it gives the CPU away on each call.
    # slave_connection is named even when None: enginefacade would take
    # anything unnamed from the global cfg.CONF's [database] section.
    merged = {"sqlite_fk": True, "thread_checkin": False,
              "slave_connection": None, **options}
    parsed = make_url(url)
    parameters = merged.get("connection_parameters") or ""
    # oslo.db asks MySQL for 3-byte utf8 unless told a charset; role
    # names may hold any unicode character.
    if (parsed.get_backend_name() in ("mysql", "mariadb")
            and "charset" not in parsed.query
            and "charset=" not in parameters):
        merged["connection_parameters"] = "&".join(
            filter(None, (parameters, "charset=utf8mb4")))
    return merged


def _hide_parameters(engine):
    # Error messages, and oslo.db's log of them, then carry the SQL but
    # never the bound values (role names, ids).
    engine.hide_parameters = True


def context_manager_from_url(url=None, **options):
    """Return a new enginefacade transaction context for a database URL.

    options are enginefacade's (max_pool_size, max_retries, ...).
    """
    url = resolve_url(url)
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=url, **_backend_options(url, options))
    context_manager.append_on_engine_create(_hide_parameters)
    return context_manager


def context_manager_from_config(conf, group="database"):
    """Return a new enginefacade transaction context for an oslo.config
    [database] section (oslo.db's options are registered if needed)."""
    conf.register_opts(db_options.database_opts, group)
    section = conf[group]
    if not section.connection:
        raise exception.InvalidArgument(
            f"[{group}] connection", "not set in the configuration")
    options = {name: section[name] for name in _CONFIG_OPTIONS
               if section[name] not in (None, "")}
    options.setdefault("slave_connection", None)
    return context_manager_from_url(section.connection, **options)


def lone_engine(engine, autocommit):
    """Return an engine, on the database of an enginefacade engine, for the
    calls made outside any caller's transaction.

    It has no pre-ping: a connection found dead is invalidated by
    SQLAlchemy, oslo.db's filters raise DBConnectionError, and the call is
    retried (api._retry), which costs a round trip once per lost
    connection instead of once per call. In autocommit (reads, and
    PostgreSQL's one-statement writes) it sends no BEGIN. Every error is translated by oslo.db's filters, as on
    enginefacade's engines.
    """
    dialect = engine.dialect.name
    # Nothing on return to the pool: in autocommit there is nothing to
    # undo, and every write ends its transaction itself (engine.begin()
    # commits or rolls back) where a reset would cost PyMySQL a ROLLBACK.
    options = {"connect_args": {}, "pool_reset_on_return": None}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    if dialect == "postgresql":
        options["client_encoding"] = "utf8"
        # Positional parameters: psycopg2 interpolates them faster than
        # named ones (%(name)s), which it looks up in a dict.
        options["paramstyle"] = "format"
    elif dialect in ("mysql", "mariadb"):
        # oslo.db's [database] mysql_sql_mode default: strict.
        options["connect_args"]["init_command"] = (
            "SET SESSION sql_mode = 'TRADITIONAL'")
    # Pool sizes and recycle time as oslo.db's [database] defaults.
    lone = sa.create_engine(
        engine.url, pool_pre_ping=False, pool_recycle=3600, pool_size=5,
        max_overflow=50, hide_parameters=True, **options)
    if dialect == "sqlite":
        sa.event.listen(lone, "connect", _sqlite_foreign_keys)
    exc_filters.register_engine(lone)
    # A forked worker (uwsgi, say) must not share its parent's sockets:
    # with no pre-ping, nothing else would notice. SQLAlchemy's advice.
    os.register_at_fork(after_in_child=functools.partial(
        _forget_parent_connections, weakref.ref(lone)))
    return lone


def _forget_parent_connections(engine_ref):
    engine = engine_ref()
    if engine is not None:
        engine.dispose(close=False)


def _sqlite_foreign_keys(dbapi_connection, connection_record):
    # As oslo.db's sqlite_fk, which role_stash turns on.
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


@contextlib.contextmanager
def translated_errors(conflict=None):
    """Turn oslo.db's and SQLAlchemy's errors into role_stash's; a
    duplicate entry becomes conflict (an exception) when given."""
    try:
        yield
    except db_exc.DBDuplicateEntry as error:
        raise (conflict or exception.DatabaseError(
            "unexpected duplicate entry")) from error
    except db_exc.DBConnectionError as error:
        raise exception.DatabaseUnavailable(
            "the database connection failed or was lost") from error
    except db_exc.DBNonExistentDatabase as error:
        raise exception.DatabaseUnavailable(
            "the database does not exist or cannot be opened") from error
    except sa.exc.DBAPIError as error:
        # oslo.db passes some errors through untranslated: most
        # OperationalErrors, MySQL's missing table.
        if error.statement is None:
            # Not raised by a statement: by the connect (psycopg2's
            # "connection to server ... failed", which oslo.db does not
            # recognize), or by a COMMIT or ROLLBACK.
            raise exception.DatabaseUnavailable(
                "the database could not be reached, or failed to end a "
                f"transaction ({str(error.orig).strip()})") from error
        raise _database_error(error) from error
    except sa.exc.TimeoutError as error:
        raise exception.DatabaseUnavailable(
            "no pooled connection came free in time") from error
    except db_exc.DBDeadlock as error:
        raise exception.DatabaseDeadlock(
            "the transaction was a deadlock's victim") from error
    except db_exc.DBError as error:
        raise _database_error(error) from error


def _database_error(error):
    cause = getattr(error, "inner_exception", None) or error
    return exception.DatabaseError(
        f"database error ({type(cause).__name__}); if the schema is not "
        "at head, run `role-stash-manage db sync`")


class Prepared:
    """A statement compiled once for an engine's dialect, to run on a
    pooled DBAPI cursor (see pooled_cursor): no Connection, execution
    context or Result objects to build per call. SQLAlchemy's bind and
    result processors still apply (SQLite keeps timestamps as text)."""

    def __init__(self, engine, statement, column_keys=None):
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.engine = engine
        self.sql = str(compiled)
        # The values the statement carries itself (its literals).
        self._defaults = {name: bind.value
                          for name, bind in compiled.binds.items()
                          if bind.value is not None}
        self._bind_processors = {
            name: processor for name, processor in (
                (name, bind.type.dialect_impl(dialect).bind_processor(dialect))
                for name, bind in compiled.binds.items())
            if processor is not None}
        self._positions = compiled.positiontup if compiled.positional else None
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "selected_columns", ())]
        self._result_processors = processors if any(processors) else None

    def execute(self, cursor, values):
        """Run the statement on a DBAPI cursor, values by bind name."""
        parameters = {**self._defaults, **values}
        for name, process in self._bind_processors.items():
            parameters[name] = process(parameters[name])
        if self._positions is not None:
            parameters = [parameters[name] for name in self._positions]
        cursor.execute(self.sql, parameters)

    def query(self, values):
        """Return the processed rows of the statement run on a pooled
        connection of an autocommit engine (see pooled_cursor)."""
        with pooled_cursor(self.engine, commit=False) as cursor:
            self.execute(cursor, values)
            return self.fetchall(cursor)

    def fetchall(self, cursor):
        """Return the cursor's rows as tuples, processed."""
        rows = cursor.fetchall()
        if self._result_processors is None:
            return rows
        return [tuple(process(value) if process else value
                      for process, value in zip(self._result_processors, row))
                for row in rows]


@contextlib.contextmanager
def pooled_cursor(engine, commit):
    """Yield a DBAPI cursor on a connection of engine's pool; then commit,
    if asked. Driver errors are not translated here: the transaction is
    rolled back, the connection invalidated (unless an IntegrityError said
    it is sound) and the error re-raised, for the caller to go the
    SQLAlchemy way, where oslo.db translates it and the call is retried."""
    driver = engine.dialect.loaded_dbapi
    connection = engine.raw_connection()
    try:
        with contextlib.closing(connection.cursor()) as cursor:
            yield cursor
        if commit:
            connection.commit()
    except driver.IntegrityError:
        try:
            connection.rollback()
        except BaseException:
            connection.invalidate()
            raise
        raise
    except BaseException:
        connection.invalidate()
        raise
    finally:
        connection.close()
