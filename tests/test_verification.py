"""spec/05-verification.md: batch verification equals one by one on honest logs and
refuses any tampering; partial verification checks a certificate pool."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import Anchor, certificate_pool, partial_seqs, verify_partial, verify_run
from tidings.core.entry import Entry, decode_entry
from tidings.core.lipmaa import links_needed
from tidings.core.verify import decode_run
from tidings.errors import (
    BadSignature,
    InvalidEntry,
    LinkedSeqMismatch,
    SequenceGap,
    WrongBacklink,
)

from .helpers import author, forge, make_log

LOG, PAYLOADS = make_log(120, payload=lambda i: bytes([i % 251]) * (i % 17))
FEED = LOG[0].feed


def anchor(prefix: list[Entry], first: int, last: int) -> Anchor:
    needed = links_needed(first, last)
    return Anchor(FEED.author_key, FEED.log_id, len(prefix),
                  known={e.seq: e.hash for e in prefix if e.seq in needed})


runs = st.integers(0, 119).flatmap(
    lambda start: st.tuples(st.just(start), st.integers(start + 1, 120))
)


@given(runs)
def test_batch_and_one_by_one_accept_the_same_honest_runs(run: tuple[int, int]) -> None:
    start, end = run
    prefix, entries = LOG[:start], LOG[start:end]
    for batch in (True, False):
        verify_run(entries, anchor(prefix, start + 1, end), PAYLOADS[start:end], batch=batch)


@settings(max_examples=300)
@given(runs, st.data())
def test_any_changed_byte_of_any_entry_of_a_batch_is_refused(
    run: tuple[int, int], data: st.DataObject
) -> None:
    start, end = run
    victim = data.draw(st.integers(start, end - 1), label="entry")
    raw = bytearray(LOG[victim].raw)
    position = data.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[position] ^= data.draw(st.integers(1, 255), label="xor")
    raws = [e.raw for e in LOG[start:end]]
    raws[victim - start] = bytes(raw)
    with pytest.raises(InvalidEntry) as caught:
        entries = decode_run(raws, FEED, start + 1)
        verify_run(entries, anchor(LOG[:start], start + 1, end), batch=True)
    # the error names the changed entry, not a later one that links to it
    assert caught.value.seq == victim + 1


@given(runs, st.data())
def test_any_changed_payload_byte_is_refused(run: tuple[int, int], data: st.DataObject) -> None:
    start, end = run
    payloads: list[bytes | None] = list(PAYLOADS[start:end])
    candidates = [i for i, p in enumerate(payloads) if p]
    if not candidates:
        return
    index = data.draw(st.sampled_from(candidates))
    payload = bytearray(payloads[index] or b"")
    payload[data.draw(st.integers(0, len(payload) - 1))] ^= 0x40
    payloads[index] = bytes(payload)
    with pytest.raises(InvalidEntry) as caught:
        verify_run(LOG[start:end], anchor(LOG[:start], start + 1, end), payloads)
    assert caught.value.seq == start + index + 1


def test_a_failed_batch_names_the_first_bad_entry() -> None:
    raws = [e.raw for e in LOG[:40]]
    raws[9] = raws[9][:-1] + bytes([raws[9][-1] ^ 1])  # seq 10's signature
    with pytest.raises(BadSignature) as caught:
        verify_run(decode_run(raws, FEED, 1), anchor([], 1, 40))
    assert caught.value.seq == 10


def test_a_batch_verifies_one_signature() -> None:
    """The head's signature authenticates the prefix: an inner entry whose own
    signature is broken but which the author's head commits to is accepted by a
    batch and refused one by one (spec/05-verification.md)."""
    who = author(1)
    first = decode_entry(forge(who, payload_size=0))
    broken = first.raw[:-1] + bytes([first.raw[-1] ^ 1])
    bad_first = decode_entry(broken)
    second = decode_entry(forge(who, seq=2, backlink=bad_first.hash))
    fresh = Anchor(who.author.key, "blog")
    verify_run([bad_first, second], fresh, batch=True)
    with pytest.raises(BadSignature):
        verify_run([bad_first, second], fresh, batch=False)


@given(st.integers(1, 120), st.integers(1, 30))
def test_partial_verification_of_the_latest_entries(head: int, count: int) -> None:
    wanted = partial_seqs(head, count)
    assert len(wanted) <= count + len(certificate_pool(max(1, head - count + 1)))
    chosen = [LOG[seq - 1] for seq in wanted]
    verified = verify_partial(chosen, {seq: PAYLOADS[seq - 1] for seq in wanted})
    assert [e.seq for e in verified] == wanted


@given(st.integers(2, 120), st.data())
def test_partial_verification_refuses_tampering(head: int, data: st.DataObject) -> None:
    wanted = partial_seqs(head, 3)
    chosen = [LOG[seq - 1] for seq in wanted]
    victim = data.draw(st.integers(0, len(chosen) - 1))
    raw = bytearray(chosen[victim].raw)
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= 0x01
    try:
        chosen[victim] = decode_entry(bytes(raw))
    except InvalidEntry:
        return
    with pytest.raises(InvalidEntry):
        verify_partial(chosen)


def test_partial_verification_needs_a_path_to_entry_one() -> None:
    chosen = [LOG[seq - 1] for seq in partial_seqs(100, 5) if seq != 1]
    with pytest.raises(SequenceGap, match="entry 1"):
        verify_partial(chosen)


def test_partial_verification_refuses_an_unlinked_entry() -> None:
    chosen = [LOG[seq - 1] for seq in partial_seqs(100, 2)] + [LOG[49]]
    with pytest.raises(SequenceGap) as caught:
        verify_partial(chosen)
    assert caught.value.seq == 50


def test_link_to_the_wrong_seq_is_named() -> None:
    """An author-signed entry whose backlink names entry seq-2 (Bamboo's bug)."""
    who = author(1)
    entries = LOG[:3]
    bad = decode_entry(forge(who, seq=4, backlink=entries[1].hash, lipmaa_link=entries[0].hash))
    with pytest.raises(LinkedSeqMismatch) as caught:
        verify_partial([*entries[:2], bad])
    assert caught.value.seq == 4
    unknown = decode_entry(forge(who, seq=4, backlink=b"\x07" * 32, lipmaa_link=entries[0].hash))
    with pytest.raises(WrongBacklink):
        verify_partial([*entries[:3], unknown])


def test_a_failed_batch_keeps_everything_a_verified_signature_commits_to() -> None:
    """Entry 3's own signature is broken but the author's entry 4 commits to it;
    entry 5 breaks a link. A batch accepts 1..4 and names entry 5's rule."""
    who = author(1)
    e1 = decode_entry(forge(who))
    e2 = decode_entry(forge(who, seq=2, backlink=e1.hash))
    good3 = forge(who, seq=3, backlink=e2.hash)
    e3 = decode_entry(good3[:-1] + bytes([good3[-1] ^ 1]))
    e4 = decode_entry(forge(who, seq=4, backlink=e3.hash, lipmaa_link=e1.hash))
    e5 = decode_entry(forge(who, seq=5, backlink=e3.hash))
    fresh = Anchor(who.author.key, "blog")
    with pytest.raises(WrongBacklink) as caught:
        verify_run([e1, e2, e3, e4, e5], fresh, batch=True)
    assert caught.value.seq == 5
    with pytest.raises(BadSignature) as caught_strict:
        verify_run([e1, e2, e3, e4, e5], fresh, batch=False)
    assert caught_strict.value.seq == 3
    # without entry 4 nothing vouches for entry 3: the batch refuses it by its signature
    with pytest.raises(BadSignature) as caught_short:
        verify_run([e1, e2, e3, e5], fresh, batch=True)
    assert caught_short.value.seq == 3
