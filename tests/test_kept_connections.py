"""Kept Connections (role_stash.db.kept_connections): the lone reads on
role_stash's own autocommit engine reuse their SQLAlchemy Connections, as
the server's session ids tell, within the pool's size; never one that
raised, outlived its pool's recycle time or lost its session; never the
parent's in a forked child; none after the repository closed."""

import multiprocessing
import threading
import time

from oslo_db import exception as db_exc
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from role_stash.db import calls
from role_stash.db import dialects
from role_stash.db import engines
from role_stash.db import oslo_internals
from tests import helpers

INSTANCE = "3d7e1c2a-5b4f-4e6d-8a9b-0c1d2e3f4a5b"
OTHER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
ROLES = ["member", "reader"]
TIMEOUT = 60
SERVERS = ("postgresql", "postgresql-psycopg", "mariadb")
on_servers = pytest.mark.parametrize("server", SERVERS, indirect=True)


def read_session(repository):
    """The session of the Connection a lone read runs on now."""
    return repository.lone_engines.run(False, helpers.session_id)


def sessions_open(url):
    """The sessions the server has open on url's database, but this one."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                return connection.scalar(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                    "current_database() AND pid <> pg_backend_pid()"))
            return connection.scalar(sa.text(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"))
    finally:
        engine.dispose()


@pytest.fixture
def stashed(migrated_url):
    """build(**options): a repository of its own on the shared database
    holding INSTANCE's stash, closed after the test."""
    built = []

    def build(**options):
        repository = api.StashRepository.from_url(migrated_url, **options)
        built.append(repository)
        repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                               roles=ROLES, replace=True)
        return repository

    yield build
    for repository in built:
        repository.close()


@on_servers
def test_lone_reads_run_on_one_kept_connection(stashed):
    repository = stashed()
    sessions = {read_session(repository) for _ in range(5)}
    for _ in range(5):
        assert repository.get_stash(INSTANCE).roles == tuple(ROLES)
    assert sessions == {read_session(repository)}


@on_servers
def test_threads_keep_at_most_the_pool_size(stashed, migrated_url):
    """16 threads reading at once open up to pool size and overflow; once
    they are done, at most the pool's size stays open."""
    before = sessions_open(migrated_url)
    repository = stashed(max_pool_size=2, max_overflow=14)
    barrier = threading.Barrier(16, timeout=TIMEOUT)

    def read():
        barrier.wait()
        for _ in range(20):
            repository.get_stash(INSTANCE)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert all(not thread.is_alive() for thread in threads)
    assert repository.lone_engines.reader().pool.checkedout() <= 2
    # The reader's two kept, and the writer's pooled one on MariaDB.
    assert sessions_open(migrated_url) - before <= 3


@on_servers
def test_a_connection_whose_work_raised_is_not_kept(stashed):
    repository = stashed()
    seen = []

    def fail(connection):
        seen.append(connection)
        raise RuntimeError("the call's own failure")

    with pytest.raises(RuntimeError):
        repository.lone_engines.run(False, fail)
    [failed] = seen
    assert failed.closed
    assert repository.lone_engines.run(
        False, lambda connection: connection is not failed)
    assert repository.get_stash(INSTANCE).roles == tuple(ROLES)


