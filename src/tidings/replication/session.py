"""The replication session, pure: one peer connection's state machine.

A :class:`Session` sits on a :class:`~tidings.transport.channel.Channel`. It
takes bytes from the peer and returns events for the node, and bytes for the
peer (spec/10-replication.md)::

    events = session.receive_data(data)   # raises PeerError if the peer misbehaved
    ...                                   # Authenticated: the driver calls start()
    sock.send(session.data_to_send())

Its stages are a table (:data:`ACCEPTS`, h11-style): in each
:class:`SessionState` a set of messages is allowed, and any other is the peer's
error. On any protocol error the session queues the spec's ``error`` message
itself (spec/09 §6) and enters a terminal state: every later call raises
:class:`~tidings.errors.LocalProtocolError`, and :meth:`data_to_send` gives the
goodbye. So every driver (the node, the simulator, tests) honours the spec
without code of its own.

The node answers the events that need its store (ingest the entries, read a
partial answer) and tells the session when its own heads change
(:meth:`Session.local_changed`). :meth:`Session.next_stream` says which feed
the peer is owed entries of; the node reads a batch and hands it to
:meth:`Session.send_entries`, so the peer gets entries only as fast as the
socket drains (backpressure).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from tidings.core.ids import FeedId
from tidings.core.records import record
from tidings.core.verify import RebuiltRun
from tidings.errors import (
    ClosedByPeer,
    LocalProtocolError,
    MalformedMessage,
    NotesFull,
    PeerError,
    PeerFlooding,
    UnexpectedMessage,
    UnsupportedVersion,
)
from tidings.replication.blob_session import BlobEvent, BlobExchange
from tidings.replication.clock import LocalClock, clock_digest, unchanged_since
from tidings.transport.channel import Channel
from tidings.wire.compact import compact_run, rebuild_run
from tidings.wire.messages import (
    BLOB_MESSAGES,
    BLOB_WIRE_VERSION,
    COMPACT_VERSION,
    EAGER,
    HEAD_PREFIX,
    IDENTITY_VERSION,
    MAX_IDENTITY_EVENT_BYTES,
    MAX_IDENTITY_EVENTS,
    MAX_IDENTITY_NOTES,
    MAX_NOTES,
    MAX_PARTIAL,
    VERSIONS,
    WANT,
    Clock,
    CompactEntries,
    Entries,
    ErrorMessage,
    ForkProofMessage,
    Hello,
    IdentityEvents,
    IdentityNote,
    IdentityNotes,
    IdentityRequest,
    Message,
    Note,
    PartialRequest,
    PartialResponse,
    Peers,
    Ping,
    SeqRequest,
    SeqResponse,
)

#: Notes kept from one peer: a relay's clock can be large, but not unbounded.
MAX_PEER_NOTES = 200_000
#: Notes kept from all peers together (spec/14 §3). A kept note costs about 300
#: bytes (its dict slot, feed id and note), so this bounds them near 300 MiB
#: however many connections strangers hold; a node that holds or wants 15,000
#: feeds reaches it only with over 64 peers that hold them all.
MAX_NOTES_KEPT = 1_000_000
#: Notes of feeds not kept, set aside, from all peers together (spec/14 §3): about
#: 50 MiB. A session that would go over it sets aside no more (its next session
#: with the peer then opens with whole clocks, as one without the notes would).
MAX_NOTES_ASIDE = 65_536


@record(frozen=False, slots=False)
class NoteBudget:
    """The notes kept by every session of one replicator, counted together."""

    limit: int = MAX_NOTES_KEPT
    used: int = 0
    #: Notes set aside (of feeds not kept), counted apart: never a reason to close.
    aside: int = 0
    aside_limit: int = MAX_NOTES_ASIDE

    @property
    def full(self) -> bool:
        return self.used > self.limit
#: Entries messages for feeds this node does not want, tolerated per session:
#: a few arrive in flight after an unfollow or an eager switch.
MAX_UNSOLICITED = 64
#: Requests (partial and seq) from the peer waiting for an answer: each is a few
#: bytes until answered, and answers are made only as the socket drains.
MAX_QUEUED_REQUESTS = 1024
#: Requests (partial and seq) this side may have unanswered at once.
MAX_OUTSTANDING_PARTIALS = 16
#: The peer's notes of feeds this node neither held nor wanted when they came, set
#: aside per session: in case it starts to want them (a followed author's device
#: feeds, once the identity log places the device: spec/10 §5.5), and remembered
#: with the kept ones, so that the next session's hello names every note the peer
#: sent and it opens with a delta (spec/10 §4): a reader whose peer holds feeds it
#: does not follow would otherwise exchange whole clocks at every reconnect. About
#: 800 bytes a note (measured: its feed id, note and slot): 25 MiB for a session
#: this node dialed, or with a peer whose clocks it remembers (and MAX_NOTES_ASIDE
#: for all); a stranger's session, which is not remembered unless it gives
#: something, sets aside MAX_STRANGER_UNKEPT_NOTES. A clock naming more such feeds
#: evicts the oldest: an evicted note costs one round trip (the peer answers a new
#: want), and the next session whole clocks.
MAX_UNKEPT_NOTES = 32_768
MAX_STRANGER_UNKEPT_NOTES = 1024
#: Wants of feeds this side neither holds nor wants answered per session (each
#: answer is a (0, 0) note kept in ``sent``: spec/10 §5.5, spec/14 §3).
MAX_UNKEPT_ANSWERS = 1024


# -- the state table -----------------------------------------------------------


class SessionState(enum.Enum):
    """Where a session stands. FAILED and CLOSED are terminal."""

    #: The Noise handshake is under way (spec/08 §4): no messages yet.
    HANDSHAKE = "handshake"
    #: The peer's transport key is known. The driver accepts the peer
    #: (:meth:`Session.start`) or refuses it (:meth:`Session.fail`); messages
    #: that arrive meanwhile wait in the channel.
    AUTHENTICATED = "authenticated"
    #: Our hello is sent; the peer's is awaited (spec/09 §3.1).
    HELLO = "hello"
    #: Hellos exchanged; the peer's opening clock is arriving (spec/10 §3).
    OPENING = "opening"
    #: The peer's opening clock is complete: what it holds is known.
    LIVE = "live"
    #: This side found an error; its ``error`` message is queued (spec/09 §6).
    FAILED = "failed"
    #: The peer sent an ``error`` message.
    CLOSED = "closed"


_EXCHANGE: frozenset[type[Message]] = frozenset({
    Clock, Entries, PartialRequest, PartialResponse, SeqRequest, SeqResponse,
    ForkProofMessage, Peers, Ping, ErrorMessage,
    IdentityNotes, IdentityRequest, IdentityEvents,  # version 3 only (_handle)
    *BLOB_MESSAGES,  # version 3 only (_handle)
    CompactEntries,  # version 4 only (_on_entries)
})
#: The messages each state accepts; any other is :class:`UnexpectedMessage`.
ACCEPTS: dict[SessionState, frozenset[type[Message]]] = {
    SessionState.HANDSHAKE: frozenset(),
    SessionState.AUTHENTICATED: frozenset(),
    SessionState.HELLO: frozenset({Hello, ErrorMessage}),
    SessionState.OPENING: _EXCHANGE,
    SessionState.LIVE: _EXCHANGE,
    SessionState.FAILED: frozenset(),
    SessionState.CLOSED: frozenset(),
}
#: The moves a message makes; an accepted message not listed keeps the state.
#: A clock moves OPENING to LIVE only when it is final (the last of the opening
#: clock's messages); an error message always ends in CLOSED.
TRANSITIONS: dict[tuple[SessionState, type[Message]], SessionState] = {
    (SessionState.HELLO, Hello): SessionState.OPENING,
    (SessionState.OPENING, Clock): SessionState.LIVE,
    (SessionState.HELLO, ErrorMessage): SessionState.CLOSED,
    (SessionState.OPENING, ErrorMessage): SessionState.CLOSED,
    (SessionState.LIVE, ErrorMessage): SessionState.CLOSED,
}
TERMINAL = frozenset({SessionState.FAILED, SessionState.CLOSED})


# -- events for the node ----------------------------------------------------


@record
class Authenticated:
    """The handshake is done: the peer's transport key is ``peer``. Call
    :meth:`Session.start` (or :meth:`Session.fail` to refuse it)."""

    peer: bytes


@record
class PeerReady:
    """Hello exchanged: the session speaks ``version``."""

    version: int
    relay: bool


@record
class NotesReceived:
    notes: tuple[tuple[FeedId, Note], ...]


@record
class ClockExchanged:
    """The peer's opening clock is complete: what it holds is known."""


