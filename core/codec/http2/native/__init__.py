"""plait's own HTTP/2 connection under the HTTP/2 codec, in the place of ``h2``'s.

``outbound.py`` holds the connection state and the sending half, ``inbound.py`` the
receiving half (frames in, the events ``h2`` would emit out) with ``blocks.py`` (header
blocks, and the answers to errors), ``state.py`` streams,
windows and settings, ``validate.py`` what makes a received message malformed. Frames
are read and written by ``../frame_reader.py`` and ``../frames.py``, header blocks
coded by ``plait.core.codec.hpack``.

:class:`NativeH2Codec` (``codec.py``) is :class:`~plait.core.codec.http2.codec.H2Codec`
over this connection: the same interface, events and invariants.
"""

from __future__ import annotations

from .codec import NativeH2Codec
from .inbound import NativeConnection

__all__ = ["NativeConnection", "NativeH2Codec"]
