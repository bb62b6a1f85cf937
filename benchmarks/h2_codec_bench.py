"""Micro benchmark of the HTTP/2 codec: µs per request/response exchange.

Run by hand: ``.venv/bin/python benchmarks/h2_codec_bench.py [concurrency]``
(default 100 concurrent streams), or with ``--instructions`` to count CPU
instructions per exchange under callgrind instead (valgrind must be installed;
slow, but a figure that other load on the machine does not disturb).

A client codec and a server codec are wired in memory (one process, no
sockets). Each round opens 100 concurrent streams, then the server answers all
of them; the figure is CPU time per exchange (``process_time``, so other load
on a shared machine disturbs it less), both sides included. Two shapes:

* ``plain``: GET with no body -> 200 with a 1 KiB body;
* ``grpc``: POST with a 100-byte DATA frame -> headers, 100-byte DATA, trailers.

Each shape is also timed with the connections' HPACK encoder and decoder swapped
back to the ``hpack`` package (what stock h2 uses), so plait's compiled HPACK
codec's share is visible. For scale it also times bare ``h2`` (stock
configuration, events discarded) doing the ``plain`` exchange, so the codec's
own overhead is visible. And it times plait's own frame layer alone
(``frames.py``, ``frame_reader.py``): writing and reading back the frames of one
gRPC unary exchange, the framing share of a codec built on it.

Instructions: each shape runs in a child process under ``valgrind --tool=callgrind``
twice, once with no measured rounds and once with :data:`CALLGRIND_ROUNDS`; the
difference divided by the exchanges is the instructions per exchange (start-up and
warm-up cancel out).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack

from plait.core.codec import DataReceived, H2Codec, RequestReceived
from plait.core.codec.http2 import frames
from plait.core.codec.http2.frame_reader import PREFACE, FrameReader
from plait.core.codec.http2.native import NativeH2Codec
from plait.sdk import Headers, RequestHead, ResponseHead

CONCURRENCY = 100
ROUNDS = 20
REPEATS = 15  # best of: the figure is the least-disturbed run

REQ_HEADERS = Headers(
    [("user-agent", "bench/1.0"), ("accept", "*/*"), ("x-request-id", "0123456789abcdef")]
)
BODY = b"x" * 1024
SMALL = b"y" * 100


def _pair() -> tuple[H2Codec, H2Codec]:
    client, server = H2Codec(client_side=True), H2Codec(client_side=False)
    client.initiate()
    server.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _native_pair() -> tuple[H2Codec, H2Codec]:
    """A pair over plait's own HTTP/2 connection (``http2/native``) instead of h2's."""
    client, server = NativeH2Codec(client_side=True), NativeH2Codec(client_side=False)
    client.initiate()
    server.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _pair_with_hpack() -> tuple[H2Codec, H2Codec]:
    """A pair whose connections use the ``hpack`` package, as stock h2 does: the same codec
    with its header compression as it was before plait had its own."""
    client, server = H2Codec(client_side=True), H2Codec(client_side=False)
    for codec in (client, server):
        conn = codec._conn  # (private: a benchmark comparing the two HPACK codecs)
        limit = conn.decoder.max_header_list_size
        conn.encoder = hpack.Encoder()
        conn.decoder = hpack.Decoder(max_header_list_size=limit)
    client.initiate()
    server.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _plain_round(client: H2Codec, server: H2Codec) -> None:
    for _ in range(CONCURRENCY):
        head = RequestHead(
            method="GET", path="/hello", authority="svc.local", headers=REQ_HEADERS.copy()
        )
        client.send_request(head, end_stream=True)
    for ev in server.receive_data(client.data_to_send()):
        if isinstance(ev, RequestReceived):
            resp = ResponseHead(status=200, headers=Headers([("content-type", "text/plain")]))
            server.send_response(ev.stream_id, resp, end_stream=False)
            server.send_data(ev.stream_id, BODY, end_stream=True)
    for ev in client.receive_data(server.data_to_send()):
        if isinstance(ev, DataReceived):
            client.acknowledge_received_data(ev.stream_id, len(ev.data))
    _feed(server, client.data_to_send())


def _feed(codec: H2Codec, data: bytes) -> None:
    if data:  # b"" would mean EOF
        codec.receive_data(data)


def _grpc_round(client: H2Codec, server: H2Codec) -> None:
    grpc_headers = Headers([("content-type", "application/grpc"), ("te", "trailers")])
    for _ in range(CONCURRENCY):
        head = RequestHead(
            method="POST", path="/pkg.Svc/Call", authority="svc", headers=grpc_headers.copy()
        )
        sid = client.send_request(head, end_stream=False)
        client.send_data(sid, SMALL, end_stream=True)
    for ev in server.receive_data(client.data_to_send()):
        if isinstance(ev, DataReceived):
            server.acknowledge_received_data(ev.stream_id, len(ev.data))
            resp = ResponseHead(status=200, headers=Headers([("content-type", "application/grpc")]))
            server.send_response(ev.stream_id, resp, end_stream=False)
            server.send_data(ev.stream_id, SMALL, end_stream=False)
            server.send_trailers(ev.stream_id, Headers([("grpc-status", "0")]))
    for ev in client.receive_data(server.data_to_send()):
        if isinstance(ev, DataReceived):
            client.acknowledge_received_data(ev.stream_id, len(ev.data))
    _feed(server, client.data_to_send())


def _bare_h2_round(client: h2.connection.H2Connection, server: h2.connection.H2Connection) -> None:
    req = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"svc.local"),
        (b":path", b"/hello"),
        *REQ_HEADERS.raw,
    ]
    for _ in range(CONCURRENCY):
        client.send_headers(client.get_next_available_stream_id(), req, end_stream=True)
    for ev in server.receive_data(client.data_to_send()):
        if isinstance(ev, h2.events.RequestReceived):
            server.send_headers(
                ev.stream_id, [(b":status", b"200"), (b"content-type", b"text/plain")]
            )
            server.send_data(ev.stream_id, BODY, end_stream=True)
    for ev in client.receive_data(server.data_to_send()):
        if isinstance(ev, h2.events.DataReceived):
            client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
    server.receive_data(client.data_to_send())


def _bare_pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    def make(client_side: bool) -> h2.connection.H2Connection:
        config = h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        conn = h2.connection.H2Connection(config)
        conn.local_settings = h2.settings.Settings(
            client=client_side,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 10_000},
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(4 << 20)
        return conn

    client, server = make(True), make(False)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


_BLOCK = bytes(range(40))  # a header block of a typical size (HPACK is measured apart)


def _frames_pair() -> tuple[FrameReader, FrameReader]:
    client, server = FrameReader(expect_preface=False), FrameReader(expect_preface=True)
    server.feed(PREFACE + frames.settings([]))
    client.feed(frames.settings([]))
    for reader in (client, server):
        reader.next_frame()
    return client, server


def _frames_round(client: FrameReader, server: FrameReader) -> None:
    """What one gRPC unary exchange puts on the wire, written and read back."""
    out = []
    for i in range(CONCURRENCY):
        sid = 2 * i + 1
        out.append(frames.headers(sid, _BLOCK, False, 16384))
        out.append(frames.data(sid, SMALL, True))
    server.feed(b"".join(out))
    back = []
    while (f := server.next_frame()) is not None:
        if f.type == frames.DATA:
            back.append(frames.window_update(f.stream_id, f.length))
            back.append(frames.headers(f.stream_id, _BLOCK, False, 16384))
            back.append(frames.data(f.stream_id, SMALL, False))
            back.append(frames.headers(f.stream_id, _BLOCK[:8], True, 16384))
    client.feed(b"".join(back))
    while client.next_frame() is not None:
        pass


SHAPES: dict[str, tuple[Callable[[], tuple[object, object]], Callable[..., None]]] = {
    "plain": (_pair, _plain_round),
    "grpc": (_pair, _grpc_round),
    "bare-h2": (_bare_pair, _bare_h2_round),
    "native-plain": (_native_pair, _plain_round),
    "native-grpc": (_native_pair, _grpc_round),
    "frames": (_frames_pair, _frames_round),
}

CALLGRIND_ROUNDS = 5


def _run_rounds(shape: str, rounds: int) -> None:
    make, round_ = SHAPES[shape]
    client, server = make()
    round_(client, server)  # warm up
    for _ in range(rounds):
        round_(client, server)


def _instructions(shape: str) -> float:
    def count(rounds: int) -> int:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={os.devnull}",
                sys.executable,
                __file__,
                "--run",
                shape,
                str(rounds),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise RuntimeError(f"no instruction count from callgrind: {proc.stderr[-500:]}")
        return int(match.group(1))

    per = (count(CALLGRIND_ROUNDS) - count(0)) / (CALLGRIND_ROUNDS * CONCURRENCY)
    print(f"{shape:<10} {per:12,.0f} instructions/exchange  ({CONCURRENCY} concurrent streams)")
    return per


def _time(
    name: str, make: Callable[[], tuple[object, object]], round_: Callable[..., None]
) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        client, server = make()
        round_(client, server)  # warm up
        start = time.process_time()
        for _ in range(ROUNDS):
            round_(client, server)
        best = min(best, time.process_time() - start)
    per = best / (ROUNDS * CONCURRENCY) * 1e6
    print(f"{name:<34} {per:7.1f} µs/exchange  ({CONCURRENCY} concurrent streams)")
    return per


def main() -> None:
    global CONCURRENCY
    args = sys.argv[1:]
    if args[:1] == ["--run"]:  # a child of --instructions
        _run_rounds(args[1], int(args[2]))
        return
    if args[:1] == ["--instructions"]:
        for shape in args[1:] or list(SHAPES):
            _instructions(shape)
        return
    if args:
        CONCURRENCY = int(args[0])
    print(f"python {sys.version.split()[0]}, h2 {h2.__version__}")
    _time("plait H2Codec, plain GET", _pair, _plain_round)
    _time("  the same with hpack's HPACK", _pair_with_hpack, _plain_round)
    _time("plait H2Codec, gRPC unary", _pair, _grpc_round)
    _time("  the same with hpack's HPACK", _pair_with_hpack, _grpc_round)
    _time("bare h2 (reference), plain GET", _bare_pair, _bare_h2_round)
    _time("plait frame layer, gRPC unary", _frames_pair, _frames_round)
    _time("plait native codec, plain GET", _native_pair, _plain_round)
    _time("plait native codec, gRPC unary", _native_pair, _grpc_round)


if __name__ == "__main__":
    main()
