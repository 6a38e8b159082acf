"""Wire messages (spec/09-wire.md §3): every type round-trips; decoding is strict.

A message is a msgpack array whose first element is its type number.
``decode_message`` takes exactly the shape, the types and the bounds of each
type and refuses everything else with a PeerError subclass, whose ``code`` is
what the node sends back to the peer. Anything else escaping it is a bug.

The wire has no msgpack booleans: flags travel as the integers 0 and 1, so a
boolean is refused wherever it appears.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import ForkProof
from tidings.core.blob import CHUNK_SIZE, blob_id_of
from tidings.core.entry import MAX_ENTRY_SIZE, MAX_PAYLOAD_SIZE
from tidings.core.ids import FeedId
from tidings.errors import LocalProtocolError, MalformedMessage, MessageTooLarge, PeerError
from tidings.wire.messages import (
    EAGER,
    MAX_ADDRESSES,
    MAX_ERROR_CODE_LEN,
    MAX_ERROR_DETAIL_LEN,
    MAX_HOST_LEN,
    MAX_ITEMS,
    MAX_MESSAGE_SIZE,
    MAX_NOTE_SEQ,
    MAX_NOTES,
    MAX_PARTIAL,
    MAX_PARTIAL_ITEMS,
    MAX_PROOF_SIZE,
    MAX_SEQ,
    MAX_SEQ_REQUEST,
    MAX_VERSIONS,
    WANT,
    BlobCancel,
    BlobData,
    BlobHave,
    BlobQuery,
    BlobRequest,
    Clock,
    CompactEntries,
    CompactItem,
    Entries,
    ErrorMessage,
    ForkProofMessage,
    Hello,
    IdentityEvents,
    IdentityNote,
    IdentityNotes,
    IdentityRequest,
    Message,
    Note,
    PartialRequest,
    PartialResponse,
    Peers,
    Ping,
    SeqRequest,
    SeqResponse,
    decode_message,
    encode_message,
    encode_message_parts,
    message_types,
)

from .helpers import examples, make_log

LOG, LOG_PAYLOADS = make_log(3)
FEED = LOG[0].feed
OTHER_FEED = FeedId(bytes(range(32)), "podcast")
KEY = FEED.author_key
ENTRY = LOG[0].raw
PROOF = ForkProof.from_runs(
    LOG[1:], make_log(2, payload=lambda i: b"entry 1" if i == 1 else b"other")[0][1:]
).to_bytes()
HEAD = LOG[2].hash[:8]
BLOB = blob_id_of(bytes(4 * CHUNK_SIZE + 1))  # five chunks


def dns_name(length: int) -> str:
    """A valid DNS name of exactly ``length`` characters (labels of at most 63)."""
    labels, left = [], length
    while left > 63:
        size = min(63, left - 2)  # leave room for a dot and a non-empty label
        labels.append("h" * size)
        left -= size + 1
    return ".".join([*labels, "h" * left])


#: Hosts a peers message may carry (spec/09 §3.7): DNS names and IP literals.
hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,20}){0,3}", fullmatch=True),
)


def raw(*fields: Any) -> bytes:
    """A message body as a peer could write it: any msgpack array, checked or not."""
    packed: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return packed


def refused(body: bytes) -> PeerError:
    with pytest.raises(PeerError) as caught:
        decode_message(body)
    return caught.value


def malformed(body: bytes) -> MalformedMessage:
    error = refused(body)
    assert type(error) is MalformedMessage and error.code == "malformed", error
    return error


# -- round trips ---------------------------------------------------------------

EXAMPLES: list[Message] = [
    Hello((2,), False, None),
    Hello((1, 7, 65535), True, bytes(range(32))),
    Clock(True, ((FEED, Note(3, WANT | EAGER, HEAD)), (OTHER_FEED, Note(0, 0))), True),
    Clock(False, (), False),
    Clock(False, ((FEED, Note(MAX_NOTE_SEQ, WANT, HEAD)),), True),
    Entries(FEED, ((LOG[0].raw, LOG_PAYLOADS[0]), (LOG[1].raw, None), (LOG[2].raw, b""))),
    PartialRequest(0, FEED, 1),
    PartialRequest(2**32 - 1, OTHER_FEED, MAX_PARTIAL),
    PartialResponse(7, ()),
    PartialResponse(2**32 - 1, ((LOG[0].raw, None), (LOG[2].raw, LOG_PAYLOADS[2]))),
    ForkProofMessage(PROOF),
    Peers(()),
    Peers((("example.org", 1), ("2001:db8::1", 65535), ("192.0.2.7", 8008))),
    Ping(),
    ErrorMessage("flood", "too many notes"),
    ErrorMessage("x" * MAX_ERROR_CODE_LEN, ""),
    SeqRequest(0, FEED, (1,), False),
    SeqRequest(2**32 - 1, OTHER_FEED, tuple(range(1, MAX_SEQ_REQUEST + 1)), True),
    SeqResponse(3, ()),
    SeqResponse(3, ((LOG[0].raw, None), (LOG[2].raw, LOG_PAYLOADS[2]))),
    IdentityNotes(()),
    IdentityNotes((IdentityNote(bytes(32), 0, None, 0), IdentityNote(KEY, 4096, HEAD, 3))),
    IdentityRequest(2**32 - 1, KEY, 1),
    IdentityEvents(None, KEY, (), 0),
    IdentityEvents(5, KEY, (b"e" * 8192, b"f"), 1),
    # blob messages (spec/13 §8)
    BlobRequest(0, BLOB, ((0, 2), (3, 1))),
    BlobData(2**32 - 1, ((0, bytes(CHUNK_SIZE), bytes(64)), (3, b"x", b"")), False),
    BlobData(1, (), True),
    BlobQuery(5, BLOB, True),
    BlobHave(None, BLOB, None),
    BlobHave(5, BLOB, b"\x05"),
    BlobCancel(9),
    # compact entries (spec/09 §8)
    CompactEntries(FEED, 1, b"", (CompactItem(0, 0, b"", None, None),)),
    CompactEntries(FEED, 8, bytes(64), (
        CompactItem(0, 2**64 - 1, None, (2**20, bytes(32)), None),
        CompactItem(3, None, b"x" * 10, None, bytes(64)))),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


def test_the_round_trip_examples_cover_every_message_type() -> None:
    assert {type(m) for m in EXAMPLES} == set(message_types())
    types = [cls.TYPE for cls in message_types()]
    assert types == sorted(set(types)) and types[:11] == list(range(11))


def test_the_type_number_leads_the_array() -> None:
    assert msgpack.unpackb(encode_message(Ping())) == [Ping.TYPE]
    assert msgpack.unpackb(encode_message(PartialRequest(5, FEED, 9))) == [
        PartialRequest.TYPE, 5, KEY, "blog", 9,
    ]


feeds = st.builds(
    FeedId, st.binary(min_size=32, max_size=32),
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True),
)
items = st.tuples(
    st.binary(min_size=1, max_size=MAX_ENTRY_SIZE), st.none() | st.binary(max_size=64)
)
messages = st.one_of(
    st.builds(
        Hello, st.lists(st.integers(1, 2**16 - 1), min_size=1, max_size=MAX_VERSIONS).map(tuple),
        st.booleans(), st.none() | st.binary(min_size=32, max_size=32),
    ),
    st.builds(
        Clock, st.booleans(),
        st.lists(
            st.tuples(feeds, st.integers(0, MAX_NOTE_SEQ).flatmap(lambda seq: st.builds(
                Note, st.just(seq), st.sampled_from([0, WANT, WANT | EAGER]),
                st.none() if seq == 0 else st.binary(min_size=8, max_size=8)))),
            max_size=8,
        ).map(tuple),
        st.booleans(),
    ),
    st.builds(Entries, feeds, st.lists(items, min_size=1, max_size=4).map(tuple)),
    st.builds(PartialRequest, st.integers(0, 2**32 - 1), feeds, st.integers(1, MAX_PARTIAL)),
    st.builds(PartialResponse, st.integers(0, 2**32 - 1), st.lists(items, max_size=4).map(tuple)),
    st.builds(ForkProofMessage, st.binary(min_size=1, max_size=MAX_PROOF_SIZE)),
    st.builds(
        Peers,
        st.lists(
            st.tuples(hosts, st.integers(1, 65535)),
            max_size=MAX_ADDRESSES,
        ).map(tuple),
    ),
    st.just(Ping()),
    st.builds(
        ErrorMessage, st.text(min_size=1, max_size=MAX_ERROR_CODE_LEN),
        st.text(max_size=MAX_ERROR_DETAIL_LEN),
    ),
    st.builds(
        SeqRequest, st.integers(0, 2**32 - 1), feeds,
        st.sets(st.integers(1, MAX_NOTE_SEQ), min_size=1, max_size=MAX_SEQ_REQUEST).map(
            lambda seqs: tuple(sorted(seqs))), st.booleans(),
    ),
    st.builds(SeqResponse, st.integers(0, 2**32 - 1), st.lists(items, max_size=4).map(tuple)),
)


@given(messages)
def test_any_message_within_the_bounds_round_trips(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


# -- strictness: shape and types -------------------------------------------------

#: One valid body per type, as raw fields: the refusals below each change one thing.
VALID: dict[str, list[Any]] = {
    "hello": [0, [2], 0, None],
    "clock": [1, 1, [[KEY, "blog", 5, 3, HEAD]], 1],
    "entries": [2, KEY, "blog", [[ENTRY, b"entry 1"]]],
    "partial request": [3, 7, KEY, "blog", 20],
    "partial response": [4, 7, [[ENTRY, None]]],
    "fork proof": [5, PROOF],
    "peers": [6, [["example.org", 8008]]],
    "ping": [7],
    "error": [8, "flood", "too many"],
    "seq request": [9, 7, KEY, "blog", [1, 2, 3], 1],
    "seq response": [10, 7, [[ENTRY, None]]],
}


def changed(kind: str, path: tuple[int, ...], value: Any) -> bytes:
    """The valid body of ``kind`` with the field at ``path`` replaced by ``value``.

    A path one past the end of its list appends ``value`` instead.
    """
    body = copy.deepcopy(VALID[kind])
    target = body
    for index in path[:-1]:
        target = target[index]
    if path[-1] == len(target):
        target.append(value)
    else:
        target[path[-1]] = value
    return raw(*body)


@pytest.mark.parametrize("kind", VALID)
def test_the_bodies_the_refusals_start_from_are_valid(kind: str) -> None:
    assert VALID[kind][0] == type(decode_message(raw(*VALID[kind]))).TYPE


@pytest.mark.parametrize("kind", VALID)
def test_one_field_too_many_is_malformed(kind: str) -> None:
    assert "fields" in str(malformed(raw(*VALID[kind], 0)))


@pytest.mark.parametrize("kind", [k for k in VALID if len(VALID[k]) > 1])
def test_one_field_too_few_is_malformed(kind: str) -> None:
    assert "fields" in str(malformed(raw(*VALID[kind][:-1])))


BOOLS_FOR_INTS = [
    ("hello", (1, 0), True, "version"),
    ("hello", (2,), True, "relay flag"),
    ("hello", (2,), False, "relay flag"),
    ("clock", (1,), True, "reset"),
    ("clock", (2, 0, 2), True, "note seq"),
    ("clock", (2, 0, 3), True, "note flags"),
    ("clock", (3,), False, "final"),
    ("partial request", (1,), False, "request id"),
    ("partial request", (4,), True, "count"),
    ("partial response", (1,), True, "request id"),
    ("peers", (1, 0, 1), True, "port"),
    ("seq request", (4, 0), True, "a seq"),
    ("seq request", (5,), True, "payloads flag"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"), BOOLS_FOR_INTS,
    ids=[f"{k}-{f}-{v}" for k, _, v, f in BOOLS_FOR_INTS],
)
def test_a_bool_is_not_an_int(kind: str, path: tuple[int, ...], value: bool, field: str) -> None:
    assert field in str(malformed(changed(kind, path, value)))


@pytest.mark.parametrize(
    ("kind", "path", "field"),
    [
        ("hello", (2,), "relay flag"),
        ("clock", (1,), "reset"),
        ("clock", (3,), "final"),
        ("seq request", (5,), "payloads flag"),
    ],
)
def test_a_flag_is_the_integer_0_or_1(kind: str, path: tuple[int, ...], field: str) -> None:
    for value in (0, 1):
        decode_message(changed(kind, path, value))
    assert field in str(malformed(changed(kind, path, 2)))


STR_FOR_BYTES = [
    ("clock", (2, 0, 0), "k" * 32, "author key"),
    ("clock", (2, 0, 4), "h" * 8, "note head"),
    ("entries", (3, 0, 0), "e" * len(ENTRY), "an entry"),
    ("entries", (3, 0, 1), "entry 1", "a payload"),
    ("hello", (3,), "d" * 32, "clock digest"),
    ("fork proof", (1,), "p" * len(PROOF), "fork proof"),
]
BYTES_FOR_STR = [
    ("clock", (2, 0, 1), b"blog", "log id"),
    ("peers", (1, 0, 0), b"example.org", "host"),
    ("error", (1,), b"flood", "error code"),
    ("error", (2,), b"too many", "error detail"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"), STR_FOR_BYTES + BYTES_FOR_STR,
    ids=[f"{k}-{f}" for k, _, _, f in STR_FOR_BYTES + BYTES_FOR_STR],
)
def test_str_and_bytes_are_not_interchangeable(
    kind: str, path: tuple[int, ...], value: str | bytes, field: str
) -> None:
    assert field in str(malformed(changed(kind, path, value)))


@pytest.mark.parametrize(
    "kind", [20, 21, 127, 2**64 - 1, -1, "7", b"\x07", None, [7], True],
    ids=repr,
)
def test_an_unknown_type_is_malformed(kind: Any) -> None:
    assert "unknown message type" in str(malformed(raw(kind)))


@pytest.mark.parametrize(
    "body",
    [b"", msgpack.packb(7), msgpack.packb("ping"), msgpack.packb(None), msgpack.packb([]),
     b"\xc1", b"\x92\x07\xc1"],
    ids=["nothing", "int", "str", "nil", "empty array", "c1", "c1 as a field"],
)
def test_a_message_is_a_non_empty_array(body: bytes) -> None:
    malformed(body)


@pytest.mark.parametrize("kind", VALID)
def test_trailing_bytes_are_malformed(kind: str) -> None:
    body = raw(*VALID[kind])
    for extra in (b"\x00", b"\xc0", raw(7)):
        assert "extra data" in str(malformed(body + extra)).lower()


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({0: [1]}),
        msgpack.packb({}),
        changed("hello", (1,), {1: 1}),
        changed("clock", (2, 0), {"seq": 5}),
    ],
    ids=["message", "empty map", "versions", "note"],
)
def test_a_map_is_malformed_anywhere(body: bytes) -> None:
    malformed(body)


@pytest.mark.parametrize(
    "body",
    [
        raw(7.0),
        changed("partial request", (4,), 20.0),
        changed("peers", (1, 0, 1), 8008.0),
        changed("hello", (1, 0), 1.0),
        msgpack.packb([3, 7, KEY, "blog", 20.0], use_bin_type=True, use_single_float=True),
        changed("clock", (2, 0, 2), float("nan")),
    ],
    ids=["type", "count", "port", "version", "float32 count", "nan seq"],
)
def test_a_float_is_malformed(body: bytes) -> None:
    malformed(body)


@pytest.mark.parametrize(
    "value",
    [msgpack.ExtType(1, b"x"), msgpack.ExtType(5, b""), msgpack.Timestamp(1, 0)],
    ids=["ext", "empty ext", "timestamp"],
)
@pytest.mark.parametrize(
    ("kind", "path"),
    [("entries", (3, 0, 1)), ("hello", (3,)), ("partial request", (4,)), ("clock", (2, 0, 1))],
    ids=["payload", "digest", "count", "log id"],
)
def test_an_ext_type_is_malformed(kind: str, path: tuple[int, ...], value: Any) -> None:
    malformed(changed(kind, path, value))


@pytest.mark.parametrize(
    "bad", [b"\xff\xfe\xfd\xfc", b"\xc0\xafqq", b"\xed\xa0\x80q"],
    ids=["invalid bytes", "overlong", "surrogate"],
)
@pytest.mark.parametrize(
    ("kind", "path"),
    [("clock", (2, 0, 1)), ("peers", (1, 0, 0)), ("error", (1,)), ("error", (2,))],
    ids=["log id", "host", "error code", "error detail"],
)
def test_a_string_that_is_not_utf8_is_malformed(
    kind: str, path: tuple[int, ...], bad: bytes
) -> None:
    body = changed(kind, path, "qqqq")
    decode_message(body)  # the control: the marker alone is fine
    malformed(body.replace(b"\xa4qqqq", b"\xa4" + bad))


@pytest.mark.parametrize("log_id", ["Blog", "-blog", "bl og", "blög"])
def test_a_log_id_outside_the_pattern_is_malformed(log_id: str) -> None:
    malformed(changed("clock", (2, 0, 1), log_id))


# -- strictness: bounds ------------------------------------------------------------

Build = Callable[[int], bytes]
#: (what, body of size n, sizes that decode, sizes refused as malformed)
BOUNDS: list[tuple[str, Build, list[int], list[int]]] = [
    ("log id length", lambda n: raw(3, 0, KEY, "a" * n, 1), [1, 64], [0, 65]),
    ("author key length", lambda n: raw(3, 0, b"k" * n, "blog", 1), [32], [0, 31, 33]),
    ("entry length", lambda n: raw(2, KEY, "blog", [[b"e" * n, None]]),
     [1, MAX_ENTRY_SIZE], [0, MAX_ENTRY_SIZE + 1]),
    ("payload length", lambda n: raw(2, KEY, "blog", [[ENTRY, b"p" * n]]),
     [0, MAX_PAYLOAD_SIZE], [MAX_PAYLOAD_SIZE + 1]),
    ("host length", lambda n: raw(6, [[dns_name(n), 1]]), [1, MAX_HOST_LEN],
     [0, MAX_HOST_LEN + 1]),
    ("port", lambda n: raw(6, [["h", n]]), [1, 65535], [0, 65536, -1]),
    ("version", lambda n: raw(0, [n], 0, None), [1, 2**16 - 1], [0, 2**16]),
    ("error code length", lambda n: raw(8, "c" * n, ""),
     [1, MAX_ERROR_CODE_LEN], [0, MAX_ERROR_CODE_LEN + 1]),
    ("error detail length", lambda n: raw(8, "c", "d" * n),
     [0, MAX_ERROR_DETAIL_LEN], [MAX_ERROR_DETAIL_LEN + 1]),
    ("partial count", lambda n: raw(3, 0, KEY, "blog", n), [1, MAX_PARTIAL], [0, MAX_PARTIAL + 1]),
    ("request id", lambda n: raw(3, n, KEY, "blog", 1), [0, 2**32 - 1], [-1, 2**32]),
    # Entry seqs stop at 2^63 - 1 (spec/02), and so do notes.
    ("note seq", lambda n: raw(1, 0, [[KEY, "blog", n, 0, HEAD]], 1), [1, MAX_NOTE_SEQ],
     [-1, -(2**63), MAX_NOTE_SEQ + 1, MAX_SEQ]),
    ("note flags", lambda n: raw(1, 0, [[KEY, "blog", 0, n, None]], 1), [0, 1, WANT | EAGER],
     [2, 4, -1]),
    ("note head length", lambda n: raw(1, 0, [[KEY, "blog", 1, 0, b"h" * n]], 1), [8],
     [0, 7, 9, 32]),
    ("seqs in a seq request", lambda n: raw(9, 0, KEY, "blog", list(range(1, n + 1)), 0),
     [1, MAX_SEQ_REQUEST], [0, MAX_SEQ_REQUEST + 1]),
    ("seq in a seq request", lambda n: raw(9, 0, KEY, "blog", [n], 0), [1, MAX_NOTE_SEQ],
     [0, -1, MAX_NOTE_SEQ + 1]),
    ("clock digest length", lambda n: raw(0, [1], 0, b"d" * n), [32], [0, 31, 33]),
    ("fork proof length", lambda n: raw(5, b"p" * n), [1, MAX_PROOF_SIZE], [0, MAX_PROOF_SIZE + 1]),
    ("versions, at least one", lambda n: raw(0, [1] * n, 0, None), [1], [0]),
    ("entries, at least one", lambda n: raw(2, KEY, "blog", [[ENTRY, None]] * n), [1], [0]),
]


@pytest.mark.parametrize(("what", "build", "good", "bad"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_each_bound_holds_at_its_limit_and_refuses_past_it(
    what: str, build: Build, good: list[int], bad: list[int]
) -> None:
    for size in good:
        decode_message(build(size))
    for size in bad:
        malformed(build(size))


#: Lists with an upper bound: (what, body with n elements, the bound).
LIST_BOUNDS: list[tuple[str, Build, int]] = [
    ("notes", lambda n: raw(1, 0, [[KEY, "blog", 0, 0, None]] * n, 1), MAX_NOTES),
    ("seq response items", lambda n: raw(10, 0, [[ENTRY, None]] * n), MAX_SEQ_REQUEST),
    ("entries items", lambda n: raw(2, KEY, "blog", [[ENTRY, None]] * n), MAX_ITEMS),
    ("partial items", lambda n: raw(4, 0, [[ENTRY, None]] * n), MAX_PARTIAL_ITEMS),
    ("addresses", lambda n: raw(6, [["h", 1]] * n), MAX_ADDRESSES),
    ("versions", lambda n: raw(0, [1] * n, 0, None), MAX_VERSIONS),
]
LIST_IDS = [b[0] for b in LIST_BOUNDS]


@pytest.mark.parametrize(("what", "build", "bound"), LIST_BOUNDS, ids=LIST_IDS)
def test_a_list_holds_at_its_bound_and_past_it_is_malformed_not_oversize(
    what: str, build: Build, bound: int
) -> None:
    """Only a message's total size is oversize (spec/09 §4); a long list is malformed."""
    decode_message(build(bound))
    malformed(build(bound + 1))


