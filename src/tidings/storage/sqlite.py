"""The SQLite store: one file, WAL journal, durable commits, versioned schema.

Durability: ``synchronous=FULL`` in WAL mode syncs the log on every commit, so
a transaction that returned survives kill -9 and power loss; SQLite's journal
makes a crash at any other moment roll back to the last commit.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

from tidings.core.ids import FeedId
from tidings.errors import StorageFull, UsageError
from tidings.storage.base import Arrival, FeedInfo, StoredEntry

#: Each migration takes the schema from its index to index + 1.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: feeds, entries, payloads beside them, fork proofs.
    """
    CREATE TABLE feeds (
        id INTEGER PRIMARY KEY,
        author BLOB NOT NULL,
        log_id TEXT NOT NULL,
        forked_at INTEGER,
        UNIQUE (author, log_id)
    );
    CREATE TABLE entries (
        feed INTEGER NOT NULL REFERENCES feeds (id),
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        entry BLOB NOT NULL,
        PRIMARY KEY (feed, seq)
    ) WITHOUT ROWID;
    CREATE TABLE payloads (
        feed INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        payload BLOB NOT NULL,
        UNIQUE (feed, seq)
    );
    CREATE TABLE fork_proofs (
        feed INTEGER NOT NULL REFERENCES feeds (id),
        seq INTEGER NOT NULL,
        proof BLOB NOT NULL,
        PRIMARY KEY (feed, seq)
    );
    """,
    # 1 -> 2: find an entry by its hash (what links and peers name entries by).
    "CREATE INDEX entries_by_hash ON entries (hash);",
    # 2 -> 3: no query ever used that index, and keeping it up to date cost about
    # 30% of ingest (random page writes at every commit). Replication names
    # entries by feed and seq.
    "DROP INDEX IF EXISTS entries_by_hash;",
    # 3 -> 4: the arrival journal, one row per append (a run of one feed's
    # entries): the order entries arrived in, which subscriptions and the HTTP
    # API's event stream resume from. Existing entries arrive once, feed by feed.
    """
    CREATE TABLE arrivals (
        id INTEGER PRIMARY KEY,
        feed INTEGER NOT NULL REFERENCES feeds (id),
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL
    );
    INSERT INTO arrivals (feed, first_seq, last_seq)
        SELECT feed, min(seq), max(seq) FROM entries GROUP BY feed ORDER BY feed;
    """,
    # 4 -> 5: one row per entry, its payload inline, in one table keyed for
    # locality: the rowid is feed << SEQ_BITS | seq, so a feed's entries sit side
    # by side in seq order and an append writes only the B-tree's right edge of
    # that feed. One insert per entry instead of two, no second B-tree, no index:
    # about 15% fewer bytes on disk and a third less SQLite work per entry
    # (measured in benchmarks/replication.py). Existing rows move over in the
    # same transaction as the version bump, so a crash leaves either schema whole.
    """
    CREATE TABLE entries_v5 (
        key INTEGER PRIMARY KEY,
        hash BLOB NOT NULL,
        entry BLOB NOT NULL,
        payload BLOB
    );
    INSERT INTO entries_v5 (key, hash, entry, payload)
        SELECT (e.feed << 40) | e.seq, e.hash, e.entry, p.payload
        FROM entries e LEFT JOIN payloads p ON p.feed = e.feed AND p.seq = e.seq
        ORDER BY e.feed, e.seq;
    DROP TABLE payloads;
    DROP TABLE entries;
    ALTER TABLE entries_v5 RENAME TO entries;
    """,
    # 5 -> 6: a generation, counted up by every transaction that writes: a process
    # that finds it where it left it knows the store holds what it held then,
    # without reading a row per feed (`tidings sync` at 10,000 feeds: node/client.py).
    """
    CREATE TABLE generation (n INTEGER NOT NULL);
    INSERT INTO generation (n) VALUES (0);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: A row's key is ``feed << SEQ_BITS | seq`` (migration 5 writes the 40 in SQL).
#: Entries are stored from seq 1 without gaps (the logbook only ever extends a
#: log), so 2^40 seqs is a trillion entries of one feed, hundreds of terabytes:
#: beyond any store. The 23 bits left (SQLite keys are signed 64-bit) name
#: 8 million feeds, more than a relay ever takes in (spec/14 bounds its feeds).
SEQ_BITS = 40
_RAW, _PAYLOAD = itemgetter(2), itemgetter(3)  # a StoredEntry's entry bytes and payload
#: Rows one INSERT statement writes: SQLite's per-statement work (a step, a reset,
#: and Python's sqlite3 module dropping and taking the GIL around each) is paid once
#: per 16 rows instead of per row. 16 x 4 + 1 parameters stay far below SQLite's
#: variable limit (999 in old builds). About 1.5 us less per row than one row a
#: statement (benchmarks/replication.py; 64 rows a statement measured no better).
ROWS_PER_INSERT = 16


