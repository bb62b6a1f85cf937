"""Distributed tracing across a 3-hop chain of real sidecars, exported over OTLP/HTTP.

svc1 -> svc2 -> svc3: each app sits behind its own sidecar (an ingress to the app,
an egress to the next service) and forwards the trace headers of the request it
serves (``tests/support/trace_app.py``). The sidecars sample 0 % of the requests
that carry no decision, so every span the receiver gets was asked for: by a
caller's sampled flag or by the forcing header.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._resilience import mesh_config
from tests.support import (
    HERE,
    PY,
    Proc,
    control,
    free_port,
    http_get,
    start,
    start_flaky,
    start_sidecar,
    wait_port,
    write_config,
)
from tests.support.mtls import CLIENT, WEB, Pki, client_context, mtls_get, peer_auth, start_web
from tests.support.otlp_receiver import ReceivedSpan, Receiver, otlp_grpc_receiver, otlp_receiver
from tests.support.pki import Authority

pytestmark = pytest.mark.e2e

_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # export within 0.1 s (the SDK default is 5 s)


def _yaml(
    i: int, ports: dict[str, int], endpoint: str, sampling: float, protocol: str = "http/protobuf"
) -> str:
    nxt = i + 1
    service = (
        f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: svc{nxt}}}
spec:
  ports: [{{name: http, port: 80, protocol: http}}]
  endpoints: [{{address: 127.0.0.1, port: {ports[f"in{nxt}"]}}}]
---
"""
        if nxt <= 3
        else ""
    )
    egress = (
        f"""\
  egress:
  - {{name: out, port: {{number: {ports[f"out{i}"]}}}, service: svc{nxt}}}
"""
        if nxt <= 3
        else ""
    )
    return f"""\
{service}apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: svc{i}}}
spec:
  admin: {{port: {ports[f"admin{i}"]}}}
  tracing: {{sampling: {sampling}, otlp: {{endpoint: "{endpoint}", protocol: {protocol}}}}}
  ingress:
  - name: in
    port: {{number: {ports[f"in{i}"]}}}
    defaultEndpoint: "127.0.0.1:{ports[f"app{i}"]}"
{egress}"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Receiver]]:
    """The chain's entry port (svc1's ingress) and the receiver its spans go to."""
    tmp = tmp_path_factory.mktemp("trace")
    procs: list[Proc] = []
    with otlp_receiver() as receiver:
        try:
            ports = {
                f"{k}{i}": free_port() for i in (1, 2, 3) for k in ("app", "in", "out", "admin")
            }
            for i in (1, 2, 3):
                nxt = ["--next", str(ports[f"out{i}"])] if i < 3 else []
                log = tmp / f"app{i}.log"
                cmd = [PY, str(HERE / "trace_app.py"), "--port", str(ports[f"app{i}"])]
                procs.append(Proc(start([*cmd, "--name", f"app{i}", *nxt], log), log))
                wait_port(ports[f"app{i}"])
                text = _yaml(i, ports, receiver.endpoint, 0)
                config = write_config(tmp, text, f"svc{i}.yaml")
                procs.append(start_sidecar(config, ports[f"admin{i}"], env=_ENV))
            yield ports["in1"], receiver
        finally:
            for p in procs:
                p.stop()


def _call(port: int, headers: dict[str, str]) -> dict[str, Any]:
    status, _, body = http_get(port, "/call", headers=headers)
    assert status == 200, body
    reply = json.loads(body)
    assert reply["next"]["next"]["name"] == "app3"  # the request went through all three
    return reply  # type: ignore[no-any-return]


def _trace(receiver: Receiver, n: int = 5) -> list[ReceivedSpan]:
    spans = receiver.wait(n)
    time.sleep(0.3)  # anything more that was going to come
    spans = receiver.spans[:]
    receiver.spans.clear()
    return spans


def _check_chain(spans: list[ReceivedSpan], root_parent: str) -> ReceivedSpan:
    """Five spans of one trace: server and client in svc1 and svc2, server in svc3,
    each the child of the one before; returns svc1's server span."""
    by = {(s.service, s.kind): s for s in spans}
    assert len(spans) == 5 and len(by) == 5, spans
    order = [
        ("svc1.default", "server"),
        ("svc1.default", "client"),
        ("svc2.default", "server"),
        ("svc2.default", "client"),
        ("svc3.default", "server"),
    ]
    assert len({s.trace_id for s in spans}) == 1
    assert by[order[0]].parent_id == root_parent
    for parent, child in itertools.pairwise(order):
        assert by[child].parent_id == by[parent].span_id, (parent, child)
    client = by[("svc1.default", "client")]
    assert client.attributes["plait.upstream.cluster"] == "svc2.default:80"
    assert client.attributes["http.response.status_code"] == 200
    assert client.attributes["plait.retries"] == 0
    assert client.attributes["plait.direction"] == "outbound"
    assert "plait.failure_reason" not in client.attributes and not client.error
    return by[order[0]]


