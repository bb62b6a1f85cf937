"""The config of a ``wasm`` filter: which module, its configuration, its limits.

::

    type: wasm
    config:
      module: /etc/plait/filters/auth.wasm    # or only sha256: (a module in the cache)
      sha256: 4f3c...                         # optional with module: checked when given
      rootId: my_root                         # the SDK's root context name (default "")
      pluginName: auth                        # default: the module file's stem
      vmId: ""                                # property plugin_vm_id
      pluginConfig: {any: json}               # a string is passed as is, else as JSON
      vmConfig: ""                            # proxy_on_vm_start's configuration
      env: {KEY: value}                       # the module's WASI environment
      failStrategy: FAIL_CLOSE                # or FAIL_OPEN
      callbackTimeoutMs: 100                  # CPU bound of one callback
      memoryLimitBytes: 67108864              # linear memory cap of the instance
      maxBufferBytes: 1048576                 # body a paused module may hold
      cacheDir: /var/cache/plait/wasm         # compiled modules (default: user cache)

Errors are :class:`~plait.sdk.ConfigError` with the field; the loader adds the
file and the filter's place in it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from plait.sdk import ConfigError

__all__ = ["FAIL_CLOSE", "FAIL_OPEN", "WasmConfig", "default_cache_dir", "parse_config"]

FAIL_CLOSE: Final = "FAIL_CLOSE"
FAIL_OPEN: Final = "FAIL_OPEN"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS: Final = (
    "module", "sha256", "rootId", "pluginName", "vmId", "pluginConfig", "vmConfig", "env",
    "failStrategy", "callbackTimeoutMs", "memoryLimitBytes", "maxBufferBytes", "cacheDir",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class WasmConfig:
    module: str | None
    """The module's path (text, as configured: also what ``/config_dump`` shows)."""
    sha256: str | None
    root_id: str
    plugin_name: str
    vm_id: str
    plugin_config: bytes
    vm_config: bytes
    env: tuple[tuple[str, str], ...]
    fail_open: bool
    callback_timeout: float
    memory_limit: int
    max_buffer: int
    cache_dir: str


def default_cache_dir() -> Path:
    """``$PLAIT_WASM_CACHE``, else ``$XDG_CACHE_HOME/plait/wasm`` (``~/.cache/plait/wasm``)."""
    if env := os.environ.get("PLAIT_WASM_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "plait" / "wasm"


def _show(value: object) -> str:
    return "a mapping" if isinstance(value, Mapping) else "null" if value is None else repr(value)


def _text(raw: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = raw.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"expected a string, got {_show(value)}", field=key)
    return value


def _int(raw: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"expected an integer {lo}..{hi}, got {_show(value)}", field=key)
    return value


def _blob(raw: Mapping[str, Any], key: str) -> bytes:
    value = raw.get(key, "")
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expected a string or JSON-compatible data ({exc})", field=key) from None


def parse_config(raw: Mapping[str, Any]) -> WasmConfig:
    """Check the fields (the module itself is loaded by the plugin, ``_plugin.py``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping with a module, got {_show(raw)}")
    unknown = [str(k) for k in raw if k not in _FIELDS]
    if unknown:
        raise ConfigError(f"unknown field (expected one of {', '.join(_FIELDS)})", field=unknown[0])
    module = _text(raw, "module", None)
    sha256 = _text(raw, "sha256", None)
    if sha256 is not None and not _SHA256.match(sha256):
        raise ConfigError(f"expected 64 lower-case hex digits, got {sha256!r}", field="sha256")
    if not module and sha256 is None:
        raise ConfigError(
            "expected a module path (module) or a module hash (sha256)", field="module"
        )
    env = raw.get("env") or {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and "=" not in k for k, v in env.items()
    ):
        raise ConfigError("expected a mapping of variable names to strings", field="env")
    fail = _text(raw, "failStrategy", FAIL_CLOSE)
    if fail not in (FAIL_CLOSE, FAIL_OPEN):
        raise ConfigError(f"expected FAIL_CLOSE or FAIL_OPEN, got {fail!r}", field="failStrategy")
    cache = _text(raw, "cacheDir", None)
    return WasmConfig(
        module=module or None,
        sha256=sha256,
        root_id=_text(raw, "rootId", "") or "",
        plugin_name=_text(raw, "pluginName", None)
        or (Path(module).stem if module else sha256 or ""),
        vm_id=_text(raw, "vmId", "") or "",
        plugin_config=_blob(raw, "pluginConfig"),
        vm_config=_blob(raw, "vmConfig"),
        env=tuple(sorted(env.items())),
        fail_open=fail == FAIL_OPEN,
        callback_timeout=_int(raw, "callbackTimeoutMs", 100, 1, 60_000) / 1000,
        memory_limit=_int(raw, "memoryLimitBytes", 64 << 20, 64 << 10, 4 << 30),
        max_buffer=_int(raw, "maxBufferBytes", 1 << 20, 1, 1 << 30),
        cache_dir=cache or str(default_cache_dir()),
    )
