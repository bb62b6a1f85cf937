"""The xDS v3 server: ADS over gRPC, State of the World and Delta.

:class:`AdsServer` serves what an :class:`XdsSource` computes for each node and reports every
stream's life and ACKs/NACKs to an :class:`XdsObserver`. :class:`MemorySource` is a
node-agnostic source for tests, benchmarks and static setups. Use inside a task group::

    server = AdsServer(source, registry, debounce=0.1)
    port = await tg.start(server.serve, "0.0.0.0", 15012)  # port 0: any free port

Layout: ``_source`` (the interface to the rest of the control plane), ``_content`` (content
hash versions, encoding once per resource), ``_machine`` / ``_sotw`` / ``_delta`` (sans-I/O
per-stream protocol state), ``_peer`` (the transport and verified client certificate of a
stream), ``_stream`` (one stream's tasks), ``_server`` (gRPC server and the
debounced fan-out). The type URLs live in :mod:`plait.core.xds.wire`, shared with the
sidecar's client.
"""

from plait.core.xds.wire import CLUSTER, ENDPOINT, LISTENER, ORDER, ROUTE, WILDCARD_TYPES

from ._memory import MemorySource
from ._peer import Peer
from ._server import DEFAULT_OPTIONS, AdsServer, connection_age_options
from ._source import (
    Flavor,
    Message,
    NodeAuthorizer,
    NodeInfo,
    NullObserver,
    StreamInfo,
    XdsObserver,
    XdsSource,
)

__all__ = [
    "CLUSTER",
    "DEFAULT_OPTIONS",
    "ENDPOINT",
    "LISTENER",
    "ORDER",
    "ROUTE",
    "WILDCARD_TYPES",
    "AdsServer",
    "Flavor",
    "MemorySource",
    "Message",
    "NodeAuthorizer",
    "NodeInfo",
    "NullObserver",
    "Peer",
    "StreamInfo",
    "XdsObserver",
    "XdsSource",
    "connection_age_options",
]
