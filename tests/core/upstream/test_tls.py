"""Outbound mTLS from the upstream pools, over real TLS on loopback.

The upstream is a small asyncio server in the test: HTTP/1.1 (answers each request
with the caller's SPIFFE ID and certificate serial, seen on that connection) or
HTTP/2 (the ``h2`` library). The pools come from :class:`Upstreams` with a
:class:`CertStore` filled from the test CA, as the runtime does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from cryptography import x509

from plait.core.codec import DataReceived, ResponseReceived
from plait.core.config._model import Cluster, Endpoint, Protocol
from plait.core.config._policy import TrafficPolicy
from plait.core.identity import CertStore, peer_spiffe_id
from plait.core.upstream._h1 import H1Pool
from plait.core.upstream._manager import ClusterRuntime, Pool, Upstreams
from plait.core.upstream._tls import UpstreamIdentityError, UpstreamTlsError
from plait.core.upstream.stream import UpstreamStream
from plait.sdk import Headers, RequestHead, UpstreamConnectError
from tests.support.pki import Authority

pytestmark = pytest.mark.anyio

SERVER = "spiffe://plait.local/ns/default/sa/server"
CLIENT = "spiffe://plait.local/ns/default/sa/client"
OTHER = "spiffe://plait.local/ns/default/sa/other"


def filled(ca: Authority, spiffe_id: str, bundle: bytes | None = None) -> CertStore:
    s = CertStore()
    chain, key = ca.leaf(spiffe_id)
    s.update(chain_pem=chain, key_pem=key, bundle_pem=bundle or ca.pem)
    return s


@dataclass
class Upstream:
    """An mTLS (or plaintext) HTTP/1.1 or HTTP/2 server; records who connected."""

    peers: list[tuple[str | None, int | None]] = field(default_factory=list)
    """(SPIFFE ID, certificate serial) per accepted connection."""
    alpn: list[str | None] = field(default_factory=list)
    received: int = 0
    """Bytes of application data received, over all connections."""
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self, ctx: ssl.SSLContext | None) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ctx)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.writers.append(w)
        sslobj = w.get_extra_info("ssl_object")
        peer, serial = None, None
        if sslobj is not None:
            sid = peer_spiffe_id(sslobj)
            peer = str(sid) if sid else None
            der = sslobj.getpeercert(binary_form=True)
            serial = x509.load_der_x509_certificate(der).serial_number if der else None
            self.alpn.append(sslobj.selected_alpn_protocol())
        self.peers.append((peer, serial))
        body = f"{peer} {serial}".encode()
        try:
            if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
                await self._h2(r, w, body)
                return
            if sslobj is None and (first := await r.readexactly(3)) == b"PRI":  # h2c
                self.alpn.append("h2c")
                await self._h2(r, w, body, first)
                return
            prefix = first if sslobj is None else b""
            while head := prefix + await r.readuntil(b"\r\n\r\n"):
                prefix = b""
                self.received += len(head)
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def _h2(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, body: bytes, first: bytes = b""
    ) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        w.write(conn.data_to_send())
        while data := first + await r.read(65536):
            first = b""
            self.received += len(data)
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    conn.send_headers(ev.stream_id, [(":status", "200")])
                    conn.send_data(ev.stream_id, body, end_stream=True)
            w.write(conn.data_to_send())
            await w.drain()

    async def close(self) -> None:
        assert self.server is not None
        for w in self.writers:
            w.close()
        await asyncio.sleep(0.01)
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    u = Upstream()
    yield u
    await u.close()


@pytest.fixture
def ca() -> Authority:
    return Authority.create()


def cluster(
    port: int, *, identity: str | None = SERVER, mtls: bool = True,
    protocol: Protocol = Protocol.HTTP, mode: str | None = None, upgrade: str | None = None,
) -> tuple[Cluster, Endpoint]:  # fmt: skip
    ep = Endpoint(address="127.0.0.1", port=port, identity=identity, mtls=mtls)
    policy = None
    if mode or upgrade:
        policy = TrafficPolicy(name="default/p", tls_mode=mode, h2_upgrade=upgrade)
    return Cluster(name="svc.default:80", protocol=protocol, endpoints=(ep,), policy=policy), ep


async def get(
    ups: Upstreams, c: Cluster, ep: Endpoint, *, fresh: bool = False, pool: Pool | None = None
) -> str:
    """One GET through the pool (``pool``, else the endpoint's); the upstream's answer
    (``"<peer id> <serial>"``)."""
    stream = await (pool or ups.pool(c, ep)).open_stream(fresh=fresh)
    stream.send_head(RequestHead(method="GET", path="/", authority="svc", headers=Headers()),
                     end_stream=True)  # fmt: skip
    return await read_answer(stream)


async def read_answer(stream: UpstreamStream) -> str:
    """The body of the response on ``stream`` (whose request was sent), decoded."""
    ev = await stream.read_event()
    assert isinstance(ev, ResponseReceived), ev
    body, end = ev.body, ev.end_stream
    while not end:
        data = await stream.read_event()
        assert isinstance(data, DataReceived), data
        body, end = body + data.data, data.end_stream
    stream.finish(True)
    return body.decode()


def server_context(ca: Authority, spiffe_id: str, alpn: list[str], tmp: Path) -> ssl.SSLContext:
    """A plain ``ssl`` mTLS server context (not the store's) offering ``alpn``."""
    for name, data in zip(("chain.pem", "key.pem"), ca.leaf(spiffe_id), strict=True):
        (tmp / name).write_bytes(data)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
    ctx.load_verify_locations(cadata=ca.pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(alpn)
    return ctx


def leaf_serial(store: CertStore) -> int:
    assert store.leaf is not None
    return store.leaf.serial


async def test_the_upstream_sees_the_sidecars_identity(ca: Authority, upstream: Upstream) -> None:
    port = await upstream.start(filled(ca, SERVER).listener_context())
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port, upgrade="DO_NOT_UPGRADE")
    answer = await get(ups, c, ep)
    assert answer == f"{CLIENT} {leaf_serial(ups.identity)}"
    assert upstream.alpn == ["http/1.1"]  # the HTTP/1.1 pool offers only what it speaks
    assert ups.counters()["svc.default:80"]["tls_handshakes_ok"] == 1
    ups.close()


async def test_an_unexpected_server_identity_is_refused_before_any_byte(
    ca: Authority, upstream: Upstream
) -> None:
    port = await upstream.start(filled(ca, OTHER).listener_context())
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port)
    with pytest.raises(UpstreamIdentityError) as err:
        await get(ups, c, ep)
    assert isinstance(err.value, UpstreamConnectError)  # retries treat it as a connect failure
    assert err.value.reason == "tls: unexpected peer identity"
    assert OTHER in str(err.value) and SERVER in str(err.value)
    await asyncio.sleep(0.1)
    assert upstream.received == 0  # the impostor got no request
    assert ups.counters()["svc.default:80"]["tls_peer_identity_mismatches"] == 1
    ups.close()


async def test_a_server_certificate_from_another_ca_is_refused(
    ca: Authority, upstream: Upstream
) -> None:
    rogue = Authority.create("rogue")
    port = await upstream.start(filled(rogue, SERVER, bundle=ca.pem + rogue.pem).listener_context())
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port)
    with pytest.raises(UpstreamTlsError) as err:
        await get(ups, c, ep)
    assert err.value.reason == "tls: handshake failed"
    assert "certificate" in str(err.value)
    assert ups.counters()["svc.default:80"]["tls_handshake_failures"] == 1
    ups.close()


