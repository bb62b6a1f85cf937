"""``plait stat``, ``plait tap`` and ``plait top`` against a real mesh with known traffic.

A control plane, two sidecars fed over xDS (``caller`` with an egress listener to
Service ``web``; ``web`` with an ingress listener in front of an echo app that
answers ``/status/503`` with a 503) and the CLI as a user runs it. Each check
starts the command, waits until it says it is measuring or watching, sends a
known number of requests, and compares what the command shows with what was sent.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pty
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._ca_mesh import ca_mesh
from tests.support import PY, Proc, free_port, http_get, start_echo
from tests.support.controlplane import (
    api_url,
    apply,
    ca_bundle,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _mesh(app: int, ingress: int, listen: int) -> str:
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
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: caller}}
spec:
  egress:
  - port: {{number: {listen}, protocol: http}}
    service: web
"""


class Mesh:
    def __init__(self, cp: Proc, web: Proc, caller: Proc, ingress: int, listen: int) -> None:
        self.cp, self.web, self.caller = cp, web, caller
        self.ingress, self.listen = ingress, listen


@pytest.fixture
def mesh(tmp_path: Path, procs: list[Proc]) -> Mesh:
    app = start_echo(tmp_path, "web-app")
    procs.append(app)
    cp = start_control_plane(tmp_path, extra=("--health-interval", "0"))
    procs.append(cp)
    ingress, listen = free_port(), free_port()
    apply(cp, tmp_path, _mesh(app.port, ingress, listen))
    web = start_xds_sidecar(tmp_path, cp, "web", "--service", "web", node_id="web-1")
    caller = start_xds_sidecar(tmp_path, cp, "caller", node_id="caller-1")
    procs += [web, caller]
    wait_for(lambda: http_get(listen, "/warm-up")[0] == 200, timeout=15)
    return Mesh(cp, web, caller, ingress, listen)


