"""Embed a tidings node in a trio program: :func:`open_node`.

Ten lines give an app a node that publishes, follows and sees new entries live::

    import trio, tidings

    async def main():
        async with tidings.open_node("~/.my-app", peers=["relay.example:7654"]) as node:
            await node.publish(tidings.Post("hello, network"), log="blog")
            await node.follow(tidings.FeedId.parse("tf1..._blog"))
            async for item in node.subscribe():
                print(item.feed, item.seq, item.content)

    trio.run(main)

The node runs in the background of the ``async with`` block: it dials its peers
(and listens, with ``listen=``), replicates what the home follows, and serves
the local HTTP API with ``api=``. Without ``listen`` it is a client that only
pulls, which is what most apps on a laptop or phone want.

Subscriptions read from the store, not from a queue: a slow consumer never
loses an entry and never makes the node buffer for it. It reads from further
behind, at most one page (:data:`PAGE_ENTRIES` entries) in memory at a time,
and resumes from any :attr:`Item.cursor` it saw, across restarts too.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import re
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Container,
    Iterable,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from tidings import content as content_types
from tidings.core.entry import Entry, decode_entry
from tidings.core.ids import AuthorId, FeedId
from tidings.core.times import entry_datetime
from tidings.errors import PeerError, RemoteError, UsageError
from tidings.home import DEFAULT_API_PORT, Home, parse_network_key
from tidings.logbook import DEFAULT_LOG, FOLLOWS_LOG
from tidings.node.daemon import (
    DEFAULT_PORT,
    Connection,
    Node,
    NodeOptions,
    format_address,
    parse_address,
)
from tidings.node.log import Logger
from tidings.node.state import NodeState
from tidings.replicator import DuplicateConnection
from tidings.storage.base import Store, StoredEntry

if TYPE_CHECKING:
    from tidings.content import Content

#: Entries one subscription holds in memory at most (one page read from the store).
PAGE_ENTRIES = 256
#: ...and bytes of entries and payloads per page.
PAGE_BYTES = 4 << 20
#: Bytes of entries and payloads the shared tail of recent entries holds at most.
TAIL_BYTES = 8 << 20
#: Seconds without a reader after which the shared tail starts afresh where the
#: next reader is, rather than reading everything that arrived meanwhile.
TAIL_IDLE = 5.0
#: Arrivals looked at per page (an arrival is one append: a run of one feed).
PAGE_ARRIVALS = 64
_CURSOR = re.compile(r"(0|[1-9][0-9]{0,17})-(0|[1-9][0-9]{0,17})")


# -- what readers get ---------------------------------------------------------


Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Item:
    """One entry and its payload (None when not held, or deleted)."""

    entry: Entry
    payload: bytes | None
    #: Where a subscription stands after this item, as ``(arrival, seq)``.
    position: Position | None = None

    @property
    def cursor(self) -> str | None:
        """The position as text: resume after this item with ``subscribe(after=cursor)``."""
        return None if self.position is None else f"{self.position[0]}-{self.position[1]}"

    @property
    def feed(self) -> FeedId:
        return self.entry.feed

    @property
    def seq(self) -> int:
        return self.entry.seq

    @property
    def published(self) -> datetime:
        """The author's timestamp (as the author's clock said; not checked, clamped to
        the years 1970 to 9999)."""
        return entry_datetime(self.entry.timestamp)

    @property
    def content(self) -> Content | None:
        """The payload as a known content type (spec/content.md), else None."""
        return content_types.decode(self.payload)


def _items(rows: Iterable[StoredEntry]) -> list[Item]:
    return [Item(decode_entry(row.raw), row.payload) for row in rows]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A connected peer."""

    #: The peer's public transport key, hex (names a node, not an author).
    node: str
    address: str
    direction: str
    version: int | None
    relay: bool


@dataclass(frozen=True, slots=True)
class FeedProgress:
    """How far this node holds a feed it wants, against what its peers say they hold."""

    feed: FeedId
    local_seq: int
    #: The highest seq a connected peer claims (0 if none claims any).
    peer_seq: int
    followed: bool
    #: The fork seq when this node holds a fork proof of the feed (it then holds
    #: and serves the feed up to the entry before it).
    forked_at: int | None = None
    #: A peer holds another history of the feed and no proof is made yet: this
    #: node is looking for where the two split (spec/10 §8).
    diverged: bool = False

    @property
    def behind(self) -> int:
        if self.forked_at is not None:
            return 0  # nothing more to take: the feed is disputed from the fork on
        return max(0, self.peer_seq - self.local_seq)