@record
class EntriesReceived:
    feed: FeedId
    items: tuple[tuple[bytes, bytes | None], ...]
    #: The entries of ``items``, decoded, when they came as a compact run
    #: (spec/09 §8): rebuilt field by field, so every decoding check of spec/04 §2
    #: holds and an ingest path may take them instead of decoding ``items``
    #: (``Logbook.ingest(..., rebuilt=)``).
    decoded: RebuiltRun | None = None


@record
class PartialReceived:
    request_id: int
    feed: FeedId
    count: int
    items: tuple[tuple[bytes, bytes | None], ...]


@record
class SeqReceived:
    request_id: int
    feed: FeedId
    seqs: tuple[int, ...]
    items: tuple[tuple[bytes, bytes | None], ...]


@record
class ForkProofReceived:
    proof: bytes


@record
class PeersReceived:
    addresses: tuple[tuple[str, int], ...]


@record
class IdentityNotesReceived:
    """The peer's notes of identities (wire version 3, spec/12 §6.3)."""

    notes: tuple[IdentityNote, ...]


@record
class IdentityRequested:
    """The peer asks for the events of ``identity`` from ``from_seq``: answer it."""

    request_id: int
    identity: bytes
    from_seq: int


@record
class IdentityEventsReceived:
    """Events of ``identity``: an answer to our request (``request_id``) or pushed (None)."""

    request_id: int | None
    identity: bytes
    events: tuple[bytes, ...]
    more: bool


@record
class Failed:
    """The session ended with ``error`` (always the last event): the peer broke
    the protocol, or sent an error message (:class:`ClosedByPeer`). Send
    :meth:`Session.data_to_send` (the error message queued for the peer) and close."""

    error: PeerError


Event = (
    Authenticated | PeerReady | NotesReceived | ClockExchanged | EntriesReceived
    | PartialReceived | SeqReceived | ForkProofReceived | PeersReceived | Failed
    | IdentityNotesReceived | IdentityRequested | IdentityEventsReceived | BlobEvent
)


# -- the peer's requests, answered as the socket drains ------------------------


@record
class PartialRequested:
    """The peer asks for the latest ``count`` entries of ``feed`` (spec/10 §7.1)."""

    request_id: int
    feed: FeedId
    count: int


@record
class SeqRequested:
    """The peer asks for the entries of ``feed`` at ``seqs`` (spec/10 §7.2)."""

    request_id: int
    feed: FeedId
    seqs: tuple[int, ...]
    payloads: bool


Request = PartialRequested | SeqRequested


