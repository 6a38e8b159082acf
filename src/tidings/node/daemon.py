"""The trio node: sockets, timers and the peer table around the replicator.

Everything that decides what to send lives in :class:`~tidings.replication.replicator.Replicator`
(pure apart from the store). This module only moves bytes: one reader and one
writer task per connection, a listener, a dialer with backoff, a poller that
notices writes by other processes (``tidings publish``, ``tidings follow``),
and LAN discovery. Replicator calls run in a worker thread, one at a time, so
the store's fsyncs never block the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import trio

from tidings.core.blob import BlobId
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.errors import (
    ClosedByPeer,
    DuplicateConnection,
    HandshakeFailed,
    PeerError,
    PeerTimeout,
    SelfConnection,
    TidingsError,
    UsageError,
)
from tidings.node import discovery
from tidings.node.log import Logger, short_key
from tidings.node.options import NodeOptions, format_address
from tidings.node.state import MISBEHAVIOUR_BACKOFF, NodeState
from tidings.replication.blob_fetch import BlobStored
from tidings.replication.replicator import (
    AddressesLearned,
    EntriesStored,
    PartialResult,
    PeerConnected,
    Replicator,
    ReplicatorEvent,
    Superseded,
)
from tidings.replication.session import Session
from tidings.storage.blobs import BlobStore
from tidings.storage.logbook import Logbook
from tidings.transport.beacon import is_loopback
from tidings.transport.channel import public_key
from tidings.wire.messages import MAX_ADDRESSES, Note

T = TypeVar("T")

#: A peer must finish the handshake and hello within this many seconds.
HANDSHAKE_TIMEOUT = 10.0
#: Silence longer than this ends a connection; a ping goes out after PING_AFTER
#: idle seconds, so a live peer is never silent that long.
IDLE_TIMEOUT = 90.0
PING_AFTER = 30.0
CONNECT_TIMEOUT = 10.0
#: How often to look for writes by other processes (publish, follow): a
#: cheap PRAGMA, and the bound on how late a CLI publish goes out live.
POLL_INTERVAL = 0.1
#: Bytes taken from the socket at most per read. Whatever the kernel holds is
#: processed under one store commit, so a large read while the peer streams
#: means few fsyncs; the channel itself buffers at most one frame and one message.
READ_SIZE = 1024 * 1024
#: Output queued for one peer beyond which its requests are not read: answers
#: wait for the socket, so a peer that never reads costs at most this much.
MAX_QUEUED_OUTPUT = 1024 * 1024


@dataclass(eq=False)
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
    #: Blob bytes this connection may still send now (the upload rate limit's bucket).
    blob_tokens: float = 0.0
    blob_refilled: float = field(default_factory=time.monotonic)
    blob_sent_before: int = 0


class _ClockMemory:
    """The replicator's clock memory in the node state, namespaced by our own key.

    ``tidings up`` and ``tidings sync`` use different transport keys on one
    home, so each keeps its own record of what it told each peer.
    """

    def __init__(self, state: NodeState, local_key: bytes) -> None:
        self.state = state
        self.prefix = local_key[:8]

    def load(self, peer: bytes) -> tuple[dict[FeedId, Note], dict[FeedId, Note]]:
        return self.state.load(self.prefix + peer)

    def save(self, peer: bytes, sent: dict[FeedId, Note], received: dict[FeedId, Note]) -> None:
        self.state.save(self.prefix + peer, sent, received)


class Node:
    """A tidings node: ``await node.run()`` serves until cancelled."""

    def __init__(self, logbook: Logbook, state: NodeState, transport_key: bytes,
                 options: NodeOptions | None = None, log: Logger | None = None, *,
                 blobs: BlobStore | None = None) -> None:
        self._blob_started: dict[str, float] = {}
        self.logbook = logbook
        #: The chunk store (HOME/blobs); None: this node moves no blobs.
        self.blobs = blobs
        self.state = state
        self.options = options or NodeOptions()
        self.log = log or Logger()
        self.replicator = Replicator(
            logbook, static_private=transport_key, network_key=self.options.network_key,
            follows=state.follows(), hops=self.options.hops, relay=self.options.relay,
            relay_max_feeds=self.options.relay_max_feeds,
            memory=_ClockMemory(state, public_key(transport_key)),
            log=self._replicator_event, blobs=blobs, blob_policy=self.options.blob_policy,
        )
        self._blobs_changed = trio.Event()
        self.connections: set[Connection] = set()
        self._by_session: dict[Session, Connection] = {}
        #: Partial requests waiting for their answer, by (session, request id).
        self._waiters: dict[tuple[Session, int], tuple[trio.Event, list[PartialResult]]] = {}
        #: Set (and replaced) whenever a connection opens, becomes ready or closes.
        self._connections_changed = trio.Event()
        self.listen_address: tuple[str, int] | None = None
        self._lock = trio.Lock()
        self._dialing: set[tuple[str, int]] = set()
        self._lan_seen: set[tuple[str, int]] = set()
        self._versions = (self._store_version(), state.data_version())
        self._changed = trio.Event()
        #: The newest arrival in the store (what subscriptions start after), kept
        #: in memory so that starting one never touches the store on the event loop.
        self.last_arrival = logbook.store.last_arrival()

    @property
    def follows(self) -> frozenset[FeedId]:
        """The feeds this home follows (as the node replicates them now)."""
        return frozenset(self.replicator.follows)

    def _replicator_event(self, event: str, **fields: object) -> None:
        """What the replicator tells the operator: forks found and proven, damaged bytes."""
        level = "info" if event.startswith(("fork-suspected", "blob-")) else "warning"
        if event == "blob-refused":
            level = "warning"
        elif event == "blob-wanted":
            self._blob_started[str(fields["blob"])] = time.monotonic()
        elif event == "blob-complete":
            started = self._blob_started.pop(str(fields["blob"]), None)
            if started is not None:
                fields["seconds"] = f"{time.monotonic() - started:.2f}"
        self.log.log(level, event, **fields)

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
                return await trio.to_thread.run_sync(partial(call, *args, **kwargs))
            finally:
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
                    self._lan_seen.add(address)
                    self.log.info("lan-peer", addr=format_address(address))
                await _io(self.state.add_peers, [address], "lan")

        nursery.start_soon(remember)

    async def _poll_changes(self) -> None:
        """Notice other processes' writes: a CLI publish, import, follow or unfollow.

        Also the replicator's clock (stalled sources), once a second.
        """
        next_tick = trio.current_time()
        while True:
            await trio.sleep(POLL_INTERVAL)
            # Off the event loop: both take locks a long replicator call may hold.
            store_version = await _io(self._store_version)
            state_version = await _io(self.state.data_version)
            if state_version != self._versions[1]:
                await self._core(self.replicator.set_follows, await _io(self.state.follows))
            if store_version != self._versions[0]:
                changed = await self._core(self.replicator.refresh_local)
                if changed:
                    self.log.debug("local-change", feeds=len(changed))
                self.last_arrival = await _io(self.logbook.store.last_arrival)
                self._notify()
            self._versions = (store_version, state_version)
            if trio.current_time() >= next_tick:
                next_tick = trio.current_time() + 1.0
                await self._core(self.replicator.tick, trio.current_time())
                for connection in self.connections:  # a source may have stalled
                    connection.progress.set()
                    connection.progress = trio.Event()

    def _store_version(self) -> int:
        version = getattr(self.logbook.store, "data_version", None)
        return int(version()) if version is not None else 0

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

    async def publish(self, payload: bytes, log_id: str) -> Entry:
        """Publish as this node's author (an embedding app); peers hear of it at once."""

        def publish() -> Entry:
            entry = self.logbook.publish(payload, log_id)
            self.replicator.refresh_local()
            self.last_arrival = self.logbook.store.last_arrival()
            return entry

        entry = await self._core(publish)
        self._notify()
        return entry

    async def set_follow(self, feed: FeedId, follow: bool) -> bool:
        """Follow or unfollow ``feed``; True if that changed anything."""
        change = self.state.follow if follow else self.state.unfollow
        changed = await _io(change, feed)
        follows = await _io(self.state.follows)
        self._versions = (self._versions[0], await _io(self.state.data_version))
        await self._core(self.replicator.set_follows, follows)
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
        try:
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    stream = await trio.open_tcp_stream(*address)
            except (OSError, trio.TooSlowError, UnicodeError, ValueError) as exc:
                wait = await _io(self.state.failed, address, time.time())
                self.log.info("connect-failed", addr=format_address(address),
                              error=getattr(exc, "strerror", None) or type(exc).__name__,
                              retry_in=f"{wait:.0f}s")
                return
        finally:
            self._dialing.discard(address)
        await self._serve(await self._open_connection(stream, address, initiator=True))

    async def connect(self, address: tuple[str, int]) -> Connection:
        """Dial one peer for this process's own use (sync, fetch); serve it in the background.

        Returns once the hello exchange is done; raises the PeerError (or
        OSError) that prevented it.
        """
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream(*address)
        connection = await self._open_connection(stream, address, initiator=True)
        self._background.start_soon(self._serve, connection)
        with trio.fail_after(HANDSHAKE_TIMEOUT + 1):
            await _first(connection.ready.wait, connection.closed.wait)
        if connection.ready.is_set():
            return connection
        error = connection.error or HandshakeFailed(
            "the peer closed the connection during the handshake: it is on another "
            "network (check --network) or runs another protocol version"
        )
        error.node_key = connection.session.channel.remote_static
        raise error

    # -- serving one connection ---------------------------------------------------

    async def _accept(self, stream: trio.SocketStream) -> None:
        address = peer_address(stream)
        if len(self.connections) >= self.options.max_connections:
            self.log.info("refused", addr=format_address(address), reason="max-connections")
            await stream.aclose()
            return
        await self._serve(await self._open_connection(stream, address, initiator=False))

    async def _open_connection(self, stream: trio.SocketStream, address: tuple[str, int], *,
                               initiator: bool) -> Connection:
        session = await self._core(self.replicator.open_session, initiator=initiator)
        connection = Connection(session, stream, address, initiator)
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
                             error=f"{type(exc).__name__}: {exc}")
        finally:
            session = connection.session
            self.connections.discard(connection)
            with trio.CancelScope(shield=True):
                # A misbehaving peer's clock is not worth keeping (and may be huge).
                error = connection.error
                remember = error is None or not error.misbehaviour
                await self._core(self.replicator.close_session, session, remember=remember)
                self._by_session.pop(session, None)
                await connection.stream.aclose()
                await self._after_close(connection)
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
            await _io(self.state.forget, connection.address)  # ours, heard from a peer
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
        if connection.initiator:
            await _io(self.state.failed, connection.address, time.time(),
                      misbehaved=misbehaved,
                      disconnected=error is None and connection.ready.is_set())

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
                    data = await connection.stream.receive_some(READ_SIZE)
                if waited.cancelled_caught:
                    if connection.ready.is_set():
                        raise PeerTimeout(f"silent for {IDLE_TIMEOUT:.0f} s")
                    raise PeerTimeout(f"no handshake within {HANDSHAKE_TIMEOUT:.0f} s")
                if not data:
                    if not connection.ready.is_set():
                        raise HandshakeFailed(
                            "the peer closed the connection during the handshake: it is on "
                            "another network (check --network) or runs another protocol "
                            "version (this node speaks tidings/transport/2)"
                        )
                    break
                events = await self._core(self._receive, session, data)
                await self._act_on(events, connection)
                connection.progress.set()
                connection.progress = trio.Event()
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
                await _io(self.state.add_peers, list(event.addresses), "exchange")

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
            await _io(self.state.connected, connection.address, peer, time.time())
        addresses = [a for a in await _io(self.state.good_addresses, MAX_ADDRESSES)
                     if a != connection.address]
        if addresses and not connection.session.failed:
            await self._core(connection.session.send_peers, addresses)

    async def _writer(self, connection: Connection, scope: trio.CancelScope) -> None:
        session = connection.session
        try:
            while True:
                connection.wake = trio.Event()
                data = await self._core(self.replicator.pump, session,
                                        blob_budget=self._blob_budget(connection))
                self._blob_spent(connection)
                if data:
                    async with connection.send_lock:
                        await connection.stream.send_all(data)
                    connection.last_sent = time.monotonic()
                    connection.drained.set()
                    continue
                idle_for = time.monotonic() - connection.last_sent
                wait = max(0.0, PING_AFTER - idle_for)
                rate = self.options.blob_upload_rate
                if rate and session.blobs.serving:  # waits for the bucket to refill
                    wait = min(wait, max(0.01, -connection.blob_tokens / rate))
                with trio.move_on_after(wait):
                    await connection.wake.wait()
                if not connection.wake.is_set() and connection.ready.is_set() \
                        and not session.failed:
                    await self._core(session.ping)
                connection.drained.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    def _blob_budget(self, connection: Connection) -> int | None:
        """Blob bytes the connection may send now: a token bucket of one second's worth."""
        rate = self.options.blob_upload_rate
        if not rate:
            return None
        now = time.monotonic()
        connection.blob_tokens = min(
            float(rate), connection.blob_tokens + (now - connection.blob_refilled) * rate)
        connection.blob_refilled = now
        connection.blob_sent_before = connection.session.blobs.bytes_sent
        return max(0, int(connection.blob_tokens))

    def _blob_spent(self, connection: Connection) -> None:
        if self.options.blob_upload_rate:
            sent = connection.session.blobs.bytes_sent - connection.blob_sent_before
            connection.blob_tokens -= sent

    # -- for sync and fetch ---------------------------------------------------------

    async def run_client(self, body: Callable[[Node], Any]) -> Any:
        """Run ``await body(self)`` with this node dialing only (no listener)."""
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            self._background = nursery
            nursery.start_soon(self._poll_changes)
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
        """Caught up, but is something left that this peer will never give?"""
        local, peer = self.replicator.local, self.replicator.peer(session)
        if peer is None:
            return
        behind = [f for f in local.wanted if session.peer_seq(f) > local.seq(f)
                  and f not in self.replicator.forked_at]
        stalled = [f for f in behind if f in peer.stalled]
        if stalled:
            raise PeerTimeout(
                f"the peer claims entries it does not send ({len(stalled)} feed(s), "
                f"e.g. {stalled[0]}); try another peer"
            )
        diverged = [f for f in behind if f in peer.diverged]
        if diverged:
            raise PeerTimeout(
                f"the peer holds another branch of {diverged[0]}: its author forked "
                "the feed, and no proof of it could be made with this peer"
            )

    def _remaining(self, session: Session) -> int:
        local = self.replicator.local
        return sum(max(0, session.peer_seq(f) - local.seq(f)) for f in local.wanted)

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


def peer_address(stream: trio.SocketStream) -> tuple[str, int]:
    """The remote ``(host, port)`` of a socket stream (``("?", 0)`` once it is gone)."""
    try:
        host, port = stream.socket.getpeername()[:2]
        return str(host), int(port)
    except OSError:
        return "?", 0


__all__ = ["Connection", "Node", "peer_address"]
