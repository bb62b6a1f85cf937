"""Control-plane storage: resources with store-wide revisions, and revision-based watches.

:class:`SqliteStore` is the default backend (a file in the data directory);
:class:`Store` is the interface an etcd backend implements for HA.
"""

from ._api import Change, ChangeKind, Compacted, Key, PutResult, Store, StoredResource
from ._sqlite import SqliteStore

__all__ = [
    "Change",
    "ChangeKind",
    "Compacted",
    "Key",
    "PutResult",
    "SqliteStore",
    "Store",
    "StoredResource",
]
