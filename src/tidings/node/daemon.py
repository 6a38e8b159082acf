"""The trio node: sockets, timers and the peer table around the replicator.

Everything that decides what to send lives in :class:`~tidings.replication.replicator.Replicator`
(pure apart from the store). This module only moves bytes: one reader and one
writer task per connection, a listener, a dialer with backoff, a poller that
notices writes by other processes (``tidings publish``, ``tidings follow``),
and LAN discovery. Replicator calls run in a worker thread, one at a time, so
the store's fsyncs never block the event loop.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import field
from functools import partial
from typing import Any, TypeVar, cast

import trio

from tidings.core.blob import BlobId
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.core.records import record
from tidings.errors import (
    ClosedByPeer,
    DuplicateConnection,
    HandshakeFailed,
    PeerError,
    PeerEvicted,
    PeerTimeout,
    SelfConnection,
    StorageFull,
    StoreBusy,
    TidingsError,
    UsageError,
)
from tidings.node import discovery, slots
from tidings.node.budget import ReadBudget
from tidings.node.core import (
    CONNECT_TIMEOUT,
    HANDSHAKE_CLOSED,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_QUEUED_OUTPUT,
    PING_AFTER,
    READ_SIZE,
    StateWrites,
    UploadBucket,
    check_caught_up,
    make_replicator,
    remaining,
)
from tidings.node.log import Logger, short_key
from tidings.node.options import NodeOptions, format_address, peer_address
from tidings.node.publishing import Answer, GroupCommit, Publish, Written
from tidings.node.readbuffer import ReadBuffer
from tidings.node.state import (
    MISBEHAVIOUR_BACKOFF,
    NodeState,
    check_not_behind,
)
from tidings.node.threads import run_in_thread
from tidings.replication.blob_fetch import BlobStored
from tidings.replication.replicator import (
    SEND_BUDGET,
    AddressesLearned,
    EntriesStored,
    PartialResult,
    PeerConnected,
    ReplicatorEvent,
    Superseded,
)
from tidings.replication.session import Session, SessionState
from tidings.storage.blobs import BlobStore
from tidings.storage.logbook import Logbook
from tidings.transport.beacon import is_loopback
from tidings.wire.messages import MAX_ADDRESSES

T = TypeVar("T")

#: LAN peers remembered as already logged (beacons are unauthenticated on the
#: public network key: anyone on the LAN can forge them).
MAX_LAN_SEEN = 256
#: How often to look for writes by other processes (publish, follow): a
#: cheap PRAGMA, and the bound on how late a CLI publish goes out live.
POLL_INTERVAL = 0.1
#: A connection whose last large write drained at this many bytes a second or more
#: is fast: its writer queues FAST_SEND_BUDGET per call of the replicator, not
#: SEND_BUDGET (fewer thread hops per blob), and a log message ready meanwhile still
#: waits at most 20 ms behind it. Else a slow link's log messages would wait for
#: seconds of blob bytes.
FAST_LINK = 100_000_000
FAST_SEND_BUDGET = 2 * 1024 * 1024
#: Unsent bytes the kernel takes before a send stops (TCP_NOTSENT_LOWAT): trio's 16 KiB
#: keeps a log message from waiting behind a deep socket queue; on a fast connection
#: 256 KiB (2.6 ms at 100 MB/s) lets one send take about twice as much, so a 2 MiB
#: batch costs half the send calls and wake-ups.
SLOW_LOWAT = 16 * 1024
FAST_LOWAT = 256 * 1024
#: Arrivals by other processes read per poll; more than this at once (a large
#: import) and every head is read again instead.
REFRESH_ARRIVALS = 1000


@record(frozen=False, eq=False, slots=False)
class Connection:
    """One peer connection: its session and the trio objects around it."""

    session: Session
    stream: trio.SocketStream
    address: tuple[str, int]
    initiator: bool
    #: Set when the session has output (the writer waits on it).
    wake: trio.Event = field(default_factory=trio.Event)
    error: PeerError | None = None
    #: Hellos exchanged.
    ready: trio.Event = field(default_factory=trio.Event)
    #: The connection ended (after ``error`` is set, if it failed).
    closed: trio.Event = field(default_factory=trio.Event)
    #: Set (and replaced) each time the peer's bytes were taken in: what waits
    #: for replication to move (``wait_caught_up``) wakes on it.
    progress: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: One sender at a time on the stream: the writer, or the reader sending an error.
    send_lock: trio.Lock = field(default_factory=trio.Lock)
    drained: trio.Event = field(default_factory=trio.Event)
    last_sent: float = field(default_factory=time.monotonic)
    #: What it has been worth, for the choice of whom to evict (node/slots.py).
    standing: slots.Standing | None = None
    #: What its reads may cost the replicator (node/budget.py).
    budget: ReadBudget = field(default_factory=ReadBudget)
    #: Blob bytes this connection may still send now (the upload rate limit's bucket).
    #: The upload rate limit's bucket (set by the node when it opens the connection).
    upload: UploadBucket = field(default_factory=lambda: UploadBucket(None))
    #: Bytes the next call of the replicator's pump may queue (SEND_BUDGET, or more
    #: while the socket drains fast: see FAST_LINK).
    pump_budget: int = SEND_BUDGET
    #: Its socket's TCP_NOTSENT_LOWAT: SLOW_LOWAT, or FAST_LOWAT while it is fast.
    lowat: int = SLOW_LOWAT
    #: Calls of its reader and writer into the replicator, waiting for the lock or
    #: running (:meth:`Node._peer_core`).
    calls: int = 0


def _dial_host(host: str) -> str | bytes:
    """An ASCII host (an address, most names) as the bytes trio would make of it: a str
    first goes to the C resolver, which loads Python's IDNA codec for it (~5 ms of a
    sync's start). Other names stay text, for trio's own IDNA encoding."""
    return host.encode("ascii") if host.isascii() else host


class Node:
    """A tidings node: ``await node.run()`` serves until cancelled."""

    def __init__(self, logbook: Logbook, state: NodeState, transport_key: bytes,
                 options: NodeOptions | None = None, log: Logger | None = None, *,
                 blobs: BlobStore | None = None) -> None:
        self.logbook = logbook
        #: The chunk store (HOME/blobs); None: this node moves no blobs.
        self.blobs = blobs
        self.state = state
        self.options = options or NodeOptions()
        self.log = log or Logger()
        self.replicator, self._memory = make_replicator(
            logbook, state, transport_key, self.options, self.log, blobs)
        self._blobs_changed = trio.Event()
        #: Checked chunks are written by :meth:`_write_blobs`, outside the lock.
        self._blob_flush = trio.Event()
        if self.replicator.blobs is not None:
            self.replicator.blobs.write_behind = True
        self.connections: set[Connection] = set()
        self._by_session: dict[Session, Connection] = {}
        #: Partial requests waiting for their answer, by (session, request id).
        self._waiters: dict[tuple[Session, int], tuple[trio.Event, list[PartialResult]]] = {}
        #: Set (and replaced) whenever a connection opens, becomes ready or closes.
        self._connections_changed = trio.Event()
        self.listen_address: tuple[str, int] | None = None
        self._lock = trio.Lock()
        #: Calls into the replicator made for connections (waiting or running): only
        #: these make another connection's reads contended (spec/14 §6), not the
        #: node's own tasks (its poll, a sync's progress checks).
        self._peer_calls = 0
        self._dialing: set[tuple[str, int]] = set()
        self._lan_seen: set[tuple[str, int]] = set()
        self._versions = (self._store_version(), state.data_version())
        self._changed = trio.Event()
        #: When a write first found the disk full (None: it is not full).
        self._full_since: float | None = None
        self._state_writes = StateWrites(self.log)
        #: This author's publishes, committed in groups (Node.publish).
        self._group_commit = GroupCommit(self._lock, self._publish_batch, self._published)
        #: Another process wrote to the store since the last full read of the heads.
        self._external_writes = False
        #: The newest arrival in the store (what subscriptions start after), kept
        #: in memory so that starting one never touches the store on the event loop.
        self.last_arrival = logbook.store.last_arrival()

    @property
    def follows(self) -> frozenset[FeedId]:
        """The feeds this home follows (as the node replicates them now)."""
        return frozenset(self.replicator.follows)

    # -- telling readers (subscriptions) that the store changed ---------------------

    def changed(self) -> trio.Event:
        """An event set at the next change to the store (take it before reading)."""
        return self._changed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- blobs ------------------------------------------------------------------------

    def blobs_changed(self) -> trio.Event:
        """An event set when chunks of any blob are next stored (take it before reading)."""
        return self._blobs_changed

    async def want_blob(self, blob: BlobId, *, pin: bool = True) -> bool:
        """Fetch ``blob`` from the peers (pinned: kept); False if it is held whole."""
        fetcher = self.replicator.blobs
        if fetcher is None:
            raise UsageError("this node keeps no blobs (another process holds HOME/blobs)")
        return await self._core(fetcher.want, blob, pin=pin)

    async def drop_blob(self, blob: BlobId) -> bool:
        """Stop fetching ``blob`` and remove what is held of it."""
        fetcher, store = self.replicator.blobs, self.blobs
        if fetcher is None or store is None:
            raise UsageError("this node keeps no blobs (another process holds HOME/blobs)")

        def drop() -> bool:
            fetcher.drop(blob)
            return store.remove(blob)

        return await self._core(drop)

    # -- the replicator, one call at a time, off the event loop -----------------

    async def _core(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call`` in a worker thread, one at a time; then wake the writers of the
        sessions that have output now (and only those)."""
        async with self._lock:
            try:
                return await run_in_thread(partial(call, *args, **kwargs))
            finally:
                self._wake_dirty()
                fetcher = self.replicator.blobs
                if fetcher is not None and fetcher.flush_wanted:
                    self._blob_flush.set()

    async def _peer_core(self, connection: Connection, call: Callable[..., T],
                         *args: Any, **kwargs: Any) -> T:
        """:meth:`_core` for ``connection``'s reader or writer, counted while it waits
        or runs: what makes another connection's reads contended."""
        connection.calls += 1
        self._peer_calls += 1
        try:
            return await self._core(call, *args, **kwargs)
        finally:
            connection.calls -= 1
            self._peer_calls -= 1

    def _contended(self, connection: Connection) -> bool:
        """Whether another connection waits for the replicator, or holds it (spec/14 §6).
        The node's own tasks do not count: with one peer, its reads are never held
        back (a sync's progress checks would otherwise stall the sync they watch)."""
        return self._peer_calls > connection.calls

    async def _write_blobs(self) -> None:
        """Write the chunks the replicator checked, in a thread and outside the lock
        (the next chunks are checked meanwhile): only then are they held."""
        fetcher = self.replicator.blobs
        if fetcher is None:
            return
        while True:
            await self._blob_flush.wait()
            self._blob_flush = trio.Event()
            batches = await self._core(fetcher.take_unwritten)
            if not batches:
                continue
            results = await run_in_thread(partial(fetcher.write_batch, batches))
            if await self._core(fetcher.written, results):
                self._blobs_changed.set()
                self._blobs_changed = trio.Event()

    def _wake_dirty(self) -> None:
        for session in self.replicator.local.dirty:
            connection = self._by_session.get(session)
            if connection is not None:
                connection.wake.set()

    def _connections_moved(self) -> None:
        self._connections_changed.set()
        self._connections_changed = trio.Event()

    # -- running ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[tuple[str, int] | None]
                  = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status`` gets the listening address (or None)."""
        options = self.options
        self.state.add_peers(options.peers, "config")
        self.state.dial_soon(options.peers)
        async with trio.open_nursery() as nursery:
            self._background = nursery
            if options.listen is not None:
                host, port = options.listen
                listeners = await trio.open_tcp_listeners(port, host=host)
                bound = listeners[0].socket.getsockname()
                self.listen_address = (host, bound[1])
                nursery.start_soon(partial(
                    trio.serve_listeners, self._accept, listeners, handler_nursery=nursery
                ))
                if options.lan_discovery:
                    self._start_lan(nursery, host, bound[1])
            nursery.start_soon(self._poll_changes)
            nursery.start_soon(self._write_blobs)
            nursery.start_soon(self._dial_loop, nursery)
            task_status.started(self.listen_address)

    def _start_lan(self, nursery: trio.Nursery, host: str, port: int) -> None:
        send, receive = trio.open_memory_channel[tuple[str, int]](16)
        own: set[bytes] = set()
        interface, group_port = self.options.lan_interface, self.options.lan_port
        if not is_loopback(host) or is_loopback(interface):
            # A node listening on loopback only has nothing to offer a real LAN.
            nursery.start_soon(partial(discovery.announce, self.options.network_key, port,
                                       self.log, own, interface=interface,
                                       group_port=group_port))
        nursery.start_soon(partial(discovery.listen, self.options.network_key, send, self.log,
                                   own, interface=interface, group_port=group_port))

        async def remember() -> None:
            async for address in receive:
                if address not in self._lan_seen:
                    if len(self._lan_seen) >= MAX_LAN_SEEN:
                        self._lan_seen.clear()  # forged beacons cannot grow it
                    self._lan_seen.add(address)
                    self.log.info("lan-peer", addr=format_address(address))
                await self._state(self.state.add_peers, [address], "lan",
                                  learned_from=address[0])

        nursery.start_soon(remember)

    async def _poll_changes(self) -> None:
        """Notice other processes' writes: a CLI publish, import, follow or unfollow.

        Also the replicator's clock (stalled sources), once a second.
        """
        # (not at once: a sync that is over within a second never walks the feeds for it)
        next_tick = trio.current_time() + 1.0
        while True:
            await trio.sleep(POLL_INTERVAL)
            # Off the event loop: both take locks a long replicator call may hold.
            store_version = await _io(self._store_version)
            state_version = await _io(self.state.data_version)
            if state_version != self._versions[1]:
                await self._core(self.replicator.set_follows, await _io(self.state.follows))
                await self._core(self._identities_changed,
                                 await _io(self.state.identity_follows))
            if store_version != self._versions[0]:
                changed = await self._core(self._refresh_arrived)
                if changed:
                    self.log.debug("local-change", feeds=len(changed))
                self._notify()
            self._versions = (store_version, state_version)
            if trio.current_time() >= next_tick:
                next_tick = trio.current_time() + 1.0
                if self._external_writes:
                    # What arrivals do not name (a fork proof another process
                    # stored): one full read a second at most, not one a write.
                    self._external_writes = False
                    await self._core(self.replicator.refresh_local)
                await self._core(self.replicator.tick, trio.current_time())
                for connection in self.connections:  # a source may have stalled
                    connection.progress.set()
                    connection.progress = trio.Event()

    def _refresh_arrived(self) -> list[FeedId]:
        """Another process wrote to the store: re-read the heads of the feeds its
        appends name (the arrivals since the newest one seen), not of every feed."""
        self._external_writes = True
        arrivals = self.logbook.store.arrivals(self.last_arrival, REFRESH_ARRIVALS)
        if len(arrivals) == REFRESH_ARRIVALS:
            changed = self.replicator.refresh_local()
        else:
            changed = self.replicator.refresh_local([a.feed for a in arrivals])
        self.last_arrival = self.logbook.store.last_arrival()
        return changed

    def _identities_changed(self, follows: dict[bytes, frozenset[str]]) -> None:
        """Another process followed an identity or appended to a log (in the worker)."""
        if follows != self.replicator.identities.follows:
            self.replicator.set_identity_follows(follows)
        self.replicator.reload_identities()

    def _store_version(self) -> int:
        version = getattr(self.logbook.store, "data_version", None)
        return int(version()) if version is not None else 0

    def _timed_receive(self, session: Session,
                       data: bytes) -> tuple[list[ReplicatorEvent], float]:
        """:meth:`_receive`, and the seconds it took (charged to the connection)."""
        started = time.perf_counter()
        events = self._receive(session, data)
        return events, time.perf_counter() - started

    def _receive(self, session: Session, data: bytes) -> list[ReplicatorEvent]:
        """Take bytes from a peer (in the worker thread)."""
        try:
            events = self.replicator.receive(session, data)
        finally:
            # Stored before an error too: subscribers start after the newest arrival.
            self.last_arrival = self.logbook.store.last_arrival()
        return events

    async def locked(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` in a worker thread while the replicator is idle (to read its state)."""
        return await self._core(call, *args)

    async def publish(self, payload: bytes, log_id: str, answer: Answer | None = None) -> Entry:
        """Publish as this node's author (an embedding app); peers hear of it at once.

        Group commit (node/publishing.py): publishes that arrive together go to
        disk together, in one transaction and one fsync. Each returns only once
        its own entry is durable (and ``answer``, if given, is sent then).
        """
        return await self._group_commit.publish(payload, log_id, answer)

    async def stop_publishing(self) -> None:
        """Refuse publishes from now on (UsageError) and wait for the commit being
        written: call it before the store closes."""
        await self._group_commit.aclose()

    def _publish_batch(self, requests: Sequence[Publish]) -> Written:
        """Write ``requests`` in one transaction (in the worker thread).
        A publish refused before it writes (a bad payload, an ended log) fails
        alone; anything raised fails them all, and nothing of them is stored."""
        written: list[tuple[Publish, Entry | BaseException]] = []
        with self.logbook.store.transaction():
            for request in requests:
                try:
                    # A peer holds this feed further: publishing would fork it.
                    check_not_behind(self.state, self.logbook, request.log_id)
                    written.append(
                        (request, self.logbook.publish(request.payload, request.log_id)))
                except (TidingsError, TypeError) as exc:  # raised before any write
                    written.append((request, exc))
            self._group_commit.written(written)  # (answers are prepared during the fsync)
            feeds = list(dict.fromkeys(
                entry.feed for _, entry in written if isinstance(entry, Entry)))
            arrival = self.logbook.store.last_arrival() if feeds else None
        if arrival is not None:
            # Before any answer goes: a subscription "from now" that a publisher opens
            # once answered starts after its entry (embed/facade.py subscribe).
            self.last_arrival = arrival
        self._group_commit.durable(written)  # (and sent from here once it is durable)
        if feeds:
            self.replicator.refresh_local(feeds)
        return written

    def _published(self) -> None:
        self._wake_dirty()
        self._notify()

    async def set_follow(self, feed: FeedId, follow: bool) -> bool:
        """Follow or unfollow ``feed``; True if that changed anything."""
        change = self.state.follow if follow else self.state.unfollow
        changed = await _io(change, feed)
        follows = await _io(self.state.follows)
        self._versions = (self._versions[0], await _io(self.state.data_version))
        await self._core(self.replicator.set_follows, follows)
        return changed

    # -- a full disk ----------------------------------------------------------------

    async def _storage_full(self, full: StorageFull) -> None:
        """A write found the disk full: nothing of it was stored. Said once; the node
        keeps serving, and each later write tries again (spec/14 §4)."""
        if self._full_since is None:
            self._full_since = time.time()
            self.log.warning("disk-full", error=str(full),
                             detail="taking no entries, still serving; resumes by itself")
        # The heads in memory may be ahead of what the store committed.
        await self._core(self.replicator.refresh_local)

    async def _state(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """A write to node.sqlite3 in a worker thread: the node goes on without it if
        it fails (:class:`~tidings.node.core.StateWrites`)."""
        return await _io(self._state_writes, call, *args, **kwargs)

    async def set_identity_follow(self, identity: bytes, logs: frozenset[str],
                                  follow: bool) -> bool:
        """Follow (or stop following) an author, spec/12: its logs ``logs`` (none: all)."""
        if follow:
            changed = await _io(self.state.follow_identity, identity, logs)
        else:
            changed = await _io(self.state.unfollow_identity, identity)
        follows = await _io(self.state.identity_follows)
        self._versions = (self._versions[0], await _io(self.state.data_version))
        await self._core(self.replicator.set_identity_follows, follows)
        return changed

    # -- dialing --------------------------------------------------------------------

    async def _dial_loop(self, nursery: trio.Nursery) -> None:
        while True:
            outbound = sum(1 for c in self.connections if c.initiator) + len(self._dialing)
            room = min(self.options.max_outbound - outbound,
                       self.options.max_connections - len(self.connections))
            if room > 0:
                busy = {c.address for c in self.connections} | self._dialing
                for record in await _io(self.state.due_peers, time.time(), room + len(busy)):
                    if room <= 0:
                        break
                    if record.address in busy or record.address == self.listen_address:
                        continue
                    room -= 1
                    self._dialing.add(record.address)
                    nursery.start_soon(self._dial, record.address)
            with trio.move_on_after(1.0):  # a peer due, or a slot freed
                await self._connections_changed.wait()

    async def _dial(self, address: tuple[str, int]) -> None:
        # The address stays in _dialing until it is in self.connections: the dial
        # loop, woken meanwhile, must not see it free and dial it a second time.
        try:
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    stream = await trio.open_tcp_stream(_dial_host(address[0]), address[1])
            except (OSError, trio.TooSlowError, UnicodeError, ValueError) as exc:
                if await self._state(self.state.forget_unproven, address):
                    # Learned, never connected: not worth a retry (spec/14 §5).
                    self.log.debug("forgotten", addr=format_address(address))
                    return
                wait = await self._state(self.state.failed, address, time.time()) or 0.0
                self.log.info("connect-failed", addr=format_address(address),
                              error=getattr(exc, "strerror", None) or type(exc).__name__,
                              retry_in=f"{wait:.0f}s")
                return
            try:
                connection = await self._open_connection(stream, address, initiator=True)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                raise
        finally:
            self._dialing.discard(address)
        await self._serve(connection)

    async def connect(self, address: tuple[str, int]) -> Connection:
        """Dial one peer for this process's own use (sync, fetch); serve it in the background.

        Returns once the hello exchange is done; raises the PeerError (or
        OSError) that prevented it.
        """
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream(_dial_host(address[0]), address[1])
        connection = await self._open_connection(stream, address, initiator=True)
        self._background.start_soon(self._serve, connection)
        with trio.fail_after(HANDSHAKE_TIMEOUT + 1):
            await _first(connection.ready.wait, connection.closed.wait)
        if connection.ready.is_set():
            return connection
        error = connection.error or HandshakeFailed(HANDSHAKE_CLOSED)
        error.node_key = connection.session.channel.remote_static
        raise error

    # -- serving one connection ---------------------------------------------------

    async def _accept(self, stream: trio.SocketStream) -> None:
        address = peer_address(stream)
        inbound = [c for c in self.connections if not c.initiator]
        for connection in inbound:
            self._weigh(connection)
        admission = slots.admit(
            address, [c.standing for c in inbound if c.standing is not None],
            inbound_cap=slots.inbound_cap(self.options.max_connections,
                                          self.options.max_outbound),
            per_address=self.options.max_per_address,
        )
        if not admission.accept:
            self.log.info("refused", addr=format_address(address), reason=admission.reason)
            await stream.aclose()
            return
        if admission.evict is not None:
            victim = next((c for c in inbound if c.standing is admission.evict), None)
            if victim is not None:
                self._background.start_soon(self._evict, victim)
        await self._serve(await self._open_connection(stream, address, initiator=False))

    def _weigh(self, connection: Connection) -> None:
        """Bring a connection's standing up to date (what it gave, hellos exchanged)."""
        standing = connection.standing
        if standing is None:
            return
        standing.ready = connection.ready.is_set()
        peer = self.replicator.peers.get(connection.session)
        standing.useful = peer.useful if peer is not None else 0

    async def _evict(self, connection: Connection) -> None:
        """Close the least proven inbound connection for a newcomer (spec/14 §2)."""
        if connection.closed.is_set() or connection.error is not None:
            return
        error = PeerEvicted("this node is at its bound of inbound connections and closed "
                            "the least proven one: connect again later")
        error.peer = format_address(connection.address)
        connection.error = error
        self.log.debug("evicted", addr=format_address(connection.address),
                       ready=connection.ready.is_set())
        if connection.ready.is_set():
            await self._send_error(connection, error)
        connection.scope.cancel()

    async def _open_connection(self, stream: trio.SocketStream, address: tuple[str, int], *,
                               initiator: bool) -> Connection:
        session = await self._core(self.replicator.open_session, initiator=initiator)
        connection = Connection(session, stream, address, initiator)
        connection.upload = UploadBucket(self.options.blob_upload_rate)
        connection.standing = slots.Standing(address, initiator, time.monotonic())
        self.connections.add(connection)
        self._by_session[session] = connection
        self._connections_moved()
        return connection

    async def _serve(self, connection: Connection) -> None:
        """Run one connection's reader and writer until it ends, then clean up."""
        try:
            with connection.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader, connection, nursery.cancel_scope)
                    nursery.start_soon(self._writer, connection, nursery.cancel_scope)
        except Exception as exc:  # a bug must cost one connection, never the node
            self.log.warning("connection-failed", addr=format_address(connection.address),
                             error=describe(exc))
        finally:
            session = connection.session
            with trio.CancelScope(shield=True):
                # Clocks are kept only for peers that earned it (spec/14 §3): a peer
                # this node dialed, or one that gave it something; never a misbehaving one.
                error = connection.error
                self._weigh(connection)
                earned = connection.initiator or bool(
                    connection.standing is not None and connection.standing.useful) or (
                    session.channel.remote_static is not None
                    and self._memory.remembers(session.channel.remote_static))
                remember = earned and (error is None or not error.misbehaviour)
                try:
                    await self._core(self.replicator.close_session, session,
                                     remember=remember)
                    await self._state(self._memory.flush)
                    self.connections.discard(connection)  # (once its clock is on disk)
                    self._by_session.pop(session, None)
                    await connection.stream.aclose()
                    await self._after_close(connection)
                except Exception as exc:  # a cleanup must never take the node down
                    self.connections.discard(connection)
                    self._by_session.pop(session, None)
                    self.log.warning("connection-cleanup-failed",
                                     addr=format_address(connection.address),
                                     error=f"{type(exc).__name__}: {exc}")
            for key in [k for k in self._waiters if k[0] is session]:
                self._waiters[key][0].set()  # the answer will not come
            connection.closed.set()
            connection.progress.set()
            self._connections_moved()

    async def _after_close(self, connection: Connection) -> None:
        error, peer = connection.error, connection.session.channel.remote_static
        misbehaved = error is not None and error.misbehaviour
        fields: dict[str, object] = {"peer": short_key(peer),
                                     "addr": format_address(connection.address)}
        if isinstance(error, SelfConnection) and connection.initiator:
            await self._state(self.state.forget, connection.address)  # ours, heard from a peer
            return
        if isinstance(error, DuplicateConnection):
            # Two nodes dialed each other at once; one connection stays. Not a fault.
            self.log.debug("duplicate-connection", **fields)
        elif error is not None:
            self.log.warning("peer-error", **fields, code=error.code, error=error.detail)
            if misbehaved and peer is not None:
                self._refuse(peer)
        elif connection.ready.is_set():
            self.log.info("disconnected", **fields)
        if connection.initiator and not connection.ready.is_set() and not misbehaved \
                and await self._state(self.state.forget_unproven, connection.address):
            return  # a learned address whose handshake failed: forgotten (spec/14 §5)
        if connection.initiator:
            await self._state(self.state.failed, connection.address, time.time(),
                              misbehaved=misbehaved,
                              disconnected=(error is None and connection.ready.is_set())
                              or isinstance(error, StoreBusy))

    def _refuse(self, peer: bytes) -> None:
        """Refuse ``peer``'s key for MISBEHAVIOUR_BACKOFF seconds (by key, not address:
        many honest nodes can share an address behind NAT)."""
        self.replicator.refused.add(peer)

        async def expire() -> None:
            await trio.sleep(MISBEHAVIOUR_BACKOFF)
            self.replicator.refused.discard(peer)

        self._background.start_soon(expire)

    async def _reader(self, connection: Connection, scope: trio.CancelScope) -> None:
        session = connection.session
        # The handshake has one deadline in all (a peer trickling bytes cannot
        # stretch it); after it, any data restarts the idle timer.
        handshake_deadline = trio.current_time() + HANDSHAKE_TIMEOUT
        reads = ReadBuffer(READ_SIZE)  # (each read's bytes are done with before the next)
        try:
            while True:
                if connection.ready.is_set():
                    deadline = trio.current_time() + IDLE_TIMEOUT
                else:
                    deadline = handshake_deadline
                while session.channel.pending_output > MAX_QUEUED_OUTPUT:
                    # The peer asks faster than it reads our answers: stop reading
                    # until the writer has sent them (bounded memory per peer).
                    connection.drained = trio.Event()
                    connection.wake.set()
                    await connection.drained.wait()
                with trio.move_on_at(deadline) as waited:
                    data = cast(bytes, await reads.read(connection.stream))
                if waited.cancelled_caught:
                    if connection.ready.is_set():
                        raise PeerTimeout(f"silent for {IDLE_TIMEOUT:.0f} s")
                    raise PeerTimeout(f"no handshake within {HANDSHAKE_TIMEOUT:.0f} s")
                if not data:
                    if not connection.ready.is_set():
                        raise HandshakeFailed(HANDSHAKE_CLOSED)
                    break
                size = len(data)  # data is emptied below when decoded outside the lock
                asked_before = session.blobs.bytes_received
                budget = connection.budget
                contended = self._contended(connection)
                hold = budget.wait_before_read(trio.current_time(), contended)
                if hold:
                    await trio.sleep(hold)  # its share is spent and others wait
                decoded, failure = 0.0, None
                if session.state in _DECODED_OUTSIDE and self._lock.locked():
                    # Decrypted and decoded in a thread of its own while another call
                    # holds the lock every connection shares (spec/14 §6); the messages
                    # wait in the channel. (The lock free: both in one call, one thread
                    # hop instead of two; a read holds it at most READ_SIZE longer.)
                    decoded, failure = await run_in_thread(partial(_decode, session, data))
                    data = b""
                try:
                    events, work = await self._peer_core(connection, self._timed_receive,
                                                         session, data)
                    # Answers to send: paced by MAX_QUEUED_OUTPUT, not spaced (spec/14 §6).
                    answered = session in self.replicator.local.dirty
                    # Blob chunks this node asked for are not the peer's load on it: their
                    # share of the read is not charged (the fetch window bounds them).
                    asked = (session.blobs.bytes_received - asked_before) / max(size, 1)
                    budget.charge(trio.current_time(), (work + decoded) * max(0.0, 1 - asked))
                    if failure is not None:
                        raise failure
                except StorageFull as full:
                    await self._storage_full(full)
                    raise StoreBusy("this node's disk is full: it takes no entries for now "
                                    "(it still serves); try again later") from None
                await self._act_on(events, connection)
                connection.progress.set()
                connection.progress = trio.Event()
                spacing = budget.wait_after_small(trio.current_time(), size,
                                                  answered=answered)
                if spacing:
                    await trio.sleep(spacing)  # small reads: what comes meanwhile, at once
        except PeerError as error:
            error.peer = error.peer or format_address(connection.address)
            connection.error = error
            await self._send_error(connection, error)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _act_on(self, events: list[ReplicatorEvent], connection: Connection) -> None:
        """What the replicator says the node must do after taking bytes in."""
        for event in events:
            if isinstance(event, EntriesStored):
                if self._full_since is not None:
                    self._full_since = None
                    self.log.info("disk-space-back", detail="entries are stored again")
                self._notify()
            elif isinstance(event, BlobStored):
                self._blobs_changed.set()
                self._blobs_changed = trio.Event()
            elif isinstance(event, PeerConnected):
                await self._on_ready(connection)
            elif isinstance(event, Superseded):
                old = self._by_session.get(event.session)
                if old is not None:
                    old.scope.cancel()
            elif isinstance(event, PartialResult):
                waiter = self._waiters.get((event.session, event.request_id))
                if waiter is not None:  # (else its asker gave up: dropped)
                    waiter[1].append(event)
                    waiter[0].set()
            elif isinstance(event, AddressesLearned):
                await self._state(self.state.add_peers, list(event.addresses), "exchange",
                                  learned_from=connection.address[0])

    async def _send_error(self, connection: Connection, error: PeerError) -> None:
        """The goodbye: the session's error message, queued when it failed (spec/09 §6)."""
        if isinstance(error, HandshakeFailed | ClosedByPeer):
            return  # say nothing to a stranger; never answer an error
        # Best effort, bounded: a peer that does not read gets no error message.
        with trio.move_on_after(2):
            try:
                data = await self._core(_fail, connection.session, error)
                async with connection.send_lock:
                    await connection.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, TidingsError):
                pass

    async def _on_ready(self, connection: Connection) -> None:
        peer = connection.session.channel.remote_static
        assert peer is not None
        connection.ready.set()
        self._connections_moved()
        self.log.info("connected", peer=short_key(peer), addr=format_address(connection.address),
                      direction="out" if connection.initiator else "in",
                      version=connection.session.version)
        if connection.initiator:
            await self._state(self.state.connected, connection.address, peer, time.time())
        addresses = [a for a in await _io(self.state.good_addresses, MAX_ADDRESSES)
                     if a != connection.address]
        if addresses and not connection.session.failed:
            await self._core(connection.session.send_peers, addresses)

    async def _writer(self, connection: Connection, scope: trio.CancelScope) -> None:
        session = connection.session
        try:
            while True:
                connection.wake = trio.Event()
                data = await self._peer_core(connection, self.replicator.pump, session,
                                             connection.pump_budget,
                                             blob_budget=connection.upload.budget(session))
                connection.upload.spent(session)
                if data:
                    started = time.monotonic()
                    async with connection.send_lock:
                        await connection.stream.send_all(data)
                    connection.last_sent = time.monotonic()
                    if len(data) >= SEND_BUDGET:  # large enough to time the link by
                        # (send_all returns with up to `lowat` bytes still unsent)
                        fast = len(data) - connection.lowat >= \
                            (connection.last_sent - started) * FAST_LINK
                        connection.pump_budget = FAST_SEND_BUDGET if fast else SEND_BUDGET
                        _set_lowat(connection, FAST_LOWAT if fast else SLOW_LOWAT)
                    connection.drained.set()
                    continue
                idle_for = time.monotonic() - connection.last_sent
                wait = max(0.0, PING_AFTER - idle_for)
                refill = connection.upload.refill_wait()
                if refill is not None and session.blobs.serving:  # the bucket refills
                    wait = min(wait, refill)
                with trio.move_on_after(wait):
                    await connection.wake.wait()
                if not connection.wake.is_set() and connection.ready.is_set() \
                        and not session.failed:
                    await self._core(session.ping)
                connection.drained.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    # -- for sync and fetch ---------------------------------------------------------

    async def run_client(self, body: Callable[[Node], Any]) -> Any:
        """Run ``await body(self)`` with this node dialing only (no listener)."""
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            self._background = nursery
            nursery.start_soon(self._poll_changes)
            nursery.start_soon(self._write_blobs)
            try:
                result = await body(self)
            except Exception as exc:  # raised below, not wrapped in the nursery's group
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return result

    async def wait_caught_up(self, connection: Connection,
                             progress: Callable[[int, int], None] | None = None) -> None:
        """Return once this node holds everything it wants that the peer holds.

        Wakes each time the peer's bytes were taken in (or a second passed: a
        source can stall), never on a timer of its own.
        """
        start = self.replicator.entries_received
        while True:
            moved = connection.progress
            if connection.error is not None:
                raise connection.error
            if connection.closed.is_set():
                raise PeerTimeout("the peer closed the connection before the sync finished")
            if await self._core(self.replicator.caught_up, connection.session):
                await self._core(self._check_caught_up, connection.session)
                return
            if progress is not None and connection.session.clock_exchanged:
                remaining = await self._core(self._remaining, connection.session)
                progress(self.replicator.entries_received - start, remaining)
            await moved.wait()

    def _check_caught_up(self, session: Session) -> None:
        check_caught_up(self.replicator, session)

    def _remaining(self, session: Session) -> int:
        return remaining(self.replicator, session)

    async def fetch_latest(self, connection: Connection, feed: FeedId,
                           count: int) -> PartialResult:
        """The latest ``count`` entries of ``feed`` from one peer, verified (not stored).

        Raises the connection's error if it ends first. A caller that gives up
        (a timeout) leaves nothing behind: a late answer is dropped.
        """
        request = await self._core(self.replicator.request_partial, connection.session,
                                   feed, count)
        key = (connection.session, request)
        answered: trio.Event = trio.Event()
        results: list[PartialResult] = []
        self._waiters[key] = (answered, results)
        try:
            if not connection.closed.is_set():
                await answered.wait()
        finally:
            del self._waiters[key]
        if results:
            return results[0]
        raise connection.error or PeerTimeout("the peer closed the connection before answering")

    async def connection_to(self, key: bytes) -> Connection:
        """The ready connection to the node whose transport key is ``key`` (waits for one)."""
        while True:
            changed = self._connections_changed
            for connection in self.connections:
                if connection.ready.is_set() and connection.session.channel.remote_static == key:
                    return connection
            await changed.wait()

    _background: trio.Nursery


