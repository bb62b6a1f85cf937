"""The ``Filter`` kind: a named filter, and one the operator attaches to workloads.

A ``Filter`` resource (``spec.python.type``, ``config``, ``failStrategy``; or
``spec.wasm``, a Proxy-Wasm module: ``_wasm_spec.py``) without
``selector`` is a named filter that listeners and routes use by reference. With one
(after Istio's ``WasmPlugin``), it is also put in the chains of the sidecars it
selects, with no edit to their ``Sidecar`` resources:

* ``selector.matchLabels`` is matched against the ``Sidecar``'s labels in the
  Filter's namespace (``{}`` selects every sidecar there); a Filter in the root
  namespace (``plait-system``) selects across the mesh;
* ``match[].mode`` limits it to ``SERVER`` (inbound) or ``CLIENT`` (outbound)
  listeners (default both), ``match[].ports[].number`` to listeners on those ports;
* ``phase`` places it in the listener's chain: ``AUTHN`` first, then ``AUTHZ``,
  then the authorization filter that AuthorizationPolicies make, then ``STATS``,
  then the listener's own filters, then ``UNSPECIFIED_PHASE`` (the default) last;
  within a phase a higher ``priority`` runs first, then by namespace/name.

Only HTTP listeners take filters. The chain is rebuilt with each config
snapshot, so a pushed change replaces the chain for new streams while the
streams in flight finish on the old one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from plait.sdk import FailStrategy

from ._fields import Fields
from ._model import Direction, FilterEntry, ListenerConfig
from ._resources import FILTER_TYPE, FilterUse, Meta, SidecarRes, parse_fail_strategy
from ._security import AUTHZ_FILTER, ROOT_NAMESPACE, selects
from ._wasm_spec import parse_wasm_filter

__all__ = ["PHASES", "Attachment", "FilterRes", "attach_filters", "parse_filter"]

PHASES = ("AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE")
_MODES = ("CLIENT", "SERVER", "CLIENT_AND_SERVER")


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    selector: dict[str, str]
    phase: str
    priority: int
    inbound: bool
    outbound: bool
    ports: frozenset[int]
    """Listener ports it applies to (empty: every port)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterRes:
    meta: Meta
    use: FilterUse
    attach: Attachment | None = None


def parse_filter(meta: Meta, spec: Fields) -> FilterRes:
    wasm = spec.sub("wasm")
    if wasm is not None:
        use = parse_wasm_filter(meta, spec, wasm)
        attach = _parse_attachment(spec)
        spec.done()
        return FilterRes(meta=meta, use=use, attach=attach)
    python = spec.sub("python")
    if python is None:
        raise spec.loc.error("missing required field 'python' (or 'wasm')")
    use = FilterUse(
        loc=python.at("type"),
        type=python.text("type", pattern=FILTER_TYPE, what="a filter type name"),
        version=python.opt_text("version", what="a version specifier (e.g. '>=1.2,<2')"),
        name=meta.name,
        config=spec.raw_value("config"),
        config_loc=spec.at("config"),
        fail_strategy=spec.convert("failStrategy", parse_fail_strategy, FailStrategy.FAIL_CLOSED),
    )
    python.done()
    attach = _parse_attachment(spec)
    spec.done()
    return FilterRes(meta=meta, use=use, attach=attach)


def _parse_attachment(spec: Fields) -> Attachment | None:
    """The attachment fields of a ``Filter`` spec; ``None`` without ``selector``."""
    sel = spec.sub("selector")
    phase = spec.text("phase", "UNSPECIFIED_PHASE", choices=PHASES)
    priority = spec.integer("priority", 0, lo=-(1 << 31), hi=(1 << 31) - 1)
    inbound = outbound = False
    ports: set[int] = set()
    for m in spec.maps("match", max_items=16):
        mode = m.text("mode", "CLIENT_AND_SERVER", choices=_MODES)
        inbound |= mode != "CLIENT"
        outbound |= mode != "SERVER"
        for p in m.maps("ports", max_items=64):
            ports.add(p.integer("number", lo=1, hi=65535))
            p.done()
        m.done()
    if sel is None:
        for key in ("phase", "priority", "match"):
            if key in spec.raw:
                raise spec.at(key).error("only a Filter with a selector is attached to chains")
        return None
    selector = sel.labels("matchLabels")
    sel.done()
    if not spec.has("match"):
        inbound = outbound = True
    return Attachment(
        selector=selector,
        phase=phase,
        priority=priority,
        inbound=inbound,
        outbound=outbound,
        ports=frozenset(ports),
    )


def _applies(meta: Meta, att: Attachment, sidecar: SidecarRes) -> bool:
    ns = sidecar.meta.namespace
    if meta.namespace not in (ns, ROOT_NAMESPACE):
        return False
    return selects(att.selector, dict(sidecar.meta.labels))


def attach_filters(
    filters: Iterable[FilterRes],
    sidecar: SidecarRes,
    built: list[ListenerConfig],
    entries: Mapping[tuple[str, str], FilterEntry],
) -> list[ListenerConfig]:
    """``built`` with the Filters that select ``sidecar`` placed in its HTTP chains
    (``entries``: each Filter's chain entry by namespace and name)."""
    chosen = [
        (f, f.attach)
        for f in filters
        if f.attach is not None and _applies(f.meta, f.attach, sidecar)
    ]
    if not chosen:
        return built
    chosen.sort(
        key=lambda fa: (PHASES.index(fa[1].phase), -fa[1].priority, fa[0].meta.namespace,
                        fa[0].meta.name)
    )  # fmt: skip
    placed = [(att, entries[(f.meta.namespace, f.meta.name)]) for f, att in chosen]
    out = []
    for lc in built:
        out.append(replace(lc, filters=_placed(lc, placed)) if lc.protocol.is_http else lc)
    return out


def _placed(
    lc: ListenerConfig, entries: list[tuple[Attachment, FilterEntry]]
) -> tuple[FilterEntry, ...]:
    inbound = lc.direction is Direction.INBOUND
    mine = [
        (att.phase, e)
        for att, e in entries
        if (att.inbound if inbound else att.outbound) and (not att.ports or lc.port in att.ports)
    ]
    own = list(lc.filters)
    authz = own[:1] if own and own[0].type == AUTHZ_FILTER else []
    rest = own[len(authz) :]
    early = [e for phase, e in mine if phase in ("AUTHN", "AUTHZ")]
    stats = [e for phase, e in mine if phase == "STATS"]
    late = [e for phase, e in mine if phase == "UNSPECIFIED_PHASE"]
    return (*early, *authz, *stats, *rest, *late)