@on_servers
def test_a_warm_metadata_read_runs_bare_on_a_kept_connection(stashed,
                                                             monkeypatch):
    """Once the first lone read has found the route and the schema, the
    metadata reads run bare on a kept Connection: no calls.Call is built,
    no retry runs around them; each still answers in full."""
    repository = stashed()
    session = read_session(repository)
    stash = repository.get_stash(INSTANCE)

    def no_call(*args, **kwargs):
        raise AssertionError("a warm metadata read built a Call")

    monkeypatch.setattr(calls, "Call", no_call)
    monkeypatch.setattr(repository.lone_engines, "run", no_call)
    for _ in range(3):
        assert repository.get_stash(INSTANCE) == stash
        assert repository.get_stashes([INSTANCE, OTHER]) == {INSTANCE: stash}
        assert repository.get_stash_and_replies(INSTANCE) == (stash, {})
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(OTHER)
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(INSTANCE, expected_project_id="another")
    monkeypatch.undo()
    assert read_session(repository) == session
    # With no Connection kept (another thread's read holds it), the read
    # is made in full: a bare try never connects, outside the retries.
    kept = repository.lone_engines.kept_reader()
    held = kept.take_kept()
    full, call = [], calls.Call
    monkeypatch.setattr(calls, "Call", lambda *args, **kwargs: (
        full.append(args) or call(*args, **kwargs)))
    assert repository.get_stash(INSTANCE) == stash
    assert full
    kept.keep(held)


@on_servers
def test_reads_run_bare_with_the_schema_given(stashed, monkeypatch):
    """A repository told where its tables are (no schema to find) runs its
    warm metadata reads bare too, once its reader engine is built."""
    repository = stashed(schema=None)
    for _ in range(2):  # the reader engine built, then found by the route
        stash = repository.get_stash(INSTANCE)

    def no_call(*args, **kwargs):
        raise AssertionError("a warm metadata read built a Call")

    monkeypatch.setattr(calls, "Call", no_call)
    assert repository.get_stash(INSTANCE) == stash


@on_servers
def test_a_kept_connection_is_asked_again_after_an_invalidation(
        stashed, migrated_url, monkeypatch):
    """Whether the pool would replace a kept Connection is asked again only
    after the pool saw an invalidation: one Connection's (the kept one
    stays), or the whole pool's after a lost connection (the kept one,
    older, is replaced, as the pool would replace it)."""
    repository = stashed(max_pool_size=2)
    session = read_session(repository)
    asked = []
    outlived = oslo_internals.outlived
    monkeypatch.setattr(oslo_internals, "outlived", lambda connection: (
        asked.append(connection) or outlived(connection)))
    for _ in range(3):
        assert repository.get_stash(INSTANCE).roles == tuple(ROLES)
    assert not asked
    engine = repository.lone_engines.reader()
    with engine.connect() as other:
        other.invalidate()
    assert read_session(repository) == session
    assert len(asked) == 1
    assert repository.get_stash(INSTANCE).roles == tuple(ROLES)
    assert len(asked) == 1
    with engine.connect() as lost:
        helpers.end_sessions(migrated_url, {helpers.session_id(lost)})
        with pytest.raises(db_exc.DBConnectionError):
            helpers.session_id(lost)
        assert lost.invalidated
    assert read_session(repository) != session
    assert repository.get_stash(INSTANCE).roles == tuple(ROLES)


