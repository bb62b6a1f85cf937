"""Access logs: one JSON line per request, written in batches off the request path.

Formatting a line costs a few microseconds (``benchmarks/access_log_bench.py``), so
logging is off unless the config names a file (``Sidecar.spec.accessLog.path`` or a
``Telemetry`` resource's access-log provider; ``/dev/stdout`` for the container log).
Lines collect in memory and are written when 256 are waiting or one second after the
first one waited, so a busy proxy does one ``write`` per 256 requests and a quiet one is never more
than a second behind. The flush timer is a loop timer (this module is event-loop
glue like ``_transport.py``); :meth:`AccessLog.close` flushes what is left.

Every stream that started gets exactly one line, whatever ended it: a response,
a mesh error, the client leaving or the drain's grace running out (status 0 when
no response head went out; ``failure_reason`` ``client closed`` or ``drain grace
over``). The drain waits for the streams it cancelled to end before the log is
closed; a line that still comes later is appended on its own.

Sampling: ``sampling`` percent of the successful requests are logged; a request
that failed (status 0 or >= 400, or one with a failure reason) is always logged,
so lowering the volume never hides an error. The draw is made before the line is
formatted, so an unlogged request costs one random number.

What a line says (docs/observability.md lists the fields): the request, the status,
the body bytes each way (counted by the exchange, before filters rewrite the request
and after they rewrite the response), the endpoint of the latest try, the verified
identities at both ends, the trace id the request carries, the retries and the mesh's
failure reason. Identities: inbound, the source is the caller's verified client
certificate and the destination this sidecar's own; outbound, the source is this
sidecar's and the destination the upstream server's SPIFFE ID, which the pool's TLS
gate checked against the endpoint's expected ID before sending a byte
(``upstream/_tls.py``), shown only when the upstream answered over mTLS.

How a line is made (the module is compiled with the hot path; the listener runtime
hands it the request's facts, :meth:`AccessLog.entry`): the JSON is written directly,
fields in a fixed order, as one string template, with no dict per request. Strings are
escaped by the standard library's C escaper (ASCII out; every other character, control
characters, quotes and a lone surrogate a filter set included, as ``\\u`` escapes),
so a line is valid JSON whatever the request held. What comes from config, a
certificate or the connection is escaped once and kept: single values (method,
authority, failure reason) in a bounded table (:meth:`AccessLog._q`); the start of the
line (time, listener, direction) once per second and listener; method to protocol
while requests have the same method, authority, path and version (a client calling one
API repeats them); route to destination identity while requests go the same way; the
retries and failure reason of a request served at its first try as one constant; the
end (peer, peer identity, ALPN) once per connection (kept in the connection's stash, as
a client's connections take turns). The trace id is the one the
sampling decision gave the request (lower-case hex, written as is); without tracing it
is read from the headers. The parts of a line are bytes (a kept part was encoded when
it was made; the numbers come from tables with the keys around them), and a line waits
as its parts: the ones requests share are the same objects, so a request adds about ten
references and no string is built for it. A batch is one join and one ``write``."""

from __future__ import annotations

import asyncio
import json
import random
import time
from json.encoder import encode_basestring_ascii
from typing import IO, Any, Final, Protocol

import orjson

from plait.sdk import ConnectionContext, StashKey, StreamContext

from .trace_context import extract

__all__ = ["AccessLog"]

