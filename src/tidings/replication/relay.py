"""A relay's quota: which offered feeds it takes on, and when it stops (spec/14 §4).

Pure bookkeeping for the replicator. An offer (a peer's note of a feed with
entries) costs the relay little until entries come, so offers are taken on
*pending*: a few per peer, and dropped if they bring nothing within
OFFER_TTL seconds. A feed is charged to the quota once entries of it verify and
are stored; the bytes stored count against the byte quota. At either bound the
relay takes no new feeds, and at the byte bound it stops fetching the feeds it
relays (it keeps and serves what it holds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tidings.core.ids import FeedId

#: Seconds an offered feed may bring nothing before it is dropped.
OFFER_TTL = 60.0
#: Offers one peer may have pending at once: one peer cannot fill the quota with
#: feeds it never sends, and many peers share it.
PENDING_PER_PEER = 256
#: Offers pending from all peers together.
MAX_PENDING = 4096


@dataclass
class RelayQuota:
    max_feeds: int
    max_bytes: int
    #: Offers taken on and not yet delivering: when, and from whom (a peer key).
    pending: dict[FeedId, tuple[float, bytes]] = field(default_factory=dict)
    #: Relayed feeds that brought entries (charged to the quota).
    charged: set[FeedId] = field(default_factory=set)
    bytes_used: int = 0
    now: float = 0.0
    #: The operator was told the byte quota is spent.
    warned: bool = False

    @property
    def full(self) -> bool:
        return self.bytes_used >= self.max_bytes or len(self.charged) >= self.max_feeds

    def take(self, offered: Iterable[FeedId], peer: bytes) -> list[FeedId]:
        """Which of ``offered`` (feeds not wanted yet) to take on, pending."""
        if self.full:
            return []
        mine = sum(1 for _, who in self.pending.values() if who == peer)
        room = min(PENDING_PER_PEER - mine, MAX_PENDING - len(self.pending),
                   self.max_feeds - len(self.charged) - len(self.pending))
        taken = []
        for feed in offered:
            if room <= 0:
                break
            if feed in self.pending or feed in self.charged:
                continue
            self.pending[feed] = (self.now if self.now else -1.0, peer)
            taken.append(feed)
            room -= 1
        return taken

    def stored(self, feed: FeedId, size: int) -> None:
        """Entries of a relayed feed verified and were stored (``size`` bytes)."""
        self.pending.pop(feed, None)
        self.charged.add(feed)
        self.bytes_used += size

    def expire(self, now: float) -> list[FeedId]:
        """The clock moved on: offers that brought nothing for OFFER_TTL are dropped."""
        self.now = now
        for feed, (since, who) in list(self.pending.items()):
            if since < 0:  # taken before the clock was known: it starts now
                self.pending[feed] = (now, who)
        gone = [feed for feed, (since, _) in self.pending.items() if now - since >= OFFER_TTL]
        for feed in gone:
            del self.pending[feed]
        return gone


__all__ = ["MAX_PENDING", "OFFER_TTL", "PENDING_PER_PEER", "RelayQuota"]
