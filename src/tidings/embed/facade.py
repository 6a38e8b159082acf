"""The node an app holds: :class:`EmbeddedNode`, from :func:`tidings.open_node`.

Every method is safe to call from any task of the trio run that opened it; the
store is read in worker threads, never on the event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Container, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tidings.core import content as content_types
from tidings.core.blob import CHUNK_SIZE, BlobId
from tidings.core.content import Attachment
from tidings.core.entry import Entry, decode_entry
from tidings.core.ids import AuthorId, FeedId, is_identity_text
from tidings.core.kel import format_identity
from tidings.core.media import duration_of, media_type_of
from tidings.embed.subscriptions import Chosen, Followed, Subscription, Tail, attributed
from tidings.embed.types import (
    AuthorItem,
    FeedProgress,
    IdentityProgress,
    Item,
    PeerInfo,
    Status,
    items_of,
    parse_cursor,
)
from tidings.errors import (
    ClosedByPeer,
    DuplicateConnection,
    PeerError,
    PeerTimeout,
    UsageError,
)
from tidings.node.daemon import Connection, Node
from tidings.node.home import Home
from tidings.node.identities import Target, parse_target
from tidings.node.log import Logger
from tidings.node.options import format_address, parse_address
from tidings.node.publishing import Answer
from tidings.storage.base import Store
from tidings.storage.blobs import BlobNotFound, BlobStore, ChunksMissing
from tidings.storage.logbook import DEFAULT_LOG, FOLLOWS_LOG

if TYPE_CHECKING:
    from tidings.core.content import Content


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
        self._tail = Tail(node)

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
    def log(self) -> Logger:
        """Where the node logs its events (the app's ``log=``, else nowhere)."""
        return self._node.log

    @property
    def store(self) -> Store:
        return self._node.logbook.store

    # -- writing --

    async def publish(self, payload: bytes | Content, log: str = DEFAULT_LOG, *,
                      attachments: Sequence[str | Path | Attachment] = (),
                      answer: Answer | None = None) -> Entry:
        """Append ``payload`` (bytes, or a content type like :class:`~tidings.content.Post`)
        to this author's ``log``; returns the entry once it is durable. Peers get it at once::

            entry = await node.publish(tidings.Post("hello", tags=("intro",)), log="blog")

        ``attachments`` (files of any size up to 4 GiB, or attachments made with
        :meth:`add_blob`) go with a post: each file is stored as a blob (spec/13),
        pinned, and the post names it; peers fetch it chunk by chunk::

            await node.publish(tidings.Post("Episode 1"), "podcast", attachments=["ep1.mp3"])

        ``answer`` is for a server in front of the node (the HTTP API): called with the
        entry before it is durable, it returns what sends the server's answer, which
        is called once the entry is durable, maybe from the store's writer thread, so
        it must not block (node/publishing.py).
        """
        if attachments:
            if not isinstance(payload, content_types.Post):
                raise UsageError("attachments go with a Post")
            made = [a if isinstance(a, Attachment) else await self.add_blob(a)
                    for a in attachments]
            payload = dataclasses.replace(
                payload, attachments=(*payload.attachments, *made))
        raw = payload if isinstance(payload, bytes) else content_types.encode(payload)
        return await self._node.publish(raw, log, answer)

    # -- blobs (spec/13) --

    @property
    def blob_store(self) -> BlobStore | None:
        """The node's chunk store (``HOME/blobs``); None if another process holds it."""
        return self._node.blobs

    def _blobs(self) -> BlobStore:
        if self._node.blobs is None:
            raise UsageError("this node keeps no blobs: another process holds HOME/blobs")
        return self._node.blobs

    async def add_blob(self, path: str | Path, *, media_type: str | None = None
                       ) -> Attachment:
        """Store a file as a pinned blob (in bounded memory); its attachment, with the
        media type detected (or given) and the size."""
        store = self._blobs()

        def add() -> Attachment:
            with open(path, "rb") as handle:
                head = handle.read(64 * 1024)
            blob = store.import_file(path, pin=True)
            kind = media_type or media_type_of(Path(path).name, head)
            return Attachment.of_blob(blob, kind, title=Path(path).name,
                                      duration=duration_of(kind, head, blob.size))

        return await trio.to_thread.run_sync(add)

    async def fetch_blob(self, blob: BlobId | str, *, pin: bool = True) -> None:
        """Fetch ``blob`` from the connected peers (and any that connect later)."""
        await self._node.want_blob(_blob(blob), pin=pin)

    async def remove_blob(self, blob: BlobId | str) -> bool:
        """Stop fetching ``blob`` and drop what is held of it (posts naming it stay valid)."""
        return await self._node.drop_blob(_blob(blob))

    async def wait_for_chunk(self, blob: BlobId | str, index: int, *,
                             patience: float = 60.0) -> None:
        """Return once chunk ``index`` of ``blob`` is held (fetching it if needed); raises
        PeerTimeout when no chunk of it arrived for ``patience`` seconds."""
        blob = _blob(blob)
        store = self._blobs()
        asked = False
        held, since = -1, trio.current_time()
        while True:
            changed = self._node.blobs_changed()
            if not await trio.to_thread.run_sync(store.missing, blob, index, index + 1):
                return
            if not asked:
                await self._node.want_blob(blob, pin=False)
                asked = True
            info = await trio.to_thread.run_sync(store.info, blob)
            if info is not None and info.held != held:
                held, since = info.held, trio.current_time()
            elif trio.current_time() - since > patience:
                raise PeerTimeout(f"no peer sent chunks of {blob} for {patience:.0f} s")
            # Chunks are written in batches (and each second): look again soon.
            with trio.move_on_after(0.5):
                await changed.wait()

    async def read_blob(self, blob: BlobId | str, start: int = 0,
                        end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``start .. end - 1`` of ``blob``, verified, a chunk at a time; a blob
        still downloading is read as its chunks arrive (a player starts at once)::

            async for piece in node.read_blob(attachment.blob):
                player.feed(piece)
        """
        blob = _blob(blob)
        store = self._blobs()
        end = blob.size if end is None else end
        if not 0 <= start <= end <= blob.size:
            raise UsageError(f"bytes {start} to {end} are not a range of a "
                             f"{blob.size}-byte blob")
        position = start
        while position < end:
            index = position // CHUNK_SIZE
            stop = min(end, (index + 1) * CHUNK_SIZE)
            try:
                piece = await trio.to_thread.run_sync(store.read, blob, position,
                                                      stop - position)
            except (ChunksMissing, BlobNotFound):  # not here yet: fetched, then read
                await self.wait_for_chunk(blob, index)
                continue
            yield piece
            position = stop

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

    async def follow_author(self, author: str, *, follow: bool = True) -> bool:
        """Follow an author (spec/12): ``ti1...``, ``ti1...:log1,log2`` or an invite
        ``tinv1...`` (whose addresses are dialed). Every device's feeds of those logs
        (all logs when none is named) replicate from now on; see :meth:`author_entries`."""
        target = _author(author)
        if follow and target.addresses:
            self._node.state.add_peers(target.addresses, "invite")
            self._node.state.dial_soon(target.addresses)
        return await self._node.set_identity_follow(target.identity, frozenset(target.logs),
                                                    follow)

    async def author_entries(self, author: str, log: str | None = None, *,
                             limit: int = 100) -> list[AuthorItem]:
        """The latest ``limit`` items of an author's merged stream (spec/12 §7.3): the
        entries of ``log`` (default: every log) of all its devices that count, ordered
        by (timestamp, device key, seq), each naming its feed, seq and device."""
        from tidings.node.identities import merged_entries

        target = _author(author)
        node = self._node

        def read() -> list[AuthorItem]:
            state = node.replicator.identities.state(target.identity)
            if state is None or state.status == "unknown":
                return []
            logs = ([log] if log else list(target.logs) or sorted(
                {f.log_id for f in node.replicator.local.heads
                 if f.author_key in state.devices}))
            items = merged_entries(node.logbook, state, logs)[-limit:] if limit > 0 else []
            name = format_identity(target.identity)
            return [AuthorItem(Item(m.entry, m.payload, identity=name,
                                    device=state.devices[m.entry.author].name),
                               state.devices[m.entry.author].name)
                    for m in items]

        return await node.locked(read)

    async def following(self) -> list[FeedId]:
        """The feeds this home follows."""
        return sorted(self._node.follows, key=str)

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
        rows = await trio.to_thread.run_sync(
            partial(self._node.logbook.rows, _feed(feed), since, limit, 64 << 20))
        return self.attributed(items_of(rows))

    async def latest(self, feed: FeedId | str, *, before: int | None = None,
                     limit: int = 50) -> list[Item]:
        """The newest stored entries of ``feed`` (below seq ``before``), newest first."""
        if not 1 <= limit <= 10_000:
            raise UsageError("limit must be 1 to 10000")
        rows = await trio.to_thread.run_sync(
            partial(self._node.logbook.latest, _feed(feed), before=before, limit=limit))
        return self.attributed(items_of(rows))

    def attributed(self, items: list[Item]) -> list[Item]:
        """``items``, each written by a device of a followed identity (this node's own
        included) naming the identity and device (``item.identity``, ``item.device``)."""
        return attributed(self._node.replicator.identities, items)

    async def head_seq(self, feed: FeedId | str) -> int:
        """The highest seq of ``feed`` held here (0 if none): of a forked feed, the
        last before the fork."""
        return await trio.to_thread.run_sync(self._node.logbook.extent, _feed(feed))

    async def entry(self, feed: FeedId | str, seq: int) -> Item | None:
        """One stored entry, or None (also past the fork of a forked feed)."""
        rows = await trio.to_thread.run_sync(
            partial(self._node.logbook.rows, _feed(feed), seq, 1))
        return self.attributed(items_of(rows))[0] if rows and rows[0].seq == seq else None

    async def payload(self, feed: FeedId | str, seq: int) -> bytes | None:
        """The payload of one entry, or None when it is not held."""
        item = await self.entry(feed, seq)
        return None if item is None else item.payload

    def subscribe(self, feeds: Iterable[FeedId | str] | None = None, *,
                  after: str | None = None, own: bool = False) -> Subscription:
        """New entries as they arrive, oldest first: ``async for item in node.subscribe():``.

        ``feeds`` limits it to those feeds (an author, ``ti1...[:log]``, stands for its
        device feeds, devices added later included); by default it follows the
        feeds this home follows and the device feeds of the authors it follows (as
        that changes), plus this author's own with ``own``.
        ``after`` is a cursor from an earlier :class:`Item` (or ``"0-0"`` for
        everything stored); by default only entries that arrive from now on.

        Entries come in the order they arrived here; an entry of a followed author's
        device names the author and device (``item.identity``, ``item.device``). That
        is not the author's merged order (spec/12 §7.3: a device that was offline
        delivers older entries later); ``author_entries`` reads that order.

        Slow consumers: entries are read from the store page by page, never
        queued, so nothing is dropped and memory stays at one page however far
        behind the consumer is.
        """
        chosen = None if feeds is None else self._chosen(feeds)
        # The start is fixed now, not at the first read: an entry stored between
        # this call and the first `async for` step is not missed. (From the
        # node's memory: no store access on the event loop.)
        start = parse_cursor(after) if after is not None else (self._node.last_arrival + 1, 0)
        own_key = self.identity.author.key if own else None
        # Followed authors' device feeds too (spec/12): their entries are followed.
        replicator = self._node.replicator
        return Subscription(self._node, self._tail, chosen, start,
                            lambda: Followed(self._node.follows | replicator.identity_feeds,
                                             own_key))

    def _chosen(self, feeds: Iterable[FeedId | str]) -> Chosen:
        """Feeds, and authors (``ti1...[:log]``: their device feeds, as devices come
        and go)."""
        named: list[FeedId] = []
        authors: list[tuple[bytes, frozenset[str]]] = []
        for feed in feeds:
            if isinstance(feed, FeedId) or not is_identity_text(feed):
                named.append(_feed(feed))
            else:
                target = parse_target(feed)
                authors.append((target.identity, frozenset(target.logs)))
        identities = self._node.replicator.identities

        def devices_of(identity: bytes) -> Container[bytes]:
            state = identities.state(identity)
            return state.devices if state is not None else ()

        return Chosen(named, authors, devices_of)

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
                        if exc.node_key is None:
                            raise
                        connections = [await self._node.connection_to(exc.node_key)]
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
            peers = [p for c in ready if (p := replicator.peer(c.session)) is not None]
            progress = [
                FeedProgress(
                    feed, local.seq(feed), max((p.holds(feed) for p in peers), default=0),
                    feed in replicator.follows, replicator.forked_at.get(feed),
                    feed not in replicator.forked_at and any(feed in p.diverged for p in peers),
                )
                for feed in sorted(feeds, key=str)
            ]
            return progress, len(node.state.peers())

        def identities() -> list[IdentityProgress]:
            book = node.replicator.identities
            out = []
            for identity in book.follows:
                state = book.state(identity)
                if state is not None:
                    out.append(IdentityProgress(
                        format_identity(identity), state.status, state.seq,
                        sum(1 for d in state.devices.values() if d.active), state.fork_seq))
            return out

        feeds, known = await node.locked(collect)
        followed = await node.locked(identities)
        listen = node.listen_address
        return Status(
            author=self.author, listen=None if listen is None else format_address(listen),
            peers=[_peer_info(c) for c in ready], known_peers=known, feeds=feeds,
            entries_received=node.replicator.entries_received, started=self.started,
            identities=followed,
        )


def _duplicate(error: PeerError) -> bool:
    """Whether either side refused the connection as a second one between the two nodes."""
    return isinstance(error, DuplicateConnection) or (
        isinstance(error, ClosedByPeer) and error.remote_code == DuplicateConnection.code)


def _author(text: str) -> Target:
    return parse_target(text)


def _blob(blob: BlobId | str) -> BlobId:
    return blob if isinstance(blob, BlobId) else BlobId.from_input(blob)


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
