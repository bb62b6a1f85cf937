"""CA issuance rate end to end: CSR in, certificate out, through the real API over loopback.

Starts ``plait control-plane`` as its own process (fresh data dir), asks it for
``--certs`` join tokens (not timed) and prepares one P-256 key and CSR per sidecar on
the client side (not timed, ``_ca_client.py``). Then two timed phases against
``/api/v1/certificates``, each answer checked for status 200 and a chain (after the
phase, untimed: every chain parsed, every 20th verified up to the roots):

1. **first certificates**: token + CSR, ``--certs`` of them;
2. **renewals**: each of those sidecars proves possession of the leaf it got (a new
   key's CSR signed into the proof by the current key), as the identity agent does.

``--mode keepalive`` puts each of ``--clients`` clients on one keep-alive connection;
``--mode per-connection`` opens a new TLS connection per certificate, as a fleet of
sidecars does (each renews on its own). For each phase it prints certificates per
second and the control plane's CPU per certificate (user + system from
``/proc/<pid>/stat``: robust on a shared machine, where throughput is not), plus the
machine's load average and busy share, so a reader knows what else ran. In this
process it also measures the CA's signing alone and a full ``issue`` (signing plus the
ledger write).

    .venv/bin/python -m benchmarks.ca_issue --certs 2000 --clients 8 --mode keepalive
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

from plait.controlplane.ca import check_csr, open_ca
from plait.controlplane.ca._x509 import leaf_cert
from tests.support import free_port, wait_port

from ._ca_client import MODES, Sidecar, check_chains, first_body, new_csr, post_all, renewal_body


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


def _in_process(n: int) -> tuple[float, float]:
    """(signing-only certs/s, sign + ledger certs/s) of the CA in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        svc = open_ca(Path(tmp))
        ca = svc.ca
        csrs = [check_csr(new_csr()) for _ in range(n)]
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


class _Probe:
    """Control-plane CPU and machine busy share over one phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0, self.stat0 = _cpu(pid), _stat()
        self.client0 = time.process_time()

    def done(self) -> tuple[float, float, float, float]:
        """``(control-plane user, system CPU s, machine busy share 0..1, client CPU s)``."""
        stat, cpu, client = _stat(), _cpu(self.pid), time.process_time() - self.client0
        busy = [b - a for a, b in zip(self.stat0, stat, strict=True)]
        total = sum(busy)
        idle = busy[3] + busy[4]  # idle + iowait
        share = (total - idle) / total if total else 0.0
        return cpu[0] - self.cpu0[0], cpu[1] - self.cpu0[1], share, client


def _phase(
    name: str, port: int, bodies: list[bytes], args: argparse.Namespace, tls: ssl.SSLContext,
    pid: int,
) -> tuple[list[str | None], bool]:  # fmt: skip
    print(f"{name}: posting {len(bodies)} ...", flush=True)
    probe = _Probe(pid)
    seconds, chains, failures = asyncio.run(post_all(port, bodies, args.clients, tls, args.mode))
    user, system, busy, client = probe.done()
    failures += check_chains(chains, args.roots.read_bytes())  # not timed
    cpu, n = user + system, len(bodies)
    print(
        f"{name}: {n} certificates, {args.clients} clients, {args.mode}, {seconds:.2f}s: "
        f"{n / seconds:,.0f} certs/s ({len(failures)} failed); control plane CPU {cpu:.2f}s "
        f"= {cpu / n * 1e3:.3f} ms/cert ({system / n * 1e3:.3f} system); client CPU "
        f"{client / n * 1e3:.3f} ms/cert; machine busy {busy:.0%} of "
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"
    )
    if failures:
        print("  first failure:", failures[0])
    return chains, not failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--certs", type=int, default=2000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--mode", choices=MODES, default="keepalive")
    p.add_argument("--no-renewals", action="store_true", help="first certificates only")
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process figures")
    args = p.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        api, xds = free_port(), free_port()
        log = open(Path(tmp) / "cp.log", "wb")  # noqa: SIM115  # closed with the process
        cmd = [sys.executable, "-m", "plait.core.ops.cli", "--log-level", "error",
               "control-plane", "--data-dir", f"{tmp}/data", "--api-port", str(api),
               "--xds-port", str(xds)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ})
        try:
            wait_port(api, timeout=30, proc=proc)
            admin = (Path(tmp) / "data" / "admin-token").read_text().strip()
            args.roots = Path(tmp) / "data" / "ca-bundle.pem"
            # The API is HTTPS with the control plane's own CA: trust its roots.
            tls = ssl.create_default_context(cafile=str(Path(tmp) / "data" / "ca-bundle.pem"))
            made = [first_body(t) for t in _tokens(api, admin, args.certs, tls)]
            sidecars: list[Sidecar] = [side for side, _ in made]
            chains, ok = _phase("first certificates", api, [b for _, b in made], args, tls,
                                proc.pid)  # fmt: skip
            if ok and not args.no_renewals:
                for side, chain in zip(sidecars, chains, strict=True):
                    side.chain = chain or ""
                renewals = [renewal_body(side)[1] for side in sidecars]
                _, ok = _phase("renewals", api, renewals, args, tls, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print("warning: the control plane did not stop within 30 s of SIGTERM; killed")
                proc.kill()
                proc.wait()
            log.close()
    if not args.no_in_process:
        sign, issue = _in_process(min(args.certs, 2000))
        print(f"signing only (in process): {sign:,.0f} certs/s; sign + ledger: {issue:,.0f} "
              "certs/s")  # fmt: skip
    return 0 if ok else 1


def _cpu(pid: int) -> tuple[float, float]:
    """``(user, system)`` CPU seconds of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _stat() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


if __name__ == "__main__":
    sys.exit(main())
