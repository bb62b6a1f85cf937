"""Configs and helpers shared by the xDS encode/decode tests (control plane and sidecar side)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plait.controlplane.xds._encode import encode_mesh
from plait.core.config import MeshConfig, parse_text, resources_of, translate
from plait.core.xds._decode import decode_mesh
from plait.sdk import FilterSpec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"

Resources = dict[str, dict[str, Any]]

RICH = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: web}
spec:
  ports:
  - {name: http, port: 8080, protocol: http}
  - {name: h2, port: 9090, protocol: http2}
  - {name: grpc, port: 50051, protocol: grpc}
  endpoints:
  - {address: 10.0.0.1, port: 8080, weight: 3, labels: {version: v1, zone: a}}
  - {address: "fd00::2", port: 8081}
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: web-v2}
spec:
  ports: [{name: http, port: 8080, protocol: http}]
  endpoints: [{address: 10.0.0.2, port: 8080, labels: {version: v2}}]
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: empty}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: db}
spec:
  ports: [{name: pg, port: 5432, protocol: tcp}]
  endpoints: [{address: 10.0.0.9, port: 5432}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web, port: 8080}]
  rules:
  - name: multi
    matches:
    - path: {type: Exact, value: /exact}
    - path: {type: PathPrefix, value: /api/}
      method: POST
    - path: {type: RegularExpression, value: "/re/[0-9]+"}
      headers:
      - {name: X-Env, value: prod}
      - {name: x-id, type: RegularExpression, value: "[a-f]+"}
      queryParams:
      - {name: q, value: "1"}
      - {name: Page, type: RegularExpression, value: "[0-9]+"}
    backendRefs:
    - {name: web, port: 8080, weight: 3}
    - {name: web-v2, port: 8080, weight: 1}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: multi}]}
    timeouts: {request: 2500ms, backendRequest: 500ms}
  - name: heavy
    matches: [{headers: [{name: x-heavy, value: "1"}]}]
    backendRefs: [{name: web-v2, port: 8080, weight: 7}]
  - name: gone
    matches: [{path: {type: PathPrefix, value: /gone}}]
  - name: rest
    backendRefs: [{name: web, port: 8080}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: s}
spec:
  admin: {port: 15000}
  drainTimeout: 7s
  maxRequestHeadersKb: 96
  accessLog: {path: /dev/stdout}
  egress:
  - port: {number: 18080, protocol: http}
    service: web
    filters:
    - type: response-header-modifier
      config: {add: [{name: x-n, value: "1"}]}
      failStrategy: FailOpen
    timeouts: {request: 15s, idle: 20m, requestHeaders: 3s}
  - port: {number: 18090, protocol: http2}
    service: web
    servicePort: 9090
  - port: {number: 18443, protocol: grpc}
    service: web
    servicePort: 50051
  - port: {number: 15432, protocol: tcp}
    service: db
    timeouts: {idle: 30m}
  ingress:
  - port: {number: 18201, protocol: http}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:18091
"""


def mesh(
    types: Mapping[str, FilterSpec[Any]], text: str = RICH, sidecar: str | None = None, **kw: Any
) -> MeshConfig:
    """Translate YAML text the way the control plane does (``unknown_filters`` via ``kw``)."""
    res = resources_of(parse_text(text, "mesh.yaml"), ["mesh.yaml"])
    return translate(res, types, sidecar=sidecar, **kw)


def over_the_wire(resources: Mapping[str, Mapping[str, Any]]) -> Resources:
    """Serialize every resource to bytes and parse it back, as it travels."""
    return {
        t: {name: type(m).FromString(m.SerializeToString()) for name, m in by_name.items()}
        for t, by_name in resources.items()
    }


def round_trip(cfg: MeshConfig, types: Mapping[str, FilterSpec[Any]]) -> MeshConfig:
    return decode_mesh(over_the_wire(encode_mesh(cfg)), types, version="v1", admin=cfg.admin)


