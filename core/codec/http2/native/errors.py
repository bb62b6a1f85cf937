"""The exception plait's own HTTP/2 connection raises on a connection error.

Theory of operation: the codec (``receive.py``) handles h2's ``ProtocolError`` from
either connection the same way: its ``error_code`` went out in GOAWAY, its ``reason``
(if any) names the abuse limit for the connection-error counter. :class:`WireError` is
that exception for plait's connection. It lives apart from the compiled modules of
this package, since a class compiled with mypyc cannot derive from h2's.
"""

from __future__ import annotations

from h2.exceptions import ProtocolError

__all__ = ["WireError"]


class WireError(ProtocolError):
    """A connection error found by plait's connection; GOAWAY with ``error_code`` is queued."""

    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.error_code = code  # type: ignore[assignment]
        self.reason = reason
