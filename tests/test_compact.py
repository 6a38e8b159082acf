"""Compact runs of entries, wire version 4 (spec/09 §8), and their vectors.

The vectors (spec/vectors/compact.json) are loaded, never copied; fields are read
from the JSON here, independently of tools/compact_vectors.py. Sessions and
replicators are wired together in memory (tests/replication_helpers.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core.entry import FLAG_SIGNED, decode_entry, encode_body, payload_hash
from tidings.core.ids import FeedId
from tidings.core.verify import (
    Anchor,
    RebuiltRun,
    check_run,
    decode_run,
    extend_in_one_pass,
    extend_rebuilt,
)
from tidings.errors import BadSignature, InvalidData, MalformedMessage
from tidings.replication.session import MAX_UNSOLICITED, EntriesReceived, Failed, Session
from tidings.storage.base import StoredEntry
from tidings.transport.channel import Channel
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.compact import (
    compact_run,
    expand_run,
    feed_fields,
    rebuild_run,
)
from tidings.wire.messages import (
    COMPACT_VERSION,
    VERSIONS,
    CompactEntries,
    CompactItem,
    Entries,
    Hello,
    anchor_seqs,
    decode_message,
    encode_message,
)

from .helpers import author, examples, make_log
from .replication_helpers import connect, held, node, run, sync, transport_key

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "spec" / "vectors" / "compact.json").read_text())


def unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def by_name(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in cases]


def item_of(row: dict[str, Any]) -> CompactItem:
    absent = None
    if row["payload"] is None:
        absent = (row["payload_size"], bytes.fromhex(row["payload_hash"]))
    return CompactItem(row["flags"], row["timestamp"], unhex(row["payload"]), absent,
                       unhex(row["signature"]))


# -- the vectors -----------------------------------------------------------------------


@pytest.mark.parametrize("case", by_name(VECTORS["runs"]))
def test_a_run_compacts_to_the_vector_and_rebuilds_to_its_entries(case: dict[str, Any]) -> None:
    feed = FeedId(bytes.fromhex(case["author"]), case["log_id"])
    entries = [(bytes.fromhex(e["entry"]), unhex(e["payload"])) for e in case["entries"]]
    assert [e["seq"] for e in case["entries"]] == list(
        range(case["first_seq"], case["first_seq"] + len(entries)))
    body = bytes.fromhex(case["body"])
    message = compact_run(feed, entries)
    assert message is not None and encode_message(message) == body
    decoded = decode_message(body)
    assert decoded == CompactEntries(feed, case["first_seq"], bytes.fromhex(case["anchors"]),
                                     tuple(item_of(i) for i in case["items"]))
    assert isinstance(decoded, CompactEntries)
    assert list(expand_run(decoded)) == entries
    assert anchor_seqs(case["first_seq"], len(entries)) == case["anchor_seqs"]
    # The same entries in full: the form of a version 3 session.
    full = bytes.fromhex(case["entries_body"])
    assert decode_message(full) == Entries(feed, tuple(entries))
    assert case["sizes"] == {"compact": len(body), "entries": len(full)}
    assert len(body) < len(full)


@pytest.mark.parametrize("case", by_name(VECTORS["malformed"]))
def test_a_malformed_compact_body_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode_message(bytes.fromhex(case["body"]))
    assert caught.value.code == case["code"] == "malformed"


@pytest.mark.parametrize("case", by_name(VECTORS["rejected"]))
def test_a_tampered_compact_run_rebuilds_into_entries_that_break_the_rule(
        case: dict[str, Any]) -> None:
    message = decode_message(bytes.fromhex(case["body"]))
    assert isinstance(message, CompactEntries)
    rebuilt = expand_run(message)
    known = {int(seq): bytes.fromhex(h) for seq, h in case["held"]["hashes"].items()}
    head = case["held"]["head_seq"]
    anchor = Anchor(message.feed.author_key, message.feed.log_id, head_seq=head, known=known)
    result = check_run(decode_run([e for e, _ in rebuilt], message.feed, head + 1), anchor,
                       [p for _, p in rebuilt])
    assert result.error is not None
    assert (result.error.rule, result.error.seq) == (case["rule"], case["seq"])
    assert case["code"] == "invalid-data"
    # The ingest path for rebuilt entries gives up too (the full path names the rule).
    assert extend_rebuilt(rebuild_run(message), anchor, StoredEntry) is None


def test_the_vectors_cover_every_kind_of_run() -> None:
    items = [i for case in VECTORS["runs"] for i in case["items"]]
    assert {i["flags"] for i in items} == {0, 2, 3}
    assert any(i["timestamp"] is None for i in items)
    assert any(i["payload"] is None for i in items)
    assert any(i["payload"] == "" for i in items)
    assert {len(case["anchor_seqs"]) for case in VECTORS["runs"]} >= {0, 2}


# -- properties ------------------------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> tuple[FeedId, list[tuple[bytes, bytes | None]]]:
    """A window of a log made by the real publisher, some payloads absent."""
    count = draw(st.integers(1, 70))
    per_append = draw(st.integers(1, 70))
    sizes = draw(st.lists(st.sampled_from([0, 1, 23, 24, 200, 256]), min_size=count,
                          max_size=count))
    log, payloads = make_log(count, per_append=per_append,
                             payload=lambda i: bytes([i % 256]) * sizes[i - 1])
    first = draw(st.integers(1, count))
    last = draw(st.integers(first, count))
    absent = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    items = [(e.raw, None if absent[e.seq - 1] else p)
             for e, p in zip(log[first - 1:last], payloads[first - 1:last], strict=True)]
    return log[0].feed, items


@settings(max_examples=examples(60))
@given(runs())
def test_compacting_then_rebuilding_gives_the_same_bytes(
        run_: tuple[FeedId, list[tuple[bytes, bytes | None]]]) -> None:
    feed, items = run_
    message = compact_run(feed, items)
    assert message is not None
    body = encode_message(message)
    decoded = decode_message(body)
    assert decoded == message
    assert isinstance(decoded, CompactEntries)
    assert list(expand_run(decoded)) == items
    # The columns the rebuild makes are what decoding its bytes gives.
    assert_columns_decode(rebuild_run(decoded), items)
    assert len(body) < len(encode_message(Entries(feed, tuple(items))))
    # A server that checked its stored hashes and payloads gives the hashes: same message.
    assert compact_run(feed, items, [decode_entry(raw).hash for raw, _ in items]) == message


def assert_columns_decode(run_: RebuiltRun, items: list[tuple[bytes, bytes | None]]) -> None:
    """Each column of a rebuilt run holds what decode_entry reads from its entry's bytes."""
    entries = [decode_entry(raw) for raw, _ in items]
    assert list(run_.raws) == [raw for raw, _ in items]
    assert list(run_.payloads) == [payload for _, payload in items]
    assert list(run_.hashes) == [e.hash for e in entries]
    assert list(run_.flags) == [e.flags for e in entries]
    assert list(run_.sizes) == [e.payload_size for e in entries]
    assert [run_.first + index for index in range(len(items))] == [e.seq for e in entries]
    assert {(run_.author, run_.log_id)} == {(e.author, e.log_id) for e in entries}


