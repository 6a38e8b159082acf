"""Wire messages: one frozen dataclass per message, msgpack on the wire.

Every message is a msgpack array whose first element is its type number
(spec/09-wire.md §3). :func:`decode_message` is strict: it checks the shape,
every type and every bound, and raises a :class:`~tidings.errors.PeerError`
subclass naming what is wrong. Anything else escaping it is a bug.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import msgpack

from tidings.core.blob import BLOB_ID_SIZE, CHUNK_SIZE, HASH_SIZE, MAX_CHUNKS, BlobId, InvalidBlob
from tidings.core.blob import MAX_PROOF_SIZE as MAX_CHUNK_PROOF
from tidings.core.entry import MAX_ENTRY_SIZE, MAX_PAYLOAD_SIZE
from tidings.core.forks import MAX_PROOF_SIZE
from tidings.core.ids import FeedId
from tidings.core.lipmaa import links_needed
from tidings.errors import InvalidId, LocalProtocolError, MalformedMessage, MessageTooLarge

#: Wire protocol versions this implementation speaks, newest last. Version 3 is
#: version 2 plus the identity messages (types 11 to 13, spec/12 §6.2) and the
#: blob messages (types 14 to 18, spec/13); version 4 is version 3 plus the
#: compact-entries message (type 19, spec/09 §8).
VERSIONS = (2, 3, 4)
#: The first version with identity messages (and blob messages).
IDENTITY_VERSION = 3
#: One message: a payload at its largest (1 MiB) plus a batch's worth of
#: entries and framing, so one oversized item can still travel alone.
MAX_MESSAGE_SIZE = 2 * 1024 * 1024
#: Notes in one clock message: 4096 notes of at most ~110 bytes stay < 0.5 MiB.
MAX_NOTES = 4096
#: Entries in one entries message; senders batch far fewer bytes than the message bound.
MAX_ITEMS = 1024
#: Entries one partial request may ask for.
MAX_PARTIAL = 1000
#: The requested run plus the part of its certificate pool below it, which holds
#: at most 113 seqs for any seq below 2^63 (spec/09 §3.5): 1113, and some room.
MAX_PARTIAL_ITEMS = MAX_PARTIAL + 130
#: Seqs one seq request may name: a fork proof's branch (64 entries) in one
#: request, or 63 probes that narrow a search for where two histories split.
MAX_SEQ_REQUEST = 64
#: Addresses in one peers message: enough to spread, too few to flood a table.
MAX_ADDRESSES = 32
MAX_HOST_LEN = 253
MAX_VERSIONS = 16
MAX_ERROR_CODE_LEN = 32
MAX_ERROR_DETAIL_LEN = 1000
MAX_SEQ = 2**64 - 1
#: Entry seqs stop at 2^63 - 1 (spec/02); a note cannot hold more.
MAX_NOTE_SEQ = 2**63 - 1
#: A DNS name in a peers message: labels of 1-63 letters, digits and inner '-'.
DNS_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def dialable_host(host: str) -> bool:
    """A DNS name or an IPv4 / IPv6 literal; anything else is not an address.

    An IPv6 zone id (``fe80::1%eth0``) names an interface of the sender's
    machine, which means nothing to the receiver: refused (spec/09 §3.7).
    """
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(DNS_NAME.fullmatch(host))


#: Note flags (spec/10-replication.md §2). EAGER without WANT (2) is malformed.
WANT = 1
EAGER = 2
NOTE_FLAGS = (0, WANT, WANT | EAGER)
#: Bytes of an entry hash a note carries to name the sender's entry at its seq.
HEAD_PREFIX = 8


def _shape(
    item: Any, kind: type, what: str, *, max_len: int | None = None, min_len: int = 0,
) -> Any:
    # `type(x) is kind` so that True is not an int and a str is not bytes.
    if type(item) is not kind:
        raise MalformedMessage(f"{what} must be {kind.__name__}, got {type(item).__name__}")
    if max_len is None:
        return item
    length = len(cast(Sized, item))
    if not min_len <= length <= max_len:
        raise MalformedMessage(f"{what} has length {length}, allowed {min_len}..{max_len}")
    return item


def _uint(item: Any, what: str, maximum: int = MAX_SEQ, minimum: int = 0) -> int:
    value: int = _shape(item, int, what)
    if not minimum <= value <= maximum:
        raise MalformedMessage(f"{what} is {value}, allowed {minimum}..{maximum}")
    return value


def _feed(author: Any, log_id: Any) -> FeedId:
    _shape(author, bytes, "author key", max_len=32, min_len=32)
    _shape(log_id, str, "log id", max_len=64, min_len=1)
    try:
        return FeedId(author, log_id)
    except InvalidId as exc:
        raise MalformedMessage(f"bad feed: {exc}") from None


def _items(raw: Any, max_items: int, what: str) -> list[tuple[bytes, bytes | None]]:
    _shape(raw, list, what, max_len=max_items)
    items: list[tuple[bytes, bytes | None]] = []
    for pair in raw:
        _shape(pair, list, "an item", max_len=2, min_len=2)
        entry = _shape(pair[0], bytes, "an entry", max_len=MAX_ENTRY_SIZE, min_len=1)
        payload = pair[1]
        if payload is not None:
            _shape(payload, bytes, "a payload", max_len=MAX_PAYLOAD_SIZE)
        items.append((entry, payload))
    return items


@dataclass(frozen=True, slots=True)
class Note:
    """What one side holds of a feed and wants from the other.

    ``head`` is the first 8 bytes of the hash of the sender's entry at ``seq``
    (None when ``seq`` is 0): a receiver holding another entry there knows at
    once that the two hold different histories of the feed.
    """

    seq: int
    flags: int
    head: bytes | None = None

    def with_flags(self, flags: int) -> Note:
        return Note(self.seq, flags, self.head)

    @property
    def wants(self) -> bool:
        return bool(self.flags & WANT)

    @property
    def eager(self) -> bool:
        return bool(self.flags & EAGER)


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message each side sends: versions spoken and the clock it remembers."""

    TYPE = 0
    versions: tuple[int, ...]
    relay: bool
    #: Digest of the clock this side holds from the peer, None if it holds none.
    clock_digest: bytes | None

    def fields(self) -> list[Any]:
        return [list(self.versions), int(self.relay), self.clock_digest]

    @classmethod
    def parse(cls, body: list[Any]) -> Hello:
        versions, relay, digest = _arity(body, 3, "hello")
        _shape(versions, list, "versions", max_len=MAX_VERSIONS, min_len=1)
        parsed = tuple(_uint(v, "a version", 2**16 - 1, 1) for v in versions)
        if digest is not None:
            _shape(digest, bytes, "clock digest", max_len=32, min_len=32)
        return cls(parsed, bool(_uint(relay, "relay flag", 1)), digest)


