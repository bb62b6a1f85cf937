"""Module delivery on the API: modules uploaded with an apply or fetched from an https URL,
checked against ``spec.wasm.sha256``, stored by hash, served at ``/api/v1/modules/<sha256>``."""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pki import Authority

from .conftest import Server

C_MODULE = Path(__file__).parents[2] / "plugins" / "wasm" / "modules" / "c_headers" / "filter.wasm"


def _filter(url: str, sha: str, name: str = "auth") -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Filter
metadata: {{name: {name}}}
spec:
  wasm: {{url: "{url}", sha256: {sha}, pluginConfig: {{mode: strict}}}}
  selector: {{matchLabels: {{app: web}}}}
"""


def _apply(server: Server, text: str, modules: list[dict[str, str]] | None = None) -> Any:
    body = {"files": [{"source": "f.yaml", "text": text}]}
    if modules is not None:
        body["modules"] = modules
    status, _, answer = server.request(
        "POST", "/api/v1/apply", json.dumps(body), headers={"content-type": "application/json"}
    )
    return status, answer


def _upload(url: str, data: bytes) -> dict[str, str]:
    return {"source": "f.yaml", "url": url, "data": base64.b64encode(data).decode()}


def _get_module(server: Server, sha: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=server.tls)
    try:
        conn.request("GET", f"/api/v1/modules/{sha}")  # no admin token
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _modules_dir(server: Server) -> Path:
    return Path(server.running.context.options.data_dir) / "modules"


def test_an_uploaded_module_is_stored_by_hash_and_served_without_the_admin_token(
    server: Server,
) -> None:
    data = C_MODULE.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    status, body = _apply(server, _filter("filter.wasm", sha), [_upload("filter.wasm", data)])
    assert status == 200, body
    assert (_modules_dir(server) / f"{sha}.wasm").read_bytes() == data
    status, headers, served = _get_module(server, sha)
    assert status == 200 and headers["content-type"] == "application/wasm" and served == data
    # unknown hash, malformed hash, wrong method
    status, _, raw = _get_module(server, "0" * 64)
    assert status == 404 and "no module with sha256" in json.loads(raw)["error"]
    assert _get_module(server, "abc")[0] == 400
    assert server.request("POST", f"/api/v1/modules/{sha}", b"", token=None)[0] == 405


def test_the_control_plane_never_loads_a_module(server: Server) -> None:
    """Bytes that are no WebAssembly at all are stored: only sidecars compile modules."""
    data = b"not wasm, and never compiled here"
    sha = hashlib.sha256(data).hexdigest()
    status, body = _apply(server, _filter("x.wasm", sha), [_upload("x.wasm", data)])
    assert status == 200, body
    assert _get_module(server, sha)[2] == data


def test_a_module_that_was_not_uploaded_is_refused_and_nothing_is_stored(server: Server) -> None:
    sha = hashlib.sha256(b"elsewhere").hexdigest()
    status, body = _apply(server, _filter("filter.wasm", sha))
    assert status == 400
    assert body["error"].startswith("f.yaml:"), body
    assert "Filter/auth: spec.wasm.url" in body["error"] and "was not uploaded" in body["error"]
    assert server.stored() == []


def test_uploaded_bytes_that_do_not_match_the_hash_are_refused_naming_both(
    server: Server,
) -> None:
    data = C_MODULE.read_bytes()
    real = hashlib.sha256(data).hexdigest()
    other = hashlib.sha256(b"other").hexdigest()
    # also when a module is stored under the hash the Filter names
    _apply(server, _filter("o.wasm", other, "o"), [_upload("o.wasm", b"other")])
    status, body = _apply(server, _filter("filter.wasm", other), [_upload("filter.wasm", data)])
    assert status == 400
    assert "Filter/auth: spec.wasm.sha256" in body["error"], body
    assert real in body["error"] and other in body["error"]
    assert [r.key.name for r in server.stored()] == ["o"]
    assert not (_modules_dir(server) / f"{real}.wasm").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sha256", "ABC", "spec.wasm.sha256: expected 64 lower-case hex digits"),
        ("url", "http://example.test/a.wasm", "spec.wasm.url: expected an https:// URL"),
        ("cacheDir", "/tmp", "spec.wasm.cacheDir: unknown field"),
    ],
)
def test_bad_wasm_fields_are_400_naming_the_field(
    server: Server, field: str, value: str, message: str
) -> None:
    sha = "a" * 64
    text = _filter("f.wasm", sha).replace("pluginConfig:", f"{field}: '{value}', pluginConfig:")
    if field != "cacheDir":
        text = _filter("f.wasm", sha).replace(
            f'{field}: "f.wasm"' if field == "url" else f"{field}: {sha}", f"{field}: '{value}'"
        )
    status, body = _apply(server, text)
    assert status == 400 and message in body["error"], body


# -- https URLs: the control plane fetches them ----------------------------------------------


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        data = self.files.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.send_header("content-length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An HTTPS file server on 127.0.0.1 with a certificate from a test root, which the
    control plane trusts through ``SSL_CERT_FILE`` (its fetch uses the default roots)."""
    root = Authority.create("origin root")
    (tmp_path / "origin.pem").write_bytes(root.server_leaf())
    (tmp_path / "roots.pem").write_bytes(root.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "roots.pem"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "origin.pem")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_https_module_is_fetched_checked_and_stored(server: Server, https_origin: str) -> None:
    data = C_MODULE.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    _Files.files = {"/filters/c.wasm": data, "/filters/other.wasm": b"other"}
    status, body = _apply(server, _filter(f"{https_origin}/filters/c.wasm", sha))
    assert status == 200, body
    assert _get_module(server, sha)[2] == data
    # a 404 and bytes of another hash are refused, naming the field
    status, body = _apply(server, _filter(f"{https_origin}/nope.wasm", "b" * 64, "n"))
    assert status == 400 and "spec.wasm.url: cannot fetch" in body["error"], body
    assert "HTTP 404" in body["error"]
    status, body = _apply(server, _filter(f"{https_origin}/filters/other.wasm", "c" * 64, "o"))
    assert status == 400 and "spec.wasm.sha256" in body["error"] and "c" * 64 in body["error"]
    assert [r.key.name for r in server.stored()] == ["auth"]


def test_check_reports_a_stored_wasm_filter_whose_module_is_gone(server: Server) -> None:
    data = C_MODULE.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert _apply(server, _filter("f.wasm", sha), [_upload("f.wasm", data)])[0] == 200
    assert server.request("GET", "/api/v1/check")[2]["problems"] == []
    (_modules_dir(server) / f"{sha}.wasm").unlink()  # a data directory restored without it
    problems = server.request("GET", "/api/v1/check")[2]["problems"]
    assert problems == [
        f"Filter/default/auth: spec.wasm: the control plane keeps no module with sha256 {sha} "
        "(apply the Filter again to upload or fetch it)"
    ]
