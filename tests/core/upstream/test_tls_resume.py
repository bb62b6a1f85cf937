"""Outbound mTLS session resumption, seen from the server, over real TLS on loopback.

The server is a small asyncio HTTP/1.1 server on the listener context of a
:class:`CertStore` (the sidecar's own inbound context: TLS 1.3 tickets from the front
context). It answers each request with what it saw of that connection: whether the
handshake resumed a session, and the client certificate's serial (a resumed session
carries the certificate of the handshake it resumes).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
from cryptography import x509

from plait.core.codec import ResponseReceived
from plait.core.config._model import Cluster, Endpoint, Protocol
from plait.core.config._policy import TrafficPolicy
from plait.core.identity import CertStore
from plait.core.upstream._manager import Upstreams
from plait.sdk import Headers, RequestHead
from tests.support.pki import Authority

pytestmark = pytest.mark.anyio

SERVER = "spiffe://plait.local/ns/default/sa/server"
CLIENT = "spiffe://plait.local/ns/default/sa/client"


def filled(ca: Authority, spiffe_id: str) -> CertStore:
    s = CertStore()
    chain, key = ca.leaf(spiffe_id)
    s.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    return s


class Server:
    """Answers ``"<resumed> <client serial>"``; counts connections."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def start(self, ctx: ssl.SSLContext) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ctx)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        sslobj = w.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True)
        serial = x509.load_der_x509_certificate(der).serial_number if der else None
        body = f"{sslobj.session_reused} {serial}".encode()
        try:
            while await r.readuntil(b"\r\n\r\n"):
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    yield s
    await s.stop()


@pytest.fixture
def ca() -> Authority:
    return Authority.create()


def cluster(port: int, identity: str = SERVER) -> tuple[Cluster, Endpoint]:
    """An HTTP/1.1 cluster kept on HTTP/1.1 (the server here speaks only that)."""
    ep = Endpoint(address="127.0.0.1", port=port, identity=identity, mtls=True)
    policy = TrafficPolicy(name="default/p", h2_upgrade="DO_NOT_UPGRADE")
    return Cluster(
        name="svc.default:80", protocol=Protocol.HTTP, endpoints=(ep,), policy=policy
    ), ep


async def get(ups: Upstreams, c: Cluster, ep: Endpoint) -> str:
    """One GET on a new connection: the server's ``"<resumed> <serial>"``."""
    stream = await ups.pool(c, ep).open_stream(fresh=True)
    stream.send_head(RequestHead(method="GET", path="/", authority="svc", headers=Headers()),
                     end_stream=True)  # fmt: skip
    ev = await stream.read_event()
    assert isinstance(ev, ResponseReceived) and ev.end_stream, ev
    stream.finish(True)
    return ev.body.decode()


def serial(store: CertStore) -> int:
    assert store.leaf is not None
    return store.leaf.serial


async def test_a_new_connection_resumes_the_session_of_the_previous_one(
    ca: Authority, server: Server
) -> None:
    port = await server.start(filled(ca, SERVER).listener_context())
    store = filled(ca, CLIENT)
    ups = Upstreams(store)
    c, ep = cluster(port)
    assert await get(ups, c, ep) == f"False {serial(store)}"
    assert await get(ups, c, ep) == f"True {serial(store)}"
    assert await get(ups, c, ep) == f"True {serial(store)}"
    assert server.connections == 3
    counts = ups.counters()["svc.default:80"]
    assert counts["tls_handshakes_ok"] == 3
    assert counts["tls_sessions_resumed"] == 2
    ups.close()


async def test_after_a_rotation_the_next_connection_does_a_full_handshake(
    ca: Authority, server: Server
) -> None:
    port = await server.start(filled(ca, SERVER).listener_context())
    store = filled(ca, CLIENT)
    ups = Upstreams(store)
    c, ep = cluster(port)
    old = serial(store)
    assert await get(ups, c, ep) == f"False {old}"
    assert await get(ups, c, ep) == f"True {old}"
    chain, key = ca.leaf(CLIENT)
    store.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    # The new leaf is presented: a session of the old one is not offered.
    assert await get(ups, c, ep) == f"False {serial(store)}"
    assert await get(ups, c, ep) == f"True {serial(store)}"
    ups.close()
