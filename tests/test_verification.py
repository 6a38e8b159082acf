"""spec/05-verification.md: one procedure, whoever cut the input into pieces; tampering
is never accepted; partial verification checks a certificate pool."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import (
    Anchor,
    Identity,
    Logbook,
    MemoryStore,
    certificate_pool,
    partial_seqs,
    verify_partial,
)
from tidings.core.entry import Entry, decode_entry
from tidings.core.lipmaa import links_needed
from tidings.core.verify import check_run, decode_run, extend_in_one_pass
from tidings.errors import (
    InvalidEntry,
    LinkedSeqMismatch,
    MissingAnchor,
    SequenceGap,
    UnsignedTail,
    WrongBacklink,
)

from .helpers import author, examples, forge


def _scattered_log(count: int) -> tuple[list[Entry], list[bytes]]:
    """A log made by appends of 1 to 9 entries: signed at the end of each append."""
    book = Logbook(MemoryStore(), author(1), clock=lambda: 1_700_000_000_000_000)
    payloads = [bytes([i % 251]) * (i % 17) for i in range(1, count + 1)]
    start = 0
    while start < count:
        size = min(count - start, 1 + (start * 7) % 9)
        book.publish_batch(payloads[start:start + size], "blog")
        start += size
    return [entry for entry, _ in book.read(book.feed("blog"))], payloads


LOG, PAYLOADS = _scattered_log(120)
FEED = LOG[0].feed
SIGNED = [e.seq for e in LOG if e.signed]


def anchor(prefix: list[Entry], first: int, last: int) -> Anchor:
    needed = links_needed(first, last)
    return Anchor(FEED.author_key, FEED.log_id, len(prefix),
                  known={e.seq: e.hash for e in prefix if e.seq in needed})


runs = st.integers(0, 119).flatmap(
    lambda start: st.tuples(st.just(start), st.integers(start + 1, 120))
)


def test_the_log_has_signed_and_unsigned_entries() -> None:
    assert 10 < len(SIGNED) < 100 and SIGNED[-1] == 120


@given(runs)
def test_an_honest_run_is_accepted_to_its_last_signed_entry(run: tuple[int, int]) -> None:
    start, end = run
    result = check_run(LOG[start:end], anchor(LOG[:start], start + 1, end), PAYLOADS[start:end])
    last_signed = max((s for s in SIGNED if start < s <= end), default=start)
    assert result.error is None
    assert result.accepted == last_signed - start and result.checked == end - start


@settings(max_examples=examples(300))
@given(runs, st.data())
def test_any_changed_byte_of_any_entry_is_never_accepted(
    run: tuple[int, int], data: st.DataObject
) -> None:
    start, end = run
    victim = data.draw(st.integers(start, end - 1), label="entry")
    raw = bytearray(LOG[victim].raw)
    position = data.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[position] ^= data.draw(st.integers(1, 255), label="xor")
    raws = [e.raw for e in LOG[start:end]]
    raws[victim - start] = bytes(raw)
    try:
        entries = decode_run(raws, FEED, start + 1)
    except InvalidEntry as exc:
        assert exc.seq == victim + 1  # the changed entry does not decode
        return
    result = check_run(entries, anchor(LOG[:start], start + 1, end))
    # Nothing from the changed entry on is accepted, and the error (if the run
    # goes on past it) is at the changed entry or at the next, whose link breaks.
    assert result.accepted <= victim - start
    if result.error is not None:
        assert result.error.seq in (victim + 1, victim + 2)
    else:
        assert victim + 1 > start + result.accepted  # pending: nothing vouches for it


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
    result = check_run(LOG[start:end], anchor(LOG[:start], start + 1, end), payloads)
    assert result.error is not None and result.error.seq == start + index + 1
    assert result.accepted <= index


@given(st.sampled_from(SIGNED), st.integers(1, 30))
def test_partial_verification_of_the_latest_entries(head: int, count: int) -> None:
    wanted = partial_seqs(head, count)
    assert len(wanted) <= count + len(certificate_pool(max(1, head - count + 1)))
    chosen = [LOG[seq - 1] for seq in wanted]
    verified = verify_partial(chosen, {seq: PAYLOADS[seq - 1] for seq in wanted})
    assert [e.seq for e in verified] == wanted


def test_partial_verification_needs_a_signed_head() -> None:
    head = next(seq for seq in range(120, 0, -1) if seq not in SIGNED)
    with pytest.raises(UnsignedTail) as caught:
        verify_partial([LOG[seq - 1] for seq in partial_seqs(head, 3)])
    assert caught.value.seq == head


@given(st.sampled_from(SIGNED[1:]), st.data())
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
    chosen = [LOG[seq - 1] for seq in partial_seqs(SIGNED[-1], 5) if seq != 1]
    with pytest.raises(SequenceGap, match="entry 1"):
        verify_partial(chosen)


def test_partial_verification_refuses_an_unlinked_entry() -> None:
    chosen = [LOG[seq - 1] for seq in partial_seqs(SIGNED[-1], 2)] + [LOG[49]]
    with pytest.raises(SequenceGap) as caught:
        verify_partial(chosen)
    assert caught.value.seq == 50


def test_partial_verification_checks_every_signature_present() -> None:
    from tidings.errors import BadSignature

    head = SIGNED[-1]
    chosen = [LOG[seq - 1] for seq in partial_seqs(head, 40)]
    inner = next(i for i, e in enumerate(chosen[:-1]) if e.signed)
    raw = chosen[inner].raw
    chosen[inner] = decode_entry(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(BadSignature) as caught:
        verify_partial(chosen)
    assert caught.value.seq == chosen[inner].seq


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


def test_a_failed_run_keeps_what_a_signature_before_the_failure_vouches_for() -> None:
    """Entries 1-2 signed, 3 unsigned, 4 breaks a link: 1..2 accepted, 3 dropped."""
    who = author(1)
    e1 = decode_entry(forge(who))
    e2 = decode_entry(forge(who, seq=2, backlink=e1.hash))
    e3 = decode_entry(forge(who, flags=0, seq=3, backlink=e2.hash))
    e4 = decode_entry(forge(who, seq=4, backlink=e2.hash, lipmaa_link=e1.hash))
    result = check_run([e1, e2, e3, e4], Anchor(who.author.key, "blog"))
    assert isinstance(result.error, WrongBacklink) and result.error.seq == 4
    assert (result.accepted, result.checked) == (2, 3)


def test_an_unknown_author_identity_has_no_say() -> None:
    other = Identity.generate()
    result = check_run([decode_entry(forge(other))], Anchor(author(1).author.key, "blog"))
    assert result.error is not None and result.error.rule == "wrong-feed"


# -- the one-pass extension agrees with decode + check_run ------------------------------


def _full_path(
    items: list[tuple[bytes, bytes | None]], anchor: Anchor
) -> tuple[list[tuple[int, bytes, bytes, bytes | None]], int] | None:
    """decode_entry then check_run: the rows and accepted count when nothing fails."""
    try:
        entries = [decode_entry(raw) for raw, _ in items]
    except InvalidEntry:
        return None
    try:
        check = check_run(entries, anchor, [p for _, p in items])
    except MissingAnchor:
        return None
    if check.error is not None:
        return None
    assert check.checked == len(entries)
    return [(e.seq, e.hash, e.raw, p) for e, (_, p) in zip(entries, items, strict=True)], \
        check.accepted


@given(st.data())
@settings(max_examples=examples(200))
def test_one_pass_extension_is_decode_then_check_run(data: st.DataObject) -> None:
    """Runs cut anywhere from a log (signed every few entries, one end-of-log), with
    payloads dropped, swapped or changed, entries dropped, repeated or flipped: the
    one-pass path takes exactly the runs that decode + check_run take whole, with the
    same rows and accepted count, and gives up on every other."""
    entries, payloads = _LOG
    start = data.draw(st.integers(0, len(entries) - 1))
    end = data.draw(st.integers(start, len(entries)))
    items: list[tuple[bytes, bytes | None]] = [
        (e.raw, p) for e, p in zip(entries[start:end], payloads[start:end], strict=True)]
    for _ in range(data.draw(st.integers(0, 2))):
        if not items:
            break
        at = data.draw(st.integers(0, len(items) - 1))
        raw, payload = items[at]
        what = data.draw(st.sampled_from(["none", "payload", "drop", "repeat", "flip"]))
        if what == "none":
            items[at] = (raw, None)
        elif what == "payload":
            items[at] = (raw, (payload or b"") + b"!")
        elif what == "drop":
            del items[at]
        elif what == "repeat":
            items.insert(at, items[at])
        else:
            byte = data.draw(st.integers(0, len(raw) - 1))
            items[at] = (raw[:byte] + bytes([raw[byte] ^ 1]) + raw[byte + 1:], payload)
    head = start
    known = {seq: entries[seq - 1].hash for seq in range(1, head + 1)}
    anchor = Anchor(entries[0].author, entries[0].log_id, head, known=known)
    assert extend_in_one_pass(items, anchor, lambda *row: row) == _full_path(items, anchor)


def _log() -> tuple[list[Entry], list[bytes]]:
    book = Logbook(MemoryStore(), author(1), clock=lambda: 1)
    entries: list[Entry] = []
    payloads = [b"post %d" % i for i in range(90)]
    for first in range(0, 85, 5):
        entries += book.publish_batch(payloads[first:first + 5], "blog")
    entries += book.publish_batch(payloads[85:], "blog", end_of_log=True)
    return entries, payloads


_LOG = _log()


@pytest.mark.parametrize("log_id", ["a", "x" * 23, "y" * 24, "z" * 64])
def test_one_pass_extension_reads_every_log_id_head(log_id: str) -> None:
    book = Logbook(MemoryStore(), author(2), clock=lambda: 1)
    entries = book.publish_batch([b"a", b"b", b"c"], log_id)
    items: list[tuple[bytes, bytes | None]] = [(e.raw, p) for e, p in
                                               zip(entries, [b"a", b"b", b"c"], strict=True)]
    anchor = Anchor(entries[0].author, log_id)
    done = extend_in_one_pass(items, anchor, lambda *row: row)
    assert done is not None and done == _full_path(items, anchor)
    assert done[1] == 3
    other = Anchor(entries[0].author, log_id + "s" if len(log_id) < 64 else "other")
    assert extend_in_one_pass(items, other, lambda *row: row) is None
