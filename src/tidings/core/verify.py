"""Validity of runs of entries and of partial logs (spec/04-validity.md, spec/05-verification.md).

Three ways to verify, one set of rules:

* one by one: every entry's signature and links are checked;
* batch: a contiguous run is checked link by link and only its newest entry's
  signature is verified. The signature on a head authenticates every entry it
  links to, because each link is the hash of the full bytes of the entry it
  names, signature included. When a batch fails, the run is checked again one by
  one so that the error names the first bad entry and the rule it breaks;
* partial: a set of entries that are not contiguous (the latest N entries and
  a certificate pool) is checked from its newest entry down the links to entry 1.

Nothing here does I/O. The caller supplies what it already trusts as an
:class:`Anchor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tidings.core.entry import Entry, check_signature, decode_entry
from tidings.core.ids import FeedId
from tidings.core.lipmaa import certificate_pool, link_target
from tidings.errors import (
    EntryAfterEndOfLog,
    ForkDetected,
    InvalidEntry,
    LinkedSeqMismatch,
    MissingAnchor,
    SequenceGap,
    WrongBacklink,
    WrongFeed,
    WrongLipmaaLink,
)


@dataclass(frozen=True, slots=True)
class Anchor:
    """What a verifier already trusts about a feed before a run is checked.

    ``known`` maps sequence numbers to trusted entry hashes. It must hold the
    hash at ``head_seq`` (when ``head_seq > 0``) and every hash of
    :func:`tidings.core.lipmaa.links_needed` for the run.
    """

    author: bytes
    log_id: str
    head_seq: int = 0
    ended: bool = False
    known: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def feed(self) -> FeedId:
        return FeedId(self.author, self.log_id)


def decode_run(raws: Iterable[bytes], feed: FeedId, first_seq: int) -> list[Entry]:
    """Decode entries expected at ``first_seq``, ``first_seq + 1``, ...

    A decoding error is given the feed and the position it was expected at.
    """
    entries = []
    for offset, raw in enumerate(raws):
        try:
            entries.append(decode_entry(raw))
        except InvalidEntry as exc:
            raise exc.at(str(feed), first_seq + offset) from None
    return entries


def _check_entry(
    entry: Entry,
    anchor: Anchor,
    expected_seq: int,
    previous_hash: bytes | None,
    previous_ended: bool,
    run_hashes: Sequence[bytes],
    first_seq: int,
    payload: bytes | None,
    check_sig: bool,
    feed_text: str,
) -> None:
    """Every rule for one entry of a run, in the spec's order, signature optional."""
    # Errors name the position in the run (expected_seq), which is what a
    # caller needs to keep the valid prefix, whatever seq the entry claims.
    seq = entry.seq
    if entry.author != anchor.author or entry.log_id != anchor.log_id:
        raise WrongFeed(f"entry belongs to feed {entry.feed}", feed=feed_text, seq=expected_seq)
    if seq != expected_seq:
        raise SequenceGap(
            f"expected seq {expected_seq}, got {seq}", feed=feed_text, seq=expected_seq
        )
    if previous_ended:
        raise EntryAfterEndOfLog(
            f"entry {seq - 1} ended the log", feed=feed_text, seq=seq
        )
    if check_sig:
        check_signature(entry)
    if seq > 1 and entry.backlink != previous_hash:
        raise WrongBacklink(
            f"backlink is not the hash of entry {seq - 1}", feed=feed_text, seq=seq
        )
    target = link_target(seq)
    if target is not None:
        if target >= first_seq:
            expected = run_hashes[target - first_seq]
        else:
            known = anchor.known.get(target)
            if known is None:
                raise MissingAnchor(
                    f"{feed_text} seq {seq}: the hash of entry {target} is needed to check "
                    "its lipmaa link; pass it in Anchor.known"
                )
            expected = known
        if entry.lipmaa_link != expected:
            raise WrongLipmaaLink(
                f"lipmaa link is not the hash of entry {target}", feed=feed_text, seq=seq
            )
    if payload is not None:
        entry.check_payload(payload)


def _verify(
    entries: Sequence[Entry],
    anchor: Anchor,
    payloads: Sequence[bytes | None] | None,
    check_every_signature: bool,
) -> None:
    feed_text = str(anchor.feed)
    first_seq = anchor.head_seq + 1
    if anchor.head_seq > 0:
        previous_hash = anchor.known.get(anchor.head_seq)
        if previous_hash is None:
            raise MissingAnchor(
                f"{feed_text}: the hash of the head entry {anchor.head_seq} is needed"
            )
    else:
        previous_hash = None
    previous_ended = anchor.ended
    run_hashes: list[bytes] = []
    last = len(entries) - 1
    for index, entry in enumerate(entries):
        _check_entry(
            entry, anchor, first_seq + index, previous_hash, previous_ended, run_hashes,
            first_seq, payloads[index] if payloads is not None else None,
            check_every_signature or index == last, feed_text,
        )
        previous_hash = entry.hash
        previous_ended = entry.is_end_of_log
        run_hashes.append(entry.hash)