_BATCH: Final = 256
_DELAY: Final = 1.0
_CACHED: Final = 4096
"""Quoted strings kept (:meth:`AccessLog._q`); the cache starts over when full."""
_LONG: Final = 256
"""Longer strings are quoted each time, not kept."""
_quote: Final = encode_basestring_ascii
"""A string as JSON, quotes included: ASCII out, every other character escaped, a lone
surrogate too (the standard library's C escaper), so a line is valid JSON whatever the
request held."""
_INTS: Final = tuple(str(n).encode() for n in range(1000))
_H11: Final = b'"HTTP/1.1"'
_STATUS: Final = tuple(b'%d,"duration_ms":' % n for n in range(1000))
_FRACTION: Final = tuple(b'.%03d,"bytes_received":' % n for n in range(1000))
_RECEIVED: Final = tuple(b'%d,"bytes_sent":' % n for n in range(1000))
"""A line's numbers are parts of their own, with the keys around them from tables: no
string is built for them."""
_OUTCOME: Final[tuple[bytes, ...]] = (
    b',"retries":0,"failure_reason":null,"request_id":',
    b',"retries":0,"failure_reason":null,"request_id":null',
    b'","retries":0,"failure_reason":null,"request_id":',
    b'","retries":0,"failure_reason":null,"request_id":null',
)
"""A request served at its first try, without a failure reason (the common case), by
whether a trace id's closing quote comes first (+2) and whether it had no request id
(+1)."""
_TRACE_END: Final[tuple[bytes, ...]] = (b"", b'"')
_TAIL: Final[StashKey[bytes]] = StashKey("plait.access_log.tail")
"""A connection's line end, kept in its stash: made once per connection, however its
requests interleave with other connections'."""
_NULL: Final = b"null"

_fallback: Final = json.JSONEncoder(separators=(",", ":")).encode
_random: Final = random.random
_now: Final = time.time


class _Listener(Protocol):
    """What a line reads of the listener runtime (``runtime.ListenerRuntime``)."""

    @property
    def name(self) -> str: ...
    @property
    def inbound(self) -> bool: ...
    @property
    def runtime(self) -> Any: ...
    def upstream_identity(self, ctx: StreamContext) -> str | None: ...


