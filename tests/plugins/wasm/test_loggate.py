"""``proxy_log`` through the log gate (``_loggate.py``): what reaches plait's log is what
the filter's logger lets through, also when its level changes while the filter serves."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.plugins.wasm import WasmSetup
from plait.sdk.testing import drive, make_request

from .conftest import instance
from .wat import build, module_text

pytestmark = pytest.mark.anyio

# proxy_on_request_headers logs "L0".."L5" at the ABI levels trace..critical, and "L7" at
# level 7 (outside the ABI: the host logs it as critical)
LOGGING = """
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 1024) "L0L1L2L3L4L5L7")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (loop $each
      (drop (call $proxy_log (local.get $i)
        (i32.add (i32.const 1024) (i32.shl (local.get $i) (i32.const 1))) (i32.const 2)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (i32.const 6))))
    (drop (call $proxy_log (i32.const 7) (i32.const 1036) (i32.const 2)))
    (i32.const 0))
"""


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "plait.wasm.logging"]


async def test_messages_follow_the_logger_level(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    setup = wasm_setup(build("logging", tmp_path, module_text(LOGGING)))
    logger = logging.getLogger("plait.wasm.logging")
    for level, expected in (
        (logging.INFO, ["L2", "L3", "L4", "L5", "L7"]),
        (logging.DEBUG, ["L1", "L2", "L3", "L4", "L5", "L7"]),
        (5, ["L0", "L1", "L2", "L3", "L4", "L5", "L7"]),
        (logging.CRITICAL, ["L5", "L7"]),
    ):
        caplog.clear()
        with caplog.at_level(level, logger="plait.wasm.logging"):
            assert logger.getEffectiveLevel() == level
            result = await drive(instance(setup), request_head=make_request(path="/"))
        assert result.local_reply is None
        assert _logged(caplog) == expected, logging.getLevelName(level)