def one_pass_agrees(message: CompactEntries, anchor: Anchor) -> tuple[list[Any], int] | None:
    """extend_rebuilt over the rebuilt entries, asserting it decides exactly as
    extend_in_one_pass does over their bytes."""
    fast = extend_rebuilt(rebuild_run(message), anchor, StoredEntry)
    assert fast == extend_in_one_pass(expand_run(message), anchor, StoredEntry)
    return fast


@settings(max_examples=examples(60))
@given(runs())
def test_rebuilt_entries_are_accepted_as_their_bytes_are(
        run_: tuple[FeedId, list[tuple[bytes, bytes | None]]]) -> None:
    feed, items = run_
    message = compact_run(feed, items)
    assert message is not None
    first = message.first_seq
    known = dict(zip(anchor_seqs(first, len(items)),
                     (message.anchors[i:i + 32] for i in range(0, len(message.anchors), 32)),
                     strict=True))
    anchor = Anchor(feed.author_key, feed.log_id, head_seq=first - 1, known=known)
    done = one_pass_agrees(message, anchor)
    assert done is not None
    rows, _ = done
    assert [(r.raw, r.payload) for r in rows] == items
    # An anchor that names another hash below the run, or another head: given up.
    if first > 1:
        wrong = {seq: bytes(32) if seq == first - 1 else h for seq, h in known.items()}
        assert one_pass_agrees(message, Anchor(feed.author_key, feed.log_id, first - 1,
                                               known=wrong)) is None
    assert one_pass_agrees(message, Anchor(feed.author_key, feed.log_id, first,
                                           known=known)) is None