class _Exchange(Protocol):
    """What a line reads of the exchange (``exchange.machine.Exchange``)."""

    @property
    def bytes_out(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    def received(self) -> int: ...


def _encode(entry: dict[str, object]) -> str:
    """One line of JSON from a dict. orjson refuses a string that is not valid UTF-8 (a
    lone surrogate); the standard library's encoder escapes it, so that line is not lost."""
    try:
        return orjson.dumps(entry).decode()
    except orjson.JSONEncodeError:
        return _fallback(entry)


def _n(value: int) -> bytes:
    """An int as JSON (a small one from a table)."""
    return _INTS[value] if 0 <= value < 1000 else b"%d" % value


def _text(value: bytes) -> bytes:
    """A header value as a JSON string."""
    return _quote(value.decode("latin-1")).encode()


class AccessLog:
    def __init__(self, path: str, sampling: float = 100.0) -> None:
        self.path = path
        self.sampling = sampling
        """Percent of the successful requests logged (failed ones always are)."""
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 (closed in close())
        self._closed = False
        self._parts: list[bytes] = []
        """The waiting lines, in parts: the parts requests share are the same objects,
        joined only when the batch is written."""
        self._count = 0
        """Lines in ``_parts``."""
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        self._quoted: dict[str, bytes] = {}
        self._heads: tuple[dict[str, bytes], dict[str, bytes]] = ({}, {})
        """Outbound, inbound: listener name → the start of its lines in the current second."""
        self._conn: ConnectionContext | None = None
        self._tail = b""
        """The end of the lines of ``_conn`` (peer, peer identity, ALPN)."""
        self._leaf: object = None
        self._own: str | None = None
        self._route: str | None = None
        self._cluster: str | None = None
        self._upstream: str | None = None
        self._source: str | None = None
        self._destination: str | None = None
        self._mids = self._middle("", None, None, None, None)
        self._method = ""
        self._authority: str | None = ""
        self._path: str | None = None  # no request yet: the first one makes the segment
        self._version = ""
        self._req = b""
        """The line from the method's value to the status's key, for the request above."""
        self._start_of: tuple[bytes, bytes] = (b"", b"")
        self._start = b""
        """``_start_of``'s two parts (head, request) joined: kept while both are the same."""

    def log(self, ctx: StreamContext, lrt: _Listener, seconds: float, ex: _Exchange) -> None:
        """The line of one finished request of ``lrt`` (the listener runtime gives the same
        facts to :meth:`wants` and :meth:`entry` itself)."""
        response = ctx.response
        if self.wants(response.status if response is not None else 0, ctx.failure_reason):
            inbound = lrt.inbound
            self.entry(
                ctx, lrt.name, inbound, lrt.runtime.identity.leaf,
                None if inbound else lrt.upstream_identity(ctx), seconds,
                ex.received(), ex.bytes_out, ex.attempts, getattr(ex, "trace_id", None),
            )  # fmt: skip

    def wants(self, status: int, reason: str | None) -> bool:
        """Whether a request with this status and failure reason gets a line (the sampling
        draw, for a successful one)."""
        return (
            self.sampling >= 100.0
            or reason is not None
            or not 0 < status < 400
            or _random() * 100.0 < self.sampling
        )

    def entry(
        self,
        ctx: StreamContext,
        listener: str,
        inbound: bool,
        leaf: object,
        upstream_id: str | None,
        seconds: float,
        received: int,
        sent: int,
        attempts: int,
        trace_id: bytes | None,
    ) -> None:
        """The line of a request :meth:`wants`: ``leaf`` is this sidecar's certificate
        (``CertStore.leaf``), ``upstream_id`` the upstream's verified SPIFFE ID (outbound),
        ``trace_id`` the one the sampling decision gave it (else read from its headers)."""
        req, resp = ctx.request, ctx.response
        own = self._own_identity(leaf)
        if inbound:
            source, destination = _identity(ctx.connection), own
        else:
            source, destination = own, upstream_id
        if trace_id is None:
            parent = extract(req.headers)
            trace_id = parent.trace_hex.encode() if parent is not None else None
        request_id = None
        for name, value in req.headers.raw:
            if name == b"x-request-id":
                request_id = value
                break
        us = int(seconds * 1_000_000 + 0.5)
        mids = self._middle(ctx.route_name, ctx.cluster, ctx.upstream_address, source, destination)
        head = self._head(listener, inbound, _now() - seconds)
        request = self._request(req.method, req.authority, req.path, req.http_version)
        known = self._start_of
        if head is not known[0] or request is not known[1]:
            self._start_of = (head, request)
            self._start = head + request
        status = resp.status if resp is not None else 0
        ms = us // 1000
        traced = trace_id is not None
        reason = ctx.failure_reason
        if attempts <= 1 and reason is None:
            outcome = _OUTCOME[2 * traced + (request_id is None)]
        else:
            outcome = b'%s,"retries":%s,"failure_reason":%s,"request_id":%s' % (
                _TRACE_END[traced], _n(max(attempts - 1, 0)), self._q(reason),
                _NULL if request_id is None else b"",
            )  # fmt: skip
        st = _STATUS[status] if 0 <= status < 1000 else b'%d,"duration_ms":' % status
        msb = _INTS[ms] if 0 <= ms < 1000 else b"%d" % ms
        frac = _FRACTION[us % 1000]
        recv = _RECEIVED[received] if 0 <= received < 1000 else b'%d,"bytes_sent":' % received
        sentb = _INTS[sent] if 0 <= sent < 1000 else b"%d" % sent
        if request_id is not None:  # the outcome ends with its key
            outcome += _text(request_id)
        tail = self._conn_tail(ctx.connection)
        if trace_id is None:
            self._add((self._start, st, msb, frac, recv, sentb, mids[0], outcome, tail))
        else:
            self._add((self._start, st, msb, frac, recv, sentb, mids[1], trace_id, outcome, tail))

    def log_rejected(
        self, listener: str, status: int, reason: str, conn: ConnectionContext
    ) -> None:
        """A request the codec refused before it had a head (400, 408, 431, 505)."""
        self._add((_encode({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "listener": listener,
            "status": status,
            "failure_reason": reason,
            "peer": f"{conn.peer_address[0]}:{conn.peer_address[1]}",
            "peer_identity": _identity(conn),
        }).encode(), b"\n"))  # fmt: skip

    def _q(self, value: str | None) -> bytes:
        """``value`` as JSON (``null`` for ``None``), kept for the next line that has it."""
        if value is None:
            return _NULL
        if len(value) > _LONG:  # a long one is not kept: the table stays small
            return _quote(value).encode()
        out = self._quoted.get(value)
        if out is None:
            if len(self._quoted) >= _CACHED:
                self._quoted.clear()
            out = self._quoted[value] = _quote(value).encode()
        return out

    def _request(self, method: str, authority: str | None, path: str, version: str) -> bytes:
        """From the method's value to the status's key: kept while requests have the same
        method, authority, path and version (compared by value: four short compares, no
        allocation; a request that differs makes it anew)."""
        if not (
            path == self._path and authority == self._authority and method == self._method
            and version == self._version
        ):  # fmt: skip
            self._method, self._authority, self._path, self._version = (
                method, authority, path, version
            )  # fmt: skip
            self._req = b'%s,"authority":%s,"path":%s,"protocol":%s,"status":' % (
                self._q(method), self._q(authority), _quote(path).encode(),
                _H11 if version == "1.1" else self._q("HTTP/" + version),
            )  # fmt: skip
        return self._req

    def _head(self, listener: str, inbound: bool, when: float) -> bytes:
        """The line up to the method's value: time, listener, direction."""
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + "Z"
            self._heads[0].clear()
            self._heads[1].clear()
        heads = self._heads[1] if inbound else self._heads[0]
        head = heads.get(listener)
        if head is None:
            direction = "inbound" if inbound else "outbound"
            head = heads[listener] = (
                f'{{"time":"{self._stamp}","listener":{_quote(listener)},'
                f'"direction":"{direction}","method":'
            ).encode()
        return head

    def _conn_tail(self, conn: ConnectionContext) -> bytes:
        """The line from the peer on: the same for every request of a connection (kept for
        the latest connection, and in each connection's stash)."""
        if conn is not self._conn:
            tail = conn.stash.get(_TAIL, None)
            if tail is None:
                host, port = conn.peer_address
                tail = b',"peer":%s,"peer_identity":%s,"alpn":%s}\n' % (
                    _quote(f"{host}:{port}").encode(),
                    self._q(_identity(conn)),
                    self._q(conn.alpn),
                )
                conn.stash[_TAIL] = tail
            self._conn = conn
            self._tail = tail
        return self._tail

    def _own_identity(self, leaf: Any) -> str | None:
        """This sidecar's SPIFFE ID (``None`` without a certificate), kept per certificate."""
        if leaf is not self._leaf:
            self._leaf = leaf
            self._own = str(leaf.spiffe_id) if leaf is not None else None
        return self._own

    def _middle(
        self,
        route: str | None,
        cluster: str | None,
        upstream: str | None,
        source: str | None,
        destination: str | None,
    ) -> tuple[bytes, bytes]:
        """From ``route`` to the trace id's value, without a trace id and with one (its
        opening quote): the same for the requests that went the same way (the values come
        from config and certificates: compared by identity)."""
        if not (
            route is self._route and cluster is self._cluster and upstream is self._upstream
            and source is self._source and destination is self._destination
        ):  # fmt: skip
            self._route, self._cluster, self._upstream = route, cluster, upstream
            self._source, self._destination = source, destination
            q = self._q
            mid = b',"route":%s,"cluster":%s,"upstream":%s,"source_identity":%s,' % (
                q(route),
                q(cluster),
                q(upstream),
                q(source),
            )
            mid += b'"destination_identity":%s,"trace_id":' % q(destination)
            self._mids = (mid + b"null", mid + b'"')
        return self._mids

    def _add(self, parts: tuple[bytes, ...]) -> None:
        """Queue one line, given as its parts (its newline included); the batch is joined
        when it is written."""
        if self._closed:  # a stream that ended after the close: written at once
            with open(self.path, "ab") as f:
                f.write(b"".join(parts))
            return
        self._parts.extend(parts)
        self._count += 1
        if self._count >= _BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(_DELAY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._count:
            self._file.write(b"".join(self._parts))
            self._file.flush()
            self._parts.clear()
            self._count = 0

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._file.fileno() > 2:
            self._file.close()


def _identity(conn: ConnectionContext) -> str | None:
    """The peer's verified SPIFFE ID (inbound mTLS), ``None`` on plaintext."""
    peer = conn.peer_identity
    return peer.spiffe_id if peer is not None else None
