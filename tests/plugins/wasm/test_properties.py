"""``proxy_get_property`` values in the encodings SDKs decode (as Envoy's host encodes them)."""

from __future__ import annotations

import struct

from plait.plugins.wasm._abi import decode_pairs
from plait.plugins.wasm._properties import PluginInfo, get_property
from plait.plugins.wasm._state import StreamState
from plait.sdk import ConnectionContext, Headers, ResponseHead
from plait.sdk.testing import make_context, make_request

INFO = PluginInfo("auth", "auth_root", "vm1")


def _stream() -> StreamState:
    conn = ConnectionContext(
        peer_address=("::1", 50000), local_address=("127.0.0.1", 15001), listener="in"
    )
    ctx = make_context(
        make_request("PUT", "/a/b?x=1", [("user-agent", "ua"), ("x-request-id", "r1")]),
        connection=conn,
    )
    ctx.response = ResponseHead(status=404, headers=Headers([("server", "s")]))
    ctx.route_name, ctx.cluster = "r", "c"
    return StreamState(2, ctx)


def test_plugin_properties_need_no_stream() -> None:
    assert get_property(INFO, None, b"plugin_root_id") == b"auth_root"
    assert get_property(INFO, None, b"plugin_name") == b"auth"
    assert get_property(INFO, None, b"plugin_vm_id") == b"vm1"
    assert get_property(INFO, None, b"request\0path") is None


def test_request_response_and_connection_properties() -> None:
    s = _stream()

    def prop(path: str) -> bytes | None:
        return get_property(INFO, s, path.replace(".", "\0").encode())

    assert prop("request.path") == b"/a/b?x=1"
    assert prop("request.url_path") == b"/a/b"
    assert prop("request.query") == b"x=1"
    assert prop("request.method") == b"PUT"
    assert prop("request.host") == b"test.local"
    assert prop("request.id") == b"r1"
    assert prop("request.useragent") == b"ua"
    assert prop("request.protocol") == b"HTTP/1.1"
    assert decode_pairs(prop("request.headers") or b"") == [
        (b"user-agent", b"ua"),
        (b"x-request-id", b"r1"),
    ]
    assert get_property(INFO, s, b"request\0headers\0user-agent") == b"ua"
    assert prop("response.code") == struct.pack("<q", 404)
    assert prop("source.address") == b"[::1]:50000"
    assert prop("source.port") == struct.pack("<q", 50000)
    assert prop("destination.address") == b"127.0.0.1:15001"
    assert prop("connection.mtls") == b"\0"
    assert prop("route_name") == b"r" and prop("xds.cluster_name") == b"c"
    assert prop("no.such.thing") is None


def test_a_property_set_by_the_module_reads_back() -> None:
    s = _stream()
    s.properties = {b"my\0key": b"v"}
    assert get_property(INFO, s, b"my\0key") == b"v"
