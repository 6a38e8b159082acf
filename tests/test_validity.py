"""spec/04-validity.md: one test per rule, each naming the feed and the seq."""

from __future__ import annotations

import pytest

from tidings import Anchor, verify_run
from tidings.core.entry import (
    FLAG_END_OF_LOG,
    FLAG_SIGNED,
    MAX_UNSIGNED_BYTES,
    MAX_UNSIGNED_RUN,
    Entry,
    decode_entry,
    payload_hash,
)
from tidings.core.verify import check_run, decode_run
from tidings.errors import (
    BadSignature,
    EntryAfterEndOfLog,
    InvalidEntry,
    PayloadHashMismatch,
    PayloadSizeMismatch,
    SequenceGap,
    UnsignedRun,
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
    """Verify ``bad`` after ``entries``: the error names the feed and the position."""
    with pytest.raises(InvalidEntry) as caught:
        run = decode_run([bad], WHO.author.feed("blog"), len(entries) + 1)
        verify_run(run, anchor_after(entries), [payload])
    assert caught.value.feed == str(WHO.author.feed("blog"))
    assert caught.value.seq == len(entries) + 1
    return caught.value


def test_a_valid_log_is_accepted_to_its_last_signed_entry() -> None:
    entries, payloads = make_log(150)  # one append: signed at 64, 128 and 150
    assert [e.seq for e in entries if e.signed] == [64, 128, 150]
    result = verify_run(entries, anchor_after([]), payloads)
    assert (result.accepted, result.pending) == (150, 0)
    result = verify_run(entries[:100], anchor_after([]), payloads[:100])
    assert (result.accepted, result.pending) == (64, 36)  # 65..100: nothing vouches yet


def test_a_bad_signature_is_refused_even_when_a_later_signature_vouches() -> None:
    """Every signature an entry carries must verify: the accepted set cannot depend
    on which entries a sender put in one batch (spec/05 §2)."""
    entries, _ = make_log(3)
    second = bytearray(forge(WHO, seq=4, backlink=entries[2].hash, lipmaa_link=entries[0].hash))
    second[-1] ^= 1
    third = forge(WHO, seq=5, backlink=decode_entry(bytes(second)).hash)
    result = check_run([decode_entry(bytes(second)), decode_entry(third)], anchor_after(entries))
    assert isinstance(result.error, BadSignature) and result.error.seq == 4
    assert result.accepted == 0


def test_an_unsigned_entry_is_valid_once_a_signed_one_follows() -> None:
    entries, _ = make_log(3)
    unsigned = decode_entry(forge(WHO, flags=0, seq=4, backlink=entries[2].hash,
                                  lipmaa_link=entries[0].hash))
    signed = decode_entry(forge(WHO, seq=5, backlink=unsigned.hash))
    alone = verify_run([unsigned], anchor_after(entries))
    assert (alone.accepted, alone.pending) == (0, 1)
    both = verify_run([unsigned, signed], anchor_after(entries))
    assert (both.accepted, both.pending) == (2, 0)


def _unsigned_chain(count: int, size: int = 0) -> list[Entry]:
    from tidings.core.lipmaa import link_target

    chain: list[Entry] = []
    for seq in range(1, count + 1):
        target = link_target(seq)
        chain.append(decode_entry(forge(
            WHO, flags=0, seq=seq, backlink=chain[-1].hash if chain else None,
            lipmaa_link=chain[target - 1].hash if target else None,
            payload_size=size, payload_hash=payload_hash(b"x" * size))))
    return chain


def test_unsigned_run_at_most_63_entries() -> None:
    chain = _unsigned_chain(MAX_UNSIGNED_RUN + 1)
    result = check_run(chain, anchor_after([]))
    assert isinstance(result.error, UnsignedRun) and result.error.seq == MAX_UNSIGNED_RUN + 1
    assert result.accepted == 0 and result.checked == MAX_UNSIGNED_RUN


def test_unsigned_run_at_most_256_kib_of_payloads() -> None:
    size = MAX_UNSIGNED_BYTES // 4
    chain = _unsigned_chain(5, size)
    result = check_run(chain, anchor_after([]))
    assert isinstance(result.error, UnsignedRun) and result.error.seq == 5
    assert result.checked == 4


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


def test_the_position_of_an_error_comes_before_its_signature() -> None:
    """C1-C3 come before C4: a misplaced entry with a bad signature is a gap."""
    entries, _ = make_log(3)
    raw = bytearray(forge(WHO, seq=5, backlink=entries[2].hash))
    raw[-1] ^= 1
    assert isinstance(check(entries, bytes(raw)), SequenceGap)


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
    end = decode_entry(forge(WHO, seq=3, backlink=entries[1].hash,
                             flags=FLAG_SIGNED | FLAG_END_OF_LOG))
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
