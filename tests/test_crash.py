"""kill -9 durability of the SQLite store, with real processes and real files.

A worker process opens a Logbook on a SqliteStore in a temporary home and writes
in a loop (single ``publish`` calls, ``publish_batch`` of 200 payloads,
``ingest`` of another author's log in chunks, or all three interleaved). After
each call returns it prints one acknowledgement line per entry and flushes: a
line the parent read means the call returned, so the entry must be durable.

The parent sends SIGKILL either as soon as it has read a random small number of
acknowledgements (the worker is already inside its next transaction) or after a
random short delay, then checks the store: ``PRAGMA integrity_check`` is ok,
``Logbook.verify()`` passes for every feed, every feed is contiguous from seq 1,
every acknowledged entry is present with the acknowledged hash, and everything
an earlier check saw is still there. Homes are often reused by the next round,
so crashes stack up on one store.

The CLI (``tidings publish --lines`` fed from a pipe) is killed the same way; it
acknowledges nothing until it ends, so there the checks are integrity, verify,
contiguity, the payloads being the lines fed in order, and durability of what
earlier checks saw.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tidings import FeedId, Identity, Logbook, MemoryStore, SqliteStore
from tidings.node.home import Home

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

BATCH = 200
SOURCE_ENTRIES = 2500
INGEST_CHUNK = 40
#: Generous bound on how long a worker may take to start or to reach its acks;
#: only a hung or crashed worker hits it, and then the test fails saying so.
DEADLINE_S = 60.0

WORKER = textwrap.dedent(
    """
    import os
    import random
    import sys

    from tidings.core.bundle import EntryRecord, read_bundle
    from tidings.core.entry import decode_entry
    from tidings.node.home import Home

    home, mode, source_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    book = Home(home).open_logbook(need_identity=True)
    out = sys.stdout

    with open(source_path, "rb") as handle:
        records = [r for r in read_bundle(handle.read) if isinstance(r, EntryRecord)]
    items = [(r.entry, r.payload) for r in records]
    source_feed = decode_entry(items[0][0]).feed


    def ack(entries):
        out.write("".join(f"ack {e.feed} {e.seq} {e.hash.hex()}\\n" for e in entries))
        out.flush()


    def payload():
        size = rng.randrange(0, 300)
        return os.urandom(size) if rng.random() < 0.3 else (b"p" * size)


    def single():
        ack([book.publish(payload(), "single")])


    def batch():
        ack(book.publish_batch([payload() for _ in range(%(batch)d)], "batch"))


    def ingest():
        head = book.head(source_feed)
        have = head.seq if head else 0
        # Start a little before the head now and then: duplicates are part of ingest.
        start = max(0, have - rng.randrange(0, 5))
        if start >= len(items):
            start = rng.randrange(0, len(items))
        chunk = items[start:start + %(chunk)d]
        result = book.ingest(source_feed, chunk)
        # What was stored (or held already); entries after the chunk's last signed
        # one are pending, not stored, so not acknowledged.
        ack([decode_entry(raw) for raw, _ in chunk[:result.duplicates + result.added]])


    steps = {"single": [single], "batch": [batch], "ingest": [ingest],
             "mixed": [single, batch, ingest]}[mode]
    out.write("ready\\n")
    out.flush()
    while True:
        rng.choice(steps)()
    """
) % {"batch": BATCH, "chunk": INGEST_CHUNK}


@dataclass
class Expectations:
    """What one home must keep: acknowledged entries, and what earlier checks saw."""

    acked: dict[FeedId, dict[int, bytes]] = field(default_factory=dict)
    seen: dict[FeedId, list[bytes]] = field(default_factory=dict)
    acks: int = 0


@dataclass
class Source:
    """A valid log of another author, as a bundle file and its hashes by seq."""

    path: Path
    feed: FeedId
    hashes: list[bytes]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    book = Logbook(MemoryStore(), Identity.generate())
    rng = random.Random(7)
    entries = []
    while len(entries) < SOURCE_ENTRIES:
        # Appends of 1 to 20 entries: a chunk of ingest always reaches a signed entry.
        entries += book.publish_batch(
            [rng.randbytes(rng.randrange(0, 200)) for _ in range(rng.randrange(1, 21))], "other"
        )
    path = tmp_path_factory.mktemp("source") / "other.bundle"
    with open(path, "wb") as handle:
        book.export_bundle(entries[0].feed, handle.write)
    return Source(path, entries[0].feed, [e.hash for e in entries])


@pytest.fixture(scope="module")
def worker_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "worker.py"
    path.write_text(WORKER)
    return path


class Reader(threading.Thread):
    """Collects a process's complete stdout lines; partial lines are not acks."""

    def __init__(self, stream: object) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def run(self) -> None:
        for raw in self.stream:  # type: ignore[attr-defined]
            if not raw.endswith(b"\n"):
                break
            with self.changed:
                self.lines.append(raw.decode().rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, count: int, proc: subprocess.Popen[bytes], err_path: Path) -> None:
        """Wait until ``count`` lines arrived; fail if the process ends first."""
        deadline = time.monotonic() + DEADLINE_S
        with self.changed:
            while len(self.lines) < count:
                if proc.poll() is not None:
                    pytest.fail(f"worker exited ({proc.returncode}) before {count} lines:\n"
                                f"{_stderr(err_path)}")
                if time.monotonic() > deadline:
                    pytest.fail(f"worker gave only {len(self.lines)} of {count} lines in time")
                self.changed.wait(0.05)


