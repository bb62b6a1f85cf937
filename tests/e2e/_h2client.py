"""A minimal HTTP/2 client (the ``h2`` library over a plain socket) for end-to-end tests."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events


def h2_request(
    port: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/x",
) -> tuple[dict[str, str], bytes, dict[str, str]]:
    """One HTTP/2 request (prior knowledge), the body in its own write after the
    preface: the response headers, body and trailers."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(conn.data_to_send())
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [(":method", method), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
             (":path", path), *headers],
        )  # fmt: skip
        conn.send_data(sid, body, end_stream=True)
        s.sendall(conn.data_to_send())
        head: dict[str, str] = {}
        trailers: dict[str, str] = {}
        data = b""
        while True:
            chunk = s.recv(65536)
            assert chunk, "the sidecar closed the connection before the response ended"
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    head = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {ev.error_code}")
                elif isinstance(ev, h2.events.StreamEnded):
                    return head, data, trailers
            s.sendall(conn.data_to_send())
