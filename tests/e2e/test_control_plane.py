"""Control plane end to end: ``plait apply`` → xDS → sidecars, with real processes.

A control plane (its own SQLite store), echo upstreams and sidecars in
control-plane mode; every change goes through the ``plait`` CLI, and what the
sidecars do is seen from the client side (``x-served-by``) and in their
``/config_dump``.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e._resilience import sequential
from tests.support import Proc, free_port, http_get, start_echo
from tests.support.controlplane import (
    apply,
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _mesh(v1: int, v2: int, listen: int, w1: int, w2: int) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: backend}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: backend-v1}}
spec:
  ports: [{{name: http, port: 8080}}]
  endpoints: [{{address: 127.0.0.1, port: {v1}}}]
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: backend-v2}}
spec:
  ports: [{{name: http, port: 8080}}]
  endpoints: [{{address: 127.0.0.1, port: {v2}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: backend}}
spec:
  parentRefs: [{{group: "", kind: Service, name: backend, port: 8080}}]
  rules:
  - backendRefs:
    - {{name: backend-v1, port: 8080, weight: {w1}}}
    - {{name: backend-v2, port: 8080, weight: {w2}}}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  egress:
  - port: {{number: {listen}, protocol: http}}
    service: backend
"""


def _weights(sidecar: Proc) -> list[int]:
    routes = config_dump(sidecar)["config"]["routes"]
    (table,) = routes.values()
    return sorted(b["weight"] for b in table["rules"][0]["backends"])


class _Load:
    """32 keep-alive clients in threads, counting every response that is not a 200."""

    def __init__(self, port: int, clients: int = 32) -> None:
        self.port = port
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.served: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                        self.served[r.getheader("x-served-by") or "?"] += 1
                    else:
                        self.failures.append(f"{r.status} {r.getheader('x-plait-reason')}")
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


def _start(tmp_path: Path, procs: list[Proc], w1: int, w2: int) -> tuple[Proc, Proc, int]:
    v1, v2 = start_echo(tmp_path, "v1"), start_echo(tmp_path, "v2")
    procs += [v1, v2]
    cp = start_control_plane(tmp_path)
    procs.append(cp)
    listen = free_port()
    out = apply(cp, tmp_path, _mesh(v1.port, v2.port, listen, w1, w2))
    assert "httproute/backend created" in out.lower(), out
    sidecar = start_xds_sidecar(tmp_path, cp, "client")
    procs.append(sidecar)
    return cp, sidecar, listen


def test_weights_applied_reach_the_sidecar_and_changes_follow_within_a_second(
    tmp_path: Path, procs: list[Proc]
) -> None:
    cp, sidecar, listen = _start(tmp_path, procs, 90, 10)
    v1, v2 = procs[0].port, procs[1].port
    seen = sequential(listen, 1000).servers
    # binomial(1000, 0.1): sd 9.5; ±4 sd
    assert 62 <= seen["v2"] <= 138 and seen["v1"] + seen["v2"] == 1000, seen

    with _Load(listen) as load:
        time.sleep(0.5)
        apply(cp, tmp_path, _mesh(v1, v2, listen, 50, 50))
        took = wait_for(lambda: _weights(sidecar) == [50, 50], timeout=5)
        time.sleep(1.0)
    assert took <= 1.0, f"the sidecar took {took:.2f}s to follow the change"
    assert load.failures == [], load.failures[:5]
    assert load.ok > 200
    seen = sequential(listen, 1000).servers
    assert 400 <= seen["v2"] <= 600, seen  # binomial(1000, 0.5): sd 15.8


def test_apply_is_idempotent_and_get_shows_what_is_stored(
    tmp_path: Path, procs: list[Proc]
) -> None:
    cp, _, listen = _start(tmp_path, procs, 90, 10)
    out = apply(cp, tmp_path, _mesh(procs[0].port, procs[1].port, listen, 90, 10))
    assert out.lower().count("unchanged") == 5, out
    got = json.loads(plait(cp, "get", "httproute", "backend", "-o", "json").stdout)
    assert got["kind"] == "HTTPRoute" and got["metadata"]["name"] == "backend"
    assert [b["weight"] for b in got["spec"]["rules"][0]["backendRefs"]] == [90, 10]


def _backend_mesh(app: int, ingress: int, listen: int, extra: str = "") -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{name: http, port: 8080}}]
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: web}}
spec:
  ingress:
  - port: {{number: {ingress}, protocol: http}}
    defaultEndpoint: 127.0.0.1:{app}
{extra}---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: caller}}
spec:
  egress:
  - port: {{number: {listen}, protocol: http}}
    service: web
