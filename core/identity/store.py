"""A sidecar's mesh identity: its current certificate, key and trust bundle, as TLS contexts.

Theory of operation: the identity agent calls :meth:`CertStore.update` with each new
leaf (chain, key) and the trust bundle of the moment; the control plane's SDS secret
``ROOTCA`` brings each new bundle in between through :meth:`CertStore.update_bundle`
(same leaf, new roots: a root rotation reaches the sidecar without waiting for its
renewal). An update builds fresh
:class:`ssl.SSLContext` objects and swaps them in one assignment; nothing that holds
a connection is touched, so open connections finish on the certificate they
negotiated while every new handshake uses the new one.

* **Outbound** connections ask :meth:`client_context` at connect time, so they always
  get the current one. It takes the ALPN list to offer: a pool offers only the HTTP
  versions it speaks (an HTTP/1.1 pool ``http/1.1``, an HTTP/2 pool ``h2``), so one
  client context per offer is built with each update.
* **Inbound** listeners are created once with :meth:`listener_context`, a fixed
  *front* context whose ``sni_callback`` moves each accepted connection onto the
  current server context before the certificate is chosen (OpenSSL calls it for
  every ClientHello, with or without SNI). Certificate, key and the store that verifies
  the client all come from the context the connection was moved to, so a rotated
  leaf or a bundle that dropped an old root takes effect for the next handshake
  without restarting the listener.

Both directions require and verify the peer's certificate against the bundle
(mTLS), offer ALPN ``h2`` then ``http/1.1``, prefer TLS 1.3 and accept 1.2 at
least. Which SPIFFE IDs are acceptable is not decided here: the inbound side reads
the peer's ID with :func:`peer_spiffe_id` and policy decides; the outbound side
checks it against the destination's expected IDs.

Besides the contexts, the store keeps what an operator asks about (``/certs``, the
``plait_cert_*`` metrics; ``status.py``): the identity's source, when the leaf was
put in and when the next renewal is planned, and the failed attempts with the last
error. The loaders (agent, files) write these; nothing on the data path reads them.

``ssl`` loads keys only from files: each update writes the key to a file of mode
0600 in a private directory of mode 0700, loads it and removes it at once.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from plait.sdk import InvalidSpiffeId, SpiffeId

__all__ = ["ALPN", "CertStore", "Leaf", "peer_spiffe_id", "spiffe_ids_of"]

ALPN = ("h2", "http/1.1")
_CLIENT_OFFERS: tuple[tuple[str, ...], ...] = (ALPN, ("h2",), ("http/1.1",), ())
"""What outbound contexts offer: both HTTP versions, one of them, or no ALPN (a tcp relay)."""


@dataclass(frozen=True, slots=True)
class Leaf:
    """What the store holds now: who we are and until when."""

    spiffe_id: SpiffeId
    not_before: datetime
    not_after: datetime
    serial: int


class CertStore:
    """The current identity of one sidecar; see the module docstring."""

    def __init__(self) -> None:
        self._server: ssl.SSLContext | None = None
        self._clients: dict[tuple[str, ...], ssl.SSLContext] = {}
        self.leaf: Leaf | None = None
        self.ready = False
        """Whether there is a leaf (an attribute, not a property: the data path reads it per
        request from compiled code, where a property of this interpreted class would run a
        Python frame)."""
        self.bundle_pem: bytes = b""
        self.chain_pem: bytes = b""
        self._key_pem = b""
        self._pushed = b""
        """The last bundle taken by :meth:`update_bundle` (``b""``: none)."""
        self.generation = 0
        """Incremented by every update (metrics and ``/certs`` show it)."""
        self.source: str | None = None
        """Where the identity comes from: ``agent`` (the CA) or ``files``; set by the loader."""
        self.updated_at: datetime | None = None
        """When the current leaf was put in (the last renewal)."""
        self.next_renewal: datetime | None = None
        """When the agent plans to renew (``None`` for files: they change when the operator
        replaces them)."""
        self.failures = 0
        self.last_error: tuple[datetime, str] | None = None
        """The last failed attempt to get or reload a certificate: when, and why."""

    def update(self, *, chain_pem: bytes, key_pem: bytes, bundle_pem: bytes) -> Leaf:
        """Take a new leaf chain (leaf first), its key and the trust bundle.

        Once a bundle came through :meth:`update_bundle` (the pushed one), that bundle
        stays and ``bundle_pem`` here is ignored: a push is never undone by an older
        bundle that arrives later with a certificate.

        Raises ``ValueError`` (and keeps the current identity) if the chain has no
        SPIFFE ID or the key does not match the leaf.
        """
        bundle_pem = self._pushed or bundle_pem
        cert = x509.load_pem_x509_certificate(chain_pem)
        ids = spiffe_ids_of(cert)
        if len(ids) != 1:
            raise ValueError(f"the leaf carries {len(ids)} SPIFFE IDs (expected exactly one)")
        server, clients = _contexts(chain_pem, key_pem, bundle_pem)
        leaf = Leaf(
            spiffe_id=ids[0],
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial=cert.serial_number,
        )
        self._server, self._clients = server, clients
        self.leaf, self.chain_pem, self.bundle_pem = leaf, chain_pem, bundle_pem
        self.ready = True
        self._key_pem = key_pem
        self.generation += 1
        self.updated_at = datetime.now(UTC)
        return leaf

    def update_bundle(self, bundle_pem: bytes) -> bool:
        """Take a new trust bundle for the current leaf; whether anything changed.

        Fresh contexts are built with the held chain and key and swapped in as by
        :meth:`update`; from then on this bundle is kept across :meth:`update` calls
        until the next one. Without a leaf yet, the bundle is remembered for the first
        :meth:`update`. Raises ``ValueError`` (and keeps the current contexts) if the
        bundle holds no usable certificate.
        """
        if bundle_pem == self.bundle_pem:
            self._pushed = bundle_pem
            return False
        if not x509.load_pem_x509_certificates(bundle_pem):  # ValueError when unparsable
            raise ValueError("the trust bundle holds no certificate")
        if self.leaf is None:
            self.bundle_pem = self._pushed = bundle_pem
            return True
        try:
            server, clients = _contexts(self.chain_pem, self._key_pem, bundle_pem)
        except ssl.SSLError as exc:
            raise ValueError(f"the trust bundle is unusable: {exc}") from None
        self._server, self._clients = server, clients
        self.bundle_pem = self._pushed = bundle_pem
        self.generation += 1
        return True

    def key_pair(self) -> tuple[bytes, bytes] | None:
        """``(key PEM, chain PEM)`` of the current leaf, for clients that load PEM (gRPC)."""
        return (self._key_pem, self.chain_pem) if self.leaf is not None else None

    def note_failure(self, why: str) -> None:
        """A certificate could not be got or reloaded; the current identity stays."""
        self.failures += 1
        self.last_error = (datetime.now(UTC), why)

    def client_context(self, alpn: tuple[str, ...] = ALPN) -> ssl.SSLContext:
        """The context for a new outbound mTLS connection (the current leaf), offering
        ``alpn`` (one of ``ALPN``, ``("h2",)``, ``("http/1.1",)``, ``()``)."""
        client = self._clients.get(alpn)
        if client is None:
            if not self._clients:
                raise RuntimeError("no workload certificate yet")
            raise ValueError(f"no client context offers ALPN {alpn!r}")
        return client

    def listener_context(self) -> ssl.SSLContext:
        """A front context for a listener; each handshake moves onto the current one."""
        front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        front.minimum_version = ssl.TLSVersion.TLSv1_2
        front.verify_mode = ssl.CERT_REQUIRED
        front.set_alpn_protocols(list(ALPN))
        front.sni_callback = self._choose
        return front

    def _choose(self, sslobj: Any, server_name: str | None, front: ssl.SSLContext) -> None:
        if self._server is not None:
            sslobj.context = self._server
        # No identity yet: the front context has no certificate and the handshake fails.

    def seconds_left(self, now: datetime | None = None) -> float:
        if self.leaf is None:
            return 0.0
        return (self.leaf.not_after - (now or datetime.now(UTC))).total_seconds()


def _contexts(
    chain_pem: bytes, key_pem: bytes, bundle_pem: bytes
) -> tuple[ssl.SSLContext, dict[tuple[str, ...], ssl.SSLContext]]:
    server = _context(ssl.Purpose.CLIENT_AUTH, chain_pem, key_pem, bundle_pem)
    clients = {
        alpn: _context(ssl.Purpose.SERVER_AUTH, chain_pem, key_pem, bundle_pem, alpn)
        for alpn in _CLIENT_OFFERS
    }
    return server, clients


def _context(
    purpose: ssl.Purpose,
    chain_pem: bytes,
    key_pem: bytes,
    bundle_pem: bytes,
    alpn: tuple[str, ...] = ALPN,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # peers are checked by SPIFFE ID, not by host name
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(list(alpn))
    ctx.load_verify_locations(cadata=bundle_pem.decode("ascii"))
    with tempfile.TemporaryDirectory(prefix="plait-id-") as tmp:  # mode 0700
        chain_file = os.path.join(tmp, "chain.pem")
        key_file = os.path.join(tmp, "key.pem")
        for name, data in ((chain_file, chain_pem), (key_file, key_pem)):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(chain_file, key_file)
    return ctx


def spiffe_ids_of(cert: x509.Certificate) -> list[SpiffeId]:
    """The valid ``spiffe://`` URI SANs of a certificate."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    ids = []
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        try:
            ids.append(SpiffeId.parse(uri))
        except InvalidSpiffeId:
            continue
    return ids


def peer_spiffe_id(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> SpiffeId | None:
    """The verified peer's SPIFFE ID (exactly one URI SAN), else ``None``."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    ids = spiffe_ids_of(x509.load_der_x509_certificate(der))
    return ids[0] if len(ids) == 1 else None
