"""A real HTTP/1.1 upstream for tests: the standard library's threading HTTP server.

Independent of plait's codecs on purpose. Paths:
  /status/N       answer N
  /delay/S        sleep S seconds, then 200
  /stream/N       a chunked response of N chunks
  /big/N          N bytes of body
  anything else   200 with a JSON echo of method, path, headers and body
Every response carries ``x-served-by: <name>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo"
    # Headers and body go out in separate writes: without TCP_NODELAY the second waits
    # for the client's delayed ACK (~40 ms per request with http.client).
    disable_nagle_algorithm = True
    name = "echo"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", self.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _any(self) -> None:
        body = self._body()
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "status" and len(parts) > 1:
            self._send(int(parts[1]), f"status {parts[1]}\n".encode(), "text/plain")
            return
        if parts[0] == "delay" and len(parts) > 1:
            time.sleep(float(parts[1]))
        if parts[0] == "big" and len(parts) > 1:
            self._send(200, b"x" * int(parts[1]), "application/octet-stream")
            return
        if parts[0] == "stream" and len(parts) > 1:
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-served-by", self.name)
            self.end_headers()
            for i in range(int(parts[1])):
                chunk = f"chunk {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        echo = {
            "server": self.name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("latin-1"),
        }
        self._send(200, json.dumps(echo).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="echo")
    args = ap.parse_args()
    Handler.name = args.name
    ThreadingHTTPServer.request_queue_size = 512  # socketserver's 5 refuses load tests
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
