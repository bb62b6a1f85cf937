"""The HTTP/2 codec, on h2: one sans-I/O :class:`H2Codec` per connection, both sides.

``codec`` holds the public class (connection lifecycle, the ``send_*`` commands);
``conn`` the h2 connection and where it departs from stock h2; ``headers`` head <-> field
list; ``flow`` stream records and the send queue; ``receive`` h2 events -> plait events;
``limits`` what a peer may make the codec do (rapid reset, control floods, header blocks).

This package imports no anyio, asyncio or socket module.
"""

from .codec import H2_PREFACE, H2Codec, is_h2_preface

__all__ = ["H2_PREFACE", "H2Codec", "is_h2_preface"]
