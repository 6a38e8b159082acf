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
from itertools import compress, repeat

from tidings.core.entry import BLAKE2B_256, MAX_PAYLOAD_SIZE, payload_hash, payload_hashes
from tidings.core.heads import HASH_HEAD as _HASH_HEAD
from tidings.core.heads import NULL as _NULL
from tidings.core.heads import SIG_HEAD as _SIG_HEAD
from tidings.core.heads import UINT_HEADS as _UINT_HEADS
from tidings.core.heads import feed_part
from tidings.core.heads import head as _head
from tidings.core.heads import uint_heads as _uint_heads
from tidings.core.heads import uint_width as _uint_width
from tidings.core.ids import FeedId
from tidings.core.lipmaa import link_target, link_targets
from tidings.core.verify import RebuiltRun
from tidings.wire.messages import (
    ANCHOR_SIZE,
    ENTRY_FLAGS,
    MAX_ENTRY_SEQ,
    SIGNATURE_SIZE,
    CompactEntries,
    CompactItem,
    anchor_seqs,
)

Item = tuple[bytes, bytes | None]

_FLAG_SIGNED = 2


def feed_fields(feed: FeedId) -> bytes:
    """Body fields 2 and 3 (author, log id) in their canonical encoding: the same in
    every entry of the feed, so a run encodes them once."""
    return feed_part(feed.author_key, feed.log_id)


def expand_run(message: CompactEntries) -> tuple[Item, ...]:
    """The full entries (and payloads, None where absent) a compact run stands for.

    The message has passed its wire checks (spec/09 §4), so every field is in
    range and the anchors are exactly as many as the run's links need; what is
    rebuilt here is total. Whether the author signed it is for the verifier.
    """
    run = rebuild_run(message)
    return tuple(zip(run.raws, run.payloads, strict=True))


def rebuild_run(message: CompactEntries) -> RebuiltRun:
    """The entries a compact run stands for, as the columns an ingest path takes
    instead of decoding their bytes (:func:`extend_rebuilt`), with its anchors.

    Every field is known here, and every check of decoding (spec/04 §2) holds by
    construction, as do the links inside the run and the payloads' sizes and hashes
    (:class:`RebuiltRun` lists what this makes true).

    Only the links depend on the entry before (its hash), so everything else is made
    for the whole run first, field by field in C-level passes (``map``, ``zip``,
    ``bytes.join``): each entry's bytes before its links (fields 0 to 5) and after
    them (size, payload hash, signature). The one Python-level pass per entry then
    joins those with the two links and hashes the result.
    """
    first = message.first_seq
    anchors = message.anchors
    items = message.items
    count = len(items)
    below = {seq: anchors[i * ANCHOR_SIZE:(i + 1) * ANCHOR_SIZE]
             for i, seq in enumerate(anchor_seqs(first, count))}
    feed_part = feed_fields(message.feed)
    # Fields 0 to 3 differ only in the flags byte: made once per run.
    starts = {flags: b"\x8a\x02" + bytes((flags,)) + feed_part for flags in ENTRY_FLAGS}
    flags, stamps, payloads, absent, signatures = zip(*items, strict=True)
    hasher = BLAKE2B_256.copy  # (a copy per hash: see BLAKE2B_256)
    if None not in payloads:  # (the usual run: every payload travels)
        sizes: list[int] = list(map(len, payloads))
        phashes = payload_hashes(payloads)
    else:
        sizes, phashes = [], []
        for payload, size_hash in zip(payloads, absent, strict=True):
            if payload is None:
                assert size_hash is not None
                sizes.append(size_hash[0])
                phashes.append(size_hash[1])
            else:
                sizes.append(len(payload))
                phashes.append(payload_hash(payload))
    size_heads = {size: _head(0, size) for size in set(sizes)}
    # The bytes before the links: fields 0 to 3, the seq, the timestamp.
    before = list(map(b"".join, zip(map(starts.__getitem__, flags), _uint_heads(first, count),
                                    _timestamp_heads(stamps), strict=True)))
    # ... and after them: the payload size and hash, the signature of a signed entry.
    after = list(map(b"".join, zip(map(size_heads.__getitem__, sizes), repeat(_HASH_HEAD),
                                   phashes)))
    for index in compress(range(count), signatures):  # (a signature is 64 bytes, never b"")
        after[index] += _SIG_HEAD + signatures[index]
    # The links, as their encoded fields by seq: the anchors below the run, then each
    # entry's hash as it is made; None (no lipmaa link) is a null.
    links: dict[int | None, bytes] = {seq: _HASH_HEAD + hashed for seq, hashed in below.items()}
    links[None] = _NULL
    backlink = links.get(first - 1, _NULL)  # entry 1 has none
    raws: list[bytes] = []
    hashes: list[bytes] = []
    keep_raw, keep_hash = raws.append, hashes.append
    join = b"".join
    for seq, head, target, tail in zip(range(first, first + count), before,
                                       link_targets(first, count), after, strict=True):
        raw = join((head, backlink, links[target], tail))
        state = hasher()
        state.update(raw)
        entry_hash = state.digest()
        keep_raw(raw)
        keep_hash(entry_hash)
        links[seq] = backlink = _HASH_HEAD + entry_hash
    feed = message.feed
    return RebuiltRun(feed.author_key, feed.log_id, first, flags, raws, hashes, sizes, payloads,
                      below)


