"""A fleet for the Filter rollout tests: a control plane, N sidecars, an echo upstream, load.

Each sidecar runs its own ``Sidecar`` resource (``edge-<i>``, one egress port each to
the echo service and one ingress port, label ``app: edge``) and registers as a Workload
of the Service ``edge`` in control-plane mode over the plaintext xDS port; it fetches
wasm modules from the control plane's API over TLS verified with the control plane's
roots (``PLAIT_CA_BUNDLE``) into one shared cache directory. :class:`Load` keeps 32
keep-alive clients going through all of them and counts every answer that is not a 200.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.controlplane._upload import module_uploads
from plait.controlplane.api import APIClient
from tests.plugins.wasm.wat import build, module_text
from tests.support import Proc, free_port, http_get, start_echo, wait_ready
from tests.support.controlplane import (
    api_context,
    api_url,
    ca_bundle,
    start_control_plane,
    start_xds_sidecar,
)

C_MODULE = Path(__file__).parents[1] / "plugins" / "wasm" / "modules" / "c_headers" / "filter.wasm"
"""Responses get ``x-plait-config: <pluginConfig>``; its configure refuses > 256 bytes."""

NO_MARKER = """
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
"""
"""A module body with Proxy-Wasm callbacks but no ABI marker export."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def modules(tmp: Path) -> dict[str, Path]:
    """``c`` (committed C module), ``wat`` (``config.wat``: ``x-plugin-config``, refuses
    ``reject``) and ``nomarker`` built into ``tmp``."""
    return {
        "c": C_MODULE,
        "wat": build("config", tmp),
        "nomarker": build("nomarker", tmp, module_text(NO_MARKER)),
    }


def mesh(echo: int, ports: list[int]) -> str:
    docs = [f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: echo}}
spec:
  ports: [{{name: http, port: 8080}}]
  endpoints: [{{address: 127.0.0.1, port: {echo}}}]
""", """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: edge}
spec:
  ports: [{name: http, port: 8080}]
"""]  # fmt: skip
    for i, port in enumerate(ports):
        docs.append(f"""\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: edge-{i}, labels: {{app: edge}}}}
spec:
  egress:
  - port: {{number: {port}, protocol: http}}
    service: echo
  ingress:
  - port: {{number: {free_port()}, protocol: http}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{echo}
""")  # fmt: skip
    return "---\n".join(docs)


def python_filter(value: str, name: str = "stamp", extra: str = "") -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {{name: {name}}}
spec:
  python: {{type: response-header-modifier{extra}}}
  config: {{set: [{{name: x-stamp, value: "{value}"}}]}}
  selector: {{matchLabels: {{app: edge}}}}
"""


def wasm_filter(url: Path | str, sha: str, value: str, name: str = "wasm-stamp") -> str:
    # callbackTimeoutMs: the CPU bound is an epoch deadline, which counts wall-clock time:
    # on the shared 2-core test machine (load average above 10) a sidecar descheduled in
    # the middle of a callback for 100 ms (the default bound) fails that request.
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {{name: {name}}}
spec:
  wasm: {{url: "{url}", sha256: {sha}, pluginConfig: "{value}", callbackTimeoutMs: 2000}}
  selector: {{matchLabels: {{app: edge}}}}
  phase: STATS
"""


def version_of(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """``(python filter's value, wasm filter's value)`` of a response's headers."""
    return headers.get("x-stamp"), headers.get("x-plait-config") or headers.get("x-plugin-config")


@dataclass
class Fleet:
    cp: Proc
    sidecars: list[Proc]
    ports: list[int]
    tmp: Path
    client: APIClient = field(init=False)

    def __post_init__(self) -> None:
        assert self.cp.config is not None
        token = (self.cp.config / "admin-token").read_text().strip()
        self.client = APIClient(api_url(self.cp), token, ssl_context=api_context(self.cp))

    def apply(self, text: str, name: str = "filter.yaml") -> Any:
        """Apply ``text`` as the file ``name`` in ``tmp`` through the API, with the module
        files it names uploaded as ``plait apply`` uploads them."""
        path = self.tmp / name
        path.write_text(text)
        files = [(str(path), text)]
        return self.client.apply(files, module_uploads(files))

    def versions(self) -> list[tuple[str | None, str | None]]:
        return [version_of(http_get(p, "/probe", timeout=5)[1]) for p in self.ports]


def start_fleet(tmp: Path, procs: list[Proc], n: int = 3) -> Fleet:
    echo = start_echo(tmp)
    procs.append(echo)
    cp = start_control_plane(tmp)
    procs.append(cp)
    ports = [free_port() for _ in range(n)]
    fleet = Fleet(cp, [], ports, tmp)
    fleet.apply(mesh(echo.port, ports), "mesh.yaml")
    env = {**os.environ, "PLAIT_CA_BUNDLE": str(ca_bundle(cp)),
           "PLAIT_WASM_CACHE": str(tmp / "wasm-cache")}  # fmt: skip
    server = ("--ca-server", api_url(cp))
    for i in range(n):
        s = start_xds_sidecar(tmp, cp, f"edge-{i}", *server, "--service", "edge",
                              "--address", "127.0.0.1", wait=False, env=env)  # fmt: skip
        procs.append(s)
        fleet.sidecars.append(s)
    for s in fleet.sidecars:
        wait_ready(s, timeout=30)
    return fleet


class Load:
    """32 keep-alive clients spread over ``ports``, counting every answer that is not a 200."""

    def __init__(self, ports: list[int], clients: int = 32) -> None:
        self.ports = ports
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def _client(self, i: int) -> None:
        port = self.ports[i % len(self.ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", f"/c{i}")
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f":{port} {r.status} {r.getheader('x-plait-reason')}")
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(f":{port} {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


__all__ = [
    "C_MODULE",
    "Fleet",
    "Load",
    "mesh",
    "modules",
    "python_filter",
    "sha256",
    "start_fleet",
    "version_of",
    "wasm_filter",
]
