"""Fan-out benchmark of the ADS server: how long until a change reaches N connected sidecars.

:func:`run` opens ``n`` real gRPC ADS SotW streams to ``target`` (``streams_per_channel`` per
HTTP/2 connection), each subscribing like a sidecar: LDS and CDS wildcard, EDS and RDS by name,
ACKing every response. Once every stream has its initial config it calls ``trigger()`` and
measures, per stream, the time from calling ``trigger()`` until the stream has received and
ACKed a response whose version differs from the one it had before (any type). It reports
p50 / p99 / max of those latencies and the total (trigger until the last stream), plus the time
the N streams took to connect and get their initial config. The latencies include the server's
debounce (100 ms by default): that is the latency a user sees.

Standalone, the server runs with the in-memory source (``MemorySource``: ``--clusters``
clusters with one CLA each, one listener, one route config) and the trigger changes one CLA
(an endpoint moved):

    .venv/bin/python -m benchmarks.xds_fanout --streams 1000
    .venv/bin/python -m benchmarks.xds_fanout --streams 1000 --server-process

By default server and clients share one process and one event loop, so the figure is an upper
bound on the server's cost; ``--server-process`` runs the server in a child process (trigger:
SIGUSR1), so each side gets a core of its own. Against a real control plane pass
``--target HOST:PORT --trigger-cmd 'plait apply -f change.yaml'`` (and ``--eds``/``--rds`` to the
names its sidecars would ask for), or call :func:`run` with your own trigger.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
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

from plait.controlplane.xds import AdsServer, MemorySource, NodeInfo
from plait.core.xds.wire import CLUSTER, ENDPOINT, LISTENER, ROUTE


@dataclass
class Result:
    """What one :func:`run` measured (seconds)."""

    streams: int
    connect: float  # until every stream had its initial config for the four types
    latencies: list[float]  # per stream: trigger() called → changed response received + ACKed
    total: float  # trigger() called → the last stream done

    def report(self) -> str:
        q = statistics.quantiles(self.latencies, n=100, method="inclusive")
        ms = 1000.0
        return (
            f"{self.streams} streams: connect+initial config {self.connect:.2f} s; after trigger "
            f"p50 {q[49] * ms:.0f} ms, p99 {q[98] * ms:.0f} ms, "
            f"max {max(self.latencies) * ms:.0f} ms, total {self.total * ms:.0f} ms"
        )


@dataclass
class _Fleet:
    """Shared progress of the streams, updated by each stream's task."""

    n: int
    subscriptions: dict[str, list[str]]
    node_metadata: Any = None
    """A ``google.protobuf.Struct`` every stream announces (e.g. plait's sidecar metadata)."""
    ready: int = 0
    armed_at: float | None = None
    baseline: list[dict[str, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    all_ready: anyio.Event = field(default_factory=anyio.Event)
    all_done: anyio.Event = field(default_factory=anyio.Event)


async def _stream(stub: Any, index: int, fleet: _Fleet) -> None:
    call = stub.StreamAggregatedResources()
    current: dict[str, str] = {}
    first = True
    for type_url, names in fleet.subscriptions.items():
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
        if first:
            req.node.CopyFrom(base_pb2.Node(id=f"bench-{index}", cluster="bench"))
            if fleet.node_metadata is not None:
                req.node.metadata.CopyFrom(fleet.node_metadata)
            first = False
        await call.write(req)
    done = False
    while (resp := await call.read()) is not grpc.aio.EOF:
        await call.write(
            discovery_pb2.DiscoveryRequest(
                type_url=resp.type_url,
                version_info=resp.version_info,
                response_nonce=resp.nonce,
                resource_names=fleet.subscriptions[resp.type_url],
            )
        )
        current[resp.type_url] = resp.version_info
        if fleet.armed_at is None:
            if len(current) == len(fleet.subscriptions) and not fleet.baseline[index]:
                fleet.baseline[index] = dict(current)
                fleet.ready += 1
                if fleet.ready == fleet.n:
                    fleet.all_ready.set()
        elif not done and resp.version_info != fleet.baseline[index].get(resp.type_url):
            done = True
            fleet.latencies.append(time.perf_counter() - fleet.armed_at)
            if len(fleet.latencies) == fleet.n:
                fleet.all_done.set()


async def run(
    target: str,
    n: int,
    trigger: Callable[[], Awaitable[None]],
    *,
    streams_per_channel: int = 100,
    eds: Sequence[str] = ("svc-0",),
    rds: Sequence[str] = ("outbound",),
    timeout: float = 120.0,
    node_metadata: Any = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> Result:
    """Connect ``n`` SotW streams to ``target``, call ``trigger()``, time the fan-out.

    With ``credentials`` the channels are TLS (the control plane's xDS port).

    Raises ``TimeoutError`` if the streams do not all get their config (or the change) within
    ``timeout`` seconds each.
    """
    subscriptions = {CLUSTER: [], ENDPOINT: list(eds), LISTENER: [], ROUTE: list(rds)}
    fleet = _Fleet(n=n, subscriptions=subscriptions, baseline=[{} for _ in range(n)],
                   node_metadata=node_metadata)  # fmt: skip
    opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    channels = [
        # A distinct channel argument stops grpc from sharing one connection between channels.
        grpc.aio.secure_channel(target, credentials, options=[*opts, ("plait.bench.channel", i)])
        if credentials is not None
        else grpc.aio.insecure_channel(target, options=[*opts, ("plait.bench.channel", i)])
        for i in range(math.ceil(n / streams_per_channel))
    ]
    stubs = [ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch) for ch in channels]
    try:
        async with anyio.create_task_group() as tg:
            start = time.perf_counter()
            for i in range(n):
                tg.start_soon(_stream, stubs[i // streams_per_channel], i, fleet)
            with anyio.fail_after(timeout):
                await fleet.all_ready.wait()
            connect = time.perf_counter() - start
            fleet.armed_at = time.perf_counter()
            await trigger()
            with anyio.fail_after(timeout):
                await fleet.all_done.wait()
            total = time.perf_counter() - fleet.armed_at
            tg.cancel_scope.cancel()
    finally:
        for ch in channels:
            await ch.close()
    return Result(streams=n, connect=connect, latencies=fleet.latencies, total=total)


def build_source(clusters: int) -> MemorySource:
    """``clusters`` clusters ``svc-N`` with one CLA each, one listener, one route config."""
    source = MemorySource()
    names = [f"svc-{i}" for i in range(clusters)]
    source.set(CLUSTER, {n: _cluster(n) for n in names})
    source.set(ENDPOINT, {n: _cla(n, 8080) for n in names})
    source.set(LISTENER, {"outbound": _listener("outbound")})
    source.set(ROUTE, {"outbound": _route("outbound", names)})
    return source


def _cluster(name: str) -> Any:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = 1
    c.eds_cluster_config.eds_config.ads.SetInParent()
    return c


def _address(port: int) -> Any:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="10.0.0.1", port_value=port)
    )


def _cla(name: str, port: int) -> Any:
    lb = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=_address(port + i))
        )
        for i in range(3)
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb)]
    )


