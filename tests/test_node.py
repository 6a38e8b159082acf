"""The gossip node end to end: real `tidings` processes on loopback TCP (spec/10).

The five scenarios of the node issue: anyone pulls an author's log from any
peer that holds it; live entries cross two hops; partial replication; network
keys keep networks apart; bad peers are cut off while the node serves others.
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import time
from pathlib import Path

import pytest

from tests.helpers import forge
from tests.nodes import feed_of, heads, running, transport_keys, wait_for
from tests.test_cli import ok, tidings
from tidings import FeedId, Identity, SqliteStore
from tidings.core.entry import decode_entry
from tidings.errors import PeerError
from tidings.node.home import Home
from tidings.replication.clock import LocalClock
from tidings.replication.session import Authenticated, Session
from tidings.transport.channel import Channel
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.messages import MAX_MESSAGE_SIZE, Entries, ErrorMessage

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system


def _publish(home: Path, log_id: str, count: int) -> None:
    lines = "".join(f"{log_id} entry {i}\n" for i in range(1, count + 1)).encode()
    ok(tidings(home, "publish", "--lines", "--log", log_id, stdin=lines))


def _seq(home: Path, feed: FeedId) -> int:
    store = SqliteStore(home / "store.sqlite3")
    try:
        head = store.head(feed)
        return head.seq if head else 0
    finally:
        store.close()


@pytest.fixture
def author_a(tmp_path: Path) -> tuple[Path, FeedId, FeedId]:
    """A's home: 1,000 entries in two logs, "blog" (990) and "podcast" (10)."""
    home = tmp_path / "a"
    ok(tidings(home, "init"))
    _publish(home, "blog", 990)
    _publish(home, "podcast", 10)
    return home, feed_of(home, "blog"), feed_of(home, "podcast")


def test_anyone_pulls_an_authors_log_from_any_peer(
    tmp_path: Path, author_a: tuple[Path, FeedId, FeedId]
) -> None:
    """Scenario 1: C gets A's blog from B alone; A never sees C; A's podcast stays home."""
    a_home, blog, podcast = author_a
    b_home, c_home = tmp_path / "b", tmp_path / "c"
    ok(tidings(b_home, "follow", str(blog)))
    with running(a_home) as a:
        synced = ok(tidings(b_home, "sync", "--peer", a.address, "--timeout", "60", "--json"))
        assert synced.json_lines()[0]["received"] == 990
    a_log = a.log()
    assert heads(b_home) == {"blog": 990}

    with running(b_home) as b:
        ok(tidings(c_home, "follow", str(blog)))
        ok(tidings(c_home, "sync", "--peer", b.address, "--timeout", "60"))
    assert heads(c_home) == {"blog": 990}
    verified = ok(tidings(c_home, "verify", "--json")).json_lines()
    assert [(v["feed"], v["entries"], v["payloads"]) for v in verified] == [(str(blog), 990, 990)]
    shown = ok(tidings(c_home, "show", str(blog), "--json")).json_lines()
    assert shown[-1]["payload"] == "blog entry 990"
    assert str(podcast) not in ok(tidings(c_home, "feeds")).out
    # A's node saw B's sync client, never any key C used.
    assert transport_keys(c_home) and not any(k in a_log for k in transport_keys(c_home))
    assert any(k in a_log for k in transport_keys(b_home))


def test_live_entries_reach_a_reader_through_a_relay(
    tmp_path: Path, author_a: tuple[Path, FeedId, FeedId]
) -> None:
    """Scenario 2: with A, B and C running, A's new entry reaches C through B."""
    a_home, blog, _ = author_a
    b_home, c_home = tmp_path / "b", tmp_path / "c"
    ok(tidings(b_home, "follow", str(blog)))
    ok(tidings(c_home, "follow", str(blog)))
    # A and C dial B, so B knows no address of A to pass on to C: C talks to B only.
    with running(b_home) as b, running(a_home, "--peer", b.address) as a, \
            running(c_home, "--peer", b.address) as c:
        wait_for(lambda: _seq(c_home, blog) == 990, 60, "C to catch up")
        delays = []
        for i in range(3):
            ok(tidings(a_home, "publish", "--log", "blog", f"live {i}"))
            published = time.monotonic()
            wait_for(lambda i=i: _seq(c_home, blog) == 991 + i, 30, "the live entry at C")
            delays.append(time.monotonic() - published)
    # The delay is a figure, not a test (a loaded machine must not fail it): shown
    # with -s; benchmarks/replication.py measures it beside its floor.
    print(f"live delay through a relay: median {statistics.median(delays):.3f} s of {delays}")
    assert heads(c_home) == {"blog": 993}
    assert a.key not in c.log() and c.key not in a.log()


