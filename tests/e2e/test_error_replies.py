"""Mesh-generated errors do not depend on how the request body arrived.

A refused upstream answers 503 whether the request had no body, a body streamed
over HTTP/2 (every gRPC call) or a body behind ``Expect: 100-continue``; gRPC
callers get a trailers-only response with the status a gRPC client expects.
"""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from tests.e2e._h2client import h2_request
from tests.e2e._resilience import metric, sidecar
from tests.support import (
    Proc,
    free_port,
    http_get,
    start_sidecar,
    write_config,
)

pytestmark = pytest.mark.e2e

GENEROUS_BUDGET = (
    "retryConstraint: {budget: {percent: 100, interval: 10s}}\n"
    "outlierDetection: {consecutive5xx: 0}"
)


def test_http2_body_to_refused_upstream_is_503_after_retries(
    tmp_path: Path, procs: list[Proc]
) -> None:
    dead = free_port()
    port = sidecar(
        tmp_path, procs, [dead], rule="retry: {attempts: 3, backoff: 1ms}", policy=GENEROUS_BUDGET
    )
    admin = procs[-1].admin_port
    for n in range(1, 4):
        head, _, _ = h2_request(port, [("content-type", "text/plain")], b"hello")
        assert head[":status"] == "503", head
        assert head["x-plait-reason"] == "upstream connect failure"
        assert (
            metric(admin, "plait_upstream_events_total", event="retry") == 3 * n
        )  # attempts: retries per request
    assert "Traceback" not in procs[-1].logs()


def test_grpc_call_to_refused_upstream_is_trailers_only_unavailable(
    tmp_path: Path, procs: list[Proc]
) -> None:
    dead = free_port()
    port = sidecar(
        tmp_path, procs, [dead], protocol="grpc",
        rule="retry: {attempts: 2, backoff: 1ms}", policy=GENEROUS_BUDGET,
    )  # fmt: skip
    head, data, _ = h2_request(
        port, [("content-type", "application/grpc"), ("te", "trailers")], b"\0\0\0\0\2hi"
    )
    assert head[":status"] == "200", head
    assert head["grpc-status"] == "14", head  # UNAVAILABLE
    assert head["content-type"] == "application/grpc"
    assert head["x-plait-reason"] == "upstream connect failure"
    assert "grpc-message" in head and data == b""
    assert metric(procs[-1].admin_port, "plait_upstream_events_total", event="retry") == 2


def test_grpcio_client_sees_unavailable_when_the_upstream_is_down(
    tmp_path: Path, procs: list[Proc]
) -> None:
    import grpc

    port = sidecar(tmp_path, procs, [free_port()], protocol="grpc")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as err:
                unary(b"hi", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
            metadata = dict(err.value.initial_metadata() or ())
            metadata.update(dict(err.value.trailing_metadata() or ()))
            assert metadata.get("x-plait-reason") == "upstream connect failure", metadata
    assert "Traceback" not in procs[-1].logs()


def test_grpc_statuses_of_mesh_errors(tmp_path: Path, procs: list[Proc]) -> None:
    """No route, a denial and a timeout, as a grpcio client sees them."""
    import grpc

    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", free_port()))
    silent.listen(8)
    deny = "[{type: path-deny, config: {paths: [{type: Exact, value: /test.Echo/Secret}]}}]"
    with silent:
        port = sidecar(
            tmp_path, procs, [silent.getsockname()[1]], protocol="grpc", filters=deny,
            rule="matches: [{path: {type: PathPrefix, value: /test.Echo}}]\n"
            "timeouts: {request: 300ms}",
        )  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for method, code, reason in [
                ("/other.Svc/Call", grpc.StatusCode.UNIMPLEMENTED, "no route"),
                ("/test.Echo/Secret", grpc.StatusCode.PERMISSION_DENIED, "denied by path policy"),
                ("/test.Echo/Unary", grpc.StatusCode.DEADLINE_EXCEEDED, "request timeout"),
            ]:
                with pytest.raises(grpc.RpcError) as err:
                    channel.unary_unary(method)(b"hi", timeout=10)
                assert err.value.code() == code, err.value
                assert err.value.details() == reason
    assert "Traceback" not in procs[-1].logs()


EXPECT = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"


def test_expect_continue_to_refused_upstream_is_503(tmp_path: Path, procs: list[Proc]) -> None:
    port = sidecar(tmp_path, procs, [free_port()])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(EXPECT)
        out = s.recv(65536)
        if out.startswith(b"HTTP/1.1 100 "):
            s.sendall(b"hello")
            while b"HTTP/1.1 5" not in out and (chunk := s.recv(65536)):
                out += chunk
    final = out[out.find(b"HTTP/1.1 5") :]
    assert final.startswith(b"HTTP/1.1 503 "), out
    assert b"x-plait-reason: upstream connect failure" in final
    assert "Traceback" not in procs[-1].logs()


def test_service_without_endpoints_is_503(tmp_path: Path, procs: list[Proc]) -> None:
    port, admin = free_port(), free_port()
    text = textwrap.dedent(f"""\
        apiVersion: plait.dev/v1alpha1
        kind: Service
        metadata: {{name: upstream}}
        spec:
          ports: [{{name: main, port: 80, protocol: http}}]
          endpoints: []
        ---
        apiVersion: plait.dev/v1alpha1
        kind: Sidecar
        metadata: {{name: test}}
        spec:
          admin: {{port: {admin}}}
          egress:
          - name: out
            port: {{number: {port}, protocol: http}}
            service: upstream
    """)
    proc = start_sidecar(write_config(tmp_path, text), admin)
    procs.append(proc)
    assert http_get(port, "/")[0] == 503
    assert http_get(port, "/", method="POST", body=b"hello")[0] == 503
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(EXPECT)
        out = s.recv(65536)
        if out.startswith(b"HTTP/1.1 100 "):
            s.sendall(b"hello")
            while b"HTTP/1.1 5" not in out and (chunk := s.recv(65536)):
                out += chunk
    assert out[out.find(b"HTTP/1.1 5") :].startswith(b"HTTP/1.1 503 "), out
    head, _, _ = h2_request(port, [], b"hello")
    assert head[":status"] == "503", head
    assert "Traceback" not in proc.logs()
