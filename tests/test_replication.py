"""Replication (spec/10-replication.md): Replicators over MemoryStores, wired in memory.

Nodes are named by letter: A authors, B and C read and pass on. Each test
builds its own nodes; :mod:`tests.replication_helpers` moves the bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import ForkProof, Logbook, MemoryStore
from tidings.content import follow_payload
from tidings.core.entry import decode_entry, payload_hash
from tidings.core.ids import FeedId
from tidings.errors import (
    BadSignature,
    ClosedByPeer,
    DuplicateConnection,
    InvalidData,
    MalformedMessage,
    NotesFull,
    PeerFlooding,
    PeerRefused,
    RemoteProtocolError,
    SelfConnection,
    UnexpectedMessage,
    UnsupportedVersion,
    WrongFeed,
)
from tidings.replication.relay import MIN_HOLD
from tidings.replication.replicator import (
    PARTIAL_PAYLOAD_BYTES,
    STALL_AFTER,
    STALL_WHILE_SERVING_AFTER,
    MemoryClocks,
    Replicator,
    Superseded,
)
from tidings.replication.session import MAX_UNSOLICITED, Session, SessionState
from tidings.storage.base import StoredEntry
from tidings.storage.logbook import FOLLOWS_LOG
from tidings.storage.sqlite import SEQ_MASK
from tidings.transport.channel import Channel
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.messages import (
    EAGER,
    VERSIONS,
    WANT,
    Clock,
    Entries,
    ErrorMessage,
    ForkProofMessage,
    Hello,
    IdentityNotes,
    Message,
    Note,
    PartialRequest,
    PartialResponse,
    Ping,
)

from .helpers import author, examples, forge, make_log
from .replication_helpers import (
    Link,
    busy_with_notes_aside,
    clock_bytes,
    connect,
    drain,
    entries_items,
    held,
    node,
    pipes,
    publish_feeds,
    run,
    sync,
    transport_key,
)


def copy_feed(source: Replicator, target: Replicator, feed: FeedId) -> None:
    """Give ``target`` everything ``source`` holds of ``feed``, outside the protocol."""
    target.logbook.ingest(feed, [(e.raw, p) for e, p in source.logbook.read(feed)])
    target.refresh_local()


def same_log(a: Replicator, b: Replicator, feed: FeedId) -> bool:
    """Both stores hold the same entries and payloads of ``feed``."""
    return [(e.raw, p) for e, p in a.logbook.read(feed)] == [
        (e.raw, p) for e, p in b.logbook.read(feed)
    ]


def bare_peer(listener: Replicator) -> tuple[Channel, Session]:
    """A peer that is only a Channel, handshake done: it sends whatever it is told to."""
    channel = Channel(
        initiator=True, static_private=transport_key("bare"), network_key=DEFAULT_NETWORK_KEY
    )
    session = listener.open_session(initiator=False)
    channel.start()
    listener.receive(session, channel.data_to_send())
    channel.receive_data(listener.pump(session))
    assert channel.established
    return channel, session


# -- full replication --------------------------------------------------------------

def test_a_followed_feed_replicates_in_full_and_another_log_of_its_author_does_not() -> None:
    a = node("a", who=1)
    a.logbook.publish_batch([b"post %d" % i for i in range(1500)], "blog")
    a.logbook.publish_batch([b"episode"] * 10, "podcast")
    a.refresh_local()
    blog, podcast = a.logbook.feed("blog"), a.logbook.feed("podcast")
    b = node("b", follows=[blog])
    sync(b, a)
    assert same_log(a, b, blog)
    assert held(b, podcast) == 0
    assert all(report.ok for report in b.logbook.verify())


def test_the_dialling_side_may_be_either_one() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 20)[0]
    a.refresh_local()
    b = node("b", follows=[blog])
    sync(a, b)  # A dials
    assert same_log(a, b, blog)


def test_caught_up_waits_for_the_peers_opening_clock() -> None:
    a = node("a", who=1)
    b = node("b", follows=[a.logbook.feed("blog")])
    link = connect(b, a)
    assert not b.caught_up(link.sa)
    link.step()  # handshake message 1: nothing from A yet
    assert not b.caught_up(link.sa)
    run(link)
    assert b.caught_up(link.sa)  # A holds nothing B wants


def test_caught_up_is_false_while_a_wanted_feed_lags_the_peer() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 50)[0]
    a.refresh_local()
    b = node("b", follows=[blog])
    link = connect(b, a)
    link.budget_b = 0  # A sends its clock but streams nothing
    run(link)
    assert link.sa.clock_exchanged and held(b, blog) == 0
    assert not b.caught_up(link.sa)
    link.budget_b = None
    run(link)
    assert held(b, blog) == 50
    assert b.caught_up(link.sa)


def test_caught_up_ignores_feeds_not_wanted() -> None:
    a = node("a", who=1)
    blog, podcast = publish_feeds(a.logbook, 2, 5)
    a.refresh_local()
    b = node("b", follows=[blog])
    link = sync(b, a)
    # Its note of a feed b neither holds nor wants is not kept (spec/14 §3).
    assert held(b, podcast) == 0 and link.sa.peer_seq(podcast) == 0
    assert b.caught_up(link.sa)


def test_a_new_entry_is_pushed_to_a_connected_peer() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 10)[0]
    a.refresh_local()
    b = node("b", follows=[blog])
    link = sync(b, a)
    a.logbook.publish(b"live", blog.log_id)
    assert a.refresh_local() == [blog]
    run(link)
    assert held(b, blog) == 11 and same_log(a, b, blog)
    assert entries_items(link.to_a) == 11  # the ten, then only the new one
    assert b.caught_up(link.sa)


def test_a_feed_followed_during_a_session_is_fetched_from_the_connected_peer() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 10)[0]
    a.refresh_local()
    b = node("b")
    link = sync(b, a)
    assert held(b, blog) == 0
    b.set_follows([blog])
    run(link)
    assert held(b, blog) == 10 and b.caught_up(link.sa)


def test_a_feed_unfollowed_during_a_session_is_no_longer_streamed() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 10)[0]
    a.refresh_local()
    b = node("b", follows=[blog])
    link = sync(b, a)
    b.set_follows([])
    run(link)
    a.logbook.publish(b"unread", blog.log_id)
    a.refresh_local()
    run(link)
    assert held(b, blog) == 10
    assert entries_items(link.to_a) == 10


def test_a_feed_travels_through_a_middle_node_and_the_ends_never_meet() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 30)[0]
    a.refresh_local()
    c = node("c", who=3)
    diary = publish_feeds(c.logbook, 1, 5)[0]
    c.refresh_local()
    b = node("b", follows=[blog, diary])
    c.set_follows([blog])
    ab, bc = connect(a, b), connect(b, c)
    run(ab, bc)
    assert same_log(a, c, blog)
    a.logbook.publish(b"live", blog.log_id)
    a.refresh_local()
    run(ab, bc)
    assert held(c, blog) == 31
    assert entries_items(ab.to_b, blog) == 31  # A sent its feed once, to B only
    assert [p.key for p in a.router.peers] == [ab.sb.channel.local_static]
    assert held(b, diary) == 5 and held(a, diary) == 0


# -- any schedule -----------------------------------------------------------------------

deliveries = st.tuples(st.just("deliver"), st.integers(0, 7), st.integers(1, 4000))
events = st.one_of(
    deliveries, deliveries, deliveries,
    st.tuples(st.just("publish"), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("reconnect"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("toggle"), st.integers(0, 2), st.just(0)),
)


@settings(max_examples=examples(80), deadline=None)
@given(st.lists(events, max_size=80))
def test_any_order_of_partial_deliveries_reconnects_and_follows_converges(
    schedule: list[tuple[str, int, int]]
) -> None:
    """A authors two feeds; B1, B2 and C pass them on in a ring (A-B1, B2-A, B1-C, C-B2).

    Bytes arrive in arbitrary pieces and orders, connections drop (losing what
    was in flight) and come back, the readers follow and unfollow the second
    feed and A publishes meanwhile: once every byte is delivered, each reader
    holds everything of what it follows that some path of followers carries.
    """
    a = node("a", who=1)
    blog, podcast = publish_feeds(a.logbook, 2, 20)
    a.refresh_local()
    b1, b2, c = node("b1"), node("b2"), node("c")
    readers = [b1, b2, c]
    follows = {b1: {blog}, b2: {blog, podcast}, c: {blog, podcast}}
    for reader in readers:
        reader.set_follows(follows[reader])
    pairs = [(a, b1), (b2, a), (b1, c), (c, b2)]
    links = [connect(x, y) for x, y in pairs]
    every_link = list(links)
    wires = [pipe for link in links for pipe in pipes(link)]
    for kind, index, size in schedule:
        if kind == "deliver":
            wires[index].deliver(size)
        elif kind == "publish":
            a.logbook.publish(b"live", (blog, podcast)[index].log_id)
            a.refresh_local()
        elif kind == "reconnect":
            links[index].close()
            links[index] = connect(*pairs[index])
            every_link.append(links[index])
            wires[2 * index:2 * index + 2] = pipes(links[index])
        else:
            follows[readers[index]] ^= {podcast}
            readers[index].set_follows(follows[readers[index]])
    drain(wires)
    for reader in readers:
        assert same_log(a, reader, blog)
    # The podcast reaches B2 directly, and C through B2 or through B1.
    if podcast in follows[b2]:
        assert same_log(a, b2, podcast)
    if podcast in follows[c] and (podcast in follows[b2] or podcast in follows[b1]):
        assert same_log(a, c, podcast)
    # Flags are 0, 1 or 3: never EAGER without WANT (spec/10 §2).
    notes = [
        note for link in every_link for m in link.to_a + link.to_b if isinstance(m, Clock)
        for _, note in m.notes
    ]
    assert {note.flags for note in notes} <= {0, WANT, WANT | EAGER}


# -- one source per feed ---------------------------------------------------------------

def test_a_feed_held_by_two_peers_arrives_about_once() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 500)[0]
    b1, b2 = node("b1"), node("b2")
    copy_feed(a, b1, blog)
    copy_feed(a, b2, blog)
    c = node("c", follows=[blog])
    first, second = connect(c, b1), connect(c, b2)
    run(first, second)
    assert held(c, blog) == 500
    received = entries_items(first.to_a) + entries_items(second.to_a)
    assert received <= 1.1 * 500


def test_a_feed_moves_to_another_peer_when_its_source_leaves() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 500, payload=lambda f, i: bytes(2000))[0]
    b1, b2 = node("b1"), node("b2")
    copy_feed(a, b1, blog)
    copy_feed(a, b2, blog)
    c = node("c", follows=[blog])
    first, second = connect(c, b1), connect(c, b2)
    first.budget_b = second.budget_b = 1  # one batch per step
    for _ in range(20):
        first.step()
        second.step()
        if held(c, blog):
            break
    assert 0 < held(c, blog) < 500
    first.close()
    run(second)
    assert held(c, blog) == 500 and same_log(a, c, blog)
    assert entries_items(first.to_a) + entries_items(second.to_a) <= 1.1 * 500


# -- remembered clocks -------------------------------------------------------------------

def shared_feeds(count: int = 1000) -> tuple[Replicator, Replicator, list[FeedId], Link]:
    """A authors ``count`` feeds of 3 entries; B follows them all and has synced once."""
    a = node("a", who=1)
    feeds = publish_feeds(a.logbook, count, 3)
    a.refresh_local()
    b = node("b", follows=feeds)
    first = sync(b, a)
    assert all(held(b, f) == 3 for f in feeds)
    first.close()
    return a, b, feeds, first


def test_a_reconnect_sends_only_what_changed() -> None:
    a, b, feeds, first = shared_feeds()
    first_clocks = clock_bytes(first.to_a) + clock_bytes(first.to_b)
    for feed in feeds[:10]:
        a.logbook.publish(b"changed", feed.log_id)
    a.refresh_local()
    again = sync(b, a)
    assert [held(b, f) for f in feeds[:11]] == [4] * 10 + [3]
    assert again.bytes_exchanged < 0.05 * first_clocks


@pytest.mark.parametrize("forgetful", ["dialler", "listener"])
def test_a_reconnect_after_one_side_lost_its_memory_exchanges_full_clocks(
    forgetful: str
) -> None:
    a, b, feeds, _ = shared_feeds()
    for feed in feeds[:10]:
        a.logbook.publish(b"changed", feed.log_id)
    a.refresh_local()
    if forgetful == "dialler":
        b = node("b", book=b.logbook, follows=feeds)
    else:
        a = node("a", book=a.logbook)
    again = sync(b, a)
    assert all(held(b, f) == (4 if f in feeds[:10] else 3) for f in feeds)
    for received in (again.to_a, again.to_b):
        clocks = [m for m in received if isinstance(m, Clock)]
        assert clocks[0].reset
        assert {f for m in clocks for f, _ in m.notes} >= set(feeds)


def mixed_feeds() -> tuple[Replicator, Replicator, list[FeedId], list[FeedId], list[FeedId]]:
    """A holds 20 feeds B follows and 5 it does not; B also follows 3 feeds A lacks."""
    a, b, shared, _ = shared_feeds(20)
    unfollowed = publish_feeds(Logbook(a.logbook.store, author(2)), 5, 3)
    a.refresh_local()
    absent = [FeedId(bytes([i]) * 32, "blog") for i in range(1, 4)]
    b.set_follows([*shared, *absent])
    sync(b, a).close()  # (both now remember what the other named)
    return a, b, shared, unfollowed, absent


def opening_notes(messages: list[Message]) -> list[Clock]:
    """The clock messages of the opening clock (the first batch)."""
    clocks = []
    for message in messages:
        if isinstance(message, Clock):
            clocks.append(message)
            if message.final:
                break
    return clocks


def test_a_reconnect_with_a_peer_that_names_feeds_not_followed_sends_only_what_changed(
) -> None:
    # A peer holds feeds this reader does not follow, and the reader wants feeds the
    # peer lacks: each remembers the other's notes of them too (set aside), so the
    # next hello names every note the peer sent and both open with a delta (spec/10 §4).
    a, b, shared, unfollowed, absent = mixed_feeds()
    assert set(b.memory.load(a.local_static)[1]) == {*shared, *unfollowed}
    assert set(a.memory.load(b.local_static)[1]) == {*shared, *absent}
    a.logbook.publish(b"changed", shared[0].log_id)
    a.refresh_local()
    again = sync(b, a)
    for received in (again.to_a, again.to_b):
        opening = opening_notes(received)
        assert not any(m.reset for m in opening)
        assert [f for m in opening for f, _ in m.notes] in ([], [shared[0]])
    assert held(b, shared[0]) == 4 and all(held(b, f) == 0 for f in unfollowed)
    again.close()
    quiet = sync(b, a)
    assert quiet.bytes_exchanged < 0.2 * (clock_bytes(again.to_a) + clock_bytes(again.to_b)
                                          + 2000)
    assert all(not m.notes for m in opening_notes(quiet.to_a) + opening_notes(quiet.to_b))


def test_a_feed_followed_between_sessions_is_fetched_on_the_note_set_aside() -> None:
    # The reader starts to follow a feed the peer named before (set aside, remembered):
    # the peer's opening delta does not name it again, and the reader knows from the
    # remembered note that it lags: it is not caught up until it holds the entries.
    a, b, shared, unfollowed, absent = mixed_feeds()
    b = node("b", book=b.logbook, memory=b.memory)  # (a new process: the same home)
    b.set_follows([*shared, *absent, unfollowed[0]])
    link = connect(b, a)
    link.budget_b = 0  # A sends notes, but no entries yet
    run(link)
    assert not any(m.reset for m in opening_notes(link.to_a))
    assert held(b, unfollowed[0]) == 0 and not b.caught_up(link.sa)
    link.budget_b = None
    run(link)
    assert held(b, unfollowed[0]) == 3 and b.caught_up(link.sa)


def test_notes_set_aside_past_the_bound_are_not_remembered_and_the_next_clocks_are_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tidings.replication import session as session_module

    monkeypatch.setattr(session_module, "MAX_UNKEPT_NOTES", 2)
    a, b, shared, unfollowed, absent = mixed_feeds()
    assert set(b.memory.load(a.local_static)[1]) == set(shared)  # (5 unfollowed: evicted)
    b.set_follows([*shared, *absent, unfollowed[0]])
    again = sync(b, a)
    assert any(m.reset for m in opening_notes(again.to_a))  # A's whole clock
    assert held(b, unfollowed[0]) == 3
    assert b.notes.aside > 0
    again.close()
    assert b.notes.aside == a.notes.aside == 0  # (closed sessions count none)


def test_a_stranger_that_dialed_in_has_few_notes_set_aside_until_its_clocks_are_remembered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # B names feeds it wants to a node it dials for the first time, which lacks them: A
    # sets aside only a few (a stranger could name any number), so the next session
    # opens with whole clocks once; from then on A remembers B's clocks, sets
    # aside as for a peer it dialed, and reconnects open with deltas.
    from tidings.replication import session as session_module

    monkeypatch.setattr(session_module, "MAX_STRANGER_UNKEPT_NOTES", 2)
    a = node("a", who=1)
    shared = publish_feeds(a.logbook, 2, 3)
    a.refresh_local()
    absent = [FeedId(bytes([i]) * 32, "blog") for i in range(1, 4)]
    b = node("b", follows=[*shared, *absent])
    sync(b, a).close()
    assert set(a.memory.load(b.local_static)[1]) == set(shared)
    again = sync(b, a)
    assert opening_notes(again.to_b)[0].reset  # B's whole clock, to A
    again.close()
    assert set(a.memory.load(b.local_static)[1]) == {*shared, *absent}
    quiet = sync(b, a)
    assert not opening_notes(quiet.to_b)[0].reset and not opening_notes(quiet.to_b)[0].notes


def test_notes_set_aside_are_bounded_across_sessions() -> None:
    a, b, shared, _, _ = mixed_feeds()
    b.notes.aside_limit = 2
    link = connect(b, a)
    run(link)
    assert b.notes.aside == 2 and len(link.sa.aside()) == 2
    assert set(link.sa.remembered()) == set(shared)  # (some evicted: not remembered)
    link.close()
    assert b.notes.aside == 0


@pytest.mark.parametrize("full", [False, True])
def test_a_want_remembered_aside_is_served_though_the_bound_is_full_when_it_loads(
        full: bool) -> None:
    # B follows A's feed "later" before A has an entry of it: A answers with a (0, 0)
    # note and sets B's eager want aside, and remembers it. A restarts, and its bound
    # on notes set aside is full when B reconnects: it cannot take the want back, so
    # its hello names no digest and B sends its whole clock (a digest of what A no
    # longer holds would make B open with a delta that leaves the want unsaid, and A
    # would never stream "later"). B also repeats its note when A first holds some of
    # "later" (spec/10 §2).
    memory = MemoryClocks()
    a, b = node("a", who=1, memory=memory), node("b")
    later = a.logbook.feed("later")
    link = connect(b, a)
    run(link)
    b.set_follows([later])
    run(link)
    link.close()
    assert later in memory.load(b.local_static)[1]  # A remembers B's want (set aside)
    a = node("a", book=a.logbook, memory=memory)  # a new process
    if full:
        busy_with_notes_aside(a, 2)
    again = connect(b, a)
    run(again)
    assert opening_notes(again.to_b)[0].reset == full  # B's whole clock when A is full
    a.logbook.publish(b"now", "later")
    a.refresh_local()
    run(again)
    assert held(b, later) == 1


def test_a_follower_whose_source_first_gets_the_feed_streams_it_once_and_clocks_stay_matched(
) -> None:
    # A and B follow C's feed F; A is connected only to B, so B is A's source. B then
    # gets F's 50 entries from C: its note to A goes from seq 0 to 50 and it streams
    # them. A repeats its note (spec/10 §2: the peer's last note had seq 0), and the
    # note must be A's as it stands when sent (holding 50), not as when the offer came
    # (holding none): B would take A as lacking them, stream all 50 again, and the
    # next session would find S and R apart (whole clocks).
    c = node("c", who=3)
    [feed] = publish_feeds(c.logbook, 1, 50)
    c.refresh_local()
    a, b = node("a", follows=[feed]), node("b", follows=[feed])
    ab = connect(a, b)
    run(ab)
    assert feed in ab.sa.eager  # B is A's source
    run(ab, connect(b, c))
    assert held(a, feed) == 50 and entries_items(ab.to_a, feed) == 50
    assert ab.sa.sent[feed] == ab.sb.received[feed] and ab.sb.sent[feed] == ab.sa.received[feed]
    ab.close()
    again = sync(a, b)
    assert not any(m.reset for m in opening_notes(again.to_a) + opening_notes(again.to_b))


def test_remembered_notes_past_the_sessions_bound_on_notes_set_aside_are_not_taken_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A remembers B's notes of 10 feeds both wanted; A then unfollows them: at the next
    # session, they would all be set aside, past the session's bound (4 here). None is
    # taken back, and A's hello names no digest: B sends its whole clock.
    from tidings.replication import session as session_module

    monkeypatch.setattr(session_module, "MAX_UNKEPT_NOTES", 4)
    absent = [FeedId(bytes([i]) * 32, "blog") for i in range(1, 11)]
    a, b = node("a", follows=absent), node("b", follows=absent)
    sync(a, b).close()
    a.set_follows([])
    link = sync(a, b)
    assert len(link.sa.aside()) <= 4
    assert opening_notes(link.to_a)[0].reset  # B's whole clock


def test_a_relay_remembers_no_offer_it_did_not_take() -> None:
    # An offer a relay had no room for is offered again with the next whole clock.
    # A want of a feed the relay lacks is remembered as another node's would be.
    absent = FeedId(bytes([7]) * 32, "blog")
    a = node("a", who=1, follows=[absent])
    feeds = publish_feeds(a.logbook, 2, 3)
    a.refresh_local()
    relay = node("relay", relay=True, relay_max_feeds=1)
    sync(relay, a).close()
    taken = [f for f in feeds if held(relay, f)]
    assert len(taken) == 1
    assert set(relay.memory.load(a.local_static)[1]) == {*taken, absent}
    again = sync(relay, a)
    assert opening_notes(again.to_a)[0].reset  # (the offer not taken comes again)


def test_a_reset_clock_replaces_every_note_remembered_from_the_peer() -> None:
    a = node("a", who=1)
    later = a.logbook.feed("later")  # not published yet
    b = node("b", follows=[later])
    sync(b, a).close()  # A remembers: B streams "later" from it
    b = node("b", book=b.logbook)  # B lost its memory and follows nothing now
    a.logbook.publish(b"now", "later")
    a.refresh_local()
    again = sync(a, b)  # A dials: B's reset clock comes with its hello, and omits "later"
    assert entries_items(again.to_b) == 0


def test_feeds_unfollowed_while_apart_are_not_streamed_on_reconnect() -> None:
    """spec/10 §4: nothing streams on a remembered note before the peer's opening clock."""
    a, b, feeds, _ = shared_feeds(MAX_UNSOLICITED + 36)
    b.set_follows([])
    for feed in feeds:
        a.logbook.publish(b"changed", feed.log_id)
    a.refresh_local()
    again = connect(b, a)
    run(again)
    assert entries_items(again.to_a) == 0


