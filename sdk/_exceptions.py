"""The plait error hierarchy.

Who is at fault decides the class, and every class carries the HTTP status the
proxy answers with when the error ends a stream (``status_hint``) and a short
``reason`` that goes into the ``x-plait-reason`` response header and the access
log::

    PlaitError
    ├── ConfigError                     a config document is invalid (file, field, expected)
    ├── FilterError                     a filter failed; contained, 500 by default
    ├── DownstreamProtocolError   400   the client broke HTTP
    │   ├── HeadersTooLarge       431
    │   ├── RequestTimeout        408   request head not completed in time
    │   └── BodyTooLarge          413
    ├── NoRoute                   404   no route matched
    └── UpstreamError             502   the upstream failed us
        ├── UpstreamConnectError  503   connection refused / unreachable
        ├── NoHealthyUpstream     503   the backend has no endpoint
        ├── UpstreamTimeout       504
        └── UpstreamReset         502   the upstream reset or closed mid-response
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BodyTooLarge",
    "ConfigError",
    "DownstreamProtocolError",
    "FilterError",
    "HeadersTooLarge",
    "NoHealthyUpstream",
    "NoRoute",
    "PlaitError",
    "RequestTimeout",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamReset",
    "UpstreamTimeout",
]


class PlaitError(Exception):
    status_hint: ClassVar[int] = 500
    reason: ClassVar[str] = "internal error"


class ConfigError(PlaitError):
    """A config document is invalid.

    ``str(err)`` reads ``FILE: FIELD: expected WHAT, got WHAT``, so an operator
    can go straight to the line to fix.
    """

    reason = "invalid config"

    def __init__(self, message: str, *, file: str = "", field: str = "") -> None:
        self.file = file
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(p for p in (self.file, self.field) if p)
        return f"{where}: {self.message}" if where else self.message

    def at(self, *, file: str | None = None, prefix: str | None = None) -> ConfigError:
        """A copy located in ``file`` and/or nested under the field path ``prefix``."""
        field = self.field
        if prefix:
            field = f"{prefix}.{field}" if field and not field.startswith("[") else prefix + field
        return ConfigError(self.message, file=file or self.file, field=field)


class FilterError(PlaitError):
    reason = "filter failed"


class DownstreamProtocolError(PlaitError):
    status_hint = 400
    reason = "bad request"


class HeadersTooLarge(DownstreamProtocolError):
    status_hint = 431
    reason = "request headers too large"


class RequestTimeout(DownstreamProtocolError):
    status_hint = 408
    reason = "request timeout"


class BodyTooLarge(DownstreamProtocolError):
    status_hint = 413
    reason = "body too large"


class NoRoute(PlaitError):
    status_hint = 404
    reason = "no route"


class UpstreamError(PlaitError):
    status_hint = 502
    reason = "upstream error"


class UpstreamConnectError(UpstreamError):
    status_hint = 503
    reason = "upstream connect failure"


class NoHealthyUpstream(UpstreamError):
    status_hint = 503
    reason = "no healthy upstream"


class UpstreamTimeout(UpstreamError):
    status_hint = 504
    reason = "upstream timeout"


class UpstreamReset(UpstreamError):
    status_hint = 502
    reason = "upstream reset"
