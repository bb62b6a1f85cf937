"""Configuration files for the upstream and the proxies under test.

All listen on 127.0.0.1 only. Keep-alive limits are raised everywhere so that no
server closes a connection mid-run (nginx closes after 1,000 requests by default,
both on client connections and on its upstream pool).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BODY",
    "METRICS_OFF",
    "NGINX_MAIN",
    "haproxy_conf",
    "nginx_proxy_conf",
    "nginx_upstream_conf",
    "plait_conf",
]

BODY = ("plait-bench " + "0123456789" * 9)[:100]
"""The upstream's response body: 100 bytes, no quotes or backslashes."""

NGINX_MAIN = """\
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    default_type text/plain;
{body}
}}
"""


def nginx_upstream_conf(d: Path, h1_port: int, h2_port: int) -> str:
    """The fixed upstream: ``return 200`` with :data:`BODY`, on HTTP/1.1 and on h2c.

    In nginx 1.22, ``listen ... http2`` on a cleartext port means h2c with prior
    knowledge (``http2 on;`` only exists from 1.25.1).
    """
    body = f"""\
    server {{
        listen 127.0.0.1:{h1_port} backlog=4096;
        listen 127.0.0.1:{h2_port} http2 backlog=4096;
        location / {{ return 200 "{BODY}"; }}
    }}"""
    return NGINX_MAIN.format(d=d, body=body)


def nginx_proxy_conf(d: Path, h1_port: int, h2_port: int, upstream_port: int) -> str:
    """nginx as a reverse proxy: 1 worker, HTTP/1.1 keep-alive pool to the upstream."""
    body = f"""\
    upstream up {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{h1_port} backlog=4096;
        listen 127.0.0.1:{h2_port} http2 backlog=4096;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""
    return NGINX_MAIN.format(d=d, body=body)


def haproxy_conf(h1_port: int, h2_port: int, upstream_port: int) -> str:
    """HAProxy: 1 thread, http mode, keep-alive on both sides, idle server connections shared.

    ``http-reuse always`` matches nginx's shared upstream pool; ``proto h2`` on a
    cleartext bind is h2c with prior knowledge.
    """
    return f"""\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:{h1_port} backlog 4096
    bind 127.0.0.1:{h2_port} proto h2 backlog 4096
    default_backend be

backend be
    server up 127.0.0.1:{upstream_port}
"""


RESILIENCE = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: upstream}
spec:
  parentRefs: [{name: upstream, port: 80}]
  rules:
  - backendRefs: [{name: upstream, port: 80}]
    retry: {codes: [503], attempts: 2}
---
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: upstream}
spec:
  targetRefs: [{kind: Service, name: upstream}]
"""
"""The default resilience stack: retry (with the default budget), circuit breaker and
outlier detection with their defaults, P2C peak-EWMA load balancing."""


def plait_conf(
    h1_port: int,
    h2_port: int,
    admin_port: int,
    upstream_port: int,
    filters: int,
    resilience: bool = False,
    chain: str | None = None,
) -> str:
    """The plait sidecar: an HTTP/1.1 and an h2c egress listener to the same upstream;
    ``chain`` (a YAML flow list) replaces the ``filters`` pass-through filters."""
    chain = chain or "[" + ", ".join(["{type: bench-passthrough}"] * filters) + "]"
    extra = RESILIENCE if resilience else ""
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: upstream}}
spec:
  ports: [{{name: http, port: 80, protocol: http}}]
  endpoints: [{{address: 127.0.0.1, port: {upstream_port}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: bench}}
spec:
  admin: {{port: {admin_port}}}
  egress:
  - port: {{number: {h1_port}, protocol: http}}
    service: upstream
    filters: {chain}
  - port: {{number: {h2_port}, protocol: http2}}
    service: upstream
    filters: {chain}
{extra}"""


METRICS_OFF = """\
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: plait-system}
spec:
  metrics: [{overrides: [{disabled: true}]}]
"""
"""Appended to ``plait_conf``'s text: the request metrics off (with no access log and no
tracing, all of observability off)."""


def observe(conf: str, how: str, access_log: Path, collector_port: int) -> str:
    """``conf`` (a Sidecar's) with ``TargetSpec.observe``'s observability: ``""`` as it is,
    ``none`` the request metrics off, ``all``/``log``/``trace``/``trace0`` as
    :func:`observed`."""
    if how == "none":
        return conf + METRICS_OFF
    if not how:
        return conf
    sampling = {"all": 1, "trace": 1, "trace0": 0}.get(how)
    return observed(conf, access_log, collector_port, how in ("all", "log"), sampling)


def observed(
    conf: str,
    access_log: Path,
    collector_port: int,
    log: bool = True,
    sampling: float | None = 1,
) -> str:
    """``conf`` (``plait_conf``'s) with an access log (``log``) and tracing at ``sampling``
    percent to an OTLP/HTTP collector on ``collector_port`` (``None``: no tracing)."""
    spec = "  admin: {port: "
    at = conf.index(spec)
    extra = f"  accessLog: {{path: {access_log}}}\n" if log else ""
    if sampling is not None:
        endpoint = f"http://127.0.0.1:{collector_port}"
        extra += f"  tracing: {{sampling: {sampling}, otlp: {{endpoint: '{endpoint}'}}}}\n"
    return conf[:at] + extra + conf[at:]
