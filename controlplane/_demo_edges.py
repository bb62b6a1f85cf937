"""``plait demo``: what each sidecar-to-sidecar edge of the demo mesh verified, read from
the sidecars' own admin endpoints and access logs, as an operator would.

Theory of operation: for an edge ``client → server`` (a sidecar's egress to the Service
of another sidecar's Workload) the report puts together what both ends saw:

* the **server** sidecar: its ``/metrics`` count the connections its ingress accepted by
  transport (``mtls`` / ``plaintext``), and its access log names the verified SPIFFE ID
  of the peer of every request (``peer_identity``, read from the client certificate
  after the chain verified against the trust bundle);
* the **client** sidecar: its ``/config_dump`` holds the identity each endpoint of the
  server's cluster must present, and its ``/metrics`` count the mTLS handshakes of that
  cluster that passed (``tls_handshakes_ok``) and the servers refused for another
  identity (``tls_peer_identity_mismatches``).

An edge is reported as mTLS only when every connection the server accepted was mTLS and
the client completed handshakes to it with no identity mismatch; otherwise the line says
what was seen instead.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Edge", "describe_edges"]


@dataclass(frozen=True)
class Edge:
    client: str
    client_admin: int
    server: str
    server_admin: int
    cluster: str
    """The client's cluster for the server's Service (``NAME.NS:PORT``)."""
    access_log: Path
    """The server sidecar's access log."""


def _get(admin: int, path: str) -> bytes:
    """``GET path`` on a sidecar's admin port: the body."""
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def _metric(admin: int, name: str, **labels: str) -> float:
    text = _get(admin, "/metrics").decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        sample, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def _peers(log: Path, wait: float = 3.0) -> set[str]:
    """The verified peer IDs in an access log (written in batches: up to ~1 s late)."""
    deadline = time.monotonic() + wait
    while True:
        peers: set[str] = set()
        with contextlib.suppress(OSError):
            for line in log.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    peer = json.loads(line).get("peer_identity")
                    peers.add(peer or "(none: plaintext)")
        if peers or time.monotonic() > deadline:
            return peers
        time.sleep(0.1)


def _expected(admin: int, cluster: str) -> set[str]:
    dump = json.loads(_get(admin, "/config_dump"))
    endpoints = dump["config"]["clusters"].get(cluster, {}).get("endpoints", [])
    return {str(e.get("identity")) for e in endpoints if e.get("mtls")}


def describe_edges(edges: list[Edge]) -> list[str]:
    """One line per edge, e.g. ``frontend -> backend-v1: mTLS, peer spiffe://… verified``."""
    lines = []
    for e in edges:
        mtls = _metric(e.server_admin, "plait_inbound_connections_total", transport="mtls")
        plain = _metric(e.server_admin, "plait_inbound_connections_total", transport="plaintext")
        ok = _metric(e.client_admin, "plait_upstream_events_total", cluster=e.cluster,
                     event="tls_handshakes_ok")  # fmt: skip
        wrong = _metric(e.client_admin, "plait_upstream_events_total", cluster=e.cluster,
                        event="tls_peer_identity_mismatches")  # fmt: skip
        peers = ", ".join(sorted(_peers(e.access_log))) or "(no request logged)"
        servers = ", ".join(sorted(_expected(e.client_admin, e.cluster))) or "(none)"
        head = f"{e.client} -> {e.server}:"
        if mtls > 0 and plain == 0 and ok > 0 and wrong == 0:
            lines.append(f"{head} mTLS, peer {peers} verified by {e.server}; "
                         f"server {servers} verified by {e.client}")  # fmt: skip
        else:
            lines.append(f"{head} NOT mTLS only: {e.server} accepted {mtls:.0f} mTLS and "
                         f"{plain:.0f} plaintext connections (peers: {peers}); {e.client} "
                         f"completed {ok:.0f} handshakes, {wrong:.0f} identity "
                         "mismatches")  # fmt: skip
    return lines