# -- partial replication ---------------------------------------------------------------

def test_a_partial_request_brings_the_latest_entries_verified_and_nothing_else() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 2000)[0]
    a.refresh_local()
    c = node("c")
    link = sync(c, a)
    request = c.request_partial(link.sa, blog, 20)
    run(link)
    (result,) = link.partials(c)
    assert result.request_id == request and result.feed == blog
    assert result.entries == [(e.raw, p) for e, p in a.logbook.read(blog, since=1981)]
    assert held(c, blog) == 0 and c.logbook.feeds() == []


def test_a_partial_request_for_a_feed_the_peer_lacks_gets_an_empty_answer() -> None:
    a, c = node("a"), node("c")
    link = sync(c, a)
    blog = author(1).author.feed("blog")
    request = c.request_partial(link.sa, blog, 20)
    run(link)
    assert [(r.request_id, r.feed, r.entries) for r in link.partials(c)] == [(request, blog, [])]


def test_a_partial_answer_carries_the_newest_payloads_that_fit_its_budget() -> None:
    a = node("a", who=1)
    big = PARTIAL_PAYLOAD_BYTES // 5 - 1000  # five fit, a sixth does not
    sizes = [big] * 14 + [10] + [big] * 5  # seq 15 is small: it fits after the five
    a.logbook.publish_batch([bytes([i]) * size for i, size in enumerate(sizes)], "blog")
    a.refresh_local()
    blog = a.logbook.feed("blog")
    c = node("c")
    link = sync(c, a)
    c.request_partial(link.sa, blog, 20)
    run(link)
    (result,) = link.partials(c)
    with_payload = [decode_entry(raw).seq for raw, payload in result.entries if payload]
    assert with_payload == [15, 16, 17, 18, 19, 20]


