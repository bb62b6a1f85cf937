"""gRPC through the resilience layers: status-based retries, gRPC fault aborts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.e2e._resilience import sidecar
from tests.support import PY, Proc, free_port, start, wait_port

pytestmark = pytest.mark.e2e

SERVER = textwrap.dedent("""
    import itertools, sys
    from concurrent import futures
    import grpc

    calls = itertools.count(1)

    def unary(request, context):
        n = next(calls)
        if n % 2 == 0:  # every other call: UNAVAILABLE, trailers-only
            context.abort(grpc.StatusCode.UNAVAILABLE, "flaky")
        return b"ok:%d" % int(context.time_remaining() * 1000)

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(unary)})
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    server.start()
    server.wait_for_termination()
""")


def _grpc_upstream(tmp: Path, procs: list[Proc]) -> int:
    port = free_port()
    script = tmp / "grpc_flaky.py"
    script.write_text(SERVER)
    p = start([PY, str(script), str(port)], tmp / "grpc_flaky.log")
    procs.append(Proc(p, tmp / "grpc_flaky.log"))
    wait_port(port, proc=p)
    return port


def test_unavailable_is_retried_and_the_deadline_travels(tmp_path: Path, procs: list[Proc]) -> None:
    import grpc

    up = _grpc_upstream(tmp_path, procs)
    port = sidecar(
        tmp_path, procs, [up], protocol="grpc",
        rule="retry: {attempts: 2, backoff: 1ms}\ntimeouts: {request: 5s}",
        policy="retryConstraint: {budget: {percent: 100}}\noutlierDetection: {consecutive5xx: 0}",
    )  # fmt: skip
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        replies = [unary(b"x", timeout=10) for _ in range(20)]
    assert all(r.startswith(b"ok:") for r in replies)
    left_ms = int(replies[0].split(b":")[1])
    assert 0 < left_ms <= 5000  # grpc-timeout: the sidecar's 5 s, not the client's 10 s


def test_grpc_fault_abort(tmp_path: Path, procs: list[Proc]) -> None:
    import grpc

    up = _grpc_upstream(tmp_path, procs)
    fault = "[{type: fault, config: {abort: {grpcStatus: 8, percentage: 100}, header: x-chaos}}]"
    port = sidecar(tmp_path, procs, [up], protocol="grpc", filters=fault)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        with pytest.raises(grpc.RpcError) as err:
            unary(b"x", timeout=10, metadata=[("x-chaos", "1")])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.details() == "fault injected"
        assert unary(b"x", timeout=10).startswith(b"ok:")  # no header: no fault
