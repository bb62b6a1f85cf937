"""An app that forwards the trace headers, as apps in a traced mesh must.

``GET /call`` calls ``--next`` (a sidecar's egress port) with the trace headers of
the request it serves (W3C and B3), and answers with its own name and the next
hop's answer; without ``--next`` it answers with the trace headers it received.
The standard library's HTTP server, independent of plait's codecs.
"""

from __future__ import annotations

import argparse
import http.client
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    name = "app"
    next_port = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        seen = {h: v for h in TRACE_HEADERS if (v := self.headers.get(h)) is not None}
        reply: dict[str, object] = {"name": self.name, "seen": seen}
        if self.next_port:
            conn = http.client.HTTPConnection("127.0.0.1", self.next_port, timeout=10)
            conn.request("GET", self.path, headers=seen)
            resp = conn.getresponse()
            reply["next"] = json.loads(resp.read() or b"null")
            reply["next_status"] = resp.status
            conn.close()
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="app")
    ap.add_argument("--next", type=int, default=0)
    args = ap.parse_args()
    Handler.name = args.name
    Handler.next_port = args.next
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