def _stderr(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def run_and_kill(
    script: Path, home: Path, mode: str, source: Source, rng: random.Random, how: str
) -> list[str]:
    """Run one worker until SIGKILL; returns its acknowledgement lines."""
    err_path = home.parent / f"{home.name}-stderr.txt"
    with open(err_path, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(home), mode, str(source.path),
             str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE, stderr=err,
        )
    reader = Reader(proc.stdout)
    reader.start()
    try:
        reader.wait_for(1, proc, err_path)  # "ready": the store is open
        if how == "acks":
            per_call = BATCH if mode == "batch" else 1
            reader.wait_for(1 + per_call * rng.randint(1, 12), proc, err_path)
        else:
            time.sleep(rng.uniform(0.0, 0.06))
        if proc.poll() is not None:
            pytest.fail(f"worker exited on its own ({proc.returncode}):\n{_stderr(err_path)}")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, _stderr(err_path)
    assert reader.lines[0] == "ready"
    return reader.lines[1:]


def record_acks(expect: Expectations, lines: list[str]) -> None:
    for line in lines:
        word, feed_text, seq_text, hash_hex = line.split()
        assert word == "ack", line
        feed, seq, digest = FeedId.parse(feed_text), int(seq_text), bytes.fromhex(hash_hex)
        known = expect.acked.setdefault(feed, {})
        assert known.get(seq, digest) == digest, f"two acked hashes for {feed} seq {seq}"
        known[seq] = digest
        expect.acks += 1


def check_store(home: Path, expect: Expectations, source: Source | None = None) -> None:
    """The invariants after a crash. Updates ``expect.seen`` with what is stored now."""
    path = home / "store.sqlite3"
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        raw.close()

    store = SqliteStore(path)
    try:
        book = Logbook(store)
        reports = book.verify()
        for report in reports:
            assert report.ok, f"{report.feed}: {report.error} (forked at {report.forked_at})"
        stored_feeds = {report.feed for report in reports}
        assert set(expect.acked) <= stored_feeds
        assert set(expect.seen) <= stored_feeds
        for report in reports:
            feed = report.feed
            rows = store.entries(feed)
            seqs = [row.seq for row in rows]
            assert seqs == list(range(1, len(rows) + 1)), f"{feed} is not contiguous"
            assert report.entries == len(rows)
            # Every entry written by these workers was written with its payload.
            assert all(row.payload is not None for row in rows), f"{feed} lost a payload"
            hashes = [row.hash for row in rows]
            for seq, digest in expect.acked.get(feed, {}).items():
                assert seq <= len(hashes), f"acked {feed} seq {seq} is gone"
                assert hashes[seq - 1] == digest, f"acked {feed} seq {seq} has another hash"
            earlier = expect.seen.get(feed, [])
            assert hashes[: len(earlier)] == earlier, f"{feed} lost entries an earlier check saw"
            if feed.log_id == "batch":
                # publish_batch is one transaction: all of a batch or none of it.
                assert len(rows) % BATCH == 0, f"{feed} holds a partial batch ({len(rows)})"
            if source is not None and feed == source.feed:
                assert hashes == source.hashes[: len(hashes)]
            expect.seen[feed] = hashes
    finally:
        store.close()


def new_home(base: Path, index: int) -> Path:
    home = base / f"home{index}"
    Home(home).init()
    return home


@pytest.mark.parametrize(
    ("mode", "seed"), [("single", 101), ("batch", 202), ("ingest", 303), ("mixed", 404)]
)
def test_kill_9_keeps_every_acknowledged_entry(
    tmp_path: Path, worker_script: Path, source: Source, mode: str, seed: int
) -> None:
    rng = random.Random(seed)
    homes = [new_home(tmp_path, 0)]
    expectations = {homes[0]: Expectations()}
    rounds = 5
    for index in range(rounds):
        # Mostly keep crashing the same store; start afresh now and then.
        if index and rng.random() < 0.3:
            homes.append(new_home(tmp_path, index))
            expectations[homes[-1]] = Expectations()
        home = homes[-1]
        expect = expectations[home]
        how = "acks" if index % 2 == 0 else "delay"
        lines = run_and_kill(worker_script, home, mode, source, rng, how)
        record_acks(expect, lines)
        check_store(home, expect, source)
    # Ack-count kills wait for at least one acknowledgement, so this cannot be vacuous.
    assert sum(e.acks for e in expectations.values()) > 0
    # The store must still take writes after all the crashes.
    book = Home(homes[-1]).open_logbook(need_identity=True)
    try:
        entry = book.publish(b"after the crashes", "single")
        assert book.read(entry.feed, entry.seq)[0][1] == b"after the crashes"
    finally:
        book.store.close()
    check_store(homes[-1], expectations[homes[-1]], source)


def _feed_lines(proc: subprocess.Popen[bytes], round_index: int) -> None:
    """Write numbered lines to the CLI until it dies (the pipe breaks)."""
    assert proc.stdin is not None
    index = 0
    try:
        while True:
            chunk = "".join(f"cli-{round_index}-{index + k}\n" for k in range(500))
            proc.stdin.write(chunk.encode())
            index += 500
    except (BrokenPipeError, OSError, ValueError):
        pass


def _stored_count(path: Path) -> int:
    """Entries committed so far, read by a separate connection (WAL allows it)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_kill_9_cli_publish_lines(tmp_path: Path) -> None:
    rng = random.Random(505)
    home = new_home(tmp_path, 0)
    store_path = home / "store.sqlite3"
    expect = Expectations()
    feed = Identity.load(home / "secret.key").author.feed("main")
    previous = 0
    for round_index in range(4):
        err_path = tmp_path / f"cli-{round_index}-stderr.txt"
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tidings", "--home", str(home), "publish", "--lines"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
            )
        writer = threading.Thread(target=_feed_lines, args=(proc, round_index), daemon=True)
        writer.start()
        try:
            # Wait until this run has committed something, then kill it a little later,
            # while it is busy with further batches.
            deadline = time.monotonic() + DEADLINE_S
            while _stored_count(store_path) <= previous:
                if proc.poll() is not None:
                    pytest.fail(f"the CLI exited ({proc.returncode}):\n{_stderr(err_path)}")
                if time.monotonic() > deadline:
                    pytest.fail("the CLI committed nothing in time")
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            writer.join()
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
        assert proc.returncode == -signal.SIGKILL, _stderr(err_path)
        assert "Traceback" not in _stderr(err_path)

        check_store(home, expect)
        store = SqliteStore(store_path)
        try:
            rows = store.entries(feed, previous + 1)
        finally:
            store.close()
        assert rows, "the round's committed entries are gone"
        # This round's entries are exactly the first lines fed to it, in order.
        assert [row.payload for row in rows] == [
            f"cli-{round_index}-{k}".encode() for k in range(len(rows))
        ]
        previous += len(rows)
    assert len(expect.seen[feed]) == previous