@dataclass(frozen=True, slots=True)
class Clock:
    """Notes: for each feed, the seq held and what is wanted (spec/10 §2)."""

    TYPE = 1
    #: True: forget every note held from this peer before applying these.
    reset: bool
    notes: tuple[tuple[FeedId, Note], ...]
    #: True on the last message of the opening clock exchange.
    final: bool

    def fields(self) -> list[Any]:
        return [
            int(self.reset),
            [[f.author_key, f.log_id, n.seq, n.flags, n.head] for f, n in self.notes],
            int(self.final),
        ]

    @classmethod
    def parse(cls, body: list[Any]) -> Clock:
        reset, raw_notes, final = _arity(body, 3, "clock")
        _shape(raw_notes, list, "notes", max_len=MAX_NOTES)
        notes = []
        for raw in raw_notes:
            _shape(raw, list, "a note", max_len=5, min_len=5)
            feed = _feed(raw[0], raw[1])
            seq = _uint(raw[2], "note seq", MAX_NOTE_SEQ)
            flags = _uint(raw[3], "note flags", 3)
            if flags not in NOTE_FLAGS:
                raise MalformedMessage("note flags 2 (eager without want) are not allowed")
            head = raw[4]
            if seq == 0:
                if head is not None:
                    raise MalformedMessage("a note with seq 0 names no head (nil)")
            else:
                _shape(head, bytes, "note head", max_len=HEAD_PREFIX, min_len=HEAD_PREFIX)
            notes.append((feed, Note(seq, flags, head)))
        return cls(bool(_uint(reset, "reset", 1)), tuple(notes), bool(_uint(final, "final", 1)))


@dataclass(frozen=True, slots=True)
class Entries:
    """Consecutive entries of one feed, ascending, each with its payload or nil."""

    TYPE = 2
    feed: FeedId
    items: tuple[tuple[bytes, bytes | None], ...]

    def fields(self) -> list[Any]:
        return [self.feed.author_key, self.feed.log_id, [list(i) for i in self.items]]

    @classmethod
    def parse(cls, body: list[Any]) -> Entries:
        author, log_id, items = _arity(body, 3, "entries")
        feed = _feed(author, log_id)
        parsed = _items(items, MAX_ITEMS, "entries")
        if not parsed:
            raise MalformedMessage("an entries message carries at least one entry")
        return cls(feed, tuple(parsed))


@dataclass(frozen=True, slots=True)
class PartialRequest:
    """Ask for the latest ``count`` entries of a feed, with their certificate pool."""

    TYPE = 3
    request_id: int
    feed: FeedId
    count: int

    def fields(self) -> list[Any]:
        return [self.request_id, self.feed.author_key, self.feed.log_id, self.count]

    @classmethod
    def parse(cls, body: list[Any]) -> PartialRequest:
        request_id, author, log_id, count = _arity(body, 4, "partial request")
        return cls(
            _uint(request_id, "request id", 2**32 - 1), _feed(author, log_id),
            _uint(count, "count", MAX_PARTIAL, 1),
        )


