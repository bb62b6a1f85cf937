"""Interop: gRPC's own proxyless xDS client takes its config from plait's control plane.

No sidecar here: the gRPC client (``xds:///greeter``, ``GRPC_XDS_BOOTSTRAP``
pointing at plait's xDS port) fetches Listener → RouteConfiguration →
Cluster → ClusterLoadAssignment itself and balances over the backends that
are registered with plait as Workloads. Routing changes are made with
``plait apply`` and followed by the running client.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import PY, Proc, free_port, start, wait_port
from tests.support.controlplane import apply, start_control_plane

pytestmark = pytest.mark.e2e

SCRIPT = str(Path(__file__).resolve().parent.parent / "support" / "grpc_who.py")


def _mesh(v1: int, v2: int, w1: int, w2: int) -> str:
    services = "".join(
        f"""---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{name: grpc, port: 50051, protocol: grpc}}]
"""
        for name in ("greeter", "greeter-v1", "greeter-v2")
    )
    workloads = "".join(
        f"""---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: {name}-0}}
spec:
  service: {name}
  address: 127.0.0.1
  ports: [{{port: 50051, targetPort: {port}}}]
"""
        for name, port in (("greeter-v1", v1), ("greeter-v2", v2))
    )
    return f"""{services}{workloads}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: greeter}}
spec:
  parentRefs: [{{group: "", kind: Service, name: greeter, port: 50051}}]
  rules:
  - matches: [{{headers: [{{name: x-canary, value: "1"}}]}}]
    backendRefs: [{{name: greeter-v2, port: 50051}}]
  - backendRefs:
    - {{name: greeter-v1, port: 50051, weight: {w1}}}
    - {{name: greeter-v2, port: 50051, weight: {w2}}}
"""


class _Client:
    def __init__(self, tmp: Path, xds_port: int) -> None:
        boot = tmp / "grpc-bootstrap.json"
        boot.write_text(json.dumps({
            "xds_servers": [{"server_uri": f"127.0.0.1:{xds_port}",
                             "channel_creds": [{"type": "insecure"}],
                             "server_features": ["xds_v3"]}],
            "node": {"id": "grpc-proxyless-test", "locality": {}},
        }))  # fmt: skip
        self.log = tmp / "grpc-client.log"
        self.err = self.log.open("wb")
        self.p = subprocess.Popen(
            [PY, SCRIPT, "client", "xds:///greeter"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env={"GRPC_XDS_BOOTSTRAP": str(boot), "PATH": "/usr/bin:/bin"},
        )

    def count(self, n: int, *headers: str) -> dict[str, int]:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(" ".join([str(n), *headers]) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, self.log.read_text()
        return dict(json.loads(line))

    def close(self) -> None:
        self.p.kill()
        self.p.wait(5)
        for f in (self.p.stdin, self.p.stdout, self.err):
            if f is not None:
                f.close()


def _backends_and_control_plane(tmp: Path, procs: list[Proc]) -> tuple[tuple[int, int], Proc]:
    """gRPC backends "v1" and "v2" (each answers its name) and a control plane."""
    ports = free_port(), free_port()
    for name, port in zip(("v1", "v2"), ports, strict=True):
        log = tmp / f"grpc-{name}.log"
        procs.append(Proc(start([PY, SCRIPT, "serve", str(port), name], log), log, port=port))
        wait_port(port)
    cp = start_control_plane(tmp)
    procs.append(cp)
    return ports, cp


def test_grpc_proxyless_client_follows_weights_and_header_matches(
    tmp_path: Path, procs: list[Proc]
) -> None:
    ports, cp = _backends_and_control_plane(tmp_path, procs)
    apply(cp, tmp_path, _mesh(*ports, 100, 0))
    client = _Client(tmp_path, cp.extra["xds"])
    try:
        assert client.count(1) == {"v1": 1}, client.log.read_text()[-2000:]
        assert client.count(50) == {"v1": 50}
        assert client.count(20, "x-canary=1") == {"v2": 20}
        apply(cp, tmp_path, _mesh(*ports, 50, 50))
        # the running client follows the change (gRPC applies it on its own schedule)
        for _ in range(100):
            if client.count(20).get("v2", 0) > 0:
                break
        seen = client.count(200)
        assert set(seen) == {"v1", "v2"}, seen
        assert 60 <= seen["v2"] <= 140, seen  # binomial(200, 0.5): sd 7.1
        assert client.count(20, "x-canary=1") == {"v2": 20}
    finally:
        client.close()


_RESILIENCE = """\
---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: greeter}
spec:
  targetRefs: [{name: greeter-v1}, {name: greeter-v2}]
  circuitBreaker: {maxConnections: 64, maxPendingRequests: 0, maxRequests: 100, maxRetries: 5}
  outlierDetection: {consecutive5xx: 3, failurePercentage: {threshold: 90}}
  loadBalancer: {type: RingHash, ringHash: {header: x-user}}
  timeouts: {connect: 2s, streamIdle: 5s}
"""


def test_grpc_proxyless_client_accepts_retry_policy_and_circuit_breakers(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The standard fields plait mirrors (Route ``retry_policy``: num_retries, retry_on,
    retriable_status_codes, retry_back_off, per_try_timeout; Cluster ``circuit_breakers``) are
    valid for gRPC: a client whose first config has them gets answers (a NACK would leave it
    without a route, and every RPC would time out)."""
    ports, cp = _backends_and_control_plane(tmp_path, procs)
    retry = (
        "    retry: {codes: [503], attempts: 2, backoff: 10ms,\n"
        "            plait: {maxBackoff: 50ms, retryOn: [unavailable, 5xx, timeout, reset]}}\n"
        "    timeouts: {request: 4s, backendRequest: 2s}\n"
    )
    text = (
        _mesh(*ports, 100, 0).replace(
            "    backendRefs: [{name: greeter-v2, port: 50051}]\n",
            "    backendRefs: [{name: greeter-v2, port: 50051}]\n" + retry,
        )
        + _RESILIENCE
    )
    assert text.count("retry:") == 1
    apply(cp, tmp_path, text)
    client = _Client(tmp_path, cp.extra["xds"])
    try:
        assert client.count(10, "x-canary=1") == {"v2": 10}, client.log.read_text()[-2000:]
        assert client.count(10) == {"v1": 10}
    finally:
        client.close()
