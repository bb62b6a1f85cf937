"""A gRPC server with one method per behaviour a mesh must carry unchanged.

    python grpc_interop.py PORT

Methods of ``test.Interop`` (raw bytes, no protobuf):

* ``Unary``: echoes the request; echoes the ``x-*`` request metadata (text and
  ``-bin``) as initial and trailing metadata.
* ``ServerStream``: the request is a count N; N messages ``item-i``.
* ``ClientStream``: the concatenation of every request message.
* ``Bidi``: answers each message as it comes (``re:`` + message).
* ``Status``: the request is ``CODE:MESSAGE``; ends the call with that status.
* ``Slow``: sleeps the request's seconds, then answers; a call cancelled meanwhile
  (a deadline, the client's cancel) is written to the log as ``cancelled Slow``.
* ``Big``: the request is a size; answers that many bytes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent import futures

import grpc


def _echo_metadata(context: grpc.ServicerContext) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((k, v) for k, v in context.invocation_metadata() if k.startswith("x-"))


def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    md = _echo_metadata(context)
    context.send_initial_metadata(md)
    context.set_trailing_metadata(md)
    return request


def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(int(request)):
        yield b"item-%d" % i


def client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return b"".join(requests)


def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for message in requests:
        yield b"re:" + message


def status(request: bytes, context: grpc.ServicerContext) -> bytes:
    code, _, message = request.decode().partition(":")
    context.abort(grpc.StatusCode[code], message)
    raise AssertionError("abort returns no value")


def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
    deadline = time.monotonic() + float(request)
    while time.monotonic() < deadline:
        if not context.is_active():
            print("cancelled Slow", flush=True)
            return b""
        time.sleep(0.02)
    return b"slept"


def big(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"b" * int(request)


def main() -> None:
    handler = grpc.method_handlers_generic_handler("test.Interop", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Status": grpc.unary_unary_rpc_method_handler(status),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Big": grpc.unary_unary_rpc_method_handler(big),
    })  # fmt: skip
    server = grpc.server(futures.ThreadPoolExecutor(16))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
