"""The sidecar admin server (default 127.0.0.1:15000).

``GET /ready`` (200 once listeners are bound and a config is active; 503 while
draining), ``GET /metrics`` (Prometheus text), ``GET /config_dump`` (the active
snapshot as JSON, with the last rejected config's error), ``POST /quitquitquit``
(graceful drain, as Istio's pilot-agent). Low traffic and not on the data path,
so it is plain anyio streams with the strict h11 codec.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import h11
from anyio.abc import SocketStream, TaskStatus
from prometheus_client import CollectorRegistry, generate_latest

from .config._model import AdminConfig
from .runtime import Runtime

__all__ = ["serve_admin"]

log = logging.getLogger(__name__)
MAX_REQUEST = 64 * 1024


class _Admin:
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
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(runtime.stats)

    def route(self, method: str, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path == "/ready":
            if self.runtime.draining:
                return 503, "text/plain", b"draining\n"
            return (
                (200, "text/plain", b"ready\n")
                if self.is_ready()
                else (503, "text/plain", b"starting\n")
            )
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", generate_latest(self.registry)
        if path == "/config_dump":
            body = json.dumps(self.dump(), indent=2, sort_keys=True, default=str).encode()
            return 200, "application/json", body + b"\n"
        if path == "/quitquitquit":
            if method != "POST":
                return 405, "text/plain", b"use POST\n"
            self.on_quit()
            return 200, "text/plain", b"draining\n"
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        return 404, "text/plain", b"not found: try /ready /metrics /config_dump /quitquitquit\n"

    async def handle(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        async with stream:
            while True:
                try:
                    request = await self._read_request(stream, conn)
                except (h11.RemoteProtocolError, anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                if request is None:
                    return
                status, ctype, body = self.route(request.method.decode(), request.target.decode())
                headers = [("content-type", ctype), ("content-length", str(len(body)))]
                data = conn.send(h11.Response(status_code=status, headers=headers))
                data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
                data += conn.send(h11.EndOfMessage()) or b""
                await stream.send(data)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

    async def _read_request(self, stream: SocketStream, conn: h11.Connection) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                with anyio.fail_after(30):
                    conn.receive_data(await stream.receive(65536))
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None


async def serve_admin(
    runtime: Runtime,
    config: AdminConfig,
    *,
    dump: Callable[[], dict[str, Any]],
    on_quit: Callable[[], None],
    is_ready: Callable[[], bool],
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin API until cancelled; ``task_status`` gets the bound port."""
    admin = _Admin(runtime, dump, on_quit, is_ready)
    listener = await anyio.create_tcp_listener(local_host=config.bind, local_port=config.port)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    log.info("admin on %s:%s", config.bind, port)
    task_status.started(port)
    async with listener:
        await listener.serve(admin.handle)