@functools.cache
def _insert_rows(count: int) -> str:
    """An INSERT of ``count`` entry rows: ?1 is the feed's base key, then (seq, hash,
    entry, payload) per row. One text per count, so SQLite's statement cache keeps
    it prepared for every feed (the base is a parameter, not part of the text)."""
    return "INSERT INTO entries (key, hash, entry, payload) VALUES " + ", ".join(
        f"(?1 + ?{4 * row + 2}, ?{4 * row + 3}, ?{4 * row + 4}, ?{4 * row + 5})"
        for row in range(count))


if sys.version_info < (3, 12):
    # Python 3.11's sqlite3 looks for an adapter for every bytes parameter (only int,
    # float, str and bytearray skip it) and, finding none, formats and drops an
    # AttributeError twice (``__adapt__``, ``__conform__``): about 1 us per row of
    # three blobs. An adapter for exact bytes that returns the very object (bytes(b)
    # is b) is found at once and changes nothing that is stored; 3.12 looks the two
    # attributes up without making the errors.
    sqlite3.register_adapter(bytes, bytes)
SEQ_LIMIT = 1 << SEQ_BITS
SEQ_MASK = SEQ_LIMIT - 1
FEED_LIMIT = 1 << (63 - SEQ_BITS)
#: New stores use 8 KiB pages: entry rows (~200-600 bytes) waste half a row at
#: the end of each page, 5% of 4 KiB pages and half that of 8 KiB ones. A store
#: made with another page size keeps it (SQLite fixes it when the file is made).
PAGE_SIZE = 8192
#: WAL checkpoints (copying committed pages into the database file and syncing
#: it) run on a thread of their own once this many bytes of entries and payloads
#: were committed, so that no commit waits for one (SQLite's own checkpoint runs
#: inside the COMMIT that crosses its threshold). 4 MiB keeps the WAL small.
CHECKPOINT_BYTES = 4 << 20
#: ...and SQLite checkpoints inside a commit only when the WAL holds this many
#: pages (128 MiB at 8 KiB): a backstop if the thread cannot keep up.
WAL_BACKSTOP_PAGES = 16384
#: How long a writer waits for another process's transaction before failing.
BUSY_TIMEOUT_MS = 10_000
#: Sequence numbers per ``IN (...)`` query; below SQLite's variable limit.
_IN_CHUNK = 500