def assert_same(got: MeshConfig, want: MeshConfig) -> None:
    """Equal as the runtime sees them (``version``/``sources`` are the caller's)."""
    assert got.listeners == want.listeners
    assert dict(got.clusters) == dict(want.clusters)
    assert dict(got.routes) == dict(want.routes)
    assert got.admin == want.admin
    if any(lis.protocol.is_http for lis in want.listeners):
        assert got.max_request_headers_kb == want.max_request_headers_kb
    if want.listeners:
        assert got.access_log == want.access_log
        assert got.access_log_sampling == want.access_log_sampling
    if any(lis.protocol.is_http for lis in want.listeners):
        assert got.tracing == want.tracing
    assert got.version == "v1" and got.sources == ("xds",)


RESILIENT = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: api}
spec:
  ports:
  - {name: http, port: 8080}
  - {name: grpc, port: 50051, protocol: grpc}
  endpoints: [{address: 10.0.1.1, port: 8080}, {address: 10.0.1.2, port: 8080, weight: 2}]
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: api-canary}
spec:
  ports: [{name: http, port: 8080}]
  endpoints: [{address: 10.0.1.3, port: 8080}]
---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: api}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  retryConstraint:
    budget: {percent: 35, interval: 1m30s}
    minRetryRate: {count: 4, interval: 1500ms}
  circuitBreaker: {maxConnections: 64, maxPendingRequests: 0, maxRequests: 128, maxRetries: 7}
  outlierDetection:
    consecutive5xx: 0
    consecutiveGatewayErrors: 3
    interval: 2s500ms
    baseEjectionTime: 15s
    maxEjectionTime: 2m
    maxEjectionPercent: 50
    successRate: {minimumHosts: 3, requestVolume: 20, stdevFactor: 1333}
    failurePercentage: {threshold: 0, minimumHosts: 2, requestVolume: 10}
  loadBalancer: {type: RingHash, ringHash: {header: X-User}}
  timeouts: {connect: 250ms, idle: 90s, streamIdle: 1s700ms}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: canary}
spec:
  targetRefs: [{name: api-canary}]
  loadBalancer: {type: RoundRobin}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api}
spec:
  parentRefs: [{name: api, port: 8080}]
  rules:
  - name: split
    matches: [{path: {type: PathPrefix, value: /v1}}]
    backendRefs:
    - {name: api, port: 8080, weight: 9}
    - {name: api-canary, port: 8080, weight: 1}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: split}]}
    retry:
      codes: [503, 429]
      attempts: 3
      backoff: 40ms
      plait:
        maxBackoff: 1s
        retryOn: [reset, 5xx, timeout, unavailable]
        retryNonIdempotent: true
        maxReplayBytes: 1024
    timeouts: {request: 3s, backendRequest: 750ms}
  - name: plain-retry
    matches: [{path: {type: Exact, value: /once}}]
    backendRefs: [{name: api, port: 8080}]
    retry: {attempts: 1, backoff: 300ms}
  - name: no-retries
    matches: [{path: {type: Exact, value: /never}}]
    backendRefs: [{name: api-canary, port: 8080}]
    retry: {attempts: 0, codes: [500]}
  - name: nowhere
    matches: [{path: {type: Exact, value: /nowhere}}]
    retry: {attempts: 2}
  - name: timeouts-only
    matches: [{path: {type: Exact, value: /slow}}]
    backendRefs: [{name: api, port: 8080}]
    retry: {attempts: 2, plait: {retryOn: [timeout]}}
    timeouts: {backendRequest: 100ms}
  - name: rest
    backendRefs: [{name: api, port: 8080}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: s}
spec:
  egress:
  - port: {number: 18080, protocol: http}
    service: api
  - port: {number: 18443, protocol: grpc}
    service: api
    servicePort: 50051
"""
"""Every BackendTrafficPolicy field, and rules with ``retry`` (GEP-1731 + ``retry.plait``)."""
