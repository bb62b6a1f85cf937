"""HTTP/2 and gRPC through the sidecar against nginx's ``grpc_pass``, same run.

Two proxies, each with two h2c listeners and HTTP/2 to the upstream on both, pinned to
the proxy core: nginx (``listen ... http2``, ``grpc_pass``) and a plait sidecar (egress
listeners and Services of protocol ``grpc``). Upstreams and ``h2load`` share the load
core:

* **closed loop** (req/s): ``h2load -c1 -m100`` and ``-c16 -m10`` GETs to nginx
  ``return 200`` on h2c (the fixed upstream of ``benchmarks.run``), so the proxy is the
  bottleneck (GET: nginx's ``grpc_pass`` refuses an upstream that answers a POST before
  reading its body, as ``return`` does);
* **gRPC unary at a fixed rate** (p50 / p99 µs): ``h2load --rps`` against a grpcio server
  (``loadgen/grpc_echo.py``), per-request latency from h2load's log; the same load sent
  straight to the grpcio server gives the latency the proxies add, and each proxy's
  CPU time over the run, per request.

Before the load, one real grpcio call through each proxy must come back with the echo and
status OK (a proxy that breaks gRPC is not measured). Rounds alternate nginx and plait;
medians are printed, with plait / nginx ratios (added latency: plait's over nginx's)::

    .venv/bin/python -m benchmarks.grpc_unary [--rounds 3] [--secs 6] [--rate 1000]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import grpc

from . import _configs
from ._procs import (
    LOAD_CORE,
    PROXY_CORE,
    Proc,
    free_ports,
    group_cpu_ns,
    require_tools,
    wait_http_ok,
)
from ._targets import start_upstream
from ._wrk import _run, parse_h2load

MESSAGE = b"\x00" + struct.pack(">I", 100) + b"m" * 100
"""One gRPC length-prefixed message of 100 bytes."""
PATH = "/bench.Echo/Unary"
HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]


def _nginx_conf(d: Path, ports: tuple[int, int], grpc_up: int, h2_up: int) -> str:
    servers = "".join(
        f"""
    server {{
        listen 127.0.0.1:{port} http2 backlog=4096;
        location / {{ grpc_pass grpc://{name}; }}
    }}"""
        for port, name in zip(ports, ("grpcup", "h2up"), strict=True)
    )
    ups = "".join(
        f"""
    upstream {name} {{ server 127.0.0.1:{up}; keepalive 32; keepalive_requests 10000000; }}"""
        for name, up in (("grpcup", grpc_up), ("h2up", h2_up))
    )
    return _configs.NGINX_MAIN.format(d=d, body=ups + servers)


def _plait_conf(ports: tuple[int, int], admin: int, grpc_up: int, h2_up: int) -> str:
    docs = [
        f"""apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{name: grpc, port: 80, protocol: grpc}}]
  endpoints: [{{address: 127.0.0.1, port: {up}}}]
"""
        for name, up in (("grpcup", grpc_up), ("h2up", h2_up))
    ]
    egress = "".join(
        f"""
  - port: {{number: {port}, protocol: grpc}}
    service: {name}"""
        for port, name in zip(ports, ("grpcup", "h2up"), strict=True)
    )
    docs.append(
        f"""apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: bench}}
spec:
  admin: {{port: {admin}}}
  egress:{egress}