"""


def test_a_registered_workload_receives_traffic_and_an_unknown_filter_is_nacked(
    tmp_path: Path, procs: list[Proc]
) -> None:
    app = start_echo(tmp_path, "web-app")
    procs.append(app)
    cp = start_control_plane(tmp_path)
    procs.append(cp)
    ingress, listen = free_port(), free_port()
    apply(cp, tmp_path, _backend_mesh(app.port, ingress, listen))
    web = start_xds_sidecar(tmp_path, cp, "web", "--service", "web", "--label", "version=v1",
                            node_id="web-1")  # fmt: skip
    caller = start_xds_sidecar(tmp_path, cp, "caller")
    procs += [web, caller]
    # the workload registered itself: the caller reaches the app through web's inbound listener
    wait_for(lambda: http_get(listen, "/hello")[0] == 200, timeout=10)
    _, headers, _ = http_get(listen, "/hello")
    assert headers["x-served-by"] == "web-app"
    table = plait(cp, "get", "workloads").stdout
    assert "web-1" in table, table
    # the version the control plane saw ACKed is the one the sidecar runs
    status = json.loads(plait(cp, "get", "workloads", "web-1", "-o", "json").stdout)["status"]
    assert status["ackedVersion"] == config_dump(web)["version"], status

    # a filter type no sidecar knows: applied with a warning, NACKed by the sidecar
    bad = "    filters: [{type: no-such-filter, config: {a: 1}}]\n"
    text = _backend_mesh(app.port, ingress, listen).replace(
        f"defaultEndpoint: 127.0.0.1:{app.port}\n",
        f"defaultEndpoint: 127.0.0.1:{app.port}\n{bad}",
    )
    r = plait(cp, "apply", "-f", str(_write(tmp_path, text)))
    assert "no-such-filter" in r.stderr, r.stderr

    def nacked() -> bool:
        out = json.loads(plait(cp, "get", "workloads", "web-1", "-o", "json").stdout)
        nack = out.get("status", {}).get("lastNack") or {}
        return "no-such-filter" in str(nack.get("message", ""))

    wait_for(nacked, timeout=10)
    assert "no-such-filter" in (config_dump(web)["xds"]["last_nack"] or "")
    # still serving on the previous snapshot
    assert http_get(listen, "/again")[1]["x-served-by"] == "web-app"
    assert plait(cp, "check", check=False).returncode != 0


def _write(tmp: Path, text: str) -> Path:
    path = tmp / f"doc-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    return path


@pytest.mark.soak
def test_static_stability_control_plane_down_under_load_then_back(
    tmp_path: Path, procs: list[Proc]
) -> None:
    cp, sidecar, listen = _start(tmp_path, procs, 50, 50)
    v1, v2 = procs[0].port, procs[1].port
    data_dir, api, xds = cp.config, cp.extra["api"], cp.extra["xds"]
    with _Load(listen) as load:
        time.sleep(0.5)
        cp.stop(signal.SIGKILL)
        time.sleep(30)
        assert not config_dump(sidecar)["xds"]["connected"]
        cp = start_control_plane(tmp_path, data_dir=data_dir, api_port=api, xds_port=xds,
                                 plaintext_port=cp.extra["xds_plaintext"])  # fmt: skip
        procs.append(cp)
        wait_for(lambda: config_dump(sidecar)["xds"]["connected"], timeout=40)
    assert load.failures == [], load.failures[:5]
    assert load.ok > 1000
    # converged: a change made after the restart reaches the sidecar
    apply(cp, tmp_path, _mesh(v1, v2, listen, 100, 0))
    wait_for(lambda: _weights(sidecar) == [0, 100], timeout=5)

    # a sidecar restarted while the control plane is down serves its saved config
    cp.stop(signal.SIGKILL)
    sidecar.stop()
    restarted = start_xds_sidecar(tmp_path, cp, "client", admin_port=sidecar.admin_port)
    procs.append(restarted)
    assert not config_dump(restarted)["xds"]["connected"]
    assert sequential(listen, 50).servers == Counter({"v1": 50})


def test_a_rule_whose_backends_all_have_weight_0_answers_503_and_apply_warns(
    tmp_path: Path, procs: list[Proc]
) -> None:
    v1 = start_echo(tmp_path, "v1")
    procs.append(v1)
    cp = start_control_plane(tmp_path)
    procs.append(cp)
    listen = free_port()
    path = _write(tmp_path, _mesh(v1.port, v1.port, listen, 0, 0))
    r = plait(cp, "apply", "-f", str(path))
    assert r.returncode == 0 and "every backendRef has weight 0" in r.stderr, r.stderr
    sidecar = start_xds_sidecar(tmp_path, cp, "client")
    procs.append(sidecar)
    status, headers, body = http_get(listen, "/")
    assert status == 503, (status, body)
    assert headers.get("x-plait-reason") == "no backend", headers