def test_partial_replication_gets_the_latest_entries_without_the_rest(tmp_path: Path) -> None:
    """Scenario 3: C asks B for the latest 20 of a 5,000-entry log, verified."""
    a_home, b_home, c_home = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ok(tidings(a_home, "init"))
    _publish(a_home, "blog", 5000)
    blog = feed_of(a_home, "blog")
    ok(tidings(b_home, "follow", str(blog)))
    with running(a_home) as a:
        ok(tidings(b_home, "sync", "--peer", a.address, "--timeout", "60"))
    with running(b_home) as b:
        fetched = ok(tidings(
            c_home, "fetch", str(blog), "--peer", b.address, "--latest", "20", "--json"
        )).json_lines()
    assert [e["seq"] for e in fetched] == list(range(4981, 5001))
    assert fetched[-1]["payload"] == "blog entry 5000"
    assert not c_home.exists()  # a fetch without a home stores nothing and makes none


def test_a_node_on_another_network_cannot_connect(
    tmp_path: Path, author_a: tuple[Path, FeedId, FeedId]
) -> None:
    """Scenario 4: another network key gets no handshake, and no data."""
    a_home, blog, _ = author_a
    other = ok(tidings(tmp_path / "x", "network", "new")).out.strip()
    assert len(bytes.fromhex(other)) == 32
    d_home = tmp_path / "d"
    ok(tidings(d_home, "follow", str(blog)))
    with running(a_home) as a:
        refused = tidings(d_home, "sync", "--peer", a.address, "--network", other,
                          "--timeout", "20")
        assert refused.code == 1, refused.err
        assert "handshake" in refused.err
        a.wait_log(r"event=peer-error .*code=handshake")
        # A node on the other network, dialing A, fails the same way.
        with running(d_home, "--network", other, "--peer", a.address) as d:
            d.wait_log(r"event=peer-error .*code=handshake")
        # Both networks work within themselves.
        ok(tidings(d_home, "sync", "--peer", a.address, "--timeout", "20"))
    assert heads(d_home) == {"blog": 990}