def test_a_partial_answer_keeps_empty_payloads_apart_from_absent_ones() -> None:
    a = node("a", who=1)
    a.logbook.publish_batch([b"", b"x", b""], "blog")
    a.refresh_local()
    blog = a.logbook.feed("blog")
    c = node("c")
    link = sync(c, a)
    c.request_partial(link.sa, blog, 2)
    run(link)
    (result,) = link.partials(c)
    assert [payload for _, payload in result.entries] == [b"x", b""]


def test_a_partial_answer_without_its_certificate_pool_is_invalid_data() -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 100)[0]
    c = node("c")
    channel, session = bare_peer(c)
    channel.send(Hello(VERSIONS, False, None))
    c.receive(session, channel.data_to_send())
    request = c.request_partial(session, blog, 20)
    channel.receive_data(c.pump(session))
    assert PartialRequest(request, blog, 20) in channel.messages()
    latest = tuple((e.raw, p) for e, p in a.logbook.read(blog, since=81))
    channel.send(PartialResponse(request, latest))
    with pytest.raises(InvalidData) as caught:
        c.receive(session, channel.data_to_send())
    assert caught.value.cause.feed == str(blog)
    assert held(c, blog) == 0


# -- bad data ------------------------------------------------------------------------------

def test_a_forged_entry_from_a_peer_is_invalid_data_naming_feed_and_seq() -> None:
    log, payloads = make_log(3)
    blog = log[0].feed
    # Entry 4 claims author 1 but is signed by author 2.
    forged = forge(
        author(2), author=author(1).author.key, seq=4, backlink=log[2].hash,
        lipmaa_link=log[0].hash, payload_size=5, payload_hash=payload_hash(b"forty"),
    )
    mallory = node("mallory")
    mallory.logbook.store.append(blog, [
        *(StoredEntry(e.seq, e.hash, e.raw, p) for e, p in zip(log, payloads, strict=True)),
        StoredEntry(4, decode_entry(forged).hash, forged, b"forty"),
    ])
    mallory.refresh_local()
    b = node("b", follows=[blog])
    with pytest.raises(InvalidData) as caught:
        sync(b, mallory)
    error = caught.value
    assert error.code == "invalid-data"
    assert isinstance(error.cause, BadSignature)
    assert error.cause.feed == str(blog) and error.cause.seq == 4
    assert str(blog) in str(error) and "seq 4" in str(error)
    assert held(b, blog) == 3
    assert [report.ok for report in b.logbook.verify()] == [True]


