"""gRPC through two sidecars in a row (client → outbound → inbound → server) behaves as
a direct call: every call kind, metadata, status codes and messages, deadlines,
cancellation, a large message; with the server gone the client sees UNAVAILABLE.

Each scenario runs once directly and once through the mesh, with grpcio on both ends
(``tests/support/grpc_interop.py`` is the server), and the two results must be equal.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import (
    HERE,
    PY,
    Proc,
    free_port,
    simple_config,
    start,
    start_sidecar,
    wait_port,
    write_config,
)

pytestmark = pytest.mark.e2e

SERVICE = "/test.Interop/"
CODES = ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
         "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
         "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")  # fmt: skip


def _x(md: Any) -> list[tuple[str, Any]]:
    return sorted((k, v) for k, v in (md or ()) if k.startswith("x-"))


def _bidi(channel: grpc.Channel, n: int) -> list[bytes]:
    """Ping-pong: each message is sent only after the answer to the previous one came,
    so a proxy that waits for the end of the request stream would stall the call."""
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[bytes]:
        while (m := outbox.get(timeout=10)) is not None:
            yield m

    call = channel.stream_stream(SERVICE + "Bidi")(requests(), timeout=20)
    answers = []
    for i in range(n):
        outbox.put(b"%d" % i)
        answers.append(next(call))
    outbox.put(None)
    assert list(call) == []
    return answers


def _scenarios(target: str, server_log: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with grpc.insecure_channel(target) as ch:
        md = (("x-text", "plain value"), ("x-data-bin", b"\x00\x01\xffbinary"))
        resp, call = ch.unary_unary(SERVICE + "Unary").with_call(b"hello", metadata=md,
                                                                  timeout=10)  # fmt: skip
        out["unary"] = (resp, _x(call.initial_metadata()), _x(call.trailing_metadata()),
                        call.code())  # fmt: skip
        out["server_stream"] = list(ch.unary_stream(SERVICE + "ServerStream")(b"200", timeout=10))
        parts = iter([b"part-%d;" % i for i in range(50)])
        out["client_stream"] = ch.stream_unary(SERVICE + "ClientStream")(parts, timeout=10)
        out["bidi"] = _bidi(ch, 25)
        statuses = []
        for code in CODES:
            try:
                ch.unary_unary(SERVICE + "Status")(f"{code}:why {code} é % ✓".encode(),
                                                    timeout=10)  # fmt: skip
            except grpc.RpcError as err:
                statuses.append((err.code().name, err.details()))
        out["status"] = statuses
        out["big"] = len(ch.unary_unary(SERVICE + "Big")(b"3000000", timeout=20))

        before = server_log.read_text().count("cancelled Slow")
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as deadline:
            ch.unary_unary(SERVICE + "Slow")(b"5", timeout=0.5)
        out["deadline"] = (deadline.value.code(), time.monotonic() - started < 3)

        future = ch.unary_unary(SERVICE + "Slow").future(b"5", timeout=20)
        time.sleep(0.3)
        future.cancel()
        out["cancel"] = future.cancelled()
        # both calls were cancelled at the server too: the mesh carried the RST_STREAM
        wait_until = time.monotonic() + 5
        while (server_log.read_text().count("cancelled Slow") - before < 2
               and time.monotonic() < wait_until):  # fmt: skip
            time.sleep(0.05)
        out["server_saw_cancels"] = server_log.read_text().count("cancelled Slow") - before
    return out


def test_grpc_through_two_sidecars_behaves_as_direct(tmp_path: Path, procs: list[Proc]) -> None:
    up = free_port()
    log = tmp_path / "interop.log"
    server = Proc(start([PY, str(HERE / "grpc_interop.py"), str(up)], log), log)
    procs.append(server)
    wait_port(up, proc=server.popen)
    inbound, in_admin = free_port(), free_port()
    (tmp_path / "in").mkdir()
    cfg = write_config(tmp_path / "in", simple_config(up, inbound, in_admin, protocol="grpc"))
    procs.append(start_sidecar(cfg, in_admin))
    outbound, out_admin = free_port(), free_port()
    (tmp_path / "out").mkdir()
    cfg = write_config(tmp_path / "out",
                       simple_config(inbound, outbound, out_admin, protocol="grpc"))  # fmt: skip
    procs.append(start_sidecar(cfg, out_admin))

    direct = _scenarios(f"127.0.0.1:{up}", log)
    mesh = _scenarios(f"127.0.0.1:{outbound}", log)
    assert direct["unary"][0] == b"hello" and direct["status"][0][0] == "INVALID_ARGUMENT"
    assert direct["deadline"] == (grpc.StatusCode.DEADLINE_EXCEEDED, True)
    assert direct["server_saw_cancels"] == 2
    for key in direct:
        assert mesh[key] == direct[key], key

    server.stop()  # the server is gone: the mesh answers as gRPC, UNAVAILABLE
    with (
        grpc.insecure_channel(f"127.0.0.1:{outbound}") as ch,
        pytest.raises(grpc.RpcError) as gone,
    ):
        ch.unary_unary(SERVICE + "Unary")(b"x", timeout=10)
    assert gone.value.code() is grpc.StatusCode.UNAVAILABLE
    assert gone.value.details()  # the mesh's reason, not an empty UNKNOWN
