"""The ``Workload`` kind: one instance of a Service, and where its sidecar accepts traffic.

A sidecar connected to the control plane registers its Workload itself (the
registry writes it, and removes it when the sidecar has been gone for the
grace period); operators may also apply Workloads by hand for instances that
run no sidecar (a VM, a database), like Istio's ``WorkloadEntry``. Either way
its endpoints join the clusters of its Service: for each Service port the
workload serves, ``address:targetPort`` with the workload's labels and weight.

Each endpoint also carries the workload's identity,
``spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount>``: the SPIFFE ID a sidecar
calling it requires in the server certificate when it originates mTLS. ``tlsMode``
says whether the workload accepts mesh mTLS at all (like Istio's
``security.istio.io/tlsMode`` label): ``mutual`` for a workload behind a sidecar that
terminates mTLS, ``disabled`` (the default) for an instance without one, which callers
reach in plaintext unless a BackendTrafficPolicy's ``tls.mode`` says otherwise.

    kind: Workload
    metadata: {name: web-7f9c, namespace: default}
    spec:
      service: web                 # a Service in the same namespace
      serviceAccount: web          # the identity mTLS will certify (default "default")
      address: 10.0.0.7
      labels: {version: v2}
      weight: 1
      tlsMode: mutual              # its sidecar accepts mesh mTLS (default "disabled")
      ports:                       # omitted: every Service port, targetPort = port
      - {port: 8080, targetPort: 15006}
"""

from __future__ import annotations

from dataclasses import dataclass

from plait.sdk import SpiffeId

from ._fields import Fields
from ._model import Endpoint
from ._resources import LABEL, LABEL_HINT, Meta, ServiceRes, parse_host

__all__ = ["TLS_MODES", "WorkloadPort", "WorkloadRes", "parse_workload", "workload_endpoints"]

TLS_MODES = ("disabled", "mutual")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadPort:
    port: int
    """The Service port this workload serves."""
    target_port: int
    """Where the workload accepts it (its sidecar's inbound listener, or the app itself)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadRes:
    meta: Meta
    service: str
    service_account: str
    address: str
    labels: dict[str, str]
    weight: int
    ports: tuple[WorkloadPort, ...]
    """Empty: every port of the Service, on the same port number."""
    mtls: bool = False
    """``tlsMode: mutual``: the workload accepts mesh mTLS."""


def parse_workload(meta: Meta, spec: Fields) -> WorkloadRes:
    ports: list[WorkloadPort] = []
    for p in spec.maps("ports", max_items=64):
        port = p.integer("port", lo=1, hi=65535)
        target = p.integer("targetPort", port, lo=1, hi=65535)
        ports.append(WorkloadPort(port=port, target_port=target))
        p.done()
        if any(o.port == port for o in ports[:-1]):
            raise p.loc.error(f"duplicate port {port}")
    address = spec.convert("address", parse_host, "")
    res = WorkloadRes(
        meta=meta,
        service=spec.text("service", pattern=LABEL, what=LABEL_HINT),
        service_account=spec.text("serviceAccount", "default", pattern=LABEL, what=LABEL_HINT),
        address=address,
        labels=dict(spec.labels("labels")),
        weight=spec.integer("weight", 1, lo=1, hi=1_000_000),
        ports=tuple(ports),
        mtls=spec.text("tlsMode", "disabled", choices=TLS_MODES) == "mutual",
    )
    if not address:
        raise spec.loc.error("missing required field 'address'")
    spec.done()
    return res


def workload_endpoints(
    svc: ServiceRes, port: int, workloads: list[WorkloadRes], trust_domain: str
) -> list[Endpoint]:
    """The endpoints that ``workloads`` of ``svc`` add to the cluster of Service port ``port``,
    each with its workload's SPIFFE ID in ``trust_domain``."""
    out: list[Endpoint] = []
    for w in workloads:
        if w.service != svc.meta.name or w.meta.namespace != svc.meta.namespace:
            continue
        if not w.ports:
            target: int | None = port
        else:
            target = next((p.target_port for p in w.ports if p.port == port), None)
        if target is not None:
            identity = SpiffeId.for_workload(trust_domain, w.meta.namespace, w.service_account)
            out.append(
                Endpoint(
                    address=w.address,
                    port=target,
                    weight=w.weight,
                    labels=w.labels,
                    identity=str(identity),
                    mtls=w.mtls,
                )
            )
    return out
