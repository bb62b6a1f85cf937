"""Outbound mTLS origination: when a pool speaks TLS to an endpoint, and whom it must find.

Theory of operation. Which endpoints get mTLS is decided per (cluster, endpoint) from the
config alone, by :func:`plan`, like Istio's auto mTLS:

* the cluster's BackendTrafficPolicy ``tls.mode: DISABLE``: plaintext;
* ``tls.mode: ISTIO_MUTUAL``: always mTLS; without a workload certificate, or to an
  endpoint with no expected identity, the connect fails (never plaintext);
* no mode (auto): mTLS to endpoints whose Workload accepts it (``Endpoint.mtls``, from
  ``tlsMode: mutual``) once the sidecar has an identity, plaintext before that and to
  everything else.

A pool with a plan holds an :class:`Origination` and connects through :func:`connect`. The
client context is asked of the runtime's :class:`~plait.core.identity.CertStore` at every
connect, so a new handshake after a rotation presents the new leaf while pooled
connections finish on theirs. The context offers only the HTTP version the pool speaks
(ALPN ``http/1.1`` or ``h2``); a server that selects another is refused, and so is one
that selects none for an HTTP/2 pool (without ALPN, TLS means HTTP/1.1). A ``tcp``
relay's origination (``relay=True``) offers no ALPN: its bytes are not HTTP. The HTTP/2
pool of an upgrade (HTTP/1.1 requests sent as HTTP/2 to a sidecar, ``_upgrade.py``;
``upgrade=True``) offers ``h2`` and ``http/1.1``: a server that selects ``http/1.1`` (or
none) is not refused as an error but with :class:`UpstreamDowngrade`, and the request goes
as HTTP/1.1.

No byte goes to a server before its identity is checked: the protocol factory returns a
:class:`_Gate`, whose ``connection_made`` (called once the handshake is complete) reads
the server's SPIFFE ID from its verified certificate and, only if it is the endpoint's
expected ID, hands the transport to the real connection protocol. Otherwise the transport
is aborted and the try fails with :class:`UpstreamIdentityError`; a failed handshake (a
chain from another CA, an expired certificate; the server refusing our certificate under
TLS 1.2 -- under TLS 1.3 that refusal comes after the handshake, as a reset) with
:class:`UpstreamTlsError`. Both are ``UpstreamConnectError``: retries and outlier
detection treat them as any connect failure. Their ``reason`` is a fixed text
(``x-plait-reason``, the access log, the requests metric; a label an attacker's
certificate cannot multiply); the IDs are in the message, logged as a warning (at most
one per pool every ``WARN_EVERY`` seconds, the rest at debug level). Each
handshake is counted per cluster (``tls_handshakes_ok``, ``tls_handshake_failures``,
``tls_peer_identity_mismatches``) in the upstream event counters of ``/metrics``, and
so is a TLS error on an open connection (``tls_errors``: a bad record, an alert).

Connections made in plaintext before the sidecar had an identity are *stale* for an
auto-mTLS pool once it has one, and so are connections made with a certificate or trust
bundle the sidecar has since replaced (:meth:`Origination.stale`): the pools give them no
new requests, the ones in flight finish, and the next requests go on a new handshake with
the current certificate. A rotation thus reaches long-lived connections too (an HTTP/2
connection between sidecars would otherwise carry every request on the first handshake's
certificate for as long as it lives).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import anyio

from plait.sdk import UpstreamConnectError

from ..config._model import Cluster, Endpoint
from ..identity.store import CertStore, peer_spiffe_id
from ..identity.tlsio import TlsStream, connect_tls, hand_over

__all__ = [
    "Origination",
    "UpstreamDowngrade",
    "UpstreamIdentityError",
    "UpstreamTlsError",
    "connect",
    "plan",
]

log = logging.getLogger(__name__)

P = TypeVar("P", bound=asyncio.BaseProtocol)

WARN_EVERY: Final = 10.0
_H1: Final = ("http/1.1",)
_UPGRADE: Final = ("h2", "http/1.1")
_UNREACHABLE: Final = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
)


class UpstreamTlsError(UpstreamConnectError):
    """The TLS handshake with the upstream failed (or could not start)."""

    reason = "tls: handshake failed"


class UpstreamDowngrade(UpstreamConnectError):
    """The upstream's verified handshake chose HTTP/1.1 where an upgrade offered HTTP/2 too
    (never a request's failure: the upgrade pool goes on over HTTP/1.1)."""


class UpstreamIdentityError(UpstreamConnectError):
    """The upstream's verified certificate carries a SPIFFE ID it is not expected to have."""

    reason = "tls: unexpected peer identity"


def plan(cluster: Cluster, endpoint: Endpoint) -> tuple[bool, str | None] | None:
    """``(required, expected SPIFFE ID)`` if the pool to ``endpoint`` may originate mTLS,
    ``None`` for plaintext only (see the module docstring)."""
    mode = cluster.policy.tls_mode if cluster.policy is not None else None
    if mode == "DISABLE":
        return None
    if mode == "ISTIO_MUTUAL":
        return True, endpoint.identity
    if endpoint.mtls and endpoint.identity is not None:
        return False, endpoint.identity
    return None


class Origination:
    """How one pool reaches its endpoint over mTLS; see the module docstring."""

    __slots__ = (
        "_last",
        "_session",
        "_warned",
        "alpn",
        "counters",
        "expected",
        "required",
        "store",
        "upgrade",
    )

    def __init__(
        self,
        store: CertStore,
        *,
        required: bool,
        expected: str | None,
        h2: bool,
        counters: dict[str, int],
        relay: bool = False,
        upgrade: bool = False,
    ) -> None:
        self.store = store
        self.required = required
        self.expected = expected
        self.upgrade = upgrade
        """An upgrade's HTTP/2 pool: offers both versions, takes only ``h2``."""
        self.alpn: tuple[str, ...] = (
            () if relay else _UPGRADE if upgrade else ("h2",) if h2 else _H1
        )
        self.counters = counters
        self._warned = -WARN_EVERY
        self._last: ssl.SSLObject | None = None
        """The latest connection whose server was verified (its session may have a
        ticket by now: TLS 1.3 sends them after the handshake)."""
        self._session: tuple[ssl.SSLContext, ssl.SSLSession] | None = None

    def context(self, key: str) -> ssl.SSLContext | None:
        """The client context for a new connection; ``None``: plaintext (auto, no identity)."""
        if not self.store.ready:
            if self.required:
                self.count("tls_handshake_failures")
                raise UpstreamTlsError(f"tls to {key}: this sidecar has no workload certificate")
            return None
        if self.expected is None:
            self.count("tls_handshake_failures")
            raise UpstreamTlsError(f"tls to {key}: the endpoint has no expected identity")
        return self.store.client_context(self.alpn)

    def session(self, ctx: ssl.SSLContext) -> ssl.SSLSession | None:
        """The session a new connection made with ``ctx`` offers to resume: the latest
        one with a ticket from this endpoint, if it was made with the same context (the
        same leaf and bundle: after a rotation the next handshake is a full one)."""
        last = self._last
        if last is not None:
            got = last.session
            if got is not None and got.has_ticket:
                self._session, self._last = (last.context, got), None
        if self._session is None or self._session[0] is not ctx:
            return None
        return self._session[1]

    def verified(self, sslobj: ssl.SSLObject) -> None:
        """A handshake whose server is the expected one (full or resumed) completed."""
        self._last = sslobj
        if sslobj.session_reused:
            self.count("tls_sessions_resumed")

    def stale(self, made: int) -> bool:
        """Whether a pooled connection made with certificate generation ``made`` (``-1``:
        in plaintext) takes no new requests: it was made in plaintext and mTLS is now
        possible, or with a certificate or bundle the sidecar has since replaced (a
        rotation; its open requests finish, the next ones go on a new handshake)."""
        store = self.store
        return made != store.generation and (made >= 0 or store.ready)

    def count(self, event: str) -> None:
        self.counters[event] = self.counters.get(event, 0) + 1

    def warn(self, err: UpstreamConnectError) -> None:
        """Log a refused connection: a warning, unless this pool warned recently."""
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning("%s", err)
        else:
            log.debug("%s", err)


class _Gate(asyncio.Protocol):
    """Checks the server's identity before the real protocol sees the connection."""

    def __init__(self, make: Callable[[], asyncio.BaseProtocol], origin: Origination) -> None:
        self.make = make
        self.origin = origin
        self.inner: asyncio.BaseProtocol | None = None
        self.refused: UpstreamConnectError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        origin = self.origin
        sslobj = transport.get_extra_info("ssl_object")
        peer = peer_spiffe_id(sslobj) if sslobj is not None else None
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        key = transport.get_extra_info("peername")
        where = f"{key[0]}:{key[1]}" if isinstance(key, tuple) else "the upstream"
        if peer is None or str(peer) != origin.expected:
            origin.count("tls_peer_identity_mismatches")
            self.refused = UpstreamIdentityError(
                f"tls: unexpected peer identity {peer or '(none)'} from {where} "
                f"(expected {origin.expected})"
            )
        elif origin.upgrade and alpn != "h2":
            self.refused = UpstreamDowngrade(
                f"tls: {where} selected ALPN {alpn or '(none)'}: HTTP/1.1 to it"
            )
        elif alpn not in origin.alpn and not (alpn is None and origin.alpn in (_H1, ())):
            origin.count("tls_handshake_failures")
            self.refused = UpstreamTlsError(
                f"tls: {where} selected ALPN {alpn or '(none)'}, not {origin.alpn[0]}"
            )
        if self.refused is not None:
            cast(asyncio.Transport, transport).abort()  # uvloop's is not a subclass
            return
        origin.verified(sslobj)
        if isinstance(transport, TlsStream):
            transport.on_error = lambda exc: origin.count("tls_errors")
        self.inner = inner = self.make()
        hand_over(transport, inner)


async def connect(
    make: Callable[[], P], endpoint: Endpoint, timeout: float, origin: Origination | None
) -> tuple[P, int]:
    """A connected protocol from ``make`` and the certificate generation its mTLS handshake
    used (``CertStore.generation``; ``-1``: plaintext), for :meth:`Origination.stale`.

    Raises:
        UpstreamConnectError: refused, unreachable or timed out.
        UpstreamTlsError: the handshake failed.
        UpstreamIdentityError: the server is not who the endpoint must be.
    """
    loop = asyncio.get_running_loop()
    key = endpoint.key
    ctx = origin.context(key) if origin is not None else None
    made = origin.store.generation if origin is not None and ctx is not None else -1
    gate: _Gate | None = None
    factory: Callable[[], Any] = make
    if ctx is not None:
        assert origin is not None
        gate = _Gate(make, origin)
        factory = lambda: gate  # noqa: E731
    try:
        with anyio.fail_after(timeout):
            if ctx is None:
                _, proto = await loop.create_connection(factory, endpoint.address, endpoint.port)
            else:
                assert origin is not None
                await connect_tls(
                    factory, endpoint.address, endpoint.port, ctx, origin.session(ctx), timeout
                )
    except TimeoutError:
        raise UpstreamConnectError(f"connect timeout to {key} after {timeout}s") from None
    except ssl.SSLError as exc:
        assert origin is not None
        origin.count("tls_handshake_failures")
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = f"certificate verify failed: {exc.verify_message}"
        else:
            why = exc.reason or str(exc)
        err = UpstreamTlsError(f"tls handshake with {key} failed: {why}")
        origin.warn(err)
        raise err from None
    except OSError as exc:
        why = (exc.strerror or str(exc) or type(exc).__name__).lower()
        if origin is None or ctx is None or exc.errno in _UNREACHABLE:
            raise UpstreamConnectError(f"connect failure to {key}: {why}") from None
        origin.count("tls_handshake_failures")
        err = UpstreamTlsError(f"tls handshake with {key} failed: {why}")
        origin.warn(err)
        raise err from None
    if gate is None:
        return proto, -1
    assert origin is not None
    if gate.inner is None:
        refused = gate.refused or UpstreamTlsError(f"tls with {key}: closed in the handshake")
        if not isinstance(refused, UpstreamDowngrade):  # not an error: the pool falls back
            origin.warn(refused)
        raise refused
    origin.count("tls_handshakes_ok")
    return gate.inner, made  # type: ignore[return-value]
