"""The metadata GET with dynamic vendordata: served from role_stash's
response cache (one statement, no HTTP call) against the same GET with no
cache (a POST to a local service on 127.0.0.1 every time), in one run."""

import http.server
import json
import threading
import types
import uuid

from oslo_config import cfg

from benchmarks import harness
from role_stash.conf import vendordata as conf_vendordata
from role_stash.db import api
from role_stash.db import engines
from role_stash.nova import vendordata

# The service's answer for each side: cached for an hour, or never.
CACHE_CONTROL = {"cached": "max-age=3600", "uncached": "no-store"}


class LocalService:
    """A vendordata service on 127.0.0.1: answers {} with the side's
    Cache-Control, and counts the POSTs of each side."""

    def __init__(self):
        self.calls = dict.fromkeys(CACHE_CONTROL, 0)
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real service
            # Headers and body leave in two writes: without this, Nagle's
            # algorithm holds the body for the client's delayed ACK.
            disable_nagle_algorithm = True

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                side = self.path.strip("/")
                service.calls[side] += 1
                body = json.dumps({"side": side}).encode()
                self.send_response(200)
                self.send_header("Cache-Control", CACHE_CONTROL[side])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                       Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def _driver_for(side, service):
    """The drop-in's class for a side: its own configuration, one target."""
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[])
    conf_vendordata.register_options(conf)
    conf.set_override("vendordata_dynamic_targets",
                      [f"{side}@{service.url}{side}"], group="api")
    return type(f"{side.title()}VendorData", (vendordata.DynamicVendorData,),
                {"conf": conf})


def run(database, calls):
    """Time the cached and the uncached GET on database's first driver;
    return (records, notes)."""
    driver = database.drivers[0]
    url = database.url_for(driver).render_as_string(hide_password=False)
    context_manager = engines.context_manager_from_url(url)
    repository = api.StashRepository(context_manager)
    service = LocalService()
    try:
        context = types.SimpleNamespace(db_connection=context_manager)
        instances = {}
        for side in CACHE_CONTROL:
            instance_uuid = str(uuid.uuid4())
            repository.stash_roles(instance_uuid, project_id="project-v",
                                   user_id="user-v", roles=["member"])
            instances[side] = types.SimpleNamespace(
                uuid=instance_uuid, project_id="project-v", image_ref=None,
                user_data=None, hostname="guest", metadata={},
                system_metadata={}, _context=context)
        sides = []
        for side, instance in instances.items():
            driver_class = _driver_for(side, service)
            sides.append(harness.Side(
                side, lambda _, cls=driver_class, inst=instance: (
                    cls(instance=inst).get()), list(range(calls))))
        warmup = max(1, calls // 10)
        harness.progress(f"{database.backend.name}: vendordata GET, "
                         f"cached and uncached, {calls} calls each")
        before = dict(service.calls)
        harness.interleave(sides, warmup)
        cached, uncached = sides
        timed = calls - warmup
        http_calls = {side: service.calls[side] - before[side]
                      for side in CACHE_CONTROL}
        record = {"backend": database.backend.name, "driver": driver.name,
                  "raw_driver": "uncached", "operation": "vendordata_get",
                  "rows": database.populated,
                  **harness.comparison(cached.times_ns, uncached.times_ns),
                  "http_calls": http_calls["cached"],
                  "raw_http_calls": http_calls["uncached"]}
        note = (f"{database.backend.name}: vendordata GET over {timed} timed "
                f"calls: cached p50 {record['p50_us']} µs with "
                f"{http_calls['cached']} HTTP calls, uncached "
                f"{record['raw_p50_us']} µs with {http_calls['uncached']} "
                f"(ratio {record['ratio_p50']})")
        return [record], [note]
    finally:
        service.close()
        repository.close()
        context_manager.dispose_pool()
