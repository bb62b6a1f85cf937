"""The ADS gRPC server: ``StreamAggregatedResources`` (SotW) and ``DeltaAggregatedResources``.

Theory of operation. :meth:`AdsServer.serve` runs inside the caller's anyio task group
(``await tg.start(server.serve, host, port)`` returns the bound port) and owns two things:

* the grpc.aio server, whose per-RPC handler tasks belong to grpc (each runs a
  ``_stream.StreamHandler``, see there for the life of a stream); and
* the one fan-out task. It waits for the source's revision to move, then **debounces**: it
  sleeps ``debounce`` seconds so that a burst of changes (an ``apply`` of many resources, a
  rollout moving many endpoints) becomes one push, takes the source's revision at the end of
  the window and publishes it to every stream (``_stream.Changes``). The window is fixed, not
  extended by each change, so a steady trickle of changes cannot postpone pushes forever: a
  change reaches the streams within ``debounce`` plus the recomputation.

One shared fan-out rather than one source watcher per stream: the debounce timer and the
source wait exist once, not once per sidecar, and all streams recompute the same revision.
``benchmarks/xds_fanout.py`` showed no difference outside the noise between the two shapes
(1000 streams, in-process, 3 alternating runs: trigger-to-last-ACK 411/618/557 ms shared,
1106/576/498 ms per stream), so the simpler one stays.

Scale, measured with that benchmark (server in its own process, SotW streams subscribed like a
sidecar to 50 clusters, one CLA changed; a shared 2-core machine): trigger to the last stream's
ACK 313-386 ms for 1000 streams, 420-624 ms for 2000, 758-815 ms for 3000, 1.74 s for 5000,
each including the 100 ms debounce.

Cancelling ``serve`` (its task group, or the process shutting down) stops the grpc server with
a short grace: in-flight streams are cancelled, so every stream's observer hears
``disconnected``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import anyio
import grpc
from anyio.abc import TaskStatus
from envoy.service.discovery.v3 import ads_pb2_grpc  # type: ignore[import-untyped]

from ._content import Encoder
from ._delta import DeltaMachine
from ._machine import Machine
from ._sotw import SotwMachine
from ._source import Flavor, NodeAuthorizer, NullObserver, XdsObserver, XdsSource
from ._stream import Changes, StreamHandler

logger = logging.getLogger("plait.controlplane.xds")

_MIB = 1024 * 1024
DEFAULT_OPTIONS: Sequence[tuple[str, int]] = (
    # Responses carry a node's whole scoped config; requests are small.
    ("grpc.max_send_message_length", 64 * _MIB),
    ("grpc.max_receive_message_length", 4 * _MIB),
    # Server pings find dead sidecars (their streams then end and the registry hears of it)
    # behind NATs and load balancers that drop idle flows silently.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Accept client keepalive pings down to every 10 s (Envoy's and gRPC's defaults are
    # longer) instead of answering them with GOAWAY "too_many_pings".
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # After a control-plane restart every sidecar reconnects at once. grpc core queues calls
    # the Python server has not picked up yet and, past 1000 queued (3000 hard), starts
    # cancelling new ones: a 2000-stream reconnect storm lost ~10 streams that way
    # (benchmarks/xds_fanout.py). Raise both limits; a sidecar's stream is long-lived.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 50_000),
    # grpc sets SO_REUSEPORT by default: a second control plane on the same port would start
    # "fine" and take half the connections. Fail the bind instead.
    ("grpc.so_reuseport", 0),
)


def connection_age_options(age: float) -> list[tuple[str, int]]:
    """The grpc server options for a maximum connection age of ``age`` seconds, jittered
    ±10 % by grpc: then GOAWAY, and a grace (the shorter of 10 s and ``age``) for the open
    stream, after which it ends and the sidecar reconnects. The client certificate is
    checked per connection, so this bounds how long a connection outlives the
    certificate that opened it; it also spreads sidecars over replicas that came up
    later."""
    return [
        ("grpc.max_connection_age_ms", int(age * 1000)),
        ("grpc.max_connection_age_grace_ms", int(min(10.0, age) * 1000)),
    ]


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: AdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> None:
        await self._server._run_stream("sotw", context)

    async def DeltaAggregatedResources(self, request_iterator: Any, context: Any) -> None:
        await self._server._run_stream("delta", context)


class AdsServer:
    """An xDS v3 Aggregated Discovery Service serving an :class:`XdsSource`.

    Args:
        source: What each node sees.
        observer: Told about connections, ACKs and NACKs (default: nobody).
        debounce: Seconds to collect further changes after one before pushing.
        credentials: TLS credentials for the port (``grpc.ssl_server_credentials``); plain
            text if ``None``.
        authorizer: Decides whether a stream's peer may be the node it announces (default:
            every peer may be any node).
        options: grpc channel options (default :data:`DEFAULT_OPTIONS`).
        stop_grace: Seconds in-flight streams get when the server stops.
    """

    def __init__(
        self,
        source: XdsSource,
        observer: XdsObserver | None = None,
        *,
        debounce: float = 0.1,
        credentials: grpc.ServerCredentials | None = None,
        authorizer: NodeAuthorizer | None = None,
        options: Sequence[tuple[str, Any]] = DEFAULT_OPTIONS,
        stop_grace: float = 1.0,
    ) -> None:
        self._source = source
        self._observer: XdsObserver = observer if observer is not None else NullObserver()
        self._debounce = debounce
        self._credentials = credentials
        self._authorizer = authorizer
        self._options = list(options)
        self._stop_grace = stop_grace
        self._encoder = Encoder()
        self._stream_ids = itertools.count(1)
        self._changes: Changes | None = None
        self.plaintext_port: int | None = None
        """The bound plaintext port, when :meth:`serve` was given one."""

    async def serve(
        self,
        host: str = "0.0.0.0",
        port: int = 15012,
        *,
        plaintext_port: int | None = None,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) and serve until cancelled.

        With ``plaintext_port`` the same server also listens without TLS on that port (for
        proxyless gRPC clients that have no certificates; the bound one is then in
        :attr:`plaintext_port`). ``task_status.started`` reports the bound port. Raises
        ``RuntimeError`` if a port cannot be bound.
        """
        self._changes = Changes(self._source.revision)
        server = grpc.aio.server(options=self._options)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        address = f"{host}:{port}"
        if self._credentials is None:
            bound: int = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, self._credentials)
        if plaintext_port is not None:
            self.plaintext_port = server.add_insecure_port(f"{host}:{plaintext_port}")
        await server.start()
        logger.info("xds: ADS server listening on %s:%d", host, bound)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._fan_out, self._changes)
                task_status.started(bound)
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await server.stop(self._stop_grace)
            logger.info("xds: ADS server on %s:%d stopped", host, bound)

    async def _fan_out(self, changes: Changes) -> None:
        revision = changes.revision
        while True:
            await self._source.wait_for(revision)
            await anyio.sleep(self._debounce)
            revision = self._source.revision
            logger.debug("xds: publishing revision %d", revision)
            changes.publish(revision)

    async def _run_stream(self, flavor: Flavor, context: Any) -> None:
        assert self._changes is not None, "serve() starts the gRPC server"
        machine: Machine = (
            SotwMachine(self._encoder) if flavor == "sotw" else DeltaMachine(self._encoder)
        )
        handler = StreamHandler(
            stream_id=next(self._stream_ids),
            flavor=flavor,
            machine=machine,
            context=context,
            source=self._source,
            observer=self._observer,
            changes=self._changes,
            authorizer=self._authorizer,
        )
        await handler.run()
