"""Listeners: bound sockets whose connections live in the listener's task group.

Task tree (style rule 12): the sidecar's task group owns one :meth:`Listener.serve`
task per listener; each listener owns a task group in which every connection's
task runs (started from the accepting Protocol with ``start_soon``). Inbound
listeners without TLS files of their own authenticate peers with mTLS as their
PeerAuthentication mode says (``_mtls``: sniffing, handshake, refusals). Stopping a
listener closes its socket (no new connections); draining then closes idle
keep-alive connections and asks busy ones to close after their response.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from plait.sdk import PeerIdentity

from ..config._model import Direction, ListenerConfig, MtlsMode, Protocol, Timeouts
from ..identity.tlsio import ReadInto
from . import _mtls

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["Listener", "bind_socket"]


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    def __init__(self, runtime: Runtime, config: ListenerConfig, *, reuse_port: bool) -> None:
        self.runtime = runtime
        self.config = config
        self.name = config.name
        self.reuse_port = reuse_port
        self.timeouts: Timeouts = config.timeouts
        self.max_header_bytes = runtime.snapshot.config.max_request_headers_kb * 1024
        self.sniff_h2 = config.protocol is not Protocol.TCP
        self.connections: set[Any] = set()
        self.tg: TaskGroup
        self._server: asyncio.AbstractServer | None = None
        self._stopped = anyio.Event()
        self.takes_mtls = config.direction is Direction.INBOUND and config.tls is None
        self._mtls_ctx: ssl.SSLContext | None = None
        self._refusals = _mtls.Refusals(self)
        self.verified: tuple[ssl.SSLObject, PeerIdentity] | None = None
        """The identity the mTLS gate just checked, while it hands the connection over."""

    @property
    def key(self) -> tuple[str, int, Protocol]:
        return (self.config.bind, self.config.port, self.config.protocol)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept until :meth:`stop`; then wait for this listener's connections to end."""
        loop = asyncio.get_running_loop()
        sock = bind_socket(self.config.bind, self.config.port, reuse_port=self.reuse_port)
        ssl_ctx = self._ssl_context()
        async with anyio.create_task_group() as tg:
            self.tg = tg
            self._server = await loop.create_server(self._make_protocol, sock=sock, ssl=ssl_ctx)
            task_status.started()
            await self._stopped.wait()
            self._server.close()

    def _ssl_context(self) -> ssl.SSLContext | None:
        """TLS termination: ALPN offers h2 then http/1.1 on HTTP listeners (RFC 7301)."""
        tls = self.config.tls
        if tls is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if self.config.protocol is not Protocol.TCP:
            ctx.set_alpn_protocols(["h2", "http/1.1"])
        return ctx

    def reconfigure(self, config: ListenerConfig) -> None:
        """A new config for the same address and protocol: new connections follow it."""
        self.config = config
        self.timeouts = config.timeouts
        self.takes_mtls = config.direction is Direction.INBOUND and config.tls is None

    def _make_protocol(self) -> asyncio.BaseProtocol:
        if self.takes_mtls:
            mode = _mtls.effective_mode(self.config.mtls, self.runtime.identity.ready)
            if mode is not MtlsMode.DISABLE:
                return _mtls.Sniff(self, mode, self._refusals)
        if self.config.tls is not None:  # the loop's SSL protocol reads into a buffer
            return ReadInto(self.make_app_protocol())
        return self.make_app_protocol()

    def mtls_context(self) -> ssl.SSLContext:
        """The front context of inbound mTLS (each handshake moves onto the current leaf)."""
        if self._mtls_ctx is None:
            self._mtls_ctx = self.runtime.identity.listener_context()
        return self._mtls_ctx

    def peer_identity(self, tls: ssl.SSLObject) -> PeerIdentity | None:
        """The verified identity of a TLS peer (``None`` without a client certificate)."""
        if self.verified is not None and self.verified[0] is tls:
            return self.verified[1]  # parsed once, by the mTLS gate
        return _mtls.peer_identity(tls)

    def make_app_protocol(self) -> asyncio.Protocol:
        """The connection protocol (HTTP or TCP relay), for an accepted or authenticated one."""
        if self.config.protocol is Protocol.TCP:
            from ._tcp import TcpRelay

            return TcpRelay(self)
        from ._h1 import H1Connection

        return H1Connection(self)

    def stop(self) -> None:
        """Stop accepting; existing connections go on."""
        if self._server is not None:
            self._server.close()
        self._stopped.set()

    def drain(self) -> None:
        """Close idle connections, and busy ones after their current response."""
        for conn in list(self.connections):
            conn.begin_drain() if hasattr(conn, "begin_drain") else None
            if not getattr(conn, "in_flight", True):
                conn.close()
            else:
                conn.closing = True

    def connection_opened(self, conn: Any) -> None:
        self.connections.add(conn)
        self.runtime.stats.connection_opened(self.name)

    def connection_handed_over(self, old: Any, new: Any) -> None:
        """``new`` now serves the connection ``old`` accepted (a protocol switch): the
        same connection, so it is not counted again."""
        self.connections.discard(old)
        self.connections.add(new)

    def connection_closed(self, conn: Any) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.runtime.stats.connection_closed(self.name)

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()
