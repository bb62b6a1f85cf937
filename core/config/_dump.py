"""``MeshConfig`` → a JSON-serialisable dict, for the admin ``/config_dump``.

Keys are camelCase like the YAML. Durations are seconds (``null`` = disabled).
A filter is shown as its instance name, registry type, config and
``failStrategy``; a config object is converted generically (dataclass fields
with ``repr=True``, so precomputed ``repr=False`` fields stay out; bytes as
latin-1 text; regexes as their pattern; enums as their value).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from ._model import (
    Cluster,
    Endpoint,
    FilterEntry,
    ListenerConfig,
    MeshConfig,
    RouteMatch,
    RouteRule,
    Timeouts,
)

__all__ = ["dump_config", "jsonable"]


def dump_config(cfg: MeshConfig) -> dict[str, Any]:
    """The whole config as plain JSON types (``json.dumps`` accepts the result)."""
    return {
        "version": cfg.version,
        "sources": list(cfg.sources),
        "admin": {"bind": cfg.admin.bind, "port": cfg.admin.port},
        "maxRequestHeadersKb": cfg.max_request_headers_kb,
        "accessLog": cfg.access_log,
        "accessLogSampling": cfg.access_log_sampling,
        "tracing": _tracing(cfg),
        "listeners": [_listener(lis) for lis in cfg.listeners],
        "clusters": {name: _cluster(c) for name, c in cfg.clusters.items()},
        "routes": {
            key: {"service": table.service, "rules": [_rule(r) for r in table.rules]}
            for key, table in cfg.routes.items()
        },
    }


def _tracing(cfg: MeshConfig) -> dict[str, Any] | None:
    t = cfg.tracing
    if t is None:
        return None
    otlp = {"endpoint": t.endpoint, "protocol": t.protocol}
    return {"sampling": t.sampling, "otlp": otlp, "service": t.service}


def _timeouts(t: Timeouts) -> dict[str, Any]:
    return {
        "request": t.request,
        "backendRequest": t.backend_request,
        "connect": t.connect,
        "idle": t.idle,
        "requestHeaders": t.request_headers,
        "drain": t.drain,
        "streamIdle": t.stream_idle,
    }


def _filter(entry: FilterEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "type": entry.spec.name,
        "config": jsonable(entry.config),
        "failStrategy": entry.fail_strategy.value,
    }


def _listener(lis: ListenerConfig) -> dict[str, Any]:
    return {
        "name": lis.name,
        "direction": lis.direction.value,
        "bind": lis.bind,
        "port": lis.port,
        "protocol": lis.protocol.value,
        "routeTable": lis.route_table,
        "tcpCluster": lis.tcp_cluster,
        "tls": None
        if lis.tls is None
        else {"certFile": lis.tls.cert_file, "keyFile": lis.tls.key_file},
        "mtls": None if lis.mtls is None else lis.mtls.value,
        "filters": [_filter(f) for f in lis.filters],
        "timeouts": _timeouts(lis.timeouts),
        "requestMetrics": lis.request_metrics,
    }


def _cluster(c: Cluster) -> dict[str, Any]:
    return {
        "protocol": c.protocol.value,
        "endpoints": [_endpoint(e) for e in c.endpoints],
        "timeouts": _timeouts(c.timeouts),
        "maxIdlePerEndpoint": c.max_idle_per_endpoint,
        "policy": jsonable(c.policy),
    }


def _endpoint(e: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "address": e.address, "port": e.port, "weight": e.weight, "labels": dict(e.labels)
    }  # fmt: skip
    if e.identity is not None:
        out["identity"] = e.identity
    if e.mtls:
        out["mtls"] = True
    return out


def _match(m: RouteMatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.path is not None:
        out["path"] = {"type": m.path.type.value, "value": m.path.value}
    if m.method is not None:
        out["method"] = m.method
    for key, items in (("headers", m.headers), ("queryParams", m.query_params)):
        if items:
            out[key] = [{"name": h.name, "type": h.type.value, "value": h.value} for h in items]
    return out


def _rule(r: RouteRule) -> dict[str, Any]:
    return {
        "name": r.name,
        "matches": [_match(m) for m in r.matches],
        "backends": [{"cluster": b.cluster, "weight": b.weight} for b in r.backends],
        "filters": [_filter(f) for f in r.filters],
        "timeouts": {"request": r.timeouts.request, "backendRequest": r.timeouts.backend_request},
        "retry": jsonable(r.retry),
    }


def jsonable(obj: object) -> Any:
    """A filter config (or any value) as plain JSON types; unknown objects as ``repr``."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if isinstance(obj, re.Pattern):
        return obj.pattern
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: jsonable(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.repr and not f.name.startswith("_")
        }
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((jsonable(v) for v in obj), key=repr)
    return repr(obj)
