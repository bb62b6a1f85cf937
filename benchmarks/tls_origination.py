"""Micro benchmark of outbound mTLS origination: handshake cost and per-request cost.

Run by hand: ``.venv/bin/python -m benchmarks.tls_origination [requests]``.

One process, loopback, uvloop when installed (as the sidecar runs). The client is
plait's upstream pool (``Upstreams`` with a filled ``CertStore``, as the runtime has);
the server is a minimal asyncio HTTP/1.1 responder, in plaintext or with an mTLS
context. Both sides run in this process, so every figure holds the TLS work of *both*
ends (a sidecar pair splits it). Figures are wall time on an otherwise quiet loop, the
median of ``REPEATS`` runs:

* ``connect``: a fresh connection opened by the pool (TCP connect, and for mTLS the
  TLS 1.3 handshake with ECDSA P-256 certificates on both sides plus the SPIFFE ID
  check), closed after; wall time and the process's CPU time. ``mTLS`` is a server
  that issues no session tickets (every handshake a full one), ``mTLS resumed`` the
  sidecar's own listener context (the pool resumes the latest session);
* ``request``: one GET and its ~40-byte response on a pooled keep-alive connection;
* ``CertStore.update``: building the contexts of one rotation.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from plait.core.codec import ResponseReceived
from plait.core.config._model import Cluster, Endpoint, Protocol
from plait.core.identity import CertStore
from plait.core.upstream._manager import Upstreams
from plait.sdk import Headers, RequestHead
from tests.support.pki import Authority

REQUESTS = 5_000
CONNECTS = 300
REPEATS = 5
SERVER = "spiffe://plait.local/ns/default/sa/server"
CLIENT = "spiffe://plait.local/ns/default/sa/client"
BODY = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _store(ca: Authority, spiffe_id: str) -> CertStore:
    s = CertStore()
    chain, key = ca.leaf(spiffe_id)
    s.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    return s


async def _serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while await r.readuntil(b"\r\n\r\n"):
            w.write(BODY)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        w.close()


async def _get(ups: Upstreams, c: Cluster, *, fresh: bool = False) -> None:
    stream = await ups.pool(c, c.endpoints[0]).open_stream(fresh=fresh)
    stream.send_head(RequestHead(method="GET", path="/", authority="b", headers=Headers()),
                     end_stream=True)  # fmt: skip
    ev = await stream.read_event()
    assert isinstance(ev, ResponseReceived) and ev.end_stream, ev
    stream.finish(not fresh)  # a fresh connection is closed: the next one connects again


async def _timed(n: int, step: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Median over ``REPEATS`` runs of seconds per ``step``: wall time and CPU time."""
    runs = []
    for _ in range(REPEATS):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            await step()
        runs.append(((time.perf_counter() - t0) / n, (time.process_time() - c0) / n))
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


async def main(requests: int) -> None:
    ca = Authority.create()
    server_store, client_store = _store(ca, SERVER), _store(ca, CLIENT)
    plain = await asyncio.start_server(_serve, "127.0.0.1", 0)
    no_tickets = server_store.listener_context()
    no_tickets.num_tickets = 0  # nothing to resume: every handshake is a full one
    full = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=no_tickets)
    tls = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=server_store.listener_context())
    ups = Upstreams(client_store)
    clusters = {}
    for name, srv, mtls in (
        ("plaintext", plain, False), ("mTLS", full, True), ("mTLS resumed", tls, True),
    ):  # fmt: skip
        port = srv.sockets[0].getsockname()[1]
        ep = Endpoint(address="127.0.0.1", port=port, identity=SERVER, mtls=mtls)
        clusters[name] = Cluster(name=name, protocol=Protocol.HTTP, endpoints=(ep,))
    results: dict[str, tuple[float, float, float]] = {}
    for name, c in clusters.items():
        await _get(ups, c)  # warm
        connect, connect_cpu = await _timed(CONNECTS, lambda c=c: _get(ups, c, fresh=True))  # type: ignore[misc]
        await _get(ups, c)
        request, _ = await _timed(requests, lambda c=c: _get(ups, c))  # type: ignore[misc]
        results[name] = (connect, connect_cpu, request)
    resumed = ups.counters()["mTLS resumed"].get("tls_sessions_resumed", 0)
    not_resumed = ups.counters()["mTLS"].get("tls_sessions_resumed", 0)
    t0 = time.perf_counter()
    chain, key = ca.leaf(CLIENT)
    for _ in range(20):
        client_store.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    update = (time.perf_counter() - t0) / 20
    ups.close()
    for srv in (plain, full, tls):
        srv.close()
    print(f"loop: {type(asyncio.get_running_loop()).__module__}")
    print(f"{'':14} {'connect (µs)':>13} {'connect CPU':>12} {'request (µs)':>13}")
    for name, (connect, cpu, request) in results.items():
        print(f"{name:14} {connect * 1e6:13.0f} {cpu * 1e6:12.0f} {request * 1e6:13.1f}")
    (pc, _, pr), (tc, _, tr) = results["plaintext"], results["mTLS"]
    print(f"{'mTLS extra':14} {(tc - pc) * 1e6:13.0f} {'':12} {(tr - pr) * 1e6:13.1f}")
    print(f"resumed handshakes: {resumed} (mTLS without tickets: {not_resumed})")
    print(f"CertStore.update: {update * 1e3:.2f} ms")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else REQUESTS
    try:
        import uvloop

        uvloop.run(main(n))
    except ImportError:
        asyncio.run(main(n))
