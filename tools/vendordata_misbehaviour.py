"""Time the vendordata drop-in against services that misbehave, and take
the peak memory of each call: the figures behind the drop-in's safety.

    python tools/vendordata_misbehaviour.py [--limit SECONDS] [NAME ...]

Each misbehaviour runs in two fresh processes: the service (an HTTP server
on 127.0.0.1) and the client (the drop-in, with Nova's default timeouts,
connect 5 s and read 5 s, on a SQLite file), so the client's peak RSS is
its own. The client is killed after --limit seconds (default 150). Prints
one line per misbehaviour: the longest call in seconds, the calls the
service received, the client's peak RSS in MiB, and what the GETs
answered (four at once of a service that hangs, two in turn of an empty
200).
Run it with PYTHONPATH naming a checkout to measure that checkout's code.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

SERVER = textwrap.dedent('''
    import http.server, sys, threading, time, zlib
    kind = sys.argv[1]
    calls = 0
    if kind == "gzip bomb":
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        bomb = b"".join(compressor.compress(bytes(1 << 20))
                        for _ in range(1024)) + compressor.flush()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            global calls
            calls += 1
            sys.stderr.write(f"call {calls}\\n")
            sys.stderr.flush()
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            w = self.wfile.write
            if kind == "dripped body":
                self.send_response(200)
                self.send_header("Content-Length", "27")
                self.end_headers()
                for byte in b'{"drip": "' + b"x" * 15 + b'"}':
                    time.sleep(3)
                    w(bytes([byte]))
            elif kind == "dripped headers":
                w(b"HTTP/1.1 200 OK\\r\\n")
                for byte in b"X-Drip: " + b"x" * 89 + b"\\r\\n\\r\\n":
                    time.sleep(3)
                    w(bytes([byte]))
            elif kind == "redirect hops":
                time.sleep(4)
                self.send_response(307)
                self.send_header("Location", "http://127.0.0.1:%d/"
                                 % self.server.server_address[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif kind == "hang":
                time.sleep(3600)
            elif kind == "big body":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(512 << 20))
                self.end_headers()
                w(b'"')
                chunk = b"x" * (1 << 20)
                for _ in range(511):
                    w(chunk)
                w(b"x" * ((1 << 20) - 2) + b'"')
            elif kind == "gzip bomb":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(bomb)))
                self.end_headers()
                w(bomb)
            elif kind == "deep JSON":
                body = b"[" * 100000 + b"]" * 100000
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                w(body)
            elif kind == "empty 200":
                self.send_response(200)
                self.send_header("Cache-Control", "max-age=60")
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
''')

CLIENT = textwrap.dedent('''
    import json, resource, sys, threading, time, types, uuid
    import sqlalchemy as sa
    from role_stash.db import api, engines, migration
    from role_stash.nova import vendordata

    url, database = sys.argv[1], sys.argv[2]
    concurrent, rounds = int(sys.argv[3]), int(sys.argv[4])
    engine = sa.create_engine(database)
    with engine.begin() as connection:
        migration.upgrade(connection)
    context_manager = engines.context_manager_from_url(database)
    repository = api.StashRepository(context_manager)
    instance_uuid = str(uuid.uuid4())
    repository.stash_roles(instance_uuid, project_id="p", user_id="u",
                           roles=["member"])
    instance = types.SimpleNamespace(
        uuid=instance_uuid, project_id="p", image_ref="i", user_data=None,
        hostname="guest", metadata={}, system_metadata={},
        _context=types.SimpleNamespace(db_connection=context_manager))
    conf = vendordata.cfg.CONF
    conf([], project="nova", default_config_files=[])
    vendordata.conf_vendordata.register_options(conf)
    conf.set_override("vendordata_dynamic_targets", [f"svc@{url}"],
                      group="api")
    results = []

    def get():
        started = time.monotonic()
        try:
            answer = repr(vendordata.DynamicVendorData(instance).get())[:60]
        except BaseException as error:
            answer = f"raised {type(error).__name__}"
        results.append((time.monotonic() - started, answer))

    for _ in range(rounds):
        threads = [threading.Thread(target=get) for _ in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": max(s for s, _ in results),
                      "answers": sorted({a for _, a in results}),
                      "peak_mib": peak}))
''')

KINDS = ("dripped body", "dripped headers", "redirect hops", "hang",
         "big body", "gzip bomb", "deep JSON", "empty 200")


def measure(kind, limit):
    """Return the figures of one misbehaviour, as a dict."""
    server = subprocess.Popen([sys.executable, "-c", SERVER, kind],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as folder:
            database = f"sqlite:///{folder}/role_stash.sqlite"
            # Four GETs at once of a hanging service; two in turn of an
            # empty 200 (the second read what the first cached).
            concurrent = 4 if kind == "hang" else 1
            rounds = 2 if kind == "empty 200" else 1
            started = time.monotonic()
            try:
                client = subprocess.run(
                    [sys.executable, "-c", CLIENT,
                     f"http://127.0.0.1:{port}/", database, str(concurrent),
                     str(rounds)],
                    capture_output=True, text=True, timeout=limit,
                    cwd=folder,  # role_stash from PYTHONPATH, not from here
                    env={**os.environ, "NO_PROXY": "127.0.0.1"})
                figures = (json.loads(client.stdout.splitlines()[-1])
                           if client.returncode == 0 and client.stdout
                           else {"error": client.stderr[-300:]})
            except subprocess.TimeoutExpired:
                figures = {"seconds": f">{limit} (killed)",
                           "elapsed": time.monotonic() - started}
    finally:
        server.kill()
        _, errors = server.communicate()
    figures["service_calls"] = sum(
        line.startswith("call ") for line in errors.splitlines())
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=150)
    parser.add_argument("kinds", nargs="*", default=KINDS)
    arguments = parser.parse_args()
    for kind in arguments.kinds:
        print(f"{kind}: {json.dumps(measure(kind, arguments.limit))}",
              flush=True)


if __name__ == "__main__":
    main()
