"""Reconnects that cost what changed (issue 16): remembered clocks that stay matched,
and what `tidings sync` prints for a home that follows many feeds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.nodes import feed_of, running, wait_for
from tests.test_cli import ok, tidings
from tidings import SqliteStore
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


def test_clocks_stay_matched_when_each_side_names_feeds_the_other_neither_holds_nor_wants(
        tmp_path: Path) -> None:
    """The node holds a feed the client does not follow, and the client follows one the
    node lacks: each remembers the other's note of it (set aside, spec/10 §5.5), so
    the remembered clocks match across both processes and reconnects open with deltas
    (before: whole clocks every time)."""
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    ok(tidings(a_home, "init"))
    for log_id in ("blog", "other"):
        ok(tidings(a_home, "publish", "--log", log_id, "first"))
    blog, other = feed_of(a_home, "blog"), feed_of(a_home, "other")
    absent = FeedId(bytes([7]) * 32, "blog")
    for feed in (blog, absent):
        ok(tidings(b_home, "follow", str(feed)))
    with running(a_home) as a:
        for count in (1, 2):
            report = ok(tidings(b_home, "sync", "--peer", a.address, "--json")).json_lines()[0]
            a.wait_log("(?s)" + ".*".join(["event=disconnected"] * count))  # (clocks written)
    assert report["received"] == 0 and report["followed"] == 2
    a_sent, a_received = _remembered(a_home)
    b_sent, b_received = _remembered(b_home)
    assert set(b_received) >= {blog, other} and absent in a_received
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


def _client_sync(home: Path, address: str) -> tuple[bool, bool, int, object]:
    """One `tidings sync` as the command makes it, in this process: whether its session
    stayed settled, whether the replicator loaded its feeds, the entries received, and
    the report's summary."""
    from tidings.node.client import SyncClient, summarize
    from tidings.node.core import open_parts
    from tidings.node.home import SYNC_KEY_FILE, Home
    from tidings.node.log import Logger
    from tidings.node.options import NodeOptions, parse_address

    parts = open_parts(Home(home), NodeOptions(), Logger(level="quiet"),
                       key_file=SYNC_KEY_FILE, create=True)
    try:
        client = SyncClient(parts, NodeOptions())
        session = client.sync(parse_address(address), timeout=60)
        replicator = client.replicator
        summary = (client.settled_summary if session.settled
                   else summarize(replicator, session))
        return session.settled, replicator.loaded, replicator.entries_received, summary
    finally:
        parts.close()


def _settled_stamps(home: Path) -> list[bytes | None]:
    db = sqlite3.connect(home / "node.sqlite3")
    try:
        return [row[0] for row in db.execute("SELECT settled FROM clock_peers")]
    finally:
        db.close()


