"""Inbound mTLS: peer authentication in front of a listener's connection protocol.

Theory of operation: an inbound listener without TLS files of its own accepts every
connection into :class:`Sniff` unless its effective mode is plaintext (``DISABLE``, or
no PeerAuthentication and no identity yet), in which case the connection protocol is
made directly and this module costs nothing. ``Sniff`` reads the first bytes: a TLS
record starts ``0x16 0x03`` (a handshake record, SSL 3.0 / TLS 1.x); anything else is
plaintext. Plaintext goes to the connection protocol as if accepted directly
(``PERMISSIVE``, counted ``transport="plaintext"``) or is refused (``STRICT``).

TLS goes to plait's own SSL protocol
(:class:`~plait.core.identity._tlsstream.TlsStream`) made here rather than through
``loop.start_tls``: the bytes already read (the start of the ClientHello) have to be
fed to it, and ``start_tls`` can only read from the socket. Its context is the
:class:`CertStore`'s front context, so each handshake uses the current certificate
and trust bundle: the client's certificate is required and verified against the
bundle. A handshake that fails wakes the waiter future with the error, which is
turned into a refusal reason (:func:`refusal_reason`). A handshake that succeeds hands
the TLS transport to :class:`Gate`, which checks the peer's SPIFFE ID: exactly one,
and of this sidecar's trust domain (a peer of another trust domain whose chain the
bundle happens to accept is still refused). Then the connection protocol takes over, and
reads the verified identity from the TLS object (:func:`peer_identity`).

A TLS error after the handshake (a bad record, garbage, a refused renegotiation)
closes the connection after its alert and is counted as reason ``tls_error``.

Refusals are counted in ``/metrics`` by reason (``plait_inbound_mtls_refused_total``)
and logged at debug level each; an info line per listener and reason at most once a
minute summarises them, so a scan cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING

from cryptography import x509

from plait.sdk import PeerIdentity

from ..config._model import MtlsMode
from ..identity.store import spiffe_ids_of
from ..identity.tlsio import TlsStream, hand_over

if TYPE_CHECKING:
    from ._listener import Listener

__all__ = ["Gate", "Refusals", "Sniff", "effective_mode", "peer_identity", "refusal_reason"]

log = logging.getLogger(__name__)

_X509_EXPIRED = 10
_X509_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21})
"""Unable to get the issuer, self-signed leaf, self-signed root in chain, no local issuer,
unable to verify the leaf: the chain does not lead to a root in the bundle."""
_LOG_EVERY = 60.0


def effective_mode(configured: MtlsMode | None, has_identity: bool) -> MtlsMode:
    """The mode a new connection gets: the configured one, else Istio's default."""
    if configured is not None:
        return configured
    return MtlsMode.PERMISSIVE if has_identity else MtlsMode.DISABLE


def refusal_reason(exc: BaseException | None) -> str:
    """The metrics label for a failed inbound handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _X509_EXPIRED:
            return "expired"
        if exc.verify_code in _X509_UNKNOWN_CA:
            return "unknown_ca"
        return "bad_certificate"
    if isinstance(exc, ssl.SSLError):
        text = f"{exc.reason or ''} {exc}".upper()
        if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in text or "CERTIFICATE REQUIRED" in text:
            return "no_client_cert"
        if "UNKNOWN_CA" in text:
            return "unknown_ca"
        if "EXPIRED" in text:
            return "expired"
        if "CERTIFICATE" in text:
            return "bad_certificate"
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return "handshake_timeout"
    return "handshake_error"


def peer_identity(tls: ssl.SSLObject) -> PeerIdentity | None:
    """The verified peer's identity: its SPIFFE ID (if exactly one) and subject."""
    der = tls.getpeercert(binary_form=True)
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    ids = spiffe_ids_of(cert)
    return PeerIdentity(
        spiffe_id=str(ids[0]) if len(ids) == 1 else None, subject=cert.subject.rfc4514_string()
    )


