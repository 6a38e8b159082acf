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

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from operator import attrgetter
from typing import Any, Protocol

from tidings.core.entry import (
    BLAKE2B_256,
    decode_entry,
    stored_is_signed,
    stored_payload_hash,
    strict_cbor_item,
)
from tidings.core.forks import MAX_PROOF_SIZE, MAX_RUN, ForkProof
from tidings.core.ids import FeedId
from tidings.core.kel import InvalidIdentityEvent, format_identity
from tidings.core.records import record
from tidings.core.verify import partial_seqs, verify_partial
from tidings.errors import (
    DuplicateConnection,
    ForkDetected,
    ForkedFeed,
    InvalidData,
    InvalidEntry,
    InvalidForkProof,
    LocalProtocolError,
    PeerError,
    PeerFlooding,
    PeerRefused,
    SelfConnection,
    StorageFull,
    UnsignedTail,
)
from tidings.replication.blob_fetch import BlobFetcher, BlobStored
from tidings.replication.blob_policy import BlobPolicy
from tidings.replication.blob_session import BlobChunksReceived, BlobHeld, BlobQueried
from tidings.replication.clock import LocalClock, unchanged_since
from tidings.replication.identities import IdentityBook
from tidings.replication.limits import DEFAULT_RELAY_MAX_BYTES, DEFAULT_RELAY_MAX_FEEDS
from tidings.replication.payloads import MissingPayloads
from tidings.replication.peer import ForkSearch, Peer
from tidings.replication.relay import RelayQuota
from tidings.replication.router import Router
from tidings.replication.session import (
    Authenticated,
    EntriesReceived,
    Event,
    Failed,
    ForkProofReceived,
    IdentityEventsReceived,
    IdentityNotesReceived,
    IdentityRequested,
    NoteBudget,
    NotesReceived,
    PartialReceived,
    PartialRequested,
    PeerReady,
    PeersReceived,
    SeqReceived,
    SeqRequested,
    Session,
)
from tidings.storage.base import StoredEntry
from tidings.storage.blobs import BlobStore
from tidings.storage.logbook import FOLLOWS_LOG, Logbook
from tidings.transport.channel import Channel, public_key
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.messages import EAGER, HEAD_PREFIX, MAX_MESSAGE_SIZE, Note

_payload_of = operator.itemgetter(1)  # of an item (entry bytes, payload or None)

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
#: ... and seconds it may go without sending entries of one feed while it sends entries
#: of others: an honest peer serves its owed feeds in turn, and with a thousand feeds
#: owed on a loaded machine a feed's turn can come after STALL_AFTER; a peer that
#: trickles one feed to keep another back is still replaced after this.
STALL_WHILE_SERVING_AFTER = 10 * STALL_AFTER
#: Seconds a session waits for a peer's answer to a new want (spec/10 §5.5, §10 item
#: 3) before taking it that the peer holds nothing of the feed: a peer answers at once,
#: unless its bound on such answers is reached or it is lost; a sync must still end.
AWAIT_ANSWER_AFTER = 10.0
#: Identities whose notes are kept from one peer: a relay holds up to 1024 logs besides
#: those followed; a peer noting far more is flooding.
MAX_PEER_IDENTITY_NOTES = 4096
#: Requests for one identity's log per session: a log of 4096 events takes at most 8
#: answers of MAX_ANSWER_EVENTS; a peer whose answers never match its note is not asked
#: again until the next session.
MAX_IDENTITY_ASKS = 16
#: Searches for where two histories split, at once per session: each is a few
#: round trips of at most 64 entries; an author who forks many feeds waits.
MAX_FORK_SEARCHES = 4


class ClockMemory(Protocol):
    """Where the clocks of past sessions are kept, by the peer's transport key."""

    def load(self, peer: bytes) -> tuple[dict[FeedId, Note], dict[FeedId, Note]]:
        """(notes this node sent the peer, notes the peer sent) at the last session."""
        ...

    def save(self, peer: bytes, sent: dict[FeedId, Note], received: dict[FeedId, Note],
             settled: bytes | None = None) -> None:
        """Keep them; ``settled`` (opaque, given when the session ended settled: see
        :meth:`Replicator.settles`) may be kept with them."""
        ...


@record(frozen=False, slots=False)
class MemoryClocks:
    """Clock memory in a dict, for tests and the simulator."""

    clocks: dict[bytes, tuple[dict[FeedId, Note], dict[FeedId, Note]]] = field(
        default_factory=dict
    )

    def load(self, peer: bytes) -> tuple[dict[FeedId, Note], dict[FeedId, Note]]:
        sent, received = self.clocks.get(peer, ({}, {}))
        return dict(sent), dict(received)

    def save(self, peer: bytes, sent: dict[FeedId, Note], received: dict[FeedId, Note],
             settled: bytes | None = None) -> None:
        self.clocks[peer] = (dict(sent), dict(received))


# -- what the replicator tells its driver -------------------------------------


@record
class Deferral:
    """How a replicator that loads nothing per feed until it must (``tidings sync``)
    finds what it did not load.

    ``follows`` reads the followed feeds (when the replicator first needs its state).
    ``settled(peer key)`` gives the digests (sent, received) of the clocks remembered
    for that peer if they were saved settled (:meth:`Replicator.settles`) and this
    home is still what it was then; else None. A session with such a peer starts
    without loading anything per feed (:meth:`Session.start`).
    """

    follows: Callable[[], Iterable[FeedId]]
    settled: Callable[[bytes], tuple[bytes | None, bytes | None] | None]


@record
class PeerConnected:
    """Hellos exchanged with ``session``'s peer: the connection is ready."""

    session: Session
    version: int
    relay: bool


@record
class PartialResult:
    """A verified answer to :meth:`Replicator.request_partial`: entries and payloads."""

    session: Session
    request_id: int
    feed: FeedId
    entries: list[tuple[bytes, bytes | None]]


@record
class AddressesLearned:
    """Peer exchange: addresses a peer gave (at most MAX_ADDRESSES_PER_SESSION per session)."""

    addresses: tuple[tuple[str, int], ...]


@record
class EntriesStored:
    """``count`` new entries are durable in the store (subscribers may read them)."""

    count: int


@record
class Superseded:
    """A newer connection to the same node replaced ``session``: close its connection."""

    session: Session


ReplicatorEvent = (
    PeerConnected | PartialResult | AddressesLearned | EntriesStored | Superseded | BlobStored
)


def _proof_feed(raw: bytes) -> FeedId | None:
    """The feed a fork proof names, read without verifying anything (None: unreadable,
    left to ForkProof.from_bytes to say why)."""
    try:
        items, _ = strict_cbor_item(raw[:MAX_PROOF_SIZE], 0)
        return decode_entry(items[1][0]).feed
    except (InvalidEntry, LookupError, TypeError):
        return None


