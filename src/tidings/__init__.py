"""tidings: signed, append-only logs for asynchronous learning networks.

The main entry point is :class:`Logbook`; the pure core lives in
:mod:`tidings.core` and the stores in :mod:`tidings.storage`.
"""

from tidings.core.entry import MAX_ENTRY_SIZE, MAX_PAYLOAD_SIZE, Entry, decode_entry, sign_entry
from tidings.core.forks import ForkProof
from tidings.core.ids import AuthorId, FeedId
from tidings.core.lipmaa import certificate_pool, lipmaa
from tidings.core.verify import Anchor, partial_seqs, verify_partial, verify_run
from tidings.errors import InvalidEntry, TidingsError, UsageError
from tidings.identity import Identity
from tidings.logbook import DEFAULT_LOG, ImportResult, IngestResult, Logbook, VerifyReport
from tidings.storage import MemoryStore, SqliteStore, Store

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LOG",
    "MAX_ENTRY_SIZE",
    "MAX_PAYLOAD_SIZE",
    "Anchor",
    "AuthorId",
    "Entry",
    "FeedId",
    "ForkProof",
    "Identity",
    "ImportResult",
    "IngestResult",
    "InvalidEntry",
    "Logbook",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "TidingsError",
    "UsageError",
    "VerifyReport",
    "certificate_pool",
    "decode_entry",
    "lipmaa",
    "partial_seqs",
    "sign_entry",
    "verify_partial",
    "verify_run",
]
