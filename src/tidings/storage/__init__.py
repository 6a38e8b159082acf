"""Where entries live: the :class:`Store` interface and its SQLite and in-memory implementations."""

from tidings.storage.base import Arrival, FeedInfo, Store, StoredEntry, undisputed_extent
from tidings.storage.memory import MemoryStore
from tidings.storage.sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "SCHEMA_VERSION", "Arrival", "FeedInfo", "MemoryStore", "SqliteStore", "Store", "StoredEntry",
    "undisputed_extent",
]
