"""Issue 11: the attacks of its table, each against a real ``tidings up`` on loopback.

Each test starts the node under test as a process, attacks it from this process
(hand-driven connections: tests/adversary.py), and checks what honest peers
and the owner still get during and after the attack: honest syncs succeed
(`tidings sync` processes), the configured peer stays connected, memory and
disk stay under stated bounds, the node never exits and logs no traceback.
The resource model they check is spec/14-resources.md. Every wait is bounded;
nothing asserts how long anything took. The figures of
/work/notes/attack-figures.md come from ``ATTACK_FIGURES=1 pytest -s``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import msgpack
import pytest
import trio

from tests.adversary import Adversary, Closed
from tests.helpers import forge
from tests.nodes import NodeProcess, feed_of, running
from tests.test_cli import _env, ok, tidings
from tidings import FeedId, ForkProof, Identity, decode_entry
from tidings.core.lipmaa import link_target
from tidings.node.home import Home
from tidings.node.state import NodeState
from tidings.storage.sqlite import SEQ_BITS, SqliteStore
from tidings.wire.messages import (
    MAX_NOTES,
    Entries,
    ErrorMessage,
    ForkProofMessage,
    Peers,
    Ping,
)

pytestmark = pytest.mark.system

#: Every bounded wait here: generous for a loaded 2-core machine.
WAIT = 60.0
HEAD = bytes(8)


def figure(row: str, text: str) -> None:
    """A figure for the closing note (printed with ATTACK_FIGURES=1 and -s)."""
    if os.environ.get("ATTACK_FIGURES"):
        print(f"\nFIGURE row {row}: {text}")


def rss_mib(node: NodeProcess) -> float:
    """The node process's resident memory."""
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def publish_lines(home: Path, log_id: str, count: int) -> FeedId:
    lines = "".join(f"{log_id} entry {i}\n" for i in range(1, count + 1)).encode()
    ok(tidings(home, "publish", "--lines", "--log", log_id, stdin=lines))
    return feed_of(home, log_id)


def author_home(tmp_path: Path, name: str = "a", count: int = 50, **config: object) -> Path:
    """A home that holds one log of ``count`` entries ("blog"); ``config`` goes in [node]."""
    home = tmp_path / name
    ok(tidings(home, "init"))
    publish_lines(home, "blog", count)
    if config:
        text = (home / "config.toml").read_text()
        extra = "".join(f"{key} = {_toml(value)}\n" for key, value in config.items())
        (home / "config.toml").write_text(text.replace("[node]\n", "[node]\n" + extra, 1))
    return home


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


async def honest_sync(home: Path, address: str, feed: FeedId) -> int:
    """`tidings follow` and `tidings sync` as their own processes; the head they got
    (0 if the sync failed)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = NodeState(home / "node.sqlite3")  # what `tidings follow` writes
    try:
        state.follow(feed)
    finally:
        state.close()
    done = await trio.run_process(
        [*_cli(home), "sync", "--peer", address, "--timeout", "40"], env=_env(),
        capture_stdout=True, capture_stderr=True, check=False,
    )
    if done.returncode != 0:
        return 0
    return _held(home, feed)


def _cli(home: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "tidings", "--home", str(home)]


def address_of(node: NodeProcess) -> tuple[str, int]:
    return ("127.0.0.1", node.port)


async def open_idle(address: tuple[str, int]) -> Adversary | None:
    """A stranger's connection: handshake, hello, an empty clock; then it idles."""
    with suppress(Closed, OSError, trio.BrokenResourceError, trio.TooSlowError):
        with trio.fail_after(20):
            adversary = await Adversary.opened(address)
            await adversary.send(Ping())
            return adversary
    return None


