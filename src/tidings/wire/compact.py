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

from tidings.core.entry import decode_entry
from tidings.core.ids import FeedId
from tidings.core.lipmaa import link_target
from tidings.errors import InvalidEntry
from tidings.wire.messages import (
    ANCHOR_SIZE,
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
        return bytes((top | 25,)) + value.to_bytes(2, "big")
    if value < 1 << 32:
        return bytes((top | 26,)) + value.to_bytes(4, "big")
    return bytes((top | 27,)) + value.to_bytes(8, "big")


def _blake2b_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


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
    feed_part = feed_fields(message.feed)
    first = message.first_seq
    anchors = message.anchors
    hashes = {seq: anchors[i * ANCHOR_SIZE:(i + 1) * ANCHOR_SIZE]
              for i, seq in enumerate(anchor_seqs(first, len(message.items)))}
    items: list[Item] = []
    timestamp = 0
    for seq, item in enumerate(message.items, first):
        if item.timestamp is not None:
            timestamp = item.timestamp
        if item.payload is not None:
            size, phash = len(item.payload), _blake2b_256(item.payload)
        else:
            assert item.absent is not None
            size, phash = item.absent
        backlink = _NULL if seq == 1 else _HASH_HEAD + hashes[seq - 1]
        target = link_target(seq)
        lipmaa = _NULL if target is None else _HASH_HEAD + hashes[target]
        entry = b"".join((
            b"\x8a\x02", bytes((item.flags,)), feed_part, _head(0, seq), _head(0, timestamp),
            backlink, lipmaa, _head(0, size), _HASH_HEAD, phash,
        ))
        if item.signature is not None:
            entry += _SIG_HEAD + item.signature
        hashes[seq] = _blake2b_256(entry)
        items.append((entry, item.payload))
    return tuple(items)


def compact_run(feed: FeedId, items: Sequence[Item]) -> CompactEntries | None:
    """``items`` (consecutive entries of ``feed`` with payloads or None) as one
    compact-entries message, or None where they are not a run it can carry.

    None when an entry does not decode or is of another feed, the seqs are not
    consecutive, two entries name different hashes for one entry below the run,
    a link inside the run does not name the entry the run holds there, or a
    payload differs from the size and hash its entry signed: entries a sender
    verified never do that, and the caller then sends them in full.
    """
    if not items:
        return None
    try:
        entries = [decode_entry(raw) for raw, _ in items]
    except InvalidEntry:
        return None
    first = entries[0].seq
    below: dict[int, bytes] = {}  # anchors, by seq
    held: dict[int, bytes] = {}  # entry hashes of the run, by seq
    compact: list[CompactItem] = []
    timestamp: int | None = None
    for index, (entry, (_, payload)) in enumerate(zip(entries, items, strict=True)):
        seq = first + index
        if entry.seq != seq or entry.author != feed.author_key or entry.log_id != feed.log_id:
            return None
        target = link_target(seq)
        for at, link in ((seq - 1, entry.backlink), (target, entry.lipmaa_link)):
            if at is None or at < 1:
                continue
            assert link is not None  # decode_entry checked which links the seq has
            known = held.get(at) if at >= first else below.setdefault(at, link)
            if known != link:
                return None
        if payload is not None and (len(payload) != entry.payload_size
                                    or _blake2b_256(payload) != entry.payload_hash):
            return None
        compact.append(CompactItem(
            entry.flags,
            None if entry.timestamp == timestamp else entry.timestamp,
            payload,
            None if payload is not None else (entry.payload_size, entry.payload_hash),
            entry.signature if entry.flags & _FLAG_SIGNED else None,
        ))
        timestamp = entry.timestamp
        held[seq] = entry.hash
    seqs = anchor_seqs(first, len(items))
    assert sorted(below) == seqs  # every needed hash is named by some link of the run
    return CompactEntries(feed, first, b"".join(below[seq] for seq in seqs), tuple(compact))
