"""Message bodies as seen by ``around_upstream`` layers.

A :class:`MessageBody` yields the body chunk by chunk with :meth:`read` and
holds the trailers once the last chunk has been read. The core hands layers a
streaming implementation; filters that make a body of their own use
:class:`BufferedBody`.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

from ._exceptions import BodyTooLarge
from ._headers import Headers

__all__ = ["BufferedBody", "MessageBody"]


@mypyc_attr(allow_interpreted_subclasses=True)
class MessageBody:
    """A body that can be read once. Subclasses implement :meth:`read`."""

    trailers: Headers | None = None
    whole: bytes | None = None
    """The entire body when it is already in memory and nothing has been read yet.

    Layers and the core use it to send a small body in one write; reading
    through :meth:`read` works either way."""

    async def read(self) -> bytes:
        """The next chunk, or ``b""`` once the body has ended."""
        raise NotImplementedError

    async def read_all(self, limit: int = 1 << 24) -> bytes:
        """The rest of the body; raises :class:`BodyTooLarge` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


@mypyc_attr(allow_interpreted_subclasses=True)
class BufferedBody(MessageBody):
    """A body already in memory."""

    def __init__(self, data: bytes = b"", trailers: Headers | None = None) -> None:
        self._data: bytes | None = data
        self._trailers_after = trailers
        self.whole = data
        self.trailers = trailers

    async def read(self) -> bytes:
        self.whole = None
        data, self._data = self._data, None
        if data is None or not data:
            self._data = None
            self.trailers = self._trailers_after
            return b""
        return data
