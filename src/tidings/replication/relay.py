"""A relay's quota: which offered feeds it takes on, and which it gives up (spec/14 §4).

Pure bookkeeping for the replicator. An offer (a peer's note of a feed with
entries) costs the relay little until entries come, so offers are taken on
*pending*: a few per peer, and dropped if they bring nothing within
OFFER_TTL seconds. A feed is charged to the quota once entries of it verify and
are stored; the bytes stored count against the byte quota. At either bound a
feed that brings entries takes the place of the *least served* relayed feed
(fewest entries messages served to peers, then the oldest), once that one has
been held MIN_HOLD seconds: a relay full of feeds nobody reads still takes an
honest author's new feed, and a feed its readers read is the last to go. When
nothing can make room, the newcomer is not taken (and, at the byte bound, a feed
that grows stops being fetched); what the relay holds it keeps and serves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field

from tidings.core.ids import FeedId
from tidings.core.records import record

#: Seconds an offered feed may bring nothing before it is dropped.
OFFER_TTL = 60.0
#: Offers one peer may have pending at once: one peer cannot fill the quota with
#: feeds it never sends, and many peers share it.
PENDING_PER_PEER = 256
#: Offers pending from all peers together.
MAX_PENDING = 4096
#: Offers pending at once while the quota is full (each may take the place of a
#: least-served feed once it brings entries): newcomers keep a way in, and a
#: flood of offers cannot queue up more than this.
PENDING_WHEN_FULL = 64
#: Seconds a relayed feed is held before another may take its place: a stream of
#: new feeds cannot churn the relay's store faster than readers can find them.
MIN_HOLD = 300.0
#: Served counts kept per feed are capped here (so they stay small integers).
MAX_SERVED = 1 << 30


@record(frozen=False, slots=False)
class Charged:
    """A relayed feed charged to the quota."""

    since: float
    bytes: int = 0
    #: Entries messages of it served to peers (reads and streams).
    served: int = 0


@record(frozen=False, slots=False)
class RelayQuota:
    max_feeds: int
    max_bytes: int
    min_hold: float = MIN_HOLD
    #: Offers taken on and not yet delivering: when, and from whom (a peer key).
    pending: dict[FeedId, tuple[float, bytes]] = field(default_factory=dict)
    #: Relayed feeds that brought entries (charged to the quota), oldest first.
    charged: dict[FeedId, Charged] = field(default_factory=dict)
    bytes_used: int = 0
    now: float = 0.0
    #: The operator was told the byte quota is spent.
    warned: bool = False

    @property
    def full(self) -> bool:
        return self.bytes_used >= self.max_bytes or len(self.charged) >= self.max_feeds

    def restore(self, held: dict[FeedId, int]) -> None:
        """At start: the relayed feeds the store holds and their stored bytes (counted
        from the store, so the byte quota survives a restart)."""
        self.charged = {feed: Charged(-1.0, size) for feed, size in held.items()}
        self.bytes_used = sum(held.values())

    def _evictable(self, keep: FeedId | None = None) -> list[FeedId]:
        """Charged feeds that may give their place, least served (then oldest) first."""
        ready = [(c.served, c.since, i, feed) for i, (feed, c) in enumerate(self.charged.items())
                 if feed != keep and c.since >= 0 and self.now - c.since >= self.min_hold]
        return [feed for *_, feed in sorted(ready, key=lambda r: r[:3])]

    def take(self, offered: Iterable[FeedId], peer: bytes) -> list[FeedId]:
        """Which of ``offered`` (feeds not wanted yet) to take on, pending."""
        mine = sum(1 for _, who in self.pending.values() if who == peer)
        free = self.max_feeds - len(self.charged)
        if self.full:
            free = min(PENDING_WHEN_FULL, len(self._evictable()))
        room = min(PENDING_PER_PEER - mine, MAX_PENDING - len(self.pending),
                   free - len(self.pending))
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

    def stored(self, feed: FeedId, size: int) -> list[FeedId]:
        """Entries of a relayed feed verified and were stored (``size`` bytes).

        Returns the feeds to give up to stay within the quota. Those no longer
        charged are to be deleted: least-served ones that made room, or ``feed``
        itself when nothing could make room for a new feed. ``feed`` still
        charged (the bytes are spent and nothing could make room) is fetched no
        more, and what it stored is kept and served.
        """
        self.pending.pop(feed, None)
        charge = self.charged.get(feed)
        if charge is None:
            charge = self.charged[feed] = Charged(self.now if self.now else -1.0)
        charge.bytes += size
        self.bytes_used += size
        gone: list[FeedId] = []
        victims = self._evictable(keep=feed)
        while (len(self.charged) > self.max_feeds or self.bytes_used > self.max_bytes) \
                and victims and self.charged[victims[0]].served <= charge.served:
            gone.append(victims[0])
            self.forget(victims.pop(0))
        if len(self.charged) > self.max_feeds:  # nothing made room: not taken
            self.forget(feed)
            gone.append(feed)
        elif self.bytes_used >= self.max_bytes and not gone:
            gone.append(feed)  # fetched no more; what it stored is kept and charged
        return gone

    def forget(self, feed: FeedId) -> int:
        """``feed`` is relayed no more (its entries deleted): its bytes are freed."""
        charge = self.charged.pop(feed, None)
        self.pending.pop(feed, None)
        if charge is None:
            return 0
        self.bytes_used -= charge.bytes
        return charge.bytes

    def served(self, feed: FeedId) -> None:
        """An entries message of ``feed`` was served to a peer."""
        charge = self.charged.get(feed)
        if charge is not None and charge.served < MAX_SERVED:
            charge.served += 1

    def expire(self, now: float) -> list[FeedId]:
        """The clock moved on: offers that brought nothing for OFFER_TTL are dropped."""
        self.now = now
        for feed, (since, who) in list(self.pending.items()):
            if since < 0:  # taken before the clock was known: it starts now
                self.pending[feed] = (now, who)
        for charge in self.charged.values():
            if charge.since < 0:
                charge.since = now
        gone = [feed for feed, (since, _) in self.pending.items() if now - since >= OFFER_TTL]
        for feed in gone:
            del self.pending[feed]
        return gone


__all__ = ["MAX_PENDING", "MIN_HOLD", "OFFER_TTL", "PENDING_PER_PEER", "PENDING_WHEN_FULL",
           "Charged", "RelayQuota"]
