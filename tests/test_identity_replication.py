"""Identity logs between replicators in memory (spec/12 §6.3): the log spreads, device
feeds follow it, revocations and rotations reach nodes that learn of them later, and
bad events end the session with a named rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import Logbook, MemoryStore
from tidings.core.ids import FeedId
from tidings.core.kel import Cut, Revocation, format_identity
from tidings.errors import InvalidData
from tidings.identity import Identity
from tidings.node.identities import merged_view
from tidings.replication.identities import ALL_LOGS, IdentityBook, MemoryIdentities
from tidings.replication.replicator import Replicator
from tidings.wire.messages import IdentityEvents

from .helpers import examples
from .identity_helpers import Owner, key, pub
from .replication_helpers import Link, connect, held, run, sync, transport_key


def device_node(name: str, owner: Owner | None, *, device: str | None = None,
                follow: bool = True, relay: bool = False) -> Replicator:
    """A node whose author key is ``device``'s, holding ``owner``'s log (None: nothing)."""
    book = Logbook(MemoryStore(), Identity(key(device)) if device else None)
    store = MemoryIdentities()
    if owner is not None:
        store.logs[owner.identity] = owner.raws()
    follows = {owner_id(owner): ALL_LOGS} if follow else {}
    return Replicator(book, static_private=transport_key(name), relay=relay,
                      identities=IdentityBook(store, follows))


_IDS: dict[str, bytes] = {}


def owner_id(owner: Owner | None) -> bytes:
    assert owner is not None
    return owner.identity


def reader(owner: Owner, logs: frozenset[str] = ALL_LOGS, name: str = "reader") -> Replicator:
    book = Logbook(MemoryStore(), None)
    return Replicator(book, static_private=transport_key(name),
                      identities=IdentityBook(MemoryIdentities(), {owner.identity: logs}))


def view(node: Replicator, owner: Owner, log_id: str = "blog") -> list[tuple[bytes, int]]:
    state = node.identities.state(owner.identity)
    assert state is not None
    return [(m.item.device_key, m.item.seq) for m in merged_view(node.logbook, state, log_id)]


@pytest.fixture
def owner() -> Owner:
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    return owner


def test_a_follower_gets_the_log_and_every_device_feed(owner: Owner) -> None:
    laptop = device_node("laptop", owner, device="laptop")
    phone = device_node("phone", owner, device="phone")
    for i in range(3):
        laptop.logbook.publish(f"laptop {i}".encode(), "blog")
        phone.logbook.publish(f"phone {i}".encode(), "blog")
    laptop.refresh_local()
    phone.refresh_local()
    follower = reader(owner, frozenset({"blog"}))
    run(connect(follower, laptop), connect(follower, phone))
    state = follower.identities.state(owner.identity)
    assert state is not None and state.status == "active" and len(state.devices) == 2
    assert FeedId(pub("laptop"), "blog") in follower.local.wanted
    items = view(follower, owner)
    assert sorted(items) == sorted([(pub(d), s) for d in ("laptop", "phone") for s in (1, 2, 3)])
    # Every node that holds the same entries shows the same view.
    run(connect(laptop, phone))
    assert view(laptop, owner) == view(phone, owner) == items


def test_a_plain_feed_follow_reads_a_device_feed(owner: Owner) -> None:
    laptop = device_node("laptop", owner, device="laptop")
    laptop.logbook.publish(b"hello", "blog")
    laptop.refresh_local()
    feed = FeedId(pub("laptop"), "blog")
    plain = Replicator(Logbook(MemoryStore(), None), static_private=transport_key("plain"),
                       follows=[feed])
    sync(plain, laptop)
    assert plain.logbook.head(feed) is not None
    assert plain.identities.held() == []


def test_a_revocation_reaches_a_node_that_was_offline(owner: Owner) -> None:
    laptop = device_node("laptop", owner, device="laptop")
    for i in range(2):
        laptop.logbook.publish(f"before {i}".encode(), "blog")
    laptop.refresh_local()
    relay = reader(owner, name="third")
    offline = reader(owner, name="offline")
    sync(relay, laptop)
    sync(offline, laptop)
    cut_hash = laptop.logbook.head(FeedId(pub("laptop"), "blog"))
    assert cut_hash is not None
    # The phone (holding the root here) revokes the lost laptop, cut at seq 2.
    owner.revoke("laptop", [Cut("blog", 2, cut_hash.hash)])
    phone = device_node("phone", owner, device="phone")
    sync(relay, phone)
    state = relay.identities.state(owner.identity)
    assert state is not None and not state.devices[pub("laptop")].active
    # The thief goes on writing with the laptop's key.
    for i in range(3):
        laptop.logbook.publish(f"after {i}".encode(), "blog")
    laptop.refresh_local()
    sync(relay, laptop)
    assert relay.logbook.head(FeedId(pub("laptop"), "blog")).seq == 2  # type: ignore[union-attr]
    # A node offline during the revocation learns it from the third node.
    sync(offline, relay)
    state = offline.identities.state(owner.identity)
    assert state is not None and not state.devices[pub("laptop")].active
    sync(offline, laptop)
    assert [s for k, s in view(offline, owner) if k == pub("laptop")] == [1, 2]


def test_a_rotation_makes_the_thiefs_events_superseded(owner: Owner) -> None:
    node_a = reader(owner, name="a")
    holder = device_node("holder", owner, device="phone")
    sync(node_a, holder)
    # A thief with the current root key adds its own device...
    thief_event = owner.add("thief", keep=False)
    thief = device_node("thiefnode", None, device="thief", follow=False)
    thief.identities.add(owner.identity, [*owner.raws(), thief_event.raw])
    thief.identities.set_follows({owner.identity: ALL_LOGS})
    # ... and the owner rotates with the pre-committed next key from the event before.
    owner.rotate()
    holder2 = device_node("holder2", owner, device="phone")
    node_b = reader(owner, name="b")
    sync(node_b, thief)
    sync(node_b, holder2)
    sync(node_a, holder2)
    sync(node_a, thief)
    for node in (node_a, node_b):
        state = node.identities.state(owner.identity)
        assert state is not None and state.status == "active"
        assert pub("thief") not in state.devices
        assert state.outcomes.get(thief_event.hash) in (None, "superseded")


def test_a_forged_event_ends_the_session_with_its_rule(owner: Owner) -> None:
    honest = reader(owner, name="honest")
    liar = device_node("liar", owner, device="laptop")
    link = connect(honest, liar)
    run(link)
    forged = bytearray(owner.add("mallory", keep=False).raw)
    forged[-1] ^= 1
    link.sb.send_identity_events(None, owner.identity, [bytes(forged)])
    with pytest.raises(InvalidData) as caught:
        run(link)
    assert caught.value.cause.rule == "bad-signature"  # type: ignore[attr-defined]
    assert format_identity(owner.identity) in str(caught.value)


def test_identity_messages_are_refused_on_wire_version_2(owner: Owner) -> None:
    from tidings.wire import messages

    a = reader(owner, name="a")
    b = device_node("b", owner, device="laptop")
    link = connect(a, b)
    original = messages.VERSIONS
    import tidings.replication.session as session_module
    session_module.VERSIONS = (2,)  # type: ignore[assignment]
    try:
        run(link)
        assert link.sa.version == 2 and not link.sa.speaks_identities
        assert a.identities.state(owner.identity).status == "unknown"  # type: ignore[union-attr]
        link.sb.channel.send(IdentityEvents(None, owner.identity, (), 0))
        with pytest.raises(Exception) as caught:
            run(link)
        assert getattr(caught.value, "code", None) == "malformed"
    finally:
        session_module.VERSIONS = original  # type: ignore[assignment]


def test_rotation_with_revocation_spreads(owner: Owner) -> None:
    owner.rotate([Revocation(pub("laptop"), ())])
    node = reader(owner)
    sync(node, device_node("holder", owner, device="phone"))
    state = node.identities.state(owner.identity)
    assert state is not None and state.rotations and not state.devices[pub("laptop")].active


@given(
    posts=st.lists(st.tuples(st.sampled_from(["laptop", "phone"]), st.integers(0, 2)),
                   min_size=1, max_size=12),
    order=st.permutations([(0, 1), (1, 2), (0, 2), (2, 3), (3, 0)]),
)
@settings(max_examples=examples(25), deadline=None)
def test_every_node_that_holds_the_same_entries_shows_the_same_view(
        posts: list[tuple[str, int]], order: list[tuple[int, int]]) -> None:
    """spec/12 §7.3: entries written on two devices, held by four nodes in any split,
    exchanged in any order: every node ends with the same entries and the same view."""
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    devices = {name: device_node(name, owner, device=name) for name in ("laptop", "phone")}
    for index, (device, _) in enumerate(posts):
        devices[device].logbook.publish(f"post {index}".encode(), "blog")
    nodes = [devices["laptop"], devices["phone"], reader(owner, name="r1"),
             reader(owner, name="r2")]
    for node in nodes:
        node.refresh_local()
    # Each reader first meets one device only (its partition), then the nodes meet
    # in the drawn order, twice round so that every entry reaches every node.
    def meet(a: Replicator, b: Replicator) -> None:
        sync(a, b).close()

    for where, (_, home) in zip(nodes[2:], posts[:2], strict=False):
        meet(where, nodes[home % 2])
    for _ in range(2):
        for a, b in order:
            meet(nodes[a], nodes[b])
    views = [view(node, owner) for node in nodes]
    assert all(v == views[0] for v in views)
    assert len(views[0]) == len(posts)


def _stale_key(owner: Owner) -> bytes:
    owner.rotate()  # root0 is replaced by root1
    return owner.add("mallory", signer=key("root0"), keep=False).raw


def _wrong_next_key(owner: Owner) -> bytes:
    from tidings.core import kel

    return kel.make_rotation(key("thief-next"), owner.state(), pub("thief-root"),
                             pub("thief-next2")).raw


def _other_identity(owner: Owner) -> bytes:
    other = Owner("other-")
    return other.add("mallory", keep=False).raw


@pytest.mark.parametrize(("make", "rule"), [
    (_stale_key, "stale-key"),
    (_wrong_next_key, "next-key-mismatch"),
    (_other_identity, "wrong-identity"),
])
def test_bad_events_end_the_session_with_their_rule(owner: Owner, make: object,
                                                     rule: str) -> None:
    """A device certified by a rotated-away root, a rotation that does not match the
    pre-commitment, another identity's event: refused with the rule, stored nowhere."""
    bad = make(owner)  # type: ignore[operator]
    honest = reader(owner, name="honest")
    liar = device_node("liar", owner, device="laptop")
    link = connect(honest, liar)
    run(link)
    held_before = honest.identities.logs[owner.identity].events()
    link.sb.send_identity_events(None, owner.identity, [bad])
    with pytest.raises(InvalidData) as caught:
        run(link)
    assert caught.value.cause.rule == rule  # type: ignore[attr-defined]
    assert honest.identities.logs[owner.identity].events() == held_before


