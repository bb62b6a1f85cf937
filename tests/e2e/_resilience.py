"""Shared helpers for the resilience end-to-end tests: config text and load loops."""

from __future__ import annotations

import http.client
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import Proc, free_port, http_get, start_sidecar, write_config


def mesh_config(
    endpoints: list[int],
    listen: int,
    admin: int,
    *,
    rule: str = "",
    policy: str | None = None,
    filters: str = "[]",
    protocol: str = "http",
    access_log: str | None = None,
) -> str:
    """One Service ``upstream`` (port 80) over ``endpoints``, an HTTPRoute whose single
    rule sends everything there (plus ``rule`` lines, e.g. ``retry: {...}``), an optional
    BackendTrafficPolicy ``spec`` body (``policy``), and one egress listener."""
    eps = ", ".join(f"{{address: 127.0.0.1, port: {p}}}" for p in endpoints)
    extra = "".join(f"\n    {line}" for line in rule.strip().splitlines())
    text = f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: upstream}}
spec:
  ports: [{{port: 80, protocol: {protocol}}}]
  endpoints: [{eps}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: upstream}}
spec:
  parentRefs: [{{name: upstream, port: 80}}]
  rules:
  - backendRefs: [{{name: upstream, port: 80}}]{extra}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: test}}
spec:
  admin: {{port: {admin}}}{f"{chr(10)}  accessLog: {{path: {access_log}}}" if access_log else ""}
  egress:
  - name: out
    port: {{number: {listen}, protocol: {protocol}}}
    service: upstream
    filters: {filters}
"""
    if policy is not None:
        body = "".join(f"\n  {line}" for line in policy.strip().splitlines())
        text += f"""---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: upstream}}
spec:
  targetRefs: [{{kind: Service, name: upstream}}]{body}
"""
    return text


def sidecar(tmp: Path, procs: list[Proc], endpoints: list[int], **kw: str | None) -> int:
    """Start a sidecar for :func:`mesh_config`; returns the listener port."""
    listen, admin = free_port(), free_port()
    text = mesh_config(endpoints, listen, admin, **kw)  # type: ignore[arg-type]
    proc = start_sidecar(write_config(tmp, text, f"mesh-{listen}.yaml"), admin)
    procs.append(proc)
    return listen


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    servers: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def add(self, status: int, headers: dict[str, str], seconds: float) -> None:
        self.statuses[status] += 1
        self.servers[headers.get("x-served-by", "")] += 1
        self.reasons[headers.get("x-plait-reason", "")] += 1
        self.latencies.append(seconds)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


TIMEOUT = 10.0


def sequential(port: int, n: int, path: str = "/", headers: dict[str, str] | None = None,
               method: str = "GET", tally: Tally | None = None) -> Tally:  # fmt: skip
    """``n`` requests one after the other on one keep-alive connection."""
    tally = tally or Tally()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        for _ in range(n):
            t0 = time.monotonic()
            conn.request(method, path, headers=headers or {})
            r = conn.getresponse()
            r.read()
            tally.add(r.status, {k.lower(): v for k, v in r.getheaders()}, time.monotonic() - t0)
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    finally:
        conn.close()
    return tally


def concurrent(port: int, n: int, workers: int, path: str = "/") -> Tally:
    """``n`` requests spread over ``workers`` keep-alive connections."""
    tallies = [Tally() for _ in range(workers)]
    share = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: sequential(port, share[i], path, tally=tallies[i]), range(workers)))
    out = Tally()
    for t in tallies:
        out.statuses += t.statuses
        out.servers += t.servers
        out.reasons += t.reasons
        out.latencies += t.latencies
    return out


def metric(admin: int, name: str, **labels: str) -> float:
    """The sum of the samples in the sidecar's ``/metrics`` that have these labels (0 when
    absent): a request counter has more labels (the mesh's) than a test names."""
    _, _, body = http_get(admin, "/metrics")
    want = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            total += float(line.rsplit(" ", 1)[1])
        if line.startswith(name + " ") and not labels:
            return float(line.rsplit(" ", 1)[1])
    return total


def admin_port(procs: list[Proc]) -> int:
    return procs[-1].admin_port
