"""Payloads a peer did not send, fetched again from others (spec/10 §5.3, spec/14 §3).

A *nil* payload in an entries message means "not sent", never "gone": a relay
may not hold it, or a peer may strip it. The replicator notes the seqs that came
without their payload and asks connected peers for them with seq requests
(``payloads`` = 1), each peer once per seq, a batch of MAX_SEQ_REQUEST at a time.
Pure bookkeeping; bounded so that a peer sending nil payloads costs little.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field

from tidings.core.ids import FeedId
from tidings.core.records import record
from tidings.wire.messages import MAX_SEQ_REQUEST

#: Seqs remembered as missing their payload, over all feeds (the oldest are
#: forgotten beyond it; they are noticed again when served or re-sent).
MAX_MISSING = 65_536


@record(frozen=False, slots=False)
class MissingPayloads:
    #: Seqs of each feed held without their payload.
    missing: dict[FeedId, set[int]] = field(default_factory=dict)
    #: Peers (by key) already asked for each feed's missing payloads.
    asked: dict[FeedId, set[bytes]] = field(default_factory=dict)
    #: Open requests: (peer key, request id) -> feed.
    requests: dict[tuple[bytes, int], FeedId] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(seqs) for seqs in self.missing.values())

    def add(self, feed: FeedId, seqs: Iterable[int]) -> None:
        room = MAX_MISSING - self.count()
        if room <= 0:
            return
        fresh = [seq for seq in seqs][:room]
        if fresh:
            self.missing.setdefault(feed, set()).update(fresh)
            self.asked.pop(feed, None)  # new gaps: every peer may be asked again

    def got(self, feed: FeedId, seqs: Iterable[int]) -> None:
        held = self.missing.get(feed)
        if held is None:
            return
        held.difference_update(seqs)
        if not held:
            del self.missing[feed]
            self.asked.pop(feed, None)

    def answered(self, feed: FeedId, peer: bytes) -> None:
        """``peer`` sent payloads: it may be asked for the next batch."""
        self.asked.get(feed, set()).discard(peer)

    def next_ask(self, feed: FeedId, peer: bytes) -> tuple[int, ...] | None:
        """The seqs to ask ``peer`` for (None if it was asked already)."""
        seqs = self.missing.get(feed)
        if not seqs or peer in self.asked.get(feed, set()):
            return None
        self.asked.setdefault(feed, set()).add(peer)
        return tuple(sorted(seqs)[:MAX_SEQ_REQUEST])


__all__ = ["MAX_MISSING", "MissingPayloads"]
