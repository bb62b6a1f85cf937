"""The seam between the ADS server and the rest of the control plane.

The server owns the xDS protocol (streams, nonces, versions, ACK/NACK, debouncing); it knows
nothing about resources. What each node sees comes from an :class:`XdsSource` (the store, the
service registry and the translator behind one object), and what happens on each stream is
reported to an :class:`XdsObserver` (the registry, which shows connected sidecars and the
version each one runs). Before a stream is served, an optional :class:`NodeAuthorizer` decides
whether its peer (:class:`~._peer.Peer`: the transport and the verified client certificate)
may be the node it announces.

Contract of a source:

* ``revision`` only grows, and grows whenever anything any node could see changed. It may also
  grow for changes no node can see: the server hashes content, so a spurious bump costs one
  recomputation per stream and pushes nothing.
* ``resources`` is synchronous and should be cheap for a node whose view did not change (cache
  per :class:`NodeInfo`, which is hashable for that purpose); the server calls it once per
  subscribed type per stream after each debounced change.
* A resource object, once handed out, is never mutated: new content is a new message. The
  server caches each resource's serialization, and each set's version, by object identity
  (``_content.Encoder``), so returning the *same* objects for an unchanged view, and sharing
  them between nodes that see the same thing, is what makes a fan-out cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from google.protobuf import json_format  # type: ignore[import-untyped]

from ._peer import Peer

Message = Any
"""A protobuf message (``google.protobuf.message.Message``; protobuf ships no type hints)."""

Flavor = Literal["sotw", "delta"]


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeInfo:
    """The identity a client announces in ``DiscoveryRequest.node``; hashable (a cache key).

    ``metadata`` is the node's ``google.protobuf.Struct`` as plain JSON values; equality and
    hashing use its canonical JSON text ``metadata_json`` instead.
    """

    id: str
    cluster: str = ""
    user_agent_name: str = ""
    metadata_json: str = "{}"
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_proto(cls, node: Message) -> NodeInfo:
        """Build from an ``envoy.config.core.v3.Node``."""
        metadata: dict[str, Any] = json_format.MessageToDict(node.metadata)
        return cls(
            id=node.id,
            cluster=node.cluster,
            user_agent_name=node.user_agent_name,
            metadata_json=json.dumps(metadata, sort_keys=True, separators=(",", ":")),
            metadata=metadata,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamInfo:
    """One ADS stream, as the observer sees it."""

    stream_id: int
    node: NodeInfo
    peer: str  # grpc's ``context.peer()``, e.g. "ipv4:127.0.0.1:53412"
    flavor: Flavor
    connected_at: float  # time.time() of the first request
    identity: str | None = None
    """The SPIFFE ID of the verified client certificate (``None``: plaintext port)."""


class XdsSource(Protocol):
    """What the server serves; implemented by the control plane (store + registry + translator)."""

    @property
    def revision(self) -> int:
        """Bumps whenever anything any node could see changed."""
        ...

    async def wait_for(self, revision: int) -> int:
        """Block until ``self.revision > revision``; return the new revision."""
        ...

    def resources(
        self, node: NodeInfo, type_url: str, names: frozenset[str] | None
    ) -> Mapping[str, Message]:
        """The node's resources of one type, by name.

        ``names=None``: the wildcard set (the node's scoped view). Otherwise exactly the named
        ones that exist (make-before-break: a named resource is returned while it exists
        anywhere, even if the node's scoped view no longer references it).
        """
        ...


class XdsObserver(Protocol):
    """Told about streams and their ACKs/NACKs (the registry); every method sync and cheap.

    A method that raises is logged and otherwise ignored: the stream carries on.
    """

    def connected(self, stream: StreamInfo) -> None:
        """The stream's first request arrived (with a valid node)."""

    def acked(self, stream: StreamInfo, type_url: str, version: str) -> None:
        """The client applied ``version`` of ``type_url`` (the version of the response whose
        nonce it echoed)."""

    def nacked(self, stream: StreamInfo, type_url: str, version: str, message: str) -> None:
        """The client rejected ``version`` (the response whose nonce it echoed) with
        ``message``; it keeps running the version it last ACKed."""

    def disconnected(self, stream: StreamInfo) -> None:
        """The stream ended, whatever the reason; called exactly once after ``connected``."""


class NodeAuthorizer(Protocol):
    """Decides whether a peer may be the node it announces (the first request's ``node``)."""

    def authorize(self, node: NodeInfo, peer: Peer) -> str | None:
        """``None`` to serve the stream, else why not: it ends with ``PERMISSION_DENIED`` and
        that message. Called once per stream, before anything is served."""
        ...


class NullObserver:
    """An :class:`XdsObserver` that ignores everything."""

    def connected(self, stream: StreamInfo) -> None:
        pass

    def acked(self, stream: StreamInfo, type_url: str, version: str) -> None:
        pass

    def nacked(self, stream: StreamInfo, type_url: str, version: str, message: str) -> None:
        pass

    def disconnected(self, stream: StreamInfo) -> None:
        pass
