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

import errno
import json
import math
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from itertools import compress
from operator import attrgetter, not_
from typing import Any

import tidings
from tidings.core.records import record
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
    StateWrites,
    UploadBucket,
    check_caught_up,
    make_replicator,
    remaining,
)
from tidings.node.log import Logger
from tidings.node.options import NodeOptions, format_address
from tidings.replication.replicator import (
    SEND_BUDGET,
    AddressesLearned,
    PeerConnected,
    Replicator,
    ReplicatorEvent,
)
from tidings.replication.session import Session
from tidings.wire.messages import MAX_ADDRESSES, VERSIONS

#: How often time passes for the replicator (stalled sources) and other processes'
#: writes to the home are looked for.
TICK = 1.0


class Timeout(Exception):
    """The caller's deadline passed before the peer's entries were all in."""


_SEQ = attrgetter("seq")


@record
class Summary:
    """What a sync leaves of the followed feeds, as ``tidings sync`` reports it."""

    followed: int  # the feeds wanted (followed, and the followed identities' devices')
    absent: tuple[str, ...]  # those the peer holds nothing of, sorted
    forked: dict[str, int]  # those forked, and the seq of the fork


def summarize(replicator: Replicator, session: Session) -> Summary:
    noted, wanted = session.received, replicator.local.wanted
    # (in C-level passes: 10,000 feeds took a no-op reconnect ~10 ms in a loop)
    absent = (wanted - noted.keys()) | wanted.intersection(
        compress(noted, map(not_, map(_SEQ, noted.values()))))
    forked = {str(f): at for f, at in replicator.forked_at.items() if f in wanted}
    return Summary(len(wanted), tuple(sorted(map(str, absent))), forked)


