"""The HTTP/2 codec over plait's own connection.

Theory of operation: :class:`NativeH2Codec` is :class:`~..codec.H2Codec` (the public
interface, the send queue and the translation to plait events) with one difference: the
connection it drives is a :class:`~.inbound.NativeConnection` instead of h2's. Both
offer the interface ``codec.py``, ``flow.py`` and ``receive.py`` use, and emit the same
events, so every behaviour and invariant of the codec holds over either.
"""

from __future__ import annotations

from typing import Any

from ..codec import H2Codec
from ..limits import Clock
from .inbound import NativeConnection

__all__ = ["NativeH2Codec"]


class NativeH2Codec(H2Codec):
    """The HTTP/2 codec over plait's own connection."""

    def _new_connection(
        self,
        *,
        client_side: bool,
        max_concurrent_streams: int,
        initial_window_size: int,
        max_header_list_size: int,
        clock: Clock | None,
    ) -> Any:
        return NativeConnection(
            client_side=client_side,
            max_concurrent_streams=max_concurrent_streams,
            initial_window_size=initial_window_size,
            max_header_list_size=max_header_list_size,
            clock=clock,
        )
