"""Group commit of a node's own publishes (node/publishing.py): what arrives together
shares one commit, publishers that come back at once join the next one, and every
publish is acknowledged only once its entry is durable, kill -9 included."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.embed_helpers import PATIENCE
from tests.nodes import NodeProcess, wait_for
from tests.test_cli import ok, tidings
from tidings import FeedId, Identity, Logbook, SqliteStore
from tidings.core.entry import Entry
from tidings.errors import UsageError
from tidings.node.home import Home
from tidings.node.publishing import GroupCommit, Publish, Written


class Book:
    """A real logbook on a SQLite file, and the size of every group written to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.logbook = Logbook(SqliteStore(path), Identity.generate())
        self.groups: list[int] = []
        self.fail_on: bytes | None = None  # a payload whose write raises (after writing)
        #: Told once the rows are written, before the commit (as the node's writer does).
        self.commits: GroupCommit | None = None
        #: Tell it too once the commit is durable, then wait for this (the writer's own
        #: work after the commit), then raise ``fail_after`` if set.
        self.say_durable = False
        self.after_commit: threading.Event | None = None
        self.fail_after: BaseException | None = None
        self.durable_groups: list[int] = []

    def write(self, requests: Sequence[Publish]) -> Written:
        # (What this writer waits for, and raises, are read as it starts: a test's next
        # round sets new ones while the last writer of this round may still be running.)
        after_commit, fail_after = self.after_commit, self.fail_after
        written: list[tuple[Publish, Entry | BaseException]] = []
        with self.logbook.store.transaction():
            for request in requests:
                written.append((request, self.logbook.publish(request.payload, request.log_id)))
            if self.commits is not None:
                self.commits.written(written)
            if any(request.payload == self.fail_on for request in requests):
                raise OSError("the disk went away")
        self.groups.append(len(written))
        if self.say_durable and self.commits is not None:
            self.durable_groups.append(len(written))
            self.commits.durable(written)
            if after_commit is not None:
                after_commit.wait(PATIENCE)
            if fail_after is not None:
                raise fail_after
        return written

    def durable(self, entry: Entry) -> bool:
        """Whether ``entry`` is committed (read on another connection to the file)."""
        store = SqliteStore(self.path)
        try:
            head = store.head(entry.feed)
        finally:
            store.close()
        return head is not None and head.seq >= entry.seq


async def test_publishers_that_come_back_at_once_share_the_next_commit(tmp_path: Path) -> None:
    """8 publishers, each publishing again a few scheduler turns after its answer, one
    turn apart (as an app's HTTP connections do): the first one back does not commit
    alone (the groups would settle into 1 + 7, or 2 + 6: twice the commits) but
    waits for the others the last commit answered."""
    book = Book(tmp_path / "s.db")
    commits = GroupCommit(trio.Lock(), book.write, lambda: None)
    rounds, publishers = 6, 8
    entries: list[Entry] = []

    async def publisher(index: int) -> None:
        for i in range(rounds):
            entries.append(await commits.publish(b"p%d-%d" % (index, i), "group"))
            for _ in range(index + 1):  # the answer's way back, and the next request's
                await trio.sleep(0)

    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            for index in range(publishers):
                nursery.start_soon(publisher, index)
    assert sum(book.groups) == rounds * publishers
    # (Each wait is bounded by the last commit's time, so a badly stalled machine may
    # split one group; never every group.)
    assert len(book.groups) <= rounds + 1, book.groups
    feed = book.logbook.feed("group")
    stored = {entry.seq: entry.hash for entry, _ in book.logbook.read(feed)}
    assert stored == {entry.seq: entry.hash for entry in entries}
    assert sorted(stored) == list(range(1, rounds * publishers + 1))
    book.logbook.store.close()


