"""Access logs: one JSON line per request, written in batches off the request path.

Formatting a line costs a few microseconds (``benchmarks/access_log_bench.py``; lines are
encoded with orjson, about ten times faster here than the standard library's encoder,
which is kept for the rare line orjson refuses), so logging is off unless the config
names a file (``Sidecar.spec.accessLog.path`` or a ``Telemetry`` resource's access-log
provider; ``/dev/stdout`` for the container log). Lines collect in memory and are
written when 256 are waiting or one second after the first one waited, so a
busy proxy does one ``write`` per 256 requests and a quiet one is never more
than a second behind. The flush timer is a loop timer (this module is event-loop
glue like ``_transport.py``); :meth:`AccessLog.close` flushes what is left.

Every stream that started gets exactly one line, whatever ended it: a response,
a mesh error, the client leaving or the drain's grace running out (status 0 when
no response head went out; ``failure_reason`` ``client closed`` or ``drain grace
over``). The drain waits for the streams it cancelled to end before the log is
closed; a line that still comes later is appended on its own.

Sampling: ``sampling`` percent of the successful requests are logged; a request
that failed (status 0 or >= 400, or one with a failure reason) is always logged,
so lowering the volume never hides an error. The draw is made before the line is
formatted, so an unlogged request costs one random number.

What a line says (docs/observability.md lists the fields): the request, the status,
the body bytes each way (counted by the exchange, before filters rewrite the request
and after they rewrite the response), the endpoint of the latest try, the verified
identities at both ends, the trace id the request carries, the retries and the mesh's
failure reason. Identities: inbound, the source is the caller's verified client
certificate and the destination this sidecar's own; outbound, the source is this
sidecar's and the destination the upstream server's SPIFFE ID, which the pool's TLS
gate checked against the endpoint's expected ID before sending a byte
(``upstream/_tls.py``), shown only when the upstream answered over mTLS.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import IO, TYPE_CHECKING

import orjson

from plait.sdk import ConnectionContext, StreamContext

from .trace_context import extract

if TYPE_CHECKING:
    from .exchange.machine import Exchange
    from .runtime import ListenerRuntime

__all__ = ["AccessLog"]

_BATCH = 256
_DELAY = 1.0
_fallback = json.JSONEncoder(separators=(",", ":")).encode


def _encode(entry: dict[str, object]) -> bytes:
    """One line of JSON. orjson refuses a string that is not valid UTF-8 (a lone
    surrogate); the standard library's encoder escapes it, so that line is not lost."""
    try:
        return orjson.dumps(entry)
    except orjson.JSONEncodeError:
        return _fallback(entry).encode()


class AccessLog:
    def __init__(self, path: str, sampling: float = 100.0) -> None:
        self.path = path
        self.sampling = sampling
        """Percent of the successful requests logged (failed ones always are)."""
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 (closed in close())
        self._lines: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def log(self, ctx: StreamContext, lrt: ListenerRuntime, seconds: float, ex: Exchange) -> None:
        req, resp = ctx.request, ctx.response
        status = resp.status if resp is not None else 0
        reason = ctx.failure_reason
        if (
            self.sampling < 100.0
            and reason is None
            and 0 < status < 400
            and random.random() * 100.0 >= self.sampling
        ):
            return
        conn = ctx.connection
        leaf = lrt.runtime.identity.leaf
        own = str(leaf.spiffe_id) if leaf is not None else None
        if lrt.inbound:
            source, destination = _identity(conn), own
        else:
            source, destination = own, lrt.upstream_identity(ctx)
        parent = extract(req.headers)
        entry: dict[str, object] = {
            "time": self._time(time.time() - seconds),
            "listener": lrt.name,
            "direction": "inbound" if lrt.inbound else "outbound",
            "method": req.method,
            "authority": req.authority,
            "path": req.path,
            "protocol": f"HTTP/{req.http_version}",
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "bytes_received": ex.received(),
            "bytes_sent": ex.bytes_out,
            "route": ctx.route_name,
            "cluster": ctx.cluster,
            "upstream": ctx.upstream_address,
            "source_identity": source,
            "destination_identity": destination,
            "trace_id": parent.trace_hex if parent is not None else None,
            "retries": max(ex.attempts - 1, 0),
            "failure_reason": reason,
            "request_id": req.headers.get("x-request-id"),
            "peer": f"{conn.peer_address[0]}:{conn.peer_address[1]}",
            "peer_identity": _identity(conn),
            "alpn": conn.alpn,
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

    def _time(self, when: float) -> str:
        """``when`` as ISO 8601 UTC seconds, formatted once per second."""
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + "Z"
        return self._stamp

    def _append(self, entry: dict[str, object]) -> None:
        if self._file.closed:  # a stream that ended after the close: written at once
            with open(self.path, "ab") as f:
                f.write(_encode(entry) + b"\n")
            return
        self._lines.append(_encode(entry))
        if len(self._lines) >= _BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(_DELAY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            self._file.write(b"\n".join(self._lines) + b"\n")
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
