"""Blobs between replicators in memory (spec/13 §8, §9): requests, answers, several
peers, a lying peer, resuming from the verified chunks, the fetch policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tidings import Logbook, MemoryStore
from tidings.core.blob import CHUNK_SIZE, BlobId, blob_id_of
from tidings.core.content import Attachment, Post, encode
from tidings.errors import InvalidData
from tidings.replication.blob_fetch import BlobStored
from tidings.replication.blob_policy import BlobPolicy
from tidings.replication.replicator import Replicator
from tidings.storage.blobs import BlobStore
from tidings.wire.messages import BlobData

from .helpers import author
from .replication_helpers import connect, run, tap, transport_key


def make(tmp_path: Path, name: str, *, who: int | None = None, policy: BlobPolicy | None = None,
         follows: tuple = (), **options: object) -> Replicator:
    book = Logbook(MemoryStore(), author(who) if who is not None else None)
    store = BlobStore(tmp_path / name / "blobs")
    return Replicator(book, static_private=transport_key(name), blobs=store,
                      blob_policy=policy, follows=follows, **options)  # type: ignore[arg-type]


def publish_episode(node: Replicator, data: bytes) -> BlobId:
    assert node.blobs is not None
    blob = node.blobs.store.import_bytes(data)
    node.logbook.publish(encode(Post("episode", title="Ep 1", attachments=(
        Attachment.of_blob(blob, "audio/mpeg"),))), "podcast")
    node.refresh_local()
    return blob


def whole(node: Replicator, blob: BlobId) -> bytes:
    assert node.blobs is not None
    return b"".join(node.blobs.store.iter_range(blob))


def test_a_follower_fetches_the_attachment_of_a_new_post(tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK_SIZE + 123)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    reader = make(tmp_path, "reader", follows=(feed,))
    link = connect(reader, alice)
    run(link)
    assert whole(reader, blob) == data
    assert any(isinstance(e, BlobStored) and e.complete for e in link.events_a)


def test_the_policy_leaves_large_blobs_and_none_fetches_nothing(tmp_path: Path) -> None:
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, os.urandom(3 * CHUNK_SIZE))
    feed = next(iter(alice.local.heads))
    small = make(tmp_path, "small", follows=(feed,), policy=BlobPolicy(limit=CHUNK_SIZE))
    none = make(tmp_path, "none", follows=(feed,),
                policy=BlobPolicy(limit=None, feeds={feed: 0}))
    run(connect(small, alice), connect(none, alice))
    for node in (small, none):
        assert node.local.seq(feed) == 1
        assert node.blobs is not None and not node.blobs.store.has(blob)


def test_two_peers_share_a_download(tmp_path: Path) -> None:
    data = os.urandom(200 * CHUNK_SIZE)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    relay = make(tmp_path, "relay", follows=(feed,))
    run(connect(relay, alice))
    assert whole(relay, blob) == data
    reader = make(tmp_path, "reader", follows=(feed,))
    one, two = connect(reader, alice), connect(reader, relay)
    run(one, two)
    assert whole(reader, blob) == data
    served = [link.sb.blobs.bytes_sent for link in (one, two)]
    assert all(s > 0 for s in served) and sum(served) == len(data), served


def test_a_corrupted_chunk_cuts_the_peer_off_and_the_other_completes(tmp_path: Path) -> None:
    data = os.urandom(40 * CHUNK_SIZE)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    liar = make(tmp_path, "liar", follows=(feed,))
    run(connect(liar, alice))
    reader = make(tmp_path, "reader", follows=(feed,))
    bad, good = connect(reader, liar), connect(reader, alice)
    received = tap(bad.sa)
    # The liar flips a byte of chunk 7 as it sends it.
    real = liar.blobs.store.chunks  # type: ignore[union-attr]

    def corrupt(blob_id: BlobId, indexes: list[int]) -> list[tuple[int, bytes, bytes]]:
        return [(i, bytes([d[0] ^ 1]) + d[1:] if i == 7 else d, p)
                for i, d, p in real(blob_id, indexes)]

    liar.blobs.store.chunks = corrupt  # type: ignore[union-attr,method-assign]
    with pytest.raises(InvalidData, match="chunk 7: blob-chunk-proof"):
        run(bad)
    assert bad.sa.failed
    held = reader.blobs.store.held(blob)  # type: ignore[union-attr]
    assert [i for i in range(40) if held[i >> 3] >> (i & 7) & 1] == list(range(7))
    assert any(isinstance(m, BlobData) and any(c[0] == 7 for c in m.chunks) for m in received)
    bad.close()
    run(good)
    assert whole(reader, blob) == data


def test_a_download_resumes_from_the_chunks_held(tmp_path: Path) -> None:
    data = os.urandom(64 * CHUNK_SIZE)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    reader = make(tmp_path, "reader", follows=(feed,))
    reader.blobs.store.put_chunks(blob, [  # type: ignore[union-attr]
        (i, *alice.blobs.store.chunk(blob, i)) for i in range(0, 40)])  # type: ignore[union-attr]
    reader.blobs.store.close()  # type: ignore[union-attr]
    again = make(tmp_path, "reader", follows=(feed,))
    assert blob in again.blobs.wants  # type: ignore[union-attr]
    link = connect(again, alice)
    run(link)
    assert whole(again, blob) == data
    assert link.sb.blobs.bytes_sent == 24 * CHUNK_SIZE


def test_a_relay_keeps_the_blobs_of_the_feeds_it_relays_within_its_quota(
        tmp_path: Path) -> None:
    alice = make(tmp_path, "alice", who=1)
    first = publish_episode(alice, os.urandom(20 * CHUNK_SIZE))
    book = Logbook(MemoryStore())
    # Room for one blob and a half: the older, unpinned one is evicted for the newer.
    store = BlobStore(tmp_path / "relay" / "blobs", quota=30 * CHUNK_SIZE)
    relay = Replicator(book, static_private=transport_key("relay"), blobs=store, relay=True)
    link = connect(relay, alice)
    run(link)
    assert store.has(first)
    second = publish_episode(alice, os.urandom(20 * CHUNK_SIZE))
    run(link)
    assert store.has(second) and not store.has(first)
    assert store.usage() <= 30 * CHUNK_SIZE


def test_blob_messages_at_wire_version_2_are_malformed(tmp_path: Path) -> None:
    from tidings.errors import MalformedMessage
    from tidings.wire.messages import BlobQuery, Hello

    from .test_session import BLOB, authenticated, deliver

    peer, session = authenticated()
    session.start()
    deliver(peer, session, Hello((2,), False, None))
    assert session.version == 2
    events = deliver(peer, session, BlobQuery(1, BLOB, True))
    assert isinstance(events[-1].error, MalformedMessage)  # type: ignore[attr-defined]


def test_a_flood_of_blob_requests_closes_the_connection() -> None:
    from tidings.errors import PeerFlooding
    from tidings.wire.messages import BlobRequest, Clock, Hello

    from .test_session import BLOB, authenticated, deliver

    peer, session = authenticated()
    session.start()
    deliver(peer, session, Hello((2, 3), False, None), Clock(True, (), True))
    events = deliver(peer, session, *(BlobRequest(i, BLOB, ((0, 1),)) for i in range(65)))
    assert isinstance(events[-1].error, PeerFlooding)  # type: ignore[attr-defined]


def test_chunks_a_peer_leaves_out_are_asked_of_another(tmp_path: Path) -> None:
    """A peer that says it holds the blob and sends nothing is not asked again; the
    chunks come from the peer that has them."""
    data = os.urandom(40 * CHUNK_SIZE)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    boaster = make(tmp_path, "boaster", follows=(feed,), policy=BlobPolicy(limit=0))
    run(connect(boaster, alice))
    # It holds the post, not the blob, yet claims the whole blob.
    boaster.blobs.store.held = lambda b: bytes(b"\xff" * 5)  # type: ignore[union-attr,method-assign]
    boaster.blobs.store.has = lambda b: True  # type: ignore[union-attr,method-assign]
    reader = make(tmp_path, "reader", follows=(feed,))
    liar, honest = connect(reader, boaster), connect(reader, alice)
    run(liar, honest)
    assert whole(reader, blob) == data
    assert liar.sb.blobs.bytes_sent == 0 and not liar.sa.failed


def test_a_removed_blob_is_not_fetched_again_by_policy_until_asked(tmp_path: Path) -> None:
    from tidings.core.ids import FeedId
    from tidings.replication.blob_fetch import BlobFetcher

    data = os.urandom(3 * CHUNK_SIZE)
    with BlobStore(tmp_path / "blobs") as store:
        blob = store.import_bytes(data, pin=False)
        assert store.remove(blob) and store.was_removed(blob)
    post = encode(Post("episode", attachments=(
        Attachment(None, "audio/mpeg", blob.size, blob=blob),)))
    feed = FeedId(bytes(32), "podcast")
    with BlobStore(tmp_path / "blobs") as store:  # remembered across a restart
        assert store.was_removed(blob)
        fetcher = BlobFetcher(store, BlobPolicy(limit=None))
        fetcher.scan(feed, [(b"", post)])
        assert blob not in fetcher.wants  # the policy does not bring it back
        assert fetcher.want(blob)  # asked for (`tidings blob get`): fetched again
        assert blob in fetcher.wants and not store.was_removed(blob)
    with BlobStore(tmp_path / "blobs") as store:
        assert not store.was_removed(blob)
        assert (tmp_path / "blobs" / "removed").stat().st_mode & 0o777 == 0o600


def test_a_run_wants_the_blobs_its_posts_attach_and_nothing_for_other_payloads(
        tmp_path: Path) -> None:
    """Only content (a CBOR map) can attach a blob: a run of other payloads wants
    nothing, even one that holds the bytes "blob"; a post among them is found."""
    from tidings.core.ids import FeedId
    from tidings.replication.blob_fetch import BlobFetcher

    blob = blob_id_of(os.urandom(3 * CHUNK_SIZE))
    post = encode(Post("episode", attachments=(
        Attachment(None, "audio/mpeg", blob.size, blob=blob),)))
    others = [(b"", b"a blob of text"), (b"", None), (b"", b"\xa0"), (b"", post[1:])]
    feed = FeedId(bytes(32), "podcast")
    with BlobStore(tmp_path / "blobs") as store:
        fetcher = BlobFetcher(store, BlobPolicy(limit=None))
        fetcher.scan(feed, others)
        assert not fetcher.wants
        fetcher.scan(feed, [*others, (b"", post), (b"", b"more")])
        assert list(fetcher.wants) == [blob]


def test_written_behind_chunks_are_held_only_once_durable(tmp_path: Path) -> None:
    """The node writes checked chunks in a thread of their own (write_behind): until
    written() they are not held, so no reader or peer sees them; a blob dropped while
    its chunks are being written is not made again."""
    data = os.urandom(300 * CHUNK_SIZE + 7)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    reader = make(tmp_path, "reader", follows=(feed,))
    fetcher = reader.blobs
    assert fetcher is not None
    fetcher.write_behind = True
    link = connect(reader, alice)
    for _ in range(100):
        run(link)
        if fetcher.store.has(blob):
            break
        assert fetcher.flush_wanted, "checked chunks wait to be written, the fetch not done"
        before = fetcher.store.held(blob)
        batches = fetcher.take_unwritten()
        assert batches and not fetcher.flush_wanted
        written = fetcher.write_batch(batches)
        assert fetcher.store.held(blob) != before  # bits set only after the fsyncs
        stored = fetcher.written(written)
        assert stored and all(s.blob == blob for s in stored)
    assert whole(reader, blob) == data
    assert link.sb.blobs.bytes_sent == len(data)  # nothing asked twice

    # Dropped (and removed) between taking a batch and writing it: not made again.
    other = publish_episode(alice, os.urandom(3 * CHUNK_SIZE))
    run(link)
    batches = fetcher.take_unwritten()
    assert [b for b, _ in batches] == [other]
    fetcher.drop(other)
    fetcher.store.remove(other)
    fetcher.written(fetcher.write_batch(batches))
    assert fetcher.store.info(other) is None and other not in fetcher.wants

    # Dropped, then asked for again, while a batch of it is written: it completes.
    third_data = os.urandom(5 * CHUNK_SIZE)
    third = publish_episode(alice, third_data)
    run(link)
    batches = fetcher.take_unwritten()
    fetcher.drop(third)
    fetcher.store.remove(third)
    assert fetcher.want(third)
    fetcher.written(fetcher.write_batch(batches))
    for _ in range(10):
        run(link)
        if fetcher.store.has(third):
            break
        fetcher.written(fetcher.write_batch(fetcher.take_unwritten()))
    assert whole(reader, third) == third_data and third not in fetcher.wants


def test_the_fetch_window_starts_small_and_grows_as_the_peer_answers(tmp_path: Path) -> None:
    """32 chunks asked of a peer at first (a slow peer holds back little), more as it
    answers, up to MAX_PEER_IN_FLIGHT (spec/13 §9)."""
    from tidings.replication.blob_fetch import MAX_PEER_IN_FLIGHT, PEER_IN_FLIGHT
    from tidings.wire.messages import BlobRequest

    data = os.urandom(1200 * CHUNK_SIZE)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    reader = make(tmp_path, "reader", follows=(feed,))
    link = connect(reader, alice)
    asked: list[int] = []  # chunks asked for and not yet answered, after each step
    outstanding = seen_a = seen_b = 0
    for _ in range(10_000):
        moved = link.step()
        for message in link.to_b[seen_b:]:  # what alice received: the reader's requests
            if isinstance(message, BlobRequest):
                outstanding += sum(count for _, count in message.ranges)
        for message in link.to_a[seen_a:]:  # what the reader received: the chunks
            if isinstance(message, BlobData):
                outstanding -= len(message.chunks)
        seen_a, seen_b = len(link.to_a), len(link.to_b)
        asked.append(outstanding)
        if not moved:
            break
    assert whole(reader, blob) == data
    first = next(n for n in asked if n)
    assert first <= PEER_IN_FLIGHT < max(asked) <= MAX_PEER_IN_FLIGHT, (first, max(asked))


def test_a_failed_chunk_write_drops_the_download_not_the_node(tmp_path: Path) -> None:
    """A full disk (or the blob folder gone) while checked chunks are written: the
    download stops with a log line, nothing is held, the session goes on."""
    data = os.urandom(6 * CHUNK_SIZE)
    alice = make(tmp_path, "alice", who=1)
    blob = publish_episode(alice, data)
    feed = next(iter(alice.local.heads))
    logged: list[tuple[str, dict[str, object]]] = []
    reader = make(tmp_path, "reader", follows=(feed,),
                  log=lambda event, **fields: logged.append((event, fields)))
    store = reader.blobs.store  # type: ignore[union-attr]
    real = store.write_verified

    def full(*args: object, **kwargs: object) -> list[int]:
        raise OSError(28, "No space left on device")

    store.write_verified = full  # type: ignore[method-assign]
    link = connect(reader, alice)
    run(link)  # (no exception: the session is whole)
    assert not link.sa.failed and reader.local.seq(feed) == 1
    assert [f["blob"] for e, f in logged if e == "blob-write-failed"] == [str(blob)]
    assert not store.has(blob)
    store.write_verified = real  # type: ignore[method-assign]
    link.close()
    assert reader.blobs.want(blob)  # type: ignore[union-attr]  # (as `blob get` asks)
    run(connect(reader, alice))  # room again: fetched whole
    assert whole(reader, blob) == data
