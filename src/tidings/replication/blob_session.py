"""Blob transfer inside a replication session, pure (spec/13 §8).

A :class:`BlobExchange` is the blob half of one :class:`~tidings.replication.session.Session`:
the requests this side has open (checked against every answer, R1-R2 of
spec/13 §8.4), the peer's requests waiting for an answer (answered as the
socket drains, at most :data:`MAX_BLOB_DATA_CHUNKS` chunks a message, between
log messages: spec/13 §9), and the peer's subscriptions. It never touches a
store: the replicator checks each chunk (R3) as it stores it, and reads the
chunks it sends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import field

from tidings.core.blob import BlobId
from tidings.core.records import record
from tidings.errors import LocalProtocolError, PeerFlooding, UnexpectedMessage
from tidings.wire.messages import (
    MAX_BLOB_DATA_CHUNKS,
    MAX_BLOB_RANGES,
    MAX_BLOB_REQUEST_CHUNKS,
    BlobCancel,
    BlobData,
    BlobHave,
    BlobMessage,
    BlobQuery,
    BlobRequest,
    Message,
)

#: Blob requests and queries this side may have open at once (spec/13 §8.4).
MAX_OPEN_BLOB_REQUESTS = 16
#: The peer's blob requests waiting for an answer; past this it floods (spec/13 §8.4).
#: Each is a few hundred bytes until answered, and answers go out as the socket drains.
MAX_QUEUED_BLOB_REQUESTS = 64
#: Blobs one peer may subscribe to in a session (spec/13 §8.4).
MAX_BLOB_SUBSCRIPTIONS = 256


@record
class BlobChunksReceived:
    """Chunks of an answer to our request ``request_id`` for ``blob``, not yet checked
    against the blob id (the replicator checks each as it stores it)."""

    request_id: int
    blob: BlobId
    chunks: tuple[tuple[int, bytes, bytes], ...]
    #: The answer is complete: the request is closed.
    final: bool


@record
class BlobHeld:
    """What the peer holds of ``blob``: a bitmap, or None for all of it. ``request_id``
    is our query it answers, None for an announcement."""

    request_id: int | None
    blob: BlobId
    held: bytes | None


@record
class BlobQueried:
    """The peer asks what this node holds of ``blob``: answer with
    :meth:`BlobExchange.send_have` (at once: the answer is a bitmap in memory)."""

    request_id: int
    blob: BlobId


BlobEvent = BlobChunksReceived | BlobHeld | BlobQueried


@record(frozen=False)
class _Asked:
    blob: BlobId
    #: (first, count) ranges of a request; None for a query.
    ranges: tuple[tuple[int, int], ...] | None
    #: The highest index received in this answer (-1: none yet).
    last: int = -1


@record(frozen=False)
class BlobServe:
    """A peer's request being answered: the chunks still to consider, in order."""

    request_id: int
    blob: BlobId
    remaining: deque[int] = field(default_factory=deque)
    cancelled: bool = False


