"""The vendordata cache, end to end: the drop-in inside Nova's metadata
path posts to a real local service on 127.0.0.1 that answers with chosen
Cache-Control headers, and every HTTP call the service receives is
counted. Time moves by oslo.utils' override, not by sleeping."""

import datetime
import http.server
import json
import logging
import threading

from nova import objects
from nova.api.metadata import base as metadata_base
from nova.api.metadata import vendordata_dynamic
from oslo_utils import timeutils
import pytest

from role_stash import exception
from role_stash.conf import vendordata as conf_vendordata
from role_stash.nova import flights
from role_stash.nova import vendordata

T0 = datetime.datetime(2026, 11, 27, 12, 0, 0)
TIMEOUT = 30


class Service:
    """A vendordata service: answers {"call": n} with self.headers, 304
    to a matching If-None-Match when it sends an ETag, 503 while down;
    counts the calls; stops at close()."""

    def __init__(self):
        self.calls = 0
        self.headers = {}
        self.conditional = []
        self.down = False
        self.body_padding = 0
        self.hold = None  # an Event the first call waits for
        self.received = threading.Event()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                service.calls += 1
                service.received.set()
                if service.hold is not None:
                    service.hold.wait(TIMEOUT)
                etag = service.headers.get("ETag")
                asked = self.headers.get("If-None-Match")
                service.conditional.append(asked)
                if service.down:
                    self.answer(503, b"down", {})
                elif etag and asked == etag:
                    self.answer(304, b"", service.headers)
                elif service.body_padding < 0:
                    self.answer(200, b"<html>not json</html>",
                                service.headers)
                else:
                    self.answer(200, json.dumps({
                        "call": service.calls,
                        "padding": "x" * service.body_padding}).encode(),
                        service.headers)

            def answer(self, status, body, headers):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                       Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def service(monkeypatch):
    running = Service()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    conf = vendordata.cfg.CONF
    conf_vendordata.register_options(conf)
    conf.set_override("vendordata_dynamic_targets",
                      [f"cached@{running.url}"], group="api")
    timeutils.set_time_override(T0)
    try:
        yield running
    finally:
        timeutils.clear_time_override()
        conf.clear_override("vendordata_dynamic_targets", group="api")
        running.close()


@pytest.fixture
def instance(nova_context_manager, nova_repository, make_user_context,
             new_uuid):
    creator = make_user_context(roles=["member"])
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(creator):
        objects.Instance(context=creator, uuid=instance_uuid,
                         project_id=creator.project_id,
                         user_id=creator.user_id, hostname="guest",
                         system_metadata={}, metadata={}).create()
        nova_repository.stash_from_context(creator, instance_uuid)
    return objects.Instance.get_by_uuid(
        creator, instance_uuid, expected_attrs=["system_metadata",
                                                "metadata"])


def metadata_get(instance):
    """One metadata request: a new driver, as Nova builds one per
    InstanceMetadata."""
    return vendordata.DynamicVendorData(instance=instance).get()["cached"]


def advance(seconds):
    timeutils.advance_time_seconds(seconds)


def test_max_age_serves_from_the_cache_until_expiry(service, instance,
                                                    nova_repository):
    service.headers = {"Cache-Control": "max-age=60"}
    replies = [metadata_get(instance) for _ in range(5)]
    assert service.calls == 1
    assert replies == [{"call": 1, "padding": ""}] * 5
    advance(61)
    assert metadata_get(instance)["call"] == 2
    assert service.calls == 2
    # The entry is shared: another repository, another worker, no call.
    assert set(nova_repository.get_replies(instance.uuid)) == {"cached"}


def test_without_the_cache_every_get_calls(service, instance):
    service.headers = {}
    for _ in range(5):
        metadata_get(instance)
    assert service.calls == 5


def test_no_store_leaves_nothing_in_the_database_or_the_logs(
        service, instance, nova_repository, caplog):
    caplog.set_level(logging.DEBUG)
    service.headers = {"Cache-Control": "max-age=60"}
    metadata_get(instance)
    service.headers = {"Cache-Control": "no-store"}
    advance(61)
    service.body_padding = 7  # the "secret": a body unlike the first
    for _ in range(3):
        assert metadata_get(instance)["padding"] == "x" * 7
    assert service.calls == 4
    assert nova_repository.get_replies(instance.uuid) == {}
    assert not [r for r in caplog.records if "xxxxxxx" in r.getMessage()]


def test_no_cache_revalidates_with_the_etag_and_a_304_refreshes(
        service, instance, nova_repository):
    service.headers = {"Cache-Control": "no-cache", "ETag": '"v1"'}
    first = metadata_get(instance)
    assert [metadata_get(instance) for _ in range(2)] == [first, first]
    assert service.calls == 3
    assert service.conditional == [None, '"v1"', '"v1"']


