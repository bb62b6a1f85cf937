"""plait's own HTTP/2 connection under the HTTP/2 codec, in the place of ``h2``'s.

``outbound.py`` holds the connection state and the sending half, ``inbound.py`` the
receiving half (frames in, the events ``h2`` would emit out), ``state.py`` streams,
windows and settings, ``validate.py`` what makes a received message malformed. Frames
are read and written by ``../frame_reader.py`` and ``../frames.py``, header blocks
coded by ``plait.core.codec.hpack``.

:class:`NativeH2Codec` is :class:`~plait.core.codec.http2.codec.H2Codec` over this
connection: the same interface, events and invariants.
"""

from __future__ import annotations

from typing import cast

from ..codec import H2Codec
from ..conn import PlaitH2Connection
from ..limits import Clock
from .inbound import NativeConnection

__all__ = ["NativeConnection", "NativeH2Codec", "make_native_connection"]


def make_native_connection(
    *,
    client_side: bool,
    max_concurrent_streams: int,
    initial_window_size: int,
    max_header_list_size: int,
    clock: Clock | None = None,
) -> PlaitH2Connection:
    conn = NativeConnection(
        client_side=client_side,
        max_concurrent_streams=max_concurrent_streams,
        initial_window_size=initial_window_size,
        max_header_list_size=max_header_list_size,
        clock=clock,
    )
    # The codec drives either connection through the same interface (outbound.py).
    return cast(PlaitH2Connection, conn)


class NativeH2Codec(H2Codec):
    """The HTTP/2 codec over plait's own connection."""

    _make_connection = staticmethod(make_native_connection)
