"""The API's side of module delivery: modules uploaded with an apply, and served by hash.

``POST /api/v1/apply`` in its JSON form may carry, next to ``files``, the modules the
CLI read for ``spec.wasm`` Filters with a file ``url``:
``"modules": [{"source": FILE, "url": URL, "data": BASE64}]`` (``source`` and ``url``
as the document names them; ``controlplane/_modules.py`` checks the hash and stores
them).

``GET /api/v1/modules/<sha256>`` answers a stored module's bytes
(``application/wasm``). It needs no admin token: sidecars hold none, and a module is
asked for by the hash their pushed config names (the sidecar checks the bytes against
it). The endpoint serves only what is stored under that exact hash, so it reveals
nothing to a client that does not already know the hash.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import anyio.to_thread

from plait.controlplane._modules import ModuleStore, Upload, module_refs
from plait.core.config import ParsedDocument

from ._http import HttpError, Response

__all__ = [
    "MODULES_PATH",
    "missing_modules",
    "module_response",
    "obtain_modules",
    "parse_uploads",
]

MODULES_PATH: Final = "/api/v1/modules/"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def parse_uploads(body: Any) -> list[Upload]:
    """The ``modules`` of an apply request's JSON body (``[]`` without)."""
    raw = body.get("modules", []) if isinstance(body, dict) else []
    expected = 'expected "modules": [{"source": FILE, "url": URL, "data": BASE64}, ...]'
    if not isinstance(raw, list):
        raise HttpError(400, expected)
    out = []
    for i, m in enumerate(raw):
        try:
            data = base64.b64decode(m["data"], validate=True)
            out.append(Upload(source=str(m["source"]), url=str(m["url"]), data=data))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise HttpError(400, f"modules[{i}]: {expected} ({type(exc).__name__})") from None
    return out


def module_response(store: ModuleStore | None, path: str) -> Response:
    """``GET /api/v1/modules/<sha256>``: the module's bytes, or 404."""
    sha = path.removeprefix(MODULES_PATH)
    if not _SHA256.match(sha):
        raise HttpError(400, f"expected {MODULES_PATH}<sha256> (64 lower-case hex digits)")
    data = store.read(sha) if store is not None else None
    if data is None:
        raise HttpError(404, f"no module with sha256 {sha} on this control plane")
    return Response(status=200, body=data, headers=(("content-type", "application/wasm"),))


def missing_modules(docs: Iterable[ParsedDocument], store: ModuleStore | None) -> list[str]:
    """``plait check`` problems: stored wasm Filters whose module the control plane lacks
    (a data directory restored without its ``modules``): sidecars could not fetch it."""
    return [
        f"{d.meta.kind}/{d.meta.namespace}/{d.meta.name}: spec.wasm: the control plane keeps "
        f"no module with sha256 {ref.sha256} (apply the Filter again to upload or fetch it)"
        for d, ref in module_refs(docs)
        if store is None or not store.has(ref.sha256)
    ]


async def obtain_modules(
    store: ModuleStore | None, docs: Sequence[ParsedDocument], uploads: Sequence[Upload]
) -> None:
    """Make ``store`` hold the module of every wasm Filter of ``docs`` (fetches and hashing
    run in a worker thread); raises ``ConfigError`` naming the document and field."""
    if not module_refs(docs):
        return
    if store is None:
        raise HttpError(400, "this control plane keeps no wasm modules (no data directory)")
    await anyio.to_thread.run_sync(store.obtain, docs, uploads)