def test_a_peer_whose_note_promises_more_than_it_serves_is_asked_a_bounded_number_of_times(
        owner: Owner) -> None:
    from tidings.replication.replicator import MAX_IDENTITY_ASKS
    from tidings.wire.messages import IdentityNote, IdentityRequest

    honest = reader(owner, name="honest")
    liar = device_node("liar", owner, device="laptop")
    link = connect(honest, liar)
    run(link)
    assert honest.caught_up(link.sa)
    link.sb.send_identity_notes([IdentityNote(owner.identity, 50, b"\x01" * 8, 1)])
    run(link)
    asks = [m for m in link.to_b if isinstance(m, IdentityRequest)]
    assert 1 < len(asks) <= MAX_IDENTITY_ASKS + 1
    assert honest.caught_up(link.sa)  # it stopped asking; the sync can end


def test_logs_a_peer_named_before_the_device_add_are_fetched_once_it_arrives(
        owner: Owner) -> None:
    # The tablet's node holds the identity log as it was before the tablet was added
    # (so it cannot tell the reader), and notes its "notes" log, a log name the reader
    # has not seen anywhere else.
    before = owner.raws()
    owner.add("tablet")
    store = MemoryIdentities()
    store.logs[owner.identity] = before
    tablet = Replicator(Logbook(MemoryStore(), Identity(key("tablet"))),
                        static_private=transport_key("tablet"),
                        identities=IdentityBook(store, {owner.identity: ALL_LOGS}))
    tablet.logbook.publish(b"scribbled", "notes")
    tablet.refresh_local()
    feed = FeedId(pub("tablet"), "notes")
    follower = reader(owner)  # every log of the author
    link = connect(follower, tablet)
    run(link)
    assert feed not in follower.local.wanted  # not a device of the author yet
    # The device-add arrives later, from a node that holds the whole log and no
    # tablet feed at all; the session with the tablet's node is still open.
    sync(follower, device_node("phone", owner, device="phone"))
    assert feed in follower.local.wanted
    run(link)
    assert held(follower, feed) == 1


