"""Modules a pushed config names by hash: fetched from the control plane into the local cache.

Theory of operation. A ``Filter`` with ``spec.wasm`` reaches the sidecar as a chain
entry of the ``wasm`` filter type whose config names its module by ``sha256`` alone
(the control plane does not know the sidecar's disk). The ``wasm`` type loads such a
module from its cache directory (``<cacheDir>/<sha256>.wasm``). Before a pushed config
is decoded for real, :meth:`ModuleFetcher.prepare` decodes it once with the ``wasm``
type replaced by a recorder, which collects every ``(sha256, cacheDir)`` the config
names and loads nothing; each module missing from its cache is then fetched from the
control plane's API (``GET /api/v1/modules/<sha256>``, HTTPS, verified with the roots
that verify the control plane; see :class:`ModuleFetcher`), checked against its hash
and written atomically under its hash. The cache is content-addressed and shared by
every worker process and every later start: a module is fetched once per host (two
workers fetching at once write the same bytes under the same name).

A module that cannot be had (the control plane does not have it, the bytes do not
hash to what the config says, the control plane is unreachable) is a
:class:`~plait.sdk.ConfigError` naming the filter and the reason: the config is NACKed
and the sidecar keeps serving its last good one. The real decode that follows
compiles and starts the modules (the ``wasm`` type checks the hash once more, the ABI
marker and ``proxy_on_configure``), and refuses the config in the same way.

The fetches run in worker threads while the event loop keeps serving. So does the
compile: the module that provides the ``wasm`` type may define ``precompile(sha256,
cache_dir)`` (``plugins/wasm`` does), which is called in a worker thread for every
module the config names, so the decode on the event loop finds them compiled and only
starts their instances. Streams in flight finish on the chain they started with.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import anyio.to_thread

from plait.sdk import ConfigError, FilterSpec, HttpFilter

from ..config._wasm_spec import WASM_TYPE
from .wire import LISTENER, ROUTE

__all__ = ["MODULES_PATH", "ModuleFetcher", "default_cache_dir", "may_name_modules"]

log = logging.getLogger("plait.xds")

MODULES_PATH: Final = "/api/v1/modules/"
_MAX_MODULE: Final = 32 << 20
_TIMEOUT: Final = 30.0

Context = Callable[[], Awaitable[ssl.SSLContext]]


def default_cache_dir() -> Path:
    """The ``wasm`` type's default cache: ``$PLAIT_WASM_CACHE``, else
    ``$XDG_CACHE_HOME/plait/wasm`` (``~/.cache/plait/wasm``), as ``plugins/wasm`` reads it."""
    if env := os.environ.get("PLAIT_WASM_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "plait" / "wasm"


def _never(config: object) -> HttpFilter:
    raise ConfigError("a scan placeholder")


def may_name_modules(resources: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a Listener or RouteConfiguration of ``resources`` could hold a ``wasm``
    entry (a cheap look at their bytes, so configs without one skip the scan)."""
    needle = WASM_TYPE.encode()
    return any(
        needle in msg.SerializeToString()
        for type_url in (LISTENER, ROUTE)
        for msg in resources.get(type_url, {}).values()
    )


def _precompiler(
    filter_types: Mapping[str, FilterSpec[Any]],
) -> Callable[[str, Path], None] | None:
    """The ``precompile(sha256, cache_dir)`` of the module that provides the ``wasm`` type,
    if it has one."""
    spec = filter_types.get(WASM_TYPE)
    module = sys.modules.get(getattr(spec.make, "__module__", "")) if spec else None
    warm = getattr(module, "precompile", None)
    return warm if callable(warm) else None


class ModuleFetcher:
    """Fetches the modules a config names from ``server`` (the control plane's API),
    over TLS with the context ``context()`` gives."""

    def __init__(self, server: str, context: Context) -> None:
        self.server = server.rstrip("/")
        self.context = context

    def wanted(
        self,
        decode: Callable[[Mapping[str, FilterSpec[Any]]], object],
        filter_types: Mapping[str, FilterSpec[Any]],
    ) -> dict[str, tuple[Path, str]]:
        """``sha256 → (cache dir, filter name)`` of the by-hash modules ``decode`` meets
        with the ``wasm`` type replaced by a recorder (``{}`` if the config is invalid:
        the real decode reports it)."""
        found: dict[str, tuple[Path, str]] = {}
        if WASM_TYPE not in filter_types:
            return found

        def record(raw: Mapping[str, Any]) -> None:
            sha = raw.get("sha256")
            if isinstance(sha, str) and not raw.get("module"):
                cache = raw.get("cacheDir")
                where = Path(cache) if isinstance(cache, str) and cache else default_cache_dir()
                found.setdefault(sha, (where, str(raw.get("pluginName") or sha)))

        types = dict(filter_types)
        if WASM_TYPE in types:
            types[WASM_TYPE] = FilterSpec(name=WASM_TYPE, make=_never, parse_config=record)
        try:
            decode(types)
        except Exception:  # (ConfigError, Incomplete: the real decode reports it)
            return found
        return found

    async def prepare(
        self,
        decode: Callable[[Mapping[str, FilterSpec[Any]]], object],
        filter_types: Mapping[str, FilterSpec[Any]],
    ) -> None:
        """Fetch every module the config names that is not cached; raises
        :class:`ConfigError` (the NACK reason) when one cannot be had."""
        wanted = self.wanted(decode, filter_types)
        missing = {sha: w for sha, w in wanted.items() if not (w[0] / f"{sha}.wasm").is_file()}
        if missing:
            await self._fetch_all(missing)
        warm = _precompiler(filter_types)
        if warm is not None:
            for sha, (cache, _) in wanted.items():
                await anyio.to_thread.run_sync(warm, sha, cache)

    async def _fetch_all(self, missing: Mapping[str, tuple[Path, str]]) -> None:
        try:
            ctx = await self.context()
        except OSError as exc:  # (the control plane's roots could not be had)
            raise ConfigError(f"cannot verify the control plane's module endpoint: {exc}") from None
        for sha, (cache, name) in missing.items():
            await anyio.to_thread.run_sync(self._fetch, sha, cache, name, ctx)

    def _fetch(self, sha: str, cache: Path, name: str, ctx: ssl.SSLContext) -> None:
        url = f"{self.server}{MODULES_PATH}{sha}"
        what = f"wasm filter {name!r}: module sha256 {sha}"
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT, context=ctx) as resp:
                data = resp.read(_MAX_MODULE + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise ConfigError(f"{what}: the control plane answered {exc.code} at {url}") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigError(f"{what}: cannot fetch {url}: {reason}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha:
            raise ConfigError(f"{what}: {url} sent bytes with sha256 {digest}")
        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, cache / f"{sha}.wasm")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ConfigError(f"{what}: cannot write the cache {cache}: {exc}") from None
        log.info("fetched %s (%d bytes) into %s", what, len(data), cache)