class SyncClient:
    """The replicator of a home's parts, dialing one peer (blocking)."""

    def __init__(self, parts: Parts, options: NodeOptions, log: Logger | None = None) -> None:
        self.parts = parts
        self.log = log or Logger(level="quiet")
        self.replicator: Replicator
        self.replicator, self.memory = make_replicator(
            parts.logbook, parts.state, parts.key, options, self.log, parts.blobs,
            settled=self._settled)
        #: What a home is, as far as the feeds it wants and holds go, but for the
        #: store's generation and the state's stamp (see :meth:`_stamp`).
        identity = parts.logbook.identity
        self._options = (f"tidings={tidings.__version__} wire={max(VERSIONS)} "
                         f"hops={options.hops} network={options.network_key.hex()} "
                         f"blobs={parts.blobs is not None} "
                         f"own={identity.author.key.hex() if identity else ''}")
        #: The report of the last session that ended settled, when this one starts so.
        self.settled_summary: Summary | None = None
        self.session: Session | None = None
        self._versions = (self._store_version(), parts.state.data_version())
        self._state = StateWrites(self.log)
        #: The upload rate's token bucket (blob chunks the peer asks of this home).
        self._upload = UploadBucket(options.blob_upload_rate)

    def sync(self, address: tuple[str, int], *, timeout: float = math.inf,
             progress: Callable[[int, int], None] | None = None) -> Session:
        """Dial ``address`` and return the session once this home holds everything it
        wants that the peer holds (its clocks are remembered by then).

        Raises OSError when the peer cannot be reached, the PeerError that ended the
        session (PeerTimeout when the peer went away or claims what it never sends),
        and :class:`Timeout` once ``timeout`` seconds passed.
        """
        deadline = time.monotonic() + timeout
        sock = _dial(address, min(deadline, time.monotonic() + CONNECT_TIMEOUT))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self.session = session = self.replicator.open_session(initiator=True)
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                self._run(_Link(sock, selector, address), session, deadline, progress)
            return session
        finally:
            sock.close()

    def _run(self, link: _Link, session: Session, deadline: float,
             progress: Callable[[int, int], None] | None) -> None:
        replicator = self.replicator
        start = replicator.entries_received
        now = time.monotonic()
        handshake_by, heard, next_tick = now + HANDSHAKE_TIMEOUT, now, now + TICK
        ready = False
        error: PeerError | None = None  # what the session failed with (the peer's fault)
        ended: PeerError | None = None  # what ends the sync but is no fault of the session
        try:
            while True:
                if not link.out:  # (what the session queued meanwhile, once the last went)
                    link.out += replicator.pump(session, SEND_BUDGET,
                                                self._upload.budget(session))
                    self._upload.spent(session)
                if ready and replicator.caught_up(session):
                    try:
                        check_caught_up(replicator, session)
                    except PeerTimeout as stalled:  # (what this peer will never give)
                        ended = stalled
                    link.drain(2.0)  # (notes: what the remembered clocks say it was told)
                    return
                now = time.monotonic()
                if now >= deadline:
                    raise Timeout
                if now >= next_tick:
                    next_tick = now + TICK
                    self._tick(now)
                if ready and now - link.sent >= PING_AFTER and not session.failed:
                    session.ping()
                    link.out += replicator.pump(session, SEND_BUDGET, 0)
                    link.sent = now  # (it goes at the next write)
                # A peer that asks faster than it reads the answers is not read until it
                # has taken them (bounded memory, as the node does: spec/14 §6); its
                # silence meanwhile is not counted.
                reading = session.channel.pending_output <= MAX_QUEUED_OUTPUT
                if not reading:
                    heard = now
                silent_by = heard + IDLE_TIMEOUT if ready else handshake_by
                if now >= silent_by:
                    raise PeerTimeout(f"silent for {IDLE_TIMEOUT:.0f} s" if ready else
                                      f"no handshake within {HANDSHAKE_TIMEOUT:.0f} s")
                wait = min(deadline, next_tick, silent_by, link.sent + PING_AFTER) - now
                refill = self._upload.refill_wait()
                if refill is not None and session.blobs.serving:  # the bucket refills
                    wait = min(wait, refill)
                readable, writable = link.wait(reading, max(0.0, wait))
                data = link.read() if readable else None
                if writable and not link.write() and data is None:
                    data = b""  # (reset: the peer is gone, as if it had closed)
                if data is not None:
                    heard = time.monotonic()
                    if not data:
                        if not ready:
                            raise HandshakeFailed(HANDSHAKE_CLOSED)
                        ended = PeerTimeout("the peer closed the connection before the sync "
                                            "finished")
                        return
                    for event in self._take(session, data):
                        if isinstance(event, PeerConnected):
                            ready = True
                            self._on_ready(session, link.address)
                        elif isinstance(event, AddressesLearned):
                            self._state(self.parts.state.add_peers, list(event.addresses),
                                        "exchange", learned_from=link.address[0])
                    if progress is not None and session.clock_exchanged:
                        progress(replicator.entries_received - start,
                                 remaining(replicator, session))
        except PeerError as failure:
            error = failure
            error.peer = error.peer or format_address(link.address)
            self._say_goodbye(link, session, error)
            raise
        finally:
            self._close(session, link.address, error, ready)
            if ended is not None:
                ended.peer = ended.peer or format_address(link.address)
                raise ended

    def _take(self, session: Session, data: bytes) -> list[ReplicatorEvent]:
        try:
            return self.replicator.receive(session, data)
        except StorageFull:
            raise StoreBusy("this node's disk is full: it takes no entries for now "
                            "(it still serves); try again later") from None

    def _on_ready(self, session: Session, address: tuple[str, int]) -> None:
        peer = session.channel.remote_static
        assert peer is not None
        state = self.parts.state
        self._state(state.connected, address, peer, time.time())
        addresses = [a for a in self._state(state.good_addresses, MAX_ADDRESSES) or ()
                     if a != address]
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

    def _stamp(self) -> str | None:
        """What decides this home's notes: the same stamp, the same notes (None: the
        store keeps no generation). The last arrival is there too: a tidings older than
        schema 6 (a node still running when the store was migrated) appends without
        counting the generation up."""
        store = self.parts.logbook.store
        generation = getattr(store, "generation", None)
        if generation is None:
            return None
        return (f"{generation()} {store.last_arrival()} {self._options} "
                f"{self.parts.state.stamp().decode()}")

    def _settled(self, peer: bytes) -> tuple[bytes | None, bytes | None] | None:
        """The replicator's :class:`Deferral`: the digests of the clocks remembered for
        ``peer`` when they were saved settled and this home has not changed since."""
        saved = self.memory.settled(peer)
        if saved is None:
            return None
        try:
            found = json.loads(saved)
            summary = Summary(int(found["followed"]), tuple(found["absent"]),
                              dict(found["forked"]))
        except (ValueError, KeyError, TypeError):
            return None
        if found.get("stamp") != self._stamp():
            return None
        self.settled_summary = summary
        return self.parts.state.digests(self.memory.prefix + peer)

    def _settled_stamp(self, session: Session) -> bytes | None:
        """What to save with the clocks of ``session`` if it ended settled: the home's
        stamp and the sync's report (None: it did not, or another process wrote to
        the home since this one last looked)."""
        replicator = self.replicator
        if not replicator.loaded or session.settled or not replicator.settles(session):
            return None
        stamp = self._stamp()  # (read first: a write that comes before it shows below)
        if stamp is None or (self._store_version(), self.parts.state.data_version()
                             ) != self._versions:
            return None
        summary = summarize(replicator, session)
        return json.dumps({"stamp": stamp, "followed": summary.followed,
                           "absent": summary.absent, "forked": summary.forked}).encode()

    def _store_version(self) -> int:
        version = getattr(self.parts.logbook.store, "data_version", None)
        return int(version()) if version is not None else 0

    @staticmethod
    def _say_goodbye(link: _Link, session: Session, error: PeerError) -> None:
        """The session's error message to a peer that broke the protocol (spec/09 §6):
        best effort, for two seconds at most. Never to a stranger, never an answer
        to the peer's own error."""
        if isinstance(error, HandshakeFailed | ClosedByPeer):
            return
        session.fail(error)
        link.out += session.data_to_send()
        link.drain(2.0)

    def _close(self, session: Session, address: tuple[str, int], error: PeerError | None,
               ready: bool) -> None:
        """Forget the session, remember its clocks (not a misbehaving peer's), and
        record how the connection with ``address`` went."""
        misbehaved = error is not None and error.misbehaviour
        settled = None if misbehaved else self._state(self._settled_stamp, session)
        self.replicator.close_session(session, remember=not misbehaved, settled=settled)
        self._state(self.memory.flush)
        state = self.parts.state
        if isinstance(error, SelfConnection):
            self._state(state.forget, address)  # (this very node, heard of from a peer)
        elif not ready and not misbehaved and self._state(state.forget_unproven, address):
            pass  # a learned address whose handshake failed: forgotten (spec/14 §5)
        else:
            self._state(state.failed, address, time.time(), misbehaved=misbehaved,
                        disconnected=(error is None and ready) or isinstance(error, StoreBusy))


