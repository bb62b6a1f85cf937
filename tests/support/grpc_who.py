"""gRPC test processes: a backend that answers its name, and a proxyless xDS client.

    python grpc_who.py serve PORT NAME
    python grpc_who.py client TARGET      (reads "N [header=value]" lines on stdin,
                                           answers one JSON line of counts per line)
    python grpc_who.py flood TARGET N     (N callers, each calling in a loop until stdin
                                           closes, then one JSON line of counts)

The client is gRPC's own xDS client: run it with ``GRPC_XDS_BOOTSTRAP`` naming
a bootstrap file that points at plait's control plane and a target
``xds:///SERVICE``; gRPC then resolves, routes and balances by itself.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from concurrent import futures

import grpc

METHOD = "/test.Who/Name"


def serve(port: int, name: str) -> None:
    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        return name.encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Name": grpc.unary_unary_rpc_method_handler(who)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


def client(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            n = int(parts[0])
            metadata = tuple(tuple(p.split("=", 1)) for p in parts[1:])
            counts: Counter[str] = Counter()
            for _ in range(n):
                try:
                    reply = call(b"", timeout=5, metadata=metadata, wait_for_ready=True)
                    counts[reply.decode()] += 1
                except grpc.RpcError as exc:
                    counts[f"error {exc.code().name}"] += 1
            print(json.dumps(counts), flush=True)


def flood(target: str, callers: int) -> None:
    """Calls always in flight: ``callers`` threads call without ``wait_for_ready`` (a call
    fails at once when the client has no usable route or cluster for it)."""
    stop = threading.Event()
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        # one call that waits: the client has its config before the callers start
        counts[call(b"", timeout=10, wait_for_ready=True).decode()] += 1
        print("ready", flush=True)

        def caller() -> None:
            while not stop.is_set():
                try:
                    key = call(b"", timeout=5).decode()
                except grpc.RpcError as exc:
                    key = f"error {exc.code().name}: {exc.details()}"
                with lock:
                    counts[key] += 1

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        sys.stdin.read()
        stop.set()
        for t in threads:
            t.join()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "flood":
        flood(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2])
