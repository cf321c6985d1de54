"""role_stash inside a whole Nova: Nova's own functional harness (API,
conductor, scheduler, computes on the fake virt driver, placement, cell0
and two cells, each cell database SQLite in memory, as Nova's fixtures
make them) on Nova with contrib/nova/patches applied and [role_stash]
enabled. Run by tests/nova_functional/test_nova_functional.py, in a
process of its own: the harness patches the process with eventlet.
"""

import hashlib
import hmac
import json
import pathlib
import subprocess
import sys
import urllib.request

import fixtures
from keystoneauth1 import loading as ks_loading
from nova import context as nova_context
from nova import objects
from nova.api.metadata import base as instance_metadata
from nova.api.metadata import handler as metadata_handler
import nova.conf
from nova.policies import base as base_policies
from nova.policies import servers as servers_policies
from nova.tests.functional import integrated_helpers
from nova.tests.functional.api import client
from nova.virt import configdrive
from nova.virt import fake
import webob

from role_stash import exception
from role_stash.db import migration
from role_stash.nova import repositories
from role_stash.nova import vendordata

CONF = nova.conf.CONF
TARGET = pathlib.Path(__file__).with_name("vendordata_target.py")
SERVICE_TOKEN = "service-token-of-nova"
SHARED_SECRET = "metadata-proxy-secret"
NOVAS_OWN_VALUE = "nova-own-value"

# Forty roles: joined, far longer than Nova's String(255) boot_roles; one
# name has a blank inside; Nova's policy needs member.
FORTY_ROLES = (["reader", "member", "role with blank"]
               + [f"vendordata-consumer-role-{n:02d}" for n in range(37)])


# The config drives' vendordata, by instance UUID.
CONFIG_DRIVE_VENDOR_DATA = {}
_fake_spawn = fake.FakeDriver.spawn


def _spawn_building_a_config_drive(self, context, instance, *args, **kwargs):
    """The fake driver's spawn, building a config drive's vendordata first
    as the libvirt driver does (InstanceMetadata, in nova-compute)."""
    if configdrive.required_by(instance):
        metadata = instance_metadata.InstanceMetadata(instance)
        CONFIG_DRIVE_VENDOR_DATA[instance.uuid] = json.loads(metadata.lookup(
            "/openstack/latest/vendor_data2.json"))
    return _fake_spawn(self, context, instance, *args, **kwargs)


