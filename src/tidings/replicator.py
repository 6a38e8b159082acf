"""The replicator: a node's sessions joined to its logbook, without sockets or clocks.

The trio node (:mod:`tidings.node`) and a simulator drive the same object::

    replicator = Replicator(logbook, static_private=key, follows=[feed])
    session = replicator.open_session(initiator=True)
    replicator.receive(session, data)      # ingest, answer requests
    out = replicator.pump(session)         # stream owed entries, then bytes to send

Every call is synchronous and may touch the store; the trio node runs them in
a worker thread, one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from tidings.content import follows_in
from tidings.core.entry import check_signature, decode_entry
from tidings.core.forks import ForkProof
from tidings.core.ids import FeedId
from tidings.core.verify import partial_seqs, verify_partial
from tidings.errors import (
    ForkDetected,
    ForkedFeed,
    InvalidData,
    InvalidEntry,
    InvalidForkProof,
    PeerError,
    WrongBacklink,
    WrongLipmaaLink,
)
from tidings.logbook import FOLLOWS_LOG, Logbook
from tidings.protocol.channel import DEFAULT_NETWORK_KEY, Channel, public_key
from tidings.protocol.clock import LocalClock
from tidings.protocol.messages import MAX_MESSAGE_SIZE, Note
from tidings.protocol.router import Router
from tidings.protocol.session import (
    EntriesReceived,
    ForkProofReceived,
    NotesReceived,
    PartialReceived,
    PartialRequested,
    PeersReceived,
    Session,
)

#: Bytes of entries read per batch when streaming: big enough to amortise one
#: store read and one signature check, small enough to interleave feeds.
STREAM_BATCH_BYTES = 256 * 1024
STREAM_BATCH_ENTRIES = 1000
#: Bytes queued for one peer before the node waits for its socket to drain.
SEND_BUDGET = 512 * 1024
#: Payload bytes in one partial response; the rest of the payloads come with a full sync.
PARTIAL_PAYLOAD_BYTES = MAX_MESSAGE_SIZE // 2
#: Addresses one session may add to the peer table.
MAX_ADDRESSES_PER_SESSION = 64
#: Seconds a source may claim entries without sending any before another peer
#: is chosen for the feed (a peer that lies about what it holds, or withholds).
STALL_AFTER = 30.0
#: Feeds a relay takes on from its peers unless configured otherwise.
DEFAULT_RELAY_MAX_FEEDS = 10_000


class DuplicateConnection(PeerError):
    """A second connection to a peer this node is already connected to (or to itself)."""

    code = "duplicate"


class SelfConnection(DuplicateConnection):
    """This node dialed one of its own addresses."""


class PeerRefused(PeerError):
    """This node refuses the peer's key for a while: it sent invalid data before."""

    code = "refused"


class ClockMemory(Protocol):
    """Where the clocks of past sessions are kept, by the peer's transport key."""

    def load(self, peer: bytes) -> tuple[dict[FeedId, Note], dict[FeedId, Note]]:
        """(notes this node sent the peer, notes the peer sent) at the last session."""
        ...

    def save(self, peer: bytes, sent: dict[FeedId, Note], received: dict[FeedId, Note]) -> None:
        ...


@dataclass
class MemoryClocks:
    """Clock memory in a dict, for tests and the simulator."""

    clocks: dict[bytes, tuple[dict[FeedId, Note], dict[FeedId, Note]]] = field(
        default_factory=dict
    )

    def load(self, peer: bytes) -> tuple[dict[FeedId, Note], dict[FeedId, Note]]:
        sent, received = self.clocks.get(peer, ({}, {}))
        return dict(sent), dict(received)

    def save(self, peer: bytes, sent: dict[FeedId, Note], received: dict[FeedId, Note]) -> None:
        self.clocks[peer] = (dict(sent), dict(received))


@dataclass(frozen=True, slots=True)
class PartialResult:
    """A verified answer to :meth:`Replicator.request_partial`: entries and payloads."""

    request_id: int
    feed: FeedId
    entries: list[tuple[bytes, bytes | None]]


def _dialer(session: Session) -> bytes | None:
    channel = session.channel
    return channel.local_static if channel.initiator else channel.remote_static


