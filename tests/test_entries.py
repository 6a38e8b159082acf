"""spec/02-entries.md: the byte layout, hashing, and the strict decoder."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import decode_entry
from tidings.core.entry import (
    FLAG_END_OF_LOG,
    FLAG_SIGNED,
    MAX_ENTRY_SIZE,
    SIG_HEAD,
    Entry,
    decode_by_reencoding,
    decode_canonical,
    entry_hash,
    payload_hash,
    stored_is_signed,
    stored_payload_hash,
)
from tidings.core.lipmaa import link_target
from tidings.errors import (
    InvalidEntry,
    MalformedEntry,
    NonCanonicalEncoding,
    Oversize,
    UnknownVersion,
)

from .helpers import author, examples, forge, make_log, sign_raw_body


def test_entry_is_body_then_signature_over_the_body() -> None:
    entries, payloads = make_log(3)
    entry = entries[2]
    body = entry.raw[:-66]
    assert entry.raw[-66:-64] == SIG_HEAD
    assert cbor2.loads(body) == [
        2, FLAG_SIGNED, entry.author, "blog", 3, entry.timestamp, entries[1].hash, None,
        len(payloads[2]), payload_hash(payloads[2]),
    ]
    author(1).secret_key.public_key().verify(entry.signature, body)
    assert entry.hash == entry_hash(entry.raw)


def test_an_unsigned_entry_is_its_body_alone() -> None:
    entries, payloads = make_log(3)  # one append: only its last entry is signed
    entry = entries[1]
    assert not entry.signed and entry.signature == b""
    assert cbor2.loads(entry.raw) == [
        2, 0, entry.author, "blog", 2, entry.timestamp, entries[0].hash, None,
        len(payloads[1]), payload_hash(payloads[1]),
    ]
    assert entry.hash == entry_hash(entry.raw) and entry.body == entry.raw
    assert stored_is_signed(entries[2].raw) and not stored_is_signed(entry.raw)
    assert stored_payload_hash(entry.raw) == payload_hash(payloads[1])
    assert stored_payload_hash(entries[2].raw) == payload_hash(payloads[2])


def test_the_flags_must_match_the_signature() -> None:
    """A stripped signature (or one added to an unsigned body) is malformed, so a
    relay cannot turn a signed entry into an unsigned one or back."""
    who = author(1)
    signed = forge(who)
    with pytest.raises(MalformedEntry, match="no signature follows"):
        decode_entry(signed[:-66])
    unsigned = forge(who, flags=0)
    with pytest.raises(MalformedEntry, match="flags say the entry is unsigned"):
        decode_entry(sign_raw_body(who, unsigned))


def test_an_end_of_log_is_always_signed() -> None:
    with pytest.raises(MalformedEntry, match="flags"):
        decode_entry(forge(author(1), flags=FLAG_END_OF_LOG))
    assert decode_entry(forge(author(1), flags=FLAG_SIGNED | FLAG_END_OF_LOG)).is_end_of_log


def test_decoding_gives_back_what_was_signed() -> None:
    entries, _ = make_log(20)
    for entry in entries:
        assert decode_entry(entry.raw) == entry


def test_largest_entry_fits_the_bound() -> None:
    who = author(1)
    spine = 1
    while 3 * spine + 1 < 2**63:
        spine = 3 * spine + 1  # the largest spine seq: 8-byte integer and a lipmaa link
    raw = forge(who, log_id="x" * 64, seq=spine, timestamp=2**64 - 1, backlink=b"\xff" * 32,
                lipmaa_link=b"\xff" * 32, payload_size=2**20)
    assert len(raw) <= MAX_ENTRY_SIZE
    assert decode_entry(raw).seq == spine


def _reencode_with(items: list[object], index: int, head: bytes) -> bytes:
    """The body with item ``index`` written with a non-shortest head."""
    parts = [cbor2.dumps(item) for item in items]
    parts[index] = head
    return bytes([0x80 | len(items)]) + b"".join(parts)


@pytest.mark.parametrize(
    "make_body",
    [
        # seq 1 written as a two-byte integer head (0x18 0x01)
        lambda items: _reencode_with(items, 4, b"\x18\x01"),
        # version written as 0x19 0x00 0x02
        lambda items: _reencode_with(items, 0, b"\x19\x00\x02"),
        # indefinite-length array
        lambda items: b"\x9f" + b"".join(cbor2.dumps(i) for i in items) + b"\xff",
    ],
)
def test_non_canonical_bodies_are_refused_even_when_signed(make_body) -> None:  # type: ignore[no-untyped-def]
    who = author(1)
    items = cbor2.loads(forge(who)[:-66])
    raw = sign_raw_body(who, make_body(items))
    with pytest.raises((NonCanonicalEncoding, MalformedEntry)) as caught:
        decode_entry(raw)
    # a long head still decodes as the same value, so every case is a re-encoding mismatch
    assert caught.type is NonCanonicalEncoding


def test_trailing_bytes_after_the_body_are_malformed() -> None:
    who = author(1)
    body = forge(who)[:-66] + b"\x00"
    with pytest.raises(MalformedEntry, match="follow"):
        decode_entry(sign_raw_body(who, body))


@pytest.mark.parametrize("tag", [b"\xc2", b"\xd9\xd9\xf7", b"\xd8\x1c"])
def test_tags_are_malformed_wherever_they_sit(tag: bytes) -> None:
    """Tags 2 (bignum), 55799 (self-describe), 28 (shareable): cbor2 would unwrap them."""
    who = author(1)
    items = cbor2.loads(forge(who)[:-66])
    parts = [cbor2.dumps(i) for i in items]
    parts[4] = tag + (b"\x41\x01" if tag == b"\xc2" else parts[4])
    with pytest.raises(MalformedEntry, match="tags"):
        decode_entry(sign_raw_body(who, b"\x8a" + b"".join(parts)))


def test_small_order_author_keys_sign_nothing() -> None:
    """The identity point: R = identity, S = 0 verifies over every message in OpenSSL."""
    from tidings.core.entry import SIG_HEAD, encode_body, is_acceptable_author_key
    from tidings.errors import BadSignature

    identity_point = b"\x01" + b"\x00" * 31
    assert not is_acceptable_author_key(identity_point)
    assert not is_acceptable_author_key(b"\xff" * 31 + b"\x7f")  # y >= p
    assert is_acceptable_author_key(author(1).author.key)
    body = encode_body(flags=FLAG_SIGNED, author=identity_point, log_id="blog", seq=1, timestamp=0,
                       backlink=None, lipmaa_link=None, payload_size=0,
                       payload_hash=payload_hash(b""))
    forged_signature = identity_point + b"\x00" * 32
    # the raw primitive accepts it: this is the hole the key check closes
    Ed25519PublicKey.from_public_bytes(identity_point).verify(forged_signature, body)
    entry = decode_entry(body + SIG_HEAD + forged_signature)
    with pytest.raises(BadSignature, match="small-order"):
        entry.check_signature()


def test_a_small_order_r_is_refused_as_libsodium_does() -> None:
    from tidings.core.entry import SIG_HEAD
    from tidings.errors import BadSignature

    who = author(1)
    body = forge(who)[:-66]
    signature = who.secret_key.sign(body)
    for r in (b"\x01" + b"\x00" * 31, b"\x00" * 32, b"\xec" + b"\xff" * 30 + b"\x7f"):
        entry = decode_entry(body + SIG_HEAD + r + signature[32:])
        with pytest.raises(BadSignature, match="R"):
            entry.check_signature()


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"flags": 1}, MalformedEntry, "flags"),
        ({"flags": 4}, MalformedEntry, "flags"),
        ({"seq": 0}, MalformedEntry, "seq"),
        ({"author": b"\x01" * 31}, MalformedEntry, "author"),
        ({"log_id": "Blog"}, MalformedEntry, "log id"),
        ({"log_id": "a" * 65}, Oversize, "log id"),
        ({"payload_size": 2**20 + 1}, Oversize, "payload size"),
        ({"payload_hash": b"\x00" * 31}, MalformedEntry, "payload hash"),
        ({"backlink": b"\x00" * 32}, MalformedEntry, "entry 1"),
        ({"seq": 3, "backlink": None}, MalformedEntry, "backlink"),
        ({"seq": 3, "backlink": b"\x00" * 32, "lipmaa_link": b"\x00" * 32}, MalformedEntry, "null"),
        ({"seq": 4, "backlink": b"\x00" * 32}, MalformedEntry, "lipmaa link"),
        ({"timestamp": True}, MalformedEntry, "timestamp"),
    ],
)
def test_field_rules(fields: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        decode_entry(forge(author(1), **fields))


def test_unknown_version_is_named_before_anything_else() -> None:
    who = author(1)
    items = cbor2.loads(forge(who)[:-66])
    items[0] = 3
    with pytest.raises(UnknownVersion, match="version 3"):
        decode_entry(sign_raw_body(who, cbor2.dumps([*items, "future field"])) + b"more")


def test_oversize_entries_are_refused_before_decoding() -> None:
    with pytest.raises(Oversize):
        decode_entry(b"\x00" * (MAX_ENTRY_SIZE + 1))


@given(st.binary(max_size=600))
def test_random_bytes_never_escape_as_anything_but_invalid_entry(data: bytes) -> None:
    from tidings.errors import InvalidEntry

    with contextlib.suppress(InvalidEntry):
        decode_entry(data)


@given(st.data())
def test_any_byte_flip_changes_the_hash_or_is_refused(data: st.DataObject) -> None:
    from tidings.errors import InvalidEntry

    entries, _ = make_log(5)
    entry = entries[data.draw(st.integers(0, 4))]
    position = data.draw(st.integers(0, len(entry.raw) - 1))
    flip = data.draw(st.integers(1, 255))
    raw = bytearray(entry.raw)
    raw[position] ^= flip
    try:
        changed = decode_entry(bytes(raw))
    except InvalidEntry:
        return
    assert changed.hash != entry.hash
    if changed.signed:
        with pytest.raises(InvalidEntry):
            changed.check_signature()


CBOR_VALUES = st.recursive(
    st.none() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@given(CBOR_VALUES)
def test_strict_decoder_reads_what_cbor2_writes(value: object) -> None:
    from tidings.core import cbor

    assert cbor.read(cbor2.dumps(value), cbor.STRUCTURE) == value


@given(st.binary(max_size=64))
def test_strict_decoder_only_raises_malformed(data: bytes) -> None:
    from tidings.core.entry import strict_cbor_item

    with contextlib.suppress(MalformedEntry):
        strict_cbor_item(data, 0)


@pytest.mark.parametrize("field", [0, 8])
def test_a_bignum_that_round_trips_is_still_a_tag(field: int) -> None:
    """cbor2 writes ints >= 2^64 as tag 2, so such a body re-encodes exactly;
    the version (or payload size) must still be malformed, not unknown or oversize."""
    who = author(1)
    items = cbor2.loads(forge(who)[:-66])
    items[field] = 1 << 64
    body = cbor2.dumps(items)
    assert b"\xc2" in body and cbor2.dumps(cbor2.loads(body)) == body
    with pytest.raises(MalformedEntry, match="tags"):
        decode_entry(sign_raw_body(who, body))


# -- the layout reader agrees with decode-and-re-encode ----------------------------------


def _one_way(raw: bytes) -> object:
    """What the re-encoding path makes of ``raw``: the entry, or the error's type."""
    try:
        return decode_by_reencoding(raw)
    except InvalidEntry as exc:
        return type(exc)