class RoleStashInNovaTestCase(integrated_helpers.ProviderUsageBaseTestCase):
    """Two cells, host1 in cell1 and host2 in cell2, each its own
    availability zone named after its cell."""

    NUMBER_OF_CELLS = 2
    compute_driver = "fake.MediumFakeDriver"

    def setUp(self):
        self.flags(enabled=True, group="role_stash")
        super().setUp()
        self.flags(max_attempts=1, group="scheduler")
        self.flags(service_metadata_proxy=True,
                   metadata_proxy_shared_secret=SHARED_SECRET,
                   group="neutron")
        self.policy.set_rules({servers_policies.CROSS_CELL_RESIZE:
                               base_policies.RULE_ADMIN_API}, overwrite=False)
        self.admin_context = nova_context.get_admin_context()
        # role_stash's tables in each cell's database; not in cell0, which
        # never holds a stash.
        for name in ("cell1", "cell2"):
            with self._cell(name) as cell_context:
                engine = cell_context.db_connection.writer.get_engine()
                with engine.begin() as connection:
                    migration.upgrade(connection)
        for host, cell_name in (("host1", "cell1"), ("host2", "cell2")):
            self._start_compute(host, cell_name=cell_name)
            aggregate = self._create_aggregate(
                cell_name, availability_zone=cell_name)
            self.admin_api.post_aggregate_action(
                aggregate, {"add_host": {"host": host}})
        self.user_api = client.TestOpenStackClient(
            "forty-roles-user", self.api_fixture.base_url,
            project_id=self.api.project_id, roles=FORTY_ROLES)
        vendordata.forget_sessions()
        self.useFixture(fixtures.MonkeyPatch(
            "nova.virt.fake.FakeDriver.spawn", _spawn_building_a_config_drive))
        CONFIG_DRIVE_VENDOR_DATA.clear()

    # Helpers.

    def _cell(self, name):
        return nova_context.target_cell(self.admin_context,
                                        self.cell_mappings[name])

    def _stash(self, cell_name, instance_uuid):
        """The live stash of instance_uuid in cell_name's database, or
        None."""
        with self._cell(cell_name) as cell_context:
            try:
                return repositories.repository_for(cell_context).get_stash(
                    instance_uuid)
            except exception.StashNotFound:
                return None

    def _overwrite_novas_boot_roles(self, cell_name, instance_uuid):
        """Nova's own boot_roles, overwritten: whatever the target then
        receives came from the stash."""
        with self._cell(cell_name) as cell_context:
            instance = objects.Instance.get_by_uuid(
                cell_context, instance_uuid,
                expected_attrs=["system_metadata"])
            instance.system_metadata["boot_roles"] = NOVAS_OWN_VALUE
            instance.save()

    def _start_target(self, status=200, max_age=60):
        """A vendordata target in a process of its own, named "target" in
        [api] vendordata_dynamic_targets, with a service account."""
        process = subprocess.Popen(
            [sys.executable, str(TARGET), str(status), str(max_age)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(process.wait, 30)
        self.addCleanup(process.stdin.close)
        url = f"http://127.0.0.1:{int(process.stdout.readline())}/"
        self.flags(vendordata_providers=["DynamicJSON"],
                   vendordata_dynamic_targets=[f"target@{url}"], group="api")
        self.flags(auth_type="admin_token", group="vendordata_dynamic_auth")
        # The admin_token plugin's own options exist once it is named.
        CONF.register_opts(
            ks_loading.get_auth_plugin_conf_options("admin_token"),
            "vendordata_dynamic_auth")
        self.flags(token=SERVICE_TOKEN, endpoint=url,
                   group="vendordata_dynamic_auth")
        return url

    @staticmethod
    def _calls(url):
        with urllib.request.urlopen(url + "calls", timeout=30) as reply:
            return json.loads(reply.read())

    def _vendor_data2(self, server, metadata=None):
        """GET vendor_data2.json through Nova's MetadataRequestHandler,
        with the signed X-Instance-ID that Neutron's proxy sends."""
        instance_uuid = server["id"]
        request = webob.Request.blank("/openstack/latest/vendor_data2.json")
        request.headers["X-Instance-ID"] = instance_uuid
        request.headers["X-Instance-ID-Signature"] = hmac.new(
            SHARED_SECRET.encode(), instance_uuid.encode(),
            hashlib.sha256).hexdigest()
        request.headers["X-Tenant-ID"] = server["tenant_id"]
        request.headers["X-Forwarded-For"] = "192.0.2.10"
        reply = request.get_response(
            metadata or metadata_handler.MetadataRequestHandler())
        self.assertEqual(200, reply.status_int, reply.body)
        return json.loads(reply.body)

    def _boot(self, az=None, api=None, expected_state="ACTIVE",
              flavor_id=None):
        api = api or self.user_api
        # The admin client speaks the latest microversion: networks named.
        return self._create_server(
            api=api, az=az, flavor_id=flavor_id,
            networks="none" if api.microversion else None,
            expected_state=expected_state)

    def _assert_target_got_the_stash(self, url, server, reply):
        joined = ",".join(FORTY_ROLES)
        self.assertGreater(len(joined), 255)
        self.assertEqual({"target": {"boot-roles": joined,
                                     "project-id": server["tenant_id"]}},
                         reply)
        call = self._calls(url)[-1]
        self.assertEqual(joined, call["body"]["boot-roles"])
        self.assertEqual(server["id"], call["body"]["instance-id"])
        self.assertEqual(SERVICE_TOKEN, call["token"])

    # Scenarios.

    def test_forty_roles_in_cell2_reach_the_target_across_cells(self):
        url = self._start_target()
        server = self._boot("cell2")
        stash = self._stash("cell2", server["id"])
        self.assertEqual(tuple(FORTY_ROLES), stash.roles)
        self.assertIsNone(self._stash("cell1", server["id"]))
        self._overwrite_novas_boot_roles("cell2", server["id"])
        self.flags(local_metadata_per_cell=False, group="api")
        self._assert_target_got_the_stash(url, server,
                                          self._vendor_data2(server))

    def test_forty_roles_reach_the_target_with_local_metadata_per_cell(self):
        # Nova's handler reads the instance through [database], which in
        # the harness is cell1's: a metadata service local to cell1.
        url = self._start_target()
        server = self._boot("cell1")
        self.assertEqual(tuple(FORTY_ROLES),
                         self._stash("cell1", server["id"]).roles)
        self._overwrite_novas_boot_roles("cell1", server["id"])
        self.flags(local_metadata_per_cell=True, group="api")
        self._assert_target_got_the_stash(url, server,
                                          self._vendor_data2(server))

    def test_second_get_within_max_age_makes_no_call(self):
        # Each GET through a handler of its own: another metadata worker,
        # or Nova's own metadata cache expired.
        url = self._start_target(max_age=300)
        server = self._boot("cell2")
        first = self._vendor_data2(server)
        self.assertEqual(first, self._vendor_data2(server))
        self.assertEqual(1, len(self._calls(url)))

    def test_second_get_through_the_same_handler_makes_no_call(self):
        # Nova's handler keeps the InstanceMetadata, and with it the
        # drop-in, for metadata_cache_expiration: the drop-in reads the
        # replies stored since its first GET.
        url = self._start_target(max_age=300)
        server = self._boot("cell2")
        worker = metadata_handler.MetadataRequestHandler()
        first = self._vendor_data2(server, worker)
        self.assertEqual(first, self._vendor_data2(server, worker))
        self.assertEqual(1, len(self._calls(url)))

    def test_multi_create_stashes_every_instance(self):
        body = self._build_server(az="cell1")
        body["min_count"] = 3
        body["name"] = "multi-create"
        self.user_api.post_server({"server": body})
        servers = self.api.get_servers(search_opts={"name": "multi-create"})
        self.assertEqual(3, len(servers))
        for server in servers:
            self._wait_for_state_change(server, "ACTIVE")
            self.assertEqual(tuple(FORTY_ROLES),
                             self._stash("cell1", server["id"]).roles)

    def test_config_drive_failure_fatal_puts_the_instance_in_error(self):
        self.flags(force_config_drive=True)
        self.flags(vendordata_dynamic_failure_fatal=True, group="api")
        url = self._start_target(status=500)
        server = self._boot("cell1", expected_state="ERROR")
        self.assertEqual(1, len(self._calls(url)))
        self.assertNotIn(server["id"], CONFIG_DRIVE_VENDOR_DATA)

    def test_config_drive_failure_not_fatal_boots_with_an_empty_reply(self):
        self.flags(force_config_drive=True)
        self.flags(vendordata_dynamic_failure_fatal=False, group="api")
        url = self._start_target(status=500)
        server = self._boot("cell1")
        self.assertEqual({"target": {}},
                         CONFIG_DRIVE_VENDOR_DATA[server["id"]])
        self.assertEqual(",".join(FORTY_ROLES),
                         self._calls(url)[0]["body"]["boot-roles"])

    def test_delete_with_the_compute_service_up_leaves_no_live_stash(self):
        server = self._boot("cell2")
        self.assertIsNotNone(self._stash("cell2", server["id"]))
        self._delete_server(server)
        self.assertIsNone(self._stash("cell2", server["id"]))

    def test_local_delete_with_compute_down_leaves_no_live_stash(self):
        server = self._boot("cell1")
        self.assertIsNotNone(self._stash("cell1", server["id"]))
        self.computes["host1"].stop()
        service = self.admin_api.get_services(
            binary="nova-compute", host="host1")[0]
        self.admin_api.put_service_force_down(service["id"], True)
        self._delete_server(server)
        self.assertIsNone(self._stash("cell1", server["id"]))

    def test_server_buried_in_cell0_leaves_no_live_stash(self):
        # More disk than any host has: NoValidHost, buried in cell0.
        too_large = self._create_flavor(disk=5000)
        server = self._boot(flavor_id=too_large, expected_state="ERROR")
        with self._cell("cell0") as cell_context:
            objects.Instance.get_by_uuid(cell_context, server["id"])
        for cell_name in ("cell1", "cell2"):
            self.assertIsNone(self._stash(cell_name, server["id"]))
        # Its delete destroys the row in cell0, which has no stash table.
        self._delete_server(server)

    def _resize_to_the_other_cell(self):
        """Boot, resize to the other cell's host; return the target's URL,
        the server, its source cell and its target cell."""
        url = self._start_target(max_age=0)
        server = self._boot()
        source, target = (("cell1", "cell2")
                          if server["OS-EXT-SRV-ATTR:host"] == "host1"
                          else ("cell2", "cell1"))
        self.api.post_server_action(server["id"], {
            "resize": {"flavorRef": self.api.get_flavors()[1]["id"]}})
        server = self._wait_for_state_change(server, "VERIFY_RESIZE")
        self.assertEqual(tuple(FORTY_ROLES),
                         self._stash(target, server["id"]).roles)
        return url, server, source, target

    def test_cross_cell_resize_confirmed_keeps_the_stash(self):
        url, server, source, target = self._resize_to_the_other_cell()
        self._confirm_resize(server, cross_cell=True)
        self.assertIsNone(self._stash(source, server["id"]))
        self._overwrite_novas_boot_roles(target, server["id"])
        self._assert_target_got_the_stash(url, server,
                                          self._vendor_data2(server))

    def test_cross_cell_resize_reverted_keeps_the_stash(self):
        url, server, source, target = self._resize_to_the_other_cell()
        self.api.post_server_action(server["id"], {"revertResize": None})
        server = self._wait_for_state_change(server, "ACTIVE")
        self._wait_for_migration_status(server, ["reverted"])
        self.assertIsNone(self._stash(target, server["id"]))
        self._overwrite_novas_boot_roles(source, server["id"])
        self._assert_target_got_the_stash(url, server,
                                          self._vendor_data2(server))

    def test_instance_created_before_role_stash_sends_novas_boot_roles(self):
        url = self._start_target()
        self.flags(enabled=False, group="role_stash")
        server = self._boot("cell2", api=self.admin_api)
        self.assertIsNone(self._stash("cell2", server["id"]))
        self.flags(enabled=True, group="role_stash")
        reply = self._vendor_data2(server)
        self.assertEqual("reader,member,admin",
                         reply["target"]["boot-roles"])
        self.assertEqual("reader,member,admin",
                         self._calls(url)[0]["body"]["boot-roles"])
