"""Helpers of the rotation soak tests: a two-sidecar mTLS mesh on a real control plane, and a
load generator that counts every failure.

The mesh: ``client`` sidecar (egress port) -> ``web`` sidecar (ingress port, STRICT mTLS)
-> an echo app. Both sidecars get their identity from the control plane's CA with a join
token, so their leaves rotate at the control plane's ``--cert-ttl``. The ``web`` Workload
is written with ``tlsMode: mutual`` so that the client sidecar originates mTLS to it.

The load (:class:`Load`): keep-alive clients, clients with a new connection per request,
and bursts that make the client sidecar open (and later close) upstream connections.
Every answer other than 200 with the app's body, and every connection error or timeout,
is a failure (kept, with its time, for the report).
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import Proc, free_port, start_echo
from tests.support.controlplane import apply, plait, start_control_plane, start_xds_sidecar
from tests.support.mtls import metric

TD = "plait.local"
WEB = f"spiffe://{TD}/ns/default/sa/web"
CLIENT = f"spiffe://{TD}/ns/default/sa/client"
RENEWED = re.compile(r"identity: (first|renewed) certificate for (\S+), serial ([0-9a-f]+)")


def _mesh(app: int, ingress: int, egress: int) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {{name: web-1}}
spec:
  service: web
  serviceAccount: web
  address: 127.0.0.1
  tlsMode: mutual
  ports: [{{port: 80, targetPort: {ingress}}}]
---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: web}}
spec:
  targetRefs: [{{kind: Service, name: web}}]
  timeouts: {{idle: 2s}}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: web, labels: {{app: web}}}}
spec:
  ingress:
  - name: in
    port: {{number: {ingress}, protocol: http}}
    defaultEndpoint: 127.0.0.1:{app}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  egress:
  - {{name: out, port: {{number: {egress}, protocol: http}}, service: web}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: plait-system}}
spec: {{mtls: {{mode: STRICT}}}}
"""


@dataclass
class RotationMesh:
    cp: Proc
    web: Proc
    client: Proc
    ingress: int
    egress: int


def start_mesh(tmp: Path, procs: list[Proc], ttl: int = 60) -> RotationMesh:
    """The control plane (leaf TTL ``ttl`` s), the app and both sidecars, ready."""
    app = start_echo(tmp, "web-app")
    procs.append(app)
    cp = start_control_plane(tmp, extra=("--cert-ttl", str(ttl)))
    procs.append(cp)
    ingress, egress = free_port(), free_port()
    apply(cp, tmp, _mesh(app.port, ingress, egress))
    ca = f"https://127.0.0.1:{cp.extra['api']}"
    sidecars = []
    for name in ("web", "client"):
        token = plait(cp, "workload", "token", "-n", "default", "-s", name).stdout.strip()
        where = tmp / name
        where.mkdir()
        env = {"PLAIT_JOIN_TOKEN": token, "PLAIT_CA_SERVER": ca}
        sidecar = start_xds_sidecar(where, cp, name, "--service-account", name, env=env)
        procs.append(sidecar)
        sidecars.append(sidecar)
    return RotationMesh(cp, sidecars[0], sidecars[1], ingress, egress)


def serials(sidecar: Proc) -> list[str]:
    """The serial of every certificate the sidecar's identity agent installed, in order."""
    return [m.group(3) for m in RENEWED.finditer(sidecar.log.read_text())]


def mtls_connections(web: Proc) -> float:
    labels = {"listener": "in", "transport": "mtls"}
    return metric(web.admin_port, "plait_inbound_connections_total", **labels)


@dataclass
class Load:
    """Closed-loop HTTP/1.1 clients against ``port``; ``stop()`` joins them.

    ``keepalive`` clients each keep one connection; ``fresh`` clients open a new one per
    request. ``burst`` more clients fire together every ``period`` seconds, each a request
    that the app holds for ``hold`` seconds: the client sidecar's pool has to open
    connections beyond the steady ones, which close again after the pool's idle timeout,
    so new mTLS handshakes keep happening between the sidecars all along.
    """

    port: int
    keepalive: int = 32
    fresh: int = 4
    burst: int = 16
    period: float = 4.0
    hold: float = 0.5
    timeout: float = 15.0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        kinds = ["keepalive"] * self.keepalive + ["fresh"] * self.fresh + ["burst"] * self.burst
        for kind in kinds:
            t = threading.Thread(target=self._run, args=(kind,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + self.period + 5)

    def _run(self, kind: str) -> None:
        conn: http.client.HTTPConnection | None = None
        path = f"/delay/{self.hold}" if kind == "burst" else "/soak"
        tick = time.monotonic()
        while not self._stop.is_set():
            if kind == "burst":
                tick += self.period
                if self._stop.wait(max(0.0, tick - time.monotonic())):
                    break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            failure = self._one(conn, path, keep=kind == "keepalive")
            if failure is not None or kind != "keepalive":
                conn.close()
                conn = None
            with self._lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {path} {failure}")
        if conn is not None:
            conn.close()

    @staticmethod
    def _one(conn: http.client.HTTPConnection, path: str, keep: bool) -> str | None:
        """One request; the failure, or None for a 200 with the app's echo of ``path``."""
        try:
            conn.request("GET", path, headers={} if keep else {"connection": "close"})
            r = conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        if r.status != 200 or f'"{path}"'.encode() not in body:
            return f"{r.status} {body[:120]!r}"
        return None
