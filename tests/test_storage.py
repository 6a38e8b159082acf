"""The store interface, for both stores; SQLite schema versions and migrations."""

from __future__ import annotations

import itertools
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tidings
from tidings import Logbook, SqliteStore, Store
from tidings.core.ids import FeedId
from tidings.errors import UsageError
from tidings.storage.base import Arrival, StoredEntry
from tidings.storage.sqlite import MIGRATIONS, ROWS_PER_INSERT, SCHEMA_VERSION, migrate

from .helpers import author, make_log

SRC = str(Path(tidings.__file__).resolve().parent.parent)


def rows(count: int) -> list[StoredEntry]:
    entries, payloads = make_log(count)
    return [StoredEntry(e.seq, e.hash, e.raw, p) for e, p in zip(entries, payloads, strict=True)]


def test_append_and_read_back(store: Store) -> None:
    data = rows(30)
    feed = make_log(1)[0][0].feed
    with store.transaction():
        store.append(feed, data[:10])
    store.append(feed, data[10:])
    assert store.head(feed) == data[-1]._replace(payload=None)
    assert store.entries(feed) == data
    assert store.entries(feed, since=25, limit=3) == data[24:27]
    assert store.entries_at(feed, [3, 1, 40]) == [data[0], data[2]]
    assert store.hashes(feed, {1, 7, 99}) == {1: data[0].hash, 7: data[6].hash}
    assert [(f.feed, f.latest_seq, f.forked_at) for f in store.feeds()] == [(feed, 30, None)]


def test_appends_of_every_length_read_back_as_written(tmp_path: Path) -> None:
    # SqliteStore writes ROWS_PER_INSERT rows a statement and one statement for the
    # rest: runs shorter than one statement, exactly some statements, and between,
    # some payloads absent, each read back byte for byte after reopening.
    data = rows(3 * ROWS_PER_INSERT + 30)
    data = [row._replace(payload=None) if row.seq % 5 == 0 else row for row in data]
    feed = make_log(1)[0][0].feed
    lengths = [1, ROWS_PER_INSERT - 1, ROWS_PER_INSERT, 2 * ROWS_PER_INSERT + 3, 1]
    store = SqliteStore(tmp_path / "s.db")
    at = 0
    for length in lengths:
        store.append(feed, data[at:at + length])
        at += length
    store.close()
    store = SqliteStore(tmp_path / "s.db")
    try:
        assert store.entries(feed) == data[:at]
        assert store.arrivals(0, 10) == [
            Arrival(index + 1, feed, first + 1, first + length)
            for index, (first, length) in enumerate(
                zip(itertools.accumulate([0, *lengths[:-1]]), lengths, strict=True))]
        assert store.payloads_held(feed, range(1, at + 1)) == {
            row.seq for row in data[:at] if row.payload is not None}
    finally:
        store.close()


def test_a_duplicate_row_in_a_multi_row_insert_writes_nothing_of_the_append(
        tmp_path: Path) -> None:
    data = rows(ROWS_PER_INSERT + 2)
    feed = make_log(1)[0][0].feed
    store = SqliteStore(tmp_path / "s.db")
    try:
        store.append(feed, data[:3])
        with pytest.raises(sqlite3.IntegrityError):
            store.append(feed, data[3:9] + data[2:3] + data[9:])  # seq 3 again, mid-statement
        assert store.entries(feed) == data[:3]
        store.append(feed, data[3:])
        assert store.entries(feed) == data
    finally:
        store.close()


def test_payloads_can_be_deleted_without_touching_entries(store: Store) -> None:
    data = rows(5)
    feed = make_log(1)[0][0].feed
    store.append(feed, data)
    assert store.delete_payload(feed, 3)
    assert not store.delete_payload(feed, 3)
    held = store.entries(feed)
    assert held[2].payload is None and held[2].raw == data[2].raw
    assert [r.payload for r in held[:2]] == [d.payload for d in data[:2]]
    store.put_payload(feed, 3, data[2].payload or b"")
    assert store.entries(feed)[2] == data[2]


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    feed = make_log(1)[0][0].feed
    data = rows(4)
    with pytest.raises(RuntimeError), store.transaction():
        store.append(feed, data)
        raise RuntimeError("boom")
    assert store.head(feed) is None
    store.append(feed, data)
    assert store.head(feed) is not None


