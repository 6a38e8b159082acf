"""Adversaries against a real node: an in-process :class:`Node` on loopback TCP.

* :func:`running_target` starts the node under test (a real ``SqliteStore`` and
  ``NodeState`` in a temporary directory) in the test's trio loop and gives its
  address, its store and a way to find the node's side of any connection.
* :class:`Adversary` is a hand-driven peer over real TCP: our own
  :class:`Channel`, so it can complete the Noise handshake and then send any
  bytes, frames or message bodies it likes, and read what the node answers.
* :class:`HonestPeer` is an honest ``tidings sync`` in the same process: a
  second :class:`Node` that dials the target, waits until it has caught up, and
  then verifies what it got. Tests run one while an attack is going on.
* :func:`traced_peak` measures the Python heap's peak (``tracemalloc``) while
  a block runs, for the tests that check that memory stays bounded.
"""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from tidings import FeedId, Identity, Logbook, SqliteStore
from tidings.errors import PeerError
from tidings.node.daemon import Connection, Node, NodeOptions
from tidings.node.log import Logger
from tidings.node.state import NodeState
from tidings.replication.session import Session
from tidings.transport.channel import MAX_FRAME_PLAINTEXT, Channel
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.messages import (
    VERSIONS,
    Clock,
    ErrorMessage,
    Hello,
    Message,
    PartialRequest,
    PartialResponse,
)

#: Every bounded wait in these tests; generous for a loaded 2-core CI runner.
WAIT = 20.0

_LENGTH = struct.Struct(">H")
_MESSAGE_LENGTH = struct.Struct(">I")


# -- the node under test ---------------------------------------------------------


@dataclass
class Target:
    node: Node
    address: tuple[str, int]
    book: Logbook
    state: NodeState
    log: io.StringIO
    transport_key: bytes  # the node's private X25519 key
    crash: BaseException | None = None

    @property
    def port(self) -> int:
        return self.address[1]

    def head(self, feed: FeedId) -> int:
        row = self.book.store.head(feed)
        return row.seq if row else 0

    def session_of(self, adversary: Adversary) -> Session | None:
        """The node's side of the adversary's connection (None once it is closed)."""
        for connection in self.node.connections:
            if connection.session.channel.remote_static == adversary.public_key:
                return connection.session
        return None

    def assert_alive(self) -> None:
        assert self.crash is None, f"the node crashed: {self.crash!r}"

    def assert_store_valid(self) -> None:
        """Everything stored verifies (nothing invalid got in)."""
        for report in self.book.verify():
            assert report.error is None, f"{report.feed}: {report.error}"


