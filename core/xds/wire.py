"""The xDS v3 wire contract between plait's control plane (encoder) and sidecar (decoder).

This is the one module both sides import to agree on the wire: the control plane's encoder
(``plait.controlplane.xds``) and registry use only the names here, and the sidecar's ADS client
and decoder (the private modules of this package) read what it writes with the same names and
conversions. Changing a name or a conversion here changes both sides at once.

Theory of operation: everything a standard xDS client (Envoy, gRPC proxyless) understands
travels in standard fields; what only plait has travels in two plait-owned places:

* ``metadata.filter_metadata["plait"]`` (:data:`METADATA_KEY`) on Listeners, Routes, Clusters
  and LbEndpoints: a ``google.protobuf.Struct`` with the plait-only facts (protocol, rule
  index, rule filters, endpoint labels, timeouts that have no standard field, ...).
* plait filters as ``HttpFilter.typed_config`` = ``Any(xds.type.v3.TypedStruct)`` whose
  ``type_url`` is :data:`FILTER_TYPE_URL` and whose value is ``{"type", "config",
  "failStrategy"}``: the registry type, the config *as written* (the receiver parses it with its
  own registry) and the fail strategy.

What it holds:

* the resource types: the type URL names a resource type on the wire
  (``DiscoveryRequest.type_url``) and in the ``google.protobuf.Any`` that carries each
  resource. :data:`ORDER` is the push order Envoy recommends for ADS so that a client never
  sees a reference before its target exists (make-before-break, see "Eventual consistency
  considerations" in Envoy's xDS protocol doc): clusters, then their endpoints, then
  listeners, then the route configurations they name. :func:`combined_version` is the one
  version of a snapshot, computed the same way by the sidecar and by the control plane;
* the names of the plait-owned places and of the Envoy extensions plait uses;
* the exact conversions (``_convert``): durations are whole nanoseconds
  (``round(seconds * 1e9)``), and JSON numbers inside a ``Struct`` (always doubles on the wire)
  come back as ``int`` when they are integral (:func:`from_value`). Integers beyond 2**53
  cannot cross a ``Struct`` exactly; :func:`to_value` refuses them;
* the resilience config (``_resilience``): a rule's ``retry`` and a cluster's ``policy`` in
  plait's own form (:func:`retry_facts`, :func:`policy_facts` and their inverses), and the
  standard Envoy fields derived from them (:func:`retry_policy`, :func:`circuit_breakers`).

docs/xds.md has the full mapping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields
from typing import Final

from plait.core.config import Timeouts

from ._convert import duration, from_struct, from_value, seconds, to_struct, to_value
from ._resilience import (
    circuit_breakers,
    duration_text,
    policy_facts,
    policy_from_facts,
    retry_facts,
    retry_from_facts,
    retry_policy,
)

__all__ = [
    "ACCESS_LOG_FILE",
    "ACCESS_LOG_SAMPLING_KEY",
    "ALPN",
    "CLUSTER",
    "ENDPOINT",
    "FILTER_TYPE_URL",
    "HCM",
    "HTTP_PROTOCOL_OPTIONS",
    "LISTENER",
    "METADATA_KEY",
    "MTLS_FACT",
    "ORDER",
    "OTEL_TRACER",
    "OTLP_TRACES_PATH",
    "ROUTE",
    "ROUTER",
    "SDS_CERT",
    "SDS_ROOTS",
    "SECRET",
    "SERVED",
    "TCP_PROXY",
    "TIMEOUT_KEYS",
    "TLS_INSPECTOR",
    "TLS_SOCKET",
    "TRANSPORT_RAW",
    "TRANSPORT_TLS",
    "WILDCARD_TYPES",
    "circuit_breakers",
    "combined_version",
    "duration",
    "duration_text",
    "from_struct",
    "from_value",
    "policy_facts",
    "policy_from_facts",
    "retry_facts",
    "retry_from_facts",
    "retry_policy",
    "seconds",
    "short_name",
    "timeouts_extra",
    "to_struct",
    "to_value",
]

_PREFIX: Final = "type.googleapis.com/"

LISTENER: Final = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE: Final = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER: Final = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"

SECRET: Final = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

ORDER: Final = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
"""Push order over ADS: CDS → EDS → LDS → RDS (the types that make up a sidecar's config)."""

SERVED: Final = (*ORDER, SECRET)
"""Every type the control plane serves over ADS: the config types, then SDS secrets (the
trust bundle ``ROOTCA``), which stand apart from the config and its combined version."""

WILDCARD_TYPES: Final = frozenset({LISTENER, CLUSTER})
"""Types for which an empty ``resource_names`` on the first request means "everything" (the
legacy wildcard of the xDS protocol); for the others the client always names what it wants."""


def short_name(type_url: str) -> str:
    """The message name of a type URL (``Listener``, ``ClusterLoadAssignment``...)."""
    return type_url.rsplit(".", 1)[-1]


def combined_version(versions: Mapping[str, str]) -> str:
    """One version for the per-type versions ``{type URL: version}`` of a snapshot.

    The sidecar reports it as its config version (``/config_dump``); the control plane's
    registry computes it over the versions a node ACKed, so the two can be compared.
    """
    blob = "|".join(versions.get(t, "") for t in ORDER)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


METADATA_KEY: Final = "plait"
"""The ``filter_metadata`` key that holds plait's facts on Listener/Route/Cluster/LbEndpoint."""

FILTER_TYPE_URL: Final = "type.plait.dev/plait.filter.v1alpha1.Filter"
"""``TypedStruct.type_url`` of a plait filter (listener ``http_filters`` entries)."""

HCM: Final = "envoy.filters.network.http_connection_manager"
TCP_PROXY: Final = "envoy.filters.network.tcp_proxy"
ROUTER: Final = "envoy.filters.http.router"
TLS_SOCKET: Final = "envoy.transport_sockets.tls"
ACCESS_LOG_FILE: Final = "envoy.access_loggers.file"
ACCESS_LOG_SAMPLING_KEY: Final = "plait.access_log.sampling"
"""The ``runtime_filter`` key of an access log that logs a share of the successful requests."""
OTEL_TRACER: Final = "envoy.tracers.opentelemetry"
OTLP_TRACES_PATH: Final = "/v1/traces"
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


# -- inbound peer authentication (LDS) ----------------------------------------------------------
# STRICT: one chain whose socket is a DownstreamTlsContext requiring a client certificate, with
# the SDS secrets SDS_CERT and SDS_ROOTS over ADS (Istio's names: the sidecar's own identity).
# PERMISSIVE: a "tls" and a "raw_buffer" chain (filter_chain_match.transport_protocol) with the
# same network filters, and the TLS inspector listener filter. DISABLE: one plaintext chain and
# metadata.plait.mtls = "DISABLE" (Envoy's shape cannot tell it from "no policy").

SDS_CERT: Final = "default"
SDS_ROOTS: Final = "ROOTCA"
TLS_INSPECTOR: Final = "envoy.filters.listener.tls_inspector"
TRANSPORT_TLS: Final = "tls"
TRANSPORT_RAW: Final = "raw_buffer"
MTLS_FACT: Final = "mtls"
