"""What the replicator keeps about one connected peer, beside its session.

The :class:`~tidings.replication.session.Session` owns the protocol: its
state, the clocks exchanged, what the peer is owed. A :class:`Peer` owns this
node's judgement of the peer, which only the replicator writes: which feeds it
may no longer be the source of (it holds another history, or it claims entries
it never sends), what it sent, the fork proofs it was given, the searches for
where its history of a feed splits from ours (spec/10 §8).
"""

from __future__ import annotations

from dataclasses import field

from tidings.core.forks import MAX_RUN
from tidings.core.ids import FeedId
from tidings.core.records import record
from tidings.replication.session import Session
from tidings.wire.messages import MAX_SEQ_REQUEST, IdentityNote


@record(frozen=False)
class ForkSearch:
    """Finding the first seq at which a peer's history of a feed differs from ours.

    ``lo`` is a seq where the two agree (0: none known), ``hi`` one where they
    differ. Each round asks the peer for entries between them; when they are
    adjacent, ``hi`` is the fork seq and the last round asks for the peer's
    branch from there, to make the proof (spec/10 §8).
    """

    feed: FeedId
    lo: int
    hi: int
    request: int | None = None

    def probes(self) -> tuple[int, ...]:
        """The seqs to ask for next: up to 63 spread over ``(lo, hi)``, or the branch at ``hi``."""
        inside = self.hi - self.lo - 1
        if inside <= 0:
            return tuple(range(self.hi, self.hi + MAX_RUN))
        count = min(inside, MAX_SEQ_REQUEST - 1)
        return tuple(sorted({self.lo + 1 + (inside * i) // count for i in range(count)}))


@record(frozen=False, eq=False, slots=False)
class Peer:
    """One connected peer, as the replicator sees it."""

    session: Session
    #: The highest seq of each feed this peer sent entries up to (a peer
    #: streaming live sends entries, not notes).
    streamed: dict[FeedId, int] = field(default_factory=dict)
    #: Feeds of which the peer holds another history (a fork): never streamed
    #: from it again in this session.
    diverged: set[FeedId] = field(default_factory=set)
    #: Feeds it claims entries of and does not send: never streamed from it again.
    stalled: set[FeedId] = field(default_factory=set)
    #: Feeds whose fork proof it was sent (each goes once).
    proofs_sent: set[FeedId] = field(default_factory=set)
    #: Addresses it added to the peer table (peer exchange, bounded per session).
    addresses_taken: int = 0
    #: What it gave this node: new entries that verified, and clocks naming feeds
    #: this node holds or wants (spec/14 §2: the least useful inbound peer is evicted first).
    useful: int = 0
    #: Where its history of each diverged feed splits from ours.
    searches: dict[FeedId, ForkSearch] = field(default_factory=dict)
    #: The last note the peer sent of each identity (wire version 3, spec/12 §6.3).
    identity_notes: dict[bytes, IdentityNote] = field(default_factory=dict)
    #: The peer's opening identity notes arrived (it sends them after its clock).
    identities_noted: bool = False
    #: Identity requests sent to the peer this session, per identity (bounded).
    identity_asks: dict[bytes, int] = field(default_factory=dict)
    #: When (the driver's clock) each feed in ``session.awaiting`` was first seen there.
    awaiting_since: dict[FeedId, float] = field(default_factory=dict)
    #: A newer connection to the same node replaced this one: the node closes it.
    superseded: bool = False

    @property
    def key(self) -> bytes | None:
        """The peer's transport public key (names a node, not an author)."""
        return self.session.channel.remote_static

    def excludes(self, feed: FeedId) -> bool:
        """Whether this peer may no longer be ``feed``'s source (diverged or stalled)."""
        return feed in self.diverged or feed in self.stalled

    def peer_seq(self, feed: FeedId) -> int:
        """The highest seq of ``feed`` the peer noted."""
        return self.session.peer_seq(feed)

    def holds(self, feed: FeedId) -> int:
        """The highest seq of ``feed`` the peer is known to hold (noted or sent)."""
        return max(self.session.peer_seq(feed), self.streamed.get(feed, 0))
