"""The Workload document a connecting sidecar registers, and writing it like ``apply`` does.

The document is built from the node's metadata (service, address, service
account, labels) and the sidecar's ``Sidecar`` resource in the store: each
ingress listener becomes a port of the Workload (``targetPort`` = the
listener's port) for the next unused Service port of the same protocol
family (HTTP-ish or tcp), in order. It is validated against everything
stored, as ``plait apply`` would, before it is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plait.core.config import parse_stored, resources_of, translate
from plait.plugins import load_filter_types
from plait.sdk import ConfigError

from .store import Key, Store

__all__ = ["workload_document", "write_workload"]

_HTTPISH = ("http", "http2", "grpc")


async def workload_document(store: Store, node_id: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    from ._registry import REGISTERED, workload_name

    wl = meta["workload"]
    namespace = str(meta.get("namespace") or "default")
    service = str(wl.get("service", ""))
    svc = await store.get(Key("Service", namespace, service))
    if svc is None:
        raise ValueError(f"the node's Service {namespace}/{service} does not exist")
    sidecar = await store.get(Key("Sidecar", namespace, str(meta.get("sidecar", ""))))
    ingress = list(sidecar.document.get("spec", {}).get("ingress", []) if sidecar else [])
    svc_ports = list(svc.document.get("spec", {}).get("ports", []))
    used: set[int] = set()
    ports = []
    for lis in ingress:
        number = int(lis.get("port", {}).get("number", 0))
        proto = str(lis.get("port", {}).get("protocol", "http"))
        for sp in svc_ports:
            port = int(sp.get("port", 0))
            family = str(sp.get("protocol", "http")) in _HTTPISH
            if port in used or family != (proto in _HTTPISH):
                continue
            used.add(port)
            ports.append({"port": port, "targetPort": number})
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
    if wl.get("labels"):
        spec["labels"] = {str(k): str(v) for k, v in dict(wl["labels"]).items()}
    return {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {
            "name": workload_name(node_id),
            "namespace": namespace,
            "annotations": {REGISTERED: node_id},
        },
        "spec": spec,
    }


async def write_workload(store: Store, doc: Mapping[str, Any]) -> Key:
    """Validate ``doc`` against the stored resources, then store it."""
    meta = doc["metadata"]
    key = Key("Workload", meta["namespace"], meta["name"])
    stored = sorted(await store.list(), key=lambda r: r.create_revision)
    try:
        parsed = [
            parse_stored(r.document, f"store:{r.key}", order=i)
            for i, r in enumerate(stored)
            if r.key != key
        ]
        parsed.append(parse_stored(doc, f"registration:{key}", order=len(parsed)))
        translate(resources_of(parsed, ["store"]), load_filter_types(),
                  unknown_filters=True, listeners=False)  # fmt: skip
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    await store.put(key, doc)
    return key
