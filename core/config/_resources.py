"""The ``Service`` and ``Sidecar`` kinds, and filter uses: one document → one typed resource.

Each ``parse_*`` checks one document on its own (types, ranges, unknown
fields) and keeps the location of everything that the translator checks later
against other documents (service and filter references, filter types), so that
those errors point at the right line too. ``HTTPRoute`` lives in ``_httproute.py``, the
``Filter`` kind in ``_attach.py``.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass

from plait.sdk import FailStrategy

from ._fields import Fields, Loc
from ._model import AdminConfig, Direction, Endpoint, ListenerTLS, Protocol, Timeouts, TracingConfig

__all__ = [
    "FILTER_TYPE",
    "HOSTNAME",
    "LABEL",
    "SUBDOMAIN",
    "FilterUse",
    "ListenerRes",
    "Meta",
    "ModuleRef",
    "ServicePort",
    "ServiceRes",
    "SidecarRes",
    "parse_fail_strategy",
    "parse_filter_use",
    "parse_service",
    "parse_sidecar",
]

# RFC 1123 label (Kubernetes names of Services and namespaces) and DNS subdomain.
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
)
_SERVICE_REF = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$")
_OTLP_ENDPOINT = re.compile(r"^https?://[^/\s]+(/\S*)?$")
FILTER_TYPE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")
_PROTOCOLS = tuple(p.value for p in Protocol)
_FAIL = tuple(f.value for f in FailStrategy)
LABEL_HINT = "a lower-case DNS label ([a-z0-9-], at most 63 characters)"
SUBDOMAIN_HINT = "a lower-case DNS name ([a-z0-9-.], at most 253 characters)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """``kind`` + ``metadata`` of one document, and where it came from."""

    kind: str
    name: str
    namespace: str
    loc: Loc
    """The document itself (``file:line``, ``Kind/name``)."""
    order: int
    """Creation order: position among all documents (file order, then document order)."""
    labels: tuple[tuple[str, str], ...] = ()
    """``metadata.labels`` (what policy selectors match, for a ``Sidecar``)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    name: str | None
    port: int
    protocol: Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRes:
    meta: Meta
    ports: tuple[ServicePort, ...]
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterUse:
    """One filter in a chain, before the registry is consulted: a type or a ``ref``."""

    loc: Loc
    type: str | None = None
    ref: str | None = None
    name: str | None = None
    config: object = None
    config_loc: Loc | None = None
    fail_strategy: FailStrategy = FailStrategy.FAIL_CLOSED
    version: str | None = None
    """A PEP 440 specifier the installed package of ``type`` must satisfy."""
    module: ModuleRef | None = None
    """A ``Filter``'s ``spec.wasm`` module: where it comes from and its hash."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleRef:
    """The module of a ``spec.wasm`` Filter: ``url`` (an https URL or a file path, as
    written) and the ``sha256`` of its bytes."""

    url: str
    sha256: str
    loc: Loc
    """``spec.wasm`` (``loc.key("url")`` and ``loc.key("sha256")`` name the fields)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerRes:
    loc: Loc
    direction: Direction
    name: str
    port: int
    protocol: Protocol
    bind: str
    filters: tuple[FilterUse, ...]
    timeouts: Timeouts
    service: str | None = None
    """Egress: ``name`` or ``name.namespace`` of the target Service."""
    service_port: int | None = None
    default_endpoint: Endpoint | None = None
    """Ingress: the local app."""
    tls: ListenerTLS | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SidecarRes:
    meta: Meta
    admin: AdminConfig
    listeners: tuple[ListenerRes, ...]
    drain: float
    max_request_headers_kb: int
    access_log: str | None = None
    tracing: TracingConfig | None = None


# -- Service -----------------------------------------------------------------------------


def parse_service(meta: Meta, spec: Fields) -> ServiceRes:
    ports: list[ServicePort] = []
    for p in spec.maps("ports"):
        port = ServicePort(
            name=p.opt_text("name", pattern=LABEL, what=LABEL_HINT),
            port=p.integer("port", lo=1, hi=65535),
            protocol=Protocol(p.text("protocol", "http", choices=_PROTOCOLS)),
        )
        p.done()
        for other in ports:
            if other.port == port.port or (port.name and other.name == port.name):
                raise p.loc.error(f"duplicate port {port.name or port.port}")
        ports.append(port)
    if not ports:
        raise spec.at("ports").error("expected at least one port")
    endpoints = tuple(parse_endpoint(e) for e in spec.maps("endpoints"))
    spec.done()
    return ServiceRes(meta=meta, ports=tuple(ports), endpoints=endpoints)


def parse_endpoint(f: Fields) -> Endpoint:
    ep = Endpoint(
        address=f.convert("address", parse_host, ""),
        port=f.integer("port", lo=1, hi=65535),
        weight=f.integer("weight", 1, lo=1, hi=1_000_000),
        labels=f.labels("labels"),
    )
    if not ep.address:
        raise f.loc.error("missing required field 'address'")
    f.done()
    return ep


def parse_host(value: object, loc: Loc) -> str:
    """An IP address or a DNS host name."""
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            if HOSTNAME.match(value):
                return value
    raise loc.expected("an IP address or host name", value)


def parse_ip(value: object, loc: Loc) -> str:
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    raise loc.expected("an IP address", value)


def parse_host_port(value: object, loc: Loc) -> Endpoint:
    """``host:port`` or ``[v6]:port``."""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if sep and host and port.isdigit() and 1 <= int(port) <= 65535:
            return Endpoint(address=parse_host(host, loc), port=int(port))
    raise loc.expected("HOST:PORT (e.g. 127.0.0.1:8080)", value)


