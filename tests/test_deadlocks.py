"""A real deadlock between a stash write and a rival transaction (each
locks rows the other then wants, in opposite order), on PostgreSQL and
MariaDB: a call made alone is retried alone and succeeds, or raises
DatabaseDeadlock once its retries run out; inside a caller's transaction
it is not retried, raises DatabaseDeadlock (oslo.db's DBDeadlock, for the
caller's own retry) and the caller's transaction is rolled back. SQLite
serializes writers and has no deadlock."""

import threading

from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from tests.helpers import wait_until

SERVERS = ("postgresql", "postgresql-psycopg", "mariadb")
INSTANCE = "5d7c3a1e-4b2f-4c6d-8e9f-0a1b2c3d4e5f"
EARLIER = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
BEFORE = {"project_id": "p", "user_id": "before",
          "roles": ["member", "reader"]}
AFTER = {"project_id": "p", "user_id": "after", "roles": ["admin"]}
DEADLINE = 30


@enginefacade.transaction_context_provider
class Context:
    """A caller's request context, as Nova's RequestContext is one."""


class Rival:
    """A transaction of another client that locks the stash's roles, waits
    for the stash write to lock the stash row (which then wants the
    roles), then asks for that row: a deadlock whose victim is the stash
    write."""

    def __init__(self, url):
        self.engine = sa.create_engine(url)
        self.connection = self.engine.connect()
        self.transaction = self.connection.begin()
        self.dialect = self.engine.dialect.name

    def lock_the_roles_of(self, stash_id):
        if self.dialect == "postgresql":
            # The stash write, which waits with the default 1 s, runs the
            # deadlock check first: it is the victim.
            self.connection.execute(sa.text(
                "SET LOCAL deadlock_timeout = '10s'"))
        else:
            # InnoDB rolls back the transaction that wrote least.
            for index in range(50):
                self.connection.execute(sa.text(
                    "INSERT INTO role_stashes (instance_uuid, project_id, "
                    "user_id, created_at, deleted) VALUES "
                    "(:uuid, 'rival', 'rival', '2026-12-01', 0)"),
                    {"uuid": f"00000000-0000-4000-8000-{index:012d}"})
        self.connection.execute(sa.text(
            "SELECT name FROM role_stash_roles WHERE stash_id = :id "
            "FOR UPDATE"), {"id": stash_id})
        self.stash_id = stash_id

    def stash_row_taken(self):
        """Whether another transaction holds the stash row's lock (asked
        from a session of its own, which does not wait for it)."""
        with self.engine.connect() as watcher:
            try:
                watcher.execute(sa.text(
                    "SELECT id FROM role_stashes WHERE id = :id "
                    "FOR UPDATE NOWAIT"), {"id": self.stash_id})
            except sa.exc.DBAPIError:
                return True
            finally:
                watcher.rollback()
            return False

    def close_the_cycle(self):
        """Ask for the stash row the stash write holds; return once the
        write, the deadlock's victim, has let it go; then roll back."""
        self.connection.execute(sa.text(
            "SELECT id FROM role_stashes WHERE id = :id FOR UPDATE"),
            {"id": self.stash_id})
        self.transaction.rollback()

    def close(self):
        self.connection.close()
        self.engine.dispose()


def stash_id_of(url, instance):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(sa.text(
                "SELECT id FROM role_stashes WHERE instance_uuid = :uuid "
                "AND deleted = 0"), {"uuid": instance})
    finally:
        engine.dispose()