class Session:
    """Replication with one peer. ``local`` is shared with the node's other sessions.

    ``sent`` and ``received`` are the clocks remembered from the last session
    with this peer (what this side sent, and what the peer sent), given to
    :meth:`start`; the node persists them from :attr:`sent` and :meth:`remembered`
    when the session ends. :attr:`received` holds the peer's notes of the feeds this
    side holds or wants; those of other feeds are set aside (bounded).
    """

    def __init__(self, channel: Channel, local: LocalClock, *, relay: bool = False,
                 notes: NoteBudget | None = None,
                 versions: tuple[int, ...] | None = None) -> None:
        self.channel = channel
        self._versions = versions
        #: Counts this session's kept notes with every other session's.
        self.notes_budget = notes if notes is not None else NoteBudget()
        self._notes_counted = 0
        self.local = local
        self.relay = relay
        self.state = SessionState.HANDSHAKE
        self.sent: dict[FeedId, Note] = {}
        self.received: dict[FeedId, Note] = {}
        #: clock_digest(sent) as start() was given it, until sent changes.
        self._sent_digest: bytes | None = None
        self.version: int | None = None
        self.peer_relay = False
        self.eager: set[FeedId] = set()  # feeds this side streams from this peer
        #: The error this session ended with (ours in FAILED, the peer's in CLOSED).
        self.error: PeerError | None = None
        self._requests: deque[Request] = deque()
        self._lazy_notes: dict[FeedId, Note] = {}
        self._pending_notes: dict[FeedId, Note] = {}
        self._owed: set[FeedId] = set()  # feeds the peer streams from us and lacks
        #: Notes the peer sent of feeds not kept then (oldest first), bounded.
        self._unkept: OrderedDict[FeedId, Note] = OrderedDict()  # oldest first
        #: Some were evicted: a new want may lack the peer's note until it answers.
        self._unkept_evicted = False
        #: This node dialed the peer, or remembers clocks of it (see start()): it may
        #: set aside MAX_UNKEPT_NOTES, not MAX_STRANGER_UNKEPT_NOTES.
        self._known = False
        #: Notes sent to answer wants of feeds this side neither holds nor wants.
        self._answered_unkept = 0
        #: Feeds this side started to want in this session, of which the peer has sent
        #: no note: its answer is awaited before this side is caught up (spec/10 §10).
        self.awaiting: set[FeedId] = set()
        self._events: list[Event] = []
        #: Set while the session runs on settled clocks (see :meth:`start`): called
        #: before a message that needs them, it loads them (:meth:`unsettle`).
        self._settled: Callable[[], None] | None = None
        #: A fault of the channel found in the read that completed the handshake:
        #: raised once the messages before it are read (after start()).
        self._deferred: PeerError | None = None
        self._unsolicited = 0
        self._next_request = 0
        self._outstanding: dict[int, tuple[FeedId, int | tuple[int, ...]]] = {}
        #: Identity requests this side has open, by request id: the identity asked for.
        self._identity_requests: dict[int, bytes] = {}
        #: What this session streamed (for status and the simulator's redundancy figure).
        self.entries_sent = 0
        self.payload_bytes_sent = 0
        #: Blob transfer (spec/13 §8), at wire version 3.
        self.blobs = BlobExchange(self._send, self._mark)

    @property
    def versions(self) -> tuple[int, ...]:
        """The wire versions this side offers in its hello (spec/09 §7): every one it
        speaks, unless told fewer (an older peer, in tests)."""
        return VERSIONS if self._versions is None else self._versions

    @versions.setter
    def versions(self, versions: tuple[int, ...]) -> None:
        self._versions = versions

    @property
    def clock_exchanged(self) -> bool:
        """The peer's opening clock is complete (state LIVE)."""
        return self.state is SessionState.LIVE

    @property
    def failed(self) -> bool:
        return self.state in TERMINAL

    # -- bytes ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; returns what they meant, in order.

        If the peer broke the protocol (or closed with an error message), the
        list ends with :class:`Failed`: the session has queued its ``error``
        message (spec/09 §6) and is terminal. The events before it still count
        (entries that came before a broken frame are as good as any).
        """
        self._usable()
        try:
            if self._deferred is not None:
                self._take_messages()  # those that waited for start()
                raise self._deferred
            try:
                self.channel.receive_data(data)
            except PeerError as error:
                if self.state is SessionState.HANDSHAKE and self.channel.established:
                    # The messages before the fault wait for start(): the fault
                    # counts after them, as it would have in a later read.
                    self._deferred = error
                else:
                    raise
            finally:
                # The messages decoded before a fault of the channel still count.
                if self.state is SessionState.HANDSHAKE and self.channel.established:
                    self.state = SessionState.AUTHENTICATED
                    assert self.channel.remote_static is not None
                    self._events.append(Authenticated(self.channel.remote_static))
                if self.state is not SessionState.AUTHENTICATED:
                    self._take_messages()
        except PeerError as error:
            self.fail(error)
            self._events.append(Failed(error))
        if self.channel.pending_output:
            self._mark()  # a handshake reply
        return self._take_events()

    def start(self, *, sent: Mapping[FeedId, Note] | None = None,
              received: Mapping[FeedId, Note] | None = None,
              digests: tuple[bytes | None, bytes | None] | None = None,
              settled: Callable[[], None] | None = None) -> None:
        """Accept the authenticated peer: send hello, with the clocks remembered
        from the last session with it (``sent``: the notes this side sent it;
        ``received``: those it sent).

        Messages that arrived meanwhile wait in the channel: the next
        :meth:`receive_data` reads them (call it with ``b""`` to read them now).
        ``digests`` are ``clock_digest`` of ``sent`` and of ``received`` where the
        caller knows them (kept with the clocks): not computed again then.

        ``settled`` (with both ``digests``, and neither clock given): the caller vouches
        that the clocks it remembers, of those digests, hold exactly the notes this side
        would send now, and that nothing is owed either way; the local clock may be
        empty meanwhile. The session then reads neither: it opens with the delta that
        says nothing changed, and calls ``settled`` before the first message that
        needs them (a note, an entry, a request), which must load the local clock and
        call :meth:`unsettle`. A reconnect that changes nothing costs nothing per feed.
        """
        if self.state is not SessionState.AUTHENTICATED:
            self._usable()
            raise LocalProtocolError(f"start() is for an authenticated session, not "
                                     f"{self.state.value}")
        known_sent, known_received = digests or (None, None)
        self._sent_digest = known_sent
        self._known = bool(self.channel.initiator or sent or received or settled)
        if settled is not None:
            if known_sent is None or known_received is None or sent or received:
                raise LocalProtocolError("a settled start takes both digests and no clocks")
            self._settled = settled
            digest: bytes | None = known_received
        else:
            received = received or {}
            whole = self._take_clocks(sent or {}, received)
            if self.notes_budget.full or not whole:
                # At a bound: the hello names no digest, and the peer sends its whole
                # clock again (a digest of notes not held would make it send a delta
                # that leaves them unsaid: spec/10 §4).
                self.received.clear()
                self._count_notes()
                self._clear_aside()
                received = {}
            # (the digest of every note remembered: those set aside too)
            digest = (known_received or clock_digest(received)) if received else None
        self.state = SessionState.HELLO
        self._send(Hello(self.versions, self.relay, digest))

    def _take_clocks(self, sent: Mapping[FeedId, Note], received: Mapping[FeedId, Note],
                     *, bounded: bool = True) -> bool:
        """Take the remembered clocks; the peer's notes of feeds neither held nor wanted
        now are set aside, all of them or (``bounded``, when the session's or the
        node's bound on notes set aside has no room for them all) none: False then,
        and the hello must not name the digest of what is remembered."""
        self.sent = dict(sent)
        local = self.local
        aside = received.keys() - local.heads.keys() - local.wanted
        self._clear_aside()
        whole = True
        if aside:
            self.received = {f: n for f, n in received.items() if f not in aside}
            budget = self.notes_budget
            if bounded and (budget.aside + len(aside) > budget.aside_limit
                            or len(aside) > self._aside_bound):
                whole = False
            else:  # (remembered only if none was evicted: within the bounds then)
                self._unkept.update((feed, received[feed]) for feed in aside)
                if self._notes_counted >= 0:
                    budget.aside += len(aside)
        else:
            self.received = dict(received)
        # Answers to wants of feeds not kept stay in ``sent`` across sessions (delta
        # clocks): they count against the bound from the start.
        self._answered_unkept = sum(
            1 for feed, note in self.sent.items()
            if not note.seq and not note.flags and feed not in local.heads
            and feed not in local.wanted)
        self._count_notes()
        return whole

    @property
    def settled(self) -> bool:
        """Started settled, and no message needed the clocks yet (see :meth:`start`)."""
        return self._settled is not None

    def unsettle(self, sent: Mapping[FeedId, Note], received: Mapping[FeedId, Note]) -> None:
        """The remembered clocks of a session started settled, the local clock now loaded:
        from here on it runs as any other."""
        if self._settled is None:
            raise LocalProtocolError("unsettle() is for a session started settled")
        self._settled = None
        # (the hello named their digest already: none may be dropped; a settled session
        # is a sync client's only one, so this goes past no other session's notes)
        self._take_clocks(sent, received, bounded=False)
        if self.clock_exchanged:
            self._check_all_owed()

    def _load_clocks(self) -> None:
        assert self._settled is not None
        self._settled()
        if self._settled is not None:
            raise LocalProtocolError("the settled callback must call unsettle()")

    def _needs_clocks(self, message: Message) -> bool:
        """Whether a settled session must load its clocks before ``message``: all but
        those that leave them as they are (an empty delta, a ping, addresses, identity
        notes and requests, which the replicator answers from its identity book)."""
        kind = type(message)
        if kind is Clock:
            assert isinstance(message, Clock)
            return message.reset or bool(message.notes)
        return kind not in (Hello, Ping, Peers, IdentityRequest) and not (
            kind is IdentityNotes and not self.relay)

    def _take_messages(self) -> None:
        for message in self.channel.messages():
            self._handle(message)

    def _take_events(self) -> list[Event]:
        taken, self._events = self._events, []
        return taken

    def _usable(self) -> None:
        if self.state in TERMINAL:
            raise LocalProtocolError(
                f"the session is {self.state.value} ({self.error}); open a new one"
            )

    def data_to_send(self) -> bytes:
        """Bytes for the peer (also the goodbye of a failed session)."""
        if self._pending_notes and self.version is not None and not self.failed:
            # Each note as it stands now, not as it stood when it became due: entries
            # stored since (those the peer just sent, say) would make it out of date,
            # and the peer would take it as this side lacking them (spec/10 §5.5).
            our_note = self.our_note
            notes = tuple((feed, our_note(feed)) for feed in self._pending_notes)
            self._pending_notes.clear()
            self._send_notes(notes, reset=False)
        return self.channel.data_to_send()

    def _send(self, message: Message) -> None:
        self._usable()
        self.channel.send(message)
        self._mark()

    def _mark(self) -> None:
        """Tell the node this session has output (``LocalClock.dirty``)."""
        self.local.dirty.add(self)

    def next_request(self) -> Request | None:
        """The oldest request of the peer's not yet answered (the node answers it next)."""
        if self.failed or not self._requests:
            return None
        return self._requests.popleft()

    def fail(self, error: PeerError) -> None:
        """End the session with ``error``: queue the ``error`` message for the peer
        (spec/09 §6) where the connection allows it, and enter FAILED.

        Nothing is sent after it: queued notes and owed entries are dropped. A
        session the peer closed (CLOSED) is not answered; a second call does nothing.
        """
        if self.state in TERMINAL:
            return
        self.error = error
        self.release_notes()  # (what was received, set aside too, may still be remembered)
        self._pending_notes.clear()
        self._lazy_notes.clear()
        self._owed.clear()
        self.awaiting.clear()
        self._requests.clear()
        self.blobs.clear()
        if isinstance(error, ClosedByPeer):
            self.state = SessionState.CLOSED
            return
        self.state = SessionState.FAILED
        if self.channel.established:
            self.channel.send(ErrorMessage(error.code, error.detail))
            self._mark()

    # -- notes we send -------------------------------------------------------

    def our_note(self, feed: FeedId) -> Note:
        note = self.local.note(feed)
        if feed in self.eager:
            return note.with_flags(note.flags | EAGER)
        return note

    def set_eager(self, feed: FeedId, eager: bool) -> None:
        """Stream ``feed`` from this peer (True) or get only its notes (False)."""
        if eager == (feed in self.eager):
            return
        if eager:
            self.eager.add(feed)
        else:
            self.eager.discard(feed)
        if self.version is None:
            return  # the opening clock, still to go, says it (a new session: every feed)
        self._refresh(feed)

    def local_changed(self, feed: FeedId, *, delivered: int | None = None) -> None:
        """This node's note for ``feed`` changed (new head, or now wanted or not).

        ``delivered`` is the last seq of entries this peer just sent: the peer
        knows this side has them, so no note goes back for them.
        """
        if feed in self._unkept:  # it holds or wants the feed now: the note set aside counts
            self.restore_notes({feed})
        if delivered is not None and delivered == self.local.seq(feed) and feed in self.sent:
            self.sent[feed] = self.our_note(feed)
            self._sent_digest = None
            return
        self._refresh(feed)

    def _refresh(self, feed: FeedId) -> None:
        ours = self.our_note(feed)
        last = (
            self._pending_notes.get(feed) or self._lazy_notes.get(feed) or self.sent.get(feed)
        )
        if ours == last:
            return
        theirs = self.received.get(feed)
        if (ours.wants and (last is None or not last.wants) and theirs is None
                and self._unkept_evicted and (self.version or 0) >= COMPACT_VERSION
                and self.state in (SessionState.OPENING, SessionState.LIVE)):
            # A new want after the opening clock, and the peer's note of the feed may
            # have been evicted from those kept aside: its answer is awaited (§5.5;
            # a version 4 peer answers; the replicator stops waiting after
            # AWAIT_ANSWER_AFTER, should it not).
            self.awaiting.add(feed)
        if (
            last is None
            or last.flags != ours.flags
            # The first entry held of a feed is an offer (relays take offers).
            or (last.seq == 0 and ours.seq > 0)
        ):
            self._lazy_notes.pop(feed, None)
            self._pending_notes[feed] = ours
            self._mark()
        elif theirs is not None and theirs.wants and not theirs.eager:
            # A new seq for a lazy peer: it waits for flush_lazy() (the node's
            # tick), so a burst of entries costs one note, not one per entry.
            self._lazy_notes[feed] = ours
        if theirs is not None and theirs.eager and theirs.seq < ours.seq:
            self._owed.add(feed)
            self._mark()

    def flush_lazy(self) -> None:
        """Let the seq notes held for lazy peers go out (the node calls this each second)."""
        if self._lazy_notes and not self.failed:
            self._pending_notes.update(self._lazy_notes)
            self._mark()
        self._lazy_notes.clear()

    def _send_notes(self, notes: tuple[tuple[FeedId, Note], ...], *, reset: bool) -> None:
        for start in range(0, max(len(notes), 1), MAX_NOTES):
            chunk = notes[start:start + MAX_NOTES]
            final = start + MAX_NOTES >= len(notes)
            self._send(Clock(reset and start == 0, chunk, final))
            self.sent.update(chunk)
            self._sent_digest = None

    def _send_opening_clock(self, peer_digest: bytes | None) -> None:
        if self._settled is not None:
            if peer_digest == self._sent_digest:
                self._send_notes((), reset=False)  # nothing changed (start() was told so)
                return
            self._load_clocks()  # the peer remembers another clock
        self._pending_notes.clear()  # the opening clock says it all
        self._lazy_notes.clear()
        # (the feeds named are only needed when something changed: their sets cost
        # ~5 ms at 10,000 feeds, as much as finding that nothing did)
        if self.sent and peer_digest == (self._sent_digest or clock_digest(self.sent)):
            # Nothing changed since (the usual reconnect): found without Python per feed.
            changed = [] if unchanged_since(self.local, self.eager, self.sent) else (
                self._changed_since_sent(self.local.feeds() | set(self.sent)))
            notes = tuple((f, self.our_note(f)) for f in changed)
            self._send_notes(notes, reset=False)
        else:
            feeds = self.local.feeds() | set(self.sent)
            self.sent.clear()
            self._send_notes(tuple((f, self.our_note(f)) for f in feeds), reset=True)
        # Nothing is streamed on remembered notes: what the peer wants now is
        # known once its opening clock is complete (see _on_clock).

    def _changed_since_sent(self, feeds: Iterable[FeedId]) -> list[FeedId]:
        """The feeds whose note (:meth:`our_note`) differs from the one last sent: the
        same comparison, without making a note per feed (a delta at 10,000 feeds)."""
        heads, hashes, wanted = self.local.heads, self.local.head_hashes, self.local.wanted
        eager, sent = self.eager, self.sent
        changed = []
        for feed in feeds:
            last = sent.get(feed)
            seq = heads.get(feed, 0)
            if (last is None or last.seq != seq
                    or last.flags != (WANT if feed in wanted else 0) | (
                        EAGER if feed in eager else 0)
                    or last.head != (hashes.get(feed) if seq else None)):
                changed.append(feed)
        return changed

    # -- what the peer is owed -------------------------------------------------

    def _check_owed(self, feed: FeedId) -> None:
        theirs = self.received.get(feed)
        if theirs is not None and theirs.eager and theirs.seq < self.local.seq(feed):
            self._owed.add(feed)
            self._mark()
        else:
            self._owed.discard(feed)

    def _check_all_owed(self) -> None:
        """:meth:`_check_owed` for every feed the peer noted, in one pass."""
        heads, owed = self.local.heads, self._owed
        for feed, theirs in self.received.items():
            if theirs.flags & EAGER and theirs.seq < heads.get(feed, 0):
                owed.add(feed)
            else:
                owed.discard(feed)
        if owed:
            self._mark()

    def next_stream(self) -> tuple[FeedId, int] | None:
        """A feed the peer streams from us and lacks entries of, and the first seq it lacks."""
        if not self.clock_exchanged or self.failed:
            return None
        while self._owed:
            feed = next(iter(self._owed))
            theirs = self.received.get(feed)
            if theirs is not None and theirs.eager and theirs.seq < self.local.seq(feed):
                return feed, theirs.seq + 1
            self._owed.discard(feed)
        return None

    def forget_owed(self, feed: FeedId) -> None:
        """The store has nothing to send for ``feed`` after all (a payload-less gap, a fork)."""
        self._owed.discard(feed)

    def send_entries(self, feed: FeedId, items: list[tuple[bytes, bytes | None]],
                     last_seq: int, last_hash: bytes,
                     hashes: Sequence[bytes] | None = None) -> None:
        """Send consecutive entries of ``feed`` ending at ``last_seq`` (whose hash is given).

        ``hashes``: the entries' hashes, where the caller has checked them and each
        payload against its entry (see :func:`compact_run`)."""
        if not items:
            raise LocalProtocolError("send_entries needs at least one entry")
        # At wire version 4 a run goes compact (spec/09 §8); in full where it cannot.
        compact = (compact_run(feed, items, hashes)
                   if (self.version or 0) >= COMPACT_VERSION else None)
        self._send(compact if compact is not None else Entries(feed, tuple(items)))
        self.entries_sent += len(items)
        self.payload_bytes_sent += sum(len(p) for _, p in items if p is not None)
        theirs = self.received.get(feed)
        if theirs is not None and last_seq > theirs.seq:
            # The peer will hold these once it has verified them; if it cannot,
            # it closes the connection and the next session starts afresh.
            self.received[feed] = Note(last_seq, theirs.flags, last_hash[:HEAD_PREFIX])
        # Round robin: the next call starts with another owed feed.
        self._owed.discard(feed)
        self._check_owed(feed)

    # -- other requests --------------------------------------------------------

    def can_request(self) -> bool:
        """Whether another request (partial or seq) may go out now."""
        return (len(self._outstanding) + len(self._identity_requests) < MAX_OUTSTANDING_PARTIALS
                and not self.failed)

    def _request_id(self, asked: tuple[FeedId, int | tuple[int, ...]] | bytes) -> int:
        self._usable()
        if not self.can_request():
            raise LocalProtocolError("too many requests outstanding")
        request_id = self._next_request
        while request_id in self._outstanding or request_id in self._identity_requests:
            request_id = (request_id + 1) % 2**32
        self._next_request = (request_id + 1) % 2**32
        if isinstance(asked, bytes):
            self._identity_requests[request_id] = asked
        else:
            self._outstanding[request_id] = asked
        return request_id

    # -- identity logs (wire version 3, spec/12 §6.3) -------------------------------

    @property
    def speaks_identities(self) -> bool:
        """Hellos exchanged on a version with identity messages."""
        return self.version is not None and self.version >= IDENTITY_VERSION and not self.failed

    def send_identity_notes(self, notes: list[IdentityNote]) -> None:
        """Notes in as many messages as needed (one, empty, for none: the opening notes
        say "nothing" too, so the peer knows when it has them all)."""
        for start in range(0, max(len(notes), 1), MAX_IDENTITY_NOTES):
            self._send(IdentityNotes(tuple(notes[start:start + MAX_IDENTITY_NOTES])))

    def identity_requests_open(self) -> bool:
        return bool(self._identity_requests)

    def identity_requested(self, identity: bytes) -> bool:
        """Whether a request for ``identity`` is open on this session."""
        return identity in self._identity_requests.values()

    def request_identity(self, identity: bytes, from_seq: int) -> int:
        """Ask for the events of ``identity`` from ``from_seq``; returns the request id."""
        request_id = self._request_id(identity)
        self._send(IdentityRequest(request_id, identity, from_seq))
        return request_id

    def send_identity_events(self, request_id: int | None, identity: bytes,
                             events: list[bytes]) -> None:
        """Events of ``identity``, cut into messages within the bounds (spec/12 §6.2);
        an answer (``request_id``) always sends at least one message."""
        chunks: list[list[bytes]] = [[]]
        size = 0
        for event in events:
            if len(chunks[-1]) >= MAX_IDENTITY_EVENTS or size + len(event) > \
                    MAX_IDENTITY_EVENT_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(event)
            size += len(event)
        if request_id is None:
            chunks = [c for c in chunks if c]
        for index, chunk in enumerate(chunks):
            more = int(request_id is not None and index < len(chunks) - 1)
            self._send(IdentityEvents(request_id, identity, tuple(chunk), more))

    def request_partial(self, feed: FeedId, count: int) -> int:
        """Ask for the latest ``count`` entries of ``feed``; returns the request id."""
        if not 1 <= count <= MAX_PARTIAL:
            raise LocalProtocolError(f"count must be 1..{MAX_PARTIAL}")
        request_id = self._request_id((feed, count))
        self._send(PartialRequest(request_id, feed, count))
        return request_id

    def request_seqs(self, feed: FeedId, seqs: tuple[int, ...], *, payloads: bool) -> int:
        """Ask for the peer's entries of ``feed`` at ``seqs`` (ascending); returns the id."""
        request_id = self._request_id((feed, seqs))
        self._send(SeqRequest(request_id, feed, seqs, payloads))
        return request_id

    def send_partial(self, request_id: int, items: list[tuple[bytes, bytes | None]]) -> None:
        self._send(PartialResponse(request_id, tuple(items)))

    def send_seqs(self, request_id: int, items: list[tuple[bytes, bytes | None]]) -> None:
        self._send(SeqResponse(request_id, tuple(items)))

    def send_fork_proof(self, proof: bytes) -> None:
        self._send(ForkProofMessage(proof))

    def send_peers(self, addresses: list[tuple[str, int]]) -> None:
        self._send(Peers(tuple(addresses)))

    def ping(self) -> None:
        self._send(Ping())

    def peer_seq(self, feed: FeedId) -> int:
        theirs = self.received.get(feed)
        return theirs.seq if theirs is not None else 0

    # -- messages in -------------------------------------------------------------

    def _handle(self, message: Message) -> None:
        kind = type(message)
        if kind not in ACCEPTS[self.state]:
            what = "a second hello" if kind is Hello else f"a {kind.__name__} message"
            raise UnexpectedMessage(f"{what} in state {self.state.value}")
        moved = TRANSITIONS.get((self.state, kind))
        if isinstance(message, ErrorMessage):
            self.state = SessionState.CLOSED
            self.error = ClosedByPeer(message.code, message.detail)
            raise self.error
        if self._settled is not None and self._needs_clocks(message):
            self._load_clocks()
        if isinstance(message, Hello):
            self._on_hello(message)
        elif isinstance(message, Clock):
            self._on_clock(message)
            if moved is not None and message.final:
                self.state = moved
                self._check_all_owed()
                self._events.append(ClockExchanged())
            return
        elif isinstance(message, Entries | CompactEntries):
            self._on_entries(message)
        elif isinstance(message, PartialRequest | SeqRequest):
            # Answered as the socket drains (next_request), not at once: a peer
            # that asks and never reads cannot make the node buffer answers.
            if len(self._requests) >= MAX_QUEUED_REQUESTS:
                raise PeerFlooding(f"over {MAX_QUEUED_REQUESTS} requests waiting for answers")
            self._requests.append(
                PartialRequested(message.request_id, message.feed, message.count)
                if isinstance(message, PartialRequest) else
                SeqRequested(message.request_id, message.feed, message.seqs, message.payloads)
            )
            self._mark()
        elif isinstance(message, PartialResponse | SeqResponse):
            self._on_response(message)
        elif isinstance(message, ForkProofMessage):
            self._events.append(ForkProofReceived(message.proof))
        elif isinstance(message, Peers):
            self._events.append(PeersReceived(message.addresses))
        elif isinstance(message, IdentityNotes | IdentityRequest | IdentityEvents):
            self._on_identity(message)
        elif isinstance(message, BLOB_MESSAGES):
            if (self.version or 0) < BLOB_WIRE_VERSION:  # an unknown type at version 2
                raise MalformedMessage(f"unknown message type {message.TYPE} at wire "
                                       f"version {self.version}")
            blob_events: list[BlobEvent] = []
            self.blobs.handle(message, blob_events)
            self._events.extend(blob_events)
        # Ping: its arrival is all it says.
        if moved is not None:
            self.state = moved

    def _on_identity(self, message: IdentityNotes | IdentityRequest | IdentityEvents) -> None:
        if self.version is None or self.version < IDENTITY_VERSION:
            raise MalformedMessage(f"message type {message.TYPE} is unknown in wire version "
                                   f"{self.version}")
        if isinstance(message, IdentityNotes):
            self._events.append(IdentityNotesReceived(message.notes))
        elif isinstance(message, IdentityRequest):
            self._events.append(IdentityRequested(message.request_id, message.identity,
                                                  message.from_seq))
        else:
            if message.request_id is not None:
                asked = self._identity_requests.get(message.request_id)
                if asked != message.identity:
                    raise UnexpectedMessage(
                        f"no identity request {message.request_id} for this identity is open")
                if not message.more:
                    del self._identity_requests[message.request_id]
            self._events.append(IdentityEventsReceived(
                message.request_id, message.identity, message.events, bool(message.more)))

    def _on_response(self, message: PartialResponse | SeqResponse) -> None:
        asked = self._outstanding.get(message.request_id)
        kind = int if isinstance(message, PartialResponse) else tuple
        if asked is None or not isinstance(asked[1], kind):
            what = "partial" if isinstance(message, PartialResponse) else "seq"
            raise UnexpectedMessage(f"no {what} request {message.request_id} is open")
        del self._outstanding[message.request_id]
        feed, what_asked = asked
        if isinstance(message, PartialResponse):
            assert isinstance(what_asked, int)
            self._events.append(
                PartialReceived(message.request_id, feed, what_asked, message.items))
        else:
            assert isinstance(what_asked, tuple)
            self._events.append(SeqReceived(message.request_id, feed, what_asked, message.items))

    def _on_hello(self, hello: Hello) -> None:
        common = set(hello.versions) & set(self.versions)
        if not common:
            raise UnsupportedVersion(
                f"peer speaks versions {list(hello.versions)}, this node {list(self.versions)}"
            )
        self.version = max(common)
        self.peer_relay = hello.relay
        self._events.append(PeerReady(self.version, hello.relay))
        self._send_opening_clock(hello.clock_digest)

    def _on_clock(self, clock: Clock) -> None:
        if clock.reset:  # every note the peer sends again: those set aside too
            self.received.clear()
            self._clear_aside()
        for feed, note in clock.notes:
            before = self.received.get(feed)
            self.awaiting.discard(feed)
            if not self._keeps(feed, note):
                # Neither held nor wanted here: nothing to serve or take, and a
                # stranger could name any number of such feeds (spec/14 §3). Kept
                # aside, bounded, in case this node starts to want it (restore_notes).
                self.received.pop(feed, None)
                if note.wants and self.state is SessionState.LIVE and (
                        feed not in self._unkept or not self._unkept[feed].wants):
                    self._answer_unkept(feed)
                self._keep_aside(feed, note)
                continue
            self._take_aside(feed)
            self.received[feed] = note
            if feed in self.eager and self.state is SessionState.LIVE and (
                    before is None or (not before.seq and note.seq)):
                # Its first note of a feed this side streams from it, or its first
                # that holds some of it: it may have forgotten our note while it held
                # nothing of the feed (spec/10 §2). Repeat it.
                self._pending_notes[feed] = self.our_note(feed)
                self._mark()
            self._check_owed(feed)
            if note.wants and (before is None or not before.wants):
                # It now wants the feed: tell it what this side holds. After the opening
                # clocks, always, even a note sent before: the peer may have dropped it
                # when it did not want the feed, and it waits for this answer (spec/10 §5.5).
                if self.state is SessionState.LIVE:
                    self._lazy_notes.pop(feed, None)
                    self._pending_notes[feed] = self.our_note(feed)
                    self._mark()
                else:
                    self._refresh(feed)
        if len(self.received) > MAX_PEER_NOTES:
            raise PeerFlooding(f"peer sent notes for over {MAX_PEER_NOTES} feeds")
        self._count_notes()
        if self.notes_budget.full:
            raise NotesFull(
                f"this node keeps notes of at most {self.notes_budget.limit} feeds across "
                "all its connections and is at that bound: connect again later")
        if clock.notes:
            self._events.append(NotesReceived(clock.notes))

    def _keeps(self, feed: FeedId, note: Note) -> bool:
        """Whether the peer's note for ``feed`` is kept: this node holds or wants the
        feed, or (a relay) it is an offer the node may take on (the replicator
        drops those it does not take: :meth:`forget_notes`)."""
        local = self.local
        return feed in local.heads or feed in local.wanted or (self.relay and note.seq > 0)

    def _keep_aside(self, feed: FeedId, note: Note) -> None:
        unkept = self._unkept
        if unkept.pop(feed, None) is None:  # (else re-inserted: now the newest)
            budget = self.notes_budget
            if len(unkept) >= self._aside_bound or (
                    budget.aside >= budget.aside_limit and self._notes_counted >= 0):
                self._unkept_evicted = True
                if not unkept:
                    return  # (other sessions' notes fill the node's bound)
                unkept.popitem(last=False)  # (O(1): a plain dict's first key is not)
            elif self._notes_counted >= 0:
                budget.aside += 1
        unkept[feed] = note

    @property
    def _aside_bound(self) -> int:
        return MAX_UNKEPT_NOTES if self._known else MAX_STRANGER_UNKEPT_NOTES

    def _take_aside(self, feed: FeedId) -> Note | None:
        note = self._unkept.pop(feed, None)
        if note is not None and self._notes_counted >= 0:
            self.notes_budget.aside -= 1
        return note

    def _clear_aside(self) -> None:
        """Forget every note set aside; the next ones are complete again."""
        if self._notes_counted >= 0:
            self.notes_budget.aside -= len(self._unkept)
        self._unkept.clear()
        self._unkept_evicted = False

    def remembered(self) -> dict[FeedId, Note]:
        """The peer's notes to remember for the next session with it: those kept, and
        those set aside when none was evicted, so that the digest the next hello names
        is that of every note the peer sent (the peer then opens with a delta, spec/10
        §4). A relay remembers no offer it did not take (seq above 0), only wants of
        feeds it lacks: an offer is made again in the next whole clock, when it may
        have room."""
        if not self._unkept or self._unkept_evicted:
            return self.received
        if self.relay:
            return {**self.received, **{f: n for f, n in self._unkept.items() if not n.seq}}
        return {**self.received, **self._unkept}

    def aside(self) -> list[FeedId]:
        """The feeds of the notes set aside (neither held nor wanted when they came)."""
        return list(self._unkept)

    def _answer_unkept(self, feed: FeedId) -> None:
        """The peer started to want a feed this side neither holds nor wants: say so
        (a (0, 0) note), so it need not wait (spec/10 §5.5). At most MAX_UNKEPT_ANSWERS
        such notes in ``sent`` (remembered across sessions): a stranger could ask for
        any number of feeds."""
        if self._answered_unkept < MAX_UNKEPT_ANSWERS and feed not in self._pending_notes:
            self._answered_unkept += 1
            self._pending_notes[feed] = self.our_note(feed)
            self._mark()

    def restore_notes(self, feeds: set[FeedId]) -> list[tuple[FeedId, Note]]:
        """This node now holds or wants ``feeds``: take back the peer's notes of them
        that came when it did not (kept aside, bounded); returns those restored."""
        restored = []
        for feed in feeds & self._unkept.keys():
            note = self._take_aside(feed)
            assert note is not None
            if not self._keeps(feed, note):
                self._keep_aside(feed, note)  # (still remembered)
                continue
            self.received[feed] = note
            self.awaiting.discard(feed)
            self._check_owed(feed)
            restored.append((feed, note))
        if restored:
            self._count_notes()
        return restored

    def forget_notes(self, feeds: list[FeedId]) -> None:
        """Drop the peer's notes of ``feeds`` (offers a relay did not take)."""
        for feed in feeds:
            if feed not in self.local.wanted and feed not in self.local.heads:
                note = self.received.pop(feed, None)
                if note is not None:
                    self._keep_aside(feed, note)
        self._count_notes()

    def _count_notes(self) -> None:
        """Bring the shared count of kept notes up to date with this session's."""
        if self._notes_counted >= 0:
            self.notes_budget.used += len(self.received) - self._notes_counted
            self._notes_counted = len(self.received)

    def release_notes(self) -> None:
        """The session is over: its notes no longer count (they may still be read, to
        be remembered). Once released, they are never counted again."""
        if self._notes_counted > 0:
            self.notes_budget.used -= self._notes_counted
        if self._notes_counted >= 0:
            self.notes_budget.aside -= len(self._unkept)
        self._notes_counted = -1

    def _on_entries(self, message: Entries | CompactEntries) -> None:
        if isinstance(message, CompactEntries) and (self.version or 0) < COMPACT_VERSION:
            raise MalformedMessage(f"message type {message.TYPE} is unknown in wire version "
                                   f"{self.version}")
        if message.feed not in self.local.wanted:
            self.count_unsolicited()
            return
        # A compact run becomes the entries it stands for: the node verifies them
        # as any others, so one that rebuilds into unsigned bytes is invalid-data.
        if isinstance(message, CompactEntries):
            rebuilt = rebuild_run(message)
            self._events.append(EntriesReceived(
                message.feed, tuple(zip(rebuilt.raws, rebuilt.payloads, strict=True)), rebuilt))
        else:
            self._events.append(EntriesReceived(message.feed, message.items))

    def count_unsolicited(self) -> None:
        """An entries message this node does not take (a feed it does not want, or of
        which the peer holds another history): a few arrive in flight after an
        unfollow or an eager switch; a flood of them is the peer's error."""
        self._unsolicited += 1
        if self._unsolicited > MAX_UNSOLICITED:
            raise PeerFlooding(
                f"over {MAX_UNSOLICITED} entries messages for feeds this node does not take"
            )