def test_forced_request_makes_one_trace_of_three_hops(chain: tuple[int, Receiver]) -> None:
    port, receiver = chain
    for _ in range(5):  # sampling 0: these only carry an unsampled context
        reply = _call(port, {})
        assert str(reply["seen"]["traceparent"]).endswith("-00")
    reply = _call(port, {"x-plait-trace": "1"})
    spans = _trace(receiver)
    root = _check_chain(spans, "")
    seen = reply["seen"]["traceparent"]
    assert seen == f"00-{root.trace_id}-{root.span_id}-01"  # app1 sees svc1's server span


def test_w3c_caller_joins_the_trace(chain: tuple[int, Receiver]) -> None:
    port, receiver = chain
    trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    _call(port, {"traceparent": f"00-{trace}-{span}-01", "tracestate": "vendor=x"})
    root = _check_chain(_trace(receiver), span)
    assert root.trace_id == trace
    assert root.trace_state == "vendor=x"  # the caller's tracestate, carried on
    _call(port, {"traceparent": f"00-{trace}-{span}-00"})  # the caller did not sample
    time.sleep(0.5)
    assert receiver.spans == []


@pytest.mark.parametrize("form", ["multi", "single"])
def test_b3_caller_joins_the_trace(chain: tuple[int, Receiver], form: str) -> None:
    port, receiver = chain
    trace, span = "463ac35c9f6413ad", "a2fb4a1d1a96d312"
    if form == "multi":
        headers = {"x-b3-traceid": trace, "x-b3-spanid": span, "x-b3-sampled": "1"}
    else:
        headers = {"b3": f"{trace}-{span}-1"}
    reply = _call(port, headers)
    root = _check_chain(_trace(receiver), span)
    assert root.trace_id == trace.rjust(32, "0")
    seen = reply["seen"]
    key = "x-b3-spanid" if form == "multi" else "b3"
    assert root.span_id in str(seen[key])  # B3 kept in its own form


def test_malformed_context_is_ignored_and_served(chain: tuple[int, Receiver]) -> None:
    port, receiver = chain
    bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"  # upper-case hex
    reply = _call(port, {"traceparent": bad})
    seen = str(reply["seen"]["traceparent"])
    assert seen != bad and seen.endswith("-00")  # a fresh, unsampled context
    time.sleep(0.5)
    assert receiver.spans == []


def test_spans_waiting_for_export_are_flushed_on_shutdown(tmp_path: Path) -> None:
    """Sampling 100 % and an export delay far beyond the test: the spans reach the
    collector only because the sidecar flushes them when it stops."""
    ports = {"app3": free_port(), "in3": free_port(), "admin3": free_port()}
    log = tmp_path / "app.log"
    app = Proc(start([PY, str(HERE / "trace_app.py"), "--port", str(ports["app3"])], log), log)
    with otlp_receiver() as receiver:
        try:
            wait_port(ports["app3"])
            config = write_config(tmp_path, _yaml(3, ports, receiver.endpoint, 100), "svc3.yaml")
            sidecar = start_sidecar(
                config, ports["admin3"], env={"OTEL_BSP_SCHEDULE_DELAY": "600000"}
            )
            for _ in range(3):
                assert http_get(ports["in3"], "/x")[0] == 200
            time.sleep(0.3)
            assert receiver.spans == []  # still in the batch queue
            assert sidecar.stop() == 0
            spans = receiver.wait(3, timeout=5)
            assert len(spans) == 3 and {s.kind for s in spans} == {"server"}
            assert len({s.trace_id for s in spans}) == 3  # three root spans (sampled by ratio)
        finally:
            app.stop()


def test_grpc_export_and_the_failure_reason_on_the_span(tmp_path: Path) -> None:
    """OTLP over gRPC; a request the mesh fails (its app is down) is an ERROR span that
    says why, like the access log."""
    ports = {"app3": free_port(), "in3": free_port(), "admin3": free_port()}
    log = tmp_path / "app.log"
    app = Proc(start([PY, str(HERE / "trace_app.py"), "--port", str(ports["app3"])], log), log)
    with otlp_grpc_receiver() as receiver:
        try:
            wait_port(ports["app3"])
            text = _yaml(3, ports, receiver.endpoint, 100, protocol="grpc")
            sidecar = start_sidecar(
                write_config(tmp_path, text, "svc3.yaml"), ports["admin3"], env=_ENV
            )
            assert http_get(ports["in3"], "/ok")[0] == 200
            (ok,) = receiver.wait(1)
            assert ok.kind == "server" and ok.service == "svc3.default" and not ok.error
            assert ok.attributes["http.response.status_code"] == 200
            app.stop()
            assert http_get(ports["in3"], "/down")[0] == 503
            spans = receiver.wait(2)
            failed = spans[1]
            assert failed.error and failed.attributes["http.response.status_code"] == 503
            assert failed.attributes["plait.failure_reason"] == "upstream connect failure"
            assert failed.attributes["url.path"] == "/down"
            assert sidecar.stop() == 0
        finally:
            app.stop()


