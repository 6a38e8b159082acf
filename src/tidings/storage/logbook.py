"""The logbook: the feeds one node holds, verified on the way in.

This is the library's main entry point. It joins the pure core (formats,
verification) to a :class:`~tidings.storage.base.Store`::

    from tidings import Logbook, Identity, MemoryStore

    book = Logbook(MemoryStore(), Identity.generate())
    entry = book.publish(b"hello", log_id="blog")
    for entry, payload in book.read(entry.feed):
        print(entry.seq, payload)

Everything written goes through a store transaction: ``publish`` returns only
once the entry is durable, and ``ingest`` stores the valid prefix of what it is
given, never anything invalid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tidings.core.bundle import (
    HEADER,
    HEADER_V2,
    MAX_BUNDLE_IDENTITY_EVENTS,
    EntryRecord,
    ForkProofRecord,
    IdentityRecord,
    encode_entry_record,
    encode_identity_record,
    encode_proof_record,
    read_bundle,
)
from tidings.core.entry import (
    MAX_PAYLOAD_SIZE,
    MAX_UNSIGNED_BYTES,
    MAX_UNSIGNED_RUN,
    Entry,
    decode_entry,
    stored_is_end_of_log,
)
from tidings.core.forks import MAX_RUN, ForkProof, branch_run
from tidings.core.ids import FeedId, check_log_id
from tidings.core.lipmaa import certificate_pool, links_needed
from tidings.core.signing import sign_run
from tidings.core.verify import (
    Anchor,
    RebuiltRun,
    RunCheck,
    check_run,
    extend_in_one_pass,
    extend_rebuilt,
    signed_pairs,
)
from tidings.errors import (
    ForkDetected,
    ForkedFeed,
    InvalidBundle,
    InvalidEntry,
    InvalidForkProof,
    Oversize,
    StoredEntryDamaged,
    TidingsError,
    UnsignedTail,
    UsageError,
    WrongBacklink,
)
from tidings.identity import Identity
from tidings.storage.base import FeedInfo, Store, StoredEntry, undisputed_extent
from tidings.storage.signatures import ChecksAhead

DEFAULT_LOG = "main"
#: The log public follow and unfollow entries go to (spec/content.md).
FOLLOWS_LOG = "follows"
#: Entries per store transaction when ingesting or verifying: large enough that
#: one signature check and one commit are spread over many entries.
BATCH_SIZE = 1000
#: ...and at most this many bytes of entries and payloads held at once, so a
#: batch of 1 MiB payloads (or a hostile bundle of them) stays at 8 MiB, not 1 GiB.
BATCH_BYTES = 8 << 20


def _now_us() -> int:
    return time.time_ns() // 1000


def _decode_items(
    items: Sequence[tuple[bytes, bytes | None]], feed_text: str, head_seq: int
) -> tuple[list[Entry], InvalidEntry | None]:
    """Decode entries up to the first that does not decode (whose error says where)."""
    entries: list[Entry] = []
    for offset, (raw, _) in enumerate(items):
        try:
            entries.append(decode_entry(raw))
        except InvalidEntry as exc:
            expected = entries[-1].seq + 1 if entries else head_seq + 1 + offset
            return entries, exc.at(feed_text, expected)
    return entries, None


def _rows(entries: Sequence[Entry], payloads: Sequence[bytes | None]) -> list[StoredEntry]:
    return [StoredEntry(e.seq, e.hash, e.raw, p) for e, p in zip(entries, payloads, strict=True)]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What :meth:`Logbook.ingest` did with a run.

    ``added`` entries were stored and ``duplicates`` were held already.
    ``pending`` entries at the end passed every check but no signed entry in
    the input vouches for them yet: they were not stored (give them again with
    the entries that follow). ``error`` is the first entry that failed, with
    its rule; everything stored came before it. ``split_below`` is set when
    the input is the author's own but shows another history than the one held,
    split somewhere below that seq (spec/06 §4): a node asks its peer where.
    """

    added: int
    duplicates: int
    pending: int = 0
    error: InvalidEntry | None = None
    split_below: int | None = None
    #: The held head after this ingest, ``(seq, hash)``, where the common path
    #: knows it without asking the store (None: ask the store).
    head: tuple[int, bytes] | None = None

    def raise_error(self) -> IngestResult:
        """Raise :attr:`error` if there is one; otherwise return self."""
        if self.error is not None:
            raise self.error
        return self


