"""The resource API over a real socket: apply/get/delete/check, and every bad input's 4xx."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from .conftest import FakeRegistry, Server

SERVICE = """\
apiVersion: plait.dev/v1alpha1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 8080, protocol: http}]
"""
ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{kind: Service, name: web, port: 8080}]
  rules:
  - backendRefs: [{name: %s, port: 8080, weight: %s}]
"""
WORKLOAD = """\
apiVersion: plait.dev/v1alpha1
kind: Workload
metadata: {name: web-1}
spec: {service: web, address: 10.0.0.7}
"""


def route(service: str = "web", weight: object = 1) -> str:
    return ROUTE % (service, weight)


def docs(*texts: str) -> str:
    return "---\n".join(texts)


def results(body: dict[str, object]) -> list[tuple[object, ...]]:
    rs = body["results"]
    assert isinstance(rs, list)
    return [(r["kind"], r["name"], r["result"]) for r in rs]


# -- auth and protocol ------------------------------------------------------------------------


def test_healthz_is_open_and_everything_else_needs_the_token(server: Server) -> None:
    assert server.request("GET", "/healthz", token=None)[0] == 200
    status, headers, body = server.request("GET", "/api/v1/resources", token=None)
    assert status == 401 and body["error"].startswith("missing admin token")
    assert headers["www-authenticate"].startswith("Bearer")
    assert server.request("GET", "/api/v1/resources", token="nope")[2]["error"] == (
        "wrong admin token")  # fmt: skip
    basic = {"authorization": f"Basic {server.token}"}
    assert server.request("GET", "/api/v1/check", token=None, headers=basic)[0] == 401


def test_missing_token_stores_nothing(server: Server) -> None:
    status, _, _ = server.request("POST", "/api/v1/apply", SERVICE, token=None)
    assert status == 401 and server.stored() == [] and server.revision == 0


def test_unknown_paths_and_methods(server: Server) -> None:
    status, headers, body = server.request("PUT", "/api/v1/apply", SERVICE)
    assert status == 405 and headers["allow"] == "POST" and "not allowed" in body["error"]
    assert server.request("GET", "/api/v2/things")[0] == 404
    status, _, body = server.request("GET", "/api/v1/resources/Gateway/default/x")
    assert status == 400 and "unknown kind 'Gateway'" in body["error"]


def test_keep_alive_serves_several_requests_on_one_connection(server: Server) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=5, context=server.tls)
    try:
        sockets = set()
        for _ in range(3):
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["ok"] is True
            assert not r.will_close  # http.client would reconnect silently: check the socket
            sockets.add(id(conn.sock))
        assert len(sockets) == 1
    finally:
        conn.close()