@settings(max_examples=examples(200))
@given(st.integers(0, 2**64 - 1), st.integers(1, 2**63 - 1), st.integers(0, 2**20),
       st.sampled_from([0, 2, 3]), st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True))
def test_the_rebuilt_body_is_the_deterministic_encoding(
        timestamp: int, seq: int, size: int, flags: int, log_id: str) -> None:
    """expand_run writes bodies by hand: they equal the library's canonical encoder."""
    feed = author(1).author.feed(log_id)
    first = seq
    phash = payload_hash(b"%d" % size)
    anchors = bytes(range(32)) * len(anchor_seqs(first, 1))
    signature = bytes(64) if flags & FLAG_SIGNED else None
    message = CompactEntries(feed, first, anchors,
                             (CompactItem(flags, timestamp, None, (size, phash), signature),))
    ((entry, payload),) = expand_run(message)
    backlink = None if seq == 1 else bytes(range(32))
    lipmaa = None if seq == 1 or len(anchor_seqs(first, 1)) == 1 else bytes(range(32))
    body = encode_body(flags=flags, author=feed.author_key, log_id=log_id, seq=seq,
                       timestamp=timestamp, backlink=backlink, lipmaa_link=lipmaa,
                       payload_size=size, payload_hash=phash)
    assert entry == body + (b"\x58\x40" + signature if signature else b"")
    assert payload is None
    assert feed_fields(feed) in entry


