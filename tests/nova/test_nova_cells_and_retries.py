"""Multi-cell Nova, Nova's retry of a whole create on deadlock, and a
retried create under REPEATABLE READ."""

import gc
import threading
import types
import weakref

from nova import context as nova_context
from nova.db.main import api as nova_db
from oslo_db import api as oslo_db_api
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash import nova as role_stash_nova
from role_stash.db import engines

BARRIER_TIMEOUT = 30


def make_values(context, instance_uuid):
    return {"uuid": instance_uuid, "project_id": context.project_id,
            "user_id": context.user_id, "hostname": "guest",
            "vm_state": "building"}


def count(engine, sql, **parameters):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), parameters).scalar_one()


def test_a_stash_in_a_cell_joins_the_cells_create_transaction(
        cell, nova_context_manager, nova_engine, user_context, new_uuid):
    """Conductor creates the instance row inside target_cell, on the
    cell's context manager: the helper gives the repository of that
    database, once per cell, and the stash commits or rolls back with the
    row."""
    kept, dropped = new_uuid(), new_uuid()
    with nova_context.target_cell(user_context, cell) as cell_context:
        cell_manager = role_stash_nova.context_manager_of(cell_context)
        assert cell_manager is not nova_context_manager
        repository = role_stash_nova.repository_for(cell_context)
        with cell_manager.writer.using(cell_context):
            nova_db.instance_create(cell_context,
                                    make_values(cell_context, kept))
            repository.stash_from_context(cell_context, kept)
        with pytest.raises(ZeroDivisionError):
            with cell_manager.writer.using(cell_context):
                nova_db.instance_create(cell_context,
                                        make_values(cell_context, dropped))
                repository.stash_from_context(cell_context, dropped)
                _ = 1 / 0
        # A repository on the main context manager cannot join the cell's
        # transaction, and says so.
        main = role_stash_nova.repository_for(user_context)
        assert main is not repository
        with cell_manager.writer.using(cell_context):
            with pytest.raises(exception.InvalidArgument,
                               match="another enginefacade context manager"):
                main.stash_from_context(cell_context, new_uuid())
    with nova_context.target_cell(user_context, cell) as again:
        assert role_stash_nova.repository_for(again) is repository
    assert repository.get_stash(kept).roles == ("member", "reader")
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(dropped)
    assert count(nova_engine, "SELECT COUNT(*) FROM instances "
                 "WHERE uuid = :uuid", uuid=dropped) == 0


def test_a_context_managers_repository_goes_with_it(migrated_url):
    """repository_for builds one repository per context manager, and drops
    it, with the Connections it keeps, when Nova drops the context manager
    (a cell cache emptied, a test's cells gone)."""
    context_manager = engines.context_manager_from_url(migrated_url)
    context = types.SimpleNamespace(db_connection=context_manager)
    repository = role_stash_nova.repository_for(context)
    assert role_stash_nova.repository_for(context) is repository
    with pytest.raises(exception.StashNotFound):
        repository.get_stash("0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b")
    gone = weakref.ref(repository), weakref.ref(context_manager)
    del context, context_manager, repository
    gc.collect()
    assert [reference() for reference in gone] == [None, None]