def _listener(name: str) -> Any:
    return listener_pb2.Listener(name=name, address=_address(15001))


def _route(name: str, clusters: Sequence[str]) -> Any:
    hosts = [
        route_components_pb2.VirtualHost(
            name=c,
            domains=[c],
            routes=[
                route_components_pb2.Route(
                    match=route_components_pb2.RouteMatch(prefix="/"),
                    route=route_components_pb2.RouteAction(cluster=c),
                )
            ],
        )
        for c in clusters
    ]
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=hosts)


class _Mover:
    """The standalone trigger: moves the endpoints of ``svc-0``."""

    def __init__(self, source: MemorySource) -> None:
        self._source = source
        self._moves = 0

    def __call__(self) -> None:
        self._moves += 1
        cla = self._source.resources(_ANY_NODE, ENDPOINT, None)
        self._source.set(ENDPOINT, {**cla, "svc-0": _cla("svc-0", 9000 + 10 * self._moves)})


_ANY_NODE = NodeInfo(id="bench")


async def _serve_only(args: argparse.Namespace) -> None:
    """Child process of ``--server-process``: print the port, move svc-0 on each SIGUSR1."""
    source = build_source(args.clusters)
    move = _Mover(source)
    async with anyio.create_task_group() as tg:
        port = await tg.start(AdsServer(source, debounce=args.debounce).serve, "127.0.0.1", 0)
        print(port, flush=True)
        with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
            async for _ in signals:
                move()


async def _main(args: argparse.Namespace) -> None:
    eds = args.eds.split(",") if args.eds else [f"svc-{i}" for i in range(args.clusters)]
    rds = args.rds.split(",")
    common = {"streams_per_channel": args.per_channel, "eds": eds, "rds": rds}
    if args.target:

        async def run_command() -> None:
            await anyio.run_process(args.trigger_cmd, stdout=None, stderr=None)

        result = await run(args.target, args.streams, run_command, **common)
    elif args.server_process:
        cmd = [sys.executable, "-m", "benchmarks.xds_fanout", "--serve-only",
               "--clusters", str(args.clusters), "--debounce", str(args.debounce)]  # fmt: skip
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as child:
            try:
                assert child.stdout is not None
                port = int(child.stdout.readline())

                async def signal_child() -> None:
                    os.kill(child.pid, signal.SIGUSR1)

                target = f"127.0.0.1:{port}"
                result = await run(target, args.streams, signal_child, **common)
            finally:
                child.terminate()
    else:
        source = build_source(args.clusters)
        move = _Mover(source)

        async def move_now() -> None:
            move()

        async with anyio.create_task_group() as tg:
            server = AdsServer(source, debounce=args.debounce)
            port = await tg.start(server.serve, "127.0.0.1", 0)
            result = await run(f"127.0.0.1:{port}", args.streams, move_now, **common)
            tg.cancel_scope.cancel()
    print(result.report())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--per-channel", type=int, default=100, help="streams per connection")
    parser.add_argument("--clusters", type=int, default=50, help="in-process source size")
    parser.add_argument("--debounce", type=float, default=0.1, help="in-process server's")
    parser.add_argument("--eds", default="", help="EDS names (default: every svc-N)")
    parser.add_argument("--rds", default="outbound", help="RDS names")
    parser.add_argument("--server-process", action="store_true", help="server in a child")
    parser.add_argument("--target", help="an external ADS server HOST:PORT")
    parser.add_argument("--trigger-cmd", help="with --target: shell command making a change")
    parser.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.target and not args.trigger_cmd:
        parser.error("--target needs --trigger-cmd")
    entry = _serve_only if args.serve_only else _main
    anyio.run(entry, args, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