@pytest.mark.parametrize(
    ("build", "good", "bad"),
    [
        (lambda n: raw(8, "😀" * n, ""), MAX_ERROR_CODE_LEN, MAX_ERROR_CODE_LEN + 1),
        (lambda n: raw(8, "c", "😀" * n), MAX_ERROR_DETAIL_LEN, MAX_ERROR_DETAIL_LEN + 1),
    ],
    ids=["error code", "error detail"],
)
def test_text_lengths_count_characters_not_bytes(build: Build, good: int, bad: int) -> None:
    decode_message(build(good))
    malformed(build(bad))


def test_a_sender_cuts_a_long_error_code_and_detail() -> None:
    sent = ErrorMessage("c" * (MAX_ERROR_CODE_LEN + 8), "d" * (MAX_ERROR_DETAIL_LEN + 500))
    assert decode_message(encode_message(sent)) == ErrorMessage(
        "c" * MAX_ERROR_CODE_LEN, "d" * MAX_ERROR_DETAIL_LEN
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (bytes.fromhex("dc000107"), Ping()),  # array 16
        (bytes.fromhex("91cc07"), Ping()),  # uint 8
        (bytes.fromhex("91d007"), Ping()),  # int 8
        (bytes.fromhex("91d30000000000000007"), Ping()),  # int 64
        (bytes.fromhex("94 00 dd00000001 d10001 d000 c0".replace(" ", "")),
         Hello((1,), False, None)),  # array 32, int 16, int 8
        (bytes.fromhex("95 03 d200000007 c50020".replace(" ", "")) + KEY
         + bytes.fromhex("d904") + b"blog" + bytes.fromhex("cd0014"),
         PartialRequest(7, FEED, 20)),  # int 32, bin 16, str 8, uint 16
    ],
    ids=["array16", "uint8", "int8", "int64", "hello", "partial request"],
)
def test_any_valid_encoding_of_a_value_is_accepted(body: bytes, message: Message) -> None:
    assert decode_message(body) == message
    assert encode_message(message) != body  # the sender's own encoding is the shortest