def test_sqlite_is_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    data = rows(12)
    feed = make_log(1)[0][0].feed
    SqliteStore(path).append(feed, data)  # never closed: like a crash after commit
    again = SqliteStore(path)
    assert again.entries(feed) == data
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_migrations_bring_an_old_store_forward_keeping_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    migrate(old, target=1)  # a store written by the first schema
    entries, payloads = make_log(3)
    old.execute("INSERT INTO feeds (id, author, log_id) VALUES (1, ?, 'blog')",
                (entries[0].author,))
    others, other_payloads = make_log(2, log_id="notes")
    old.execute("INSERT INTO feeds (id, author, log_id) VALUES (2, ?, 'notes')",
                (others[0].author,))
    for feed_id, log, bodies in ((1, entries, payloads), (2, others, other_payloads)):
        for e, p in zip(log, bodies, strict=True):
            old.execute("INSERT INTO entries VALUES (?, ?, ?, ?)", (feed_id, e.seq, e.hash, e.raw))
            if (feed_id, e.seq) != (1, 2):  # one entry held without its payload
                old.execute("INSERT INTO payloads VALUES (?, ?, ?)", (feed_id, e.seq, p))
    old.close()
    store = SqliteStore(path)
    version = store._db.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == len(MIGRATIONS)
    indexes = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "entries_by_hash" not in indexes  # made by migration 2, dropped by 3
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "payloads" not in tables  # payloads moved into their entries' rows (5)
    book = Logbook(store)
    assert [r.ok for r in book.verify()] == [True, True]
    feed, other = entries[0].feed, others[0].feed
    assert [p for _, p in book.read(feed)] == [payloads[0], None, payloads[2]]
    assert [p for _, p in book.read(other)] == other_payloads
    assert store.payloads_held(feed, [1, 2, 3]) == {1, 3}
    assert [(a.first_seq, a.last_seq) for a in store.arrivals(0, 10)] == [(1, 3), (1, 2)]
    assert {i.feed: i.latest_seq for i in store.feeds()} == {feed: 3, other: 2}


def test_a_store_from_a_newer_tidings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(UsageError, match="upgrade tidings"):
        SqliteStore(path)


def test_an_unopenable_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot open"):
        SqliteStore(tmp_path / "missing-dir" / "s.db")


def test_the_key_file_is_written_whole_and_leaves_nothing_behind(tmp_path: Path) -> None:
    from tidings import Identity
    from tidings.node.home import Home

    home = Home(tmp_path / "h")
    (tmp_path / "h").mkdir()
    stale = tmp_path / "h" / f".secret.key.{os.getpid()}.tmp"
    stale.write_text("left by a crash")
    identity, created = home.init()
    assert created and Identity.load(home.key_path).author == identity.author
    assert stat.S_IMODE(home.key_path.stat().st_mode) == 0o600
    leftovers = [p.name for p in home.path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [stale.name]  # only the stale one; ours is gone
    again, created_again = home.init()
    assert not created_again and again.author == identity.author


def _v4_store(path: Path, count: int) -> tuple[list[StoredEntry], FeedId]:
    """A store as schema 4 wrote it: entries and payloads in two tables."""
    entries, payloads = make_log(count)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    migrate(db, target=4)
    db.execute("BEGIN")
    db.execute("INSERT INTO feeds (id, author, log_id) VALUES (1, ?, 'blog')",
               (entries[0].author,))
    db.executemany("INSERT INTO entries VALUES (1, ?, ?, ?)",
                   [(e.seq, e.hash, e.raw) for e in entries])
    db.executemany("INSERT INTO payloads VALUES (1, ?, ?)",
                   [(e.seq, p) for e, p in zip(entries, payloads, strict=True)])
    db.execute("COMMIT")
    db.close()
    return ([StoredEntry(e.seq, e.hash, e.raw, p) for e, p in zip(entries, payloads, strict=True)],
            entries[0].feed)


@pytest.mark.system
def test_kill_9_during_the_migration_leaves_one_whole_schema(tmp_path: Path) -> None:
    """Migration 5 moves every row in the transaction that bumps the version: killed
    at any moment, the store opens afterwards with all its entries and payloads."""
    source = tmp_path / "v4.db"
    data, feed = _v4_store(source, 6000)
    script = ("import sys; from tidings.storage.sqlite import SqliteStore\n"
              "print('opening', flush=True); SqliteStore(sys.argv[1]).close()\n")
    outcomes = set()
    for attempt, delay in enumerate((0.0, 0.05, 0.1, 0.2, 0.4, 0.8)):
        path = tmp_path / f"copy{attempt}.db"
        path.write_bytes(source.read_bytes())
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)],
                                stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": SRC})
        assert proc.stdout is not None and proc.stdout.readline() == b"opening\n"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
        outcomes.add(version)
        store = SqliteStore(path)  # migrates what the killed process did not
        try:
            assert store.entries(feed) == data
        finally:
            store.close()
    assert outcomes <= {4, SCHEMA_VERSION}


