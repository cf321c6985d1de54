"""Kept Connections: the SQLAlchemy Connections of the lone calls on one of
role_stash's own autocommit engines, handed from one call to the next.

Why a layer of our own: SQLAlchemy's pool pools DBAPI connections, but
every Engine.connect() builds a new Connection around one, and passes the
pool's check-out and check-in (events, reset, oslo.db's listeners) on each
call; neither SQLAlchemy nor oslo.db hands a finished call's Connection to
the next. On an autocommit engine a Connection holds no transaction
between calls, so the next call may take it as it is: its statements
still run on a SQLAlchemy Connection (events, osprofiler, oslo.db's error
filters see them).

The list is last in, first out (the connection used last is the one the
server and the CPU caches still hold warm), shared by every thread and
bound to none, and takes no lock: a deque's pop and append are atomic. It
keeps at most the pool's size; a kept Connection counts as checked out,
so max_pool_size and max_overflow still bound the process's connections.
A Connection is closed instead of kept when its work raised, or when the
list was closed meanwhile; it is dropped at its next use when its pool
would have replaced it (invalidated, past connection_recycle_time, or
older than the pool's last invalidation after a lost connection). After a
server restart the first call fails once and invalidates the pool, and
its retry finds every kept Connection outlived. Not used under eventlet,
where oslo.db's check-in yield is wanted.

Asking SQLAlchemy whether its pool would replace a Connection reads the
Connection's pool record and the pool itself, which a metadata GET finds
cold in the CPU's caches, at every take. So each kept Connection carries
when its age will pass connection_recycle_time, and the pool's
invalidations are counted by its own events ("invalidate",
"soft_invalidate"): a Connection is asked again only after one.
"""

import collections
import time
import typing
import weakref

import sqlalchemy as sa

from role_stash.db import oslo_internals

# The kept Connections a forked child found in its parent's lists: never
# closed in the child (closing would end the parent's sessions on the
# server), nor collected (a driver's finalizer would close them too).
_LEFT_BY_PARENT = []
_LISTS_OF_THIS_PROCESS = weakref.WeakSet()


def forget_parent_connections():
    """In a forked child: leave every list's Connections, its parent's,
    unclosed and unused."""
    for kept in list(_LISTS_OF_THIS_PROCESS):
        kept.forget()


class Kept(typing.NamedTuple):
    """A Connection taken from a KeptConnections, to hand back with keep()
    when its work is done, or to close when its work raised."""

    connection: sa.engine.Connection
    # The pool's invalidations counted when the Connection was last found
    # one its pool would keep.
    invalidations: int
    # When its pool would replace it for its age (time.time()).
    replace_at: float


class KeptConnections:
    """The Connections of one engine kept between lone calls."""

    def __init__(self, engine):
        self._engine = engine
        self._limit = engine.pool.size()
        self._free = collections.deque()
        self._closed = False
        # Its listeners hold the counter, not this object: the engine then
        # holds no reference to the kept Connections, which would wait for
        # the cycle collector once the engine's owner dropped it unclosed.
        self._invalidations = _Counter()
        for name in ("invalidate", "soft_invalidate"):
            sa.event.listen(engine, name, self._invalidations.count)
        _LISTS_OF_THIS_PROCESS.add(self)

    def run(self, work):
        """Return work(connection) on a kept Connection, or a new one."""
        kept = self.take_kept()
        if kept is None:
            invalidations = self._invalidations.counted
            connection = self._engine.connect()
            kept = Kept(connection, invalidations,
                        oslo_internals.replaced_at(connection))
        try:
            result = work(kept.connection)
        except BaseException:
            kept.connection.close()
            raise
        self.keep(kept)
        return result

    def take_kept(self):
        """Return a Kept Connection, or None when none is kept: nothing
        connects."""
        while True:
            try:
                kept = self._free.pop()
            except IndexError:
                return None
            if (kept.invalidations == self._invalidations.counted
                    and time.time() < kept.replace_at):
                return kept
            invalidations = self._invalidations.counted
            connection = kept.connection
            if not (connection.invalidated
                    or oslo_internals.outlived(connection)):
                return kept._replace(invalidations=invalidations)
            connection.close()

    def keep(self, kept):
        """Keep a Connection taken by take_kept(), its work done."""
        if self._closed:
            _close_unpooled(kept.connection)
            return
        free = self._free
        free.append(kept)
        # Threads keeping theirs at once may pass the limit for a moment:
        # each that finds the list too long closes the oldest.
        if len(free) > self._limit:
            try:
                _close_unpooled(free.popleft().connection)
            except IndexError:
                pass
        if self._closed:
            # Closed meanwhile, perhaps after close() emptied the list.
            self._close_kept()

    def close(self):
        """Close every kept Connection; calls still running close theirs."""
        self._closed = True
        self._close_kept()

    def _close_kept(self):
        while True:
            try:
                kept = self._free.pop()
            except IndexError:
                return
            kept.connection.close()

    def forget(self):
        """In a forked child: leave the parent's Connections unclosed."""
        _LEFT_BY_PARENT.extend(self._free)
        self._free.clear()


class _Counter:
    """The invalidations an engine's pool reported."""

    counted = 0

    def count(self, *event_arguments):
        self.counted += 1


def _close_unpooled(connection):
    # Its DBAPI connection is closed, not left idle in the pool: the
    # process then holds at most the pool's size idle.
    connection.detach()
    connection.close()
