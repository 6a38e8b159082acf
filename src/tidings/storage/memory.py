"""An in-memory store for unit tests and the simulator. Not durable."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

from tidings.core.ids import FeedId
from tidings.storage.base import Arrival, FeedInfo, StoredEntry, take_within


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: dict[FeedId, list[StoredEntry]] = {}
        self._proofs: dict[FeedId, dict[int, bytes]] = {}
        self._arrivals: list[Arrival] = []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # Writes are applied in place; the logbook only writes once verification
        # is done, so there is nothing to roll back.
        with self._lock:
            yield

    def _log(self, feed: FeedId) -> list[StoredEntry]:
        return self._entries.get(feed, [])

    def head(self, feed: FeedId) -> StoredEntry | None:
        log = self._log(feed)
        return log[-1]._replace(payload=None) if log else None

    def hashes(self, feed: FeedId, seqs: Collection[int]) -> dict[int, bytes]:
        log = self._log(feed)
        return {seq: log[seq - 1].hash for seq in seqs if 1 <= seq <= len(log)}

    def entries(
        self, feed: FeedId, since: int = 1, limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEntry]:
        log = self._log(feed)
        start = max(since, 1) - 1
        end = len(log) if limit is None else min(len(log), start + limit)
        return take_within(log[start:end], max_bytes)

    def entries_at(
        self, feed: FeedId, seqs: Collection[int], *, payloads: bool = True
    ) -> list[StoredEntry]:
        log = self._log(feed)
        rows = [log[seq - 1] for seq in sorted(set(seqs)) if 1 <= seq <= len(log)]
        return rows if payloads else [row._replace(payload=None) for row in rows]

    def append(self, feed: FeedId, rows: Sequence[StoredEntry]) -> None:
        log = self._entries.setdefault(feed, [])
        for row in rows:
            if row.seq != len(log) + 1:
                raise ValueError(f"{feed} seq {row.seq}: the store holds {len(log)} entries")
            log.append(row)
        if rows:
            self._arrivals.append(
                Arrival(len(self._arrivals) + 1, feed, rows[0].seq, rows[-1].seq)
            )

    def arrivals(self, after: int, limit: int) -> list[Arrival]:
        return self._arrivals[max(after, 0):max(after, 0) + limit]

    def last_arrival(self) -> int:
        return len(self._arrivals)

    def payloads_held(self, feed: FeedId, seqs: Collection[int]) -> set[int]:
        log = self._log(feed)
        return {seq for seq in seqs if 1 <= seq <= len(log) and log[seq - 1].payload is not None}

    def put_payload(self, feed: FeedId, seq: int, payload: bytes) -> None:
        log = self._log(feed)
        log[seq - 1] = log[seq - 1]._replace(payload=payload)

    def delete_payload(self, feed: FeedId, seq: int) -> bool:
        log = self._log(feed)
        if not 1 <= seq <= len(log) or log[seq - 1].payload is None:
            return False
        log[seq - 1] = log[seq - 1]._replace(payload=None)
        return True

    def feed_bytes(self, feed: FeedId) -> int:
        return sum(row.size for row in self._log(feed))

    def delete_feed(self, feed: FeedId) -> None:
        with self._lock:
            self._entries[feed] = []  # (its arrivals stay: their ids are cursors)
            self._proofs.pop(feed, None)

    def feeds(self) -> list[FeedInfo]:
        known = set(self._entries) | set(self._proofs)
        return sorted(
            (FeedInfo(feed, len(self._log(feed)), self.forked_at(feed),
                      self._log(feed)[-1].hash if self._log(feed) else None) for feed in known),
            key=lambda info: (info.feed.author_key, info.feed.log_id),
        )

    def forked_at(self, feed: FeedId) -> int | None:
        proofs = self._proofs.get(feed)
        return min(proofs) if proofs else None

    def add_fork_proof(self, feed: FeedId, seq: int, proof: bytes) -> bool:
        proofs = self._proofs.setdefault(feed, {})
        if seq in proofs:
            return False
        proofs[seq] = proof
        return True

    def fork_proofs(self, feed: FeedId | None = None) -> list[bytes]:
        feeds = [feed] if feed is not None else sorted(
            self._proofs, key=lambda f: (f.author_key, f.log_id)
        )
        return [
            proof
            for f in feeds
            for _, proof in sorted(self._proofs.get(f, {}).items())
        ]

    def close(self) -> None:
        pass
