"""Make-before-break per stream: a cluster that left the source stays served (as last sent)
while a route the client may still run names it, until the client ACKs one that does not."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2  # type: ignore[import-untyped]

from plait.controlplane.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, MemorySource, Message

from .xds_harness import DeltaClient, SotwClient, cla, cluster, listener, names_in, running

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("one_event_loop")]


def to(name: str, *clusters: str) -> Message:
    """A route configuration sending everything to ``clusters`` (weighted if several)."""
    action = route_components_pb2.RouteAction()
    if len(clusters) == 1:
        action.cluster = clusters[0]
    else:
        for c in clusters:
            action.weighted_clusters.clusters.add(name=c).weight.value = 1
    r = route_components_pb2.Route(route=action)
    r.match.prefix = "/"
    host = route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[r])
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[host])


def _source(*clusters: str) -> MemorySource:
    s = MemorySource()
    s.set(CLUSTER, {n: cluster(n) for n in clusters})
    s.set(ENDPOINT, {n: cla(n, 8080) for n in clusters})
    s.set(LISTENER, {"outbound": listener("outbound")})
    s.set(ROUTE, {"outbound": to("outbound", clusters[0])})
    return s


def _rename(source: MemorySource) -> None:
    """ "old" is gone; the route sends to "new" (cluster, endpoints and route in one change)."""
    source.set(CLUSTER, {"new": cluster("new")})
    source.set(ENDPOINT, {"new": cla("new", 9090)})
    source.set(ROUTE, {"outbound": to("outbound", "new")})


async def test_sotw_wildcard_keeps_a_renamed_cluster_until_the_new_route_is_acked() -> None:
    source = _source("old")
    async with running(source, debounce=0.01) as target, SotwClient(target) as client:
        assert names_in(await client.get(CLUSTER)) == ["old"]
        assert names_in(await client.get(ENDPOINT, ["old"])) == ["old"]
        await client.get(LISTENER)
        await client.get(ROUTE, ["outbound"])
        _rename(source)
        cds = await client.recv()
        assert cds.type_url == CLUSTER and names_in(cds) == ["new", "old"]
        await client.ack(cds)
        rds = await client.recv()  # no EDS: "old" is still served as it was
        assert rds.type_url == ROUTE
        await client.ack(rds, ["outbound"])  # the client runs the route to "new" now
        cds = await client.recv()
        assert cds.type_url == CLUSTER and names_in(cds) == ["new"]


async def test_sotw_a_nack_of_the_new_route_keeps_the_old_cluster() -> None:
    source = _source("old")
    async with running(source, debounce=0.01) as target, SotwClient(target) as client:
        await client.get(CLUSTER)
        await client.get(LISTENER)
        await client.get(ROUTE, ["outbound"])
        _rename(source)
        cds = await client.recv()
        await client.ack(cds)
        rds = await client.recv()
        assert rds.type_url == ROUTE
        await client.send(ROUTE, ["outbound"], nonce=rds.nonce, error="rejected")
        await client.recv_none(0.2)  # nothing lets "old" go: the client still runs it
        source.set(ROUTE, {"outbound": to("outbound", "new", "other")})
        rds = await client.recv()
        await client.ack(rds, ["outbound"])
        cds = await client.recv()
        assert names_in(cds) == ["new"]


async def test_delta_named_cluster_is_not_reported_removed_while_the_client_names_it() -> None:
    source = _source("old")
    async with running(source, debounce=0.01) as target, DeltaClient(target) as client:
        await client.send(CLUSTER, ["old"])
        first = await client.recv()
        await client.ack(first)
        await client.send(ROUTE, ["outbound"])
        rds = await client.recv()
        await client.ack(rds)
        _rename(source)
        rds = await client.recv()  # no CDS first: "old" is not reported removed
        assert rds.type_url == ROUTE
        await client.ack(rds)
        await client.recv_none(0.2)  # still named: still served
        await client.send(CLUSTER, ["new"], ["old"])  # the client moved on
        cds = await client.recv()
        assert [r.name for r in cds.resources] == ["new"] and list(cds.removed_resources) == []


async def test_sotw_named_cluster_stays_while_named_and_only_if_a_route_named_it() -> None:
    """A gRPC client: it names the clusters it uses, past its ACK of the new route."""
    source = _source("old")
    async with running(source, debounce=0.01) as target, SotwClient(target) as client:
        cds = await client.get(CLUSTER, ["old"])
        await client.get(LISTENER, ["outbound"])
        await client.get(ROUTE, ["outbound"])
        _rename(source)
        rds = await client.recv()  # no CDS: named "old" is still served as it was
        assert rds.type_url == ROUTE
        await client.ack(rds, ["outbound"])
        await client.send(CLUSTER, ["old", "new"], nonce=cds.nonce, version=cds.version_info)
        both = await client.recv()
        assert names_in(both) == ["new", "old"]
        await client.ack(both, ["new"])
        assert names_in(await client.recv()) == ["new"]


async def test_a_named_cluster_no_route_named_goes_when_it_leaves_the_source() -> None:
    source = _source("old", "side")
    async with running(source, debounce=0.01) as target, SotwClient(target) as client:
        assert names_in(await client.get(CLUSTER, ["old", "side"])) == ["old", "side"]
        await client.get(ROUTE, ["outbound"])  # names "old" only
        source.set(CLUSTER, {"old": cluster("old")})
        cds = await client.recv()
        assert names_in(cds) == ["old"]  # "side": does not exist


def test_a_client_that_never_acks_keeps_every_named_cluster_in_bounded_state() -> None:
    from plait.controlplane.xds._retain import Retention

    retain = Retention()
    retain.sent(ROUTE, "n0", {"outbound": to("outbound", "c0")})
    retain.acked(ROUTE, "n0")
    for i in range(1, 100):
        retain.sent(ROUTE, f"n{i}", {"outbound": to("outbound", f"c{i}")})
    assert retain.referenced() == {f"c{i}" for i in range(100)}
    assert len(retain._routes[ROUTE]) <= 17
    assert retain.acked(ROUTE, "n99") and retain.referenced() == {"c99"}