def test_checkpoints_run_beside_the_commits_and_lose_nothing(tmp_path: Path) -> None:
    """Past CHECKPOINT_BYTES of committed entries, a thread checkpoints the WAL; the
    store reads the same before and after, and after a reopen."""
    path = tmp_path / "big.db"
    store = SqliteStore(path)
    book = Logbook(store, author(1))
    big = [bytes([i]) * (1 << 20) for i in range(6)]  # 6 MiB of payloads
    for payload in big:
        book.publish(payload, "media")
    assert store._checkpointer is not None  # started once 4 MiB were committed
    feed = book.feed("media")
    before = store.entries(feed)
    assert [row.payload for row in before] == big
    store.close()
    assert not (tmp_path / "big.db-wal").exists()  # the last close checkpointed it all
    again = SqliteStore(path)
    try:
        assert again.entries(feed) == before
        assert [r.ok for r in Logbook(again).verify()] == [True]
    finally:
        again.close()


def test_ingesting_a_run_asks_the_store_little_and_reports_the_new_head(tmp_path: Path) -> None:
    """A run that extends a feed costs a few statements besides its rows: a new feed is
    looked up once per transaction (not once per question), and the new head comes
    back with the result, so the replicator need not read it again."""
    log, payloads = make_log(200, per_append=100)
    feed = log[0].feed
    book = Logbook(SqliteStore(tmp_path / "s.db"))
    statements: list[str] = []
    book.store._db.set_trace_callback(statements.append)
    runs = [[(e.raw, p) for e, p in zip(log[a:b], payloads[a:b], strict=True)]
            for a, b in ((0, 100), (100, 200))]
    result = book.ingest(feed, runs[0])
    others = [s.split(" (")[0] for s in statements if not s.startswith("INSERT INTO entries")]
    assert others == ["BEGIN IMMEDIATE", "SELECT id FROM feeds WHERE author = x'"
                      + feed.author_key.hex() + f"' AND log_id = '{feed.log_id}'",
                      "INSERT INTO feeds", "INSERT INTO arrivals",
                      "UPDATE generation SET n = n + 1", "COMMIT"]
    assert result.added == 100 and result.head == (100, log[99].hash)
    statements.clear()
    result = book.ingest(feed, runs[1])
    assert len([s for s in statements if not s.startswith("INSERT INTO entries")]) == 7
    head = book.store.head(feed)
    assert head is not None and result.head == (head.seq, head.hash) == (200, log[199].hash)
    # A feed looked up absent and then added in one transaction is found after it.
    other = author(2).author.feed("other")
    with book.store.transaction():
        assert book.store.head(other) is None and book.store.forked_at(other) is None
        book.store.append(other, [])
    assert book.store.hashes(other, [1]) == {} and other in {i.feed for i in book.feeds()}
