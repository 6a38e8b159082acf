"""Wire messages that carry identity logs (spec/12 §6.2): wire version 3.

Three message types join the version 2 set in sessions that negotiate wire
version 3: ``identity-notes`` (what a node holds of some identities),
``identity-request`` (send me the events of this identity from this seq) and
``identity-events`` (events, as an answer or pushed). The encoding and the
strict decoding follow spec/09 §2 and §4. Only the codec is here; the session
that sends and answers them is integration work (spec/12 §6.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from tidings.core.ids import KEY_SIZE
from tidings.core.kel import HASH_SIZE, MAX_EVENT_SIZE, MAX_KEL_SEQ
from tidings.errors import MalformedMessage, MessageTooLarge

WIRE_VERSION = 3
IDENTITY_NOTES = 11
IDENTITY_REQUEST = 12
IDENTITY_EVENTS = 13
#: spec/09 §5: one message body.
MAX_MESSAGE_SIZE = 2 * 1024 * 1024
#: Notes in one message: 1024 of at most 50 bytes each is 50 KB.
MAX_IDENTITY_NOTES = 1024
#: Events in one message: 256 of at most 8 KiB is exactly 2 MiB less room for
#: the heads, so a sender stops at 2 MiB - 4 KiB of event bytes, whichever comes first.
MAX_EVENTS_PER_MESSAGE = 256
MAX_EVENT_BYTES_PER_MESSAGE = MAX_MESSAGE_SIZE - 4096
#: The first 8 bytes of the head event's hash, as feed notes carry (spec/10 §2).
HEAD_PREFIX = 8
MAX_REQUEST_ID = 2**32 - 1
#: Status in a note: 0 holds nothing (wants it), 1 active, 2 forked, 3 dead.
NOTE_STATUSES = {"unknown": 0, "active": 1, "forked": 2, "dead": 3}


@dataclass(frozen=True, slots=True)
class IdentityNote:
    identity: bytes
    seq: int
    head: bytes | None
    status: int

    def __post_init__(self) -> None:
        _bin(self.identity, KEY_SIZE, "identity")
        _uint(self.seq, MAX_KEL_SEQ, "seq")
        if type(self.status) is not int or self.status not in NOTE_STATUSES.values():
            raise MalformedMessage("a note's status is 0, 1, 2 or 3")
        if (self.seq == 0) != (self.head is None) or (self.seq == 0) != (self.status == 0):
            raise MalformedMessage("seq 0, a nil head and status 0 go together")
        if self.head is not None:
            _bin(self.head, HEAD_PREFIX, "head")


@dataclass(frozen=True, slots=True)
class IdentityNotes:
    notes: tuple[IdentityNote, ...]
    TYPE = IDENTITY_NOTES

    def fields(self) -> list[Any]:
        return [[[n.identity, n.seq, n.head, n.status] for n in self.notes]]


@dataclass(frozen=True, slots=True)
class IdentityRequest:
    request_id: int
    identity: bytes
    from_seq: int
    TYPE = IDENTITY_REQUEST

    def __post_init__(self) -> None:
        _uint(self.request_id, MAX_REQUEST_ID, "request_id")
        _bin(self.identity, KEY_SIZE, "identity")
        _uint(self.from_seq, MAX_KEL_SEQ, "from_seq", low=1)

    def fields(self) -> list[Any]:
        return [self.request_id, self.identity, self.from_seq]


@dataclass(frozen=True, slots=True)
class IdentityEvents:
    request_id: int | None
    identity: bytes
    events: tuple[bytes, ...]
    more: int
    TYPE = IDENTITY_EVENTS

    def __post_init__(self) -> None:
        if self.request_id is not None:
            _uint(self.request_id, MAX_REQUEST_ID, "request_id")
        _bin(self.identity, KEY_SIZE, "identity")
        if len(self.events) > MAX_EVENTS_PER_MESSAGE:
            raise MalformedMessage(f"at most {MAX_EVENTS_PER_MESSAGE} events in a message")
        for event in self.events:
            if type(event) is not bytes or not 1 <= len(event) <= MAX_EVENT_SIZE:
                raise MalformedMessage(f"an event is 1 to {MAX_EVENT_SIZE} bytes")
        if type(self.more) is not int or self.more not in (0, 1):
            raise MalformedMessage("more is 0 or 1")
        if self.more and self.request_id is None:
            raise MalformedMessage("only an answer has more to come")

    def fields(self) -> list[Any]:
        return [self.request_id, self.identity, list(self.events), self.more]


IdentityMessage = IdentityNotes | IdentityRequest | IdentityEvents


def _uint(value: Any, high: int, name: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= high:
        raise MalformedMessage(f"{name} must be an integer from {low} to {high}")
    return value


def _bin(value: Any, size: int, name: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise MalformedMessage(f"{name} must be {size} bytes")
    return value


def encode_identity_message(message: IdentityMessage) -> bytes:
    body: bytes = msgpack.packb([message.TYPE, *message.fields()], use_bin_type=True)
    return body


def decode_identity_message(body: bytes) -> IdentityMessage:
    """Decode one body of type 11, 12 or 13 strictly (spec/09 §4 W1-W6)."""
    if len(body) > MAX_MESSAGE_SIZE:
        raise MessageTooLarge(f"message of {len(body)} bytes is over {MAX_MESSAGE_SIZE}")
    try:
        decoded = msgpack.unpackb(
            body, raw=False, use_list=True, strict_map_key=True, max_bin_len=MAX_MESSAGE_SIZE,
            max_str_len=0, max_array_len=MAX_IDENTITY_NOTES, max_map_len=0, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MalformedMessage(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    if type(decoded) is not list or not decoded or type(decoded[0]) is not int:
        raise MalformedMessage("a message is a non-empty msgpack array starting with its type")
    kind, fields = decoded[0], decoded[1:]
    if kind == IDENTITY_NOTES:
        if len(fields) != 1 or type(fields[0]) is not list:
            raise MalformedMessage("identity-notes has one field, an array of notes")
        notes = []
        for note in fields[0]:
            if type(note) is not list or len(note) != 4:
                raise MalformedMessage("a note is [identity, seq, head, status]")
            notes.append(IdentityNote(*note))
        return IdentityNotes(tuple(notes))
    if kind == IDENTITY_REQUEST:
        if len(fields) != 3:
            raise MalformedMessage("identity-request has three fields")
        return IdentityRequest(*fields)
    if kind == IDENTITY_EVENTS:
        if len(fields) != 4 or type(fields[2]) is not list:
            raise MalformedMessage("identity-events has four fields; events is an array")
        return IdentityEvents(fields[0], fields[1], tuple(fields[2]), fields[3])
    raise MalformedMessage(f"message type {kind!r} is not an identity message")


def note_for(state: Any) -> IdentityNote:
    """The note a node sends for an :class:`~tidings.core.kel.IdentityState`."""
    if state.status == "unknown":
        return IdentityNote(state.identity, 0, None, 0)
    assert state.head is not None and len(state.head) == HASH_SIZE
    return IdentityNote(state.identity, state.seq, state.head[:HEAD_PREFIX],
                        NOTE_STATUSES[state.status])
