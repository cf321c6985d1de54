"""The calls Nova makes to role_stash, one function per place in Nova that
the patch series of contrib/nova/patches changes. No SQL here, and no
import of Nova: each function is handed Nova's own objects."""

import logging

from role_stash import exception
from role_stash.nova import repositories

LOG = logging.getLogger(__name__)

# Nova's objects.CellMapping.CELL0_UUID: the cell of instances that failed
# scheduling, which never run and so are never stashed.
CELL0_UUID = "00000000-0000-0000-0000-000000000000"


def create_instance(cell_context, instance):
    """nova-conductor, schedule_and_build_instances: create instance and
    stash the roles of cell_context (the user's, targeted at the cell) in
    one transaction of the cell's database."""
    with repositories.context_manager_of(cell_context).writer.using(
            cell_context):
        instance.create()
        repositories.repository_for(cell_context).stash_from_context(
            cell_context, instance.uuid)


def create_instance_copy(source_context, instance):
    """nova-conductor, a cross-cell resize's TargetDBSetupTask: create
    instance (the clone bound to the target cell's context) and copy the
    source cell's stash beside it, in one transaction of the target cell's
    database. An instance with no stash gets none."""
    try:
        stash = repositories.repository_for(source_context).get_stash(
            instance.uuid)
    except exception.StashNotFound:
        stash = None
    target_context = instance._context
    with repositories.context_manager_of(target_context).writer.using(
            target_context):
        instance.create()
        if stash is not None:
            repositories.repository_for(target_context).stash_many(
                [stash], context=target_context)


def instance_destroyed(context, instance_uuid):
    """Nova's database API, instance_destroy, inside its transaction:
    soft-delete the instance's stash with the row, whichever service
    destroys it (nova-compute's delete, nova-api's local delete, a
    cross-cell resize's confirm or revert). cell0 holds no stash."""
    if getattr(context, "cell_uuid", None) == CELL0_UUID:
        return
    repositories.repository_for(context).delete_stash(
        instance_uuid, missing_ok=True, context=context)
