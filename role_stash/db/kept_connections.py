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
bound to none. It keeps at most the pool's size; a kept Connection counts
as checked out, so max_pool_size and max_overflow still bound the
process's connections. A Connection is closed instead of kept when its
work raised, or when the list was closed meanwhile; it is dropped at its
next use when its pool would have replaced it (invalidated, past
connection_recycle_time, or older than the pool's last invalidation after
a lost connection). After a server restart the first call fails once and
invalidates the pool, and its retry finds every kept Connection outlived.
Not used under eventlet, where oslo.db's check-in yield is wanted.
"""

import collections
import threading
import weakref

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


class KeptConnections:
    """The Connections of one engine kept between lone calls."""

    def __init__(self, engine):
        self._engine = engine
        self._limit = engine.pool.size()
        self._free = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        _LISTS_OF_THIS_PROCESS.add(self)

    def run(self, work):
        """Return work(connection) on a kept Connection, or a new one."""
        connection = self._take()
        try:
            result = work(connection)
        except BaseException:
            connection.close()
            raise
        self.keep(connection)
        return result

    def _take(self):
        connection = self.take_kept()
        return self._engine.connect() if connection is None else connection

    def take_kept(self):
        """Return a kept Connection, or None when none is kept: nothing
        connects. Hand it back with keep() when its work is done, or close
        it when its work raised."""
        while True:
            try:
                connection = self._free.pop()
            except IndexError:
                return None
            if not (connection.invalidated
                    or oslo_internals.outlived(connection)):
                return connection
            connection.close()

    def keep(self, connection):
        """Keep a Connection taken by run() or take_kept(), its work
        done."""
        with self._lock:
            if not self._closed and len(self._free) < self._limit:
                self._free.append(connection)
                return
        # Past the limit, its DBAPI connection is closed, not left idle in
        # the pool: the process then holds at most the pool's size idle.
        connection.detach()
        connection.close()

    def close(self):
        """Close every kept Connection; calls still running close theirs."""
        with self._lock:
            self._closed = True
            kept = list(self._free)
            self._free.clear()
        for connection in kept:
            connection.close()

    def forget(self):
        """In a forked child: leave the parent's Connections unclosed. A
        new lock: another of the parent's threads may have held it."""
        self._lock = threading.Lock()
        _LEFT_BY_PARENT.extend(self._free)
        self._free.clear()
