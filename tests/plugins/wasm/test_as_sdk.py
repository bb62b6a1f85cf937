"""A filter built with a public Proxy-Wasm SDK, unmodified: the AssemblyScript SDK
(``@solo-io/proxy-runtime`` 0.1.8 from npm, ``modules/as_headers``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.plugins.wasm import WasmSetup
from plait.sdk import ConfigError
from plait.sdk.testing import drive, make_request

from .conftest import AS_MODULE, instance

pytestmark = pytest.mark.anyio
AS_DIR = AS_MODULE.parent.parent
# The SDK's onConfigure passes the configuration's size where the size out-pointer belongs,
# so with an empty configuration it reads a stale buffer and aborts (in any host): these
# tests give it a configuration, as its README does.


async def test_as_filter_adds_headers_and_reads_its_config(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    setup = wasm_setup(AS_MODULE, rootId="plait_headers", pluginConfig="as-config")
    assert setup.plugin.compiled.abi == "0.2.0"
    result = await drive(instance(setup), request_head=make_request(path="/ok"))
    assert result.upstream_called
    assert result.request_head.headers.get("x-plait-wasm") == "as"
    assert result.response_head is not None
    assert result.response_head.headers.get("x-plait-config") == "as-config"


async def test_as_filter_denies_a_path_with_a_local_reply(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    setup = wasm_setup(AS_MODULE, rootId="plait_headers", pluginConfig="deny-test")
    result = await drive(instance(setup), request_head=make_request(path="/deny/this"))
    reply = result.local_reply
    assert reply is not None and not result.upstream_called
    assert (reply.status, reply.body) == (403, b"denied\n")
    assert ("x-denied-by", "plait-as") in reply.headers


def test_as_filter_with_an_unknown_root_id_fails_to_start(
    wasm_setup: Callable[..., WasmSetup],
) -> None:
    # The SDK looks its root context up by the plugin_root_id property and aborts
    # (proc_exit) when none is registered under that name.
    with pytest.raises(ConfigError, match="failed to start"):
        wasm_setup(AS_MODULE, rootId="no_such_root", pluginConfig="x")


def test_committed_module_is_what_its_source_builds(tmp_path: Path) -> None:
    asc = AS_DIR / "node_modules" / ".bin" / "asc"
    assert asc.exists(), "the AssemblyScript SDK is missing: scripts/setup.sh installs it"
    out = tmp_path / "filter.wasm"
    subprocess.run(
        [str(AS_DIR / "node_modules" / ".bin" / "asc"), "assembly/index.ts", "-b", str(out),
         "--use", "abort=abort_proc_exit", "--optimize"],
        cwd=AS_DIR, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert out.read_bytes() == AS_MODULE.read_bytes()
