"""The stat and tap endpoints' refusals and what they say about a sidecar that does not
answer (an in-process control plane; the e2e tests run them against real sidecars)."""

from __future__ import annotations

import pytest

from plait.controlplane.api import APIClient, APIError
from tests.controlplane.api.conftest import FakeRegistry, Server
from tests.support import free_port


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("stat?kind=pods", 400, "kind 'pods': expected one of workload, service, sidecar"),
        ("stat?window=-1", 400, "window='-1': expected seconds between 0 and 3600"),
        ("stat?window=soon", 400, "window='soon': expected seconds"),
        ("tap?max=x", 400, "max='x': expected a whole number"),
        ("tap?kind=workload&name=nope", 404, "no connected sidecar serves workload 'nope'"),
    ],
)
def test_bad_requests_are_refused_with_what_was_expected(
    server: Server, query: str, status: int, message: str
) -> None:
    got, _, body = server.request("GET", f"/api/v1/{query}")
    assert got == status and message in body["error"], body


def test_the_traffic_endpoints_need_the_admin_token(server: Server) -> None:
    assert server.request("GET", "/api/v1/stat", token=None)[0] == 401
    assert server.request("GET", "/api/v1/tap", token="wrong")[0] == 401


def _client(server: Server) -> APIClient:
    return APIClient(f"https://127.0.0.1:{server.port}", server.token, ssl_context=server.tls)


def test_a_sidecar_that_does_not_answer_is_named_in_the_errors(
    server: Server, registry: FakeRegistry
) -> None:
    gone = f"127.0.0.1:{free_port()}"
    registry.rows += [
        {"node": "web-1", "workload": "Workload/default/web-1", "connected": True, "admin": gone},
        {"node": "old-1", "workload": "Workload/default/old-1", "connected": False,
         "admin": gone},  # not connected: not asked
    ]  # fmt: skip
    started, answer = list(_client(server).stream("/api/v1/stat", {"window": "0"}, timeout=20))
    assert started["sidecars"] == 1 and started["window"] == 0
    assert answer["stat"] == []
    assert len(answer["errors"]) == 1 and answer["errors"][0].startswith("web-1: sidecar admin")

    lines = list(_client(server).stream("/api/v1/tap", {"name": "web-1"}, timeout=20))
    assert lines[0]["node"] == "web-1" and "cannot connect" in lines[0]["error"]
    assert lines[1:] == [{"started": True}]  # and the stream ends: nothing to follow


def test_the_client_reports_a_refusal_of_a_stream(server: Server) -> None:
    with pytest.raises(APIError, match="no connected sidecar serves service 'web'"):
        list(_client(server).stream("/api/v1/stat", {"kind": "service", "name": "web"}))
