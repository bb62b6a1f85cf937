"""``plait control-plane`` and the operator CLI as an operator runs them: real processes.

One control plane serves the module (each test uses its own names); restart and
start-up refusal tests run their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import PY, Proc, free_port
from tests.support.controlplane import start_control_plane

pytestmark = pytest.mark.e2e

SERVICE = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: %(name)s}
spec:
  ports: [{name: http, port: 8080}]
"""
ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %(name)s}
spec:
  parentRefs: [{kind: Service, name: %(name)s, port: 8080}]
  rules:
  - backendRefs: [{name: %(name)s, port: 8080, weight: %(weight)s}]
"""


def cli(cp: Proc | None, *args: str, env: dict[str, str] | None = None,
        token: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``plait ARGS`` against ``cp`` (``token=False``: no token anywhere)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    if cp is not None:
        assert cp.config is not None
        base["PLAIT_SERVER"] = f"https://127.0.0.1:{cp.extra['api']}"
        base["PLAIT_DATA_DIR"] = str(cp.config if token else cp.config / "elsewhere")
        if not token:  # no token file; the API's certificate is still verified
            base["PLAIT_CA_BUNDLE"] = str(cp.config / "ca-bundle.pem")
    cmd = [PY, "-m", "plait.core.ops.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                          env={**base, **(env or {})}, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_control_plane(tmp_path_factory.mktemp("cp"))
    yield proc
    proc.stop()


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return directory / name


def test_apply_get_delete_round_trip(cp: Proc, tmp_path: Path) -> None:
    d = tmp_path / "mesh"  # the route's file comes first: a directory is applied as one change
    write(d, "a-route.yaml", ROUTE % {"name": "shop", "weight": 1})
    write(d, "b-service.yaml", SERVICE % {"name": "shop"})
    r = cli(cp, "apply", "-f", str(d))
    assert (r.returncode, r.stdout) == (0, "httproute/shop created\nservice/shop created\n")
    assert cli(cp, "apply", "-f", str(d)).stdout == (
        "httproute/shop unchanged\nservice/shop unchanged\n")  # fmt: skip
    write(d, "a-route.yaml", ROUTE % {"name": "shop", "weight": 3})
    assert cli(cp, "apply", "-f", str(d)).stdout.splitlines()[0] == "httproute/shop configured"

    table = cli(cp, "get", "httproutes").stdout.splitlines()
    assert table[0].split() == ["NAME", "NAMESPACE", "PARENTS", "RULES"]
    assert ["shop", "default", "shop", "1"] in [line.split() for line in table]
    doc = yaml.safe_load(cli(cp, "get", "route", "shop", "-o", "yaml").stdout)
    assert doc["spec"]["rules"][0]["backendRefs"][0]["weight"] == 3
    assert json.loads(cli(cp, "get", "SVC", "shop", "-o", "json").stdout)["kind"] == "Service"

    r = cli(cp, "delete", "service", "shop")
    assert r.returncode == 1 and "cannot delete Service/default/shop" in r.stderr
    assert "HTTPRoute/shop" in r.stderr
    r = cli(cp, "delete", "-f", str(d))
    assert (r.returncode, r.stdout) == (0, "httproute/shop deleted\nservice/shop deleted\n")
    r = cli(cp, "get", "svc", "shop")
    assert r.returncode == 1 and "Service default/shop not found" in r.stderr


def test_a_bad_file_is_refused_with_its_line_and_nothing_is_stored(
    cp: Proc, tmp_path: Path
) -> None:
    f = write(tmp_path, "bad.yaml", SERVICE % {"name": "bad"} + "---\n"
              + ROUTE % {"name": "bad", "weight": -3})  # fmt: skip
    r = cli(cp, "apply", "-f", str(f))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"error: {f}:13: HTTPRoute/bad: spec.rules[0].backendRefs[0]."
                               "weight: expected an integer")  # fmt: skip
    assert "bad" not in cli(cp, "get", "services").stdout


def test_unknown_filter_types_warn_on_stderr(cp: Proc, tmp_path: Path) -> None:
    f = write(tmp_path, "f.yaml", "apiVersion: plait.dev/v1alpha1\nkind: Filter\n"
              "metadata: {name: acme}\nspec: {python: {type: acme-stamp}}\n")  # fmt: skip
    r = cli(cp, "apply", "-f", str(f))
    assert (r.returncode, r.stdout) == (0, "filter/acme created\n")
    assert "warning: filter type 'acme-stamp'" in r.stderr and "will NACK" in r.stderr
    assert cli(cp, "get", "filters").stdout.splitlines()[1].split() == ["acme", "default",
                                                                        "acme-stamp"]  # fmt: skip
    assert cli(cp, "delete", "filter", "acme").stdout == "filter/acme deleted\n"


def test_check_workloads_and_usage_errors(cp: Proc) -> None:
    r = cli(cp, "check")
    assert r.returncode == 0 and r.stdout.startswith("config: ok ("), r.stdout + r.stderr
    r = cli(cp, "get", "workloads")
    assert r.returncode == 0 and "No resources found." in r.stderr
    assert cli(cp, "get", "gateways").returncode == 2
    assert cli(cp, "delete", "service").returncode == 2


def test_missing_token_and_unreachable_server_are_clear(cp: Proc, tmp_path: Path) -> None:
    f = write(tmp_path, "s.yaml", SERVICE % {"name": "notoken"})
    r = cli(cp, "apply", "-f", str(f), token=False)
    assert r.returncode == 1 and "missing admin token" in r.stderr and "--token" in r.stderr
    r = cli(cp, "get", "svc", token=False, env={"PLAIT_TOKEN": "wrong"})
    assert r.returncode == 1 and "wrong admin token" in r.stderr
    assert "notoken" not in cli(cp, "get", "svc").stdout
    r = cli(None, "get", "svc", "--server", f"http://127.0.0.1:{free_port()}", "--token", "x")
    assert r.returncode == 1 and "cannot reach the control plane" in r.stderr


def test_token_and_resources_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_control_plane(tmp_path, data_dir=data)
    try:
        token = (data / "admin-token").read_text()
        assert oct((data / "admin-token").stat().st_mode & 0o777) == "0o600"
        f = write(tmp_path, "s.yaml", SERVICE % {"name": "kept"})
        assert cli(first, "apply", "-f", str(f)).returncode == 0
    finally:
        assert first.stop(signal.SIGTERM) == 0, first.logs()
    second = start_control_plane(tmp_path, data_dir=data)
    try:
        assert (data / "admin-token").read_text() == token
        assert cli(second, "apply", "-f", str(f)).stdout == "service/kept unchanged\n"
    finally:
        second.stop()


def test_a_token_file_others_can_read_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "admin-token").write_text("secret\n")
    (data / "admin-token").chmod(0o640)
    cmd = [PY, "-m", "plait.core.ops.cli", "control-plane", "--data-dir", str(data),
           "--api-port", str(free_port()), "--xds-port", str(free_port())]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1 and "chmod 600" in r.stderr


# One document of every kind, each depending only on those before it (deleted in reverse).
EVERY_KIND = {
    "Service": SERVICE % {"name": "allkinds"},
    "HTTPRoute": ROUTE % {"name": "allkinds", "weight": 1},
    "Filter": """\
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {name: allkinds}
spec:
  python: {type: path-deny}
  config: {paths: [{type: PathPrefix, value: /admin}], status: 403}