@pytest.mark.parametrize("upgrade", ["DO_NOT_UPGRADE", None], ids=["http1", "http2"])
async def test_after_a_rotation_new_requests_use_the_new_leaf_open_ones_finish(
    ca: Authority, upstream: Upstream, upgrade: str | None
) -> None:
    """Over HTTP/1.1 (an idle pooled connection) and HTTP/2 (one shared connection): the
    request in flight at the rotation finishes on its connection; the next request goes on
    a new handshake with the new leaf, and then stays on that one."""
    port = await upstream.start(filled(ca, SERVER).listener_context())
    store = filled(ca, CLIENT)
    ups = Upstreams(store)
    c, ep = cluster(port, upgrade=upgrade)
    old = leaf_serial(store)
    assert await get(ups, c, ep) == f"{CLIENT} {old}"
    in_flight = await ups.pool(c, ep).open_stream()
    in_flight.send_head(RequestHead(method="GET", path="/", authority="svc", headers=Headers()),
                        end_stream=True)  # fmt: skip
    chain, key = ca.leaf(CLIENT)
    store.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    new = leaf_serial(store)
    assert new != old
    assert await get(ups, c, ep) == f"{CLIENT} {new}"
    assert await read_answer(in_flight) == f"{CLIENT} {old}"
    assert await get(ups, c, ep) == f"{CLIENT} {new}"
    assert [s for _, s in upstream.peers][-1] == new
    assert {s for _, s in upstream.peers} == {old, new}
    assert len(upstream.peers) == 2  # one connection per certificate
    ups.close()