#: What :meth:`Replicator._heads` takes of a FeedInfo with nothing to cap.
_HEAD_FIELDS = attrgetter("feed", "latest_seq", "head_hash")


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
        relay_max_bytes: int = DEFAULT_RELAY_MAX_BYTES,
        memory: ClockMemory | None = None,
        log: Callable[..., None] | None = None,
        identities: IdentityBook | None = None,
        blobs: BlobStore | None = None,
        blob_policy: BlobPolicy | None = None,
        defer: Deferral | None = None,
    ) -> None:
        if defer is not None and relay:
            raise ValueError("a relay loads its feeds at once: it takes offers from the start")
        self.logbook = logbook
        #: The identity logs kept and followed (spec/12), and what they make this node want.
        self.identities = identities or IdentityBook()
        #: Feeds of revoked devices of followed identities: the last seq that counts.
        self.identity_caps: dict[FeedId, int] = {}
        #: This node's own feeds that a peer holds further than its store (the seq).
        self.own_behind: dict[FeedId, int] = {}
        #: The device feeds of the followed identities (replaced whole, so other
        #: threads may read it: embedded subscriptions do).
        self.identity_feeds: frozenset[FeedId] = frozenset()
        #: ``log(event, **fields)``: what the node should tell its operator
        #: (forks found, damaged stored entries).
        self.log: Callable[..., None] = log or (lambda event, **fields: None)
        self.static_private = static_private
        self.local_static = public_key(static_private)
        self.network_key = network_key
        self.hops = hops
        self.relay = relay
        self.relay_max_feeds = relay_max_feeds
        self.quota = RelayQuota(relay_max_feeds, relay_max_bytes)
        #: Notes kept by all sessions together (spec/14 §3).
        self.notes = NoteBudget()
        #: Payloads peers did not send, asked of other peers (nil is "not sent").
        self.payloads = MissingPayloads()
        self.memory: ClockMemory = memory or MemoryClocks()
        self.local = LocalClock()
        self.router = Router(self.local)
        self.follows: set[FeedId] = set()
        self.relayed: set[FeedId] = set()
        #: Every open session's peer (from the handshake until close_session).
        self.peers: dict[Session, Peer] = {}
        #: Transport keys refused at the handshake (the node adds and expires them).
        self.refused: set[bytes] = set()
        #: Feeds this node holds a fork proof of, and their fork seqs (from the
        #: store's feed table: proofs are never all loaded at start).
        self.forked_at: dict[FeedId, int] = {}
        #: Feeds whose stored bytes turned out damaged, from this seq on: not served
        #: from there (spec/10 §5.3); ``tidings verify`` tells the operator more.
        self.damaged: dict[FeedId, int] = {}
        self.entries_received = 0
        self._follow_scan: dict[FeedId, tuple[int, set[FeedId]]] = {}
        #: Per feed behind its source: (head, since when, source, the source's
        #: ``useful`` count then, since when the feed has not moved at all).
        self._watch: dict[FeedId, tuple[int, float, Peer, int, float]] = {}
        #: Blobs fetched and served (spec/13 §8), if this node keeps a chunk store.
        self.blobs = BlobFetcher(blobs, blob_policy, log=self.log) if blobs is not None else None
        #: Set until the state is loaded (:meth:`load`), with the peers whose sessions
        #: started settled meanwhile.
        self._defer = defer
        self._settled_peers: list[Peer] = []
        if defer is None:
            self._load_state(follows)

    def _load_state(self, follows: Iterable[FeedId]) -> None:
        relay, relay_max_feeds = self.relay, self.relay_max_feeds
        infos = self.logbook.feeds()  # (read once: a client with 10,000 feeds starts at once)
        self.identities.learn_feeds(info.feed for info in infos)
        self.identity_caps = self.identities.caps()
        self._take_heads(infos)
        if relay:
            # What a relay stored before a restart it still relays: its peers may
            # open with delta clocks that never offer those feeds again.
            own = self.logbook.identity.author.key if self.logbook.identity else None
            held = [feed for feed in self.local.heads
                    if self.local.heads[feed] > 0 and feed.author_key != own]
            self.relayed = set(held[:relay_max_feeds])
        self.set_follows(follows)
        if relay:  # the byte quota survives a restart: counted from the store
            self.quota.restore({feed: self.logbook.store.feed_bytes(feed)
                                for feed in self.relayed - self.follows})

    def load(self) -> None:
        """Load what a deferred replicator did not (:class:`Deferral`), and the clocks
        of the sessions that started settled. Their notes then say what they said:
        the peers are taken out of the router while the state loads (no session hears
        of 10,000 feeds coming in), and put back once their clocks are in."""
        defer, self._defer = self._defer, None
        if defer is None:
            return
        settled, self._settled_peers = self._settled_peers, []
        for peer in settled:
            self.router.remove(peer)
        self._load_state(defer.follows())
        for peer in settled:
            assert peer.key is not None
            sent, received = self.memory.load(peer.key)
            digests = getattr(self.memory, "digests", None)
            if digests is not None:
                digests(peer.key)  # (taken: the session knows them)
            peer.session.unsettle(sent, received)
            self.router.add(peer)
            self._learn_aside(peer.session)

    @property
    def loaded(self) -> bool:
        """Whether the state is in memory (always, but for a :class:`Deferral`)."""
        return self._defer is None

    def settles(self, session: Session) -> bool:
        """Whether ``session`` may end settled: the clocks it leaves hold exactly the
        notes this node would open its next session with this peer with (every wanted
        feed streamed from it, as a first session does), the peer holds nothing wanted
        that this node lacks, this node owes it nothing it streams, and no blob is
        wanted. A session that started settled and needed nothing stays so."""
        if session.settled:
            return True
        peer = self.peers.get(session)
        if (peer is None or not session.clock_exchanged or session.failed or self.relay
                or self.damaged or self.own_behind or not session.received
                or (self.blobs is not None and self.blobs.wants)
                or self.notes.used > self.notes.limit // 2):
            return False
        local, received = self.local, session.received
        if not unchanged_since(local, local.wanted, session.sent):
            return False
        heads = local.heads
        for feed in local.wanted:
            theirs = received.get(feed)
            if theirs is not None and theirs.seq > heads.get(feed, 0):
                return False  # (caught up all the same: a fork, a stalled source)
        return not any(theirs.flags & EAGER and theirs.seq < heads.get(feed, 0)
                       for feed, theirs in received.items())

    # -- what this node holds and wants ---------------------------------------

    def refresh_local(self, feeds: Iterable[FeedId] | None = None) -> list[FeedId]:
        """Re-read the heads from the store (after a publish, or another process's write).

        With ``feeds``, only theirs: a publish costs the same at 10 feeds as at 10,000.
        """
        self.load()
        return self._take_heads(
            self.logbook.feeds() if feeds is None else self.logbook.feed_infos(feeds))

    def _take_heads(self, infos: Iterable[Any]) -> list[FeedId]:
        changed = self.local.update(self._heads(infos))
        if self.hops > 1 and any(f in self.local.wanted for f in changed):
            self._recompute_wanted()
        self.router.local_changed(changed)
        return changed

    def _heads(self, infos: Iterable[Any]) -> list[tuple[FeedId, int, bytes | None]]:
        """(feed, seq, hash) of what this node serves of each feed: up to a fork or damage."""
        if not self.damaged and not self.identity_caps:  # (a client's start: 10,000 feeds)
            infos = infos if isinstance(infos, list) else list(infos)
            for info in infos:
                if info.forked_at is not None:
                    self.forked_at[info.feed] = info.forked_at
            return list(map(_HEAD_FIELDS, infos))
        heads = []
        for info in infos:
            seq, head_hash = info.latest_seq, info.head_hash
            if info.forked_at is not None:
                self.forked_at[info.feed] = info.forked_at  # also one another process stored
            damaged = self.damaged.get(info.feed)
            cap = self.identity_caps.get(info.feed)
            if cap is not None and seq > cap and (damaged is None or cap < damaged - 1):
                damaged = cap + 1  # a revoked device's feed past its cut: not served
            if damaged is not None and seq >= damaged:
                seq = damaged - 1
                head_hash = self.logbook.store.hashes(info.feed, [seq]).get(seq) if seq else None
            heads.append((info.feed, seq, head_hash))
        return heads

    def set_follows(self, follows: Iterable[FeedId]) -> None:
        self.load()
        self.follows = set(follows)
        self._recompute_wanted()

    def _recompute_wanted(self) -> None:
        self.identity_feeds = frozenset(self.identities.device_feeds())
        wanted = set(self.follows) | self.relayed | self.identity_feeds | set(self.own_behind)
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
        new = wanted - self.local.wanted
        self.local.wanted = wanted
        if new:
            # Peers' notes of these feeds may have come before this node wanted them
            # (a device feed noted before the identity log placed the device): take
            # them back, so the sources are chosen and caught_up() counts them.
            for peer in self.router.peers:
                restored = peer.session.restore_notes(new)
                if restored:
                    self._compare_heads(peer, restored)
                    self.router.notes_received(peer, [feed for feed, _ in restored])
        self.router.local_changed(changed)

    def _follows_of(self, feed: FeedId) -> set[FeedId]:
        """Feeds the author says it follows in ``feed`` (the follow content type)."""
        scanned, found = self._follow_scan.get(feed, (0, set()))
        head = self.local.seq(feed)
        if head > scanned:
            from tidings.core.content import follows_in  # (hops > 1 only)

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
        session = Session(channel, self.local, relay=self.relay, notes=self.notes)
        if initiator:
            channel.start()
        return session

    def peer(self, session: Session) -> Peer | None:
        """What the replicator keeps about ``session``'s peer (None before the handshake)."""
        return self.peers.get(session)

    def _accept(self, session: Session, key: bytes) -> list[ReplicatorEvent]:
        """The handshake named the peer: refuse it, or start the session (spec/08 §2)."""
        if key == session.channel.local_static:
            raise SelfConnection("connected to itself")
        if key in self.refused:
            raise PeerRefused("refused for a while after sending invalid data")
        events: list[ReplicatorEvent] = []
        existing = next((p for p in self.router.peers if p.key == key), None)
        if existing is not None:
            # One node dialed twice: its old connection may be dead without either
            # side knowing yet, so the newer one is kept (spec/08 §2). Two nodes
            # that dial each other at once must keep the same one of the two
            # connections: the one dialed by the node with the smaller key.
            preferred = min(key, session.channel.local_static)
            if _dialer(session) != _dialer(existing.session) and (
                _dialer(session) != preferred or _dialer(existing.session) == preferred
            ):
                raise DuplicateConnection("already connected to this node")
            existing.superseded = True
            self.router.remove(existing)
            events.append(Superseded(existing.session))
        settled = (self._defer.settled(key) if self._defer is not None and not (
            self.blobs is not None and self.blobs.wants) else None)
        if settled is not None and None not in settled:
            session.start(digests=settled, settled=self.load)
            peer = self.peers[session] = Peer(session)
            self.router.add(peer)  # (nothing is wanted yet: nothing is assigned)
            self._settled_peers.append(peer)
            return events
        self.load()
        sent, received = self.memory.load(key)
        # A memory that keeps the clocks' digests too (the node's) spares computing them.
        digests = getattr(self.memory, "digests", None)
        session.start(sent=sent, received=received,
                      digests=digests(key) if digests is not None else None)
        peer = self.peers[session] = Peer(session)
        self.router.add(peer)
        self._learn_aside(session)
        return events

    def _learn_aside(self, session: Session) -> None:
        """The remembered notes set aside may name the feeds of a followed identity's
        devices: learned as when they came (the peer opens with a delta that does not
        name them again)."""
        aside = session.aside()
        if aside and self.identities.learn_feeds(aside):
            self._identities_moved()

    def close_session(self, session: Session, *, remember: bool = True,
                      settled: bytes | None = None) -> None:
        """Forget a session; its clocks are kept for the next one with this peer.

        ``settled``: the home's stamp, when :meth:`settles` said so of the session (a
        memory that takes it, the node's, keeps it with the clocks).
        """
        session.release_notes()
        peer = self.peers.pop(session, None)
        if peer is not None:
            key = peer.key
            if peer in self._settled_peers:  # its clocks were never loaded: they stand
                self._settled_peers.remove(peer)
            elif remember and key is not None and session.version is not None:
                received = session.remembered()
                if settled is None:
                    self.memory.save(key, session.sent, received)
                else:
                    self.memory.save(key, session.sent, received, settled)
            for asked in [k for k in self.payloads.requests if k[0] == key]:
                del self.payloads.requests[asked]  # its answers will not come
            self.router.remove(peer)
            if self.blobs is not None:
                self.blobs.peer_gone(peer)
        self.local.dirty.discard(session)

    def receive(self, session: Session, data: bytes) -> list[ReplicatorEvent]:
        """Bytes from ``session``'s peer; returns what the driver must act on.

        A PeerError means: the session has queued its error message for the
        peer (send :meth:`Session.data_to_send`), then close the connection.
        What verified before the error is stored.
        """
        out: list[ReplicatorEvent] = []
        before = self.entries_received
        failure: PeerError | None = None
        # One durable commit for everything these bytes carry (many small feeds
        # arrive in one read), committed even when the peer erred half way:
        # what verified before the error is kept.
        with self.logbook.store.transaction():
            try:
                pending = session.receive_data(data)
                runs = [event.decoded for event in pending
                        if isinstance(event, EntriesReceived) and event.decoded is not None]
                if len(runs) > 2:  # (one or two: each is checked on two cores as it comes)
                    self.logbook.check_ahead(runs)
                while pending:
                    event = pending.pop(0)
                    if isinstance(event, Failed):
                        raise event.error
                    if isinstance(event, Authenticated):
                        out += self._accept(session, event.peer)
                        pending += session.receive_data(b"")  # what came meanwhile
                    else:
                        self._handle(session, event, out)
            except PeerError as error:
                failure = error
            finally:
                self.logbook.forget_ahead()
        if self.entries_received > before:
            out.append(EntriesStored(self.entries_received - before))
        if failure is not None:
            session.fail(failure)  # (a no-op if the session found it itself)
            peer = self.peers.get(session)
            if peer is not None:
                self.router.remove(peer)  # nothing more goes to it
            raise failure
        return out

    def _handle(self, session: Session, event: Event, out: list[ReplicatorEvent]) -> None:
        peer = self.peers.get(session)
        if peer is None:
            raise LocalProtocolError("this session is not open here (closed, or another "
                                     "replicator's): open a new one")
        if isinstance(event, PeerReady):
            out.append(PeerConnected(session, event.version, event.relay))
            if session.speaks_identities:
                session.send_identity_notes(self.identities.notes())
            if self.blobs is not None:
                self.blobs.peer_ready(peer)
        elif isinstance(event, IdentityNotesReceived | IdentityRequested
                        | IdentityEventsReceived):
            self._on_identity(peer, event)
        elif isinstance(event, BlobChunksReceived | BlobHeld | BlobQueried):
            self._on_blob(peer, event, out)
        elif isinstance(event, NotesReceived):
            self._on_notes(peer, event)
        elif isinstance(event, EntriesReceived):
            self._on_entries(peer, event)
        elif isinstance(event, PartialReceived):
            out.append(self._on_partial(session, event))
        elif isinstance(event, SeqReceived):
            self._on_seqs(peer, event)
        elif isinstance(event, ForkProofReceived):
            self._on_fork_proof(peer, event.proof)
        elif isinstance(event, PeersReceived):
            # At most MAX_ADDRESSES_PER_SESSION from one peer: peer exchange spreads
            # addresses, it must not let one peer fill the table.
            room = MAX_ADDRESSES_PER_SESSION - peer.addresses_taken
            taken = tuple(event.addresses[:max(0, room)])
            peer.addresses_taken += len(taken)
            if taken:
                out.append(AddressesLearned(taken))
        # ClockExchanged: caught_up() reads the session's state.

    def _on_blob(self, peer: Peer, event: BlobChunksReceived | BlobHeld | BlobQueried,
                 out: list[ReplicatorEvent]) -> None:
        """Blob messages (spec/13 §8): a node without a chunk store holds nothing."""
        fetcher = self.blobs
        if isinstance(event, BlobQueried):
            if fetcher is None:
                count = event.blob.chunk_count
                peer.session.blobs.send_have(event.request_id, event.blob, bytes(-(-count // 8)))
            else:
                fetcher.answer_query(peer.session, event)
        elif fetcher is not None and isinstance(event, BlobHeld):
            fetcher.on_held(peer, event)
        elif fetcher is not None and isinstance(event, BlobChunksReceived):
            out += fetcher.on_chunks(peer, event)

    def _on_notes(self, peer: Peer, event: NotesReceived) -> None:
        # Identities learn their devices' log names, and this node's own feeds are
        # checked, from every note, before the notes are narrowed to what it keeps.
        if self.identities.learn_feeds([feed for feed, _ in event.notes]):
            self._identities_moved()
        own = self.logbook.identity.author.key if self.logbook.identity is not None else None
        for feed, note in event.notes:
            if feed.author_key == own and note.seq > self.own_behind.get(feed, 0) \
                    and note.seq > self.local.seq(feed):
                # A peer holds more of this node's own feed than its store: a restored
                # backup or a copied home. Publishing now would fork the feed.
                self.own_behind[feed] = note.seq
                self.log("own-feed-behind", feed=str(feed), seq=note.seq,
                         held=self.local.seq(feed))
                if feed not in self.local.wanted:
                    self._recompute_wanted()  # fetch what this store lacks of it
        local = self.local
        feeds = [feed for feed, _ in event.notes if feed in local.wanted or feed in local.heads]
        if feeds:
            peer.useful += 1  # it named feeds this node holds or wants
        if self.relay:
            offered = dict.fromkeys(  # a clock may name a feed twice (spec/10 §2)
                feed for feed, note in event.notes
                if note.seq > 0 and feed not in local.wanted
            )
            # Taken on pending, a few per peer; charged once entries come (spec/14 §4).
            new = self.quota.take(offered, peer.key or b"")
            if new:
                self.relayed.update(new)
                local.wanted.update(new)
                self.router.local_changed(new)
                feeds += new
            taken = set(new)
            peer.session.forget_notes([f for f in offered if f not in taken])  # not kept
        self._compare_heads(peer, event.notes)
        self.router.notes_received(peer, feeds)
        for feed in dict.fromkeys(feed for feed, _ in event.notes):
            if feed in self.forked_at:
                self._send_proof(peer, feed)

    def _relay_give_up(self, feed: FeedId, gone: list[FeedId]) -> None:
        """The quota is full (spec/14 §4): the feeds in ``gone`` that the quota no
        longer charges made room for ``feed`` (least served first) and are deleted;
        ``feed`` itself, if still charged, is fetched no more (what it holds is kept
        and served)."""
        own = self.logbook.identity.author.key if self.logbook.identity else None
        keep = self.follows | self.identity_feeds | set(self.own_behind)
        evicted = [f for f in gone if f not in self.quota.charged and f not in keep
                   and f.author_key != own]
        if feed in self.quota.charged and feed in gone and not self.quota.warned:
            self.quota.warned = True
            self.log("relay-quota-full", bytes=self.quota.bytes_used)
        deleted = []
        for victim in evicted:
            try:
                self.logbook.store.delete_feed(victim)
            except StorageFull:
                continue  # (a full disk: kept, and no longer fetched)
            deleted.append(victim)
        if deleted:
            self.log("relay-feeds-evicted", feeds=len(deleted), taking=str(feed),
                     bytes=self.quota.bytes_used)
            self.refresh_local(deleted)
            for victim in deleted:
                self._watch.pop(victim, None)
        dropped = set(gone) - self.follows
        if dropped & self.relayed:
            self.relayed -= dropped
            self._recompute_wanted()
            for peer in self.router.peers:
                peer.session.forget_notes(list(dropped))

    def _compare_heads(self, peer: Peer, notes: Sequence[tuple[FeedId, Note]]) -> None:
        """A note naming another entry at a seq this node holds: the peer holds
        another history of the feed. Find where the two split (spec/10 §8)."""
        for feed, note in notes:
            held = self.local.seq(feed)
            if not note.seq or note.seq > held:
                continue
            if feed in self.forked_at or feed in peer.diverged:
                continue
            if note.seq == held:
                ours = self.local.head_hashes.get(feed)
            else:
                ours = self.logbook.store.hashes(feed, [note.seq]).get(note.seq, b"")[:HEAD_PREFIX]
            if ours is not None and ours != note.head:
                self._diverged(peer, feed, note.seq)

    def _diverged(self, peer: Peer, feed: FeedId, differs_at: int) -> None:
        """The peer's history of ``feed`` differs from ours at ``differs_at`` (or below)."""
        peer.diverged.add(feed)
        self.router.consider(feed, scan=True)
        searches = peer.searches
        if feed in searches or len(searches) >= MAX_FORK_SEARCHES:
            return
        self.log("fork-suspected", feed=str(feed), seq=differs_at,
                 peer=(peer.key or b"").hex()[:8])
        search = searches[feed] = ForkSearch(feed, 0, differs_at)
        self._search_step(peer, search)

    def _search_step(self, peer: Peer, search: ForkSearch) -> None:
        if not peer.session.can_request():
            return  # retried when an answer frees a slot (_resume_searches)
        search.request = peer.session.request_seqs(search.feed, search.probes(),
                                                   payloads=False)

    def _resume_searches(self, peer: Peer) -> None:
        for search in peer.searches.values():
            if search.request is None:
                self._search_step(peer, search)

    def _on_seqs(self, peer: Peer, event: SeqReceived) -> None:
        if self._on_payloads(peer, event):
            self._resume_searches(peer)
            return
        search = peer.searches.get(event.feed)
        if search is None or search.request != event.request_id:
            self._resume_searches(peer)
            return  # a payload request's answer, or a search that ended meanwhile
        search.request = None
        try:
            self._advance_search(peer, search, event)
        finally:
            self._resume_searches(peer)

    def _on_payloads(self, peer: Peer, event: SeqReceived) -> bool:
        """The answer to a request for missing payloads: store those that check out."""
        feed = self.payloads.requests.pop((peer.key or b"", event.request_id), None)
        if feed is None:
            return False
        got = []
        for raw, payload in event.items:
            if payload is None:
                continue
            try:
                self.logbook.add_payload(feed, decode_entry(raw).seq, payload)
            except InvalidEntry as exc:
                raise InvalidData(exc.at(str(feed), None)) from None
            got.append(decode_entry(raw).seq)
        if got:
            self.payloads.got(feed, got)
            self.payloads.answered(feed, peer.key or b"")
        return True

    def _ask_payloads(self) -> None:
        """Ask one peer per feed (each peer once per gap) for payloads not sent."""
        for feed in list(self.payloads.missing):
            if feed not in self.local.wanted:
                self.payloads.got(feed, set(self.payloads.missing[feed]))
                continue
            lowest = min(self.payloads.missing[feed])
            for peer in self.router.peers:
                key = peer.key
                if key is None or peer.excludes(feed) or peer.holds(feed) < lowest \
                        or not peer.session.clock_exchanged or not peer.session.can_request():
                    continue
                seqs = self.payloads.next_ask(feed, key)
                if seqs is None:
                    continue
                request = peer.session.request_seqs(feed, seqs, payloads=True)
                self.payloads.requests[(key, request)] = feed
                break

    def _advance_search(self, peer: Peer, search: ForkSearch, event: SeqReceived) -> None:
        feed = search.feed
        if feed in self.forked_at:
            peer.searches.pop(feed, None)  # a proof arrived meanwhile
            return
        try:
            theirs = [decode_entry(raw) for raw, _ in event.items]
        except InvalidEntry as exc:
            raise InvalidData(exc.at(str(feed), None)) from None
        if any(e.feed != feed or e.seq not in event.seqs for e in theirs):
            raise InvalidData(InvalidEntry("the answer holds entries that were not asked for",
                                           feed=str(feed)))
        if search.hi - search.lo <= 1:  # the branch from the fork seq: make the proof
            peer.searches.pop(feed, None)
            branch = [(e.raw, None) for e in theirs if e.seq >= search.hi]
            result = self.logbook.ingest(feed, branch)
            if isinstance(result.error, ForkDetected) and isinstance(result.error.proof, ForkProof):
                self._forked(feed, peer, result.error.proof)
            elif result.error is not None and not isinstance(result.error, ForkedFeed):
                raise InvalidData(result.error)
            return
        mine = self.logbook.store.hashes(feed, [e.seq for e in theirs])
        for entry in theirs:  # ascending: agreement at a seq means agreement below it
            if mine.get(entry.seq) == entry.hash:
                search.lo = max(search.lo, entry.seq)
            else:
                search.hi = min(search.hi, entry.seq)
                break
        if search.lo >= search.hi or (len(theirs) < len(event.seqs) and search.hi - search.lo > 1):
            # The peer's answers contradict each other, or it lacks entries it noted.
            peer.searches.pop(feed, None)
            return
        self._search_step(peer, search)

    def _on_entries(self, peer: Peer, event: EntriesReceived) -> None:
        feed = event.feed
        if feed in peer.diverged:
            peer.session.count_unsolicited()  # in flight before it learned: dropped
            return
        items, rebuilt = event.items, event.decoded
        cap = self.identity_caps.get(feed)
        if cap is not None:
            # A revoked device's entries past its cut are not the identity's: not
            # stored (spec/12 §7.2). Not the peer's fault: it may not know the revocation.
            kept = []
            for item in items:
                try:
                    seq = decode_entry(item[0]).seq
                except InvalidEntry:
                    kept.append(item)  # (the ingest below names what is wrong with it)
                    break
                if seq <= cap:
                    kept.append(item)
            items = tuple(kept)
            rebuilt = None
            if not items:
                return
        result = self.logbook.ingest(feed, items, rebuilt)
        added, error = result.added, result.error
        if error is None and result.pending and len(items) == len(event.items):
            error = UnsignedTail(
                f"the message ends with {result.pending} unsigned entries: a sender ends "
                "every entries message at a signed entry", feed=str(feed),
                seq=decode_entry(event.items[-1][0]).seq,
            )
        self.entries_received += added
        peer.useful += added
        if None in map(_payload_of, event.items):
            held = self.logbook.store.head(feed)
            top = held.seq if held else 0
            missing = []
            for raw, payload in event.items:
                if payload is None:
                    try:
                        entry = decode_entry(raw)
                    except InvalidEntry:
                        break  # past the valid prefix (the error above names it)
                    if entry.payload_size and entry.seq <= top:
                        missing.append(entry.seq)
            self.payloads.add(feed, missing)
        if added and feed in self.relayed and feed not in self.follows:
            size = sum(len(raw) + len(payload or b"") for raw, payload in event.items)
            gone = self.quota.stored(feed, size * added // len(event.items))
        else:
            gone = []
        if added and self.blobs is not None:
            self.blobs.scan(feed, event.items)
        if added:
            new_head = result.head
            if new_head is None:
                held_head = self.logbook.store.head(feed)
                new_head = (held_head.seq, held_head.hash) if held_head else None
            self.local.update([(feed, *new_head)] if new_head else [])
            last = decode_entry(items[-1][0]).seq if error is None else None
            if new_head is not None:
                peer.streamed[feed] = max(peer.streamed.get(feed, 0), new_head[0])
            self.router.local_changed([feed], source=peer, delivered=last)
            if self.hops > 1 and feed in self.local.wanted:
                self._recompute_wanted()  # new follow entries may add feeds
        if gone:
            self._relay_give_up(feed, gone)
        if result.split_below is not None:
            # The author's other history: not this peer's fault. Find where they split.
            self._diverged(peer, feed, result.split_below - 1)
        elif isinstance(error, ForkDetected) and isinstance(error.proof, ForkProof):
            self._forked(feed, peer, error.proof)  # the author forked its log
        elif isinstance(error, ForkedFeed):
            pass  # entries past a fork this node knows of; the peer will get the proof
        elif error is not None:
            raise InvalidData(error)

    def _forked(self, feed: FeedId, origin: Peer | None, proof: ForkProof, *,
                made: bool = True) -> None:
        """A fork proof of ``feed`` was made here (``made``) or received from ``origin``:
        stop serving past it, and spread it (to ``origin`` too, unless it sent it)."""
        self.log("fork-proven", feed=str(feed), seq=proof.seq, made_here=made)
        self.forked_at[feed] = min(proof.seq, self.forked_at.get(feed, proof.seq))
        for other in self.router.peers:
            other.searches.pop(feed, None)
        self._spread_fork(feed, None if made else origin)
        if made and origin is not None:
            self._send_proof(origin, feed)  # it holds the other history: it must learn
        self.refresh_local()  # the feed's note now ends before the fork

    def _send_proof(self, peer: Peer, feed: FeedId) -> None:
        """The feed's earliest fork proof, once per session (stored proofs are verified)."""
        if feed in peer.proofs_sent or peer.session.failed:
            return  # (a session that failed in these same bytes gets nothing more)
        proofs = self.logbook.store.fork_proofs(feed)
        if proofs:
            peer.proofs_sent.add(feed)
            peer.session.send_fork_proof(proofs[0])

    def _spread_fork(self, feed: FeedId, origin: Peer | None) -> None:
        if origin is not None:
            origin.proofs_sent.add(feed)  # it sent us the proof
        for other in self.router.peers:
            if other is not origin and feed in other.session.received:
                self._send_proof(other, feed)

    def _on_fork_proof(self, peer: Peer, raw: bytes) -> None:
        feed = _proof_feed(raw)
        if feed is not None and feed not in self.local.wanted and feed not in self.local.heads:
            # Kept only for feeds this node holds or wants (spec/14 §3): anyone can
            # fork a feed of their own, as many as they like. Not even verified.
            return
        try:
            proof = ForkProof.from_bytes(raw)  # verified here, once
        except InvalidForkProof as exc:
            raise InvalidData(exc) from None
        if proof.feed not in self.local.wanted and proof.feed not in self.local.heads:
            return
        if self.logbook.store.add_fork_proof(proof.feed, proof.seq, proof.to_bytes()):
            self._forked(proof.feed, peer, proof, made=False)


    # -- identity logs (spec/12 §6.3) ------------------------------------------------

    def _on_identity(self, peer: Peer,
                     event: IdentityNotesReceived | IdentityRequested | IdentityEventsReceived,
                     ) -> None:
        session = peer.session
        if isinstance(event, IdentityNotesReceived):
            peer.identities_noted = True
            for note in event.notes:
                peer.identity_notes[note.identity] = note
            if len(peer.identity_notes) > MAX_PEER_IDENTITY_NOTES:
                raise PeerFlooding(f"notes of over {MAX_PEER_IDENTITY_NOTES} identities")
            for note in event.notes:
                if (note.seq > 0 and self.relay and not self.identities.wants(note.identity)
                        and self.identities.hold(note.identity)):
                    self._identity_changed(note.identity, None)  # a relay keeps what it is offered
                self._maybe_request_identity(peer, note.identity)
        elif isinstance(event, IdentityRequested):
            session.send_identity_events(event.request_id, event.identity,
                                         self.identities.served(event.identity, event.from_seq))
        else:
            identity = event.identity
            if not (self.identities.wants(identity) or identity in self.identities.logs):
                session.count_unsolicited()  # not followed, not held: in flight, or a flood
                return
            added = self.identities.add(identity, event.events)
            if added.refused:
                digest, refusal = added.refused[0]
                raise InvalidData(InvalidIdentityEvent(
                    refusal.rule, f"identity {format_identity(identity)} event "
                    f"{digest.hex()[:16]}: {refusal.detail}", seq=refusal.seq))
            if added.changed:
                self._identity_changed(identity, peer)
            if not event.more and self._identity_behind(peer, identity):
                # The answer was cut short, or events the peer should have are pending
                # here: ask again (from the head, else from 1), a bounded number of times.
                self._maybe_request_identity(peer, identity)

    def _identity_behind(self, peer: Peer, identity: bytes) -> bool:
        """The peer noted a longer (or another) chain of ``identity`` than this node's."""
        theirs = peer.identity_notes.get(identity)
        if theirs is None or theirs.seq == 0:
            return False
        ours = self.identities.note(identity)
        return theirs != ours and (theirs.seq >= ours.seq or theirs.status != ours.status)

    def _maybe_request_identity(self, peer: Peer, identity: bytes,
                                from_seq: int | None = None) -> None:
        session = peer.session
        if not (self.identities.wants(identity) or identity in self.identities.logs):
            return
        if not self._identity_behind(peer, identity) and from_seq is None:
            return
        if session.identity_requested(identity) or not session.can_request():
            return
        asked = peer.identity_asks.get(identity, 0)
        if asked >= MAX_IDENTITY_ASKS:
            return  # the peer's note promises more than its answers give: stop asking
        peer.identity_asks[identity] = asked + 1
        if from_seq is None:
            state = self.identities.state(identity)
            theirs = peer.identity_notes[identity]
            from_seq = (state.seq + 1 if state is not None and state.status == "active"
                        and theirs.seq > state.seq else 1)
        session.request_identity(identity, from_seq)

    def _identity_changed(self, identity: bytes, origin: Peer | None) -> None:
        """The state of ``identity`` moved: spread it (spec/12 §6.3, 5), and apply it to
        the device feeds this node wants (spec/12 §7.5)."""
        state = self.identities.state(identity)
        if state is None:
            return
        self.log("identity-changed", identity=format_identity(identity), seq=state.seq,
                 status=state.status, devices=sum(1 for d in state.devices.values() if d.active))
        note = self.identities.note(identity)
        served = self.identities.served(identity)
        for other in self.router.peers:
            session = other.session
            if not session.speaks_identities:
                continue
            theirs = other.identity_notes.get(identity)
            if other is not origin and theirs is not None and theirs != note and served:
                session.send_identity_events(None, identity, served)
                other.identity_notes[identity] = note  # it will hold this once it folds it
            session.send_identity_notes([note])
        self._identities_moved()

    def _identities_moved(self) -> None:
        """Followed identities' devices or cuts changed: recompute the feeds wanted."""
        # Devices' logs named before their device-add arrived: those in peers' notes
        # were remembered as they came (IdentityBook.unplaced_logs); the store's are
        # scanned (rare, so cheap enough).
        self.identities.learn_feeds(info.feed for info in self.logbook.feeds())
        self.identity_caps = self.identities.caps()
        self._recompute_wanted()
        self.refresh_local()

    def reload_identities(self) -> None:
        """Another process changed the identity logs or follows (a CLI `device add`)."""
        for identity in self.identities.reload():
            self._identity_changed(identity, None)
        self._identities_moved()
        for peer in self.router.peers:
            for identity in self.identities.follows:
                self._maybe_request_identity(peer, identity)

    def set_identity_follows(self, follows: Mapping[bytes, Iterable[str]]) -> None:
        """Follow these identities (and logs of each); ask peers for their logs."""
        new = set(follows) - set(self.identities.follows)
        self.identities.set_follows(follows)
        self.identities.learn_feeds(info.feed for info in self.logbook.feeds())
        for peer in self.router.peers:
            if peer.session.speaks_identities and new:
                peer.session.send_identity_notes([self.identities.note(i) for i in sorted(new)])
                for identity in new:
                    self._maybe_request_identity(peer, identity)
        self._identities_moved()

    # -- serving what is stored -------------------------------------------------

    def _served(self, feed: FeedId, rows: Sequence[StoredEntry]) -> list[StoredEntry]:
        """``rows`` up to the first whose stored bytes are damaged (then that feed is
        no longer served from there); a damaged payload is dropped, so it is fetched again.
        A relay counts what it serves: the least served feeds give up their place first."""
        if rows and feed in self.relayed:
            self.quota.served(feed)
        hasher = BLAKE2B_256.copy  # entry_hash and payload_hash, without a call each
        for index, row in enumerate(rows):
            state = hasher()
            state.update(row.raw)
            if state.digest() != row.hash:
                self._damaged(feed, row.seq, "the entry's bytes do not match its stored hash")
                return list(rows[:index])
            if row.payload is None:
                continue
            state = hasher()
            state.update(row.payload)
            if state.digest() != stored_payload_hash(row.raw):
                self.log("stored-payload-damaged", feed=str(feed), seq=row.seq)
                self.logbook.delete_payload(feed, row.seq)
                rows = [*rows[:index], row._replace(payload=None), *rows[index + 1:]]
        return list(rows)

    def _damaged(self, feed: FeedId, seq: int, why: str) -> None:
        if seq < self.damaged.get(feed, seq + 1):
            self.damaged[feed] = seq
            self.log("stored-entry-damaged", feed=str(feed), seq=seq, error=why)
            self.refresh_local()

    # -- partial replication --------------------------------------------------

    def request_partial(self, session: Session, feed: FeedId, count: int) -> int:
        return session.request_partial(feed, count)

    def _answer_partial(self, session: Session, request: PartialRequested) -> None:
        head = self.local.seq(request.feed)  # up to a fork or damage, as noted
        if not head:
            session.send_partial(request.request_id, [])
            return
        oldest = head - request.count + 1
        rows = self._served(request.feed, self.logbook.store.entries_at(
            request.feed, partial_seqs(head, request.count), payloads=False
        ))
        if not rows or rows[-1].seq != head:
            session.send_partial(request.request_id, [])  # damaged: nothing to vouch for
            return
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
            for row in self._served(request.feed,
                                    self.logbook.store.entries_at(request.feed, chosen))
        }
        session.send_partial(
            request.request_id, [(row.raw, payloads.get(row.seq)) for row in rows]
        )

    def _answer_seqs(self, session: Session, request: SeqRequested) -> None:
        """The entries held at the seqs asked for, up to what is served (a fork, damage);
        payloads if asked, ascending, within the partial payload budget."""
        served = self.local.seq(request.feed)
        seqs = [seq for seq in request.seqs if seq <= served]
        rows = self.logbook.store.entries_at(request.feed, seqs, payloads=False)
        rows = [row for row in rows if row.seq <= served]
        payloads: dict[int, bytes | None] = {}
        if request.payloads and rows:
            budget, chosen = PARTIAL_PAYLOAD_BYTES, []
            for row in rows:
                size = decode_entry(row.raw).payload_size
                if size <= budget:
                    budget -= size
                    chosen.append(row.seq)
            payloads = {row.seq: row.payload for row in self._served(
                request.feed, self.logbook.store.entries_at(request.feed, chosen))}
        rows = self._served(request.feed, rows)
        session.send_seqs(request.request_id, [(row.raw, payloads.get(row.seq)) for row in rows])

    def _on_partial(self, session: Session, event: PartialReceived) -> PartialResult:
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
            return PartialResult(session, event.request_id, event.feed, [])
        head = verified[-1].seq
        held = {e.seq for e in verified}
        missing = set(partial_seqs(head, event.count)) - held
        if missing:
            raise InvalidData(InvalidEntry(
                f"the answer lacks seqs {sorted(missing)[:5]} of the latest {event.count}",
                feed=str(event.feed), seq=min(missing),
            ))
        newest = [e for e in verified if e.seq > head - event.count]
        return PartialResult(session, event.request_id, event.feed,
                             [(e.raw, payloads.get(e.seq)) for e in newest])

    # -- streaming --------------------------------------------------------------

    def pump(self, session: Session, budget: int = SEND_BUDGET,
             blob_budget: int | None = None) -> bytes:
        """Queue the entries the peer is owed (up to ``budget`` bytes), and between
        them blob chunks it asked for (up to ``blob_budget`` chunk bytes: the node's
        rate limit); bytes to send.

        Log messages go first; a blob-data message (at most 4 chunks) goes only when
        no log message is ready, so entries wait behind at most one (spec/13 §9).
        """
        self.local.dirty.discard(session)
        while True:
            self._pump_log(session, budget)
            if self.blobs is None or session.channel.pending_output >= budget \
                    or (blob_budget is not None and blob_budget <= 0):
                if self.blobs is None and not session.failed:
                    while (serve := session.blobs.next_serve()) is not None:
                        serve.remaining.clear()  # no store: nothing held
                        session.blobs.send_data(serve, [])
                break
            sent = self.blobs.serve_step(session)
            if sent < 0:
                break
            if blob_budget is not None:
                blob_budget -= sent
        return session.data_to_send()

    def _pump_log(self, session: Session, budget: int) -> None:
        while session.channel.pending_output < budget:
            request = session.next_request()
            if request is None:
                break
            if isinstance(request, PartialRequested):
                self._answer_partial(session, request)
            else:
                self._answer_seqs(session, request)
        while session.channel.pending_output < budget:
            owed = session.next_stream()
            if owed is None:
                break
            feed, since = owed
            rows = self._stream_batch(feed, since)
            if not rows:
                session.forget_owed(feed)
                continue
            # _served checked each row's hash and payload: compact_run need not again.
            session.send_entries(feed, [(r.raw, r.payload) for r in rows], rows[-1].seq,
                                 rows[-1].hash, [r.hash for r in rows])

    def _stream_batch(self, feed: FeedId, since: int) -> list[StoredEntry]:
        """Entries ``since..`` to send in one message, ending at a signed entry (spec/10 §5.3).

        A batch holds up to STREAM_BATCH_ENTRIES and STREAM_BATCH_BYTES, cut back
        to its last signed entry, or, if it has none, extended to the next one
        (at most 63 more entries and 256 KiB of their payloads, spec/04 C5).
        """
        served = self.local.seq(feed)
        if since > served:
            return []
        rows = self.logbook.store.entries(
            feed, since, min(STREAM_BATCH_ENTRIES, served - since + 1), STREAM_BATCH_BYTES
        )
        if not rows or rows[0].seq != since:
            return []
        end = next((i for i in range(len(rows) - 1, -1, -1) if stored_is_signed(rows[i].raw)),
                   None)
        if end is None:
            more = self.logbook.store.entries(feed, rows[-1].seq + 1,
                                              min(MAX_RUN, served - rows[-1].seq))
            rows = [*rows, *more]
            end = next((i for i, row in enumerate(rows) if stored_is_signed(row.raw)), None)
            if end is None:
                return []  # nothing signed where the store must have it: damaged
        rows = self._served(feed, rows[:end + 1])
        while rows and not stored_is_signed(rows[-1].raw):
            rows.pop()  # damage cut the batch short of its signed entry
        return rows

    def tick(self, now: float) -> list[FeedId]:
        """Time passes (the driver's clock, in seconds; call it about once a second).

        Seq notes held for lazy peers go out. A source whose note says it
        holds more than this node, and that sent nothing new for STALL_AFTER
        seconds (while it sent no other feed's entries either; STALL_WHILE_SERVING_AFTER
        if it did), stops being the feed's source for the rest of its session.
        Returns the feeds moved.
        """
        for peer in self.router.peers:
            peer.session.flush_lazy()
            self._expire_awaited(peer, now)
        if self.payloads.missing:
            self._ask_payloads()
        expired = [f for f in self.quota.expire(now) if f not in self.follows]
        if expired:  # offers that brought nothing: dropped, their notes too
            self.relayed.difference_update(expired)
            self._recompute_wanted()
            for peer in self.router.peers:
                peer.session.forget_notes(expired)
        if self.blobs is not None:
            self.blobs.tick(p.session for p in self.router.peers)
        moved = []
        for feed, peer in list(self.router.source.items()):
            head = self.local.seq(feed)
            if peer.peer_seq(feed) <= head:
                self._watch.pop(feed, None)
                continue
            seen = self._watch.get(feed)
            if seen is None or seen[0] != head or seen[2] is not peer:
                self._watch[feed] = (head, now, peer, peer.useful, now)
            elif peer.useful != seen[3] and now - seen[4] < STALL_WHILE_SERVING_AFTER:
                # The source is sending other feeds' entries: this one waits its turn.
                self._watch[feed] = (head, now, peer, peer.useful, seen[4])
            elif now - seen[1] >= STALL_AFTER:
                peer.stalled.add(feed)
                del self._watch[feed]
                self.router.consider(feed, scan=True)
                moved.append(feed)
        return moved

    @staticmethod
    def _expire_awaited(peer: Peer, now: float) -> None:
        awaiting, since = peer.session.awaiting, peer.awaiting_since
        for feed in [f for f in since if f not in awaiting]:
            del since[feed]
        for feed in list(awaiting):
            if now - since.setdefault(feed, now) >= AWAIT_ANSWER_AFTER:
                awaiting.discard(feed)  # no answer: the peer holds nothing of it
                del since[feed]

    def caught_up(self, session: Session) -> bool:
        """The peer's opening clock is in and this node holds every wanted entry it has
        (and, on wire version 3, every identity log it wants: spec/12 §6.3, 6)."""
        peer = self.peers.get(session)
        if peer is None or not session.clock_exchanged:
            return False
        if session.speaks_identities and self.identities.follows and (
                not peer.identities_noted or session.identity_requests_open() or any(
                    self._identity_behind(peer, identity)
                    and peer.identity_asks.get(identity, 0) < MAX_IDENTITY_ASKS
                    for identity in self.identities.follows)):
            return False
        if any(feed in self.local.wanted for feed in session.awaiting):
            return False  # a feed newly wanted: the peer's note of it is on its way
        searching, received, held = peer.searches, session.received, self.local.heads
        for feed in self.local.wanted:  # (called at every read: one lean pass)
            theirs = received.get(feed)
            if theirs is None or (seq := held.get(feed, 0)) >= theirs.seq:
                continue
            if not (feed in self.forked_at
                    or seq >= self.identity_caps.get(feed, 2**64)  # a revoked device
                    or (peer.excludes(feed) and feed not in searching)):
                return False
        return True