def verify_run(
    entries: Sequence[Entry],
    anchor: Anchor,
    payloads: Sequence[bytes | None] | None = None,
    *,
    batch: bool = True,
) -> None:
    """Check that ``entries`` validly extend the feed described by ``anchor``.

    ``payloads`` (same length as ``entries``, ``None`` where absent) are checked
    against the signed size and hash. One by one (``batch=False``) every
    signature is verified. In a batch every check but the signature runs on
    every entry, and a signature only where it is needed: the newest entry's,
    whose signature authenticates every entry it links back to.

    On failure the raised :class:`InvalidEntry` names the first entry that is
    not accepted, with the first rule it breaks; every entry before it is
    valid. In a batch the accepted entries are the longest prefix that passes
    every other check and ends in an entry whose own signature verifies
    (spec/05-verification.md §2).
    """
    if payloads is not None and len(payloads) != len(entries):
        raise ValueError("payloads must be as many as entries")
    if not entries:
        return
    if not batch:
        _verify(entries, anchor, payloads, check_every_signature=True)
        return
    try:
        _verify(entries, anchor, payloads, check_every_signature=False)
        return
    except InvalidEntry as failure:
        assert failure.seq is not None
        failed = failure.seq - (anchor.head_seq + 1)
    accepted = failed  # entries before the failure passed every check but signatures
    while accepted > 0 and not _signature_verifies(entries[accepted - 1]):
        accepted -= 1
    # Entry `accepted` is the first one refused: report the first rule it
    # breaks, its own signature included (it is the newest of this run).
    _verify(
        entries[:accepted + 1], anchor,
        None if payloads is None else payloads[:accepted + 1],
        check_every_signature=False,
    )
    raise AssertionError("unreachable: the refused entry passed every check")  # pragma: no cover


def _signature_verifies(entry: Entry) -> bool:
    try:
        check_signature(entry)
    except InvalidEntry:
        return False
    return True


def partial_seqs(head_seq: int, count: int) -> list[int]:
    """Sequence numbers a reader fetches to verify the latest ``count`` entries up to ``head_seq``.

    The run itself plus the certificate pool of its oldest entry, ascending.
    """
    if head_seq < 1 or count < 1:
        raise ValueError("need head_seq >= 1 and count >= 1")
    oldest = max(1, head_seq - count + 1)
    wanted = set(range(oldest, head_seq + 1))
    wanted.update(seq for seq in certificate_pool(oldest) if seq <= head_seq)
    return sorted(wanted)


def verify_partial(
    entries: Iterable[Entry],
    payloads: Mapping[int, bytes] | None = None,
) -> list[Entry]:
    """Verify a set of entries of one feed that need not be contiguous.

    The newest entry's signature is verified; every other entry must be reached
    from it by hash links, each link landing on the sequence number it must
    reach, and entry 1 must be among them. Returns the entries, ascending.
    """
    entries = sorted(entries, key=lambda e: e.seq)
    if not entries:
        return []
    head = entries[-1]
    feed_text = str(head.feed)  # errors name the feed the head claims
    # P1: two different entries at one seq (the lowest such seq).
    by_seq: dict[int, Entry] = {}
    for entry in entries:
        other = by_seq.setdefault(entry.seq, entry)
        if other.hash == entry.hash:
            continue
        if other.feed != entry.feed:
            raise WrongFeed(
                f"entries of feeds {other.feed} and {entry.feed} at one seq",
                feed=feed_text, seq=entry.seq,
            )
        check_signature(other)
        check_signature(entry)
        from tidings.core.forks import ForkProof

        raise ForkDetected(
            "two validly signed entries at one seq", ForkProof.from_entries(other, entry),
            feed=feed_text, seq=entry.seq,
        )
    for entry in entries:  # P2
        if entry.author != head.author or entry.log_id != head.log_id:
            raise WrongFeed(f"entry belongs to feed {entry.feed}", feed=feed_text, seq=entry.seq)
    check_signature(head)  # P3
    by_hash = {entry.hash: entry for entry in by_seq.values()}
    reached = {head.seq}
    ended_at = None
    for seq in sorted(by_seq, reverse=True):
        entry = by_seq[seq]
        if seq not in reached:
            continue
        if entry.is_end_of_log and seq != head.seq:
            ended_at = seq
        links: list[tuple[int, bytes | None, type[InvalidEntry], str]] = []
        if seq > 1:
            links.append((seq - 1, entry.backlink, WrongBacklink, "backlink"))
            target = link_target(seq)
            if target is not None:
                links.append((target, entry.lipmaa_link, WrongLipmaaLink, "lipmaa link"))
        for target_seq, link, wrong, name in links:
            linked = by_hash.get(link) if link is not None else None
            if linked is not None:
                if linked.seq != target_seq:
                    raise LinkedSeqMismatch(
                        f"{name} names the entry at seq {linked.seq}, it must reach seq "
                        f"{target_seq}", feed=feed_text, seq=seq,
                    )
                reached.add(target_seq)
            elif target_seq in by_seq:
                raise wrong(
                    f"{name} is not the hash of entry {target_seq}", feed=feed_text, seq=seq
                )
    if ended_at is not None:
        after = min(seq for seq in by_seq if seq > ended_at)
        raise EntryAfterEndOfLog(f"entry {ended_at} ended the log", feed=feed_text, seq=after)
    for seq in sorted(by_seq):
        if seq not in reached:
            raise SequenceGap(
                f"no link path from the head (seq {head.seq}) reaches this entry",
                feed=feed_text, seq=seq,
            )
    if 1 not in by_seq:
        raise SequenceGap(
            "entry 1 is missing: a partial log must link down to its first entry",
            feed=feed_text, seq=1,
        )
    if payloads:
        for seq in sorted(payloads):
            if seq in by_seq:
                by_seq[seq].check_payload(payloads[seq])
    return [by_seq[seq] for seq in sorted(by_seq)]


__all__ = [
    "Anchor",
    "decode_run",
    "partial_seqs",
    "verify_partial",
    "verify_run",
]