def test_entries_of_another_feed_under_a_wanted_feeds_name_are_invalid_data() -> None:
    mallory = node("mallory", who=2)
    diary = publish_feeds(mallory.logbook, 1, 2)[0]
    mallory.refresh_local()
    blog = author(1).author.feed("blog")
    b = node("b", follows=[blog])
    link = sync(b, mallory)
    items = [(e.raw, p) for e, p in mallory.logbook.read(diary)]
    link.sb.send_entries(blog, items, 2, decode_entry(items[-1][0]).hash)
    with pytest.raises(InvalidData) as caught:
        run(link)
    assert isinstance(caught.value.cause, WrongFeed)
    assert caught.value.cause.feed == str(blog)
    assert b.logbook.feeds() == []


def branches() -> tuple[ForkProof, list[tuple[bytes, bytes]]]:
    """A fork of author 1's blog at seq 2, and the first branch (3 entries)."""
    laptop, payloads = make_log(3, payload=lambda i: b"first" if i == 1 else b"laptop %d" % i)
    phone, _ = make_log(3, payload=lambda i: b"first" if i == 1 else b"phone %d" % i)
    proof = ForkProof.from_runs(laptop[1:], phone[1:])
    return proof, [(e.raw, p) for e, p in zip(laptop, payloads, strict=True)]