def two_payloads(second: int) -> Entries:
    """An entries message of two full-size-ish payloads: the first 1 MiB, the second ``second``."""
    return Entries(
        FEED, ((LOG[0].raw, b"a" * MAX_PAYLOAD_SIZE), (LOG[1].raw, b"b" * second))
    )


def largest_second_payload() -> int:
    """The second payload that makes ``two_payloads`` exactly MAX_MESSAGE_SIZE bytes."""
    probe = 100_000  # any size with the same msgpack header length (bin32)
    overhead = len(msgpack.packb([2, *two_payloads(probe).fields()], use_bin_type=True)) - probe
    return MAX_MESSAGE_SIZE - overhead


def test_a_message_of_max_message_size_travels() -> None:
    message = two_payloads(largest_second_payload())
    body = encode_message(message)
    assert len(body) == MAX_MESSAGE_SIZE
    assert decode_message(body) == message


def test_a_message_over_max_message_size_is_too_large() -> None:
    message = two_payloads(largest_second_payload() + 1)
    with pytest.raises(LocalProtocolError):
        encode_message(message)  # ours: a bug in the sender, not the peer's fault
    body = msgpack.packb([2, *message.fields()], use_bin_type=True)
    assert len(body) == MAX_MESSAGE_SIZE + 1
    error = refused(body)
    assert type(error) is MessageTooLarge and error.code == "oversize"