async def _io(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking call (SQLite) in a worker thread, so the event loop never waits on it."""
    return await trio.to_thread.run_sync(partial(call, *args, **kwargs))


#: Session states in which the peer's bytes are decoded before the lock is taken: the
#: handshake and the hello (which need the replicator) are read under it.
_DECODED_OUTSIDE = frozenset({SessionState.OPENING, SessionState.LIVE})


def _set_lowat(connection: Connection, lowat: int) -> None:
    """Set the connection's TCP_NOTSENT_LOWAT (where the platform has it)."""
    if lowat != connection.lowat:
        connection.lowat = lowat
        with contextlib.suppress(OSError, AttributeError):
            connection.stream.setsockopt(socket.IPPROTO_TCP,
                                         socket.TCP_NOTSENT_LOWAT,
                                         lowat)


def _decode(session: Session, data: bytes) -> tuple[float, PeerError | None]:
    """Decrypt and decode ``data`` into the session's channel (its receiving side only,
    which nothing else touches meanwhile); the seconds it took, and the peer's error."""
    started = time.perf_counter()
    try:
        session.channel.receive_data(data)
    except PeerError as error:
        return time.perf_counter() - started, error
    return time.perf_counter() - started, None


def _fail(session: Session, error: PeerError) -> bytes:
    session.fail(error)
    return session.data_to_send()


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return when the first of ``waits`` returns."""
    async with trio.open_nursery() as nursery:
        async def run(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(run, wait)


def describe(exc: BaseException) -> str:
    """What went wrong, for a log line: the errors inside a group, not the group."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions[:3])
    return f"{type(exc).__name__}: {exc}"


__all__ = ["Connection", "Node"]