def test_span_record_follows_the_sdk_settings(tmp_path: Path) -> None:
    """A span's name, times, scope and status as the SDK would record them, and the SDK's
    settings still apply: the resource from ``OTEL_RESOURCE_ATTRIBUTES`` and the
    attribute value length limit from ``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT``."""
    ports = {"app3": free_port(), "in3": free_port(), "admin3": free_port()}
    log = tmp_path / "app.log"
    app = Proc(start([PY, str(HERE / "trace_app.py"), "--port", str(ports["app3"])], log), log)
    env = {
        **_ENV,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging",
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "8",
    }
    with otlp_receiver() as receiver:
        try:
            wait_port(ports["app3"])
            config = write_config(tmp_path, _yaml(3, ports, receiver.endpoint, 100), "svc3.yaml")
            sidecar = start_sidecar(config, ports["admin3"], env=env)
            before = time.time_ns()
            assert http_get(ports["in3"], "/a-rather-long-path")[0] == 200
            (span,) = receiver.wait(1)
            after = time.time_ns()  # the span ends once the response is written
            app.stop()
            assert http_get(ports["in3"], "/down")[0] == 503
            _, failed = receiver.wait(2)
            assert sidecar.stop() == 0
        finally:
            app.stop()
    assert span.name == f"GET inbound|{ports['in3']}" and span.kind == "server"
    assert span.scope == "plait"
    assert before <= span.start_ns <= span.end_ns <= after
    resource = dict(span.resource)
    assert resource["deployment.environment"] == "staging"
    assert resource["service.name"] == "svc3.default"
    assert span.attributes["url.path"] == "/a-rathe"  # cut to the limit
    assert span.attributes["http.request.method"] == "GET"
    assert span.parent_id == "" and not span.error and span.status_message == ""
    assert failed.error and failed.status_message == "upstream connect failure"
    assert failed.attributes["plait.failure_reason"] == "upstream"  # cut to the limit


def test_server_span_names_both_verified_identities(tmp_path: Path, procs: list[Proc]) -> None:
    pki = Pki(tmp_path, Authority.create("mesh root"))
    with otlp_receiver() as receiver:
        extra = f'  tracing: {{sampling: 100, otlp: {{endpoint: "{receiver.endpoint}"}}}}\n'
        port, sidecar = start_web(tmp_path, pki, procs, extra + peer_auth("STRICT"))
        cert, key = pki.files("client", *pki.root.leaf(CLIENT))
        assert mtls_get(port, client_context(pki, cert, key), "/who")[0] == 200
        assert sidecar.stop() == 0  # flushes the span
        (span,) = receiver.wait(1, timeout=5)
    assert span.kind == "server" and span.service == "web.default"
    assert span.attributes["plait.source.identity"] == CLIENT
    assert span.attributes["plait.destination.identity"] == WEB


def test_client_span_counts_the_retries(tmp_path: Path, procs: list[Proc]) -> None:
    up = start_flaky(tmp_path, fail_every=1, status=503)  # every try fails
    procs.append(up)
    port, admin = free_port(), free_port()
    with otlp_receiver() as receiver:
        text = mesh_config(
            [up.port], port, admin,
            rule="retry: {codes: [503], attempts: 2, backoff: 1ms}",
            policy="retryConstraint: {budget: {percent: 100, interval: 10s}}\n"
            "outlierDetection: {consecutive5xx: 0}",
        )  # fmt: skip
        tracing = f'  tracing: {{sampling: 100, otlp: {{endpoint: "{receiver.endpoint}"}}}}\n'
        text = text.replace("  egress:\n", tracing + "  egress:\n", 1)
        procs.append(start_sidecar(write_config(tmp_path, text), admin, env=_ENV))
        assert http_get(port, "/flaky")[0] == 503
        (span,) = receiver.wait(1)
    tries = control(up.port)["requests"]
    assert tries >= 2 and span.kind == "client"
    assert span.attributes["plait.retries"] == tries - 1
    assert span.attributes["http.response.status_code"] == 503 and span.error