async def test_http2_is_negotiated_by_alpn_for_an_http2_cluster(
    ca: Authority, upstream: Upstream
) -> None:
    port = await upstream.start(filled(ca, SERVER).listener_context())  # offers h2, http/1.1
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port, protocol=Protocol.GRPC)
    assert await get(ups, c, ep) == f"{CLIENT} {leaf_serial(ups.identity)}"
    assert upstream.alpn == ["h2"]
    ups.close()


async def test_http1_requests_to_a_mesh_peer_go_as_http2_by_alpn(
    ca: Authority, upstream: Upstream
) -> None:
    port = await upstream.start(filled(ca, SERVER).listener_context())  # a sidecar's offer
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port)  # an HTTP/1.1 Service, its endpoint reached over mesh mTLS
    for _ in range(3):
        assert await get(ups, c, ep) == f"{CLIENT} {leaf_serial(ups.identity)}"
    assert upstream.alpn == ["h2"]  # one connection carried them all
    # an Upgrade request (WebSocket) stays HTTP/1.1, on its own pool to the same endpoint
    crt = ClusterRuntime(c, ups)
    tunnel = crt.pick_tunnel()
    assert tunnel is not crt.pick() and tunnel.key == ep.key
    assert await get(ups, c, ep, pool=tunnel, fresh=True) == f"{CLIENT} {leaf_serial(ups.identity)}"
    assert upstream.alpn == ["h2", "http/1.1"]
    assert ups.counters()["svc.default:80"]["tls_handshakes_ok"] == 2
    ups.close()


async def test_a_mesh_peer_that_selects_http1_gets_http1(
    ca: Authority, upstream: Upstream, tmp_path: Path
) -> None:
    """An mTLS server that is no sidecar: the request is served over HTTP/1.1, not refused,
    and the next ones go straight to HTTP/1.1 (no second try of HTTP/2)."""
    port = await upstream.start(server_context(ca, SERVER, ["http/1.1"], tmp_path))
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port)
    for _ in range(3):
        assert await get(ups, c, ep) == f"{CLIENT} {leaf_serial(ups.identity)}"
    # the first handshake offered both and was closed before any byte; then HTTP/1.1 kept
    assert upstream.alpn == ["http/1.1", "http/1.1"]
    counters = ups.counters()["svc.default:80"]
    assert counters.get("tls_handshake_failures", 0) == 0
    ups.close()