@on_servers
def test_a_failed_bare_read_is_made_again_in_full(stashed, monkeypatch):
    """A bare read that fails closes its Connection and leaves the read to
    the full path, which answers; an interrupt (not an Exception) is not
    caught, and closes its Connection too."""
    repository = stashed()
    for _ in range(2):  # the route and the schema found, a Connection kept
        repository.get_stash(INSTANCE)
    used = []
    sa.event.listen(repository.lone_engines.reader(), "before_cursor_execute",
                    lambda connection, *args: used.append(connection))
    statements = type(dialects.for_dialect(
        repository.lone_engines.dialect_name))
    fold = statements.fold
    failures = []

    def fail_once(self, result):
        if failures:
            raise failures.pop()
        return fold(self, result)

    monkeypatch.setattr(statements, "fold", fail_once)
    failures.append(RuntimeError("a bare read's failure"))
    assert repository.get_stash(INSTANCE).roles == tuple(ROLES)
    assert not failures
    bare, full = used
    assert bare.closed and not full.closed
    used.clear()
    failures.append(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        repository.get_stash(INSTANCE)
    [interrupted] = used
    assert interrupted is full and interrupted.closed
    assert repository.get_stash(INSTANCE).roles == tuple(ROLES)


@on_servers
def test_killed_kept_sessions_cost_one_retry(stashed, migrated_url,
                                             database_events):
    """Every kept session ended by the server: the first read fails once,
    its retry finds every kept Connection outlived, and no read fails.
    (No metadata read ran before, so none is tried bare: this is the full
    path's retry.)"""
    repository = stashed(max_pool_size=4)
    barrier = threading.Barrier(4, timeout=TIMEOUT)
    sessions = set()

    def on_a_connection_of_its_own(connection):
        barrier.wait()  # the four hold their Connections at once
        return helpers.session_id(connection)

    def read():
        sessions.add(repository.lone_engines.run(
            False, on_a_connection_of_its_own))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(sessions) == 4
    helpers.end_sessions(migrated_url, sessions)
    for _ in range(5):
        assert repository.get_stash(INSTANCE).roles == tuple(ROLES)
    assert database_events.retries == 1
    assert read_session(repository) not in sessions


@on_servers
def test_a_killed_session_under_bare_reads_costs_no_retry(stashed,
                                                          migrated_url,
                                                          database_events):
    """Warm reads run bare (the route and the schema found): the first
    read after the server ended the kept session fails its bare try, and
    the full read that follows connects anew, with no retry."""
    repository = stashed()
    for _ in range(2):
        repository.get_stash(INSTANCE)
    session = read_session(repository)
    helpers.end_sessions(migrated_url, {session})
    for _ in range(5):
        assert repository.get_stash(INSTANCE).roles == tuple(ROLES)
    assert database_events.retries == 0
    assert read_session(repository) != session


@on_servers
def test_a_connection_past_its_recycle_time_is_replaced(stashed):
    repository = stashed(connection_recycle_time=1)
    first = read_session(repository)
    assert read_session(repository) == first
    time.sleep(1.2)
    assert read_session(repository) != first


def _read_with_parents(repository, queue):
    queue.put(read_session(repository))


@on_servers
def test_a_forked_child_leaves_the_parents_kept_connections(stashed):
    repository = stashed()
    parents = read_session(repository)
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=_read_with_parents, args=(repository, queue))
    child.start()
    childs = queue.get(timeout=TIMEOUT)
    child.join(TIMEOUT)
    assert child.exitcode == 0
    assert childs != parents
    assert read_session(repository) == parents
    assert repository.get_stash(INSTANCE).roles == tuple(ROLES)


@on_servers
def test_close_ends_the_kept_sessions(stashed, migrated_url):
    repository = stashed()
    session = read_session(repository)
    repository.close()
    assert _session_ended(migrated_url, session)


def _session_ended(url, session):
    engine = sa.create_engine(url)
    query = ("SELECT count(*) FROM pg_stat_activity WHERE pid = :session"
             if engine.dialect.name == "postgresql" else
             "SELECT count(*) FROM information_schema.processlist "
             "WHERE id = :session")
    try:
        for _ in range(50):
            with engine.connect() as connection:
                if not connection.scalar(sa.text(query),
                                         {"session": session}):
                    return True
            time.sleep(0.1)
        return False
    finally:
        engine.dispose()


@on_servers
def test_nothing_is_kept_under_eventlet(stashed, monkeypatch):
    """Under eventlet's green threads, oslo.db's check-in yield is wanted:
    each lone read checks its Connection out and in."""
    monkeypatch.setattr(engines, "green_threads", lambda: True)
    repository = stashed()
    seen = [repository.lone_engines.run(False, lambda c: c) for _ in range(2)]
    assert all(connection.closed for connection in seen)
    assert seen[0] is not seen[1]


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_nothing_is_kept_on_sqlite(stashed):
    """SQLite's lone reads are in no autocommit: no Connection is kept."""
    repository = stashed()
    assert repository.lone_engines.autocommit() is None
    seen = repository.lone_engines.run(False, lambda connection: connection)
    assert seen.closed