class BlobExchange:
    """The blob messages of one session. ``send`` queues a message for the peer."""

    def __init__(self, send: Callable[[Message], None], mark: Callable[[], None]) -> None:
        self._send = send
        self._mark = mark
        self._open: dict[int, _Asked] = {}
        self._next_id = 0
        self.serving: deque[BlobServe] = deque()
        #: Blobs the peer asked to hear about, with the held count last told.
        self.subscriptions: dict[BlobId, int] = {}
        #: Chunk bytes sent and received (status, benchmarks).
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- requests this side sends ------------------------------------------------------

    def can_request(self) -> bool:
        return len(self._open) < MAX_OPEN_BLOB_REQUESTS

    def open_requests(self) -> int:
        return len(self._open)

    def _new_id(self, asked: _Asked) -> int:
        if not self.can_request():
            raise LocalProtocolError(f"over {MAX_OPEN_BLOB_REQUESTS} blob requests open")
        request_id = self._next_id
        while request_id in self._open:
            request_id = (request_id + 1) % 2**32
        self._next_id = (request_id + 1) % 2**32
        self._open[request_id] = asked
        return request_id

    def request(self, blob: BlobId, ranges: tuple[tuple[int, int], ...]) -> int:
        """Ask for the chunks of ``ranges`` (ascending, disjoint); returns the request id."""
        if not 1 <= len(ranges) <= MAX_BLOB_RANGES or \
                sum(c for _, c in ranges) > MAX_BLOB_REQUEST_CHUNKS:
            raise LocalProtocolError("a blob request names 1 to 16 ranges, at most 256 chunks")
        request_id = self._new_id(_Asked(blob, ranges))
        self._send(BlobRequest(request_id, blob, ranges))
        return request_id

    def query(self, blob: BlobId, *, subscribe: bool) -> int:
        request_id = self._new_id(_Asked(blob, None))
        self._send(BlobQuery(request_id, blob, subscribe))
        return request_id

    def cancel(self, request_id: int) -> None:
        """Ask the peer to end an answer early (it stays open until its final message)."""
        if request_id in self._open:
            self._send(BlobCancel(request_id))

    # -- answers this side sends -----------------------------------------------------

    def send_have(self, request_id: int | None, blob: BlobId, held: bytes | None) -> None:
        self._send(BlobHave(request_id, blob, held))

    def next_serve(self) -> BlobServe | None:
        """The peer's oldest request still to answer."""
        return self.serving[0] if self.serving else None

    def send_data(self, serve: BlobServe, chunks: list[tuple[int, bytes, bytes]]) -> None:
        """Send chunks of ``serve`` (at most 4); the message is final, and the request
        done, when nothing remains of it or the peer cancelled it."""
        if len(chunks) > MAX_BLOB_DATA_CHUNKS:
            raise LocalProtocolError(f"at most {MAX_BLOB_DATA_CHUNKS} chunks a message")
        final = serve.cancelled or not serve.remaining
        if not chunks and not final:
            return
        self._send(BlobData(serve.request_id, tuple(chunks), final))
        self.bytes_sent += sum(len(data) for _, data, _ in chunks)
        if final:  # answered in the order asked: a player's next chunks come first
            self.serving.remove(serve)

    # -- messages in -------------------------------------------------------------------

    def handle(self, message: BlobMessage, events: list[BlobEvent]) -> None:
        """Check a blob message from the peer; raises a RemoteProtocolError if it breaks
        spec/13 §8.4 (R1, R2, flood)."""
        if isinstance(message, BlobRequest):
            if len(self.serving) >= MAX_QUEUED_BLOB_REQUESTS:
                raise PeerFlooding(f"over {MAX_QUEUED_BLOB_REQUESTS} blob requests waiting "
                                   "for an answer")
            wanted: deque[int] = deque()
            for first, count in message.ranges:
                wanted.extend(range(first, first + count))
            self.serving.append(BlobServe(message.request_id, message.blob, wanted))
            self._mark()
        elif isinstance(message, BlobData):
            self._on_data(message, events)
        elif isinstance(message, BlobQuery):
            if message.subscribe:
                if len(self.subscriptions) < MAX_BLOB_SUBSCRIPTIONS:
                    self.subscriptions.setdefault(message.blob, -1)
            else:
                self.subscriptions.pop(message.blob, None)
            events.append(BlobQueried(message.request_id, message.blob))
        elif isinstance(message, BlobHave):
            if message.request_id is not None:
                asked = self._open.get(message.request_id)
                if asked is None or asked.ranges is not None or asked.blob != message.blob:
                    raise UnexpectedMessage(
                        f"no blob query {message.request_id} for {message.blob} is open")
                del self._open[message.request_id]
            events.append(BlobHeld(message.request_id, message.blob, message.held))
        else:  # BlobCancel: a cancel for a request not open crossed its final answer
            for serve in self.serving:
                if serve.request_id == message.request_id:
                    serve.cancelled = True
                    self._mark()

    def _on_data(self, message: BlobData, events: list[BlobEvent]) -> None:
        asked = self._open.get(message.request_id)
        if asked is None or asked.ranges is None:  # R1
            raise UnexpectedMessage(f"no blob request {message.request_id} is open")
        for index, data, _ in message.chunks:  # R2
            if index <= asked.last or not any(
                    first <= index < first + count for first, count in asked.ranges):
                raise UnexpectedMessage(
                    f"chunk {index} of {asked.blob} was not asked for in request "
                    f"{message.request_id}, or came out of order")
            asked.last = index
            self.bytes_received += len(data)
        if message.final:  # R4
            del self._open[message.request_id]
        events.append(BlobChunksReceived(message.request_id, asked.blob, message.chunks,
                                         message.final))

    def clear(self) -> None:
        self.serving.clear()
        self.subscriptions.clear()