class Replicator:
    def __init__(
        self,
        logbook: Logbook,
        *,
        static_private: bytes,
        network_key: bytes = DEFAULT_NETWORK_KEY,
        follows: Iterable[FeedId] = (),
        hops: int = 1,
        relay: bool = False,
        relay_max_feeds: int = DEFAULT_RELAY_MAX_FEEDS,
        memory: ClockMemory | None = None,
    ) -> None:
        self.logbook = logbook
        self.static_private = static_private
        self.local_static = public_key(static_private)
        self.network_key = network_key
        self.hops = hops
        self.relay = relay
        self.relay_max_feeds = relay_max_feeds
        self.memory: ClockMemory = memory or MemoryClocks()
        self.local = LocalClock()
        self.router = Router(self.local)
        self.follows: set[FeedId] = set()
        self.relayed: set[FeedId] = set()
        self.partials: list[PartialResult] = []
        self.learned_addresses: list[tuple[str, int]] = []
        #: Transport keys refused at the handshake (the node adds and expires them).
        self.refused: set[bytes] = set()
        #: (feed, peer key) where a peer holds another branch of a forked feed.
        self.suspected_forks: list[tuple[FeedId, bytes | None]] = []
        self.forked: set[FeedId] = {p.feed for p in logbook.fork_proofs()}
        self.entries_received = 0
        self._follow_scan: dict[FeedId, tuple[int, set[FeedId]]] = {}
        self._watch: dict[FeedId, tuple[int, float, Session]] = {}
        self.refresh_local()
        if relay:
            # What a relay stored before a restart it still relays: its peers may
            # open with delta clocks that never offer those feeds again.
            held = [feed for feed in self.local.heads if self.local.heads[feed] > 0]
            self.relayed = set(held[:relay_max_feeds])
        self.set_follows(follows)

    # -- what this node holds and wants ---------------------------------------

    def refresh_local(self) -> list[FeedId]:
        """Re-read the heads from the store (after a publish, or another process's write)."""
        changed = self.local.update((info.feed, info.latest_seq) for info in self.logbook.feeds())
        if self.hops > 1 and any(f in self.local.wanted for f in changed):
            self._recompute_wanted()
        self.router.local_changed(changed)
        return changed

    def set_follows(self, follows: Iterable[FeedId]) -> None:
        self.follows = set(follows)
        self._recompute_wanted()

    def _recompute_wanted(self) -> None:
        wanted = set(self.follows) | self.relayed
        frontier = set(self.follows)
        for _ in range(self.hops - 1):
            # The authors' public follows live in their "follows" logs (spec/10 §9).
            logs = {FeedId(f.author_key, FOLLOWS_LOG) for f in frontier}
            wanted |= logs
            found: set[FeedId] = set()
            for feed in frontier | logs:
                found |= self._follows_of(feed)
            frontier = found - wanted
            wanted |= found
        changed = wanted ^ self.local.wanted
        self.local.wanted = wanted
        self.router.local_changed(changed)

    def _follows_of(self, feed: FeedId) -> set[FeedId]:
        """Feeds the author says it follows in ``feed`` (the follow content type)."""
        scanned, found = self._follow_scan.get(feed, (0, set()))
        head = self.local.seq(feed)
        if head > scanned:
            found = set(found)
            for _entry, payload in self.logbook.read(feed, since=scanned + 1):
                if payload is not None:
                    follows_in(payload, found)
            self._follow_scan[feed] = (head, found)
        return found

    # -- sessions -------------------------------------------------------------

    def open_session(self, *, initiator: bool, ephemeral_private: bytes | None = None) -> Session:
        channel = Channel(
            initiator=initiator, static_private=self.static_private,
            network_key=self.network_key, ephemeral_private=ephemeral_private,
        )
        session = Session(channel, self.local, relay=self.relay, on_established=self._established)
        if initiator:
            channel.start()
        return session

    def _established(self, session: Session) -> None:
        peer = session.channel.remote_static
        assert peer is not None
        if peer == session.channel.local_static:
            raise SelfConnection("connected to itself")
        if peer in self.refused:
            raise PeerRefused("refused for a while after sending invalid data")
        existing = next((s for s in self.router.sessions if s.channel.remote_static == peer), None)
        if existing is not None:
            # Two nodes that dial each other at once must keep the same one of the
            # two connections: the one dialed by the node with the smaller key.
            preferred = min(peer, session.channel.local_static)
            if _dialer(session) != preferred or _dialer(existing) == preferred:
                raise DuplicateConnection("already connected to this node")
            existing.superseded = True
        session.sent, session.received = self.memory.load(peer)
        self.router.add(session)

    def close_session(self, session: Session, *, remember: bool = True) -> None:
        """Forget a session; its clocks are kept for the next one with this peer."""
        if session in self.router.sessions:
            peer = session.channel.remote_static
            if remember and peer is not None and session.version is not None:
                self.memory.save(peer, session.sent, session.received)
            self.router.remove(session)
        self.local.dirty.discard(session)

    def receive(self, session: Session, data: bytes) -> None:
        """Bytes from ``session``'s peer. A PeerError means: close that connection."""
        failure: PeerError | None = None
        # One durable commit for everything these bytes carry (many small feeds
        # arrive in one read), committed even when the peer erred half way:
        # what verified before the error is kept.
        with self.logbook.store.transaction():
            try:
                session.receive_data(data)
            except PeerError as exc:
                failure = exc
            try:
                for event in session.events():
                    self._handle(session, event)
            except PeerError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _handle(self, session: Session, event: object) -> None:
        if isinstance(event, NotesReceived):
            self._on_notes(session, event)
        elif isinstance(event, EntriesReceived):
            self._on_entries(session, event)
        elif isinstance(event, PartialReceived):
            self._on_partial(event)
        elif isinstance(event, ForkProofReceived):
            self._on_fork_proof(session, event.proof)
        elif isinstance(event, PeersReceived):
            # At most MAX_ADDRESSES_PER_SESSION from one peer: peer exchange spreads
            # addresses, it must not let one peer fill the table.
            room = MAX_ADDRESSES_PER_SESSION - session.addresses_taken
            taken = list(event.addresses[:max(0, room)])
            session.addresses_taken += len(taken)
            self.learned_addresses.extend(taken)

    def _on_notes(self, session: Session, event: NotesReceived) -> None:
        feeds = [feed for feed, _ in event.notes]
        if self.relay:
            offered = dict.fromkeys(  # a clock may name a feed twice (spec/10 §2)
                feed for feed, note in event.notes
                if note.seq > 0 and feed not in self.local.wanted
            )
            new = list(offered)[: max(0, self.relay_max_feeds - len(self.relayed))]
            if new:
                self.relayed.update(new)
                self.local.wanted.update(new)
                self.router.local_changed(new)
        self.router.notes_received(session, feeds)
        for feed in dict.fromkeys(feeds):
            if feed in self.forked:
                self._send_proof(session, feed)

    def _on_entries(self, session: Session, event: EntriesReceived) -> None:
        feed = event.feed
        error: InvalidEntry | None = None
        try:
            result = self.logbook.ingest(feed, event.items)
            added = result.added
        except InvalidEntry as exc:
            added = exc.ingested[0]
            error = exc
        self.entries_received += added
        if added:
            head = self.logbook.store.head(feed)
            self.local.update([(feed, head.seq if head else 0)])
            last = decode_entry(event.items[-1][0]).seq if error is None else None
            if head is not None:
                session.streamed[feed] = max(session.streamed.get(feed, 0), head.seq)
            self.router.local_changed([feed], source=session, delivered=last)
            if self.hops > 1 and feed in self.local.wanted:
                self._recompute_wanted()  # new follow entries may add feeds
        if isinstance(error, ForkDetected):
            # The author forked its log: not this peer's fault. Spread the proof.
            self._spread_fork(feed, session)
        elif isinstance(error, ForkedFeed):
            pass  # entries past a fork this node knows of; the peer will get the proof
        elif error is not None and self._diverged(feed, event, error):
            # The peer holds another branch of a fork by the author: honest, but
            # this node cannot extend its own branch from it. Stop streaming
            # the feed from that peer instead of closing the connection.
            session.diverged.add(feed)
            self.suspected_forks.append((feed, session.channel.remote_static))
            self.router.consider(feed, scan=True)
        elif error is not None:
            raise InvalidData(error)

    def _diverged(self, feed: FeedId, event: EntriesReceived, error: InvalidEntry) -> bool:
        """Is ``error`` a validly signed entry whose link misses this node's branch?"""
        if not isinstance(error, WrongBacklink | WrongLipmaaLink) or error.ingested[0]:
            return False
        try:
            first = decode_entry(event.items[error.ingested[1]][0])
            check_signature(first)
        except InvalidEntry:
            return False
        return first.seq == error.seq and first.author == feed.author_key

    def _send_proof(self, session: Session, feed: FeedId) -> None:
        """The feed's earliest fork proof, once per session (stored proofs are verified)."""
        if feed in session.proofs_sent:
            return
        proofs = self.logbook.store.fork_proofs(feed)
        if proofs:
            session.proofs_sent.add(feed)
            session.send_fork_proof(proofs[0])

    def _spread_fork(self, feed: FeedId, origin: Session | None) -> None:
        self.forked.add(feed)
        if origin is not None:
            origin.proofs_sent.add(feed)  # it told us, or sent the entries that made it
        for other in self.router.sessions:
            if other is not origin and feed in other.received:
                self._send_proof(other, feed)

    def _on_fork_proof(self, session: Session, raw: bytes) -> None:
        try:
            proof = ForkProof.from_bytes(raw)
        except InvalidForkProof as exc:
            raise InvalidData(exc) from None
        if self.logbook.add_fork_proof(proof):
            self._spread_fork(proof.feed, session)

    # -- partial replication --------------------------------------------------

    def request_partial(self, session: Session, feed: FeedId, count: int) -> int:
        return session.request_partial(feed, count)

    def _answer_partial(self, session: Session, request: PartialRequested) -> None:
        head = self.logbook.store.head(request.feed)
        if head is None:
            session.send_partial(request.request_id, [])
            return
        oldest = head.seq - request.count + 1
        rows = self.logbook.store.entries_at(
            request.feed, partial_seqs(head.seq, request.count), payloads=False
        )
        # Payloads of the newest entries, newest first, within the budget: chosen
        # from the signed sizes, so only the payloads sent are ever read.
        budget, chosen = PARTIAL_PAYLOAD_BYTES, []
        for row in reversed(rows):
            size = decode_entry(row.raw).payload_size
            if row.seq >= oldest and size <= budget:
                budget -= size
                chosen.append(row.seq)
        payloads = {
            row.seq: row.payload
            for row in self.logbook.store.entries_at(request.feed, chosen)
        }
        session.send_partial(
            request.request_id, [(row.raw, payloads.get(row.seq)) for row in rows]
        )

    def _on_partial(self, event: PartialReceived) -> None:
        try:
            entries = [decode_entry(raw) for raw, _ in event.items]
            payloads = {
                e.seq: p for e, (_, p) in zip(entries, event.items, strict=True) if p is not None
            }
            verified = verify_partial(entries, payloads)
        except InvalidEntry as exc:
            raise InvalidData(exc.at(str(event.feed), None)) from None
        if verified and verified[-1].feed != event.feed:
            raise InvalidData(
                InvalidEntry(f"the answer is for feed {verified[-1].feed}", feed=str(event.feed))
            )
        if not verified:
            self.partials.append(PartialResult(event.request_id, event.feed, []))
            return
        head = verified[-1].seq
        held = {e.seq for e in verified}
        missing = set(partial_seqs(head, event.count)) - held
        if missing:
            raise InvalidData(InvalidEntry(
                f"the answer lacks seqs {sorted(missing)[:5]} of the latest {event.count}",
                feed=str(event.feed), seq=min(missing),
            ))
        newest = [e for e in verified if e.seq > head - event.count]
        self.partials.append(PartialResult(
            event.request_id, event.feed,
            [(e.raw, payloads.get(e.seq)) for e in newest],
        ))

    # -- streaming --------------------------------------------------------------

    def pump(self, session: Session, budget: int = SEND_BUDGET) -> bytes:
        """Queue the entries the peer is owed (up to ``budget`` bytes); bytes to send."""
        self.local.dirty.discard(session)
        while session.channel.pending_output < budget:
            request = session.next_partial_request()
            if request is None:
                break
            self._answer_partial(session, request)
        while session.channel.pending_output < budget:
            owed = session.next_stream()
            if owed is None:
                break
            feed, since = owed
            rows = self.logbook.store.entries(
                feed, since, STREAM_BATCH_ENTRIES, STREAM_BATCH_BYTES
            )
            if not rows or rows[0].seq != since:
                session.forget_owed(feed)
                continue
            session.send_entries(feed, [(r.raw, r.payload) for r in rows], rows[-1].seq)
        return session.data_to_send()

    def tick(self, now: float) -> list[FeedId]:
        """Time passes (the driver's clock, in seconds; call it about once a second).

        Seq notes held for lazy peers go out. A source whose note says it
        holds more than this node, and that sent nothing new for STALL_AFTER
        seconds, stops being the feed's source for the rest of its session.
        Returns the feeds moved.
        """
        for session in self.router.sessions:
            session.flush_lazy()
        moved = []
        for feed, session in list(self.router.source.items()):
            head = self.local.seq(feed)
            if session.peer_seq(feed) <= head:
                self._watch.pop(feed, None)
                continue
            seen = self._watch.get(feed)
            if seen is None or seen[0] != head or seen[2] is not session:
                self._watch[feed] = (head, now, session)
            elif now - seen[1] >= STALL_AFTER:
                session.stalled.add(feed)
                del self._watch[feed]
                self.router.consider(feed, scan=True)
                moved.append(feed)
        return moved

    def caught_up(self, session: Session) -> bool:
        """The peer's opening clock is in and this node holds every wanted entry it has."""
        if not session.clock_exchanged:
            return False
        return all(
            self.local.seq(feed) >= session.peer_seq(feed) or feed in self.forked
            or session.excludes(feed)
            for feed in self.local.wanted
        )
