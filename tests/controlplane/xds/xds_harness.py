"""Test kit for the ADS server: resources, a recording observer, a running server, clients.

The server runs for real on 127.0.0.1 (port 0) inside the test's task group, and the clients
are grpc.aio stubs over real channels; the only double is the source (``MemorySource``, or a
subclass), which is the server's seam.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

import anyio
import anyio.abc
import grpc
from envoy.config.cluster.v3 import cluster_pb2  # type: ignore[import-untyped]
from envoy.config.core.v3 import address_pb2, base_pb2  # type: ignore[import-untyped]
from envoy.config.endpoint.v3 import (  # type: ignore[import-untyped]
    endpoint_components_pb2,
    endpoint_pb2,
)
from envoy.config.listener.v3 import listener_pb2  # type: ignore[import-untyped]
from envoy.config.route.v3 import route_components_pb2, route_pb2  # type: ignore[import-untyped]
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2  # type: ignore[import-untyped]
from google.rpc import status_pb2  # type: ignore[import-untyped]

from plait.controlplane.xds import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    AdsServer,
    MemorySource,
    StreamInfo,
    XdsObserver,
    XdsSource,
)

Message = Any


def cluster(name: str, timeout_s: int = 1) -> Message:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = timeout_s
    return c


def cla(name: str, *ports: int) -> Message:
    lb = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="10.0.0.1", port_value=p)
                )
            )
        )
        for p in ports
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb)]
    )


def listener(name: str, port: int = 15001) -> Message:
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port)
        ),
    )


def route(name: str, *hosts: str) -> Message:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[route_components_pb2.VirtualHost(name=h, domains=[h]) for h in hosts],
    )


def mesh(source: MemorySource, *, clusters: Sequence[str] = ("a", "b")) -> None:
    """Fill ``source`` with one listener, one route config and a cluster + CLA per name."""
    source.set(CLUSTER, {n: cluster(n) for n in clusters})
    source.set(ENDPOINT, {n: cla(n, 8080) for n in clusters})
    source.set(LISTENER, {"outbound": listener("outbound")})
    source.set(ROUTE, {"outbound": route("outbound", *clusters)})


def names_in(response: Message) -> list[str]:
    """Resource names in a SotW response (unpacked by type)."""
    classes = {
        CLUSTER: cluster_pb2.Cluster,
        ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        LISTENER: listener_pb2.Listener,
        ROUTE: route_pb2.RouteConfiguration,
    }
    names = []
    for packed in response.resources:
        msg = classes[response.type_url]()
        assert packed.Unpack(msg)
        names.append(msg.cluster_name if response.type_url == ENDPOINT else msg.name)
    return names


class Recorder(XdsObserver):
    """An observer that records ``(event, node id, *details)`` tuples."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.streams: list[StreamInfo] = []

    def connected(self, stream: StreamInfo) -> None:
        self.streams.append(stream)
        self.events.append(("connected", stream.node.id, stream.flavor))

    def acked(self, stream: StreamInfo, type_url: str, version: str) -> None:
        self.events.append(("acked", stream.node.id, type_url, version))

    def nacked(self, stream: StreamInfo, type_url: str, version: str, message: str) -> None:
        self.events.append(("nacked", stream.node.id, type_url, version, message))

    def disconnected(self, stream: StreamInfo) -> None:
        self.events.append(("disconnected", stream.node.id))

    def of(self, kind: str) -> list[tuple[object, ...]]:
        return [e for e in self.events if e[0] == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 1.0) -> None:
        with anyio.fail_after(timeout):
            while len(self.of(kind)) < count:
                await anyio.sleep(0.005)


