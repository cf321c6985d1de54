"""The vendordata drop-in against services that misbehave: a real HTTP
server on 127.0.0.1, in a thread, that redirects, drips, hangs, floods,
sends a gzip bomb, an empty or unreadable body. Whatever it does, a
metadata worker is held no longer than the configured timeouts, gets the
failure policy's answer, sends its token nowhere else, and caches nothing
it should not. Each timed test bounds a hang (the deadline plus a generous
margin); none is a speed target."""

import datetime
import http.server
import json
import logging
import subprocess
import threading
import time
import tracemalloc
import zlib

from nova import objects
from oslo_utils import timeutils
import pytest

from role_stash import exception
from role_stash.conf import vendordata as conf_vendordata
from role_stash.nova import vendordata

CONF = vendordata.cfg.CONF
CONNECT_TIMEOUT = 3  # the option's least
READ_TIMEOUT = 1
DEADLINE = CONNECT_TIMEOUT + READ_TIMEOUT
# Far above any scheduling delay on a loaded machine, far below a hang.
MARGIN = 4
DRIP_SECONDS = 0.5  # under the read timeout: each read gets its byte
BIG_BODY = 64 * 1024 * 1024
T0 = datetime.datetime(2026, 11, 27, 12, 0, 0)
SECRET = "enrol-password-s3cret"
TOKEN = "service-token-5678"

