"""The mesh labels of the request metrics: who called whom, worked out once per peer pair.

Theory of operation: every label of ``plait_requests_total`` and
``plait_request_duration_seconds`` but the response's own (``code``,
``grpc_response_status``, ``reason``) is fixed by facts known before a request
arrives: the listener (its name and direction), this sidecar's own workload
(:class:`LocalWorkload`, from its command line: ``--sidecar NAME.NAMESPACE``,
``--service``, ``--label version=...``) and SPIFFE ID, the downstream
connection's verified peer identity (inbound mTLS), and the cluster and endpoint
the request went to (their config: the endpoint's ``version`` label, the SPIFFE ID
outbound mTLS verifies it with). :func:`series_values` turns those into one tuple
of label values; the listener runtime keeps it per ``(cluster, endpoint, peer)``
and the stats intern it to a small integer (``Stats.series``), so a request
costs a dict lookup for its labels, not their construction.

Every value comes from config or a verified certificate, never from the request
(no paths, no authorities, no unverified headers), so the label sets stay as
few as the mesh's peers; what is not known is ``unknown``. The side this sidecar
is on takes its own facts: inbound, the destination is this sidecar's workload
and the source the peer's verified identity (its namespace from the SPIFFE ID;
its workload name is not in a certificate, so ``unknown``); outbound, the
source is this sidecar and the destination the endpoint (its principal when the
connection is mTLS, its workload and version from its labels, its namespace from its
SPIFFE ID; a Workload its sidecar registered is labelled with the Sidecar's name, the
name that sidecar's own series give it). A principal is given only where mTLS verified
it: without a certificate either side's principal is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .config._model import Cluster, Endpoint, ListenerConfig, MeshConfig

__all__ = ["MESH_LABELS", "UNKNOWN", "LocalWorkload", "series_values"]

UNKNOWN: Final = "unknown"

MESH_LABELS: Final[tuple[str, ...]] = (
    "listener", "direction", "reporter",
    "source_workload", "source_workload_namespace", "source_principal",
    "destination_workload", "destination_workload_namespace", "destination_principal",
    "destination_service", "destination_service_namespace", "destination_version",
)  # fmt: skip
"""The names of :func:`series_values`' values, in order (Istio's names; ``listener`` and
``direction`` are plait's)."""


@dataclass(frozen=True, slots=True)
class LocalWorkload:
    """What this sidecar fronts, as its command line says."""

    workload: str = UNKNOWN
    namespace: str = UNKNOWN
    service: str = UNKNOWN
    version: str = UNKNOWN

    @classmethod
    def of(cls, sidecar: str | None, workload: Mapping[str, object] | None) -> LocalWorkload:
        """From ``--sidecar NAME[.NAMESPACE]`` and the registered Workload (``--service``,
        ``--label``): the namespace defaults to ``default`` as the control plane's does."""
        name, _, namespace = (sidecar or "").partition(".")
        work = workload or {}
        labels = work.get("labels")
        version = labels.get("version") if isinstance(labels, Mapping) else None
        service = work.get("service")
        return cls(
            workload=name or UNKNOWN,
            namespace=namespace or ("default" if name else UNKNOWN),
            service=service if isinstance(service, str) and service else UNKNOWN,
            version=version if isinstance(version, str) and version else UNKNOWN,
        )


def series_values(
    listener: ListenerConfig,
    config: MeshConfig,
    local: LocalWorkload,
    own_id: str | None,
    cluster: str | None,
    upstream: str | None,
    peer_id: str | None,
) -> tuple[str, ...]:
    """The values of :data:`MESH_LABELS` for one request's facts (see the module doc).

    ``own_id``: this sidecar's SPIFFE ID, ``None`` before it has a certificate;
    ``cluster``/``upstream``: the cluster and endpoint (``HOST:PORT``) the request went
    to, if any; ``peer_id``: the downstream connection's verified SPIFFE ID, if any."""
    direction = listener.direction.value
    if direction == "inbound":
        mine = own_id if peer_id is not None else None  # our certificate served the mTLS
        return (
            listener.name, direction, "destination",
            UNKNOWN, _namespace(peer_id), peer_id or UNKNOWN,
            local.workload, local.namespace, mine or UNKNOWN,
            *_inbound_service(local, config, listener, cluster), local.version,
        )  # fmt: skip
    found = config.clusters.get(cluster) if cluster is not None else None
    endpoint = _endpoint(found, upstream) if found is not None else None
    verified = _verified_identity(found, endpoint) if own_id is not None else None
    labels = endpoint.labels if endpoint is not None else {}
    return (
        listener.name, direction, "source",
        local.workload, local.namespace, (own_id or UNKNOWN) if verified else UNKNOWN,
        labels.get("workload") or UNKNOWN, _namespace(verified), verified or UNKNOWN,
        *_split(_service(config, listener, cluster)), labels.get("version") or UNKNOWN,
    )  # fmt: skip


def _endpoint(cluster: Cluster, upstream: str | None) -> Endpoint | None:
    for endpoint in cluster.endpoints:
        if endpoint.key == upstream:
            return endpoint
    return None


def _verified_identity(cluster: Cluster | None, endpoint: Endpoint | None) -> str | None:
    """The SPIFFE ID outbound mTLS checks the endpoint's certificate against, if the
    connection to it is mTLS (``upstream/_tls.py``'s plan, with an identity)."""
    if cluster is None or endpoint is None:
        return None
    from .upstream._tls import plan

    how = plan(cluster, endpoint)
    return how[1] if how is not None else None


def _service(config: MeshConfig, listener: ListenerConfig, cluster: str | None) -> str:
    """The Service a cluster belongs to: the listener's route table's, else the first
    table's whose rules send to it, else the cluster's name."""
    if cluster is None:
        return UNKNOWN
    own = config.routes.get(listener.route_table)
    tables = [own] if own is not None else []
    for table in (*tables, *config.routes.values()):
        if table.service and any(
            b.cluster == cluster for rule in table.rules for b in rule.backends
        ):
            return table.service
    return cluster


def _inbound_service(
    local: LocalWorkload, config: MeshConfig, listener: ListenerConfig, cluster: str | None
) -> tuple[str, str]:
    """The Service this sidecar registers, in its namespace; else its route table's."""
    if local.service != UNKNOWN:
        return local.service, local.namespace
    return _split(_service(config, listener, cluster))


def _split(service: str) -> tuple[str, str]:
    """``(name, namespace)`` of a route table's service key (``NAME.NAMESPACE:PORT`` as the
    translator names them; a key without a namespace has it ``unknown``)."""
    host = service.rpartition(":")[0] if ":" in service else service
    name, _, namespace = host.partition(".")
    return name or UNKNOWN, namespace or UNKNOWN


def _namespace(spiffe_id: str | None) -> str:
    parts = (spiffe_id or "").split("/")
    return parts[parts.index("ns") + 1] if "ns" in parts[:-1] else UNKNOWN