def _read_response(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """One whole response (head and its Content-Length body) from ``sock``; and what is left."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection mid-response: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))  # fmt: skip
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


@pytest.mark.parametrize(
    ("method", "path", "framing"),
    [("GET", "/healthz", ""), ("GET", "/api/v1/resources", ""),
     ("GET", "/api/v1/ca", "content-length: 0\r\n"),
     ("DELETE", "/api/v1/resources/Service/default/x", ""),
     ("GET", "/api/v1/check", "transfer-encoding: chunked\r\n")],
)  # fmt: skip
def test_requests_without_a_body_keep_the_connection_open(
    server: Server, method: str, path: str, framing: str
) -> None:
    """Raw bytes, one socket: each reply keeps the connection, and the next request is served."""
    end = "0\r\n\r\n" if "chunked" in framing else ""
    req = (f"{method} {path} HTTP/1.1\r\nhost: cp\r\nauthorization: Bearer {server.token}\r\n"
           f"{framing}\r\n{end}").encode()  # fmt: skip
    with server.tls.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=5), server_hostname="127.0.0.1"
    ) as sock:
        buf = b""
        for _ in range(3):
            sock.sendall(req)
            reply, buf = _read_response(sock, buf)
            assert b"connection: close" not in reply.lower(), reply
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n")
        reply, _ = _read_response(sock, buf)
        assert reply.startswith(b"HTTP/1.1 200 ") and b'"ok": true' in reply


# -- apply ------------------------------------------------------------------------------------


def test_apply_is_idempotent_and_says_what_changed(server: Server) -> None:
    status, body = server.apply(docs(SERVICE, route()))
    assert status == 200, body
    assert results(body) == [("Service", "web", "created"), ("HTTPRoute", "web", "created")]
    assert body["revision"] == 1 and body["warnings"] == []  # one apply, one revision
    status, body = server.apply(docs(SERVICE, route()))
    assert results(body) == [("Service", "web", "unchanged"), ("HTTPRoute", "web", "unchanged")]
    assert server.revision == 1
    status, body = server.apply(docs(SERVICE, route(weight=5)))
    assert results(body)[1] == ("HTTPRoute", "web", "configured") and server.revision == 2


BAD = {
    "malformed YAML": ("spec: [\n", 400, "invalid YAML"),
    "unknown kind": (
        "apiVersion: plait.dev/v1alpha1\nkind: Gateway\nmetadata: {name: g}\nspec: {}\n",
        400,
        "kind: expected one of Service",
    ),
    "wrong field type": (SERVICE.replace("port: 8080", 'port: "8080"'), 400,
                         'Service/web: spec.ports[0].port: expected'),
    "out-of-range weight": (route(weight=-3), 400,
                            "HTTPRoute/web: spec.rules[0].backendRefs[0].weight: expected"),
    "route to an unknown Service": (route(service="nope"), 400, "unknown Service default/nope"),
    "duplicate in one request": (SERVICE, 400, "duplicate Service default/web"),
    "bad config of a known filter type": (
        "apiVersion: plait.dev/v1alpha1\nkind: Filter\nmetadata: {name: f}\n"
        "spec: {python: {type: request-header-modifier}, config: {set: 3}}\n",
        400,
        "Filter/f: spec.config",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD), ids=lambda c: c.replace(" ", "-"))
def test_bad_input_is_a_400_naming_file_resource_and_field_and_stores_nothing(
    server: Server, case: str
) -> None:
    text, status_expected, message = BAD[case]
    status, body = server.apply(docs(SERVICE, text), source="mesh.yaml")
    assert status == status_expected, body
    assert message in body["error"] and body["error"].startswith("mesh.yaml:"), body
    assert body["details"] and body["details"][0]["source"].startswith("mesh.yaml:")
    assert server.stored() == [] and server.revision == 0


def test_empty_and_non_utf8_bodies_are_refused(server: Server) -> None:
    assert server.apply("# nothing\n")[1]["error"] == "test.yaml: no resources in the request"
    status, _, body = server.request("POST", "/api/v1/apply", b"kind: \xff\n")
    assert status == 400 and "expected UTF-8" in body["error"]


def test_an_oversized_body_is_413_before_it_is_read(server: Server) -> None:
    big = b"#" * (4 * 1024 * 1024 + 1)
    status, headers, body = server.request("POST", "/api/v1/apply", big)
    assert status == 413 and "too large" in body["error"] and headers["connection"] == "close"

    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"#" * (1024 * 1024)

    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=server.tls)
    try:  # chunked: no length to check up front; cut off once past the limit
        conn.request("POST", "/api/v1/apply", body=chunks(),
                     headers={"authorization": f"Bearer {server.token}"})  # fmt: skip
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert server.stored() == []


def test_unknown_filter_types_are_accepted_with_a_warning(server: Server) -> None:
    status, body = server.apply(
        "apiVersion: plait.dev/v1alpha1\nkind: Filter\nmetadata: {name: stamp}\n"
        "spec: {python: {type: acme-stamp}, config: {anything: [1, 2]}}\n"
    )
    assert status == 200 and results(body) == [("Filter", "stamp", "created")]
    assert body["warnings"] == [
        "filter type 'acme-stamp' (used by Filter/default/stamp) is not installed in the "
        "control plane; sidecars without it will NACK"
    ]


def test_several_files_in_one_request_refer_to_each_other_and_errors_name_the_file(
    server: Server,
) -> None:
    payload = {"files": [{"source": "a.yaml", "text": route()}, {"source": "b.yaml",
                                                                 "text": SERVICE}]}  # fmt: skip
    json_type = {"content-type": "application/json"}
    status, _, body = server.request("POST", "/api/v1/apply", json.dumps(payload),
                                     headers=json_type)  # fmt: skip
    assert status == 200 and len(body["results"]) == 2
    payload["files"][0]["text"] = route(weight="x")
    status, _, body = server.request("POST", "/api/v1/apply", json.dumps(payload),
                                     headers=json_type)  # fmt: skip
    assert status == 400 and body["error"].startswith("a.yaml:7: HTTPRoute/web:")


# -- read -------------------------------------------------------------------------------------


def test_list_and_get_with_workload_status(server: Server, registry: FakeRegistry) -> None:
    server.apply(docs(SERVICE, route(), WORKLOAD))
    nack = {"version": "v2", "message": "bad filter", "at": 0}
    acked = {"Cluster": "v1"}
    registry.statuses[("default", "web-1")] = {"connected": True, "ackedVersions": acked,
                                               "lastNack": nack}  # fmt: skip
    _, _, listed = server.request("GET", "/api/v1/resources?kind=workload")
    assert [d["metadata"]["name"] for d in listed["items"]] == ["web-1"]
    status = listed["items"][0]["status"]
    assert (status["connected"], status["ackedVersion"]) == (True, "v1")
    assert status["lastNack"] == {"version": "v2", "message": "bad filter",
                                  "at": "1970-01-01T00:00:00Z"}  # fmt: skip
    _, _, every = server.request("GET", "/api/v1/resources?namespace=default")
    assert sorted(d["kind"] for d in every["items"]) == ["HTTPRoute", "Service", "Workload"]
    status, _, doc = server.request("GET", "/api/v1/resources/service/default/web")
    assert status == 200 and doc["spec"]["ports"][0]["port"] == 8080 and "status" not in doc
    status, _, body = server.request("GET", "/api/v1/resources/Service/default/nope")
    assert status == 404 and body["error"] == "Service default/nope not found"


# -- delete -----------------------------------------------------------------------------------


def test_delete_refuses_to_break_a_reference_and_names_the_referrer(server: Server) -> None:
    server.apply(docs(SERVICE, route()))
    status, _, body = server.request("DELETE", "/api/v1/resources/Service/default/web")
    assert status == 409, body
    assert "cannot delete Service/default/web" in body["error"]
    assert "store:HTTPRoute/default/web" in body["error"] and "HTTPRoute/web" in body["error"]
    assert len(server.stored()) == 2
    status, _, body = server.request("DELETE", "/api/v1/resources/HTTPRoute/default/web")
    assert status == 200 and results(body) == [("HTTPRoute", "web", "deleted")]
    assert server.request("DELETE", "/api/v1/resources/HTTPRoute/default/web")[0] == 404


def test_deleting_by_documents_removes_them_together(server: Server) -> None:
    server.apply(docs(SERVICE, route()))
    status, _, body = server.request(
        "POST", "/api/v1/delete?source=x.yaml", docs(SERVICE, route(), WORKLOAD)
    )
    assert status == 200, body
    assert results(body) == [("Service", "web", "deleted"), ("HTTPRoute", "web", "deleted"),
                             ("Workload", "web-1", "not found")]  # fmt: skip
    assert server.stored() == []


# -- check ------------------------------------------------------------------------------------


def test_check_reports_config_and_sidecar_problems(server: Server, registry: FakeRegistry) -> None:
    server.apply(docs(SERVICE, route()))
    _, _, body = server.request("GET", "/api/v1/check")
    assert body["ok"] is True and body["resources"] == 2 and body["problems"] == []
    registry.rows.append({"node": "web-1", "connected": False, "ok": False,
                          "problems": ["disconnected"]})  # fmt: skip
    _, _, body = server.request("GET", "/api/v1/check")
    assert body["ok"] is False and body["problems"] == ["web-1: disconnected"]


def test_a_client_expecting_100_continue_is_told_to_send(server: Server) -> None:
    body = docs(SERVICE, route()).encode()
    head = (f"POST /api/v1/apply?source=x.yaml HTTP/1.1\r\nhost: cp\r\n"
            f"authorization: Bearer {server.token}\r\ncontent-length: {len(body)}\r\n"
            "expect: 100-continue\r\n\r\n")  # fmt: skip
    with server.tls.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=5), server_hostname="127.0.0.1"
    ) as sock:
        sock.sendall(head.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        reply = b""
        while b'"revision"' not in reply:
            reply += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"created"' in reply
