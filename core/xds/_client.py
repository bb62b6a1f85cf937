"""The sidecar's ADS client: xDS v3 State of the World over one gRPC stream.

Theory of operation: the client opens ``StreamAggregatedResources`` to the
control plane, announces its :class:`Node` (id, and plait's metadata: the
Sidecar resource it runs and the Workload it registers), and subscribes to
every Cluster and Listener (wildcard). Each response replaces the client's
view of one type; the client then tries to build a complete config from the
four types (:func:`decode_mesh`):

* the view is **incomplete** (a listener names a route configuration, or a
  cluster names endpoints, not received yet): the response is ACKed (it is
  valid), the client subscribes to the missing names and waits;
* the config is **invalid** (unknown filter type, bad config, a port that
  cannot be bound when applied): the response is NACKed with the reason, and
  the client's view of that type stays what it was — the sidecar keeps
  serving its last good snapshot;
* the config is **complete and valid**: it is applied (an atomic snapshot
  swap) and persisted (:mod:`._state`), then ACKed.

After every accepted response the client re-derives the route and endpoint
names it needs and re-subscribes when they changed (names no longer needed
are dropped from the subscription, which is how the control plane learns it
may stop serving them: make-before-break).

Secrets (SDS) stand apart from the config: a client built with a ``secrets`` handler
also subscribes to the Secrets it names (the trust bundle ``ROOTCA``); each Secret
response goes to that handler, not to the decoder, and is ACKed, or NACKed with the
handler's reason. Its version is reported as ``secrets_version`` and takes no part in
the config's combined version.

Connection loss never touches the running snapshot (static stability): the
client reconnects with exponential backoff and full jitter (0.25 s doubling
to 30 s; reset once a stream has delivered a config) and re-subscribes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import grpc
from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # type: ignore[import-untyped]
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2  # type: ignore[import-untyped]
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]
from google.rpc import status_pb2  # type: ignore[import-untyped]

from plait.sdk import ConfigError

from ._decode import MESSAGES, resource_name
from .wire import CLUSTER, ENDPOINT, LISTENER, ORDER, ROUTE, SECRET, short_name

__all__ = ["Applier", "SecretHandler", "XdsClient", "XdsStatus", "make_node"]

log = logging.getLogger("plait.xds")

Resources = dict[str, dict[str, Message]]
Applier = Callable[[Resources, Mapping[str, str]], Awaitable[str | None]]
"""``apply(resources, versions)``: decode and swap in; returns a NACK reason or ``None``.
Raises :class:`Incomplete` (from the decoder) when the view lacks referenced resources."""
SecretHandler = Callable[[Mapping[str, Message]], str | None]
"""``take(secrets)``: the Secrets of one SDS response by name; returns a NACK reason or ``None``."""

_INVALID_ARGUMENT = 3


def make_node(node_id: str, metadata: Mapping[str, Any]) -> base_pb2.Node:
    """The :class:`Node` a plait sidecar announces; ``metadata`` goes under the ``plait`` key."""
    meta = struct_pb2.Struct()
    json_format.ParseDict({"plait": dict(metadata)}, meta)
    return base_pb2.Node(
        id=node_id, cluster="plait", metadata=meta, user_agent_name="plait-sidecar"
    )


@dataclass
class _TypeState:
    version: str = ""
    nonce: str = ""
    names: frozenset[str] = frozenset()
    """What we asked for (empty for the wildcard types)."""


@dataclass
class XdsStatus:
    """What ``/config_dump`` shows about the control-plane connection."""

    target: str
    connected: bool = False
    connected_at: float | None = None
    last_error: str | None = None
    last_nack: str | None = None
    """The latest NACK (``TYPE VERSION: reason``) until a later ACK of that type."""
    last_nack_type: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    reconnects: int = 0
    secrets_version: str | None = None
    """The SDS version last ACKed (``None``: no Secret received yet, or none subscribed)."""


class XdsClient:
    def __init__(
        self,
        target: str,
        node: base_pb2.Node,
        apply: Applier,
        *,
        incomplete: type[Exception],
        needed: Callable[[Resources], Mapping[str, set[str]]],
        initial: Resources | None = None,
        secrets: SecretHandler | None = None,
        secret_names: frozenset[str] = frozenset(),
        credentials: Callable[[], Awaitable[grpc.ChannelCredentials]] | None = None,
    ) -> None:
        self.target = target
        self.credentials = credentials
        """Called before each connection: TLS credentials for it (``None``: plaintext)."""
        self.node = node
        self.apply = apply
        self.incomplete = incomplete
        self.needed = needed
        self.view: Resources = {t: dict((initial or {}).get(t, {})) for t in ORDER}
        self.status = XdsStatus(target)
        self._states: dict[str, _TypeState] = {}
        self.secrets = secrets
        self.secret_names = secret_names

    async def run(self) -> None:
        """Stay subscribed until cancelled; never raises for control-plane trouble."""
        delay = 0.25
        while True:
            delivered = False
            try:
                delivered = await self._stream()
            except grpc.aio.AioRpcError as exc:
                self.status.last_error = f"{exc.code().name}: {exc.details()}"
            except (OSError, grpc.RpcError) as exc:
                self.status.last_error = f"{type(exc).__name__}: {exc}"
            self.status.connected = False
            self.status.reconnects += 1
            delay = 0.25 if delivered else min(delay * 2, 30.0)
            pause = random.uniform(0, delay)  # full jitter
            log.warning(
                "control plane %s: %s; reconnecting in %.2fs",
                self.target,
                self.status.last_error or "stream ended",
                pause,
            )
            await anyio.sleep(pause)

    async def _stream(self) -> bool:
        delivered = False
        options = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000)]
        channel = (
            grpc.aio.secure_channel(self.target, await self.credentials(), options=options)
            if self.credentials is not None
            else grpc.aio.insecure_channel(self.target, options=options)
        )
        async with channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
            self._states = {}
            first = True
            for type_url in (CLUSTER, LISTENER):
                await call.write(self._request(type_url, node=first))
                first = False
            if self.secrets is not None and self.secret_names:
                self._states[SECRET] = _TypeState(names=self.secret_names)
                await call.write(self._request(SECRET))
            await self._resubscribe(call)
            async for response in call:
                if not self.status.connected:
                    self.status.connected = True
                    self.status.connected_at = time.time()
                    self.status.last_error = None
                if await self._on_response(call, response):
                    delivered = True
        return delivered

    def _request(
        self, type_url: str, *, node: bool = False, error: str | None = None
    ) -> discovery_pb2.DiscoveryRequest:
        st = self._states.setdefault(type_url, _TypeState())
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            version_info=st.version,
            response_nonce=st.nonce,
            resource_names=sorted(st.names),
        )
        if node:
            req.node.CopyFrom(self.node)
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=_INVALID_ARGUMENT, message=error))
        return req

    async def _on_response(self, call: Any, response: discovery_pb2.DiscoveryResponse) -> bool:
        """Handle one response; True when it made a new config active."""
        type_url = response.type_url
        st = self._states.setdefault(type_url, _TypeState())
        st.nonce = response.nonce
        if type_url == SECRET and self.secrets is not None:
            return await self._on_secrets(call, response, st)
        cls = MESSAGES.get(type_url)
        if cls is None:
            await call.write(self._request(type_url, error=f"unsupported type {type_url}"))
            return False
        try:
            received = {}
            for any_msg in response.resources:
                msg = cls()
                if not any_msg.Unpack(msg):
                    raise ConfigError(f"resource of type {any_msg.type_url}, expected {type_url}")
                received[resource_name(type_url, msg)] = msg
        except ConfigError as exc:
            return await self._nack(call, type_url, response.version_info, str(exc))
        candidate = dict(self.view)
        candidate[type_url] = received
        versions = {**self.status.versions, type_url: response.version_info}
        activated = False
        try:
            reason = await self.apply(candidate, versions)
        except ConfigError as exc:
            reason = str(exc)
        except self.incomplete as exc:
            log.debug("waiting for more resources: %s", exc)
            reason = None
        else:
            activated = reason is None
        if reason is not None:
            return await self._nack(call, type_url, response.version_info, reason)
        self.view = candidate
        st.version = response.version_info
        self.status.versions = versions
        if self.status.last_nack_type == type_url:  # that type is fine again
            self.status.last_nack = self.status.last_nack_type = None
        await call.write(self._request(type_url))
        await self._resubscribe(call)
        return activated

    async def _on_secrets(
        self, call: Any, response: discovery_pb2.DiscoveryResponse, st: _TypeState
    ) -> bool:
        assert self.secrets is not None
        received: dict[str, Message] = {}
        reason: str | None = None
        for any_msg in response.resources:
            msg = secret_pb2.Secret()
            if not any_msg.Unpack(msg):
                reason = f"resource of type {any_msg.type_url}, expected {SECRET}"
                break
            received[msg.name] = msg
        if reason is None:
            try:
                reason = self.secrets(received)
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            return await self._nack(call, SECRET, response.version_info, reason)
        st.version = self.status.secrets_version = response.version_info
        if self.status.last_nack_type == SECRET:
            self.status.last_nack = self.status.last_nack_type = None
        await call.write(self._request(SECRET))
        return False

    async def _nack(self, call: Any, type_url: str, version: str, reason: str) -> bool:
        self.status.last_nack = f"{short_name(type_url)} {version}: {reason}"
        self.status.last_nack_type = type_url
        log.error("NACK %s version %s: %s", short_name(type_url), version, reason)
        await call.write(self._request(type_url, error=reason))
        return False

    async def _resubscribe(self, call: Any) -> None:
        needed = self.needed(self.view)
        for type_url in (ENDPOINT, ROUTE):
            names = frozenset(needed.get(type_url, set()))
            st = self._states.setdefault(type_url, _TypeState())
            if names != st.names:  # a new stream starts with no names: re-subscribes
                st.names = names
                await call.write(self._request(type_url))
