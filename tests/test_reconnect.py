"""Reconnects that cost what changed (issue 16): remembered clocks that stay matched,
and what `tidings sync` prints for a home that follows many feeds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.nodes import feed_of, running
from tests.test_cli import ok, tidings
from tidings.core.ids import FeedId
from tidings.node.state import NodeState
from tidings.replication.clock import clock_digest
from tidings.wire.messages import Note

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system


def _remembered(home: Path) -> tuple[dict[FeedId, Note], dict[FeedId, Note]]:
    """The one peer's clocks this home remembers (sent, received)."""
    db = sqlite3.connect(home / "node.sqlite3")
    try:
        peers = [row[0] for row in db.execute("SELECT DISTINCT peer FROM clocks")]
    finally:
        db.close()
    assert len(peers) == 1, f"clocks remembered for {len(peers)} peers"
    state = NodeState(home / "node.sqlite3")
    try:
        sent, received = state.load(peers[0])
    finally:
        state.close()
    return sent, received


def test_a_sync_that_only_received_keeps_both_sides_clocks_matched(tmp_path: Path) -> None:
    """The sync client gives the node nothing in a session where only the node's notes
    changed. The node must still update the clocks it remembered of the client: a stale
    record makes both sides reset at the next reconnect (their whole clocks again)."""
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    ok(tidings(a_home, "init"))
    for log_id in ("blog", "news"):
        ok(tidings(a_home, "publish", "--log", log_id, "first"))
    blog, news = feed_of(a_home, "blog"), feed_of(a_home, "news")
    for feed in (blog, news):
        ok(tidings(b_home, "follow", str(feed)))
    with running(a_home) as a:
        first = ok(tidings(b_home, "sync", "--peer", a.address, "--json")).json_lines()[0]
        assert first["received"] == 2
        assert first["updated"] == {str(blog): 1, str(news): 1}
        assert first["followed"] == 2 and "feeds" not in first
        a.wait_log("event=disconnected")
    ok(tidings(a_home, "publish", "--log", "blog", "second"))
    with running(a_home) as a:
        report = ok(tidings(b_home, "sync", "--peer", a.address, "--json", "--feeds")
                    ).json_lines()[0]
        assert report["received"] == 1
        assert report["updated"] == {str(blog): 2}
        assert report["feeds"] == {str(blog): 2, str(news): 1}
        a.wait_log("event=disconnected")  # (after the node wrote its clocks)
    a_sent, a_received = _remembered(a_home)
    b_sent, b_received = _remembered(b_home)
    assert a_sent[blog].seq == 2 and b_received[blog].seq == 2
    # spec/10 §4: the next hellos carry digests that match, so both open with deltas.
    assert clock_digest(a_sent) == clock_digest(b_received)
    assert clock_digest(a_received) == clock_digest(b_sent)


def test_a_node_keeps_the_clocks_it_wrote_until_another_process_writes_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reconnect reads one row, not one per feed, while the file still holds what this
    process wrote for the peer; once another process saved that peer's clocks, it reads
    them from the file again."""
    from tidings.node.core import ClockMemory as _ClockMemory

    path = tmp_path / "node.sqlite3"
    state = NodeState(path)
    memory = _ClockMemory(state, b"K" * 32)
    peer = b"P" * 32
    feeds = [FeedId(bytes([i]) * 32, "blog") for i in range(1, 4)]
    sent = {f: Note(1, 3, b"h" * 8) for f in feeds}
    received = {f: Note(2, 1, b"g" * 8) for f in feeds}
    memory.load(peer)
    memory.save(peer, sent, received)
    memory.flush()
    reads: list[bytes] = []
    real_load = NodeState.load
    monkeypatch.setattr(NodeState, "load", lambda self, key: reads.append(key) or real_load(
        self, key))
    assert memory.load(peer) == (sent, received)
    assert reads == []  # from memory
    received[feeds[0]] = Note(3, 1, b"f" * 8)
    memory.save(peer, sent, received)
    memory.flush()
    assert memory.load(peer) == (sent, received) and reads == []
    other = NodeState(path)  # another process, with the same key, saves the peer's clocks
    other.save(b"K" * 8 + peer, {feeds[1]: Note(5, 1, None)}, {})
    other.close()
    assert memory.load(peer) == ({feeds[1]: Note(5, 1, None)}, {})
    assert reads == [b"K" * 8 + peer]
    state.close()


def test_the_digests_of_remembered_clocks_are_kept_with_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save stores clock_digest of each clock; a save that changed nothing computes
    none; a row from an older tidings (no digests) gets them at its next save."""
    import tidings.node.state as state_module
    from tidings.node.core import ClockMemory as _ClockMemory

    state = NodeState(tmp_path / "node.sqlite3")
    feeds = [FeedId(bytes([i]) * 32, "blog") for i in range(1, 4)]
    sent = {f: Note(1, 3, b"h" * 8) for f in feeds}
    received = {f: Note(2, 1, b"g" * 8) for f in feeds}
    _, digests = state.save(b"peer", sent, received)
    assert digests == state.digests(b"peer") == (clock_digest(sent), clock_digest(received))
    computed: list[int] = []
    real = state_module.clock_digest
    monkeypatch.setattr(state_module, "clock_digest",
                        lambda notes: computed.append(len(notes)) or real(notes))
    loaded = state.load(b"peer")
    state.save(b"peer", *loaded, since=state.load(b"peer"))
    assert computed == [] and state.digests(b"peer") == digests
    received[feeds[0]] = Note(3, 1, b"f" * 8)
    state.save(b"peer", sent, received, since=loaded)
    assert computed == [3]  # the received clock only
    assert state.digests(b"peer") == (clock_digest(sent), clock_digest(received))
    state._db.execute("UPDATE clock_peers SET sent_digest = NULL, received_digest = NULL")
    assert state.digests(b"peer") == (None, None)
    state.save(b"peer", sent, received, since=state.load(b"peer"))
    assert state.digests(b"peer") == (clock_digest(sent), clock_digest(received))
    # The node's memory hands them to the session with the clocks it loads.
    memory = _ClockMemory(state, b"K" * 32)
    memory.load(b"peer2")
    assert memory.digests(b"peer2") == (None, None)
    memory.save(b"peer2", sent, received)
    memory.flush()
    assert memory.load(b"peer2") == (sent, received)
    assert memory.digests(b"peer2") == (clock_digest(sent), clock_digest(received))
    state.close()
