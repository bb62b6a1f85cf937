"""The resource API: HTTP + JSON on port 15014, protected by the admin token.

:class:`ResourceAPI` is the application (endpoints in ``_resources.py``, the
reference in docs/control-plane.md); :func:`serve_api` serves it on a listener
with the small h11 server of ``_http.py``; :class:`RegistryView` is what the
API reads from the service registry; :class:`APIClient` is the CLI's client.
"""

from __future__ import annotations

import functools
import ssl

import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.stapled import MultiListener

from ._ca import CAEndpoints
from ._client import APIClient, APIError
from ._http import MAX_BODY, HttpError, Request, Response, serve_connection
from ._registry_view import RegistryView
from ._resources import ResourceAPI
from ._transport import serve_sockets

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
    """Serve ``api`` on ``listener``'s sockets until cancelled (one task per connection).

    With ``ssl_context`` every connection starts with a TLS handshake, done by the event
    loop (``_transport.py``); one that fails (plaintext, a client that does not trust the
    certificate) is closed without a connection task, logged only in the loop's debug mode.
    """
    listeners = listener.listeners if isinstance(listener, MultiListener) else [listener]
    sockets = [one.extra(SocketAttribute.raw_socket) for one in listeners]
    await serve_sockets(sockets, functools.partial(serve_connection, app=api), ssl_context)
