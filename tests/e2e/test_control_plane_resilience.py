"""Resilience over the control plane: ``plait apply`` a rule ``retry`` and a
BackendTrafficPolicy, and a sidecar in control-plane mode retries exactly as a static one.

A flaky upstream fails one request in three with 503; without retries a third of the
calls would fail. The sidecar takes its config over xDS only (the rule's ``retry``
travels in the Route's facts and ``retry_policy``, the policy in the Cluster's facts and
``circuit_breakers``; docs/xds.md), and its ``/config_dump`` shows both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._resilience import sequential
from tests.support import Proc, control, free_port, start_flaky
from tests.support.controlplane import apply, config_dump, start_control_plane, start_xds_sidecar

pytestmark = pytest.mark.e2e


def _mesh(upstream: int, listen: int) -> str:
    return f"""\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {{name: flaky}}
spec:
  ports: [{{name: http, port: 8080}}]
  endpoints: [{{address: 127.0.0.1, port: {upstream}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: flaky}}
spec:
  parentRefs: [{{group: "", kind: Service, name: flaky, port: 8080}}]
  rules:
  - backendRefs: [{{name: flaky, port: 8080}}]
    retry:
      codes: [503]
      attempts: 2
      backoff: 1ms
      plait: {{maxBackoff: 5ms}}
    timeouts: {{request: 5s, backendRequest: 2s}}
---
# 1 in 3 failing needs retries for a third of the traffic: above the default 20% budget.
# A single endpoint: no ejection, so every try reaches it.
apiVersion: plait.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: flaky}}
spec:
  targetRefs: [{{group: "", kind: Service, name: flaky}}]
  retryConstraint: {{budget: {{percent: 100, interval: 10s}}}}
  circuitBreaker: {{maxRequests: 256, maxRetries: 16}}
  outlierDetection: {{consecutive5xx: 0}}
  loadBalancer: {{type: RoundRobin}}
  timeouts: {{connect: 1s, streamIdle: 3s}}
---
apiVersion: plait.dev/v1alpha1
kind: Sidecar
metadata: {{name: client}}
spec:
  egress:
  - port: {{number: {listen}, protocol: http}}
    service: flaky
"""


def test_retries_applied_through_the_control_plane_hide_one_failure_in_three(
    tmp_path: Path, procs: list[Proc]
) -> None:
    up = start_flaky(tmp_path, fail_every=3, status=503)
    procs.append(up)
    cp = start_control_plane(tmp_path)
    procs.append(cp)
    listen = free_port()
    apply(cp, tmp_path, _mesh(up.port, listen))
    sidecar = start_xds_sidecar(tmp_path, cp, "client")
    procs.append(sidecar)

    dump = config_dump(sidecar)
    assert dump["xds"]["last_nack"] is None, dump["xds"]
    cluster = dump["config"]["clusters"]["flaky.default:8080"]
    policy = cluster["policy"]
    assert policy["name"] == "default/flaky"
    assert policy["retry_constraint"]["budget_percent"] == 100
    assert policy["limits"]["max_requests"] == 256 and policy["limits"]["max_retries"] == 16
    assert policy["outlier"]["consecutive_5xx"] is None
    assert policy["load_balancer"]["type"] == "RoundRobin"
    assert cluster["timeouts"]["connect"] == 1.0 and cluster["timeouts"]["streamIdle"] == 3.0
    (rule,) = dump["config"]["routes"]["flaky.default:8080"]["rules"]
    assert rule["retry"]["attempts"] == 2 and rule["retry"]["codes"] == [503]
    assert rule["retry"]["max_backoff"] == 0.005
    assert [f["type"] for f in rule["filters"]] == [
        "weighted-split", "retry", "circuit-breaker", "load-balancer",
    ]  # fmt: skip

    control(up.port, clear=True)
    t = sequential(listen, 300)
    assert t.statuses[200] / t.total >= 0.999, (t.statuses, t.reasons)
    seen = control(up.port)
    assert seen["failed"] >= 100  # the upstream really failed a third of all tries
    assert seen["requests"] >= 300 + seen["failed"] - 1