def test_the_logs_remembered_for_keys_not_yet_devices_are_bounded() -> None:
    from tidings.replication.identities import MAX_UNPLACED_KEYS

    book = IdentityBook()
    for i in range(MAX_UNPLACED_KEYS + 10):
        book.learn_feeds([FeedId(i.to_bytes(32, "big"), "blog")])
    assert len(book.unplaced_logs) == MAX_UNPLACED_KEYS
    # The oldest went first; the newest are kept.
    assert (MAX_UNPLACED_KEYS + 9).to_bytes(32, "big") in book.unplaced_logs
    assert (0).to_bytes(32, "big") not in book.unplaced_logs


@settings(max_examples=examples(40))
@given(keys=st.lists(st.integers(0, 30), min_size=0, max_size=60),
       logs=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=60),
       bound=st.integers(1, 12), sort=st.booleans())
def test_many_feeds_at_once_are_remembered_as_one_at_a_time(
    keys: list[int], logs: list[str], bound: int, sort: bool,
) -> None:
    """learn_feeds of many feeds (a client's store at start, grouped by key when sorted)
    leaves the cache exactly as learning them one at a time does, evictions included."""
    from unittest import mock

    from tidings.replication import identities

    feeds = [FeedId(k.to_bytes(32, "big"), log) for k, log in zip(keys, logs * 60, strict=False)]
    if sort:
        feeds.sort(key=lambda f: (f.author_key, f.log_id))
    with mock.patch.object(identities, "MAX_UNPLACED_KEYS", bound), \
            mock.patch.object(identities, "MAX_LOGS_PER_DEVICE", 2):
        at_once, one_by_one = IdentityBook(), IdentityBook()
        at_once.learn_feeds(feeds)
        for feed in feeds:
            one_by_one.learn_feeds([feed])
    assert list(at_once.unplaced_logs.items()) == list(one_by_one.unplaced_logs.items())


