"""The access-log writer: one JSON line per request, batched, nothing lost to encoding."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from plait.core.access_log import AccessLog
from plait.sdk import ConnectionContext, Headers, RequestHead, ResponseHead, StreamContext


def _ctx(path: str, request_id: str, status: int = 200) -> StreamContext:
    conn = ConnectionContext(peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 1))
    headers = Headers()
    headers.set("x-request-id", request_id)
    head = RequestHead(method="GET", path=path, authority="web", headers=headers)
    ctx = StreamContext(connection=conn, request=head)
    ctx.response = ResponseHead(status=status)
    return ctx


LRT: Any = SimpleNamespace(
    name="out",
    inbound=False,
    runtime=SimpleNamespace(identity=SimpleNamespace(leaf=None)),
    upstream_identity=lambda ctx: None,
)
EX: Any = SimpleNamespace(received=lambda: 3, bytes_out=1024, attempts=2)

pytestmark = pytest.mark.anyio


async def test_each_request_is_one_json_line_whatever_its_text(tmp_path: Path) -> None:
    out = tmp_path / "access.log"
    log = AccessLog(str(out))
    log.log(_ctx("/plain", "r1"), LRT, 0.0012, EX)
    log.log(_ctx("/caf\u00e9/\u2713", "r2"), LRT, 0.001, EX)  # non-ASCII, kept as text
    # a path a filter set to a string that is not valid UTF-8: still logged
    log.log(_ctx("/odd-\udcff", "r3"), LRT, 0.001, EX)
    assert not out.read_bytes()  # batched: nothing written before the flush
    log.close()
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [x["path"] for x in lines] == ["/plain", "/caf\u00e9/\u2713", "/odd-\udcff"]
    assert [x["request_id"] for x in lines] == ["r1", "r2", "r3"]
    first = lines[0]
    assert (first["status"], first["duration_ms"], first["retries"]) == (200, 1.2, 1)
    assert (first["bytes_received"], first["bytes_sent"]) == (3, 1024)
