"""The private names of oslo.db and SQLAlchemy that role_stash reads: the one
file that reads them.

oslo.db offers no public way to read a context manager's settings or an
open transaction's factory and mode, registers its MySQL error filters
under the dialect name "mysql" only, and its savepoint listeners cannot be
told apart but by name; a SQLAlchemy Connection says whether its pool
would replace it only at check-out. tests/test_engines.py and
tests/test_kept_connections.py fail loudly if any of these move.
"""

import math
import time

from oslo_config import cfg
from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import exc_filters
import sqlalchemy as sa
from sqlalchemy.engine import events as sa_events

from role_stash.db import retries


def factory_of(context_manager):
    """The transaction factory behind a context manager (a test suite may
    patch another one in: Nova's does, per test)."""
    return context_manager._factory


def configured(context_manager):
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
    settings = {key: value for key, value in factory._ignored_cfg.items()
                if not isinstance(value, enginefacade._Default)}
    settings.update({key: cfg.CONF.database[key]
                     for key in retries.RETRY_OPTIONS
                     if key not in settings
                     and set_by_operator(cfg.CONF, key)})
    return url, factory._engine_args_for_conf(cfg.CONF), settings


def configured_replica(context_manager):
    """The [database] slave_connection URL the context manager's async
    reader uses (configure() value, else cfg.CONF's), or None."""
    factory = factory_of(context_manager)
    if not hasattr(factory, "_url_cfg"):
        return None
    return factory._url_args_for_conf(cfg.CONF).get("slave_connection") or None


def configured_url(context_manager):
    """The database URL a context manager was configured with, as given
    (None for a factory made around a given engine)."""
    settings = configured(context_manager)
    return None if settings is None else settings[0]


def set_by_operator(conf, key, group="database"):
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
# commit, rollback and pool check-in listeners clear it. {event: the
# listener's name}.
_SAVEPOINT_CAUSE_LISTENERS = {
    "rollback_savepoint": "rollback_savepoint",
    "commit": "pop_exc_tx",
    "rollback": "pop_exc_tx",
    "checkin": "pop_exc_checkin",
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
    per call and checks its connection in once: their cost is paid on
    each read for nothing. The error filters themselves (handle_error)
    stay. When no Connection event
    listener is left, the engine's own "has events" flag goes: SQLAlchemy
    sets it again on the next listen, and a listener on the Engine class
    still counts through the class's flag.
    """
    removed = []
    for event, name in _SAVEPOINT_CAUSE_LISTENERS.items():
        # A pool event, listened for on the engine, is kept by its pool.
        holder = engine.pool if event == "checkin" else engine
        for listener in list(getattr(holder.dispatch, event)):
            if (getattr(listener, "__module__", None) == exc_filters.__name__
                    and getattr(listener, "__name__", None) == name):
                sa.event.remove(engine, event, listener)
                removed.append(event)
    if not any(getattr(engine.dispatch, event)
               for event in _CONNECTION_EVENTS):
        engine.__dict__.pop("_has_events", None)
    return removed


def outlived(connection):
    """Whether a Connection's pool would replace its DBAPI connection at
    its next check-out: invalidated (one by one, or the whole pool after a
    lost connection), or older than connection_recycle_time. A kept
    Connection (kept_connections) passes no check-out to be told."""
    record = connection.connection._connection_record
    return record is None or record._is_hard_or_soft_invalidated() or (
        time.time() > replaced_at(connection))


def replaced_at(connection):
    """When a Connection's pool would replace its DBAPI connection for its
    age (connection_recycle_time), as time.time() tells; infinity where
    the pool recycles none."""
    pool = connection.engine.pool
    if pool._recycle < 0:
        return math.inf
    return connection.connection._connection_record.starttime + pool._recycle


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
    """Return the enginefacade transaction context has open, or None.

    Read where context.transaction_ctx reads it: that property raises, when
    none is open, an error whose message renders the whole context, on
    every lone call made with a context (Nova's RequestContext)."""
    by_thread = getattr(context, "_enginefacade_context", None)
    return getattr(by_thread, "current", None)
