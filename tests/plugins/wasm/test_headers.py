"""Header maps, pseudo-headers and local replies through the adapter (real wasmtime, WAT)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from plait.plugins.wasm import WasmSetup
from plait.sdk import Headers, ResponseHead
from plait.sdk.testing import drive, make_request

from .conftest import instance
from .wat import build

pytestmark = pytest.mark.anyio


async def test_request_headers_added_removed_replaced(wasm_setup: Callable[..., WasmSetup]) -> None:
    setup = wasm_setup("headers")
    req = make_request(
        headers=[("x-remove-me", "1"), ("x-replace", "a"), ("x-replace", "b"), ("x-keep", "k")]
    )
    result = await drive(instance(setup), request_head=req)
    headers = result.request_head.headers
    assert result.upstream_called
    assert headers.get("x-wasm-added") == "yes"
    assert "x-remove-me" not in headers
    assert headers.get_all("x-replace") == ["replaced"]
    assert headers.get("x-keep") == "k"
    assert result.response_head is not None
    assert result.response_head.headers.get("x-wasm-response") == "yes"


async def test_pseudo_header_path_is_read_and_rewritten(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    req = make_request(path="/orig?q=1", headers=[("x-rewrite", "1")])
    result = await drive(instance(wasm_setup("headers")), request_head=req)
    assert result.request_head.path == "/rewritten"
    assert result.request_head.headers.get("x-original-path") == "/orig?q=1"


async def test_local_reply_ends_the_request_even_if_the_callback_continues(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    result = await drive(
        instance(wasm_setup("headers")), request_head=make_request(headers=[("x-deny", "1")])
    )
    reply = result.local_reply
    assert reply is not None and result.reply_phase == "request"
    assert not result.upstream_called
    assert reply.status == 403
    assert reply.body == b"forbidden by wasm\n"
    assert ("x-denied", "wasm") in reply.headers
    assert reply.reason == "denied by test module"


async def test_every_stream_gets_its_own_context(wasm_setup: Callable[..., WasmSetup]) -> None:
    setup = wasm_setup("headers")
    for _ in range(3):
        result = await drive(instance(setup), request_head=make_request())
        assert result.request_head.headers.get_all("x-wasm-added") == ["yes"]
    assert setup.plugin.vm.contexts.keys() == {1}  # only the root context is left


async def test_response_header_map_of_a_response(wasm_setup: Callable[..., WasmSetup]) -> None:
    head = ResponseHead(status=201, headers=Headers([("content-type", "text/plain")]))
    result = await drive(instance(wasm_setup("headers")), response_head=head)
    assert result.status == 201
    assert result.response_head is not None
    assert result.response_head.headers.get("content-type") == "text/plain"
    assert result.response_head.headers.get("x-wasm-response") == "yes"


async def test_public_api_path_gives_the_same_result(
    wasm_setup: Callable[..., WasmSetup], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fast crossings use wasmtime-py's private bindings; without them the host falls
    # back to its public API.
    from plait.plugins.wasm import _fast

    monkeypatch.setattr(_fast, "AVAILABLE", False)
    req = make_request(headers=[("x-remove-me", "1")])
    result = await drive(instance(wasm_setup("headers")), request_head=req)
    assert result.request_head.headers.get("x-wasm-added") == "yes"
    assert "x-remove-me" not in result.request_head.headers
    denied = await drive(
        instance(wasm_setup("headers")), request_head=make_request(headers=[("x-deny", "1")])
    )
    assert denied.status == 403


async def test_abi_edge_cases(wasm_setup: Callable[..., WasmSetup], tmp_path: Path) -> None:
    # modules/abi.wat: statuses of unknown keys, maps and contexts, bad pointers, the neutral
    # answers of features not delivered yet, and a whole-map replacement.
    setup = wasm_setup(build("abi", tmp_path))
    result = await drive(instance(setup), request_head=make_request(headers=[("a", "b")]))
    headers = result.request_head.headers
    assert headers.get("x-abi") == "ok", "the first failed check: " + str(headers.get("x-abi"))
    assert result.upstream_called and result.local_reply is None
    assert result.request_head.path == "/set"
    assert [n for n, _ in headers] == ["x-set", "x-abi"]
