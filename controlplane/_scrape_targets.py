"""Prometheus HTTP service discovery: every connected sidecar's admin listener as a target.

Theory of operation: the registry knows, for each connected sidecar, the admin
address it announced in its node metadata (``HOST:PORT``, a wildcard bind
resolved to the address the xDS stream came from) and what it runs: the Sidecar
resource (``NAME.NAMESPACE``), the Workload it registered (service, labels), the
SPIFFE ID its xDS client certificate was verified with. :func:`scrape_targets`
turns that into the list Prometheus's ``http_sd_configs`` reads, one target
group per sidecar::

    [{"targets": ["127.0.0.1:15000"],
      "labels": {"namespace": "shop", "sidecar": "web", "workload": "web-1",
                 "service": "web", "version": "v1", "identity": "spiffe://…/ns/shop/sa/web",
                 "node": "web-host-15000"}}]

The labels are plain (no ``__meta_`` prefix), so they land on every series of the
target without relabelling; a label with no value is left out rather than sent
empty. Prometheus polls the list every ``refresh_interval`` and scrapes what it
lists, so a sidecar that connects is scraped from the next poll on and one that
disconnects is dropped; the list is recomputed on every request (a few
sidecars' worth of dicts). The resource API serves it at
``GET /api/v1/prometheus/targets`` behind the admin token (docs/observability.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

__all__ = ["ScrapeNode", "scrape_targets"]


class ScrapeNode(Protocol):
    """What a target is made of (the registry's ``_Node``)."""

    @property
    def node_id(self) -> str: ...
    @property
    def sidecar(self) -> str: ...
    @property
    def streams(self) -> int: ...
    @property
    def admin(self) -> str | None: ...
    @property
    def identity(self) -> str | None: ...
    @property
    def meta(self) -> Mapping[str, Any]: ...
    @property
    def workload(self) -> object | None: ...


def scrape_targets(nodes: Iterable[ScrapeNode]) -> list[dict[str, Any]]:
    """One target group per connected sidecar with an admin address, ordered by node id."""
    groups = []
    for node in sorted(nodes, key=lambda n: n.node_id):
        if not node.streams or not node.admin:
            continue
        groups.append({"targets": [node.admin], "labels": _labels(node)})
    return groups


def _labels(node: ScrapeNode) -> dict[str, str]:
    name, _, namespace = node.sidecar.partition(".")
    workload = node.meta.get("workload")
    work = workload if isinstance(workload, Mapping) else {}
    labels = work.get("labels")
    version = labels.get("version") if isinstance(labels, Mapping) else None
    pairs = {
        "namespace": namespace or "default",
        "sidecar": name,
        "node": node.node_id,
        "workload": str(node.workload or "").rpartition("/")[2],
        "service": work.get("service"),
        "version": version,
        "identity": node.identity,
    }
    return {k: str(v) for k, v in pairs.items() if isinstance(v, str) and v}
