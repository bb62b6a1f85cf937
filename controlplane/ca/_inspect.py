"""``plait cert inspect FILE``: what a PEM certificate chain says, for people and scripts.

:func:`describe` turns a chain (leaf first, as the CA hands it out) into a JSON-ready
dict: the leaf's subject, SPIFFE ID, issuer, validity, serial and time left, and one
entry per certificate of the chain; :func:`render` prints it as a table.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from ._x509 import fingerprint

__all__ = ["describe", "render"]


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def describe(data: bytes, now: dt.datetime | None = None) -> dict[str, Any]:
    """The chain in ``data``; :class:`ValueError` if it holds no PEM certificate."""
    certs = x509.load_pem_x509_certificates(data)
    now = now or dt.datetime.now(dt.UTC)
    leaf = certs[0]
    uris = _uris(leaf)
    return {
        "subject": leaf.subject.rfc4514_string(),
        "spiffeId": next((u for u in uris if u.startswith("spiffe://")), None),
        "issuer": leaf.issuer.rfc4514_string(),
        "notBefore": leaf.not_valid_before_utc.isoformat(),
        "notAfter": leaf.not_valid_after_utc.isoformat(),
        "secondsLeft": round((leaf.not_valid_after_utc - now).total_seconds()),
        "serial": format(leaf.serial_number, "x"),
        "chain": [
            {
                "subject": c.subject.rfc4514_string(),
                "issuer": c.issuer.rfc4514_string(),
                "ca": _is_ca(c),
                "notAfter": c.not_valid_after_utc.isoformat(),
                "fingerprint": fingerprint(c),
            }
            for c in certs
        ],
    }


def render(info: dict[str, Any]) -> str:
    left = info["secondsLeft"]
    rows = [
        ("Subject", info["subject"] or "(empty)"),
        ("SPIFFE ID", info["spiffeId"] or "(none)"),
        ("Issuer", info["issuer"]),
        ("Not before", info["notBefore"]),
        ("Not after", info["notAfter"] + (f" (in {left}s)" if left > 0 else " (EXPIRED)")),
        ("Serial", info["serial"]),
    ]
    out = [f"{k + ':':12} {v}" for k, v in rows]
    out.append("Chain:")
    out.append(f"  {'#':2} {'SUBJECT':44} {'ISSUER':44} {'NOT AFTER':26} SHA-256")
    for i, c in enumerate(info["chain"]):
        out.append(
            f"  {i:<2} {c['subject'][:44]:44} {c['issuer'][:44]:44} "
            f"{c['notAfter']:26} {c['fingerprint'][:16]}"
        )
    return "\n".join(out) + "\n"
