"""gRPC (unary + server streaming), WebSocket and opaque TCP (redis) through a sidecar."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support import (
    PY,
    Proc,
    free_port,
    simple_config,
    start,
    start_echo,
    start_sidecar,
    wait_port,
    write_config,
)

pytestmark = pytest.mark.e2e

GRPC_SERVER = textwrap.dedent("""
    import sys, time
    from concurrent import futures
    import grpc

    def unary(request, context):
        md = dict(context.invocation_metadata())
        return b"echo:" + request + b":" + md.get("x-mesh", "-").encode()

    def stream(request, context):
        for i in range(int(request)):
            yield b"item-%d" % i

    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    })
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    server.start()
    server.wait_for_termination()
""")


def _grpc_server(tmp: Path, procs: list[Proc]) -> int:
    """Start :data:`GRPC_SERVER`; its port."""
    up = free_port()
    script = tmp / "grpc_server.py"
    script.write_text(GRPC_SERVER)
    server = start([PY, str(script), str(up)], tmp / "grpc.log")
    procs.append(Proc(server, tmp / "grpc.log"))
    wait_port(up, proc=server)
    return up


def test_grpc_unary_and_server_streaming(tmp_path: Path, procs: list[Proc]) -> None:
    import grpc

    up = _grpc_server(tmp_path, procs)
    port, admin = free_port(), free_port()
    filters = "[{type: request-header-modifier, config: {set: [{name: x-mesh, value: plait}]}}]"
    cfg = write_config(tmp_path, simple_config(up, port, admin, protocol="grpc", filters=filters))
    procs.append(start_sidecar(cfg, admin))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        assert unary(b"hi", timeout=10) == b"echo:hi:plait"
        stream = channel.unary_stream("/test.Echo/Stream")
        assert list(stream(b"25", timeout=10)) == [b"item-%d" % i for i in range(25)]
        missing = channel.unary_unary("/test.Echo/Missing")
        with pytest.raises(grpc.RpcError) as err:
            missing(b"x", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_through_two_sidecars_first_call(tmp_path: Path, procs: list[Proc]) -> None:
    """client -> outbound sidecar -> inbound sidecar -> server on fresh connections: the
    outbound sidecar's HTTP/2 client writes preface, SETTINGS, HEADERS and DATA in one
    segment, and the very first call must be answered."""
    import grpc

    up = _grpc_server(tmp_path, procs)
    inbound, in_admin = free_port(), free_port()
    (tmp_path / "in").mkdir()
    cfg = write_config(tmp_path / "in", simple_config(up, inbound, in_admin, protocol="grpc"))
    procs.append(start_sidecar(cfg, in_admin))
    outbound, out_admin = free_port(), free_port()
    (tmp_path / "out").mkdir()
    cfg = write_config(
        tmp_path / "out", simple_config(inbound, outbound, out_admin, protocol="grpc")
    )
    procs.append(start_sidecar(cfg, out_admin))
    with grpc.insecure_channel(f"127.0.0.1:{outbound}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        assert unary(b"first", timeout=5) == b"echo:first:-"
        assert [unary(b"%d" % i, timeout=5) for i in range(20)] == [
            b"echo:%d:-" % i for i in range(20)
        ]


def test_h2load_with_request_bodies(tmp_path: Path, procs: list[Proc]) -> None:
    """h2load (nghttp2) posting bodies over multiplexed h2c connections: every request done."""
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    procs.append(
        start_sidecar(write_config(tmp_path, simple_config(echo.port, port, admin)), admin)
    )
    body = tmp_path / "body"
    body.write_bytes(b"x" * 3000)
    out = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", "-d", str(body), "-T", "20",
         f"http://127.0.0.1:{port}/post"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout + out.stderr


WS_SERVER = textwrap.dedent("""
    import sys
    from websockets.sync.server import serve

    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", int(sys.argv[1])) as server:
        server.serve_forever()
""")


def test_websocket_echo(tmp_path: Path, procs: list[Proc]) -> None:
    from websockets.sync.client import connect

    up = free_port()
    script = tmp_path / "ws_server.py"
    script.write_text(WS_SERVER)
    server = start([PY, str(script), str(up)], tmp_path / "ws.log")
    procs.append(Proc(server, tmp_path / "ws.log"))
    wait_port(up, proc=server)
    port, admin = free_port(), free_port()
    procs.append(start_sidecar(write_config(tmp_path, simple_config(up, port, admin)), admin))
    with connect(f"ws://127.0.0.1:{port}/chat", open_timeout=10) as ws:
        for msg in ["hello", "x" * 100_000, "last"]:
            ws.send(msg)
            assert ws.recv(timeout=10) == msg
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"


def test_redis_through_tcp_listener(tmp_path: Path, procs: list[Proc]) -> None:
    up = free_port()
    redis = start(
        [
            "redis-server",
            "--port",
            str(up),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        tmp_path / "redis.log",
    )
    procs.append(Proc(redis, tmp_path / "redis.log"))
    wait_port(up, proc=redis)
    port, admin = free_port(), free_port()
    cfg = write_config(tmp_path, simple_config(up, port, admin, protocol="tcp", filters="[]"))
    procs.append(start_sidecar(cfg, admin))

    def cli(*args: str, stdin: str | None = None) -> str:
        r = subprocess.run(
            ["redis-cli", "-p", str(port), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return r.stdout.strip()

    assert cli("PING") == "PONG"
    assert cli("SET", "mesh", "plait") == "OK"
    assert cli("GET", "mesh") == "plait"
    big = "v" * 500_000
    assert cli("-x", "SET", "big", stdin=big) == "OK"  # -x: the value comes from stdin
    assert cli("STRLEN", "big") == "500000"