async def test_a_group_that_fails_stores_none_of_it_and_tells_each(tmp_path: Path) -> None:
    book = Book(tmp_path / "s.db")
    commits = GroupCommit(trio.Lock(), book.write, lambda: None)
    await commits.publish(b"first", "group")
    book.fail_on = b"bad"
    failed: list[BaseException] = []

    async def one(payload: bytes) -> None:
        try:
            await commits.publish(payload, "group")
        except OSError as exc:
            failed.append(exc)

    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            for payload in (b"a", b"bad", b"c"):
                nursery.start_soon(one, payload)
    assert len(failed) == 3 and all(str(exc) == "the disk went away" for exc in failed)
    book.fail_on = None
    assert (await commits.publish(b"after", "group")).seq == 2  # nothing of the group stayed
    book.logbook.store.close()


async def test_answers_are_prepared_during_the_commit_and_sent_once_durable(
        tmp_path: Path) -> None:
    """A publisher's answer hook: prepared with the written entry while the commit
    runs, sent by the commit once durable, all of a group before
    any publisher's task runs; never sent for a group that failed, nor to a
    publisher that left."""
    book = Book(tmp_path / "s.db")
    commits = book.commits = GroupCommit(trio.Lock(), book.write, lambda: None)
    await commits.publish(b"first", "group")
    events: list[tuple[str, int, bool]] = []  # (what, seq, durable then)
    returned: list[int] = []

    def answer(entry: Entry) -> Callable[[], None]:
        events.append(("prepared", entry.seq, book.durable(entry)))
        return lambda: events.append(("sent", entry.seq, book.durable(entry)))

    async def one(payload: bytes) -> None:
        entry = await commits.publish(payload, "group", answer)
        returned.append(entry.seq)
        events.append(("returned", entry.seq, True))

    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(one, b"p%d" % i)
    assert sorted(returned) == [2, 3, 4, 5] and book.groups[1:] == [4]
    assert sorted((what, seq) for what, seq, _ in events if what == "prepared") == [
        ("prepared", seq) for seq in range(2, 6)]
    # (Prepared meanwhile: usually before the fsync ends, but the event loop may get to
    # it only after, so when is not asserted; that it comes before the answer is sent is.)
    for seq in range(2, 6):
        assert events.index(next(e for e in events if e[:2] == ("prepared", seq))) < \
            events.index(next(e for e in events if e[:2] == ("sent", seq)))
    sent = [(seq, durable) for what, seq, durable in events if what == "sent"]
    assert sorted(sent) == [(seq, True) for seq in range(2, 6)]
    kinds = [what for what, _, _ in events]
    assert kinds.index("returned") > max(i for i, k in enumerate(kinds) if k == "sent")

    # A group that fails: prepared, never sent.
    events.clear()
    book.fail_on = b"bad"
    with pytest.raises(OSError):
        await commits.publish(b"bad", "group", answer)
    assert [what for what, _, _ in events] == ["prepared"]

    # A publisher cancelled while its group commits is not answered.
    events.clear()
    book.fail_on = None
    with trio.move_on_after(0) as scope:
        await commits.publish(b"gone", "group", answer)
    assert scope.cancelled_caught
    assert await commits.publish(b"after", "group") is not None
    assert [what for what, _, _ in events if what == "sent"] == []
    book.logbook.store.close()


