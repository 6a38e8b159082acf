"""The logbook over every store: publishing, ingesting, reading, bundles."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import Logbook, MemoryStore, SqliteStore, Store, verify_partial
from tidings.core.bundle import HEADER, encode_entry_record
from tidings.core.entry import Entry
from tidings.errors import (
    BadSignature,
    EntryAfterEndOfLog,
    InvalidBundle,
    InvalidEntry,
    PayloadHashMismatch,
    PayloadSizeMismatch,
    StoredEntryDamaged,
    UsageError,
)
from tidings.storage.sqlite import SEQ_MASK

from .helpers import author, examples, make_log


def pairs(entries: list[Entry], payloads: list[bytes]) -> list[tuple[bytes, bytes | None]]:
    return [(e.raw, p) for e, p in zip(entries, payloads, strict=True)]


def test_publish_links_every_entry(store: Store) -> None:
    book = Logbook(store, author(1))
    for i in range(1, 15):
        entry = book.publish(b"post %d" % i, "blog")
        assert entry.seq == i
    entries = [e for e, _ in book.read(book.feed("blog"))]
    for e in entries[1:]:
        assert e.backlink == entries[e.seq - 2].hash
    assert entries[12].lipmaa_link == entries[3].hash  # lipmaa(13) == 4
    assert book.verify()[0].ok


def test_logs_of_one_author_are_separate_feeds(store: Store) -> None:
    book = Logbook(store, author(1))
    book.publish(b"a", "blog")
    book.publish(b"b", "podcast")
    book.publish(b"c", "blog")
    assert {(f.feed.log_id, f.latest_seq) for f in book.feeds()} == {("blog", 2), ("podcast", 1)}


def test_publish_batch_continues_a_log(store: Store) -> None:
    book = Logbook(store, author(1))
    book.publish(b"first", "blog")
    entries = book.publish_batch([b"%d" % i for i in range(2000)], "blog")
    assert [entries[0].seq, entries[-1].seq] == [2, 2001]
    assert book.verify()[0].entries == 2001


def test_end_of_log_ends_publishing(store: Store) -> None:
    book = Logbook(store, author(1))
    book.publish(b"bye", "blog", end_of_log=True)
    with pytest.raises(UsageError, match="ended"):
        book.publish(b"more", "blog")


def test_publishing_needs_an_identity() -> None:
    with pytest.raises(UsageError, match="tidings init"):
        Logbook(MemoryStore()).publish(b"x")


def test_payloads_over_the_bound_are_refused_before_signing() -> None:
    from tidings.errors import Oversize

    with pytest.raises(Oversize):
        Logbook(MemoryStore(), author(1)).publish(b"x" * (2**20 + 1))


def test_ingest_stores_the_valid_prefix_and_names_the_first_bad_entry(store: Store) -> None:
    entries, payloads = make_log(30, per_append=1)
    items = pairs(entries, payloads)
    broken = bytearray(items[19][0])
    broken[-3] ^= 0xFF
    items[19] = (bytes(broken), items[19][1])
    book = Logbook(store)
    result = book.ingest(entries[0].feed, items)
    assert isinstance(result.error, BadSignature) and result.error.seq == 20
    assert result.added == 19
    head = book.head(entries[0].feed)
    assert head is not None and head.seq == 19
    # the rest arrives later, intact, and duplicates are recognised
    result = book.ingest(entries[0].feed, pairs(entries, payloads))
    assert (result.added, result.duplicates) == (11, 19)


def test_ingest_keeps_only_what_a_signature_vouches_for(store: Store) -> None:
    entries, payloads = make_log(10, per_append=4)  # signed at 4, 8 and 10
    book = Logbook(store)
    result = book.ingest(entries[0].feed, pairs(entries[:7], payloads[:7]))
    assert (result.added, result.pending, result.error) == (4, 3, None)
    result = book.ingest(entries[0].feed, pairs(entries[4:], payloads[4:]))
    assert (result.added, result.duplicates, result.pending) == (6, 0, 0)


def test_ingest_refuses_a_bad_payload_but_keeps_what_came_before(store: Store) -> None:
    entries, payloads = make_log(5, per_append=1)
    items = pairs(entries, payloads)
    items[3] = (items[3][0], b"not it")
    book = Logbook(store)
    result = book.ingest(entries[0].feed, items)
    assert isinstance(result.error, PayloadSizeMismatch) and result.error.seq == 4
    assert len(book.read(entries[0].feed)) == 3


def test_entries_without_payloads_then_the_payloads(store: Store) -> None:
    entries, payloads = make_log(4)
    book = Logbook(store)
    book.ingest(entries[0].feed, [(e.raw, None) for e in entries])
    assert [p for _, p in book.read(entries[0].feed)] == [None] * 4
    with pytest.raises(PayloadHashMismatch):
        book.add_payload(entries[0].feed, 2, payloads[1][:-1] + b"?")
    book.add_payload(entries[0].feed, 2, payloads[1])
    assert book.read(entries[0].feed)[1][1] == payloads[1]
    assert book.verify()[0].payloads == 1


def test_nothing_is_accepted_after_end_of_log(store: Store) -> None:
    writer = Logbook(MemoryStore(), author(1))
    writer.publish(b"a", "blog")
    writer.publish(b"the end", "blog", end_of_log=True)
    feed = writer.feed("blog")
    reader = Logbook(store)
    reader.ingest(feed, [(e.raw, p) for e, p in writer.read(feed)])
    from .helpers import forge

    head = reader.head(feed)
    assert head is not None
    after = forge(author(1), seq=3, backlink=head.hash)
    assert isinstance(reader.ingest(feed, [(after, None)]).error, EntryAfterEndOfLog)


def test_certificate_pool_of_a_stored_log_verifies_alone(store: Store) -> None:
    book = Logbook(store, author(1))
    book.publish_batch([b"%d" % i for i in range(500)], "blog")
    feed = book.feed("blog")
    pool = book.certificate_pool(feed, 450)
    latest = [e for e, _ in book.read(feed, since=450)]
    verified = verify_partial(pool + latest)
    assert verified[0].seq == 1 and verified[-1].seq == 500
    assert len(pool) < 25


def test_bundle_round_trip_carries_entries_payloads_and_proofs(store: Store) -> None:
    source = Logbook(MemoryStore(), author(1))
    source.publish_batch([b"%d" % i for i in range(2500)], "blog")
    feed = source.feed("blog")
    source.delete_payload(feed, 7)
    out = io.BytesIO()
    assert source.export_bundle(feed, out.write) == 2500
    target = Logbook(store)
    result = target.import_bundle(io.BytesIO(out.getvalue()).read)
    assert result.error is None and result.added == 2500 and result.feeds == {feed}
    assert [e.hash for e, _ in target.read(feed)] == [e.hash for e, _ in source.read(feed)]
    assert target.read(feed, since=7, limit=1)[0][1] is None
    again = target.import_bundle(io.BytesIO(out.getvalue()).read)
    assert (again.added, again.duplicates, again.error) == (0, 2500, None)


def test_a_tampered_bundle_stores_the_valid_prefix(store: Store) -> None:
    entries, payloads = make_log(10, per_append=1)
    data = HEADER + b"".join(
        encode_entry_record(e.raw, b"tampered" if e.seq == 6 else p)
        for e, p in zip(entries, payloads, strict=True)
    )
    book = Logbook(store)
    result = book.import_bundle(io.BytesIO(data).read)
    assert result.added == 5
    assert result.error is not None and getattr(result.error, "seq", None) == 6
    assert len(book.read(entries[0].feed)) == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a tidings bundle"),
        (b"PK\x03\x04 zip file", "not a tidings bundle"),
        (HEADER[:-1] + b"\x03", "unknown bundle version"),
        (HEADER + b"\x83\x02" + bytes([0x58, 32]) + bytes(32), "entry record (0)"),
        (HEADER[:-1] + b"\x02\x83\x02\x41\x00\x40", "an identity is 32 bytes"),
        (HEADER + b"\x83\x00\x59\xff\xff", "bound"),
        (HEADER + b"\x83\x00\x58\x30abc", "truncated"),
        (HEADER + b"\x83\x00\x58\x10abc", "non-canonical length"),
        (HEADER + b"\xa1", "expected a record"),
    ],
)
def test_broken_bundles_are_named(data: bytes, message: str) -> None:
    result = Logbook(MemoryStore()).import_bundle(io.BytesIO(data).read)
    assert isinstance(result.error, InvalidBundle)
    assert message in str(result.error)


def test_verify_finds_an_entry_changed_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    book = Logbook(SqliteStore(path), author(1))
    book.publish_batch([b"%d" % i for i in range(50)], "blog")
    db = sqlite3.connect(path)
    raw = db.execute("SELECT entry FROM entries WHERE key & ? = 20", (SEQ_MASK,)).fetchone()[0]
    db.execute("UPDATE entries SET entry = ? WHERE key & ? = 20",
               (raw[:-1] + bytes([raw[-1] ^ 1]), SEQ_MASK))
    db.commit()
    report = Logbook(SqliteStore(path)).verify()[0]
    assert isinstance(report.error, StoredEntryDamaged) and report.error.seq == 20
    assert not report.ok and report.entries == 19


def test_a_duplicate_brings_the_payload_the_store_lacked(store: Store) -> None:
    entries, payloads = make_log(6)
    feed = entries[0].feed
    book = Logbook(store)
    book.ingest(feed, [(e.raw, None) for e in entries])
    result = book.ingest(feed, pairs(entries[:3], payloads[:3]))
    assert (result.added, result.duplicates) == (0, 3)
    assert [p for _, p in book.read(feed)] == [*payloads[:3], None, None, None]
    result = book.ingest(feed, [(entries[3].raw, b"entry 9")])
    assert isinstance(result.error, PayloadHashMismatch) and result.error.seq == 4
    assert book.read(feed, since=4)[0][1] is None


def test_pages_of_large_payloads_stay_within_a_byte_budget(store: Store) -> None:
    book = Logbook(store, author(1))
    big = [bytes([i]) * (300 * 1024) for i in range(10)]
    book.publish_batch(big, "blog")
    feed = book.feed("blog")
    page = store.entries(feed, 1, 1000, max_bytes=1 << 20)
    assert [r.seq for r in page] == [1, 2, 3, 4]  # the 4th reaches the budget
    assert [r.seq for r in store.entries(feed, 5, 1000, max_bytes=1)] == [5]  # never empty
    assert len(book.read(feed, 1, None, max_bytes=600 * 1024)) == 2


def test_a_bundle_of_large_payloads_imports_in_bounded_batches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tidings.storage.logbook as logbook

    monkeypatch.setattr(logbook, "BATCH_BYTES", 1 << 20)
    source = Logbook(MemoryStore(), author(1))
    source.publish_batch([bytes([i]) * (400 * 1024) for i in range(12)], "blog")
    out = io.BytesIO()
    source.export_bundle(source.feed("blog"), out.write)
    target = Logbook(store)
    calls = []
    original = target.ingest
    monkeypatch.setattr(target, "ingest", lambda feed, items: calls.append(len(items))
                        or original(feed, items))
    result = target.import_bundle(io.BytesIO(out.getvalue()).read)
    assert result.error is None and result.added == 12
    assert max(calls) <= 3 and sum(calls) == 12


def test_a_proof_record_ends_the_run(store: Store) -> None:
    """An undecodable entry after a proof record belongs to no feed (spec 07 §3)."""
    from tidings import ForkProof
    from tidings.core.bundle import encode_proof_record

    a, _ = make_log(2, payload=lambda i: b"x" if i == 1 else b"a", per_append=1)
    b, _ = make_log(2, payload=lambda i: b"x" if i == 1 else b"b", per_append=1)
    proof = ForkProof.from_runs([a[1]], [b[1]])
    data = HEADER + encode_entry_record(a[0].raw, None) + encode_proof_record(proof.to_bytes())
    data += encode_entry_record(b"\x00" * 80, None)
    result = Logbook(store).import_bundle(io.BytesIO(data).read)
    assert result.added == 1 and result.fork_proofs == 1
    assert isinstance(result.error, InvalidEntry)
    assert (result.error.feed, result.error.seq) == (None, None)


def test_a_second_proof_at_one_seq_is_not_counted_as_new(store: Store) -> None:
    from tidings import ForkProof

    branches = [make_log(2, payload=lambda i, t=t: b"x" if i == 1 else t)[0]
                for t in (b"a", b"b", b"c")]
    book = Logbook(store)
    assert book.add_fork_proof(ForkProof.from_runs([branches[0][1]], [branches[1][1]]))
    assert not book.add_fork_proof(ForkProof.from_runs([branches[0][1]], [branches[2][1]]))
    assert len(book.fork_proofs()) == 1


def test_a_conflicting_entry_with_a_bad_signature_is_the_senders_fault(store: Store) -> None:
    """Nothing the author signed vouches for it: no fork, the rule is bad-signature."""
    from .helpers import forge

    entries, _ = make_log(3, per_append=1)
    feed = entries[0].feed
    book = Logbook(store)
    book.ingest(feed, [(e.raw, None) for e in entries]).raise_error()
    other = bytearray(forge(author(1), seq=2, backlink=entries[0].hash, timestamp=99))
    other[-1] ^= 1
    result = book.ingest(feed, [(entries[0].raw, None), (bytes(other), None)])
    assert isinstance(result.error, BadSignature) and result.error.seq == 2
    assert book.fork_proofs() == [] and book.extent(feed) == 3


def test_duplicates_are_matched_without_loading_held_payloads(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries, payloads = make_log(20)
    feed = entries[0].feed
    book = Logbook(store)
    book.ingest(feed, pairs(entries, payloads))

    def no_payload_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("held entries (with payloads) were loaded")

    monkeypatch.setattr(store, "entries_at", no_payload_reads)
    result = book.ingest(feed, [(e.raw, None) for e in entries])
    assert (result.added, result.duplicates) == (0, 20)


_SOURCE = Logbook(MemoryStore(), author(1))
_SOURCE.publish_batch([b"post %d" % i for i in range(12)], "blog")
_BUNDLE = io.BytesIO()
_SOURCE.export_bundle(_SOURCE.feed("blog"), _BUNDLE.write)


@settings(max_examples=examples(150), deadline=None)
@given(st.data())
def test_a_damaged_bundle_never_stores_anything_invalid(data: st.DataObject) -> None:
    """Random damage anywhere: the import stops with a tidings error or succeeds,
    and whatever it stored is a valid prefix of the real log."""
    bundle = bytearray(_BUNDLE.getvalue())
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(bundle) - 1))
        if action == "flip":
            bundle[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del bundle[at:at + data.draw(st.integers(1, 40))]
        else:
            bundle[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    book = Logbook(MemoryStore())
    result = book.import_bundle(io.BytesIO(bytes(bundle)).read)
    feed = _SOURCE.feed("blog")
    held = [e for e, _ in book.read(feed)]
    assert held == [e for e, _ in _SOURCE.read(feed)][: len(held)]
    assert all(report.ok for report in book.verify())
    if result.error is None:
        assert len(held) == result.added


@given(st.binary(max_size=1100))
def test_random_bytes_are_never_a_fork_proof(data: bytes) -> None:
    from tidings import ForkProof
    from tidings.errors import InvalidForkProof

    with pytest.raises(InvalidForkProof):
        ForkProof.from_bytes(data)
