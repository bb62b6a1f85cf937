"""An HTTPS upstream that requires a client certificate and answers who called.

``mtls_server.py --port P --dir DIR [--h2]``: ``DIR`` holds ``chain.pem``/``key.pem``
(the server's certificate) and ``bundle.pem`` (the roots client certificates must chain
to). Every response is JSON ``{"peer": <the client's SPIFFE ID>, "serial": <its
certificate serial>, "alpn": <the protocol ALPN selected>}``. HTTP/1.1 (standard
library, ALPN ``http/1.1``): ``/close`` answers with ``Connection: close``. ``--h2``:
HTTP/2 only (the ``h2`` library on asyncio, ALPN ``h2``). Independent of plait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from cryptography import x509


def who(sslobj: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    der = sslobj.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return json.dumps(
        {"peer": uris[0], "serial": str(cert.serial_number),
         "alpn": sslobj.selected_alpn_protocol()}
    ).encode()  # fmt: skip


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        assert isinstance(self.connection, ssl.SSLSocket)
        body = who(self.connection)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        if self.path == "/close":
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


async def serve_h2(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    body = who(w.get_extra_info("ssl_object"))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    w.write(conn.data_to_send())
    try:
        while data := await r.read(65536):
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.StreamEnded):
                    conn.send_headers(ev.stream_id, [
                        (":status", "200"), ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ])  # fmt: skip
                    conn.send_data(ev.stream_id, body, end_stream=True)
            w.write(conn.data_to_send())
            await w.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        w.close()


async def run_h2(port: int, ctx: ssl.SSLContext) -> None:
    server = await asyncio.start_server(serve_h2, "127.0.0.1", port, ssl=ctx)
    await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--h2", action="store_true")
    args = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.dir / "chain.pem", args.dir / "key.pem")
    ctx.load_verify_locations(args.dir / "bundle.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    if args.h2:
        ctx.set_alpn_protocols(["h2"])
        asyncio.run(run_h2(args.port, ctx))
        return
    ctx.set_alpn_protocols(["http/1.1"])
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
