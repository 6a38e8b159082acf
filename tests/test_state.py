"""The node's own state file (node.sqlite3): clock memory of past sessions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tidings import Identity
from tidings.node.state import NodeState
from tidings.wire.messages import Note


def test_remembered_clocks_keep_note_heads_and_a_save_writes_only_what_changed(
        tmp_path: Path) -> None:
    """A remembered note equals the note it remembers, head hash included (else every
    reconnect resends every note), and a save since a load writes only the changes."""
    feeds = [Identity.from_seed(bytes([i]) * 32).author.feed("main") for i in range(1, 5)]
    sent = {feed: Note(3, 1, bytes([i]) * 8) for i, feed in enumerate(feeds)}
    received = {feeds[0]: Note(0, 1), feeds[1]: Note(7, 0, b"\x07" * 8)}
    state = NodeState(tmp_path / "node.sqlite3")
    try:
        state.save(b"peer", sent, received)
        loaded = state.load(b"peer")
        assert loaded == (sent, received)
        changed_sent = {**sent, feeds[2]: Note(4, 1, b"\x09" * 8)}
        del changed_sent[feeds[3]]
        changed_received = {feeds[1]: Note(8, 0, b"\x08" * 8)}
        writes: list[str] = []
        state._db.set_trace_callback(writes.append)
        state.save(b"peer", changed_sent, changed_received, since=loaded)
        state._db.set_trace_callback(None)
        assert state.load(b"peer") == (changed_sent, changed_received)
        # Two notes changed and two went: four row writes, no rewrite of the rest.
        assert not any(w.startswith("DELETE FROM clocks WHERE peer = ?") and "sent" not in w
                       for w in writes)
        assert sum(w.startswith(("INSERT OR REPLACE INTO clocks", "DELETE FROM clocks"))
                   for w in writes) == 4
        assert state.load(b"other") == ({}, {})
    finally:
        state.close()


def test_a_save_of_clocks_that_did_not_change_writes_no_note(tmp_path: Path) -> None:
    """A reconnect that changed nothing (equal notes, kept or made anew) writes no clock
    row, and one changed note among equal ones is still written."""
    feeds = [Identity.from_seed(bytes([i]) * 32).author.feed("main") for i in range(1, 4)]
    sent = {feed: Note(3, 1, bytes([i]) * 8) for i, feed in enumerate(feeds)}
    state = NodeState(tmp_path / "node.sqlite3")
    try:
        state.save(b"peer", sent, dict(sent))
        loaded = state.load(b"peer")
        writes: list[str] = []
        state._db.set_trace_callback(writes.append)
        state.save(b"peer", {f: Note(n.seq, n.flags, n.head) for f, n in sent.items()},
                   dict(loaded[1]), since=loaded)
        assert not [w for w in writes if "INTO clocks" in w or "FROM clocks" in w]
        moved = {**loaded[1], feeds[1]: Note(4, 1, b"\x04" * 8)}
        state.save(b"peer", dict(loaded[0]), moved, since=loaded)
        state._db.set_trace_callback(None)
        assert sum(w.startswith("INSERT OR REPLACE INTO clocks") for w in writes) == 1
        assert state.load(b"peer") == (sent, moved)
    finally:
        state.close()


def test_a_clock_table_from_before_note_heads_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE clocks (peer BLOB NOT NULL, sent INTEGER NOT NULL, author BLOB "
               "NOT NULL, log_id TEXT NOT NULL, seq INTEGER NOT NULL, flags INTEGER NOT NULL, "
               "PRIMARY KEY (peer, sent, author, log_id)) WITHOUT ROWID")
    feed = Identity.from_seed(b"\x01" * 32).author.feed("main")
    db.execute("INSERT INTO clocks VALUES (?, 1, ?, 'main', 5, 1)", (b"peer", feed.author_key))
    db.commit()
    db.close()
    state = NodeState(path)
    try:
        sent, _ = state.load(b"peer")
        assert sent[feed].seq == 5 and sent[feed].head is None
    finally:
        state.close()


def test_follows_are_kept_in_binary_and_text_only_rows_get_it_at_open(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    feeds = [Identity.from_seed(bytes([i]) * 32).author.feed(f"log{i}") for i in range(1, 4)]
    state = NodeState(path)
    try:
        assert state.follow(feeds[0]) and not state.follow(feeds[0])
    finally:
        state.close()
    db = sqlite3.connect(path)  # as an older tidings wrote them: the text form only
    db.execute("INSERT INTO follows (feed, added) VALUES (?, 2), (?, 3)",
               (str(feeds[1]), str(feeds[2])))
    db.commit()
    db.close()
    state = NodeState(path)
    try:
        assert state.follows() == [feeds[1], feeds[2], feeds[0]]  # (by when followed)
        nulls = state._db.execute("SELECT count(*) FROM follows WHERE author IS NULL")
        assert nulls.fetchone()[0] == 0
        assert state.unfollow(feeds[1]) and state.follows() == [feeds[2], feeds[0]]
    finally:
        state.close()
