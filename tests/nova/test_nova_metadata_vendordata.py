"""Metadata GET: a guest's request carries no user, no roles and no token;
the stash gives the vendordata fields Nova's own DynamicVendorData sends
(captured by a local HTTP server), field by field."""

from nova import context as nova_context
from nova import objects
from nova.api.metadata import base as metadata_base
from nova.api.metadata import vendordata_dynamic
import nova.conf as nova_conf
from nova.network import model as network_model

FIELDS = ("project-id", "instance-id", "boot-roles")


def boot_instance(context, instance_uuid):
    """Create the instance as Nova's conductor does, and cache its boot
    roles as Nova's compute manager does (_build_and_run_instance)."""
    instance = objects.Instance(
        context=context, uuid=instance_uuid, project_id=context.project_id,
        user_id=context.user_id, hostname="guest", vm_state="building",
        image_ref="155d900f-4e14-4e4c-a73d-069cbf4541e6",
        system_metadata={}, metadata={"purpose": "test"},
        info_cache=objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo()),
        flavor=objects.Flavor(
            id=1, flavorid="1", name="m1.tiny", memory_mb=512, vcpus=1,
            root_gb=1, ephemeral_gb=0, swap=0, rxtx_factor=1.0,
            vcpu_weight=None, disabled=False, is_public=True,
            extra_specs={}, description=None))
    instance.create()
    instance.system_metadata.update({"boot_roles": ",".join(context.roles)})
    instance.save()
    return instance


def guest_request_context():
    """What the metadata handler has: an admin context with no user, no
    roles and no token."""
    context = nova_context.get_admin_context()
    assert context.user_id is None and context.project_id is None
    assert not context.roles and context.auth_token is None
    return context


def load_instance(context, instance_uuid):
    return objects.Instance.get_by_uuid(
        context, instance_uuid, expected_attrs=["system_metadata", "metadata"])


def test_metadata_get_without_user_returns_what_dynamic_vendordata_sends(
        nova_context_manager, nova_repository, make_user_context,
        vendordata_server, new_uuid):
    creator = make_user_context(
        roles=["member", "reader", "load-balancer_member"])
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(creator):
        boot_instance(creator, instance_uuid)
        nova_repository.stash_from_context(creator, instance_uuid)

    guest = guest_request_context()
    stashed = nova_repository.get_stash(
        instance_uuid, context=guest).vendordata()
    answer = vendordata_dynamic.DynamicVendorData(
        instance=load_instance(guest, instance_uuid)).get()
    sent = vendordata_server.next_body()

    assert answer == {"role_stash_test": {}}
    for field in FIELDS:
        assert stashed[field] == sent[field], field
    assert sent["boot-roles"] == "member,reader,load-balancer_member"


def test_metadata_handler_vendor_data2_sends_what_the_stash_gives(
        nova_context_manager, nova_repository, make_user_context,
        vendordata_server, new_uuid, monkeypatch):
    """The same through Nova's metadata handler object (InstanceMetadata,
    whose DynamicJSON provider base.py hard-codes) and the guest's path.
    InstanceMetadata asks Neutron for the security groups: there is no
    Neutron here, so that one network call answers none."""
    monkeypatch.setattr(metadata_base.security_group_api,
                        "get_instance_security_groups",
                        lambda context, instance: [])
    creator = make_user_context(roles=["reader", "member"])
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(creator):
        boot_instance(creator, instance_uuid)
        nova_repository.stash_from_context(creator, instance_uuid)

    # One cell, metadata served by it: the handler reads the instance
    # without the API database's instance mapping.
    nova_conf.CONF.set_override("local_metadata_per_cell", True, group="api")
    try:
        metadata = metadata_base.get_metadata_by_instance_id(
            instance_uuid, "192.0.2.10")
        metadata.lookup("/openstack/latest/vendor_data2.json")
    finally:
        nova_conf.CONF.clear_override("local_metadata_per_cell", group="api")
    sent = vendordata_server.next_body()
    stashed = nova_repository.get_stash(instance_uuid).vendordata()
    for field in FIELDS:
        assert stashed[field] == sent[field], field
    assert vendordata_server.headers[-1]["User-Agent"] == (
        "openstack-nova-vendordata")


def test_stash_answers_after_nova_lost_the_token(
        nova_context_manager, nova_repository, make_user_context, new_uuid):
    """The context the stash was made from is gone; a context built from
    nothing (as a metadata request's) reads every field back."""
    creator = make_user_context(roles=["member"])
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(creator):
        boot_instance(creator, instance_uuid)
        nova_repository.stash_from_context(creator, instance_uuid)
    project_id = creator.project_id
    del creator
    assert nova_repository.get_stash(
        instance_uuid, context=guest_request_context()).vendordata() == {
            "project-id": project_id, "instance-id": instance_uuid,
            "boot-roles": "member"}