def _gzip_bomb():
    """gzip of zeros: a little on the wire, BIG_BODY decoded."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(bytes(BIG_BODY)) + compressor.flush()


GZIP_BOMB = _gzip_bomb()


class Misbehaving:
    """An HTTP server on host, port chosen, in a thread: each POST is
    answered by behaviour(handler, server); it records the headers and
    bodies it received, and the bytes it managed to send. close() stops
    every behaviour at once."""

    def __init__(self, host="127.0.0.1", tls=None):
        self.behaviour = answer_json({"ok": 1})
        self.requests = []
        self.sent = 0
        self.stop = threading.Event()
        self.calls = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get(
                    "Content-Length", 0)))
                server.calls += 1
                server.requests.append((dict(self.headers), body))
                try:
                    server.behaviour(self, server)
                except OSError:
                    pass  # the client went away: what a cut call does
                self.close_connection = True

            do_GET = do_POST  # keystoneauth1's discovery of a Keystone

            def write(self, data):
                self.wfile.write(data)
                server.sent += len(data)

            def log_message(self, format, *args):
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket,
                                                  server_side=True)
            scheme = "HTTPS"
        self.url = f"{scheme}://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            daemon=True)
        self._thread.start()

    def close(self):
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()


def answer(status, body=b"", headers=None):
    """A behaviour: answer status with body and headers at once."""
    def behave(handler, server):
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.write(body)
    return behave


def answer_json(value, headers=None):
    return answer(200, json.dumps(value).encode(),
                  {"Content-Type": "application/json", **(headers or {})})


def drip_body(handler, server):
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.write(b"[")
    while not server.stop.wait(DRIP_SECONDS):
        handler.write(b" ")


def drip_headers(handler, server):
    handler.write(b"HTTP/1.1 200 OK\r\n")
    while not server.stop.wait(DRIP_SECONDS):
        handler.write(b"X")


def hang(handler, server):
    server.stop.wait()


def big_body(handler, server):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(BIG_BODY))
    handler.end_headers()
    chunk = b" " * (1024 * 1024)
    for _ in range(BIG_BODY // len(chunk)):
        handler.write(chunk)


def deep_json(depth=100000):
    return answer(200, b"[" * depth + b"]" * depth,
                  {"Content-Type": "application/json"})


@pytest.fixture
def services(monkeypatch):
    """services(host=..., tls=...): a Misbehaving server, configured as the
    one dynamic vendordata target "svc" (the first one), with the test's
    short timeouts; every server stopped after the test."""
    started = []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,127.0.0.2")
    monkeypatch.setenv("no_proxy", "127.0.0.1,127.0.0.2")
    conf_vendordata.register_options(CONF)
    CONF.set_override("vendordata_dynamic_connect_timeout", CONNECT_TIMEOUT,
                      group="api")
    CONF.set_override("vendordata_dynamic_read_timeout", READ_TIMEOUT,
                      group="api")
    timeutils.set_time_override(T0)

    def start(host="127.0.0.1", tls=None):
        server = Misbehaving(host, tls)
        if not started:
            CONF.set_override("vendordata_dynamic_targets",
                              [f"svc@{server.url}"], group="api")
        started.append(server)
        return server

    try:
        yield start
    finally:
        timeutils.clear_time_override()
        for name in ("vendordata_dynamic_targets",
                     "vendordata_dynamic_connect_timeout",
                     "vendordata_dynamic_read_timeout",
                     "vendordata_dynamic_failure_fatal"):
            CONF.clear_override(name, group="api")
        for server in started:
            server.close()


@pytest.fixture
def service(services):
    return services()


@pytest.fixture
def make_instance(nova_context_manager, nova_repository, make_user_context,
                  new_uuid):
    """make_instance(project_id=None, roles=...): an instance created as
    Nova does, and its stash (of project_id when given, else the
    instance's)."""

    def make(project_id=None, roles=("member",), metadata=None):
        creator = make_user_context(roles=list(roles))
        instance_uuid = new_uuid()
        with nova_context_manager.writer.using(creator):
            objects.Instance(context=creator, uuid=instance_uuid,
                             project_id=creator.project_id,
                             user_id=creator.user_id, hostname="guest",
                             user_data="I2Nsb3VkLXVzZXItZGF0YQ==",
                             system_metadata={"boot_roles": "novas-role"},
                             metadata=metadata or {}).create()
        nova_repository.stash_roles(
            instance_uuid, project_id=project_id or creator.project_id,
            user_id=creator.user_id, roles=list(roles))
        return objects.Instance.get_by_uuid(
            creator, instance_uuid, expected_attrs=["system_metadata",
                                                    "metadata"])

    return make


@pytest.fixture
def instance(make_instance):
    return make_instance()


def metadata_get(instance):
    """One metadata request, as Nova makes one per InstanceMetadata."""
    return vendordata.DynamicVendorData(instance=instance).get()["svc"]


def timed_get(instance):
    """(seconds, reply) of one metadata request."""
    started = time.monotonic()
    reply = metadata_get(instance)
    return time.monotonic() - started, reply


def everything_logged(caplog):
    return "\n".join(f"{record.getMessage()} {record.args!r} "
                     f"{record.exc_text or ''}" for record in caplog.records)


# --- One deadline, whatever the service does ---------------------------------

MISBEHAVIOURS = {
    "redirect loop": lambda server: answer(
        307, headers={"Location": server.url}),
    "dripped body": lambda server: drip_body,
    "dripped headers": lambda server: drip_headers,
    "hang": lambda server: hang,
    "big body": lambda server: big_body,
    "gzip bomb": lambda server: answer(200, GZIP_BOMB, {
        "Content-Type": "application/json", "Content-Encoding": "gzip"}),
    "empty 200": lambda server: answer(
        200, b"", {"Cache-Control": "max-age=60"}),
    "deep JSON": lambda server: deep_json(),
    # Readable by Python, but too deep for Nova to write out again.
    "JSON nested deeper than the limit": lambda server: deep_json(
        vendordata.MAX_REPLY_NESTING + 1),
    "not JSON": lambda server: answer(
        200, b"<html>proxy error</html>", {"Content-Type": "text/html"}),
    "500": lambda server: answer(500, b"{}"),
}


@pytest.mark.parametrize("misbehaviour", sorted(MISBEHAVIOURS))
def test_a_misbehaving_service_holds_a_worker_no_longer_than_the_timeouts(
        service, instance, nova_repository, misbehaviour, caplog):
    """Each call ends within connect_timeout + read_timeout (plus a
    margin), answers {} (failure not fatal) with a warning, caches
    nothing, and the service is asked once. Before, a dripped body or
    header block held the worker as long as the service went on, a loop
    of redirects made 31 requests, an empty 200 was cached, and deep JSON
    raised RecursionError out of the provider."""
    service.behaviour = MISBEHAVIOURS[misbehaviour](service)
    seconds, reply = timed_get(instance)
    assert seconds < DEADLINE + MARGIN
    assert reply == {}
    assert service.calls == 1
    assert nova_repository.get_replies(instance.uuid) == {}
    assert "Error from dynamic vendordata service svc" in everything_logged(
        caplog)
    # And again: nothing cached turns the next GET into an error.
    assert timed_get(instance)[1] == {}


@pytest.mark.parametrize("misbehaviour", ["dripped body", "empty 200",
                                          "deep JSON", "gzip bomb"])
def test_a_misbehaving_service_fails_the_request_when_failure_is_fatal(
        service, instance, misbehaviour):
    CONF.set_override("vendordata_dynamic_failure_fatal", True, group="api")
    service.behaviour = MISBEHAVIOURS[misbehaviour](service)
    started = time.monotonic()
    with pytest.raises(exception.VendordataFailed, match="service svc at"):
        metadata_get(instance)
    assert time.monotonic() - started < DEADLINE + MARGIN


def test_a_redirect_is_a_failure_and_the_token_goes_nowhere_else(
        services, instance, service_account, caplog):
    """A 302 to another address is the target's failure: the other host
    receives nothing, neither the service token nor the instance's data.
    Before, it received both, and its reply was cached as the target's."""
    service = services()
    elsewhere = services(host="127.0.0.2")
    elsewhere.behaviour = answer_json({"from": "elsewhere"},
                                      {"Cache-Control": "max-age=60"})
    service.behaviour = answer(302, headers={"Location": elsewhere.url})
    service_account(service.url, TOKEN)
    assert metadata_get(instance) == {}
    assert service.calls == 1
    assert service.requests[0][0]["X-Auth-Token"] == TOKEN
    assert elsewhere.requests == []
    assert "HTTP status 302" in everything_logged(caplog)


def test_waiters_share_the_first_calls_failure_within_the_deadline(
        service, instance):
    """Four GETs of one instance at once against a hanging service: one
    call, and every GET answered within one deadline. Before, each waiter
    made its own call in turn after the previous one failed."""
    service.behaviour = hang
    answers, seconds = [], []

    def get():
        started = time.monotonic()
        answers.append(metadata_get(instance))
        seconds.append(time.monotonic() - started)

    threads = [threading.Thread(target=get) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 10)
    assert answers == [{}] * 4
    assert max(seconds) < DEADLINE + MARGIN
    assert service.calls == 1


def test_a_big_body_is_cut_while_it_streams(service, instance):
    """A body over the cap ends the call once the cap is passed: the
    service could send only what the sockets' buffers held. Before, the
    whole body was read into memory first."""
    service.behaviour = big_body
    assert metadata_get(instance) == {}
    assert service.sent < BIG_BODY // 4


def test_a_gzip_bomb_is_cut_on_its_decoded_bytes(service, instance):
    """A gzip body of a little on the wire and much decoded: the cap
    counts decoded bytes, and decoding stops there, so the call's memory
    stays near the cap. Before, the whole decoded body was held."""
    service.behaviour = MISBEHAVIOURS["gzip bomb"](service)
    tracemalloc.start()
    try:
        assert metadata_get(instance) == {}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BIG_BODY // 4


def test_json_nested_to_the_limit_is_served(service, instance):
    service.behaviour = deep_json(vendordata.MAX_REPLY_NESTING)
    reply = metadata_get(instance)
    for _ in range(vendordata.MAX_REPLY_NESTING - 1):
        [reply] = reply
    assert reply == []


# --- Failures of parsing and of authentication: the policy, stale-if-error ---

def cache_then_fail(service, instance, failure):
    """Cache a reply with stale-if-error, let it go stale, make the next
    call fail as failure(); return (the first reply, the stale GET's)."""
    service.behaviour = answer_json(
        {"v": 1}, {"Cache-Control": "max-age=60, stale-if-error=600"})
    first = metadata_get(instance)
    timeutils.advance_time_seconds(61)
    failure()
    return first, metadata_get(instance)


@pytest.mark.parametrize("misbehaviour", ["deep JSON", "empty 200",
                                          "dripped headers"])
def test_stale_if_error_serves_when_the_reply_cannot_be_read(
        service, instance, misbehaviour):
    def failure():
        service.behaviour = MISBEHAVIOURS[misbehaviour](service)

    first, stale = cache_then_fail(service, instance, failure)
    assert stale == first == {"v": 1}


@pytest.fixture
def keystone_at():
    """keystone_at(auth_url): [vendordata_dynamic_auth] a password account
    on the Keystone at auth_url (without /v3: keystoneauth1 discovers)."""
    from keystoneauth1 import loading as ks_loading
    group = conf_vendordata.AUTH_GROUP
    CONF.register_opts(ks_loading.get_auth_plugin_conf_options("password"),
                       group)
    values = {"auth_type": "password", "username": "nova",
              "password": "keystone-pw-s3cret",
              "user_domain_name": "Default", "project_name": "service",
              "project_domain_name": "Default"}

    def configure(auth_url):
        for name, value in {**values, "auth_url": auth_url}.items():
            CONF.set_override(name, value, group=group)
        vendordata.forget_sessions()

    yield configure
    for name in (*values, "auth_url"):
        CONF.clear_override(name, group=group)
    # The password plugin's auth_url is a required option: once registered
    # it stays (oslo.config unregisters nothing after a parse), and a later
    # parse of CONF (tests/replica's) would fail on it without a value. With
    # auth_type unset again, no plugin reads it.
    CONF.set_default("auth_url", "http://127.0.0.1:1/v3", group=group)
    vendordata.forget_sessions()


@pytest.fixture
def keystone_down(keystone_at):
    """keystone_down(): the account's Keystone refuses connections
    (keystoneauth1 raises DiscoveryFailure)."""
    return lambda: keystone_at("http://127.0.0.1:1")


def test_stale_if_error_serves_when_keystone_cannot_be_discovered(
        service, instance, keystone_down, caplog):
    """keystoneauth1's DiscoveryFailure goes through the failure policy
    and stale-if-error like any failure (before, it escaped the
    provider), and Keystone's password reaches no log."""
    caplog.set_level(logging.DEBUG)
    first, stale = cache_then_fail(service, instance, keystone_down)
    assert stale == first
    assert service.calls == 1
    assert "Could not find versioned identity endpoints" in (
        everything_logged(caplog))
    assert "keystone-pw-s3cret" not in everything_logged(caplog)
    timeutils.advance_time_seconds(600)
    assert metadata_get(instance) == {}
    CONF.set_override("vendordata_dynamic_failure_fatal", True, group="api")
    with pytest.raises(exception.VendordataFailed):
        metadata_get(instance)


def test_a_keystone_that_drips_holds_a_worker_no_longer_than_the_timeouts(
        services, instance, keystone_at):
    """The service token's request to Keystone is part of the call, under
    its deadline."""
    service = services()
    keystone = services()
    keystone.behaviour = drip_headers
    keystone_at(keystone.url)
    seconds, reply = timed_get(instance)
    assert seconds < DEADLINE + MARGIN
    assert reply == {}
    assert (keystone.calls, service.calls) == (1, 0)


# --- What the cache keys on --------------------------------------------------

def cached_once(service):
    service.behaviour = lambda handler, server: answer_json(
        {"call": server.calls}, {"Cache-Control": "max-age=600"})(
            handler, server)


def test_a_replaced_stash_is_not_answered_with_the_old_roles_reply(
        service, instance, nova_repository):
    cached_once(service)
    assert metadata_get(instance) == {"call": 1}
    nova_repository.stash_roles(
        instance.uuid, project_id=instance.project_id,
        user_id=instance.user_id, roles=["member", "admin"], replace=True)
    assert nova_repository.get_replies(instance.uuid) == {}
    assert metadata_get(instance) == {"call": 2}
    assert json.loads(service.requests[-1][1])["boot-roles"] == (
        "member,admin")


def test_changed_metadata_is_not_answered_with_the_old_reply(
        service, make_instance):
    cached_once(service)
    instance = make_instance(metadata={"purpose": "web"})
    assert metadata_get(instance) == {"call": 1}
    assert metadata_get(instance) == {"call": 1}
    instance.metadata = {"purpose": "database"}
    assert metadata_get(instance) == {"call": 2}


def test_a_target_pointed_elsewhere_is_not_answered_with_the_old_reply(
        services, instance):
    first, second = services(), services()
    cached_once(first)
    second.behaviour = answer_json({"from": "second"})
    assert metadata_get(instance) == {"call": 1}
    CONF.set_override("vendordata_dynamic_targets", [f"svc@{second.url}"],
                      group="api")
    assert metadata_get(instance) == {"from": "second"}
    assert second.calls == 1


def test_vary_star_is_not_stored(service, instance, nova_repository):
    service.behaviour = answer_json({"v": 1}, {
        "Cache-Control": "max-age=600", "Vary": "*"})
    metadata_get(instance)
    metadata_get(instance)
    assert service.calls == 2
    assert nova_repository.get_replies(instance.uuid) == {}


def test_a_reply_dated_long_ago_is_as_old_as_its_date_says(
        service, instance, nova_repository):
    """RFC 9111 4.2.3: a reply whose Date is an hour before it arrived,
    max-age ten minutes, is already stale: not stored. Before, it was
    fresh for ten minutes."""
    hour_ago = (T0 - datetime.timedelta(hours=1)).strftime(
        "%a, %d %b %Y %H:%M:%S GMT")
    service.behaviour = lambda handler, server: (
        handler.send_response_only(200),
        handler.send_header("Date", hour_ago),
        handler.send_header("Cache-Control", "max-age=600"),
        handler.send_header("Content-Length", "2"),
        handler.end_headers(), handler.write(b"{}"))
    metadata_get(instance)
    metadata_get(instance)
    assert service.calls == 2
    assert nova_repository.get_replies(instance.uuid) == {}


# --- Scheme, Content-Type, project -------------------------------------------

@pytest.fixture
def tls_for_another_name(tmp_path):
    """A TLS context of a self-signed certificate for another name."""
    import ssl
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=other.example"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_an_upper_case_https_url_is_verified(services, instance,
                                            tls_for_another_name):
    """HTTPS://: the certificate is checked, whatever the scheme's case, and
    one for another name fails the call before the POST. Before, only
    https:// in lower case was verified."""
    service = services(tls=tls_for_another_name)
    assert service.url.startswith("HTTPS://")
    assert metadata_get(instance) == {}
    assert service.requests == []


