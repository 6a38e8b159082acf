"""kill -9 faults in a small live network: real ``tidings up`` processes on loopback.

Four homes, each run by ``tidings up --listen 127.0.0.1:PORT --no-lan`` on a port
chosen free at the start and kept across restarts, so peers redial the same
address:

- A, the author: its node dials R (``--peer``); a publisher thread runs
  ``tidings publish`` on A's home all along (single entries, and ``--lines``
  batches of 1 to 2,000 lines), now and then pausing as authors do;
- R, a relay (``--relay``, dials nobody);
- B and C, readers that ``tidings follow`` A's blog; B dials R, C dials R and B.

Peer exchange then adds links of its own (R learns B's address from C, A learns
it from R, and so on), so A often streams to B directly. Each round the test
waits a random moment and kills with SIGKILL one or two random nodes, all four
at once (a power cut), or the running ``tidings publish``. The home of a killed
node is checked while the node is down, and A's home after each killed publish
(publishing held meanwhile): what ``tidings verify`` checks passes (checked in
this process; the command itself runs on every home at the end), ``PRAGMA
integrity_check`` is ok, every feed is contiguous from seq 1 with its payloads,
and nothing an earlier check saw is gone (``tests.test_crash.check_store``). A
killed node then restarts on the same home and port, mostly at once, now and
then after 2-4 s (long enough for its peers' redials to fail and back off).

A publish is *acknowledged* when ``tidings publish`` exited 0 and printed
``FEED SEQ HASH`` (for ``--lines``, the last entry; the hash chain covers the
rest); every acknowledged entry must be in A's store with that hash at every
check. After the last round the publisher stops and every reader and the relay
must reach A's final head (same seq, same hash) within ``CONVERGE_S`` seconds.
Then every node stops cleanly and every store is checked again, with every
acknowledged entry required at each reader and at the relay. No node log may
hold a traceback, and no honest node may call another misbehaving (a
``peer-error`` with a code that gets a peer refused).

Decisions (victims, moments, publish sizes, publisher kills) come from a seeded
``random.Random``: the same seed gives the same sequence of decisions, though
process timing varies from run to run. A failure names the seed and keeps a
journal of the rounds (``faults.txt``) and each incarnation's log in the test's
``tmp_path``. The CI default is ``SEED`` and ``ROUNDS`` below; a larger run::

    TIDINGS_FAULT_SEED=12345 TIDINGS_FAULT_ROUNDS=400 .venv/bin/pytest tests/test_faults.py -x -rA

(about 1.5-2 s a round; add ``-k kill_9`` to leave out the fixed scenarios).

The other tests here are fixed scenarios for bugs the random run can miss (or
would not name).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.nodes import LISTENING, feed_of
from tests.test_cli import _env, ok, tidings
from tests.test_crash import Expectations, check_store
from tidings import FeedId, SqliteStore
from tidings.node.home import Home

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

#: The CI seed; TIDINGS_FAULT_SEED replaces it.
SEED = 20_240_611
#: Fault rounds in CI (about 1.5 s each); TIDINGS_FAULT_ROUNDS replaces it (with
#: the CI seed, 16 rounds kill -9 each node 4 to 6 times, all four at once in one of
#: them, and the publisher in three; the publisher kills its own publishes too).
ROUNDS = 16
#: How long the network may take to converge after the last restart. Generous:
#: a node redials a peer it was connected to only RECONNECT_AFTER (~5 s, jittered
#: to 7.5 s) after the last connect, and a peer that refused connections while
#: it was down is retried with a doubling backoff (1-3 s, 2-6 s, 4-12 s...).
CONVERGE_S = 90.0
#: Bound on a node's start-up and on one CLI call; only a hang reaches it.
START_S = 30.0
#: Codes that make a node refuse its peer for ten minutes (RemoteProtocolError);
#: honest nodes killed at any moment must never earn one.
MISBEHAVIOUR_CODES = {"bad-frame", "malformed", "oversize", "invalid-data", "flood", "unexpected"}

LOG_ID = "blog"
#: Lines the publisher sends in --lines batches before it keeps to single entries.
LINES_BUDGET = 40_000
PYTHON = [sys.executable, "-m", "tidings"]


def _seed() -> int:
    return int(os.environ.get("TIDINGS_FAULT_SEED", SEED))


def _rounds() -> int:
    return int(os.environ.get("TIDINGS_FAULT_ROUNDS", ROUNDS))


def free_ports(count: int) -> list[int]:
    """Ports free now (all bound at once, so they differ), for fixed --listen addresses."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class Journal:
    """What happened, in order, in a file beside the homes (the tail goes into failures)."""

    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.seed = seed
        self.start = time.monotonic()
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        line = f"{time.monotonic() - self.start:8.3f} {text}"
        with self.lock:
            self.lines.append(line)
            with open(self.path, "a") as handle:
                handle.write(line + "\n")

    def tail(self, count: int = 40) -> str:
        with self.lock:
            lines = self.lines[-count:]
        return f"seed {self.seed}; journal {self.path} ends:\n" + "\n".join(lines)


