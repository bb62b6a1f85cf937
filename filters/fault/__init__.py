"""``fault``: fault injection (delay and abort, by percentage, optionally by header)."""

from plait.sdk import FilterSpec

from ._config import Abort, Delay, FaultConfig, parse_fault
from ._filter import FAULT_REASON, AbortFault, Fault, make_fault

__all__ = [
    "FAULT",
    "FAULT_REASON",
    "Abort",
    "AbortFault",
    "Delay",
    "Fault",
    "FaultConfig",
    "make_fault",
    "parse_fault",
]

FAULT = FilterSpec(
    name="fault",
    make=make_fault,
    parse_config=parse_fault,
    description="inject delays and aborts (HTTP or gRPC status) into a share of requests",
    stream_independent=True,
)