def test_utf8_json_is_read_as_utf8_whatever_charset_it_names(
        service, instance, nova_repository):
    """RFC 8259: JSON between systems is UTF-8; a charset parameter changes
    nothing. Before, a reply naming Latin-1 was decoded so, and cached."""
    service.behaviour = answer(
        200, json.dumps({"name": "Zoë"}, ensure_ascii=False).encode(),
        {"Content-Type": "application/json; charset=iso-8859-1",
         "Cache-Control": "max-age=60"})
    assert metadata_get(instance) == {"name": "Zoë"}
    assert json.loads(nova_repository.get_replies(instance.uuid)["svc"]
                      .body) == {"name": "Zoë"}


def test_a_reply_of_another_media_type_is_a_failure(service, instance,
                                                     nova_repository):
    """text/plain is not JSON: before, such a reply was decoded as
    Latin-1 (Zoë became ZoÃ«) and cached."""
    service.behaviour = answer(
        200, json.dumps({"name": "Zoë"}, ensure_ascii=False).encode(),
        {"Content-Type": "text/plain", "Cache-Control": "max-age=60"})
    assert metadata_get(instance) == {}
    assert nova_repository.get_replies(instance.uuid) == {}


def test_a_stash_of_another_project_is_not_sent_as_the_instances(
        service, make_instance, caplog):
    """The instance's project is checked against the stash's: a stash of
    another project is not the instance's, and the service gets Nova's
    own fields. Before, the other project went out as the instance's."""
    caplog.set_level(logging.INFO)
    instance = make_instance(project_id="another-project",
                             roles=["admin"])
    metadata_get(instance)
    sent = json.loads(service.requests[-1][1])
    assert (sent["project-id"], sent["boot-roles"]) == (
        instance.project_id, "novas-role")
    assert "has no role stash of its project" in everything_logged(caplog)


# --- Secrets -----------------------------------------------------------------

def test_a_no_store_json_secret_and_the_token_reach_no_log(
        service, instance, service_account, caplog):
    """Every logger at DEBUG, a JSON reply (keystoneauth1 logs JSON bodies)
    marked no-store holding a secret: neither it, nor the token, nor the
    instance's user-data is logged. Before, keystoneauth1 logged the body
    (RESP BODY)."""
    caplog.set_level(logging.DEBUG)
    service_account(service.url, TOKEN)
    service.behaviour = answer_json({"enrol-password": SECRET},
                                    {"Cache-Control": "no-store"})
    assert metadata_get(instance) == {"enrol-password": SECRET}
    logged = everything_logged(caplog)
    for secret in (SECRET, TOKEN, instance.user_data):
        assert secret not in logged
