"""ADS State of the World over real gRPC: subscriptions, ACK/NACK, nonces, pushes, debounce."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AsyncExitStack

import anyio
import grpc
import pytest

from plait.controlplane.xds import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ORDER,
    ROUTE,
    MemorySource,
    Message,
    NodeInfo,
)

from .xds_harness import (
    Recorder,
    SotwClient,
    cla,
    cluster,
    listener,
    mesh,
    names_in,
    route,
    running,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("one_event_loop")]


NAMES = {CLUSTER: [], ENDPOINT: ["a"], LISTENER: [], ROUTE: ["outbound"]}
"""A sidecar's usual subscription: LDS/CDS wildcard, EDS/RDS by name."""


@pytest.fixture
def source() -> MemorySource:
    s = MemorySource()
    mesh(s, clusters=("a", "b", "c"))
    return s


async def test_wildcard_lds_cds_and_named_rds_eds(source: MemorySource) -> None:
    async with running(source) as target:
        async with SotwClient(target) as client:
            cds = await client.get(CLUSTER)
            assert names_in(cds) == ["a", "b", "c"] and cds.version_info and cds.nonce
            eds = await client.get(ENDPOINT, ["c", "a", "missing"])
            assert names_in(eds) == ["a", "c"]
            assert names_in(await client.get(LISTENER)) == ["outbound"]
            assert names_in(await client.get(ROUTE, ["outbound"])) == ["outbound"]
        async with SotwClient(target) as other:
            assert names_in(await other.get(ROUTE)) == []  # RDS: no names, no wildcard


async def test_star_is_wildcard_on_any_type_and_naming_ends_the_legacy_wildcard(
    source: MemorySource,
) -> None:
    async with running(source) as target, SotwClient(target) as client:
        eds = await client.get(ENDPOINT, ["*"])
        assert names_in(eds) == ["a", "b", "c"]
        cds = await client.get(CLUSTER, ["b"])
        assert names_in(cds) == ["b"]
        await client.send(CLUSTER, [], nonce=cds.nonce, version=cds.version_info)
        assert names_in(await client.recv()) == []  # named once: empty now means nothing


async def test_ack_is_recorded_with_the_version(source: MemorySource) -> None:
    seen = Recorder()
    async with running(source, seen) as target, SotwClient(target) as client:
        cds = await client.get(CLUSTER)
        await seen.wait_for("acked")
        assert seen.events == [
            ("connected", "sidecar-1", "sotw"),
            ("acked", "sidecar-1", CLUSTER, cds.version_info),
        ]
        info = seen.streams[0]
        assert info.node.cluster == "echo" and info.node.metadata == {"namespace": "default"}
        assert info.peer.startswith("ipv4:127.0.0.1:") and info.connected_at <= time.time()


async def test_nack_is_recorded_and_the_acked_version_stays(source: MemorySource) -> None:
    seen = Recorder()
    async with running(source, seen, debounce=0.01) as target, SotwClient(target) as client:
        v1 = await client.get(ENDPOINT, ["a"])
        source.set(ENDPOINT, {"a": cla("a", 9999)})
        v2 = await client.recv()
        assert v2.version_info != v1.version_info
        await client.send(
            ENDPOINT, ["a"], nonce=v2.nonce, version=v1.version_info, error="port 9999 refused"
        )
        await seen.wait_for("nacked")
        assert seen.of("nacked") == [
            ("nacked", "sidecar-1", ENDPOINT, v2.version_info, "port 9999 refused")
        ]
        assert seen.of("acked") == [("acked", "sidecar-1", ENDPOINT, v1.version_info)]
        await client.recv_none(0.1)  # the rejected content is not sent again
        source.set(ENDPOINT, {"a": cla("a", 8081)})  # a fix is pushed as usual
        v3 = await client.recv()
        assert v3.version_info not in (v1.version_info, v2.version_info)


async def test_a_stale_nonce_is_ignored(source: MemorySource) -> None:
    seen = Recorder()
    async with running(source, seen, debounce=0.01) as target, SotwClient(target) as client:
        await client.send(ENDPOINT, ["a"])
        first = await client.recv()
        source.set(ENDPOINT, {"a": cla("a", 1), "b": cla("b", 1)})
        second = await client.recv()  # pushed while `first` is un-ACKed (pipelining)
        # The client catches up late: ACK + a new subscription for the superseded nonce.
        await client.send(ENDPOINT, ["a", "b"], nonce=first.nonce, version=first.version_info)
        await client.recv_none(0.1)
        assert seen.of("acked") == []
        await client.ack(second, ["a"])
        await seen.wait_for("acked")
        assert seen.of("acked") == [("acked", "sidecar-1", ENDPOINT, second.version_info)]


async def test_changes_within_the_debounce_window_coalesce_into_one_push(
    source: MemorySource,
) -> None:
    async with running(source, debounce=0.2) as target, SotwClient(target) as client:
        await client.get(ENDPOINT, ["a"])
        start = time.monotonic()
        for port in (1, 2, 3):
            source.set(ENDPOINT, {"a": cla("a", port)})
            await anyio.sleep(0.02)
        pushed = await client.recv()
        assert time.monotonic() - start >= 0.18
        expected = cla("a", 3)
        got = type(expected)()
        assert pushed.resources[0].Unpack(got) and got == expected
        await client.recv_none(0.3)


async def test_only_types_whose_content_changed_are_pushed(source: MemorySource) -> None:
    async with running(source, debounce=0.01) as target, SotwClient(target) as client:
        for type_url in ORDER:
            await client.get(type_url, NAMES[type_url])
        source.bump()  # a revision without a visible change
        source.set(ENDPOINT, {**{n: cla(n, 8080) for n in "abc"}, "b": cla("b", 1)})
        await client.recv_none(0.15)  # "b" changed, but this client only watches "a"
        source.set(CLUSTER, {"a": cluster("a", timeout_s=5)})
        cds = await client.recv()
        assert cds.type_url == CLUSTER and names_in(cds) == ["a"]
        await client.recv_none(0.1)