def test_the_authors_about_is_the_newest_across_devices(owner: Owner) -> None:
    from tidings.content import About, encode
    from tidings.node.identities import identity_about

    store = MemoryStore()
    # The device whose key sorts first wrote the older about: the newest counts.
    first, second = sorted(("laptop", "phone"), key=pub)
    older = Logbook(store, Identity(key(first)), clock=lambda: 1_000)
    newer = Logbook(store, Identity(key(second)), clock=lambda: 2_000)
    state = owner.state()
    assert identity_about(Logbook(store), state) is None
    older.publish(encode(About("Old name")), "about")
    assert identity_about(Logbook(store), state) == About("Old name")
    newer.publish(encode(About("New name")), "about")
    assert identity_about(Logbook(store), state) == About("New name")
    # Once the newer device is revoked with a cut before its about, the older counts.
    owner.revoke(second)
    assert identity_about(Logbook(store), owner.state()) == About("Old name")


def _caught_up_holds_everything(follower: Replicator, hub: Replicator,
                                feeds: list[FeedId]) -> None:
    """Step one session until the follower first says it is caught up: by then it
    holds every entry of ``feeds`` the hub holds (what a one-shot sync relies on)."""
    link = connect(follower, hub)
    for _ in range(200):
        moved = link.step()
        if follower.caught_up(link.sa):
            break
        assert moved, "the session went quiet before the follower was caught up"
    else:
        raise AssertionError("never caught up")
    assert {f: held(follower, f) for f in feeds} == {f: held(hub, f) for f in feeds}


