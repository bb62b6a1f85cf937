"""Access logs: one JSON line per request, written in batches off the request path.

Formatting a line costs a few microseconds, so logging is off unless the
Sidecar sets ``accessLog.path`` (as in Istio). Lines collect in memory and are
written when 256 are waiting or one second after the first one waited, so a
busy proxy does one ``write`` per 256 requests and a quiet one is never more
than a second behind. The flush timer is a loop timer (this module is event-loop
glue like ``_transport.py``); :meth:`AccessLog.close` flushes what is left.

Every stream that started gets exactly one line, whatever ended it: a response,
a mesh error, the client leaving or the drain's grace running out (status 0 when
no response head went out; ``failure_reason`` ``client closed`` or ``drain grace
over``). The drain waits for the streams it cancelled to end before the log is
closed; a line that still comes later is appended on its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import IO

from plait.sdk import ConnectionContext, StreamContext

__all__ = ["AccessLog"]

_BATCH = 256
_DELAY = 1.0


class AccessLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._lines: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    def log(self, ctx: StreamContext, listener: str, seconds: float) -> None:
        req, resp = ctx.request, ctx.response
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - seconds)) + "Z",
            "listener": listener,
            "method": req.method,
            "authority": req.authority,
            "path": req.path,
            "protocol": f"HTTP/{req.http_version}",
            "status": resp.status if resp is not None else 0,
            "duration_ms": round(seconds * 1000, 3),
            "route": ctx.route_name,
            "cluster": ctx.cluster,
            "upstream": ctx.upstream_address,
            "failure_reason": ctx.failure_reason,
            "request_id": req.headers.get("x-request-id"),
            "peer": f"{ctx.connection.peer_address[0]}:{ctx.connection.peer_address[1]}",
            "peer_identity": _identity(ctx.connection),
            "alpn": ctx.connection.alpn,
        }
        self._append(entry)

    def log_rejected(
        self, listener: str, status: int, reason: str, conn: ConnectionContext
    ) -> None:
        """A request the codec refused before it had a head (400, 408, 431, 505)."""
        self._append({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "listener": listener,
            "status": status,
            "failure_reason": reason,
            "peer": f"{conn.peer_address[0]}:{conn.peer_address[1]}",
            "peer_identity": _identity(conn),
        })  # fmt: skip

    def _append(self, entry: dict[str, object]) -> None:
        if self._file.closed:  # a stream that ended after the close: written at once
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            return
        self._lines.append(json.dumps(entry, separators=(",", ":")))
        if len(self._lines) >= _BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(_DELAY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            self._file.write("\n".join(self._lines) + "\n")
            self._file.flush()
            self._lines.clear()

    def close(self) -> None:
        if self._file.closed:
            return
        self.flush()
        if self._file.fileno() > 2:
            self._file.close()


def _identity(conn: ConnectionContext) -> str | None:
    """The peer's verified SPIFFE ID (inbound mTLS), ``None`` on plaintext."""
    peer = conn.peer_identity
    return peer.spiffe_id if peer is not None else None
