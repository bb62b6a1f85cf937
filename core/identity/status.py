"""What an operator sees of a sidecar's identity: the admin ``/certs`` report and the
``plait_cert_*`` metric values.

Theory of operation: both read the :class:`CertStore` at the moment they are asked (a
scrape, a ``GET /certs``) and never on the data path. The PEM data the store holds is
parsed again here, which costs well under a millisecond for a leaf, an intermediate and
a few roots.

:func:`certs_report` is Envoy's ``/certs`` for a mesh identity: the current leaf (SPIFFE
ID, serial, issuer, validity and seconds left), every certificate of the chain the
sidecar presents, the trust bundle's roots (subject, SHA-256 fingerprint of the DER,
not-after), the store's generation, where the identity comes from (``agent``: the
control plane's CA; ``files``: ``--identity-*``), the last renewal and the next planned
one, and the failed attempts with the last error.

:func:`metric_values` gives the numbers :class:`~plait.core.metrics.Stats` renders:
seconds left of the current leaf (absent before the first certificate), the store's
generation, and the attempts to get or reload a certificate by result (``ok`` counts
every certificate put in, the first included).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .store import CertStore, spiffe_ids_of

__all__ = ["certs_report", "metric_values"]


def certs_report(store: CertStore, now: datetime | None = None) -> dict[str, Any]:
    """The JSON document of ``GET /certs``."""
    now = now or datetime.now(UTC)
    leaf = store.leaf
    chain = _certs(store.chain_pem)
    report: dict[str, Any] = {
        "source": store.source,
        "generation": store.generation,
        "leaf": None,
        "chain": [_describe(c) for c in chain],
        "trust_bundle": [_root(c) for c in _certs(store.bundle_pem)],
        "last_renewal": _iso(store.updated_at),
        "next_renewal": _iso(store.next_renewal),
        "renewals": {"ok": store.generation, "error": store.failures},
        "last_error": None,
    }
    if leaf is not None and chain:
        report["leaf"] = {
            "spiffe_id": str(leaf.spiffe_id),
            "serial": format(leaf.serial, "x"),
            "issuer": chain[0].issuer.rfc4514_string(),
            "not_before": _iso(leaf.not_before),
            "not_after": _iso(leaf.not_after),
            "seconds_left": round(store.seconds_left(now), 3),
        }
    if store.last_error is not None:
        at, why = store.last_error
        report["last_error"] = {"at": _iso(at), "error": why}
    return report


def metric_values(store: CertStore, now: datetime | None = None) -> dict[str, float]:
    """``expiry_seconds`` (only with a leaf), ``generation``, ``ok``, ``error``; empty for a
    sidecar without an identity source."""
    if store.source is None:
        return {}
    out = {"generation": float(store.generation), "ok": float(store.generation),
           "error": float(store.failures)}  # fmt: skip
    if store.leaf is not None:
        out["expiry_seconds"] = store.seconds_left(now)
    return out


def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def _describe(cert: x509.Certificate) -> dict[str, Any]:
    ids = spiffe_ids_of(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "spiffe_id": str(ids[0]) if len(ids) == 1 else None,
        "is_ca": _is_ca(cert),
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def _root(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "not_after": _iso(cert.not_valid_after_utc),
    }


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None
