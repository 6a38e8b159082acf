"""Blobs between real `tidings up` processes on loopback (issue 14, "Must show" 1-4).

Every node here is a real process with its own home; blobs are real files
published with `tidings publish --attach`. What a node holds of a blob is read
from its held-chunk bitmap on disk (spec/13 §7), what it did from its log.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.adversary import Adversary, Closed
from tests.nodes import NodeProcess, feed_of, running, wait_for
from tests.test_cli import ok, tidings
from tidings.core.blob import BlobId, BlobTree, blob_id_of
from tidings.node.home import Home
from tidings.wire.messages import (
    BlobData,
    BlobHave,
    BlobQuery,
    BlobRequest,
    Clock,
    ErrorMessage,
    Hello,
)

pytestmark = pytest.mark.system

MB = 1_000_000


def make_home(tmp_path: Path, name: str, *, identity: bool = True, **node: str) -> Path:
    """A home, with ``[node]`` settings (blob_upload_rate = "20MB", ...)."""
    home = tmp_path / name
    ok(tidings(home, "init")) if identity else home.mkdir()
    config = home / "config.toml"
    text = config.read_text() if config.exists() else "[node]\n"
    settings = "".join(f'{key} = "{value}"\n' for key, value in node.items())
    config.write_text(text.replace("[node]\n", "[node]\n" + settings, 1))
    return home


def publish_file(home: Path, tmp_path: Path, size: int, log: str = "podcast") -> tuple[
        Path, BlobId]:
    path = tmp_path / f"episode-{size}.mp3"
    with open(path, "wb") as handle:
        for _ in range(size // MB):
            handle.write(os.urandom(MB))
        handle.write(os.urandom(size % MB))
    result = ok(tidings(home, "publish", "--log", log, "--attach", str(path), "an episode",
                        "--json"))
    blob = BlobId.parse(result.json_lines()[0]["attachments"][0]["blob"])  # type: ignore[index]
    assert blob.size == size
    return path, blob


def held_chunks(home: Path, blob: BlobId) -> int:
    """Chunks the home's bitmap names (what survives a kill -9)."""
    try:
        have = (home / "blobs" / str(blob) / "have").read_bytes()
    except FileNotFoundError:
        return 0
    return sum(bin(byte).count("1") for byte in have)


def _held_bytes(home: Path, blob: BlobId) -> int:
    have = (home / "blobs" / str(blob) / "have").read_bytes()
    return sum(blob.chunk_span(i)[1] for i in range(blob.chunk_count)
               if have[i >> 3] >> (i & 7) & 1)


def same_bytes(home: Path, blob: BlobId, path: Path) -> bool:
    data = home / "blobs" / str(blob) / "data"
    if held_chunks(home, blob) != blob.chunk_count:
        return False
    with open(data, "rb") as ours, open(path, "rb") as theirs:
        while True:
            a, b = ours.read(MB), theirs.read(MB)
            if a != b:
                return False
            if not a:
                return True


def complete_line(node: NodeProcess, blob: BlobId, timeout: float = 120) -> dict[str, str]:
    found = node.wait_log(rf"event=blob-complete blob={blob}[^\n]*", timeout)
    return dict(re.findall(r"(\w+)=(\S+)", found.group(0)))


@pytest.fixture
def episode(tmp_path: Path) -> Iterator[tuple[Path, Path, BlobId]]:
    """Author A's home with a 50 MB episode published in its log "podcast"."""
    author = make_home(tmp_path, "a")
    path, blob = publish_file(author, tmp_path, 50 * MB)
    yield author, path, blob


def test_a_50_mb_episode_reaches_c_through_b_from_two_peers_at_once(
        tmp_path: Path, episode: tuple[Path, Path, BlobId]) -> None:
    """Must show 1: A publishes, relay B and follower D fetch it, A goes offline;
    C downloads it from B and D at once, byte for byte."""
    author, path, blob = episode
    feed = str(feed_of(author, "podcast"))
    # B and D send each peer at most 20 MB/s, so C's 50 MB take long enough that
    # both are asked for chunks whichever connects first.
    relay = make_home(tmp_path, "b", identity=False, blob_upload_rate="20MB")
    other = make_home(tmp_path, "d", blob_upload_rate="20MB")
    reader = make_home(tmp_path, "c")
    ok(tidings(other, "follow", feed))
    ok(tidings(reader, "follow", feed))
    with running(author) as a:
        b = NodeProcess(relay, "--relay", "--peer", a.address)
        d = NodeProcess(other, "--peer", a.address)
        complete_line(b, blob)
        complete_line(d, blob)
    assert same_bytes(relay, blob, path) and same_bytes(other, blob, path)
    try:
        with running(reader, "--peer", b.address, "--peer", d.address) as c:
            line = complete_line(c, blob)
            assert line["fetched"] == str(50 * MB) and line["peers"] == "2", line
    finally:
        assert b.stop() == 0 and d.stop() == 0
    assert same_bytes(reader, blob, path)