@dataclass(frozen=True, slots=True)
class PartialResponse:
    """The entries a partial request asked for plus their pool; empty if not held."""

    TYPE = 4
    request_id: int
    items: tuple[tuple[bytes, bytes | None], ...]

    def fields(self) -> list[Any]:
        return [self.request_id, [list(i) for i in self.items]]

    @classmethod
    def parse(cls, body: list[Any]) -> PartialResponse:
        request_id, items = _arity(body, 2, "partial response")
        return cls(
            _uint(request_id, "request id", 2**32 - 1),
            tuple(_items(items, MAX_PARTIAL_ITEMS, "partial items")),
        )


@dataclass(frozen=True, slots=True)
class SeqRequest:
    """Ask for the entries at given seqs of a feed (finding where two histories
    split, a fork proof's branch, payloads this node lacks)."""

    TYPE = 9
    request_id: int
    feed: FeedId
    seqs: tuple[int, ...]
    #: True: with the payloads the peer holds (within a budget); False: entries only.
    payloads: bool

    def fields(self) -> list[Any]:
        return [self.request_id, self.feed.author_key, self.feed.log_id, list(self.seqs),
                int(self.payloads)]

    @classmethod
    def parse(cls, body: list[Any]) -> SeqRequest:
        request_id, author, log_id, raw_seqs, payloads = _arity(body, 5, "seq request")
        _shape(raw_seqs, list, "seqs", max_len=MAX_SEQ_REQUEST, min_len=1)
        seqs = tuple(_uint(s, "a seq", MAX_NOTE_SEQ, 1) for s in raw_seqs)
        if any(a >= b for a, b in itertools.pairwise(seqs)):
            raise MalformedMessage("the seqs of a seq request ascend strictly")
        return cls(_uint(request_id, "request id", 2**32 - 1), _feed(author, log_id), seqs,
                   bool(_uint(payloads, "payloads flag", 1)))


@dataclass(frozen=True, slots=True)
class SeqResponse:
    """The entries a seq request asked for that the sender holds, ascending."""

    TYPE = 10
    request_id: int
    items: tuple[tuple[bytes, bytes | None], ...]

    def fields(self) -> list[Any]:
        return [self.request_id, [list(i) for i in self.items]]

    @classmethod
    def parse(cls, body: list[Any]) -> SeqResponse:
        request_id, items = _arity(body, 2, "seq response")
        return cls(
            _uint(request_id, "request id", 2**32 - 1),
            tuple(_items(items, MAX_SEQ_REQUEST, "seq response items")),
        )


@dataclass(frozen=True, slots=True)
class ForkProofMessage:
    """A fork proof (spec/06-forks.md), passed on to peers that follow the feed."""

    TYPE = 5
    proof: bytes

    def fields(self) -> list[Any]:
        return [self.proof]

    @classmethod
    def parse(cls, body: list[Any]) -> ForkProofMessage:
        (proof,) = _arity(body, 1, "fork proof")
        return cls(_shape(proof, bytes, "fork proof", max_len=MAX_PROOF_SIZE, min_len=1))


@dataclass(frozen=True, slots=True)
class Peers:
    """Addresses of other nodes on the same network (peer exchange)."""

    TYPE = 6
    addresses: tuple[tuple[str, int], ...]

    def fields(self) -> list[Any]:
        return [[list(a) for a in self.addresses]]

    @classmethod
    def parse(cls, body: list[Any]) -> Peers:
        (raw,) = _arity(body, 1, "peers")
        _shape(raw, list, "addresses", max_len=MAX_ADDRESSES)
        addresses = []
        for pair in raw:
            _shape(pair, list, "an address", max_len=2, min_len=2)
            host = _shape(pair[0], str, "host", max_len=MAX_HOST_LEN, min_len=1)
            if not dialable_host(host):
                raise MalformedMessage(f"host {host[:60]!r} is not a DNS name or an IP address")
            addresses.append((host, _uint(pair[1], "port", 65535, 1)))
        return cls(tuple(addresses))


@dataclass(frozen=True, slots=True)
class Ping:
    """Keeps an idle connection alive; needs no answer."""

    TYPE = 7

    def fields(self) -> list[Any]:
        return []

    @classmethod
    def parse(cls, body: list[Any]) -> Ping:
        _arity(body, 0, "ping")
        return cls()


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """The sender is closing the connection because of ``code`` (spec/09 §6)."""

    TYPE = 8
    code: str
    detail: str

    def fields(self) -> list[Any]:
        return [self.code[:MAX_ERROR_CODE_LEN], self.detail[:MAX_ERROR_DETAIL_LEN]]

    @classmethod
    def parse(cls, body: list[Any]) -> ErrorMessage:
        code, detail = _arity(body, 2, "error")
        return cls(
            _shape(code, str, "error code", max_len=MAX_ERROR_CODE_LEN, min_len=1),
            _shape(detail, str, "error detail", max_len=MAX_ERROR_DETAIL_LEN),
        )