def _hub_with_both_devices(owner: Owner, extra_feeds: int = 0) -> tuple[Replicator, list[FeedId]]:
    laptop = device_node("laptop", owner, device="laptop")
    phone = device_node("phone", owner, device="phone")
    for i in range(3):
        laptop.logbook.publish(f"laptop {i}".encode(), "blog")
        phone.logbook.publish(f"phone {i}".encode(), "blog")
    for i in range(extra_feeds):  # feeds the follower does not want, noted first
        other = Logbook(laptop.logbook.store, Identity(key(f"stranger {i}")))
        other.publish(b"unrelated", "blog")
    laptop.refresh_local()
    phone.refresh_local()
    sync(laptop, phone)  # the laptop now holds the phone's feed too
    feeds = [FeedId(pub(d), "blog") for d in ("laptop", "phone")]
    assert all(held(laptop, f) == 3 for f in feeds)
    return laptop, feeds


def test_one_session_learns_the_devices_and_fetches_their_feeds(owner: Owner) -> None:
    # The hub's notes of the device feeds come before the identity log that places
    # the devices: they are kept aside and taken back once the log arrives, and
    # the follower is caught up only once it holds both devices' entries.
    hub, feeds = _hub_with_both_devices(owner)
    _caught_up_holds_everything(reader(owner), hub, feeds)


def test_one_session_suffices_when_the_notes_kept_aside_overflow(
        owner: Owner, monkeypatch: pytest.MonkeyPatch) -> None:
    # With the notes kept aside evicted (the hub names more unwanted feeds than the
    # bound), the follower asks again: the hub answers each new want with its note
    # (spec/10 §5.5), and the follower waits for those answers before it is caught up.
    from tidings.replication import session as session_module

    monkeypatch.setattr(session_module, "MAX_UNKEPT_NOTES", 2)
    hub, feeds = _hub_with_both_devices(owner, extra_feeds=6)
    follower = reader(owner)
    _caught_up_holds_everything(follower, hub, feeds)
    peer_session = next(iter(follower.peers))
    assert peer_session._unkept_evicted  # the fallback was what made it work


def test_answers_to_wants_of_feeds_not_held_are_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A peer that newly wants feeds this node neither holds nor wants gets a (0, 0)
    # note for each (so a reader that lost its notes need not wait), up to the bound,
    # counted across sessions (the answers stay in the remembered clock).
    from tidings.replication import session as session_module
    from tidings.wire.messages import Clock

    from .replication_helpers import node

    monkeypatch.setattr(session_module, "MAX_UNKEPT_ANSWERS", 3)
    asker, other = node("asker"), node("other")
    link = connect(asker, other)
    run(link)
    wanted = [FeedId(bytes([i]) * 32, "blog") for i in range(1, 6)]
    asker.set_follows(wanted)
    run(link)
    answered = {feed for message in link.received(asker) if isinstance(message, Clock)
                for feed, note in message.notes if feed in wanted}
    assert len(answered) == 3
    assert all(other.local.seq(f) == 0 for f in wanted)
    link.close()
    # The next session starts from the remembered clocks: no room for more answers.
    asker.set_follows([])
    again = connect(asker, other)
    run(again)
    asker.set_follows([FeedId(bytes([9]) * 32, "blog")])
    run(again)
    later = {feed for message in again.received(asker) if isinstance(message, Clock)
             for feed, _ in message.notes if feed == FeedId(bytes([9]) * 32, "blog")}
    assert not later


def test_a_feed_followed_before_its_first_entry_streams_once_it_has_one() -> None:
    # The reader wants the author's feed before the author has written to it: the
    # author holds nothing of it then, so it sets the reader's eager note aside (and
    # answers it with a (0, 0) note). Its first entry makes the feed held: the note
    # set aside counts again, and the entry streams without another word from the
    # reader (a three-node ring of examples/learning_network.py found this).
    from .helpers import author
    from .replication_helpers import node

    writer, follower = node("writer", who=1), node("follower")
    link = connect(follower, writer)
    run(link)
    feed = author(1).author.feed("main")
    follower.set_follows([feed])
    run(link)
    writer.logbook.publish(b"first", "main")
    writer.refresh_local()
    run(link)
    assert held(follower, feed) == 1
    writer.logbook.publish(b"second", "main")
    writer.refresh_local()
    run(link)
    assert held(follower, feed) == 2


