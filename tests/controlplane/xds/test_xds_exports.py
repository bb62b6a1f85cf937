"""The public surface of plait.controlplane.xds, pinned (style rule 2)."""

from __future__ import annotations

from plait.controlplane import xds
from plait.core.xds import wire


def test_public_names() -> None:
    assert sorted(xds.__all__) == sorted([
        "CLUSTER", "DEFAULT_OPTIONS", "ENDPOINT", "LISTENER", "ORDER", "ROUTE", "WILDCARD_TYPES",
        "AdsServer", "Flavor", "MemorySource", "Message", "NodeAuthorizer", "NodeInfo",
        "NullObserver", "Peer", "StreamInfo", "XdsObserver", "XdsSource", "connection_age_options",
    ])  # fmt: skip
    assert all(hasattr(xds, name) for name in xds.__all__)


def test_type_urls_are_the_clients() -> None:
    """The server and the sidecar's client share one definition of the type URLs."""
    assert (xds.LISTENER, xds.ROUTE, xds.CLUSTER, xds.ENDPOINT, xds.ORDER) == (
        wire.LISTENER, wire.ROUTE, wire.CLUSTER, wire.ENDPOINT, wire.ORDER)  # fmt: skip
    assert xds.ORDER == (
        "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "type.googleapis.com/envoy.config.listener.v3.Listener",
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    )
