"""Exact conversions between plain values and the protobuf well-known types on the xDS wire.

A value survives the trip exactly: durations are whole nanoseconds (``round(seconds * 1e9)``),
and JSON numbers inside a ``Struct`` (always doubles on the wire) come back as ``int`` when they
are integral (:func:`from_value`). Integers beyond 2**53 cannot cross a ``Struct`` exactly;
:func:`to_value` refuses them. Re-exported by :mod:`plait.core.xds.wire`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import duration_pb2, struct_pb2  # type: ignore[import-untyped]

__all__ = ["duration", "from_struct", "from_value", "seconds", "to_struct", "to_value"]

_MAX_EXACT_INT: Final = 2**53


def duration(value: float) -> Any:
    """A ``google.protobuf.Duration`` of ``value`` seconds (whole nanoseconds)."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(value * 1e9))
    return d


def seconds(d: Any) -> float:
    """The seconds of a ``google.protobuf.Duration``."""
    return int(d.ToNanoseconds()) / 1e9


def to_value(raw: object, where: str = "config") -> Any:
    """A JSON-compatible value as a ``google.protobuf.Value``; ``ValueError`` if it is not."""
    v = struct_pb2.Value()
    if raw is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(raw, bool):
        v.bool_value = raw
    elif isinstance(raw, int):
        if abs(raw) > _MAX_EXACT_INT:
            raise ValueError(f"{where}: integer {raw} does not fit a JSON number exactly")
        v.number_value = raw
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError(f"{where}: {raw} is not a JSON number")
        v.number_value = raw
    elif isinstance(raw, str):
        v.string_value = raw
    elif isinstance(raw, Mapping):
        v.struct_value.CopyFrom(to_struct(raw, where))
    elif isinstance(raw, list | tuple):
        v.list_value.values.extend(to_value(x, f"{where}[{i}]") for i, x in enumerate(raw))
    else:
        raise ValueError(f"{where}: {type(raw).__name__} is not JSON-compatible")
    return v


def to_struct(raw: Mapping[str, object], where: str = "config") -> Any:
    s = struct_pb2.Struct()
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: key {key!r} is not a string")
        s.fields[key].CopyFrom(to_value(value, f"{where}.{key}"))
    return s


def from_value(v: Any) -> Any:
    """A ``google.protobuf.Value`` as plain JSON values; integral numbers come back as ``int``."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = float(v.number_value)
        return int(n) if n.is_integer() and abs(n) <= _MAX_EXACT_INT else n
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return bool(v.bool_value)
    if kind == "struct_value":
        return from_struct(v.struct_value)
    if kind == "list_value":
        return [from_value(x) for x in v.list_value.values]
    return None  # null_value, or unset


def from_struct(s: Any) -> dict[str, Any]:
    return {str(k): from_value(v) for k, v in s.fields.items()}