def test_a_reconnect_that_changes_nothing_loads_no_feed_and_any_change_loads_them(
        tmp_path: Path) -> None:
    """A sync that ended with nothing owed either way leaves a stamp of the home with its
    clocks; the next one, finding the home unchanged and the peer's digest the same,
    opens with an empty delta and reads no feed (issue 16: a no-op reconnect at 10,000
    feeds in about the time of the imports). Whatever changed, on either side (the
    peer's entries, a follow, the store, the peer's memory), the state is loaded and
    the sync is what it always was.

    (Where one side names a feed the other neither holds nor wants, the other does not
    keep that note, the digests differ at every reconnect, and the opening clock is
    a reset (spec/10 §4, §5.5): such a session never starts settled.)"""
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    ok(tidings(a_home, "init"))
    for log_id in ("blog", "news"):
        ok(tidings(a_home, "publish", "--log", log_id, "first"))
    blog, news, links = (feed_of(a_home, log_id) for log_id in ("blog", "news", "links"))
    for feed in (blog, news):
        ok(tidings(b_home, "follow", str(feed)))
    with running(a_home) as a:
        settled, loaded, received, summary = _client_sync(b_home, a.address)
        assert (settled, loaded, received) == (False, True, 2)
        assert len(_settled_stamps(b_home)) == 1 and _settled_stamps(b_home)[0]
        settled, loaded, received, again = _client_sync(b_home, a.address)
        assert (settled, loaded, received) == (True, False, 0)
        assert again == summary  # the report of the sync that left the stamp
        report = ok(tidings(b_home, "sync", "--peer", a.address, "--json", "--feeds")
                    ).json_lines()[0]
        assert report == {"peer": a.address, "received": 0, "followed": 2, "updated": {},
                          "peer_holds_none": [], "forked": {},
                          "feeds": {str(blog): 1, str(news): 1}}
        # The peer has more: its delta names the feed, and the session loads at once.
        ok(tidings(a_home, "publish", "--log", "blog", "second"))
        wait_for(lambda: _client_sync(b_home, a.address)[2] == 1, what="the new entry")
        assert _client_sync(b_home, a.address)[:3] == (True, False, 0)
        # A follow changes the home's stamp: loaded from the start.
        ok(tidings(a_home, "publish", "--log", "links", "first"))
        ok(tidings(b_home, "follow", str(links)))
        wait_for(lambda: _client_sync(b_home, a.address)[:3] == (False, True, 1),
                 what="the new feed")
        settled, loaded, received, summary = _client_sync(b_home, a.address)
        assert (settled, loaded, received) == (True, False, 0)
        assert summary.followed == 3 and summary.absent == ()
        a.wait_log("event=disconnected")
    # A write to the store by another process (an import of the peer's feed).
    bundle = tmp_path / "blog.bundle"
    ok(tidings(a_home, "publish", "--log", "blog", "third"))
    ok(tidings(a_home, "export", str(blog), "--output", str(bundle)))
    ok(tidings(b_home, "import", str(bundle)))
    with running(a_home) as a:
        settled, loaded, received, _ = _client_sync(b_home, a.address)
        assert (settled, loaded, received) == (False, True, 0)
        assert _client_sync(b_home, a.address)[:3] == (True, False, 0)
        a.wait_log("event=disconnected")
    # The peer forgot what it told this home: its hello's digest differs, the client
    # loads and sends its whole clock, and all is as before.
    db = sqlite3.connect(a_home / "node.sqlite3")
    db.execute("DELETE FROM clocks")
    db.execute("DELETE FROM clock_peers")
    db.commit()
    db.close()
    with running(a_home) as a:
        settled, loaded, received, summary = _client_sync(b_home, a.address)
        assert (settled, loaded, received) == (False, True, 0)
        assert summary.followed == 3 and summary.absent == ()
        assert _client_sync(b_home, a.address)[:3] == (True, False, 0)
    store = SqliteStore(b_home / "store.sqlite3")
    try:
        assert {info.feed: info.latest_seq for info in store.feeds()} == {
            blog: 3, news: 1, links: 1}
    finally:
        store.close()


def test_a_follow_by_another_process_as_a_sync_ends_is_not_stamped_as_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stamp is read before the client looks for other processes' writes: a follow
    that commits just before the stamp is read leaves no stamp (it would vouch for
    clocks that do not name the new feed), and the next sync fetches the feed."""
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    ok(tidings(a_home, "init"))
    for log_id in ("blog", "news"):
        ok(tidings(a_home, "publish", "--log", log_id, "first"))
    blog, news = feed_of(a_home, "blog"), feed_of(a_home, "news")
    ok(tidings(b_home, "follow", str(blog)))
    real_stamp = NodeState.stamp
    followed: list[bool] = []

    def stamp_after_a_follow(self: NodeState) -> bytes:
        if not followed:  # (once: another process follows a feed right then)
            followed.append(True)
            other = NodeState(b_home / "node.sqlite3")
            try:
                other.follow(news)
            finally:
                other.close()
        return real_stamp(self)

    with running(a_home) as a:
        monkeypatch.setattr(NodeState, "stamp", stamp_after_a_follow)
        assert _client_sync(b_home, a.address)[:3] == (False, True, 1)
        assert followed and _settled_stamps(b_home) == [None]
        monkeypatch.setattr(NodeState, "stamp", real_stamp)
        assert _client_sync(b_home, a.address)[:3] == (False, True, 1)  # news comes
        assert _client_sync(b_home, a.address)[:3] == (True, False, 0)
