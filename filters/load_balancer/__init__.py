"""``load-balancer``: P2C peak-EWMA (default), round robin or ring hash, per cluster."""

from plait.sdk import FilterSpec

from ._balancers import PeakEwma, RingHash, RoundRobin
from ._config import BalancerConfig, LoadBalancerConfig, parse_load_balancer
from ._filter import LoadBalancer

__all__ = [
    "LOAD_BALANCER",
    "BalancerConfig",
    "LoadBalancer",
    "LoadBalancerConfig",
    "PeakEwma",
    "RingHash",
    "RoundRobin",
    "parse_load_balancer",
]

LOAD_BALANCER = FilterSpec(
    name="load-balancer",
    make=LoadBalancer,
    parse_config=parse_load_balancer,
    description="choose each try's endpoint: P2C peak-EWMA, round robin or ring hash",
    stream_independent=True,
)
