"""``Cluster`` → ``envoy.config.cluster.v3.Cluster`` (CDS) + ``ClusterLoadAssignment`` (EDS).

Cluster: ``type: EDS`` with ``eds_cluster_config{eds_config: ADS, service_name: name}``,
``connect_timeout`` = ``timeouts.connect``, ``lb_policy: ROUND_ROBIN``. For HTTP protocols,
``typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]``
says which HTTP the endpoints speak (``explicit_http_config``: ``http2_protocol_options`` for
``http2``/``grpc``, ``http_protocol_options`` for ``http``) and carries ``timeouts.idle`` as
``common_http_protocol_options.idle_timeout``. ``metadata["plait"]``: ``protocol`` (``grpc``
and ``http2``, ``tcp`` and ``http``, look alike on the wire), ``maxIdlePerEndpoint``, the
``timeouts`` no standard field carries (a tcp cluster's ``idle``, ``streamIdle``), and
``policy`` (the BackendTrafficPolicy as YAML would write it), whose limits are mirrored in
``circuit_breakers`` (``core.xds.wire``).

ClusterLoadAssignment: one ``LocalityLbEndpoints`` with ``load_balancing_weight: 1`` (gRPC
ignores a locality without a weight) and an empty but present ``locality`` (gRPC NACKs an
assignment without one), holding every endpoint as an ``LbEndpoint``: socket address,
``load_balancing_weight`` = the endpoint weight, ``health_status: HEALTHY`` (plait's static and
registered endpoints have no health checking yet), labels in ``metadata["plait"]["labels"]``,
the endpoint's SPIFFE ID in ``metadata["plait"]["identity"]`` and ``"mtls": true`` when it
accepts mesh mTLS. Envoy's ``UpstreamTlsContext`` (a ``transport_socket``) names one SAN list
per cluster, the union of the Service's accounts; plait checks each endpoint against its own
workload's ID, a narrower check, so the ID travels per endpoint in metadata and the cluster's
``tls.mode`` override rides in its ``policy``. A
cluster without endpoints gets an assignment without localities, so the client knows the set is
empty rather than still coming. EDS endpoints must be IP addresses (Envoy and gRPC do not
resolve names in EDS): an endpoint with a DNS name is refused here, naming the cluster.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from envoy.config.cluster.v3 import cluster_pb2  # type: ignore[import-untyped]
from envoy.config.core.v3 import (  # type: ignore[import-untyped]
    address_pb2,
    health_check_pb2,
    protocol_pb2,
)
from envoy.config.endpoint.v3 import (  # type: ignore[import-untyped]
    endpoint_components_pb2,
    endpoint_pb2,
)
from envoy.extensions.upstreams.http.v3 import (  # type: ignore[import-untyped]
    http_protocol_options_pb2 as upstream_http,
)

from plait.core.config import Cluster, Endpoint, Protocol
from plait.core.xds.wire import (
    HTTP_PROTOCOL_OPTIONS,
    circuit_breakers,
    duration,
    policy_facts,
    timeouts_extra,
)
from plait.sdk import ConfigError

from ._encode_base import Message, ads_source, metadata, pack

__all__ = ["encode_cluster", "encode_endpoints"]

_HTTP_CARRIED: Final = frozenset({"connect", "idle"})
_TCP_CARRIED: Final = frozenset({"connect"})


def encode_cluster(cluster: Cluster) -> Message:
    """The CDS Cluster for ``cluster``; its endpoints go in :func:`encode_endpoints`."""
    tcp = cluster.protocol is Protocol.TCP
    facts: dict[str, object] = {
        "protocol": cluster.protocol.value,
        "maxIdlePerEndpoint": cluster.max_idle_per_endpoint,
    }
    if extra := timeouts_extra(cluster.timeouts, _TCP_CARRIED if tcp else _HTTP_CARRIED):
        facts["timeouts"] = extra
    if cluster.policy is not None:
        try:
            facts["policy"] = policy_facts(cluster.policy, f"Cluster {cluster.name}: policy")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    out = cluster_pb2.Cluster(
        name=cluster.name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_source(), service_name=cluster.name
        ),
        connect_timeout=duration(cluster.timeouts.connect),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        metadata=metadata(facts, f"Cluster {cluster.name}"),
    )
    if (breakers := circuit_breakers(cluster.policy)) is not None:
        out.circuit_breakers.CopyFrom(breakers)
    if not tcp:
        options = upstream_http.HttpProtocolOptions(
            common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
                idle_timeout=duration(cluster.timeouts.idle)
            )
        )
        explicit = options.explicit_http_config
        if cluster.protocol.upstream_h2:
            explicit.http2_protocol_options.SetInParent()
        else:
            explicit.http_protocol_options.SetInParent()
        out.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return out


def encode_endpoints(cluster: Cluster) -> Message:
    """The EDS ClusterLoadAssignment for ``cluster`` (named like the cluster).

    Raises:
        ConfigError: an endpoint address that is not an IP address.
    """
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster.name)
    if cluster.endpoints:
        locality = cla.endpoints.add()
        locality.load_balancing_weight.value = 1
        locality.locality.SetInParent()  # gRPC NACKs a locality that is not present
        locality.lb_endpoints.extend(
            _lb_endpoint(ep, f"ClusterLoadAssignment {cluster.name}: endpoints[{i}]")
            for i, ep in enumerate(cluster.endpoints)
        )
    return cla


def _lb_endpoint(ep: Endpoint, where: str) -> Message:
    try:
        ipaddress.ip_address(ep.address)
    except ValueError:
        raise ConfigError(
            f"{where}: {ep.address!r} is not an IP address (EDS carries addresses, not DNS names)"
        ) from None
    out = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=ep.address, port_value=ep.port)
            )
        ),
        health_status=health_check_pb2.HEALTHY,
    )
    out.load_balancing_weight.value = ep.weight
    facts: dict[str, object] = {}
    if ep.labels:
        facts["labels"] = dict(ep.labels)
    if ep.identity is not None:
        facts["identity"] = ep.identity
    if ep.mtls:
        facts["mtls"] = True
    if facts:
        out.metadata.CopyFrom(metadata(facts, where))
    return out
