"""How the CLI shows API answers: ``plait get`` tables, YAML/JSON, apply results, check.

Pure functions from decoded JSON to text, so they are tested without a server.
Each kind has its own columns (NAME and NAMESPACE first, as kubectl does);
Workloads show the registry's status (CONNECTED, HEALTHY, ACKED, LAST-NACK),
``-`` when no registry reported one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._registry_view import acked_version, sidecar_name, sidecar_problems

__all__ = ["render_check", "render_documents", "render_results", "render_table"]

Row = Callable[[Mapping[str, Any]], list[str]]


def _spec(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = doc.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _service(doc: Mapping[str, Any]) -> list[str]:
    s = _spec(doc)
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'http')}" for p in s.get("ports", []))
    return [ports or "-", str(len(s.get("endpoints", [])))]


def _route(doc: Mapping[str, Any]) -> list[str]:
    s = _spec(doc)
    parents = ",".join(str(p.get("name")) for p in s.get("parentRefs", []))
    return [parents or "-", str(len(s.get("rules", [])))]


def _filter(doc: Mapping[str, Any]) -> list[str]:
    s = _spec(doc)
    python, wasm = s.get("python"), s.get("wasm")
    if isinstance(wasm, Mapping):  # the module's version is its hash
        return [f"wasm sha256:{str(wasm.get('sha256'))[:12]}"]
    return [str(python.get("type")) if isinstance(python, Mapping) else "-"]


def _sidecar(doc: Mapping[str, Any]) -> list[str]:
    s = _spec(doc)
    ports = [str(lst.get("port", {}).get("number")) for d in ("egress", "ingress")
             for lst in s.get(d, [])]  # fmt: skip
    return [str(len(s.get("egress", []))), str(len(s.get("ingress", []))), ",".join(ports) or "-"]


def _workload(doc: Mapping[str, Any]) -> list[str]:
    s = _spec(doc)
    status = doc.get("status") if isinstance(doc.get("status"), Mapping) else {}
    assert isinstance(status, Mapping)
    connected = status.get("connected")
    healthy = status.get("healthy")
    nack = status.get("lastNack")
    # the type and the whole reason (its cause is at the end), not the version hash
    last = f"{nack.get('type')}: {nack.get('message')}" if isinstance(nack, Mapping) else "-"
    return [
        str(s.get("service", "-")),
        str(s.get("address", "-")),
        "-" if connected is None else ("yes" if connected else "no"),
        "-" if healthy is None else ("yes" if healthy else "no"),
        acked_version(status) if status else "-",
        last,
    ]


def _policy(doc: Mapping[str, Any]) -> list[str]:
    targets = ",".join(str(t.get("name")) for t in _spec(doc).get("targetRefs", []))
    return [targets or "-"]


def _selector(doc: Mapping[str, Any]) -> str:
    sel = _spec(doc).get("selector")
    labels = sel.get("matchLabels") if isinstance(sel, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        return "-"
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _peer_auth(doc: Mapping[str, Any]) -> list[str]:
    mtls = _spec(doc).get("mtls")
    mode = mtls.get("mode", "UNSET") if isinstance(mtls, Mapping) else "UNSET"
    return [_selector(doc), str(mode)]


def _authz(doc: Mapping[str, Any]) -> list[str]:
    s = _spec(doc)
    return [_selector(doc), str(s.get("action", "ALLOW")), str(len(s.get("rules") or []))]


def _telemetry(doc: Mapping[str, Any]) -> list[str]:
    """``on``/``off``/``-`` (inherited) per section, with the sampling when one is set."""
    s = _spec(doc)
    out = [_selector(doc)]
    sections = (
        ("accessLogging", "sampling", "disabled"),
        ("tracing", "randomSamplingPercentage", "disableSpanReporting"),
    )
    for key, pct, off in sections:
        entries = s.get(key)
        entry = entries[0] if isinstance(entries, list) and entries else None
        if not isinstance(entry, Mapping):
            out.append("-")
        elif entry.get("disabled") is True or entry.get(off) is True:
            out.append("off")
        else:
            out.append(f"on {entry[pct]}%" if pct in entry else "on")
    return out


_COLUMNS: dict[str, tuple[tuple[str, ...], Row]] = {
    "Service": (("PORTS", "ENDPOINTS"), _service),
    "HTTPRoute": (("PARENTS", "RULES"), _route),
    "Filter": (("TYPE",), _filter),
    "Sidecar": (("EGRESS", "INGRESS", "PORTS"), _sidecar),
    "Workload": (("SERVICE", "ADDRESS", "CONNECTED", "HEALTHY", "ACKED", "LAST-NACK"), _workload),
    "BackendTrafficPolicy": (("TARGETS",), _policy),
    "PeerAuthentication": (("SELECTOR", "MODE"), _peer_auth),
    "AuthorizationPolicy": (("SELECTOR", "ACTION", "RULES"), _authz),
    "Telemetry": (("SELECTOR", "ACCESS-LOG", "TRACING"), _telemetry),
}


def render_table(kind: str, items: Sequence[Mapping[str, Any]]) -> str:
    """A kubectl-style table of ``items`` (all of ``kind``)."""
    extra, row = _COLUMNS.get(kind, ((), lambda _doc: []))
    rows = [["NAME", "NAMESPACE", *extra]]
    for doc in items:
        meta = doc.get("metadata") or {}
        rows.append([str(meta.get("name")), str(meta.get("namespace", "default")), *row(doc)])
    return _align(rows)


def _align(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def render_documents(items: Sequence[Mapping[str, Any]], output: str) -> str:
    """``yaml``: multi-document YAML (``---`` between); ``json``: one object or ``{"items"}``."""
    if output == "json":
        return json.dumps(items[0] if len(items) == 1 else {"items": list(items)}, indent=2) + "\n"
    import yaml

    return yaml.safe_dump_all([dict(i) for i in items], sort_keys=False, explicit_start=False)


def render_results(results: Sequence[Mapping[str, Any]]) -> str:
    """``service/web created`` per resource (`` (namespace NS)`` outside ``default``)."""
    lines = []
    for r in results:
        where = "" if r.get("namespace") == "default" else f" (namespace {r.get('namespace')})"
        lines.append(f"{str(r.get('kind')).lower()}/{r.get('name')} {r.get('result')}{where}")
    return "".join(line + "\n" for line in lines)


def render_check(body: Mapping[str, Any]) -> str:
    """The ``plait check`` report: config, warnings, sidecars, problems."""
    ok = "ok" if not body.get("problems") else "PROBLEMS"
    out = [f"config: {ok} ({body.get('resources')} resources, revision {body.get('revision')})"]
    out += [f"warning: {w}" for w in body.get("warnings", [])]
    sidecars = body.get("sidecars") or []
    if sidecars:
        rows = [["SIDECAR", "CONNECTED", "ACKED", "PROBLEMS"]]
        for s in sidecars:
            connected = "-" if s.get("connected") is None else "yes" if s["connected"] else "no"
            problems = "; ".join(sidecar_problems(s)) or "-"
            rows.append([sidecar_name(s), connected, acked_version(s), problems])
        out.append(_align(rows).rstrip("\n"))
    else:
        out.append("sidecars: none known")
    out += [f"problem: {p}" for p in body.get("problems", [])]
    return "\n".join(out) + "\n"
