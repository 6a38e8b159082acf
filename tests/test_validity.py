"""spec/04-validity.md: one test per rule, each naming the feed and the seq."""

from __future__ import annotations

import pytest

from tidings import Anchor, verify_run
from tidings.core.entry import TAG_END_OF_LOG, Entry, decode_entry, payload_hash
from tidings.core.verify import decode_run
from tidings.errors import (
    BadSignature,
    EntryAfterEndOfLog,
    InvalidEntry,
    PayloadHashMismatch,
    PayloadSizeMismatch,
    SequenceGap,
    WrongBacklink,
    WrongFeed,
    WrongLipmaaLink,
)

from .helpers import author, forge, make_log

WHO = author(1)


def anchor_after(entries: list[Entry]) -> Anchor:
    return Anchor(
        WHO.author.key, "blog", len(entries), ended=bool(entries) and entries[-1].is_end_of_log,
        known={e.seq: e.hash for e in entries},
    )


def check(entries: list[Entry], bad: bytes, payload: bytes | None = None) -> InvalidEntry:
    """Verify ``bad`` after ``entries`` both one by one and as a batch; same error."""
    errors = []
    for batch in (False, True):
        with pytest.raises(InvalidEntry) as caught:
            run = decode_run([bad], WHO.author.feed("blog"), len(entries) + 1)
            verify_run(run, anchor_after(entries), [payload], batch=batch)
        errors.append(caught.value)
    assert type(errors[0]) is type(errors[1])
    assert errors[0].feed == str(WHO.author.feed("blog"))
    assert errors[0].seq == len(entries) + 1
    return errors[0]


def test_a_valid_log_passes_both_ways() -> None:
    entries, payloads = make_log(50)
    for batch in (False, True):
        verify_run(entries, anchor_after([]), payloads, batch=batch)


def test_bad_signature() -> None:
    entries, _ = make_log(3)
    raw = bytearray(forge(WHO, seq=4, backlink=entries[2].hash, lipmaa_link=entries[0].hash))
    raw[-1] ^= 1
    assert isinstance(check(entries, bytes(raw)), BadSignature)


def test_signature_by_another_key() -> None:
    entries, _ = make_log(3)
    raw = forge(author(2), seq=4, backlink=entries[2].hash, lipmaa_link=entries[0].hash)
    # the entry claims author 2: it belongs to another feed
    assert isinstance(check(entries, raw), WrongFeed)
    body = raw[:-64]
    body = body.replace(author(2).author.key, WHO.author.key)
    assert isinstance(check(entries, body + raw[-64:]), BadSignature)


def test_wrong_backlink() -> None:
    entries, _ = make_log(3)
    raw = forge(WHO, seq=4, backlink=entries[1].hash, lipmaa_link=entries[0].hash)
    assert isinstance(check(entries, raw), WrongBacklink)


def test_wrong_lipmaa_link() -> None:
    entries, _ = make_log(3)
    raw = forge(WHO, seq=4, backlink=entries[2].hash, lipmaa_link=entries[1].hash)
    assert isinstance(check(entries, raw), WrongLipmaaLink)


def test_gap() -> None:
    entries, _ = make_log(3)
    raw = forge(WHO, seq=5, backlink=entries[2].hash)  # lipmaa(5) == 4: no lipmaa link
    error = check(entries, raw)
    assert isinstance(error, SequenceGap) and "expected seq 4, got 5" in str(error)


def test_payload_size_mismatch() -> None:
    entries, _ = make_log(3)
    raw = forge(WHO, seq=4, backlink=entries[2].hash, lipmaa_link=entries[0].hash,
                payload_size=3, payload_hash=payload_hash(b"abc"))
    assert isinstance(check(entries, raw, b"abcd"), PayloadSizeMismatch)


def test_payload_hash_mismatch() -> None:
    entries, _ = make_log(3)
    raw = forge(WHO, seq=4, backlink=entries[2].hash, lipmaa_link=entries[0].hash,
                payload_size=3, payload_hash=payload_hash(b"abc"))
    assert isinstance(check(entries, raw, b"abd"), PayloadHashMismatch)


def test_absent_payload_is_fine() -> None:
    entries, _ = make_log(3)
    raw = forge(WHO, seq=4, backlink=entries[2].hash, lipmaa_link=entries[0].hash,
                payload_size=3, payload_hash=payload_hash(b"abc"))
    verify_run([decode_entry(raw)], anchor_after(entries), [None])


def test_entry_after_end_of_log() -> None:
    entries, _ = make_log(2)
    end = decode_entry(forge(WHO, seq=3, backlink=entries[1].hash, tag=TAG_END_OF_LOG))
    verify_run([end], anchor_after(entries))
    raw = forge(WHO, seq=4, backlink=end.hash, lipmaa_link=entries[0].hash)
    assert isinstance(check([*entries, end], raw), EntryAfterEndOfLog)


def test_error_names_feed_and_seq_in_its_message() -> None:
    entries, _ = make_log(3)
    raw = forge(WHO, seq=4, backlink=entries[1].hash, lipmaa_link=entries[0].hash)
    text = str(check(entries, raw))
    assert str(WHO.author.feed("blog")) in text and "seq 4" in text and "wrong-backlink" in text


def test_decode_errors_get_the_expected_position() -> None:
    with pytest.raises(InvalidEntry) as caught:
        decode_run([b"\x00"], WHO.author.feed("blog"), 7)
    assert caught.value.seq == 7 and caught.value.feed == str(WHO.author.feed("blog"))
