"""Subscriptions: new entries as they arrive, read from the store page by page.

Subscriptions read from the store, not from a queue: a slow consumer never
loses an entry and never makes the node buffer for it. It reads from further
behind, at most one page (:data:`PAGE_ENTRIES` entries) in memory at a time,
and resumes from any :attr:`~tidings.embed.Item.cursor` it saw, across restarts
too. Caught-up subscriptions share one read of what just arrived (:class:`Tail`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Container
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from tidings.core.entry import decode_entry
from tidings.core.ids import FeedId
from tidings.core.kel import format_identity
from tidings.embed.types import Item, Position
from tidings.storage.base import Store

if TYPE_CHECKING:
    from tidings.node.daemon import Node
    from tidings.replication.identities import IdentityBook

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


class Followed:
    """The feeds a default subscription reads: those followed, and with ``own`` this author's."""

    def __init__(self, follows: Collection[FeedId], own_key: bytes | None) -> None:
        self._follows = follows
        self._own_key = own_key

    def __contains__(self, feed: object) -> bool:
        return feed in self._follows or (
            isinstance(feed, FeedId) and feed.author_key == self._own_key)


def attributed(identities: IdentityBook, items: list[Item]) -> list[Item]:
    """``items``, each that a device of a followed identity wrote (this node's own
    identity is followed too) naming the identity and the device (spec/12)."""
    names: dict[bytes, tuple[str | None, str | None]] = {}
    out = []
    for item in items:
        key = item.entry.author
        if key not in names:
            identity = identities.identity_of(key)
            state = identities.state(identity) if identity is not None else None
            device = state.devices.get(key) if state is not None else None
            names[key] = (None if identity is None else format_identity(identity),
                          None if device is None else device.name)
        identity_text, device_name = names[key]
        out.append(item if identity_text is None else
                   replace(item, identity=identity_text, device=device_name))
    return out


class Chosen:
    """The feeds a subscription that names feeds reads: those named, and the device
    feeds of the authors named (``ti1...[:log]``), devices added later included."""

    def __init__(self, feeds: Collection[FeedId],
                 authors: Collection[tuple[bytes, frozenset[str]]],
                 devices_of: Callable[[bytes], Container[bytes]]) -> None:
        self._feeds = frozenset(feeds)
        #: Each author named: its identity, and the logs named (empty: every log).
        self._authors = tuple(authors)
        self._devices_of = devices_of

    def __contains__(self, feed: object) -> bool:
        if feed in self._feeds:
            return True
        return isinstance(feed, FeedId) and any(
            (not logs or feed.log_id in logs) and feed.author_key in self._devices_of(identity)
            for identity, logs in self._authors)


class Tail:
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
        #: after() answers since the tail last changed, for readers of the same
        #: feeds at the same place (a hundred streams of one feed share one).
        self._answers: dict[tuple[Position, frozenset[FeedId]],
                            tuple[list[Item], Position]] = {}

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
            self._answers.clear()
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
                self._answers.clear()
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
            self._answers.clear()

    def after(self, position: Position, wanted: Container[FeedId] | None
              ) -> tuple[list[Item], Position]:
        """Up to a page of held items after ``position`` in ``wanted``, and the new
        position. (The list may be shared with other readers: do not change it.)"""
        if isinstance(wanted, frozenset):
            key = (position, wanted)
            answer = self._answers.get(key)
            if answer is None:
                answer = self._answers[key] = self._after(position, wanted)
            return answer
        return self._after(position, wanted)

    def _after(self, position: Position, wanted: Container[FeedId] | None
               ) -> tuple[list[Item], Position]:
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
    """An async iterator of new entries; see :meth:`EmbeddedNode.subscribe`.

    ``feeds`` None reads what ``default_feeds()`` gives at each read (the
    follows, as they change).
    """

    def __init__(self, node: Node, tail: Tail, feeds: Collection[FeedId] | Chosen | None,
                 after: Position, default_feeds: Callable[[], Container[FeedId]]) -> None:
        self._node = node
        self._tail = tail
        self._feeds: Container[FeedId] | None = (
            feeds if feeds is None or isinstance(feeds, Chosen) else frozenset(feeds))
        self._default_feeds = default_feeds
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
        return self._default_feeds() if self._feeds is None else self._feeds

    async def next_page(self) -> list[Item]:
        """The next page of items: those not yet taken, or else new ones (waits for one)."""
        if self._buffer:
            page, self._buffer = self._buffer, []
            return page
        store = self._node.logbook.store
        tail = self._tail
        position = self._read_to
        while True:
            changed = self._node.changed()
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
                return self._attributed(items)
            if position == before:  # (else it skipped a page of other feeds: read on)
                await changed.wait()

    def store_changed(self) -> trio.Event:
        """An event set at the next change to the node's store (take it before reading)."""
        return self._node.changed()

    async def ready(self) -> list[Item] | None:
        """What is new without waiting, for one task serving many subscriptions (the
        SSE fan-out): a page from the shared tail, empty if nothing is new, or None
        when this subscription is behind the tail (then :meth:`next_page` reads the
        store). A full page (PAGE_ENTRIES items) may have more after it."""
        if self._buffer:
            page, self._buffer = self._buffer, []
            return page
        position = self._read_to
        if not await self._tail.reach(position):
            return None
        items, self._read_to = self._tail.after(position, self._wanted())
        return self._attributed(items) if items else []

    def _attributed(self, items: list[Item]) -> list[Item]:
        """``items``, each naming the author (and device) it belongs to.

        Live items come in arrival order, not the merged order of spec/12 §7.3: an
        author's device that was offline delivers entries older than ones already
        sent, and a stream never goes back. The merged key ``(timestamp, author key,
        seq)`` of each item places it in the author's stream (``show ti1...``, the
        authors API)."""
        return attributed(self._node.replicator.identities, items)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        if not self._buffer:
            self._buffer = await self.next_page()
        item = self._buffer.pop(0)
        assert item.position is not None
        self._taken = item.position
        return item


