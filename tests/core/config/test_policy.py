"""BackendTrafficPolicy and HTTPRoute retry: parsing, defaults, errors, translation."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.core.config import MeshConfig, load_config
from plait.filters.circuit_breaker import CircuitBreakerConfig
from plait.filters.load_balancer import LoadBalancerConfig
from plait.filters.retry import RetryConfig
from plait.plugins import FilterTypes, load_filter_types
from plait.sdk import ConfigError

BASE = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: echo}
spec:
  ports: [{port: 8080}]
  endpoints: [{address: 127.0.0.1, port: 9001}, {address: 127.0.0.1, port: 9002}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  parentRefs: [{name: echo}]
  rules:
  - backendRefs: [{name: echo, port: 8080}]
"""


@pytest.fixture(scope="module")
def types() -> FilterTypes:
    return load_filter_types()


def _load(tmp_path: Path, types: FilterTypes, retry: str = "", policy: str = "") -> MeshConfig:
    text = BASE + (f"    retry: {retry}\n" if retry else "")
    if policy:
        text += (
            "---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: BackendTrafficPolicy\n"
            "metadata: {name: echo-policy}\nspec:\n  targetRefs: [{kind: Service, name: echo}]\n"
            + "".join(f"  {line}\n" for line in policy.splitlines())
        )
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return load_config([path], types)


def _layers(cfg: MeshConfig) -> dict[str, object]:
    rule = cfg.routes["echo.default:8080"].rules[0]
    return {f.spec.name: f.config for f in rule.filters if f.spec.name != "weighted-split"}


def test_no_retry_and_no_policy_adds_no_layer(tmp_path: Path, types: FilterTypes) -> None:
    assert _layers(_load(tmp_path, types)) == {}


def test_retry_and_policy_become_layers_in_order(tmp_path: Path, types: FilterTypes) -> None:
    cfg = _load(
        tmp_path, types, retry="{codes: [503], attempts: 3, backoff: 10ms}",
        policy="retryConstraint: {budget: {percent: 30}}\ncircuitBreaker: {maxRetries: 7}\n"
        "timeouts: {connect: 2s}",
    )  # fmt: skip
    layers = _layers(cfg)
    assert list(layers) == ["retry", "circuit-breaker", "load-balancer"]
    retry = layers["retry"]
    assert isinstance(retry, RetryConfig)
    assert retry.attempts == 3 and retry.codes == {503} and retry.backoff == 0.01
    assert retry.max_backoff == 0.25  # default
    budget = retry.budget_for("echo.default:8080")
    assert (budget.percent, budget.interval, budget.min_retry_count) == (30, 10, 10)
    assert budget.max_active_retries == 7
    breaker = layers["circuit-breaker"]
    assert isinstance(breaker, CircuitBreakerConfig)
    cb = breaker.clusters["echo.default:8080"]
    assert (cb.consecutive_5xx, cb.base_ejection_time, cb.max_ejection_percent) == (5, 30, 10)
    lb = layers["load-balancer"]
    assert isinstance(lb, LoadBalancerConfig)
    assert lb.clusters["echo.default:8080"].type == "LeastRequest"
    cluster = cfg.clusters["echo.default:8080"]
    assert cluster.policy is not None and cluster.timeouts.connect == 2.0


@pytest.mark.parametrize(
    ("retry", "policy", "field", "expected"),
    [
        ("{attempts: -1}", "", "spec.rules[0].retry.attempts", "expected an integer 0..100"),
        ("{codes: [200]}", "", "retry.codes[0]", "status code 400..599"),
        (
            "{backoff: 100ms, plait: {maxBackoff: 50ms}}", "", "retry.plait.maxBackoff",
            "expected at least retry.backoff",
        ),
        (
            "{plait: {retryOn: [5xx, on-tuesdays]}}", "", "retry.plait.retryOn[1]",
            "expected a retry condition",
        ),
        ("", "retryConstraint: {budget: {percent: 101}}", "retryConstraint.budget.percent",
         "expected an integer 0..100"),
        ("", "outlierDetection: {maxEjectionPercent: 120}", "outlierDetection.maxEjectionPercent",
         "expected an integer 0..100"),
        ("", "loadBalancer: {type: Random}", "loadBalancer.type", "expected one of"),
        ("", "loadBalancer: {type: RingHash}", "loadBalancer", "needs ringHash.header"),
        ("", "circuitBreaker: {maxConnection: 3}", "circuitBreaker.maxConnection",
         "unknown field"),
        ("", "tls: {mode: SIMPLE}", "tls.mode", "expected one of ISTIO_MUTUAL, DISABLE"),
        ("", "tls: {}", "tls", "mode"),
        ("", "h2UpgradePolicy: ALWAYS", "h2UpgradePolicy",
         "expected one of DEFAULT, DO_NOT_UPGRADE, UPGRADE"),
    ],
)  # fmt: skip
def test_invalid_config_is_rejected_clearly(
    tmp_path: Path, types: FilterTypes, retry: str, policy: str, field: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, types, retry=retry, policy=policy)
    text = str(err.value)
    assert "mesh.yaml:" in text  # file:line
    assert ("HTTPRoute/echo" if retry else "BackendTrafficPolicy/echo-policy") in text
    assert field in text and expected in text, text


def test_a_policy_must_target_an_existing_service(tmp_path: Path, types: FilterTypes) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(
        BASE + "---\napiVersion: plait.dev/v1alpha1\nkind: BackendTrafficPolicy\n"
        "metadata: {name: p}\nspec:\n  targetRefs: [{name: nope}]\n"
    )
    with pytest.raises(
        ConfigError, match=r"mesh.yaml:\d+: BackendTrafficPolicy/p: .*unknown Service"
    ):
        load_config([path], types)


def test_the_h2_upgrade_policy_is_read_per_service(tmp_path: Path, types: FilterTypes) -> None:
    for text, want in (("DEFAULT", None), ("DO_NOT_UPGRADE", "DO_NOT_UPGRADE"),
                       ("UPGRADE", "UPGRADE")):  # fmt: skip
        policy = (
            _load(tmp_path, types, policy=f"h2UpgradePolicy: {text}")
            .clusters["echo.default:8080"]
            .policy
        )
        assert policy is not None and policy.h2_upgrade == want


def test_the_tls_mode_overrides_auto_mtls_per_service(tmp_path: Path, types: FilterTypes) -> None:
    assert _load(tmp_path, types).clusters["echo.default:8080"].policy is None  # auto
    for mode in ("ISTIO_MUTUAL", "DISABLE"):
        policy = (
            _load(tmp_path, types, policy=f"tls: {{mode: {mode}}}")
            .clusters["echo.default:8080"]
            .policy
        )
        assert policy is not None and policy.tls_mode == mode