async def test_a_durable_group_is_answered_from_the_writer_and_returns_before_it_ends(
        tmp_path: Path) -> None:
    """Once the writer says the commit is durable, the prepared answers go from its
    thread at once (each durable by then), and the group's publishers return while
    the writer still works; a writer failing after that fails none of them."""
    book = Book(tmp_path / "s.db")
    commits = book.commits = GroupCommit(trio.Lock(), book.write, lambda: None)
    async with trio.open_nursery() as nursery:  # (the next commits gather 4)
        for i in range(4):
            nursery.start_soon(commits.publish, b"first %d" % i, "group")
    book.say_durable = True
    loop_thread = threading.get_ident()
    sent: list[tuple[int, bool, bool]] = []  # (seq, durable then, from the loop's thread)

    def answer(entry: Entry) -> Callable[[], None]:
        return lambda: sent.append(
            (entry.seq, book.durable(entry), threading.get_ident() == loop_thread))

    for fail in (None, OSError("after the commit")):
        book.after_commit, book.fail_after = threading.Event(), fail
        returned: list[int] = []
        sent.clear()

        async def one(payload: bytes, returned: list[int] = returned) -> None:
            returned.append((await commits.publish(payload, "group", answer)).seq)

        groups_before = len(book.durable_groups)  # (this round's groups come after)
        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(one, b"p%d" % i)
                # The group said durable returns while the writer still waits (this
                # round's first group: the next waits for this writer to end).
                while (len(book.durable_groups) == groups_before
                       or len(returned) < book.durable_groups[groups_before]):
                    await trio.sleep(0.001)
                assert not book.after_commit.is_set()
                book.after_commit.set()
        # Prepared answers went from the writer's thread; any the event loop prepared
        # after that went from the loop before it woke the publishers. Each once, durable.
        assert sorted(seq for seq, _, _ in sent) == sorted(returned)
        assert all(durable for _, durable, _ in sent)
        assert len(set(returned)) == 4
    book.say_durable = False
    assert (await commits.publish(b"after", "group")).seq == 13  # all 12 were stored
    book.logbook.store.close()


async def test_publishes_that_come_while_a_writer_finishes_commit_next_in_order(
        tmp_path: Path) -> None:
    """Publishers answered early publish again while the writer of their commit still
    works: those join the next commit, which waits for that writer to end; each entry
    is durable when its publish returns, and the seqs follow the commits' order."""
    book = Book(tmp_path / "s.db")
    commits = book.commits = GroupCommit(trio.Lock(), book.write, lambda: None)
    await commits.publish(b"first", "group")
    book.say_durable = True
    book.after_commit = threading.Event()
    returned: list[tuple[int, bool]] = []  # (seq, durable when returned)

    async def twice(index: int) -> None:
        for i in range(2):
            entry = await commits.publish(b"p%d-%d" % (index, i), "group")
            returned.append((entry.seq, book.durable(entry)))

    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(twice, index)
            # The first commit answered them; its writer still waits, so the second
            # publishes of those it answered wait for it too.
            while not book.durable_groups or len(returned) < book.durable_groups[0]:
                await trio.sleep(0.001)
            assert len(book.durable_groups) == 1 and len(returned) == book.durable_groups[0]
            book.after_commit.set()
    assert all(durable for _, durable in returned)
    assert sorted(seq for seq, _ in returned) == list(range(2, 8))
    assert sum(book.durable_groups) == 6
    feed = book.logbook.feed("group")
    assert [entry.seq for entry, _ in book.logbook.read(feed)] == list(range(1, 8))
    book.logbook.store.close()


# -- kill -9 while 8 connections publish over HTTP ---------------------------------------


