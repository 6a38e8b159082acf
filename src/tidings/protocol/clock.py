"""Vector clocks: what a node holds and wants, feed by feed (spec/10-replication.md §2)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings.core.ids import FeedId
from tidings.protocol.messages import WANT, Note

_SEQ_FLAGS = struct.Struct(">QB")


def clock_digest(notes: Mapping[FeedId, Note]) -> bytes:
    """BLAKE2b-256 over the notes sorted by (author key, log id), spec/10 §3.

    Two nodes compare digests to agree that one remembers exactly the notes
    the other sent, so a reconnect sends only what changed since.
    """
    digest = hashlib.blake2b(digest_size=32)
    for feed in sorted(notes, key=lambda f: (f.author_key, f.log_id.encode())):
        note = notes[feed]
        log_id = feed.log_id.encode()
        digest.update(feed.author_key + bytes([len(log_id)]) + log_id)
        digest.update(_SEQ_FLAGS.pack(note.seq, note.flags))
    return digest.digest()


@dataclass(slots=True)
class LocalClock:
    """This node's side: the latest contiguous seq held per feed and the feeds it wants.

    Shared by every session of a node; the node updates it, then tells the
    sessions which feeds changed.
    """

    heads: dict[FeedId, int] = field(default_factory=dict)
    wanted: set[FeedId] = field(default_factory=set)
    #: Sessions that queued output since the node last pumped them, so a node
    #: with many peers need not ask every session after every change.
    dirty: set[Any] = field(default_factory=set)

    def seq(self, feed: FeedId) -> int:
        return self.heads.get(feed, 0)

    def note(self, feed: FeedId) -> Note:
        """This node's note for ``feed``, without the per-peer eager flag."""
        return Note(self.heads.get(feed, 0), WANT if feed in self.wanted else 0)

    def feeds(self) -> set[FeedId]:
        """Every feed this node has a note for: held or wanted."""
        return set(self.heads) | self.wanted

    def update(self, heads: Iterable[tuple[FeedId, int]]) -> list[FeedId]:
        """Record new heads; returns the feeds whose head changed."""
        changed = []
        for feed, seq in heads:
            if self.heads.get(feed, 0) != seq:
                self.heads[feed] = seq
                changed.append(feed)
        return changed
