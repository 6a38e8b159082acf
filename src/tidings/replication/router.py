"""Which peer streams each feed, pure (spec/10-replication.md §5).

Each wanted feed is streamed eagerly from one session at a time; every other
session only sends notes for it. So an entry arrives about once however many
peers hold it. When a peer's note shows it holds more than this node and the
current source has nothing more to give (or left), the feed moves to that peer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tidings.core.ids import FeedId
from tidings.replication.clock import LocalClock
from tidings.replication.peer import Peer


class Router:
    def __init__(self, local: LocalClock) -> None:
        self.local = local
        self.peers: list[Peer] = []  # oldest first
        self._members: set[Peer] = set()
        self.source: dict[FeedId, Peer] = {}
        #: For each feed, the session whose note showed the highest seq: the
        #: candidate when the source runs dry, found without scanning every session.
        self._best: dict[FeedId, Peer] = {}

    def add(self, peer: Peer) -> None:
        """A new peer: it streams the wanted feeds that have no source yet."""
        self.peers.append(peer)
        self._members.add(peer)
        if not self.source and peer.session.version is None:
            # The first peer, before its hello (a client's one session: 10,000 feeds):
            # what the loop below does then, at once (set_eager before the opening
            # clock only marks the feed, which that clock says).
            wanted = list(self.local.wanted)
            self.source.update(dict.fromkeys(wanted, peer))
            peer.session.eager.update(wanted)
            return
        for feed in self.local.wanted:
            if feed not in self.source:
                self._assign(feed, peer)
            elif peer.peer_seq(feed) > self.local.seq(feed):
                # Remembered from the last session with this peer (a delta
                # opening clock does not repeat it): it holds more than we do.
                self.notes_received(peer, [feed])

    def remove(self, peer: Peer) -> None:
        if peer in self._members:
            self.peers.remove(peer)
            self._members.discard(peer)
        for feed in [f for f, p in self._best.items() if p is peer]:
            del self._best[feed]
        gone = [f for f, p in self.source.items() if p is peer]
        if not self.peers:  # (the last session: no other source to pick, for any feed)
            for feed in gone:
                del self.source[feed]
                self._best.pop(feed, None)
            return
        for feed in gone:
            del self.source[feed]
            self.consider(feed, scan=True)

    def _assign(self, feed: FeedId, peer: Peer | None) -> None:
        current = self.source.pop(feed, None)
        if current is not None and current is not peer:
            current.session.set_eager(feed, False)
        if peer is not None:
            self.source[feed] = peer
            peer.session.set_eager(feed, True)

    def _usable(self, peer: Peer | None, feed: FeedId) -> bool:
        return peer is not None and peer in self._members and not peer.excludes(feed)

    def consider(self, feed: FeedId, *, scan: bool = False) -> None:
        """Pick the feed's source again after a note, a new head or a departure.

        ``scan`` looks at every session; otherwise the best note seen stands
        for them (kept up to date by notes_received).
        """
        if not self.peers and feed not in self.source:
            # No session to stream from (a node starting, a client's last session
            # gone): nothing to pick, whatever the feed (10,000 feeds at start).
            self._best.pop(feed, None)
            return
        if feed not in self.local.wanted:
            self._assign(feed, None)
            return
        head = self.local.seq(feed)
        current = self.source.get(feed)
        if current is not None and current.excludes(feed):
            self._assign(feed, None)
            current = None
            scan = True
        if current is not None and current.peer_seq(feed) > head:
            return  # it is still giving us entries
        best = self._best.get(feed)
        if scan or not self._usable(best, feed):
            ahead = [p for p in self.peers if p.peer_seq(feed) > head and not p.excludes(feed)]
            best = max(ahead, key=lambda p: p.peer_seq(feed)) if ahead else None
            if best is None:
                self._best.pop(feed, None)
            else:
                self._best[feed] = best
        if best is not None and best.peer_seq(feed) > head:
            self._assign(feed, best)
        elif current is None:
            # Nobody is ahead yet: the first session on this branch listens for new entries.
            listener = next((p for p in self.peers if not p.excludes(feed)), None)
            if listener is not None:
                self._assign(feed, listener)

    def notes_received(self, peer: Peer, feeds: Iterable[FeedId]) -> None:
        for feed in feeds:
            if feed not in self.local.wanted:
                continue
            best = self._best.get(feed)
            better = best is None or not self._usable(best, feed) or (
                peer.peer_seq(feed) > best.peer_seq(feed)
            )
            if better and not peer.excludes(feed):
                self._best[feed] = peer
            self.consider(feed)

    def local_changed(self, feeds: Iterable[FeedId], source: Peer | None = None,
                      delivered: int | None = None) -> None:
        """This node's notes changed: tell every peer's session, and re-pick sources."""
        if not self.peers and not self.source:  # nobody to tell, nothing to pick
            for feed in feeds:
                self._best.pop(feed, None)
            return
        for feed in feeds:
            for peer in self.peers:
                peer.session.local_changed(
                    feed, delivered=delivered if peer is source else None
                )
            self.consider(feed)