@dataclass(frozen=True, slots=True)
class Status:
    author: AuthorId
    listen: str | None
    peers: list[PeerInfo]
    known_peers: int
    feeds: list[FeedProgress]
    entries_received: int
    started: float = field(default=0.0)

    @property
    def caught_up(self) -> bool:
        """True when a peer is connected, none claims an entry this node wants and lacks,
        and no peer holds another history of a feed that is not proven forked yet."""
        return bool(self.peers) and all(
            progress.behind == 0 and not progress.diverged for progress in self.feeds)

    @property
    def forks(self) -> list[FeedProgress]:
        """The feeds this node holds a fork proof of."""
        return [progress for progress in self.feeds if progress.forked_at is not None]


# -- cursors ------------------------------------------------------------------


def parse_cursor(text: str) -> tuple[int, int]:
    """``"ARRIVAL-SEQ"`` as a pair; raises UsageError for anything else."""
    match = _CURSOR.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{text[:40]!r} is not a cursor (from an earlier item, like '12-3')")
    return int(match[1]), int(match[2])


def read_page(store: Store, cursor: Position, wanted: Container[FeedId] | None,
              *, max_entries: int = PAGE_ENTRIES) -> tuple[list[Item], Position]:
    """The entries that arrived after ``cursor`` in ``wanted`` feeds (all if None).

    Returns at most ``max_entries`` items, each with the position just after it,
    and the new position (which moves past arrivals of unwanted feeds too).
    Positions are canonical: after the last entry of arrival ``a`` is
    ``(a + 1, 0)``, so one place in the arrival order has one position.
    """
    arrival_id, done_seq = cursor
    items: list[Item] = []
    budget = PAGE_BYTES
    for arrival in store.arrivals(max(arrival_id - 1, 0), PAGE_ARRIVALS):
        start = arrival.first_seq
        if arrival.id == arrival_id:
            start = max(start, done_seq + 1)
        elif arrival.id < arrival_id:
            continue
        done = (arrival.id + 1, 0)
        if start > arrival.last_seq or (wanted is not None and arrival.feed not in wanted):
            cursor = done
            continue
        room = min(max_entries - len(items), arrival.last_seq - start + 1)
        rows = store.entries(arrival.feed, since=start, limit=room, max_bytes=budget)
        for row in rows:
            cursor = done if row.seq == arrival.last_seq else (arrival.id, row.seq)
            budget -= row.size
            items.append(Item(decode_entry(row.raw), row.payload, cursor))
        if len(items) >= max_entries or budget <= 0 or not rows:
            break
    return items, cursor


class _Followed:
    """The feeds a default subscription reads: those followed, and with ``own`` this author's."""

    def __init__(self, follows: Collection[FeedId], own_key: bytes | None) -> None:
        self._follows = follows
        self._own_key = own_key

    def __contains__(self, feed: object) -> bool:
        return feed in self._follows or (
            isinstance(feed, FeedId) and feed.author_key == self._own_key)


class _Tail:
    """The entries stored most recently, read once for every caught-up subscription.

    A hundred subscribers waiting at the end of the store would otherwise make a
    hundred reads of each new entry. Subscriptions behind the tail read the
    store themselves, page by page.
    """

    def __init__(self, node: Node, keep: int = 4 * PAGE_ENTRIES) -> None:
        self._node = node
        self._keep = keep
        self._items: list[Item] = []
        self._positions: list[Position] = []
        #: The tail holds every entry between these two positions.
        self._start: Position | None = None
        self._end: Position = (0, 0)
        self._read_at: trio.Event | None = None
        self._used_at = 0.0
        self._lock = trio.Lock()
        self._bytes = 0

    async def reach(self, position: Position) -> bool:
        """Bring the tail up to date for a reader at ``position``; True if it holds
        everything after it."""
        now = trio.current_time()
        idle = now - self._used_at > TAIL_IDLE and not self._lock.locked()
        if self._start is None or (position > self._end and idle):
            # Nobody has read the tail lately: start it afresh here rather than
            # read everything that arrived meanwhile.
            self._start = self._end = position
            self._items, self._positions, self._bytes = [], [], 0
            self._read_at = None
        self._used_at = now
        await self._refresh()
        return self._start <= position <= self._end

    async def _refresh(self) -> None:
        """Read what arrived since the last read, once per store change."""
        changed = self._node.changed()
        if self._read_at is changed:
            return
        async with self._lock:
            if self._read_at is changed:
                return
            store = self._node.logbook.store
            while True:
                items, end = await trio.to_thread.run_sync(read_page, store, self._end, None)
                self._items += items
                self._positions += [item.position for item in items if item.position]
                self._bytes += sum(_size(item) for item in items)
                moved, self._end = end != self._end, end
                self._trim()
                if not moved:
                    break  # (a page can stop early, at its arrivals or bytes: read on)
            self._read_at = changed

    def _trim(self) -> None:
        """Keep at most ``keep`` items and TAIL_BYTES; the rest is read from the store."""
        drop = 0
        while drop < len(self._items) and (
                len(self._items) - drop > self._keep or self._bytes > TAIL_BYTES):
            self._bytes -= _size(self._items[drop])
            drop += 1
        if drop:
            self._start = self._positions[drop - 1]
            del self._items[:drop], self._positions[:drop]

    def after(self, position: Position, wanted: Container[FeedId] | None
              ) -> tuple[list[Item], Position]:
        """Up to a page of held items after ``position`` in ``wanted``, and the new position."""
        found: list[Item] = []
        for index in range(bisect.bisect_right(self._positions, position), len(self._items)):
            item = self._items[index]
            if wanted is None or item.feed in wanted:
                found.append(item)
                if len(found) == PAGE_ENTRIES:
                    return found, self._positions[index]
        return found, self._end


