"""What the resource decoders share: strictness checks, plait facts, filters, timeouts, errors.

Strictness: :func:`only` rejects every field that is set on a message beyond the ones plait
reads (``ListFields`` lists exactly the set fields, proto3 scalars when non-default), so a
resource asking for something plait would silently not do (a ``LEAST_REQUEST`` balancer, a
CORS policy, ``case_sensitive: false``) is NACKed with the field's name instead of being
half-honoured. Errors are :class:`~plait.sdk.ConfigError` located like config errors, with the
xDS resource as the "resource" (``Listener outbound|18080: http_filters[0] 'x': ...``): the
text is the NACK's ``error_detail``.

:class:`Incomplete` is not an error of the config: a Listener names a RouteConfiguration, a
Route or TcpProxy a Cluster, a Cluster its ClusterLoadAssignment that has not arrived yet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf import any_pb2  # type: ignore[import-untyped]

from plait.core.config import FilterEntry, Timeouts
from plait.core.config._fields import Loc
from plait.core.config._filter_config import check_version, parse_filter_config
from plait.sdk import FailStrategy, FilterSpec

from .wire import METADATA_KEY, TIMEOUT_KEYS, from_struct, short_name

__all__ = [
    "Incomplete",
    "Message",
    "at",
    "decode_filter",
    "fact",
    "facts_of",
    "ip_address",
    "is_ads",
    "only",
    "sub",
    "timeouts",
    "unpack",
]

Message = Any
"""A protobuf message (protobuf ships no type hints)."""

T = TypeVar("T")
_FIELD_OF_KEY = {key: name for name, key in TIMEOUT_KEYS.items()}
_OPTIONAL_TIMEOUTS = frozenset({"request", "backend_request", "stream_idle"})


class Incomplete(Exception):
    """Resources reference others the client does not hold yet; not a reason to NACK.

    ``missing`` maps a type URL to the names it lacks. The client keeps (or requests) the
    subscriptions and decodes again when more resources arrive.
    """

    def __init__(self, missing: Mapping[str, Iterable[str]]) -> None:
        self.missing = {t: frozenset(n) for t, n in missing.items() if n}
        parts = [f"{short_name(t)} {', '.join(sorted(n))}" for t, n in sorted(self.missing.items())]
        super().__init__("waiting for " + "; ".join(parts))


def at(resource: str, path: str = "") -> Loc:
    """The location ``resource: path`` (``resource`` is e.g. ``"Listener outbound|18080"``)."""
    return Loc("", 0, resource, path)


def sub(loc: Loc, path: str) -> Loc:
    return Loc("", 0, loc.resource, f"{loc.path}.{path}" if loc.path else path)


def only(msg: Message, allowed: Iterable[str], loc: Loc) -> None:
    """Raise if ``msg`` sets a field outside ``allowed``."""
    allowed = frozenset(allowed)
    for fd, _ in msg.ListFields():
        if fd.name not in allowed:
            kind = msg.DESCRIPTOR.name
            raise sub(loc, fd.name).error(f"{kind}.{fd.name} is not supported by plait")


def unpack(packed: Message, cls: type[T], loc: Loc) -> T:
    """The message of type ``cls`` inside ``packed`` (a ``google.protobuf.Any``)."""
    want: str = cls.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    if not isinstance(packed, any_pb2.Any) or packed.TypeName() != want:
        got = packed.TypeName() if isinstance(packed, any_pb2.Any) else type(packed).__name__
        raise loc.error(f"expected a {want}, got {got or 'nothing'}")
    out = cls()
    packed.Unpack(out)
    return out


def is_ads(source: Message) -> bool:
    """Whether a ``ConfigSource`` says "over the ADS stream" (all plait needs)."""
    return bool(source.WhichOneof("config_source_specifier") == "ads")


def facts_of(msg: Message, loc: Loc) -> dict[str, Any]:
    """``msg.metadata.filter_metadata["plait"]`` as JSON values (other keys are not plait's)."""
    if not msg.HasField("metadata"):
        return {}
    only(msg.metadata, ("filter_metadata",), sub(loc, "metadata"))
    if METADATA_KEY not in msg.metadata.filter_metadata:
        return {}
    return from_struct(msg.metadata.filter_metadata[METADATA_KEY])


def fact(facts: Mapping[str, Any], key: str, kind: type[T], default: T, loc: Loc) -> T:
    """``facts[key]`` checked to be a ``kind``, or ``default``."""
    value = facts.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise sub(loc, f"metadata.plait.{key}").expected(f"a {kind.__name__}", value)
    return value


def ip_address(socket_address: Message, loc: Loc) -> tuple[str, int]:
    """``(address, port)`` of a ``SocketAddress``; the address must be an IP address."""
    only(socket_address, ("address", "port_value"), loc)
    try:
        address = str(ipaddress.ip_address(socket_address.address))
    except ValueError:
        raise sub(loc, "address").expected("an IP address", socket_address.address) from None
    port = int(socket_address.port_value)
    if not 1 <= port <= 65535:
        raise sub(loc, "port_value").expected("a port (1-65535)", port)
    return address, port


def timeouts(standard: Mapping[str, float | None], facts: Mapping[str, Any], loc: Loc) -> Timeouts:
    """``Timeouts`` from the standard fields' values and ``facts["timeouts"]``."""
    extra = fact(facts, "timeouts", dict, {}, loc)
    values: dict[str, float | None] = dict(standard)
    for key, value in extra.items():
        name = _FIELD_OF_KEY.get(key)
        where = sub(loc, f"metadata.plait.timeouts.{key}")
        if name is None or name in standard:
            why = "unknown" if name is None else "carried by a standard field"
            raise where.error(f"timeout {key!r} is {why}")
        ok_none = value is None and name in _OPTIONAL_TIMEOUTS
        if not ok_none and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise where.expected("seconds", value)
        values[name] = None if value is None else float(value)
    return Timeouts(**values)  # type: ignore[arg-type]


def decode_filter(
    raw: Mapping[str, Any],
    name: str,
    filter_types: Mapping[str, FilterSpec[Any]],
    loc: Loc,
    allowed: frozenset[str] = frozenset({"type", "config", "failStrategy", "version"}),
) -> FilterEntry:
    """A chain entry from its wire form ``{"type", "config", "failStrategy", "version"}``."""
    if extra := sorted(set(raw) - allowed):
        raise loc.error(f"unknown key {extra[0]!r} in a plait filter")
    ftype = raw.get("type")
    if not isinstance(ftype, str) or not ftype:
        raise loc.expected("a filter type", ftype)
    spec = filter_types.get(ftype)
    if spec is None:
        known = ", ".join(sorted(filter_types)) or "none"
        raise loc.error(f"unknown filter type {ftype!r} (known: {known})")
    strategy = raw.get("failStrategy", FailStrategy.FAIL_CLOSED.value)
    try:
        fail = FailStrategy(strategy)
    except ValueError:
        choices = ", ".join(s.value for s in FailStrategy)
        raise sub(loc, "failStrategy").expected(f"one of {choices}", strategy) from None
    wanted = raw.get("version", "")
    if not isinstance(wanted, str):
        raise sub(loc, "version").expected("a version specifier", wanted)
    if wanted:
        check_version(spec, wanted, sub(loc, "version"))
    raw_config = raw.get("config")
    return FilterEntry(
        name=name,
        spec=spec,
        config=parse_filter_config(spec, raw_config, sub(loc, "config")),
        fail_strategy=fail,
        type=ftype,
        raw_config=raw_config,
        version=wanted,
    )
