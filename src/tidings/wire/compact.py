"""Compact runs (wire version 4, spec/09 §8): full entries to a compact-entries
message and back, byte for byte.

A run of consecutive entries of one feed travels without what the receiver
recomputes: the version (always 2), the author and log id (the message names
the feed), each seq (the run's first seq plus the item's index), the links
(hashes of entries earlier in the run, or the run's anchors), and, where the
payload travels, its size and hash. :func:`expand_run` rebuilds the exact
entry bytes the author signed; :func:`compact_run` is its inverse. Neither
verifies anything: the receiver verifies the rebuilt entries as it would
verify an ``entries`` message, so a peer that sends a compact run which
rebuilds into entries its author never signed breaks ``bad-signature`` (or a
link rule) and is disconnected with ``invalid-data``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tidings.core.entry import MAX_PAYLOAD_SIZE, Entry
from tidings.core.ids import FeedId
from tidings.core.lipmaa import link_target
from tidings.core.verify import RebuiltRun
from tidings.wire.messages import (
    ANCHOR_SIZE,
    MAX_ENTRY_SEQ,
    SIGNATURE_SIZE,
    CompactEntries,
    CompactItem,
    anchor_seqs,
)

Item = tuple[bytes, bytes | None]

_HASH_HEAD = b"\x58\x20"  # a 32-byte CBOR byte string
_NULL = b"\xf6"
_SIG_HEAD = b"\x58\x40"  # a 64-byte CBOR byte string
_FLAG_SIGNED = 2


def _head(major: int, value: int) -> bytes:
    """The shortest CBOR head of ``major`` type for ``value`` (spec/02 §4)."""
    top = major << 5
    if value < 24:
        return bytes((top | value,))
    if value < 1 << 8:
        return bytes((top | 24, value))
    if value < 1 << 16:
        return bytes((top | 25, value >> 8, value & 0xFF))
    if value < 1 << 32:
        return bytes((top | 26,)) + value.to_bytes(4, "big")
    return bytes((top | 27,)) + value.to_bytes(8, "big")


def feed_fields(feed: FeedId) -> bytes:
    """Body fields 2 and 3 (author, log id) in their canonical encoding: the same in
    every entry of the feed, so a run encodes them once."""
    log_id = feed.log_id.encode()
    return _HASH_HEAD + feed.author_key + _head(3, len(log_id)) + log_id


def expand_run(message: CompactEntries) -> tuple[Item, ...]:
    """The full entries (and payloads, None where absent) a compact run stands for.

    The message has passed its wire checks (spec/09 §4), so every field is in
    range and the anchors are exactly as many as the run's links need; what is
    rebuilt here is total. Whether the author signed it is for the verifier.
    """
    return tuple((entry.raw, payload) for entry, payload in expand_entries(message))


def expand_entries(message: CompactEntries) -> list[tuple[Entry, bytes | None]]:
    """:func:`expand_run`, each entry decoded: what ``decode_entry`` gives for its bytes."""
    run = rebuild_run(message)
    return list(zip(run.entries, run.payloads, strict=True))


def rebuild_run(message: CompactEntries) -> RebuiltRun:
    """The entries a compact run stands for, decoded, with its anchors: what an
    ingest path takes instead of decoding the bytes (:func:`extend_rebuilt`).

    Every field is known here, and every check of decoding (spec/04 §2) holds by
    construction, as do the links inside the run and the payloads' sizes and hashes
    (:class:`RebuiltRun` lists what this makes true).
    """
    first = message.first_seq
    anchors = message.anchors
    below = {seq: anchors[i * ANCHOR_SIZE:(i + 1) * ANCHOR_SIZE]
             for i, seq in enumerate(anchor_seqs(first, len(message.items)))}
    hashes: dict[int, bytes | None] = dict(below)
    hashes[0] = None  # entry 1's backlink
    author, log_id = message.feed.author_key, message.feed.log_id
    # Fields 0 to 3 differ only in the flags byte: made once per run.
    feed_part = feed_fields(message.feed)
    starts = {flags: b"\x8a\x02" + bytes((flags,)) + feed_part for flags in (0, 2, 3)}
    blake2b = hashlib.blake2b
    entries: list[Entry] = []
    payloads: list[bytes | None] = []
    append, keep = entries.append, payloads.append
    timestamp, timestamp_head = 0, b""
    size_heads: dict[int, bytes] = {}  # most runs carry a few payload sizes, many times
    for seq, (flags, stamp, payload, absent, signature) in enumerate(message.items, first):
        if stamp is not None:
            timestamp, timestamp_head = stamp, _head(0, stamp)
        if payload is not None:
            size = len(payload)
            phash = blake2b(payload, digest_size=32).digest()
        else:
            assert absent is not None
            size, phash = absent
        size_head = size_heads.get(size)
        if size_head is None:
            size_head = size_heads[size] = _head(0, size)
        backlink = hashes[seq - 1]
        target = link_target(seq)
        lipmaa = None if target is None else hashes[target]
        raw = b"".join((
            starts[flags],
            bytes((seq,)) if seq < 24 else _head(0, seq),
            timestamp_head,
            _NULL if backlink is None else _HASH_HEAD + backlink,
            _NULL if lipmaa is None else _HASH_HEAD + lipmaa,
            size_head, _HASH_HEAD, phash,
            b"" if signature is None else _SIG_HEAD + signature,
        ))
        entry_hash = hashes[seq] = blake2b(raw, digest_size=32).digest()
        append(Entry(flags, author, log_id, seq, timestamp, backlink, lipmaa, size, phash,
                     signature or b"", raw, entry_hash))
        keep(payload)
    return RebuiltRun(tuple(entries), tuple(payloads), below)


#: The heads of a CBOR unsigned integer with argument bytes: (bytes, least value
#: that needs them), so a longer head than needed is told apart.
_UINT_HEADS = {24: (1, 24), 25: (2, 1 << 8), 26: (4, 1 << 16), 27: (8, 1 << 32)}


def _read_uint(raw: bytes, at: int) -> tuple[int, int]:
    """A CBOR unsigned integer at ``at`` in its shortest head: ``(value, end)``.
    Raises ValueError for anything else (another major type, a longer head)."""
    initial = raw[at]
    if initial < 24:
        return initial, at + 1
    width, least = _UINT_HEADS[initial]  # KeyError (a LookupError) for any other head
    end = at + 1 + width
    value = int.from_bytes(raw[at + 1:end], "big")
    if end > len(raw) or value < least:
        raise ValueError("truncated, or not the shortest head")
    return value, end


def _read_hash(raw: bytes, at: int) -> tuple[bytes, int]:
    """A 32-byte CBOR byte string at ``at``: ``(hash, end)``."""
    if raw[at:at + 2] != _HASH_HEAD or len(raw) < at + 34:
        raise ValueError("not a 32-byte byte string")
    return raw[at + 2:at + 34], at + 34


def compact_run(feed: FeedId, items: Sequence[Item],
                hashes: Sequence[bytes] | None = None) -> CompactEntries | None:
    """``items`` (consecutive entries of ``feed`` with payloads or None) as one
    compact-entries message, or None where they are not a run it can carry.

    ``hashes``, when given, are the items' entry hashes, and each payload is known
    to hash to what its entry names (a store that checked both as it read them,
    as a node's serving path does): then neither is computed again here.

    The entries are read by the layout :func:`expand_run` writes, so that what it
    rebuilds is exactly ``items``. None when an entry is laid out otherwise (of
    another feed, another version, not in the deterministic encoding), the seqs
    are not consecutive, two entries name different hashes for one entry below
    the run, a link inside the run does not name the entry the run holds there,
    or a payload differs from the size and hash its entry signed: entries a
    node verified and stored never do that, and the caller then sends them in full.
    """
    if not items:
        return None
    feed_part = feed_fields(feed)
    starts = {b"\x8a\x02" + bytes((flags,)) + feed_part: flags for flags in (0, 2, 3)}
    fields_end = 3 + len(feed_part)  # fields 0 to 3: the same in every entry of the feed
    blake2b = hashlib.blake2b
    if hashes is not None and len(hashes) != len(items):
        raise ValueError("compact_run needs one hash per item")
    below: dict[int, bytes] = {}  # anchors, by seq
    held: dict[int, bytes] = {}  # entry hashes of the run, by seq
    compact: list[CompactItem] = []
    timestamp: int | None = None
    try:
        first, _ = _read_uint(items[0][0], fields_end)
        for seq, (raw, payload) in enumerate(items, first):
            flags = starts[raw[:fields_end]]  # KeyError: another feed or layout
            seq_head = bytes((seq,)) if seq < 24 else _head(0, seq)
            at = fields_end + len(seq_head)
            if not 1 <= seq <= MAX_ENTRY_SEQ or raw[fields_end:at] != seq_head:
                return None
            stamp, at = _read_uint(raw, at)
            if seq == 1:
                if raw[at] != 0xF6:
                    return None
                at += 1
            else:
                link, at = _read_hash(raw, at)
                if (held.get(seq - 1) if seq > first else below.setdefault(seq - 1, link)) \
                        != link:
                    return None
            target = link_target(seq)
            if target is None:
                if raw[at] != 0xF6:
                    return None
                at += 1
            else:
                link, at = _read_hash(raw, at)
                if (held.get(target) if target >= first else below.setdefault(target, link)) \
                        != link:
                    return None
            size, at = _read_uint(raw, at)
            phash, at = _read_hash(raw, at)
            signature = None
            if flags & _FLAG_SIGNED:
                if raw[at:at + 2] != _SIG_HEAD:
                    return None
                signature, at = raw[at + 2:], len(raw)
                if len(signature) != SIGNATURE_SIZE:
                    return None
            if at != len(raw) or size > MAX_PAYLOAD_SIZE:
                return None
            if payload is not None and (len(payload) != size or (hashes is None and
                                        blake2b(payload, digest_size=32).digest() != phash)):
                return None
            compact.append(CompactItem(
                flags, None if stamp == timestamp else stamp, payload,
                None if payload is not None else (size, phash), signature,
            ))
            timestamp = stamp
            held[seq] = (blake2b(raw, digest_size=32).digest() if hashes is None
                         else hashes[seq - first])
    except (LookupError, ValueError):  # a short entry, a head of another type
        return None
    seqs = anchor_seqs(first, len(items))
    assert sorted(below) == seqs  # every needed hash is named by some link of the run
    return CompactEntries(feed, first, b"".join(below[seq] for seq in seqs), tuple(compact))