class Refusals:
    """Counts a listener's refusals and logs them without flooding."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._since: dict[str, int] = {}
        self._next_log = 0.0

    def refuse(self, reason: str, peer: object, detail: object = None) -> None:
        name = self.listener.name
        self.listener.runtime.stats.inbound_refusal(name, reason)
        log.debug("%s: refused %s: %s (%s)", name, peer, reason, detail or "-")
        self._since[reason] = self._since.get(reason, 0) + 1
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + _LOG_EVERY
            counts = ", ".join(f"{r}={n}" for r, n in sorted(self._since.items()))
            self._since.clear()
            log.info("%s: inbound mTLS refused connections (%s); details at debug", name, counts)


class Sniff(asyncio.Protocol):
    """The first protocol of a connection on an mTLS-capable inbound listener."""

    def __init__(self, listener: Listener, mode: MtlsMode, refusals: Refusals) -> None:
        self.listener = listener
        self.mode = mode
        self.refusals = refusals
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.listener.timeouts.request_headers, self._timed_out)

    def _timed_out(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.buf == b"\x16":
            return  # one byte of what may be a TLS record: wait for the version byte
        if self.timer is not None:
            self.timer.cancel()
        transport, buf = self.transport, self.buf
        assert transport is not None
        self.transport, self.buf = None, b""
        if buf[:2] == b"\x16\x03":
            self._tls(transport, buf)
        elif self.mode is MtlsMode.STRICT:
            self.refusals.refuse("plaintext", transport.get_extra_info("peername"))
            transport.abort()
        else:
            self.listener.runtime.stats.inbound_accepted(self.listener.name, "plaintext")
            app = self.listener.make_app_protocol()
            transport.set_protocol(app)
            app.connection_made(transport)
            app.data_received(buf)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _tls(self, transport: asyncio.Transport, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(lambda f: self._handshake_done(f, peer))
        tls = TlsStream(
            Gate(self.listener, self.refusals),
            self.listener.mtls_context(),
            server_side=True,
            waiter=waiter,
            timeout=self.listener.timeouts.request_headers,
        )
        refusals = self.refusals
        tls.on_error = lambda exc: refusals.refuse("tls_error", peer, exc)
        transport.set_protocol(tls)
        tls.connection_made(transport)
        tls.data_received(first)

    def _handshake_done(self, fut: asyncio.Future[None], peer: object) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:
            # Without a certificate of its own the sidecar cannot complete any handshake
            # (OpenSSL words that differently from version to version).
            ready = self.listener.runtime.identity.ready
            self.refusals.refuse(refusal_reason(exc) if ready else "no_identity", peer, exc)


class Gate(asyncio.Protocol):
    """Receives the TLS transport after a verified handshake; checks the peer's SPIFFE ID."""

    def __init__(self, listener: Listener, refusals: Refusals) -> None:
        self.listener = listener
        self.refusals = refusals

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tls = transport.get_extra_info("ssl_object")
        ident = peer_identity(tls) if tls is not None else None
        peer = transport.get_extra_info("peername")
        leaf = self.listener.runtime.identity.leaf
        if ident is None or ident.spiffe_id is None:
            self.refusals.refuse("bad_certificate", peer, "not exactly one SPIFFE ID")
            transport.abort()  # type: ignore[attr-defined]
            return
        domain = ident.spiffe_id[len("spiffe://") :].partition("/")[0]
        if leaf is None or domain != leaf.spiffe_id.trust_domain:
            self.refusals.refuse("wrong_trust_domain", peer, ident.spiffe_id)
            transport.abort()  # type: ignore[attr-defined]
            return
        self.listener.runtime.stats.inbound_accepted(self.listener.name, "mtls")
        app = self.listener.make_app_protocol()
        self.listener.verified = (tls, ident)  # read back by the app's connection_made
        try:
            hand_over(transport, app)
        finally:
            self.listener.verified = None

    def data_received(self, data: bytes) -> None:  # pragma: no cover - swapped out first
        pass