def _schema_version(connection: sqlite3.Connection) -> int:
    found = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise UsageError(
            f"the store has schema version {found}, newer than this tidings knows "
            f"({SCHEMA_VERSION}): upgrade tidings to open it"
        )
    return found


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target``; returns the version found before.

    Safe when several processes open a new store at once: the version is read
    again under the write lock, so each migration runs exactly once.
    """
    found = _schema_version(connection)
    if found >= target:
        return found
    connection.execute("BEGIN IMMEDIATE")
    try:
        for version in range(_schema_version(connection), target):
            if version == 4:
                _check_keys_fit(connection)
            for statement in filter(str.strip, MIGRATIONS[version].split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version + 1}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return found


def _check_keys_fit(connection: sqlite3.Connection) -> None:
    """Before migration 5: every (feed, seq) must fit its packed key (SEQ_BITS)."""
    feeds = connection.execute("SELECT coalesce(max(id), 0) FROM feeds").fetchone()[0]
    seqs = connection.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0]
    if feeds >= FEED_LIMIT or seqs >= SEQ_LIMIT:
        raise UsageError(
            f"the store holds {feeds} feeds and seqs up to {seqs}, more than schema 5 "
            f"keys hold ({FEED_LIMIT} feeds, seqs below 2^{SEQ_BITS}): keep it with the "
            "tidings that wrote it, or export its feeds (`tidings export`) and import them "
            "into a new store"
        )


def _set_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL; another process creating the file at the same moment can
    hold the lock this needs without the busy handler being asked, so retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _is_full(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_FULL: the disk, or the page limit, is full."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "is full" in str(exc)


class SqliteStore:
    """A :class:`~tidings.storage.base.Store` in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
        except sqlite3.OperationalError as exc:
            raise UsageError(f"cannot open the store {self.path}: {exc}") from None
        self._lock = threading.RLock()
        self._depth = 0
        self._feed_ids: dict[FeedId, int] = {}
        #: Feeds found absent inside the open write transaction: no other connection
        #: can add one before it ends (BEGIN IMMEDIATE holds the write lock), so one
        #: look-up serves the whole transaction. Emptied when the transaction ends.
        self._absent: set[FeedId] = set()
        self._page_limit_file = os.environ.get("TIDINGS_TEST_PAGE_LIMIT")
        self._page_limit = 0
        self._written = 0  # bytes committed since the checkpoint thread last ran
        self._checkpointer: _Checkpointer | None = None
        db = self._db
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a no-op once the file exists
            _set_wal(db)
            db.execute("PRAGMA synchronous = FULL")
            db.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")
            db.execute("PRAGMA foreign_keys = ON")
            migrate(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise UsageError(f"cannot open the store {self.path}: {exc}") from None
        except UsageError:
            db.close()
            raise

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def generation(self) -> int:
        """Counts the transactions that wrote to the store, by any process: the same
        number means the same stored entries, heads and forks."""
        with self._lock:
            return int(self._db.execute("SELECT n FROM generation").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._apply_page_limit()
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            changes = self._db.total_changes
            try:
                yield
                if self._db.total_changes != changes:  # (most reads of a sync write nothing)
                    self._db.execute("UPDATE generation SET n = n + 1")
                self._db.execute("COMMIT")
                if self._written >= CHECKPOINT_BYTES:
                    self._written = 0
                    if self._checkpointer is None:
                        self._checkpointer = _Checkpointer(self.path)
                    self._checkpointer.wake()
            except BaseException as exc:
                if self._db.in_transaction:  # SQLite may have rolled back itself (full)
                    self._db.execute("ROLLBACK")
                self._feed_ids.clear()
                if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                    raise StorageFull(
                        f"the store {self.path} cannot grow: its disk is full, and nothing "
                        "was written. Free some space and try again (a running node "
                        "resumes by itself)"
                    ) from None
                raise
            finally:
                self._depth = 0
                self._absent.clear()

    def _apply_page_limit(self) -> None:
        """Tests only: ``TIDINGS_TEST_PAGE_LIMIT`` names a file holding the store's
        ``max_page_count`` (a full disk that a test can fill and free again)."""
        if self._page_limit_file is None:
            return
        try:
            limit = int(Path(self._page_limit_file).read_text().strip() or 0)
        except (OSError, ValueError):
            return
        if limit != self._page_limit:
            self._page_limit = limit
            self._db.execute(f"PRAGMA max_page_count = {limit or 4294967294}")

    def _feed_id(self, feed: FeedId, *, create: bool = False) -> int | None:
        cached = self._feed_ids.get(feed)
        if cached is not None:
            return cached
        row: tuple[Any, ...] | None = None
        if feed not in self._absent:
            row = self._db.execute(
                "SELECT id FROM feeds WHERE author = ? AND log_id = ?",
                (feed.author_key, feed.log_id),
            ).fetchone()
        if row is None:
            if not create:
                if self._depth:
                    self._absent.add(feed)
                return None
            self._absent.discard(feed)
            cursor = self._db.execute(
                "INSERT INTO feeds (author, log_id) VALUES (?, ?)", (feed.author_key, feed.log_id)
            )
            row = (cursor.lastrowid,)
            if int(row[0] or 0) >= FEED_LIMIT:
                raise UsageError(
                    f"the store {self.path} holds {FEED_LIMIT} feeds, the most its keys "
                    "can name: move feeds you no longer need to another store"
                )
        feed_id = int(row[0])
        self._feed_ids[feed] = feed_id
        return feed_id

    def _range(self, feed: FeedId) -> int | None:
        """The key of ``feed``'s seq 0 (its rows are keys ``base + 1 .. base + SEQ_LIMIT - 1``)."""
        fid = self._feed_id(feed)
        return None if fid is None else fid << SEQ_BITS

    def head(self, feed: FeedId) -> StoredEntry | None:
        with self._lock:
            base = self._range(feed)
            if base is None:
                return None
            row = self._db.execute(
                "SELECT key, hash, entry FROM entries WHERE key > ? AND key < ? "
                "ORDER BY key DESC LIMIT 1",
                (base, base + SEQ_LIMIT),
            ).fetchone()
        return StoredEntry(row[0] - base, row[1], row[2], None) if row else None

    def _rows_at(self, feed: FeedId, seqs: Collection[int], query: str) -> list[tuple[Any, ...]]:
        """``query`` (ending in ``key IN ({marks})``, selecting the key first) for ``seqs``,
        in chunks, ascending, with each key made a seq again."""
        with self._lock:
            base = self._range(feed)
            if base is None:
                return []
            # A seq no row can have must not become another feed's key.
            wanted = sorted({base + seq for seq in seqs if 0 < seq < SEQ_LIMIT})
            rows: list[tuple[Any, ...]] = []
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start:start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows.extend((key - base, *rest)
                            for key, *rest in self._db.execute(query.format(marks=marks), chunk))
            return rows

    def hashes(self, feed: FeedId, seqs: Collection[int]) -> dict[int, bytes]:
        return dict(self._rows_at(
            feed, seqs, "SELECT key, hash FROM entries WHERE key IN ({marks})"
        ))

    def entries(
        self, feed: FeedId, since: int = 1, limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEntry]:
        with self._lock:
            base = self._range(feed)
            if base is None or since >= SEQ_LIMIT:
                return []
            cursor = self._db.execute(
                "SELECT key, hash, entry, payload FROM entries WHERE key >= ? AND key < ? "
                "ORDER BY key LIMIT ?",
                (base + max(since, 1), base + SEQ_LIMIT, -1 if limit is None else limit),
            )
            # The cursor steps row by row, so stopping at the byte budget never
            # loads the rows past it (take_within, inline: a stream reads 1000 at once).
            rows: list[StoredEntry] = []
            append, new = rows.append, tuple.__new__
            total = 0
            try:
                for key, h, raw, p in cursor:
                    append(new(StoredEntry, (key - base, h, raw, p)))
                    total += len(raw) if p is None else len(raw) + len(p)
                    if max_bytes is not None and total >= max_bytes:
                        break
            finally:
                cursor.close()
            return rows

    def entries_at(
        self, feed: FeedId, seqs: Collection[int], *, payloads: bool = True
    ) -> list[StoredEntry]:
        query = ("SELECT key, hash, entry, payload FROM entries WHERE key IN ({marks}) ORDER BY key"
                 if payloads else
                 "SELECT key, hash, entry, NULL FROM entries WHERE key IN ({marks}) ORDER BY key")
        return [StoredEntry(*row) for row in self._rows_at(feed, seqs, query)]

    def append(self, feed: FeedId, rows: Sequence[StoredEntry]) -> None:
        with self.transaction():
            fid = self._feed_id(feed, create=True)
            assert fid is not None
            if not rows:
                return
            if rows[-1].seq >= SEQ_LIMIT or rows[0].seq < 1:
                raise UsageError(f"this store keeps seqs 1 to 2^{SEQ_BITS} - 1 of a feed")
            base = fid << SEQ_BITS
            # StoredEntry is the tuple (seq, hash, raw, payload): the rows' fields go
            # in as they are, ROWS_PER_INSERT rows a statement, the key made in SQL
            # from ?1, the feed's base (then one statement for the rows left over).
            fields = list(chain.from_iterable(rows))
            width = 4 * ROWS_PER_INSERT
            whole = len(rows) // ROWS_PER_INSERT * width
            execute = self._db.executemany
            if whole:
                execute(_insert_rows(ROWS_PER_INSERT),
                        [[base, *fields[at:at + width]] for at in range(0, whole, width)])
            if whole < len(fields):
                execute(_insert_rows((len(fields) - whole) // 4), [[base, *fields[whole:]]])
            # (map over the columns: half the cost of a generator over the rows)
            self._written += (sum(map(len, map(_RAW, rows)))
                              + sum(map(len, filter(None, map(_PAYLOAD, rows)))))
            self._db.execute(
                "INSERT INTO arrivals (feed, first_seq, last_seq) VALUES (?, ?, ?)",
                (fid, rows[0].seq, rows[-1].seq),
            )

    def arrivals(self, after: int, limit: int) -> list[Arrival]:
        with self._lock:
            rows = self._db.execute(
                "SELECT a.id, f.author, f.log_id, a.first_seq, a.last_seq "
                "FROM arrivals a JOIN feeds f ON f.id = a.feed "
                "WHERE a.id > ? ORDER BY a.id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Arrival(aid, FeedId(author, log_id), first, last)
                for aid, author, log_id, first, last in rows]

    def last_arrival(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT max(id) FROM arrivals").fetchone()
        return int(row[0] or 0)

    def payloads_held(self, feed: FeedId, seqs: Collection[int]) -> set[int]:
        query = "SELECT key FROM entries WHERE key IN ({marks}) AND payload IS NOT NULL"
        return {row[0] for row in self._rows_at(feed, seqs, query)}

    def put_payload(self, feed: FeedId, seq: int, payload: bytes) -> None:
        with self.transaction():
            base = self._range(feed)
            if base is None:
                raise KeyError(f"{feed} is not in the store")
            if not 0 < seq < SEQ_LIMIT or not self._db.execute(
                "UPDATE entries SET payload = ? WHERE key = ?", (payload, base + seq)
            ).rowcount:
                raise KeyError(f"{feed} has no entry {seq} in the store")

    def delete_payload(self, feed: FeedId, seq: int) -> bool:
        with self.transaction():
            base = self._range(feed)
            if base is None or not 0 < seq < SEQ_LIMIT:
                return False
            cursor = self._db.execute(
                "UPDATE entries SET payload = NULL WHERE key = ? AND payload IS NOT NULL",
                (base + seq,),
            )
            return cursor.rowcount > 0

    def feed_bytes(self, feed: FeedId) -> int:
        with self._lock:
            base = self._range(feed)
            if base is None:
                return 0
            total = self._db.execute(
                "SELECT coalesce(sum(length(entry)), 0) + coalesce(sum(length(payload)), 0) "
                "FROM entries WHERE key > ? AND key < ?", (base, base + SEQ_LIMIT)
            ).fetchone()[0]
        return int(total)

    def delete_feed(self, feed: FeedId) -> None:
        with self.transaction():
            fid = self._feed_id(feed)
            if fid is None:
                return
            base = fid << SEQ_BITS
            self._db.execute("DELETE FROM entries WHERE key > ? AND key < ?",
                             (base, base + SEQ_LIMIT))
            self._db.execute("DELETE FROM fork_proofs WHERE feed = ?", (fid,))
            # The feed's row and its arrivals stay: arrival ids are cursors that
            # readers hold, and must never be handed out again.
            self._db.execute("UPDATE feeds SET forked_at = NULL WHERE id = ?", (fid,))

    def feeds(self) -> list[FeedInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT f.author, f.log_id, f.forked_at, h.key - (f.id << 40), h.hash "
                "FROM feeds f LEFT JOIN entries h ON h.key = (SELECT key FROM entries "
                "WHERE key > f.id << 40 AND key < (f.id + 1) << 40 ORDER BY key DESC LIMIT 1)"
            ).fetchall()
        # Sorted here, not by ORDER BY: walking the (author, log_id) index costs a
        # table seek per feed, twice the whole query at 10,000 feeds. (author, log_id)
        # is unique, so the sort never compares the columns after them.
        rows.sort()
        return [FeedInfo(FeedId(author, log_id), latest or 0, forked, head_hash) for
                author, log_id, forked, latest, head_hash in rows]

    def forked_at(self, feed: FeedId) -> int | None:
        with self._lock:
            fid = self._feed_id(feed)
            if fid is None:
                return None
            row = self._db.execute("SELECT forked_at FROM feeds WHERE id = ?", (fid,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def add_fork_proof(self, feed: FeedId, seq: int, proof: bytes) -> bool:
        with self.transaction():
            fid = self._feed_id(feed, create=True)
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO fork_proofs (feed, seq, proof) VALUES (?, ?, ?)",
                (fid, seq, proof),
            )
            self._db.execute(
                "UPDATE feeds SET forked_at = min(coalesce(forked_at, ?), ?) WHERE id = ?",
                (seq, seq, fid),
            )
            return cursor.rowcount > 0

    def fork_proofs(self, feed: FeedId | None = None) -> list[bytes]:
        with self._lock:
            if feed is None:
                rows = self._db.execute(
                    "SELECT proof FROM fork_proofs ORDER BY feed, seq"
                ).fetchall()
            else:
                fid = self._feed_id(feed)
                if fid is None:
                    return []
                rows = self._db.execute(
                    "SELECT proof FROM fork_proofs WHERE feed = ? ORDER BY seq", (fid,)
                ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            self._db.close()  # the last connection checkpoints and removes the WAL


class _Checkpointer:
    """A thread with its own connection that runs passive WAL checkpoints when woken.

    A passive checkpoint never blocks a writer; it copies what is committed into
    the database file. A crash during one is harmless: the WAL still holds every
    committed page, and SQLite replays it on the next open.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tidings-checkpoint",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # SQLite's own checkpoints (WAL_BACKSTOP_PAGES) still run
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous = FULL")
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                # Busy or full: the next wake tries again; the WAL keeps everything.
                with suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()
