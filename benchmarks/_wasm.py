"""The wasm filter the benchmarks run: a WAT module that adds one request header.

``proxy_on_request_headers`` calls ``proxy_add_header_map_value`` once (``x-wasm-added:
yes``) and returns Continue; besides it the module exports only its memory, the ABI
marker and ``proxy_on_context_create``: the smallest header-adding Proxy-Wasm filter,
so its figure is the host's own cost per stream (one context, one callback, one host
call). Assembled with ``wasmtime.wat2wasm`` where it is used.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WAT_ADD_HEADER", "add_header_chain"]

WAT_ADD_HEADER = """
(module
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "x-wasm-added")
  (data (i32.const 1088) "yes")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 12) (i32.const 1088) (i32.const 3)))
    (i32.const 0)))
"""


def add_header_chain(workdir: Path) -> str:
    """A filter chain (YAML flow list) of the header-adding module, built into ``workdir``
    (its compiled-module cache too)."""
    import wasmtime

    module = workdir / "add_header.wasm"
    module.write_bytes(wasmtime.wat2wasm(WAT_ADD_HEADER))
    cache = workdir / "wasm-cache"
    return f"[{{type: wasm, config: {{module: '{module}', cacheDir: '{cache}'}}}}]"
