"""A listener runtime's record of a finished request: the request metrics' labels follow
this sidecar's certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plait.core.codec import RequestReceived
from plait.core.config import load_config
from plait.core.exchange.machine import Exchange
from plait.core.runtime import Runtime
from plait.plugins import load_filter_types
from plait.sdk import ConnectionContext, PeerIdentity, RequestHead, ResponseHead
from tests.support.pki import Authority

CONFIG = """\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: web, namespace: shop}
spec:
  ingress:
  - name: in
    port: {number: 15006, protocol: http}
    defaultEndpoint: 127.0.0.1:8080
"""
CALLER = "spiffe://plait.local/ns/shop/sa/caller"


class _Down:
    """The client side of one stream, as the exchange reads it (nothing is sent here)."""

    def __init__(self, conn: ConnectionContext) -> None:
        self.conn_ctx = conn
        self.response_started = False
        self.closing = False


def _served(rt: Runtime, conn: ConnectionContext) -> None:
    """One request on ``conn`` answered 200 and recorded, as the exchange ends it."""
    lrt = rt.listener("in")
    assert lrt is not None
    head = RequestHead(method="GET", path="/", authority="web")
    ex: Any = Exchange(lrt, _Down(conn), RequestReceived(1, head, True))  # type: ignore[arg-type]
    ex.ctx.response = ResponseHead(status=200)
    lrt.record(ex.ctx, 0.001, ex)


def test_an_upstreams_grpc_status_cannot_add_series(tmp_path: Path) -> None:
    """Whatever ``grpc-status`` text upstreams send, the label takes gRPC's 17 codes and
    ``unknown``: the series stay bounded."""
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG)
    rt = Runtime(load_config([path], load_filter_types()))
    lrt = rt.listener("in")
    assert lrt is not None
    conn = ConnectionContext(peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 15006))
    head = RequestHead(method="POST", path="/pkg.Svc/Call", authority="web")
    sent = ["0", "7", "16", "17", "-1", "07", " 7", "abc", "\u00e9", "1" * 40] + [
        f"x{i}" for i in range(500)
    ]
    for value in sent:
        ex: Any = Exchange(lrt, _Down(conn), RequestReceived(1, head, True))  # type: ignore[arg-type]
        ex.ctx.response = ResponseHead(status=200)
        ex.grpc_status = value
        lrt.record(ex.ctx, 0.001, ex)
    counts: dict[str, float] = {}
    for (_series, _status, grpc, _reason), h in rt.stats.requests.items():
        counts[grpc] = counts.get(grpc, 0) + sum(h[:-1])
    assert counts == {"0": 1, "7": 1, "16": 1, "unknown": len(sent) - 3}
    rt.close()


def _principals(rt: Runtime) -> dict[str, float]:
    """Requests counted by their ``destination_principal`` (this sidecar's, inbound)."""
    out: dict[str, float] = {}
    for (series, _status, _grpc, _reason), counts in rt.stats.requests.items():
        principal = rt.stats.series_values[series][8]
        out[principal] = out.get(principal, 0) + sum(counts[:-1])
    return out


def test_request_labels_follow_a_new_certificate(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG)
    rt = Runtime(load_config([path], load_filter_types()))
    ca = Authority.create()
    conn = ConnectionContext(
        peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 15006),
        peer_identity=PeerIdentity(spiffe_id=CALLER),
    )  # fmt: skip
    first, second = "spiffe://plait.local/ns/shop/sa/web", "spiffe://plait.local/ns/shop/sa/web2"
    chain, key = ca.leaf(first)
    rt.identity.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    _served(rt, conn)
    _served(rt, conn)
    chain, key = ca.leaf(second)
    rt.identity.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    _served(rt, conn)
    assert _principals(rt) == {first: 2, second: 1}
    rt.close()


WORKLOAD = """\
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: api-{n}, namespace: shop}}
spec:
  service: api
  serviceAccount: {account}
  address: 127.0.0.{n}
  ports: [{{port: 80, targetPort: 900{n}}}]
  tlsMode: mutual
"""
MESH = "---\n".join([
    """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{name: main, port: 80, protocol: http}]
""",
    WORKLOAD.format(n=1, account="api"),
    WORKLOAD.format(n=2, account="api2"),
    """\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: web, namespace: shop}
spec:
  egress:
  - name: out
    port: {number: 15001, protocol: http}
    service: api
""",
])  # fmt: skip


def test_upstream_identity_follows_the_endpoint_and_this_sidecars_certificate(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH)
    rt = Runtime(load_config([path], load_filter_types()))
    lrt = rt.listener("out")
    assert lrt is not None
    ((name, cluster),) = lrt.snapshot.clusters.items()
    conn = ConnectionContext(peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 15001))
    head = RequestHead(method="GET", path="/", authority="api")
    ex: Any = Exchange(lrt, _Down(conn), RequestReceived(1, head, True))  # type: ignore[arg-type]
    ctx = ex.ctx
    ctx.response, ctx.cluster = ResponseHead(status=200), name

    def answered_by(address: str) -> str | None:
        ctx.upstream_address = address
        return lrt.upstream_identity(ctx)

    one, two = (pool.key for pool in cluster.pools)
    assert answered_by(one) is None  # no certificate yet: plaintext, nobody verified
    ca = Authority.create()
    chain, key = ca.leaf("spiffe://plait.local/ns/shop/sa/web")
    rt.identity.update(chain_pem=chain, key_pem=key, bundle_pem=ca.pem)
    api, api2 = "spiffe://plait.local/ns/shop/sa/api", "spiffe://plait.local/ns/shop/sa/api2"
    assert [answered_by(a) for a in (one, one, two, two, one)] == [api, api, api2, api2, api]
    ctx.failure_reason = "upstream: timeout"
    assert answered_by(one) is None  # a failed request was answered by nobody
    rt.close()
