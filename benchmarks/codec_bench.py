"""Micro benchmark of the HTTP/1.1 codecs: µs per request, llhttp fast path vs h11 reference.

Run by hand: ``.venv/bin/python benchmarks/codec_bench.py [rounds]``.

One process, no sockets. Each figure is CPU time per request
(``process_time``, best of ``REPEATS`` runs, so other load on a shared
machine disturbs it less) for one codec side:

* ``server``: parse a typical ~100-byte GET (one ``receive_data``) and frame a
  ~100-byte response (``send_response(..., end_stream=True, body=...)`` then
  ``data_to_send()``) -- the downstream half of a proxied request;
* ``client``: frame the same GET (``send_request``) and parse a ~100-byte
  response -- the upstream half;
* ``server POST``: a 1 KiB POST with Content-Length, and a streamed chunked
  response in two pieces;
* ``(exchange shapes)``: the heads of ``benchmarks/exchange_bench.py`` (a few
  more fields; the response carries ``connection: keep-alive``), as the
  proxy's two legs see them.

The heads handed to ``send_*`` are built once, outside the timed loop (a
proxy gets them from the other side's codec); building one costs what the
``caller`` line shows. For scale it also times bare httptools parsing the same
GET into a no-op protocol object (the floor the fast codec builds on).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from types import ModuleType

import httptools

from plait.core.codec import h11ref, http1
from plait.sdk import Headers, RequestHead, ResponseHead

ROUNDS = 20_000
REPEATS = 7

GET = (
    b"GET /api/v1/items?id=42 HTTP/1.1\r\nHost: backend.local:8080\r\n"
    b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
)
POST = (
    b"POST /api/v1/items HTTP/1.1\r\nHost: backend.local:8080\r\n"
    b"Content-Type: application/json\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024
)
BODY = b'{"id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.99, "stock": 1000}\n'
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


# The heads of benchmarks/exchange_bench.py (copied: that module needs the whole core).
XREQUEST = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
XRESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 100\r\nConnection: keep-alive\r\n\r\n" + b"x" * 100
)


def _server_get(impl: ModuleType) -> Callable[[], None]:
    codec = impl.H1ServerCodec()
    head = ResponseHead(status=200, headers=Headers([("content-type", "application/json")]))

    def one() -> None:
        codec.receive_data(GET)
        codec.send_response(head, end_stream=True, body=BODY)
        codec.data_to_send()

    return one


def _server_post(impl: ModuleType) -> Callable[[], None]:
    codec = impl.H1ServerCodec()
    head = ResponseHead(status=200)

    def one() -> None:
        codec.receive_data(POST)
        codec.send_response(head, end_stream=False)
        codec.send_data(BODY, end_stream=False)
        codec.send_data(BODY, end_stream=True)
        codec.data_to_send()

    return one


def _client_get(impl: ModuleType) -> Callable[[], None]:
    codec = impl.H1ClientCodec()
    fields = [("user-agent", "curl/8.5.0"), ("accept", "*/*")]
    head = RequestHead(
        method="GET",
        path="/api/v1/items?id=42",
        authority="backend.local:8080",
        headers=Headers(fields),
    )

    def one() -> None:
        codec.send_request(head, end_stream=True)
        codec.data_to_send()
        codec.receive_data(RESPONSE)

    return one


def _server_exchange(impl: ModuleType) -> Callable[[], None]:
    codec = impl.H1ServerCodec()
    fields = [("server", "nginx"), ("content-type", "text/plain"), ("content-length", "100")]
    head = ResponseHead(status=200, headers=Headers(fields))
    body = b"x" * 100

    def one() -> None:
        codec.receive_data(XREQUEST)
        codec.send_response(head, end_stream=True, body=body)
        codec.data_to_send()

    return one


def _client_exchange(impl: ModuleType) -> Callable[[], None]:
    codec = impl.H1ClientCodec()
    fields = [("user-agent", "wrk"), ("accept", "*/*")]
    head = RequestHead(
        method="GET", path="/bench", authority="127.0.0.1:8080", headers=Headers(fields)
    )

    def one() -> None:
        codec.send_request(head, end_stream=True)
        codec.data_to_send()
        codec.receive_data(XRESPONSE)

    return one


def _caller_heads() -> Callable[[], None]:
    fields = [("content-type", "application/json")]

    def one() -> None:
        ResponseHead(status=200, headers=Headers(fields))

    return one


def _bare_httptools() -> Callable[[], None]:
    class Sink:
        def on_url(self, url: bytes) -> None:
            pass

        def on_header(self, name: bytes, value: bytes) -> None:
            pass

    parser = httptools.HttpRequestParser(Sink())

    def one() -> None:
        parser.feed_data(GET)

    return one


def _measure(one: Callable[[], None], rounds: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.process_time()
        for _ in range(rounds):
            one()
        best = min(best, time.process_time() - t0)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=ROUNDS, help=f"({ROUNDS})")
    rounds = parser.parse_args().rounds
    print(f"HTTP/1.1 codec, µs per request (best of {REPEATS} x {rounds}, CPU time)")
    print(f"  {'bare httptools parse of the GET':<44} {_measure(_bare_httptools(), rounds):7.2f}")
    print(
        f"  {'caller: build a ResponseHead + Headers':<44} {_measure(_caller_heads(), rounds):7.2f}"
    )
    rows = [
        ("server: parse GET + frame response", _server_get),
        ("client: frame GET + parse response", _client_get),
        ("server: parse 1 KiB POST + chunked response", _server_post),
        ("server (exchange shapes)", _server_exchange),
        ("client (exchange shapes)", _client_exchange),
    ]
    print(f"  {'':<44} {'llhttp':>7} {'h11ref':>7} {'ratio':>6}")
    for name, make in rows:
        fast = _measure(make(http1), rounds)
        ref = _measure(make(h11ref), max(1, rounds // 10))
        print(f"  {name:<44} {fast:7.2f} {ref:7.2f} {ref / fast:5.1f}x")


if __name__ == "__main__":
    main()
