"""Static config: YAML files → typed resources → :class:`MeshConfig`.

Theory of operation: :func:`load_documents` reads every file (a directory
contributes its ``*.yaml``/``*.yml`` files in name order), splits the YAML
documents, and parses each one by its ``kind`` on its own (``_resources.py``,
``_httproute.py``). Creation order is file order, then document order: the
Gateway API tie-breaker "oldest route wins" uses it. :func:`load_config` then
hands the resources to the translator, which checks every cross-reference and
filter type and fills the frozen model.

Every error is a :class:`~plait.sdk.ConfigError` naming ``file:line``, the
resource (``Kind/name``), the field path and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plait.sdk import ConfigError, FilterSpec

from ._attach import parse_filter
from ._fields import Fields, Loc
from ._httproute import parse_httproute
from ._model import MeshConfig
from ._policy import parse_backend_traffic_policy
from ._resource_set import Resources
from ._resources import (
    LABEL,
    LABEL_HINT,
    SUBDOMAIN,
    SUBDOMAIN_HINT,
    Meta,
    parse_service,
    parse_sidecar,
)
from ._security import parse_authorization_policy, parse_peer_authentication
from ._telemetry import parse_telemetry
from ._translate import translate
from ._workload import parse_workload
from ._yaml import load_yaml_documents

__all__ = [
    "KINDS",
    "ParsedDocument",
    "load_config",
    "load_documents",
    "parse_stored",
    "parse_text",
    "resources_of",
]

_PLAIT = ("plait.dev/v1alpha1",)
_GATEWAY = ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1")
_POLICY = ("plait.dev/v1alpha1", "gateway.networking.x-k8s.io/v1alpha1")
_TELEMETRY = ("telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1", "plait.dev/v1alpha1")
_SECURITY = ("security.istio.io/v1", "security.istio.io/v1beta1", "plait.dev/v1alpha1")
_KINDS: dict[str, tuple[tuple[str, ...], Callable[[Meta, Fields], Any]]] = {
    "Service": (_PLAIT, parse_service),
    "HTTPRoute": (_GATEWAY, parse_httproute),
    "Filter": (_PLAIT, parse_filter),
    "Sidecar": (_PLAIT, parse_sidecar),
    "Workload": (_PLAIT, parse_workload),
    "BackendTrafficPolicy": (_POLICY, parse_backend_traffic_policy),
    "PeerAuthentication": (_SECURITY, parse_peer_authentication),
    "AuthorizationPolicy": (_SECURITY, parse_authorization_policy),
    "Telemetry": (_TELEMETRY, parse_telemetry),
}
KINDS = tuple(_KINDS)


def load_config(
    paths: Sequence[str | Path],
    filter_types: Mapping[str, FilterSpec[Any]],
    *,
    sidecar: str | None = None,
) -> MeshConfig:
    """Load static config files into one validated :class:`MeshConfig`.

    Args:
        paths: YAML files, or directories whose ``*.yaml``/``*.yml`` files are read.
        filter_types: the filter registry (``plait.plugins.load_filter_types()``).
        sidecar: the ``Sidecar`` resource to build listeners for, as ``NAME`` or
            ``NAME.NAMESPACE``; may be omitted when there is at most one.

    Raises:
        ConfigError: anything invalid, naming the file, resource, field and expectation.
    """
    return translate(load_documents(paths), filter_types, sidecar=sidecar)


def load_documents(paths: Sequence[str | Path]) -> Resources:
    """Read and parse every document; checks each on its own, not cross-references."""
    files = _expand(paths)
    parsed: list[ParsedDocument] = []
    for file in files:
        found = parse_text(_read(file), file, order=len(parsed))
        if not found:
            raise ConfigError(
                "expected at least one resource (apiVersion, kind, metadata, spec), got an empty "
                "file",
                file=file,
            )
        parsed += found
    return resources_of(parsed, files)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedDocument:
    """One YAML document, checked on its own: its metadata, typed resource and plain form."""

    meta: Meta
    resource: Any
    document: Mapping[str, Any]
    """The document as plain JSON-compatible data (what the control plane stores)."""


def parse_text(text: str, source: str, *, order: int = 0) -> list[ParsedDocument]:
    """Parse every document of one YAML text; ``source`` names it in errors (a file name).

    ``order`` is the creation order of the first document (Gateway API's "oldest wins").
    """
    out: list[ParsedDocument] = []
    for doc, line in load_yaml_documents(text, source):
        if doc is None:
            continue
        meta, resource = _parse_document(doc, Loc(source, line), order=order + len(out))
        plain = json.loads(json.dumps(doc, default=str))
        out.append(ParsedDocument(meta=meta, resource=resource, document=plain))
    return out


def parse_stored(document: Mapping[str, Any], source: str, *, order: int) -> ParsedDocument:
    """Parse one already-loaded document (e.g. from the control plane's store)."""
    meta, resource = _parse_document(document, Loc(source, 0), order=order)
    return ParsedDocument(meta=meta, resource=resource, document=document)


def resources_of(parsed: Sequence[ParsedDocument], sources: Sequence[str]) -> Resources:
    """Group parsed documents by kind, in the order given (their creation order)."""
    by_kind: dict[str, list[Any]] = {kind: [] for kind in _KINDS}
    for p in parsed:
        by_kind[p.meta.kind].append(p.resource)
    blob = json.dumps(
        [p.document for p in parsed], sort_keys=True, default=str, separators=(",", ":")
    )
    return Resources(
        services=tuple(by_kind["Service"]),
        routes=tuple(by_kind["HTTPRoute"]),
        filters=tuple(by_kind["Filter"]),
        sidecars=tuple(by_kind["Sidecar"]),
        workloads=tuple(by_kind["Workload"]),
        policies=tuple(by_kind["BackendTrafficPolicy"]),
        peer_authentications=tuple(by_kind["PeerAuthentication"]),
        authorization_policies=tuple(by_kind["AuthorizationPolicy"]),
        telemetries=tuple(by_kind["Telemetry"]),
        sources=tuple(sources),
        digest=hashlib.sha256(blob.encode()).hexdigest(),
    )


def config_files(directory: Path) -> list[Path]:
    """The files a config directory contributes: its ``*.yaml``/``*.yml``, in name order."""
    return sorted(c for c in directory.iterdir() if c.suffix in (".yaml", ".yml") and c.is_file())


def _expand(paths: Sequence[str | Path]) -> list[str]:
    if not paths:
        raise ConfigError("no config files given")
    files: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = config_files(path)
            if not found:
                raise ConfigError("directory has no .yaml or .yml files", file=str(p))
            files.extend(str(c) for c in found)
        elif path.exists():
            files.append(str(p))
        else:
            raise ConfigError("no such file or directory", file=str(p))
    return files


def _read(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"expected UTF-8 text ({exc.reason} at byte {exc.start})", file=file
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from None


def _parse_document(doc: object, loc: Loc, *, order: int) -> tuple[Meta, object]:
    if not isinstance(doc, Mapping):
        raise loc.expected("a resource (a mapping with apiVersion, kind, metadata, spec)", doc)
    top = Fields(doc, loc)
    kind = top.text("kind", choices=tuple(_KINDS))
    versions, parse = _KINDS[kind]
    top.text("apiVersion", choices=versions)
    meta = _parse_meta(top, kind, order)
    top.loc = meta.loc  # from here on, errors name the resource
    has_spec = top.has("spec")
    top.done()  # first, so that a misspelt "spec" is reported as such
    if not has_spec:
        raise meta.loc.error("missing required field 'spec'")
    spec = Fields(top.raw["spec"], top.at("spec"))
    return meta, parse(meta, spec)


def _parse_meta(top: Fields, kind: str, order: int) -> Meta:
    m = top.sub("metadata", required=True)
    assert m is not None
    is_label = kind == "Service"
    name = m.text(
        "name",
        pattern=LABEL if is_label else SUBDOMAIN,
        what=LABEL_HINT if is_label else SUBDOMAIN_HINT,
    )
    namespace = m.text("namespace", "default", pattern=LABEL, what=LABEL_HINT)
    labels = m.labels("labels")
    m.labels("annotations")
    m.done()
    loc = Loc(top.loc.file, top.loc.line, f"{kind}/{name}")
    return Meta(
        kind=kind,
        name=name,
        namespace=namespace,
        loc=loc,
        order=order,
        labels=tuple(sorted(labels.items())),
    )