@asynccontextmanager
async def running(
    source: XdsSource,
    observer: XdsObserver | None = None,
    *,
    debounce: float = 0.05,
    stop: anyio.CancelScope | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> AsyncIterator[str]:
    """An :class:`AdsServer` on 127.0.0.1, port 0; yields its ``host:port``.

    Cancelling ``stop`` stops the server while the test goes on.
    """
    server = AdsServer(source, observer, debounce=debounce, stop_grace=0.1, credentials=credentials)
    scope = stop if stop is not None else anyio.CancelScope()

    async def serve(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        with scope:
            await server.serve("127.0.0.1", 0, task_status=task_status)

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve)
        yield f"127.0.0.1:{port}"
        tg.cancel_scope.cancel()


def node(node_id: str = "sidecar-1") -> Message:
    n = base_pb2.Node(id=node_id, cluster="echo")
    n.metadata.update({"namespace": "default"})
    return n


class _Client:
    """Common part of the SotW and Delta clients: one stream on its own or a shared channel.

    A reader task moves responses into a buffer, so that waiting for "nothing arrives" never
    cancels a grpc ``read()`` (which would cancel the whole RPC). Use as an async context
    manager; leaving it cancels the stream.
    """

    def __init__(self, target: str, channel: grpc.aio.Channel | None = None) -> None:
        self._own = channel is None
        self.channel = channel if channel is not None else grpc.aio.insecure_channel(target)
        self.stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call: Any = None
        self.first = True
        self._send, self._receive = anyio.create_memory_object_stream[Message](100)
        self.error: grpc.aio.AioRpcError | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._tg is not None
        self.close()
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        self._receive.close()
        if self._own:
            await self.channel.close()

    def close(self) -> None:
        """Cancel the stream (the client goes away)."""
        self.call.cancel()

    async def _read(self) -> None:
        async with self._send:
            try:
                while (response := await self.call.read()) is not grpc.aio.EOF:
                    await self._send.send(response)
            except grpc.aio.AioRpcError as exc:
                self.error = exc

    async def recv(self, timeout: float = 1.0) -> Message:
        """The next response; raises the stream's error if it ended with one."""
        with anyio.fail_after(timeout):
            try:
                return await self._receive.receive()
            except anyio.EndOfStream:
                if self.error is not None:
                    raise self.error from None
                raise

    async def recv_none(self, within: float) -> None:
        """Assert that nothing arrives for ``within`` seconds."""
        with anyio.move_on_after(within):
            got = await self._receive.receive()
            raise AssertionError(f"unexpected response: {got}")


class SotwClient(_Client):
    def __init__(self, target: str, channel: grpc.aio.Channel | None = None) -> None:
        super().__init__(target, channel)
        self.call = self.stub.StreamAggregatedResources()

    async def send(
        self,
        type_url: str,
        names: Sequence[str] = (),
        *,
        nonce: str = "",
        version: str = "",
        error: str | None = None,
        node_id: str = "sidecar-1",
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=names, response_nonce=nonce, version_info=version
        )
        if self.first:
            req.node.CopyFrom(node(node_id))
            self.first = False
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(req)

    async def ack(self, response: Message, names: Sequence[str] = ()) -> None:
        await self.send(
            response.type_url, names, nonce=response.nonce, version=response.version_info
        )

    async def get(self, type_url: str, names: Sequence[str] = ()) -> Message:
        """Subscribe, read the answer and ACK it."""
        await self.send(type_url, names)
        response = await self.recv()
        assert response.type_url == type_url
        await self.ack(response, names)
        return response


class DeltaClient(_Client):
    def __init__(self, target: str, channel: grpc.aio.Channel | None = None) -> None:
        super().__init__(target, channel)
        self.call = self.stub.DeltaAggregatedResources()

    async def send(
        self,
        type_url: str,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
        *,
        nonce: str = "",
        initial: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=subscribe,
            resource_names_unsubscribe=unsubscribe,
            response_nonce=nonce,
            initial_resource_versions=initial or {},
        )
        if self.first:
            req.node.CopyFrom(node())
            self.first = False
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(req)

    async def ack(self, response: Message) -> None:
        await self.send(response.type_url, nonce=response.nonce)


def versions(response: Message) -> dict[str, str]:
    """``name → version`` of a Delta response's resources."""
    return {r.name: r.version for r in response.resources}
