"""The compact-run vectors, ``spec/vectors/compact.json`` (spec/09 §8, wire version 4).

Called by ``tools/make_vectors.py`` with its logs. Each run is written in both
forms, full entries and the compact message; the compact bodies are built here
from the spec's table (spec/09 §8.4), not by the library, and the library must
agree with them both ways. The rules of the rejected cases are written from
spec/09 §8.5 and checked against the library's verifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgpack

from tidings.core.entry import FLAG_SIGNED, Entry
from tidings.core.ids import FeedId
from tidings.core.lipmaa import link_target
from tidings.core.verify import Anchor, check_run, decode_run
from tidings.wire.compact import compact_run, expand_run
from tidings.wire.messages import Entries, decode_message, encode_message

COMPACT_TYPE = 19
MAX_SEQ = 2**63 - 1


class Log(Protocol):
    """What make_vectors.py's Log offers (a feed's entries and payloads)."""

    entries: list[Entry]
    payloads: list[bytes]

    @property
    def feed(self) -> FeedId: ...


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def hx(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def anchor_seqs(first: int, count: int) -> list[int]:
    """spec/09 §8.3, written out: the seqs below the run that its links name."""
    out = {first - 1} if first > 1 else set()
    for seq in range(first, first + count):
        target = link_target(seq)
        if target is not None and target < first:
            out.add(target)
    return sorted(out)


def compact_fields(log: Log, first: int, last: int, absent: Sequence[int] = ()) -> list[Any]:
    """The compact item arrays of ``first..last`` of ``log`` (spec/09 §8.2), by hand."""
    items: list[Any] = []
    previous: int | None = None
    for seq in range(first, last + 1):
        entry, payload = log.entries[seq - 1], log.payloads[seq - 1]
        items.append([
            entry.flags,
            None if entry.timestamp == previous else entry.timestamp,
            [entry.payload_size, entry.payload_hash] if seq in absent else payload,
            entry.signature if entry.flags & FLAG_SIGNED else None,
        ])
        previous = entry.timestamp
    return items


def compact_body(log: Log, first: int, items: list[Any], anchors: bytes | None = None,
                 ) -> bytes:
    hashes = {e.seq: e.hash for e in log.entries}
    if anchors is None:
        anchors = b"".join(hashes[s] for s in anchor_seqs(first, len(items)))
    feed = log.feed
    return pack([COMPACT_TYPE, feed.author_key, feed.log_id, first, anchors, items])


def item_json(item: list[Any]) -> dict[str, Any]:
    flags, timestamp, payload, signature = item
    absent = isinstance(payload, list)
    return {"flags": flags, "timestamp": timestamp,
            "payload": None if absent else payload.hex(),
            "payload_size": payload[0] if absent else None,
            "payload_hash": payload[1].hex() if absent else None,
            "signature": hx(signature)}


def run_case(log: Log, name: str, description: str, first: int, last: int,
             absent: Sequence[int] = ()) -> dict[str, Any]:
    feed = log.feed
    full = [(log.entries[s - 1].raw, None if s in absent else log.payloads[s - 1])
            for s in range(first, last + 1)]
    fields = compact_fields(log, first, last, absent)
    body = compact_body(log, first, fields)
    seqs = anchor_seqs(first, len(fields))
    # The library agrees with the table, both ways.
    made = compact_run(feed, full)
    assert made is not None and encode_message(made) == body, name
    message = decode_message(body)
    assert message == made and list(expand_run(message)) == full, name  # type: ignore[arg-type]
    entries_body = encode_message(Entries(feed, tuple(full)))
    return {
        "name": name, "description": description,
        "author": feed.author_key.hex(), "log_id": feed.log_id, "first_seq": first,
        "anchor_seqs": seqs,
        "anchors": "".join(log.entries[s - 1].hash.hex() for s in seqs),
        "entries": [{"seq": s, "entry": e.hex(), "payload": hx(p)}
                    for s, (e, p) in enumerate(full, first)],
        "items": [item_json(i) for i in fields],
        "body": body.hex(),
        "entries_body": entries_body.hex(),
        "sizes": {"compact": len(body), "entries": len(entries_body)},
    }


def malformed_cases(blog: Log) -> list[dict[str, Any]]:
    """Bodies that break W5 or W6 for type 19 (spec/09 §8.2): code ``malformed``."""
    feed = blog.feed
    good = compact_fields(blog, 15, 20)
    anchors = b"".join(blog.entries[s - 1].hash for s in anchor_seqs(15, 6))
    signed_at = 20 - 15  # index of entry 20, signed

    def body(items: list[Any] | Any = None, *, first: Any = 15, anchor: Any = None,
             author: Any = feed.author_key, extra: Sequence[Any] = ()) -> bytes:
        return pack([COMPACT_TYPE, author, feed.log_id, first,
                     anchors if anchor is None else anchor,
                     good if items is None else items, *extra])

    def with_item(index: int, field: int, value: Any) -> list[Any]:
        items = [list(i) for i in good]
        items[index][field] = value
        return items

    cases = [
        ("four-fields", "no items field", pack([COMPACT_TYPE, feed.author_key, feed.log_id, 15,
                                                anchors])),
        ("six-fields", "a field after the items", body(extra=[0])),
        ("author-31-bytes", "a 31-byte author key", body(author=feed.author_key[:31])),
        ("first-seq-0", "first seq 0", body(first=0, anchor=b"")),
        ("first-seq-2-63", "first seq 2^63", body(first=2**63, anchor=b"")),
        ("past-the-last-seq", "two items from seq 2^63 - 1", body(
            good[:2], first=MAX_SEQ, anchor=b"")),
        ("no-items", "an empty items array", body([], anchor=b"")),
        ("1025-items", "1025 items, one over MAX_ITEMS", body(
            [[0, 0, b"", None]] * 1025, first=1, anchor=b"")),
        ("anchors-one-short", "anchors for 13 only, where 13 and 14 are needed",
         body(anchor=anchors[:32])),
        ("anchors-one-more", "a third anchor", body(anchor=anchors + bytes(32))),
        ("anchors-for-seq-1", "a run from seq 1 carries no anchors", body(
            good[:1], first=1, anchor=bytes(32))),
        ("anchors-as-array", "anchors as an array of two 32-byte bins", body(
            anchor=[anchors[:32], anchors[32:]])),
        ("item-three-fields", "an item without its signature field", body(
            [*good[:5], good[5][:3]])),
        ("item-not-an-array", "an item that is a bin", body([*good[:5], b"\x00"])),
        ("flags-1", "flags 1 (end-of-log without signed)", body(with_item(0, 0, 1))),
        ("flags-4", "flags 4", body(with_item(0, 0, 4))),
        ("flags-true", "flags true", body(with_item(0, 0, True))),
        ("first-timestamp-nil", "the first item's timestamp nil", body(with_item(0, 1, None))),
        ("timestamp-negative", "timestamp -1", body(with_item(0, 1, -1))),
        ("payload-as-str", "a payload as a str", body(with_item(0, 2, "hello"))),
        ("absent-one-element", "an absent payload as [size]", body(with_item(0, 2, [5]))),
        ("absent-three-elements", "an absent payload as [size, hash, 0]", body(
            with_item(0, 2, [5, bytes(32), 0]))),
        ("absent-hash-31-bytes", "an absent payload's hash of 31 bytes", body(
            with_item(0, 2, [5, bytes(31)]))),
        ("absent-size-over-2-20", "an absent payload's size 2^20 + 1", body(
            with_item(0, 2, [2**20 + 1, bytes(32)]))),
        ("unsigned-with-signature", "flags 0 with a 64-byte signature", body(
            with_item(0, 3, bytes(64)))),
        ("signed-without-signature", "flags 2 with nil", body(with_item(signed_at, 3, None))),
        ("signature-63-bytes", "a 63-byte signature", body(with_item(signed_at, 3, bytes(63)))),
    ]
    made = []
    for name, description, raw in cases:
        made.append({"name": name, "description": description, "body": raw.hex(),
                     "code": "malformed"})
    return made


def rejected_cases(blog: Log) -> list[dict[str, Any]]:
    """Compact runs that decode and rebuild, into entries the verifier refuses (spec/09
    §8.5). The receiver holds blog 1..14 (14 is signed); the run is 15..20 (one append:
    15 to 19 unsigned, 20 signed). Rules and seqs are written from §8.5."""
    first, last = 15, 20
    good = compact_fields(blog, first, last)
    hashes = {e.seq: e.hash for e in blog.entries}
    seqs = anchor_seqs(first, last - first + 1)
    assert seqs == [13, 14]
    anchors = b"".join(hashes[s] for s in seqs)

    def with_item(seq: int, field: int, value: Any, *more: tuple[int, Any]) -> list[Any]:
        items = [list(i) for i in good]
        for at, to in ((field, value), *more):
            items[seq - first][at] = to
        return items

    def flip(data: bytes) -> bytes:
        return bytes([data[0] ^ 1]) + data[1:]

    payload_at = next(s for s in range(first, last) if blog.payloads[s - 1])
    entry_18 = blog.entries[18 - 1]
    cases = [
        ("timestamp-changed", "entry 17's timestamp one microsecond later: 17 and every "
         "entry after it rebuild differently, and entry 20's signature fails",
         with_item(17, 1, blog.entries[17 - 1].timestamp + 1), anchors, "bad-signature", 20),
        ("payload-changed", f"one bit of entry {payload_at}'s payload flipped: its hash is "
         "recomputed, so the links hold, and entry 20's signature fails",
         with_item(payload_at, 2, flip(blog.payloads[payload_at - 1])), anchors,
         "bad-signature", 20),
        ("absent-hash-changed", "entry 18's payload absent, with one bit of its hash "
         "flipped", with_item(18, 2, [entry_18.payload_size, flip(entry_18.payload_hash)]),
         anchors, "bad-signature", 20),
        ("absent-size-changed", "entry 18's payload absent, with its size one more",
         with_item(18, 2, [entry_18.payload_size + 1, entry_18.payload_hash]), anchors,
         "bad-signature", 20),
        ("signature-changed", "one bit of entry 20's signature flipped",
         with_item(20, 3, flip(blog.entries[20 - 1].signature)), anchors, "bad-signature", 20),
        ("unsigned-made-signed", "entry 19 with flags 2 and a signature of zeros",
         with_item(19, 0, 2, (3, bytes(64))), anchors, "bad-signature", 19),
        ("backlink-anchor-wrong", "the anchor of entry 14 (the backlink of 15) flipped: "
         "entry 15 is unsigned, so its backlink is checked first",
         good, hashes[13] + flip(hashes[14]), "wrong-backlink", 15),
        ("lipmaa-anchor-wrong", "the anchor of entry 13 (the lipmaa link of 17) flipped",
         good, flip(hashes[13]) + hashes[14], "wrong-lipmaa-link", 17),
    ]
    made = []
    for name, description, items, anchor, rule, seq in cases:
        body = compact_body(blog, first, items, anchor)
        # The library's verifier agrees with the rule written above.
        message = decode_message(body)
        rebuilt = expand_run(message)  # type: ignore[arg-type]
        context = Anchor(blog.feed.author_key, blog.feed.log_id, head_seq=first - 1,
                         known=hashes)
        result = check_run(decode_run([e for e, _ in rebuilt], blog.feed, first), context,
                           [p for _, p in rebuilt])
        assert result.error is not None, name
        assert (result.error.rule, result.error.seq) == (rule, seq), (name, result.error)
        made.append({
            "name": name, "description": description, "body": body.hex(),
            "held": {"head_seq": first - 1, "hashes": {str(s): hashes[s].hex() for s in seqs}},
            "rule": rule, "seq": seq, "code": "invalid-data",
        })
    return made


def make_compact(blog: Log, notes: Log, bob: Log) -> dict[str, Any]:
    assert blog.entries[-1].seq == 30
    runs = [
        run_case(blog, "blog-whole", "alice's blog, entries 1 to 30, from seq 1: no anchors; "
                 "the entries of one append share a timestamp (nil after the first)", 1, 30),
        run_case(blog, "blog-15-20", "one append of the blog, 15 to 19 unsigned and 20 "
                 "signed; anchors 13 (the lipmaa link of 17) and 14", 15, 20),
        run_case(blog, "blog-29-30", "entries 29 and 30: anchors 26 (the lipmaa link of 30) "
                 "and 28 (spec/09 §8.2's example)", 29, 30),
        run_case(blog, "blog-30", "one entry, as a live push sends it: anchors 26 and 29",
                 30, 30),
        run_case(blog, "blog-22-27-absent", "entries 22 to 27 with the payloads of 23 and 25 "
                 "absent: their sizes and hashes travel", 22, 27, absent=(23, 25)),
        run_case(notes, "notes-whole", "alice's notes: an empty payload (present) at 2 and "
                 "the end-of-log entry 4 (flags 3)", 1, 4),
        run_case(bob, "bob-1", "bob's one entry", 1, 1),
    ]
    return {
        "description": "Compact runs (spec/09 §8, wire version 4): runs in both forms; "
                       "bodies that are malformed; compact runs that rebuild into entries "
                       "the verifier refuses.",
        "runs": runs,
        "malformed": malformed_cases(blog),
        "rejected": rejected_cases(blog),
    }
