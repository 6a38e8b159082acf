"""A virtual network that drives the real replicators, in virtual time.

Every node is a :class:`~tidings.replication.replicator.Replicator` over a
:class:`~tidings.storage.memory.MemoryStore`, the same object the trio node
drives; only sockets and clocks are simulated:

- **Time** is a float of seconds, advanced by a heap of events. A run is a
  pure function of its :class:`SimConfig` (seed included), given a fixed
  ``PYTHONHASHSEED`` (set iteration order decides tie-breaks).
- **Links** carry each direction's bytes in order, at a bandwidth, after a
  latency. **Loss** is modelled as TCP sees it: a lost segment is resent
  after a timeout, delaying it and everything behind it (head-of-line).
- **Churn**: a node crashes (its connections drop, unsaved clocks are lost,
  its store survives), then restarts and reconnects. Some nodes join late.
- CPU time is zero: the figures are about the protocol (rounds, bytes,
  redundancy), not this machine.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import tidings.core.verify as verify_module
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.errors import BadSignature, PeerError
from tidings.identity import Identity
from tidings.replication.replicator import MemoryClocks, Replicator
from tidings.replication.session import Session
from tidings.storage.logbook import Logbook
from tidings.storage.memory import MemoryStore

#: Bytes a node hands one link per pump: small enough that feeds interleave
#: and the bandwidth model sees a stream, large enough to batch entries.
PUMP_BYTES = 64 * 1024


@contextmanager
def _shared_signature_checks() -> Iterator[None]:
    """Check each distinct signature once for the whole simulated network.

    A signature check is a pure function of the entry bytes; in a real network
    every node pays for it, here 1,000 nodes share one process and one CPU. The
    simulator measures rounds and bytes, not CPU, so it memoizes the check
    (failures too) while it runs.
    """
    original = verify_module.check_signature  # type: ignore[attr-defined]
    outcomes: dict[bytes, BadSignature | None] = {}

    def check(entry: Entry) -> None:
        if entry.raw not in outcomes:
            try:
                original(entry)
                outcomes[entry.raw] = None
            except BadSignature as exc:
                outcomes[entry.raw] = exc
        failure = outcomes[entry.raw]
        if failure is not None:
            raise failure

    verify_module.check_signature = check  # type: ignore[attr-defined]
    try:
        yield
    finally:
        verify_module.check_signature = original  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 100
    authors: int = 20
    entries: int = 50
    payload_size: int = 100
    follows: int = 5
    #: "random": each node dials ``degree`` random others; "learning": a few
    #: popular authors followed by many, many small ones followed by few, and relays.
    topology: str = "learning"
    degree: int = 3
    relays: int = 4
    relay_links: int = 2
    latency: tuple[float, float] = (0.02, 0.08)
    bandwidth: float = 1.25e6  # bytes/s each way: 10 Mbit/s
    loss: float = 0.0
    #: Fraction of nodes that crash once during the run (and restart).
    churn: float = 0.0
    downtime: tuple[float, float] = (1.0, 5.0)
    #: Fraction of nodes that start offline and join later.
    late: float = 0.0
    publish_over: float = 2.0  # authors publish during [0, publish_over)
    seed: int = 1
    max_time: float = 600.0


@dataclass
class SimNode:
    index: int
    book: Logbook
    key: bytes
    follows: list[FeedId]
    relay: bool
    memory: MemoryClocks = field(default_factory=MemoryClocks)
    replicator: Replicator | None = None
    links: list[SimLink] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.replicator is not None


@dataclass(eq=False)
class SimLink:
    a: SimNode
    b: SimNode
    latency: float
    sessions: dict[int, Session] = field(default_factory=dict)  # node index -> its session
    free_at: dict[int, float] = field(default_factory=dict)  # sender index -> link busy until
    arrive_after: dict[int, float] = field(default_factory=dict)  # in-order delivery
    pump_pending: set[int] = field(default_factory=set)
    epoch: int = 0  # bumped on every disconnect: stale deliveries are dropped

    def other(self, node: SimNode) -> SimNode:
        return self.b if node is self.a else self.a

    @property
    def connected(self) -> bool:
        return bool(self.sessions)


@dataclass
class Stats:
    wire_bytes: int = 0
    entries_sent: int = 0
    payload_bytes_sent: int = 0
    connections: int = 0
    disconnects: int = 0
    peer_errors: list[str] = field(default_factory=list)
    crashes: int = 0
    delays: list[float] = field(default_factory=list)
    delivered: int = 0
    converged_at: float | None = None
    progress: list[tuple[float, int]] = field(default_factory=list)


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._counter = 0
        self.stats = Stats()
        self.nodes: list[SimNode] = []
        self.links: list[SimLink] = []
        self.session_links: dict[int, SimLink] = {}
        self.published: dict[tuple[FeedId, int], float] = {}
        self.followers: dict[FeedId, list[SimNode]] = {}
        self.needed = 0
        self.payload_needed = 0

    # -- the event loop -------------------------------------------------------------

    def at(self, when: float, call: Callable[..., None], *args: Any) -> None:
        self._counter += 1
        heapq.heappush(self._events, (when, self._counter, call, args))

    def run(self) -> Stats:
        with _shared_signature_checks():
            while self._events and self.stats.converged_at is None:
                when, _, call, args = heapq.heappop(self._events)
                if when > self.config.max_time:
                    break
                self.now = when
                call(*args)
        return self.stats

    # -- nodes ------------------------------------------------------------------------

    def key_for(self, index: int) -> bytes:
        seed = self.config.seed.to_bytes(8, "big") + index.to_bytes(4, "big")
        return hashlib.blake2b(b"tidings sim node" + seed, digest_size=32).digest()

    def add_node(self, *, author: bool, relay: bool = False) -> SimNode:
        index = len(self.nodes)
        identity = Identity.from_seed(self.key_for(index)) if author else None
        book = Logbook(MemoryStore(), identity, clock=lambda: int(self.now * 1e6))
        node = SimNode(index, book, self.key_for(index), [], relay)
        self.nodes.append(node)
        return node

    def start(self, node: SimNode) -> None:
        if node.up:
            # A late joiner that crashed and came back before its own start: it
            # runs already, with connections its replicator owns.
            return
        node.replicator = Replicator(
            node.book, static_private=node.key, follows=node.follows, relay=node.relay,
            relay_max_feeds=1_000_000, memory=node.memory,
        )
        for link in node.links:
            if link.other(node).up and not link.connected:
                self.at(self.now, self.connect, link)

    def crash(self, node: SimNode) -> None:
        """kill -9: connections drop; clocks not saved are lost; the store survives."""
        if not node.up:
            return
        self.stats.crashes += 1
        node.replicator = None
        for link in node.links:
            if link.connected:
                self.disconnect(link, crashed=node)

    # -- links ------------------------------------------------------------------------

    def link(self, a: SimNode, b: SimNode) -> None:
        if a is b or any(link.other(a) is b for link in a.links):
            return
        lo, hi = self.config.latency
        link = SimLink(a, b, self.rng.uniform(lo, hi))
        a.links.append(link)
        b.links.append(link)
        self.links.append(link)

    def connect(self, link: SimLink) -> None:
        a, b = link.a, link.b
        if link.connected or a.replicator is None or b.replicator is None:
            return
        self.stats.connections += 1
        link.sessions = {
            a.index: a.replicator.open_session(initiator=True),
            b.index: b.replicator.open_session(initiator=False),
        }
        for session in link.sessions.values():
            self.session_links[id(session)] = link
        link.free_at = {a.index: self.now, b.index: self.now}
        link.arrive_after = {a.index: self.now, b.index: self.now}
        self.pump(link, a)

    def disconnect(self, link: SimLink, *, crashed: SimNode | None = None) -> None:
        self.stats.disconnects += 1
        for node in (link.a, link.b):
            session = link.sessions.get(node.index)
            if session is not None:
                self.session_links.pop(id(session), None)
            if node is not crashed and node.replicator is not None and session is not None:
                node.replicator.close_session(session)
                self._collect(session)
            elif session is not None:
                self._collect(session)
        link.sessions = {}
        link.pump_pending.clear()
        link.epoch += 1
        # The survivor redials after a jittered pause, as the node's dialer does.
        self.at(self.now + self.rng.uniform(1.0, 3.0), self.connect, link)

    def _collect(self, session: Session) -> None:
        self.stats.wire_bytes += session.channel.bytes_sent
        self.stats.entries_sent += session.entries_sent
        self.stats.payload_bytes_sent += session.payload_bytes_sent
        session.channel.bytes_sent = session.entries_sent = session.payload_bytes_sent = 0

    def pump(self, link: SimLink, node: SimNode) -> None:
        """Let ``node`` send what it has for ``link``, when the link is free."""
        link.pump_pending.discard(node.index)
        session = link.sessions.get(node.index)
        if session is None or node.replicator is None:
            return
        if link.free_at[node.index] > self.now:
            self._pump_later(link, node, link.free_at[node.index])
            return
        data = node.replicator.pump(session, PUMP_BYTES)
        if not data:
            return
        start = max(self.now, link.free_at[node.index])
        link.free_at[node.index] = start + len(data) / self.config.bandwidth
        arrival = link.free_at[node.index] + link.latency
        while self.config.loss and self.rng.random() < self.config.loss:
            arrival += 3 * link.latency + 0.2  # a retransmission timeout
        arrival = max(arrival, link.arrive_after[node.index])
        link.arrive_after[node.index] = arrival
        self.at(arrival, self.deliver, link, node, data, link.epoch)
        self._pump_later(link, node, link.free_at[node.index])

    def _pump_later(self, link: SimLink, node: SimNode, when: float) -> None:
        if node.index not in link.pump_pending:
            link.pump_pending.add(node.index)
            self.at(when, self.pump, link, node)

    def deliver(self, link: SimLink, sender: SimNode, data: bytes, epoch: int) -> None:
        receiver = link.other(sender)
        session = link.sessions.get(receiver.index)
        if epoch != link.epoch or session is None or receiver.replicator is None:
            return
        before = {f: receiver.replicator.local.seq(f) for f in receiver.follows}
        try:
            receiver.replicator.receive(session, data)
        except PeerError as exc:
            self.stats.peer_errors.append(f"{receiver.index}<-{sender.index}: {exc}")
            self.disconnect(link)
            return
        self._record_deliveries(receiver, before)
        self._pump_dirty(receiver)

    def _pump_dirty(self, node: SimNode) -> None:
        """Pump the links whose sessions queued output (LocalClock.dirty)."""
        assert node.replicator is not None
        dirty = node.replicator.local.dirty
        for session in list(dirty):
            link = self.session_links.get(id(session))
            if link is None or link.sessions.get(node.index) is not session:
                dirty.discard(session)
                continue
            self.pump(link, node)

    def _record_deliveries(self, node: SimNode, before: dict[FeedId, int]) -> None:
        assert node.replicator is not None
        for feed, old in before.items():
            new = node.replicator.local.seq(feed)
            for seq in range(old + 1, new + 1):
                self.stats.delays.append(self.now - self.published[(feed, seq)])
            self.stats.delivered += max(0, new - old)
        if self.stats.delivered >= self.needed and self.stats.converged_at is None:
            self.stats.converged_at = self.now
        if not self.stats.progress or self.now - self.stats.progress[-1][0] >= 0.05:
            self.stats.progress.append((self.now, self.stats.delivered))

    # -- publishing -------------------------------------------------------------------

    def publish(self, node: SimNode, log_id: str, payload: bytes) -> None:
        if node.replicator is None:
            self.at(self.now + 0.5, self.publish, node, log_id, payload)  # the author is down
            return
        entry = node.book.publish(payload, log_id)
        self.published[(entry.feed, entry.seq)] = self.now
        node.replicator.refresh_local()
        self._pump_dirty(node)

    def tick(self) -> None:
        """Each virtual second every replicator sees the time, as a node's does."""
        for node in self.nodes:
            if node.replicator is not None:
                node.replicator.tick(self.now)
                self._pump_dirty(node)
        self.at(self.now + 1.0, self.tick)

    def finish(self) -> None:
        """Count what the sessions still open have sent."""
        for link in self.links:
            for session in link.sessions.values():
                self._collect(session)
        self.stats.progress.append((self.now, self.stats.delivered))