# -- identity messages (wire version 3; spec/12 §6.2) -------------------------
# Types 11 to 13 carry identity key event logs. decode_message() parses them at
# any version; a session on version 2 refuses them (Session._handle), since W4
# of version 2 allows types 0 to 10 only.

#: Notes in one identity-notes message: 1024 of at most 50 bytes each is 50 KB.
MAX_IDENTITY_NOTES = 1024
#: Events in one identity-events message: 256 of at most 8 KiB (spec/12 §4.2)
#: is 2 MiB less room for the heads, so a sender stops at 2 MiB - 4 KiB of event
#: bytes, whichever comes first.
MAX_IDENTITY_EVENTS = 256
MAX_IDENTITY_EVENT_BYTES = MAX_MESSAGE_SIZE - 4096
#: An identity event is at most 8192 bytes (spec/12 §4.2, K1).
MAX_IDENTITY_EVENT_SIZE = 8192
#: An identity log's seqs stop at 4096 (spec/12 §4.2, K5b).
MAX_KEL_SEQ = 4096
MAX_REQUEST_ID = 2**32 - 1
#: Status in an identity note: 0 holds nothing (wants it), 1 active, 2 forked, 3 dead.
IDENTITY_STATUSES = {"unknown": 0, "active": 1, "forked": 2, "dead": 3}


def _bin32(value: Any, what: str) -> bytes:
    return cast(bytes, _shape(value, bytes, what, max_len=32, min_len=32))


@dataclass(frozen=True, slots=True)
class IdentityNote:
    """What one side holds of an identity: its chain's seq, head and status."""

    identity: bytes
    seq: int
    head: bytes | None
    status: int

    def __post_init__(self) -> None:
        _bin32(self.identity, "identity")
        _uint(self.seq, "identity note seq", MAX_KEL_SEQ)
        _uint(self.status, "identity note status", 3)
        if (self.seq == 0) != (self.head is None) or (self.seq == 0) != (self.status == 0):
            raise MalformedMessage("an identity note's seq 0, nil head and status 0 go together")
        if self.head is not None:
            _shape(self.head, bytes, "identity head", max_len=HEAD_PREFIX, min_len=HEAD_PREFIX)


@dataclass(frozen=True, slots=True)
class IdentityNotes:
    """Type 11: what this side holds or wants of some identities."""

    TYPE = 11
    notes: tuple[IdentityNote, ...]

    def fields(self) -> list[Any]:
        return [[[n.identity, n.seq, n.head, n.status] for n in self.notes]]

    @classmethod
    def parse(cls, body: list[Any]) -> IdentityNotes:
        (raw,) = _arity(body, 1, "identity-notes")
        _shape(raw, list, "identity notes", max_len=MAX_IDENTITY_NOTES)
        notes = []
        for note in raw:
            _shape(note, list, "an identity note", max_len=4, min_len=4)
            notes.append(IdentityNote(*note))
        return cls(tuple(notes))


@dataclass(frozen=True, slots=True)
class IdentityRequest:
    """Type 12: send me the events of ``identity`` from ``from_seq``."""

    TYPE = 12
    request_id: int
    identity: bytes
    from_seq: int

    def __post_init__(self) -> None:
        _uint(self.request_id, "request id", MAX_REQUEST_ID)
        _bin32(self.identity, "identity")
        _uint(self.from_seq, "from_seq", MAX_KEL_SEQ, 1)

    def fields(self) -> list[Any]:
        return [self.request_id, self.identity, self.from_seq]

    @classmethod
    def parse(cls, body: list[Any]) -> IdentityRequest:
        return cls(*_arity(body, 3, "identity-request"))


@dataclass(frozen=True, slots=True)
class IdentityEvents:
    """Type 13: events of ``identity``, an answer (``request_id`` set) or pushed (None)."""

    TYPE = 13
    request_id: int | None
    identity: bytes
    events: tuple[bytes, ...]
    more: int

    def __post_init__(self) -> None:
        if self.request_id is not None:
            _uint(self.request_id, "request id", MAX_REQUEST_ID)
        _bin32(self.identity, "identity")
        _shape(list(self.events), list, "identity events", max_len=MAX_IDENTITY_EVENTS)
        for event in self.events:
            _shape(event, bytes, "an identity event", max_len=MAX_IDENTITY_EVENT_SIZE, min_len=1)
        _uint(self.more, "more", 1)
        if self.more and self.request_id is None:
            raise MalformedMessage("only an answer (with a request id) has more to come")

    def fields(self) -> list[Any]:
        return [self.request_id, self.identity, list(self.events), self.more]

    @classmethod
    def parse(cls, body: list[Any]) -> IdentityEvents:
        request_id, identity, events, more = _arity(body, 4, "identity-events")
        _shape(events, list, "identity events", max_len=MAX_IDENTITY_EVENTS)
        return cls(request_id, identity, tuple(events), more)