@asynccontextmanager
async def running_target(
    directory: Path, *, setup: Callable[[Logbook, NodeState], None] | None = None,
    identity: Identity | None = None, **options: Any,
) -> AsyncIterator[Target]:
    """A node listening on 127.0.0.1:0; ``setup`` fills its store and follows first."""
    directory.mkdir(parents=True, exist_ok=True)
    book = Logbook(SqliteStore(directory / "store.sqlite3"), identity or Identity.generate())
    state = NodeState(directory / "node.sqlite3")
    if setup is not None:
        setup(book, state)
    log = io.StringIO()
    key = os.urandom(32)
    node = Node(book, state, key, NodeOptions(listen=("127.0.0.1", 0), **options),
                Logger(log, level="info"))
    try:
        async with trio.open_nursery() as nursery:
            target: Target | None = None

            async def run(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
                try:
                    await node.run(task_status=task_status)
                except Exception as exc:  # kept so that a test can name the crash
                    if target is None:
                        raise
                    target.crash = exc

            address = await nursery.start(run)
            assert address is not None
            target = Target(node, address, book, state, log, key)
            yield target
            nursery.cancel_scope.cancel()
    finally:
        book.store.close()
        state.close()


def publish(book: Logbook, log_id: str, count: int, payload_size: int = 100) -> FeedId:
    """``count`` entries of ``book``'s own log ``log_id``, payloads of ``payload_size``."""
    filler = b"x" * max(0, payload_size - 12)
    for start in range(0, count, 500):
        book.publish_batch(
            [b"%011d " % i + filler for i in range(start + 1, min(count, start + 500) + 1)],
            log_id,
        )
    return book.feed(log_id)


# -- the adversary ---------------------------------------------------------------------


class Closed(Exception):
    """The node closed the connection while the adversary waited for a message."""


class Adversary:
    """One connection driven by hand: handshake, then whatever bytes a test wants."""

    def __init__(self, stream: trio.SocketStream, *, initiator: bool = True,
                 static_private: bytes | None = None,
                 network_key: bytes = DEFAULT_NETWORK_KEY) -> None:
        self.stream = stream
        self.channel = Channel(initiator=initiator, static_private=static_private
                               or os.urandom(32), network_key=network_key)
        self.public_key = self.channel.local_static
        self.inbox: list[Message] = []
        self.after_error: list[Message] = []
        self.raw_received = 0
        self.raw_sent = 0
        self.eof = False
        self._next_request = 1_000_000

    # -- opening ------------------------------------------------------------------

    @classmethod
    async def connect(cls, address: tuple[str, int], **kwargs: Any) -> Adversary:
        return cls(await trio.open_tcp_stream(*address), **kwargs)

    @classmethod
    async def opened(cls, address: tuple[str, int], *, clock: Iterable[Any] = (),
                     **kwargs: Any) -> Adversary:
        """Connected, handshake and hellos done, the node's opening clock read.

        ``clock`` is this side's opening clock: (feed, Note) pairs.
        """
        adversary = await cls.connect(address, **kwargs)
        await adversary.handshake()
        await adversary.hello(clock=tuple(clock))
        return adversary

    async def handshake(self) -> None:
        """The Noise XX handshake, as either side."""
        if self.channel.initiator:
            self.channel.start()
            await self.flush()
        with trio.fail_after(WAIT):
            while not self.channel.established:
                await self._read_once()
                await self.flush()

    async def hello(self, *, versions: tuple[int, ...] = VERSIONS,
                    clock: tuple[Any, ...] = ()) -> None:
        """Send a hello and an opening clock; wait for the node's hello and opening clock."""
        self.channel.send(Hello(versions, False, None))
        self.channel.send(Clock(True, clock, True))
        await self.flush()
        await self.expect(lambda m: isinstance(m, Hello))
        await self.expect(lambda m: isinstance(m, Clock) and m.final)

    # -- sending ---------------------------------------------------------------------

    async def flush(self) -> None:
        data = self.channel.data_to_send()
        if data:
            await self.send_raw(data)

    async def send(self, *messages: Message) -> None:
        for message in messages:
            self.channel.send(message)
        await self.flush()

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)
        self.raw_sent += len(data)

    def seal(self, plaintext: bytes) -> bytes:
        """Transport frames carrying ``plaintext`` (any bytes), properly encrypted."""
        cipher = self.channel._send_cipher
        assert cipher is not None, "seal() needs a complete handshake"
        out = bytearray()
        for start in range(0, len(plaintext), MAX_FRAME_PLAINTEXT):
            frame = cipher.encrypt_with_ad(b"", plaintext[start:start + MAX_FRAME_PLAINTEXT])
            out += _LENGTH.pack(len(frame)) + frame
        return bytes(out)

    async def send_plaintext(self, plaintext: bytes) -> None:
        await self.flush()  # whatever the channel queued goes first, with its counters
        await self.send_raw(self.seal(plaintext))

    async def send_body(self, body: bytes) -> None:
        """One wire message with any body (a length prefix, then ``body``)."""
        await self.send_plaintext(_MESSAGE_LENGTH.pack(len(body)) + body)

    async def send_eof(self) -> None:
        """Half-close: the node sees the end of the stream but can still answer."""
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_eof()

    # -- receiving ----------------------------------------------------------------------

    async def _read_once(self) -> None:
        if self.eof:
            raise Closed("the node closed the connection")
        try:
            data = await self.stream.receive_some(1 << 20)
        except trio.BrokenResourceError:  # a reset: the node closed with our bytes unread
            data = b""
        if not data:
            self.eof = True
            raise Closed("the node closed the connection")
        self.raw_received += len(data)
        self.channel.receive_data(data)
        self.inbox.extend(self.channel.messages())

    async def expect(self, predicate: Callable[[Message], bool], timeout: float = WAIT) -> Message:
        """The first message (taken from the inbox) that ``predicate`` accepts."""
        with trio.fail_after(timeout):
            while True:
                for index, message in enumerate(self.inbox):
                    if predicate(message):
                        del self.inbox[index]
                        return message
                await self._read_once()

    async def closed_with(self, timeout: float = WAIT) -> str | None:
        """Read until the node closes the connection; the code of its error message, if any.

        Whatever the node sent after its error is kept in :attr:`after_error` (it
        should send nothing, spec/09 §6.1; see test_nothing_follows_an_error_message).
        """
        code: str | None = None
        with trio.fail_after(timeout):
            while True:
                for message in self.inbox:
                    if code is not None:
                        self.after_error.append(message)
                    elif isinstance(message, ErrorMessage):
                        code = message.code
                self.inbox.clear()
                try:
                    await self._read_once()
                except Closed:
                    break
        await self.aclose()
        return code

    async def silently_closed(self, timeout: float = WAIT) -> int:
        """Read raw bytes until the node closes; how many it sent (the channel is bypassed)."""
        received = 0
        with trio.fail_after(timeout):
            while True:
                try:
                    data = await self.stream.receive_some(1 << 16)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    break
                received += len(data)
        await self.aclose()
        return received

    async def receive_exactly(self, count: int, timeout: float = WAIT) -> bytes:
        """``count`` raw bytes (the channel is bypassed), e.g. handshake message 2."""
        data = bytearray()
        with trio.fail_after(timeout):
            while len(data) < count:
                chunk = await self.stream.receive_some(count - len(data))
                if not chunk:
                    raise Closed(f"closed after {len(data)} of {count} bytes")
                data += chunk
        return bytes(data)

    async def alive(self, feed: FeedId, timeout: float = WAIT) -> PartialResponse:
        """A round trip (a partial request and its answer): the connection is still served."""
        self._next_request += 1
        request = self._next_request
        await self.send(PartialRequest(request, feed, 1))
        answer = await self.expect(
            lambda m: isinstance(m, PartialResponse) and m.request_id == request, timeout
        )
        assert isinstance(answer, PartialResponse)
        return answer

    async def aclose(self) -> None:
        await self.stream.aclose()


