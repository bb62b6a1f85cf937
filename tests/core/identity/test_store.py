"""The cert store over real TLS on loopback: mTLS both ways, rotation for new handshakes."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest

from plait.core.identity import CertStore, peer_spiffe_id
from tests.support.pki import Authority, self_signed_leaf

pytestmark = pytest.mark.anyio

SERVER = "spiffe://plait.local/ns/default/sa/server"
CLIENT = "spiffe://plait.local/ns/default/sa/client"


def store(ca: Authority, spiffe_id: str, bundle: bytes | None = None) -> CertStore:
    s = CertStore()
    chain, key = ca.leaf(spiffe_id)
    s.update(chain_pem=chain, key_pem=key, bundle_pem=bundle or ca.pem)
    return s


class Echo:
    """A TLS server on the store's listener context that records each peer's ID."""

    def __init__(self) -> None:
        self.peers: list[str | None] = []

    async def start(self, s: CertStore) -> int:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            sid = peer_spiffe_id(w.get_extra_info("ssl_object"))
            self.peers.append(str(sid) if sid else None)
            w.write(b"ok")
            await w.drain()
            w.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=s.listener_context())
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    e = Echo()
    yield e
    await e.close()


async def call(port: int, ctx: ssl.SSLContext) -> tuple[str | None, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        sid = peer_spiffe_id(w.get_extra_info("ssl_object"))
        data = await r.read()
    finally:
        w.close()
    return (str(sid) if sid else None), data


async def test_both_sides_see_each_others_spiffe_id_and_negotiate_h2(echo: Echo) -> None:
    ca = Authority.create()
    server, client = store(ca, SERVER), store(ca, CLIENT)
    port = await echo.start(server)
    assert await call(port, client.client_context()) == (SERVER, b"ok")
    assert echo.peers == [CLIENT]
    assert client.leaf is not None and str(client.leaf.spiffe_id) == CLIENT


async def test_a_rotated_leaf_serves_the_next_handshake_without_a_new_listener(echo: Echo) -> None:
    ca = Authority.create()
    server, client = store(ca, SERVER), store(ca, CLIENT)
    port = await echo.start(server)
    await call(port, client.client_context())
    chain, key = ca.leaf(SERVER + "-next")
    server.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    assert await call(port, client.client_context()) == (SERVER + "-next", b"ok")
    assert server.generation == 2


async def test_a_bundle_that_drops_a_root_refuses_that_roots_clients_at_once(echo: Echo) -> None:
    old, new = Authority.create("old"), Authority.create("new")
    server = store(old, SERVER, old.pem + new.pem)
    client = store(old, CLIENT, old.pem + new.pem)
    port = await echo.start(server)
    assert (await call(port, client.client_context()))[1] == b"ok"
    chain, key = new.leaf(SERVER)
    server.update(chain_pem=chain, key_pem=key, bundle_pem=new.pem)
    # TLS 1.3: the client finishes first; the server then refuses the old root's leaf.
    assert (await call(port, client.client_context()))[1] == b""
    assert echo.peers == [CLIENT]


@pytest.mark.parametrize("kind", ["no certificate", "other CA", "self-signed", "expired"])
async def test_a_client_without_a_valid_mesh_certificate_is_refused(kind: str, echo: Echo) -> None:
    ca = Authority.create()
    port = await echo.start(store(ca, SERVER))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=ca.pem.decode())
    if kind != "no certificate":
        if kind == "other CA":
            chain, key = Authority.create("other").leaf(CLIENT)
        elif kind == "self-signed":
            chain, key = self_signed_leaf(CLIENT)
        else:
            import datetime as dt

            chain, key = ca.leaf(CLIENT, not_after=dt.timedelta(seconds=-1))
        other = CertStore()
        other.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem + Authority.create().pem)
        ctx = other.client_context()
    try:
        _, data = await call(port, ctx)
    except (ssl.SSLError, ConnectionError):
        data = b""
    assert data == b""
    assert echo.peers == []


def test_an_update_with_a_key_of_another_leaf_keeps_the_current_identity() -> None:
    ca = Authority.create()
    s = store(ca, SERVER)
    chain, _ = ca.leaf(CLIENT)
    _, other_key = ca.leaf(CLIENT)
    with pytest.raises(ssl.SSLError):
        s.update(chain_pem=chain, key_pem=other_key, bundle_pem=ca.pem)
    assert s.leaf is not None and str(s.leaf.spiffe_id) == SERVER and s.generation == 1


async def test_a_new_bundle_alone_lets_the_next_handshake_trust_the_new_root(echo: Echo) -> None:
    old, new = Authority.create("old"), Authority.create("new")
    server = store(old, SERVER)
    port = await echo.start(server)
    newcomer = store(new, CLIENT, old.pem + new.pem)  # a peer already on the new root
    assert (await call(port, newcomer.client_context()))[1] == b""  # not trusted yet
    serial = server.leaf.serial if server.leaf else None
    assert server.update_bundle(old.pem + new.pem) is True
    assert await call(port, newcomer.client_context()) == (SERVER, b"ok")
    assert server.leaf is not None and server.leaf.serial == serial  # the same leaf
    assert server.bundle_pem == old.pem + new.pem and server.generation == 2
    assert server.update_bundle(old.pem + new.pem) is False  # unchanged: nothing rebuilt
    assert server.generation == 2


def test_a_pushed_bundle_outlives_an_older_one_that_comes_with_a_certificate() -> None:
    old, new = Authority.create("old"), Authority.create("new")
    s = store(old, SERVER)
    s.update_bundle(old.pem + new.pem)
    chain, key = old.leaf(SERVER)  # a renewal answered before the push: the old bundle
    s.update(chain_pem=chain, key_pem=key, bundle_pem=old.pem)
    assert s.bundle_pem == old.pem + new.pem and s.generation == 3
    files = store(old, SERVER)  # never pushed to: each update's bundle is taken
    files.update(chain_pem=chain, key_pem=key, bundle_pem=old.pem + new.pem)
    assert files.bundle_pem == old.pem + new.pem


def test_an_unusable_bundle_keeps_the_current_one() -> None:
    ca = Authority.create()
    s = store(ca, SERVER)
    for bad in (b"not pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(ValueError):
            s.update_bundle(bad)
    assert s.bundle_pem == ca.pem and s.generation == 1


def test_a_bundle_before_the_first_leaf_is_kept_until_the_leaf_brings_its_own() -> None:
    ca = Authority.create()
    s = CertStore()
    assert s.update_bundle(ca.pem) is True and not s.ready and s.bundle_pem == ca.pem
    with pytest.raises(RuntimeError):
        s.client_context()