class Publisher(threading.Thread):
    """One keep-alive connection publishing until the node dies; records each answer."""

    def __init__(self, address: tuple[str, int], token: str, index: int) -> None:
        super().__init__(daemon=True)
        self.address, self.token, self.index = address, token, index
        self.acked: list[tuple[int, str, bytes]] = []  # (seq, hash, payload) as answered

    def run(self) -> None:
        try:
            with socket.create_connection(self.address, timeout=PATIENCE) as sock:
                reader = sock.makefile("rb")
                for i in range(100_000):
                    payload = b"conn %d entry %d" % (self.index, i)
                    body = json.dumps({"log": "crash",
                                       "payload_base64": base64.b64encode(payload).decode()})
                    sock.sendall(
                        f"POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: Bearer {self.token}\r\nContent-Type: application/json"
                        f"\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
                    status = reader.readline()
                    if not status:
                        return  # the node died between two requests
                    assert status.startswith(b"HTTP/1.1 201 "), status
                    length = 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode().partition(":")
                        if name.lower() == "content-length":
                            length = int(value)
                    answer = reader.read(length)
                    if len(answer) < length:
                        return  # died mid-answer: not acknowledged
                    entry = json.loads(answer)
                    self.acked.append((entry["seq"], entry["hash"], payload))
        except (ConnectionError, TimeoutError, OSError):
            return  # the node was killed


def acknowledged(publishers: Sequence[Publisher], count: int) -> bool:
    return sum(len(p.acked) for p in publishers) >= count


@pytest.mark.system
def test_kill_9_during_concurrent_http_publishes_keeps_every_acknowledged_entry(
        tmp_path: Path) -> None:
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    feed: FeedId = Home(home).identity().author.feed("crash")
    acked: dict[int, tuple[str, bytes]] = {}
    for round_index in range(2):  # the second round publishes on the store the kill left
        node = NodeProcess(home)
        try:
            wait_for(lambda: (home / "api.json").exists(), what="api.json")
            host, port = json.loads((home / "api.json").read_text())["url"].removeprefix(
                "http://").rsplit(":", 1)
            token = (home / "api.token").read_text().strip()
            publishers = [Publisher((host, int(port)), token, 8 * round_index + i)
                          for i in range(8)]
            for publisher in publishers:
                publisher.start()
            wait_for(partial(acknowledged, publishers, 40),
                     what="40 acknowledged publishes in this round")
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
            for publisher in publishers:
                publisher.join(PATIENCE)
                assert not publisher.is_alive()
        finally:
            if node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
            node.log_file.close()
        assert node.proc.returncode == -signal.SIGKILL
        for publisher in publishers:
            for seq, digest, payload in publisher.acked:
                assert seq not in acked, f"seq {seq} was acknowledged twice"
                acked[seq] = (digest, payload)
        book = Home(home).open_logbook()
        try:
            stored = {entry.seq: (entry.hash.hex(), payload)
                      for entry, payload in book.read(feed)}
            assert book.verify(feed)[0].ok
        finally:
            book.store.close()
        assert sorted(stored) == list(range(1, len(stored) + 1))
        missing = {seq: value for seq, value in acked.items() if stored.get(seq) != value}
        assert not missing, f"acknowledged but not stored as answered: {sorted(missing)[:10]}"


async def test_a_closed_group_commit_fails_what_it_has_not_written_after_its_writer_ends(
        tmp_path: Path) -> None:
    """When the node stops, the store closes once the commit being written ends; a
    publish waiting for the next commit, or made after, fails with a UsageError and
    nothing more is written (commits run as system tasks, outside the node's nursery)."""
    book = Book(tmp_path / "s.db")
    commits = book.commits = GroupCommit(trio.Lock(), book.write, lambda: None)
    await commits.publish(b"first", "group")
    book.say_durable = True
    book.after_commit = threading.Event()  # (the writer waits after its commit)
    outcomes: dict[str, int | BaseException] = {}
    closed = trio.Event()

    async def one(name: str, payload: bytes) -> None:
        try:
            outcomes[name] = (await commits.publish(payload, "group")).seq
        except UsageError as exc:
            outcomes[name] = exc

    async def close() -> None:
        await commits.aclose()
        closed.set()

    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "written", b"a")
            while not book.durable_groups:
                await trio.sleep(0.001)
            nursery.start_soon(one, "late", b"b")  # the next commit: waits for the writer
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(close)
            await trio.testing.wait_all_tasks_blocked()
            assert not closed.is_set()  # the writer still runs
            book.after_commit.set()
    assert closed.is_set()
    assert outcomes["written"] == 2
    assert isinstance(outcomes["late"], UsageError)
    with pytest.raises(UsageError, match="stopped"):
        await commits.publish(b"after", "group")
    assert book.groups == [1, 1]  # nothing written once closed
    book.logbook.store.close()
