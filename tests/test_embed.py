"""The Python API an app embeds (tidings.embed): real nodes on loopback TCP, real SQLite.

Each test opens real nodes in ``tmp_path`` with :func:`open_node`: an author
that listens, and readers that only dial (the shape most apps have). Waits are
bounded polls of the nodes' own state, never sleeps that assume a speed.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

import tidings
from tests.embed_helpers import PATIENCE, address_of, eventually
from tidings import FeedId, Logbook, SqliteStore, UsageError, embed
from tidings import content as content_types
from tidings.content import Follow, Post, Unfollow
from tidings.embed import (
    PAGE_ENTRIES,
    EmbeddedNode,
    Item,
    open_node,
    parse_cursor,
    read_page,
)
from tidings.embed import subscriptions as subscriptions_module
from tidings.errors import PeerError
from tidings.node import daemon
from tidings.node.home import Home


async def holds(node: EmbeddedNode, feed: FeedId, seq: int) -> bool:
    return await node.entry(feed, seq) is not None


async def take(subscription: AsyncIterator[Item], count: int) -> list[Item]:
    """The next ``count`` items, failing (not hanging) if they do not come."""
    items: list[Item] = []
    with trio.fail_after(PATIENCE):
        async for item in subscription:
            items.append(item)
            if len(items) == count:
                break
    return items


def seqs(items: list[Item]) -> list[int]:
    return [item.seq for item in items]


@pytest.fixture
async def author(tmp_path: Path) -> AsyncIterator[EmbeddedNode]:
    """An author's node that accepts peers on a free loopback port."""
    async with open_node(tmp_path / "author", listen="127.0.0.1:0") as node:
        yield node


# -- the ten lines ------------------------------------------------------------------


async def reader_app(home: Path, peer: str, feed: FeedId, shown: list[tuple[int, Any]],
                     want: int) -> None:
    # The app, as a README shows it: a node that only dials, one follow, a live loop.
    async with tidings.open_node(home, peers=[peer]) as node:
        await node.follow(feed)
        async for item in node.subscribe(after="0-0"):  # "0-0": all this home stores
            shown.append((item.seq, item.content))
            if len(shown) == want:
                return


async def test_an_app_embeds_a_node_in_ten_lines_and_sees_live_entries(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    await author.publish(Post("before the reader came"), log="blog")
    shown: list[tuple[int, Any]] = []
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader_app, tmp_path / "reader", address_of(author), blog,
                               shown, 4)
            await eventually(lambda: len(shown) == 1, "the reader to show the first post")
            # Live: published while the reader's loop is waiting.
            for text in ("two", "three"):
                await author.publish(Post(text, tags=("live",)), log="blog")
            await author.publish(b"not content, only bytes", log="blog")
    assert shown == [
        (1, Post("before the reader came")),
        (2, Post("two", tags=("live",))),
        (3, Post("three", tags=("live",))),
        (4, None),
    ]


async def test_a_reader_without_listen_has_no_listening_address(
        author: EmbeddedNode, tmp_path: Path) -> None:
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        assert reader.listen_address is None
        await eventually(reader.peers, "the reader to connect")
        status = await reader.status()
        assert status.listen is None
        assert [p.direction for p in status.peers] == ["out"]
        # ...and the author sees it as an incoming peer.

        async def incoming() -> bool:
            return [p.direction for p in await author.peers()] == ["in"]

        await eventually(incoming, "the author to see the reader")


def test_the_names_the_docstring_example_uses_are_on_the_package() -> None:
    for name in ("open_node", "FeedId", "Post"):
        assert hasattr(tidings, name), name


# -- subscriptions: resuming, slow consumers, what comes -------------------------------