IdentityMessage = IdentityNotes | IdentityRequest | IdentityEvents
IDENTITY_MESSAGES: tuple[type, ...] = (
    IdentityNotes, IdentityRequest, IdentityEvents)


def encode_identity_message(message: IdentityMessage) -> bytes:
    return encode_message(message)


def decode_identity_message(body: bytes) -> IdentityMessage:
    """Decode one body of type 11, 12 or 13 strictly (spec/09 §4 W1-W6)."""
    message = decode_message(body)
    if not isinstance(message, IdentityNotes | IdentityRequest | IdentityEvents):
        raise MalformedMessage(f"message type {message.TYPE} is not an identity message")
    return message


def identity_note(state: Any) -> IdentityNote:
    """The note a node sends for an :class:`~tidings.core.kel.IdentityState`."""
    if state.status == "unknown":
        return IdentityNote(state.identity, 0, None, 0)
    return IdentityNote(state.identity, state.seq, state.head[:HEAD_PREFIX],
                        IDENTITY_STATUSES[state.status])

# -- end of identity messages --------------------------------------------------
# -- blob messages (wire version 3, spec/13 §8) ------------------------------------
# Types 14 to 18; types 11 to 13 are the identity messages (spec/12 §6.2). A
# session at version 2 treats them as unknown types (malformed).

#: The wire version that carries blob messages (spec/13 §8.1).
BLOB_WIRE_VERSION = 3
#: Ranges in one blob-request: a fetcher asks for a few runs of missing chunks.
MAX_BLOB_RANGES = 16
#: Chunks one blob-request may ask for: 16 MiB of answer, at most 64 of them queued.
MAX_BLOB_REQUEST_CHUNKS = 256
#: Chunks in one blob-data message: ~258 KiB, so a log message waits behind at
#: most that much blob (spec/13 §1.1, §9).
MAX_BLOB_DATA_CHUNKS = 4
_BLOB_REQUEST_ID = 2**32 - 1


def _blob(raw: Any) -> BlobId:
    _shape(raw, bytes, "blob id", max_len=BLOB_ID_SIZE, min_len=BLOB_ID_SIZE)
    try:
        return BlobId.from_bytes(raw)
    except (InvalidBlob, InvalidId) as exc:
        raise MalformedMessage(f"bad blob id: {exc}") from None


@dataclass(frozen=True, slots=True)
class BlobRequest:
    """Ask for chunks of a blob: ascending, disjoint ``(first, count)`` ranges."""

    TYPE = 14
    request_id: int
    blob: BlobId
    ranges: tuple[tuple[int, int], ...]

    def fields(self) -> list[Any]:
        return [self.request_id, self.blob.to_bytes(), [list(r) for r in self.ranges]]

    @classmethod
    def parse(cls, body: list[Any]) -> BlobRequest:
        request_id, raw_blob, raw_ranges = _arity(body, 3, "blob request")
        blob = _blob(raw_blob)
        _shape(raw_ranges, list, "ranges", max_len=MAX_BLOB_RANGES, min_len=1)
        ranges, end, total = [], 0, 0
        for raw in raw_ranges:
            _shape(raw, list, "a range", max_len=2, min_len=2)
            first = _uint(raw[0], "range first", blob.chunk_count - 1)
            count = _uint(raw[1], "range count", blob.chunk_count - first, 1)
            if first < end:
                raise MalformedMessage("the ranges of a blob request ascend and do not overlap")
            end, total = first + count, total + count
            ranges.append((first, count))
        if total > MAX_BLOB_REQUEST_CHUNKS:
            raise MalformedMessage(f"a blob request asks for {total} chunks, at most "
                                   f"{MAX_BLOB_REQUEST_CHUNKS}")
        return cls(_uint(request_id, "request id", _BLOB_REQUEST_ID), blob, tuple(ranges))


@dataclass(frozen=True, slots=True)
class BlobData:
    """Chunks of an answer to a blob request, each ``(index, data, proof)``."""

    TYPE = 15
    request_id: int
    chunks: tuple[tuple[int, bytes, bytes], ...]
    final: bool

    def fields(self) -> list[Any]:
        return [self.request_id, [list(c) for c in self.chunks], int(self.final)]

    @classmethod
    def parse(cls, body: list[Any]) -> BlobData:
        request_id, raw_chunks, final = _arity(body, 3, "blob data")
        _shape(raw_chunks, list, "chunks", max_len=MAX_BLOB_DATA_CHUNKS)
        chunks = []
        for raw in raw_chunks:
            _shape(raw, list, "a chunk", max_len=3, min_len=3)
            index = _uint(raw[0], "chunk index", MAX_CHUNKS - 1)
            data = _shape(raw[1], bytes, "chunk data", max_len=CHUNK_SIZE)
            proof = _shape(raw[2], bytes, "chunk proof", max_len=MAX_CHUNK_PROOF)
            if len(proof) % HASH_SIZE:
                raise MalformedMessage(f"a chunk proof of {len(proof)} bytes is not whole hashes")
            chunks.append((index, data, proof))
        is_final = bool(_uint(final, "final", 1))
        if not chunks and not is_final:
            raise MalformedMessage("a blob data message without chunks is final")
        return cls(_uint(request_id, "request id", _BLOB_REQUEST_ID), tuple(chunks), is_final)


