"""Who is on the other end of an ADS stream: the transport and the verified client certificate.

Theory of operation. gRPC verifies the client certificate during the TLS handshake (on a port
whose credentials require one, against the roots they carry) and exposes the result in the
call's ``auth_context()``: ``transport_security_type`` (``ssl``, or ``insecure`` on a plaintext
port) and the verified leaf as PEM under ``x509_pem_cert``. :func:`peer_of` reads them into a
:class:`Peer`: whether the stream is over TLS, and the leaf's SPIFFE ID (its one ``spiffe://``
URI SAN) and serial number. Nothing here trusts the client: gRPC has already refused any
handshake whose certificate does not verify, so a ``Peer`` with a ``spiffe_id`` is an
authenticated one. What that identity may ask for is decided elsewhere (a
:class:`~._source.NodeAuthorizer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509

__all__ = ["Peer", "peer_of"]


@dataclass(frozen=True, slots=True)
class Peer:
    """The transport of one stream and, over TLS, the client certificate it presented."""

    secure: bool
    """TLS (the authenticated port) rather than the plaintext port."""
    spiffe_id: str | None = None
    """The verified client certificate's SPIFFE ID (``None``: no certificate, or no such SAN)."""
    serial: int | None = None
    """The client certificate's serial number (tells a renewed certificate from the old one)."""

    def describe(self) -> str:
        if not self.secure:
            return "plaintext"
        if self.serial is None:
            return "TLS, no client certificate"
        return f"{self.spiffe_id or 'no SPIFFE ID'}, serial {self.serial:x}"


def peer_of(context: Any) -> Peer:
    """The :class:`Peer` of a ``grpc.aio.ServicerContext``."""
    auth: dict[str, list[bytes]] = context.auth_context() or {}
    kind = b"".join(auth.get("transport_security_type", [])).decode("ascii", "replace")
    if kind != "ssl":
        return Peer(secure=False)
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return Peer(secure=True)
    try:
        leaf = x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        return Peer(secure=True)
    return Peer(secure=True, spiffe_id=spiffe_id_of(leaf), serial=leaf.serial_number)


def spiffe_id_of(cert: x509.Certificate) -> str | None:
    """The certificate's one ``spiffe://`` URI SAN; ``None`` when it has none or several."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith("spiffe://")]  # fmt: skip
    return uris[0] if len(uris) == 1 else None
