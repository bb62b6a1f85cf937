"""Handshake cost between mTLS proxies, with and without TLS session resumption.

    .venv/bin/python -m benchmarks.tls_handshake [--handshakes 300] [--rounds 3]

Two questions, on the servers of the hop targets (``_hop.py``: a plait sidecar with a
STRICT inbound listener, an nginx with ``ssl_verify_client on``), pinned to the proxy core:

* **Cost.** A client on the load core (Python ``ssl``: the same OpenSSL as plait) makes
  ``--handshakes`` mutual-TLS 1.3 handshakes with each server, each on a new TCP
  connection, then closes it: full handshakes (no session), and resumed ones (the
  session of the previous connection offered). Reported per handshake: wall time seen by
  the client, the server group's CPU time (``schedstat``), and whether the server
  resumed. The servers are measured alternately in every round.
* **Does plait's client resume?** A plait client sidecar (auto mTLS, as in
  ``plait-mtls``) sends requests to an nginx that terminates mTLS and closes every
  connection after one request (``keepalive_requests 1``), so each request is a new
  handshake; nginx logs ``$ssl_session_reused`` per request. The same with an nginx
  client (``proxy_ssl_session_reuse on``) for comparison. Reported: the share of
  resumed handshakes, the requests per second of that handshake-per-request loop and
  the CPU time per request of the client proxy and the nginx server together.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import _hop
from ._procs import PROXY_CORE, Proc, free_ports, group_cpu_ns, http_get, wait_http_ok
from ._targets import REPO, start_upstream
from ._wrk import run_wrk


def _client_ctx(d: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(d / "bundle.pem"))
    ctx.load_cert_chain(str(d / "client.pem"), str(d / "client.key"))
    return ctx


def _handshakes(port: int, ctx: ssl.SSLContext, n: int, resume: bool) -> tuple[float, int]:
    """``n`` handshakes; returns (median seconds each, how many the server resumed)."""
    times, reused = [], 0
    session: ssl.SSLSession | None = None
    for _ in range(n):
        t0 = time.perf_counter()
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            ctx.wrap_socket(raw, session=session if resume else None) as tls,
        ):
            # TLS 1.3 tickets come after the handshake: one round trip gets them.
            tls.sendall(b"GET / HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n")
            while tls.recv(65536):
                pass
            times.append(time.perf_counter() - t0)
            reused += bool(tls.session_reused)
            session = tls.session
    return statistics.median(times), reused


def _start(name: str, argv: list[str], d: Path, admins: list[int]) -> Proc:
    proc = Proc(name, argv, PROXY_CORE, d / f"{name}.log", cwd=REPO).start()
    for admin in admins:
        wait_http_ok(admin, proc, 20.0, path="/ready")
    return proc


def _servers(d: Path, upstream_port: int) -> dict[str, tuple[Proc, int]]:
    """A plait STRICT sidecar and an nginx mTLS server; name -> (process, TLS port)."""
    plait = Path(sys.executable).parent / "plait"
    out: dict[str, tuple[Proc, int]] = {}
    for kind in ("plait-hop", "nginx-hop"):
        sub = d / kind
        sub.mkdir()
        ports = free_ports(5)
        argv, admins = _hop.hop_argv(sub, kind, True, ports, upstream_port, plait)
        proc = _start(kind.split("-")[0], argv, sub, admins)
        wait_http_ok(ports[0], proc, 20.0)
        out[kind.split("-")[0]] = (proc, ports[2])
    return out


def cost(d: Path, upstream_port: int, n: int, rounds: int) -> None:
    servers = _servers(d, upstream_port)
    rows: dict[tuple[str, bool], list[tuple[float, float, int]]] = {}
    try:
        for _ in range(rounds):
            for name, (proc, port) in servers.items():
                ctx = _client_ctx(d / f"{name}-hop")  # each target has its own PKI
                for resume in (False, True):
                    cpu0 = group_cpu_ns(proc.pid)
                    wall, reused = _handshakes(port, ctx, n, resume)
                    cpu = (group_cpu_ns(proc.pid) - cpu0) / n / 1000
                    rows.setdefault((name, resume), []).append((wall * 1e6, cpu, reused))
    finally:
        for proc, _ in servers.values():
            proc.stop()
    print(f"handshake cost ({n} per measurement, {rounds} rounds; medians, [min..max])")
    for (name, resume), rs in rows.items():
        walls = [r[0] for r in rs]
        cpus = [r[1] for r in rs]
        print(
            f"  {name:6} {'resumed' if resume else 'full':8}"
            f" wall {statistics.median(walls):6.0f} us"
            f" [{min(walls):.0f}..{max(walls):.0f}], server CPU incl. one request"
            f" {statistics.median(cpus):5.0f} us [{min(cpus):.0f}..{max(cpus):.0f}],"
            f" resumed {sum(r[2] for r in rs)}/{n * len(rs)}"
        )


def client_reuse(d: Path, upstream_port: int, secs: float) -> None:
    """Does each client proxy resume its sessions with an nginx that closes every connection?"""
    for kind in ("plait-hop", "nginx-hop"):
        sub = d / f"reuse-{kind}"
        sub.mkdir()
        ports = free_ports(5)
        argv, admins = _hop.hop_argv(sub, kind, True, ports, upstream_port,
                                     Path(sys.executable).parent / "plait")  # fmt: skip
        # The server: an nginx mTLS server that serves one request per connection and logs
        # whether each handshake resumed a session.
        server_conf = sub / "server.conf"
        if kind == "plait-hop":  # the plait client sidecar, in front of that nginx
            (sub / "server").mkdir()
            server_conf.write_text(_hop.nginx_server_conf(sub, ports[2], upstream_port, True))
            client = argv[-1].split(" & ")[1]
            argv = _hop.sh_argv([_hop.nginx_argv(sub, "server")])
            argv[-1] = argv[-1].replace(" & wait", f" & {client} & wait")
            admins = admins[1:]
        text = server_conf.read_text()
        text = text.replace("keepalive_requests 10000000;\n    keepalive_timeout",
                            "keepalive_requests 1;\n    keepalive_timeout", 1)  # fmt: skip
        text = text.replace(
            "    access_log off;",
            "    log_format reuse '$ssl_session_reused';\n"
            f"    access_log {sub}/server/reuse.log reuse;",
        )
        server_conf.write_text(text)
        proc = _start(f"reuse-{kind}", argv, sub, admins)
        try:
            wait_http_ok(ports[0], proc, 20.0)
            assert http_get(ports[0])[0] == 200
            cpu0 = group_cpu_ns(proc.pid)
            out = run_wrk(ports[0], 16, secs)
            cpu = (group_cpu_ns(proc.pid) - cpu0) / 1000 / max(1, out["requests"] or 0)
        finally:
            proc.stop()
        marks = (sub / "server" / "reuse.log").read_text().split()
        client = "plait" if kind == "plait-hop" else "nginx"
        print(
            f"  {client} client -> nginx (new connection per request): "
            f"{marks.count('r')}/{len(marks)} handshakes resumed, {out['rps']:.0f} req/s, "
            f"{cpu:.0f} us CPU per request (client proxy and nginx server)"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tls_handshake")
    p.add_argument("--handshakes", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=float, default=5.0, help="seconds of the reuse loop (5)")
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="plait-hs-"))
    upstream = start_upstream(base, 10.0)
    try:
        cost(base, upstream.h1_port, args.handshakes, args.rounds)
        print("session resumption by the client proxy")
        client_reuse(base, upstream.h1_port, args.secs)
    finally:
        upstream.proc.stop()


if __name__ == "__main__":
    main()
