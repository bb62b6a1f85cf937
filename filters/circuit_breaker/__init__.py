"""``circuit-breaker``: limits (overflow) and outlier detection (ejection) per cluster."""

from plait.sdk import FilterSpec

from ._config import BreakerConfig, CircuitBreakerConfig, parse_circuit_breaker
from ._filter import AllEjected, CircuitBreaker
from ._limits import Limits, Overflow
from ._outlier import EndpointHealth, Outliers

__all__ = [
    "CIRCUIT_BREAKER",
    "AllEjected",
    "BreakerConfig",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "EndpointHealth",
    "Limits",
    "Outliers",
    "Overflow",
    "parse_circuit_breaker",
]

CIRCUIT_BREAKER = FilterSpec(
    name="circuit-breaker",
    make=CircuitBreaker,
    parse_config=parse_circuit_breaker,
    description="per-cluster limits (503 overflow) and outlier ejection with probe re-admission",
    stream_independent=True,
)
