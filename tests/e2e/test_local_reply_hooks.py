"""Local replies pass through the response hooks of the filters that saw the request.

A real sidecar whose chain is ``response-header-modifier`` (stamps ``x-first``),
``path-deny`` (answers 403 for ``/admin``), ``response-header-modifier`` (stamps
``x-last``): the 403 is stamped by the filter before ``path-deny`` only, while mesh
errors after the request phase (connect failure, request timeout, over HTTP/1.1 and as a
gRPC trailers-only reply) are stamped by both, as the upstream's responses are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._h2client import h2_request
from tests.support import (
    Proc,
    free_port,
    http_get,
    simple_config,
    start_flaky,
    start_sidecar,
    write_config,
)

pytestmark = pytest.mark.e2e

CHAIN = (
    "[{type: response-header-modifier, config: {set: [{name: x-first, value: '1'}]}},"
    " {type: path-deny, config: {paths: [{type: PathPrefix, value: /admin}]}},"
    " {type: response-header-modifier, config: {set: [{name: x-last, value: '1'}]}}]"
)


def _sidecar(tmp: Path, procs: list[Proc], upstream: int, protocol: str = "http",
             extra: str = "") -> int:  # fmt: skip
    port, admin = free_port(), free_port()
    text = simple_config(upstream, port, admin, protocol=protocol, filters=CHAIN, extra=extra)
    procs.append(start_sidecar(write_config(tmp, text), admin))
    return port


def test_replies_are_stamped_by_the_filters_that_saw_the_request(
    tmp_path: Path, procs: list[Proc]
) -> None:
    up = start_flaky(tmp_path)
    procs.append(up)
    port = _sidecar(tmp_path, procs, up.port, extra="    timeouts: {request: 1s}\n")

    status, headers, _ = http_get(port, "/ok")  # the upstream's answer: both stamps
    assert status == 200 and headers.get("x-first") == "1" and headers.get("x-last") == "1"

    status, headers, _ = http_get(port, "/admin/users")  # path-deny's own reply
    assert status == 403
    assert headers.get("x-first") == "1"  # the filter before it saw the request
    assert "x-last" not in headers  # the one after it never did

    http_get(up.port, "/__control?hang=1")  # the request timeout: every filter saw it
    status, headers, _ = http_get(port, "/slow")
    assert status == 504 and headers["x-plait-reason"] == "request timeout"
    assert headers.get("x-first") == "1" and headers.get("x-last") == "1"

    up.stop()  # connect failure after the request phase: every filter saw it
    status, headers, _ = http_get(port, "/gone")
    assert status == 503 and headers["x-plait-reason"] == "upstream connect failure"
    assert headers.get("x-first") == "1" and headers.get("x-last") == "1"


def test_a_grpc_callers_error_reply_is_stamped_in_its_grpc_form(
    tmp_path: Path, procs: list[Proc]
) -> None:
    port = _sidecar(tmp_path, procs, free_port(), protocol="grpc")  # nothing listens there
    head, _, _ = h2_request(port, [("content-type", "application/grpc")], b"\0\0\0\0\0",
                            path="/pkg.Svc/Call")  # fmt: skip
    assert head[":status"] == "200" and head["grpc-status"] == "14"  # UNAVAILABLE
    assert head.get("x-first") == "1" and head.get("x-last") == "1"
