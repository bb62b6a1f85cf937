"""A filter written in C against the ABI alone, built with Debian's clang for wasm32
(``modules/c_headers``): in-process, and through a real sidecar."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.plugins.wasm import WasmSetup
from plait.sdk.testing import drive, make_request
from tests.support import Proc, http_get, start_mesh

from .conftest import instance

pytestmark = pytest.mark.anyio
C_DIR = Path(__file__).parent / "modules" / "c_headers"
C_MODULE = C_DIR / "filter.wasm"


async def test_c_filter_headers_config_and_local_reply(
    wasm_setup: Callable[..., WasmSetup], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="plait.wasm"):
        setup = wasm_setup(C_MODULE, pluginConfig="c-config")
    assert "c filter configured" in caplog.text
    ok = await drive(instance(setup), request_head=make_request(path="/ok"))
    assert ok.request_head.headers.get("x-plait-wasm") == "c"
    assert ok.response_head is not None
    assert ok.response_head.headers.get("x-plait-config") == "c-config"
    denied = await drive(instance(setup), request_head=make_request(path="/deny"))
    reply = denied.local_reply
    assert reply is not None and (reply.status, reply.body) == (403, b"denied\n")
    assert ("x-denied-by", "plait-c") in reply.headers
    assert reply.reason == "denied by the c filter"


@pytest.mark.e2e
def test_c_filter_in_a_sidecar(tmp_path: Path, procs: list[Proc]) -> None:
    filters = (
        f"[{{type: wasm, config: {{module: '{C_MODULE}', pluginConfig: from-yaml,"
        f" cacheDir: '{tmp_path}/cache'}}}}]"
    )
    port, _ = start_mesh(tmp_path, procs, filters=filters)
    status, headers, body = http_get(port, "/hello")
    assert status == 200
    assert json.loads(body)["headers"]["x-plait-wasm"] == "c"
    assert headers["x-plait-config"] == "from-yaml"
    status, headers, body = http_get(port, "/deny/x")
    assert (status, body, headers["x-denied-by"]) == (403, b"denied\n", "plait-c")
    assert headers["x-plait-reason"] == "denied by the c filter"


def test_committed_module_is_what_its_source_builds(tmp_path: Path) -> None:
    missing = [t for t in ("clang", "wasm-ld") if shutil.which(t) is None]
    assert not missing, f"{missing} not installed: scripts/setup.sh installs clang and lld"
    out = tmp_path / "filter.wasm"
    subprocess.run(["bash", str(C_DIR / "build.sh"), str(out)], check=True, timeout=120)
    assert out.read_bytes() == C_MODULE.read_bytes()