@pytest.mark.parametrize("c_joins", ["before", "after"])
def test_a_fork_proof_is_passed_on_to_a_peer_that_follows_the_feed(c_joins: str) -> None:
    proof, laptop = branches()
    blog = proof.feed
    d = node("d")
    d.logbook.add_fork_proof(proof)
    d = node("d", book=d.logbook)  # holds the proof, not the feed
    b = node("b", follows=[blog])
    b.logbook.ingest(blog, laptop)
    b.refresh_local()
    c = node("c", follows=[blog])
    if c_joins == "before":
        bc = sync(c, b)
        sync(d, b)
        run(bc)
    else:
        sync(d, b)
        sync(c, b)
    assert b.logbook.fork_proofs(blog) == [proof]
    assert c.logbook.fork_proofs(blog) == [proof]
    assert blog in c.forked_at


# -- relays and hops -------------------------------------------------------------------------

def test_a_relay_stores_every_feed_offered_to_it_up_to_its_limit() -> None:
    a, e = node("a", who=1), node("e", who=5)
    from_a = publish_feeds(a.logbook, 3, 2)
    from_e = publish_feeds(e.logbook, 3, 2)
    a.refresh_local()
    e.refresh_local()
    relay = node("relay", relay=True, relay_max_feeds=4)
    sync(relay, a)
    assert [held(relay, f) for f in from_a] == [2, 2, 2]
    sync(relay, e)
    assert sorted(held(relay, f) for f in from_e) == [0, 0, 2]
    assert len(relay.logbook.feeds()) == 4


def test_notes_kept_are_counted_across_sessions_and_bounded() -> None:
    """spec/14 §3: one count of the notes every session keeps; a clock that takes it
    over the bound ends that session with busy (not the peer's fault), and a
    closed session's notes no longer count."""
    a, c = node("a", who=1), node("c", who=3)
    from_a, from_c = publish_feeds(a.logbook, 6, 1), publish_feeds(c.logbook, 6, 1)
    a.refresh_local()
    c.refresh_local()
    b = node("b", follows=[*from_a, *from_c])
    first = sync(b, a)
    kept = b.notes.used
    assert kept == len(first.sa.received) >= 6
    b.notes.limit = kept + 3
    second = connect(b, c)
    with pytest.raises(NotesFull, match="at most 9 feeds") as raised:
        run(second)
    assert raised.value.code == "busy" and not isinstance(raised.value, RemoteProtocolError)
    assert second.sa.error is raised.value
    assert b.notes.used == kept  # the failed session's notes were released
    b.close_session(second.sa)
    b.close_session(first.sa)
    assert b.notes.used == 0
    b.notes.limit = 100
    assert [held(sync(b, c).b, f) for f in from_c] == [1] * 6  # served again later


def test_a_full_relay_gives_an_unread_feeds_place_to_a_new_author() -> None:
    """spec/14 §4: at its feed quota, once its feeds are held MIN_HOLD, a relay takes a
    new author's feed in the place of the least served one (deleted), and a feed
    that readers read stays."""
    a, e = node("a", who=1), node("e", who=5)
    from_a = publish_feeds(a.logbook, 3, 2)
    blog = publish_feeds(e.logbook, 1, 4)[0]
    a.refresh_local()
    e.refresh_local()
    relay = node("relay", relay=True, relay_max_feeds=3)
    relay.tick(1.0)
    sync(relay, a)
    assert [held(relay, f) for f in from_a] == [2, 2, 2]
    reader = node("reader", follows=[from_a[0]])
    sync(reader, relay)  # feed 0 is read
    assert held(reader, from_a[0]) == 2
    sync(relay, e)
    assert held(relay, blog) == 0  # held too briefly to give way: refused for now
    relay.tick(1.0 + MIN_HOLD)
    sync(relay, e)
    assert held(relay, blog) == 4
    # The read feed stays; one of the two unread ones (taken at the same moment,
    # so either is the oldest) gave way.
    assert sorted(held(relay, f) for f in from_a[1:]) == [0, 2] and held(relay, from_a[0]) == 2
    assert relay.quota.bytes_used == sum(relay.logbook.store.feed_bytes(f)
                                         for f in relay.quota.charged)


