"""Fetching blobs from the connected peers, and serving them (spec/13 §8, §9).

Pure but for the chunk store, like the replicator that owns it. A
:class:`BlobFetcher` keeps the blobs this node wants (attachments of posts in
the feeds it replicates, within its :class:`BlobPolicy`; blobs asked for
explicitly; partial blobs found in the store at start, so a download resumes
after a crash from the chunks it holds), learns which peers hold which chunks
(``blob-query`` with a subscription, ``blob-have``), and splits the missing
chunks among them: each peer gets at most :data:`PEER_IN_FLIGHT` chunks
requested and unanswered at first, growing as it answers (up to
:data:`MAX_PEER_IN_FLIGHT`), in requests of up to :data:`REQUEST_CHUNKS`, so a fast
peer takes more and a slow one holds back little. A chunk that fails its proof is
the peer's error (the session ends with ``invalid-data``; the chunks before it
are kept); chunks a peer left out of an answer are asked of another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import field
from operator import itemgetter, methodcaller

from tidings.core.blob import BlobId, InvalidBlob
from tidings.core.ids import FeedId
from tidings.core.records import record
from tidings.errors import InvalidData
from tidings.replication.blob_policy import BlobPolicy
from tidings.replication.blob_session import (
    BlobChunksReceived,
    BlobHeld,
    BlobQueried,
    BlobServe,
)
from tidings.replication.peer import Peer
from tidings.replication.session import Session
from tidings.storage.blobs import BlobQuotaExceeded, BlobStore, VerifiedChunk
from tidings.wire.messages import BLOB_WIRE_VERSION, MAX_BLOB_DATA_CHUNKS, MAX_BLOB_RANGES

#: What writing one blob's checked chunks came to: the indexes now held, or why none are.
WriteResult = list[int] | BlobQuotaExceeded | OSError

#: Chunks requested and unanswered per peer at first: 2 MiB, so that a slow peer
#: holds back little (spec/13 §9)...
PEER_IN_FLIGHT = 32
#: ...growing by each chunk the peer sends (doubling each round trip, like TCP's slow
#: start) up to 16 MiB, so that a fast peer keeps its pipe full while the receiver
#: checks and writes what came before.
MAX_PEER_IN_FLIGHT = 256
#: Chunks one request asks for at most: several requests per peer in flight, so the
#: next is already asked when one answer ends.
REQUEST_CHUNKS = 32
#: Chunk bytes checked before they are written with one pair of fsyncs: few fsyncs
#: per blob, and a crash costs at most this much fetched again.
FLUSH_BYTES = 4 * 1024 * 1024
#: Chunk bytes checked and not yet durable (write-behind: a batch being written and
#: the next): past this no more chunks are asked for, so a slow disk bounds memory.
MAX_UNWRITTEN = 4 * FLUSH_BYTES
#: Whether a payload may attach a blob: a post's attachment names its blob under this
#: key, so a payload without these bytes attaches none (most payloads).
_may_attach = methodcaller("__contains__", b"blob")
_payload_of = itemgetter(1)  # of an item (entry bytes, payload or None)
_first_byte = itemgetter(0)
#: The first bytes of a payload that is not content: content is one CBOR map of a
#: definite length (0xa0..0xbb, core/content.py), so no other payload is a post.
_NOT_CONTENT_HEADS = bytes(set(range(256)) - set(range(0xA0, 0xBC)))


def blobs_in(payload: bytes | None) -> list[tuple[BlobId, str]]:
    """The blobs a payload's post attaches, with their media types (cheaply: most
    payloads never mention a blob)."""
    if payload is None or not _may_attach(payload):
        return []
    from tidings.core.content import Post, decode  # (here: a sync starts without it)

    content = decode(payload)
    if not isinstance(content, Post):
        return []
    return [(a.blob, a.media_type) for a in content.attachments if a.blob is not None]


@record(frozen=False, slots=False, eq=False)
class _Want:
    blob: BlobId
    #: Chunks not held, ascending (a dict as an ordered set).
    missing: dict[int, None]
    #: Chunks asked for and not yet answered, and of whom.
    in_flight: dict[int, Peer] = field(default_factory=dict)
    #: What each peer said it holds: a bitmap, or None for all of it.
    holders: dict[Peer, bytes | None] = field(default_factory=dict)
    #: Chunk bytes stored in this run (what a resumed download fetched again).
    fetched: int = 0
    #: The transport keys of the peers that sent chunks of it.
    sources: set[bytes] = field(default_factory=set)
    #: Chunks checked, to write with the next flush.
    unwritten: list[VerifiedChunk] = field(default_factory=list)
    #: Batches of it being written (write-behind): complete only once they are.
    writing: int = 0


@record(frozen=False, slots=False, eq=False)
class _PeerFetch:
    #: Our open requests to this peer: request id -> (blob, chunks asked, not yet received).
    requests: dict[int, tuple[BlobId, set[int]]] = field(default_factory=dict)
    #: Blobs to query once a request slot frees.
    to_query: list[BlobId] = field(default_factory=list)
    #: Chunks it may have requested and unanswered (PEER_IN_FLIGHT, growing).
    window: int = PEER_IN_FLIGHT

    @property
    def in_flight(self) -> int:
        return sum(len(chunks) for _, chunks in self.requests.values())


@record
class BlobStored:
    """Chunks of ``blob`` are durable in the store (``complete``: all of them)."""

    blob: BlobId
    chunks: int
    complete: bool


class BlobFetcher:
    """The blobs a node wants and the peers it fetches them from."""

    def __init__(self, store: BlobStore, policy: BlobPolicy | None = None, *,
                 log: Callable[..., None] | None = None, write_behind: bool = False) -> None:
        self.store = store
        #: The driver writes checked chunks itself (:meth:`take_unwritten`, in another
        #: thread, then :meth:`written`) when :attr:`flush_wanted` is set; else they
        #: are written in :meth:`on_chunks` and :meth:`tick`.
        self.write_behind = write_behind
        self.flush_wanted = False
        self.policy = policy or BlobPolicy()
        self.log: Callable[..., None] = log or (lambda event, **fields: None)
        self.wants: dict[BlobId, _Want] = {}
        self._peers: dict[Peer, _PeerFetch] = {}
        #: Bytes of chunks checked and not yet written (at most about FLUSH_BYTES).
        self._unwritten = 0
        for info in store.blobs():
            if not info.complete:  # a download cut short: resume it
                self.want(info.blob_id)

    # -- what this node wants ------------------------------------------------------------

    def want(self, blob: BlobId, *, pin: bool = False) -> bool:
        """Fetch ``blob`` from whoever holds it; False if it is held whole already."""
        if blob in self.wants:
            if pin:
                self.store.begin(blob, pin=True)
            return True
        try:
            self.store.begin(blob, pin=pin)
        except BlobQuotaExceeded as exc:
            self.log("blob-refused", blob=str(blob), error=str(exc))
            return False
        if self.store.has(blob):
            return False
        missing = dict.fromkeys(self.store.missing(blob))
        self.wants[blob] = _Want(blob, missing)
        self.log("blob-wanted", blob=str(blob), size=blob.size, missing=len(missing))
        for peer, fetch in self._peers.items():
            fetch.to_query.append(blob)
            self.schedule(peer)
        return True

    def drop(self, blob: BlobId) -> None:
        """Stop fetching ``blob`` (removed by its owner); answers in flight are ignored."""
        want = self.wants.pop(blob, None)
        if want is not None:
            self._unwritten -= sum(len(data) for _, data, _ in want.unwritten)
            want.unwritten = []
            for peer in want.holders:
                self.schedule(peer)

    def scan(self, feed: FeedId, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """New entries of ``feed``: want the blobs their posts attach, by policy. (The
        payloads that may attach one are found in C-level passes over the run.)"""
        payloads = list(filter(None, map(_payload_of, items)))
        if not bytes(map(_first_byte, payloads)).translate(None, _NOT_CONTENT_HEADS):
            return  # (no payload is content, so none attaches a blob)
        for payload in filter(_may_attach, payloads):
            for blob, _media in blobs_in(payload):
                if blob not in self.wants and self.policy.accepts(feed, blob.size) \
                        and not self.store.has(blob) and not self.store.was_removed(blob):
                    self.want(blob)

    # -- peers -----------------------------------------------------------------------------

    def peer_ready(self, peer: Peer) -> None:
        if (peer.session.version or 0) < BLOB_WIRE_VERSION:
            return
        self._peers[peer] = _PeerFetch(to_query=list(self.wants))
        self.schedule(peer)

    def peer_gone(self, peer: Peer) -> None:
        fetch = self._peers.pop(peer, None)
        if fetch is None:
            return
        for want in self.wants.values():
            want.holders.pop(peer, None)
            for index in [i for i, p in want.in_flight.items() if p is peer]:
                del want.in_flight[index]
        for other in list(self._peers):
            self.schedule(other)

    def on_held(self, peer: Peer, event: BlobHeld) -> None:
        want = self.wants.get(event.blob)
        if want is None:
            return  # a hint about a blob this node does not want: ignored
        want.holders[peer] = event.held
        self.schedule(peer)

    def on_chunks(self, peer: Peer, event: BlobChunksReceived) -> list[BlobStored]:
        """An answer's chunks: each checked against the blob id at once (raises
        InvalidData at the first that fails; those before it are kept), then written
        in batches of FLUSH_BYTES, each with one pair of fsyncs (a crash loses at most
        that much, fetched again)."""
        want = self.wants.get(event.blob)
        failure: InvalidBlob | None = None
        if want is not None and event.chunks:
            accepted, failure = self.store.verify_chunks(event.blob, event.chunks)
            accepted = [chunk for chunk in accepted if chunk[0] in want.missing]
            if accepted and peer.key is not None:
                want.sources.add(peer.key)
            for chunk in accepted:
                del want.missing[chunk[0]]
                want.fetched += len(chunk[1])
                self._unwritten += len(chunk[1])
            want.unwritten.extend(accepted)
        self._answered(peer, event)
        if failure is not None:
            if self.write_behind:
                self.flush_wanted = True
            else:
                self.flush()  # the chunks before the bad one are kept
            raise InvalidData(InvalidBlob(failure.rule, f"{failure.detail} (blob {event.blob})",
                                          index=failure.index))
        stored = []
        if want is not None and (not want.missing or self._unwritten >= FLUSH_BYTES):
            if self.write_behind:
                self.flush_wanted = True
            else:
                stored = self.flush()
        self.schedule(peer)
        return stored

    def flush(self) -> list[BlobStored]:
        """Write the chunks checked and not yet written; a blob whole now is complete."""
        batches = self.take_unwritten()
        return self.written([(blob, chunks, self._write(blob, chunks, create=True))
                             for blob, chunks in batches])

    def take_unwritten(self) -> list[tuple[BlobId, list[VerifiedChunk]]]:
        """The chunks checked and not yet written, by blob, to write with
        :meth:`write_batch` (in another thread, outside the lock: checking and asking
        go on meanwhile), then hand back to :meth:`written`."""
        self.flush_wanted = False
        batches = []
        for want in self.wants.values():
            if want.unwritten:
                chunks, want.unwritten = want.unwritten, []
                want.writing += 1
                batches.append((want.blob, chunks))
        return batches

    def write_batch(self, batches: list[tuple[BlobId, list[VerifiedChunk]]]
                    ) -> list[tuple[BlobId, list[VerifiedChunk], WriteResult]]:
        """Write what :meth:`take_unwritten` took (touches the store alone: thread-safe).
        A blob dropped meanwhile is not created again."""
        return [(blob, chunks, self._write(blob, chunks, create=False))
                for blob, chunks in batches]

    def _write(self, blob: BlobId, chunks: list[VerifiedChunk], *,
               create: bool) -> WriteResult:
        try:
            return self.store.write_verified(blob, chunks, create=create)
        except (BlobQuotaExceeded, OSError) as exc:  # (a full disk, its folder gone, EIO)
            return exc

    def written(self, results: list[tuple[BlobId, list[VerifiedChunk], WriteResult]]
                ) -> list[BlobStored]:
        """What :meth:`write_batch` wrote: blobs whole now are complete."""
        out = []
        for blob, chunks, result in results:
            self._unwritten -= sum(len(data) for _, data, _ in chunks)
            want = self.wants.get(blob)
            if want is None:
                continue  # dropped meanwhile
            if want.writing:
                want.writing -= 1
            if isinstance(result, BlobQuotaExceeded):
                self.log("blob-refused", blob=str(blob), error=str(result))
                self.drop(blob)
                continue
            if isinstance(result, OSError):
                # Nothing of these chunks is held; this download stops here (as at the
                # quota: fetching on would fail again), the node and its other
                # downloads go on; `tidings blob get` asks for the blob again.
                self.log("blob-write-failed", blob=str(blob), error=str(result))
                self.drop(blob)
                continue
            for index in result:  # (dropped and wanted again meanwhile: held all the same)
                want.missing.pop(index, None)
            done = not want.missing and not want.unwritten and not want.writing
            out.append(BlobStored(blob, len(result), done))
            if done:
                self._complete(want)
        for peer in list(self._peers):  # room again below MAX_UNWRITTEN
            self.schedule(peer)
        return out

    def _answered(self, peer: Peer, event: BlobChunksReceived) -> None:
        fetch = self._peers.get(peer)
        asked = fetch.requests.get(event.request_id) if fetch is not None else None
        want = self.wants.get(event.blob)
        received = {index for index, _, _ in event.chunks}
        if fetch is not None and asked is not None:
            asked[1].difference_update(received)
            fetch.window = min(MAX_PEER_IN_FLIGHT, fetch.window + len(received))
        if want is not None:
            for index in received:
                if want.in_flight.get(index) is peer:
                    del want.in_flight[index]
        if event.final and fetch is not None:
            fetch.requests.pop(event.request_id, None)
            if asked is not None and want is not None and asked[1]:
                self._left_out(want, peer, asked[1])

    def _left_out(self, want: _Want, peer: Peer, indexes: set[int]) -> None:
        """The peer answered without chunks it said it held: not asked of it again."""
        held = want.holders.get(peer, b"")
        bitmap = bytearray(held) if held is not None else bytearray(
            b"\xff" * ((want.blob.chunk_count + 7) // 8))
        for index in indexes:
            if want.in_flight.get(index) is peer:
                del want.in_flight[index]
            if index >> 3 < len(bitmap):
                bitmap[index >> 3] &= ~(1 << (index & 7)) & 0xFF
        want.holders[peer] = bytes(bitmap)
        for other in list(self._peers):
            if other is not peer:
                self.schedule(other)

    def _complete(self, want: _Want) -> None:
        del self.wants[want.blob]
        self.log("blob-complete", blob=str(want.blob), size=want.blob.size,
                 fetched=want.fetched, peers=len(want.sources))
        for peer in self._peers:  # subscribers hear at once (spec/13 §8.4)
            self._announce(peer.session, want.blob)

    # -- asking ----------------------------------------------------------------------------

    def schedule(self, peer: Peer) -> None:
        """Send ``peer`` the queries and requests there is room for."""
        fetch = self._peers.get(peer)
        session = peer.session
        if fetch is None or session.failed:
            return
        blobs = session.blobs
        while fetch.to_query and blobs.can_request():
            blob = fetch.to_query.pop(0)
            if blob in self.wants:
                blobs.query(blob, subscribe=True)
        if self._unwritten >= MAX_UNWRITTEN:
            return  # the disk is behind: ask again once written() made room
        for want in list(self.wants.values()):
            while blobs.can_request() and fetch.in_flight < fetch.window:
                chunks = self._pick(want, peer, min(REQUEST_CHUNKS,
                                                    fetch.window - fetch.in_flight))
                if not chunks:
                    break
                request_id = blobs.request(want.blob, _ranges(chunks))
                fetch.requests[request_id] = (want.blob, set(chunks))
                for index in chunks:
                    want.in_flight[index] = peer

    def _pick(self, want: _Want, peer: Peer, limit: int) -> list[int]:
        if peer not in want.holders:
            return []
        held = want.holders[peer]
        chunks: list[int] = []
        for index in want.missing:
            if index in want.in_flight:
                continue
            if held is not None and not held[index >> 3] >> (index & 7) & 1:
                continue
            if chunks and index != chunks[-1] + 1 and len(_ranges([*chunks, index])) > \
                    MAX_BLOB_RANGES:
                break
            chunks.append(index)
            if len(chunks) >= limit:
                break
        return chunks

    # -- serving ---------------------------------------------------------------------------

    def answer_query(self, session: Session, event: BlobQueried) -> None:
        held = None if self.store.has(event.blob) else self.store.held(event.blob)
        session.blobs.send_have(event.request_id, event.blob, held)
        if event.blob in session.blobs.subscriptions:
            session.blobs.subscriptions[event.blob] = self._held_count(event.blob)

    def serve_step(self, session: Session) -> int:
        """Send the next message of the peer's oldest request; returns the chunk bytes
        sent (-1: nothing was left to answer)."""
        serve: BlobServe | None = session.blobs.next_serve()
        if serve is None:
            return -1
        picked: list[int] = []
        if not serve.cancelled:
            held = self.store.held(serve.blob)
            while serve.remaining and len(picked) < MAX_BLOB_DATA_CHUNKS:
                index = serve.remaining.popleft()
                if held[index >> 3] >> (index & 7) & 1:
                    picked.append(index)
        chunks = self.store.chunks(serve.blob, picked) if picked else []
        session.blobs.send_data(serve, chunks)
        return sum(len(data) for _, data, _ in chunks)

    def _held_count(self, blob: BlobId) -> int:
        info = self.store.info(blob)
        return 0 if info is None else info.held

    def _announce(self, session: Session, blob: BlobId) -> None:
        subscriptions = session.blobs.subscriptions
        if blob not in subscriptions or session.failed:
            return
        count = self._held_count(blob)
        if count == subscriptions[blob]:
            return
        subscriptions[blob] = count
        whole = count == blob.chunk_count
        session.blobs.send_have(None, blob, None if whole else self.store.held(blob))

    def tick(self, sessions: Iterable[Session]) -> None:
        """Once a second: write what was checked, and tell subscribers what changed of
        the blobs they asked about."""
        if self.write_behind:
            self.flush_wanted = self.flush_wanted or self._unwritten > 0
        else:
            self.flush()
        for session in sessions:
            for blob in list(session.blobs.subscriptions):
                self._announce(session, blob)


def _ranges(chunks: list[int]) -> tuple[tuple[int, int], ...]:
    """Ascending chunk indexes as ``(first, count)`` runs."""
    ranges: list[tuple[int, int]] = []
    for index in chunks:
        if ranges and ranges[-1][0] + ranges[-1][1] == index:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + 1)
        else:
            ranges.append((index, 1))
    return tuple(ranges)