def _timestamp_heads(stamps: Sequence[int | None]) -> list[bytes]:
    """Each item's timestamp as encoded; None is the previous item's (the first item
    carries one: the wire checks say so)."""
    if stamps.count(None) == len(stamps) - 1:  # one timestamp for the whole run
        return [_head(0, stamps[0] or 0)] * len(stamps)
    heads: list[bytes] = []
    keep = heads.append
    head = b""
    for stamp in stamps:
        if stamp is not None:
            # (microseconds since 1970 take 8 bytes: that head made inline)
            head = (b"\x1b" + stamp.to_bytes(8, "big") if stamp >= 1 << 32
                    else _head(0, stamp))
        keep(head)
    return heads


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

    Each entry is sliced at the offsets its layout fixes, not decoded: fields 0 to
    3 are one of three known prefixes, the seq one known head, the timestamp most
    often the previous entry's very bytes, the links known hashes, and the payload
    hash and signature sit at fixed offsets from the end (spec/09 §8).
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
    held: list[bytes] = []  # entry hashes of the run, by seq - first
    keep = held.append
    compact: list[CompactItem] = []
    append = compact.append
    new = tuple.__new__
    stamp_bytes = b""  # the previous entry's timestamp as encoded (a shortest head)
    signed_tail = 2 + SIGNATURE_SIZE  # the signature's head and bytes, at the end
    size_heads: dict[int, bytes] = {}
    seq_initial = seq_width = seq_next = 0  # the head of the seqs up to seq_next - 1
    try:
        first, _ = _read_uint(items[0][0], fields_end)
        if not 1 <= first <= MAX_ENTRY_SEQ - len(items) + 1:
            return None
        for index, (raw, payload) in enumerate(items):
            seq = first + index
            flags = starts.get(raw[:fields_end])
            if flags is None:  # another feed, version or layout
                return None
            if seq < 24:
                if raw[fields_end] != seq:
                    return None
                at = fields_end + 1
            else:
                if seq >= seq_next:  # the seq's head grows a size (24, 2^8, 2^16, 2^32)
                    seq_initial, seq_width, seq_next = _uint_width(seq)
                at = fields_end + 1 + seq_width
                if raw[fields_end] != seq_initial \
                        or raw[fields_end + 1:at] != seq.to_bytes(seq_width, "big"):
                    return None
            if index and raw.startswith(stamp_bytes, at):  # the same timestamp: None
                stamp = None
                at += len(stamp_bytes)
            else:  # (a shortest head: equal bytes exactly when the values are equal)
                stamp, end = _read_uint(raw, at)
                stamp_bytes, at = raw[at:end], end
            if seq == 1:
                if raw[at] != 0xF6:
                    return None
                at += 1
            else:
                if not raw.startswith(_HASH_HEAD, at):
                    return None
                link = raw[at + 2:at + 34]
                at += 34
                if index:
                    if held[index - 1] != link:
                        return None
                else:
                    below[seq - 1] = link
            target = link_target(seq)
            if target is None:
                if raw[at] != 0xF6:
                    return None
                at += 1
            else:
                if not raw.startswith(_HASH_HEAD, at):
                    return None
                link = raw[at + 2:at + 34]
                at += 34
                if (held[target - first] if target >= first
                        else below.setdefault(target, link)) != link:
                    return None
            # The tail, from the end: [size] [payload hash] [signature, if signed].
            end = len(raw)
            signature = None
            if flags & _FLAG_SIGNED:
                end -= signed_tail
                if end < at or not raw.startswith(_SIG_HEAD, end):
                    return None
                signature = raw[end + 2:]
            end -= 34
            if end < at or not raw.startswith(_HASH_HEAD, end):
                return None
            phash = raw[end + 2:end + 34]
            if payload is None:
                size, at = _read_uint(raw, at)
                if at != end or size > MAX_PAYLOAD_SIZE:
                    return None
                absent: tuple[int, bytes] | None = (size, phash)
            else:  # the size is the payload's: its head, made once per size in the run
                absent = None
                size = len(payload)
                size_head = size_heads.get(size)
                if size_head is None:
                    size_head = size_heads[size] = _head(0, size)
                if size > MAX_PAYLOAD_SIZE or raw[at:end] != size_head or (
                        hashes is None and blake2b(payload, digest_size=32).digest() != phash):
                    return None
            append(new(CompactItem, (flags, stamp, payload, absent, signature)))
            keep(blake2b(raw, digest_size=32).digest() if hashes is None else hashes[index])
    except (LookupError, ValueError):  # a short entry, a head of another type
        return None
    seqs = anchor_seqs(first, len(items))
    assert sorted(below) == seqs  # every needed hash is named by some link of the run
    return CompactEntries(feed, first, b"".join(below[seq] for seq in seqs), tuple(compact))
