"""Strict RFC 9112 grammar checks for the h11 reference codec, where h11 is lax.

Theory of operation: h11 is a careful parser, but by design it accepts some
inputs RFC 9112 lets a recipient reject and a proxy must reject (they are
smuggling vectors when the next hop reads them differently). The reference
codec therefore cuts each head out of the input itself, checks its raw bytes
here, and only then gives it to h11. What this module adds to h11:

* bare LF line ends (h11 accepts them; RFC 9112 §2.2 says MAY);
* obs-fold (h11 unfolds; RFC 9112 §5.2 allows rejecting with 400);
* control characters in field values (h11 accepts them; RFC 9110 §5.5);
* repeated identical Content-Length and ``1, 1`` lists (h11 collapses them;
  RFC 9110 §8.6 allows rejecting);
* unknown methods, 501 (h11 accepts any token; llhttp only knows a list);
* leading empty lines before a request line are skipped (RFC 9112 §2.2;
  h11 rejects them);
* strict chunk-size lines, chunk extensions and trailer lines (h11 accepts
  anything after ``;``), mirroring llhttp's grammar.

Invariants: every check raises :class:`ProtocolError`; nothing here decides
framing (that is ``http1.rules``, shared with the fast codec).
"""

from __future__ import annotations

import re

from plait.sdk import HeaderPairs

from ..http1.rules import HTTP_METHODS, SPECIAL, ProtocolError, unknown_method_status

__all__ = [
    "ChunkChecker",
    "check_partial_head",
    "head_end",
    "parse_request_head",
    "parse_response_head",
]

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_FIELD = re.compile(rb"(%s):([\t \x21-\x7e\x80-\xff]*)" % _TOKEN)
_REQUEST_REST = re.compile(rb"([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
_LLHTTP_VERSIONS = frozenset({b"0.9", b"1.0", b"1.1", b"2.0"})
_STATUS = re.compile(rb"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: ([\t \x21-\x7e\x80-\xff]*))?")
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 9112 §7.1.1 as llhttp reads it: no BWS (rejected), but empty names and
# values, and a token directly followed by a quoted-string, are accepted
# (extensions are dropped), as long as the line does not end with ";".
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:;(?:%s)?(?:=(?:%s)?(?:%s)?)?)*" % (_TOKEN, _TOKEN, _QUOTED)
)
# Completions that turn any valid prefix of a chunk line / field line into a valid line.
_CHUNK_COMPLETIONS = (b"", b"a", b'"', b'a"')
_FIELD_COMPLETIONS = (b"", b":")


def head_end(buf: bytes | bytearray) -> tuple[int, int]:
    """``(start, end)`` of the head in ``buf``: after leading CR/LF, through CRLF CRLF.

    ``end`` is -1 while the head is incomplete. Leading CR and LF octets are
    skipped like llhttp does (RFC 9112 §2.2 asks to ignore at least one CRLF).
    """
    start = len(buf) - len(buf.lstrip(b"\r\n"))
    i = buf.find(b"\r\n\r\n", start)
    return start, (i + 4 if i >= 0 else -1)


def check_partial_head(partial: bytes, *, request: bool) -> None:
    """Reject an incomplete head early when one of its complete lines is already bad.

    llhttp rejects as it reads; this keeps the reference codec from waiting
    for the rest of a head that can only fail.
    """
    bad = 400 if request else 502
    lines = partial.split(b"\r\n")
    last = lines.pop()
    if lines:
        if request:
            _request_line(lines[0])
        else:
            _status_line(lines[0])
        _framing_so_far(_fields(lines[1:], bad), bad)
        part = last.rstrip(b"\r")
        if part and not any(_FIELD.fullmatch(part + c) for c in _FIELD_COMPLETIONS):
            raise ProtocolError(bad, "invalid header line")
    elif request:
        _request_line(last, complete=False)
    _no_bare(last[:-1], bad)
    if b"\n" in last[-1:]:
        raise ProtocolError(bad, "bare CR or LF in the header section")


def _framing_so_far(specials: HeaderPairs, bad: int) -> None:
    # llhttp rejects these as soon as it reads the field, before the head ends.
    names = [n for n, _ in specials]
    lengths = [v for n, v in specials if n == b"content-length"]
    if len(lengths) > 1 or any(not v.isdigit() for v in lengths):
        raise ProtocolError(bad, "invalid or repeated Content-Length")
    if lengths and b"transfer-encoding" in names:
        raise ProtocolError(bad, "Transfer-Encoding with Content-Length")


def _fields(lines: list[bytes], bad: int) -> HeaderPairs:
    """Validate field lines; return the set-aside (SPECIAL) ones, lower-cased and stripped."""
    specials: HeaderPairs = []
    for line in lines:
        _no_bare(line, bad)
        m = _FIELD.fullmatch(line)  # also rejects obs-fold: a line starting with SP/HTAB
        if m is None:
            raise ProtocolError(bad, "invalid header line")
        name = m[1].lower()
        if name in SPECIAL:
            value = m[2].strip(b" \t")
            if name == b"transfer-encoding" and b"\t" in m[2].lstrip(b" \t")[len(value) :]:
                raise ProtocolError(bad, "HTAB after Transfer-Encoding")  # as llhttp
            specials.append((name, value))
    return specials


def _no_bare(line: bytes, bad: int) -> None:
    # RFC 9112 §2.2: we do not accept a bare LF (or CR) as a line end.
    if b"\r" in line or b"\n" in line:
        raise ProtocolError(bad, "bare CR or LF in the header section")


