"""Every role name Keystone accepts is stashed and read back exactly, inside
Nova's transaction; Keystone's own role-create schema and validator are the
oracle. Only what no backend can store (NUL) is refused."""

from nova.db.main import api as nova_db
import pytest

from role_stash import exception

KEYSTONE_NAMES = {
    "no-break space": "power\u00a0user",
    "leading blank": " leading",
    "trailing blank": "trailing ",
    "emoji": "\U0001F680 launcher",
    "255 characters": "r" * 255,
    "255 characters, 4 bytes each": "\U0001F600" * 255,
    "inner blanks": "load balancer  member",
    "accents and CJK": "Gérant-管理者",
    "mixed case": "Admin",
    "comma": "reader,observer",
}


def instance_values(context, instance_uuid):
    return {"uuid": instance_uuid, "project_id": context.project_id,
            "user_id": context.user_id, "vm_state": "building"}


def test_oracle_is_keystones_schema(keystone_role_name_oracle):
    for name in KEYSTONE_NAMES.values():
        assert keystone_role_name_oracle(name), name
    for name in ("", " ", "\t\n", "r" * 256):
        assert not keystone_role_name_oracle(name), name


@pytest.mark.parametrize("label", sorted(KEYSTONE_NAMES))
def test_role_name_keystone_accepts_is_stashed_and_read_back_exactly(
        label, keystone_role_name_oracle, nova_context_manager,
        nova_repository, make_user_context, new_uuid):
    name = KEYSTONE_NAMES[label]
    assert keystone_role_name_oracle(name)
    creator = make_user_context(roles=["member", name])
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(creator):
        nova_db.instance_create(creator,
                                instance_values(creator, instance_uuid))
        nova_repository.stash_from_context(creator, instance_uuid)
    stash = nova_repository.get_stash(instance_uuid)
    assert stash.roles == ("member", name)
    boot_roles = stash.vendordata()["boot-roles"]
    if "," in name:
        # Left out of the comma-joined form, kept in roles.
        assert boot_roles == "member"
    else:
        assert boot_roles == "member," + name


@pytest.mark.parametrize("label", sorted(KEYSTONE_NAMES))
def test_role_name_keystone_accepts_is_stashed_alone(
        label, nova_repository, new_uuid):
    """The same outside Nova's transaction (the lone path)."""
    name = KEYSTONE_NAMES[label]
    instance_uuid = new_uuid()
    nova_repository.stash_roles(instance_uuid, project_id="p", user_id="u",
                                roles=[name])
    assert nova_repository.get_stash(instance_uuid).roles == (name,)


def test_names_differing_only_in_blanks_are_distinct_roles(
        nova_repository, new_uuid):
    names = ["member", " member", "member "]
    instance_uuid = new_uuid()
    nova_repository.stash_roles(instance_uuid, project_id="p", user_id="u",
                                roles=names)
    assert nova_repository.get_stash(instance_uuid).roles == tuple(names)


@pytest.mark.parametrize("name", ["\x00", "power\x00user"])
def test_role_name_with_nul_is_refused_before_any_sql(
        name, keystone_role_name_oracle, nova_repository, new_uuid):
    """Keystone's schema accepts a NUL; no backend can store one."""
    assert keystone_role_name_oracle(name)
    instance_uuid = new_uuid()
    with pytest.raises(exception.InvalidArgument) as refused:
        nova_repository.stash_roles(instance_uuid, project_id="p",
                                    user_id="u", roles=[name])
    assert refused.value.field.startswith("role")
    with pytest.raises(exception.StashNotFound):
        nova_repository.get_stash(instance_uuid)
