"""The chunk store (tidings.storage.blobs, spec/13-blobs.md §7) on real files.

Fetching chunk by chunk, reading verified ranges, damage on disk found and
fetched again, the quota and least-recently-used eviction, pins, and kill -9 of
real processes in the middle of writing a blob.
"""

from __future__ import annotations

import doctest
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

import tidings.storage.blobs
from tidings.core.blob import (
    CHUNK_SIZE,
    HASH_SIZE,
    BlobId,
    BlobTree,
    InvalidBlob,
    blob_id_of,
    node_position,
    proof_nodes,
    verify_chunk,
)
from tidings.errors import UsageError
from tidings.storage.blobs import (
    BlobNotFound,
    BlobQuotaExceeded,
    BlobStore,
    ChunksMissing,
)


def blob_data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def chunks(tree: BlobTree, data: bytes, *indexes: int) -> list[tuple[int, bytes, bytes]]:
    out = []
    for index in indexes:
        offset, length = tree.blob_id.chunk_span(index)
        out.append((index, data[offset:offset + length], tree.proof(index)))
    return out


class Clock:
    """A clock that ticks once per reading: eviction order without wall time."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlobStore]:
    with BlobStore(tmp_path / "blobs") as opened:
        yield opened


# -- importing and reading -----------------------------------------------------------


def test_import_a_file_and_read_it_back(store: BlobStore, tmp_path: Path) -> None:
    data = blob_data(3 * CHUNK_SIZE + 1234)
    source = tmp_path / "episode.mp3"
    source.write_bytes(data)
    blob = store.import_file(source)
    assert blob == blob_id_of(data)
    assert store.has(blob) and store.missing(blob) == []
    info = store.info(blob)
    assert info is not None and info.complete and info.pinned and info.held == 4
    assert store.read(blob) == data
    for offset, length in [(0, 0), (0, 1), (CHUNK_SIZE - 1, 2), (100, 3 * CHUNK_SIZE),
                           (len(data) - 1, 1), (len(data), 0)]:
        assert store.read(blob, offset, length) == data[offset:offset + length]
    assert b"".join(store.iter_range(blob, 5, len(data) - 5)) == data[5:-5]
    assert store.available(blob, 10) == len(data) - 10
    for index in range(4):
        piece, proof = store.chunk(blob, index)
        verify_chunk(blob, index, piece, proof)
    with pytest.raises(UsageError):
        store.read(blob, len(data) - 1, 2)  # past the end


def test_files_are_0600_and_directories_0700(store: BlobStore) -> None:
    blob = store.import_bytes(b"private")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    folder = store.path / str(blob)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for child in folder.iterdir():
        assert stat.S_IMODE(child.stat().st_mode) == 0o600, child.name
    assert stat.S_IMODE((store.path / ".lock").stat().st_mode) == 0o600


def test_an_import_holds_bounded_memory(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    with open(source, "wb") as handle:
        for step in range(24):  # 24 MiB, written a MiB at a time
            handle.write(blob_data(1 << 20, step))
    tracemalloc.start()
    try:
        blob = store.import_file(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob.size == 24 << 20
    assert peak < 4 << 20, f"an import of 24 MiB peaked at {peak} bytes"
    assert store.read(blob, 5 << 20, 100) == source.read_bytes()[5 << 20:(5 << 20) + 100]


def test_the_empty_blob(store: BlobStore) -> None:
    blob = store.import_bytes(b"")
    assert str(blob).endswith("_0") and store.has(blob)
    assert store.read(blob) == b"" and store.chunk(blob, 0) == (b"", b"")


def test_importing_again_changes_nothing(store: BlobStore) -> None:
    blob = store.import_bytes(b"once", pin=False)
    assert store.import_bytes(b"once", pin=True) == blob
    info = store.info(blob)
    assert info is not None and info.pinned and len(store.blobs()) == 1


# -- fetching chunk by chunk -----------------------------------------------------------


def test_fetch_a_blob_chunk_by_chunk_in_any_order(store: BlobStore) -> None:
    data = blob_data(5 * CHUNK_SIZE + 7)
    tree = BlobTree.of(data)
    blob = tree.blob_id
    store.begin(blob)
    assert store.missing(blob) == [0, 1, 2, 3, 4, 5] and not store.has(blob)
    assert store.put_chunks(blob, chunks(tree, data, 3, 1)) == [3, 1]
    assert store.put_chunks(blob, chunks(tree, data, 1, 4)) == [4]  # 1 is held already
    assert store.missing(blob) == [0, 2, 5]
    assert store.held(blob) == bytes([0b00011010])
    assert store.available(blob, 0) == 0
    assert store.available(blob, CHUNK_SIZE + 5) == CHUNK_SIZE - 5  # chunk 1, not 2
    with pytest.raises(ChunksMissing) as raised:
        store.read(blob, 0, len(data))
    assert raised.value.missing == (0, 2, 5)
    assert store.read(blob, 3 * CHUNK_SIZE, 2 * CHUNK_SIZE) == data[3 * CHUNK_SIZE:5 * CHUNK_SIZE]
    streamed = []
    with pytest.raises(ChunksMissing) as raised:
        for piece in store.iter_range(blob, CHUNK_SIZE):
            streamed.append(piece)  # the verified bytes before the gap, and no other
    assert b"".join(streamed) == data[CHUNK_SIZE:2 * CHUNK_SIZE]
    assert raised.value.missing == (2,)
    store.put_chunks(blob, chunks(tree, data, 0, 2, 5))
    assert store.has(blob) and store.read(blob) == data


def test_a_bad_chunk_is_never_written(store: BlobStore) -> None:
    data = blob_data(3 * CHUNK_SIZE)
    tree = BlobTree.of(data)
    blob = tree.blob_id
    good = chunks(tree, data, 0, 1, 2)
    lie = (1, bytes(CHUNK_SIZE), good[1][2])
    with pytest.raises(InvalidBlob) as raised:
        store.put_chunks(blob, [good[0], lie, good[2]])
    assert raised.value.rule == "blob-chunk-proof" and raised.value.index == 1
    assert store.missing(blob) == [1, 2]  # the chunk before the lie was kept
    on_disk = (store.path / str(blob) / "data").read_bytes()
    assert on_disk[CHUNK_SIZE:] == bytes(2 * CHUNK_SIZE)  # nothing of the lie, or after it


def test_state_survives_reopening(tmp_path: Path) -> None:
    data = blob_data(4 * CHUNK_SIZE)
    tree = BlobTree.of(data)
    with BlobStore(tmp_path / "blobs") as store:
        store.put_chunks(tree.blob_id, chunks(tree, data, 0, 3))
        pinned = store.import_bytes(b"pinned")
        loose = store.import_bytes(b"loose", pin=False)
    with BlobStore(tmp_path / "blobs") as store:
        assert store.missing(tree.blob_id) == [1, 2]
        assert store.read(tree.blob_id, 3 * CHUNK_SIZE, 10) == data[3 * CHUNK_SIZE:][:10]
        infos = {info.blob_id: info for info in store.blobs()}
        assert infos[pinned].pinned and not infos[loose].pinned


def test_one_process_at_a_time(store: BlobStore) -> None:
    with pytest.raises(UsageError, match="another process"):
        BlobStore(store.path)


def test_leftovers_of_an_import_are_cleared_and_strangers_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "blobs"
    folder.mkdir()
    (folder / ".tmp-abc").mkdir()
    (folder / ".tmp-abc" / "data").write_bytes(b"half")
    (folder / "notes.txt").write_text("mine")
    with BlobStore(folder) as store:
        assert store.blobs() == []
    assert not (folder / ".tmp-abc").exists()
    assert (folder / "notes.txt").read_text() == "mine"


def test_an_import_replaces_a_partial_blob(store: BlobStore) -> None:
    data = blob_data(2 * CHUNK_SIZE + 1)
    tree = BlobTree.of(data)
    store.put_chunks(tree.blob_id, chunks(tree, data, 1))
    store.pin(tree.blob_id)
    assert store.import_bytes(data, pin=False) == tree.blob_id
    info = store.info(tree.blob_id)
    assert info is not None and info.complete and info.pinned  # the pin is kept
    assert store.read(tree.blob_id) == data


# -- damage on disk -----------------------------------------------------------------------


def test_a_damaged_chunk_is_reported_missing_and_fetched_again(store: BlobStore) -> None:
    data = blob_data(3 * CHUNK_SIZE + 10)
    tree = BlobTree.of(data)
    blob = store.import_bytes(data)
    path = store.path / str(blob) / "data"
    with open(path, "r+b") as handle:  # one bit of chunk 2 rots
        handle.seek(2 * CHUNK_SIZE + 77)
        byte = handle.read(1)
        handle.seek(2 * CHUNK_SIZE + 77)
        handle.write(bytes([byte[0] ^ 0x10]))
    assert store.read(blob, 0, CHUNK_SIZE) == data[:CHUNK_SIZE]  # other chunks still serve
    with pytest.raises(ChunksMissing) as raised:
        store.read(blob, CHUNK_SIZE, 2 * CHUNK_SIZE)
    assert raised.value.missing == (2,)
    assert store.missing(blob) == [2] and not store.has(blob)
    with pytest.raises(ChunksMissing):
        store.chunk(blob, 2)  # never served to a peer
    store.put_chunks(blob, chunks(tree, data, 2))
    assert store.read(blob) == data


def test_a_damaged_tree_node_is_found_too(store: BlobStore) -> None:
    data = blob_data(4 * CHUNK_SIZE)
    blob = store.import_bytes(data)
    tree_file = store.path / str(blob) / "tree"
    start, end = proof_nodes(0, 4)[-1]  # the top sibling of chunk 0: chunks 2 and 3
    with open(tree_file, "r+b") as handle:
        handle.seek(node_position(start, end) * HASH_SIZE)
        handle.write(bytes(HASH_SIZE))
    assert store.check(blob) == [0, 1]  # the chunks whose proofs hold that node
    assert store.missing(blob) == [0, 1]
    tree = BlobTree.of(data)
    store.put_chunks(blob, chunks(tree, data, 0, 1))  # their proofs write the node again
    assert store.check(blob) == [] and store.read(blob) == data


def test_checked_nodes_are_kept_for_a_few_blobs_only(store: BlobStore) -> None:
    """Reading checks every chunk again; the nodes that shorten those checks are kept
    for the blobs used last only, so memory stays bounded however many are served."""
    blobs = [store.import_bytes(blob_data(3 * CHUNK_SIZE, seed)) for seed in range(12)]
    for blob in blobs:
        assert len(store.chunks(blob, range(3))) == 3
    kept = [blob for blob in blobs if len(store._blobs[blob].checked)]
    assert kept == blobs[-tidings.storage.blobs.MAX_CHECKED_BLOBS:]
    assert store.read(blobs[0]) == blob_data(3 * CHUNK_SIZE, 0)  # checked again in full


def test_a_cut_file_starts_the_blob_again(tmp_path: Path) -> None:
    data = blob_data(2 * CHUNK_SIZE)
    with BlobStore(tmp_path / "blobs") as store:
        blob = store.import_bytes(data)
    os.truncate(tmp_path / "blobs" / str(blob) / "data", 100)
    with BlobStore(tmp_path / "blobs") as store:
        assert store.missing(blob) == [0, 1]
        tree = BlobTree.of(data)
        store.put_chunks(blob, chunks(tree, data, 0, 1))
        assert store.read(blob) == data


# -- quota, eviction, pins, removal ----------------------------------------------------


def cost(size: int) -> int:
    """What a blob takes in the quota: its bytes, tree and bitmap."""
    count = max(1, -(-size // CHUNK_SIZE))
    return size + (2 * count - 1) * HASH_SIZE + (count + 7) // 8


def test_least_recently_used_unpinned_blobs_are_evicted(tmp_path: Path) -> None:
    size = CHUNK_SIZE
    with BlobStore(tmp_path / "blobs", quota=3 * cost(size), clock=Clock()) as store:
        a, b, c = (store.import_bytes(blob_data(size, seed), pin=False) for seed in range(3))
        assert store.usage() == 3 * cost(size)
        store.read(a, 0, 1)  # a is used: b is now the least recently used
        d = store.import_bytes(blob_data(size, 3), pin=False)
        assert {i.blob_id for i in store.blobs()} == {a, c, d}
        store.pin(c)
        store.chunk(a, 0)
        e = store.import_bytes(blob_data(size, 4), pin=False)
        assert {i.blob_id for i in store.blobs()} == {a, c, e}  # d, not the pinned c
        assert store.usage() <= store.quota  # type: ignore[operator]
        assert store.remove(e) and not store.remove(e)
        assert store.info(e) is None and not (store.path / str(e)).exists()
        assert b not in {i.blob_id for i in store.blobs()}


def test_what_cannot_fit_is_refused_and_nothing_evicted(tmp_path: Path) -> None:
    with BlobStore(tmp_path / "blobs", quota=2 * cost(CHUNK_SIZE), clock=Clock()) as store:
        pinned = store.import_bytes(blob_data(CHUNK_SIZE, 1))
        loose = store.import_bytes(blob_data(CHUNK_SIZE, 2), pin=False)
        with pytest.raises(BlobQuotaExceeded):
            store.import_bytes(blob_data(2 * CHUNK_SIZE, 3))
        assert {i.blob_id for i in store.blobs()} == {pinned, loose}
        assert not [p for p in store.path.iterdir() if p.name.startswith(".tmp-")]
        store.unpin(pinned)
        big = store.import_bytes(blob_data(CHUNK_SIZE + 1, 4), pin=False)
        assert {i.blob_id for i in store.blobs()} == {big}  # both evicted to make room


def test_fetched_chunks_count_in_the_quota(tmp_path: Path) -> None:
    data = blob_data(3 * CHUNK_SIZE)
    tree = BlobTree.of(data)
    with BlobStore(tmp_path / "blobs", quota=cost(3 * CHUNK_SIZE) + cost(10),
                   clock=Clock()) as store:
        old = store.import_bytes(b"0123456789", pin=False)
        store.put_chunks(tree.blob_id, chunks(tree, data, 0, 1, 2))
        assert store.has(tree.blob_id) and store.info(old) is not None
        store.unpin(old)
        other = BlobTree.of(blob_data(CHUNK_SIZE, 9))
        store.put_chunks(other.blob_id, chunks(other, blob_data(CHUNK_SIZE, 9), 0))
        assert store.info(old) is None  # the least recently used went
        assert store.usage() <= store.quota  # type: ignore[operator]


def test_unknown_blobs(store: BlobStore) -> None:
    blob = blob_id_of(b"nowhere")
    assert store.info(blob) is None and store.missing(blob) == [0] and not store.has(blob)
    assert store.held(blob) == b"\0" and store.available(blob) == 0
    for call in (lambda: store.read(blob), lambda: store.chunk(blob, 0),
                 lambda: store.pin(blob), lambda: store.check(blob)):
        with pytest.raises(BlobNotFound):
            call()


def test_the_module_examples() -> None:
    failed, attempted = doctest.testmod(tidings.storage.blobs)
    assert attempted and not failed


# -- kill -9 ------------------------------------------------------------------------------

#: Chunks of the blob the workers fetch: enough that a kill lands mid-way.
CRASH_CHUNKS = 24

WORKER = textwrap.dedent(
    """
    import os, random, signal, sys
    from tidings.core.blob import BlobTree
    from tidings.storage.blobs import BlobStore

    folder, mode, seed, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    data = random.Random(seed).randbytes({chunks} * 65536 - 1000)
    tree = BlobTree.of(data)
    blob = tree.blob_id
    store = BlobStore(folder)
    order = list(range(tree.blob_id.chunk_count))
    random.Random(seed + 1).shuffle(order)

    if mode == "before-the-bitmap":
        # Die as the bit of the target chunk is about to be written: its bytes and
        # proof are already fsynced.
        write_have = BlobStore._write_have
        def held(have, index):
            return have[index >> 3] >> (index & 7) & 1
        def dying(self, entry, have, **options):
            if held(have, target) and not held(entry.have, target):
                os.kill(os.getpid(), signal.SIGKILL)
            write_have(self, entry, have, **options)
        BlobStore._write_have = dying
    if mode == "import":
        BlobStore._install = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        store.import_bytes(data)

    print("ready", flush=True)
    for index in order:
        offset, length = blob.chunk_span(index)
        store.put_chunk(blob, index, data[offset:offset + length], tree.proof(index))
        print(index, flush=True)
    print("done", flush=True)
    """
).format(chunks=CRASH_CHUNKS)


def worker_tree(seed: int) -> tuple[bytes, BlobTree, list[int]]:
    """The blob and chunk order a worker with ``seed`` uses."""
    data = random.Random(seed).randbytes(CRASH_CHUNKS * CHUNK_SIZE - 1000)
    order = list(range(CRASH_CHUNKS))
    random.Random(seed + 1).shuffle(order)
    return data, BlobTree.of(data), order


def run_worker(tmp_path: Path, mode: str, seed: int, target: int = -1,
               kill_after: int | None = None) -> list[str]:
    """Run a worker until it dies; ``kill_after``: SIGKILL it after that many acks."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "blobs"), mode, str(seed), str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = []
    try:
        while True:
            line = proc.stdout.readline().decode().strip()
            if not line:
                break  # the worker died (killed itself, or an error: see below)
            lines.append(line)
            if kill_after is not None and len(lines) == 1 + kill_after:
                proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None and kill_after is None:
            proc.wait()
        proc.wait()
        errors = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, errors
    return lines


