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
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.controlplane.api import APIClient
from tests.support import PY, Proc, free_port, start, wait_port
from tests.support.controlplane import api_context, apply, plait, start_control_plane

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
    cp = start_control_plane(tmp, extra=("--xds-plaintext-port", str(free_port())))
    procs.append(cp)
    return ports, cp


def test_grpc_proxyless_client_follows_weights_and_header_matches(
    tmp_path: Path, procs: list[Proc]
) -> None:
    ports, cp = _backends_and_control_plane(tmp_path, procs)
    apply(cp, tmp_path, _mesh(*ports, 100, 0))
    client = _Client(tmp_path, cp.extra["xds_plaintext"])
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
    client = _Client(tmp_path, cp.extra["xds_plaintext"])
    try:
        assert client.count(10, "x-canary=1") == {"v2": 10}, client.log.read_text()[-2000:]
        assert client.count(10) == {"v1": 10}
    finally:
        client.close()


def _rename_mesh(backend: str, port: int, target: int) -> str:
    """Service "greeter" routed to the Service ``backend`` on ``port`` (one Workload on
    127.0.0.1:``target``)."""
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: greeter}}
spec:
  ports: [{{name: grpc, port: 50051, protocol: grpc}}]
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: {backend}}}
spec:
  ports: [{{name: grpc, port: {port}, protocol: grpc}}]
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: {backend}-0}}
spec:
  service: {backend}
  address: 127.0.0.1
  ports: [{{port: {port}, targetPort: {target}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: greeter}}
spec:
  parentRefs: [{{group: "", kind: Service, name: greeter, port: 50051}}]
  rules:
  - backendRefs: [{{name: {backend}, port: {port}}}]
"""


class _Flood:
    """A proxyless gRPC client with calls always in flight (``grpc_who.py flood``)."""

    def __init__(self, tmp: Path, xds_port: int, callers: int = 4) -> None:
        boot = tmp / "grpc-bootstrap.json"
        boot.write_text(json.dumps({
            "xds_servers": [{"server_uri": f"127.0.0.1:{xds_port}",
                             "channel_creds": [{"type": "insecure"}],
                             "server_features": ["xds_v3"]}],
            "node": {"id": "grpc-flood", "locality": {}},
        }))  # fmt: skip
        self.log = tmp / "grpc-flood.log"
        self.err = self.log.open("wb")
        self.p = subprocess.Popen(
            [PY, SCRIPT, "flood", "xds:///greeter", str(callers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env={"GRPC_XDS_BOOTSTRAP": str(boot), "PATH": "/usr/bin:/bin"},
        )
        assert self.p.stdout is not None
        assert self.p.stdout.readline() == "ready\n", self.log.read_text()[-2000:]

    def finish(self) -> dict[str, int]:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.close()
        line = self.p.stdout.readline()
        assert line, self.log.read_text()[-2000:]
        self.p.wait(10)
        return dict(json.loads(line))

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)
        for f in (self.p.stdout, self.err):
            if f is not None:
                f.close()


def _two_backends(tmp: Path, procs: list[Proc]) -> tuple[int, int]:
    ports = free_port(), free_port()
    for name, port in zip(("a", "b"), ports, strict=True):
        log = tmp / f"grpc-{name}.log"
        procs.append(Proc(start([PY, SCRIPT, "serve", str(port), name], log), log, port=port))
        wait_port(port)
    return ports


def _no_call_fails(tmp: Path, cp: Proc, changes: Callable[[], None]) -> None:
    """Run ``changes`` while a proxyless client keeps calls in flight: not one may fail,
    and both backends must have answered."""
    flood = _Flood(tmp, cp.extra["xds_plaintext"])
    try:
        changes()
        time.sleep(1.5)
        counts = flood.finish()
    finally:
        flood.close()
    errors = {k: v for k, v in counts.items() if k.startswith("error")}
    assert not errors, counts
    assert counts.get("a", 0) > 0 and counts.get("b", 0) > 0, counts


def test_grpc_client_loses_no_call_when_an_apply_renames_the_cluster(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """One apply changes the backend Service's port (Service, Workload and backendRef
    together): its cluster gets a new name. The old cluster stays served until the client
    has taken the route that no longer names it, so no call in flight fails."""
    a, b = _two_backends(tmp_path, procs)
    cp = start_control_plane(tmp_path, extra=("--xds-plaintext-port", str(free_port())))
    procs.append(cp)
    apply(cp, tmp_path, _rename_mesh("echo-x", 50051, a))

    def renames() -> None:
        for i, (port, target) in enumerate(((50052, b), (50053, a), (50054, b))):
            time.sleep(0.5)
            apply(cp, tmp_path, _rename_mesh("echo-x", port, target), name=f"rename-{i}.yaml")

    _no_call_fails(tmp_path, cp, renames)


def test_grpc_client_loses_no_call_when_the_old_service_is_deleted_right_after_a_move(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """An apply moves the route to a new Service; ~100 ms later the old Service (and its
    Workload) is deleted. Its cluster stays served until the client runs the new route."""
    a, b = _two_backends(tmp_path, procs)
    cp = start_control_plane(tmp_path, extra=("--xds-plaintext-port", str(free_port())))
    procs.append(cp)
    token = (tmp_path / "cp-data" / "admin-token").read_text().strip()
    api = APIClient(f"https://127.0.0.1:{cp.extra['api']}", token, ssl_context=api_context(cp))
    old, port = "greeter-0", 50051
    api.apply([("old.yaml", _rename_mesh(old, port, a))])

    def moves_then_deletes(old: str = old) -> None:
        # the delete lands in the same debounce window as the move, or just after its push
        for i, delay in enumerate((0.1, 0.02, 0.06, 0.14, 0.1, 0.2), start=1):
            time.sleep(0.5)
            new = f"greeter-{i}"
            api.apply([(f"{new}.yaml", _rename_mesh(new, port, b if i % 2 else a))])
            time.sleep(delay)
            gone = _rename_mesh(old, port, a).split("---\n")[1:3]  # its Service and Workload
            api.delete_documents([(f"{old}.yaml", "---\n".join(gone))])
            old = new

    _no_call_fails(tmp_path, cp, moves_then_deletes)


def test_check_stays_ok_when_a_proxyless_client_closes_its_channel(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """A gRPC client registered nothing: closing its channel is not a problem to report."""
    ports, cp = _backends_and_control_plane(tmp_path, procs)
    apply(cp, tmp_path, _mesh(*ports, 100, 0))
    client = _Client(tmp_path, cp.extra["xds_plaintext"])
    try:
        assert client.count(3) == {"v1": 3}, client.log.read_text()[-2000:]
        assert plait(cp, "check", check=False).returncode == 0
    finally:
        client.close()
    time.sleep(1.0)  # the control plane has seen the stream end
    r = plait(cp, "check", check=False)
    assert r.returncode == 0, r.stdout
