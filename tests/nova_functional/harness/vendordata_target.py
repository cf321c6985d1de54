"""A dynamic vendordata service for Nova's functional harness, run as a
process of its own (the harness is eventlet-patched: a server on a thread
of the test process would hang it).

    python vendordata_target.py STATUS MAX_AGE

Prints its port, then answers each POST with STATUS and, for 200, a JSON
body echoing the request's boot-roles and project-id, with
`Cache-Control: max-age=MAX_AGE`. GET /calls returns every POST it got:
its JSON body and its X-Auth-Token. It stops when its standard input
closes.
"""

import http.server
import json
import sys
import threading


def main(status, max_age):
    calls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(
                int(self.headers["Content-Length"])))
            calls.append({"body": body,
                          "token": self.headers.get("X-Auth-Token")})
            reply = json.dumps({"boot-roles": body["boot-roles"],
                                "project-id": body["project-id"]})
            self._answer(status, reply,
                         {"Cache-Control": f"max-age={max_age}"})

        def do_GET(self):
            self._answer(200, json.dumps(calls), {})

        def _answer(self, code, text, headers):
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
