"""Fault injection: aborts (HTTP and gRPC), delays, the header gate; driven by plait.sdk.testing."""

from __future__ import annotations

import time

import anyio
import pytest

from plait.filters.fault import FAULT, AbortFault, Fault, make_fault, parse_fault
from plait.filters.fault import _filter as fault_module
from plait.sdk import ConfigError
from plait.sdk.testing import check_filter, drive, make_request


def test_conformance() -> None:
    check_filter(FAULT, {"abort": {"httpStatus": 503, "percentage": 50}})
    check_filter(FAULT, {"delay": {"fixedDelay": 0.001}})


def test_abort_by_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    f = make_fault(parse_fault({"abort": {"httpStatus": 429, "percentage": 10}}))
    assert isinstance(f, AbortFault)  # no delay: plain hooks, the chain stays fast
    monkeypatch.setattr(fault_module, "_draw", lambda: 0.05)
    res = anyio.run(lambda: drive(f))
    assert res.status == 429 and not res.upstream_called
    assert res.local_reply is not None and res.local_reply.reason == "fault injected"
    monkeypatch.setattr(fault_module, "_draw", lambda: 0.15)
    assert anyio.run(lambda: drive(f)).upstream_called


def test_grpc_abort_is_a_trailers_only_response(monkeypatch: pytest.MonkeyPatch) -> None:
    f = make_fault(parse_fault({"abort": {"grpcStatus": 14}}))
    res = anyio.run(lambda: drive(f))
    assert res.local_reply is not None
    assert res.local_reply.status == 200
    assert ("grpc-status", "14") in res.local_reply.headers


def test_delay_only_with_the_header() -> None:
    f = make_fault(parse_fault({"delay": {"fixedDelay": "50ms"}, "header": "X-Chaos"}))
    assert isinstance(f, Fault)
    t0 = time.monotonic()
    anyio.run(lambda: drive(f))
    assert time.monotonic() - t0 < 0.04
    t0 = time.monotonic()
    res = anyio.run(lambda: drive(f, request_head=make_request(headers=[("x-chaos", "1")])))
    assert time.monotonic() - t0 >= 0.05
    assert res.upstream_called and res.ctx.failure_reason == "fault delay injected"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "expected delay, abort or both"),
        ({"abort": {"httpStatus": 503, "percentage": 120}}, "0..100"),
        ({"abort": {"httpStatus": 503, "grpcStatus": 14}}, "exactly one"),
        ({"delay": {"fixedDelay": "soon"}}, "duration"),
    ],
)
def test_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_fault(raw)