async def closed(adversary: Adversary) -> bool:
    """Whether the node closed this connection (reads what is waiting, never blocks long)."""
    with trio.move_on_after(0.05):
        with suppress(Closed, trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                await adversary._read_once()
        return True
    return adversary.eof


@asynccontextmanager
async def attackers(count: int, address: tuple[str, int]) -> AsyncIterator[list[Adversary]]:
    held: list[Adversary] = []
    try:
        for _ in range(count):
            adversary = await open_idle(address)
            if adversary is not None:
                held.append(adversary)
        yield held
    finally:
        for adversary in held:
            with suppress(Exception):
                await adversary.aclose()


def assert_healthy(node: NodeProcess) -> None:
    assert node.proc.poll() is None, f"the node exited: {node.log()}"
    assert "Traceback" not in node.log(), node.log()


# -- row 1: connection slots ------------------------------------------------------------


async def test_idle_strangers_cannot_take_every_slot(tmp_path: Path) -> None:
    """42 idle connections against 16 slots: the configured peer stays connected, honest
    syncs succeed during the attack, and strangers are evicted (error `busy`), not
    newcomers refused. Bound: inbound connections never pass the inbound cap."""
    c_home = author_home(tmp_path, "c", 5)
    with running(c_home) as c:
        a_home = author_home(tmp_path, "a", 50, max_connections=16, max_per_address=100)
        blog = feed_of(a_home, "blog")
        with running(a_home, "--peer", c.address) as a:
            a.wait_log(rf"event=connected .*addr=127\.0\.0\.1:{c.port} direction=out")
            address = address_of(a)
            async with attackers(30, address) as held:
                results = []
                for index in range(3):
                    results.append(await honest_sync(tmp_path / f"h{index}", a.address, blog))
                    for _ in range(4):  # more strangers come between the syncs
                        extra = await open_idle(address)
                        if extra is not None:
                            held.append(extra)
                still_open = [adv for adv in held if not await closed(adv)]
                evicted = [adv for adv in held if adv.eof]
                busy = [m for adv in held for m in adv.inbox
                        if isinstance(m, ErrorMessage) and m.code == "busy"]
                assert_healthy(a)
                # The outbound connection to the configured peer was never given up.
                assert f"event=disconnected peer={c.key}" not in a.log()
            figure("1", f"honest syncs {sum(r == 50 for r in results)}/3 during "
                        f"{len(held)} idle strangers; {len(still_open)} strangers still "
                        f"connected (inbound cap 8), {len(evicted)} evicted, "
                        f"{len(busy)} told busy")
            assert results == [50] * 3
            assert len(still_open) <= 8  # 16 slots, 8 of them reserved for outbound
            assert evicted and busy
            assert_healthy(a)


async def test_one_address_holds_at_most_its_share(tmp_path: Path) -> None:
    """From one address, at most max_per_address connections: the newest evict its own."""
    a_home = author_home(tmp_path, "a", 20, max_per_address=3)
    with running(a_home) as a:
        async with attackers(12, address_of(a)) as held:
            still_open = [adv for adv in held if not await closed(adv)]
            figure("1", f"12 connections from one address, {len(still_open)} kept "
                        "(max_per_address 3)")
            assert 1 <= len(still_open) <= 3
        assert await honest_sync(tmp_path / "h", a.address, feed_of(a_home, "blog")) == 20
        assert_healthy(a)


# -- rows 2, 6 and 7: notes, fork proofs and a msgpack bomb -------------------------------------


def _clock_body(start: int, count: int, *, final: bool) -> bytes:
    notes = [[(start + i).to_bytes(32, "big"), "f", 1, 1, HEAD] for i in range(count)]
    return msgpack.packb([1, 0, notes, int(final)], use_bin_type=True)


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


# -- row 6: fork proofs for made-up feeds ----------------------------------------------------


def _made_up_proofs(count: int) -> list[bytes]:
    who = Identity.generate()
    proofs = []
    for index in range(count):
        links = {"backlink": None, "lipmaa_link": None if link_target(1) is None else bytes(32)}
        first = decode_entry(forge(who, log_id=f"f{index}", seq=1, timestamp=1, **links))
        second = decode_entry(forge(who, log_id=f"f{index}", seq=1, timestamp=2, **links))
        proofs.append(ForkProof.from_runs([first], [second]).to_bytes())
    return proofs


# -- row 7: a msgpack bomb, and pings -----------------------------------------------------------


def _bomb() -> bytes:
    """2 MiB of empty arrays, in a clock's shape: millions of lists if decoded whole."""
    inner = b"\xdc" + (4096).to_bytes(2, "big") + b"\x90" * 4096
    count = (2 * 1024 * 1024 - 64) // len(inner)
    return b"\x94\x01\x00\xdc" + count.to_bytes(2, "big") + inner * count + b"\x01"


async def test_notes_proofs_and_bombs_cost_the_sender_not_the_node(tmp_path: Path) -> None:
    """One node, in turn: two sessions each naming 50,000 made-up feeds (row 2); 1,000
    valid fork proofs of made-up feeds (row 6); four 2 MiB msgpack bombs (row 7). Bounds:
    RSS +60 MiB in all, node.sqlite3 < 1 MiB, no proof stored, each bomb `malformed`;
    honest syncs succeed between the attacks."""
    a_home = author_home(tmp_path, "a", 30)
    blog = feed_of(a_home, "blog")
    proofs = _made_up_proofs(1000)
    with running(a_home) as a:
        address = address_of(a)
        before = rss_mib(a)
        messages = 50_000 // MAX_NOTES + 1
        for session in range(2):  # row 2
            adversary = await Adversary.opened(address)
            for m in range(messages):
                start = (session * messages + m) * MAX_NOTES
                await adversary.send_body(_clock_body(start, MAX_NOTES,
                                                      final=m == messages - 1))
            await adversary.alive(blog)  # still served: naming feeds is no fault
            await adversary.aclose()
        notes_grown = rss_mib(a) - before
        assert await honest_sync(tmp_path / "h1", a.address, blog) == 30
        state_size = (a_home / "node.sqlite3").stat().st_size + _wal(a_home / "node.sqlite3")
        figure("2", f"RSS +{notes_grown:.0f} MiB after 2 x {messages * MAX_NOTES} notes; "
                    f"node.sqlite3 {state_size / 1024:.0f} KiB")

        adversary = await Adversary.opened(address)  # row 6
        for start in range(0, len(proofs), 100):
            await adversary.send(*(ForkProofMessage(p) for p in proofs[start:start + 100]))
        await adversary.alive(blog)
        await adversary.aclose()

        bomb_before = rss_mib(a)  # row 7
        codes = []
        for _ in range(4):
            adversary = await Adversary.opened(address)
            await adversary.send_body(_bomb())
            codes.append(await adversary.closed_with(timeout=WAIT))
        bombs_grown = rss_mib(a) - bomb_before
        figure("7", f"4 bombs of 2 MiB: RSS +{bombs_grown:.0f} MiB, closed with {set(codes)}")
        assert await honest_sync(tmp_path / "h2", a.address, blog) == 30
        grown = rss_mib(a) - before
        assert_healthy(a)
    feeds = ok(tidings(a_home, "feeds", "--json")).json_lines()
    store = sqlite3.connect(a_home / "store.sqlite3")
    try:
        (kept,) = store.execute("SELECT count(*) FROM fork_proofs").fetchone()
    finally:
        store.close()
    figure("6", f"{len(proofs)} proofs sent, {kept} stored, `tidings feeds` lists {len(feeds)}")
    assert state_size < 1 << 20
    assert kept == 0 and len(feeds) == 1
    assert codes == ["malformed"] * 4
    assert grown < 60, f"RSS +{grown:.0f} MiB"


async def test_ping_floods_do_not_stop_honest_syncs(tmp_path: Path) -> None:
    """Four connections send pings as fast as they can while honest peers sync."""
    a_home = author_home(tmp_path, "a", 200)
    blog = feed_of(a_home, "blog")
    with running(a_home) as a:
        address = address_of(a)
        sent = [0]

        async def flood(adversary: Adversary, stop: trio.Event) -> None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while not stop.is_set():
                    await adversary.send(Ping())
                    sent[0] += 1
                    await trio.sleep(0)

        flooders = [await Adversary.opened(address) for _ in range(4)]
        stop = trio.Event()
        cpu_before = _cpu_seconds(a)
        async with trio.open_nursery() as nursery:
            for adversary in flooders:
                nursery.start_soon(flood, adversary, stop)
            results = [await honest_sync(tmp_path / "h", a.address, blog)]
            stop.set()
        cpu = _cpu_seconds(a) - cpu_before
        for adversary in flooders:
            await adversary.aclose()
        figure("7", f"{sent[0]} pings from 4 connections; honest syncs {results}; node CPU "
                    f"{cpu:.1f} s meanwhile")
        assert results == [200]
        assert_healthy(a)


def _cpu_seconds(node: NodeProcess) -> float:
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- row 4: a full disk ------------------------------------------------------------------------


def _big_feed(home: Path, count: int, size: int, *, init: bool = True) -> FeedId:
    if init:
        ok(tidings(home, "init"))
    book = Home(home).open_logbook(need_identity=True)
    try:
        for index in range(count):
            book.publish(bytes([index % 251]) * size, "big")
        return book.feed("big")
    finally:
        book.store.close()


def _pages(path: Path, more_bytes: int = 0) -> int:
    """The store's pages now, plus as many as ``more_bytes`` take at its page size."""
    db = sqlite3.connect(path)
    try:
        count, size = (int(db.execute(f"PRAGMA {what}").fetchone()[0])
                       for what in ("page_count", "page_size"))
    finally:
        db.close()
    return count + more_bytes // size


async def test_a_full_disk_stops_ingest_keeps_serving_and_resumes(tmp_path: Path) -> None:
    """A relay whose store may grow by ~1 MiB is offered 4 MiB: it logs `disk-full`
    once, keeps serving its own blog, never exits; once space returns it takes the rest."""
    w_home = tmp_path / "w"
    big = _big_feed(w_home, 64, 64 * 1024)
    a_home = author_home(tmp_path, "a", 20)
    limit = tmp_path / "page-limit"
    limit.write_text(str(_pages(a_home / "store.sqlite3", 1 << 20)))  # room for 1 MiB more
    with running(w_home) as w, _page_limit(limit):
        a = NodeProcess(a_home, "--relay", "--peer", w.address)  # only it has the limit
        os.environ.pop("TIDINGS_TEST_PAGE_LIMIT")
        try:
            a.wait_log("event=disk-full", timeout=WAIT)
            assert await honest_sync(tmp_path / "h", a.address, feed_of(a_home, "blog")) == 20
            held_while_full = _held(a_home, big)
            assert_healthy(a)
            limit.write_text("0")  # space returns
            with trio.fail_after(WAIT):
                while _held(a_home, big) < 64:
                    await trio.sleep(0.2)
            figure("4", f"full at {held_while_full}/64 entries of 64 KiB; "
                        f"{a.log().count('event=disk-full')} disk-full line(s); "
                        "resumed to 64/64; honest sync served meanwhile")
            assert a.log().count("event=disk-full") == 1
            assert "event=disk-space-back" in a.log()
            assert_healthy(a)
        finally:
            a.stop()


@contextmanager
def _page_limit(path: Path) -> Iterator[None]:
    os.environ["TIDINGS_TEST_PAGE_LIMIT"] = str(path)
    try:
        yield
    finally:
        os.environ.pop("TIDINGS_TEST_PAGE_LIMIT", None)


def _held(home: Path, feed: FeedId) -> int:
    store = SqliteStore(home / "store.sqlite3")
    try:
        head = store.head(feed)
    finally:
        store.close()
    return head.seq if head is not None else 0


# -- row 5: peer exchange ------------------------------------------------------------------------


def _learned(home: Path) -> list[tuple[str, int, str, object]]:
    db = sqlite3.connect(home / "node.sqlite3")
    try:
        return [tuple(row) for row in db.execute(  # type: ignore[misc]
            "SELECT host, port, source, last_connected FROM peers WHERE source = 'exchange'")]
    finally:
        db.close()


async def test_tarpit_addresses_from_peer_exchange_are_bounded_and_dropped(
    tmp_path: Path
) -> None:
    """Four sessions each give 32 fresh addresses of tarpits (they accept, never answer):
    at most 4 per /24 are kept, each is dropped once its handshake fails, and the
    configured peer stays connected throughout."""
    c_home = author_home(tmp_path, "c", 5)
    tarpits = []
    for _ in range(16):
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        tarpits.append(listener)
    ports = [t.getsockname()[1] for t in tarpits]
    try:
        with running(c_home) as c:
            a_home = author_home(tmp_path, "a", 20)
            with running(a_home, "--peer", c.address) as a:
                a.wait_log(rf"event=connected .*addr=127\.0\.0\.1:{c.port} direction=out")
                most = 0
                for session in range(4):
                    adversary = await Adversary.opened(address_of(a))
                    await adversary.send(Peers(tuple(
                        ("127.0.0.1", ports[(session * 32 + i) % 16]) for i in range(32))))
                    await adversary.alive(feed_of(a_home, "blog"))
                    most = max(most, len(_learned(a_home)))
                    await adversary.aclose()
                with trio.fail_after(WAIT):  # each is dialed, its handshake fails, forgotten
                    while any(port in ports for _, port, _, _ in _learned(a_home)):
                        await trio.sleep(0.2)
                assert await honest_sync(tmp_path / "h", a.address, feed_of(a_home, "blog")) == 20
                figure("5", f"128 tarpit addresses offered in 4 sessions: at most {most} kept, "
                            "all dropped after their failed handshakes; configured peer "
                            "connected throughout")
                assert most <= 4
                assert f"event=disconnected peer={c.key}" not in a.log()
                assert_healthy(a)
    finally:
        for listener in tarpits:
            listener.close()


# -- row 13: file modes ----------------------------------------------------------------------------


def test_every_file_of_a_home_is_the_owners_alone(tmp_path: Path) -> None:
    """Files 0600, directories 0700; a token that others can read is refused like a key."""
    home = author_home(tmp_path, "a", 3)
    with running(home) as a:
        a.wait_log("event=ready")
    loose = {str(p.relative_to(home)): oct(p.stat().st_mode & 0o777) for p in home.rglob("*")
             if p.stat().st_mode & 0o077}
    figure("13", f"files or directories readable by others after init, publish, up: {loose}")
    assert not loose
    (home / "api.token").chmod(0o644)
    refused = tidings(home, "up", "--listen", "127.0.0.1:0", "--no-lan", "--api", "127.0.0.1:0")
    assert refused.code == 2 and "chmod 600" in refused.err, refused.err


# -- row 3: a relay's quota ---------------------------------------------------------------------


async def test_a_relay_takes_honest_feeds_after_offers_that_bring_nothing(
    tmp_path: Path
) -> None:
    """A stranger offers 10,000 feeds and sends no entry; then an honest author offers
    its blog: the relay takes it. Then the author publishes a feed of 4 MiB: the relay
    stores at most its byte quota (1 MiB) and one batch of it."""
    r_home = author_home(tmp_path, "r", 1, relay_max_bytes=1 << 20)
    with running(r_home, "--relay") as r:
        adversary = await Adversary.opened(address_of(r))
        for start in range(0, 10_000, MAX_NOTES):
            count = min(MAX_NOTES, 10_000 - start)
            notes = [[(start + i).to_bytes(32, "big"), "f", 1, 0, HEAD] for i in range(count)]
            await adversary.send_body(msgpack.packb([1, 0, notes, 0], use_bin_type=True))
        await adversary.alive(feed_of(r_home, "blog"))
        w_home = tmp_path / "w"
        author_home(tmp_path, "w", 20)
        blog = feed_of(w_home, "blog")
        before = _store_bytes(r_home)
        with running(w_home, "--peer", r.address):
            with trio.fail_after(WAIT):
                while _held(r_home, blog) < 20:
                    await trio.sleep(0.2)
            big = _big_feed(w_home, 64, 64 * 1024, init=False)
            r.wait_log("event=relay-quota-full", timeout=WAIT)
        await adversary.aclose()
        grown = _store_bytes(r_home) - before
        figure("3", f"10,000 empty offers, then an honest author: blog {_held(r_home, blog)}/20 "
                    f"taken, big feed {_held(r_home, big)}/64 entries of 64 KiB, store "
                    f"+{grown / (1 << 20):.1f} MiB (quota 1 MiB)")
        assert _held(r_home, big) < 64
        assert grown < 3 << 20
        assert_healthy(r)


def _store_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("store.sqlite3*"))


