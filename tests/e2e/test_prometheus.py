"""A real Prometheus server scrapes a 3-service chain, its targets found through plait's http_sd.

The control plane serves ``/api/v1/prometheus/targets`` (HTTPS, admin token); Prometheus
(Debian's ``prometheus``, installed by scripts/setup.sh) reads it with the scrape
config docs/observability.md gives, every second, and scrapes every sidecar's
``/metrics`` every second. PromQL over its HTTP API then counts exactly the requests
the test sent, at each hop; a sidecar started afterwards becomes a healthy target.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._chain_mesh import ChainMesh, call, chain_mesh, join
from tests.support import Proc, free_port, start, wait_port
from tests.support.controlplane import apply, ca_bundle, wait_for

pytestmark = pytest.mark.e2e

SENT = 7


def _config(mesh: ChainMesh, tmp: Path) -> Path:
    assert mesh.cp.config is not None
    path = tmp / "prometheus.yml"
    path.write_text(f"""\
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
- job_name: plait
  http_sd_configs:
  - url: https://127.0.0.1:{mesh.cp.extra["api"]}/api/v1/prometheus/targets
    refresh_interval: 1s
    authorization: {{type: Bearer, credentials_file: {mesh.cp.config / "admin-token"}}}
    tls_config: {{ca_file: {ca_bundle(mesh.cp)}}}
""")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChainMesh, int, Path]]:
    binary = shutil.which("prometheus")
    assert binary, "the Debian package prometheus is missing: run scripts/setup.sh"
    tmp = tmp_path_factory.mktemp("prom")
    procs: list[Proc] = []
    try:
        mesh = chain_mesh(tmp, procs)
        port = free_port()
        log = tmp / "prometheus.log"
        cmd = [binary, f"--config.file={_config(mesh, tmp)}", f"--storage.tsdb.path={tmp / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
        procs.append(Proc(start(cmd, log), log, port=port))
        wait_port(port, timeout=30)
        yield mesh, port, tmp
    finally:
        for p in reversed(procs):
            p.stop()


def _api(port: int, path: str, **query: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        reply = json.loads(r.read())
    assert reply["status"] == "success", reply
    return reply["data"]


def _value(port: int, promql: str) -> float | None:
    result = _api(port, "query", query=promql)["result"]
    return float(result[0]["value"][1]) if result else None


def _healthy_targets(port: int) -> list[dict[str, str]]:
    """The labels of the active targets Prometheus scraped successfully."""
    targets = _api(port, "targets", state="active")["activeTargets"]
    return [t["labels"] for t in targets if t["health"] == "up"]


def _wait_targets(port: int, n: int, tmp: Path, timeout: float = 30) -> float:
    """Seconds until Prometheus has ``n`` healthy targets (its targets and log if not)."""
    try:
        return wait_for(lambda: len(_healthy_targets(port)) == n, timeout=timeout, step=0.1)
    except TimeoutError:
        targets = _api(port, "targets")["activeTargets"]
        seen = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
        log = (tmp / "prometheus.log").read_text()[-3000:]
        raise AssertionError(f"{len(seen)} targets: {seen}\n{log}") from None


def test_promql_counts_every_request_at_every_hop(setup: tuple[ChainMesh, int, Path]) -> None:
    mesh, port, tmp = setup
    _wait_targets(port, 4, tmp)
    for _ in range(SENT):
        call(mesh)
    queries = {
        f'sum(plait_requests_total{{direction="{d}",destination_service="{s}",code="200"}})': SENT
        for d in ("outbound", "inbound")
        for s in ("svc1", "svc2", "svc3")
    }
    # verified callers: svc2 is called by svc1's identity only
    principal = ChainMesh.spiffe("svc1")
    queries[f'sum(plait_requests_total{{direction="inbound",source_principal="{principal}"}})'] = (
        SENT
    )
    for i in (2, 3):  # the version the callee registered, as its caller's config says
        out = f'direction="outbound",destination_service="svc{i}",destination_version="v{i}"'
        queries[f"sum(plait_requests_total{{{out}}})"] = SENT
    v3 = 'direction="inbound",destination_version="v3"'
    queries[f"sum(plait_request_duration_seconds_count{{{v3}}})"] = SENT
    got: dict[str, float | None] = {}

    def counted() -> bool:
        got.update({q: _value(port, q) for q in queries})
        return all(got[q] == n for q, n in queries.items())

    with contextlib.suppress(TimeoutError):  # the assertion below shows what was counted
        wait_for(counted, timeout=20, step=0.5)
    assert got == {q: float(n) for q, n in queries.items()}
    # ±0: a later scrape still says the same (nothing was counted twice or late)
    time.sleep(2.5)
    assert {q: _value(port, q) for q in queries} == got
    (labels,) = [t for t in _healthy_targets(port) if t.get("service") == "svc3"]
    assert labels["sidecar"] == "svc3" and labels["version"] == "v3"
    assert labels["namespace"] == "default" and labels["identity"] == ChainMesh.spiffe("svc3")


def test_a_new_sidecar_becomes_a_healthy_target(setup: tuple[ChainMesh, int, Path]) -> None:
    mesh, port, tmp = setup
    _wait_targets(port, 4, tmp)
    late_sidecar = f"""\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: late}}
spec:
  egress:
  - {{name: out, port: {{number: {free_port()}}}, service: svc1}}
"""
    apply(mesh.cp, tmp, late_sidecar, "late.yaml")
    late = join(tmp, mesh.cp, "late")
    try:
        took = _wait_targets(port, 5, tmp, timeout=10)
    finally:
        late.stop()
    # one http_sd refresh (1 s), Prometheus's discovery manager passing new targets on (it
    # batches updates: every 5 s), then the first scrape (within 1 s)
    assert took < 10.0, took
