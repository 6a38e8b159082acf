"""One connection on a blocking socket, driven until caught up: what ``tidings sync`` runs.

The same replicator as the trio node's (node/core.py), moved by a plain loop: send
what it has to send, wait for the peer's bytes (or a deadline), hand them to it,
until it holds everything it wants that the peer holds. No event loop, so the
command starts without loading trio (about 0.15 s of every sync). What the node
does around a connection it dialed is done here the same way: the peer's address
is recorded, addresses are exchanged, a second's tick finds stalled sources, the
other processes' writes to the home are noticed, the session's error message goes
to a peer that broke the protocol, and the clocks are remembered for the next time.
"""

from __future__ import annotations

import math
import selectors
import socket
import time
from collections.abc import Callable

from tidings.errors import (
    ClosedByPeer,
    HandshakeFailed,
    PeerError,
    PeerTimeout,
    SelfConnection,
    StorageFull,
    StoreBusy,
)
from tidings.node.core import (
    CONNECT_TIMEOUT,
    HANDSHAKE_CLOSED,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_QUEUED_OUTPUT,
    PING_AFTER,
    READ_SIZE,
    Parts,
    check_caught_up,
    make_replicator,
    remaining,
)
from tidings.node.log import Logger
from tidings.node.options import NodeOptions, format_address
from tidings.replication.replicator import (
    AddressesLearned,
    PeerConnected,
    Replicator,
    ReplicatorEvent,
)
from tidings.replication.session import Session
from tidings.wire.messages import MAX_ADDRESSES

#: Bytes the replicator may queue per call (what a fast connection's writer takes).
SEND_BUDGET = 2 * 1024 * 1024
#: How often time passes for the replicator (stalled sources) and other processes'
#: writes to the home are looked for.
TICK = 1.0


class Timeout(Exception):
    """The caller's deadline passed before the peer's entries were all in."""


