"""The resource API's endpoints: apply, list, get, delete, check (docs/control-plane.md),
and the traffic views ``stat`` and ``tap`` (``_traffic.py``).

Theory of operation: :class:`ResourceAPI` is the application behind the HTTP
server (``_http.py``). Every request but ``GET /healthz``, ``GET /api/v1/ca/bundle``
(the CA's public roots), ``GET /api/v1/modules/<sha256>`` (``_modules.py``) and the CA's
``POST /api/v1/certificates`` (whose body proves itself, ``_ca.py``) must carry the
admin token (compared in constant time); then the path picks the endpoint.

Writes (apply, delete) hold one lock from validation to the last store call:
all documents are parsed and the resulting config is translated first
(``controlplane/_validate.py``), and only if everything is valid is anything
put or deleted, so a bad request stores nothing. A request's writes are one
store transaction and one revision (``Store.write``): a crash mid-request
leaves all of them stored or none, and watchers see them as one change. Apply is idempotent: the
store reports ``unchanged`` for an identical document and takes no revision.

Kinds are matched case-insensitively (``httproute`` is ``HTTPRoute``).
Workloads read through the API carry a ``status`` from the registry, when one
runs (``_registry_view.py``).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from plait.controlplane import _validate as v
from plait.controlplane._kinds import kinds_help
from plait.controlplane._modules import MAX_MODULE, ModuleStore, Upload
from plait.controlplane.store import Key, Store, StoredResource
from plait.core.config import ParsedDocument, parse_stored, parse_text
from plait.sdk import ConfigError, FilterSpec

from ._ca import BUNDLE_PATH, CERTIFICATES_PATH, CAEndpoints
from ._http import MAX_BODY, HttpError, Request, Response
from ._modules import MODULES_PATH, missing_modules, module_response, obtain_modules, parse_uploads
from ._registry_view import RegistryView, sidecar_name, sidecar_problems, workload_status
from ._traffic import TrafficEndpoints

__all__ = ["ResourceAPI"]

log = logging.getLogger(__name__)

_PREFIX = "/api/v1/"


class ResourceAPI:
    """The application: ``await api(request) -> Response`` (raises :class:`HttpError`)."""

    def __init__(
        self,
        store: Store,
        filter_types: Mapping[str, FilterSpec[Any]],
        token: str,
        registry: RegistryView | None = None,
        ca: CAEndpoints | None = None,
        modules: ModuleStore | None = None,
    ) -> None:
        self.store = store
        self.modules = modules
        """Where ``spec.wasm`` modules are kept (``None``: such Filters are refused)."""
        self.ca = ca
        """The CA's endpoints (``_ca.py``), when the control plane runs a CA."""
        self.filter_types = filter_types
        self.registry = registry
        """Settable after start (the registry may be created later)."""
        self._token = token.encode()
        self._write = anyio.Lock()
        self._traffic = TrafficEndpoints(store, lambda: self.registry)

    async def __call__(self, req: Request) -> Response:
        if req.path == "/healthz":
            _allow(req, "GET")
            return Response(status=200, body={"ok": True, "revision": self.store.revision})
        if req.path == BUNDLE_PATH and self.ca is not None:  # the public roots, no admin token
            _allow(req, "GET")
            return Response(status=200, body={"bundle": self.ca.service.ca.bundle_pem().decode()})
        if req.path == CERTIFICATES_PATH and self.ca is not None:  # proves itself, no admin token
            _allow(req, "POST")
            return await self.ca.certificates(req)
        if req.path.startswith(MODULES_PATH):  # asked for by hash, no admin token (_modules.py)
            _allow(req, "GET")
            return module_response(self.modules, req.path)
        self._authorize(req)
        parts = req.path.removeprefix(_PREFIX).split("/") if req.path.startswith(_PREFIX) else []
        if self.ca is not None and (answer := await self.ca.admin(req, parts)) is not None:
            return answer
        if parts in (["apply"], ["delete"]):
            _allow(req, "POST")
            return await (self.apply(req) if parts == ["apply"] else self.delete_documents(req))
        if parts == ["resources"]:
            _allow(req, "GET")
            return await self.list(req)
        if len(parts) == 4 and parts[0] == "resources" and all(parts):
            _allow(req, "GET", "DELETE")
            key = Key(_kind(parts[1]), parts[2], parts[3])
            return await (self.get(key) if req.method == "GET" else self.delete(key))
        if parts == ["check"]:
            _allow(req, "GET")
            return await self.check()
        if parts in (["stat"], ["tap"]):  # streamed answers (_traffic.py)
            _allow(req, "GET")
            return await (self._traffic.stat(req) if parts == ["stat"] else self._traffic.tap(req))
        if parts == ["prometheus", "targets"]:  # Prometheus http_sd_configs
            _allow(req, "GET")
            return Response(
                status=200, body=self.registry.scrape_targets() if self.registry else []
            )
        raise HttpError(404, f"no such endpoint: {req.path} (see docs/control-plane.md)")

    def _authorize(self, req: Request) -> None:
        header = req.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = [("www-authenticate", 'Bearer realm="plait"')]
        if not header:
            raise HttpError(401, "missing admin token (Authorization: Bearer <token>)",
                            headers=challenge)  # fmt: skip
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self._token):  # fmt: skip
            raise HttpError(401, "wrong admin token", headers=challenge)

    # -- writes -----------------------------------------------------------------------------

    async def apply(self, req: Request) -> Response:
        source = req.query.get("source") or "request"
        docs, uploads = await _parse_body(req, source)
        async with self._write:
            plan = await self._plan(puts=docs)
            try:
                await obtain_modules(self.modules, plan.puts, uploads)
            except ConfigError as exc:
                raise _invalid(exc) from None
            written = await self.store.write([(v.key_of(d), d.document) for d in plan.puts])
            results = []
            for doc, out in zip(plan.puts, written, strict=True):
                assert out is not None
                results.append(_result(v.key_of(doc), out[1].value))
        log.info("apply %s: %s", source, ", ".join(f"{r['kind']}/{r['name']} {r['result']}"
                                                   for r in results))  # fmt: skip
        return self._written(results, plan.warnings)

    async def write(self, document: Mapping[str, Any], source: str) -> str:
        """Validate and store one document exactly as ``apply`` does, under the same lock
        (the registry's Workloads). Returns created/configured/unchanged.

        Raises:
            ConfigError: the document, or the config it would leave, is invalid.
        """
        doc = parse_stored(document, source, order=0)
        async with self._write:
            v.plan(await self.store.list(), self.filter_types, puts=[doc])
            _, result = await self.store.put(v.key_of(doc), doc.document)
        return result.value

    async def remove(self, key: Key) -> bool:
        """Delete ``key`` if the rest stays valid (the registry's expired Workloads)."""
        async with self._write:
            plan = v.plan(await self.store.list(), self.filter_types, deletes=[key])
            await self.store.write([(k, None) for k in plan.deletes])
        return bool(plan.deletes)

    async def delete_documents(self, req: Request) -> Response:
        docs, _ = await _parse_body(req, req.query.get("source") or "request")
        return await self._delete([v.key_of(d) for d in docs])

    async def delete(self, key: Key) -> Response:
        if await self.store.get(key) is None:
            raise HttpError(404, f"{key.kind} {key.namespace}/{key.name} not found")
        return await self._delete([key])

    async def _delete(self, keys: Sequence[Key]) -> Response:
        async with self._write:
            plan = await self._plan(deletes=keys, refused=409)
            await self.store.write([(k, None) for k in plan.deletes])
        results = [_result(k, "deleted" if k in plan.deletes else "not found") for k in keys]
        return self._written(results, plan.warnings)

    async def _plan(
        self,
        *,
        puts: Sequence[ParsedDocument] = (),
        deletes: Sequence[Key] = (),
        refused: int = 400,
    ) -> v.Plan:
        try:
            return v.plan(await self.store.list(), self.filter_types, puts=puts, deletes=deletes)
        except ConfigError as exc:
            if deletes:
                what = ", ".join(f"{k.kind}/{k.namespace}/{k.name}" for k in deletes)
                raise HttpError(refused, f"cannot delete {what}: the rest would be invalid: "
                                f"{exc}", [_detail(exc)]) from None  # fmt: skip
            raise _invalid(exc) from None

    def _written(self, results: list[dict[str, str]], warnings: Sequence[str]) -> Response:
        body = {"results": results, "warnings": list(warnings), "revision": self.store.revision}
        return Response(status=200, body=body)

    # -- reads ------------------------------------------------------------------------------

    async def list(self, req: Request) -> Response:
        kind = req.query.get("kind")
        found = await self.store.list(
            kind=_kind(kind) if kind else None, namespace=req.query.get("namespace") or None
        )
        return Response(status=200, body={"items": [self._shown(r) for r in found],
                                          "revision": self.store.revision})  # fmt: skip

    async def get(self, key: Key) -> Response:
        found = await self.store.get(key)
        if found is None:
            raise HttpError(404, f"{key.kind} {key.namespace}/{key.name} not found")
        return Response(status=200, body=self._shown(found))

    def _shown(self, r: StoredResource) -> dict[str, Any]:
        doc = dict(r.document)
        if r.key.kind == "Workload" and self.registry is not None:
            status = self.registry.status(r.key.namespace, r.key.name)
            if status is not None:
                doc["status"] = workload_status(status)
        return doc

    async def check(self) -> Response:
        stored = await self.store.list()
        problems: list[str] = []
        warnings: list[str] = []
        try:
            docs = v.reparse_all(stored)
            v.validate(docs, self.filter_types)
            warnings += v.unknown_filter_warnings(docs, self.filter_types)
            problems += missing_modules(docs, self.modules)
        except ConfigError as exc:
            problems.append(str(exc))
        sidecars = [dict(s) for s in self.registry.check()] if self.registry else []
        problems += [f"{sidecar_name(s)}: {p}" for s in sidecars for p in sidecar_problems(s)]
        if self.registry is None:
            warnings.append("no service registry runs: sidecar connectivity is not known")
        body = {"ok": not problems, "problems": problems, "warnings": warnings,
                "resources": len(stored), "revision": self.store.revision,
                "sidecars": sidecars}  # fmt: skip
        return Response(status=200, body=body)