# -- rows 11 and 12: the local API -------------------------------------------------------------


def _api_address(home: Path) -> tuple[str, int]:
    import json
    from urllib.parse import urlsplit

    url = urlsplit(json.loads((home / "api.json").read_text())["url"])
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


async def _half_sent(address: tuple[str, int]) -> trio.SocketStream | None:
    with suppress(OSError):
        stream = await trio.open_tcp_stream(*address)
        await stream.send_all(b"POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        return stream
    return None


async def test_half_sent_requests_do_not_lock_the_owner_out(tmp_path: Path) -> None:
    """600 connections each holding a half-sent request (the cap is 512): the owner's
    `tidings status` still gets its answer, and an event stream still connects."""
    a_home = author_home(tmp_path, "a", 5)
    with running(a_home) as a:
        address = _api_address(a_home)
        held = [s for s in [await _half_sent(address) for _ in range(600)] if s is not None]
        status = await trio.run_process([*_cli(a_home), "status", "--json"], env=_env(),
                                        capture_stdout=True, capture_stderr=True, check=False)
        token = (a_home / "api.token").read_text().strip()
        events = await trio.open_tcp_stream(*address)
        await events.send_all(f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              f"Authorization: Bearer {token}\r\n\r\n".encode())
        with trio.fail_after(WAIT):
            first = await events.receive_some(4096)
        await events.aclose()
        for stream in held:
            with suppress(Exception):
                await stream.aclose()
        figure("11", f"{len(held)} half-sent requests: `tidings status` exit "
                     f"{status.returncode}, event stream answered {first[:12]!r}")
        assert status.returncode == 0, status.stderr
        assert first.startswith(b"HTTP/1.1 200")
        # The CLI went through the Unix socket, which only this user can connect to.
        assert (a_home / "api.sock").stat().st_mode & 0o777 == 0o600
        assert_healthy(a)


async def test_bodies_are_not_read_before_the_token_is_checked(tmp_path: Path) -> None:
    """200 unauthenticated requests, each with a 2 MiB body: refused on their head (401);
    the node's memory grows < 40 MiB."""
    a_home = author_home(tmp_path, "a", 5)
    with running(a_home) as a:
        address = _api_address(a_home)
        before = rss_mib(a)
        body = b"x" * (2 * 1024 * 1024 - 1)
        head = (b"POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        answers: list[bytes] = []
        streams = []
        for _ in range(200):
            stream = await trio.open_tcp_stream(*address)
            streams.append(stream)
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(head)
                with trio.move_on_after(0.5):
                    answers.append(await stream.receive_some(4096))
                await stream.send_all(body[:256 * 1024])  # a stranger trying anyway
        grown = rss_mib(a) - before
        for stream in streams:
            with suppress(Exception):
                await stream.aclose()
        refused = sum(a.startswith(b"HTTP/1.1 401") for a in answers)
        figure("12", f"200 unauthenticated 2 MiB bodies: {refused} refused on the head, "
                     f"RSS +{grown:.0f} MiB")
        assert refused == 200
        assert grown < 40
        assert_healthy(a)


# -- rows 9 and 10: the public gateway ----------------------------------------------------------


def _rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_the_gateway_bounds_each_page_and_takes_no_links_from_host(
    tmp_path: Path
) -> None:
    """40 posts of 30,000 '&' (150 KB each once escaped); 12 clients ask for 200 of them
    and never read. The page ends at its byte budget and links to the rest; an honest
    reader gets it; the gateway grows < 80 MiB; no link names the request's Host."""
    from tests.test_status_cli import serving_feeds

    home = tmp_path / "a"
    ok(tidings(home, "init"))
    lines = "".join(f"{i} {'&' * 30_000}\n" for i in range(40)).encode()
    ok(tidings(home, "publish", "--lines", "--log", "blog", stdin=lines))
    blog = feed_of(home, "blog")
    with serving_feeds(home) as (base, proc, _log):
        host, port = base.removeprefix("http://").rstrip("/").split(":")
        path = f"/feeds/{blog}.atom?limit=200"
        before = _rss_of(proc.pid)
        stalled = []
        for _ in range(12):
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            stalled.append(stream)
        await trio.sleep(1)  # (they render meanwhile; nothing is asserted about time)
        honest = await trio.open_tcp_stream(host, int(port))
        await honest.send_all(f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n"
                              "Connection: close\r\n\r\n".encode())
        answer = bytearray()
        with trio.fail_after(WAIT):
            while chunk := await honest.receive_some(1 << 16):
                answer += chunk
        grown = _rss_of(proc.pid) - before
        for stream in [*stalled, honest]:
            await stream.aclose()
        assert proc.poll() is None
    figure("9", f"?limit=200 of 150 KB posts: a page of {len(answer) / (1 << 20):.1f} MiB "
                f"with {answer.count(b'<entry>')} entries and a next link; gateway RSS "
                f"+{grown:.0f} MiB with 12 clients not reading")
    assert answer.startswith(b"HTTP/1.1 200")
    assert len(answer) < 2 << 20 and b'rel="next"' in answer
    assert grown < 80
    assert b"evil.example" not in answer  # row 10: links never come from Host


# -- row 8: entries relayed without their payloads ------------------------------------------------


def _payload_count(home: Path, feed: FeedId) -> int:
    db = sqlite3.connect(home / "store.sqlite3")
    try:
        row = db.execute("SELECT count(e.payload) FROM entries e JOIN feeds f "
                         "ON f.id = e.key >> ? WHERE f.author = ? AND f.log_id = ?",
                         (SEQ_BITS, feed.author_key, feed.log_id)).fetchone()
    finally:
        db.close()
    return int(row[0])


async def test_payloads_a_peer_stripped_are_fetched_from_another(tmp_path: Path) -> None:
    """A peer relays an author's 30 entries with every payload nil; once the author
    itself connects, the node fetches the payloads from it."""

    w_home = author_home(tmp_path, "w", 30)
    blog = feed_of(w_home, "blog")
    book = Home(w_home).open_logbook()
    try:
        stripped = tuple((entry.raw, None) for entry, _ in book.read(blog))
    finally:
        book.store.close()
    a_home = author_home(tmp_path, "a", 1)
    ok(tidings(a_home, "follow", str(blog)))
    with running(a_home) as a:
        adversary = await Adversary.opened(address_of(a))
        await adversary.send(Entries(blog, stripped))
        await adversary.alive(feed_of(a_home, "blog"))
        assert _held(a_home, blog) == 30 and _payload_count(a_home, blog) == 0
        with running(w_home, "--peer", a.address):
            with trio.fail_after(WAIT):
                while _payload_count(a_home, blog) < 30:
                    await trio.sleep(0.2)
        await adversary.aclose()
        figure("8", f"30 entries relayed with nil payloads: {_payload_count(a_home, blog)}/30 "
                    "payloads fetched from the author once it connected")
        assert_healthy(a)