@dataclass(frozen=True, slots=True)
class BlobQuery:
    """Ask which chunks of a blob the peer holds (and, subscribed, when that changes)."""

    TYPE = 16
    request_id: int
    blob: BlobId
    subscribe: bool

    def fields(self) -> list[Any]:
        return [self.request_id, self.blob.to_bytes(), int(self.subscribe)]

    @classmethod
    def parse(cls, body: list[Any]) -> BlobQuery:
        request_id, raw_blob, subscribe = _arity(body, 3, "blob query")
        return cls(_uint(request_id, "request id", _BLOB_REQUEST_ID), _blob(raw_blob),
                   bool(_uint(subscribe, "subscribe", 1)))


@dataclass(frozen=True, slots=True)
class BlobHave:
    """What the sender holds of a blob: a bitmap, or None for all of it.

    ``request_id`` None: an announcement, not an answer.
    """

    TYPE = 17
    request_id: int | None
    blob: BlobId
    held: bytes | None

    def fields(self) -> list[Any]:
        return [self.request_id, self.blob.to_bytes(), self.held]

    @classmethod
    def parse(cls, body: list[Any]) -> BlobHave:
        request_id, raw_blob, held = _arity(body, 3, "blob have")
        blob = _blob(raw_blob)
        if held is not None:
            count = blob.chunk_count
            size = (count + 7) // 8
            _shape(held, bytes, "held bitmap", max_len=size, min_len=size)
            if count % 8 and held[-1] >> (count % 8):
                raise MalformedMessage("the held bitmap has bits set past the last chunk")
        return cls(None if request_id is None else _uint(request_id, "request id",
                                                          _BLOB_REQUEST_ID), blob, held)


@dataclass(frozen=True, slots=True)
class BlobCancel:
    """The requester needs no more of an answer."""

    TYPE = 18
    request_id: int

    def fields(self) -> list[Any]:
        return [self.request_id]

    @classmethod
    def parse(cls, body: list[Any]) -> BlobCancel:
        (request_id,) = _arity(body, 1, "blob cancel")
        return cls(_uint(request_id, "request id", _BLOB_REQUEST_ID))


BlobMessage = BlobRequest | BlobData | BlobQuery | BlobHave | BlobCancel
BLOB_MESSAGES: tuple[type[BlobMessage], ...] = (
    BlobRequest, BlobData, BlobQuery, BlobHave, BlobCancel,
)

# -- end of the blob messages ---------------------------------------------------------

# -- compact entries (wire version 4, spec/09 §8) -------------------------------------
# Type 19: a run of entries of one feed without what the receiver recomputes
# (wire/compact.py turns full entries into one and back). A session below
# version 4 treats the type as unknown (malformed).

#: The wire version that carries compact-entries messages (spec/09 §8).
COMPACT_VERSION = 4
#: Bytes of one link hash among a compact run's anchors.
ANCHOR_SIZE = 32
#: Bytes of an Ed25519 signature.
SIGNATURE_SIZE = 64
#: Entry flags (spec/02 §1): 0 unsigned, 2 signed, 3 signed end-of-log.
ENTRY_FLAGS = (0, 2, 3)
#: Entry seqs stop at 2^63 - 1 (spec/02 §6).
MAX_ENTRY_SEQ = 2**63 - 1
MAX_TIMESTAMP = 2**64 - 1


class CompactItem(NamedTuple):
    """One entry of a compact run: what the receiver cannot recompute.

    ``timestamp`` None: the same as the previous item's. ``payload`` None: the
    payload is absent, and ``absent`` carries the signed ``(size, hash)``;
    otherwise ``absent`` is None (size and hash follow from the payload).
    ``signature`` is None exactly when the flags say unsigned.
    """

    flags: int
    timestamp: int | None
    payload: bytes | None
    absent: tuple[int, bytes] | None
    signature: bytes | None


_new_tuple = tuple.__new__