def _valid_entries() -> list[bytes]:
    """Entries of every shape the layout reader must take: seq 1 (no links), a backlink
    alone, both links, unsigned and signed and end-of-log, 1-, 23-, 24- and 64-byte log
    ids, integers at each head width."""
    who = author(1)
    entries, _ = make_log(45, per_append=7)  # both links, signed and unsigned
    link = bytes(range(32))
    raws = [e.raw for e in entries]
    for log_id in ("a", "x" * 23, "y" * 24, "z" * 64):
        raws.append(forge(who, log_id=log_id))
    for value in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
        raws.append(forge(who, timestamp=value))
    for seq in (2, 23, 24, 255, 256, 2**16, 2**32, 2**63 - 1):
        lipmaa = link if link_target(seq) is not None else None
        raws.append(forge(who, seq=seq, backlink=link, lipmaa_link=lipmaa))
    for size in (0, 23, 24, 255, 256, 65536, 2**20):
        raws.append(forge(who, payload_size=size))
    raws.append(forge(who, flags=FLAG_SIGNED | FLAG_END_OF_LOG))
    raws.append(forge(who, flags=0))
    return raws


def test_the_layout_reader_takes_every_canonical_entry_unchanged() -> None:
    for raw in _valid_entries():
        fast = decode_canonical(raw)
        assert fast is not None, raw.hex()
        assert fast == decode_by_reencoding(raw) == decode_entry(raw)


