"""Opaque TCP relay for ``protocol: tcp`` listeners (redis, databases, anything).

Two Protocols, one per socket, write each other's bytes with no task per read
and no copy beyond the kernel's. Backpressure both ways: when one side's write
buffer fills (``pause_writing``) the other side stops reading until it drains.
Half-close is forwarded (EOF becomes ``write_eof``); a side that cannot half-close (a
TLS transport: asyncio's has no ``write_eof``) is closed instead, after its buffered
bytes are written, so the peer still sees the end of the stream. One task per connection
(in the listener's task group) connects upstream and then waits for both sides
to close, so the connection has an owner and a drain can see it.

The upstream side is connected like an HTTP pool's connection
(``plait.core.upstream._tls.connect``): to a mesh endpoint that takes mTLS, the relay
originates it and checks the server's SPIFFE ID before a byte goes out, offering no
ALPN; handshakes are counted per cluster as for HTTP.

Before that task starts, the listener's connection filters (``ListenerRuntime.
connection_filters``: authorization, for one) decide the accepted connection, under
mTLS with the verified peer identity. A refusal, or a filter that raises (counted as a
filter failure: it fails closed), aborts the connection before a byte is relayed and
before any upstream connection is made.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from plait.sdk import ConnectionContext, UpstreamConnectError

from .._transport import set_nodelay
from ..upstream._tls import connect

if TYPE_CHECKING:
    from ._listener import Listener

__all__ = ["TcpRelay"]

log = logging.getLogger(__name__)


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.eof = False
        self.pending: list[bytes] = []
        """Bytes read before the peer existed (uvloop starts reading right after
        ``connection_made``, whatever ``pause_reading`` said in it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        set_nodelay(self.transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            self.pending.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
        elif peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None:
            return True  # forwarded once the peer exists
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if not peer.transport.can_write_eof():
                peer.transport.close()  # TLS: no half-close; close() flushes first
                return False
            peer.transport.write_eof()
            if peer.eof:
                peer.transport.close()
                return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class TcpRelay(_Side):
    """The downstream side; it owns the relay's task."""

    in_flight = True
    closing = False

    def __init__(self, listener: Listener) -> None:
        super().__init__()
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.listener.connection_opened(self)
        reason = self._refusal(transport)
        if reason is not None:
            log.debug("%s: connection from %s closed: %s", self.listener.name,
                     transport.get_extra_info("peername"), reason)  # fmt: skip
            cast(asyncio.Transport, transport).abort()
            return
        self.listener.tg.start_soon(self._run)

    def _refusal(self, transport: asyncio.BaseTransport) -> str | None:
        """Why the listener's connection filters refuse this connection (``None``: they
        let it through)."""
        runtime = self.listener.runtime
        lrt = runtime.listener(self.listener.name)
        if lrt is None or not lrt.connection_filters:
            return None
        tls = transport.get_extra_info("ssl_object")
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        conn = ConnectionContext(
            peer_address=(str(peer[0]), int(peer[1])),
            local_address=(str(local[0]), int(local[1])),
            listener=self.listener.name,
            tls=tls is not None,
            alpn=tls.selected_alpn_protocol() if tls is not None else None,
            peer_identity=self.listener.peer_identity(tls) if tls is not None else None,
        )
        for name, check in lrt.connection_filters:
            try:
                reason = check.on_connection(conn)
            except Exception:
                log.exception("%s: connection filter %s failed", self.listener.name, name)
                runtime.stats.filter_failed(name)
                return f"connection filter {name} failed"
            if reason is not None:
                return reason
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.listener.connection_closed(self)

    async def _run(self) -> None:
        runtime = self.listener.runtime
        lrt = runtime.listener(self.listener.name)
        cluster_name = lrt.config.tcp_cluster if lrt is not None else None
        crt = runtime.snapshot.clusters.get(cluster_name or "")
        up: _Side | None = None
        runtime.stream_started()
        try:
            if crt is None or not crt.pools:
                log.warning("%s: no upstream for tcp relay", self.listener.name)
                return
            pool = crt.pick()
            ep = pool.endpoint
            try:
                up, _ = await connect(_Side, ep, crt.cluster.timeouts.connect, pool.origin)
            except UpstreamConnectError as exc:
                log.warning("%s: connect to %s failed: %s", self.listener.name, ep.key, exc)
                return
            up.peer, self.peer = self, up
            assert self.transport is not None and up.transport is not None
            if self.transport.is_closing():
                return
            for data in self.pending:
                up.transport.write(data)
            self.pending.clear()
            if self.eof and up.transport.can_write_eof():
                up.transport.write_eof()
            self.transport.resume_reading()
            await self.closed
            await up.closed
        finally:
            runtime.stream_ended()
            self.close()
            if up is not None:
                up.close()