def test_a_relays_byte_count_survives_a_restart(tmp_path: Path) -> None:
    from tidings import SqliteStore
    a = node("a", who=1)
    feeds = publish_feeds(a.logbook, 2, 3, lambda f, i: bytes(1000))
    a.refresh_local()
    store = SqliteStore(tmp_path / "relay.sqlite3")
    relay = node("relay", book=Logbook(store), relay=True, relay_max_bytes=100_000)
    sync(relay, a)
    used = relay.quota.bytes_used
    assert used >= 6000 and [held(relay, f) for f in feeds] == [3, 3]
    store.close()
    again = node("relay", book=Logbook(SqliteStore(tmp_path / "relay.sqlite3")), relay=True,
                 relay_max_bytes=100_000)
    assert set(again.quota.charged) == set(feeds)
    assert again.quota.bytes_used == sum(again.logbook.store.feed_bytes(f) for f in feeds)
    assert abs(again.quota.bytes_used - used) < 200  # entries counted, not estimated


def test_a_relay_counts_a_feed_named_twice_in_one_clock_once() -> None:
    relay = node("relay", relay=True, relay_max_feeds=2)
    first, second = author(1).author.feed("first"), author(1).author.feed("second")
    channel, session = bare_peer(relay)
    channel.send(Hello(VERSIONS, False, None))
    head = bytes(8)
    offered = ((first, Note(5, 0, head)), (first, Note(5, 0, head)), (second, Note(5, 0, head)))
    channel.send(Clock(True, offered, True))
    relay.receive(session, channel.data_to_send())
    assert relay.relayed == {first, second}


def test_a_node_that_is_not_a_relay_stores_only_what_it_follows() -> None:
    a = node("a", who=1)
    publish_feeds(a.logbook, 3, 2)
    a.refresh_local()
    b = node("b")
    sync(b, a)
    assert b.logbook.feeds() == []


def follows_d() -> tuple[Replicator, FeedId, FeedId]:
    """A's blog holds a follow entry for D's feed; A holds D's feed too."""
    a, d = node("a", who=1), node("d", who=4)
    diary = publish_feeds(d.logbook, 1, 3)[0]
    d.refresh_local()
    copy_feed(d, a, diary)
    a.logbook.publish_batch([b"hello", follow_payload(diary), b"bye"], "blog")
    a.refresh_local()
    return a, a.logbook.feed("blog"), diary


def test_with_two_hops_the_feeds_a_followed_author_follows_are_replicated() -> None:
    """spec/10 §9: the follow entry arrives over the wire, in this very session."""
    a, blog, diary = follows_d()
    b = node("b", follows=[blog], hops=2)
    sync(b, a)
    assert held(b, blog) == 3
    assert held(b, diary) == 3


def test_with_one_hop_only_the_followed_feed_is_replicated() -> None:
    a, blog, diary = follows_d()
    b = node("b", follows=[blog], hops=1)
    sync(b, a)
    assert held(b, blog) == 3
    assert held(b, diary) == 0


def test_with_two_hops_a_follow_entry_already_held_is_followed() -> None:
    a, blog, diary = follows_d()
    b = node("b")
    copy_feed(a, b, blog)
    b = node("b", book=b.logbook, follows=[blog], hops=2)
    sync(b, a)
    assert held(b, diary) == 3


def test_with_two_hops_an_authors_public_follows_log_is_read() -> None:
    """spec/10 §9: following A's blog with hops 2 also reads A's "follows" log."""
    a, d = node("a", who=1), node("d", who=4)
    diary = publish_feeds(d.logbook, 1, 3)[0]
    d.refresh_local()
    copy_feed(d, a, diary)
    a.logbook.publish(b"hello", "blog")
    a.logbook.publish(follow_payload(diary), FOLLOWS_LOG)
    a.refresh_local()
    b = node("b", follows=[a.logbook.feed("blog")], hops=2)
    sync(b, a)
    assert held(b, a.logbook.feed(FOLLOWS_LOG)) == 1
    assert held(b, diary) == 3


def test_a_peer_remembered_to_hold_a_feed_becomes_its_source_after_a_restart() -> None:
    author = node("author", who=1)
    feed = author.logbook.publish(b"hello", "blog").feed
    author.refresh_local()
    memory = MemoryClocks()
    reader = node("reader", follows=[feed], memory=memory)
    first = connect(reader, author)
    first.budget_b = 0  # the author notes seq 1 but streams nothing before the reader stops
    run(first)
    first.close()
    assert held(reader, feed) == 0
    # The reader restarts (same store, same clock memory); an empty peer connects first.
    reader = node("reader", book=reader.logbook, follows=[feed], memory=memory)
    run(connect(reader, node("empty")), connect(reader, author))
    assert held(reader, feed) == 1



# -- misbehaving peers ---------------------------------------------------------------------------

def test_entries_of_unwanted_feeds_are_tolerated_up_to_a_bound_then_flooding() -> None:
    p = node("p", who=1)
    blog = publish_feeds(p.logbook, 1, 1)[0]
    p.refresh_local()
    q = node("q")
    link = sync(p, q)
    items = [(e.raw, payload) for e, payload in p.logbook.read(blog)]
    for _ in range(MAX_UNSOLICITED):
        link.sa.send_entries(blog, items, 1, decode_entry(items[-1][0]).hash)
    run(link)
    assert held(q, blog) == 0
    link.sa.send_entries(blog, items, 1, decode_entry(items[-1][0]).hash)
    with pytest.raises(PeerFlooding) as caught:
        run(link)
    assert caught.value.code == "flood"


def test_the_bare_peer_is_a_good_peer_when_it_follows_the_protocol() -> None:
    """The control for the tests below."""
    b = node("b")
    channel, session = bare_peer(b)
    channel.send(Hello(VERSIONS, False, None))
    b.receive(session, channel.data_to_send())
    channel.receive_data(b.pump(session))
    # Wire version 3: the (empty) identity notes follow the opening clock (spec/12 §6.3).
    assert [type(m) for m in channel.messages()] == [Hello, Clock, IdentityNotes]


