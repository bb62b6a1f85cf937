"""The HTTP/2 codec against real, independent peers.

* stock ``h2`` configured on its own (default validation and normalisation),
  wired in memory;
* ``nghttp`` and ``h2load`` (nghttp2, C) against the server codec over a socket,
  with small windows so our send queue is exercised by a real flow controller;
* ``grpcio`` (gRPC core, C) both ways: its client against the server codec, and
  the client codec against its server, including trailers-only errors.

The socket side is a plain blocking loop in a thread: the codec is sans-I/O, so
this is all a connection layer has to do.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from plait.core.codec import (
    ConnectionTerminated,
    DataReceived,
    Event,
    H2Codec,
    RequestReceived,
    ResponseReceived,
    StreamReset,
    TrailersReceived,
)
from plait.sdk import Headers, RequestHead, ResponseHead

BIG = bytes(range(256)) * 800  # 200 KiB


# -- a tiny HTTP/2 origin on top of the server codec ---------------------------------------


class Origin:
    """Answers each request once its body is complete.

    ``/big`` -> 200 KiB; ``/grpc...`` -> echo each gRPC message as it arrives,
    trailers ``grpc-status: 0`` at the end; ``/grpc.Missing`` -> trailers-only
    NOT_FOUND; anything else -> ``hello <path> <body length>``; request trailers
    are counted and, if the client sent ``te: trailers``, answered with trailers.
    """

    def __init__(self) -> None:
        self.requests: dict[int, RequestHead] = {}
        self.bodies: dict[int, int] = {}
        self.trailers_seen = 0
        self.resets = 0

    def on_event(self, codec: H2Codec, ev: Event) -> None:
        if isinstance(ev, RequestReceived):
            self.requests[ev.stream_id] = ev.head
            self.bodies[ev.stream_id] = 0
            if ev.head.path.startswith("/grpc.Missing"):
                headers = [
                    ("content-type", "application/grpc"),
                    ("grpc-status", "5"),
                    ("grpc-message", "no such method"),
                ]
                codec.send_response(ev.stream_id, _resp(200, headers), end_stream=True)
            elif ev.head.path.startswith("/grpc"):
                codec.send_response(
                    ev.stream_id,
                    _resp(200, [("content-type", "application/grpc")]),
                    end_stream=False,
                )
            if ev.end_stream:
                self._finish(codec, ev.stream_id)
        elif isinstance(ev, DataReceived):
            self.bodies[ev.stream_id] += len(ev.data)
            codec.acknowledge_received_data(ev.stream_id, len(ev.data))
            if self.requests[ev.stream_id].path.startswith("/grpc.Echo") and ev.data:
                codec.send_data(ev.stream_id, ev.data, end_stream=False)
            if ev.end_stream:
                self._finish(codec, ev.stream_id)
        elif isinstance(ev, TrailersReceived):
            self.trailers_seen += 1
            self._finish(codec, ev.stream_id)
        elif isinstance(ev, StreamReset):
            self.resets += 1

    def _finish(self, codec: H2Codec, sid: int) -> None:
        head = self.requests[sid]
        if head.path.startswith("/grpc.Missing"):
            return
        if head.path.startswith("/grpc"):
            codec.send_trailers(sid, Headers([("grpc-status", "0")]))
            return
        body = BIG if head.path == "/big" else f"hello {head.path} {self.bodies[sid]}".encode()
        codec.send_response(sid, _resp(200, [("content-length", str(len(body)))]), end_stream=False)
        if head.headers.get("te") == "trailers":
            codec.send_data(sid, body, end_stream=False)
            codec.send_trailers(sid, Headers([("x-served-by", "plait")]))
        else:
            codec.send_data(sid, body, end_stream=True)


def _resp(status: int, headers: list[tuple[str, str]]) -> ResponseHead:
    return ResponseHead(status=status, headers=Headers(headers))


def _serve(sock: socket.socket, on_event: Callable[[H2Codec, Event], None]) -> None:
    conn, _ = sock.accept()
    with conn:
        conn.settimeout(10)
        codec = H2Codec(client_side=False)
        codec.initiate()
        conn.sendall(codec.data_to_send())
        while True:
            data = conn.recv(65536)
            events = codec.receive_data(data)
            for ev in events:
                on_event(codec, ev)
            out = codec.data_to_send()
            if out:
                conn.sendall(out)
            if not data or any(isinstance(e, ConnectionTerminated) for e in events):
                return


@pytest.fixture
def origin() -> Iterator[tuple[Origin, int]]:
    """An :class:`Origin` serving one connection on a loopback port, in a thread."""
    app = Origin()
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(10)
    thread = threading.Thread(target=_serve, args=(sock, app.on_event), daemon=True)
    thread.start()
    yield app, sock.getsockname()[1]
    thread.join(10)
    sock.close()
    assert not thread.is_alive()


# -- stock h2, configured independently ----------------------------------------------------


def _stock(client_side: bool) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=client_side))
    conn.initiate_connection()
    return conn


def _shuttle(ours: H2Codec, theirs: h2.connection.H2Connection) -> tuple[list[Event], list[Any]]:
    our_events: list[Event] = []
    their_events: list[Any] = []
    for _ in range(100):
        a, b = ours.data_to_send(), theirs.data_to_send()
        if a:
            their_events += theirs.receive_data(a)
        if b:
            our_events += ours.receive_data(b)
        if not a and not b:
            break
    return our_events, their_events


def test_stock_h2_client_against_server_codec() -> None:
    server = H2Codec(client_side=False)
    server.initiate()
    peer = _stock(client_side=True)
    peer.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "x"),
            (":path", "/p"),
            ("te", "trailers"),
            ("Cookie", "a=1"),
            ("cookie", "b=2"),
        ],
    )
    peer.send_data(1, b"req")
    peer.send_headers(1, [("x-t", "1")], end_stream=True)
    events, _ = _shuttle(server, peer)
    assert [type(e) for e in events] == [RequestReceived, DataReceived, TrailersReceived]
    req = events[0]
    assert isinstance(req, RequestReceived)
    assert (req.head.method, req.head.scheme, req.head.path) == ("POST", "https", "/p")
    assert req.head.headers.get("cookie") == "a=1; b=2"  # RFC 9113 §8.2.3, combined inbound

    server.send_response(1, _resp(200, [("connection", "close"), ("x-a", "b")]), end_stream=False)
    server.send_data(1, BIG, end_stream=False)  # more than stock h2's 64 KiB window
    server.send_trailers(1, Headers([("grpc-status", "0")]))
    assert server.pending_bytes(1) > 0
    received = bytearray()
    their: list[Any] = []
    for _ in range(100):
        _, new = _shuttle(server, peer)
        their += new
        for ev in new:
            if isinstance(ev, h2.events.DataReceived):
                received += ev.data
                peer.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        if any(isinstance(ev, h2.events.TrailersReceived) for ev in new):
            break
    assert bytes(received) == BIG
    resp = next(ev for ev in their if isinstance(ev, h2.events.ResponseReceived))
    assert resp.headers == [(b":status", b"200"), (b"x-a", b"b")]
    assert server.pending_bytes(1) == 0


def test_client_codec_against_stock_h2_server() -> None:
    client = H2Codec(client_side=True)
    client.initiate()
    peer = _stock(client_side=False)
    head = RequestHead(
        method="GET",
        path="/",
        authority="",
        headers=Headers(
            [("host", "h1.example"), ("connection", "keep-alive"), ("transfer-encoding", "chunked")]
        ),
    )
    sid = client.send_request(head, end_stream=True)
    _, their = _shuttle(client, peer)
    req = next(ev for ev in their if isinstance(ev, h2.events.RequestReceived))
    assert req.headers == [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"h1.example"),
        (b":path", b"/"),
    ]
    peer.send_headers(sid, [(":status", "200"), ("grpc-status", "0")], end_stream=True)
    ours, _ = _shuttle(client, peer)
    assert len(ours) == 1 and isinstance(ours[0], ResponseReceived) and ours[0].end_stream


# -- nghttp2 ---------------------------------------------------------------------------------

# nghttp and h2load (Debian nghttp2-client) are installed by scripts/setup.sh, which
# `make test` runs first: a machine without them has a broken set-up, so these fail
# rather than skip.


def test_nghttp_concurrent_requests_with_small_windows(
    origin: tuple[Origin, int], tmp_path: Any
) -> None:
    app, port = origin
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * 100_000)
    # -w/-W 2^12: 4 KiB stream and connection windows, so the 200 KiB answers
    # only move as nghttp2 sends WINDOW_UPDATEs; -m 20: twenty concurrent streams.
    proc = subprocess.run(
        ["nghttp", "-n", "-s", "-w", "12", "-W", "14", "-m", "20", f"http://127.0.0.1:{port}/big"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("/big") == 20  # the -s statistics table lists every stream
    assert len(app.requests) == 20 and app.resets == 0


def test_nghttp_upload_with_trailers(origin: tuple[Origin, int], tmp_path: Any) -> None:
    app, port = origin
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * 100_000)
    proc = subprocess.run(
        [
            "nghttp",
            "-v",
            "-d",
            str(upload),
            "-H",
            "te: trailers",
            "--trailer",
            "x-sum: 42",
            f"http://127.0.0.1:{port}/upload",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hello /upload 100000" in proc.stdout
    assert "x-served-by: plait" in proc.stdout  # our trailers, parsed by nghttp2
    assert app.trailers_seen == 1


def test_h2load_1000_requests_100_concurrent(origin: tuple[Origin, int]) -> None:
    app, port = origin
    proc = subprocess.run(
        ["h2load", "-n", "1000", "-c", "1", "-m", "100", f"http://127.0.0.1:{port}/x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "1000 succeeded, 0 failed, 0 errored" in proc.stdout, proc.stdout + proc.stderr
    assert len(app.requests) == 1000


# -- grpcio ------------------------------------------------------------------------------------


def _grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def test_grpcio_client_against_server_codec(origin: tuple[Origin, int]) -> None:
    _, port = origin
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary("/grpc.Echo/Unary")
        assert unary(b"ping", timeout=10) == b"ping"
        chat = channel.stream_stream("/grpc.Echo/Chat")
        assert list(chat(iter([b"a", b"bb", b"ccc"]), timeout=10)) == [b"a", b"bb", b"ccc"]
        missing = channel.unary_unary("/grpc.Missing/Call")
        with pytest.raises(grpc.RpcError) as info:
            missing(b"x", timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND  # trailers-only, understood
        assert info.value.details() == "no such method"


def test_client_codec_against_grpcio_server() -> None:

    def reverse(request: bytes, context: Any) -> bytes:
        return request[::-1]

    def fail(request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "nope")
        raise AssertionError("unreachable")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {
        "Reverse": grpc.unary_unary_rpc_method_handler(reverse),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Svc", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            codec = H2Codec(client_side=True)
            codec.initiate()
            grpc_headers = [("content-type", "application/grpc"), ("te", "trailers")]
            ok = codec.send_request(
                RequestHead(
                    method="POST",
                    path="/test.Svc/Reverse",
                    authority="grpc",
                    headers=Headers(grpc_headers),
                ),
                end_stream=False,
            )
            codec.send_data(ok, _grpc_frame(b"hello"), end_stream=True)
            bad = codec.send_request(
                RequestHead(
                    method="POST",
                    path="/test.Svc/Fail",
                    authority="grpc",
                    headers=Headers(grpc_headers),
                ),
                end_stream=False,
            )
            codec.send_data(bad, _grpc_frame(b"x"), end_stream=True)
            events = _run_client(sock, codec, until_closed={ok, bad})
    finally:
        server.stop(None)
    ok_events = [e for e in events if getattr(e, "stream_id", None) == ok]
    assert [type(e) for e in ok_events] == [ResponseReceived, DataReceived, TrailersReceived]
    assert b"".join(e.data for e in ok_events if isinstance(e, DataReceived)) == _grpc_frame(
        b"olleh"
    )
    trailers = ok_events[-1]
    assert isinstance(trailers, TrailersReceived) and trailers.trailers.get("grpc-status") == "0"
    bad_events = [e for e in events if getattr(e, "stream_id", None) == bad]
    assert len(bad_events) == 1  # trailers-only
    resp = bad_events[0]
    assert isinstance(resp, ResponseReceived) and resp.end_stream
    assert resp.head.headers.get("grpc-status") == str(grpc.StatusCode.PERMISSION_DENIED.value[0])


def _run_client(sock: socket.socket, codec: H2Codec, until_closed: set[int]) -> list[Event]:
    events: list[Event] = []
    sock.sendall(codec.data_to_send())
    while any(s in until_closed for s in _open(codec, events, until_closed)):
        data = sock.recv(65536)
        new = codec.receive_data(data)
        for ev in new:
            if isinstance(ev, DataReceived):
                codec.acknowledge_received_data(ev.stream_id, len(ev.data))
        events += new
        out = codec.data_to_send()
        if out:
            sock.sendall(out)
        if not data:
            break
    return events


def _open(codec: H2Codec, events: list[Event], streams: set[int]) -> set[int]:
    ended = {
        e.stream_id
        for e in events
        if isinstance(e, TrailersReceived | StreamReset)
        or (isinstance(e, ResponseReceived | DataReceived) and e.end_stream)
    }
    return streams - ended
