"""A controllable HTTP/1.1 upstream for resilience tests (standard library only).

Behaviour is set at start (command-line flags) or at run time with
``GET /__control?fail_every=3&status=503&delay_ms=50&hang=0&reset=0`` (parameters
not given keep their value); ``GET /__stats`` returns the counts as JSON and
``GET /__stats?clear=1`` also zeroes them. Control paths are not counted.

  fail_every=N   every Nth request (a shared counter) answers ``status``; 1 = all, 0 = none
  delay_ms=D     sleep D ms before answering
  hang=1         never answer (hold the connection until the client goes)
  reset=1        close the connection without answering
  retry_after=S  add ``retry-after: S`` to failed responses

``GET /stall`` sends half of a 10-byte body, waits 2 s, then sends the rest.

Every response carries ``x-served-by: <name>``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_LOCK = threading.Lock()
STATE: dict[str, float] = {
    "fail_every": 0, "status": 503, "delay_ms": 0, "hang": 0, "reset": 0, "retry_after": -1,
}  # fmt: skip
COUNTS = {"requests": 0, "failed": 0, "methods": {}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "flaky"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without this, Nagle + delayed ACK add ~40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", self.name)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _control(self, query: dict[str, list[str]]) -> None:
        with _LOCK:
            for key, values in query.items():
                if key in STATE:
                    STATE[key] = float(values[0])
            body = json.dumps({"state": STATE, **COUNTS}).encode()
            if query.get("clear"):
                COUNTS.update(requests=0, failed=0, methods={})
        self._send(200, body)

    def _any(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/__control", "/__stats"):
            self._control(parse_qs(url.query))
            return
        if url.path == "/stall":  # half a body, a 2 s pause, the other half
            self.send_response(200)
            self.send_header("content-length", "10")
            self.end_headers()
            self.wfile.write(b"01234")
            self.wfile.flush()
            time.sleep(2)
            self.wfile.write(b"56789")
            return
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        with _LOCK:
            COUNTS["requests"] += 1  # type: ignore[operator]
            methods = COUNTS["methods"]
            assert isinstance(methods, dict)
            methods[self.command] = methods.get(self.command, 0) + 1
            every = int(STATE["fail_every"])
            fail = every > 0 and COUNTS["requests"] % every == 0  # type: ignore[operator]
            if fail:
                COUNTS["failed"] += 1  # type: ignore[operator]
            state = dict(STATE)
        if state["delay_ms"]:
            time.sleep(state["delay_ms"] / 1000)
        if state["hang"]:
            time.sleep(3600)
        if state["reset"]:
            self.close_connection = True
            self.connection.close()
            return
        if fail:
            extra = (
                {"retry-after": str(int(state["retry_after"]))}
                if state["retry_after"] >= 0
                else None
            )
            self._send(int(state["status"]), b'{"failed": true}', extra)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._send(
            200,
            json.dumps(
                {"server": self.name, "headers": headers, "body": body.decode("latin-1")}
            ).encode(),
        )

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="flaky")
    for key in STATE:
        ap.add_argument(f"--{key.replace('_', '-')}", type=float, default=None)
    args = ap.parse_args()
    Handler.name = args.name
    for key in STATE:
        value = getattr(args, key)
        if value is not None:
            STATE[key] = value
    ThreadingHTTPServer.request_queue_size = 512  # socketserver's 5 refuses load tests
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