def test_a_304_gives_the_entry_a_new_lifetime(service, instance,
                                              nova_repository):
    service.headers = {"Cache-Control": "max-age=60", "ETag": '"v1"'}
    first = metadata_get(instance)
    advance(61)
    assert metadata_get(instance) == first  # revalidated: 304
    assert service.conditional == [None, '"v1"']
    assert metadata_get(instance) == first  # fresh again: no call
    assert service.calls == 2
    reply = nova_repository.get_replies(instance.uuid)["cached"]
    assert reply.fresh_until == T0 + datetime.timedelta(seconds=121)


def test_stale_if_error_serves_the_stale_reply_while_the_service_fails(
        service, instance, caplog):
    service.headers = {"Cache-Control": "max-age=60, stale-if-error=300"}
    first = metadata_get(instance)
    service.down = True
    advance(120)
    assert metadata_get(instance) == first
    assert any("stale-if-error" in r.getMessage() for r in caplog.records)
    advance(300)
    assert vendordata.DynamicVendorData(instance=instance).get() == {
        "cached": {}}
    assert service.calls == 3


def test_must_revalidate_never_serves_stale(service, instance):
    service.headers = {
        "Cache-Control": "max-age=60, stale-if-error=300, must-revalidate"}
    metadata_get(instance)
    service.down = True
    advance(61)
    assert vendordata.DynamicVendorData(instance=instance).get() == {
        "cached": {}}


def test_an_oversized_reply_is_served_but_not_stored(service, instance,
                                                     nova_repository):
    service.headers = {"Cache-Control": "max-age=60"}
    service.body_padding = vendordata.MAX_CACHED_BODY
    assert len(metadata_get(instance)["padding"]) == (
        vendordata.MAX_CACHED_BODY)
    assert nova_repository.get_replies(instance.uuid) == {}
    metadata_get(instance)
    assert service.calls == 2


def test_a_reply_with_an_etag_the_cache_cannot_keep_is_served_uncached(
        service, instance, nova_repository, caplog):
    """A 300-character ETag does not fit the cache's column: the GET
    answers, with a warning, on every backend alike (SQLite stored it,
    PostgreSQL and MariaDB failed the INSERT)."""
    service.headers = {"Cache-Control": "max-age=60",
                       "ETag": '"' + "e" * 300 + '"'}
    assert [metadata_get(instance)["call"] for _ in range(2)] == [1, 2]
    assert nova_repository.get_replies(instance.uuid) == {}
    assert any("freshness.etag" in record.getMessage()
               for record in caplog.records)


def test_a_huge_max_age_is_cached_for_the_greatest_lifetime(
        service, instance, nova_repository):
    """RFC 9111 1.2.2: a delta-seconds past 2**31 counts as 2**31 (it
    overflowed Python's datetime, failing the metadata GET)."""
    service.headers = {"Cache-Control": "max-age=99999999999999, "
                                        "stale-if-error=99999999999999"}
    metadata_get(instance)
    metadata_get(instance)
    assert service.calls == 1
    reply = nova_repository.get_replies(instance.uuid)["cached"]
    assert reply.fresh_until == T0 + datetime.timedelta(seconds=2**31)
    assert reply.stale_until == T0 + datetime.timedelta(seconds=2**32)


def test_concurrent_misses_in_one_process_make_one_call(service, instance):
    service.headers = {"Cache-Control": "max-age=60"}
    service.hold = threading.Event()
    answers = []
    threads = [threading.Thread(
        target=lambda: answers.append(metadata_get(instance)))
        for _ in range(6)]
    for thread in threads:
        thread.start()
    assert service.received.wait(TIMEOUT)
    # Every thread is in, waiting for the one call's reply.
    driver = vendordata.DynamicVendorData(instance=instance)
    key = (instance.uuid, "cached",
           vendordata.request_digest(service.url, driver.body()))
    for _ in range(TIMEOUT * 100):
        if flights.callers(key) == len(threads):
            break
        threading.Event().wait(0.01)
    service.hold.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert service.calls == 1
    assert answers == [{"call": 1, "padding": ""}] * len(threads)


def test_the_cached_get_is_one_statement_and_no_call(
        service, instance, count_statements):
    service.headers = {"Cache-Control": "max-age=60"}
    metadata_get(instance)
    with count_statements() as statements:
        metadata_get(instance)
    assert len(statements) == 1
    assert service.calls == 1


def test_deleting_the_stash_drops_its_cached_replies(
        service, instance, nova_repository):
    service.headers = {"Cache-Control": "max-age=60"}
    metadata_get(instance)
    nova_repository.delete_stash(instance.uuid)
    assert nova_repository.get_replies(instance.uuid) == {}


@pytest.mark.parametrize("fatal", [True, False])
@pytest.mark.parametrize("failure", ["status", "refused", "timeout",
                                     "not json"])