def test_a_second_hello_is_unexpected() -> None:
    b = node("b")
    channel, session = bare_peer(b)
    channel.send(Hello(VERSIONS, False, None))
    channel.send(Hello(VERSIONS, False, None))
    with pytest.raises(UnexpectedMessage, match="second hello") as caught:
        b.receive(session, channel.data_to_send())
    assert caught.value.code == "unexpected"


def test_a_message_before_hello_is_unexpected() -> None:
    b = node("b")
    channel, session = bare_peer(b)
    channel.send(Ping())
    with pytest.raises(UnexpectedMessage, match="in state hello"):
        b.receive(session, channel.data_to_send())


def test_an_error_message_from_the_peer_ends_the_session_as_remote_error() -> None:
    b = node("b")
    channel, session = bare_peer(b)
    channel.send(Hello(VERSIONS, False, None))
    channel.send(ErrorMessage("flood", "you sent too much"))
    with pytest.raises(ClosedByPeer) as caught:
        b.receive(session, channel.data_to_send())
    assert caught.value.remote_code == "flood" and caught.value.code == "remote-error"
    assert session.error is caught.value and session.state is SessionState.CLOSED


def test_a_partial_response_nobody_asked_for_is_unexpected() -> None:
    b = node("b")
    channel, session = bare_peer(b)
    channel.send(Hello(VERSIONS, False, None))
    channel.send(PartialResponse(3, ()))
    with pytest.raises(UnexpectedMessage, match="no partial request 3"):
        b.receive(session, channel.data_to_send())


def test_entries_before_a_malformed_message_in_the_same_data_are_kept() -> None:
    """spec/09 §1: the messages before the first one that fails count."""
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 5)[0]
    b = node("b", follows=[blog])
    channel, session = bare_peer(b)
    channel.send(Hello(VERSIONS, False, None))
    channel.send(Entries(blog, tuple((e.raw, p) for e, p in a.logbook.read(blog))))
    channel.send(PartialRequest(0, blog, 0))  # encodes, but a count of 0 does not decode
    with pytest.raises(MalformedMessage, match="count"):
        b.receive(session, channel.data_to_send())
    assert held(b, blog) == 5


def test_a_fork_proven_by_bytes_that_end_in_an_error_goes_to_no_failed_session() -> None:
    """Found by the fuzzer: entries that prove a fork, then a malformed message, in one
    read. The proof is stored; nothing more is sent on the failed session (its error
    message is the last thing it says), and no call raises anything but the peer's error."""
    blog = author(1).author.feed("blog")
    mine, other = (Logbook(MemoryStore(), author(1)) for _ in range(2))
    for text in (b"one", b"two", b"three"):
        mine.publish(text, "blog")
    for text in (b"uno", b"dos"):
        other.publish(text, "blog")
    b = node("b", follows=[blog])
    b.logbook.ingest(blog, [(e.raw, p) for e, p in mine.read(blog)])
    b.refresh_local()
    channel, session = bare_peer(b)
    channel.send(Hello(VERSIONS, False, None))
    channel.send(Entries(blog, tuple((e.raw, p) for e, p in other.read(blog))))
    channel.send(PartialRequest(0, blog, 0))  # encodes, but a count of 0 does not decode
    with pytest.raises(MalformedMessage):
        b.receive(session, channel.data_to_send())
    assert [proof.seq for proof in b.logbook.fork_proofs(blog)] == [1]
    channel.receive_data(b.pump(session))
    sent = channel.messages()
    assert isinstance(sent[-1], ErrorMessage) and sent[-1].code == "malformed"
    assert not any(isinstance(m, ForkProofMessage) for m in sent)


def test_a_peer_with_no_common_version_is_unsupported() -> None:
    b = node("b")
    channel, session = bare_peer(b)
    channel.send(Hello((max(VERSIONS) + 1, 1000), False, None))
    with pytest.raises(UnsupportedVersion) as caught:
        b.receive(session, channel.data_to_send())
    assert caught.value.code == "version"


def test_a_connection_to_itself_is_refused() -> None:
    a = node("a")
    link = Link(a, a, a.open_session(initiator=True), a.open_session(initiator=False))
    with pytest.raises(SelfConnection, match="itself") as caught:
        run(link)
    assert isinstance(caught.value, DuplicateConnection) and caught.value.code == "duplicate"
    assert a.router.peers == []


def test_a_second_connection_dialled_by_the_same_node_replaces_the_first_on_both_sides() -> None:
    """spec/08 §2: the old connection may be dead without either side knowing
    (a laptop that slept), so the newer one, dialed by the same node, is kept."""
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 2)[0]
    a.refresh_local()
    b = node("b", follows=[blog])
    first = sync(b, a)
    second = connect(b, a)
    run(second)
    assert Superseded(first.sa) in second.events_a and Superseded(first.sb) in second.events_b
    assert [e for e in first.events_a + first.events_b if isinstance(e, Superseded)] == []
    for side, session in ((a, first.sb), (b, first.sa)):
        side.close_session(session)  # what the node does with a superseded session
    assert [p.session for p in a.router.peers] == [second.sb]
    assert [p.session for p in b.router.peers] == [second.sa]
    a.logbook.publish(b"still here", blog.log_id)
    a.refresh_local()
    run(second)
    assert held(b, blog) == 3


def race(first: Replicator, second: Replicator, lag: int) -> list[Link]:
    """``first`` dials ``second``, which dials back ``lag`` steps later.

    As the node does, a connection is hung up on both sides when either side
    refuses it or marks it superseded. Returns the connections left.
    """
    links = [connect(first, second), connect(second, first)]
    alive = [True, True]
    for rounds in range(100):
        moved = False
        for index, link in enumerate(links):
            if not alive[index] or (index == 1 and rounds < lag):
                continue
            try:
                moved |= link.step()
            except DuplicateConnection:
                alive[index] = False
            superseded = {e.session for each in links for e in each.events_a + each.events_b
                          if isinstance(e, Superseded)}
            if link.sa in superseded or link.sb in superseded:
                alive[index] = False
            if not alive[index]:
                link.close()
        if not moved and rounds >= lag:
            break
    return [link for link, up in zip(links, alive, strict=True) if up]


