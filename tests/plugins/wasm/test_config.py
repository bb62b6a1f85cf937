"""The ``wasm`` filter's config: plugin configuration, properties, refusals and errors."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.core.config import dump_config, load_config
from plait.plugins import load_filter_types
from plait.plugins.wasm import WASM, WasmSetup
from plait.sdk import ConfigError
from plait.sdk.testing import drive, make_request
from tests.support import simple_config, write_config

from .conftest import instance
from .wat import build, module_text

pytestmark = pytest.mark.anyio


def test_registered_through_the_filter_entry_point() -> None:
    assert load_filter_types()["wasm"] is WASM


def test_registration_alone_does_not_load_wasmtime() -> None:
    script = (
        "import sys\n"
        "from plait.plugins import load_filter_types\n"
        "assert 'wasm' in load_filter_types()\n"
        "print('wasmtime' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr


async def test_plugin_config_and_properties_reach_the_module(
    wasm_setup: Callable[..., WasmSetup], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="plait.wasm"):
        setup = wasm_setup(
            "config", pluginConfig={"mode": "strict"}, rootId="my_root", pluginName="cfg"
        )
    assert "configured" in caplog.text  # proxy_log reached plait's log
    result = await drive(instance(setup), request_head=make_request(path="/p?x=1"))
    headers = result.request_head.headers
    assert headers.get("x-root-id") == "my_root"
    assert headers.get("x-plugin-name") == "cfg"
    assert headers.get("x-prop-path") == "/p?x=1"
    assert headers.get("x-prop-source") == "127.0.0.1:40000"
    assert result.response_head is not None
    assert result.response_head.headers.get("x-plugin-config") == '{"mode":"strict"}'


def test_configuration_refused_by_the_module(wasm_setup: Callable[..., WasmSetup]) -> None:
    with pytest.raises(ConfigError) as err:
        wasm_setup("config", pluginConfig="reject")
    assert err.value.field == "pluginConfig"
    assert "proxy_on_configure returned false" in str(err.value)


def test_module_without_the_abi_marker(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path
) -> None:
    path = build("nomarker", tmp_path, module_text(""))
    with pytest.raises(ConfigError) as err:
        wasm_setup(path)
    assert err.value.field == "module"
    assert "not a Proxy-Wasm module" in str(err.value) and str(path) in str(err.value)


def test_module_importing_something_the_host_lacks(
    wasm_setup: Callable[..., WasmSetup], tmp_path: Path
) -> None:
    text = (
        '(module (import "env" "envoy_special" (func)) (func (export "proxy_abi_version_0_2_1")))'
    )
    with pytest.raises(ConfigError, match=r"import env\.envoy_special: not a Proxy-Wasm host"):
        wasm_setup(build("odd", tmp_path, text))


def test_wrong_import_type_is_named(wasm_setup: Callable[..., WasmSetup], tmp_path: Path) -> None:
    text = (
        '(module (import "env" "proxy_log" (func (param i32) (result i32)))'
        ' (func (export "proxy_abi_version_0_2_1")))'
    )
    with pytest.raises(ConfigError, match=r"import env\.proxy_log: the ABI's type is"):
        wasm_setup(build("badtype", tmp_path, text))


def test_sha256_is_checked_and_can_name_a_cached_module(
    wasm_setup: Callable[..., WasmSetup], wat_dir: Path
) -> None:
    digest = hashlib.sha256((wat_dir / "headers.wasm").read_bytes()).hexdigest()
    with pytest.raises(ConfigError) as err:
        wasm_setup("headers", sha256="0" * 64)
    assert err.value.field == "module" and f"has sha256 {digest}" in str(err.value)
    setup = wasm_setup("headers", sha256=digest)  # also fills the cache
    cache = Path(setup.config.cache_dir)
    assert (cache / f"{digest}.wasm").is_file()
    assert any(p.suffix == ".cwasm" for p in cache.iterdir())
    assert WASM.parse_config is not None
    by_hash = WASM.parse_config({"sha256": digest, "cacheDir": str(cache), "vmId": "h"})
    assert by_hash.plugin.compiled.sha256 == digest


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({}, "module", "expected a module path"),
        ({"module": "/x.wasm", "failStrategy": "FAIL_SOMETIMES"}, "failStrategy", "FAIL_CLOSE"),
        ({"module": "/x.wasm", "callbackTimeoutMs": 0}, "callbackTimeoutMs", "1..60000"),
        ({"module": "/x.wasm", "sha256": "abc"}, "sha256", "64 lower-case hex"),
        ({"module": "/x.wasm", "modul": "y"}, "modul", "unknown field"),
        ({"module": "/no/such/file.wasm"}, "module", "cannot read /no/such/file.wasm"),
        ({"module": "/x.wasm", "env": {"A": 1}}, "env", "variable names to strings"),
    ],
)
def test_config_errors_name_the_field(raw: dict[str, object], field: str, expected: str) -> None:
    assert WASM.parse_config is not None
    with pytest.raises(ConfigError) as err:
        WASM.parse_config(raw)
    assert err.value.field == field
    assert expected in str(err.value)


async def test_wasi_functions_sdk_runtimes_use(
    wasm_setup: Callable[..., WasmSetup], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="plait.wasm"):
        setup = wasm_setup("wasi", env={"GREETING": "hi"})
    assert "hello from wasi" in caplog.text  # fd_write(1) from _initialize
    result = await drive(instance(setup), request_head=make_request())
    assert result.request_head.headers.get("x-env") == "GREETING=hi"
    assert result.request_head.headers.get("x-wasi") == "ok"


def test_a_process_with_a_loaded_module_exits_cleanly(wat_dir: Path, tmp_path: Path) -> None:
    # Stores and linkers deleted while the interpreter exits call back into Python: the
    # callbacks must outlive the module that made them (this exited with SIGSEGV).
    script = (
        "from plait.plugins.wasm import WASM\n"
        f"s = WASM.parse_config({{'module': {str(wat_dir / 'headers.wasm')!r},"
        f" 'cacheDir': {str(tmp_path)!r}}})\n"
        "print(s.plugin.compiled.abi)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0.2.1"), done.stderr


def test_error_in_a_config_file_names_the_file_and_field(tmp_path: Path) -> None:
    missing = tmp_path / "gone.wasm"
    filters = f"[{{type: wasm, config: {{module: '{missing}'}}}}]"
    path = write_config(tmp_path, simple_config(1, 2, 3, filters=filters))
    with pytest.raises(ConfigError) as err:
        load_config([path], load_filter_types())
    text = str(err.value)
    assert str(path) in text
    assert "config.module" in text and f"cannot read {missing}" in text


def _load_in_a_new_process(module: Path, cache: Path, prelude: str = "") -> str:
    script = (
        prelude + "from plait.plugins.wasm import WASM\n"
        f"s = WASM.parse_config({{'module': {str(module)!r}, 'cacheDir': {str(cache)!r}}})\n"
        "print(s.plugin.compiled.abi)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_new_process_uses_the_compiled_cache(wat_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _load_in_a_new_process(wat_dir / "headers.wasm", cache)  # compiles, fills the cache
    no_compiler = (
        "import wasmtime\n"
        "def refuse(*a, **k): raise AssertionError('compiled again')\n"
        "wasmtime.Module.__init__ = refuse\n"
    )
    _load_in_a_new_process(wat_dir / "headers.wasm", cache, no_compiler)


def test_an_unusable_cache_entry_is_compiled_again(wat_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _load_in_a_new_process(wat_dir / "headers.wasm", cache)
    digest = hashlib.sha256((wat_dir / "headers.wasm").read_bytes()).hexdigest()
    (artifact,) = cache.glob(f"{digest}-*.cwasm")  # (the host's log gate is cached too)
    artifact.write_bytes(b"not a compiled module")
    log = _load_in_a_new_process(wat_dir / "headers.wasm", cache)
    assert "unusable" in log and "compiling again" in log


def test_config_dump_shows_the_module_and_its_hash(wat_dir: Path, tmp_path: Path) -> None:
    module = wat_dir / "headers.wasm"
    filters = f"[{{type: wasm, config: {{module: '{module}', cacheDir: '{tmp_path}'}}}}]"
    path = write_config(tmp_path, simple_config(1, 2, 3, filters=filters))
    dumped = dump_config(load_config([path], load_filter_types()))["listeners"][0]["filters"][0]
    json.dumps(dumped)  # plain JSON
    assert dumped["config"]["config"]["module"] == str(module)
    assert dumped["config"]["sha256"] == hashlib.sha256(module.read_bytes()).hexdigest()
    assert "plugin" not in dumped["config"] and "cls" not in dumped["config"]