def test_the_create_time_failure_policy(service, instance, nova_repository,
                                        fatal, failure, caplog):
    """With config drive nova-compute builds the metadata, vendordata
    included, while it builds the instance: a service that does not
    answer 200 with JSON fails the build with an error naming the target
    when vendordata_dynamic_failure_fatal is set; else the build goes on
    with {} for that target and a warning. The stash, written earlier in
    conductor's transaction, is untouched either way."""
    conf = vendordata.cfg.CONF
    url = service.url
    if failure == "status":
        service.down = True
    elif failure == "refused":
        url = "http://127.0.0.1:1/"
    elif failure == "timeout":
        service.hold = threading.Event()
        conf.set_override("vendordata_dynamic_read_timeout", 1, group="api")
    else:
        service.headers = {"Content-Type": "text/plain"}
        service.body_padding = -1
    conf.set_override("vendordata_dynamic_targets", [f"cached@{url}"],
                      group="api")
    conf.set_override("vendordata_dynamic_failure_fatal", fatal, group="api")
    stash_before = nova_repository.get_stash(instance.uuid)
    try:
        driver = vendordata.DynamicVendorData(instance=instance)
        if fatal:
            with pytest.raises(exception.VendordataFailed,
                               match=f"service cached at {url}"):
                driver.get()
        else:
            assert driver.get() == {"cached": {}}
            assert any("Error from dynamic vendordata service cached"
                       in record.getMessage() for record in caplog.records)
    finally:
        if service.hold is not None:
            service.hold.set()
        conf.clear_override("vendordata_dynamic_read_timeout", group="api")
        conf.clear_override("vendordata_dynamic_failure_fatal", group="api")
    assert nova_repository.get_stash(instance.uuid) == stash_before
    assert nova_repository.get_replies(instance.uuid) == {}


def test_a_database_without_the_cache_table_serves_as_nova_would(
        service, instance, nova_engine, caplog, stash_table_name):
    """role_stash's schema not yet at revision 0002 (db sync forgotten):
    the metadata GET still answers, with Nova's fields and no cache, and
    says why."""
    service.headers = {"Cache-Control": "max-age=60"}

    def rename(old, new):
        # MySQL would move an unqualified new name to the default database.
        if nova_engine.dialect.name in ("mysql", "mariadb"):
            new = stash_table_name(new)
        with nova_engine.begin() as connection:
            connection.exec_driver_sql(
                f"ALTER TABLE {stash_table_name(old)} RENAME TO {new}")

    rename("role_stash_vendordata", "role_stash_vendordata_away")
    try:
        assert metadata_get(instance)["call"] == 1
        assert metadata_get(instance)["call"] == 2
    finally:
        rename("role_stash_vendordata_away", "role_stash_vendordata")
    assert any("uncached" in record.getMessage()
               for record in caplog.records)


def test_end_to_end_create_get_cache_revalidate_stale_delete(
        service, nova_context_manager, nova_repository, make_user_context,
        new_uuid, monkeypatch, network_and_flavor, service_account):
    """The whole flow, with Nova's own metadata handler running the
    drop-in: create (row and stash in one transaction), GETs served from
    the cache until expiry, revalidated with the ETag, stale while the
    service is down within stale-if-error, and the cache gone with the
    stash. The service checks Nova's headers and the service token."""
    conf = vendordata.cfg.CONF
    service_account(service.url, "service-token-42")
    conf.set_override("vendordata_providers", ["DynamicJSON"], group="api")
    conf.set_override("local_metadata_per_cell", True, group="api")
    monkeypatch.setattr(vendordata_dynamic, "DynamicVendorData",
                        vendordata.DynamicVendorData)
    monkeypatch.setattr(metadata_base.security_group_api,
                        "get_instance_security_groups",
                        lambda context, instance: [])
    seen = []
    real_post = service._server.RequestHandlerClass.do_POST

    def checking_post(handler):
        seen.append((handler.headers.get("X-Auth-Token"),
                     handler.headers.get("User-Agent")))
        real_post(handler)

    monkeypatch.setattr(service._server.RequestHandlerClass, "do_POST",
                        checking_post)
    try:
        creator = make_user_context(roles=["member", "reader"])
        instance_uuid = new_uuid()
        with nova_context_manager.writer.using(creator):
            objects.Instance(
                context=creator, uuid=instance_uuid,
                project_id=creator.project_id, user_id=creator.user_id,
                hostname="guest", system_metadata={}, metadata={},
                **network_and_flavor).create()
            nova_repository.stash_from_context(creator, instance_uuid)

        def guest_get():
            metadata = metadata_base.get_metadata_by_instance_id(
                instance_uuid, "192.0.2.10")
            return json.loads(metadata.lookup(
                "/openstack/latest/vendor_data2.json"))["cached"]

        service.headers = {"Cache-Control": "max-age=60, stale-if-error=600",
                           "ETag": '"v1"'}
        first = guest_get()
        assert [guest_get() for _ in range(4)] == [first] * 4
        assert service.calls == 1
        advance(61)
        assert guest_get() == first  # revalidated: a 304
        assert service.conditional == [None, '"v1"']
        service.down = True
        advance(61)
        assert guest_get() == first  # stale, within stale-if-error
        assert service.calls == 3
        assert seen == [("service-token-42", "openstack-nova-vendordata")] * 3
        nova_repository.delete_stash(instance_uuid)
        assert nova_repository.get_replies(instance_uuid) == {}
    finally:
        conf.clear_override("vendordata_providers", group="api")
        conf.clear_override("local_metadata_per_cell", group="api")