def _compact_item(raw: Any, first: bool) -> CompactItem:
    # The usual item (a present payload), checked in one expression: a run holds up
    # to 1024 of them. Anything else takes the checks below, which name the fault.
    if type(raw) is list and len(raw) == 4:
        flags, timestamp, payload, signature = raw
        if (
            type(flags) is int and flags in ENTRY_FLAGS
            and ((type(timestamp) is int and 0 <= timestamp <= MAX_TIMESTAMP)
                 or (timestamp is None and not first))
            and type(payload) is bytes and len(payload) <= MAX_PAYLOAD_SIZE
            and (signature is None if flags == 0
                 else type(signature) is bytes and len(signature) == SIGNATURE_SIZE)
        ):
            # (tuple.__new__: without NamedTuple's Python-level __new__, a third of this)
            return _new_tuple(CompactItem, (flags, timestamp, payload, None, signature))
    _shape(raw, list, "a compact item", max_len=4, min_len=4)
    flags = _uint(raw[0], "entry flags", 3)
    if flags not in ENTRY_FLAGS:
        raise MalformedMessage("entry flags are 0, 2 or 3 (1 is malformed)")
    timestamp = raw[1]
    if timestamp is None:
        if first:
            raise MalformedMessage("the first compact item carries its timestamp")
    else:
        _uint(timestamp, "timestamp", MAX_TIMESTAMP)
    payload, absent = raw[2], None
    if type(payload) is list:
        _shape(payload, list, "an absent payload's [size, hash]", max_len=2, min_len=2)
        absent = (_uint(payload[0], "payload size", MAX_PAYLOAD_SIZE),
                  _shape(payload[1], bytes, "payload hash", max_len=32, min_len=32))
        payload = None
    else:
        _shape(payload, bytes, "a payload", max_len=MAX_PAYLOAD_SIZE)
    signature = raw[3]
    if flags & 2:
        _shape(signature, bytes, "a signature", max_len=SIGNATURE_SIZE, min_len=SIGNATURE_SIZE)
    elif signature is not None:
        raise MalformedMessage("an unsigned item (flags 0) carries no signature (nil)")
    return CompactItem(flags, timestamp, payload, absent, signature)


def anchor_seqs(first: int, count: int) -> list[int]:
    """The seqs below ``first`` whose hashes a run ``first..first+count-1`` carries as
    anchors, ascending: every entry below the run that one of its links names."""
    return sorted(links_needed(first, first + count - 1))


@dataclass(frozen=True, slots=True)
class CompactEntries:
    """Type 19: consecutive entries of one feed from ``first_seq``, compact.

    ``anchors`` are the hashes of the entries below the run that its links name
    (:func:`anchor_seqs`), joined in ascending seq order. The receiver rebuilds
    every entry byte for byte (:func:`tidings.wire.compact.expand_run`).
    """

    TYPE = 19
    feed: FeedId
    first_seq: int
    anchors: bytes
    items: tuple[CompactItem, ...]

    def fields(self) -> list[Any]:
        # An item's field: the payload, or the [size, hash] of an absent one (inline,
        # without a call per item: a run holds up to 1024 of them).
        return [self.feed.author_key, self.feed.log_id, self.first_seq, self.anchors,
                [[flags, stamp, payload if payload is not None or absent is None else list(absent),
                  signature]
                 for flags, stamp, payload, absent, signature in self.items]]

    @classmethod
    def parse(cls, body: list[Any]) -> CompactEntries:
        author, log_id, first, anchors, raw_items = _arity(body, 5, "compact entries")
        feed = _feed(author, log_id)
        first_seq = _uint(first, "first seq", MAX_ENTRY_SEQ, 1)
        _shape(raw_items, list, "compact items", max_len=MAX_ITEMS, min_len=1)
        if first_seq + len(raw_items) - 1 > MAX_ENTRY_SEQ:
            raise MalformedMessage(f"a run of {len(raw_items)} from seq {first_seq} passes "
                                   f"the last seq 2^63 - 1")
        needed = len(anchor_seqs(first_seq, len(raw_items))) * ANCHOR_SIZE
        _shape(anchors, bytes, "anchors", max_len=needed, min_len=needed)
        items = tuple(_compact_item(raw, index == 0) for index, raw in enumerate(raw_items))
        return cls(feed, first_seq, anchors, items)

# -- end of compact entries ------------------------------------------------------------



Message = (
    Hello | Clock | Entries | PartialRequest | PartialResponse | ForkProofMessage | Peers | Ping
    | ErrorMessage | SeqRequest | SeqResponse | IdentityNotes | IdentityRequest | IdentityEvents
    | BlobMessage | CompactEntries
)
_MESSAGE_CLASSES: tuple[type[Message], ...] = (
    Hello, Clock, Entries, PartialRequest, PartialResponse, ForkProofMessage, Peers, Ping,
    ErrorMessage, SeqRequest, SeqResponse, IdentityNotes, IdentityRequest, IdentityEvents,
    *BLOB_MESSAGES, CompactEntries,
)
_PARSERS: dict[int, Callable[[list[Any]], Message]] = {
    cls.TYPE: cls.parse for cls in _MESSAGE_CLASSES
}
# Two classes with one type number would silently shadow each other.
assert len(_PARSERS) == len(_MESSAGE_CLASSES), "two message classes share a type number"


