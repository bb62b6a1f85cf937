"""The SDK's examples (sdk/examples/): each passes the conformance check and does what its
docstring says when driven with ``plait.sdk.testing``; then all of them run in one real
sidecar's chain, loaded with ``--plugin`` as their README says."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from plait.plugins import load_filter_types
from plait.sdk import ConfigError, Headers, ResponseHead
from plait.sdk.testing import DriveResult, check_filter, drive, make_request
from tests.support import Proc, free_port, http_get, simple_config, start_echo, start_sidecar
from tests.support.mtls import metric

EXAMPLES = Path(__file__).resolve().parents[2] / "sdk" / "examples"
MODULES = ("request_id", "api_key", "redact_body", "count_tries")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sdk_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up while it runs)
    spec.loader.exec_module(module)
    return module


def _run(instance: object, **kw: Any) -> DriveResult:
    async def go() -> DriveResult:
        return await drive(instance, **kw)

    return anyio.run(go)


def test_every_example_module_is_listed_in_the_readme() -> None:
    on_disk = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    assert on_disk == sorted(MODULES)
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{m}.py`" in readme for m in MODULES)


CONFIGS: dict[str, Any] = {
    "example-request-id": None,
    "example-api-key": {"keys": ["k-1"]},
    "example-redact": {"words": ["secret"]},
    "example-count-tries": None,
}


@pytest.mark.parametrize("module", MODULES)
def test_each_example_passes_the_conformance_check(module: str) -> None:
    types = load_filter_types(_load(module), entry_points=False)
    (name,) = [n for n in CONFIGS if n in types]
    check_filter(types[name], CONFIGS[name])


def test_request_id_keeps_the_callers_id_and_echoes_it() -> None:
    mod = _load("request_id")
    res = _run(mod.RequestId(), request_head=make_request(headers=[("x-request-id", "abc")]))
    assert res.request_head.headers.get("x-request-id") == "abc"
    assert res.response_head is not None and res.response_head.headers.get("x-request-id") == "abc"
    fresh = _run(mod.RequestId())
    made = fresh.request_head.headers.get("x-request-id")
    assert made and len(made) == 32
    assert fresh.response_head is not None
    assert fresh.response_head.headers.get("x-request-id") == made


def test_api_key_refuses_without_a_key_and_names_bad_config_fields() -> None:
    mod = _load("api_key")
    f = mod.ApiKey(mod.parse({"keys": ["k-1"]}))
    assert _run(f, request_head=make_request(headers=[("x-api-key", "k-1")])).status == 200
    refused = _run(f, request_head=make_request(headers=[("x-api-key", "k-2")]))
    assert refused.status == 401 and not refused.upstream_called
    for bad, field in (({"keys": []}, "keys"), ({"keys": ["a"], "header": 3}, "header")):
        with pytest.raises(ConfigError) as err:
            mod.parse(bad)
        assert err.value.field == field


def test_redact_rewrites_text_bodies_whole_and_leaves_others() -> None:
    mod = _load("redact_body")
    cfg = mod.parse({"words": ["secret"]})
    text = ResponseHead(status=200, headers=Headers([("content-type", "text/plain")]))
    res = _run(mod.Redact(cfg), response_head=text, response_body=[b"a sec", b"ret b"])
    assert res.response_body == b"a ****** b"  # the word spanned two chunks
    binary = ResponseHead(status=200, headers=Headers([("content-type", "image/png")]))
    res = _run(mod.Redact(cfg), response_head=binary, response_body=[b"secret"])
    assert res.response_body == b"secret"


@pytest.mark.e2e
def test_the_examples_run_together_in_a_sidecar(tmp_path: Path, procs: list[Proc]) -> None:
    echo = start_echo(tmp_path)
    procs.append(echo)
    port, admin = free_port(), free_port()
    chain = (
        "[{type: example-request-id}, {type: example-api-key, config: {keys: [k-1]}},"
        " {type: example-redact, config: {words: [secret]}}, {type: example-count-tries}]"
    )
    cfg = tmp_path / "plait.yaml"
    cfg.write_text(simple_config(echo.port, port, admin, filters=chain))
    plugins = [a for m in MODULES for a in ("--plugin", m)]
    pythonpath = ":".join([str(EXAMPLES), *[p for p in sys.path if p]])
    sidecar = start_sidecar(cfg, admin, *plugins, env={"PYTHONPATH": pythonpath})
    procs.append(sidecar)

    status, headers, _ = http_get(port, "/")
    assert status == 401 and headers["x-plait-reason"] == "api key refused"

    status, headers, body = http_get(port, "/my-secret", headers={"x-api-key": "k-1"})
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/my-******"
    assert seen["headers"]["x-request-id"] == headers["x-request-id"]
    assert int(headers["content-length"]) == len(body)
    assert metric(admin, "example_upstream_tries_total", result="2xx") == 1