async def test_no_upgrade_when_the_policy_says_so_or_without_a_certificate(
    ca: Authority, upstream: Upstream
) -> None:
    port = await upstream.start(filled(ca, SERVER).listener_context())
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port, upgrade="DO_NOT_UPGRADE")
    assert isinstance(ups.pool(c, ep), H1Pool)
    assert await get(ups, c, ep) == f"{CLIENT} {leaf_serial(ups.identity)}"
    assert upstream.alpn == ["http/1.1"]
    ups.close()
    # UPGRADE: every endpoint, plaintext ones too (the operator says they speak h2c), and
    # an Upgrade request still on HTTP/1.1
    h2c = Upstream()
    port = await h2c.start(None)
    ups = Upstreams(CertStore())
    c, ep = cluster(port, mtls=False, identity=None, upgrade="UPGRADE")
    assert await get(ups, c, ep) == "None None"
    assert await get(ups, c, ep) == "None None"
    assert h2c.alpn == ["h2c"]  # one prior-knowledge connection for both
    assert isinstance(ClusterRuntime(c, ups).pick_tunnel(), H1Pool)
    ups.close()
    await h2c.close()
    # auto mTLS before the sidecar has its certificate: plaintext HTTP/1.1, never h2c
    plain = Upstream()
    port = await plain.start(None)
    ups = Upstreams(CertStore())
    c, ep = cluster(port)
    assert await get(ups, c, ep) == "None None"
    assert plain.received > 0 and plain.alpn == []
    ups.close()
    await plain.close()


async def test_an_http2_cluster_refuses_a_server_that_selects_http1(
    ca: Authority, upstream: Upstream, tmp_path: Path
) -> None:
    port = await upstream.start(server_context(ca, SERVER, ["http/1.1"], tmp_path))
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port, protocol=Protocol.HTTP2)
    with pytest.raises(UpstreamConnectError):
        await get(ups, c, ep)
    assert upstream.received == 0
    ups.close()


async def test_a_plaintext_endpoint_stays_plaintext(upstream: Upstream, ca: Authority) -> None:
    port = await upstream.start(None)
    ups = Upstreams(filled(ca, CLIENT))
    c, ep = cluster(port, mtls=False)  # a Workload without tlsMode: mutual
    assert await get(ups, c, ep) == "None None"
    c, ep = cluster(port, identity=None, mtls=False)  # a static Service endpoint
    assert await get(ups, c, ep) == "None None"
    c, ep = cluster(port, mode="DISABLE")  # mTLS turned off by the policy
    assert await get(ups, c, ep) == "None None"
    ups.close()


async def test_auto_mtls_starts_once_the_sidecar_has_an_identity(ca: Authority) -> None:
    """The upstream answers plaintext HTTP and notes a TLS ClientHello (then closes)."""
    first: list[bytes] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while byte := await r.read(1):
                first.append(byte)
                if byte != b"G":
                    break
                await r.readuntil(b"\r\n\r\n")
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain")
        finally:
            w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ups = Upstreams(CertStore())  # no certificate yet
    c, ep = cluster(port)
    assert await get(ups, c, ep) == "plain"
    assert await get(ups, c, ep) == "plain"  # pooled
    chain, key = ca.leaf(CLIENT)
    ups.identity.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    # the idle plaintext connection is not reused now: a new one starts a TLS handshake
    with pytest.raises(UpstreamTlsError):
        await get(ups, c, ep)
    assert first == [b"G", b"G", b"\x16"]  # 0x16: a TLS handshake record
    ups.close()
    server.close()


async def test_istio_mutual_never_falls_back_to_plaintext(upstream: Upstream) -> None:
    port = await upstream.start(None)
    ups = Upstreams(CertStore())
    c, ep = cluster(port, mtls=False, mode="ISTIO_MUTUAL")
    with pytest.raises(UpstreamTlsError, match="no workload certificate"):
        await get(ups, c, ep)
    assert upstream.peers == []
    ups.close()
