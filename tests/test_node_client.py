"""The blocking one-peer client of `tidings sync` (node/client.py) against hand-driven peers.

The client runs in a thread (it blocks); the peer is an Adversary on a trio listener,
both on loopback. What the trio node does around a connection it dialed, the
client must do too: end a sync the peer stalls, time out a silent peer, tell a
peer that broke the protocol why it is dropped, remember the clocks of a clean
session, and keep the addresses a peer gives.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

import tidings.node.client as client_module
import tidings.replication.replicator as replicator_module
from tests.adversary import WAIT, Adversary, Closed, publish
from tests.helpers import author
from tidings import Identity, Logbook, SqliteStore
from tidings.errors import HandshakeFailed, PeerError, PeerTimeout
from tidings.node.client import SyncClient, Timeout
from tidings.node.core import Parts
from tidings.node.options import NodeOptions
from tidings.node.state import NodeState
from tidings.transport.channel import public_key
from tidings.wire.messages import (
    EAGER,
    HEAD_PREFIX,
    VERSIONS,
    WANT,
    Clock,
    Hello,
    Note,
    Peers,
    Ping,
)

FEED = author(7).author.feed("blog")


async def _sync(tmp_path: Path, serve: Callable[[trio.SocketStream], Awaitable[None]], *,
                timeout: float = WAIT, host: str = "127.0.0.1",
                identity: Identity | None = None,
                prepare: Callable[[Parts, tuple[str, int]], object] = lambda *_: None,
                ) -> tuple[object, NodeState, bytes]:
    """`SyncClient.sync` (in a thread, dialing ``host``) against ``serve`` on a loopback
    listener: what it returned or raised, the client's node state (still open) and its
    key. ``prepare`` sees the client's parts and the listener's address first."""
    directory = tmp_path / "client"
    directory.mkdir()
    state = NodeState(directory / "node.sqlite3")
    state.follow(FEED)
    key = os.urandom(32)
    parts = Parts(Logbook(SqliteStore(directory / "store.sqlite3"), identity), state, key,
                  None)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    address = ("127.0.0.1", listeners[0].socket.getsockname()[1])
    prepare(parts, address)
    client = SyncClient(parts, NodeOptions())
    outcome: list[object] = []

    def dial() -> None:
        try:
            outcome.append(client.sync((host, address[1]), timeout=timeout))
        except (PeerError, Timeout, OSError) as exc:
            outcome.append(exc)

    served = trio.Event()

    async def server() -> None:
        stream = await listeners[0].accept()
        try:
            await serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, Closed):
            pass  # the client closed the connection: what each test waits for
        finally:
            served.set()
            await stream.aclose()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            await trio.to_thread.run_sync(dial)
            with trio.move_on_after(5):  # (a peer that reads what the client said last)
                await served.wait()
            nursery.cancel_scope.cancel()
    finally:
        parts.logbook.store.close()
        await listeners[0].aclose()
    return outcome[0], state, key


def _opened(serve: Callable[[Adversary], Awaitable[None]]
            ) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """``serve`` after the Noise handshake, as the dialed side."""
    async def run(stream: trio.SocketStream) -> None:
        peer = Adversary(stream, initiator=False)
        await peer.handshake()
        await serve(peer)
    return run


@pytest.mark.parametrize("claimed", [
    pytest.param(0, id="tells the truth"),  # the control: the sync ends at once
    pytest.param(1000, id="claims 1000, sends nothing"),
])
async def test_a_sync_against_a_stalling_peer_ends_with_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claimed: int) -> None:
    monkeypatch.setattr(replicator_module, "STALL_AFTER", 1.0)  # (30 s by default)
    head = os.urandom(HEAD_PREFIX) if claimed else None

    async def serve(peer: Adversary) -> None:
        await peer.hello(clock=((FEED, Note(claimed, 0, head)),))
        while True:  # alive, never idle: it only pings
            await peer.send(Ping())
            await trio.sleep(0.2)

    outcome, state, key = await _sync(tmp_path, _opened(serve))
    try:
        if claimed:
            assert isinstance(outcome, PeerTimeout), outcome
            assert "claims entries it does not send" in str(outcome)
        else:
            assert not isinstance(outcome, BaseException), outcome
            # A clean session's clocks are remembered for the next one (spec/10 §3).
            peers = {row[0][:8] for row in state._db.execute("SELECT peer FROM clocks")}
            assert peers == {public_key(key)[:8]}
    finally:
        state.close()


async def test_a_peer_that_closes_during_the_handshake_is_named(tmp_path: Path) -> None:
    async def serve(stream: trio.SocketStream) -> None:
        await stream.receive_some(1000)  # the first handshake message, then a close

    outcome, state, _ = await _sync(tmp_path, serve)
    state.close()
    assert isinstance(outcome, HandshakeFailed), outcome
    assert "during the handshake" in str(outcome)


async def test_a_silent_peer_times_out_at_the_handshake_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "HANDSHAKE_TIMEOUT", 0.5)  # (5 s by default)

    async def serve(stream: trio.SocketStream) -> None:
        while await stream.receive_some(1000):  # silent until the client closes
            pass

    outcome, state, _ = await _sync(tmp_path, serve)
    state.close()
    assert isinstance(outcome, PeerTimeout), outcome
    assert "no handshake within" in str(outcome)


async def test_the_callers_deadline_ends_a_sync(tmp_path: Path) -> None:
    async def serve(stream: trio.SocketStream) -> None:
        while await stream.receive_some(1000):  # silent until the client closes
            pass

    outcome, state, _ = await _sync(tmp_path, serve, timeout=0.3)
    state.close()
    assert isinstance(outcome, Timeout), outcome


async def test_a_peer_that_breaks_the_protocol_is_told_why(tmp_path: Path) -> None:
    said: list[str | None] = []

    async def serve(peer: Adversary) -> None:
        # It claims entries (the sync waits for them), then sends what no message is.
        await peer.hello(clock=((FEED, Note(3, 0, os.urandom(HEAD_PREFIX))),))
        await peer.send_body(b"\xff" * 9)
        said.append(await peer.closed_with())

    outcome, state, _ = await _sync(tmp_path, _opened(serve))
    state.close()
    assert isinstance(outcome, PeerError) and outcome.misbehaviour, outcome
    assert said and said[0] is not None  # the error message's code came before the close


async def test_the_addresses_a_peer_gives_are_kept(tmp_path: Path) -> None:
    given = (("127.0.0.5", 7001), ("127.0.0.6", 7002))

    async def serve(peer: Adversary) -> None:
        # The addresses come with the hello, before the opening clock that ends the sync.
        peer.channel.send(Hello(VERSIONS, False, None))
        peer.channel.send(Peers(given))
        peer.channel.send(Clock(True, (), True))
        await peer.flush()
        await peer.silently_closed()

    outcome, state, _ = await _sync(tmp_path, _opened(serve))
    try:
        assert not isinstance(outcome, BaseException), outcome
        known = {(p.host, p.port): p.source for p in state.peers()}
        assert all(known.get(a) == "exchange" for a in given), known
    finally:
        state.close()


def test_the_client_loads_no_event_loop() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import sys, tidings.node.client\n"
                           "print('trio' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


async def test_a_waiting_client_pings_its_peer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for entries, the client says something every PING_AFTER seconds, so a
    peer never closes it as idle (spec/08 §6)."""
    monkeypatch.setattr(client_module, "PING_AFTER", 0.3)  # (30 s by default)
    pinged: list[object] = []

    async def serve(peer: Adversary) -> None:
        await peer.hello(clock=((FEED, Note(3, 0, os.urandom(HEAD_PREFIX))),))
        pinged.append(await peer.expect(lambda m: isinstance(m, Ping)))
        await peer.aclose()

    outcome, state, _ = await _sync(tmp_path, _opened(serve))
    state.close()
    assert pinged
    assert isinstance(outcome, PeerTimeout), outcome
    assert "closed the connection before the sync finished" in str(outcome)


