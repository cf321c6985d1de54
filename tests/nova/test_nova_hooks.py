"""role_stash.nova.hooks, the calls of the Nova patch series
(contrib/nova/patches), with Nova's own objects, target_cell and database
API on every backend: the create, the destroy and the cross-cell copy
each in Nova's transaction of the cell's database."""

from nova import context as nova_context
from nova import objects as nova_objects
from nova.db.main import api as nova_db
import pytest

from role_stash import exception
from role_stash.nova import hooks
from role_stash.nova import repositories


def new_instance(cell_context, instance_uuid):
    """An objects.Instance of cell_context's user, not yet created."""
    return nova_objects.Instance(
        context=cell_context, uuid=instance_uuid,
        project_id=cell_context.project_id, user_id=cell_context.user_id,
        hostname="guest", vm_state="building")


def live_stash(cell_context, instance_uuid):
    try:
        return repositories.repository_for(cell_context).get_stash(
            instance_uuid)
    except exception.StashNotFound:
        return None


def test_create_instance_commits_the_row_and_the_stash_together(
        cell, nova_context_manager, make_user_context, new_uuid):
    kept, dropped = new_uuid(), new_uuid()
    context = make_user_context(roles=["member", "role with blank"])
    with nova_context.target_cell(context, cell) as cell_context:
        hooks.create_instance(cell_context, new_instance(cell_context, kept))
        assert live_stash(cell_context, kept).roles == (
            "member", "role with blank")
        # A stash refused (a role name Keystone would never give) rolls
        # the instance row back with it.
        refused = make_user_context(roles=["member", ""])
        with nova_context.target_cell(refused, cell) as refused_context:
            with pytest.raises(exception.InvalidArgument):
                hooks.create_instance(
                    refused_context, new_instance(refused_context, dropped))
        with pytest.raises(Exception, match="could not be found"):
            nova_objects.Instance.get_by_uuid(cell_context, dropped)


def test_instance_destroyed_soft_deletes_the_stash_in_novas_transaction(
        cell, nova_context_manager, user_context, new_uuid):
    destroyed, never_stashed = new_uuid(), new_uuid()
    with nova_context.target_cell(user_context, cell) as cell_context:
        hooks.create_instance(cell_context,
                              new_instance(cell_context, destroyed))
        new_instance(cell_context, never_stashed).create()
        manager = repositories.context_manager_of(cell_context)
        for instance_uuid in (destroyed, never_stashed):
            with manager.writer.using(cell_context):
                nova_db.instance_destroy(cell_context, instance_uuid)
                hooks.instance_destroyed(cell_context, instance_uuid)
        assert live_stash(cell_context, destroyed) is None


def test_instance_destroyed_in_cell0_touches_no_role_stash_table(
        user_context, new_uuid):
    # cell0's context manager is never used: no database is configured.
    cell0 = nova_objects.CellMapping(
        uuid=hooks.CELL0_UUID, name="cell0", transport_url="none:///",
        database_connection="mysql+pymysql://nobody@192.0.2.1/nova_cell0")
    with nova_context.target_cell(user_context, cell0) as cell0_context:
        hooks.instance_destroyed(cell0_context, new_uuid())
    nova_context.CELL_CACHE.pop(hooks.CELL0_UUID, None)


def test_create_instance_copy_copies_the_stash_into_the_target_cell(
        cell, nova_context_manager, shared_database_url, make_user_context,
        new_uuid):
    moved, unstashed = new_uuid(), new_uuid()
    target_cell = nova_objects.CellMapping(
        uuid=new_uuid(), name="cell2", transport_url="none:///",
        database_connection=shared_database_url)
    owner = make_user_context(roles=["reader", "member", "role with blank"])
    resizer = make_user_context(roles=["admin"])
    try:
        with nova_context.target_cell(owner, cell) as source:
            hooks.create_instance(source, new_instance(source, moved))
            new_instance(source, unstashed).create()
            with nova_context.target_cell(resizer, target_cell) as target:
                for instance_uuid in (moved, unstashed):
                    clone = new_instance(source, instance_uuid)
                    clone._context = target
                    hooks.create_instance_copy(
                        source.elevated(), clone)
                copied = live_stash(target, moved)
                assert live_stash(target, unstashed) is None
        assert copied.roles == ("reader", "member", "role with blank")
        assert (copied.project_id, copied.user_id) == (
            owner.project_id, owner.user_id)
    finally:
        cached = nova_context.CELL_CACHE.pop(target_cell.uuid, None)
        if cached is not None:
            cached[0].dispose_pool()
