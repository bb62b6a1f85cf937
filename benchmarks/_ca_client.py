"""The client side of ``benchmarks.ca_issue``: request bodies and the timed posting.

Theory of operation: everything a sidecar computes before it talks to the CA (its key,
its CSR, for a renewal the proof signed by its current key) is made here ahead of the
timed phase, so the phase measures the CA and its API alone. Two ways to post:

* ``keepalive``: ``clients`` connections, each one TLS handshake and then its share of
  the requests back to back (a batch tool, or a proxy that pools connections to the CA);
* ``per-connection``: ``clients`` concurrent workers, each request on a new TLS
  connection closed after the answer, as a fleet of sidecars does (the identity agent
  posts once per certificate lifetime with ``urllib``): every certificate pays a full
  TLS handshake on both ends.

Every answer is checked (status 200 and a certificate chain in the body); the chains
are returned in request order so the renewal phase can prove possession of them. After
the timed phase :func:`check_chains` parses every chain (one SPIFFE ID, valid now) and
verifies every 20th signature by signature up to the bundle's roots.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plait.core.identity.proof import sign_renewal

__all__ = [
    "MODES",
    "Sidecar",
    "check_chains",
    "first_body",
    "new_csr",
    "post_all",
    "renewal_body",
]

MODES = ("keepalive", "per-connection")


@dataclass
class Sidecar:
    """One simulated sidecar: its current key and chain (after the first certificate)."""

    key: ec.EllipticCurvePrivateKey
    chain: str = ""


def _csr(key: ec.EllipticCurvePrivateKey) -> tuple[str, x509.CertificateSigningRequest]:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), csr


def new_csr() -> str:
    """A CSR (PEM) for a fresh P-256 key."""
    return _csr(ec.generate_private_key(ec.SECP256R1()))[0]


def first_body(token: str) -> tuple[Sidecar, bytes]:
    side = Sidecar(ec.generate_private_key(ec.SECP256R1()))
    return side, json.dumps({"token": token, "csr": _csr(side.key)[0]}).encode()


def renewal_body(side: Sidecar) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """``(new key, body)``: a new key's CSR and the proof by the current key."""
    key = ec.generate_private_key(ec.SECP256R1())
    text, csr = _csr(key)
    now = int(time.time())
    proof = {"chain": side.chain, "timestamp": now, "signature": sign_renewal(side.key, csr, now)}
    return key, json.dumps({"csr": text, "renewal": proof}).encode()


def check_chains(chains: list[str | None], roots_pem: bytes, every: int = 20) -> list[str]:
    """Problems with the answers' chains (none: all good), checked after the timed phase.

    Every chain is parsed and its leaf must carry one SPIFFE URI SAN and be valid now;
    every ``every``-th chain is verified signature by signature up to one of the roots.
    """
    roots = x509.load_pem_x509_certificates(roots_pem)
    now = time.time()
    problems: list[str] = []
    for i, chain in enumerate(chains):
        if chain is None:
            continue  # a failed request, reported by post_all
        certs = x509.load_pem_x509_certificates(chain.encode())
        leaf = certs[0]
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ids = uris.get_values_for_type(x509.UniformResourceIdentifier)
        if len(ids) != 1 or not ids[0].startswith("spiffe://"):
            problems.append(f"chain {i}: leaf SANs {ids}")
        if not leaf.not_valid_before_utc.timestamp() <= now < leaf.not_valid_after_utc.timestamp():
            problems.append(f"chain {i}: leaf not valid now")
        if i % every == 0:
            try:
                for child, parent in itertools.pairwise(certs):
                    child.verify_directly_issued_by(parent)
                top = certs[-1]
                if not any(top.issuer == r.subject and _signed_by(top, r) for r in roots):
                    problems.append(f"chain {i}: does not end at a root of the bundle")
            except (ValueError, TypeError, InvalidSignature) as exc:
                problems.append(f"chain {i}: signature does not verify ({exc!r})")
    return problems


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _request(body: bytes, close: bool) -> bytes:
    return (
        b"POST /api/v1/certificates HTTP/1.1\r\nhost: ca\r\ncontent-type: application/json\r\n"
        + (b"connection: close\r\n" if close else b"")
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def _answer(reader: asyncio.StreamReader) -> tuple[bool, Any]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    answer = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        return False, answer.decode()[:200]
    out = json.loads(answer)
    if "BEGIN CERTIFICATE" not in out.get("chain", ""):
        return False, "no certificate in the answer"
    return True, out["chain"]


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


async def post_all(
    port: int, bodies: list[bytes], clients: int, tls: ssl.SSLContext, mode: str
) -> tuple[float, list[str | None], list[str]]:
    """``(seconds, chains in order (None if failed), failures)`` for posting ``bodies``."""
    chains: list[str | None] = [None] * len(bodies)
    failures: list[str] = []

    def keep(i: int, ok: bool, out: Any) -> None:
        if ok:
            chains[i] = out
        else:
            failures.append(str(out))

    async def keepalive(indices: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        try:
            for i in indices:
                writer.write(_request(bodies[i], close=False))
                keep(i, *await _answer(reader))
        finally:
            await _close(writer)

    async def per_connection(indices: list[int]) -> None:
        for i in indices:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
            try:
                writer.write(_request(bodies[i], close=True))
                keep(i, *await _answer(reader))
            finally:
                await _close(writer)

    worker = keepalive if mode == "keepalive" else per_connection
    shares = [list(range(len(bodies)))[c::clients] for c in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(share) for share in shares))
    return time.perf_counter() - t0, chains, failures
