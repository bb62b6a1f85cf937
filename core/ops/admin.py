"""The sidecar admin API (default 127.0.0.1:15000).

``GET /ready`` (200 once listeners are bound and a config is active; 503 while
draining), ``GET /metrics`` (Prometheus text), ``GET /config_dump`` (the active
snapshot as JSON, with the last rejected config's error), ``GET /certs`` (the mesh
identity: leaf, chain, trust bundle, renewals; JSON), ``POST /quitquitquit``
(graceful drain, as Istio's pilot-agent), ``GET /stats.json`` (the raw counters,
which a ``--workers`` supervisor sums), ``GET /tap?path=P&status=S&max=N`` (a live
stream of request metadata as JSON lines, chunked, until the client leaves or ``max``
records went out; ``_tap.py``). Low traffic and not on the data path, so
it is plain anyio streams with the strict h11 codec; :func:`serve_http` serves
TCP or a unix socket (workers' private admin).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import h11
from anyio.abc import ByteStream, Listener, TaskStatus

from ..identity.status import certs_report
from ..metrics import Stats
from ..runtime import Runtime
from ._tap import tap_stream

__all__ = ["Reply", "SidecarAdmin", "StreamReply", "metrics_text", "serve_http"]

log = logging.getLogger(__name__)
MAX_REQUEST = 64 * 1024
STREAM_SNDBUF = 128 * 1024
"""The kernel's send buffer for a streamed reply (a tap): fixed, not grown by autotuning, so
a client that stops reading holds at most this much of the sidecar's memory in the kernel."""
Reply = tuple[int, str, bytes]


Send = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamReply:
    """A 200 whose body ``run(send)`` sends chunk by chunk; cancelled when the client goes."""

    content_type: str
    run: Callable[[Send], Awaitable[None]]


Handler = Callable[[str, str], Awaitable[Reply | StreamReply]]
NOT_FOUND: Reply = (
    404,
    "text/plain",
    b"not found: try /ready /metrics /config_dump /certs /tap /quitquitquit\n",
)


def json_reply(data: object) -> Reply:
    body = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
    return 200, "application/json", body + b"\n"


def metrics_text(stats: Stats) -> bytes:
    return stats.render()


class SidecarAdmin:
    """The routes of one sidecar process."""

    def __init__(
        self,
        runtime: Runtime,
        dump: Callable[[], dict[str, Any]],
        on_quit: Callable[[], None],
        is_ready: Callable[[], bool],
    ) -> None:
        self.runtime = runtime
        self.dump = dump
        self.on_quit = on_quit
        self.is_ready = is_ready

    async def __call__(self, method: str, target: str) -> Reply | StreamReply:
        path, _, query = target.partition("?")
        if path == "/tap":
            try:
                run = tap_stream(self.runtime.taps, query)
            except ValueError as exc:
                return 400, "text/plain", f"{exc}\n".encode()
            return StreamReply("application/x-ndjson", run)
        if path == "/ready":
            if self.runtime.draining:
                return 503, "text/plain", b"draining\n"
            if not self.is_ready():
                return 503, "text/plain", b"starting\n"
            return 200, "text/plain", b"ready\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", metrics_text(self.runtime.stats)
        if path == "/stats.json":
            return json_reply(self.runtime.stats.to_json())
        if path == "/config_dump":
            return json_reply(self.dump())
        if path == "/certs":
            return json_reply(certs_report(self.runtime.identity))
        if path == "/quitquitquit":
            if method != "POST":
                return 405, "text/plain", b"use POST\n"
            self.on_quit()
            return 200, "text/plain", b"draining\n"
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        return NOT_FOUND


async def _serve_one(handler: Handler, stream: ByteStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
    async with stream:
        while True:
            try:
                request = await _read_request(stream, conn)
            except (h11.RemoteProtocolError, anyio.EndOfStream, anyio.BrokenResourceError):
                return
            if request is None:
                return
            reply = await handler(request.method.decode(), request.target.decode())
            if isinstance(reply, StreamReply):
                await _stream(conn, stream, reply)
                return
            status, ctype, body = reply
            headers = [("content-type", ctype), ("content-length", str(len(body)))]
            data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
            data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            await stream.send(data)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()


async def _stream(conn: h11.Connection, stream: ByteStream, reply: StreamReply) -> None:
    """Send ``reply`` chunked until it ends or the client closes (read in a second task)."""
    head = h11.Response(status_code=200, headers=[("content-type", reply.content_type)])
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if sock is not None:  # a slow reader backs up into the stream's own bounded queue
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
    try:
        await stream.send(conn.send(head) or b"")
        async with anyio.create_task_group() as tg:

            async def watch_close() -> None:
                try:
                    while await stream.receive():
                        pass  # a client sends nothing more; anything is ignored
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    pass
                tg.cancel_scope.cancel()

            async def send(chunk: bytes) -> None:
                await stream.send(conn.send(h11.Data(data=chunk)) or b"")

            tg.start_soon(watch_close)
            await reply.run(send)
            await stream.send(conn.send(h11.EndOfMessage()) or b"")
            tg.cancel_scope.cancel()
    except* (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the client went away: a task group reports it in a group, whichever task saw it
    except* Exception:  # one broken stream must not take the admin listener down
        log.exception("admin: streamed reply failed")


async def _read_request(stream: ByteStream, conn: h11.Connection) -> h11.Request | None:
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            with anyio.fail_after(30):
                try:
                    conn.receive_data(await stream.receive(65536))
                except anyio.EndOfStream:
                    conn.receive_data(b"")
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def serve_http(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    unix_path: str | Path | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` until cancelled; ``task_status`` gets the bound TCP port (0 for unix)."""
    listener: Listener[Any]
    if unix_path is not None:
        listener = await anyio.create_unix_listener(unix_path)
        bound = 0
    else:
        try:
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        except OSError as exc:
            raise OSError(
                exc.errno, f"admin cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc
        bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    log.info("admin on %s", unix_path or f"{host}:{bound}")
    task_status.started(bound)

    async def one(stream: ByteStream) -> None:
        await _serve_one(handler, stream)

    async with listener:
        await listener.serve(one)
