"""A repository across a fork, as a WSGI server forks its workers: each
child's calls work on connections of its own, never on its parent's (the
server's session ids tell), and the parent's stay open and usable. An
exhausted pool: the call waits pool_timeout once, then raises
DatabaseUnavailable naming the pool."""

import collections
import multiprocessing
import os
import sys
import threading
import uuid

from oslo_db.sqlalchemy import enginefacade
import pytest
import sqlalchemy as sa
from sqlalchemy.util import queue as sa_queue

from role_stash import exception
from role_stash.db import api

CHILDREN = 3
TIMEOUT = 60
PARENTS = "6b2c4d8e-1f3a-4b5c-9d7e-0a1b2c3d4e5f"
PARENTS_OTHER = "6b2c4d8e-1f3a-4b5c-9d7e-1a1b2c3d4e5f"
ROLES = ["member", "reader"]


def session_of(dbapi_connection, backend):
    """The server's id of a DBAPI connection's session; on SQLite, which
    has no server, a token drawn when the connection opened (not its
    id(): a child's new connection can land where a parent's closed one
    was, since the child's memory is a copy of the parent's)."""
    if backend == "sqlite":
        return f"sqlite-{uuid.uuid4()}"
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT pg_backend_pid()" if backend == "postgresql"
                   else "SELECT CONNECTION_ID()")
    [session] = cursor.fetchone()
    cursor.close()
    # End the transaction the SELECT began, before SQLAlchemy sets the
    # connection's isolation level.
    dbapi_connection.rollback()
    return session


class Sessions:
    """The sessions statements ran on, by process: each pooled connection
    is tagged, when opened, with the process that opened it and its
    session."""

    def __init__(self, backend):
        self.backend = backend
        self.used = collections.defaultdict(set)

    def connected(self, dbapi_connection, record):
        record.info["opened by"] = os.getpid()
        record.info["session"] = session_of(dbapi_connection, self.backend)

    def executing(self, conn, cursor, statement, parameters, context, many):
        info = conn.connection.info
        self.used[os.getpid()].add((info.get("opened by"),
                                    info.get("session")))


@pytest.fixture
def sessions(server):
    watch = Sessions(server.name)
    sa.event.listen(sa.pool.Pool, "connect", watch.connected)
    sa.event.listen(sa.Engine, "before_cursor_execute", watch.executing)
    yield watch
    sa.event.remove(sa.Engine, "before_cursor_execute", watch.executing)
    sa.event.remove(sa.pool.Pool, "connect", watch.connected)


def work_in_child(repository, sessions, index, results):
    try:
        instance = f"6b2c4d8e-1f3a-4b5c-9d7e-{index:012d}"
        assert repository.get_stash(PARENTS).roles == tuple(ROLES)
        repository.stash_roles(instance, project_id="p", user_id="u",
                               roles=ROLES)
        assert repository.get_stash(instance).roles == tuple(ROLES)
        assert repository.delete_stash(instance)
        results.put((os.getpid(), sessions.used[os.getpid()], None))
    except BaseException as error:
        results.put((os.getpid(), set(), repr(error)))


def live_sessions(url, backend):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(sa.text(
                "SELECT pid FROM pg_stat_activity" if backend == "postgresql"
                else "SELECT id FROM information_schema.processlist")))
    finally:
        engine.dispose()


def test_forked_workers_never_use_their_parents_connections(
        migrated_url, repository, sessions, server):
    parent = api.StashRepository.from_url(migrated_url)
    try:
        parent.stash_roles(PARENTS, project_id="p", user_id="u", roles=ROLES)
        assert parent.get_stash(PARENTS).roles == tuple(ROLES)
        assert parent.delete_stash(PARENTS_OTHER, missing_ok=True) is False
        parents = set(sessions.used[os.getpid()])
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        children = [context.Process(target=work_in_child, args=(
            parent, sessions, index, results)) for index in range(CHILDREN)]
        for child in children:
            child.start()
        outcomes = [results.get(timeout=TIMEOUT) for _ in children]
        for child in children:
            child.join(TIMEOUT)
        for pid, used, error in outcomes:
            assert error is None, error
            assert used, "the child checked nothing out"
            # Opened in the child, on a session of the child's own.
            assert {opener for opener, _ in used} == {pid}
            assert not {session for _, session in used} & {
                session for _, session in parents}
        assert parent.get_stash(PARENTS).roles == tuple(ROLES)
        assert parent.delete_stash(PARENTS)
        if server.name != "sqlite":
            # The parent goes on on its own sessions (its writer's pre-ping
            # would have replaced a closed one), open on the server.
            # SQLite opens its file anew for each write.
            assert sessions.used[os.getpid()] == parents
            assert {session for _, session in parents} <= live_sessions(
                migrated_url, server.name)
    finally:
        parent.close()


@enginefacade.transaction_context_provider
class Context:
    """A caller's request context, as Nova's RequestContext is one."""


def timed_out_pool_waits(call):
    """Run call() in this thread; return how many times it waited for a
    pooled connection until pool_timeout gave up (the pool's queue.get()
    that blocked and raised, seen by a profile hook: nothing patched)."""
    get = sa_queue.Queue.get.__code__
    waits = []

    def profile(frame, event, argument):
        if (event == "return" and frame.f_code is get and argument is None
                and frame.f_locals.get("block")):
            waits.append(frame.f_locals.get("timeout"))

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return len(waits)


@pytest.mark.parametrize("server", ("postgresql", "postgresql-psycopg",
                                    "mariadb"), indirect=True)
def test_an_exhausted_pool_waits_pool_timeout_once_and_names_the_pool(
        migrated_url, repository, database_events):
    """Other threads hold every connection of the pool of lone writes (the
    caller's writer's, or on MariaDB role_stash's own, of the same
    settings), in transactions of their own; a lone write needs one.
    (SQLite's writer has no pool to exhaust: oslo.db gives a file a new
    connection each time.)"""
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=migrated_url, max_pool_size=1,
                              max_overflow=1, pool_timeout=0.5)
    callers = api.StashRepository(context_manager)
    holding = threading.Barrier(3, timeout=TIMEOUT)
    release = threading.Event()

    writer = callers.lone_engines.writer()

    def hold():
        with writer.begin():
            holding.wait()
            release.wait(TIMEOUT)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()
    raised = []

    def delete():
        with pytest.raises(exception.DatabaseUnavailable) as error:
            callers.delete_stash(PARENTS, missing_ok=True)
        raised.append(error.value)

    try:
        holding.wait()
        assert timed_out_pool_waits(delete) == 1
    finally:
        release.set()
        for holder in holders:
            holder.join(TIMEOUT)
    try:
        assert "pool_timeout" in str(raised[0])
        assert "max_pool_size" in str(raised[0])
        assert database_events.retries == 0
        # The pool is whole again once the holders are done.
        assert callers.delete_stash(PARENTS, missing_ok=True) is False
    finally:
        callers.close()
        context_manager.dispose_pool()
