"""CPU per request of each proxy of a two-proxy hop, measured separately.

Run by hand: ``.venv/bin/python -m benchmarks.hop_cpu plait-hop plait-mtls nginx-tls``
(``--secs``, ``--connections``, ``--rounds``).

The hop targets of ``_hop.py`` (``plait-hop``, ``plait-mtls``, ``nginx-hop``,
``nginx-tls``) run their two proxies under one ``sh``, so ``benchmarks.run`` sees one
process group. Here each proxy is its own pinned process group (both on the proxy
core, the nginx upstream and ``wrk`` on the load core, as ``benchmarks.run`` places
them), and each one's CPU time (``schedstat``, ns) is read before and after a
closed-loop ``wrk`` burst (or an open-loop one at a fixed ``--rate``: the same
batching of requests per wake-up for every target). ``CPU / requests`` per proxy is
robust on a shared machine where throughput is not: other jobs slow the burst but
barely change the work each request costs. A warm-up burst first fills the pools
(the handshakes are not in the figure). Targets alternate in rounds; each figure is
the median over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from . import _hop
from ._openloop import build_openloop, run_openloop
from ._procs import PROXY_CORE, Proc, free_ports, group_cpu_ns, wait_http_ok
from ._targets import REPO, TARGETS, start_upstream
from ._wrk import run_wrk


def _start(base: Path, name: str, upstream_port: int) -> tuple[list[Proc], int]:
    spec = TARGETS[name]
    d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    ports = free_ports(5)
    plait = Path(sys.executable).parent / "plait"
    cmds, admins = _hop.hop_cmds(d, spec.kind, spec.tls, ports, upstream_port, plait, spec.keep_h1)
    procs = []
    for who, argv in zip(("server", "client"), cmds, strict=True):
        procs.append(Proc(f"{name}-{who}", argv, PROXY_CORE, d / f"{who}.log", cwd=REPO).start())
    try:
        for admin in admins:
            wait_http_ok(admin, None, 30.0, path="/ready")
        wait_http_ok(ports[0], None, 30.0)
    except BaseException:
        for p in procs:
            p.stop()
        raise
    return procs, ports[0]


def measure(
    base: Path, name: str, upstream_port: int, secs: float, conns: int, rate: int
) -> dict[str, float]:
    """One burst through a fresh ``name``: closed loop (``wrk``), or open loop at ``rate``."""
    procs, port = _start(base, name, upstream_port)
    try:
        run_wrk(port, conns, 1)  # warm-up: pooled connections, handshakes done
        before = [group_cpu_ns(p.pid) for p in procs]
        if rate:
            res = run_openloop(build_openloop(), port, rate, duration=secs, warmup=0)
            n, rps = res["completed"], res["achieved_rps"]
            errors = sum(res["errors"].values())
        else:
            res = run_wrk(port, conns, secs)
            n, rps, errors = res["requests"], res["rps"], res["errors"]
        after = [group_cpu_ns(p.pid) for p in procs]
    finally:
        for p in procs:
            p.stop()
    server, client = ((a - b) / 1e3 / (n or 1) for a, b in zip(after, before, strict=True))
    return {"rps": rps, "errors": errors, "client_us": client, "server_us": server}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    hops = [n for n, t in TARGETS.items() if "hop" in t.kind]
    ap.add_argument("targets", nargs="+", choices=hops)
    ap.add_argument("--secs", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--rate", type=int, default=0, help="open loop at this many req/s (default: wrk)"
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="plait-hopcpu-") as tmp:
        base = Path(tmp)
        upstream = start_upstream(base, 30.0)
        rows: dict[str, list[dict[str, float]]] = {t: [] for t in args.targets}
        try:
            for _ in range(args.rounds):
                for t in args.targets:
                    r = measure(base, t, upstream.h1_port, args.secs, args.connections, args.rate)
                    rows[t].append(r)
                    print(f"  {t}: {r}", flush=True)
        finally:
            upstream.proc.stop()
    print(f"{'target':<12} {'req/s':>8} {'client µs/req':>14} {'server µs/req':>14} {'errors':>6}")
    for t, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{t:<12} {med['rps']:>8.0f} {med['client_us']:>14.1f} {med['server_us']:>14.1f}"
              f" {sum(r['errors'] for r in rs):>6.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
