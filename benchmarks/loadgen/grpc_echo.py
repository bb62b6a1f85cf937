"""The gRPC upstream of ``benchmarks/grpc_unary.py``: grpcio's server (C core) answering
``/bench.Echo/Unary`` with the request message, bytes in and out (no protobuf).

    python benchmarks/loadgen/grpc_echo.py PORT
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import grpc


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def main() -> None:
    port = int(sys.argv[1])
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
