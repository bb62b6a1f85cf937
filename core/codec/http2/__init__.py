"""The HTTP/2 codec: one sans-I/O :class:`H2Codec` per connection, both sides.

``codec`` holds the public class (connection lifecycle, the ``send_*`` commands);
``flow`` stream records and the send queue; ``receive`` connection events -> plait
events; ``headers`` head <-> field list; ``limits`` what a peer may make the codec do
(rapid reset, control floods, header blocks). Under the codec runs one of two HTTP/2
connections with the same interface: ``h2``'s (``conn.py``, where plait departs from
stock h2; the reference) or plait's own (``native/``, on the frame layer of
``frames.py`` and ``frame_reader.py``, compiled). :class:`H2Codec` is the codec over
h2's, :class:`NativeH2Codec` over plait's; :data:`SidecarH2Codec` is the one the
sidecar's server and upstream connections use: plait's, or h2's when the environment
sets ``PLAIT_H2_CODEC=h2``.

This package imports no anyio, asyncio or socket module.
"""

import os

from .codec import H2_PREFACE, H2Codec, is_h2_preface
from .native import NativeH2Codec

SidecarH2Codec: type[H2Codec] = (
    H2Codec if os.environ.get("PLAIT_H2_CODEC") == "h2" else NativeH2Codec
)

__all__ = ["H2_PREFACE", "H2Codec", "NativeH2Codec", "SidecarH2Codec", "is_h2_preface"]