""",
    "Sidecar": """\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: allkinds}
spec:
  egress: [{port: {number: 18080, protocol: http}, service: allkinds}]
""",
    "Workload": """\
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {name: allkinds}
spec: {service: allkinds, address: 127.0.0.1}
""",
    "BackendTrafficPolicy": """\
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: allkinds}
spec:
  targetRefs: [{name: allkinds}]
  timeouts: {connect: 2s}
""",
    "PeerAuthentication": """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: allkinds}
spec: {mtls: {mode: STRICT}}
""",
    "AuthorizationPolicy": """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allkinds}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
""",
    "Telemetry": """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: allkinds}
spec:
  accessLogging: [{sampling: 5}]
""",
}


def test_every_kind_apply_stores_can_be_listed_got_and_deleted_by_name(
    cp: Proc, tmp_path: Path
) -> None:
    """The kinds the CLI names are the kinds apply stores (one table), each reachable by
    singular, plural and any case, and each named in ``--help`` and the docs."""
    from plait.controlplane._kinds import KINDS
    from plait.core.config import KINDS as PARSED

    assert {k.name for k in KINDS} == set(PARSED) == set(EVERY_KIND)
    for kind in KINDS:
        r = cli(cp, "apply", "-f", str(write(tmp_path, f"{kind.name}.yaml", EVERY_KIND[kind.name])))
        assert r.returncode == 0, r.stderr
    docs = (Path(__file__).parents[2] / "docs" / "control-plane.md").read_text()
    for kind in KINDS:
        for spelling in (kind.name.lower(), kind.plural, kind.name.upper(), *kind.short):
            r = cli(cp, "get", spelling)
            assert r.returncode == 0, (spelling, r.stderr)
            assert "allkinds" in r.stdout, (spelling, r.stdout)
        got = json.loads(cli(cp, "get", kind.name.lower(), "allkinds", "-o", "json").stdout)
        assert got["kind"] == kind.name
        assert f"| {kind.name} |" in docs, f"docs/control-plane.md: no table row for {kind.name}"
        for command in ("get", "delete"):
            assert kind.name.lower() in cli(None, command, "--help").stdout
    for kind in reversed(KINDS):
        r = cli(cp, "delete", kind.name.lower(), "allkinds")
        assert (r.returncode, r.stdout) == (0, f"{kind.name.lower()}/allkinds deleted\n"), r.stderr
    r = cli(cp, "get", "gateway")
    assert r.returncode == 2 and "backendtrafficpolicy" in r.stderr


GRPC_ROUTE = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: %(name)s}
spec:
  ports: [{name: grpc, port: 50051, protocol: %(protocol)s}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %(name)s}
spec:
  parentRefs: [{kind: Service, name: %(name)s, port: 50051}]
  rules:
  - matches: [{headers: [{name: x-dark, value: "1"}]}]
    backendRefs: [{name: %(name)s, port: 50051, weight: 0}]
  - backendRefs: [{name: %(name)s, port: 50051}]
    retry: {attempts: %(attempts)s, codes: [503]}
"""


