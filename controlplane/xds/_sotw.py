"""State of the World (SotW) ADS: per-type subscription and ACK state of one stream.

Theory of operation (Envoy's "xDS REST and gRPC protocol", sections "ACK/NACK and resource
type instance version", "When to send an update", "How the client specifies what resources to
return"):

* Every response carries the complete set of the type's resources the client subscribed to,
  a ``version_info`` (the content hash of that set, ``_content.set_version``) and a fresh
  ``nonce``. The next request of that type echoes the nonce.
* Subscriptions: for LDS/CDS an empty ``resource_names`` means wildcard, as long as the client
  never named resources explicitly (the legacy wildcard); ``*`` in the names always means
  wildcard, on any type. Explicit names are served in addition to the wildcard set. For
  RDS/EDS an empty list subscribes to nothing.
* A request echoing a nonce that is not the latest sent for its type is stale: the client has
  not seen the latest response yet, and its next request will carry the full, current
  subscription anyway. It is ignored entirely (no ACK, no NACK, no subscription change).
* A current-nonce request with ``error_detail`` is a NACK of the version sent with that nonce:
  the client keeps the version it ACKed before. Nothing is resent for a NACK (the same content
  would be rejected again); the next content change is pushed as usual.
* Otherwise it is an ACK of that version, plus possibly a new subscription, which is answered
  at once.
* Pipelining: a change is pushed even while an earlier response of the type is un-ACKed. The
  spec allows it, the client then sees only the latest state, and the ACK of the earlier
  response becomes stale. Holding pushes back until the ACK would delay convergence behind a
  slow client for no gain in correctness, since each response is a complete state.
* Clusters and their endpoints that left the source stay in the CDS/EDS sets while a route
  the client may still run names them (``_retain``, make-before-break).
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2  # type: ignore[import-untyped]

from plait.core.xds.wire import SERVED, WILDCARD_TYPES

from ._content import Encoder
from ._machine import Fetch, Nonces, Outcome, subscribed
from ._retain import Retention
from ._source import Message


@dataclass(slots=True)
class _TypeState:
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    named_once: bool = False  # the client has named resources: "empty" no longer means "*"
    version: str | None = None  # of the latest response sent
    nonce: str | None = None  # of the latest response sent

    def subscribe(self, type_url: str, requested: frozenset[str]) -> bool:
        """Apply a request's ``resource_names``; True if the subscription changed."""
        explicit = requested - {"*"}
        self.named_once = self.named_once or bool(explicit)
        wildcard = "*" in requested or (
            not requested and type_url in WILDCARD_TYPES and not self.named_once
        )
        changed = (wildcard, explicit) != (self.wildcard, self.names)
        self.wildcard, self.names = wildcard, explicit
        return changed

    def resources(self, type_url: str, fetch: Fetch) -> dict[str, Message]:
        return subscribed(type_url, fetch, self.wildcard, self.names)


class SotwMachine:
    """The :class:`~._machine.Machine` for ``StreamAggregatedResources``."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self._nonces = Nonces()
        self._types: dict[str, _TypeState] = {}
        self._retain = Retention()

    def on_request(self, request: Message) -> Outcome:
        type_url: str = request.type_url
        if type_url not in SERVED:
            return Outcome(type_url=type_url, ignored=True)
        requested = frozenset(request.resource_names)
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = _TypeState()
            state.subscribe(type_url, requested)
            return Outcome(type_url=type_url, respond=True, force=True)
        # Any ACK, the latest or not, says which routes the client runs.
        recheck = not request.HasField("error_detail") and self._retain.acked(
            type_url, request.response_nonce
        )
        if request.response_nonce != state.nonce or state.version is None:
            return Outcome(type_url=type_url, stale=True, recheck=recheck)
        acked, nacked = None, None
        if request.HasField("error_detail"):
            nacked = (state.version, str(request.error_detail.message))
        else:
            acked = state.version
        changed = state.subscribe(type_url, requested)
        # A changed subscription is always answered, even when the content hash is the same (a
        # newly named resource that does not exist): the client learns it was heard.
        return Outcome(
            type_url=type_url,
            acked=acked,
            nacked=nacked,
            respond=changed,
            force=changed,
            recheck=recheck,
        )

    def response(self, type_url: str, fetch: Fetch, *, force: bool) -> Message | None:
        state = self._types[type_url]
        found = state.resources(type_url, fetch)
        found = self._retain.fill(type_url, found, state.wildcard, state.names)
        encoded = self._encoder.encode_set(found)
        if encoded.version == state.version and not force:
            return None
        state.version, state.nonce = encoded.version, self._nonces()
        self._retain.sent(type_url, state.nonce, found)
        return discovery_pb2.DiscoveryResponse(
            version_info=encoded.version,
            resources=encoded.packed,
            type_url=type_url,
            nonce=state.nonce,
        )

    def subscribed(self) -> list[str]:
        return [t for t in SERVED if t in self._types]
