"""Validity of runs of entries and of partial logs (spec/04-validity.md, spec/05-verification.md).

One procedure, whoever cut the input into pieces: every entry is decoded and
checked link by link, and every signature an entry carries must verify. An
unsigned entry is vouched for by the next signed entry, whose signature covers
the hash of the entry before it, and so on back (a link is the hash of an
entry's full bytes). So the entries a verifier *accepts* are the longest prefix
that passes every check and ends at a signed entry; entries after the last
signed one are *pending*: not wrong, not yet vouched for. Because every present
signature is checked and the rest is a matter of links, the accepted set is a
function of the entries alone: it does not depend on how a sender batched them.

Partial verification checks a set of entries that is not contiguous (the
latest N entries and a certificate pool) from its newest entry, which must be
signed, down the links to entry 1.

Nothing here does I/O. The caller supplies what it already trusts as an
:class:`Anchor`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from itertools import compress, repeat
from operator import and_
from typing import TypeVar

from tidings.core.entry import (
    ALLOWED_FLAGS,
    FLAG_END_OF_LOG,
    FLAG_SIGNED,
    MAX_ENTRY_SIZE,
    MAX_UNSIGNED_BYTES,
    MAX_UNSIGNED_RUN,
    SIG_PART,
    SIG_SIZE,
    VERSION,
    Entry,
    check_signature,
    decode_entry,
    feed_lead,
    read_rest,
    signature_holds,
)
from tidings.core.ids import FeedId
from tidings.core.lipmaa import certificate_pool, link_target
from tidings.core.records import record
from tidings.errors import (
    EntryAfterEndOfLog,
    ForkDetected,
    InvalidEntry,
    LinkedSeqMismatch,
    MissingAnchor,
    SequenceGap,
    UnsignedRun,
    UnsignedTail,
    WrongBacklink,
    WrongFeed,
    WrongLipmaaLink,
)


@record
class Anchor:
    """What a verifier already trusts about a feed before a run is checked.

    ``known`` maps sequence numbers to trusted entry hashes. It must hold the
    hash at ``head_seq`` (when ``head_seq > 0``) and every hash of
    :func:`tidings.core.lipmaa.links_needed` for the run. ``unsigned`` and
    ``unsigned_bytes`` describe the unsigned entries just before the run (0
    when the entry at ``head_seq`` is signed, as a stored head always is).

    A *detached* anchor checks a run on its own: the first entry's backlink and
    links to entries below the run are not checked (a peer's branch of a fork).
    """

    author: bytes
    log_id: str
    head_seq: int = 0
    ended: bool = False
    known: Mapping[int, bytes] = field(default_factory=dict)
    unsigned: int = 0
    unsigned_bytes: int = 0
    detached: bool = False

    @property
    def feed(self) -> FeedId:
        return FeedId(self.author, self.log_id)


@record
class RunCheck:
    """The outcome of checking a run.

    ``accepted``: the leading entries that are valid and vouched for by a
    signature (the run's accepted prefix ends at a signed entry). ``checked``:
    the leading entries that passed every check (``accepted`` plus the unsigned
    entries after the last signed one). ``error``: the first entry that failed,
    with the first rule it broke, or None. Entries ``accepted..checked`` are
    *pending* when there is no error: a later signed entry may vouch for them.
    """

    accepted: int
    checked: int
    error: InvalidEntry | None = None

    @property
    def pending(self) -> int:
        return self.checked - self.accepted if self.error is None else 0


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


def check_run(
    entries: Sequence[Entry],
    anchor: Anchor,
    payloads: Sequence[bytes | None] | None = None,
) -> RunCheck:
    """Check that ``entries`` validly extend the feed described by ``anchor``.

    The checks of spec/04 §3 (C1-C9) run on every entry in order, and stop at
    the first failure. ``payloads`` (same length as ``entries``, ``None`` where
    absent) are checked against the signed size and hash.
    """
    if payloads is not None and len(payloads) != len(entries):
        raise ValueError("payloads must be as many as entries")
    feed_text = str(anchor.feed)
    first_seq = anchor.head_seq + 1
    previous_hash: bytes | None = None
    if anchor.head_seq > 0 and not anchor.detached:
        previous_hash = anchor.known.get(anchor.head_seq)
        if previous_hash is None:
            raise MissingAnchor(
                f"{feed_text}: the hash of the head entry {anchor.head_seq} is needed"
            )
    ended = anchor.ended
    unsigned, unsigned_bytes = anchor.unsigned, anchor.unsigned_bytes
    run_hashes: list[bytes] = []
    accepted = 0
    author, log_id, known = anchor.author, anchor.log_id, anchor.known
    detached = anchor.detached
    blake2b = hashlib.blake2b
    for index, entry in enumerate(entries):
        position = first_seq + index
        # Errors name the position (what a caller needs to keep the valid
        # prefix), whatever seq the entry claims.
        try:
            if entry.author != author or entry.log_id != log_id:  # C1
                raise WrongFeed(f"entry belongs to feed {entry.feed}", feed=feed_text,
                                seq=position)
            seq = entry.seq
            if seq != position:  # C2
                raise SequenceGap(f"expected seq {position}, got {seq}", feed=feed_text,
                                  seq=position)
            if ended:  # C3
                raise EntryAfterEndOfLog(f"entry {seq - 1} ended the log", feed=feed_text,
                                         seq=seq)
            if entry.flags & 2:  # C4: a signature, when present, verifies
                check_signature(entry)
                unsigned = unsigned_bytes = 0
            else:  # C5: at most 63 unsigned entries, 256 KiB of their payloads, in a row
                unsigned += 1
                unsigned_bytes += entry.payload_size
                if unsigned > MAX_UNSIGNED_RUN or unsigned_bytes > MAX_UNSIGNED_BYTES:
                    raise UnsignedRun(
                        f"{unsigned} unsigned entries with {unsigned_bytes} payload bytes in a "
                        f"row; at most {MAX_UNSIGNED_RUN} and {MAX_UNSIGNED_BYTES} may be",
                        feed=feed_text, seq=seq,
                    )
            if seq > 1 and not (detached and index == 0) and (  # C6
                entry.backlink != (run_hashes[-1] if index else previous_hash)
            ):
                raise WrongBacklink(f"backlink is not the hash of entry {seq - 1}",
                                    feed=feed_text, seq=seq)
            target = link_target(seq)
            if target is not None:  # C7
                if target >= first_seq:
                    expected: bytes | None = run_hashes[target - first_seq]
                elif detached:
                    expected = entry.lipmaa_link
                else:
                    expected = known.get(target)
                    if expected is None:
                        raise MissingAnchor(
                            f"{feed_text} seq {seq}: the hash of entry {target} is needed to "
                            "check its lipmaa link; pass it in Anchor.known"
                        )
                if entry.lipmaa_link != expected:
                    raise WrongLipmaaLink(f"lipmaa link is not the hash of entry {target}",
                                          feed=feed_text, seq=seq)
            if payloads is not None:  # C8, C9
                payload = payloads[index]
                if payload is not None and (
                    len(payload) != entry.payload_size
                    or blake2b(payload, digest_size=32).digest() != entry.payload_hash
                ):
                    entry.check_payload(payload)  # raises the error that names which
        except InvalidEntry as error:
            return RunCheck(accepted, index, error)
        run_hashes.append(entry.hash)
        ended = entry.is_end_of_log
        if entry.flags & 2:
            accepted = index + 1
    return RunCheck(accepted, len(entries))


Row = TypeVar("Row")
#: A row type that is a tuple of (seq, hash, raw, payload), as a store's NamedTuple is.
TupleRow = TypeVar("TupleRow", bound=tuple[int, bytes, bytes, bytes | None])


def extend_in_one_pass(
    items: Sequence[tuple[bytes, bytes | None]],
    anchor: Anchor,
    make_row: Callable[[int, bytes, bytes, bytes | None], Row],
) -> tuple[list[Row], int] | None:
    """Decode and check ``(entry bytes, payload or None)`` extending ``anchor``, in one
    pass: ``(rows, accepted)`` when every item passes, else None.

    The rules are exactly :func:`check_run`'s over :func:`decode_entry`'s output
    (D1-D9, then C1-C9 in its order), for input where nothing fails; at the first
    failure this gives up and returns None, and the caller runs those two, which
    name the rule and keep the valid prefix. A run that passes is the common case
    of replication, and here it costs one field read (:func:`read_rest`, no
    :class:`Entry`), one entry hash and one row per entry. ``accepted`` is the
    number of leading rows up to the last signed entry, as in :class:`RunCheck`.
    """
    if anchor.detached or anchor.ended:
        return None
    author, log_id, known = anchor.author, anchor.log_id, anchor.known
    lead = feed_lead(author, log_id)
    if lead is None:
        return None
    rest_at = 3 + len(lead)
    first = expected_seq = anchor.head_seq + 1
    previous = known.get(anchor.head_seq) if anchor.head_seq else None
    if anchor.head_seq and previous is None:
        return None
    unsigned, unsigned_bytes = anchor.unsigned, anchor.unsigned_bytes
    hashes: list[bytes] = []
    rows: list[Row] = []
    accepted = 0
    blake2b = hashlib.blake2b
    for raw, payload in items:
        # D1-D9 as read_fields reads them, with the author and log id (C1) read as
        # the bytes every canonical entry of this feed has there.
        if type(raw) is not bytes or len(raw) > MAX_ENTRY_SIZE or len(raw) < 78 \
                or raw[0] != 0x8A or raw[1] != VERSION:
            return None
        flags = raw[2]
        if flags not in ALLOWED_FLAGS or not raw.startswith(lead, 3):
            return None
        rest = read_rest(raw, rest_at, flags)
        if rest is None:
            return None
        seq, _, backlink, lipmaa_link, size, phash, sig = rest
        if seq != expected_seq:  # C2
            return None
        if flags & FLAG_SIGNED:  # C4
            if not signature_holds(author, sig, raw[:-SIG_PART]):
                return None
            unsigned = unsigned_bytes = 0
        else:  # C5
            unsigned += 1
            unsigned_bytes += size
            if unsigned > MAX_UNSIGNED_RUN or unsigned_bytes > MAX_UNSIGNED_BYTES:
                return None
        if seq > 1 and backlink != previous:  # C6
            return None
        target = link_target(seq)
        if target is not None and lipmaa_link != (  # C7
                hashes[target - first] if target >= first else known.get(target, b"")):
            return None
        if payload is not None and (  # C8, C9
                len(payload) != size or blake2b(payload, digest_size=32).digest() != phash):
            return None
        previous = blake2b(raw, digest_size=32).digest()
        hashes.append(previous)
        rows.append(make_row(seq, previous, raw, payload))
        expected_seq += 1
        if flags & FLAG_SIGNED:
            accepted = len(rows)
            if flags & FLAG_END_OF_LOG and expected_seq - first < len(items):  # C3
                return None
    return rows, accepted


@record
class RebuiltRun:
    """Consecutive entries of one feed rebuilt from a compact run (spec/09 §8), as
    :func:`tidings.wire.compact.rebuild_run` makes them, and only it: a column per
    field the ingest path needs, no object per entry.

    By that construction every entry's bytes decode (D1-D9 hold) into the run's
    author and log id, seq ``first + index``, ``flags[index]`` and a payload size of
    ``sizes[index]``; ``hashes[index]`` is the BLAKE2b of ``raws[index]``; a signed
    entry's bytes end in its signature; each link to an entry of the run is that
    entry's hash, each link below the run is ``below[target]`` (the run's anchors);
    and a given payload's size and hash are what its entry names.
    :func:`extend_rebuilt` checks what that leaves open: the anchors against what is
    held, signatures, unsigned runs, end of log.
    """

    author: bytes
    log_id: str
    #: The seq of ``raws[0]``.
    first: int
    flags: Sequence[int]
    raws: Sequence[bytes]
    hashes: Sequence[bytes]
    #: Each entry's payload size, as its entry names it (the payload may be absent).
    sizes: Sequence[int]
    payloads: Sequence[bytes | None]
    #: The hashes the run's links name below its first seq, by seq.
    below: Mapping[int, bytes]


def signatures_hold(author: bytes, signed: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether every ``(signature, body)`` of ``signed`` is ``author``'s (C4), one by one."""
    return all(signature_holds(author, signature, body) for signature, body in signed)


#: How :func:`extend_rebuilt` checks a run's signatures: ``(author, [(signature,
#: body), ...]) -> every one holds``. :func:`signatures_hold` unless the caller has a
#: way that decides the same (the logbook checks on two cores).
SignatureCheck = Callable[[bytes, Sequence[tuple[bytes, bytes]]], bool]


def signed_pairs(run: RebuiltRun) -> list[tuple[bytes, bytes]]:
    """``(signature, body)`` of each signed entry of ``run``: what C4 checks (a signed
    entry's bytes end in its signature, the rest is the body it signs)."""
    return _signed_pairs(run.raws, _signed_indexes(run.flags))


def _signed_indexes(flags: Sequence[int]) -> list[int]:
    """The indexes of a run's signed entries (one C-level pass over its flags)."""
    return list(compress(range(len(flags)), map(and_, flags, repeat(FLAG_SIGNED))))


def _signed_pairs(raws: Sequence[bytes], signed: Iterable[int]) -> list[tuple[bytes, bytes]]:
    signed_raws = list(map(raws.__getitem__, signed))
    return list(zip([raw[-SIG_SIZE:] for raw in signed_raws],
                    [raw[:-SIG_PART] for raw in signed_raws], strict=True))


def extend_rebuilt(
    run: RebuiltRun,
    anchor: Anchor,
    row_type: type[TupleRow],
    check_signatures: SignatureCheck = signatures_hold,
) -> tuple[list[TupleRow], int] | None:
    """:func:`extend_in_one_pass` for a :class:`RebuiltRun`: ``(rows, accepted)`` when
    every entry passes, else None (the caller then runs the full path, which names
    the rule and keeps the valid prefix).

    Nothing is read or hashed again. The rules of :func:`check_run` that the rebuild
    does not make hold by construction are checked: the feed (C1) and first seq (C2)
    once, the first backlink and every link below the run (C6, C7) once per anchor
    against ``anchor.known``, the signature of each signed entry (C4), each stretch
    of unsigned entries (C5) and nothing past an end of log (C3), column by column.
    """
    raws, flags = run.raws, run.flags
    count = len(raws)
    if (not count or anchor.detached or anchor.ended or len(run.payloads) != count
            or len(flags) != count or len(run.hashes) != count or len(run.sizes) != count):
        return None
    author, known = anchor.author, anchor.known
    first = anchor.head_seq + 1
    if run.first != first or run.author != author or run.log_id != anchor.log_id:  # C2, C1
        return None
    if first > 1 and first - 1 not in run.below:  # the first backlink names an anchor
        return None
    for seq, hashed in run.below.items():  # C6 of the first entry, C7 below the run
        if known.get(seq) != hashed:
            return None
    if FLAG_SIGNED | FLAG_END_OF_LOG in flags[:-1]:  # C3: an end of log before the last
        return None
    signed = _signed_indexes(flags)
    # C5: each stretch of unsigned entries, from the anchor's (before the first
    # signed entry) or from a signed entry's, up to the next signed entry or the end.
    # The counts only grow along a stretch, so its end is where it is largest.
    sizes = run.sizes
    unsigned, unsigned_bytes = anchor.unsigned, anchor.unsigned_bytes
    start = 0
    for stop in (*signed, count):
        if stop > start:
            unsigned += stop - start
            unsigned_bytes += sum(sizes[start:stop])
            if unsigned > MAX_UNSIGNED_RUN or unsigned_bytes > MAX_UNSIGNED_BYTES:
                return None
        unsigned = unsigned_bytes = 0
        start = stop + 1
    if signed and not check_signatures(author, _signed_pairs(raws, signed)):  # C4
        return None
    # The rows, each (seq, hash, raw, payload) made as the tuple it is, without the
    # row type's Python-level constructor (map: no Python code per row).
    rows: list[TupleRow] = list(map(tuple.__new__, repeat(row_type), zip(
        range(first, first + count), run.hashes, raws, run.payloads, strict=True)))
    return rows, signed[-1] + 1 if signed else 0


def verify_run(
    entries: Sequence[Entry],
    anchor: Anchor,
    payloads: Sequence[bytes | None] | None = None,
) -> RunCheck:
    """:func:`check_run`, raising the first error; pending entries are not an error here."""
    result = check_run(entries, anchor, payloads)
    if result.error is not None:
        raise result.error
    return result


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
    """Verify a set of entries of one feed that need not be contiguous (spec/05 §3).

    The newest entry must be signed, and every signature an entry carries must
    verify; every other entry must be reached from the newest by hash links,
    each link landing on the sequence number it must reach, and entry 1 must
    be among them. Returns the entries, ascending.
    """
    entries = sorted(entries, key=lambda e: e.seq)
    if not entries:
        return []
    head = entries[-1]
    feed_text = str(head.feed)  # errors name the feed the head claims
    # P1: one entry per seq (the same bytes twice count once). At the lowest seq
    # with more than one: another feed's entry is wrong-feed, else it is a fork.
    by_seq: dict[int, Entry] = {}
    for entry in entries:
        other = by_seq.setdefault(entry.seq, entry)
        if other.hash != entry.hash:
            here = [e for e in entries if e.seq == entry.seq]
            if any(e.feed != head.feed for e in here):
                raise WrongFeed(f"entries of different feeds at seq {entry.seq}",
                                feed=feed_text, seq=entry.seq)
            raise ForkDetected(
                "two different entries at one seq (a partial answer holds one entry per seq; "
                "no fork proof is made from it)", None, feed=feed_text, seq=entry.seq,
            )
    for entry in entries:  # P2
        if entry.author != head.author or entry.log_id != head.log_id:
            raise WrongFeed(f"entry belongs to feed {entry.feed}", feed=feed_text, seq=entry.seq)
    if not head.signed:  # P3
        raise UnsignedTail(
            "the newest entry carries no signature: nothing vouches for the set",
            feed=feed_text, seq=head.seq,
        )
    for entry in entries:  # P4: every signature present, from the lowest seq
        if entry.signed:
            check_signature(entry)
    by_hash = {entry.hash: entry for entry in by_seq.values()}
    reached = {head.seq}
    ended_at = None
    for seq in sorted(by_seq, reverse=True):  # P5
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
    if ended_at is not None:  # P6
        after = min(seq for seq in by_seq if seq > ended_at)
        raise EntryAfterEndOfLog(f"entry {ended_at} ended the log", feed=feed_text, seq=after)
    for seq in sorted(by_seq):  # P7
        if seq not in reached:
            raise SequenceGap(
                f"no link path from the head (seq {head.seq}) reaches this entry",
                feed=feed_text, seq=seq,
            )
    if 1 not in by_seq:  # P8
        raise SequenceGap(
            "entry 1 is missing: a partial log must link down to its first entry",
            feed=feed_text, seq=1,
        )
    _check_visible_unsigned_runs(by_seq, feed_text)  # P9
    if payloads:  # P10
        for seq in sorted(payloads):
            if seq in by_seq:
                by_seq[seq].check_payload(payloads[seq])
    return [by_seq[seq] for seq in sorted(by_seq)]


def _check_visible_unsigned_runs(by_seq: Mapping[int, Entry], feed_text: str) -> None:
    """C5 where the set shows it: a contiguous stretch of unsigned entries that is too long.

    The stretch may begin below the lowest entry of the set, so what is counted
    is a lower bound; an entry is refused only when even that exceeds a bound.
    """
    unsigned = unsigned_bytes = 0
    previous = 0
    for seq in sorted(by_seq):
        entry = by_seq[seq]
        if seq != previous + 1:
            unsigned = unsigned_bytes = 0  # a gap: the stretch before it is unknown
        previous = seq
        if entry.signed:
            unsigned = unsigned_bytes = 0
            continue
        unsigned += 1
        unsigned_bytes += entry.payload_size
        if unsigned > MAX_UNSIGNED_RUN or unsigned_bytes > MAX_UNSIGNED_BYTES:
            raise UnsignedRun(
                f"at least {unsigned} unsigned entries with {unsigned_bytes} payload bytes "
                "in a row", feed=feed_text, seq=seq,
            )


__all__ = [
    "Anchor",
    "RunCheck",
    "check_run",
    "decode_run",
    "extend_in_one_pass",
    "partial_seqs",
    "verify_partial",
    "verify_run",
]