@settings(max_examples=examples(200))
@given(st.data())
def test_a_damaged_compact_run_never_makes_a_verifier_accept_another_entry(
        data: st.DataObject) -> None:
    """Any damage to a compact body is malformed, or rebuilds into entries the verifier
    refuses from the damaged one on: what it accepts is always the author's own."""
    count = data.draw(st.integers(2, 40), label="count")
    log, payloads = make_log(count, per_append=data.draw(st.integers(1, 20)),
                             payload=lambda i: b"p%d" % i)
    first = data.draw(st.integers(2, count), label="first")
    items = [(e.raw, p) for e, p in zip(log[first - 1:], payloads[first - 1:], strict=True)]
    message = compact_run(log[0].feed, items)
    assert message is not None
    body = bytearray(encode_message(message))
    kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]), label="damage")
    at = data.draw(st.integers(0, len(body) - 1), label="at")
    if kind == "flip":
        body[at] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "set":
        body[at] = data.draw(st.integers(0, 255))
    elif kind == "cut":
        del body[at:at + data.draw(st.integers(1, 40))]
    else:
        body[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        damaged = decode_message(bytes(body))
    except MalformedMessage:
        return
    if not isinstance(damaged, CompactEntries):
        return  # the type byte changed: another message, checked by its own rules
    rebuilt = expand_run(damaged)  # total: never raises once the message decoded
    hashes = {e.seq: e.hash for e in log}
    anchor = Anchor(log[0].feed.author_key, log[0].feed.log_id, head_seq=first - 1,
                    known=hashes)
    try:
        entries = decode_run([e for e, _ in rebuilt], log[0].feed, first)
    except Exception as exc:  # another feed named by the damage: refused as it decodes
        assert getattr(exc, "rule", None) is not None
        return
    result = check_run(entries, anchor, [p for _, p in rebuilt])
    assert [e.raw for e in entries[:result.accepted]] == [e for e, _ in items[:result.accepted]]
    fast = one_pass_agrees(damaged, anchor)
    assert fast is None or (result.error is None and fast[1] == result.accepted)


# -- sessions and replicators ----------------------------------------------------------


def blog_node(count: int, *, per_append: int = 50, size: int = 200) -> tuple[Any, FeedId]:
    a = node("a", who=1)
    for start in range(0, count, per_append):
        a.logbook.publish_batch([bytes([i % 256]) * size
                                 for i in range(start, min(count, start + per_append))], "blog")
    a.refresh_local()
    return a, a.logbook.feed("blog")


def test_version_4_peers_stream_compact_runs_and_store_the_signed_bytes() -> None:
    a, blog = blog_node(300)
    b = node("b", follows=[blog])
    link = sync(b, a)
    assert link.sa.version == link.sb.version == COMPACT_VERSION == VERSIONS[-1]
    sent = [m for m in link.to_a if isinstance(m, CompactEntries | Entries)]
    assert sent and all(isinstance(m, CompactEntries) for m in sent)
    assert sum(len(m.items) for m in sent) == 300
    assert [(e.raw, p) for e, p in b.logbook.read(blog)] == \
        [(e.raw, p) for e, p in a.logbook.read(blog)]


@pytest.mark.parametrize("old", ["reader", "server"])
def test_a_version_4_node_speaks_version_3_with_a_version_3_node(old: str) -> None:
    a, blog = blog_node(300)
    b = node("b", follows=[blog])
    link = connect(b, a)
    (link.sa if old == "reader" else link.sb).versions = (2, 3)
    run(link)
    assert link.sa.version == link.sb.version == 3
    sent = [m for m in link.to_a if isinstance(m, CompactEntries | Entries)]
    assert sent and all(isinstance(m, Entries) for m in sent)
    assert held(b, blog) == 300
    # The same log between two version 4 nodes costs fewer bytes.
    c = node("c", follows=[blog])
    compact = sync(c, a)
    assert held(c, blog) == 300
    assert compact.sb.channel.bytes_sent < link.sb.channel.bytes_sent * 0.7


def test_a_new_entry_is_pushed_as_a_compact_run_of_one() -> None:
    a, blog = blog_node(40)
    b = node("b", follows=[blog])
    link = sync(b, a)
    before = len(link.to_a)
    a.logbook.publish_batch([b"one more"], "blog")
    a.refresh_local()
    run(link)
    (pushed,) = [m for m in link.to_a[before:] if isinstance(m, CompactEntries | Entries)]
    assert isinstance(pushed, CompactEntries)
    assert pushed.first_seq == 41 and len(pushed.items) == 1
    assert len(pushed.anchors) == 32 * len(anchor_seqs(41, 1))
    assert held(b, blog) == 41


def test_entries_whose_payloads_the_sender_lacks_travel_with_their_size_and_hash() -> None:
    log, payloads = make_log(30, per_append=10)
    blog = log[0].feed
    a = node("a")
    a.logbook.store.append(blog, [
        StoredEntry(e.seq, e.hash, e.raw, None if e.seq % 3 == 0 else p)
        for e, p in zip(log, payloads, strict=True)])
    a.refresh_local()
    b = node("b", follows=[blog])
    link = sync(b, a)
    sent = [m for m in link.to_a if isinstance(m, CompactEntries)]
    assert any(i.absent is not None for m in sent for i in m.items)
    assert [e.raw for e, _ in b.logbook.read(blog)] == [e.raw for e in log]
    assert [p for _, p in b.logbook.read(blog)] == \
        [None if e.seq % 3 == 0 else p for e, p in zip(log, payloads, strict=True)]


def bare_peer(listener: Any, versions: tuple[int, ...] = VERSIONS) -> tuple[Channel, Session]:
    """A peer that is only a Channel, hellos exchanged: it sends what it is told to."""
    channel = Channel(initiator=True, static_private=transport_key("bare"),
                      network_key=DEFAULT_NETWORK_KEY)
    session = listener.open_session(initiator=False)
    channel.start()
    listener.receive(session, channel.data_to_send())
    channel.receive_data(listener.pump(session))
    channel.send(Hello(versions, False, None))
    listener.receive(session, channel.data_to_send())
    channel.receive_data(listener.pump(session))
    channel.messages()
    return channel, session


def tampered(case_name: str) -> CompactEntries:
    (case,) = [c for c in VECTORS["rejected"] if c["name"] == case_name]
    message = decode_message(bytes.fromhex(case["body"]))
    assert isinstance(message, CompactEntries)
    return message


#: alice's blog of the vectors, in full (the run "blog-whole").
VECTORS_BLOG = [(decode_entry(bytes.fromhex(e["entry"])), unhex(e["payload"]))
                for e in next(c for c in VECTORS["runs"] if c["name"] == "blog-whole")["entries"]]


def serve_blog(replicator: Any, upto: int) -> None:
    blog = VECTORS_BLOG[0][0].feed
    have = held(replicator, blog)
    replicator.logbook.store.append(blog, [StoredEntry(e.seq, e.hash, e.raw, p)
                                           for e, p in VECTORS_BLOG[have:upto]])
    replicator.refresh_local()


def test_a_compact_run_that_rebuilds_into_unsigned_bytes_is_invalid_data() -> None:
    message = tampered("timestamp-changed")
    blog = message.feed
    a, b = node("a"), node("b", follows=[blog])
    serve_blog(a, 14)  # b holds the blog up to 14 (signed), as the vector's receiver does
    sync(b, a)
    assert held(b, blog) == 14
    channel, session = bare_peer(b)
    channel.send(message)
    with pytest.raises(InvalidData) as caught:
        b.receive(session, channel.data_to_send())
    assert isinstance(caught.value.cause, BadSignature)
    assert caught.value.cause.seq == 20 and caught.value.code == "invalid-data"
    assert session.failed and held(b, blog) == 14
    # The node goes on with its other peers.
    serve_blog(a, 30)
    sync(b, a)
    assert held(b, blog) == 30


def test_a_compact_run_at_version_3_is_malformed() -> None:
    blog = FeedId(bytes.fromhex(VECTORS["runs"][0]["author"]), "blog")
    b = node("b", follows=[blog])
    channel, session = bare_peer(b, versions=(2, 3))
    assert session.version == 3
    channel.send(decode_message(bytes.fromhex(VECTORS["runs"][0]["body"])))
    with pytest.raises(MalformedMessage, match="unknown in wire version 3"):
        b.receive(session, channel.data_to_send())
    assert session.failed


def test_compact_runs_of_an_unwanted_feed_count_as_unsolicited() -> None:
    b = node("b")
    channel, session = bare_peer(b)
    run_ = decode_message(bytes.fromhex(VECTORS["runs"][0]["body"]))
    for _ in range(MAX_UNSOLICITED):
        channel.send(run_)
    events = session.receive_data(channel.data_to_send())
    assert not any(isinstance(e, Failed) for e in events) and not session.failed
    channel.send(run_)
    events = session.receive_data(channel.data_to_send())
    assert isinstance(events[-1], Failed) and events[-1].error.code == "flood"


def test_a_run_that_would_not_rebuild_exactly_is_sent_in_full() -> None:
    """compact_run gives None (the caller sends an entries message) for every run
    whose compact form would rebuild into other bytes (spec/09 §8.4)."""
    log, payloads = make_log(20, per_append=5)
    feed = log[0].feed
    items = [(e.raw, p) for e, p in zip(log, payloads, strict=True)]
    other, other_payloads = make_log(20, per_append=5, log_id="diary")
    forked, _ = make_log(20, per_append=5, payload=lambda i: b"another %d" % i)
    cases = {
        "another feed's entries": [(e.raw, p) for e, p in zip(other, other_payloads,
                                                             strict=True)],
        "a gap": items[:5] + items[6:],
        "not ascending": [items[1], items[0]],
        "a payload its entry did not sign": [*items[:3], (items[3][0], b"other"), *items[4:]],
        "an entry of another history": [*items[:10], (forked[10].raw, None), *items[11:]],
        "a trailing byte": [*items[:2], (items[2][0] + b"\x00", items[2][1])],
        "a cut entry": [(items[0][0][:-1], None)],
        "no entries": [],
    }
    assert compact_run(feed, items) is not None
    for name, run_ in cases.items():
        assert compact_run(feed, run_) is None, name
    # A link inside the run that does not name the entry the run holds there.
    assert compact_run(feed, [(forked[9].raw, None), *items[10:]]) is None


def test_a_compact_run_arrives_as_its_entries_decoded_as_rebuilt() -> None:
    case = VECTORS["runs"][0]
    feed = FeedId(bytes.fromhex(case["author"]), case["log_id"])
    b = node("b", follows=[feed])
    channel, session = bare_peer(b)
    channel.send(decode_message(bytes.fromhex(case["body"])))
    (event,) = [e for e in session.receive_data(channel.data_to_send())
                if isinstance(e, EntriesReceived)]
    assert event.items == tuple((bytes.fromhex(e["entry"]), unhex(e["payload"]))
                                for e in case["entries"])
    assert event.decoded is not None
    assert_columns_decode(event.decoded, list(event.items))
    # An entries message leaves the decoding to the node.
    channel.send(Entries(feed, event.items))
    (full,) = [e for e in session.receive_data(channel.data_to_send())
               if isinstance(e, EntriesReceived)]
    assert full.items == event.items and full.decoded is None
