"""Replicators wired together in memory: no sockets, no clocks, no threads.

Each :class:`Link` joins two nodes' sessions; :func:`run` moves bytes over
every link until none moves (the h11 ``tests/helpers.py`` way). Every link
records the messages each side received, so tests can count what travelled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tidings import Logbook, MemoryStore
from tidings.core.ids import FeedId
from tidings.replication.replicator import PartialResult, Replicator, ReplicatorEvent
from tidings.replication.session import Session
from tidings.wire.messages import Clock, CompactEntries, Entries, Message, encode_message

from .helpers import author

#: Rounds before a run is declared stuck: a sync in these tests takes a few dozen.
MAX_ROUNDS = 2000


def transport_key(name: str) -> bytes:
    """A fixed X25519 private key per node name (any 32 bytes are a valid scalar)."""
    return hashlib.blake2b(b"tidings test node " + name.encode(), digest_size=32).digest()


def node(
    name: str, *, who: int | None = None, book: Logbook | None = None, **options: object
) -> Replicator:
    """A replicator over its own MemoryStore; ``who`` gives it helpers.author(who)."""
    if book is None:
        book = Logbook(MemoryStore(), author(who) if who is not None else None)
    return Replicator(book, static_private=transport_key(name), **options)  # type: ignore[arg-type]


def tap(session: Session) -> list[Message]:
    """Record every message ``session`` receives, in order (the session still gets them)."""
    received: list[Message] = []
    take = session.channel.messages

    def messages() -> list[Message]:
        taken = take()
        received.extend(taken)
        return taken

    session.channel.messages = messages  # type: ignore[method-assign]
    return received


@dataclass
class Link:
    """One connection: ``a`` dialled ``b``."""

    a: Replicator
    b: Replicator
    sa: Session
    sb: Session
    #: Messages each side received.
    to_a: list[Message] = field(default_factory=list)
    to_b: list[Message] = field(default_factory=list)
    #: The ``budget`` each side's pump gets (0: send notes but stream no entries).
    budget_a: int | None = None
    budget_b: int | None = None
    #: What each side's replicator told its driver.
    events_a: list[ReplicatorEvent] = field(default_factory=list)
    events_b: list[ReplicatorEvent] = field(default_factory=list)

    def step(self) -> bool:
        """Pump each side once and deliver; True if any byte moved."""
        out_a = _pump(self.a, self.sa, self.budget_a)
        out_b = _pump(self.b, self.sb, self.budget_b)
        if out_a:
            self.events_b += self.b.receive(self.sb, out_a)
        if out_b:
            self.events_a += self.a.receive(self.sa, out_b)
        return bool(out_a or out_b)

    def partials(self, replicator: Replicator) -> list[PartialResult]:
        """The answers to partial requests that ``replicator``'s side received."""
        events = self.events_a if replicator is self.a else self.events_b
        return [e for e in events if isinstance(e, PartialResult)]

    def close(self) -> None:
        """Both sides hang up and remember the clocks."""
        self.a.close_session(self.sa)
        self.b.close_session(self.sb)

    @property
    def bytes_exchanged(self) -> int:
        return self.sa.channel.bytes_sent + self.sb.channel.bytes_sent

    def received(self, replicator: Replicator) -> list[Message]:
        return self.to_a if replicator is self.a else self.to_b


def _pump(replicator: Replicator, session: Session, budget: int | None) -> bytes:
    return replicator.pump(session) if budget is None else replicator.pump(session, budget)


class Pipe:
    """One direction of a link, with the bytes in flight kept between deliveries."""

    def __init__(self, sender: Replicator, out: Session, receiver: Replicator, into: Session):
        self.sender, self.out, self.receiver, self.into = sender, out, receiver, into
        self.in_flight = bytearray()

    def deliver(self, size: int | None = None) -> bool:
        """Pump the sender, then hand the receiver ``size`` bytes (all: None) of what waits."""
        self.in_flight += self.sender.pump(self.out)
        size = len(self.in_flight) if size is None else size
        chunk = bytes(self.in_flight[:size])
        del self.in_flight[:size]
        if chunk:
            self.receiver.receive(self.into, chunk)
        return bool(chunk)


def pipes(link: Link) -> list[Pipe]:
    return [Pipe(link.a, link.sa, link.b, link.sb), Pipe(link.b, link.sb, link.a, link.sa)]


def drain(all_pipes: Iterable[Pipe]) -> None:
    """Deliver everything, over and over, until nothing moves."""
    all_pipes = list(all_pipes)
    for _ in range(MAX_ROUNDS):
        if not any([pipe.deliver() for pipe in all_pipes]):
            return
    raise AssertionError(f"no quiescence after {MAX_ROUNDS} rounds")


def connect(a: Replicator, b: Replicator) -> Link:
    sa = a.open_session(initiator=True)
    sb = b.open_session(initiator=False)
    return Link(a, b, sa, sb, to_a=tap(sa), to_b=tap(sb))


def run(*links: Link) -> int:
    """Step every link in turn until a whole pass moves nothing; returns the passes."""
    for rounds in range(MAX_ROUNDS):
        moved = [link.step() for link in links]
        if not any(moved):
            return rounds
    raise AssertionError(f"no quiescence after {MAX_ROUNDS} rounds")


def sync(a: Replicator, b: Replicator) -> Link:
    link = connect(a, b)
    run(link)
    return link


def held(replicator: Replicator, feed: FeedId) -> int:
    """The latest seq ``replicator``'s store holds of ``feed`` (0: none)."""
    head = replicator.logbook.store.head(feed)
    return head.seq if head else 0


def entries_items(messages: Iterable[Message], feed: FeedId | None = None) -> int:
    """Entries carried by the entries messages (full or compact) among ``messages``
    (of ``feed``, or all)."""
    return sum(
        len(m.items) for m in messages
        if isinstance(m, Entries | CompactEntries) and (feed is None or m.feed == feed)
    )


def clock_bytes(messages: Iterable[Message]) -> int:
    """Wire bytes of the clock messages among ``messages`` (body plus 4-byte length)."""
    return sum(len(encode_message(m)) + 4 for m in messages if isinstance(m, Clock))


def publish_feeds(
    book: Logbook, count: int, entries: int, payload: Callable[[int, int], bytes] | None = None
) -> list[FeedId]:
    """``count`` logs ``log0``... of ``book``'s author, ``entries`` entries each."""
    feeds = []
    for index in range(count):
        log_id = f"log{index}"
        book.publish_batch(
            [(payload or (lambda f, i: b"%d.%d" % (f, i)))(index, i) for i in range(entries)],
            log_id,
        )
        feeds.append(book.feed(log_id))
    return feeds


def busy_with_notes_aside(replicator: Replicator, limit: int) -> Link:
    """An open session of ``replicator`` whose notes set aside fill its node-wide bound,
    made ``limit`` (standing for MAX_NOTES_ASIDE filled by other peers)."""
    replicator.notes.aside_limit = limit
    other = node("other", who=5)
    publish_feeds(other.logbook, limit, 1)  # feeds the replicator does not follow
    other.refresh_local()
    busy = connect(replicator, other)
    run(busy)
    assert replicator.notes.aside == limit
    return busy
