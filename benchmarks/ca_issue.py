"""CA issuance rate end to end: CSR in, certificate out, through the real API over loopback.

Starts ``plait control-plane`` as its own process (fresh data dir), asks it for
``--certs`` join tokens (not timed), makes one P-256 key and CSR per certificate on the
client side (not timed), then ``--clients`` concurrent clients, each on its own
keep-alive HTTP/1.1 connection, post ``{"token", "csr"}`` to ``/api/v1/certificates``
and read the chain back. Reports certificates per second for that phase (every answer
checked for status 200), and, in this process, the rate of the CA's signing alone
(building and signing a leaf from a checked CSR) and of a full ``issue`` (signing plus
the ledger write), so the cost of HTTP, JSON, CSR checking and token redemption shows.

    .venv/bin/python -m benchmarks.ca_issue --certs 2000 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plait.controlplane.ca import check_csr, open_ca
from plait.controlplane.ca._x509 import leaf_cert
from tests.support import free_port, wait_port


def _csr() -> tuple[str, x509.CertificateSigningRequest]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), csr


def _tokens(port: int, admin: str, n: int, tls: ssl.SSLContext) -> list[str]:
    out = []
    for i in range(n):
        body = json.dumps({"namespace": "bench", "serviceAccount": f"sa-{i % 50}", "ttl": 3600})
        req = urllib.request.Request(
            f"https://127.0.0.1:{port}/api/v1/tokens",
            data=body.encode(),
            headers={"authorization": f"Bearer {admin}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(req, context=tls) as resp:
            out.append(json.loads(resp.read())["token"])
    return out


async def _client(port: int, bodies: list[bytes], failures: list[str], tls: ssl.SSLContext) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        for body in bodies:
            writer.write(
                b"POST /api/v1/certificates HTTP/1.1\r\nhost: ca\r\n"
                b"content-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answer = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                failures.append(answer.decode()[:200])
            elif b"BEGIN CERTIFICATE" not in answer:
                failures.append("no certificate in the answer")
    finally:
        writer.close()


async def _issue_all(
    port: int, bodies: list[bytes], clients: int, tls: ssl.SSLContext
) -> tuple[float, list[str]]:
    failures: list[str] = []
    shares = [bodies[i::clients] for i in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(port, share, failures, tls) for share in shares))
    return time.perf_counter() - t0, failures


def _in_process(n: int) -> tuple[float, float]:
    """(signing-only certs/s, sign + ledger certs/s) of the CA in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        svc = open_ca(Path(tmp))
        ca = svc.ca
        csrs = [check_csr(_csr()[0]) for _ in range(n)]
        gen = ca.state.current
        now = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        for csr in csrs:
            leaf_cert(
                csr=csr,
                spiffe_id="spiffe://plait.local/ns/bench/sa/x",
                issuer=gen.intermediate,
                issuer_key=gen.intermediate_key,
                now=now,
                ttl=dt.timedelta(hours=1),
            )
        sign = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for csr in csrs:
            ca.issue(csr, "spiffe://plait.local/ns/bench/sa/x", dt.timedelta(hours=1))
        issue = n / (time.perf_counter() - t0)
        ca.close()
    return sign, issue


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--certs", type=int, default=2000)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        api, xds = free_port(), free_port()
        log = open(Path(tmp) / "cp.log", "wb")  # noqa: SIM115  # closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plait.core.ops.cli",
                "--log-level",
                "error",
                "control-plane",
                "--data-dir",
                f"{tmp}/data",
                "--api-port",
                str(api),
                "--xds-port",
                str(xds),
            ],
            stdout=log,
            stderr=log,
            env={**os.environ},
        )
        try:
            wait_port(api, timeout=30, proc=proc)
            admin = (Path(tmp) / "data" / "admin-token").read_text().strip()
            # The API is HTTPS with the control plane's own CA: trust its roots.
            tls = ssl.create_default_context(cafile=str(Path(tmp) / "data" / "ca-bundle.pem"))
            tokens = _tokens(api, admin, args.certs, tls)
            bodies = [json.dumps({"token": t, "csr": _csr()[0]}).encode() for t in tokens]
            cpu0 = _cpu(proc.pid)
            seconds, failures = asyncio.run(_issue_all(api, bodies, args.clients, tls))
            cpu = _cpu(proc.pid) - cpu0
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print("warning: the control plane did not stop within 30 s of SIGTERM; killed")
                proc.kill()
                proc.wait()
            log.close()
    sign, issue = _in_process(min(args.certs, 2000))
    print(
        f"end to end: {args.certs} certificates, {args.clients} clients, {seconds:.2f}s: "
        f"{args.certs / seconds:,.0f} certs/s ({len(failures)} failed); control plane CPU "
        f"{cpu:.2f}s = {cpu / args.certs * 1e3:.2f} ms/cert"
    )
    print(f"signing only (in process): {sign:,.0f} certs/s; sign + ledger: {issue:,.0f} certs/s")
    if failures:
        print("first failure:", failures[0])
    return 1 if failures else 0


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
