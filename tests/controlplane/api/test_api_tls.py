"""The resource API over TLS: the control plane's own certificate, from its own CA."""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest
from cryptography import x509

from tests.support.pki import Authority

from .conftest import Server


def _peer_cert(server: Server) -> x509.Certificate:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with server.tls.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_api_refuses_plaintext(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/"), answer  # no HTTP answer: at most a TLS alert
    status, _, body = server.request("GET", "/healthz")  # and TLS clients are still served
    assert status == 200 and body["ok"] is True


def test_a_client_trusting_another_ca_refuses_the_control_plane(server: Server) -> None:
    other = ssl.create_default_context(cadata=Authority.create("another root").pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=5, context=other)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/healthz")
    conn.close()


def test_the_certificate_names_the_control_plane_and_its_address(server: Server) -> None:
    cert = _peer_cert(server)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://plait.local/ns/plait-system/sa/control-plane"]
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    # localhost verifies too (host name checked by the default context)
    conn = http.client.HTTPSConnection("localhost", server.port, timeout=5, context=server.tls)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()


def test_the_public_roots_need_no_token_and_match_the_bundle_file(server: Server) -> None:
    status, _, body = server.request("GET", "/api/v1/ca/bundle", token=None)
    assert status == 200
    assert server.running.ca_bundle is not None
    assert body["bundle"].encode() == server.running.ca_bundle.read_bytes()
    assert json.dumps(body).count("BEGIN CERTIFICATE") == 1


def test_a_renewal_applies_to_the_next_connection_and_open_ones_finish(server: Server) -> None:
    serving = server.running.context.extras["serving"]
    before = _peer_cert(server).serial_number
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=5, context=server.tls)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read()
    server.portal.call(serving.renew)  # what the half-life timer does
    after = _peer_cert(server).serial_number
    assert after != before
    conn.request("GET", "/healthz")  # the open connection keeps its session
    assert conn.getresponse().status == 200
    conn.close()
