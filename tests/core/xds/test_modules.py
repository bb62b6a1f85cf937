"""A sidecar fetches the wasm modules a pushed config names by hash, before it decodes it:
from the control plane's module endpoint (real HTTPS), checked, into its cache, once."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from plait.controlplane._modules import config_only
from plait.controlplane.xds._encode import encode_mesh
from plait.core.config import AdminConfig, load_documents, translate
from plait.core.xds._decode import decode_mesh
from plait.core.xds._modules import ModuleFetcher, may_name_modules
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError
from tests.plugins.wasm.wat import module_text
from tests.support.pki import Authority

from ..config.test_attach import SIDECAR

pytestmark = pytest.mark.anyio

C_MODULE = Path(__file__).parents[2] / "plugins" / "wasm" / "modules" / "c_headers" / "filter.wasm"
DATA = C_MODULE.read_bytes()
SHA = hashlib.sha256(DATA).hexdigest()


class _Origin(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    asked: list[str] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        data = self.files.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.send_header("content-length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    """A stand-in for the control plane's module endpoint, and a context trusting it."""
    root = Authority.create()
    (tmp_path / "server.pem").write_bytes(root.server_leaf())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.pem")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Origin.files, _Origin.asked = {}, []
    try:
        yield (f"https://127.0.0.1:{httpd.server_address[1]}",
               ssl.create_default_context(cadata=root.pem.decode()))  # fmt: skip
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def _pushed(tmp_path: Path, types: FilterTypes, sha: str = SHA) -> Any:
    """What the control plane pushes to sidecar web.shop for a wasm Filter selecting it."""
    text = (
        SIDECAR
        + f"""---
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {{name: auth, namespace: shop}}
spec:
  wasm: {{url: auth.wasm, sha256: {sha}, pluginConfig: v1}}
  selector: {{}}
"""
    )
    (tmp_path / "mesh.yaml").write_text(text)
    res = load_documents([tmp_path / "mesh.yaml"])
    cfg = translate(res, config_only(types), sidecar="web.shop", unknown_filters=True)
    return encode_mesh(cfg)


def _decode(resources: Any) -> Any:
    return lambda t: decode_mesh(resources, t, version="v", admin=AdminConfig())


async def test_a_module_named_by_hash_is_fetched_into_the_cache_once(
    tmp_path: Path, types: FilterTypes, origin: tuple[str, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PLAIT_WASM_CACHE", str(tmp_path / "cache"))
    server, trust = origin
    _Origin.files = {f"/api/v1/modules/{SHA}": DATA}

    async def context() -> ssl.SSLContext:
        return trust

    fetcher = ModuleFetcher(server, context)
    resources = _pushed(tmp_path, types)
    assert not (tmp_path / "cache").exists()
    await fetcher.prepare(_decode(resources), types)
    assert (tmp_path / "cache" / f"{SHA}.wasm").read_bytes() == DATA
    entry = next(f for lis in _decode(resources)(types).listeners for f in lis.filters
                 if f.type == "wasm")  # fmt: skip
    assert entry.config.sha256 == SHA and entry.name == "auth"
    await fetcher.prepare(_decode(resources), types)
    assert _Origin.asked == [f"/api/v1/modules/{SHA}"]  # cached: asked once


@pytest.mark.parametrize(
    ("served", "message"),
    [
        (None, "wasm filter 'auth': module sha256 {sha}: the control plane answered 404"),
        (b"other bytes", "wasm filter 'auth': module sha256 {sha}: {url} sent bytes with sha256"),
    ],
)
async def test_a_module_that_cannot_be_had_is_a_config_error_naming_the_filter(
    tmp_path: Path, types: FilterTypes, origin: tuple[str, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch, served: bytes | None, message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("PLAIT_WASM_CACHE", str(tmp_path / "cache"))
    server, trust = origin
    path = f"/api/v1/modules/{SHA}"
    if served is not None:
        _Origin.files = {path: served}

    async def context() -> ssl.SSLContext:
        return trust

    with pytest.raises(ConfigError) as err:
        await ModuleFetcher(server, context).prepare(_decode(_pushed(tmp_path, types)), types)
    assert message.format(sha=SHA, url=server + path) in str(err.value), str(err.value)
    assert not (tmp_path / "cache" / f"{SHA}.wasm").exists()


async def test_an_untrusted_endpoint_is_refused(
    tmp_path: Path, types: FilterTypes, origin: tuple[str, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PLAIT_WASM_CACHE", str(tmp_path / "cache"))
    server, _ = origin
    _Origin.files = {f"/api/v1/modules/{SHA}": DATA}
    other = Authority.create("another root")

    async def context() -> ssl.SSLContext:
        return ssl.create_default_context(cadata=other.pem.decode())

    with pytest.raises(ConfigError, match="CERTIFICATE_VERIFY_FAILED"):
        await ModuleFetcher(server, context).prepare(_decode(_pushed(tmp_path, types)), types)
    assert _Origin.asked == []


async def test_the_modules_a_config_names_are_compiled_before_it_is_decoded(
    tmp_path: Path, types: FilterTypes, origin: tuple[str, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The compile runs in a worker thread (``precompile``): the decode on the event loop
    finds the module compiled."""
    from plait.plugins.wasm import _engine

    monkeypatch.setenv("PLAIT_WASM_CACHE", str(tmp_path / "cache"))
    body = Path(__file__).parents[2] / "plugins" / "wasm" / "modules" / "config.wat"
    unique = f'(data (i32.const 60000) "{uuid.uuid4().hex}")\n'  # a module of its own hash
    data = bytes(wasmtime.wat2wasm(module_text(body.read_text() + unique)))
    sha = hashlib.sha256(data).hexdigest()
    server, trust = origin
    _Origin.files = {f"/api/v1/modules/{sha}": data}

    async def context() -> ssl.SSLContext:
        return trust

    resources = _pushed(tmp_path, types, sha)
    assert may_name_modules(resources)
    assert sha not in _engine._compiled
    await ModuleFetcher(server, context).prepare(_decode(resources), types)
    assert sha in _engine._compiled


def test_a_config_without_wasm_filters_is_not_scanned(tmp_path: Path, types: FilterTypes) -> None:
    text = SIDECAR.replace("request-header-modifier", "response-header-modifier")
    (tmp_path / "mesh.yaml").write_text(text)
    res = load_documents([tmp_path / "mesh.yaml"])
    cfg = translate(res, config_only(types), sidecar="web.shop", unknown_filters=True)
    assert not may_name_modules(encode_mesh(cfg))