def _size(item: Item) -> int:
    return len(item.entry.raw) + (len(item.payload) if item.payload is not None else 0)


class Subscription:
    """An async iterator of new entries; see :meth:`EmbeddedNode.subscribe`."""

    def __init__(self, node: EmbeddedNode, feeds: Collection[FeedId] | None,
                 after: Position, own: bool) -> None:
        self._node = node
        self._feeds = None if feeds is None else frozenset(feeds)
        self._own = own
        #: Where the next read starts (past the items still in the buffer).
        self._read_to = after
        self._buffer: list[Item] = []
        #: After the last item taken from the buffer.
        self._taken = after

    @property
    def cursor(self) -> str:
        """Where this subscription stands (after the last item taken): pass it as
        ``after`` to resume."""
        position = self._taken if self._buffer else self._read_to
        return f"{position[0]}-{position[1]}"

    def _wanted(self) -> Container[FeedId] | None:
        if self._feeds is not None:
            return self._feeds
        return _Followed(self._node._node.replicator.follows,
                         self._node.identity.author.key if self._own else None)

    async def next_page(self) -> list[Item]:
        """The next page of items: those not yet taken, or else new ones (waits for one)."""
        if self._buffer:
            page, self._buffer = self._buffer, []
            return page
        store = self._node.store
        tail = self._node._tail
        position = self._read_to
        while True:
            changed = self._node._node.changed()
            before = position
            if await tail.reach(position):
                # Caught up: share the one read of what just arrived. (A burst
                # larger than the tail leaves this subscription behind it.)
                items, position = tail.after(position, self._wanted())
            else:
                items, position = await trio.to_thread.run_sync(
                    read_page, store, position, self._wanted()
                )
            self._read_to = position
            if items:
                return items
            if position == before:  # (else it skipped a page of other feeds: read on)
                await changed.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        if not self._buffer:
            self._buffer = await self.next_page()
        item = self._buffer.pop(0)
        assert item.position is not None
        self._taken = item.position
        return item


# -- the node -----------------------------------------------------------------


class ListenError(UsageError):
    """A port for peers or for the local API cannot be bound (in use, not allowed)."""