async def test_a_subscription_resumes_from_a_cursor_across_a_restart(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    home = tmp_path / "reader"
    for index in range(1, 11):
        await author.publish(Post(f"p{index}"), log="blog")
    async with open_node(home, peers=[address_of(author)]) as reader:
        subscription = reader.subscribe()
        await reader.follow(blog)
        first = await take(subscription, 4)
        assert seqs(first) == [1, 2, 3, 4]
        cursor = first[-1].cursor
        assert cursor is not None
        # Entries 5..10 arrive too, but nobody reads them before the node closes.
        await eventually(lambda: holds(reader, blog, 10), "the reader to hold 10 entries")
    # While the reader is away the author goes on.
    for index in range(11, 21):
        await author.publish(Post(f"p{index}"), log="blog")
    async with open_node(home, peers=[address_of(author)]) as reader:
        # They arrive while no subscription runs.
        await eventually(lambda: holds(reader, blog, 20), "the reader to hold 20 entries")
        resumed = reader.subscribe(after=cursor)
        rest = await take(resumed, 16)
        assert seqs(rest) == list(range(5, 21))
        assert [item.content for item in rest] == [Post(f"p{n}") for n in range(5, 21)]
        # ...and it goes on live from there, with nothing repeated.
        await author.publish(Post("p21"), log="blog")
        assert seqs(await take(resumed, 1)) == [21]
        # Every cursor handed out resumes exactly after its own item.
        again = reader.subscribe(after=rest[7].cursor)
        assert seqs(await take(again, 3)) == [13, 14, 15]


async def test_a_cursor_is_text_the_subscription_checks(author: EmbeddedNode) -> None:
    for bad in ("", "12", "1-2-3", "-1-2", "01-2", "a-b", "1-2; drop table"):
        with pytest.raises(UsageError):
            author.subscribe(after=bad)
    assert parse_cursor(" 12-3 ") == (12, 3)


async def test_the_subscription_cursor_resumes_after_the_last_item_taken(
        author: EmbeddedNode) -> None:
    notes = author.feed("notes")
    subscription = author.subscribe(own=True)
    for index in range(1, 11):
        await author.publish(f"n{index}".encode(), log="notes")
    assert seqs(await take(subscription, 4)) == [1, 2, 3, 4]
    # The docstring: "Where this subscription stands: pass it as after to resume".
    assert subscription.cursor is not None
    resumed = author.subscribe([notes], after=subscription.cursor)
    await author.publish(b"n11", log="notes")  # so that a wrong resume fails, not hangs
    assert seqs(await take(resumed, 1)) == [5]
    assert seqs(await take(resumed, 6)) == [6, 7, 8, 9, 10, 11]


async def test_a_subscription_starts_when_subscribe_is_called(author: EmbeddedNode) -> None:
    subscription = author.subscribe(own=True)
    await author.publish(b"published after subscribe()", log="notes")
    first: list[Item] = []
    async with trio.open_nursery() as nursery:
        async def read_one() -> None:
            first.extend(await take(subscription, 1))

        nursery.start_soon(read_one)
        # Once the read has fixed its start, one more entry, so a wrong start fails fast.
        await eventually(lambda: subscription.cursor is not None, "the read to start")
        await author.publish(b"published while reading", log="notes")
    assert seqs(first) == [1]


async def test_a_subscription_from_now_opened_once_a_publish_returned_starts_after_it(
        author: EmbeddedNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish returns once durable, while its writer still finishes (group commit,
    node/publishing.py): what a subscription "from now" counts as now already
    includes that entry. (Found as an SSE stream from now that began with it.)"""
    node = author._node
    writer_may_finish = threading.Event()
    refresh = node.replicator.refresh_local

    def slow_refresh(feeds: Any) -> None:  # the writer's work after the commit
        writer_may_finish.wait(PATIENCE)
        refresh(feeds)

    monkeypatch.setattr(node.replicator, "refresh_local", slow_refresh)
    try:
        await author.publish(b"answered before its writer ended", log="notes")
        subscription = author.subscribe(own=True)
    finally:
        writer_may_finish.set()
    await author.publish(b"published after subscribe()", log="notes")
    assert seqs(await take(subscription, 1)) == [2]


async def publish_together(node: EmbeddedNode, indexes: range, tasks: int = 8) -> None:
    """``entry {index}`` for each index to "blog", from ``tasks`` publishers at once (as
    an app's do: they share commits), in whatever order they commit."""
    async def publisher(start: int) -> None:
        for index in indexes[start::tasks]:
            await node.publish(f"entry {index}".encode(), log="blog")

    async with trio.open_nursery() as nursery:
        for start in range(tasks):
            nursery.start_soon(publisher, start)


async def test_a_slow_consumer_loses_nothing_and_holds_one_page_at_a_time(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    total = 2000
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        subscription = reader.subscribe()
        await reader.follow(blog)
        # The consumer reads nothing while all of them arrive.
        await publish_together(author, range(1, total + 1))
        await eventually(lambda: holds(reader, blog, total), f"the reader to hold {total}")
        got: list[Item] = []
        pages = 0
        while len(got) < total:
            # Everything is stored and nothing more comes: a page that does not come
            # at once never will.
            with trio.fail_after(PATIENCE):
                page = await subscription.next_page()
            assert 1 <= len(page) <= PAGE_ENTRIES
            pages += 1
            got += page
        assert seqs(got) == list(range(1, total + 1))
        assert sorted(item.payload for item in got) == sorted(
            f"entry {index}".encode() for index in range(1, total + 1))
        assert pages >= total // PAGE_ENTRIES
        # Reading item by item keeps no more than one page buffered either.
        await publish_together(author, range(total + 1, total + 301))
        await eventually(lambda: holds(reader, blog, total + 300), "300 more")
        more = reader.subscribe(after=got[-1].cursor)
        taken = []
        with trio.fail_after(PATIENCE):
            async for item in more:
                assert len(more._buffer) < PAGE_ENTRIES
                taken.append(item.seq)
                if len(taken) == 300:
                    break
        assert taken == list(range(total + 1, total + 301))


async def test_a_burst_is_held_a_few_pages_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    burst = 5000
    async with open_node(tmp_path / "h") as node:
        subscription = node.subscribe(own=True)
        peak = 0

        def counting_read_page(*args: Any, **kwargs: Any) -> Any:
            nonlocal peak
            peak = max(peak, sum(1 for o in gc.get_objects() if type(o) is Item))
            return read_page(*args, **kwargs)

        monkeypatch.setattr(subscriptions_module, "read_page", counting_read_page)
        book = Home(node.home.path).open_logbook()
        try:  # one arrival of 5000 entries, as an import or a first sync makes
            book.publish_batch([b"entry %d" % n for n in range(burst)], log_id="big")
        finally:
            book.store.close()
        got = 0
        while got < burst:
            with trio.fail_after(PATIENCE):
                page = await subscription.next_page()
            assert 1 <= len(page) <= PAGE_ENTRIES
            got += len(page)
        assert got == burst
        assert peak > 0  # (the count ran)
        # Pages: the one the app holds, one being read, a shared tail of a few.
        assert peak <= 8 * PAGE_ENTRIES, f"{peak} entries in memory at once"


async def test_subscribe_to_chosen_feeds_only(author: EmbeddedNode) -> None:
    a, b = author.feed("a"), author.feed("b")
    only_a = author.subscribe([a])
    both = author.subscribe([str(a), str(b)])  # feed ids as text do too
    for log in ("b", "b", "a", "b", "a"):
        await author.publish(log.encode(), log=log)
    # Arrivals come in order, so had b's entries been let through they would come first.
    assert [(i.feed, i.seq) for i in await take(only_a, 2)] == [(a, 1), (a, 2)]
    assert [(i.feed.log_id, i.seq) for i in await take(both, 5)] == [
        ("b", 1), ("b", 2), ("a", 1), ("b", 3), ("a", 2)]


async def test_the_default_subscription_follows_the_follows_and_own_adds_own_entries(
        author: EmbeddedNode, tmp_path: Path) -> None:
    x, y = author.feed("x"), author.feed("y")
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        followed = reader.subscribe()
        with_own = reader.subscribe(own=True)
        await reader.follow(x)
        await reader.publish(Post("the reader's own"), log="mine")  # arrives first
        await author.publish(b"x1", log="x")
        assert [(i.feed, i.seq) for i in await take(followed, 1)] == [(x, 1)]
        assert [(i.feed, i.seq) for i in await take(with_own, 2)] == [
            (reader.feed("mine"), 1), (x, 1)]
        # A follow made after the subscription began counts from then on.
        await reader.follow(y)
        await author.publish(b"y1", log="y")
        assert [(i.feed, i.seq) for i in await take(followed, 1)] == [(y, 1)]
        assert [(i.feed, i.seq) for i in await take(with_own, 1)] == [(y, 1)]
        # An unfollow stops it: the next item is x's, though y's author goes on.
        await reader.unfollow(y)
        await author.publish(b"y2", log="y")
        await author.publish(b"x2", log="x")
        assert [(i.feed, i.seq) for i in await take(followed, 1)] == [(x, 2)]
        assert reader.store.head(y) is not None and (await reader.entry(y, 2)) is None


async def test_a_subscription_sees_what_another_process_writes_to_the_home(
        author: EmbeddedNode) -> None:
    """A `tidings publish` (or import) beside the running app: another SQLite connection."""
    cli = author.feed("cli")
    subscription = author.subscribe([cli])
    book = Home(author.home.path).open_logbook()
    try:
        book.publish_batch([b"one", b"two", b"three"], log_id="cli")
    finally:
        book.store.close()
    items = await take(subscription, 3)
    assert [(i.feed, i.seq, i.payload) for i in items] == [
        (cli, 1, b"one"), (cli, 2, b"two"), (cli, 3, b"three")]


async def test_own_entries_another_process_writes_are_not_skipped(
        author: EmbeddedNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The window made certain: the node does not poll the store during the test.
    monkeypatch.setattr(daemon, "POLL_INTERVAL", 3600.0)
    blog = author.feed("blog")
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        await reader.follow(blog)
        await eventually(reader.peers, "the reader to connect")
        subscription = reader.subscribe(own=True)
        book = Home(reader.home.path).open_logbook()
        try:
            book.publish_batch([b"one", b"two"], log_id="cli")  # as `tidings publish` does
        finally:
            book.store.close()
        await author.publish(b"from the author", log="blog")  # wakes the subscription
        first = await take(subscription, 1)
        assert [(i.feed.log_id, i.seq) for i in first] == [("cli", 1)]


# -- reading what is stored -----------------------------------------------------------


async def test_entries_latest_entry_and_payload_read_the_store(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    for index in range(1, 31):
        await author.publish(Post(f"post {index}"), log="blog")
    assert seqs(await author.entries(blog)) == list(range(1, 31))
    assert seqs(await author.entries(blog, since=11, limit=5)) == [11, 12, 13, 14, 15]
    assert seqs(await author.entries(str(blog), since=29, limit=100)) == [29, 30]
    assert await author.entries(blog, since=31) == []
    for bad in (0, 10_001):
        with pytest.raises(UsageError):
            await author.entries(blog, limit=bad)
    assert seqs(await author.latest(blog, limit=3)) == [30, 29, 28]
    assert seqs(await author.latest(blog, before=10, limit=4)) == [9, 8, 7, 6]
    assert seqs(await author.latest(blog, before=3)) == [2, 1]
    assert await author.latest(author.feed("empty")) == []
    item = await author.entry(blog, 7)
    assert item is not None and item.content == Post("post 7") and item.feed == blog
    assert item.published.tzinfo is not None
    assert await author.entry(blog, 31) is None
    assert await author.payload(blog, 7) == content_types.encode(Post("post 7"))
    # Another process (a CLI) deletes the payload: the entry stays, the payload is gone.
    book = Logbook(SqliteStore(Home(author.home.path).store_path))
    try:
        assert book.delete_payload(blog, 7)
    finally:
        book.store.close()
    assert await author.payload(blog, 7) is None
    kept = await author.entry(blog, 7)
    assert kept is not None and kept.payload is None and kept.content is None
    assert kept.entry.hash == item.entry.hash
    assert await author.payload(blog, 8) is not None
    assert await author.payload(blog, 99) is None


async def test_a_forked_feed_reads_only_up_to_the_fork(author: EmbeddedNode) -> None:
    """spec/06 §5: once a fork is proven, every read shows the feed below the fork only."""
    from tidings.errors import ForkDetected

    from .helpers import author as identity

    def history(ending: str) -> tuple[FeedId, list[tuple[bytes, bytes | None]]]:
        book = Logbook(tidings.MemoryStore(), identity(5), clock=lambda: 1_700_000_000_000_000)
        for text in ["p1", "p2", "p3", "p4"] + [f"{ending}{i}" for i in range(5, 11)]:
            book.publish(text.encode(), "blog")  # one append each: every entry signed
        feed = book.feed("blog")
        return feed, [(row.raw, row.payload) for row in book.store.entries(feed, 1, 10)]

    feed, first = history("a")
    _, second = history("b")
    book = Logbook(SqliteStore(Home(author.home.path).store_path))
    try:
        assert book.ingest(feed, first).added == 10
        result = book.ingest(feed, second)
    finally:
        book.store.close()
    assert isinstance(result.error, ForkDetected) and result.error.proof is not None
    assert seqs(await author.entries(feed)) == [1, 2, 3, 4]
    assert seqs(await author.entries(feed, since=5)) == []
    assert seqs(await author.latest(feed)) == [4, 3, 2, 1]
    assert await author.head_seq(feed) == 4
    assert await author.entry(feed, 7) is None and await author.entry(feed, 4) is not None
    assert await author.payload(feed, 5) is None


async def test_feeds_status_and_peers_say_how_far_each_feed_is(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    for index in range(1, 6):
        await author.publish(f"{index}".encode(), log="blog")
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        before = await reader.status()
        assert before.author == reader.author != author.author
        assert before.feeds == [] and before.caught_up == bool(before.peers)  # no peer: not
        await reader.follow(blog)
        await eventually(lambda: holds(reader, blog, 5), "the reader to catch up")

        async def caught_up() -> bool:
            status = await reader.status()
            return status.caught_up and bool(status.peers)

        await eventually(caught_up, "the status to say caught up")
        status = await reader.status()
        assert status.entries_received >= 5
        assert status.known_peers == 1
        [progress] = [p for p in status.feeds if p.feed == blog]
        assert progress.followed and progress.local_seq == 5 and progress.behind == 0
        assert await reader.feeds() == status.feeds
        [peer] = await reader.peers()
        assert peer.address == address_of(author) and peer.direction == "out"
        assert len(peer.node) == 64 and peer.version is not None and not peer.relay
        # The author's own feed shows in its status, not followed.
        [own] = [p for p in (await author.feeds()) if p.feed == blog]
        assert own.local_seq == 5 and not own.followed


async def test_peer_seq_counts_what_the_peer_sent_live(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        await reader.follow(blog)
        await eventually(reader.peers, "the reader to connect")
        for seq in range(1, 6):
            await author.publish(f"{seq}".encode(), log="blog")
            await eventually(partial(holds, reader, blog, seq), f"entry {seq}")
        [progress] = [p for p in await reader.feeds() if p.feed == blog]
        assert progress.local_seq == 5
        # The only peer sent all five: it holds at least that many.
        assert progress.peer_seq >= 5


# -- partial replication ---------------------------------------------------------------


async def test_fetch_latest_from_a_connected_peer_verifies_and_stores_nothing(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    for index in range(1, 51):
        await author.publish(Post(f"post {index}"), log="blog")
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        await eventually(reader.peers, "the reader to connect")
        latest = await reader.fetch_latest(blog, 5)
        assert seqs(latest) == [46, 47, 48, 49, 50]
        assert [i.content for i in latest] == [Post(f"post {n}") for n in range(46, 51)]
        assert all(i.entry.feed == blog for i in latest)
        # Nothing was stored, nothing is followed.
        assert await reader.entries(blog) == []
        assert reader.store.head(blog) is None
        assert await reader.following() == []
        # A feed no peer holds: nothing comes back.
        assert await reader.fetch_latest(author.feed("nothing-here"), 3) == []


async def test_fetch_latest_from_a_named_peer(author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    for index in range(1, 8):
        await author.publish(f"{index}".encode(), log="blog")
    async with open_node(tmp_path / "reader") as reader:
        with pytest.raises(UsageError, match="peer"):
            await reader.fetch_latest(blog, 3)
        latest = await reader.fetch_latest(str(blog), 3, peer=address_of(author))
        assert seqs(latest) == [5, 6, 7]
        assert reader.store.head(blog) is None
        for bad in (0, 1001):
            with pytest.raises(UsageError):
                await reader.fetch_latest(blog, bad, peer=address_of(author))


async def test_fetch_latest_from_a_named_peer_already_connected(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    for index in range(1, 4):
        await author.publish(f"{index}".encode(), log="blog")
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        await eventually(reader.peers, "the reader to connect")
        # "dialed if needed": the connection there is used, not a second one.
        latest = await reader.fetch_latest(blog, 2, peer=address_of(author))
        assert seqs(latest) == [2, 3]
        assert len(await reader.peers()) == 1


async def test_nodes_on_different_network_keys_never_connect(
        author: EmbeddedNode, tmp_path: Path) -> None:
    blog = author.feed("blog")
    await author.publish(b"public", log="blog")
    private = os.urandom(32).hex()
    async with open_node(tmp_path / "reader", network=private) as reader:
        await reader.follow(blog)
        with pytest.raises(PeerError):
            await reader.fetch_latest(blog, 1, peer=address_of(author))
        assert await reader.peers() == []
        assert reader.store.head(blog) is None
    with pytest.raises(UsageError):
        async with open_node(tmp_path / "bad", network="not a key"):
            pass


# -- follows ------------------------------------------------------------------------------


async def test_follow_and_unfollow_change_following(author: EmbeddedNode) -> None:
    one, two = FeedId(os.urandom(32), "blog"), FeedId(os.urandom(32), "podcast")
    assert await author.following() == []
    assert await author.follow(one) is True
    assert await author.follow(str(one)) is False  # already followed
    assert await author.follow(two) is True
    assert set(await author.following()) == {one, two}
    assert await author.unfollow(one) is True
    assert await author.unfollow(one) is False
    assert await author.following() == [two]
    # Without public, nothing is published.
    assert author.store.head(author.feed("follows")) is None


async def test_a_public_follow_is_an_entry_in_the_follows_log(author: EmbeddedNode) -> None:
    followed = FeedId(os.urandom(32), "blog")
    await author.follow(followed, public=True)
    await author.unfollow(followed, public=True)
    follows_log = author.feed("follows")
    entries = await author.entries(follows_log)
    assert [content_types.decode(i.payload) for i in entries] == [
        Follow(followed), Unfollow(followed)]
    assert [i.content for i in entries] == [Follow(followed), Unfollow(followed)]
    assert await author.following() == []


async def test_errors_come_out_as_themselves_not_exception_groups(tmp_path: Path) -> None:
    import socket

    with pytest.raises(ValueError, match="the app's own"):
        async with open_node(tmp_path / "a"):
            raise ValueError("the app's own")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(embed.ListenError, match=f"cannot listen on 127.0.0.1:{port} for peers"):
            async with open_node(tmp_path / "a", listen=f"127.0.0.1:{port}"):
                pass


async def test_caught_up_subscriptions_share_the_tail_however_they_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscriptions at the end of the store, new or resumed, read through one shared
    tail: a subscription's own store reads are for catching up only."""
    own_reads = []
    real = subscriptions_module.read_page

    def counting(store: Any, position: Any, wanted: Any, **kwargs: Any) -> Any:
        if wanted is not None:
            own_reads.append(position)
        return real(store, position, wanted, **kwargs)

    monkeypatch.setattr(subscriptions_module, "read_page", counting)
    async with open_node(tmp_path / "a") as node:
        blog = node.feed("blog")
        first = node.subscribe([blog])
        await node.publish(b"0", "blog")
        assert (await first.__anext__()).seq == 1
        resume_at = first.cursor
        del first
        subscriptions = [node.subscribe([blog]) for _ in range(5)]
        subscriptions += [node.subscribe([blog], after=resume_at) for _ in range(5)]
        for index in range(1, 11):
            await node.publish(f"{index}".encode(), "blog")
        with trio.fail_after(PATIENCE):
            for subscription in subscriptions:
                assert [(await subscription.__anext__()).seq for _ in range(10)] == \
                    list(range(2, 12))
    assert own_reads == []


# -- group commit ------------------------------------------------------------------------


async def test_concurrent_publishes_are_each_durable_and_one_refusal_fails_alone(
        author: EmbeddedNode, tmp_path: Path) -> None:
    """Publishes that arrive together share a commit; each returns its own entry, and a
    publish refused (too large a payload) fails without taking the others with it."""
    entries: dict[int, Any] = {}
    refused: list[Exception] = []

    async def one(index: int) -> None:
        entries[index] = await author.publish(b"concurrent %d" % index, log="group")

    async def too_large() -> None:
        try:
            await author.publish(b"x" * (1024 * 1024 + 1), log="group")
        except tidings.TidingsError as exc:
            refused.append(exc)

    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(one, index)
            nursery.start_soon(too_large)
    assert len(refused) == 1
    assert sorted(e.seq for e in entries.values()) == list(range(1, 21))
    # Durable and readable from another connection, each with its own payload.
    book = Home(author.home.path).open_logbook()
    try:
        stored = {payload: entry.seq for entry, payload in book.read(author.feed("group"))}
        assert book.verify(author.feed("group"))[0].ok
    finally:
        book.store.close()
    assert stored == {b"concurrent %d" % i: entries[i].seq for i in range(20)}


async def test_a_peer_hears_of_what_another_process_publishes_on_the_home(
        author: EmbeddedNode, tmp_path: Path) -> None:
    """The node notices another process's appends from the arrivals it names (no scan of
    every feed) and tells its peers."""
    cli = author.feed("cli")
    async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        await reader.follow(cli)
        await eventually(reader.peers, "the reader to connect")
        book = Home(author.home.path).open_logbook()
        try:
            book.publish_batch([b"one", b"two"], log_id="cli")  # as `tidings publish` does
        finally:
            book.store.close()
        await eventually(partial(holds, reader, cli, 2), "the reader to get the CLI's entries")
