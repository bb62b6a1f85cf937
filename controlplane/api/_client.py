"""The resource API's client (stdlib ``urllib.request``), used by the ``plait`` CLI.

Each method is one request and returns the decoded JSON body. Every failure
becomes an :class:`APIError` whose message is ready to print: the server's
``error`` for 4xx/5xx answers, or what to check when the server cannot be
reached at all (status 0).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["APIClient", "APIError"]


class APIError(Exception):
    """A failed request: the HTTP ``status`` (0 if unreachable), message and details."""

    def __init__(self, status: int, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


class APIClient:
    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ssl_context = ssl_context
        """Verifies an ``https`` server (the control plane's roots); ``None``: the system's."""

    def apply(
        self, files: Sequence[tuple[str, str]], modules: Sequence[Mapping[str, str]] = ()
    ) -> Any:
        """Apply YAML ``(source, text)`` files as one change (errors name the source), with
        the modules their wasm Filters name (``{"source", "url", "data"}``, ``_modules.py``)."""
        return self.request("POST", "/api/v1/apply", body=_files(files, modules), json_body=True)

    def delete_documents(self, files: Sequence[tuple[str, str]]) -> Any:
        """Delete every resource the YAML files name, as one change."""
        return self.request("POST", "/api/v1/delete", body=_files(files), json_body=True)

    def list(self, kind: str | None = None, namespace: str | None = None) -> Any:
        query = {k: v for k, v in (("kind", kind), ("namespace", namespace)) if v}
        return self.request("GET", "/api/v1/resources", query=query)

    def get(self, kind: str, namespace: str, name: str) -> Any:
        return self.request("GET", _resource_path(kind, namespace, name))

    def delete(self, kind: str, namespace: str, name: str) -> Any:
        return self.request("DELETE", _resource_path(kind, namespace, name))

    def check(self) -> Any:
        return self.request("GET", "/api/v1/check")

    def stream(
        self, path: str, query: Mapping[str, str], timeout: float | None = None
    ) -> Iterator[Any]:
        """GET a streamed answer (``stat``, ``tap``): each JSON line, decoded, as it comes.
        ``timeout`` bounds each read (``None``: none; a tap may be quiet for long)."""
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        headers = {"accept": "application/x-ndjson"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, headers=headers, method="GET")
        try:
            resp = urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context)
        except urllib.error.HTTPError as exc:
            raise _from_response(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from None
        with resp:
            try:
                for line in resp:
                    if line.strip():
                        yield json.loads(line)
            except (OSError, ValueError) as exc:  # a read timeout, a cut or garbled stream
                raise APIError(0, f"the stream from {self.server} broke off: {exc}") from None

    def _unreachable(self, exc: Exception) -> APIError:
        reason = getattr(exc, "reason", exc)
        return APIError(
            0,
            f"cannot reach the control plane at {self.server}: {reason} "
            "(is `plait control-plane` running? set --server or PLAIT_SERVER)",
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json_body: bool = False,
    ) -> Any:
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        headers = {"accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["content-type"] = "application/json" if json_body else "application/yaml"
        req = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(
                req, timeout=self.timeout, context=self.ssl_context
            ) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _from_response(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from None


def _files(files: Sequence[tuple[str, str]], modules: Sequence[Mapping[str, str]] = ()) -> bytes:
    body: dict[str, Any] = {"files": [{"source": s, "text": t} for s, t in files]}
    if modules:
        body["modules"] = list(modules)
    return json.dumps(body).encode()


def _resource_path(kind: str, namespace: str, name: str) -> str:
    return "/api/v1/resources/" + "/".join(quote(p, safe="") for p in (kind, namespace, name))


def _from_response(exc: urllib.error.HTTPError) -> APIError:
    try:
        body = json.loads(exc.read())
        message, details = str(body["error"]), list(body.get("details") or [])
    except (ValueError, KeyError, TypeError, OSError):
        message, details = f"{exc.code} {exc.reason}", []
    if exc.code == 401:
        message += (
            " (pass --token, set PLAIT_TOKEN, or run on the control plane's host"
            " with its --data-dir / PLAIT_DATA_DIR)"
        )
    return APIError(exc.code, message, details)
