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
API repeats them); route to destination identity while requests go the same way, and
these three joined while all three are the same; the end (retries, failure reason and
request id of a request served at its first try without a request id, then peer, peer
identity and ALPN) once per connection (kept in the connection's stash, as a client's
connections take turns). The fields that change with every request come after the ones
that mostly do not, so the kept ones are few parts: status, duration, bytes and the trace
id. The trace id is the one the sampling decision gave the request (lower-case hex,
written as is); without tracing it is read from the headers. The parts of a line are
bytes (a kept part was encoded when it was made; the numbers come from tables with the
keys around them), and a line waits as its parts, appended to the batch's list: the ones
requests share are the same objects, so a request adds about seven references and no
string is built for it. A batch is one join and one ``write``."""

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
_TENTHS: Final = tuple(b"%d.%d" % divmod(n, 10) for n in range(100))
"""The duration under 10 ms to its tenth of a millisecond (``_TENTHS[us // 100]``)."""
_REST: Final = tuple(b'%02d,"bytes_received":' % n for n in range(100))
_REST_NONE: Final = tuple(b'%02d,"bytes_received":0,"bytes_sent":' % n for n in range(100))
"""The duration's last two digits (microseconds), then the bytes received or their key.
The duration's digits come from tables of 100: a line reads them at random, and a table
of 1000 parts (a part per microsecond) would miss the processor's caches."""
_RECEIVED: Final = tuple(b'%d,"bytes_sent":' % n for n in range(1000))
_SENT: Final = tuple(b'%d,"trace_id":null' % n for n in range(1000))
_SENT_TRACED: Final = tuple(b'%d,"trace_id":"' % n for n in range(1000))
"""A line's numbers are parts of their own, with the keys around them from tables: no
string is built for them. A request without a body (most are) has the end of its
duration and its zero bytes received in one part; the bytes sent come with the trace
id's key, and its value's opening quote (a request with a trace id) or ``null``."""
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
_ENDS: Final[StashKey[list[bytes]]] = StashKey("plait.access_log.ends")
"""A connection's line ends, kept in its stash: made once per connection, however its
requests interleave with other connections'. ``[tail, *outcome + tail]``: the peer, peer
identity and ALPN, then each :data:`_OUTCOME` followed by them (made when first used)."""
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
        self._ends: list[bytes] = [b""] * (len(_OUTCOME) + 1)
        """The line ends of ``_conn`` (its stash's :data:`_ENDS`)."""
        self._head_key: tuple[str, bool, int] = ("", False, -1)
        self._head_last = b""
        """The latest line's start (time, listener, direction) and what made it."""
        self._leaf: object = None
        self._own: str | None = None
        self._route: str | None = None
        self._cluster: str | None = None
        self._upstream: str | None = None
        self._source: str | None = None
        self._destination: str | None = None
        self._mid = self._middle("", None, None, None, None)
        self._method = ""
        self._authority: str | None = ""
        self._path: str | None = None  # no request yet: the first one makes the segment
        self._version = ""
        self._req = b""
        """The line from the method's value to the route's key, for the request above."""
        self._start_of: tuple[bytes, bytes, bytes] = (b"", b"", b"")
        self._start = b""
        """``_start_of``'s parts (head, request, middle) joined: kept while all three are the
        same objects."""

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
        mid = self._middle(ctx.route_name, ctx.cluster, ctx.upstream_address, source, destination)
        head = self._head(listener, inbound, _now() - seconds)
        request = self._request(req.method, req.authority, req.path, req.http_version)
        known = self._start_of
        if head is not known[0] or request is not known[1] or mid is not known[2]:
            self._start_of = (head, request, mid)
            self._start = head + request + mid
        status = resp.status if resp is not None else 0
        ms = us // 1000
        traced = trace_id is not None
        reason = ctx.failure_reason
        ends = self._conn_ends(ctx.connection)
        if attempts <= 1 and reason is None:
            kind = 2 * traced + (request_id is None)
            if request_id is None:
                end = ends[kind + 1]
                if not end:
                    end = ends[kind + 1] = _OUTCOME[kind] + ends[0]
            else:  # the outcome ends with the request id's key
                end = _OUTCOME[kind] + _text(request_id) + ends[0]
        else:
            end = b'%s,"retries":%s,"failure_reason":%s,"request_id":%s%s' % (
                _TRACE_END[traced], _n(max(attempts - 1, 0)), self._q(reason),
                _NULL if request_id is None else _text(request_id), ends[0],
            )  # fmt: skip
        closed = self._closed
        parts = [] if closed else self._parts
        parts.append(self._start)
        parts.append(_STATUS[status] if 0 <= status < 1000 else b'%d,"duration_ms":' % status)
        parts.append(_TENTHS[us // 100] if us < 10_000 else b"%d.%d" % (ms, us // 100 % 10))
        if received == 0:
            parts.append(_REST_NONE[us % 100])
        else:
            parts.append(_REST[us % 100])
            parts.append(
                _RECEIVED[received] if 0 < received < 1000 else b'%d,"bytes_sent":' % received
            )
        if trace_id is None:
            parts.append(_SENT[sent] if 0 <= sent < 1000 else b'%d,"trace_id":null' % sent)
        else:
            parts.append(_SENT_TRACED[sent] if 0 <= sent < 1000 else b'%d,"trace_id":"' % sent)
            parts.append(trace_id)
        parts.append(end)
        if closed:  # a stream that ended after the close: written at once
            self._add(tuple(parts))
            return
        self._count += 1
        if self._count >= _BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(_DELAY, self.flush)

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
        """From the method's value to the protocol's: kept while requests have the same
        method, authority, path and version (compared by value: four short compares, no
        allocation; a request that differs makes it anew)."""
        if not (
            path == self._path and authority == self._authority and method == self._method
            and version == self._version
        ):  # fmt: skip
            self._method, self._authority, self._path, self._version = (
                method, authority, path, version
            )  # fmt: skip
            self._req = b'%s,"authority":%s,"path":%s,"protocol":%s' % (
                self._q(method), self._q(authority), _quote(path).encode(),
                _H11 if version == "1.1" else self._q("HTTP/" + version),
            )  # fmt: skip
        return self._req

    def _head(self, listener: str, inbound: bool, when: float) -> bytes:
        """The line up to the method's value: time, listener, direction."""
        second = int(when)
        key = self._head_key
        if second == key[2] and listener is key[0] and inbound == key[1]:
            return self._head_last  # as the line before
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
        self._head_key = (listener, inbound, second)
        self._head_last = head
        return head

    def _conn_ends(self, conn: ConnectionContext) -> list[bytes]:
        """The line ends of a connection (:data:`_ENDS`): kept for the latest connection,
        and in each connection's stash."""
        if conn is not self._conn:
            ends = conn.stash.get(_ENDS, None)
            if ends is None:
                host, port = conn.peer_address
                tail = b',"peer":%s,"peer_identity":%s,"alpn":%s}\n' % (
                    _quote(f"{host}:{port}").encode(),
                    self._q(_identity(conn)),
                    self._q(conn.alpn),
                )
                ends = conn.stash[_ENDS] = [tail] + [b""] * len(_OUTCOME)
            self._conn = conn
            self._ends = ends
        return self._ends

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
    ) -> bytes:
        """From the route to the status's key: the same for the requests that went the same
        way (the values come from config and certificates: compared by identity)."""
        if not (
            route is self._route and cluster is self._cluster and upstream is self._upstream
            and source is self._source and destination is self._destination
        ):  # fmt: skip
            self._route, self._cluster, self._upstream = route, cluster, upstream
            self._source, self._destination = source, destination
            q = self._q
            self._mid = b"".join((
                b',"route":', q(route), b',"cluster":', q(cluster), b',"upstream":', q(upstream),
                b',"source_identity":', q(source), b',"destination_identity":', q(destination),
                b',"status":',
            ))  # fmt: skip
        return self._mid

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
