"""The resource API: HTTP + JSON on port 15014, protected by the admin token.

:class:`ResourceAPI` is the application (endpoints in ``_resources.py``, the
reference in docs/control-plane.md); :func:`serve_api` serves it on a listener
with the small h11 server of ``_http.py``; :class:`RegistryView` is what the
API reads from the service registry; :class:`APIClient` is the CLI's client.
"""

from __future__ import annotations

import functools
import logging
import ssl

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener

from ._ca import CAEndpoints
from ._client import APIClient, APIError
from ._http import MAX_BODY, HttpError, Request, Response, serve_connection
from ._registry_view import RegistryView
from ._resources import ResourceAPI

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BODY",
    "APIClient",
    "APIError",
    "CAEndpoints",
    "HttpError",
    "RegistryView",
    "Request",
    "ResourceAPI",
    "Response",
    "serve_api",
]


async def serve_api(
    listener: anyio.abc.Listener[anyio.abc.SocketStream],
    api: ResourceAPI,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve ``api`` on ``listener`` until cancelled (one task per connection).

    With ``ssl_context`` every connection starts with a TLS handshake; one that fails
    (plaintext, a client that does not trust the certificate) is closed and logged in
    one line at debug level, without a traceback.
    """
    handler = functools.partial(serve_connection, app=api)
    if ssl_context is None:
        await listener.serve(handler)
        return
    await _TLSListener(listener, ssl_context, standard_compatible=False).serve(handler)


class _TLSListener(TLSListener):
    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: anyio.abc.AnyByteStream) -> None:
        await anyio.aclose_forcefully(stream)
        if isinstance(exc, Exception) and not isinstance(exc, anyio.get_cancelled_exc_class()):
            log.debug("API: TLS handshake failed: %s", exc)
            return
        raise exc