#: Seconds an address has to answer before the next one is tried beside it (RFC 8305's
#: "connection attempt delay", as trio's open_tcp_stream waits).
ATTEMPT_DELAY = 0.25


def _dial(address: tuple[str, int], deadline: float) -> socket.socket:
    """A TCP connection to ``address`` by ``deadline``: its name looked up, then its
    addresses tried in order, each one ATTEMPT_DELAY after the one before while the
    earlier ones still may answer (an address that never does costs a quarter of a
    second, not the deadline); the first to connect is kept. Raises OSError
    (TimeoutError when the deadline passed)."""
    host, port = address
    found: list[list[Any] | OSError] = []
    lookup = threading.Thread(target=lambda: found.append(_addresses(host, port)),
                              name="tidings-lookup", daemon=True)
    lookup.start()  # (getaddrinfo has no timeout of its own; a daemon thread left
    lookup.join(max(0.0, deadline - time.monotonic()))  # waiting is dropped at exit)
    if not found:
        raise TimeoutError(f"no address found for {host} in time")
    if isinstance(found[0], OSError):
        raise found[0]
    waiting = list(found[0])
    last: OSError = TimeoutError("timed out")
    with selectors.DefaultSelector() as selector:
        trying: dict[socket.socket, None] = {}
        try:
            next_at = time.monotonic()
            while waiting or trying:
                now = time.monotonic()
                if now >= deadline:
                    raise last if not trying else TimeoutError("timed out")
                if waiting and (now >= next_at or not trying):
                    family, kind, proto, _, where = waiting.pop(0)
                    sock = socket.socket(family, kind, proto)
                    try:
                        sock.setblocking(False)
                        error = sock.connect_ex(where)
                    except BaseException:
                        sock.close()
                        raise
                    if error not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                        sock.close()
                        last = OSError(error, os.strerror(error))
                        continue
                    trying[sock] = None
                    selector.register(sock, selectors.EVENT_WRITE)
                    next_at = now + ATTEMPT_DELAY
                wake = min(deadline, next_at) if waiting else deadline
                for key, _ in selector.select(max(0.0, wake - time.monotonic())):
                    sock = key.fileobj  # type: ignore[assignment]
                    selector.unregister(sock)
                    del trying[sock]
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        sock.close()
                        last = OSError(error, os.strerror(error))
                        continue
                    sock.setblocking(True)
                    return sock
            raise last
        finally:
            for sock in trying:
                sock.close()


