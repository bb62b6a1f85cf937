"""Validation on write: the same parser and translator as static mode.

Theory of operation: a write is accepted only if the whole config it would
leave behind translates, for every sidecar. The *candidate set* is every stored
document (re-parsed, with the source ``store:Kind/namespace/name`` so an error
in it names it), with the written documents replacing those of the same key
and new ones appended; a delete removes keys instead. The set goes through
:func:`~plait.core.config.translate` once per ``Sidecar`` resource (or once
with no sidecar when there is none), with ``unknown_filters=True``: a filter
type this control plane's registry lacks is accepted with a warning (the
sidecars that have it installed check its config; those without it NACK),
while every type it does know is checked here, exactly as a sidecar would.

References are checked strictly: an HTTPRoute to an unknown Service, a
``ref`` to an unknown Filter, a Workload of an unknown Service are rejected,
and a delete that would leave such a reference is refused naming the referrer.

Creation order (the Gateway API "oldest route wins" tie-breaker) is the stored
``create_revision``; an update keeps its resource's place, as Kubernetes keeps
``creationTimestamp``; new documents follow in the order written.

Callers hold the API's write lock from :func:`plan` until the puts are done,
so two writers never validate against the same stale state.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait.controlplane._kinds import normalize_kind
from plait.controlplane._warnings import client_warnings
from plait.controlplane.store import Key, StoredResource
from plait.core.config import ParsedDocument, parse_text, resources_of, translate
from plait.sdk import ConfigError, FilterSpec

__all__ = [
    "Plan",
    "candidate_set",
    "canonical_kind",
    "key_of",
    "plan",
    "reparse_all",
    "stored_source",
    "unknown_filter_warnings",
    "validate",
]


def canonical_kind(text: str) -> str | None:
    """``Service`` for ``service``, ``SERVICE`` or ``svc`` (``_kinds``); ``None`` if unknown."""
    return normalize_kind(text)


def key_of(doc: ParsedDocument) -> Key:
    return Key(doc.meta.kind, doc.meta.namespace, doc.meta.name)


def stored_source(key: Key) -> str:
    """The ``source`` a stored document is re-parsed under (it appears in errors)."""
    return f"store:{key}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A validated write: what to put and delete, and what the operator should hear."""

    puts: tuple[ParsedDocument, ...] = ()
    deletes: tuple[Key, ...] = ()
    missing: tuple[Key, ...] = ()
    """Keys asked to be deleted that are not stored."""
    warnings: tuple[str, ...] = field(default=())


def plan(
    stored: Sequence[StoredResource],
    filter_types: Mapping[str, FilterSpec[Any]],
    *,
    puts: Sequence[ParsedDocument] = (),
    deletes: Sequence[Key] = (),
) -> Plan:
    """Check that writing ``puts`` and deleting ``deletes`` leaves a valid config.

    Raises:
        ConfigError: the first problem, naming the source (``FILE:LINE`` or
            ``store:Kind/ns/name``), the resource, the field and what was expected.
    """
    _check_duplicates(puts)
    current = {r.key: r for r in stored}
    candidate = candidate_set(stored, puts, deletes)
    validate(candidate, filter_types)
    warnings = unknown_filter_warnings(puts, filter_types) + client_warnings(puts, candidate)
    return Plan(
        puts=tuple(puts),
        deletes=tuple(k for k in deletes if k in current),
        missing=tuple(k for k in deletes if k not in current),
        warnings=tuple(warnings),
    )


def candidate_set(
    stored: Sequence[StoredResource],
    puts: Sequence[ParsedDocument] = (),
    deletes: Sequence[Key] = (),
) -> list[ParsedDocument]:
    """The config a write would leave, in creation order (updates keep their place)."""
    applied = {key_of(p): p for p in puts}
    gone = set(deletes)
    out: list[ParsedDocument] = []
    for r in sorted(stored, key=lambda r: r.create_revision):
        if r.key in gone:
            continue
        replaced = applied.pop(r.key, None)
        out.append(replaced if replaced is not None else _reparse(r))
    out.extend(applied.values())
    return out


def validate(docs: Sequence[ParsedDocument], filter_types: Mapping[str, FilterSpec[Any]]) -> None:
    """Translate ``docs`` for every Sidecar among them (once without one if there is none)."""
    ordered = [_with_order(d, i) for i, d in enumerate(docs)]
    res = resources_of(ordered, sorted({d.meta.loc.file for d in ordered}))
    sidecars: list[str | None] = [f"{s.meta.name}.{s.meta.namespace}" for s in res.sidecars]
    for sidecar in sidecars or [None]:
        translate(res, filter_types, sidecar=sidecar, unknown_filters=True)


def reparse_all(stored: Iterable[StoredResource]) -> list[ParsedDocument]:
    """Every stored document parsed again, in creation order."""
    return [_reparse(r) for r in sorted(stored, key=lambda r: r.create_revision)]


def unknown_filter_warnings(
    docs: Iterable[ParsedDocument], filter_types: Mapping[str, FilterSpec[Any]]
) -> list[str]:
    """One warning per filter type used in ``docs`` that the registry does not know."""
    unknown: dict[str, str] = {}
    for d in docs:
        for use in _filter_uses(d.resource):
            if use.type is not None and use.type not in filter_types:
                unknown.setdefault(use.type, f"{d.meta.kind}/{d.meta.namespace}/{d.meta.name}")
    return [
        f"filter type {t!r} (used by {where}) is not installed in the control plane; "
        "sidecars without it will NACK"
        for t, where in sorted(unknown.items())
    ]


def _filter_uses(resource: Any) -> list[Any]:
    """Every ``FilterUse`` of a typed resource (Filter, Sidecar listeners, route rules)."""
    if (use := getattr(resource, "use", None)) is not None:
        return [use]
    uses: list[Any] = []
    for listener in getattr(resource, "listeners", ()):
        uses += listener.filters
    for rule in getattr(resource, "rules", ()):
        uses += getattr(rule, "filters", ())  # an AuthorizationPolicy's rules hold none
    return uses


def _check_duplicates(puts: Sequence[ParsedDocument]) -> None:
    first: dict[Key, ParsedDocument] = {}
    for p in puts:
        key = key_of(p)
        if (seen := first.get(key)) is not None:
            raise p.meta.loc.error(
                f"duplicate {key.kind} {key.namespace}/{key.name} "
                f"(first defined at {seen.meta.loc.file_line})"
            )
        first[key] = p


def _reparse(r: StoredResource) -> ParsedDocument:
    text = json.dumps(r.document)
    docs = parse_text(text, stored_source(r.key))
    if len(docs) != 1 or key_of(docs[0]) != r.key:  # only if the store was edited by hand
        raise ConfigError("stored document does not match its key", file=stored_source(r.key))
    return docs[0]


def _with_order(doc: ParsedDocument, order: int) -> ParsedDocument:
    """``doc`` at creation position ``order`` (its Meta is copied into the typed resource too)."""
    if doc.meta.order == order:
        return doc
    meta = dataclasses.replace(doc.meta, order=order)
    resource = dataclasses.replace(doc.resource, meta=meta)
    return ParsedDocument(meta=meta, resource=resource, document=doc.document)