@given(st.data())
@settings(max_examples=examples(400))
def test_the_layout_reader_never_takes_what_re_encoding_refuses(data: st.DataObject) -> None:
    """Flip, insert, delete or cut bytes of valid entries: whatever the layout reader
    still takes, decode-and-re-encode takes too, as the same entry; and where the
    re-encoding path takes the result, so does the reader (one rule, two readers)."""
    raw = bytearray(data.draw(st.sampled_from(_VALID)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        what = data.draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if what == "flip" and at < len(raw):
            raw[at] = data.draw(st.integers(0, 255))
        elif what == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        elif what == "delete":
            del raw[at:at + data.draw(st.integers(1, 9))]
        else:
            del raw[at:]
    mutated = bytes(raw)
    fast = decode_canonical(mutated)
    slow = _one_way(mutated)
    if fast is not None:
        assert fast == slow
    else:
        assert not isinstance(slow, Entry)
    if isinstance(slow, Entry):
        assert fast == slow


def test_the_layout_reader_refuses_tags_trailing_bytes_and_long_heads() -> None:
    """cbor2 alone takes a tag and ignores trailing bytes; the layout reader does not."""
    who = author(1)
    raw = forge(who, flags=0)
    assert decode_canonical(raw) is not None
    assert decode_canonical(raw + b"\x00") is None
    assert decode_canonical(b"\xd8\x18" + raw) is None  # a tag before the body
    tagged_seq = raw.replace(b"\x64blog\x01", b"\x64blog\xc2\x41\x01", 1)
    assert decode_canonical(tagged_seq) is None
    long_seq = raw.replace(b"\x64blog\x01", b"\x64blog\x18\x01", 1)
    assert decode_canonical(long_seq) is None
    with pytest.raises(NonCanonicalEncoding):
        decode_entry(long_seq)


_VALID = _valid_entries()