"""
    )
    return "---\n".join(docs)


def _grpc_ok(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(PATH)
        reply = call(b"ping", timeout=5)
    if reply != b"ping":
        raise RuntimeError(f"127.0.0.1:{port}: gRPC echo answered {reply!r}")


def _h2load(
    port: int, argv: list[str], secs: int, data: Path | None, log: Path | None = None
) -> str:
    cmd = ["h2load", "-t1", *argv, "-D", str(secs)]
    if data is not None:
        cmd += ["-d", str(data), *HEADERS]
    if log is not None:
        cmd += ["--log-file", str(log)]
    return _run([*cmd, f"http://127.0.0.1:{port}{PATH}"], timeout=secs + 60)


def _closed(port: int, clients: int, streams: int, secs: int) -> float:
    out = _h2load(port, [f"-c{clients}", f"-m{streams}"], secs, None)
    res = parse_h2load(out)
    if res["errors"]:
        raise RuntimeError(f"h2load -c{clients} -m{streams}: {res['errors']} errors: {out[-600:]}")
    return float(res["rps"])


def _fixed(
    port: int, rate: int, secs: int, data: Path, log: Path, proxy: Proc | None = None
) -> tuple[float, float, float]:
    """p50 and p99 (µs) of ``rate`` req/s over 10 clients, one stream each, and the
    ``proxy``'s CPU per request (µs; 0 without one)."""
    log.unlink(missing_ok=True)
    cpu0 = group_cpu_ns(proxy.pid) if proxy is not None else 0
    _h2load(port, ["-c10", "-m1", f"--rps={rate // 10}"], secs, data, log)
    cpu = group_cpu_ns(proxy.pid) - cpu0 if proxy is not None else 0
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    statuses = {line.split("\t")[1] for line in log.read_text().splitlines() if line}
    if statuses != {"200"} or len(lat) < rate * secs * 0.9:
        raise RuntimeError(f"fixed rate: {len(lat)} answers, statuses {statuses}")
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], cpu / 1000 / len(lat)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=int, default=6)
    p.add_argument("--rate", type=int, default=1000)
    args = p.parse_args()
    require_tools(["nginx", "h2load", "taskset"])
    base = Path(tempfile.mkdtemp(prefix="plait-grpc-bench-"))
    data = base / "message.bin"
    data.write_bytes(MESSAGE)
    procs: list[Proc] = []
    try:
        upstream = start_upstream(base, 10)
        procs.append(upstream.proc)
        grpc_up, ng_a, ng_b, pl_a, pl_b, admin = free_ports(6)
        echo = Path(__file__).parent / "loadgen" / "grpc_echo.py"
        procs.append(
            Proc(
                "grpc-echo", [sys.executable, str(echo), str(grpc_up)], LOAD_CORE, base / "echo.log"
            ).start()
        )
        (base / "nginx").mkdir()
        conf = base / "nginx" / "nginx.conf"
        conf.write_text(_nginx_conf(base / "nginx", (ng_a, ng_b), grpc_up, upstream.h2_port))
        argv = [
            "nginx",
            "-p",
            f"{base}/nginx/",
            "-c",
            str(conf),
            "-e",
            str(base / "nginx/error.log"),
        ]
        procs.append(Proc("nginx", argv, PROXY_CORE, base / "nginx.log").start())
        sidecar_conf = base / "sidecar.yaml"
        sidecar_conf.write_text(_plait_conf((pl_a, pl_b), admin, grpc_up, upstream.h2_port))
        plait = Path(sys.executable).parent / "plait"
        procs.append(
            Proc(
                "plait",
                [str(plait), "sidecar", "--config", str(sidecar_conf)],
                PROXY_CORE,
                base / "plait.log",
            ).start()
        )
        wait_http_ok(admin, procs[-1], 15, path="/ready")
        deadline = time.monotonic() + 10
        while True:
            try:
                for port in (grpc_up, ng_a, pl_a):
                    _grpc_ok(port)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        figures: dict[str, list[float]] = {}

        def add(key: str, value: float) -> None:
            figures.setdefault(key, []).append(value)

        log = base / "h2load.log"
        proxies = {"nginx": procs[-2], "plait": procs[-1]}
        for _ in range(args.rounds):
            p50, p99, _ = _fixed(grpc_up, args.rate, args.secs, data, log)
            add("direct p50", p50)
            add("direct p99", p99)
            for name, (a, b) in (("nginx", (ng_a, ng_b)), ("plait", (pl_a, pl_b))):
                add(f"{name} c1m100", _closed(b, 1, 100, args.secs))
                add(f"{name} c16m10", _closed(b, 16, 10, args.secs))
                p50, p99, cpu = _fixed(a, args.rate, args.secs, data, log, proxies[name])
                add(f"{name} p50", p50)
                add(f"{name} p99", p99)
                add(f"{name} cpu", cpu)
        med = {k: statistics.median(v) for k, v in figures.items()}
        print(f"rounds {args.rounds} x {args.secs}s; gRPC unary at {args.rate} req/s")
        for key in ("c1m100", "c16m10"):
            n, pl = med[f"nginx {key}"], med[f"plait {key}"]
            print(f"h2c {key}: nginx {n:,.0f} req/s, plait {pl:,.0f} req/s = {pl / n:.2f}x nginx")
        for q in ("p50", "p99"):
            d = med[f"direct {q}"]
            n, pl = med[f"nginx {q}"] - d, med[f"plait {q}"] - d
            print(
                f"gRPC unary {q}: direct {d:,.0f} µs; added by nginx {n:,.0f} µs, "
                f"by plait {pl:,.0f} µs = {pl / n:.2f}x nginx's"
            )
        n, pl = med["nginx cpu"], med["plait cpu"]
        print(f"gRPC unary proxy CPU per request: nginx {n:.1f} µs, plait {pl:.1f} µs")
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