def test_nova_retries_a_whole_create_whose_stash_was_a_deadlock_victim(
        nova_context_manager, nova_repository, nova_engine, user_context,
        new_uuid, server, stash_table_name):
    """A rival transaction holds the stash's unique key and then waits for
    the instance row: a real deadlock on the stash's INSERT. Nova's own
    wrap_db_retry(retry_on_deadlock=True) retries the whole create, which
    ends with one instance and one stash. SQLite serializes writers and
    has no deadlock: there the create simply succeeds once."""
    instance_uuid = new_uuid()
    attempts = []
    both_hold_a_lock = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    rival_outcome = []
    deadlocks = server.name != "sqlite"

    @oslo_db_api.wrap_db_retry(max_retries=3, retry_interval=0,
                               retry_on_deadlock=True)
    def create(context):
        attempts.append(1)
        with nova_context_manager.writer.using(context):
            nova_db.instance_create(context,
                                    make_values(context, instance_uuid))
            if deadlocks and len(attempts) == 1:
                both_hold_a_lock.wait()
            nova_repository.stash_from_context(context, instance_uuid)

    insert_stash = sa.text(
        f"INSERT INTO {stash_table_name('role_stashes')} "
        "(instance_uuid, project_id, user_id, "
        "created_at, deleted) VALUES (:uuid, 'p', 'u', :now, 0)")

    def rival():
        with nova_engine.connect() as connection:
            transaction = connection.begin()
            try:
                if server.name == "postgresql":
                    # The create's deadlock check runs first: it is the
                    # victim.
                    connection.execute(sa.text(
                        "SET LOCAL deadlock_timeout = '10s'"))
                else:
                    # InnoDB undoes the transaction that wrote least.
                    for index in range(50):
                        connection.execute(insert_stash, {
                            "uuid": f"00000000-0000-4000-8000-{index:012d}",
                            "now": "2026-11-27 00:00:00"})
                connection.execute(insert_stash, {
                    "uuid": instance_uuid, "now": "2026-11-27 00:00:00"})
                both_hold_a_lock.wait()
                connection.execute(sa.text(
                    "INSERT INTO instances (uuid, deleted) "
                    "VALUES (:uuid, 0)"), {"uuid": instance_uuid})
                rival_outcome.append("went on")
            finally:
                transaction.rollback()

    thread = threading.Thread(target=rival) if deadlocks else None
    if thread:
        thread.start()
    try:
        create(nova_context.RequestContext.from_dict(user_context.to_dict()))
    finally:
        if thread:
            thread.join(BARRIER_TIMEOUT)
    assert len(attempts) == (2 if deadlocks else 1)
    if deadlocks:
        # The rival waited for the create's first row, then rolled back.
        assert rival_outcome == ["went on"]
    assert count(nova_engine, "SELECT COUNT(*) FROM instances "
                 "WHERE uuid = :uuid", uuid=instance_uuid) == 1
    assert count(nova_engine, "SELECT COUNT(*) FROM "
                 f"{stash_table_name('role_stashes')} "
                 "WHERE instance_uuid = :uuid", uuid=instance_uuid) == 1
    assert nova_repository.get_stash(instance_uuid).roles == (
        "member", "reader")


def test_a_retried_create_under_repeatable_read_finds_the_stash(
        nova_context_manager, nova_repository, nova_engine, user_context,
        new_uuid, server, stash_table_name):
    """The caller's REPEATABLE READ snapshot predates an identical stash
    committed meanwhile. MariaDB: the locking re-read sees it, and the
    repeat returns it. PostgreSQL: the server refuses to serialize, which
    is DatabaseDeadlock, so the caller's retry runs again and finds it.
    SQLite: serializable, the snapshot is not taken before the write."""
    instance_uuid = new_uuid()
    context = nova_context.RequestContext.from_dict(user_context.to_dict())

    def repeat_after_a_rival_committed():
        with nova_context_manager.writer.connection.using(
                context) as connection:
            if server.name == "postgresql":
                connection.execute(sa.text(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            if server.name != "sqlite":
                # The snapshot starts with the transaction's first read
                # (on SQLite that read would lock out the rival's write).
                connection.execute(sa.text("SELECT COUNT(*) FROM " + (
                    stash_table_name("role_stashes"))))
            rival = nova_repository.stash_from_context(user_context,
                                                       instance_uuid)
            return rival, nova_repository.stash_from_context(
                context, instance_uuid)

    if server.name == "postgresql":
        with pytest.raises(exception.DatabaseDeadlock):
            repeat_after_a_rival_committed()
        stashed = nova_repository.get_stash(instance_uuid)
    else:
        stashed, repeated = repeat_after_a_rival_committed()
        assert repeated == stashed
    again = nova_context.RequestContext.from_dict(user_context.to_dict())
    with nova_context_manager.writer.using(again):
        assert nova_repository.stash_from_context(
            again, instance_uuid) == stashed
