"""The store interface: what the logbook needs from a place that keeps entries.

A store keeps bytes and does no validation: the logbook verifies before it
writes. Every write happens inside :meth:`Store.transaction`, which is atomic
and, for a durable store, on disk when it returns.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from tidings.core.ids import FeedId


class StoredEntry(NamedTuple):
    seq: int
    hash: bytes
    raw: bytes
    payload: bytes | None

    @property
    def size(self) -> int:
        """Bytes this row holds in memory (entry and payload)."""
        return len(self.raw) + (len(self.payload) if self.payload is not None else 0)


def take_within(rows: Iterable[StoredEntry], max_bytes: int | None) -> list[StoredEntry]:
    """Rows up to and including the one that reaches ``max_bytes`` (at least one row)."""
    taken: list[StoredEntry] = []
    total = 0
    for row in rows:
        taken.append(row)
        total += row.size
        if max_bytes is not None and total >= max_bytes:
            break
    return taken


@dataclass(frozen=True, slots=True)
class FeedInfo:
    feed: FeedId
    latest_seq: int
    forked_at: int | None
    #: The entry hash at ``latest_seq`` (None when nothing is held).
    head_hash: bytes | None = None


class Arrival(NamedTuple):
    """One append: entries ``first_seq..last_seq`` of ``feed`` arrived together.

    Arrival ids grow with every append, so ``(id, seq)`` orders every entry
    a store ever took in, the order subscriptions and event streams follow.
    """

    id: int
    feed: FeedId
    first_seq: int
    last_seq: int


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """Atomic and exclusive; durable when it returns. Nests as a no-op."""
        ...

    def head(self, feed: FeedId) -> StoredEntry | None:
        """The newest stored entry of ``feed`` (payload omitted), or None."""
        ...

    def hashes(self, feed: FeedId, seqs: Collection[int]) -> dict[int, bytes]:
        """Hashes of the stored entries among ``seqs``."""
        ...

    def entries(
        self, feed: FeedId, since: int = 1, limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEntry]:
        """Stored entries with ``seq >= since``, ascending, at most ``limit``.

        With ``max_bytes`` the page stops once its entries and payloads reach
        that many bytes (it always holds at least one entry), so paging through
        a feed of large payloads keeps memory bounded.
        """
        ...

    def entries_at(
        self, feed: FeedId, seqs: Collection[int], *, payloads: bool = True
    ) -> list[StoredEntry]:
        """The stored entries among ``seqs``, ascending (without payloads if asked)."""
        ...

    def append(self, feed: FeedId, rows: Sequence[StoredEntry]) -> None:
        """Insert verified entries (and their payloads where given), and one arrival."""
        ...

    def arrivals(self, after: int, limit: int) -> list[Arrival]:
        """Arrivals with ``id > after``, oldest first, at most ``limit``."""
        ...

    def last_arrival(self) -> int:
        """The newest arrival's id (0 for an empty store)."""
        ...

    def payloads_held(self, feed: FeedId, seqs: Collection[int]) -> set[int]:
        """The seqs among ``seqs`` whose payload is stored (without reading them)."""
        ...

    def put_payload(self, feed: FeedId, seq: int, payload: bytes) -> None: ...

    def delete_payload(self, feed: FeedId, seq: int) -> bool:
        """Drop one payload, keep its entry; True if there was one."""
        ...

    def feed_bytes(self, feed: FeedId) -> int:
        """Bytes of entries and payloads stored for ``feed`` (a relay's quota)."""
        ...

    def delete_feed(self, feed: FeedId) -> None:
        """Forget ``feed``'s entries, payloads and fork proofs (a relay giving a feed's
        place to another, spec/14 §4). Its arrivals stay (their ids are cursors)."""
        ...

    def feeds(self) -> list[FeedInfo]: ...

    def forked_at(self, feed: FeedId) -> int | None: ...

    def add_fork_proof(self, feed: FeedId, seq: int, proof: bytes) -> bool:
        """Keep a verified fork proof and mark the feed forked at ``seq``.

        One proof per seq is kept; returns False if one was already held there.
        """
        ...

    def fork_proofs(self, feed: FeedId | None = None) -> list[bytes]: ...

    def close(self) -> None: ...


def undisputed_extent(store: Store, feed: FeedId) -> int:
    """The last seq of ``feed`` that is not disputed: the head, or the entry
    before the earliest fork (entries from a fork on are held, never served or
    shown, spec/06 §5). 0 when nothing is held."""
    head = store.head(feed)
    if head is None:
        return 0
    forked = store.forked_at(feed)
    return head.seq if forked is None else min(head.seq, forked - 1)
