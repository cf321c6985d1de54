"""The calls Nova makes to role_stash, where it makes them: the admin guide's
"Running inside Nova" shows these functions, and tests/nova runs them with
Nova's own code."""

from role_stash import exception
from role_stash import nova as role_stash_nova


def create_instance(cell_context, instance):
    """nova-conductor, ComputeTaskManager.schedule_and_build_instances,
    where `with obj_target_cell(instance, cell) as cctxt: instance.create()`
    stands: the instance row and the stash commit in one transaction of the
    cell's database. cell_context carries the user's roles."""
    context_manager = role_stash_nova.context_manager_of(cell_context)
    with context_manager.writer.using(cell_context):
        instance.create()
        role_stash_nova.repository_for(cell_context).stash_from_context(
            cell_context, instance.uuid)


def vendordata_fields(context, instance_uuid):
    """nova-metadata, building dynamic vendordata: the creator's project
    and roles from the stash, or None for an instance created before
    role_stash was deployed (then Nova's system_metadata['boot_roles'])."""
    try:
        stash = role_stash_nova.repository_for(context).get_stash(
            instance_uuid)
    except exception.StashNotFound:
        return None
    return stash.vendordata()


def destroy_instance(context, instance):
    """nova-compute, ComputeManager._delete_instance, where
    instance.destroy() stands: the row and the stash go together; an
    instance with no stash is fine."""
    context_manager = role_stash_nova.context_manager_of(context)
    with context_manager.writer.using(context):
        instance.destroy()
        role_stash_nova.repository_for(context).delete_stash(
            instance.uuid, missing_ok=True, context=context)