def deadlock(url, write):
    """Run write() in a thread while a Rival deadlocks with it; return
    what write returned or raised."""
    rival = Rival(url)
    outcome = []

    def writer():
        try:
            outcome.append(write())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=writer)
    try:
        rival.lock_the_roles_of(stash_id_of(url, INSTANCE))
        thread.start()
        wait_until(lambda: outcome or rival.stash_row_taken(),
                   "the stash write taking the stash row", DEADLINE)
        assert not outcome, f"the stash write did not wait: {outcome}"
        rival.close_the_cycle()
    finally:
        thread.join(DEADLINE)
        rival.close()
    [result] = outcome
    return result


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_a_lone_write_in_a_deadlock_is_retried_alone_and_succeeds(
        migrated_url, repository, database_events):
    repository.stash_roles(INSTANCE, **BEFORE)
    result = deadlock(migrated_url, lambda: repository.stash_roles(
        INSTANCE, replace=True, **AFTER))
    assert not isinstance(result, Exception), result
    assert repository.get_stash(INSTANCE).roles == ("admin",)
    assert database_events.errors["deadlock"] == 1, database_events.errors
    assert database_events.retries == 1


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_a_lone_write_out_of_retries_raises_database_deadlock(
        migrated_url, repository, database_events):
    repository.stash_roles(INSTANCE, **BEFORE)
    no_retries = api.StashRepository.from_url(migrated_url, db_max_retries=0)
    try:
        result = deadlock(migrated_url, lambda: no_retries.stash_roles(
            INSTANCE, replace=True, **AFTER))
    finally:
        no_retries.close()
    assert isinstance(result, exception.DatabaseDeadlock), result
    assert "deadlock" in str(result)
    assert repository.get_stash(INSTANCE).user_id == "before"
    assert database_events.retries == 0


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_a_deadlock_inside_a_callers_transaction_rolls_it_back(
        migrated_url, repository, database_events):
    """The caller's transaction deleted another stash first: that delete
    is undone with it, and the error is the caller's to retry (Nova's
    wrap_db_retry takes DBDeadlock)."""
    repository.stash_roles(INSTANCE, **BEFORE)
    repository.stash_roles(EARLIER, **BEFORE)
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=migrated_url)
    callers = api.StashRepository(context_manager)
    context = Context()

    def create_in_the_callers_transaction():
        with context_manager.writer.using(context):
            assert callers.delete_stash(EARLIER, context=context)
            callers.stash_roles(INSTANCE, replace=True, context=context,
                                **AFTER)

    try:
        result = deadlock(migrated_url, create_in_the_callers_transaction)
    finally:
        callers.close()
        context_manager.dispose_pool()
    assert isinstance(result, exception.DatabaseDeadlock), result
    assert isinstance(result, db_exc.DBDeadlock)
    assert database_events.retries == 0
    assert repository.get_stash(INSTANCE).user_id == "before"
    assert repository.get_stash(EARLIER).user_id == "before"
    # The pool's connection is usable again: the next call works.
    assert repository.stash_roles(INSTANCE, replace=True,
                                  **AFTER).user_id == "after"


class Flicker:
    """A rival that, inside a stash write, deletes the live stash as the
    write goes to lock it and stashes another before the write's next
    INSERT, for rounds rounds: each of the write's INSERTs meets a live
    stash, and each lock finds none. Only on PostgreSQL: there a
    conflicting INSERT locks nothing. MariaDB locks the duplicate it met
    (the rival's delete would wait for the write), SQLite has one
    writer."""

    def __init__(self, url, rounds):
        self.rival = api.StashRepository.from_url(url)
        self.deletes = rounds
        self.stashes = rounds - 1
        self._locked = False
        self._busy = False

    def __call__(self, connection, cursor, statement, *args):
        if self._busy:
            return
        self._busy = True
        try:
            if "FOR UPDATE" in statement and self.deletes:
                self.deletes -= 1
                assert self.rival.delete_stash(INSTANCE)
                self._locked = True
            elif ("INSERT INTO role_stashes" in statement and self._locked
                    and self.stashes):
                self.stashes -= 1
                self.rival.stash_roles(INSTANCE, **BEFORE)
        finally:
            self._busy = False

    def __enter__(self):
        sa.event.listen(sa.Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc_info):
        sa.event.remove(sa.Engine, "before_cursor_execute", self)
        self.rival.close()


@pytest.mark.parametrize("server", SERVERS[:2], indirect=True)
def test_a_write_whose_rivals_keep_flickering_is_retried_not_refused(
        migrated_url, repository, database_events):
    """A replace that meets a live stash in every INSERT, gone again in
    every lock, through all its attempts: no conflict exists, so it is
    no StashConflict. Alone it is retried whole, and writes; in a
    caller's transaction it is DatabaseDeadlock (oslo.db's DBDeadlock)
    for the caller's retry, and writes nothing."""
    repository.stash_roles(INSTANCE, **BEFORE)
    with Flicker(migrated_url, api._WRITE_ATTEMPTS):
        stash = repository.stash_roles(INSTANCE, replace=True, **AFTER)
    assert stash.user_id == "after"
    assert repository.get_stash(INSTANCE).roles == ("admin",)
    assert database_events.retries == 1

    repository.stash_roles(INSTANCE, replace=True, **BEFORE)
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=migrated_url)
    callers = api.StashRepository(context_manager)
    context = Context()
    try:
        with Flicker(migrated_url, api._WRITE_ATTEMPTS), pytest.raises(
                exception.DatabaseDeadlock) as raised:
            with context_manager.writer.using(context):
                callers.stash_roles(INSTANCE, replace=True, context=context,
                                    **AFTER)
    finally:
        callers.close()
        context_manager.dispose_pool()
    assert isinstance(raised.value, db_exc.DBDeadlock)
    assert database_events.retries == 1
    # The rival's last delete stands; the write left nothing.
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(INSTANCE)