async def _parse_body(req: Request, source: str) -> tuple[list[ParsedDocument], list[Upload]]:
    """The documents of a request: YAML text named ``source``, or JSON ``{"files": [...]}``.

    The JSON form (``content-type: application/json``) carries several files at once,
    ``[{"source": NAME, "text": YAML}, ...]``, so a directory is applied as one change and
    a route may refer to a Service in another file; errors still name the file.
    """
    is_json = req.headers.get("content-type", "").startswith("application/json")
    raw = await req.body(MAX_BODY + MAX_MODULE * 4 // 3 if is_json else MAX_BODY)  # (modules)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(
            400, f"{source}: expected UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    uploads: list[Upload] = []
    if is_json:
        files, uploads = _files(text)
    else:
        files = [(source, text)]
    docs: list[ParsedDocument] = []
    try:
        for name, body in files:
            docs += parse_text(body, name, order=len(docs))
    except ConfigError as exc:
        raise _invalid(exc) from None
    if not docs:
        names = ", ".join(name for name, _ in files) or source
        raise HttpError(400, f"{names}: no resources in the request")
    return docs, uploads


def _files(text: str) -> tuple[list[tuple[str, str]], list[Upload]]:
    expected = 'expected JSON {"files": [{"source": NAME, "text": YAML}, ...]}'
    try:
        body = json.loads(text)
        files = [(str(f["source"]), f["text"]) for f in body["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise HttpError(400, f"{expected} ({type(exc).__name__}: {exc})") from None
    if not all(isinstance(t, str) for _, t in files):
        raise HttpError(400, f"{expected} (a text is not a string)")
    return files, parse_uploads(body)


def _invalid(exc: ConfigError) -> HttpError:
    return HttpError(400, str(exc), [_detail(exc)])


def _detail(exc: ConfigError) -> dict[str, str]:
    return {"source": exc.file, "field": exc.field, "message": exc.message}


def _result(key: Key, result: str) -> dict[str, str]:
    return {"kind": key.kind, "namespace": key.namespace, "name": key.name, "result": result}


def _kind(text: str) -> str:
    kind = v.canonical_kind(text)
    if kind is None:
        raise HttpError(400, f"unknown kind {text!r} (known: {kinds_help()})")
    return kind


def _allow(req: Request, *methods: str) -> None:
    if req.method not in methods:
        raise HttpError(405, f"method {req.method} not allowed on {req.path} "
                        f"(allowed: {', '.join(methods)})",
                        headers=[("allow", ", ".join(methods))])  # fmt: skip
