"""The Workload document a connecting sidecar registers, and writing it like ``apply`` does.

The document is built from the node's metadata (service, address, service account,
labels, identity) and the sidecar's ``Sidecar`` resource in the store. Its labels are the
sidecar's ``--label`` s and ``workload``: the Sidecar's name, which the sidecar's own
request metrics report it by, so its callers' metrics name it the same way
(``core/mesh_labels.py``). Each ingress listener becomes a port of the Workload
(``targetPort`` = the listener's port) for the next unused Service port of the same
protocol family (HTTP-ish or tcp), in order. A sidecar that has a mesh identity (metadata
``identity``: ``agent`` or ``files``) terminates mesh mTLS, so its Workload gets
``tlsMode: mutual`` and its callers originate mTLS to it. The registry writes it through
the resource API's ``write`` — the same validation and lock as ``plait apply``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from plait.core.config import Direction, parse_stored
from plait.sdk import ConfigError

from .store import Key, Store, StoredResource

__all__ = [
    "IDENTITY_SOURCES",
    "REGISTERED",
    "REGISTERED_IDENTITY",
    "registered_by",
    "registered_identity",
    "workload_document",
    "workload_name",
    "workload_targets",
]

REGISTERED = "plait.dev/registered-by"
"""Annotation on the Workloads the registry wrote (value: the node id)."""
REGISTERED_IDENTITY = "plait.dev/registered-identity"
"""Annotation on the Workloads registered over the TLS xDS port: the SPIFFE ID of the
certificate the node's stream was verified with (the node id stays that identity's across a
control-plane restart, ``_node_auth.py``)."""
IDENTITY_SOURCES = ("agent", "files")
"""Where a sidecar's identity comes from (node metadata ``workload.identity``)."""
_INVALID = re.compile(r"[^a-z0-9.-]+")


def workload_name(node_id: str) -> str:
    """A DNS-subdomain resource name for a node id."""
    name = _INVALID.sub("-", node_id.lower()).strip("-.")[:253]
    return name or "node"


async def workload_document(
    store: Store, node_id: str, meta: Mapping[str, Any], identity: str | None = None
) -> dict[str, Any]:
    wl = meta["workload"]
    namespace = str(meta.get("namespace") or "default")
    service = str(wl.get("service", ""))
    svc = await store.get(Key("Service", namespace, service))
    if svc is None:
        raise ValueError(f"the node's Service {namespace}/{service} does not exist")
    sidecar = await store.get(Key("Sidecar", namespace, str(meta.get("sidecar", ""))))
    # the stored documents, read by the same parser as everything else (defaults included)
    svc_ports = parse_stored(svc.document, f"store:{svc.key}", order=0).resource.ports
    listeners = (
        parse_stored(sidecar.document, f"store:{sidecar.key}", order=0).resource.listeners
        if sidecar
        else ()
    )
    used: set[int] = set()
    ports = []
    for lis in listeners:
        if lis.direction is not Direction.INBOUND:
            continue
        for sp in svc_ports:
            if sp.port in used or sp.protocol.is_http != lis.protocol.is_http:
                continue
            used.add(sp.port)
            ports.append({"port": sp.port, "targetPort": lis.port})
            break
    if not ports:
        raise ValueError(
            f"Sidecar {namespace}/{meta.get('sidecar')} has no ingress listener "
            f"for a port of Service {service}"
        )
    spec: dict[str, Any] = {
        "service": service,
        "address": str(wl.get("address", "127.0.0.1")),
        "serviceAccount": str(wl.get("serviceAccount") or "default"),
        "ports": ports,
    }
    if wl.get("identity") in IDENTITY_SOURCES:
        spec["tlsMode"] = "mutual"
    labels = {str(k): str(v) for k, v in dict(wl.get("labels") or {}).items()}
    if meta.get("sidecar") and "workload" not in labels:
        # the name its own metrics report it by (destination_workload), so its callers'
        # series name it the same way (an explicit --label workload=... wins)
        labels = {"workload": str(meta["sidecar"]), **labels}
    if labels:
        spec["labels"] = labels
    annotations = {REGISTERED: node_id}
    if identity is not None:
        annotations[REGISTERED_IDENTITY] = identity
    return {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": workload_name(node_id),
            "namespace": namespace,
            "annotations": annotations,
        },
        "spec": spec,
    }


def registered_by(doc: Mapping[str, Any]) -> str | None:
    """The node id that registered a stored Workload, ``None`` for a hand-applied one."""
    return _annotation(doc, REGISTERED)


def registered_identity(doc: Mapping[str, Any]) -> str | None:
    """The SPIFFE ID that registered a stored Workload over TLS, else ``None``."""
    return _annotation(doc, REGISTERED_IDENTITY)


def _annotation(doc: Mapping[str, Any], name: str) -> str | None:
    meta = doc.get("metadata")
    notes = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = notes.get(name) if isinstance(notes, Mapping) else None
    return value if isinstance(value, str) and value else None


def workload_targets(
    stored: list[StoredResource],
) -> dict[Key, tuple[tuple[str, int], ...]]:
    """Every stored Workload → where it accepts traffic (``address``, ``targetPort`` of each
    port; without ``ports``: every port of its Service, on the same number), what the
    registry's health checks probe."""
    services = {r.key: r for r in stored if r.key.kind == "Service"}
    out: dict[Key, tuple[tuple[str, int], ...]] = {}
    for r in stored:
        if r.key.kind != "Workload":
            continue
        try:
            wl = parse_stored(r.document, f"store:{r.key}", order=0).resource
            if wl.ports:
                ports = [p.target_port for p in wl.ports]
            else:
                svc = services.get(Key("Service", r.key.namespace, wl.service))
                if svc is None:
                    continue
                parsed = parse_stored(svc.document, f"store:{svc.key}", order=0).resource
                ports = [p.port for p in parsed.ports]
        except ConfigError:  # stored before a schema change: the mesh skips it too
            continue
        out[r.key] = tuple((wl.address, port) for port in ports)
    return out
