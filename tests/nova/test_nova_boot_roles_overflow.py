"""The reason role_stash exists: Nova caches the boot roles in
instance_system_metadata.value, a String(255). A user with thirty roles
overflows it on PostgreSQL and MariaDB (SQLite does not enforce a VARCHAR's
length), while the stash keeps every name."""

from nova import objects
from oslo_db import exception as db_exc
import pytest

THIRTY_ROLES = [f"project-role-{number:02d}" for number in range(30)]


def test_thirty_roles_overflow_novas_boot_roles_but_not_the_stash(
        nova_context_manager, nova_repository, make_user_context, new_uuid,
        server):
    creator = make_user_context(roles=THIRTY_ROLES)
    boot_roles = ",".join(creator.roles)
    assert len(boot_roles) > 255
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(creator):
        instance = objects.Instance(
            context=creator, uuid=instance_uuid,
            project_id=creator.project_id, user_id=creator.user_id,
            hostname="guest", vm_state="building", system_metadata={})
        instance.create()
        nova_repository.stash_from_context(creator, instance_uuid)

    # What Nova's compute manager does in _build_and_run_instance.
    instance.system_metadata.update({"boot_roles": boot_roles})
    if server.name == "sqlite":
        instance.save()
        assert objects.Instance.get_by_uuid(
            creator, instance_uuid, expected_attrs=["system_metadata"]
        ).system_metadata["boot_roles"] == boot_roles
    else:
        with pytest.raises(db_exc.DBError):
            instance.save()

    stash = nova_repository.get_stash(instance_uuid)
    assert stash.roles == tuple(THIRTY_ROLES)
    assert stash.vendordata()["boot-roles"] == boot_roles
