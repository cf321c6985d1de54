"""A connection dropped in the middle of a transaction (the server ends the
session from another one: pg_terminate_backend, MariaDB's KILL) rolls back
cleanly: nothing half-written, the error is role_stash's, the next call
works. A lone write is retried on a connection of its own; a write inside
a caller's transaction is not.

SQLite is left out: no server holds its sessions, so none can drop one
(closing the driver's handle under SQLAlchemy mid-transaction only trips
oslo.db's own SQLite rollback hook, which asks the dead connection for its
info: PendingRollbackError)."""

import contextlib

from oslo_db.sqlalchemy import enginefacade
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from tests import helpers

SERVERS = ("postgresql", "postgresql-psycopg", "mariadb")
INSTANCE = "3e9a1c2b-7d4f-4e8a-9b6c-5d4e3f2a1b0c"
OTHER = "8c7b6a5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d"
BEFORE = {"project_id": "p", "user_id": "before",
          "roles": ["member", "reader"]}
AFTER = {"project_id": "p", "user_id": "after", "roles": ["admin", "member"]}


@enginefacade.transaction_context_provider
class Context:
    """A caller's request context, as Nova's RequestContext is one."""


def drop(dbapi_connection, url):
    """End the session of a DBAPI connection from another session."""
    backend = sa.make_url(url).get_backend_name()
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT pg_backend_pid()" if backend == "postgresql"
                   else "SELECT CONNECTION_ID()")
    [session] = cursor.fetchone()
    cursor.close()
    helpers.end_sessions(url, [session])


@contextlib.contextmanager
def drop_before_roles_are_rewritten(url, times):
    """Drop the connection that is about to delete a stash's old roles
    (a replace has updated the stash row by then), the first times
    times."""
    dropped = []

    def before(conn, cursor, statement, parameters, context, many):
        if (statement.startswith("DELETE FROM role_stash_roles")
                and len(dropped) < times):
            dropped.append(statement)
            drop(conn.connection.dbapi_connection, url)

    sa.event.listen(sa.Engine, "before_cursor_execute", before)
    try:
        yield dropped
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", before)


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_a_lone_write_dropped_mid_transaction_is_retried_whole(
        migrated_url, repository, database_events):
    repository.stash_roles(INSTANCE, **BEFORE)
    with drop_before_roles_are_rewritten(migrated_url, times=1) as dropped:
        stash = repository.stash_roles(INSTANCE, replace=True, **AFTER)
    assert len(dropped) == 1
    assert stash.roles == ("admin", "member")
    assert repository.get_stash(INSTANCE) == stash
    assert database_events.errors["disconnect"] >= 1
    assert database_events.retries == 1


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_a_lone_write_dropped_on_every_try_leaves_the_stash_whole(
        migrated_url, repository, database_events):
    repository.stash_roles(INSTANCE, **BEFORE)
    retrying_once = api.StashRepository.from_url(migrated_url,
                                                 db_max_retries=1)
    try:
        with drop_before_roles_are_rewritten(migrated_url, times=2):
            with pytest.raises(exception.DatabaseUnavailable,
                               match="connection failed or was lost"):
                retrying_once.stash_roles(INSTANCE, replace=True, **AFTER)
        # Neither try's UPDATE of the stash row survived.
        stash = retrying_once.get_stash(INSTANCE)
        assert (stash.user_id, stash.roles) == ("before",
                                                ("member", "reader"))
        assert retrying_once.stash_roles(
            INSTANCE, replace=True, **AFTER).roles == ("admin", "member")
    finally:
        retrying_once.close()
    assert database_events.retries == 1


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_a_callers_transaction_dropped_midway_is_rolled_back(
        migrated_url, repository, database_events):
    """The caller's transaction stashed one instance, lost its connection,
    then tries another: DatabaseUnavailable, not retried, neither stash
    written; the caller's next transaction works."""
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=migrated_url)
    callers = api.StashRepository(context_manager)
    context = Context()
    try:
        with pytest.raises(exception.DatabaseUnavailable):
            with context_manager.writer.using(context):
                callers.stash_roles(INSTANCE, context=context, **BEFORE)
                with context_manager.writer.connection.using(
                        context) as connection:
                    drop(connection.connection.dbapi_connection,
                         migrated_url)
                callers.stash_roles(OTHER, context=context, **BEFORE)
        assert database_events.retries == 0
        for instance in (INSTANCE, OTHER):
            with pytest.raises(exception.StashNotFound):
                repository.get_stash(instance)
        with context_manager.writer.using(context):
            callers.stash_roles(INSTANCE, context=context, **AFTER)
        assert repository.get_stash(INSTANCE).user_id == "after"
    finally:
        callers.close()
        context_manager.dispose_pool()
