"""Nova's own way to a read replica: nova.conf's [database]
slave_connection, Nova's main context manager built from it by Nova's
create_context_manager (as Nova's test fixtures patch it in): the
metadata GET role_stash serves in nova-metadata reads from the replica,
the stash written at server create, in Nova's transaction, goes to the
primary."""

import uuid

import pytest
import sqlalchemy as sa

nova_conf = pytest.importorskip("nova.conf",
                                reason="the nova extra is not installed")

import nova.context  # noqa: E402
from nova.db.main import api as nova_main_db  # noqa: E402

from role_stash import nova as role_stash_nova  # noqa: E402

CONF = nova_conf.CONF


@pytest.fixture
def nova_main_context_manager(replica_urls):
    """Nova's global main context manager on the primary, with nova.conf's
    [database] slave_connection naming the replica; Nova's own factory and
    configuration put back after."""
    primary, replica = replica_urls
    # RequestContext needs Nova's configuration parsed (tests/nova's
    # session fixture does the same; parsing again is harmless).
    CONF([], project="nova", default_config_files=[])
    CONF.set_override("slave_connection", replica, group="database")
    try:
        replacement = nova_main_db.create_context_manager(connection=primary)
        restore = nova_main_db.context_manager.patch_factory(replacement)
        try:
            yield nova_main_db.context_manager
        finally:
            restore()
            replacement.dispose_pool()
    finally:
        CONF.clear_override("slave_connection", group="database")


def test_novas_slave_connection_serves_the_metadata_get_from_the_replica(
        replication, nova_main_context_manager, application_name):
    context = nova.context.RequestContext(
        user_id="u", project_id="p", roles=["member", "reader"])
    instance_uuid = str(uuid.uuid4())
    repository = role_stash_nova.repository_for(context)
    with nova_main_context_manager.writer.using(context):
        stash = repository.stash_from_context(context, instance_uuid)
    replication.wait_replayed()
    assert repository.get_stash(instance_uuid) == stash
    assert len(replication.stash_reads("replica", application_name)) == 1
    assert replication.stash_reads("primary", application_name) == []
    # Nova's own async reader reads the same replica, and a stash read
    # inside it joins it there.
    with nova_main_context_manager.async_.connection.using(
            context) as connection:
        assert connection.scalar(sa.text(
            "SELECT COUNT(*) FROM role_stashes WHERE instance_uuid = "
            ":uuid"), {"uuid": instance_uuid}) == 1
        assert repository.get_stash(instance_uuid, context=context) == stash
    assert len(replication.stash_reads("replica", application_name)) == 3
    # Nova's plain reader transaction is the primary's, and so are the
    # stash reads that join it.
    with nova_main_context_manager.reader.using(context):
        assert repository.get_stash(instance_uuid, context=context) == stash
    assert len(replication.stash_reads("primary", application_name)) == 1
    repository.close()