def parse_request_head(head: bytes) -> tuple[bytes, bytes, bytes, HeaderPairs]:
    """Check a request head (through its CRLF CRLF) and return (method, target, version, specials).

    The checks run in llhttp's order, so both codecs give the same status:
    method (501 unknown, 400 malformed, 505 for the HTTP/2 preface), then
    target and version syntax (400), then the version (505), then fields.
    """
    lines = head[:-4].split(b"\r\n")
    method, target, version = _request_line(lines[0])
    return method, target, version, _fields(lines[1:], 400)


def _request_line(line: bytes, *, complete: bool = True) -> tuple[bytes, bytes, bytes]:
    """Check a request line in llhttp's order; an incomplete one only as far as it goes."""
    method, _, rest = line.partition(b" ")
    if method not in HTTP_METHODS:  # unknown, malformed, or PRI
        if not complete:  # the verdict needs the whole line (bare CR/LF: see caller)
            return method, b"", b""
        raise ProtocolError(unknown_method_status(line), "unknown or malformed method")
    m = _REQUEST_REST.match(rest)
    if m is not None and m[2] not in _LLHTTP_VERSIONS:
        raise ProtocolError(505, "HTTP version not supported")  # llhttp stops right there
    if not complete:
        return method, b"", b""
    _no_bare(rest, 400)
    m = _REQUEST_REST.fullmatch(rest)
    if m is None:
        raise ProtocolError(400, "malformed request line")
    version = m[2]
    if version not in (b"1.1", b"1.0"):
        raise ProtocolError(505, "HTTP version not supported")
    return method, m[1], version


def parse_response_head(head: bytes) -> tuple[bytes, int, HeaderPairs]:
    """Check a response head and return (version, status, specials); failures are 502."""
    lines = head[:-4].split(b"\r\n")
    version, status = _status_line(lines[0])
    return version, status, _fields(lines[1:], 502)


def _status_line(line: bytes) -> tuple[bytes, int]:
    _no_bare(line, 502)
    m = _STATUS.fullmatch(line)
    if m is None:
        raise ProtocolError(502, "malformed status line")
    if m[1] != b"1.1" and m[1] != b"1.0":
        raise ProtocolError(502, "HTTP version not supported")
    status = int(m[2])
    if not 100 <= status <= 599:
        raise ProtocolError(502, "invalid status code")
    return m[1], status


class ChunkChecker:
    """Follows a chunked body's framing (RFC 9112 §7.1) next to h11 and checks it strictly."""

    __slots__ = ("_bad", "_buf", "_left", "_limit", "_state", "_trailer_bytes", "done")

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self, limit: int, bad: int) -> None:
        self._buf = bytearray()
        self._state = self._SIZE
        self._left = 0
        self._limit = limit
        self._bad = bad
        self._trailer_bytes = 0
        self.done = False

    def feed(self, data: bytes) -> None:
        """Check the next body bytes; raises ProtocolError on bad framing."""
        buf = self._buf
        buf += data
        while not self.done:
            if self._state == self._DATA:
                take = min(self._left, len(buf))
                del buf[:take]
                self._left -= take
                if self._left:
                    return
                self._state = self._DATA_END
            elif self._state == self._DATA_END:
                if len(buf) < 2:
                    if bytes(buf[:1]) not in (b"", b"\r"):
                        raise ProtocolError(self._bad, "chunk data not followed by CRLF")
                    return
                if buf[:2] != b"\r\n":
                    raise ProtocolError(self._bad, "chunk data not followed by CRLF")
                del buf[:2]
                self._state = self._SIZE
            else:
                line = self._line()
                if line is None:
                    self._check_partial()
                    return
                if self._state == self._SIZE:
                    self._size_line(line)
                else:
                    self._trailer_line(line)

    def _check_partial(self) -> None:
        # llhttp rejects a bad chunk or trailer line as it reads it.
        partial = bytes(self._buf)
        partial = partial[:-1] if partial.endswith(b"\r") else partial
        if not partial:
            return
        if self._state == self._SIZE:
            ok = any(_CHUNK_LINE.fullmatch(partial + c) for c in _CHUNK_COMPLETIONS)
        else:
            ok = any(_FIELD.fullmatch(partial + c) for c in _FIELD_COMPLETIONS)
        if not ok or b"\r" in partial or b"\n" in partial:
            raise ProtocolError(self._bad, "invalid chunk framing")

    def _line(self) -> bytes | None:
        buf = self._buf
        i = buf.find(b"\r\n")
        if i < 0:
            if len(buf) > self._limit:
                raise ProtocolError(self._bad, "chunk line too long")
            return None
        line = bytes(buf[:i])
        del buf[: i + 2]
        if b"\r" in line or b"\n" in line:
            raise ProtocolError(self._bad, "bare CR or LF in chunk framing")
        return line

    def _size_line(self, line: bytes) -> None:
        m = _CHUNK_LINE.fullmatch(line)
        if m is None or line.endswith(b";"):
            raise ProtocolError(self._bad, "invalid chunk size line")
        size = int(m[1], 16)
        if size >= 1 << 64:
            raise ProtocolError(self._bad, "chunk size overflow")
        self._left = size
        self._state = self._DATA if size else self._TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self.done = True
            return
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > self._limit:
            raise ProtocolError(self._bad, "trailer section too large")
        for name, _ in _fields([line], self._bad):
            # RFC 9110 §6.5.1: no framing fields in trailers (llhttp rejects them).
            if name in (b"content-length", b"transfer-encoding"):
                raise ProtocolError(self._bad, "framing field in trailers")
