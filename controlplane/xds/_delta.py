"""Delta (incremental) ADS: per-type subscriptions and the client's known resource versions.

Theory of operation (Envoy's "xDS REST and gRPC protocol", section "Incremental xDS"):

* The server keeps, per type, what the client has: ``known`` maps a resource name to the
  version last sent (seeded from ``initial_resource_versions`` on the first request of a type,
  so a reconnecting client is not sent what it already has at the same version). A response
  carries only resources whose version differs from ``known``, and ``removed_resources`` for
  names the client has that are no longer in its set (deleted, or dropped from the wildcard
  set). Versions are content hashes (``_content``), per resource.
* Subscriptions: ``*`` in ``resource_names_subscribe`` subscribes to the wildcard set, in
  ``resource_names_unsubscribe`` leaves it; for LDS/CDS a first request subscribing to nothing
  is the legacy wildcard. Explicit names are served in addition to the wildcard set, and are
  served while they exist anywhere (make-before-break, ``XdsSource.resources``).
* A newly subscribed name that does not exist is answered with that name in
  ``removed_resources`` ("does not exist"), so the client stops waiting for it.
* Unsubscribing forgets the resource without a ``removed_resources`` entry (the client already
  dropped it). If the wildcard still covers it, it is sent again at once: the client keeps
  wildcard resources. Leaving the wildcard likewise forgets every resource that is not also
  subscribed by name.
* ACK/NACK as in SotW, by ``response_nonce`` (the latest sent for the type) and
  ``error_detail``; the version reported is the response's ``system_version_info`` (the hash
  of the full set). Unlike SotW, a stale nonce voids only the ACK/NACK part: each Delta
  request carries subscription *changes*, which are never repeated, so they always apply.
* On a NACK ``known`` is kept as if applied: nothing is resent for the same content, and the
  next change of a rejected resource gets it a new version, so it is sent again.
* Pipelining as in SotW: changes are pushed without waiting for the previous ACK.
* Clusters kept for routes the client may still run: as in SotW (``_retain``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2  # type: ignore[import-untyped]

from plait.core.xds.wire import SERVED, WILDCARD_TYPES

from ._content import Encoder
from ._machine import Fetch, Nonces, Outcome, subscribed
from ._retain import Retention
from ._source import Message


@dataclass(slots=True)
class _TypeState:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # name → version the client has
    asked: set[str] = field(default_factory=set)  # newly subscribed, not yet answered
    version: str | None = None  # system_version_info of the latest response sent
    nonce: str | None = None  # of the latest response sent

    def update(self, subscribe: set[str], unsubscribe: set[str]) -> bool:
        """Apply subscription changes; True if they call for an answer now."""
        new = False
        if "*" in subscribe and not self.wildcard:
            self.wildcard = new = True
        if "*" in unsubscribe and self.wildcard:
            # The client drops what it had through the wildcard only (not named ones).
            self.wildcard = False
            self.known = {n: v for n, v in self.known.items() if n in self.names}
        added = subscribe - {"*"} - self.names
        self.names |= added
        self.asked |= added
        dropped = unsubscribe - {"*"}
        for name in dropped:
            self.names.discard(name)
            self.asked.discard(name)
            self.known.pop(name, None)
        # Under the wildcard, a dropped name the wildcard covers is sent again at once.
        return new or bool(added) or (self.wildcard and bool(dropped))

    def resources(self, type_url: str, fetch: Fetch) -> dict[str, Message]:
        return subscribed(type_url, fetch, self.wildcard, self.names)


class DeltaMachine:
    """The :class:`~._machine.Machine` for ``DeltaAggregatedResources``."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self._nonces = Nonces()
        self._types: dict[str, _TypeState] = {}
        self._retain = Retention()

    def on_request(self, request: Message) -> Outcome:
        type_url: str = request.type_url
        if type_url not in SERVED:
            return Outcome(type_url=type_url, ignored=True)
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        state = self._types.get(type_url)
        if state is None:
            state = self._types[type_url] = _TypeState()
            state.known = dict(request.initial_resource_versions)
            if not subscribe and type_url in WILDCARD_TYPES:
                subscribe = {"*"}
            state.update(subscribe, unsubscribe)
            return Outcome(type_url=type_url, respond=True, force=True)
        stale = bool(request.response_nonce) and request.response_nonce != state.nonce
        acked, nacked = None, None
        if request.response_nonce and not stale and state.version is not None:
            if request.HasField("error_detail"):
                nacked = (state.version, str(request.error_detail.message))
            else:
                acked = state.version
        recheck = (
            bool(request.response_nonce)
            and not request.HasField("error_detail")
            and self._retain.acked(type_url, request.response_nonce)
        )
        new = state.update(subscribe, unsubscribe)
        return Outcome(
            type_url=type_url,
            stale=stale,
            acked=acked,
            nacked=nacked,
            respond=new,
            recheck=recheck,
        )

    def response(self, type_url: str, fetch: Fetch, *, force: bool) -> Message | None:
        state = self._types[type_url]
        found = state.resources(type_url, fetch)
        found = self._retain.fill(type_url, found, state.wildcard, state.names)
        encoded_set = self._encoder.encode_set(found)
        encoded = encoded_set.items
        changed = [n for n in sorted(encoded) if state.known.get(n) != encoded[n].version]
        removed = sorted((state.known.keys() | state.asked) - encoded.keys())
        state.asked.clear()
        if not changed and not removed and not force:
            return None
        for name in removed:
            state.known.pop(name, None)
        for name in changed:
            state.known[name] = encoded[name].version
        state.version = encoded_set.version
        state.nonce = self._nonces()
        self._retain.sent(type_url, state.nonce, found)
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=state.version,
            resources=[
                discovery_pb2.Resource(
                    name=name, version=encoded[name].version, resource=encoded[name].packed
                )
                for name in changed
            ],
            type_url=type_url,
            removed_resources=removed,
            nonce=state.nonce,
        )

    def subscribed(self) -> list[str]:
        return [t for t in SERVED if t in self._types]