class EmbeddedNode:
    """A running node inside an app; get one from :func:`open_node`.

    Every method is safe to call from any task of the trio run that opened it.
    """

    def __init__(self, home: Home, node: Node) -> None:
        self.home = home
        self._node = node
        identity = node.logbook.identity
        assert identity is not None
        self.identity = identity
        #: Where the local HTTP API listens, when ``api=`` was given.
        self.api_url: str | None = None
        self.started = time.time()
        self._tail = _Tail(node)

    # -- identity --

    @property
    def author(self) -> AuthorId:
        """This home's author id (``ta1...``)."""
        return self.identity.author

    def feed(self, log: str = DEFAULT_LOG) -> FeedId:
        """This author's feed for ``log`` (``tf1..._log``)."""
        return self.author.feed(log)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """Where the node listens for peers (None for a client that only pulls)."""
        return self._node.listen_address

    @property
    def store(self) -> Store:
        return self._node.logbook.store

    # -- writing --

    async def publish(self, payload: bytes | Content, log: str = DEFAULT_LOG) -> Entry:
        """Append ``payload`` (bytes, or a content type like :class:`~tidings.content.Post`)
        to this author's ``log``; returns the entry once it is durable. Peers get it at once::

            entry = await node.publish(tidings.Post("hello", tags=("intro",)), log="blog")
        """
        raw = payload if isinstance(payload, bytes) else content_types.encode(payload)
        return await self._node.publish(raw, log)

    async def follow(self, feed: FeedId | str, *, public: bool = False) -> bool:
        """Replicate ``feed`` from now on; True if it was not followed before.

        With ``public`` the follow is also published (in the ``follows`` log), so
        readers of this author who use hops replicate it too.
        """
        return await self._set_follow(_feed(feed), True, public)

    async def unfollow(self, feed: FeedId | str, *, public: bool = False) -> bool:
        """Stop replicating ``feed`` (what is stored stays); True if it was followed."""
        return await self._set_follow(_feed(feed), False, public)

    async def _set_follow(self, feed: FeedId, follow: bool, public: bool) -> bool:
        changed = await self._node.set_follow(feed, follow)
        if public:
            await self._node.publish(content_types.follow_payload(feed, follow=follow),
                                     FOLLOWS_LOG)
        return changed

    async def following(self) -> list[FeedId]:
        """The feeds this home follows."""
        return sorted(self._node.replicator.follows, key=str)

    async def add_peer(self, address: str) -> None:
        """Dial ``HOST:PORT`` now and keep it among the known peers."""
        parsed = parse_address(address)
        await trio.to_thread.run_sync(self._node.state.add_peers, [parsed], "api")
        await trio.to_thread.run_sync(self._node.state.dial_soon, [parsed])

    # -- reading --

    async def feeds(self) -> list[FeedProgress]:
        """Every feed stored here or wanted, with how far it is held."""
        return (await self.status()).feeds

    async def entries(self, feed: FeedId | str, *, since: int = 1,
                      limit: int = 100) -> list[Item]:
        """Stored entries of ``feed`` from seq ``since``, oldest first, at most ``limit``.

        Of a forked feed, only the entries before the fork (spec/06 §5).
        """
        if not 1 <= limit <= 10_000:
            raise UsageError("limit must be 1 to 10000")
        wanted = _feed(feed)

        def read() -> list[StoredEntry]:
            start = max(since, 1)
            room = min(limit, self._node.logbook.extent(wanted) - start + 1)
            if room <= 0:
                return []
            return self.store.entries(wanted, since=start, limit=room, max_bytes=64 << 20)

        return _items(await trio.to_thread.run_sync(read))

    async def latest(self, feed: FeedId | str, *, before: int | None = None,
                     limit: int = 50) -> list[Item]:
        """The newest stored entries of ``feed`` (below seq ``before``), newest first."""
        wanted = _feed(feed)
        if not 1 <= limit <= 10_000:
            raise UsageError("limit must be 1 to 10000")

        def read() -> list[StoredEntry]:
            extent = self._node.logbook.extent(wanted)
            top = min(extent, (2**63 if before is None else before) - 1)
            seqs = range(max(1, top - limit + 1), top + 1)
            return list(reversed(self.store.entries_at(wanted, seqs)))

        return _items(await trio.to_thread.run_sync(read))

    async def head_seq(self, feed: FeedId | str) -> int:
        """The highest seq of ``feed`` held here (0 if none): of a forked feed, the
        last before the fork."""
        return await trio.to_thread.run_sync(self._node.logbook.extent, _feed(feed))

    async def entry(self, feed: FeedId | str, seq: int) -> Item | None:
        """One stored entry, or None (also past the fork of a forked feed)."""
        wanted = _feed(feed)

        def read() -> list[StoredEntry]:
            if seq > self._node.logbook.extent(wanted):
                return []
            return self.store.entries_at(wanted, [seq])

        rows = await trio.to_thread.run_sync(read)
        return _items(rows)[0] if rows else None

    async def payload(self, feed: FeedId | str, seq: int) -> bytes | None:
        """The payload of one entry, or None when it is not held."""
        item = await self.entry(feed, seq)
        return None if item is None else item.payload

    def subscribe(self, feeds: Iterable[FeedId | str] | None = None, *,
                  after: str | None = None, own: bool = False) -> Subscription:
        """New entries as they arrive, oldest first: ``async for item in node.subscribe():``.

        ``feeds`` limits it to those feeds; by default it follows the feeds this
        home follows (as that changes), plus this author's own with ``own``.
        ``after`` is a cursor from an earlier :class:`Item` (or ``"0-0"`` for
        everything stored); by default only entries that arrive from now on.

        Slow consumers: entries are read from the store page by page, never
        queued, so nothing is dropped and memory stays at one page however far
        behind the consumer is.
        """
        chosen = None if feeds is None else [_feed(f) for f in feeds]
        # The start is fixed now, not at the first read: an entry stored between
        # this call and the first `async for` step is not missed. (From the
        # node's memory: no store access on the event loop.)
        start = parse_cursor(after) if after is not None else (self._node.last_arrival + 1, 0)
        return Subscription(self, chosen, start, own)

    async def fetch_latest(self, feed: FeedId | str, count: int = 20, *,
                           peer: str | None = None, timeout: float = 30.0) -> list[Item]:
        """The latest ``count`` entries of a feed from a peer, verified, oldest first.

        Partial replication: the rest of the feed is not fetched, and nothing is
        stored. Asks ``peer`` (``HOST:PORT``, dialed if needed), or else each
        connected peer in turn until one holds the feed.
        """
        wanted = _feed(feed)
        if not 1 <= count <= 1000:
            raise UsageError("count must be 1 to 1000")
        with trio.fail_after(timeout):
            if peer is not None:
                address = parse_address(peer)
                connections = [c for c in self._node.connections
                               if c.ready.is_set() and c.address == address]
                if not connections:
                    try:
                        connections = [await self._node.connect(address)]
                    except PeerError as exc:
                        if not _duplicate(exc):
                            raise
                        # Connected (or connecting) to that node already, by another
                        # connection (it dialed us, or our dialer got there first).
                        while not (connections := [
                                c for c in self._ready()
                                if c.session.channel.remote_static == exc.node_key]):
                            await trio.sleep(0.02)
            else:
                connections = self._ready()
            if not connections:
                raise UsageError("no peer is connected: pass peer='HOST:PORT'")
            for connection in connections:
                with contextlib.suppress(PeerError):
                    result = await self._node.fetch_latest(connection, wanted, count)
                    if result.entries:
                        return [Item(decode_entry(raw), payload) for raw, payload in
                                result.entries]
        return []

    def _ready(self) -> list[Connection]:
        return [c for c in self._node.connections if c.ready.is_set()]

    # -- the network --

    async def peers(self) -> list[PeerInfo]:
        """The peers connected now."""
        return [_peer_info(c) for c in self._node.connections if c.ready.is_set()]

    async def status(self) -> Status:
        """Peers, feeds and how far behind each wanted feed is."""
        node = self._node
        ready = [c for c in node.connections if c.ready.is_set()]

        def collect() -> tuple[list[FeedProgress], int]:
            replicator = node.replicator
            local = replicator.local
            feeds = (set(local.wanted) | {f for f, seq in local.heads.items() if seq > 0}
                     | set(replicator.forked_at))
            progress = [
                FeedProgress(
                    feed, local.seq(feed),
                    max((c.session.peer_holds(feed) for c in ready), default=0),
                    feed in replicator.follows, replicator.forked_at.get(feed),
                    feed not in replicator.forked_at and any(
                        feed in c.session.diverged for c in ready),
                )
                for feed in sorted(feeds, key=str)
            ]
            return progress, len(node.state.peers())

        feeds, known = await node.locked(collect)
        listen = node.listen_address
        return Status(
            author=self.author, listen=None if listen is None else format_address(listen),
            peers=[_peer_info(c) for c in ready], known_peers=known, feeds=feeds,
            entries_received=node.replicator.entries_received, started=self.started,
        )