async def test_a_peer_that_leaves_ends_the_sync_but_is_not_blamed(tmp_path: Path) -> None:
    """A peer that closes mid-sync (or stalls) ends it with an error for the caller, but
    is told nothing and keeps its standing: a disconnect, not a failure (as the node
    records it), so a node on the same home retries it without a backoff."""
    said: list[int] = []

    async def serve(peer: Adversary) -> None:
        await peer.hello(clock=((FEED, Note(3, 0, os.urandom(HEAD_PREFIX))),))
        await peer.send_eof()
        said.append(await peer.silently_closed())

    outcome, state, _ = await _sync(
        tmp_path, _opened(serve),
        prepare=lambda parts, address: parts.state.add_peers([address], "config"))
    try:
        assert isinstance(outcome, PeerTimeout), outcome
        assert "closed the connection before the sync finished" in str(outcome)
        [record] = state.peers()
        assert record.failures == 0 and record.last_connected is not None
    finally:
        state.close()


async def test_a_busy_node_state_does_not_fail_the_sync(tmp_path: Path) -> None:
    """node.sqlite3 locked by another process (`tidings up` writing to it): the peer
    table and the clocks go unrecorded, and the sync still succeeds."""
    blockers: list[sqlite3.Connection] = []

    def lock(parts: Parts, address: tuple[str, int]) -> None:
        parts.state._db.execute("PRAGMA busy_timeout = 20")  # (10 s by default)
        blocker = sqlite3.connect(tmp_path / "client" / "node.sqlite3", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        blockers.append(blocker)

    async def serve(peer: Adversary) -> None:
        await peer.hello()
        await peer.silently_closed()

    outcome, state, _ = await _sync(tmp_path, _opened(serve), prepare=lock)
    blockers[0].close()
    state.close()
    assert not isinstance(outcome, BaseException), outcome


async def test_uploading_to_a_slow_peer_does_not_stop_hearing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client serves what the peer asks (its own feed, ~12 MB) to a peer that reads
    slowly and pings: it keeps reading that peer all along (its silence is not counted
    while the client itself has answers to send), so the sync runs to the caller's
    deadline instead of failing with 'silent'."""
    monkeypatch.setattr(client_module, "IDLE_TIMEOUT", 1.0)  # (90 s by default)
    identity = Identity.generate()
    own = identity.author.feed("big")

    async def serve(peer: Adversary) -> None:
        await peer.hello(clock=((FEED, Note(3, 0, os.urandom(HEAD_PREFIX))),
                                (own, Note(0, WANT | EAGER, None))))
        gone = (trio.BrokenResourceError, trio.ClosedResourceError)  # (the client left)
        async with trio.open_nursery() as nursery:
            async def pinger() -> None:
                with contextlib.suppress(*gone):
                    while True:
                        await peer.send(Ping())
                        await trio.sleep(0.3)

            nursery.start_soon(pinger)
            slow_until = trio.current_time() + 3.0  # (the client's deadline; then drained)
            with contextlib.suppress(*gone):
                while await peer.stream.receive_some(65536):  # 512 KiB a second
                    if trio.current_time() < slow_until:
                        await trio.sleep(0.125)
            nursery.cancel_scope.cancel()

    outcome, state, _ = await _sync(
        tmp_path, _opened(serve), timeout=3.0, identity=identity,
        prepare=lambda parts, _: publish(parts.logbook, "big", 6000, payload_size=2000))
    state.close()
    assert isinstance(outcome, Timeout), outcome


async def test_a_peer_named_by_host_name_is_dialed(tmp_path: Path) -> None:
    """``localhost`` is looked up (in a thread, within the connect deadline), then each
    of its addresses tried: the listener on 127.0.0.1 answers even where ::1 comes
    first. (A name of the machine's own: no lookup leaves it.)"""

    async def serve(peer: Adversary) -> None:
        await peer.hello()
        await peer.silently_closed()

    outcome, state, _ = await _sync(tmp_path, _opened(serve), host="localhost")
    state.close()
    assert not isinstance(outcome, BaseException), outcome


def test_an_address_that_never_answers_does_not_hold_up_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A name's first address drops the connection attempt (here a loopback listener
    whose accept queue is full): the next is tried ATTEMPT_DELAY later, beside it, and
    the first to answer is kept; the deadline bounds the whole."""
    from tidings.node.client import _dial

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(4):  # (a queue of 0 takes one or two: then SYNs are dropped)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(hole.getsockname())
        fillers.append(filler)
    good = socket.socket()
    good.bind(("127.0.0.1", 0))
    good.listen(5)
    found = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", hole.getsockname()),
             (socket.AF_INET, socket.SOCK_STREAM, 6, "", good.getsockname())]
    monkeypatch.setattr(client_module, "_addresses", lambda host, port: found)
    try:
        dialed = _dial(("two-addresses.example", 1), time.monotonic() + WAIT)
        assert dialed.getpeername() == good.getsockname()
        dialed.close()
    finally:
        for each in (hole, good, *fillers):
            each.close()


def test_a_name_the_idna_codec_refuses_is_an_unknown_host() -> None:
    """Not a traceback from the lookup's thread and a time-out: the error the CLI
    shows as "cannot connect to ...". (Refused before any lookup is made.)"""
    from tidings.node.client import _dial

    with pytest.raises(socket.gaierror, match="not a host name"):
        _dial(("é..b", 1), time.monotonic() + WAIT)