class FaultNode:
    """``tidings up`` on a fixed port, restartable on the same home; one log per run."""

    def __init__(self, name: str, home: Path, port: int, args: list[str], logs: Path) -> None:
        self.name, self.home, self.port, self.args, self.logs = name, home, port, args, logs
        self.runs = 0
        self.key = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = logs / f"{name}-0.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.runs += 1
        self.log_path = self.logs / f"{self.name}-{self.runs}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*PYTHON, "--home", str(self.home), "up", "--listen", self.address, "--no-lan",
                 "--no-api", *self.args],
                stdout=subprocess.DEVNULL, stderr=log, env=_env(),
            )
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log())
            if found:
                assert int(found.group(1)) == self.port
                self.key = found.group(2)
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"{self.name} did not start listening:\n{self.log()}")

    def kill9(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} had died on its own ({self.proc.returncode}):\n"
                                 f"{self.log()}")
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=START_S) == -signal.SIGKILL

    def stop(self) -> None:
        """SIGTERM and a clean exit (the node saves its clocks)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=START_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"{self.name} did not stop on SIGTERM:\n{self.log()}"
                ) from None
        assert self.proc.returncode == 0, f"{self.name} exited {self.proc.returncode}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def all_logs(self) -> str:
        return "".join(
            (self.logs / f"{self.name}-{run}.log").read_text(errors="replace")
            for run in range(1, self.runs + 1)
        )


@dataclass(eq=False)
class Publisher(threading.Thread):
    """Runs ``tidings publish`` on the author's home until stopped; records acknowledgements."""

    home: Path
    rng: random.Random
    journal: Journal
    acked: list[tuple[int, bytes]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    calls: int = 0
    kills: int = 0
    lines_sent: int = 0

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.holding = threading.Event()
        self.busy = threading.Event()
        self.lock = threading.Lock()
        self.current: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if self.paused.is_set() or self.holding.is_set():
                    time.sleep(0.02)
                    continue
                self.busy.set()
                try:
                    if not self.holding.is_set():
                        self._one()
                finally:
                    self.busy.clear()
                time.sleep(self.rng.uniform(0.0, 0.03))
        except BaseException as exc:  # the main thread reports it
            self.failures.append(f"publisher thread: {exc!r}")

    def _one(self) -> None:
        rng, number = self.rng, self.calls
        self.calls += 1
        # Batches until LINES_BUDGET lines went out, then single entries only: long
        # runs keep stores small enough to check in a second or two.
        if rng.random() < 0.5 or self.lines_sent > LINES_BUDGET:
            argv = [*PYTHON, "--home", str(self.home), "publish", "--log", LOG_ID,
                    f"single {number}"]
            data = b""
        else:
            count = rng.choice([1, 2, 10, 50, 200]) if rng.random() < 0.92 \
                else rng.randint(500, 2000)
            argv = [*PYTHON, "--home", str(self.home), "publish", "--log", LOG_ID, "--lines"]
            # Payloads of ~100-300 bytes: large batches take a moment to stream.
            data = "".join(f"batch {number} line {k} {'x' * rng.randrange(100, 300)}\n"
                           for k in range(count)).encode()
            self.lines_sent += count
        # Now and then the publisher kills its own call at a random moment.
        kill_after = rng.uniform(0.0, 0.15) if rng.random() < 0.15 else None
        with self.lock:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=_env())
            self.current = proc
        try:
            out, err = proc.communicate(data, timeout=kill_after or START_S)
        except subprocess.TimeoutExpired:
            if kill_after is None:
                proc.kill()
                proc.communicate()
                self.failures.append(f"publish call {number} hung")
                return
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate()
        except (BrokenPipeError, OSError):  # killed while we wrote its stdin
            out, err = b"", b""
            proc.wait()
        finally:
            with self.lock:
                self.current = None
        if proc.returncode == 0:
            _feed, seq_text, hash_hex = out.decode().split()
            seq, digest = int(seq_text), bytes.fromhex(hash_hex)
            self.acked.append((seq, digest))
            self.journal(f"ack publish {number}: seq {seq}")
        elif proc.returncode == -signal.SIGKILL:
            self.kills += 1
            self.journal(f"publish {number} killed")
        else:
            self.failures.append(
                f"publish {number} exited {proc.returncode}: {err.decode(errors='replace')}"
            )
        if b"Traceback" in err:
            self.failures.append(f"publish {number}: {err.decode(errors='replace')}")

    @contextmanager
    def held(self) -> Iterator[None]:
        """No ``tidings publish`` runs inside this block (the current call ends first)."""
        self.holding.set()
        try:
            deadline = time.monotonic() + START_S
            while self.busy.is_set():
                assert time.monotonic() < deadline, "the publish call did not end"
                time.sleep(0.005)
            yield
        finally:
            self.holding.clear()

    def kill_current(self) -> bool:
        """SIGKILL the running ``tidings publish``, waiting up to a second for one."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with self.lock:
                proc = self.current
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    return True
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=START_S + 5)
        assert not self.is_alive(), "the publisher thread did not stop"


def head_of(home: Path, feed: FeedId) -> tuple[int, bytes | None]:
    """(seq, hash) of a home's head of ``feed``, read beside the running node (WAL)."""
    path = home / "store.sqlite3"
    if not path.exists():
        return 0, None
    store = SqliteStore(path)
    try:
        head = store.head(feed)
        return (head.seq, head.hash) if head else (0, None)
    finally:
        store.close()