def _duplicate(error: PeerError) -> bool:
    """Whether either side refused the connection as a second one between the two nodes."""
    return isinstance(error, DuplicateConnection) or (
        isinstance(error, RemoteError) and error.remote_code == DuplicateConnection.code)


def _feed(feed: FeedId | str) -> FeedId:
    return feed if isinstance(feed, FeedId) else FeedId.from_input(feed)



def _peer_info(connection: Connection) -> PeerInfo:
    session = connection.session
    key = session.channel.remote_static
    return PeerInfo(
        node=key.hex() if key else "", address=format_address(connection.address),
        direction="out" if connection.initiator else "in", version=session.version,
        relay=session.peer_relay,
    )


@contextlib.asynccontextmanager
async def open_node(
    home: str | Path | None = None,
    *,
    listen: str | None = None,
    peers: Sequence[str] = (),
    network: str = "public",
    relay: bool = False,
    hops: int = 1,
    lan: bool = False,
    api: str | None = None,
    cors_origins: Sequence[str] = (),
    log: Logger | None = None,
) -> AsyncIterator[EmbeddedNode]:
    """Run a node on ``home`` for the duration of the block.

    ``home`` is a directory (made, with a new identity, if needed); by default
    ``$TIDINGS_HOME`` or the platform's data directory. ``listen`` (``HOST:PORT``,
    port 0 for any) makes it accept peers; ``peers`` are dialed, with backoff,
    for as long as it runs. ``network`` is ``"public"`` or a private network's
    key. ``api`` (``HOST:PORT``) also serves the local HTTP API there, with the
    token in ``HOME/api.token``. ``log`` receives the node's events (none by
    default).

    Raises :class:`~tidings.errors.UsageError` for bad arguments and OSError
    when ``listen`` or ``api`` cannot be bound.
    """
    if not 1 <= hops <= 3:
        raise UsageError("hops must be 1, 2 or 3")
    where = Home.resolve(None if home is None else str(Path(home).expanduser()))
    options = NodeOptions(
        listen=None if listen is None else parse_address(listen, DEFAULT_PORT),
        peers=[parse_address(p) for p in peers], network_key=parse_network_key(network),
        relay=relay, hops=hops, lan_discovery=lan,
    )
    api_address = None if api is None else parse_address(api, DEFAULT_API_PORT)
    async with run_node(where, options, api=api_address, cors_origins=tuple(cors_origins),
                        log=log) as node:
        yield node