async def test_a_change_of_every_type_is_pushed_cds_eds_lds_rds(source: MemorySource) -> None:
    async with running(source, debounce=0.01) as target, SotwClient(target) as client:
        for type_url in reversed(ORDER):  # subscription order does not matter
            await client.get(type_url, NAMES[type_url])
        source.set(ROUTE, {"outbound": route("outbound", "a", "b")})  # in reverse order
        source.set(LISTENER, {"outbound": listener("outbound", port=15002)})
        source.set(ENDPOINT, {"a": cla("a", 1)})
        source.set(CLUSTER, {"a": cluster("a", timeout_s=2)})
        pushed = [await client.recv() for _ in ORDER]
        assert [r.type_url for r in pushed] == list(ORDER)


async def test_a_subscription_change_is_answered(source: MemorySource) -> None:
    async with running(source) as target, SotwClient(target) as client:
        eds = await client.get(ENDPOINT, ["a"])
        await client.ack(eds, ["a", "b"])
        more = await client.recv()
        assert names_in(more) == ["a", "b"] and more.nonce != eds.nonce
        await client.ack(more, ["a", "b", "nope"])  # answered even if the content is the same
        same = await client.recv()
        assert names_in(same) == ["a", "b"] and same.version_info == more.version_info


class Scoped(MemorySource):
    """A source whose wildcard view of clusters is ``scope``; named lookups see them all."""

    scope = frozenset({"a", "b", "c"})

    def resources(
        self, node: NodeInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, Message]:
        found = super().resources(node, type_url, names)
        if names is None and type_url == CLUSTER:
            return {n: r for n, r in found.items() if n in self.scope}
        return found


async def test_an_explicitly_named_resource_is_served_outside_the_wildcard_set() -> None:
    scoped = Scoped()
    mesh(scoped, clusters=("a", "b", "c"))
    async with running(scoped, debounce=0.01) as target, SotwClient(target) as client:
        cds = await client.get(CLUSTER, ["*", "c"])  # wildcard + "c" (still routed to)
        assert names_in(cds) == ["a", "b", "c"]
        scoped.scope = frozenset({"a"})
        scoped.bump()
        cds = await client.recv()
        assert names_in(cds) == ["a", "c"]  # "b" left the view; "c" kept while it exists
        scoped.set(CLUSTER, {"a": cluster("a")})
        assert names_in(await client.recv()) == ["a"]


async def test_versions_depend_on_content_only(source: MemorySource) -> None:
    """A restarted control plane with the same config hands out the same versions."""
    other = MemorySource()
    mesh(other, clusters=("c", "b", "a"))  # same content, other insertion order
    got = []
    for s in (source, source, other):
        async with running(s) as target, SotwClient(target) as client:
            got.append((await client.get(CLUSTER)).version_info)
    assert got[0] == got[1] == got[2]


async def test_a_stream_without_node_fails_with_invalid_argument(source: MemorySource) -> None:
    seen = Recorder()
    async with running(source, seen) as target, SotwClient(target) as client:
        client.first = False  # do not send the node
        await client.send(CLUSTER)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await client.recv()
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "node" in (failed.value.details() or "")
        assert seen.events == []


async def test_disconnect_and_server_stop_notify_the_observer(source: MemorySource) -> None:
    seen, stop = Recorder(), anyio.CancelScope()
    async with running(source, seen, stop=stop) as target, SotwClient(target) as staying:
        async with SotwClient(target) as gone:
            await gone.get(CLUSTER)
            await staying.send(CLUSTER, node_id="sidecar-2")
            await staying.recv()
        await seen.wait_for("disconnected")
        assert seen.of("disconnected") == [("disconnected", "sidecar-1")]
        stop.cancel()  # the server stops under the remaining client
        await seen.wait_for("disconnected", 2)
        assert seen.of("disconnected")[1:] == [("disconnected", "sidecar-2")]
        with pytest.raises(grpc.aio.AioRpcError):
            await staying.recv()


async def test_a_change_reaches_200_concurrent_streams() -> None:
    source = MemorySource()
    mesh(source)
    async with running(source, debounce=0.01) as target, AsyncExitStack() as stack:
        channels = [grpc.aio.insecure_channel(target) for _ in range(4)]
        clients = [
            await stack.enter_async_context(SotwClient(target, channels[i % 4])) for i in range(200)
        ]
        for c in clients:
            await c.send(ENDPOINT, ["a"])
        before = [(await c.recv(timeout=5)).version_info for c in clients]
        source.set(ENDPOINT, {"a": cla("a", 1), "b": cla("b", 1)})
        after = [(await c.recv(timeout=5)).version_info for c in clients]
        assert len(set(before)) == len(set(after)) == 1 and before[0] != after[0]
        await stack.aclose()
        for ch in channels:
            await ch.close()


async def test_an_unsupported_type_is_ignored_and_the_stream_carries_on(
    source: MemorySource,
) -> None:
    runtime = "type.googleapis.com/envoy.service.runtime.v3.Runtime"  # RTDS: not served
    seen = Recorder()
    async with running(source, seen) as target, SotwClient(target) as client:
        await client.send(runtime, ["default"])
        await client.recv_none(0.05)
        assert names_in(await client.get(CLUSTER)) == ["a", "b", "c"]
        await seen.wait_for("acked")
        assert [e[0] for e in seen.events] == ["connected", "acked"]