@pytest.mark.parametrize("lag", [0, 1, 2, 3, 6])
@pytest.mark.parametrize("first_dialler", ["smaller key", "larger key"])
def test_two_nodes_dialling_each_other_keep_the_connection_dialled_by_the_smaller_key(
    first_dialler: str, lag: int
) -> None:
    a = node("a", who=1)
    blog = publish_feeds(a.logbook, 1, 2)[0]
    a.refresh_local()
    b = node("b", follows=[blog])
    smaller, larger = sorted([a, b], key=lambda r: r.local_static)
    first, second = (smaller, larger) if first_dialler == "smaller key" else (larger, smaller)
    (kept,) = race(first, second, lag)
    assert kept.a is smaller
    assert [p.session for p in smaller.router.peers] == [kept.sa]
    assert [p.session for p in larger.router.peers] == [kept.sb]
    a.logbook.publish(b"after the race", blog.log_id)
    a.refresh_local()
    run(kept)
    assert held(b, blog) == 3


def test_a_refused_key_is_refused_at_the_handshake() -> None:
    a, b = node("a"), node("b")
    b.refused.add(a.local_static)
    link = connect(a, b)
    with pytest.raises(PeerRefused) as caught:
        run(link)
    assert caught.value.code == "refused"
    assert b.router.peers == []


def test_a_peer_on_a_longer_branch_of_a_fork_is_not_punished_and_both_prove_the_fork() -> None:
    """spec/10 §6, §8: an authentic entry whose link misses this node's branch means
    the author forked; the peer is honest, so the feed is no longer streamed from it,
    the connection stays open, and the node asks where the histories split and
    makes the fork proof, which reaches the peer too."""
    blog = author(1).author.feed("blog")
    mine = Logbook(MemoryStore(), author(1))
    mine.publish_batch([b"one", b"two", b"three"], "blog")
    other = Logbook(MemoryStore(), author(1))  # the same author on a second device
    other.publish_batch([b"one", b"deux", b"trois", b"quatre"], "blog")
    b = node("b", book=other)
    c = node("c", follows=[blog])
    c.logbook.ingest(blog, [(e.raw, p) for e, p in mine.read(blog)])
    c.refresh_local()
    link = sync(c, b)  # raises if the connection were closed with an error
    assert blog in c.peer(link.sa).diverged  # type: ignore[union-attr]
    assert c.router.source.get(blog) is not c.peer(link.sa)
    # the two histories split at seq 1 (the devices' first entries differ in time)
    for side in (b, c):
        assert [p.seq for p in side.logbook.fork_proofs(blog)] == [1]
        assert blog in side.forked_at and side.local.seq(blog) == 0
    assert c.logbook.store.head(blog).seq == 3  # c still holds its branch


# -- stored bytes checked when served (spec/10 §5.3) ----------------------------------------


def test_an_entry_damaged_on_disk_is_not_served_and_nobody_is_blamed(tmp_path: Path) -> None:
    import sqlite3

    from tidings import SqliteStore

    path = tmp_path / "a.sqlite3"
    a_book = Logbook(SqliteStore(path), author(1))
    for start in range(0, 40, 10):  # appends of ten: 10, 20, 30 and 40 signed
        a_book.publish_batch([b"post %d" % i for i in range(start, start + 10)], "blog")
    blog = a_book.feed("blog")
    db = sqlite3.connect(path)
    raw = db.execute("SELECT entry FROM entries WHERE key & ? = 25", (SEQ_MASK,)).fetchone()[0]
    db.execute("UPDATE entries SET entry = ? WHERE key & ? = 25",
               (raw[:-1] + bytes([raw[-1] ^ 1]), SEQ_MASK))
    db.commit()
    db.close()
    events: list[tuple[str, dict[str, object]]] = []
    a = node("a", book=Logbook(SqliteStore(path), author(1)),
             log=lambda event, **fields: events.append((event, fields)))
    b = node("b", follows=[blog])
    sync(b, a)  # raises if either side closed the connection with an error
    assert held(b, blog) == 20  # up to the signed entry before the damage
    assert [e for e, _ in events] == ["stored-entry-damaged"]
    assert events[0][1]["seq"] == 25
    assert a.local.seq(blog) == 24  # what it notes from now on
    assert all(report.ok for report in b.logbook.verify())


def test_a_payload_damaged_on_disk_is_dropped_and_its_entry_still_served(
    tmp_path: Path,
) -> None:
    import sqlite3

    from tidings import SqliteStore

    path = tmp_path / "a.sqlite3"
    a_book = Logbook(SqliteStore(path), author(1))
    a_book.publish_batch([b"post %d" % i for i in range(10)], "blog")
    blog = a_book.feed("blog")
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET payload = ? WHERE key & ? = 4",
               (b"post 9", SEQ_MASK))  # same size
    db.commit()
    db.close()
    a = node("a", book=Logbook(SqliteStore(path), author(1)))
    b = node("b", follows=[blog])
    sync(b, a)
    assert held(b, blog) == 10
    assert [p for _, p in b.logbook.read(blog)][3] is None  # fetched again elsewhere, later
    assert a.logbook.read(blog)[3][1] is None  # the damaged copy is gone


def test_a_source_serving_other_feeds_is_not_stalled_for_a_feed_that_waits_its_turn() -> None:
    """spec/10 §5.2: a source that claims more of F and sends nothing is stalled after
    STALL_AFTER; one that keeps sending other feeds' entries is given until
    STALL_WHILE_SERVING_AFTER (an honest source serves its owed feeds in turn)."""
    a = node("a", who=1)
    feeds = publish_feeds(a.logbook, 2, 3)
    a.refresh_local()
    b = node("b", follows=feeds)
    link = connect(b, a)
    link.budget_b = 0  # a notes what it holds but streams nothing
    run(link)
    peer = b.peer(link.sa)
    assert peer is not None and [held(b, f) for f in feeds] == [0, 0]
    now = 0.0
    assert b.tick(now) == []
    # Entries of other feeds keep coming: the feeds wait their turn past STALL_AFTER ...
    while now < STALL_WHILE_SERVING_AFTER - 2 * STALL_AFTER:
        now += STALL_AFTER / 2
        peer.useful += 1  # (what ingesting another feed's new entries counts)
        assert b.tick(now) == [], f"stalled at {now} s while the source was serving"
    # ... but not for ever.
    while now <= STALL_WHILE_SERVING_AFTER + STALL_AFTER:
        now += STALL_AFTER / 2
        peer.useful += 1
        if (moved := b.tick(now)):
            break
    assert set(moved) == set(feeds) and peer.stalled == set(feeds)
    # A source that sends nothing at all is stalled after STALL_AFTER.
    c = node("c", follows=feeds)
    quiet = connect(c, a)
    quiet.budget_b = 0
    run(quiet)
    assert c.tick(0.0) == [] and c.tick(STALL_AFTER / 2) == []
    assert set(c.tick(STALL_AFTER)) == set(feeds)