@contextlib.asynccontextmanager
async def run_node(
    home: Home, options: NodeOptions, *, api: tuple[str, int] | None = None,
    cors_origins: tuple[str, ...] = (), log: Logger | None = None,
) -> AsyncIterator[EmbeddedNode]:
    """:func:`open_node` with parsed options (what ``tidings up`` runs)."""

    def prepare() -> tuple[Node, str]:
        home.init()
        book = home.open_logbook(need_identity=True)
        try:
            state = NodeState(home.node_state_path)
        except BaseException:
            book.store.close()
            raise
        return Node(book, state, home.transport_key(), options, log or Logger(level="quiet")), \
            home.api_token()

    node, token = await trio.to_thread.run_sync(prepare)
    embedded = EmbeddedNode(home, node)
    # An error from the app's block (or from starting) is raised as itself, not
    # wrapped in the nursery's ExceptionGroup: apps need no `except*`.
    failure: Exception | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await _start(nursery, options.listen, "peers", node.run)
                if api is not None:
                    from tidings.http.api import serve_api

                    bound = await _start(nursery, api, "the local API", serve_api, embedded,
                                         api, token, cors_origins)
                    embedded.api_url = f"http://{format_address(bound)}"
                    _write_api_file(home, embedded.api_url)
                    node.log.info("api", url=embedded.api_url,
                                  token_file=str(home.path / "api.token"))
                yield embedded
            except Exception as exc:
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
    finally:
        if embedded.api_url is not None:
            _remove_api_file(home, embedded.api_url)
        node.logbook.store.close()
        node.state.close()


async def _start(nursery: trio.Nursery, address: tuple[str, int] | None, what: str,
                 call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    try:
        return await nursery.start(call, *args)
    except (OSError, ExceptionGroup) as exc:
        # (Inside the task's own nursery the OSError comes wrapped in a group.)
        failure: BaseException | None = exc
        if isinstance(exc, ExceptionGroup):
            failure = exc.subgroup(OSError)
            if failure is None:
                raise
            while isinstance(failure, BaseExceptionGroup):
                failure = failure.exceptions[0]
        where = "?" if address is None else format_address(address)
        reason = getattr(failure, "strerror", None) or failure
        raise ListenError(f"cannot listen on {where} for {what}: {reason}") from None


def _write_api_file(home: Home, url: str) -> None:
    """Tell local tools (``tidings status``) where this node's API is."""
    temporary = home.api_file.with_suffix(".tmp")
    temporary.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")
    temporary.replace(home.api_file)


def _remove_api_file(home: Home, url: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(home.api_file.read_text()).get("url") == url:
            home.api_file.unlink()


__all__ = [
    "EmbeddedNode",
    "FeedProgress",
    "Item",
    "ListenError",
    "PeerInfo",
    "Status",
    "Subscription",
    "open_node",
    "parse_cursor",
    "read_page",
    "run_node",
]
