"""Push benchmark of the real control plane: ``apply`` → the last of N sidecars ACKed it.

Starts ``plait control-plane`` as its own process (fresh data dir), applies a mesh of
``--services`` Services with a weighted HTTPRoute and one ``Sidecar`` whose egress
reaches every service, then connects ``--streams`` real gRPC ADS streams that announce
themselves as plait sidecars of that Sidecar (so each gets the per-sidecar translated,
scoped view, as ``plait sidecar --control-plane`` does) and ACK every response
(:mod:`benchmarks.xds_fanout`). The trigger is the resource API request ``plait apply``
sends (changing the route's weights); the figure is from sending it until each stream
has received and ACKed the new config — what an operator waits for. It also reports
the control plane's CPU time spent on the push and its RSS. The streams present a client
certificate from the control plane's CA (one join token and CSR through its API), which its
xDS port requires.

    .venv/bin/python -m benchmarks.controlplane_push --streams 1000
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import anyio
import grpc
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]

from benchmarks.xds_fanout import run
from tests.support import free_port, wait_port


def mesh(services: int, w1: int, w2: int) -> str:
    docs = []
    for i in range(services):
        docs.append(f"""apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: svc-{i}}}
spec:
  ports: [{{name: http, port: 8080}}]
  endpoints: [{{address: 10.0.{i // 250}.{i % 250 + 1}, port: 8080}}]
""")
    docs.append(f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: split}}
spec:
  parentRefs: [{{group: "", kind: Service, name: svc-0, port: 8080}}]
  rules:
  - backendRefs:
    - {{name: svc-1, port: 8080, weight: {w1}}}
    - {{name: svc-2, port: 8080, weight: {w2}}}
""")
    egress = "".join(
        f"  - {{port: {{number: {20000 + i}}}, service: svc-{i}}}\n" for i in range(services)
    )
    docs.append(f"""apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: bench}}
spec:
  egress:
{egress}""")
    return "---\n".join(docs)


def apply(api: int, token: str, text: str, tls: ssl.SSLContext) -> None:
    req = urllib.request.Request(
        f"https://127.0.0.1:{api}/api/v1/apply?source=bench.yaml", data=text.encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/yaml"},
        method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=60, context=tls) as r:
        json.loads(r.read())


def leaf(api: int, token: str, tls: ssl.SSLContext) -> tuple[bytes, bytes]:
    """``(key PEM, chain PEM)`` of a certificate for ``default/bench`` from the CA's API."""
    from tests.support.ca import key_pem, make_csr

    def post(path: str, body: dict[str, object], auth: bool) -> dict[str, object]:
        headers = {"content-type": "application/json"}
        if auth:
            headers["authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"https://127.0.0.1:{api}{path}", method="POST",
                                     data=json.dumps(body).encode(), headers=headers)  # fmt: skip
        with urllib.request.urlopen(req, timeout=60, context=tls) as r:
            return dict(json.loads(r.read()))

    join = post("/api/v1/tokens", {"namespace": "default", "serviceAccount": "bench"}, True)
    key, csr = make_csr()
    issued = post("/api/v1/certificates", {"csr": csr, "token": join["token"]}, False)
    return key_pem(key), str(issued["chain"]).encode()


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


async def main_async(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="plait-bench-"))
    api, xds = free_port(), free_port()
    cmd = [sys.executable, "-m", "plait.core.ops.cli", "--log-level", "warning", "control-plane",
           "--data-dir", str(data), "--api-port", str(api), "--xds-port", str(xds),
           "--health-interval", "0"]  # fmt: skip
    with subprocess.Popen(cmd) as cp:
        try:
            wait_port(api, timeout=20, proc=cp)
            wait_port(xds, timeout=20, proc=cp)
            token = (data / "admin-token").read_text().strip()
            # Both ports are TLS with the control plane's own CA: trust its roots.
            roots = (data / "ca-bundle.pem").read_bytes()
            tls = ssl.create_default_context(cadata=roots.decode())
            apply(api, token, mesh(args.services, 90, 10), tls)
            key, chain = leaf(api, token, tls)
            creds = grpc.ssl_channel_credentials(roots, private_key=key, certificate_chain=chain)
            meta = struct_pb2.Struct()
            json_format.ParseDict({"plait": {"sidecar": "bench", "namespace": "default"}}, meta)
            clusters = [f"svc-{i}.default:8080" for i in range(args.services)]
            marks: dict[str, tuple[float, int]] = {}
            idle_rss = proc_stat(cp.pid)[1]

            async def trigger() -> None:
                marks["before"] = proc_stat(cp.pid)
                await anyio.to_thread.run_sync(apply, api, token, mesh(args.services, 50, 50), tls)

            start = time.perf_counter()
            result = await run(f"127.0.0.1:{xds}", args.streams, trigger,
                               streams_per_channel=args.per_channel, eds=clusters,
                               rds=clusters, node_metadata=meta,
                               credentials=creds)  # fmt: skip
            after = proc_stat(cp.pid)
            print(
                f"control plane: {args.services} services, {args.streams} sidecar streams "
                f"(connected in {time.perf_counter() - start - result.total:.2f}s)"
            )
            print(result.report())
            print(f"control plane CPU for the push: {after[0] - marks['before'][0]:.2f}s; "
                  f"RSS idle {idle_rss / 2**20:.0f} MiB, with {args.streams} streams "
                  f"{after[1] / 2**20:.0f} MiB")  # fmt: skip
        finally:
            cp.terminate()
            cp.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--services", type=int, default=50)
    p.add_argument("--per-channel", type=int, default=100)
    args = p.parse_args()
    anyio.run(main_async, args, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
