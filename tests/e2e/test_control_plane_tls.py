"""The control plane's own ports over TLS, from outside: real processes, real handshakes.

Who trusts the control plane, and how: the CLI on its host (the data directory's
``ca-bundle.pem``), a sidecar with ``--ca-bundle``, a sidecar whose join token pins the
root; and who must not: a client pinned to another control plane's CA.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import PY, Proc, free_port, http_get, start_echo
from tests.support.controlplane import (
    apply,
    ca_bundle,
    config_dump,
    plait,
    start_control_plane,
    start_xds_sidecar,
    wait_for,
)

MESH = """\
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {name: web}
spec:
  egress:
  - port: {number: %d, protocol: http}
    service: web
---
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80, protocol: http}]
  endpoints: [{address: 127.0.0.1, port: %d}]
"""


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    """Two control planes, each with its own CA."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = start_control_plane(tmp_path / "a", data_dir=tmp_path / "a" / "data")
    try:
        b = start_control_plane(tmp_path / "b", data_dir=tmp_path / "b" / "data")
    except BaseException:
        a.stop()
        raise
    yield a, b
    b.stop()
    a.stop()


def _cli(cp: Proc, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    assert cp.config is not None
    # On the control plane's host: only its data directory (for the token and the roots).
    base.update(PLAIT_DATA_DIR=str(cp.config), **env)
    server = f"https://127.0.0.1:{cp.extra['api']}"
    cmd = [PY, "-m", "plait.core.ops.cli", *args[:2], "--server", server, *args[2:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=base, check=False)


def test_the_cli_on_the_host_verifies_the_api_with_no_flags(two: tuple[Proc, Proc]) -> None:
    a, b = two
    r = _cli(a, "get", "svc")
    assert r.returncode == 0, r.stderr
    assert "No resources found" in r.stderr
    # Given the other control plane's roots, the CLI refuses this one before sending a token.
    r = _cli(a, "get", "svc", PLAIT_CA_BUNDLE=str(ca_bundle(b)))
    assert r.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in r.stderr, r.stderr
    # Plain HTTP to the TLS port gets no answer the CLI could take for the API's.
    plain = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "get", "svc", "--server",
         f"http://127.0.0.1:{a.extra['api']}"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PLAIT_DATA_DIR": str(a.config)},
    )  # fmt: skip
    assert plain.returncode == 1 and "cannot reach the control plane" in plain.stderr


def test_a_token_with_another_control_planes_pin_is_refused_before_anything_is_sent(
    tmp_path: Path, two: tuple[Proc, Proc]
) -> None:
    a, b = two
    token = plait(a, "workload", "token", "-s", "web").stdout.strip()
    # The sidecar is sent to b with a's token: b's root does not match the pin.
    sidecar = start_xds_sidecar(
        tmp_path, b, "web", "--ca-server", f"https://127.0.0.1:{b.extra['api']}",
        "--service-account", "web", wait=False, env={"PLAIT_JOIN_TOKEN": token},
    )  # fmt: skip
    try:
        assert sidecar.popen.wait(20) == 1
        log = sidecar.log.read_text()
        assert "is not the one the join token names" in log, log
    finally:
        sidecar.stop()
    status = json.loads(plait(b, "ca", "status", "-o", "json").stdout)
    assert status["issued"]["first"] == 0 and not status.get("refusals"), status
    seen = [ln for ln in b.log.read_text().splitlines() if "CA:" in ln and "created" not in ln]
    assert seen == []  # b never saw a token or a CSR
    # The token was not spent: a's control plane still takes it.
    apply(a, tmp_path, MESH % (free_port(), free_port()))
    good = start_xds_sidecar(
        tmp_path, a, "web", "--ca-server", f"https://127.0.0.1:{a.extra['api']}",
        "--service-account", "web", env={"PLAIT_JOIN_TOKEN": token},
    )  # fmt: skip
    try:
        assert "verified against the join token's pin" in good.log.read_text()
        dump = config_dump(good)
        assert dump["xds"]["connected"] is True
    finally:
        good.stop()


def test_a_sidecar_pinned_to_another_ca_gets_no_config(
    tmp_path: Path, two: tuple[Proc, Proc], procs: list[Proc]
) -> None:
    a, b = two
    apply(a, tmp_path, MESH % (free_port(), free_port()))

    def join(name: str, bundle: Proc, **kw: Any) -> Proc:
        token = plait(a, "workload", "token", "-s", "web").stdout.strip()
        return start_xds_sidecar(
            tmp_path, a, "web", "--ca-bundle", str(ca_bundle(bundle)), "--service-account",
            "web", "--ca-server", f"https://127.0.0.1:{a.extra['api']}", node_id=name,
            env={"PLAIT_JOIN_TOKEN": token}, **kw,
        )  # fmt: skip

    wrong = join("wrong", b, wait=False)
    procs.append(wrong)  # stopped by the fixture, also when the next start fails
    right = join("right", a)
    procs.append(right)
    wait_for(lambda: config_dump(right)["xds"]["connected"], timeout=20)
    wait_for(lambda: "certificate verify failed" in wrong.log.read_text().lower()
             or "handshake" in wrong.log.read_text().lower(), timeout=20)  # fmt: skip
    assert http_get(wrong.admin_port, "/ready", timeout=2)[0] == 503
    assert config_dump(wrong)["xds"]["connected"] is False


def test_xds_refuses_plaintext_and_clients_without_a_certificate(tmp_path: Path) -> None:
    plain_port = free_port()
    cp = start_control_plane(tmp_path, extra=("--xds-plaintext-port", str(plain_port)))
    try:

        def list_services(target: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
            from envoy.config.core.v3 import base_pb2  # type: ignore[import-untyped]
            from envoy.service.discovery.v3 import (  # type: ignore[import-untyped]
                ads_pb2_grpc,
                discovery_pb2,
            )

            channel = (
                grpc.secure_channel(target, creds)
                if creds is not None
                else grpc.insecure_channel(target)
            )
            with channel:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                req = discovery_pb2.DiscoveryRequest(
                    type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster",
                    node=base_pb2.Node(id="probe"),
                )
                try:
                    next(iter(stub.StreamAggregatedResources(iter([req]), timeout=3)))
                except grpc.RpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

        # TLS that verifies the control plane, but no client certificate: the port requires
        # one (tests/controlplane/test_node_auth.py: with one, and which node it may be).
        tls = grpc.ssl_channel_credentials(ca_bundle(cp).read_bytes())
        assert list_services(f"127.0.0.1:{cp.extra['xds']}", tls) == grpc.StatusCode.UNAVAILABLE
        assert list_services(f"127.0.0.1:{cp.extra['xds']}", None) == grpc.StatusCode.UNAVAILABLE
        assert list_services(f"127.0.0.1:{plain_port}", None) == grpc.StatusCode.OK
    finally:
        cp.stop()


def test_a_sidecar_reconnects_when_its_xds_connection_reaches_its_maximum_age(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """Every connection ends after its age (1 s here); the sidecar reconnects with its
    certificate each time and keeps its config and its traffic meanwhile."""
    app = start_echo(tmp_path, "web-app")
    cp = start_control_plane(tmp_path, extra=("--xds-max-connection-age", "1"))
    procs += [app, cp]
    listen = free_port()
    apply(cp, tmp_path, MESH % (listen, app.port))
    token = plait(cp, "workload", "token", "-s", "web").stdout.strip()
    web = start_xds_sidecar(
        tmp_path, cp, "web", "--ca-server", f"https://127.0.0.1:{cp.extra['api']}",
        "--service-account", "web", "--ca-bundle", str(ca_bundle(cp)),
        env={"PLAIT_JOIN_TOKEN": token}, node_id="web-aged",
    )  # fmt: skip
    procs.append(web)

    def streams() -> int:
        return cp.log.read_text().count(": web-aged connected from")

    failures = 0
    deadline = time.monotonic() + 30
    while streams() < 3 and time.monotonic() < deadline:
        status, _, _ = http_get(listen, "/")
        failures += status != 200
        time.sleep(0.1)
    assert streams() >= 3  # two reconnections at least
    assert failures == 0
    assert config_dump(web)["xds"]["connected"] is True
    assert plait(cp, "check", check=False).returncode == 0