def _arity(body: list[Any], count: int, what: str) -> list[Any]:
    if len(body) != count:
        raise MalformedMessage(f"{what} has {len(body)} fields, it must have {count}")
    return body


def encode_message(message: Message) -> bytes:
    """The msgpack body of ``message`` (without the 4-byte length prefix)."""
    body: bytes = msgpack.packb([message.TYPE, *message.fields()], use_bin_type=True)
    if len(body) > MAX_MESSAGE_SIZE:
        # Our own message: a bug here (the sender must cut it), not the peer's fault.
        raise LocalProtocolError(
            f"a message of {len(body)} bytes is over {MAX_MESSAGE_SIZE}: send less at once"
        )
    return body


def encode_message_parts(message: Message) -> list[bytes]:
    """The bytes of :func:`encode_message` in pieces to concatenate: a blob-data
    message's chunk bytes are pieces of their own, so that they are copied once into
    the channel rather than through msgpack's buffer and back (spec/13 §9)."""
    if not isinstance(message, BlobData) or len(message.chunks) > 15:
        return [encode_message(message)]
    # msgpack as packb writes it: fixarrays, the shortest uint, bin 8/16/32.
    parts: list[bytes] = []
    head = bytearray((0x94, BlobData.TYPE))  # [type, request id, chunks, final]
    head += _uint_bytes(message.request_id)
    head.append(0x90 | len(message.chunks))
    for index, data, proof in message.chunks:
        head.append(0x93)
        head += _uint_bytes(index) + _bin_header(len(data))
        parts += [bytes(head), data]
        head = bytearray(_bin_header(len(proof)) + proof)
    head += _uint_bytes(int(message.final))
    parts.append(bytes(head))
    if sum(len(part) for part in parts) > MAX_MESSAGE_SIZE:
        encode_message(message)  # (raises LocalProtocolError)
    return parts


def _uint_bytes(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    for marker, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4)):
        if value < 1 << (8 * size):
            return bytes((marker,)) + value.to_bytes(size, "big")
    return b"\xcf" + value.to_bytes(8, "big")


def _bin_header(length: int) -> bytes:
    for marker, size in ((0xC4, 1), (0xC5, 2)):
        if length < 1 << (8 * size):
            return bytes((marker,)) + length.to_bytes(size, "big")
    return b"\xc6" + length.to_bytes(4, "big")


#: Arrays in one message, counted while it is decoded: the largest message (a
#: clock of 4096 notes) holds 4098; twice that leaves room for later types. Without
#: it, 2 MiB of empty arrays decode into millions of lists (spec/14 §6).
MAX_ARRAYS = 2 * max(MAX_NOTES, MAX_PARTIAL_ITEMS) + 16
#: Elements of all arrays of one message together: a full clock holds about 25,000.
MAX_ELEMENTS = 65_536


class _Budget:
    """Counts arrays and their elements as msgpack builds them; over the bound it
    stops the decoding then, not after the whole body is built."""

    __slots__ = ("arrays", "elements")

    def __init__(self) -> None:
        self.arrays = 0
        self.elements = 0

    def __call__(self, array: list[Any]) -> list[Any]:
        self.arrays += 1
        self.elements += len(array)
        if self.arrays > MAX_ARRAYS or self.elements > MAX_ELEMENTS:
            raise MalformedMessage(
                f"a message of over {MAX_ARRAYS} arrays or {MAX_ELEMENTS} elements"
            )
        return array


def decode_message(body: bytes) -> Message:
    """Parse one message body strictly; raises MalformedMessage naming the fault."""
    if len(body) > MAX_MESSAGE_SIZE:
        raise MessageTooLarge(f"message of {len(body)} bytes is over {MAX_MESSAGE_SIZE}")
    try:
        decoded = msgpack.unpackb(
            body, raw=False, use_list=True, strict_map_key=True,
            max_bin_len=MAX_MESSAGE_SIZE, max_str_len=MAX_ERROR_DETAIL_LEN * 4,
            max_array_len=max(MAX_NOTES, MAX_PARTIAL_ITEMS), max_map_len=0, max_ext_len=0,
            list_hook=_Budget(),
        )
    except MalformedMessage:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # msgpack raises ValueError subclasses for truncated input, extra bytes,
        # bad UTF-8 and exceeded limits.
        raise MalformedMessage(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    if type(decoded) is not list or not decoded:
        raise MalformedMessage("a message is a non-empty msgpack array")
    kind = decoded[0]
    if type(kind) is not int or kind not in _PARSERS:
        raise MalformedMessage(f"unknown message type {kind!r}")
    return _PARSERS[kind](decoded[1:])


def message_types() -> Sequence[type]:
    """Every message class, by type number (for the spec's vectors and tests)."""
    return [Hello, Clock, Entries, PartialRequest, PartialResponse, ForkProofMessage, Peers,
            Ping, ErrorMessage, SeqRequest, SeqResponse, *IDENTITY_MESSAGES, *BLOB_MESSAGES,
            CompactEntries]
