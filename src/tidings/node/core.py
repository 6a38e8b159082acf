"""What a node is made of besides its event loop: the store, the node state, the
transport key and the chunk store of a home, and the replicator over them.

Both drivers of the replicator build it here: the trio node (``tidings up``, an
app's node: node/daemon.py) and the blocking one-peer client of ``tidings sync``
(node/client.py), which thus starts without loading trio.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from tidings.core.ids import FeedId
from tidings.errors import PeerTimeout, StorageFull, UsageError
from tidings.node.home import Home
from tidings.node.log import Logger
from tidings.node.options import NodeOptions
from tidings.node.state import MAX_REMEMBERED, Clocks, Digests, NodeState
from tidings.replication.identities import IdentityBook
from tidings.replication.replicator import Deferral, Replicator
from tidings.replication.session import Session
from tidings.storage.blobs import BlobStore
from tidings.storage.logbook import Logbook
from tidings.transport.channel import public_key
from tidings.wire.messages import Note

T = TypeVar("T")

# -- a connection's bounds (both drivers keep them) ------------------------------

#: A peer must finish the handshake and hello within this many seconds: a few
#: round trips, so short; a connection that has not finished is the first evicted.
HANDSHAKE_TIMEOUT = 5.0
#: Silence longer than this ends a connection; a ping goes out after PING_AFTER
#: idle seconds, so a live peer is never silent that long.
IDLE_TIMEOUT = 90.0
PING_AFTER = 30.0
CONNECT_TIMEOUT = 10.0
#: What a peer closing during the handshake may mean: the node cannot tell which.
HANDSHAKE_CLOSED = (
    "the peer closed the connection during the handshake: it may be at its bound of "
    "connections from this address (try again later), on another network (check "
    "--network), or speak another protocol version (this node speaks tidings/transport/2)"
)
#: Bytes taken from the socket at most per read. Whatever the kernel holds is
#: processed under one store commit, so a large read while the peer streams
#: means few fsyncs; the channel itself buffers at most one frame and one message.
#: 4 MiB: a blob download hands the threads few, large reads (each read costs a hop
#: to a worker thread or two, which on a busy machine can cost more than the work).
READ_SIZE = 4 * 1024 * 1024
#: Output queued for one peer beyond which its requests are not read: answers
#: wait for the socket, so a peer that never reads costs at most this much.
MAX_QUEUED_OUTPUT = 1024 * 1024

# -- clocks ----------------------------------------------------------------------

#: Notes of past sessions a node keeps in memory (the clocks it last wrote for its
#: most recent peers), besides the file: about 100 bytes each, so 20 MiB at most.
KEPT_NOTES = 200_000


class ClockMemory:
    """The replicator's clock memory in the node state, namespaced by our own key.

    ``tidings up`` and ``tidings sync`` use different transport keys on one
    home, so each keeps its own record of what it told each peer.
    """

    def __init__(self, state: NodeState, local_key: bytes) -> None:
        self.state = state
        self.prefix = local_key[:8]
        #: Clocks to write, taken under the replicator's lock and written after it
        #: is released (:meth:`flush`): a large clock never stalls replication.
        #: Each with the notes the file held at the load it follows, or None:
        #: then the save writes every note.
        self._pending: dict[bytes, tuple[dict[FeedId, Note], dict[FeedId, Note],
                                         Clocks | None, bytes | None]] = {}
        self._guard = threading.Lock()
        #: What the file held for each peer at its session's load, and how many
        #: saves for that peer came before: a save writes only the notes that
        #: changed since, unless another session with the peer saved meanwhile.
        self._loaded: dict[bytes, tuple[int, Clocks | None]] = {}
        self._saves: dict[bytes, int] = {}
        #: The clocks last written for recent peers, with the time they were saved
        #: under: while the file still names that time for the peer (no other process
        #: wrote it since), a reconnect reads one row instead of one per feed.
        self._kept: OrderedDict[bytes, tuple[float, Clocks, Digests]] = OrderedDict()
        self._kept_notes = 0
        #: The digests of the clocks each load gave, until the session takes them.
        self._digests: dict[bytes, Digests] = {}

    def load(self, peer: bytes) -> Clocks:
        with self._guard:
            pending = self._pending.get(peer)
            kept = self._kept.get(peer)
        digests: Digests = (None, None)
        if pending is not None:  # not on disk yet: the next save writes it all
            sent, received = dict(pending[0]), dict(pending[1])
            since: Clocks | None = None
        elif kept is not None and self.state.saved_at(self.prefix + peer) == kept[0]:
            since, digests = kept[1], kept[2]  # (never changed: a later save keeps new dicts)
            sent, received = dict(since[0]), dict(since[1])
        else:
            sent, received = self.state.load(self.prefix + peer)
            digests = self.state.digests(self.prefix + peer)
            since = (dict(sent), dict(received))
        with self._guard:
            if len(self._digests) > 4 * MAX_REMEMBERED:  # (taken at once by the session)
                self._digests.clear()
            self._digests[peer] = digests
            if len(self._loaded) > 4 * MAX_REMEMBERED:  # sessions never saved (strangers)
                self._loaded.clear()  # (a session's save then writes every note: safe)
            self._loaded[peer] = (self._saves.get(peer, 0), since)
        return sent, received

    def save(self, peer: bytes, sent: dict[FeedId, Note], received: dict[FeedId, Note],
             settled: bytes | None = None) -> None:
        """Remember the clocks of a session with ``peer`` (written by :meth:`flush`);
        ``settled``: see :meth:`NodeState.save`."""
        with self._guard:
            saves, since = self._loaded.pop(peer, (-1, None))
            if saves != self._saves.get(peer, 0) or peer in self._pending:
                since = None  # written by another session since, or not yet: write it all
            if len(self._saves) > 4 * MAX_REMEMBERED:  # strangers with fresh keys: start over
                self._saves.clear()
                self._loaded.clear()
            self._saves[peer] = self._saves.get(peer, 0) + 1
            self._pending[peer] = (sent, received, since, settled)

    def settled(self, peer: bytes) -> bytes | None:
        """The stamp the clocks of ``peer`` were last saved settled under, if they were."""
        with self._guard:
            if peer in self._pending:
                return None
        return self.state.settled(self.prefix + peer)

    def digests(self, peer: bytes) -> Digests:
        """``clock_digest`` of the clocks the last load gave for ``peer``, where known."""
        with self._guard:
            return self._digests.pop(peer, (None, None))

    def remembers(self, peer: bytes) -> bool:
        """Whether this session with ``peer`` began with its clocks remembered (it earned
        that before): they are kept up to date then, or the next session would find
        them stale, and both sides would send their whole clocks again."""
        with self._guard:
            loaded = self._loaded.get(peer)
            return peer in self._pending or (
                loaded is not None and (loaded[1] is None or any(loaded[1])))

    def flush(self) -> None:
        """Write the clocks saved since the last flush (outside the replicator's lock)."""
        while True:
            with self._guard:
                if not self._pending:
                    return
                peer = next(iter(self._pending))
                sent, received, since, settled = self._pending[peer]
            saved, digests = self.state.save(self.prefix + peer, sent, received, since=since,
                                             settled=settled)
            with self._guard:
                if self._pending.get(peer, (None,))[0] is sent:
                    del self._pending[peer]
                self._keep(peer, saved, (dict(sent), dict(received)), digests)

    def _keep(self, peer: bytes, saved: float, clocks: Clocks, digests: Digests) -> None:
        """Keep ``clocks`` as the file holds them for ``peer``, within KEPT_NOTES (under
        the guard); the least recently saved peers are forgotten first."""
        old = self._kept.pop(peer, None)
        if old is not None:
            self._kept_notes -= len(old[1][0]) + len(old[1][1])
        self._kept[peer] = (saved, clocks, digests)
        self._kept_notes += len(clocks[0]) + len(clocks[1])
        while self._kept_notes > KEPT_NOTES:
            _, (_, gone, _) = self._kept.popitem(last=False)
            self._kept_notes -= len(gone[0]) + len(gone[1])


class StateWrites:
    """Writes to node.sqlite3 (peer table, clocks) that may find it busy (another
    process writing) or its disk full: the driver goes on without them (a missed write
    costs a backoff or a full clock), and the first failure is logged once."""

    def __init__(self, log: Logger) -> None:
        self._log = log
        self._failed = False

    def __call__(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return call(*args, **kwargs)
        except (sqlite3.Error, StorageFull) as exc:
            if not self._failed:
                self._failed = True
                self._log.warning("state-write-failed", error=f"{type(exc).__name__}: {exc}",
                                  detail="peers and clocks are not recorded meanwhile")
            return None


class UploadBucket:
    """A connection's upload rate limit (``blob_upload_rate``): a token bucket of one
    second's worth of blob chunk bytes; with no rate, no limit. The replicator's pump
    takes :meth:`budget` as its ``blob_budget``, then :meth:`spent` counts what went."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.tokens = 0.0
        self._refilled = time.monotonic()
        self._sent_before = 0

    def budget(self, session: Session) -> int | None:
        """Blob bytes ``session`` may send now (None: no limit)."""
        rate = self.rate
        if not rate:
            return None
        now = time.monotonic()
        self.tokens = min(float(rate), self.tokens + (now - self._refilled) * rate)
        self._refilled = now
        self._sent_before = session.blobs.bytes_sent
        return max(0, int(self.tokens))

    def spent(self, session: Session) -> None:
        if self.rate:
            self.tokens -= session.blobs.bytes_sent - self._sent_before

    def refill_wait(self) -> float | None:
        """Seconds until the bucket holds bytes again, once spent (None: no limit)."""
        return max(0.01, -self.tokens / self.rate) if self.rate else None


class Parts:
    """A home opened for a node: its store, node state, transport key and chunk store
    (None: this process moves no blobs). :meth:`close` closes the first two."""

    def __init__(self, logbook: Logbook, state: NodeState, key: bytes,
                 blobs: BlobStore | None) -> None:
        self.logbook, self.state, self.key, self.blobs = logbook, state, key, blobs

    def close(self) -> None:
        self.logbook.store.close()
        self.state.close()
        if self.blobs is not None:
            self.blobs.close()  # (its lock: another open of the home may take it)


def open_parts(home: Home, options: NodeOptions, log: Logger, *,
               key_file: str | None = None, create: bool = False) -> Parts:
    """Open what a node of ``home`` runs on (blocking). ``key_file`` names another
    transport key than the node's own (``sync`` and ``fetch`` use theirs, so they may
    run beside ``up``). Without ``create`` the home must hold an identity; with it, a
    missing home is made without one (a client that only keeps others' feeds)."""
    book = home.open_logbook(create=True) if create else home.open_logbook(need_identity=True)
    try:
        state = NodeState(home.node_state_path)
    except BaseException:
        book.store.close()
        raise
    key = home.transport_key() if key_file is None else home.transport_key(key_file)
    try:
        blobs: BlobStore | None = BlobStore.in_home(home.path, quota=options.blob_quota)
    except UsageError as exc:
        # One process at a time keeps the chunk store (`tidings sync` beside `up`):
        # this one replicates logs only.
        log.warning("blobs-unavailable", error=str(exc))
        blobs = None
    return Parts(book, state, key, blobs)


def make_replicator(logbook: Logbook, state: NodeState, key: bytes, options: NodeOptions,
                    log: Logger, blobs: BlobStore | None,
                    settled: Callable[[bytes], Digests | None] | None = None,
                    ) -> tuple[Replicator, ClockMemory]:
    """The replicator of a node with these parts, and its clock memory; with
    ``settled`` (see :class:`Deferral`), one that loads its state when first needed."""
    memory = ClockMemory(state, public_key(key))
    replicator = Replicator(
        logbook, static_private=key, network_key=options.network_key,
        follows=state.follows() if settled is None else (), hops=options.hops,
        relay=options.relay, relay_max_feeds=options.relay_max_feeds,
        relay_max_bytes=options.relay_max_bytes,
        memory=memory, log=replicator_log(state, log),
        identities=IdentityBook(state, state.identity_follows()),
        blobs=blobs, blob_policy=options.blob_policy,
        defer=None if settled is None else Deferral(state.follows, settled),
    )
    return replicator, memory


def replicator_log(state: NodeState, log: Logger) -> Callable[..., None]:
    """What the replicator tells the operator (forks found and proven, damaged bytes,
    blobs), as ``log`` lines; a feed of this author's found further on a peer is
    noted in ``state`` (a publish to it now would fork it)."""
    blob_started: dict[str, float] = {}

    def event(name: str, **fields: object) -> None:
        level = ("info" if name in ("fork-suspected", "identity-changed")
                 or name.startswith("blob-") else "warning")
        if name == "own-feed-behind":  # (in the worker thread: the state has its own lock)
            state.note_own_head(FeedId.parse(str(fields["feed"])), int(str(fields["seq"])))
            fields = {**fields, "hint": "sync before publishing to it: a post now would fork it"}
        elif name == "blob-refused":
            level = "warning"
        elif name == "blob-wanted":
            blob_started[str(fields["blob"])] = time.monotonic()
        elif name == "blob-complete":
            started = blob_started.pop(str(fields["blob"]), None)
            if started is not None:
                fields["seconds"] = f"{time.monotonic() - started:.2f}"
        log.log(level, name, **fields)

    return event


def check_caught_up(replicator: Replicator, session: Session) -> None:
    """Caught up with ``session``'s peer, but is something left that it will never give?
    Raises PeerTimeout naming it (a stalled source, another branch of a forked feed)."""
    local, peer = replicator.local, replicator.peer(session)
    if peer is None or not (peer.stalled or peer.diverged):
        return  # (the usual end: nothing the peer holds is withheld, at any number of feeds)
    caps = replicator.identity_caps  # a revoked device's feed ends at its cut
    behind = [f for f in local.wanted if session.peer_seq(f) > local.seq(f)
              and f not in replicator.forked_at and local.seq(f) < caps.get(f, 2**64)]
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


def remaining(replicator: Replicator, session: Session) -> int:
    """Entries the peer holds of the wanted feeds that this node does not (yet)."""
    local = replicator.local
    return sum(max(0, session.peer_seq(f) - local.seq(f)) for f in local.wanted)
