"""The control plane's Proxy-Wasm modules: obtained at apply, stored by hash, served to sidecars.

Theory of operation. A ``Filter`` with ``spec.wasm`` names its module by ``url`` and
``sha256``. At ``plait apply`` the control plane makes sure it holds those bytes
before it stores the resource:

* a file ``url`` is read by the CLI on the operator's machine and uploaded with the
  documents (``{"modules": [{"source", "url", "data"}]}`` in the apply request): the
  file is where the operator is, not on the control plane's host;
* an ``https`` URL is fetched by the control plane itself (system trust store, 30 s,
  at most :data:`MAX_MODULE` bytes), once: a module already stored under its hash is
  not fetched again (uploaded bytes are checked every time: they are what the operator
  points at).

Either way the bytes must hash to ``spec.wasm.sha256``; otherwise nothing of the apply
is stored and the error names the file, the field and both hashes. Modules are kept in
``<data-dir>/modules/<sha256>.wasm`` (written atomically; content-addressed, so a
module used by several Filters or versions is stored once) and served on the API at
``GET /api/v1/modules/<sha256>`` (``api/_modules.py``), where each sidecar fetches
the ones its pushed config names and checks the hash again.

The control plane never compiles or starts a module: its registry's ``wasm`` type is
replaced by :func:`config_only` (the fields of the config are checked, the module is
not loaded), so translating a config never runs third-party code on this host.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from plait.core.config import ParsedDocument
from plait.sdk import ConfigError, FilterSpec, HttpFilter

__all__ = [
    "MAX_MODULE",
    "ModuleStore",
    "Upload",
    "config_only",
    "module_refs",
]

MAX_MODULE: Final = 32 << 20
"""The largest module the control plane fetches or serves (bytes)."""
_WASM: Final = "wasm"
_FETCH_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class Upload:
    """A module's bytes sent with an apply: for the documents of ``source`` naming ``url``."""

    source: str
    url: str
    data: bytes


def module_refs(docs: Iterable[ParsedDocument]) -> list[Any]:
    """The ``ModuleRef`` of every ``spec.wasm`` Filter among ``docs`` (with its document)."""
    out = []
    for d in docs:
        ref = getattr(getattr(d.resource, "use", None), "module", None)
        if ref is not None:
            out.append((d, ref))
    return out


class ModuleStore:
    """``<data-dir>/modules``: module bytes by sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.wasm"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, data: bytes) -> str:
        """Store ``data`` under its hash (atomically); returns the hash."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.is_file():
            return digest
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def obtain(self, docs: Iterable[ParsedDocument], uploads: Iterable[Upload]) -> None:
        """Store the module of every ``spec.wasm`` Filter of ``docs`` (blocking: run it in a
        worker thread). Raises :class:`ConfigError` naming the document and field."""
        sent = {(u.source, u.url): u.data for u in uploads}
        for doc, ref in module_refs(docs):
            data = sent.get((doc.meta.loc.file, ref.url))  # uploaded bytes are always checked
            if data is None and self.has(ref.sha256):
                continue
            if data is None:
                if not ref.url.startswith("https://"):
                    raise ref.loc.key("url").error(
                        f"the module {ref.url!r} was not uploaded with the request and the "
                        f"control plane holds no module with sha256 {ref.sha256} (`plait "
                        "apply -f FILE` uploads the file a Filter's url names, relative to "
                        "FILE's directory)"
                    )
                data = _fetch(ref.url, ref.loc)
            digest = hashlib.sha256(data).hexdigest()
            if digest != ref.sha256:
                raise ref.loc.key("sha256").error(
                    f"the module {ref.url!r} has sha256 {digest}, the Filter expects {ref.sha256}"
                )
            self.put(data)


def _fetch(url: str, loc: Any) -> bytes:
    ctx = ssl.create_default_context()
    try:
        with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT, context=ctx) as resp:
            data = resp.read(MAX_MODULE + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise loc.key("url").error(f"cannot fetch {url}: HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise loc.key("url").error(f"cannot fetch {url}: {reason}") from None
    if len(data) > MAX_MODULE:
        raise loc.key("url").error(f"{url}: the module is larger than {MAX_MODULE} bytes")
    return bytes(data)


def _never(config: object) -> HttpFilter:
    raise ConfigError("the control plane does not run wasm modules")


def config_only(types: Mapping[str, FilterSpec[Any]]) -> dict[str, FilterSpec[Any]]:
    """``types`` with the ``wasm`` type's config checked but its module never loaded."""
    out = dict(types)
    if _WASM in out:
        from plait.plugins.wasm import parse_config  # (checks fields; imports no wasmtime)

        out[_WASM] = FilterSpec(
            name=_WASM,
            make=_never,
            parse_config=parse_config,
            description=out[_WASM].description,
        )
    return out