def test_a_download_killed_halfway_resumes_from_the_verified_chunks(
        tmp_path: Path, episode: tuple[Path, Path, BlobId]) -> None:
    """Must show 3: kill -9 halfway, restart: only the chunks not held are fetched."""
    author, path, blob = episode
    feed = str(feed_of(author, "podcast"))
    reader = make_home(tmp_path, "c")
    ok(tidings(reader, "follow", feed))
    # 10 MB/s: the 50 MB take 5 s, long enough to be killed halfway.
    author_config = author / "config.toml"
    author_config.write_text(author_config.read_text().replace(
        "[node]\n", '[node]\nblob_upload_rate = "10MB"\n', 1))
    with running(author) as a:
        c = NodeProcess(reader, "--peer", a.address)
        wait_for(lambda: held_chunks(reader, blob) >= blob.chunk_count // 2, 60, "half")
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait()
        c.log_file.close()
        held = held_chunks(reader, blob)
        held_bytes = _held_bytes(reader, blob)
        assert 0 < held < blob.chunk_count
        with running(reader, "--peer", a.address) as again:
            line = complete_line(again, blob)
    assert int(line["fetched"]) == blob.size - held_bytes, (line, held)
    assert same_bytes(reader, blob, path)


def test_entries_arrive_while_a_200_mb_blob_replicates(tmp_path: Path) -> None:
    """Must show 4: a new entry overtakes a 200 MB blob on the same connection."""
    author = make_home(tmp_path, "a")
    path, blob = publish_file(author, tmp_path, 200 * MB)
    ok(tidings(author, "publish", "before"))
    reader = make_home(tmp_path, "b")
    for log in ("podcast", "main"):
        ok(tidings(reader, "follow", str(feed_of(author, log))))
    with running(author) as a, running(reader, "--peer", a.address) as b:
        wait_for(lambda: held_chunks(reader, blob) >= blob.chunk_count // 20, 60, "5 %")
        ok(tidings(author, "publish", "during the download"))
        latency = wait_for(lambda: _main_head(reader) >= 2, 60, "the entry")
        held_then = held_chunks(reader, blob)
        line = complete_line(b, blob)
    # Reported, not asserted (no timing assertions): the issue asks for under a second.
    print(f"the entry arrived {latency:.2f} s after `tidings publish` returned, with "
          f"{held_then} of {blob.chunk_count} chunks held; the blob took {line['seconds']} s")
    assert held_then < blob.chunk_count, "the blob finished before the entry arrived"
    assert same_bytes(reader, blob, path)


def _main_head(home: Path) -> int:
    book = Home(home).open_logbook()
    try:
        return max((i.latest_seq for i in book.feeds() if i.feed.log_id == "main"), default=0)
    finally:
        book.store.close()


# -- a peer that serves a corrupted chunk ---------------------------------------------------


async def test_a_peer_serving_a_corrupted_chunk_is_cut_off_and_another_completes(
        tmp_path: Path) -> None:
    """Must show 2: C is given a corrupted chunk by one peer: it names the chunk, closes
    that connection, and completes from the honest peer; nothing corrupt is stored."""
    data = os.urandom(8 * MB)
    author = make_home(tmp_path, "a", blob_upload_rate="4MB")
    path = tmp_path / "episode.mp3"
    path.write_bytes(data)
    ok(tidings(author, "publish", "--log", "podcast", "--attach", str(path), "ep"))
    blob = blob_id_of(data)
    tree = BlobTree.of(data)
    reader = make_home(tmp_path, "c")
    ok(tidings(reader, "follow", str(feed_of(author, "podcast"))))
    served: list[int] = []
    corrupted: list[int] = []

    async def liar(stream: trio.SocketStream) -> None:
        with suppress(Closed, trio.BrokenResourceError, trio.ClosedResourceError):
            await lie(stream)

    async def lie(stream: trio.SocketStream) -> None:
        adversary = Adversary(stream, initiator=False)
        first = True
        await adversary.handshake()
        await adversary.send(Hello((2, 3), False, None), Clock(True, (), True))
        while True:
            message = await adversary.expect(
                lambda m: isinstance(m, BlobQuery | BlobRequest | ErrorMessage), timeout=60)
            if isinstance(message, BlobQuery):
                await adversary.send(BlobHave(message.request_id, message.blob, None))
            elif isinstance(message, BlobRequest):
                indexes = [i for first, count in message.ranges
                           for i in range(first, first + count)]
                chunks = []
                for index in indexes[:2]:
                    start, length = blob.chunk_span(index)
                    chunk = bytearray(data[start:start + length])
                    if first:
                        chunk[100] ^= 0xFF  # the first chunk it serves is corrupted
                        first = False
                        corrupted.append(index)
                    served.append(index)
                    chunks.append((index, bytes(chunk), tree.proof(index)))
                await adversary.send(BlobData(message.request_id, tuple(chunks), True))
            else:
                return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, liar, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        with running(author, "--no-api") as a:
            # C learns of the episode from A (which sends at most 4 MB/s, so that the
            # liar is asked for chunks too), and asks both for chunks.
            c = await trio.to_thread.run_sync(lambda: NodeProcess(
                reader, "--peer", f"127.0.0.1:{port}", "--peer", a.address))
            try:
                line = await trio.to_thread.run_sync(lambda: complete_line(c, blob))
            finally:
                await trio.to_thread.run_sync(c.stop)
        nursery.cancel_scope.cancel()
    log = c.log()
    error = re.search(r"event=peer-error [^\n]*code=invalid-data[^\n]*", log)
    assert served and error, log
    # (The node may dial the liar twice at once; each connection's first chunk is bad.)
    assert any(f"chunk {index}: blob-chunk-proof" in error.group(0) for index in corrupted), log
    assert str(blob) in error.group(0)
    assert line["peers"] == "1"  # the liar sent no chunk that verified
    assert same_bytes(reader, blob, path)
