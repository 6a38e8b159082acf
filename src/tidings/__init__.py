"""tidings: signed, append-only logs for asynchronous learning networks.

Apps embed a node with :func:`open_node` (a trio async context manager, see
:mod:`tidings.embed`) and publish content types such as :class:`Post`
(:mod:`tidings.content`). :class:`Logbook` is the store-level API; the pure
core lives in :mod:`tidings.core` and the stores in :mod:`tidings.storage`.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidings.core.content import (
        About,
        Attachment,
        EntryRef,
        Follow,
        LinkShare,
        Post,
        Unfollow,
        Unknown,
        describe,
    )
    from tidings.core.entry import (
        MAX_ENTRY_SIZE,
        MAX_PAYLOAD_SIZE,
        Entry,
        decode_entry,
        sign_entry,
    )
    from tidings.core.forks import ForkProof
    from tidings.core.ids import AuthorId, FeedId
    from tidings.core.lipmaa import certificate_pool, lipmaa
    from tidings.core.verify import (
        Anchor,
        RunCheck,
        check_run,
        partial_seqs,
        verify_partial,
        verify_run,
    )
    from tidings.embed import EmbeddedNode, Item, Status, Subscription
    from tidings.errors import InvalidEntry, TidingsError, UsageError
    from tidings.identity import Identity
    from tidings.node.lifecycle import open_node
    from tidings.storage import MemoryStore, SqliteStore, Store
    from tidings.storage.logbook import (
        DEFAULT_LOG,
        ImportResult,
        IngestResult,
        Logbook,
        VerifyReport,
    )

__version__ = "0.1.0"

#: Every public name is loaded on first use (PEP 562): ``import tidings`` costs
#: nothing, so ``tidings sync`` loads the protocol and store it needs and not the
#: content types, the identities or the HTTP side, and ``tidings --help`` starts
#: fast. ``from tidings import Post`` works as always.
_LAZY = {
    **dict.fromkeys(("About", "Attachment", "EntryRef", "Follow", "LinkShare", "Post",
                     "Unfollow", "Unknown", "describe"), "tidings.core.content"),
    **dict.fromkeys(("MAX_ENTRY_SIZE", "MAX_PAYLOAD_SIZE", "Entry", "decode_entry",
                     "sign_entry"), "tidings.core.entry"),
    "ForkProof": "tidings.core.forks",
    **dict.fromkeys(("AuthorId", "FeedId"), "tidings.core.ids"),
    **dict.fromkeys(("certificate_pool", "lipmaa"), "tidings.core.lipmaa"),
    **dict.fromkeys(("Anchor", "RunCheck", "check_run", "partial_seqs", "verify_partial",
                     "verify_run"), "tidings.core.verify"),
    **dict.fromkeys(("InvalidEntry", "TidingsError", "UsageError"), "tidings.errors"),
    "Identity": "tidings.identity",
    **dict.fromkeys(("MemoryStore", "SqliteStore", "Store"), "tidings.storage"),
    **dict.fromkeys(("DEFAULT_LOG", "ImportResult", "IngestResult", "Logbook",
                     "VerifyReport"), "tidings.storage.logbook"),
    **dict.fromkeys(("EmbeddedNode", "Item", "Status", "Subscription"), "tidings.embed"),
    "open_node": "tidings.node.lifecycle",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tidings' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_LOG",
    "MAX_ENTRY_SIZE",
    "MAX_PAYLOAD_SIZE",
    "About",
    "Anchor",
    "Attachment",
    "AuthorId",
    "EmbeddedNode",
    "Entry",
    "EntryRef",
    "FeedId",
    "Follow",
    "ForkProof",
    "Identity",
    "ImportResult",
    "IngestResult",
    "InvalidEntry",
    "Item",
    "LinkShare",
    "Logbook",
    "MemoryStore",
    "Post",
    "RunCheck",
    "SqliteStore",
    "Status",
    "Store",
    "Subscription",
    "TidingsError",
    "Unfollow",
    "Unknown",
    "UsageError",
    "VerifyReport",
    "certificate_pool",
    "check_run",
    "decode_entry",
    "describe",
    "lipmaa",
    "open_node",
    "partial_seqs",
    "sign_entry",
    "verify_partial",
    "verify_run",
]