def test_apply_warns_where_a_client_will_not_do_what_was_written(cp: Proc, tmp_path: Path) -> None:
    f = write(tmp_path, "g.yaml", GRPC_ROUTE % {"name": "greet", "protocol": "grpc",
                                               "attempts": 10})  # fmt: skip
    r = cli(cp, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "service/greet created\nhttproute/greet created\n"
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, r.stderr
    zero, attempts = warnings
    assert "HTTPRoute/default/greet: spec.rules[0]" in zero and "weight 0" in zero
    assert "503" in zero and "NACK" in zero
    assert "spec.rules[1].retry.attempts: 10" in attempts and "at most 4" in attempts
    # within what gRPC honours, or not a gRPC port: only the weight warning
    for name, protocol, n in (("greet", "grpc", 4), ("web", "http", 10)):
        f = write(tmp_path, f"{name}.yaml", GRPC_ROUTE % {"name": name, "protocol": protocol,
                                                         "attempts": n})  # fmt: skip
        r = cli(cp, "apply", "-f", str(f))
        assert r.returncode == 0, r.stderr
        warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "weight 0" in warnings[0], r.stderr


def test_apply_takes_sidecar_tracing_without_warning_and_refuses_bad_telemetry(
    cp: Proc, tmp_path: Path
) -> None:
    """Tracing travels over xDS: no warning. A Telemetry naming an undeclared provider,
    or with a sampling out of range, is refused naming the file, field and expectation."""
    sidecar = """\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: traced}
spec:
  tracing: {sampling: 10, otlp: {endpoint: "http://127.0.0.1:4318"}}
"""
    r = cli(cp, "apply", "-f", str(write(tmp_path, "s.yaml", sidecar)))
    assert r.returncode == 0, r.stderr
    assert "warning:" not in r.stderr, r.stderr
    undeclared = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: traces, namespace: default}
spec:
  tracing: [{providers: [{name: jaeger}], randomSamplingPercentage: 100}]
"""
    r = cli(cp, "apply", "-f", str(f := write(tmp_path, "t.yaml", undeclared)))
    assert r.returncode != 0
    assert str(f) in r.stderr and "provider 'jaeger' is not declared" in r.stderr, r.stderr
    assert "spec.tracing[0].providers" in r.stderr, r.stderr
    out_of_range = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: default}
spec:
  accessLogging: [{sampling: 250}]
"""
    r = cli(cp, "apply", "-f", str(f := write(tmp_path, "u.yaml", out_of_range)))
    assert r.returncode != 0
    assert "spec.accessLogging[0].sampling" in r.stderr and "0 to 100" in r.stderr, r.stderr
    r = cli(cp, "get", "telemetries")
    assert r.returncode == 0 and "traces" not in r.stdout and "logs" not in r.stdout
    good = out_of_range.replace("sampling: 250}]", "sampling: 5}]\n  tracing: [{disabled: true}]")
    r = cli(cp, "apply", "-f", str(write(tmp_path, "v.yaml", good)))
    assert r.returncode == 0, r.stderr
    row = next(line for line in cli(cp, "get", "telemetries").stdout.splitlines() if "logs" in line)
    assert row.split() == ["logs", "default", "-", "on", "5%", "off"], row