class SyncClient:
    """The replicator of a home's parts, dialing one peer (blocking)."""

    def __init__(self, parts: Parts, options: NodeOptions, log: Logger | None = None) -> None:
        self.parts = parts
        self.log = log or Logger(level="quiet")
        self.replicator: Replicator
        self.replicator, self.memory = make_replicator(
            parts.logbook, parts.state, parts.key, options, self.log, parts.blobs)
        self.session: Session | None = None
        self._versions = (self._store_version(), parts.state.data_version())

    def sync(self, address: tuple[str, int], *, timeout: float = math.inf,
             progress: Callable[[int, int], None] | None = None) -> Session:
        """Dial ``address`` and return the session once this home holds everything it
        wants that the peer holds (its clocks are remembered by then).

        Raises OSError when the peer cannot be reached, the PeerError that ended the
        session (PeerTimeout when the peer went away or claims what it never sends),
        and :class:`Timeout` once ``timeout`` seconds passed.
        """
        deadline = time.monotonic() + timeout
        sock = socket.create_connection(address, timeout=min(CONNECT_TIMEOUT, timeout))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self.session = session = self.replicator.open_session(initiator=True)
            self._run(sock, address, session, deadline, progress)
            return session
        finally:
            sock.close()

    def _run(self, sock: socket.socket, address: tuple[str, int], session: Session,
             deadline: float, progress: Callable[[int, int], None] | None) -> None:
        replicator = self.replicator
        start = replicator.entries_received
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        out = bytearray()
        now = time.monotonic()
        handshake_by, heard, sent, next_tick = now + HANDSHAKE_TIMEOUT, now, now, now + TICK
        ready = False
        error: PeerError | None = None
        try:
            while True:
                if len(out) < MAX_QUEUED_OUTPUT:  # (what the session queued meanwhile)
                    out += replicator.pump(session, SEND_BUDGET)
                if ready and replicator.caught_up(session):
                    check_caught_up(replicator, session)
                    if out:  # (notes to the peer: what the remembered clocks say it was told)
                        self._send(sock, out)
                    return
                now = time.monotonic()
                if now >= deadline:
                    raise Timeout
                if now >= next_tick:
                    next_tick = now + TICK
                    self._tick(now)
                if ready and now - sent >= PING_AFTER and not session.failed:
                    session.ping()
                    out += replicator.pump(session, SEND_BUDGET)
                    sent = now  # (it goes at the next write)
                silent_by = heard + IDLE_TIMEOUT if ready else handshake_by
                if now >= silent_by:
                    raise PeerTimeout(f"silent for {IDLE_TIMEOUT:.0f} s" if ready else
                                      f"no handshake within {HANDSHAKE_TIMEOUT:.0f} s")
                # A peer that asks faster than it reads the answers is not read until it
                # has taken them (bounded memory, as the node does: spec/14 §6).
                reading = len(out) + session.channel.pending_output <= MAX_QUEUED_OUTPUT
                selector.modify(sock, selectors.EVENT_WRITE if out and not reading else
                                selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
                wait = min(deadline, next_tick, silent_by, sent + PING_AFTER) - now
                for _, mask in selector.select(max(0.0, wait)):
                    if mask & selectors.EVENT_WRITE:
                        del out[:self._send(sock, out)]
                        sent = time.monotonic()
                    if mask & selectors.EVENT_READ:
                        data = self._receive(sock, ready)
                        heard = time.monotonic()
                        for event in self._take(session, data):
                            if isinstance(event, PeerConnected):
                                ready = True
                                self._on_ready(session, address)
                            elif isinstance(event, AddressesLearned):
                                self.parts.state.add_peers(list(event.addresses), "exchange",
                                                           learned_from=address[0])
                        if progress is not None and session.clock_exchanged:
                            progress(replicator.entries_received - start,
                                     remaining(replicator, session))
        except PeerError as failure:
            error = failure
            error.peer = error.peer or format_address(address)
            self._say_goodbye(sock, session, out, error)
            raise
        finally:
            self._close(session, address, error, ready)

    def _take(self, session: Session, data: bytes) -> list[ReplicatorEvent]:
        try:
            return self.replicator.receive(session, data)
        except StorageFull:
            raise StoreBusy("this node's disk is full: it takes no entries for now "
                            "(it still serves); try again later") from None

    @staticmethod
    def _send(sock: socket.socket, data: bytearray) -> int:
        try:
            return sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:  # reset
            raise PeerTimeout("the peer closed the connection before the sync finished: "
                              f"{exc.strerror or exc}") from None

    @staticmethod
    def _receive(sock: socket.socket, ready: bool) -> bytes:
        try:
            data = sock.recv(READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError as exc:
            data = b""
            if ready:
                raise PeerTimeout("the peer closed the connection before the sync finished: "
                                  f"{exc.strerror or exc}") from None
        if not data:
            if not ready:
                raise HandshakeFailed(HANDSHAKE_CLOSED)
            raise PeerTimeout("the peer closed the connection before the sync finished")
        return data

    def _on_ready(self, session: Session, address: tuple[str, int]) -> None:
        peer = session.channel.remote_static
        assert peer is not None
        state = self.parts.state
        state.connected(address, peer, time.time())
        addresses = [a for a in state.good_addresses(MAX_ADDRESSES) if a != address]
        if addresses and not session.failed:
            session.send_peers(addresses)

    def _tick(self, now: float) -> None:
        """A second passed: the replicator's clock, and other processes' writes (a CLI
        publish, follow or import while this runs)."""
        store_version, state_version = self._store_version(), self.parts.state.data_version()
        replicator = self.replicator
        if state_version != self._versions[1]:
            state = self.parts.state
            replicator.set_follows(state.follows())
            follows = state.identity_follows()
            if follows != replicator.identities.follows:
                replicator.set_identity_follows(follows)
            replicator.reload_identities()
        if store_version != self._versions[0]:
            replicator.refresh_local()
        self._versions = (store_version, state_version)
        replicator.tick(now)

    def _store_version(self) -> int:
        version = getattr(self.parts.logbook.store, "data_version", None)
        return int(version()) if version is not None else 0

    def _say_goodbye(self, sock: socket.socket, session: Session, out: bytearray,
                     error: PeerError) -> None:
        """The session's error message to a peer that broke the protocol (spec/09 §6):
        best effort, for two seconds at most. Never to a stranger, never an answer
        to the peer's own error."""
        if isinstance(error, HandshakeFailed | ClosedByPeer):
            return
        session.fail(error)
        data = bytes(out) + session.data_to_send()
        until = time.monotonic() + 2.0
        try:
            sock.setblocking(True)
            while data and time.monotonic() < until:
                sock.settimeout(max(0.01, until - time.monotonic()))
                data = data[sock.send(data):]
        except OSError:
            pass

    def _close(self, session: Session, address: tuple[str, int], error: PeerError | None,
               ready: bool) -> None:
        """Forget the session, remember its clocks (not a misbehaving peer's), and
        record how the connection with ``address`` went."""
        misbehaved = error is not None and error.misbehaviour
        self.replicator.close_session(session, remember=not misbehaved)
        self.memory.flush()
        state = self.parts.state
        if isinstance(error, SelfConnection):
            state.forget(address)  # (this very node, heard of from a peer)
        elif not ready and not misbehaved and state.forget_unproven(address):
            pass  # a learned address whose handshake failed: forgotten (spec/14 §5)
        else:
            state.failed(address, time.time(), misbehaved=misbehaved,
                         disconnected=(error is None and ready) or isinstance(error, StoreBusy))