# -- an honest peer ----------------------------------------------------------------------


@dataclass
class HonestPeer:
    """``tidings sync`` in-process: dial the target, catch up on ``feeds``, verify."""

    address: tuple[str, int]
    directory: Path
    feeds: list[FeedId]
    heads: dict[FeedId, int] = field(default_factory=dict)
    forked: dict[FeedId, int | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: BaseException | None = None
    done: trio.Event = field(default_factory=trio.Event)

    async def run(self, timeout: float = WAIT) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(self.directory / "store.sqlite3")
        book = Logbook(store)
        state = NodeState(self.directory / "node.sqlite3")
        try:
            for feed in self.feeds:
                state.follow(feed)
            client = Node(book, state, os.urandom(32), NodeOptions(), Logger(level="quiet"))

            async def body(node: Node) -> None:
                connection: Connection = await node.connect(self.address)
                await node.wait_caught_up(connection)

            with trio.fail_after(timeout):
                await client.run_client(body)
            for feed in self.feeds:
                head = store.head(feed)
                self.heads[feed] = head.seq if head else 0
                self.forked[feed] = store.forked_at(feed)
            self.problems = [f"{r.feed}: {r.error}" for r in book.verify() if r.error is not None]
        except (PeerError, OSError, trio.TooSlowError) as exc:
            self.error = exc
        finally:
            store.close()
            state.close()
            self.done.set()

    async def result(self) -> HonestPeer:
        with trio.fail_after(WAIT + 5):
            await self.done.wait()
        return self

    def assert_synced(self, expected: dict[FeedId, int]) -> None:
        assert self.done.is_set(), "the honest sync did not finish"
        assert self.error is None, f"the honest peer failed: {self.error!r}"
        assert self.heads == expected
        assert not self.problems, self.problems


# -- memory --------------------------------------------------------------------------------


@dataclass
class Peak:
    bytes: int = 0

    @property
    def mib(self) -> float:
        return self.bytes / (1 << 20)


@contextmanager
def traced_peak() -> Iterator[Peak]:
    """The Python heap's peak growth (every thread) while the block runs."""
    peak = Peak()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        yield peak
    finally:
        _, top = tracemalloc.get_traced_memory()
        peak.bytes = top - base
        if started:
            tracemalloc.stop()


@asynccontextmanager
async def honest_meanwhile(target: Target, directory: Path,
                           expected: dict[FeedId, int]) -> AsyncIterator[HonestPeer]:
    """An honest peer syncs ``expected`` from ``target`` while the block runs.

    On leaving the block, waits for it and checks that it got exactly
    ``expected`` and that everything it got verifies.
    """
    honest = HonestPeer(target.address, directory, list(expected))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(honest.run)
        yield honest
        await honest.result()
    honest.assert_synced(expected)


async def settled(read: Callable[[], int], quiet: float = 0.5, timeout: float = WAIT) -> int:
    """Poll ``read()`` until it has not changed for ``quiet`` seconds; its last value."""
    value, since = read(), trio.current_time()
    with trio.move_on_after(timeout):
        while trio.current_time() - since < quiet:
            await trio.sleep(0.05)
            now = read()
            if now != value:
                value, since = now, trio.current_time()
    return value


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``predicate()`` until it holds (True) or ``timeout`` passes (False)."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
        return True
    return False
