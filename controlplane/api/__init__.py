"""The resource API: HTTP + JSON on port 15014, protected by the admin token.

:class:`ResourceAPI` is the application (endpoints in ``_resources.py``, the
reference in docs/control-plane.md); :func:`serve_api` serves it on a listener
with the small h11 server of ``_http.py``; :class:`RegistryView` is what the
API reads from the service registry; :class:`APIClient` is the CLI's client.
"""

from __future__ import annotations

import functools

import anyio.abc

from ._ca import CAEndpoints
from ._client import APIClient, APIError
from ._http import MAX_BODY, HttpError, Request, Response, serve_connection
from ._registry_view import RegistryView
from ._resources import ResourceAPI

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


async def serve_api(listener: anyio.abc.Listener[anyio.abc.SocketStream], api: ResourceAPI) -> None:
    """Serve ``api`` on ``listener`` until cancelled (one task per connection)."""
    await listener.serve(functools.partial(serve_connection, app=api))
