"""Access-log lines from outside: each failure a user asks about carries its reason.

Real sidecars and real upstreams: an upstream that never answers (a timeout), a port where
nothing listens (a connect failure), an AuthorizationPolicy deny over mTLS (a 403), and a
retry budget of zero (budget exhaustion). Every line is parsed as JSON and checked for the
fields a user reads: status, failure reason, retries, bytes, identities.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._resilience import sequential, sidecar
from tests.support import Proc, free_port, start_flaky
from tests.support.mtls import CLIENT, WEB, Pki, client_context, mtls_get, peer_auth, start_web
from tests.support.pki import Authority

pytestmark = pytest.mark.e2e

NO_EJECTION = "outlierDetection: {consecutive5xx: 0}"


def _lines(path: Path, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and len(lines := path.read_text().splitlines()) >= n:
            return [json.loads(line) for line in lines]  # every line is one JSON object
        time.sleep(0.05)
    raise AssertionError(f"expected {n} access log lines in {path}")


def test_timeout_connect_failure_and_budget_exhaustion(tmp_path: Path, procs: list[Proc]) -> None:
    hang = start_flaky(tmp_path, name="hang", hang=1)
    procs.append(hang)
    timeout_log, dead_log, budget_log = (tmp_path / f"{n}.log" for n in ("t", "d", "b"))
    port = sidecar(tmp_path, procs, [hang.port], rule="timeouts: {backendRequest: 200ms}",
                   access_log=str(timeout_log))  # fmt: skip
    assert sequential(port, 1).statuses == {504: 1}
    (line,) = _lines(timeout_log, 1)
    assert line["status"] == 504 and line["failure_reason"] == "upstream timeout", line
    assert line["upstream"] == f"127.0.0.1:{hang.port}" and line["retries"] == 0
    assert line["bytes_sent"] > 0 and line["direction"] == "outbound"

    dead = free_port()  # nothing listens there
    port = sidecar(tmp_path, procs, [dead], access_log=str(dead_log))
    assert sequential(port, 1).statuses == {503: 1}
    (line,) = _lines(dead_log, 1)
    assert line["status"] == 503 and line["failure_reason"] == "upstream connect failure"
    assert line["destination_identity"] is None  # nobody answered, nobody was verified

    port = sidecar(
        tmp_path, procs, [dead], access_log=str(budget_log),
        rule="retry: {attempts: 1, backoff: 1ms}",
        policy="retryConstraint: {budget: {percent: 0}, minRetryRate: {count: 1, interval: 1h}}\n"
        + NO_EJECTION,
    )  # fmt: skip
    assert sequential(port, 3).statuses == {503: 3}
    first, *rest = _lines(budget_log, 3)
    # the one retry the budget allows is spent on the first request; then it is exhausted
    assert first["failure_reason"] == "upstream connect failure" and first["retries"] == 1
    assert [(e["failure_reason"], e["retries"]) for e in rest] == [
        ("retry budget exhausted", 0)
    ] * 2


TELEMETRY = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: plait-system}}
spec:
  extensionProviders: [{{name: file, envoyFileAccessLog: {{path: "{log}"}}}}]
  accessLogging: [{{providers: [{{name: file}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: default}}
spec:
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
"""


def test_authorization_deny_is_a_403_with_both_identities(
    tmp_path: Path, procs: list[Proc]
) -> None:
    pki = Pki(tmp_path, Authority.create("mesh root"))
    log = tmp_path / "access.log"
    port, _ = start_web(tmp_path, pki, procs, peer_auth("STRICT") + TELEMETRY.format(log=log))
    client = client_context(pki, *pki.files("client", *pki.root.leaf(CLIENT)))
    assert mtls_get(port, client, "/admin/users")[0] == 403
    assert mtls_get(port, client, "/hello")[0] == 200
    denied, served = _lines(log, 2)
    assert denied["status"] == 403 and denied["path"] == "/admin/users"
    assert denied["failure_reason"] == "denied by authorization policy"
    assert denied["source_identity"] == CLIENT and denied["destination_identity"] == WEB
    assert denied["direction"] == "inbound" and denied["upstream"] is None
    assert served["failure_reason"] is None and served["source_identity"] == CLIENT
    assert served["bytes_sent"] > 0 and served["bytes_received"] == 0
