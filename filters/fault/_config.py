"""Config of ``fault``: inject delays and aborts into a share of requests (Istio ``fault``).

::

    {delay: {fixedDelay: 100ms, percentage: 10},
     abort: {httpStatus: 503, percentage: 5},        # or grpcStatus: 14
     header: x-fault-test}                            # optional: only requests with it

``percentage`` is 0..100 (decimals allowed). ``fixedDelay`` is a duration (``100ms``,
``1s``) or a number of seconds. At least one of ``delay`` and ``abort`` is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plait.filters._numbers import number
from plait.filters._validate import HEADER_NAME, ConfigReader
from plait.sdk import ConfigError

__all__ = ["Abort", "Delay", "FaultConfig", "parse_fault"]

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True, slots=True, kw_only=True)
class Delay:
    seconds: float
    percentage: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort:
    percentage: float
    http_status: int | None = None
    grpc_status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultConfig:
    delay: Delay | None = None
    abort: Abort | None = None
    header: str | None = None


def _duration(r: ConfigReader, key: str) -> float:
    value = r.value(key)
    if isinstance(value, str):
        import re

        m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", value)
        if m is None:
            raise ConfigError(
                f"expected a duration like 100ms or 2s, got {value!r}", field=r.at(key)
            )
        return float(m.group(1)) * _UNITS[m.group(2)]
    return number(r, key, 0, lo=0, hi=3600)


def parse_fault(raw: Mapping[str, Any]) -> FaultConfig:
    r = ConfigReader(raw)
    delay = abort = None
    if (d := r.value("delay", None)) is not None:
        dr = ConfigReader(d, "delay")
        delay = Delay(
            seconds=_duration(dr, "fixedDelay"),
            percentage=number(dr, "percentage", 100, lo=0, hi=100),
        )
        dr.done()
    if (a := r.value("abort", None)) is not None:
        ar = ConfigReader(a, "abort")
        http = ar.value("httpStatus", None)
        grpc = ar.value("grpcStatus", None)
        if (http is None) == (grpc is None):
            raise ConfigError("expected exactly one of httpStatus and grpcStatus", field="abort")
        abort = Abort(
            percentage=number(ar, "percentage", 100, lo=0, hi=100),
            http_status=ar.integer("httpStatus", lo=200, hi=599) if http is not None else None,
            grpc_status=ar.integer("grpcStatus", lo=1, hi=16) if grpc is not None else None,
        )
        ar.done()
    header = r.value("header", None)
    if header is not None and (not isinstance(header, str) or not HEADER_NAME.match(header)):
        raise ConfigError(f"expected a header name, got {header!r}", field="header")
    r.done()
    if delay is None and abort is None:
        raise ConfigError("expected delay, abort or both")
    return FaultConfig(delay=delay, abort=abort, header=header.lower() if header else None)
