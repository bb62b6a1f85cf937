"""The ``Telemetry`` kind (Istio's ``telemetry.istio.io/v1`` shape): access logs and tracing
turned on and off mesh-wide, per namespace or per workload.

Levels, as Istio: a ``Telemetry`` in the root namespace (:data:`ROOT_NAMESPACE`,
``plait-system``) without a selector is mesh-wide; one in a namespace without a selector covers
that namespace; one with ``spec.selector.matchLabels`` covers the sidecars of its namespace
whose ``Sidecar`` ``metadata.labels`` match. For each of ``accessLogging`` and ``tracing``,
the levels are merged from the mesh down: a field a more specific level sets (``providers``,
``disabled``, ``sampling``/``randomSamplingPercentage``, ``disableSpanReporting``) replaces
the one above; among equals the oldest resource wins. A sidecar that no ``Telemetry`` covers
keeps its ``Sidecar``'s ``accessLog``/``tracing``; one that a ``Telemetry`` covers takes the
section from it (a covered section that ends up disabled turns the Sidecar's setting off too).

Providers (Istio's MeshConfig ``extensionProviders``; plait has no MeshConfig, so the mesh-wide
``Telemetry`` declares them in ``spec.extensionProviders``):

* ``{name, envoyFileAccessLog: {path: FILE}}``: JSON access-log lines to ``FILE``
  (``/dev/stdout`` for the container log). The built-in provider ``envoy`` is
  ``/dev/stdout``, as in Istio, and is the one used when no level names a provider.
* ``{name, opentelemetry: {endpoint: http://HOST:PORT, protocol: http/protobuf | grpc}}``:
  spans over OTLP (the same fields as ``Sidecar.spec.tracing.otlp``).

plait writes one access log and exports to one collector per sidecar: at most one
``accessLogging`` and one ``tracing`` entry per resource, each with at most one provider.
``accessLogging[].sampling`` (a plait field; Istio filters with a CEL ``filter``, which plait
does not run) is the percent of successful requests logged: a failed one is always logged.
``tracing[].disableSpanReporting: true`` turns tracing off for the sidecar (no spans and no
trace headers added; the caller's pass through).

``metrics`` (at most one entry) turns the sidecar's request metrics (``plait_requests_total``
and the duration histogram on the admin ``/metrics``) off and on, as Istio's
``overrides[].disabled``: each override's ``match.mode`` is ``CLIENT`` (the outbound
listeners), ``SERVER`` (the inbound ones) or ``CLIENT_AND_SERVER`` (the default), its
``match.metric`` ``ALL_METRICS`` (plait records a request's count and duration together, so
they go off together); a later override in the list, and a more specific level, wins per
mode. Its provider, if named, is ``prometheus`` (the admin endpoint). The other metrics (TLS,
retries, breakers, config) stay on. A sidecar with request metrics off is absent from
``plait stat``/``top`` for that direction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._fields import Fields, Loc
from ._model import TracingConfig
from ._resources import _OTLP_ENDPOINT as _OTLP
from ._resources import Meta, SidecarRes
from ._security import ROOT_NAMESPACE, _selector, selects

__all__ = [
    "DEFAULT_ACCESS_LOG_PROVIDER",
    "METRICS_PROVIDER",
    "Resolved",
    "TelemetryRes",
    "check_providers",
    "parse_telemetry",
    "telemetry_for",
]

DEFAULT_ACCESS_LOG_PROVIDER = "envoy"
"""The built-in access-log provider: ``/dev/stdout`` (Istio's ``envoy`` provider)."""
METRICS_PROVIDER = "prometheus"
"""The one metrics provider: the admin ``/metrics`` endpoint Prometheus scrapes."""
_PROTOCOLS = ("http/protobuf", "grpc")
_MODES = ("CLIENT_AND_SERVER", "CLIENT", "SERVER")


@dataclass(frozen=True, slots=True)
class Section:
    """One ``accessLogging``/``tracing`` entry: ``None`` fields inherit."""

    loc: Loc
    provider: str | None = None
    disabled: bool | None = None
    sampling: float | None = None


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """One ``metrics`` entry: whether each direction's request metrics are off (``None``:
    inherited)."""

    client_off: bool | None = None
    server_off: bool | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the Telemetry resources make of one sidecar's access log, tracing and metrics."""

    access_log: str | None
    access_log_sampling: float
    tracing: TracingConfig | None
    metrics_client: bool = True
    """Request metrics on the outbound listeners."""
    metrics_server: bool = True
    """Request metrics on the inbound listeners."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryRes:
    meta: Meta
    selector: dict[str, str] | None
    access_logging: Section | None
    tracing: Section | None
    metrics: MetricsSection | None = None
    providers: dict[str, Any] = field(default_factory=dict)
    """Declared providers (mesh-wide resource only): name → ``str`` file path or a
    ``(endpoint, protocol)`` pair."""


def parse_telemetry(meta: Meta, spec: Fields) -> TelemetryRes:
    selector = _selector(spec)
    metrics = _metrics(spec)
    access = _section(spec, "accessLogging", "sampling", None)
    tracing = _section(spec, "tracing", "randomSamplingPercentage", "disableSpanReporting")
    providers: dict[str, Any] = {}
    for p in spec.maps("extensionProviders", max_items=64):
        if meta.namespace != ROOT_NAMESPACE or selector is not None:
            raise p.loc.error(
                f"providers are declared by the mesh-wide Telemetry (namespace {ROOT_NAMESPACE}, "
                "no selector)"
            )
        name = p.text("name")
        if name in providers or name == DEFAULT_ACCESS_LOG_PROVIDER:
            raise p.at("name").error(f"duplicate provider name {name!r}")
        if (f := p.sub("envoyFileAccessLog")) is not None:
            providers[name] = f.text("path", what="a file path (/dev/stdout for the log)")
            f.done()
        elif (o := p.sub("opentelemetry")) is not None:
            endpoint = o.text("endpoint", pattern=_OTLP, what="http://HOST:PORT")
            providers[name] = (endpoint, o.text("protocol", "http/protobuf", choices=_PROTOCOLS))
            o.done()
        else:
            raise p.loc.error("expected envoyFileAccessLog: {path} or opentelemetry: {endpoint}")
        p.done()
    spec.done()
    return TelemetryRes(
        meta=meta,
        selector=selector,
        access_logging=access,
        tracing=tracing,
        metrics=metrics,
        providers=providers,
    )


def _metrics(spec: Fields) -> MetricsSection | None:
    """``metrics: [{providers: [{name: prometheus}], overrides: [{match, disabled}]}]``."""
    entries = spec.maps("metrics")
    if not entries:
        return None
    if len(entries) > 1:
        raise spec.at("metrics").expected("one entry (plait has one per sidecar)", len(entries))
    f = entries[0]
    names = f.items("providers")
    if len(names) > 1:
        raise f.at("providers").expected("at most one provider", len(names))
    for item, loc in names:
        ref = Fields(item, loc)
        ref.text("name", choices=(METRICS_PROVIDER,))
        ref.done()
    client: bool | None = None
    server: bool | None = None
    for o in f.maps("overrides", max_items=64):
        mode = "CLIENT_AND_SERVER"
        if (m := o.sub("match")) is not None:
            m.text("metric", "ALL_METRICS", choices=("ALL_METRICS",))
            mode = m.text("mode", mode, choices=_MODES)
            m.done()
        off = _flag(o, "disabled")
        o.done()
        if off is None:
            continue
        if mode != "SERVER":
            client = off
        if mode != "CLIENT":
            server = off
    f.done()
    return MetricsSection(client, server)


def _section(spec: Fields, key: str, pct: str, no_report: str | None) -> Section | None:
    entries = spec.maps(key)
    if not entries:
        return None
    if len(entries) > 1:
        raise spec.at(key).expected("one entry (plait has one per sidecar)", len(entries))
    f = entries[0]
    names = [item for item, _ in f.items("providers")]
    provider: str | None = None
    if len(names) > 1:
        raise f.at("providers").expected("at most one provider", len(names))
    if names:
        ref = Fields(names[0], f.at("providers").index(0))
        provider = ref.text("name")
        ref.done()
    disabled = _flag(f, "disabled")
    if no_report is not None and (report := _flag(f, no_report)) is not None:
        disabled = report or bool(disabled)  # either one turns it off
    sampling: float | None = None
    if f.has(pct):
        raw = f.raw_value(pct)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 100:
            raise f.at(pct).expected("a percentage from 0 to 100", raw)
        sampling = float(raw)
    f.done()
    return Section(f.loc, provider, disabled, sampling)


def _flag(f: Fields, key: str) -> bool | None:
    if not f.has(key):
        return None
    value = f.raw_value(key)
    if not isinstance(value, bool):
        raise f.at(key).expected("true or false", value)
    return value


def telemetry_for(telemetries: Iterable[TelemetryRes], sidecar: SidecarRes) -> Resolved:
    """The access log and tracing of ``sidecar`` (see the module docstring).

    Raises:
        ConfigError: a section names a provider that is not declared, or one of the wrong
            kind, or tracing is on without any provider (naming the Telemetry's field).
    """
    ns = sidecar.meta.namespace
    labels = dict(sidecar.meta.labels)
    ordered = sorted(telemetries, key=lambda t: t.meta.order)
    mesh, providers = _mesh(ordered)
    space = next((t for t in ordered if t.selector is None and t.meta.namespace == ns), None)
    workload = next(
        (t for t in ordered
         if t.selector is not None and t.meta.namespace == ns and selects(t.selector, labels)),
        None,
    )  # fmt: skip
    levels = [t for t in (mesh, space if space is not mesh else None, workload) if t is not None]
    access = _merge(t.access_logging for t in levels)
    trace = _merge(t.tracing for t in levels)
    client_off = server_off = False
    for t in levels:
        if t.metrics is not None:
            client_off = t.metrics.client_off if t.metrics.client_off is not None else client_off
            server_off = t.metrics.server_off if t.metrics.server_off is not None else server_off
    out = Resolved(sidecar.access_log, 100.0, sidecar.tracing, not client_off, not server_off)
    if access is not None:
        name = access.provider or DEFAULT_ACCESS_LOG_PROVIDER
        path = _provider(providers, name, str, "an envoyFileAccessLog provider", access.loc)
        sampling = access.sampling if access.sampling is not None else 100.0
        out = replace(
            out, access_log=None if access.disabled else path, access_log_sampling=sampling
        )
    if trace is not None:
        tracing = None
        if not trace.disabled:
            if trace.provider is None:
                raise trace.loc.key("providers").error(
                    "tracing needs an opentelemetry provider (here or in a less specific Telemetry)"
                )
            endpoint, protocol = _provider(
                providers, trace.provider, tuple, "an opentelemetry provider", trace.loc
            )
            tracing = TracingConfig(
                endpoint=endpoint,
                protocol=protocol,
                sampling=trace.sampling if trace.sampling is not None else 1.0,
                service=f"{sidecar.meta.name}.{ns}",
            )
        out = replace(out, tracing=tracing)
    return out


def check_providers(telemetries: Iterable[TelemetryRes]) -> None:
    """Every provider a Telemetry names is declared, and of the section's kind (checked
    for all of them, whether a sidecar is covered or not)."""
    ordered = sorted(telemetries, key=lambda t: t.meta.order)
    _, providers = _mesh(ordered)
    for t in ordered:
        for section, kind, what in (
            (t.access_logging, str, "an envoyFileAccessLog provider"),
            (t.tracing, tuple, "an opentelemetry provider"),
        ):
            if section is not None and section.provider is not None:
                _provider(providers, section.provider, kind, what, section.loc)


def _mesh(ordered: list[TelemetryRes]) -> tuple[TelemetryRes | None, dict[str, Any]]:
    """The mesh-wide Telemetry (the oldest) and the providers: the built-in and its own."""
    mesh = next(
        (t for t in ordered if t.selector is None and t.meta.namespace == ROOT_NAMESPACE), None
    )
    providers: dict[str, Any] = {DEFAULT_ACCESS_LOG_PROVIDER: "/dev/stdout"}
    if mesh is not None:
        providers.update(mesh.providers)
    return mesh, providers


def _merge(sections: Iterable[Section | None]) -> Section | None:
    """The levels' entries, the more specific ones' fields over the others'."""
    merged: Section | None = None
    for s in sections:
        if s is None:
            continue
        if merged is None:
            merged = s
            continue
        merged = Section(
            s.loc,
            s.provider if s.provider is not None else merged.provider,
            s.disabled if s.disabled is not None else merged.disabled,
            s.sampling if s.sampling is not None else merged.sampling,
        )
    return merged


def _provider(providers: Mapping[str, Any], name: str, kind: type, what: str, loc: Loc) -> Any:
    value = providers.get(name)
    if not isinstance(value, kind):
        known = ", ".join(sorted(n for n, v in providers.items() if isinstance(v, kind)))
        problem = "is not declared" if value is None else "is of another kind"
        raise loc.key("providers").error(
            f"provider {name!r} {problem}: expected {what} declared in the mesh-wide Telemetry's "
            f"extensionProviders ({ROOT_NAMESPACE}; known: {known or 'none'})"
        )
    return value