class RawPeer:
    """A hand-driven peer: real TCP, our channel, whatever bytes a test wants."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.channel = Channel(initiator=True, static_private=os.urandom(32),
                               network_key=DEFAULT_NETWORK_KEY)
        self.session = Session(self.channel, LocalClock())
        self.channel.start()
        self.sock.sendall(self.session.data_to_send())
        while self.session.version is None:
            for event in self.session.receive_data(self._recv()):
                if isinstance(event, Authenticated):
                    self.session.start()
            self.sock.sendall(self.session.data_to_send())

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        return data

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_with(self) -> str | None:
        """Read until the node closes; the error code it sent, if any."""
        code = None
        try:
            while True:
                self.channel.receive_data(self._recv())
                for message in self.channel.messages():
                    if isinstance(message, ErrorMessage):
                        code = message.code
        except (ConnectionError, OSError, PeerError):
            pass
        finally:
            self.sock.close()
        return code


def _sealed(channel: Channel, plaintext: bytes) -> bytes:
    """One transport frame with any plaintext, encrypted properly."""
    assert channel._send_cipher is not None
    frame = channel._send_cipher.encrypt_with_ad(b"", plaintext)
    return struct.pack(">H", len(frame)) + frame


def test_bad_peers_are_cut_off_while_the_node_serves_others(
    tmp_path: Path, author_a: tuple[Path, FeedId, FeedId]
) -> None:
    """Scenario 5: a forged entry, a malformed frame, an oversized message."""
    a_home, blog, _ = author_a
    b_home, c_home = tmp_path / "b", tmp_path / "c"
    ok(tidings(b_home, "follow", str(blog)))
    ok(tidings(c_home, "follow", str(blog)))
    author = Home(a_home).identity()
    with running(a_home) as a:
        ok(tidings(b_home, "sync", "--peer", a.address, "--timeout", "60"))
    store = SqliteStore(b_home / "store.sqlite3")
    head = store.head(blog)
    store.close()
    assert head is not None
    # An entry 991 that claims A's key but is signed by someone else.
    forged = forge(Identity.generate(), author=author.author.key, seq=991,
                   backlink=head.hash, lipmaa_link=_lipmaa_of(b_home, blog, 991))
    assert decode_entry(forged).seq == 991

    with running(b_home) as b:
        liar = RawPeer(b.port)
        liar.channel.send(Entries(blog, ((forged, b""),)))
        liar.send_raw(liar.channel.data_to_send())
        assert liar.closed_with() == "invalid-data"

        garbler = RawPeer(b.port)
        garbler.send_raw(struct.pack(">H", 40) + os.urandom(40))
        assert garbler.closed_with() == "bad-frame"

        bloater = RawPeer(b.port)
        bloater.send_raw(_sealed(bloater.channel, struct.pack(">I", MAX_MESSAGE_SIZE + 1)))
        assert bloater.closed_with() == "oversize"

        # Meanwhile and afterwards B serves honest peers as before.
        ok(tidings(c_home, "sync", "--peer", b.address, "--timeout", "60"))
        log = b.log()
    assert heads(c_home) == {"blog": 990}
    for code in ("invalid-data", "bad-frame", "oversize"):
        assert f"code={code}" in log, log
    assert "seq 991" in log and "bad-signature" in log
    assert heads(b_home) == {"blog": 990}  # nothing invalid was stored
    ok(tidings(b_home, "verify"))


def _lipmaa_of(home: Path, feed: FeedId, seq: int) -> bytes | None:
    from tidings.core.lipmaa import link_target

    target = link_target(seq)
    if target is None:
        return None
    store = SqliteStore(home / "store.sqlite3")
    try:
        return store.hashes(feed, [target]).get(target)
    finally:
        store.close()


def test_a_relay_serves_an_author_who_is_offline(
    tmp_path: Path, author_a: tuple[Path, FeedId, FeedId]
) -> None:
    """A relay stores every feed offered to it; readers fetch from it while A is away."""
    a_home, blog, podcast = author_a
    relay_home, c_home = tmp_path / "relay", tmp_path / "c"
    with running(relay_home, "--relay") as relay:
        with running(a_home, "--peer", relay.address):
            wait_for(lambda: _seq(relay_home, blog) == 990 and _seq(relay_home, podcast) == 10,
                     60, "the relay to take both of A's logs")
        ok(tidings(c_home, "follow", str(blog)))
        ok(tidings(c_home, "sync", "--peer", relay.address, "--timeout", "60"))
    assert heads(c_home) == {"blog": 990}
    assert ok(tidings(relay_home, "following")).out == ""  # it follows nobody


def test_up_and_sync_run_against_one_home_at_once(
    tmp_path: Path, author_a: tuple[Path, FeedId, FeedId]
) -> None:
    a_home, blog, _ = author_a
    b_home = tmp_path / "b"
    ok(tidings(b_home, "follow", str(blog)))
    with running(a_home) as a, running(b_home) as b:
        ok(tidings(b_home, "sync", "--peer", a.address, "--timeout", "60"))
        assert heads(b_home) == {"blog": 990}
        # The running node noticed the sync's entries: it serves them on.
        c_home = tmp_path / "c"
        ok(tidings(c_home, "follow", str(blog)))
        ok(tidings(c_home, "sync", "--peer", b.address, "--timeout", "60"))
    assert heads(c_home) == {"blog": 990}


def test_peers_learn_addresses_from_each_other(tmp_path: Path) -> None:
    """Peer exchange: C, told only of B, learns the address B dialed (A) and connects."""
    a_home, b_home, c_home = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    with running(a_home) as a, running(b_home, "--peer", a.address) as b:
        b.wait_log(r"event=connected .*direction=out")
        with running(c_home, "--peer", b.address) as c:
            c.wait_log(rf"event=connected peer={a.key} addr={a.address} direction=out")
    from tidings.node.state import NodeState

    state = NodeState(c_home / "node.sqlite3")
    try:
        sources = {(p.host, p.port): p.source for p in state.peers()}
    finally:
        state.close()
    assert sources[("127.0.0.1", a.port)] == "exchange"
    assert sources[("127.0.0.1", b.port)] == "config"


def test_follow_unfollow_following(tmp_path: Path, author_a: tuple[Path, FeedId, FeedId]) -> None:
    _, blog, podcast = author_a
    home = tmp_path / "r"
    assert ok(tidings(home, "follow", str(blog))).out.startswith("following ")
    ok(tidings(home, "follow", str(podcast)))
    assert "already" in ok(tidings(home, "follow", str(blog))).out
    listed = ok(tidings(home, "following", "--json")).json_lines()
    assert [line["feed"] for line in listed] == [str(blog), str(podcast)]
    ok(tidings(home, "unfollow", str(blog)))
    assert ok(tidings(home, "following")).out.split() == [str(podcast)]
    assert tidings(home, "follow", "tf1nonsense_blog").code == 2


def test_sync_says_what_to_do_when_nothing_is_followed_or_nobody_answers(
    tmp_path: Path,
) -> None:
    home = tmp_path / "r"
    nothing = tidings(home, "sync", "--peer", "127.0.0.1:9")
    assert nothing.code == 2 and "tidings follow" in nothing.err
    ok(tidings(home, "follow", str(feed_of_new_author(tmp_path))))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    refused = tidings(home, "sync", "--peer", f"127.0.0.1:{port}", "--timeout", "10")
    assert refused.code == 1 and "cannot connect" in refused.err, refused.err
    assert tidings(home, "sync", "--peer", "host:notaport").code == 2


def feed_of_new_author(tmp_path: Path) -> FeedId:
    home = tmp_path / "author"
    ok(tidings(home, "init"))
    return feed_of(home, "blog")


def test_the_config_file_sets_the_node(tmp_path: Path,
                                       author_a: tuple[Path, FeedId, FeedId]) -> None:
    """`[node]` in config.toml: listen, peers, relay, lan_discovery; flags still win."""
    a_home, blog, _ = author_a
    relay_home = tmp_path / "relay"
    ok(tidings(relay_home, "init"))
    with running(a_home) as a:
        (relay_home / "config.toml").write_text(
            f'[node]\nlisten = "127.0.0.1:0"\npeers = ["{a.address}"]\nrelay = true\n'
            "lan_discovery = false\n"
        )
        with running(relay_home, lan=True) as relay:  # no --listen, no --no-lan: config only
            assert "relay=True" in relay.log() and "lan-" not in relay.log()
            wait_for(lambda: _seq(relay_home, blog) == 990, 60, "the relay to take A's blog")
    (relay_home / "config.toml").write_text('[node]\nlisten = 7654\n')
    bad = tidings(relay_home, "up")
    assert bad.code == 2 and "node.listen must be a str" in bad.err
    (relay_home / "config.toml").write_text('[node]\nlisten_on = "x"\n')
    assert "unknown setting node.listen_on" in tidings(relay_home, "up").err


def test_a_port_in_use_gets_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = tidings(tmp_path / "n", "up", "--listen", f"127.0.0.1:{port}", "--no-lan",
                       "--no-api")
    assert busy.code == 2, busy.err
    # (A new home first logs its new identity; the error is the last line.)
    assert busy.err_lines[-1].startswith(f"tidings: cannot listen on 127.0.0.1:{port} for peers: ")
    assert "choose another port with --listen HOST:PORT" in busy.err_lines[-1]
