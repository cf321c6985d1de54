"""role_stash.nova.vendordata.DynamicVendorData, swapped into Nova's own
metadata handler (the one-line change of nova/api/metadata/base.py): it
posts Nova's body field for field, the project and boot roles from the
stash, and honours Nova's options."""

import json
import logging

from nova import objects
from nova.api.metadata import base as metadata_base
from nova.api.metadata import vendordata_dynamic
import nova.conf as nova_conf
import pytest

from role_stash import exception
from role_stash.conf import vendordata as conf_vendordata
from role_stash.nova import vendordata

FIELDS = ("project-id", "instance-id", "image-id", "user-data", "hostname",
          "metadata", "boot-roles")
REFUSED = "http://127.0.0.1:1/"  # nothing listens on port 1


@pytest.fixture
def booted(nova_context_manager, nova_repository, make_user_context,
           new_uuid, network_and_flavor):
    """boot(stash=True): an instance created as Nova does, its boot_roles
    in system_metadata, and (unless stash=False) its stash."""

    def boot(stash=True):
        creator = make_user_context(roles=["member", "reader"])
        instance_uuid = new_uuid()
        with nova_context_manager.writer.using(creator):
            instance = objects.Instance(
                context=creator, uuid=instance_uuid,
                project_id=creator.project_id, user_id=creator.user_id,
                hostname="guest", vm_state="building", user_data="I2Nsb3Vk",
                image_ref="155d900f-4e14-4e4c-a73d-069cbf4541e6",
                system_metadata={"boot_roles": "member,reader"},
                metadata={"purpose": "test"}, **network_and_flavor)
            instance.create()
            if stash:
                nova_repository.stash_from_context(creator, instance_uuid)
        return objects.Instance.get_by_uuid(
            creator, instance_uuid,
            expected_attrs=["system_metadata", "metadata"])

    return boot


def posted_by(driver, instance, server):
    reply = driver(instance=instance).get()
    return reply, server.next_body(), server.headers[-1]


def test_the_drop_in_posts_novas_body_with_the_stashs_fields(
        booted, vendordata_server):
    instance = booted()
    nova_reply, nova_body, nova_headers = posted_by(
        vendordata_dynamic.DynamicVendorData, instance, vendordata_server)
    reply, body, headers = posted_by(
        vendordata.DynamicVendorData, instance, vendordata_server)
    assert reply == nova_reply == {"role_stash_test": {}}
    for field in FIELDS:
        assert body[field] == nova_body[field], field
    assert body["boot-roles"] == "member,reader"
    for header in ("Content-Type", "Accept", "User-Agent"):
        assert headers[header] == nova_headers[header]


def test_novas_metadata_handler_runs_the_drop_in(
        booted, vendordata_server, monkeypatch):
    """Nova's InstanceMetadata, with base.py's DynamicVendorData pointed at
    role_stash's (the deployment's one-line change)."""
    monkeypatch.setattr(metadata_base.security_group_api,
                        "get_instance_security_groups",
                        lambda context, instance: [])
    monkeypatch.setattr(vendordata_dynamic, "DynamicVendorData",
                        vendordata.DynamicVendorData)
    instance = booted()
    # One cell, metadata served by it: the handler reads the instance
    # without the API database's instance mapping.
    nova_conf.CONF.set_override("local_metadata_per_cell", True, group="api")
    try:
        metadata = metadata_base.get_metadata_by_instance_id(
            instance.uuid, "192.0.2.10")
        served = metadata.lookup("/openstack/latest/vendor_data2.json")
    finally:
        nova_conf.CONF.clear_override("local_metadata_per_cell", group="api")
    assert json.loads(served)["role_stash_test"] == {}
    body = vendordata_server.next_body()
    assert (body["project-id"], body["boot-roles"]) == (
        instance.project_id, "member,reader")


def test_an_instance_without_stash_sends_novas_boot_roles(
        booted, vendordata_server, caplog):
    instance = booted(stash=False)
    caplog.set_level(logging.INFO, logger="role_stash.nova.vendordata")
    vendordata.DynamicVendorData(instance=instance).get()
    body = vendordata_server.next_body()
    assert body["boot-roles"] == "member,reader"
    assert body["project-id"] == instance.project_id
    assert [record.getMessage() for record in caplog.records
            if instance.uuid in record.getMessage()] == [
        f"Instance {instance.uuid} has no role stash of its project: "
        "boot-roles from its system_metadata"]


def test_bad_and_duplicate_targets_are_skipped_as_nova_does(
        booted, vendordata_server, caplog):
    conf_vendordata.register_options(vendordata.cfg.CONF)
    vendordata.cfg.CONF.set_override("vendordata_dynamic_targets", [
        "no-name-here", f"first@{vendordata_server.url}",
        f"first@{vendordata_server.url}x"], group="api")
    try:
        reply = vendordata.DynamicVendorData(instance=booted()).get()
    finally:
        vendordata.cfg.CONF.clear_override("vendordata_dynamic_targets",
                                           group="api")
    assert reply == {"first": {}}
    assert vendordata_server.bodies.qsize() == 1
    assert sum("Skipping" in record.getMessage()
               for record in caplog.records) == 2


@pytest.mark.parametrize("fatal", [False, True])
def test_a_failing_service_is_empty_or_fatal_as_configured(
        booted, vendordata_server, fatal):
    conf = vendordata.cfg.CONF
    conf.set_override("vendordata_dynamic_targets",
                      [f"down@{REFUSED}"], group="api")
    conf.set_override("vendordata_dynamic_failure_fatal", fatal, group="api")
    try:
        driver = vendordata.DynamicVendorData(instance=booted())
        if fatal:
            with pytest.raises(exception.VendordataFailed,
                               match="service down at"):
                driver.get()
        else:
            assert driver.get() == {"down": {}}
    finally:
        conf.clear_override("vendordata_dynamic_targets", group="api")
        conf.clear_override("vendordata_dynamic_failure_fatal", group="api")


def test_one_session_serves_every_request(booted, vendordata_server):
    """As Nova keeps its service-auth session: connections are reused,
    and the insecure-requests warning is logged once, not per GET."""
    first = vendordata.DynamicVendorData(instance=booted())
    second = vendordata.DynamicVendorData(instance=booted())
    first.get()
    second.get()
    assert first.session is second.session


def test_a_configured_service_account_sends_its_token(
        booted, vendordata_server, service_account, caplog):
    """[vendordata_dynamic_auth] names an account: every call carries the
    service's token (keystoneauth1's admin_token plugin stands in for a
    Keystone here), and the token is never logged."""
    service_account(vendordata_server.url, "service-token-1234")
    caplog.set_level(logging.DEBUG)
    vendordata.DynamicVendorData(instance=booted()).get()
    assert vendordata_server.headers[-1]["X-Auth-Token"] == (
        "service-token-1234")
    assert not [record for record in caplog.records
                if "service-token-1234" in record.getMessage()]
