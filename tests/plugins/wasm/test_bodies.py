"""Pause and resume with host-side body buffering; body rewrites (real wasmtime, WAT)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from plait.plugins.wasm import WasmSetup
from plait.sdk import Buffer, Headers, ResponseHead
from plait.sdk.testing import drive, make_context, make_request

from .conftest import instance
from .wat import build, module_text

pytestmark = pytest.mark.anyio
_PAUSE = """
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
"""  # a module whose request headers always pause, and has no body callback


async def test_paused_request_gets_whole_body_then_continues(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    req = make_request("POST", headers=[("content-length", "11")])
    result = await drive(
        instance(wasm_setup("body")), request_head=req, request_body=[b"hello", b" ", b"world"]
    )
    assert result.upstream_called
    assert result.request_body == b"[wasm]hello world"
    headers = result.request_head.headers
    assert headers.get("x-body-seen") == "yes"  # the held headers were still mutable
    assert "content-length" not in headers


async def test_response_body_paused_until_its_end_then_appended(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    head = ResponseHead(status=200, headers=Headers([("content-length", "6")]))
    result = await drive(
        instance(wasm_setup("body")), response_head=head, response_body=[b"abc", b"def"]
    )
    assert result.response_body == b"abcdef[wasm-response]"
    assert result.response_head is not None
    assert "content-length" not in result.response_head.headers


async def test_pause_on_a_chunk_asks_plait_to_buffer(wasm_setup: Callable[..., WasmSetup]) -> None:
    setup = wasm_setup("body", maxBufferBytes=4096)
    f = instance(setup)
    ctx = make_context(make_request("POST"))
    assert f.on_request_headers(ctx, ctx.request.headers, False) == Buffer(4096)
    assert f.on_request_data(ctx, b"part", False) == Buffer(4096)
    f.on_stream_complete(ctx)


async def test_body_over_the_buffer_limit_is_refused(wasm_setup: Callable[..., WasmSetup]) -> None:
    result = await drive(
        instance(wasm_setup("body", maxBufferBytes=8)),
        request_head=make_request("POST"),
        request_body=[b"0123456", b"789abc"],
    )
    assert result.status == 413
    assert not result.upstream_called


async def test_pause_with_nothing_to_resume_it_fails_closed(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path
) -> None:
    # A module that pauses a body-less request could only be resumed by a callout or a timer.
    setup = wasm_setup(build("pause", tmp_path, module_text(_PAUSE)))
    result = await drive(instance(setup), request_head=make_request())
    assert result.status == 503
    assert result.local_reply is not None
    assert result.local_reply.reason == f"wasm filter {setup.plugin.name} failed"


async def test_paused_headers_without_a_body_callback_fail_closed(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path
) -> None:
    # Nothing would ever resume these headers: the request must not slip through.
    setup = wasm_setup(build("pause", tmp_path, module_text(_PAUSE)))
    result = await drive(
        instance(setup), request_head=make_request("POST"), request_body=[b"a", b"b"]
    )
    assert result.status == 503 and not result.upstream_called


async def test_trailer_maps(wasm_setup: Callable[..., WasmSetup], tmp_path: Path) -> None:
    setup = wasm_setup(build("trailers", tmp_path))
    req_trailers, resp_trailers = Headers([("x-check", "42")]), Headers([("grpc-status", "0")])
    result = await drive(
        instance(setup),
        request_head=make_request("POST"),
        request_body=b"data",
        request_trailers=req_trailers,
        response_body=b"out",
        response_trailers=resp_trailers,
    )
    assert result.upstream_called
    assert req_trailers.get("x-seen") == "42"
    assert resp_trailers.get("x-response-seen") == "yes"
    denied = await drive(
        instance(setup),
        request_head=make_request("POST"),
        request_body=b"data",
        request_trailers=Headers([("x-deny", "1")]),
    )
    assert denied.status == 403 and not denied.upstream_called
    assert denied.local_reply is not None
    assert denied.local_reply.reason == f"local reply from wasm filter {setup.plugin.name}"


@pytest.mark.parametrize(("stream_type", "passes"), [(0, True), (1, False)])
async def test_a_pause_the_module_resumed_itself_continues(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path, stream_type: int, passes: bool
) -> None:
    # proxy_continue_stream(HTTP_REQUEST) resumes the paused request; resuming the response
    # (1) leaves the request paused, with nothing left to resume it.
    body = f"""
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $proxy_continue_stream (i32.const {stream_type})))
    (i32.const 1))
"""
    setup = wasm_setup(build("resume", tmp_path, module_text(body)))
    result = await drive(instance(setup), request_head=make_request())
    assert result.upstream_called is passes
    assert result.status == (200 if passes else 503)
