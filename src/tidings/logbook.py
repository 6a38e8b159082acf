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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tidings.core.bundle import (
    HEADER,
    EntryRecord,
    ForkProofRecord,
    encode_entry_record,
    encode_proof_record,
    read_bundle,
)
from tidings.core.entry import (
    MAX_PAYLOAD_SIZE,
    TAG_END_OF_LOG,
    TAG_REGULAR,
    Entry,
    decode_entry,
    sign_entry,
)
from tidings.core.forks import ForkProof
from tidings.core.ids import FeedId, check_log_id
from tidings.core.lipmaa import certificate_pool, link_target, links_needed
from tidings.core.verify import Anchor, decode_run, verify_run
from tidings.errors import (
    ForkDetected,
    ForkedFeed,
    InvalidBundle,
    InvalidEntry,
    Oversize,
    TidingsError,
    UsageError,
)
from tidings.identity import Identity
from tidings.storage.base import FeedInfo, Store, StoredEntry

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
    added: int
    duplicates: int


@dataclass(slots=True)
class ImportResult:
    """What an import stored before it finished or hit ``error``."""

    added: int = 0
    duplicates: int = 0
    fork_proofs: int = 0
    feeds: set[FeedId] = field(default_factory=set)
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    feed: FeedId
    entries: int
    payloads: int
    forked_at: int | None
    error: InvalidEntry | None

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

        With ``end_of_log`` the last entry ends the log: nothing can follow it.
        """
        identity = self._require_identity()
        feed = self.feed(log_id)
        for payload in payloads:
            if not isinstance(payload, bytes):
                raise TypeError("payloads are bytes; encode text first")
            if len(payload) > MAX_PAYLOAD_SIZE:
                raise Oversize(
                    f"payload is {len(payload)} bytes, the bound is {MAX_PAYLOAD_SIZE}",
                    feed=str(feed),
                )
        if not payloads:
            return []
        author = identity.author.key
        secret = identity.secret_key
        entries: list[Entry] = []
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
            previous = head.hash if head else None
            timestamp = self._clock()
            last = len(payloads) - 1
            for index, payload in enumerate(payloads):
                seq = head_seq + 1 + index
                target = link_target(seq)
                entry = sign_entry(
                    secret,
                    author=author,
                    log_id=feed.log_id,
                    seq=seq,
                    timestamp=timestamp,
                    payload=payload,
                    backlink=previous,
                    lipmaa_link=hashes[target] if target is not None else None,
                    tag=TAG_END_OF_LOG if end_of_log and index == last else TAG_REGULAR,
                )
                hashes[seq] = previous = entry.hash
                entries.append(entry)
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
        *,
        batch: bool = True,
    ) -> IngestResult:
        """Verify and store ``(entry bytes, payload or None)`` of ``feed``, ascending.

        Entries already stored are counted as duplicates. The valid prefix is
        stored; then the first :class:`InvalidEntry` is raised, naming the entry
        and the rule. A validly signed entry that conflicts with a stored one
        makes a fork proof, which is stored, and :class:`ForkDetected` is raised.
        """
        feed_text = str(feed)
        with self.store.transaction():
            head = self.store.head(feed)
            head_seq = head.seq if head else 0
            # Each step stops at its first error; a later step can only find
            # an error further back in the input, which then takes precedence.
            entries, error = _decode_items(items, feed_text, head_seq)
            duplicates, conflict = self._match_held(feed, entries, items, head_seq)
            added = 0
            if conflict is not None:
                error = conflict
            else:
                new = entries[duplicates:]
                payloads = [payload for _, payload in items[duplicates:duplicates + len(new)]]
                ended = head is not None and decode_entry(head.raw).is_end_of_log
                valid, extend_error = self._verify_extension(
                    feed, head_seq, ended, new, payloads, batch
                )
                error = extend_error or error
                if valid:
                    self.store.append(feed, _rows(new[:valid], payloads[:valid]))
                    added = valid
        if error is not None:
            error.ingested = (added, duplicates)
            raise error
        return IngestResult(added, duplicates)

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
            if held[entry.seq] != entry.hash:
                stored = self.store.entries_at(feed, [entry.seq])[0]
                return index, self._fork(feed, decode_entry(stored.raw), entry)
            payload = items[index][1]
            if payload is not None and entry.seq not in with_payload:
                try:  # a payload for an entry held without one
                    entry.check_payload(payload)
                except InvalidEntry as exc:
                    return index, exc
                self.store.put_payload(feed, entry.seq, payload)
        return len(leading), None

    def _verify_extension(
        self,
        feed: FeedId,
        head_seq: int,
        ended: bool,
        run: Sequence[Entry],
        payloads: Sequence[bytes | None],
        batch: bool,
    ) -> tuple[int, InvalidEntry | None]:
        """How many of ``run`` validly extend the held log, and the error after them."""
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
        anchor = Anchor(
            feed.author_key, feed.log_id, head_seq, ended,
            self.store.hashes(feed, links_needed(first, first + len(run) - 1)),
        )
        try:
            verify_run(run, anchor, payloads, batch=batch)
        except InvalidEntry as exc:
            return max(0, (exc.seq or first) - first), exc
        return len(run), error

    def _fork(self, feed: FeedId, stored: Entry, incoming: Entry) -> InvalidEntry:
        """A conflicting entry at a stored seq: a fork proof if it is authentic."""
        try:
            incoming.check_signature()
        except InvalidEntry as exc:
            return exc
        try:
            stored.check_signature()
        except InvalidEntry:
            # The held entry came in a batch that a later signature vouched
            # for; its own signature fails, so the two make no portable proof.
            return ForkDetected(
                "a validly signed entry conflicts with the held one, whose own signature "
                "does not verify: refused, no fork proof can be made",
                None, feed=str(feed), seq=incoming.seq,
            )
        proof = ForkProof.from_entries(stored, incoming)
        self.store.add_fork_proof(feed, proof.seq, proof.to_bytes())
        return ForkDetected(
            "two validly signed entries at this seq; the fork proof is stored and the feed "
            "accepts nothing from here on",
            proof, feed=str(feed), seq=proof.seq,
        )

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

    def read(
        self, feed: FeedId, since: int = 1, limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[tuple[Entry, bytes | None]]:
        """Entries with ``seq >= since``, ascending, with their payloads where held.

        ``limit`` caps the count and ``max_bytes`` the bytes of entries and
        payloads (at least one entry is returned); page with ``since``.
        """
        return [
            (decode_entry(row.raw), row.payload)
            for row in self.store.entries(feed, since, limit, max_bytes)
        ]

    def head(self, feed: FeedId) -> Entry | None:
        row = self.store.head(feed)
        return decode_entry(row.raw) if row else None

    def feeds(self) -> list[FeedInfo]:
        return self.store.feeds()

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
        feeds = [feed] if feed is not None else [info.feed for info in self.feeds()]
        return [self._verify_feed(f, progress) for f in feeds]

    def _verify_feed(
        self, feed: FeedId, progress: Callable[[FeedId, int], None] | None
    ) -> VerifyReport:
        checked = payloads = 0
        ended = False
        error: InvalidEntry | None = None
        while rows := self.store.entries(feed, checked + 1, BATCH_SIZE, BATCH_BYTES):
            first = checked + 1
            try:
                run = decode_run((row.raw for row in rows), feed, first)
                needed = links_needed(first, first + len(run) - 1)
                anchor = Anchor(
                    feed.author_key, feed.log_id, checked, ended, self.store.hashes(feed, needed)
                )
                verify_run(run, anchor, [row.payload for row in rows])
            except InvalidEntry as exc:
                error = exc
                valid = max(0, (exc.seq or first) - first)
                payloads += sum(row.payload is not None for row in rows[:valid])
                checked += valid
                break
            payloads += sum(row.payload is not None for row in rows)
            checked += len(run)
            ended = run[-1].is_end_of_log
            if progress is not None:
                progress(feed, checked)
        return VerifyReport(feed, checked, payloads, self.store.forked_at(feed), error)

    # -- bundles ------------------------------------------------------------

    def export_bundle(self, feed: FeedId, write: Callable[[bytes], object]) -> int:
        """Write ``feed`` (entries, payloads, fork proofs) as a bundle; returns entries written."""
        write(HEADER)
        # Proofs first, so an importer learns of a fork before the entries past it.
        for proof in self.store.fork_proofs(feed):
            write(encode_proof_record(proof))
        written = 0
        while rows := self.store.entries(feed, written + 1, BATCH_SIZE, BATCH_BYTES):
            for row in rows:
                write(encode_entry_record(row.raw, row.payload))
            written += len(rows)
        return written

    def import_bundle(
        self,
        read: Callable[[int], bytes],
        *,
        progress: Callable[[ImportResult], None] | None = None,
    ) -> ImportResult:
        """Verify and store a bundle. Stops at the first problem, kept in ``result.error``.

        Everything before the problem is stored; nothing invalid is.
        """
        result = ImportResult()
        pending: list[tuple[bytes, bytes | None]] = []
        pending_bytes = 0
        pending_feed: FeedId | None = None

        def flush() -> None:
            nonlocal pending, pending_feed, pending_bytes
            if pending and pending_feed is not None:
                result.feeds.add(pending_feed)
                try:
                    outcome = self.ingest(pending_feed, pending)
                except InvalidEntry as exc:
                    result.added += exc.ingested[0]
                    result.duplicates += exc.ingested[1]
                    raise
                result.added += outcome.added
                result.duplicates += outcome.duplicates
                if progress is not None:
                    progress(result)
            pending = []
            pending_bytes = 0

        try:
            for record in read_bundle(read):
                if isinstance(record, ForkProofRecord):
                    flush()
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
                if feed != pending_feed or len(pending) >= BATCH_SIZE or (
                    pending_bytes >= BATCH_BYTES
                ):
                    flush()
                    pending_feed = feed
                pending.append((record.entry, record.payload))
                pending_bytes += len(record.entry) + len(record.payload or b"")
            flush()
        except InvalidBundle as broken:
            # The complete records before the broken one are still good.
            result.error = broken
            try:
                flush()
            except TidingsError as earlier:
                result.error = earlier
        except TidingsError as exc:
            result.error = exc
        return result