def resume(folder: Path, data: bytes, tree: BlobTree) -> list[int]:
    """Open the store after the crash, check it, fetch what is missing; returns that."""
    blob = tree.blob_id
    with BlobStore(folder) as store:
        assert store.check(blob) == []  # every chunk its bitmap names verifies
        missing = store.missing(blob)
        store.put_chunks(blob, chunks(tree, data, *missing))
        assert store.has(blob) and store.read(blob) == data
    return missing


@pytest.mark.system
def test_kill_9_between_the_bytes_and_the_bitmap(tmp_path: Path) -> None:
    seed = 7
    data, tree, order = worker_tree(seed)
    target = order[9]
    lines = run_worker(tmp_path, "before-the-bitmap", seed, target)
    assert lines == ["ready", *map(str, order[:9])]  # died storing its 10th chunk
    blob = tree.blob_id
    # The target's bytes reached the disk, but without its bit they count for nothing.
    offset, length = blob.chunk_span(target)
    on_disk = (tmp_path / "blobs" / str(blob) / "data").read_bytes()
    assert on_disk[offset:offset + length] == data[offset:offset + length]
    missing = resume(tmp_path / "blobs", data, tree)
    assert missing == sorted(order[9:])  # the target is fetched again, and nothing held


@pytest.mark.parametrize("round_", range(3))
@pytest.mark.system
def test_kill_9_at_any_moment_of_a_download(tmp_path: Path, round_: int) -> None:
    seed = 100 + round_
    data, tree, order = worker_tree(seed)
    acked = random.Random(round_).randint(1, CRASH_CHUNKS - 4)
    lines = run_worker(tmp_path, "fetch", seed, kill_after=acked)
    stored = [int(line) for line in lines[1:] if line != "done"]
    assert lines[0] == "ready" and len(stored) >= acked
    with BlobStore(tmp_path / "blobs") as store:
        held = set(range(CRASH_CHUNKS)) - set(store.missing(tree.blob_id))
    # Every chunk acknowledged is held; at most the one in flight besides.
    assert set(stored) <= held <= set(order[:len(stored) + 1])
    missing = resume(tmp_path / "blobs", data, tree)
    assert set(missing) == set(range(CRASH_CHUNKS)) - held


