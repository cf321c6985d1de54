"""role_stash on a Galera cluster: its migrations give tables Galera can
replicate, and a stash written through one node is read through any
other, causally when [database] mysql_wsrep_sync_wait says so."""

import threading
import time

import pymysql
import pytest

from role_stash import exception
from role_stash.db import migration
from role_stash.db import models
from tests.helpers import INSTANCE

ROLES = ["member", "reader", "load-balancer_member"]
# wsrep_sync_wait's bit for reads (SELECT, SHOW, BEGIN): each waits until
# the node has applied every write the cluster committed before it.
CAUSAL_READS = 1


def test_migrations_give_galera_innodb_tables_with_primary_keys(
        galera, galera_database):
    for node in galera.nodes:
        connection = node.connect(galera_database, sync_wait=CAUSAL_READS)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT t.table_name, t.engine, COUNT(c.constraint_name) "
                "FROM information_schema.tables t "
                "LEFT JOIN information_schema.table_constraints c "
                "ON c.table_schema = t.table_schema "
                "AND c.table_name = t.table_name "
                "AND c.constraint_type = 'PRIMARY KEY' "
                "WHERE t.table_schema = %s GROUP BY t.table_name, t.engine",
                (galera_database,))
            tables = {name: (engine, keys)
                      for name, engine, keys in cursor.fetchall()}
            cursor.execute("SELECT version_num "
                           "FROM role_stash_alembic_version")
            [(revision,)] = cursor.fetchall()
        connection.close()
        assert set(tables) == set(models.Base.metadata.tables) | {
            "role_stash_alembic_version"}, node.name
        assert set(tables.values()) == {("InnoDB", 1)}, (node.name, tables)
        assert revision == migration.revisions()[-1].revision
    # The cluster refuses what it could not replicate, so the migrations
    # above met the rule rather than a lenient server.
    connection = galera.nodes[0].connect(galera_database)
    with connection.cursor() as cursor, pytest.raises(
            pymysql.err.MySQLError):
        cursor.execute("CREATE TABLE no_primary_key (a INT)")
    connection.close()


def test_a_stash_written_through_one_node_is_read_through_the_others(
        galera, node_repositories):
    first, *others = galera.nodes
    writer = node_repositories(first)
    written = writer.stash_roles(INSTANCE, project_id="p", user_id="u",
                                 roles=ROLES)
    for node in others:
        reader = node_repositories(node, mysql_wsrep_sync_wait=CAUSAL_READS)
        assert reader.get_stash(INSTANCE) == written
        assert reader.get_stashes([INSTANCE]) == {INSTANCE: written}
        assert reader.list_stashes(role="reader") == [written]
    node_repositories(others[0]).delete_stash(INSTANCE)
    with pytest.raises(exception.StashNotFound):
        node_repositories(
            others[1], mysql_wsrep_sync_wait=CAUSAL_READS).get_stash(INSTANCE)


def test_a_read_right_after_a_write_elsewhere_needs_wsrep_sync_wait(
        galera, node_repositories):
    """Node 2's applier is held (FLUSH TABLES WITH READ LOCK pauses it),
    so a stash committed through node 1 is not yet applied on node 2: a
    plain read there answers "no stash"; a causal read waits for it."""
    first, second = galera.nodes[:2]
    writer = node_repositories(first)
    plain = node_repositories(second)
    causal = node_repositories(second, mysql_wsrep_sync_wait=CAUSAL_READS)
    # Both pools hold a connection before node 2 is paused.
    for repository in (plain, causal):
        with pytest.raises(exception.StashNotFound):
            repository.get_stash(INSTANCE)
    lock = second.connect()
    with lock.cursor() as cursor:
        cursor.execute("FLUSH TABLES WITH READ LOCK")
    answers = []
    try:
        written = writer.stash_roles(INSTANCE, project_id="p", user_id="u",
                                     roles=ROLES)
        with pytest.raises(exception.StashNotFound):
            plain.get_stash(INSTANCE)
        reader = threading.Thread(
            target=lambda: answers.append(causal.get_stash(INSTANCE)),
            daemon=True)
        reader.start()
        _wait_for_a_waiting_read(second, INSTANCE)
        assert answers == []
    finally:
        with lock.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        lock.close()
    reader.join(timeout=60)
    assert answers == [written]
    assert plain.get_stash(INSTANCE) == written


def _wait_for_a_waiting_read(node, instance_uuid, seconds=60):
    """Return once node's process list shows the stash read of
    instance_uuid in progress (it waits there for the applier)."""
    deadline = time.monotonic() + seconds
    connection = node.connect()
    try:
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist "
                    "WHERE info LIKE %s AND info LIKE %s",
                    ("%role_stashes%", f"%{instance_uuid}%"))
                if cursor.fetchone()[0]:
                    return
            time.sleep(0.05)
    finally:
        connection.close()
    raise AssertionError(f"no read of {instance_uuid} waits on {node.name}")