def check_acked(home: Path, feed: FeedId, acked: list[tuple[int, bytes]], where: str) -> None:
    acked = list(acked)  # before the store is read: the publisher appends as it goes
    if not acked:
        return
    store = SqliteStore(home / "store.sqlite3")
    try:
        held = store.hashes(feed, [seq for seq, _ in acked])
    finally:
        store.close()
    for seq, digest in acked:
        assert held.get(seq) == digest, (
            f"{where}: acknowledged {feed} seq {seq} is "
            + ("gone" if seq not in held else "another entry")
        )


def verify_cli(home: Path) -> None:
    result = tidings(home, "verify")
    assert result.code == 0, f"tidings verify {home.name} exited {result.code}: {result.err}"


def verify_store(home: Path) -> None:
    """What ``tidings verify`` checks (verify_cli), in this process: after each round's
    kill -9, where a CLI process per victim would cost more than the check."""
    book = Home(home).open_logbook()
    try:
        failed = [report for report in book.verify() if not report.ok]
    finally:
        book.store.close()
    assert not failed, f"{home.name}: {failed}"


def peer_error_codes(text: str) -> list[str]:
    return re.findall(r"event=peer-error .*?code=(\S+)", text)


def wait_until(predicate: Callable[[], bool], timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def test_kill_9_nodes_and_publisher_while_replicating(tmp_path: Path) -> None:
    seed, rounds = _seed(), _rounds()
    rng = random.Random(seed)
    journal = Journal(tmp_path / "faults.txt", seed)
    journal(f"seed {seed}, {rounds} rounds")
    logs = tmp_path / "logs"
    logs.mkdir()
    homes = {name: tmp_path / name for name in "arbc"}
    ok(tidings(homes["a"], "init"))
    ok(tidings(homes["a"], "publish", "--log", LOG_ID, "--lines",
               stdin=b"".join(b"first %d\n" % i for i in range(1, 501))))
    blog = feed_of(homes["a"], LOG_ID)
    for reader in "bc":
        ok(tidings(homes[reader], "follow", str(blog)))

    ports = dict(zip("arbc", free_ports(4), strict=True))

    def at(name: str) -> str:
        return f"127.0.0.1:{ports[name]}"

    nodes = {
        "r": FaultNode("r", homes["r"], ports["r"], ["--relay"], logs),
        "a": FaultNode("a", homes["a"], ports["a"], ["--peer", at("r")], logs),
        "b": FaultNode("b", homes["b"], ports["b"], ["--peer", at("r")], logs),
        "c": FaultNode("c", homes["c"], ports["c"], ["--peer", at("r"), "--peer", at("b")],
                       logs),
    }
    expect = {name: Expectations() for name in nodes}
    publisher = Publisher(homes["a"], random.Random(rng.randrange(1 << 30)), journal)

    def author_acks() -> None:
        expect["a"].acked[blog] = dict(publisher.acked)

    def check_down(name: str) -> None:
        """The invariants of a home after a kill -9 (of its node, or of a publish)."""
        try:
            if name == "a":
                # The publisher writes A's store: hold it while the store is read.
                with publisher.held():
                    author_acks()
                    check_store(homes[name], expect[name])
                    verify_store(homes[name])
            else:
                check_store(homes[name], expect[name])
                verify_store(homes[name])
        except AssertionError as exc:
            raise AssertionError(f"{name}'s store after kill -9: {exc}\n{journal.tail()}") \
                from None

    try:
        for node in nodes.values():
            node.start()
        publisher.start()
        for index in range(rounds):
            time.sleep(rng.uniform(0.05, 0.7))
            if publisher.failures:
                break
            # Authors publish in bursts: quiet spells are part of the run.
            if publisher.paused.is_set() and rng.random() < 0.5:
                publisher.paused.clear()
                journal(f"round {index}: publishing resumes")
            elif not publisher.paused.is_set() and rng.random() < 0.12:
                publisher.paused.set()
                journal(f"round {index}: publishing pauses")
            what = rng.choices(["one", "two", "all", "publisher"], [6, 2, 1, 2])[0]
            if what == "publisher" and publisher.paused.is_set():
                what = "one"  # no publish is running to kill
            if what == "publisher":
                killed = publisher.kill_current()
                journal(f"round {index}: kill -9 publish ({'done' if killed else 'none running'})")
                check_down("a")  # A's node runs on; its store must be whole all the same
                continue
            count = {"one": 1, "two": 2}.get(what, len(nodes))  # "all": a power cut
            victims = rng.sample(sorted(nodes), count)
            for name in victims:
                nodes[name].kill9()
            journal(f"round {index}: kill -9 {' '.join(victims)}; heads "
                    + " ".join(f"{n}={head_of(homes[n], blog)[0]}" for n in sorted(nodes)))
            for name in victims:
                check_down(name)
            # Down a moment, now and then long enough for peers' redials to fail and back
            # off; then back on the same home and port, in random order.
            time.sleep(rng.uniform(0.0, 0.6) if rng.random() < 0.9 else rng.uniform(2.0, 4.0))
            for name in victims:
                nodes[name].start()
            journal(f"round {index}: restarted {' '.join(victims)}")
            check_acked(homes["a"], blog, publisher.acked, f"round {index}")

        publisher.stop()
        assert not publisher.failures, "\n".join(publisher.failures) + "\n" + journal.tail()
        final = head_of(homes["a"], blog)
        journal(f"publishing stopped: {publisher.calls} calls, {len(publisher.acked)} acked, "
                f"{publisher.kills} killed; A's head {final[0]}")
        assert publisher.acked and publisher.kills, "the run exercised nothing"
        check_acked(homes["a"], blog, publisher.acked, "the end")

        others = ("r", "b", "c")
        took = wait_until(lambda: all(head_of(homes[n], blog) == final for n in others),
                          CONVERGE_S)
        heads_now = {n: head_of(homes[n], blog)[0] for n in others}
        journal(f"converged in {took:.1f} s" if took is not None else
                f"NOT converged after {CONVERGE_S} s: {heads_now}")
        assert took is not None, (
            f"the network did not converge on A's head {final[0]} within {CONVERGE_S} s: "
            f"{heads_now}\n{journal.tail()}"
        )
    finally:
        publisher.stopping.set()
        if publisher.is_alive():
            publisher.kill_current()
        for node in nodes.values():
            if node.running:
                node.stop()

    # Everything stopped cleanly: every store verifies and holds every acknowledged entry.
    for name in nodes:
        expect[name].acked[blog] = dict(publisher.acked)
        check_store(homes[name], expect[name])
        verify_cli(homes[name])
        assert head_of(homes[name], blog) == final
    for node in nodes.values():
        text = node.all_logs()
        assert "Traceback" not in text, f"{node.name}:\n{text}"
        bad = [c for c in peer_error_codes(text) if c in MISBEHAVIOUR_CODES]
        assert not bad, f"{node.name} called an honest peer misbehaving: {bad}\n{text}"
    journal(f"done: {sum(n.runs - 1 for n in nodes.values())} node restarts, "
            f"{publisher.kills} publisher kills")


# -- fixed scenarios -----------------------------------------------------------------------


def _connected(node: FaultNode) -> int:
    return node.log().count("event=connected")


def _setup(took: float | None, what: str) -> None:
    """A scenario's set-up step; not an AssertionError, which an xfail would take for the bug."""
    if took is None:
        raise RuntimeError(f"set-up: timed out waiting for {what}")


@pytest.mark.parametrize("restart", ["kill-9", "sigterm"])
def test_a_restarted_relay_keeps_relaying_the_feeds_it_held(tmp_path: Path, restart: str) -> None:
    """R relays A's blog; A and R each restart once; A's next entry must still reach R.

    With ``kill-9``: A is killed and restarted (R saves its clocks of A), then R is
    killed and restarted. With ``sigterm``: R alone restarts cleanly. Either way both
    sides remember matching clocks, so the next session opens with deltas: A's note
    for the blog has not changed and is not sent. A relay therefore relays again
    every feed it holds when it starts (spec/10 §9); before that fix R noted the
    blog without WANT and stayed at seq 1 for good.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    a_home, r_home = tmp_path / "a", tmp_path / "r"
    ok(tidings(a_home, "init"))
    ok(tidings(a_home, "publish", "--log", LOG_ID, "one"))
    blog = feed_of(a_home, LOG_ID)
    a_port, r_port = free_ports(2)
    relay = FaultNode("r", r_home, r_port, ["--relay"], logs)
    author = FaultNode("a", a_home, a_port, ["--peer", f"127.0.0.1:{r_port}"], logs)
    try:
        relay.start()
        author.start()
        _setup(wait_until(lambda: head_of(r_home, blog)[0] == 1, START_S), "R to take seq 1")
        if restart == "kill-9":
            author.kill9()
            author.start()  # it redials R ~5 s after its last connect
            _setup(wait_until(lambda: _connected(relay) == 2, START_S), "A to reconnect")
            time.sleep(1.0)  # the opening clocks cross
            relay.kill9()
        else:
            relay.stop()
        relay.start()
        _setup(wait_until(lambda: _connected(relay) == 1, START_S), "A to reach the new R")
        time.sleep(1.0)
        ok(tidings(a_home, "publish", "--log", LOG_ID, "two"))
        reached = wait_until(lambda: head_of(r_home, blog)[0] == 2, 6.0)
        assert reached is not None, f"the relay stays at seq {head_of(r_home, blog)[0]}"
    finally:
        for node in (author, relay):
            if node.running:
                node.stop()


def test_a_node_survives_a_peer_sending_a_deeply_nested_fork_proof(tmp_path: Path) -> None:
    """One 500-byte message from any peer on the network ended the node (RecursionError
    in the strict CBOR reader, fixed in 3afd860; tests/test_fuzz.py has the unit tests).
    The node must close that peer with invalid-data and serve on."""
    from tests.test_node import RawPeer
    from tidings.wire.messages import ForkProofMessage

    logs = tmp_path / "logs"
    logs.mkdir()
    (port,) = free_ports(1)
    target = FaultNode("n", tmp_path / "n", port, [], logs)
    target.start()
    try:
        liar = RawPeer(port)
        liar.channel.send(ForkProofMessage(b"\x9f" * 500))
        liar.send_raw(liar.channel.data_to_send())
        code = liar.closed_with()
        time.sleep(0.5)
        assert target.running, f"the node died:\n{target.log()}"
        assert code == "invalid-data", f"closed with {code}:\n{target.log()}"
        assert "code=invalid-data" in target.log(), target.log()
        RawPeer(port).sock.close()  # and it still takes connections
    finally:
        if target.running:
            target.stop()
    assert "Traceback" not in target.log(), target.log()
