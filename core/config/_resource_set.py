"""The resources of one config, by kind: what the loader produces and the translator consumes.

Both the static loader (``_load``: YAML files) and the control plane's store (stored
documents, through ``resources_of``) build a :class:`Resources`; ``_translate`` turns it into
the frozen :class:`~._model.MeshConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._attach import FilterRes
from ._httproute import HTTPRouteRes
from ._policy import PolicyRes
from ._resources import ServiceRes, SidecarRes
from ._security import AuthzRes, PeerAuthRes
from ._telemetry import TelemetryRes
from ._workload import WorkloadRes

__all__ = ["Resources"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """Every resource of a config, by kind, each in creation order."""

    services: tuple[ServiceRes, ...] = ()
    routes: tuple[HTTPRouteRes, ...] = ()
    filters: tuple[FilterRes, ...] = ()
    sidecars: tuple[SidecarRes, ...] = ()
    workloads: tuple[WorkloadRes, ...] = ()
    policies: tuple[PolicyRes, ...] = ()
    peer_authentications: tuple[PeerAuthRes, ...] = ()
    authorization_policies: tuple[AuthzRes, ...] = ()
    telemetries: tuple[TelemetryRes, ...] = ()
    sources: tuple[str, ...] = ()
    digest: str = ""
    """sha256 of the normalized documents (key order and formatting do not count)."""
