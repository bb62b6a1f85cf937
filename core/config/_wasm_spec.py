"""``Filter.spec.wasm``: a Proxy-Wasm module the control plane delivers (after Istio's WasmPlugin).

::

    spec:
      wasm:
        url: https://filters.example.com/auth-1.2.wasm   # or a file path
        sha256: 4f3c...                                   # 64 hex digits, required
        pluginConfig: {mode: strict}                      # → proxy_on_configure
        vmConfig: ""                                      # → proxy_on_vm_start
        rootId: auth_root
      failStrategy: FailClosed                            # or FailOpen
      selector: {matchLabels: {app: web}}

The Filter becomes a chain entry of the ``wasm`` filter type (the same entry a
listener's ``{type: wasm, config: ...}`` makes), whose config is the fields of
``spec.wasm`` other than ``url``, with ``pluginName`` defaulting to the Filter's
name and ``failStrategy`` following the Filter's (``FAIL_OPEN`` for ``FailOpen``).

Where the module comes from depends on who translates the config:

* a sidecar with a config file (static mode) reads a file ``url`` itself (relative
  to the YAML file's directory); an https ``url`` needs the control plane;
* the control plane (``translate(..., unknown_filters=True)``, :func:`module_config`
  with ``by_hash``) leaves the location out: the entry names the module by ``sha256``
  only, and each sidecar fetches it from the control plane's module endpoint into its
  content-addressed cache (docs/wasm.md, "Delivery by the control plane").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from plait.sdk import ConfigError, FailStrategy

from ._fields import Fields
from ._resources import FilterUse, Meta, ModuleRef, parse_fail_strategy

__all__ = ["WASM_TYPE", "module_config", "module_error", "parse_wasm_filter"]

WASM_TYPE: Final = "wasm"
"""The registry type a ``spec.wasm`` Filter translates to (``plugins/wasm``)."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PASSED: Final = (
    "pluginConfig", "vmConfig", "rootId", "vmId", "pluginName", "env",
    "callbackTimeoutMs", "memoryLimitBytes", "maxBufferBytes",
)  # fmt: skip
"""``spec.wasm`` fields handed to the ``wasm`` filter type's config as they are."""


def parse_wasm_filter(meta: Meta, spec: Fields, wasm: Fields) -> FilterUse:
    """The chain entry of a ``Filter`` with ``spec.wasm`` (``spec.python`` must be absent)."""
    if spec.has("python"):
        raise spec.at("python").error("a Filter is either python or wasm, not both")
    if spec.has("config"):
        raise spec.at("config").error(
            "a wasm Filter's configuration is spec.wasm.pluginConfig (and vmConfig)"
        )
    url = wasm.text("url", what="an https:// URL or a file path of the .wasm module")
    if "://" in url and not url.startswith("https://"):
        raise wasm.at("url").expected("an https:// URL or a file path", url)
    sha = wasm.text(
        "sha256", pattern=_SHA256, what="64 lower-case hex digits (the module's sha256)"
    )
    config: dict[str, Any] = {"sha256": sha, "pluginName": meta.name}
    for key in _PASSED:
        if wasm.has(key):
            config[key] = json.loads(json.dumps(wasm.raw_value(key), default=str))
    fail = spec.convert("failStrategy", parse_fail_strategy, FailStrategy.FAIL_CLOSED)
    config["failStrategy"] = "FAIL_OPEN" if fail is FailStrategy.FAIL_OPEN else "FAIL_CLOSE"
    wasm.done()
    return FilterUse(
        loc=wasm.loc,
        type=WASM_TYPE,
        name=meta.name,
        config=config,
        config_loc=wasm.loc,
        fail_strategy=fail,
        module=ModuleRef(url=url, sha256=sha, loc=wasm.loc),
    )


def module_config(use: FilterUse, *, by_hash: bool) -> object:
    """The ``wasm`` config of ``use``: with the module's file path unless ``by_hash``."""
    ref = use.module
    if ref is None or by_hash:
        return use.config
    if ref.url.startswith("https://"):
        raise ref.loc.key("url").error(
            "an https URL is fetched and served by the control plane; a sidecar with a "
            "config file takes a file path"
        )
    path = Path(ref.url)
    if not path.is_absolute() and ref.loc.file and not ref.loc.file.startswith("<"):
        path = Path(ref.loc.file).parent / path
    assert isinstance(use.config, dict)
    return {**use.config, "module": str(path)}


def module_error(use: FilterUse, err: ConfigError) -> ConfigError:
    """``err`` of the ``wasm`` type's config, about the ``module`` the translator added, as
    the error of ``spec.wasm.url`` the operator wrote (other errors unchanged)."""
    if use.module is None or not err.field.endswith(".module"):
        return err
    return ConfigError(err.message, file=err.file, field=err.field.removesuffix("module") + "url")