@dataclass(slots=True)
class ImportResult:
    """What an import stored before it finished or hit ``error``."""

    added: int = 0
    duplicates: int = 0
    fork_proofs: int = 0
    feeds: set[FeedId] = field(default_factory=set)
    error: Exception | None = None
    #: The identity records read (identity, event), for the caller to fold (spec/07 §3).
    identity_events: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    feed: FeedId
    entries: int
    payloads: int
    forked_at: int | None
    error: TidingsError | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.forked_at is None


class Logbook:
    """A node's feeds: publish to your own, ingest others', read, verify, export."""

    def __init__(
        self,
        store: Store,
        identity: Identity | None = None,
        *,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self.store = store
        self.identity = identity
        self._clock = clock
        #: Signature checks of received runs begun before their ingest (check_ahead).
        self._ahead = ChecksAhead()

    # -- publishing -------------------------------------------------------

    def _require_identity(self) -> Identity:
        if self.identity is None:
            raise UsageError("this logbook has no identity: run `tidings init` to publish")
        return self.identity

    def feed(self, log_id: str = DEFAULT_LOG) -> FeedId:
        """Your own feed for ``log_id``."""
        return self._require_identity().author.feed(check_log_id(log_id))

    def publish(
        self, payload: bytes, log_id: str = DEFAULT_LOG, *, end_of_log: bool = False
    ) -> Entry:
        """Append one entry to your log ``log_id``; durable when this returns."""
        return self.publish_batch([payload], log_id, end_of_log=end_of_log)[0]

    def publish_batch(
        self, payloads: Sequence[bytes], log_id: str = DEFAULT_LOG, *, end_of_log: bool = False
    ) -> list[Entry]:
        """Append one entry per payload in one transaction; durable when this returns.

        The last entry is signed, and so is every entry that would otherwise
        make too long a row of unsigned ones (spec/04 C5): one signature per
        64 entries at least, or per 256 KiB of payloads. With ``end_of_log``
        the last entry ends the log: nothing can follow it.
        """
        identity = self._require_identity()
        feed = self.feed(log_id)
        for payload in payloads:
            if not isinstance(payload, bytes):
                raise TypeError("payloads are bytes; encode text first")
            if len(payload) > MAX_PAYLOAD_SIZE:
                raise Oversize(
                    f"the payload is {len(payload)} bytes; a payload holds at most "
                    f"{MAX_PAYLOAD_SIZE} bytes (1 MiB)", feed=str(feed),
                )
        if not payloads:
            return []
        author = identity.author.key
        secret = identity.secret_key
        with self.store.transaction():
            forked = self.store.forked_at(feed)
            if forked is not None:
                raise UsageError(
                    f"your feed {feed} is forked at seq {forked} (the key was used on two "
                    "devices, or restored from an old backup): publish to a new log instead"
                )
            head = self.store.head(feed)
            head_seq = head.seq if head else 0
            if head is not None and decode_entry(head.raw).is_end_of_log:
                raise UsageError(
                    f"log {log_id!r} ended at seq {head_seq}: publish to another log"
                )
            hashes = self.store.hashes(feed, links_needed(head_seq + 1, head_seq + len(payloads)))
            last = len(payloads) - 1
            signed: list[bool] = []
            unsigned = unsigned_bytes = 0  # a stored head is always signed
            for index, payload in enumerate(payloads):
                sign = (index == last or unsigned + 1 > MAX_UNSIGNED_RUN
                        or unsigned_bytes + len(payload) > MAX_UNSIGNED_BYTES)
                signed.append(sign)
                if sign:
                    unsigned = unsigned_bytes = 0
                else:
                    unsigned += 1
                    unsigned_bytes += len(payload)
            entries = sign_run(
                secret, author=author, log_id=feed.log_id, first_seq=head_seq + 1,
                timestamp=self._clock(), payloads=payloads, signed=signed,
                backlink=head.hash if head else None, links=hashes, end_of_log=end_of_log,
            )
            self.store.append(
                feed,
                _rows(entries, payloads),
            )
        return entries

    # -- taking in others' entries ----------------------------------------

    def ingest(
        self,
        feed: FeedId,
        items: Sequence[tuple[bytes, bytes | None]],
        rebuilt: RebuiltRun | None = None,
    ) -> IngestResult:
        """Verify and store ``(entry bytes, payload or None)`` of ``feed``, ascending.

        ``rebuilt``, when given, is ``items`` as a compact run's rebuild made them
        (``EntriesReceived.decoded``): the common case then checks them without
        reading or hashing their bytes again (:func:`extend_rebuilt`).

        Entries already stored are counted as duplicates. The valid prefix up
        to the last signed entry is stored; unsigned entries after it are
        pending (not stored). The first entry that fails is the result's
        ``error``. A valid entry that conflicts with a stored one makes a fork
        proof when the input shows where the two histories split; the proof is
        stored and the error is :class:`ForkDetected` carrying it.
        """
        feed_text = str(feed)
        with self.store.transaction():
            head = self.store.head(feed)
            head_seq = head.seq if head else 0
            fast = self._extend_in_one_pass(feed, head, items, rebuilt)
            if fast is not None:
                return fast
            # Each step stops at its first error; a later step can only find
            # an error further back in the input, which then takes precedence.
            entries, error = _decode_items(items, feed_text, head_seq)
            duplicates, conflict = self._match_held(feed, entries, items, head_seq)
            if conflict is not None:
                below = (self._split_below(feed, entries[duplicates:])
                         if isinstance(conflict, ForkDetected) and conflict.proof is None
                         else None)
                return IngestResult(0, duplicates, 0, conflict, below)
            new = entries[duplicates:]
            payloads = [payload for _, payload in items[duplicates:duplicates + len(new)]]
            ended = head is not None and decode_entry(head.raw).is_end_of_log
            check, extend_error = self._verify_extension(feed, head_seq, ended, new, payloads)
            if check.accepted:
                self.store.append(feed, _rows(new[:check.accepted], payloads[:check.accepted]))
        error = extend_error or error
        pending = check.pending if error is None else 0
        below = None
        if isinstance(error, WrongBacklink) and not check.checked and new:
            below = self._split_below(feed, new)
        return IngestResult(check.accepted, duplicates, pending, error, below)

    def check_ahead(self, runs: Iterable[RebuiltRun]) -> None:
        """Begin checking the signatures of ``runs``, which :meth:`ingest` is about to
        take in this order, on a second core: the ingest of each then uses that
        check (the same check it would make). :meth:`forget_ahead` once they are in."""
        for run in runs:
            self._ahead.start(run, run.author, signed_pairs(run))

    def forget_ahead(self) -> None:
        """Drop what :meth:`check_ahead` began for runs that were not ingested."""
        self._ahead.forget()

    def _extend_in_one_pass(
        self, feed: FeedId, head: StoredEntry | None,
        items: Sequence[tuple[bytes, bytes | None]],
        rebuilt: RebuiltRun | None = None,
    ) -> IngestResult | None:
        """The common case of :meth:`ingest` in one pass: ``items`` extend the held
        log, every one valid. None when that is not so (the full path then finds
        duplicates, forks and the first error)."""
        if not items or self.store.forked_at(feed) is not None:
            return None
        head_seq = head.seq if head is not None else 0
        if head is not None and stored_is_end_of_log(head.raw):
            return None
        anchor = self._prefix_anchor(feed, head_seq, head_seq + 1, head_seq + len(items))
        done = (extend_in_one_pass(items, anchor, StoredEntry) if rebuilt is None else
                extend_rebuilt(rebuilt, anchor, StoredEntry, self._ahead.check(rebuilt)))
        if done is None:
            return None
        rows, accepted = done
        if not accepted:
            return IngestResult(0, 0, len(rows))
        self.store.append(feed, rows[:accepted] if accepted < len(rows) else rows)
        top = rows[accepted - 1]
        return IngestResult(accepted, 0, len(rows) - accepted, head=(top.seq, top.hash))

    def _split_below(self, feed: FeedId, run: Sequence[Entry]) -> int | None:
        """``run[0]``'s seq if the run is the author's own on its face: consistent and
        vouched for by its signature, though its first link misses what is held."""
        check = check_run(run, Anchor(feed.author_key, feed.log_id, run[0].seq - 1,
                                      detached=True))
        return run[0].seq if check.accepted else None

    def _match_held(
        self,
        feed: FeedId,
        entries: Sequence[Entry],
        items: Sequence[tuple[bytes, bytes | None]],
        head_seq: int,
    ) -> tuple[int, InvalidEntry | None]:
        """Compare the leading entries at held seqs with what is held.

        Returns how many are duplicates, and the error of the first one that is
        not (a fork, or a bad payload brought for a payload-less held entry).
        """
        leading = []
        for entry in entries:
            if entry.seq > head_seq or entry.feed != feed:
                break  # the rest extends the log (a wrong feed is named there)
            leading.append(entry)
        seqs = [e.seq for e in leading]
        # Hashes and a payload flag only: the held payloads are never loaded.
        held = self.store.hashes(feed, seqs)
        with_payload = self.store.payloads_held(feed, seqs)
        for index, entry in enumerate(leading):
            if held.get(entry.seq) != entry.hash:
                # A duplicate before it shows the histories agree up to here.
                agreed = index > 0 and leading[index - 1].seq == entry.seq - 1
                return index, self._conflict(feed, entries[index:], agreed=agreed)
            payload = items[index][1]
            if payload is not None and entry.seq not in with_payload:
                try:  # a payload for an entry held without one
                    entry.check_payload(payload)
                except InvalidEntry as exc:
                    return index, exc
                self.store.put_payload(feed, entry.seq, payload)
        return len(leading), None

    def _prefix_anchor(self, feed: FeedId, head_seq: int, first: int, last: int,
                       ended: bool = False, unsigned: int = 0, unsigned_bytes: int = 0) -> Anchor:
        """An anchor at held seq ``head_seq`` for a run ``first..last`` (``first = head + 1``)."""
        needed = links_needed(first, last)
        return Anchor(feed.author_key, feed.log_id, head_seq, ended,
                      self.store.hashes(feed, needed), unsigned, unsigned_bytes)

    def _conflict(self, feed: FeedId, run: Sequence[Entry], *, agreed: bool) -> InvalidEntry:
        """``run[0]`` differs from the held entry at its seq: a fork, or the sender's fault.

        The incoming branch must itself be valid: it extends the held entries
        below its first seq (where the two histories agree) and a signed entry
        in it vouches for the entry that differs. Then the author made two
        histories; if the input shows where they split, the proof is made.
        """
        s = run[0].seq
        feed_text = str(feed)
        agreed = agreed or s == 1  # entry 1 links nowhere: histories can only split there
        if not agreed:
            agreed = self.store.hashes(feed, [s - 1]).get(s - 1) == run[0].backlink
        if not agreed:
            # The histories split below s. The branch must still be the author's.
            check = check_run(run, Anchor(feed.author_key, feed.log_id, s - 1, detached=True))
            if not check.accepted:
                if check.error is not None:
                    return check.error
                return UnsignedTail("no signed entry in the input vouches for the entry that "
                                    "differs from the held one", feed=feed_text, seq=s)
            return ForkDetected(
                f"this entry links to another entry {s - 1} than the one held: the author's "
                "histories split below it", None, feed=feed_text, seq=s,
            )
        check = check_run(run, self._prefix_anchor(feed, s - 1, s, s + len(run) - 1))
        theirs = branch_run(run[:check.checked])
        if not theirs:
            if check.error is not None:
                return check.error
            return UnsignedTail("no signed entry in the input vouches for the entry that "
                                "differs from the held one", feed=feed_text, seq=s)
        ours = self.branch(feed, s)
        try:
            proof = ForkProof.from_runs(ours, theirs)
        except InvalidForkProof as exc:  # a store that holds no signed entry after s
            raise StoredEntryDamaged(f"cannot make the fork proof: {exc}",
                                     feed=feed_text, seq=s) from None
        self.store.add_fork_proof(feed, proof.seq, proof.to_bytes())
        return ForkDetected(
            "the author made two histories that split at this seq; the fork proof is stored "
            "and the feed accepts nothing from here on", proof, feed=feed_text, seq=s,
        )

    def branch(self, feed: FeedId, seq: int) -> tuple[Entry, ...]:
        """The held entries from ``seq`` up to the first signed one (a fork proof's branch)."""
        rows = self.store.entries_at(feed, range(seq, seq + MAX_RUN), payloads=False)
        return branch_run([decode_entry(row.raw) for row in rows])

    def _verify_extension(
        self,
        feed: FeedId,
        head_seq: int,
        ended: bool,
        run: Sequence[Entry],
        payloads: Sequence[bytes | None],
    ) -> tuple[RunCheck, InvalidEntry | None]:
        """Check ``run`` as the extension of the held log; the error after it, if any."""
        error: InvalidEntry | None = None
        forked = self.store.forked_at(feed)
        if forked is not None and run and head_seq + len(run) >= forked:
            error = ForkedFeed(
                f"the feed is forked at seq {forked}; entries from there on are refused",
                feed=str(feed), seq=max(forked, head_seq + 1),
            )
            keep = max(0, forked - head_seq - 1)
            run, payloads = run[:keep], payloads[:keep]
        first = head_seq + 1
        check = check_run(run, self._prefix_anchor(feed, head_seq, first, first + len(run) - 1,
                                                   ended), payloads)
        if check.error is not None:
            return check, check.error
        if forked is not None and error is not None and check.pending:
            # Entries just below the fork: the proof's branches both link to the
            # entry before the fork, so its signatures vouch for what leads there.
            proof = self.fork_proofs(feed)[0]
            vouched = run[check.checked - 1].seq == forked - 1 and (
                run[check.checked - 1].hash == proof.first[0].backlink)
            check = RunCheck(check.checked if vouched else check.accepted, check.checked)
        return check, error

    def add_fork_proof(self, proof: ForkProof) -> bool:
        """Keep a verified fork proof (from a peer or a bundle); True if it is new."""
        proof.verify()
        return self.store.add_fork_proof(proof.feed, proof.seq, proof.to_bytes())

    def add_payload(self, feed: FeedId, seq: int, payload: bytes) -> None:
        """Store the payload of an entry held without one, after checking it."""
        with self.store.transaction():
            rows = self.store.entries_at(feed, [seq])
            if not rows:
                raise UsageError(f"{feed} has no entry {seq} in this store")
            decode_entry(rows[0].raw).check_payload(payload)
            self.store.put_payload(feed, seq, payload)

    def delete_payload(self, feed: FeedId, seq: int) -> bool:
        """Forget one payload; the entry stays and the log still verifies."""
        return self.store.delete_payload(feed, seq)

    # -- reading ------------------------------------------------------------

    def extent(self, feed: FeedId) -> int:
        """The last seq of ``feed`` that is not disputed: the head, or the entry
        before the earliest fork (entries from a fork on are held, never served)."""
        return undisputed_extent(self.store, feed)

    def read(
        self, feed: FeedId, since: int = 1, limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[tuple[Entry, bytes | None]]:
        """Entries with ``seq >= since``, ascending, with their payloads where held.

        ``limit`` caps the count and ``max_bytes`` the bytes of entries and
        payloads (at least one entry is returned); page with ``since``. Of a
        forked feed, only the entries before the fork are read.
        """
        forked = self.store.forked_at(feed)
        return [
            (decode_entry(row.raw), row.payload)
            for row in self.store.entries(feed, since, limit, max_bytes)
            if forked is None or row.seq < forked
        ]

    def rows(self, feed: FeedId, since: int = 1, limit: int = 100,
             max_bytes: int | None = None) -> list[StoredEntry]:
        """Stored rows of ``feed`` from ``since``, ascending, at most ``limit``, within
        its :meth:`extent` (a forked feed ends before the fork)."""
        room = min(limit, self.extent(feed) - max(since, 1) + 1)
        if room <= 0:
            return []
        return self.store.entries(feed, max(since, 1), room, max_bytes)

    def latest(self, feed: FeedId, *, before: int | None = None, limit: int = 50,
               payloads: bool = True) -> list[StoredEntry]:
        """The newest stored rows of ``feed`` below seq ``before``, newest first, at
        most ``limit``, within its :meth:`extent`: the one "newest page" read that
        apps, the gateway and the API share."""
        top = self.extent(feed) if before is None else min(self.extent(feed), before - 1)
        seqs = range(max(1, top - limit + 1), top + 1)
        return list(reversed(self.store.entries_at(feed, seqs, payloads=payloads)))

    def head(self, feed: FeedId) -> Entry | None:
        """The newest entry of the feed's :meth:`extent`."""
        extent = self.extent(feed)
        if not extent:
            return None
        rows = self.store.entries_at(feed, [extent], payloads=False)
        return decode_entry(rows[0].raw) if rows else None

    def feeds(self) -> list[FeedInfo]:
        """Every feed held; ``latest_seq`` and ``head_hash`` describe its :meth:`extent`."""
        infos = self.store.feeds()
        for index, info in enumerate(infos):
            if info.forked_at is not None and info.latest_seq >= info.forked_at:
                extent = info.forked_at - 1
                head_hash = self.store.hashes(info.feed, [extent]).get(extent) if extent else None
                infos[index] = FeedInfo(info.feed, extent, info.forked_at, head_hash)
        return infos

    def feed_infos(self, feeds: Iterable[FeedId]) -> list[FeedInfo]:
        """:meth:`feeds` for the given feeds only (held or not): a few indexed reads
        each, however many feeds the store holds."""
        infos = []
        for feed in dict.fromkeys(feeds):
            head = self.store.head(feed)
            forked = self.store.forked_at(feed)
            seq, head_hash = (head.seq, head.hash) if head is not None else (0, None)
            if forked is not None and seq >= forked:
                seq = forked - 1
                head_hash = self.store.hashes(feed, [seq]).get(seq) if seq else None
            infos.append(FeedInfo(feed, seq, forked, head_hash))
        return infos

    def fork_proofs(self, feed: FeedId | None = None) -> list[ForkProof]:
        return [ForkProof.from_bytes(raw) for raw in self.store.fork_proofs(feed)]

    def certificate_pool(self, feed: FeedId, seq: int) -> list[Entry]:
        """The stored entries of ``seq``'s certificate pool (those that exist yet)."""
        return [
            decode_entry(row.raw)
            for row in self.store.entries_at(feed, certificate_pool(seq))
        ]

    # -- checking what is stored -------------------------------------------

    def verify(
        self, feed: FeedId | None = None, *, progress: Callable[[FeedId, int], None] | None = None
    ) -> list[VerifyReport]:
        """Re-check every stored entry and payload of ``feed`` (or of every feed)."""
        feeds = [feed] if feed is not None else [info.feed for info in self.store.feeds()]
        return [self._verify_feed(f, progress) for f in feeds]

    def _verify_feed(
        self, feed: FeedId, progress: Callable[[FeedId, int], None] | None
    ) -> VerifyReport:
        feed_text = str(feed)
        checked = payloads = 0
        ended = False
        unsigned = unsigned_bytes = 0
        error: TidingsError | None = None
        while rows := self.store.entries(feed, checked + 1, BATCH_SIZE, BATCH_BYTES):
            first = checked + 1
            run, error = _decode_items([(row.raw, None) for row in rows], feed_text, checked)
            for row, entry in zip(rows, run, strict=False):
                if row.hash != entry.hash:  # the bytes or their stored hash changed on disk
                    run = run[:row.seq - first]
                    error = StoredEntryDamaged(
                        "the entry's bytes do not hash to the hash stored beside them",
                        feed=feed_text, seq=row.seq)
                    break
            anchor = self._prefix_anchor(feed, checked, first, first + len(run) - 1, ended,
                                         unsigned, unsigned_bytes)
            check = check_run(run, anchor, [row.payload for row in rows[:len(run)]])
            payloads += sum(row.payload is not None for row in rows[:check.checked])
            for entry in run[:check.checked]:
                if entry.signed:
                    unsigned = unsigned_bytes = 0
                else:
                    unsigned += 1
                    unsigned_bytes += entry.payload_size
            checked += check.checked
            if check.error is not None or error is not None:
                error = check.error or error
                break
            ended = run[-1].is_end_of_log
            if progress is not None:
                progress(feed, checked)
        if error is None and unsigned:
            error = UnsignedTail(
                f"the last {unsigned} stored entries are unsigned: no signature vouches for them",
                feed=feed_text, seq=checked,
            )
        return VerifyReport(feed, checked, payloads, self.store.forked_at(feed), error)

    # -- bundles ------------------------------------------------------------

    def export_bundle(self, feed: FeedId | Sequence[FeedId], write: Callable[[bytes], object],
                      *, identity_events: Sequence[tuple[bytes, bytes]] = ()) -> int:
        """Write ``feed`` (fork proofs, then entries and payloads) as a bundle; several
        feeds one after another. ``identity_events`` (identity, event) come first, in a
        version 2 bundle (spec/07 §1).

        Of a forked feed, the entries before the fork. Returns the entries written.
        """
        write(HEADER_V2 if identity_events else HEADER)
        for identity, event in identity_events:
            write(encode_identity_record(identity, event))
        written = 0
        for one in [feed] if isinstance(feed, FeedId) else feed:
            # Proofs first, so an importer learns of a fork before the entries past it.
            for proof in self.store.fork_proofs(one):
                write(encode_proof_record(proof))
            extent = self.extent(one)
            done = 0
            while done < extent and (
                rows := self.store.entries(one, done + 1, min(BATCH_SIZE, extent - done),
                                           BATCH_BYTES)
            ):
                for row in rows:
                    write(encode_entry_record(row.raw, row.payload))
                done += len(rows)
            written += done
        return written

    def import_bundle(
        self,
        read: Callable[[int], bytes],
        *,
        progress: Callable[[ImportResult], None] | None = None,
    ) -> ImportResult:
        """Verify and store a bundle. Stops at the first problem, kept in ``result.error``.

        Everything valid before the problem is stored; nothing invalid is.
        """
        result = ImportResult()
        pending: list[tuple[bytes, bytes | None]] = []
        pending_bytes = 0
        pending_feed: FeedId | None = None

        def flush(*, final: bool) -> None:
            """Ingest the run so far. Unsigned entries at its end wait for the entries
            that follow (the next chunk), unless the run ends here."""
            nonlocal pending, pending_bytes
            if pending and pending_feed is not None:
                result.feeds.add(pending_feed)
                outcome = self.ingest(pending_feed, pending)
                result.added += outcome.added
                result.duplicates += outcome.duplicates
                if outcome.error is not None:
                    raise outcome.error
                if progress is not None:
                    progress(result)
                waiting = pending[len(pending) - outcome.pending:] if outcome.pending else []
                if waiting and final:
                    first = decode_entry(waiting[0][0]).seq
                    raise UnsignedTail(
                        f"the run ends with {len(waiting)} unsigned entries that no signed "
                        "entry vouches for: they were not stored", feed=str(pending_feed),
                        seq=first,
                    )
                pending = waiting
                pending_bytes = sum(len(e) + len(p or b"") for e, p in waiting)
            else:
                pending, pending_bytes = [], 0

        try:
            for record in read_bundle(read):
                if isinstance(record, IdentityRecord):  # kept for the caller; a run goes on
                    if len(result.identity_events) >= MAX_BUNDLE_IDENTITY_EVENTS:
                        raise InvalidBundle(f"over {MAX_BUNDLE_IDENTITY_EVENTS} identity "
                                            "records")
                    result.identity_events.append((record.identity, record.event))
                    continue
                if isinstance(record, ForkProofRecord):
                    flush(final=True)
                    pending_feed = None  # a proof record ends the run
                    if self.add_fork_proof(ForkProof.from_bytes(record.proof)):
                        result.fork_proofs += 1
                    continue
                assert isinstance(record, EntryRecord)
                try:
                    feed = decode_entry(record.entry).feed
                except InvalidEntry:
                    if pending_feed is None:
                        raise
                    feed = pending_feed  # the error surfaces, with context, in ingest
                if feed != pending_feed:
                    flush(final=True)
                    pending_feed = feed
                elif len(pending) >= BATCH_SIZE or pending_bytes >= BATCH_BYTES:
                    flush(final=False)
                pending.append((record.entry, record.payload))
                pending_bytes += len(record.entry) + len(record.payload or b"")
            flush(final=True)
        except InvalidBundle as broken:
            # The complete records before the broken one are still good.
            result.error = broken
            try:
                # A run cut short by the break: unsigned entries at its end just wait.
                flush(final=False)
            except TidingsError as earlier:
                result.error = earlier
        except TidingsError as exc:
            result.error = exc
        return result