# -- Filter ------------------------------------------------------------------------------


def parse_fail_strategy(value: object, loc: Loc) -> FailStrategy:
    if value not in _FAIL:
        raise loc.expected("one of " + ", ".join(_FAIL), value)
    return FailStrategy(value)


def parse_filter_use(f: Fields) -> FilterUse:
    """A listener filter: ``{type, config, failStrategy, name}`` or ``{ref: FILTER}``."""
    if f.has("ref"):
        ref = f.text("ref", pattern=SUBDOMAIN, what="the name of a Filter resource")
        f.done()
        return FilterUse(loc=f.at("ref"), ref=ref)
    use = FilterUse(
        loc=f.at("type"),
        type=f.text("type", pattern=FILTER_TYPE, what="a filter type name"),
        name=f.opt_text("name"),
        config=f.raw_value("config"),
        config_loc=f.at("config"),
        fail_strategy=f.convert("failStrategy", parse_fail_strategy, FailStrategy.FAIL_CLOSED),
    )
    f.done()
    return use


# -- Sidecar -----------------------------------------------------------------------------


def parse_sidecar(meta: Meta, spec: Fields) -> SidecarRes:
    admin = AdminConfig()
    if (a := spec.sub("admin")) is not None:
        admin = AdminConfig(
            bind=a.convert("bind", parse_ip, admin.bind),
            port=a.integer("port", admin.port, lo=1, hi=65535),
        )
        a.done()
    drain = spec.duration("drainTimeout", Timeouts().drain, allow_zero=True)
    listeners = [
        _parse_listener(f, Direction.OUTBOUND, drain) for f in spec.maps("egress", max_items=1024)
    ] + [_parse_listener(f, Direction.INBOUND, drain) for f in spec.maps("ingress", max_items=1024)]
    res = SidecarRes(
        meta=meta,
        admin=admin,
        listeners=tuple(listeners),
        drain=drain,
        max_request_headers_kb=spec.integer("maxRequestHeadersKb", 60, lo=1, hi=8192),
        access_log=_parse_access_log(spec.sub("accessLog")),
        tracing=_parse_tracing(spec.sub("tracing"), meta),
    )
    spec.done()
    return res


def _parse_access_log(f: Fields | None) -> str | None:
    """``accessLog: {path: FILE}`` (``/dev/stdout`` for the container log)."""
    if f is None:
        return None
    path = f.text("path")
    f.done()
    return path


def _parse_tracing(f: Fields | None, meta: Meta) -> TracingConfig | None:
    """``tracing: {sampling: PERCENT, otlp: {endpoint: http://HOST:PORT, protocol: P}}``."""
    if f is None:
        return None
    raw = f.raw_value("sampling", 1.0)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 100:
        raise f.at("sampling").expected("a percentage from 0 to 100", raw)
    otlp = f.sub("otlp", required=True)
    assert otlp is not None
    endpoint = otlp.text("endpoint", pattern=_OTLP_ENDPOINT, what="http://HOST:PORT")
    protocol = otlp.text("protocol", "http/protobuf", choices=("http/protobuf", "grpc"))
    otlp.done()
    f.done()
    service = f"{meta.name}.{meta.namespace}"
    return TracingConfig(endpoint=endpoint, protocol=protocol, sampling=float(raw), service=service)


def _parse_listener(f: Fields, direction: Direction, drain: float) -> ListenerRes:
    port = f.sub("port", required=True)
    assert port is not None
    number = port.integer("number", lo=1, hi=65535)
    protocol = Protocol(port.text("protocol", "http", choices=_PROTOCOLS))
    port.done()
    outbound = direction is Direction.OUTBOUND
    prefix = "outbound" if outbound else "inbound"
    res = ListenerRes(
        loc=f.loc,
        direction=direction,
        name=f.text("name", f"{prefix}|{number}"),
        port=number,
        protocol=protocol,
        bind=f.convert("bind", parse_ip, "127.0.0.1" if outbound else "0.0.0.0"),
        service=f.text("service", pattern=_SERVICE_REF, what="NAME or NAME.NAMESPACE")
        if outbound
        else None,
        service_port=f.opt_integer("servicePort", lo=1, hi=65535) if outbound else None,
        default_endpoint=None if outbound else f.convert("defaultEndpoint", parse_host_port, None),
        filters=tuple(parse_filter_use(u) for u in f.maps("filters", max_items=64)),
        timeouts=_parse_listener_timeouts(f.sub("timeouts"), drain),
        tls=_parse_tls(f.sub("tls")),
    )
    if not outbound and res.default_endpoint is None:
        raise f.loc.error("missing required field 'defaultEndpoint'")
    f.done()
    return res


def _parse_tls(t: Fields | None) -> ListenerTLS | None:
    """``tls: {certFile, keyFile}``: both PEM files must load as a certificate chain and key."""
    if t is None:
        return None
    tls = ListenerTLS(cert_file=t.text("certFile"), key_file=t.text("keyFile"))
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            tls.cert_file, tls.key_file
        )
    except (OSError, ssl.SSLError) as exc:
        raise t.loc.error(
            f"tls: expected a readable PEM certificate chain and matching key "
            f"(certFile {tls.cert_file!r}, keyFile {tls.key_file!r}): {exc}"
        ) from None
    t.done()
    return tls


def _parse_listener_timeouts(t: Fields | None, drain: float) -> Timeouts:
    d = Timeouts()
    if t is None:
        return Timeouts(drain=drain)
    res = Timeouts(
        request=t.opt_duration("request"),
        idle=t.duration("idle", d.idle),
        request_headers=t.duration("requestHeaders", d.request_headers),
        drain=drain,
    )
    t.done()
    return res
