"""The HPACK static and dynamic tables (RFC 7541 §2.3, §4), compiled with mypyc.

Theory of operation: index space is the static table (1-61) followed by the
dynamic table, newest entry first (§2.3.3). The dynamic table keeps its
entries oldest first in a list, so an insertion is an append and eviction
(§4.4) deletes from the front. The size of an entry is its name and value
lengths plus 32 (§4.1); an entry larger than the whole table empties it and is
not added.

An encoder also needs to *find* entries. Each inserted entry gets a serial
number (0, 1, 2, ...); ``exact`` maps a field and ``names`` a name to the
serial of its newest entry, so the entry's index is computed in O(1) from the
serial and the count of insertions: the newest entry (serial ``inserted - 1``)
has dynamic index 1. An evicted entry is removed from the maps only if the
map still points at it (a newer entry with the same key replaces the pointer).
A decoder's table (``searchable=False``) keeps no maps.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "STATIC",
    "STATIC_EXACT",
    "STATIC_LEN",
    "STATIC_NAMES",
    "STATIC_VALUED",
    "DynamicTable",
    "Field",
    "entry_size",
]

Field = tuple[bytes, ...]
"""A ``(name, value)`` field. Typed variable-length so that mypyc keeps it a boxed tuple:
a fixed-length tuple type would be unboxed, copying every field and losing its subclass."""

ENTRY_OVERHEAD: Final = 32

STATIC: Final[tuple[Field, ...]] = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)
"""The static table (RFC 7541 Appendix A); index ``i`` is ``STATIC[i - 1]``."""

STATIC_LEN: Final = 61


def _static_maps() -> tuple[dict[Field, int], dict[bytes, int]]:
    exact: dict[Field, int] = {}
    names: dict[bytes, int] = {}
    for i, field in enumerate(STATIC):
        exact.setdefault(field, i + 1)
        names.setdefault(field[0], i + 1)
    return exact, names


STATIC_EXACT, STATIC_NAMES = _static_maps()
"""A static field -> its index, and a static name -> the index of its first entry."""
STATIC_VALUED: Final = frozenset(name for name, value in STATIC if value)
"""The names whose static entries carry a value (only those can match a field exactly)."""


def entry_size(name: bytes, value: bytes) -> int:
    """The size an entry takes in the dynamic table (RFC 7541 §4.1)."""
    return len(name) + len(value) + ENTRY_OVERHEAD


class DynamicTable:
    """One side's dynamic table: entries, their total size and the size limit."""

    def __init__(self, max_size: int = 4096, *, searchable: bool = False) -> None:
        self.entries: list[Field] = []
        self.size = 0
        self.max_size = max_size
        self.searchable = searchable
        self.inserted = 0  # serial number of the next entry
        self.exact: dict[Field, int] = {}
        self.names: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, index: int) -> Field | None:
        """The entry at dynamic index ``index`` (1 = newest), or None if there is none."""
        n = len(self.entries)
        if 1 <= index <= n:
            return self.entries[n - index]
        return None

    def add(self, field: Field) -> None:
        """Insert ``field`` as the newest entry, evicting the oldest to make room (§4.4)."""
        size = entry_size(field[0], field[1])
        if size > self.max_size:
            self._evict(len(self.entries))
            return
        self.entries.append(field)
        self.size += size
        if self.searchable:
            self.exact[field] = self.inserted
            self.names[field[0]] = self.inserted
        self.inserted += 1
        if self.size > self.max_size:
            self._shrink()

    def resize(self, max_size: int) -> None:
        """Set the size limit, evicting entries until the table fits (§4.3)."""
        self.max_size = max_size
        self._shrink()

    def find(self, field: Field) -> int:
        """The index (in the combined space) of an entry equal to ``field``, or 0."""
        serial = self.exact.get(field, -1)
        if serial < 0:
            return 0
        return STATIC_LEN + self.inserted - serial

    def find_name(self, name: bytes) -> int:
        """The index (in the combined space) of an entry named ``name``, or 0."""
        serial = self.names.get(name, -1)
        if serial < 0:
            return 0
        return STATIC_LEN + self.inserted - serial

    def _shrink(self) -> None:
        count = 0
        size = self.size
        entries = self.entries
        while size > self.max_size:
            field = entries[count]
            size -= entry_size(field[0], field[1])
            count += 1
        if count:
            self._evict(count)

    def _evict(self, count: int) -> None:
        entries = self.entries
        if self.searchable:
            first = self.inserted - len(entries)  # serial of the oldest entry
            for i in range(count):
                field = entries[i]
                if self.exact.get(field, -1) == first + i:
                    del self.exact[field]
                if self.names.get(field[0], -1) == first + i:
                    del self.names[field[0]]
        for i in range(count):
            field = entries[i]
            self.size -= entry_size(field[0], field[1])
        del entries[:count]