def test_the_size_is_checked_before_parsing() -> None:
    error = refused(b"\xc1" * (MAX_MESSAGE_SIZE + 1))  # 0xc1 is never valid msgpack
    assert type(error) is MessageTooLarge


# -- nothing but PeerErrors ------------------------------------------------------------

@settings(max_examples=examples(500))
@given(st.binary(max_size=256))
def test_random_bytes_raise_nothing_but_peer_errors(body: bytes) -> None:
    with contextlib.suppress(PeerError):
        decode_message(body)


leaves = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=70) | st.binary(max_size=70)
)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=5), max_leaves=20)


def leaf_paths(value: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    if isinstance(value, list):
        found = [path] if path else []
        for index, item in enumerate(value):
            found += leaf_paths(item, (*path, index))
        return found
    return [path]


@settings(max_examples=examples(500))
@given(st.sampled_from(sorted(VALID)), st.data())
def test_a_valid_body_with_one_field_replaced_raises_nothing_but_peer_errors(
    kind: str, data: st.DataObject
) -> None:
    paths = [p for p in leaf_paths(VALID[kind]) if p != (0,)] or [(1,)]  # ping: append
    body = changed(kind, data.draw(st.sampled_from(paths)), data.draw(values))
    with contextlib.suppress(PeerError):
        decode_message(body)


@settings(max_examples=examples(300))
@given(st.integers(0, 11), st.lists(values, max_size=6))
def test_any_fields_under_any_type_raise_nothing_but_peer_errors(
    kind: int, fields: list[Any]
) -> None:
    with contextlib.suppress(PeerError):
        decode_message(raw(kind, *fields))


def test_a_note_names_its_head_exactly_when_it_holds_something() -> None:
    assert "seq 0 names no head" in str(malformed(raw(1, 0, [[KEY, "blog", 0, 1, HEAD]], 1)))
    assert "note head" in str(malformed(raw(1, 0, [[KEY, "blog", 3, 1, None]], 1)))


def test_eager_without_want_is_malformed() -> None:
    """Flags 2 would say "push to me" about a feed the sender does not take (spec/10 §2)."""
    assert "flags 2" in str(malformed(raw(1, 0, [[KEY, "blog", 0, EAGER, None]], 1)))


@pytest.mark.parametrize("seqs", [[2, 1], [3, 3], [1, 5, 4]], ids=repr)
def test_the_seqs_of_a_seq_request_ascend_strictly(seqs: list[int]) -> None:
    assert "ascend" in str(malformed(raw(9, 0, KEY, "blog", seqs, 0)))


@pytest.mark.parametrize("host", ["fe80::1%eth0", "fe80::1%x y", "fe80::1%1", "%"])
def test_an_ipv6_zone_id_is_not_an_address(host: str) -> None:
    """A zone names an interface of the sender's machine: meaningless to the receiver."""
    assert "host" in str(malformed(raw(6, [[host, 8008]])))


@settings(max_examples=examples(100))
@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(
    st.integers(0, 65535), st.sampled_from([0, 1, 255, 256, 65535, CHUNK_SIZE]),
    st.integers(0, 16)), max_size=4), st.booleans())
def test_blob_data_in_parts_is_the_same_bytes(request_id: int, shapes: list[tuple[int, int, int]],
                                              final: bool) -> None:
    """A blob-data message is queued in pieces (its chunks' bytes uncopied): together
    they are exactly the msgpack body."""
    chunks = tuple((index, bytes([index & 0xFF]) * length, bytes(HASHES * 32))
                   for index, length, HASHES in shapes)
    message = BlobData(request_id, chunks, final or not chunks)
    parts = encode_message_parts(message)
    assert b"".join(parts) == encode_message(message)
    assert decode_message(b"".join(parts)) == message
    assert all(part is data for part, (_, data, _) in zip(parts[1::2], chunks, strict=False))