def _cli(cp: Proc, *args: str) -> subprocess.Popen[str]:
    assert cp.config is not None
    env = {**os.environ, "PLAIT_SERVER": api_url(cp), "PLAIT_CA_BUNDLE": str(ca_bundle(cp)),
           "PLAIT_TOKEN": (cp.config / "admin-token").read_text().strip()}  # fmt: skip
    return subprocess.Popen([PY, "-m", "plait.core.ops.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


def _wait_line(p: subprocess.Popen[str], marker: str, timeout: float = 20.0) -> None:
    """Read the command's stderr until it prints ``marker`` (it is measuring / watching)."""
    assert p.stderr is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        seen += line
        if marker in line:
            return
        if not line and p.poll() is not None:
            break
    p.kill()
    raise AssertionError(f"no {marker!r} from {p.args!r}: {seen}")


def _finish(p: subprocess.Popen[str], timeout: float = 30.0) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, (p.returncode, out, err)
    return out


def _send(port: int, paths: list[str]) -> Counter[int]:
    """Each path once, in order, on one keep-alive connection: the statuses."""
    got: Counter[int] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path in paths:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            got[resp.status] += 1
    finally:
        conn.close()
    return got


def _rows(out: str) -> dict[tuple[str, str], dict[str, Any]]:
    body = json.loads(out)
    assert body["errors"] == [], body
    return {(r["name"], r["direction"]): r for r in body["stat"]}


def test_stat_shows_the_requests_sent_in_its_window(mesh: Mesh) -> None:
    _send(mesh.listen, ["/before"] * 5)  # before the window: not counted
    by_workload = _cli(mesh.cp, "stat", "-o", "json", "--window", "6s")
    by_service = _cli(mesh.cp, "stat", "service/web", "-o", "json", "--window", "6s")
    _wait_line(by_workload, "stat: measuring 2 sidecar(s)")
    _wait_line(by_service, "stat: measuring 1 sidecar(s)")
    sent = _send(mesh.listen, ["/ok"] * 40 + ["/status/503"] * 10)
    assert sent == {200: 40, 503: 10}

    rows = _rows(_finish(by_workload))
    web = rows[("web-1", "inbound")]
    assert (web["requests"], web["success"], web["successRate"]) == (50, 40, 0.8), web
    assert web["codes"] == {"200": 40, "503": 10}
    assert web["sidecars"] == 1
    assert web["rps"] == pytest.approx(50 / web["window_s"], rel=0.01)
    assert web["p50_ms"] is not None and 0 < web["p50_ms"] <= web["p95_ms"] <= web["p99_ms"]
    caller = rows[("caller-1", "outbound")]
    assert (caller["requests"], caller["success"]) == (50, 40), caller
    assert ("caller-1", "inbound") not in rows and ("web-1", "outbound") not in rows

    service = _rows(_finish(by_service))
    assert list(service) == [("web", "inbound")]
    assert service[("web", "inbound")]["requests"] == 50
    assert service[("web", "inbound")]["successRate"] == 0.8


def test_stat_table_and_its_errors(mesh: Mesh) -> None:
    p = _cli(mesh.cp, "stat", "workload/web-1", "--window", "1s")
    _wait_line(p, "measuring 1 sidecar(s)")
    _send(mesh.listen, ["/t"] * 3)
    out = _finish(p)
    header, row = out.splitlines()
    assert header.split() == ["NAME", "DIRECTION", "SIDECARS", "SUCCESS", "RPS", "P50", "P95",
                              "P99", "REQUESTS"]  # fmt: skip
    assert row.split()[:4] == ["web-1", "inbound", "1", "100.00%"] and row.split()[-1] == "3"

    unknown = _cli(mesh.cp, "stat", "workload/nope", "--window", "1s")
    _, err = unknown.communicate(timeout=30)
    assert unknown.returncode == 1 and "no connected sidecar serves workload 'nope'" in err
    bad = _cli(mesh.cp, "stat", "pods/x")
    _, err = bad.communicate(timeout=30)
    assert bad.returncode == 2 and "KIND one of workload, service, sidecar" in err


def _records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_tap_streams_each_request_and_its_filters_pick(mesh: Mesh) -> None:
    everything = _cli(mesh.cp, "tap", "web-1", "-o", "json", "--max", "12")
    failures = _cli(mesh.cp, "tap", "workload/web-1", "-o", "json", "--status", "5xx",
                    "--max", "3")  # fmt: skip
    under_a = _cli(mesh.cp, "tap", "web-1", "-o", "json", "--path", "/a/", "--max", "4")
    top = _cli(mesh.cp, "top", "workload/web-1", "-o", "json", "--duration", "8s")
    for p in (everything, failures, under_a, top):
        _wait_line(p, "tap: watching")
    paths = ["/a/1", "/a/2", "/b", "/status/503", "/a/3", "/status/503", "/b", "/a/4",
             "/status/404", "/b", "/status/503", "/b"]  # fmt: skip
    _send(mesh.listen, paths)

    seen = _records(_finish(everything))
    assert [r["path"] for r in seen] == paths
    assert [r["status"] for r in seen] == [int(p.rsplit("/", 1)[1]) if "status" in p else 200
                                          for p in paths]  # fmt: skip
    first = seen[0]
    assert first["direction"] == "inbound" and first["method"] == "GET"
    assert first["workload"] == "web-1" and first["duration_ms"] > 0
    assert [r["path"] for r in _records(_finish(failures))] == ["/status/503"] * 3
    assert [r["path"] for r in _records(_finish(under_a))] == ["/a/1", "/a/2", "/a/3", "/a/4"]

    snapshot = json.loads(_finish(top))
    routes = {(r["method"], r["path"]): r for r in snapshot["routes"]}
    assert snapshot["records"] == len(paths)
    assert routes[("GET", "/b")]["count"] == 4 and routes[("GET", "/b")]["successRate"] == 1.0
    assert routes[("GET", "/status/503")]["count"] == 3
    assert routes[("GET", "/status/503")]["successRate"] == 0.0
    assert routes[("GET", "/status/404")]["successRate"] == 1.0  # a 4xx is the app's answer
    assert snapshot["routes"][0]["path"] == "/b"  # the busiest first


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def _stalled_tap(port: int) -> Iterator[socket.socket]:
    """A tap client that reads until its tap started, and then no more."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /tap HTTP/1.1\r\nhost: x\r\n\r\n")
    head = b""
    while b'{"started":true}' not in head:  # the watcher is in place; from here, no reading
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    try:
        yield s
    finally:
        s.close()


def test_a_tap_client_that_stops_reading_costs_the_sidecar_bounded_memory(mesh: Mesh) -> None:
    with _stalled_tap(mesh.web.admin_port) as s:
        _send(mesh.ingress, ["/fill"] * 3000)  # fills the socket buffers and the tap's queue
        before = _rss_kb(mesh.web.popen.pid)
        _send(mesh.ingress, ["/more"] * 6000)
        after = _rss_kb(mesh.web.popen.pid)
        # unbounded, 6000 more records would add ~3.5 MB; bounded, a few KB were measured
        assert after - before < 1024, (before, after)
        assert http_get(mesh.ingress, "/still")[0] == 200  # the sidecar serves on
        # the reader catches up: what waited, then a report of what it missed
        s.settimeout(1)
        data = b""
        with contextlib.suppress(TimeoutError):
            while chunk := s.recv(1 << 20):
                data += chunk
        http_get(mesh.ingress, "/after-drops")
        s.settimeout(5)
        while b"/after-drops" not in data:
            chunk = s.recv(1 << 20)
            assert chunk, data[-300:]
            data += chunk
    lines = data.split(b"\n")
    reports = [json.loads(x)["dropped"] for x in lines if x.startswith(b'{"dropped"')]
    shown = sum(1 for x in lines if x.startswith(b'{"time"'))
    assert reports and reports[0] > 1000, reports
    assert shown + sum(reports) == 3000 + 6000 + 2  # every request shown or counted as dropped


def test_tap_names_the_verified_peer_of_an_mtls_request(tmp_path: Path, procs: list[Proc]) -> None:
    app = start_echo(tmp_path, "server-app")
    procs.append(app)
    ca = ca_mesh(tmp_path, procs, app.port)
    wait_for(lambda: http_get(ca.egress, "/warm-up")[0] == 200, timeout=15)
    tap = _cli(ca.cp, "tap", "service/server", "-o", "json", "--max", "1")
    _wait_line(tap, "tap: watching")
    assert http_get(ca.egress, "/who")[0] == 200
    (record,) = _records(_finish(tap))
    assert (record["path"], record["direction"]) == ("/who", "inbound")
    assert record["peer_identity"] == ca.spiffe("client")


def test_top_in_a_terminal_redraws_until_interrupted(mesh: Mesh) -> None:
    assert mesh.cp.config is not None
    leader, follower = pty.openpty()
    env = {**os.environ, "PLAIT_SERVER": api_url(mesh.cp),
           "PLAIT_CA_BUNDLE": str(ca_bundle(mesh.cp)),
           "PLAIT_TOKEN": (mesh.cp.config / "admin-token").read_text().strip()}  # fmt: skip
    p = subprocess.Popen([PY, "-m", "plait.core.ops.cli", "top", "--refresh", "500ms"],
                         stdout=follower, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    os.close(follower)
    try:
        _wait_line(p, "tap: watching")
        _send(mesh.listen, ["/live"] * 6)
        screen = b""
        deadline = time.monotonic() + 15
        row = re.compile(rb"web-1 +inbound +GET +/live +6 +100.00%")
        while time.monotonic() < deadline and not row.search(screen.rsplit(b"\x1b[2J", 1)[-1]):
            screen += os.read(leader, 65536)
        frames = screen.split(b"\x1b[H\x1b[2J")
        assert row.search(frames[-1]), frames[-1]
        assert len(frames) >= 2  # cleared and drawn again at each refresh
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        assert p.stderr is not None
        p.stderr.close()
        os.close(leader)
