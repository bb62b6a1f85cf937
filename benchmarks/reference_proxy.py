"""The reference target: the CPython limit of a featureless HTTP/1.1 reverse proxy.

    python -m benchmarks.reference_proxy --listen 127.0.0.1:8080 --upstream 127.0.0.1:8081

uvloop, asyncio Protocols (callbacks, no streams), httptools parsing both legs and
a LIFO pool of keep-alive upstream connections; no filters, routing, metrics or
timeouts. What plait spends beyond this per request is the price of its features:
the harness reports plait/reference next to plait/nginx.

Framing: a body with Content-Length is relayed as it comes; a chunked body, or a
response delimited by the upstream's close, is relayed chunked (with its trailers);
a response to HEAD and a 1xx, 204 or 304 has none. Pipelined requests wait their
turn with reading paused. An upstream that cannot be reached or fails before
its response head gets the client a 502; a peer that breaks framing loses its
connection. Each side's write buffer pauses reading on the other side.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools
import uvloop

HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade"}
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _Done(Exception):
    """Raised in a parser callback: the rest of this connection's bytes are not parsed."""


def _fields(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(n + b": " + v + b"\r\n" for n, v in headers if n.lower() not in HOP)


def _has(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(n.lower() == name for n, _ in headers)


@dataclass(slots=True)
class _Request:
    out: bytearray  # sent once an upstream connection serves this request
    chunked: bool
    head_only: bool
    keep_alive: bool
    complete: bool = False


class Pool:
    """Idle keep-alive connections to one upstream, most recently used first."""

    def __init__(self, host: str, port: int, tasks: asyncio.TaskGroup) -> None:
        self.host, self.port, self.tasks = host, port, tasks
        self.idle: list[Upstream] = []

    def acquire(self, down: Downstream) -> None:
        while self.idle:
            up = self.idle.pop()
            if not up.transport.is_closing():
                down.attach(up)
                return
        self.tasks.create_task(self._connect(down))

    async def _connect(self, down: Downstream) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(lambda: Upstream(self), self.host, self.port)
        except OSError:
            down.fail(started=False)
            return
        down.attach(up)


class Downstream(asyncio.Protocol):
    """One client connection: parses its requests and relays them in order."""

    transport: asyncio.Transport

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.requests: deque[_Request] = deque()
        self.up: Upstream | None = None  # serving requests[0]
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # also an Upgrade or CONNECT: not relayed
            if not self.requests:
                self.transport.write(BAD_REQUEST)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.down = None
            self.up.transport.close()  # its response is unread: not reusable
            self.up = None

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.transport.resume_reading()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        chunked = _has(self.headers, b"transfer-encoding")  # llhttp admits only chunked
        head = method + b" " + self.url + b" HTTP/1.1\r\n" + _fields(self.headers)
        head += b"transfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n"
        self.headers = []  # trailers, if any, collect here
        keep_alive = self.parser.should_keep_alive()
        self.requests.append(_Request(bytearray(head), chunked, method == b"HEAD", keep_alive))
        if len(self.requests) == 1:
            self.pool.acquire(self)
        else:
            self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        req = self.requests[-1]
        self.send(req, b"%x\r\n%b\r\n" % (len(body), body) if req.chunked else body)

    def on_message_complete(self) -> None:
        req = self.requests[-1]
        if req.chunked:
            self.send(req, b"0\r\n" + _fields(self.headers) + b"\r\n")
        req.complete = True

    def send(self, req: _Request, data: bytes) -> None:
        if self.up is not None and req is self.requests[0]:
            self.up.transport.write(data)
        else:
            req.out += data

    def attach(self, up: Upstream) -> None:
        if self.transport.is_closing():
            self.pool.idle.append(up)
            return
        self.up, up.down, up.client = up, self, self.transport
        up.transport.write(self.requests[0].out)

    def response_done(self, reusable: bool) -> None:
        up, self.up = cast(Upstream, self.up), None
        req = self.requests.popleft()
        if reusable and req.complete:
            self.pool.idle.append(up)
        else:
            up.transport.close()
        if not (req.keep_alive and req.complete):  # the rest of an early-answered body is unread
            self.transport.close()
        elif self.requests:
            self.transport.resume_reading()
            self.pool.acquire(self)

    def fail(self, started: bool) -> None:
        self.up = None
        if not started and not self.transport.is_closing():
            self.transport.write(BAD_GATEWAY)
        self.transport.close()


class Upstream(asyncio.Protocol):
    """One pooled connection to the upstream: parses responses and relays them to ``down``."""

    transport: asyncio.Transport
    client: asyncio.Transport

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.down: Downstream | None = None
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.chunked = False  # the body goes to the client chunked
        self.to_eof = False  # the upstream's close ends the body
        self.out = b""  # for the client, written once per read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()
        if self.out:
            self.client.write(self.out)
            self.out = b""

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool.idle:
            self.pool.idle.remove(self)
        if self.down is not None and self.to_eof:
            self.out += b"0\r\n\r\n"
            self.done(reusable=False)
        elif self.down is not None:
            down, self.down = self.down, None
            down.fail(started=self.status != 0)

    def pause_writing(self) -> None:
        if self.down is not None:
            self.client.pause_reading()

    def resume_writing(self) -> None:
        if self.down is not None:
            self.client.resume_reading()

    def on_message_begin(self) -> None:
        self.reason = b""
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.down is None:
            raise _Done  # an answer nobody asked for
        req = self.down.requests[0]
        status = self.status = self.parser.get_status_code()
        bodyless = req.head_only or status < 200 or status in (204, 304)
        length = _has(self.headers, b"content-length")
        self.chunked = not bodyless and not length
        self.to_eof = self.chunked and not _has(self.headers, b"transfer-encoding")
        head = b"HTTP/1.1 %d %b\r\n" % (status, self.reason) + _fields(self.headers)
        if self.chunked:
            head += b"transfer-encoding: chunked\r\n"
        if not req.keep_alive and status >= 200:
            head += b"connection: close\r\n"
        self.out += head + b"\r\n"
        self.headers = []  # trailers, if any, collect here
        if req.head_only:  # llhttp cannot be told a HEAD answer has no body: not reusable
            self.done(reusable=False)
            raise _Done

    def on_body(self, body: bytes) -> None:
        self.out += b"%x\r\n%b\r\n" % (len(body), body) if self.chunked else body

    def on_message_complete(self) -> None:
        if self.status < 200:
            self.status = 0  # an interim answer: the final one follows
            return
        if self.chunked:
            self.out += b"0\r\n" + _fields(self.headers) + b"\r\n"
        self.done(reusable=self.parser.should_keep_alive())

    def done(self, reusable: bool) -> None:
        """The response is complete: its bytes go out, then the client and this connection
        go on (or close)."""
        self.client.write(self.out)
        down, self.down = self.down, None
        self.status, self.to_eof, self.out = 0, False, b""
        if down is not None:
            down.response_done(reusable)


async def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as tasks:
        pool = Pool(upstream[0], upstream[1], tasks)
        server = await loop.create_server(lambda: Downstream(pool), *listen, backlog=4096)
        async with server:
            await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reference_proxy", description=__doc__)
    p.add_argument("--listen", type=_address, default=("127.0.0.1", 8080), help="HOST:PORT")
    p.add_argument("--upstream", type=_address, required=True, help="HOST:PORT")
    args = p.parse_args(argv)
    uvloop.run(serve(args.listen, args.upstream))


if __name__ == "__main__":
    main()
