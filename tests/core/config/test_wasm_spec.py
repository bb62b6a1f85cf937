"""``Filter.spec.wasm``: parsed, attached by selector, and translated to a ``wasm`` chain entry
(with the file's path in static mode; by hash only for the control plane)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from plait.core.config import load_config, load_documents, translate
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError

from .test_attach import SIDECAR

C_MODULE = Path(__file__).parents[2] / "plugins" / "wasm" / "modules" / "c_headers" / "filter.wasm"
SHA = hashlib.sha256(C_MODULE.read_bytes()).hexdigest()


def wasm(url: str = "filters/c.wasm", sha: str = SHA, extra: str = "", wasm_extra: str = "") -> str:
    return f"""---
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {{name: auth, namespace: shop}}
spec:
  wasm: {{url: "{url}", sha256: {sha}, pluginConfig: {{mode: strict}}{wasm_extra}}}
  selector: {{matchLabels: {{app: web}}}}
  phase: AUTHN
{extra}"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "filters").mkdir(exist_ok=True)
    shutil.copy(C_MODULE, tmp_path / "filters" / "c.wasm")
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return path


def test_static_mode_loads_the_file_relative_to_the_yaml_and_attaches_it(
    tmp_path: Path, types: FilterTypes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_WASM_CACHE", str(tmp_path / "cache"))
    cfg = load_config([_write(tmp_path, SIDECAR + wasm())], types, sidecar="web.shop")
    lis = next(x for x in cfg.listeners if x.name == "in")
    first = lis.filters[0]
    assert (first.name, first.type) == ("auth", "wasm")
    assert first.raw_config["module"] == str(tmp_path / "filters" / "c.wasm")
    assert first.raw_config["pluginName"] == "auth"
    assert first.raw_config["failStrategy"] == "FAIL_CLOSE"
    assert first.config.sha256 == SHA  # the module was loaded and checked


def test_the_control_plane_names_the_module_by_hash_only(
    tmp_path: Path, types: FilterTypes
) -> None:
    text = SIDECAR + wasm(extra="  failStrategy: FailOpen\n")
    res = load_documents([_write(tmp_path, text)])
    cp_types = {k: v for k, v in types.items() if k != "wasm"}  # as unknown as on the cp
    cfg = translate(res, cp_types, sidecar="web.shop", unknown_filters=True)
    entry = next(x for x in cfg.listeners if x.name == "in").filters[0]
    assert "module" not in entry.raw_config and entry.raw_config["sha256"] == SHA
    assert entry.raw_config["failStrategy"] == "FAIL_OPEN"
    assert entry.raw_config["pluginConfig"] == {"mode": "strict"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (wasm(sha="abc"), "Filter/auth: spec.wasm.sha256: expected 64 lower-case hex digits"),
        (wasm(url="ftp://x/a.wasm"), "spec.wasm.url: expected an https:// URL or a file path"),
        (wasm(url="https://example.test/a.wasm"), "spec.wasm.url: an https URL is fetched"),
        (wasm(wasm_extra=", module: /x.wasm"), "spec.wasm.module: unknown field"),
        (wasm(extra="  config: {a: 1}\n"), "spec.config: a wasm Filter's configuration is"),
        (wasm(extra="  python: {type: x}\n"), "spec.python: a Filter is either python or wasm"),
        (wasm(sha="b" * 64), "spec.wasm.url: /"),  # the file's bytes have another hash
        (wasm(url="filters/none.wasm"), "spec.wasm.url: cannot read"),
        (wasm(wasm_extra=", callbackTimeoutMs: 0"), "callbackTimeoutMs: expected an integer"),
    ],
)
def test_errors_name_the_file_the_field_and_what_was_expected(
    tmp_path: Path, types: FilterTypes, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config([_write(tmp_path, SIDECAR + text)], types, sidecar="web.shop")
    assert message in str(err.value) and "mesh.yaml" in str(err.value), str(err.value)