def test_a_want_the_peer_never_answers_is_awaited_for_a_bounded_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the peer's bound on answers (or a lost answer), a sync must still end: the
    # replicator's tick stops waiting after AWAIT_ANSWER_AFTER (spec/10 §10 item 3).
    from tidings.replication import session as session_module
    from tidings.replication.replicator import AWAIT_ANSWER_AFTER

    from .replication_helpers import node

    monkeypatch.setattr(session_module, "MAX_UNKEPT_ANSWERS", 3)
    asker, other = node("asker"), node("other")
    link = connect(asker, other)
    run(link)
    link.sa._unkept_evicted = True  # (as if the peer had named more feeds than kept aside)
    wanted = [FeedId(bytes([i]) * 32, "blog") for i in range(1, 6)]
    asker.set_follows(wanted)
    run(link)
    assert len(link.sa.awaiting) == 2  # 3 answered, 2 past the peer's bound
    assert not asker.caught_up(link.sa)
    asker.tick(100.0)
    asker.tick(100.0 + AWAIT_ANSWER_AFTER / 2)
    assert not asker.caught_up(link.sa)
    asker.tick(100.0 + AWAIT_ANSWER_AFTER)
    assert not link.sa.awaiting and asker.caught_up(link.sa)


def test_a_version_3_peer_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # Answers to new wants came with wire version 4: on a version 3 session nothing is
    # awaited (a feed noted before and dropped comes with the next session).
    from .replication_helpers import node

    asker, other = node("asker"), node("other")
    sa = asker.open_session(initiator=True)
    sb = other.open_session(initiator=False)
    sb.versions = (2, 3)
    link = Link(asker, other, sa, sb)
    run(link)
    assert sa.version == 3
    sa._unkept_evicted = True
    asker.set_follows([FeedId(bytes([1]) * 32, "blog")])
    assert not sa.awaiting  # (at version 4 the feed would wait for the answer)
    run(link)
    assert asker.caught_up(sa)


def test_device_feeds_named_before_the_identity_was_followed_come_after_a_restart(
        owner: Owner) -> None:
    # The reader synced with the hub before it followed the identity: the hub's notes of
    # the device feeds were set aside and remembered with the clocks. A new process of
    # the reader follows the identity: the hub opens with a delta that does not name
    # those feeds again, and the reader learns them from the notes it remembered.
    from tidings.replication.replicator import MemoryClocks
    from tidings.wire.messages import Clock

    hub, feeds = _hub_with_both_devices(owner)
    book, memory = Logbook(MemoryStore(), None), MemoryClocks()
    before = Replicator(book, static_private=transport_key("reader"), memory=memory)
    sync(before, hub).close()
    assert all(held(before, f) == 0 for f in feeds)
    after = Replicator(book, static_private=transport_key("reader"), memory=memory,
                       identities=IdentityBook(MemoryIdentities(), {owner.identity: ALL_LOGS}))
    link = connect(after, hub)
    run(link)
    opening = next(m for m in link.to_a if isinstance(m, Clock))  # (one message: no notes)
    assert opening.final and not opening.reset and not opening.notes
    assert all(held(after, f) == 3 for f in feeds)


def test_device_feeds_remembered_aside_come_though_the_bound_is_full_when_they_load(
        owner: Owner) -> None:
    # As above, but another session fills the node's bound on notes set aside: the
    # remembered notes cannot all be taken back, so the hello names no digest, the hub
    # sends its whole clock, and the reader learns the device feeds from it.
    from tidings.replication.replicator import MemoryClocks

    from .replication_helpers import busy_with_notes_aside

    hub, feeds = _hub_with_both_devices(owner)
    book, memory = Logbook(MemoryStore(), None), MemoryClocks()
    sync(Replicator(book, static_private=transport_key("reader"), memory=memory), hub).close()
    after = Replicator(book, static_private=transport_key("reader"), memory=memory,
                       identities=IdentityBook(MemoryIdentities(), {owner.identity: ALL_LOGS}))
    busy_with_notes_aside(after, 2)
    link = connect(after, hub)
    run(link)
    assert after.caught_up(link.sa)
    assert all(held(after, f) == 3 for f in feeds)
