"""The xDS v3 wire contract between plait's control plane (encoder) and sidecar (decoder).

Theory of operation: everything a standard xDS client (Envoy, gRPC proxyless) understands
travels in standard fields; what only plait has travels in two plait-owned places:

* ``metadata.filter_metadata["plait"]`` (:data:`METADATA_KEY`) on Listeners, Routes, Clusters
  and LbEndpoints: a ``google.protobuf.Struct`` with the plait-only facts (protocol, rule
  index, rule filters, endpoint labels, timeouts that have no standard field, ...).
* plait filters as ``HttpFilter.typed_config`` = ``Any(xds.type.v3.TypedStruct)`` whose
  ``type_url`` is :data:`FILTER_TYPE_URL` and whose value is ``{"type", "config",
  "failStrategy"}``: the registry type, the config *as written* (the receiver parses it with its
  own registry) and the fail strategy.

This module holds the names both sides must agree on and the conversions both sides use, so
that a value survives the trip exactly: durations are whole nanoseconds
(``round(seconds * 1e9)``), and JSON numbers inside a ``Struct`` (always doubles on the wire)
come back as ``int`` when they are integral (:func:`from_value`). Integers beyond 2**53 cannot
cross a ``Struct`` exactly; :func:`to_value` refuses them.

docs/xds.md has the full mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Final

from google.protobuf import duration_pb2, struct_pb2  # type: ignore[import-untyped]

from plait.core.config import Timeouts

__all__ = [
    "ACCESS_LOG_FILE",
    "FILTER_TYPE_URL",
    "HCM",
    "HTTP_PROTOCOL_OPTIONS",
    "METADATA_KEY",
    "ROUTER",
    "TCP_PROXY",
    "TIMEOUT_KEYS",
    "TLS_SOCKET",
    "duration",
    "from_struct",
    "from_value",
    "seconds",
    "timeouts_extra",
    "to_struct",
    "to_value",
]

METADATA_KEY: Final = "plait"
"""The ``filter_metadata`` key that holds plait's facts on Listener/Route/Cluster/LbEndpoint."""

FILTER_TYPE_URL: Final = "type.plait.dev/plait.filter.v1alpha1.Filter"
"""``TypedStruct.type_url`` of a plait filter (listener ``http_filters`` entries)."""

HCM: Final = "envoy.filters.network.http_connection_manager"
TCP_PROXY: Final = "envoy.filters.network.tcp_proxy"
ROUTER: Final = "envoy.filters.http.router"
TLS_SOCKET: Final = "envoy.transport_sockets.tls"
ACCESS_LOG_FILE: Final = "envoy.access_loggers.file"
HTTP_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
"""The ``Cluster.typed_extension_protocol_options`` key for upstream HTTP options."""

ALPN: Final = ("h2", "http/1.1")
"""What a plait TLS listener offers (``ListenerTLS``)."""

TIMEOUT_KEYS: Final = {
    "request": "request",
    "backend_request": "backendRequest",
    "connect": "connect",
    "idle": "idle",
    "request_headers": "requestHeaders",
    "drain": "drain",
    "stream_idle": "streamIdle",
}
"""``Timeouts`` field → its key in ``metadata["plait"]["timeouts"]``."""

_MAX_EXACT_INT: Final = 2**53


def duration(value: float) -> Any:
    """A ``google.protobuf.Duration`` of ``value`` seconds (whole nanoseconds)."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(value * 1e9))
    return d


def seconds(d: Any) -> float:
    """The seconds of a ``google.protobuf.Duration``."""
    return int(d.ToNanoseconds()) / 1e9


def to_value(raw: object, where: str = "config") -> Any:
    """A JSON-compatible value as a ``google.protobuf.Value``; ``ValueError`` if it is not."""
    v = struct_pb2.Value()
    if raw is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(raw, bool):
        v.bool_value = raw
    elif isinstance(raw, int):
        if abs(raw) > _MAX_EXACT_INT:
            raise ValueError(f"{where}: integer {raw} does not fit a JSON number exactly")
        v.number_value = raw
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError(f"{where}: {raw} is not a JSON number")
        v.number_value = raw
    elif isinstance(raw, str):
        v.string_value = raw
    elif isinstance(raw, Mapping):
        v.struct_value.CopyFrom(to_struct(raw, where))
    elif isinstance(raw, list | tuple):
        v.list_value.values.extend(to_value(x, f"{where}[{i}]") for i, x in enumerate(raw))
    else:
        raise ValueError(f"{where}: {type(raw).__name__} is not JSON-compatible")
    return v


def to_struct(raw: Mapping[str, object], where: str = "config") -> Any:
    s = struct_pb2.Struct()
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: key {key!r} is not a string")
        s.fields[key].CopyFrom(to_value(value, f"{where}.{key}"))
    return s


def from_value(v: Any) -> Any:
    """A ``google.protobuf.Value`` as plain JSON values; integral numbers come back as ``int``."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = float(v.number_value)
        return int(n) if n.is_integer() and abs(n) <= _MAX_EXACT_INT else n
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return bool(v.bool_value)
    if kind == "struct_value":
        return from_struct(v.struct_value)
    if kind == "list_value":
        return [from_value(x) for x in v.list_value.values]
    return None  # null_value, or unset


def from_struct(s: Any) -> dict[str, Any]:
    return {str(k): from_value(v) for k, v in s.fields.items()}


def timeouts_extra(t: Timeouts, carried: frozenset[str]) -> dict[str, float | None]:
    """The fields of ``t`` that no standard field carries and that differ from the default.

    ``carried`` names the ``Timeouts`` fields the resource encodes in standard xDS fields.
    """
    default = Timeouts()
    out: dict[str, float | None] = {}
    for f in fields(Timeouts):
        value = getattr(t, f.name)
        if f.name not in carried and value != getattr(default, f.name):
            out[TIMEOUT_KEYS[f.name]] = value
    return out
