"""ADS Delta (incremental) over real gRPC: subscribe/unsubscribe, removals, known versions."""

from __future__ import annotations

import pytest

from plait.controlplane.xds import CLUSTER, ENDPOINT, LISTENER, MemorySource

from .xds_harness import DeltaClient, Recorder, cla, cluster, mesh, running, versions

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("one_event_loop")]


@pytest.fixture
def source() -> MemorySource:
    s = MemorySource()
    mesh(s, clusters=("a", "b", "c"))
    return s


async def test_wildcard_sends_everything_then_only_what_changed(source: MemorySource) -> None:
    seen = Recorder()
    async with running(source, seen, debounce=0.01) as target, DeltaClient(target) as client:
        await client.send(CLUSTER)  # legacy wildcard: a first request naming nothing
        first = await client.recv()
        assert sorted(versions(first)) == ["a", "b", "c"] and first.removed_resources == []
        await client.ack(first)
        source.set(CLUSTER, {"a": cluster("a"), "b": cluster("b", timeout_s=9), "d": cluster("d")})
        update = await client.recv()
        assert sorted(versions(update)) == ["b", "d"]  # "a" is unchanged
        assert list(update.removed_resources) == ["c"]
        assert versions(update)["b"] != versions(first)["b"]
        await client.ack(update)
        await seen.wait_for("acked", 2)
        assert seen.events[0] == ("connected", "sidecar-1", "delta")
        acked = [e[3] for e in seen.of("acked")]
        assert acked == [first.system_version_info, update.system_version_info]


async def test_named_subscribe_and_unsubscribe(source: MemorySource) -> None:
    async with running(source, debounce=0.01) as target, DeltaClient(target) as client:
        await client.send(ENDPOINT, ["a"])
        first = await client.recv()
        assert list(versions(first)) == ["a"]
        await client.send(ENDPOINT, ["b"], nonce=first.nonce)  # ACK + one more name
        more = await client.recv()
        assert list(versions(more)) == ["b"] and more.removed_resources == []
        await client.send(ENDPOINT, [], ["a"], nonce=more.nonce)
        await client.recv_none(0.05)  # unsubscribing needs no answer
        source.set(ENDPOINT, {"a": cla("a", 1), "b": cla("b", 8080), "c": cla("c", 8080)})
        await client.recv_none(0.1)  # "a" changed, but it is no longer watched
        source.set(ENDPOINT, {"a": cla("a", 1), "b": cla("b", 2)})
        pushed = await client.recv()
        assert list(versions(pushed)) == ["b"] and pushed.removed_resources == []


async def test_a_missing_or_deleted_named_resource_is_reported_removed(
    source: MemorySource,
) -> None:
    async with running(source, debounce=0.01) as target, DeltaClient(target) as client:
        await client.send(ENDPOINT, ["a", "ghost"])
        first = await client.recv()
        assert list(versions(first)) == ["a"] and list(first.removed_resources) == ["ghost"]
        source.set(ENDPOINT, {"b": cla("b", 8080)})
        gone = await client.recv()
        assert list(gone.resources) == [] and list(gone.removed_resources) == ["a"]
        source.set(ENDPOINT, {"a": cla("a", 7), "b": cla("b", 8080)})  # back: still subscribed
        back = await client.recv()
        assert list(versions(back)) == ["a"]


async def test_initial_resource_versions_are_not_resent(source: MemorySource) -> None:
    async with running(source) as target:
        async with DeltaClient(target) as client:
            await client.send(CLUSTER)
            known = versions(await client.recv())
        async with DeltaClient(target) as again:  # reconnects, knowing what it has
            stale = {**known, "b": "0000", "old": "1234"}
            await again.send(CLUSTER, initial=stale)
            resync = await again.recv()
            assert list(versions(resync)) == ["b"] and list(resync.removed_resources) == ["old"]
        async with DeltaClient(target) as up_to_date:
            await up_to_date.send(CLUSTER, initial=known)
            empty = await up_to_date.recv()  # answered (initial fetch done), nothing in it
            assert list(empty.resources) == [] and list(empty.removed_resources) == []


async def test_star_subscribes_and_unsubscribes_the_wildcard(source: MemorySource) -> None:
    async with running(source, debounce=0.01) as target, DeltaClient(target) as client:
        await client.send(ENDPOINT, ["*"])
        first = await client.recv()
        assert sorted(versions(first)) == ["a", "b", "c"]
        await client.send(ENDPOINT, [], ["b"], nonce=first.nonce)  # the wildcard covers "b"
        again = await client.recv()
        assert list(versions(again)) == ["b"] and versions(again)["b"] == versions(first)["b"]
        await client.send(ENDPOINT, [], ["*"], nonce=again.nonce)
        source.set(ENDPOINT, {"a": cla("a", 1)})
        await client.recv_none(0.1)
        await client.send(LISTENER, ["outbound"])  # other types carry on
        assert list(versions(await client.recv())) == ["outbound"]


async def test_nack_and_stale_nonce(source: MemorySource) -> None:
    seen = Recorder()
    async with running(source, seen, debounce=0.01) as target, DeltaClient(target) as client:
        await client.send(ENDPOINT, ["a"])
        first = await client.recv()
        source.set(ENDPOINT, {"a": cla("a", 9999), "b": cla("b", 8080)})
        second = await client.recv()
        # A late request for the first response: its ACK is void, its subscription applies.
        await client.send(ENDPOINT, ["b"], nonce=first.nonce)
        third = await client.recv()
        assert list(versions(third)) == ["b"]
        await client.send(ENDPOINT, nonce=second.nonce, error="stale: not the latest")
        await client.send(ENDPOINT, nonce=third.nonce, error="port 9999 refused")
        await seen.wait_for("nacked")
        await client.recv_none(0.05)
        assert seen.of("acked") == []
        assert seen.of("nacked") == [
            ("nacked", "sidecar-1", ENDPOINT, third.system_version_info, "port 9999 refused")
        ]