def _addresses(host: str, port: int) -> list[Any] | OSError:
    try:
        # (an ASCII name as bytes: the C resolver takes it as it is, without the IDNA
        # codec, which refuses names such as "a..b" with a UnicodeError)
        return socket.getaddrinfo(host.encode("ascii") if host.isascii() else host, port,
                                  type=socket.SOCK_STREAM)
    except OSError as exc:
        return exc
    except UnicodeError as exc:
        return socket.gaierror(socket.EAI_NONAME, f"not a host name: {exc}")


class _Link:
    """The connection's socket (non-blocking), its selector, and the bytes not sent yet."""

    def __init__(self, sock: socket.socket, selector: selectors.BaseSelector,
                 address: tuple[str, int]) -> None:
        self.sock, self.selector, self.address = sock, selector, address
        self.out = bytearray()
        self.sent = time.monotonic()  # when bytes last went (the ping's clock)

    def wait(self, reading: bool, timeout: float) -> tuple[bool, bool]:
        """Wait up to ``timeout`` for the socket: (readable, writable)."""
        events = (selectors.EVENT_READ if reading else 0) | (
            selectors.EVENT_WRITE if self.out else 0)
        if not events:  # (nothing to read or write: only the time passes)
            time.sleep(timeout)
            return False, False
        self.selector.modify(self.sock, events)
        readable = writable = False
        for _, mask in self.selector.select(timeout):
            readable = bool(mask & selectors.EVENT_READ)
            writable = bool(mask & selectors.EVENT_WRITE)
        return readable, writable

    def write(self) -> bool:
        """Send what the socket takes now; False when the peer is gone (reset)."""
        try:
            written = self.sock.send(self.out)
        except BlockingIOError:
            return True
        except OSError:
            return False
        del self.out[:written]
        self.sent = time.monotonic()
        return True

    def read(self) -> bytes | None:
        """What came: b"" when the peer closed the connection (or reset it), None when
        nothing had come after all."""
        try:
            return self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def drain(self, seconds: float) -> None:
        """Send what is queued, for ``seconds`` at most; a peer gone meanwhile is ignored."""
        until = time.monotonic() + seconds
        while self.out and time.monotonic() < until:
            self.selector.modify(self.sock, selectors.EVENT_WRITE)
            if self.selector.select(max(0.0, until - time.monotonic())) and not self.write():
                return