@pytest.mark.system
def test_kill_9_during_an_import_leaves_nothing(tmp_path: Path) -> None:
    run_worker(tmp_path, "import", 5)
    folder = tmp_path / "blobs"
    assert any(p.name.startswith(".tmp-") for p in folder.iterdir())  # died before the rename
    with BlobStore(folder) as store:
        assert store.blobs() == []
    assert not any(p.name.startswith(".tmp-") for p in folder.iterdir())


def test_blob_ids_name_the_folders(store: BlobStore) -> None:
    blob = store.import_bytes(b"named")
    assert BlobId.parse((store.path / str(blob)).name) == blob


def test_abandoned_uploads_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    from tidings.http.blobs import UPLOAD_IDLE_SECONDS, sweep_uploads

    folder = tmp_path / "uploads"
    assert sweep_uploads(folder) == []  # no uploads yet
    folder.mkdir()
    old, live = folder / ("a" * 32), folder / ("b" * 32)
    old.write_bytes(b"half an episode")
    live.write_bytes(b"a piece just now")
    now = live.stat().st_mtime
    os.utime(old, (now - UPLOAD_IDLE_SECONDS - 1, now - UPLOAD_IDLE_SECONDS - 1))
    assert sweep_uploads(folder, now) == [old.name]
    assert not old.exists() and live.exists()


def test_a_blob_served_often_has_its_used_file_written_at_most_once_a_second(
        tmp_path: Path) -> None:
    from tidings.storage.blobs import USED_FILE, USED_RESOLUTION

    now = [2_000_000_000_000_000_000]
    with BlobStore(tmp_path / "blobs", clock=lambda: now[0]) as store:
        blob = store.import_bytes(blob_data(3 * CHUNK_SIZE))
        used = store.path / str(blob) / USED_FILE
        store.chunks(blob, [0])
        written = used.stat().st_mtime_ns
        assert written == now[0]  # (the first use after opening is written)
        now[0] += USED_RESOLUTION // 2
        store.chunks(blob, [1])  # used, in memory: not written again yet
        assert used.stat().st_mtime_ns == written
        assert store.info(blob).last_used == now[0]  # type: ignore[union-attr]
        now[0] += USED_RESOLUTION
        store.chunks(blob, [2])
        assert used.stat().st_mtime_ns == now[0]
    with BlobStore(tmp_path / "blobs") as store:  # reopened: the last use written
        assert store.info(blob).last_used == now[0]  # type: ignore[union-attr]
