"""tidings replication benchmark: two nodes over loopback TCP, two processes.

Usage::

    python benchmarks/replication.py            # full run, about 40 s on 2 cores
    python benchmarks/replication.py --quick    # smaller sizes, about 10 s
    python benchmarks/replication.py --json     # one JSON object on stdout

Process 1 is ``tidings --home S up --listen 127.0.0.1:0 --no-lan`` on a source
home S that holds the data. Process 2 is ``tidings --home R sync --peer
127.0.0.1:PORT --json`` on a fresh home R that follows the feeds. The time from
launching the sync to its exit is the replication time. Three scenarios:

* one feed of 100,000 entries (10,000 with ``--quick``), 200-byte payloads;
* 1,000 feeds x 100 entries (100 x 100 with ``--quick``), one author per feed;
* a reconnect: two homes that share 10,000 feeds (1,000 with ``--quick``) sync
  once, then 10 feeds get one more entry on the source, and R syncs again; then
  R reconnects with nothing changed, once per round (each after a bare python).
  Then, as between a reader and a peer that serves others too, the source takes
  a tenth as many feeds that a second reader R2 does not follow, R2 follows a
  hundredth as many that the source lacks, and R2 syncs once and reconnects with
  nothing changed, once per round: each side remembers the other's notes of the
  feeds it neither holds nor wants (set aside, spec/10 §5.5), so the clock
  digests match and each reconnect is a delta (figures "reconnect (mixed) ...").

Bytes on the wire are counted by a small TCP proxy in this process, between the
sync client and the node. Every timed sync comes right after a sample of its
raw limit (bare Ed25519 verifies, a bare interpreter start), and the ratios are
medians of the per-pair ratios (benchmarks/pairs.py). Nothing here asserts on
timing; the exit status is non-zero when the benchmark itself breaks (a sync
fails or receives the wrong number of entries) or a ratio crosses the bound
its raw limit sets. benchmarks/run.py runs this too with ``--replication``.
See benchmarks/README.md.
"""

from __future__ import annotations

import compileall
import functools
import hashlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # for `import run` when run.py imports this file
    sys.path.insert(0, str(BENCH_DIR))

import run as base  # noqa: E402  (benchmarks/run.py: Figure, Results, raw limits)
from pairs import Bound, Paired, no_gc, per_second  # noqa: E402  (benchmarks/pairs.py)
from run import Figure, RawKind, Results, log  # noqa: E402

import tidings  # noqa: E402  (importable: run.py above puts src/ on the path if needed)
from tidings import Identity, Logbook, SqliteStore  # noqa: E402
from tidings.core.ids import FeedId  # noqa: E402
from tidings.node.home import Home  # noqa: E402
from tidings.node.state import NodeState  # noqa: E402
from tidings.storage.logbook import BATCH_SIZE  # noqa: E402
from tidings.wire.messages import VERSIONS  # noqa: E402

#: The wire version two nodes of this checkout speak (4: compact runs, spec/09 §8).
WIRE_VERSION = VERSIONS[-1]

perf_counter = time.perf_counter

TIMESTAMP = 1_700_000_000_000_000
PAYLOAD_SIZE = 200  # as issue 16 and benchmarks/anchor.py measure
LOG_ID = "blog"
SYNC_TIMEOUT_S = 600
#: The node notices a write by another process within its POLL_INTERVAL (0.1 s).
NODE_NOTICE_S = 1.0
#: So the child processes import the same tidings as this one (a checkout or not).
SRC_DIR = str(Path(tidings.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Sizes:
    name: str
    pairs: int  # (raw limit, timed sync) pairs per scenario
    raw_crypto: int  # Ed25519 verifies per raw sample
    one_feed: int  # entries in the one-feed log
    feeds: int  # feeds in the many-feeds scenario ...
    per_feed: int  # ... and entries in each
    shared: int  # feeds both homes hold in the reconnect scenario
    changed: int  # feeds that get one more entry before the reconnect


FULL = Sizes("full", 5, 5000, 100_000, 1000, 100, 10_000, 10)
QUICK = Sizes("quick", 3, 2000, 10_000, 100, 100, 1000, 10)
#: Tiny: for the test that checks the benchmark still runs; its figures mean nothing.
SMOKE = Sizes("smoke", 1, 200, 500, 5, 10, 20, 2)


def payload(i: int) -> bytes:
    """A PAYLOAD_SIZE-byte payload, different for each ``i``."""
    head = b"entry %09d " % i
    return head + b"x" * (PAYLOAD_SIZE - len(head))


def author(index: int) -> Identity:
    """A fixed author per index, so two runs replicate the same bytes."""
    return Identity.from_seed(hashlib.sha256(b"tidings-bench-author-%d" % index).digest())


def compile_children() -> None:
    """Byte-compile the tidings the children import, as an install does: with
    PYTHONDONTWRITEBYTECODE set and a stale ``__pycache__`` (a checkout just edited),
    every timed start would compile every module again (~0.3 s a process)."""
    compileall.compile_dir(Path(SRC_DIR) / "tidings", quiet=2)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC_DIR, env.get("PYTHONPATH")) if p)
    return env


def dir_bytes(path: Path) -> int:
    """Apparent size (st_size) of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tidings_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tidings", "--home", str(home), *args]


def rss_kib_to_mib(kib: float) -> float:
    return kib / 1024


#: A small launcher between this process and each measured child. Linux carries
#: the RSS high-water mark of the process that calls exec into the new program's
#: ``ru_maxrss`` (and subprocess execs from a vfork of this process), so a child
#: spawned straight from here reports at least this process's own peak RSS,
#: which grows with the data built for the benchmark. The launcher is a bare
#: ``python -S`` (about 10 MiB, a floor for the figure): it times the child from
#: spawn to exit and writes [seconds, exit code, ru_maxrss KiB, CPU seconds].
LAUNCHER = """\
import json, os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
maxrss = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)
with open(sys.argv[1], "w") as report:
    json.dump([elapsed, os.waitstatus_to_exitcode(status), maxrss,
               usage.ru_utime + usage.ru_stime], report)
"""


@dataclass
class Child:
    elapsed_s: float  # spawn to exit, timed by the launcher
    returncode: int
    peak_rss_kib: float  # ru_maxrss from os.wait4 in the launcher
    cpu_s: float  # user + system
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None) -> Child:
    """Run ``cmd`` through the launcher: wall time, peak RSS and CPU of that process alone."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        report = Path(tmp) / "report.json"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            done = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(report), *cmd],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if done.returncode != 0 or not report.exists():
            raise RuntimeError(f"the launcher failed ({done.returncode}): {stderr[-800:]}")
        elapsed, code, maxrss, cpu = json.loads(report.read_text())
    return Child(elapsed, code, maxrss, cpu, stdout, stderr)


# -- the source and receiving homes ------------------------------------------------


@dataclass
class Source:
    home: Path
    feeds: list[FeedId]
    entries: int
    wire_minimum: int  # bytes of every entry plus its payload, as stored (a compact run ships less)
    signatures: int  # signed entries among them: a reader verifies each
    append_s: float  # seconds in publish_batch (payloads made beforehand), setup excluded


def build_source(home: Path, authors: Sequence[int], per_feed: int, *,
                 make_payload: Callable[[int], bytes] = payload,
                 one_transaction: bool = True, init: bool = True) -> Source:
    """A home holding one ``LOG_ID`` log per author, ``per_feed`` entries each.

    With ``one_transaction`` every write happens in one store transaction
    (``publish_batch`` nests in it), so the setup pays one durable commit, not
    one per feed. Without it, each ``publish_batch`` of ``BATCH_SIZE`` is its
    own durable transaction, as ``tidings publish --lines`` writes. Without ``init``
    the home exists already (the Source describes only what this call adds).
    """
    if init:
        Home(home).init()
    store = SqliteStore(Home(home).store_path)
    feeds: list[FeedId] = []
    minimum = signatures = 0
    append_s = 0.0
    try:
        # One collection for the whole build, not one per author: a full collection
        # per feed made building 10,000 feeds take minutes (the heap grows with them).
        with store.transaction() if one_transaction else nullcontext(), no_gc():
            for index in authors:
                book = Logbook(store, author(index), clock=lambda: TIMESTAMP)
                payloads = [make_payload(i) for i in range(per_feed)]
                start = perf_counter()
                written = [entry for first in range(0, per_feed, BATCH_SIZE)
                           for entry in book.publish_batch(
                               payloads[first:first + BATCH_SIZE], LOG_ID)]
                append_s += perf_counter() - start
                minimum += sum(len(entry.raw) for entry in written) + sum(map(len, payloads))
                signatures += sum(entry.signed for entry in written)
                feeds.append(book.feed(LOG_ID))
    finally:
        store.close()
    return Source(home, feeds, len(feeds) * per_feed, minimum, signatures, append_s)


def add_entries(source: Source, authors: Sequence[int]) -> int:
    """One more entry in each of these authors' feeds; returns their bytes (entry + payload)."""
    store = SqliteStore(Home(source.home).store_path)
    added = 0
    try:
        with store.transaction():
            for index in authors:
                body = payload(10**8 + index)
                entry = Logbook(store, author(index), clock=lambda: TIMESTAMP + 1).publish_batch(
                    [body], LOG_ID
                )[0]
                added += len(entry.raw) + len(body)
    finally:
        store.close()
    return added


def make_receiver(home: Path, feeds: Sequence[FeedId]) -> Path:
    """A fresh home (no identity) that follows ``feeds``.

    The follows are inserted in one transaction: ``NodeState.follow`` reads
    every follow and commits durably on each call, which for 10,000 feeds
    takes minutes. The count is checked through ``NodeState.follows`` so a
    change of the schema breaks the benchmark loudly rather than silently.
    """
    Home(home).open_logbook(create=True).store.close()
    path = Home(home).node_state_path
    NodeState(path).close()  # makes the file and the schema
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR IGNORE INTO follows (feed, added) VALUES (?, ?)",
                       [(str(feed), index) for index, feed in enumerate(feeds)])
        db.execute("COMMIT")
    finally:
        db.close()
    state = NodeState(path)
    try:
        held = len(state.follows())
    finally:
        state.close()
    if held != len(set(feeds)):
        raise RuntimeError(f"the receiver follows {held} feeds, not {len(feeds)}: "
                           "the benchmark is broken (node.sqlite3 schema changed?)")
    return home


# -- the node process ----------------------------------------------------------------


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from /proc (None off Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_kib(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in KiB (None off Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


class NodeProcess:
    """``tidings --home HOME up --listen 127.0.0.1:0 --no-lan``, port read from its log.

    ``extra`` are more arguments for ``up`` (default ``--no-api``).
    """

    def __init__(self, home: Path, log_path: Path, *extra: str) -> None:
        self.log_path = log_path
        with log_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                tidings_cmd(home, "up", "--listen", "127.0.0.1:0", "--no-lan",
                            *(extra or ("--no-api",))),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                env=child_env(),
            )
        self.port = self._wait_listening()

    def _wait_listening(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "event=ready" in line:
                    for part in line.split():
                        if part.startswith("addr="):
                            return int(part.rpartition(":")[2])
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"the node did not start listening: {self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-800:]

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.proc.pid)

    def peak_rss_kib(self) -> float | None:
        return proc_peak_rss_kib(self.proc.pid)

    def stop(self) -> None:
        """SIGINT, as Ctrl-C; the node must stop cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError("the node did not stop within 20 s of SIGINT") from None
        if self.proc.returncode != 130:  # Ctrl-C's exit code, after a clean stop
            raise RuntimeError(f"the node exited with {self.proc.returncode}: {self.tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running_node(home: Path, log_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(home, log_path)
    try:
        yield node
    finally:
        node.kill()  # only if still running: an error stopped the scenario


# -- bytes on the wire --------------------------------------------------------------


def close_both(a: socket.socket, b: socket.socket) -> None:
    a.close()
    b.close()


class CountingProxy:
    """127.0.0.1:port -> the node, counting the TCP payload bytes each way.

    Headers (TCP/IP) are not counted: these are the bytes tidings writes,
    Noise framing included. One thread per direction per connection.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.to_node = 0
        self.from_node = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            node = socket.create_connection(self.upstream)
            for sock in (client, node):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
            done = threading.Barrier(2, action=functools.partial(close_both, client, node))
            for src, dst, up in ((client, node, True), (node, client, False)):
                thread = threading.Thread(target=self._pump, args=(src, dst, up, done),
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool,
              done: threading.Barrier) -> None:
        count = 0
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                count += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                if up:
                    self.to_node += count
                else:
                    self.from_node += count
            with suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with suppress(threading.BrokenBarrierError):
                done.wait(timeout=30)

    def close(self) -> None:
        """Stop accepting and wait for the open connections to end."""
        self._stop.set()
        self._acceptor.join()
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def total(self) -> int:
        return self.to_node + self.from_node


# -- one sync --------------------------------------------------------------------------


@dataclass
class SyncRun:
    elapsed_s: float  # launch to exit
    received: int
    client_peak_rss_kib: float  # ru_maxrss of the sync process (os.wait4, launcher)
    client_cpu_s: float
    node_cpu_s: float | None  # the node's CPU time during this sync
    to_node: int | None = None  # bytes, when run through the proxy
    from_node: int | None = None

    @property
    def wire_total(self) -> int:
        return (self.to_node or 0) + (self.from_node or 0)


def run_sync(home: Path, node: NodeProcess, expect: int, *, proxied: bool = False) -> SyncRun:
    """``tidings --home HOME sync --peer 127.0.0.1:PORT --json``, timed from spawn to exit."""
    proxy = CountingProxy(node.port) if proxied else None
    port = proxy.port if proxy is not None else node.port
    cmd = tidings_cmd(home, "sync", "--peer", f"127.0.0.1:{port}", "--json",
                      "--timeout", str(SYNC_TIMEOUT_S))
    node_cpu_before = node.cpu_s()
    try:
        with no_gc():
            child = run_measured(cmd, child_env())
    finally:
        if proxy is not None:
            proxy.close()
    node_cpu_after = node.cpu_s()
    if child.returncode != 0:
        raise RuntimeError(f"tidings sync exited with {child.returncode}: "
                           f"{child.stderr[-800:]}\nnode log: {node.tail()}")
    try:
        received = int(json.loads(child.stdout)["received"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"tidings sync printed no JSON report ({exc}): {child.stdout[-500:]}"
        ) from None
    if received != expect:
        raise RuntimeError(f"tidings sync received {received} entries, not {expect}: "
                           "the benchmark is broken")
    node_cpu = None
    if node_cpu_before is not None and node_cpu_after is not None:
        node_cpu = node_cpu_after - node_cpu_before
    run = SyncRun(child.elapsed_s, received, child.peak_rss_kib, child.cpu_s, node_cpu)
    if proxy is not None:
        if proxy.connections != 1:
            raise RuntimeError(f"the sync made {proxy.connections} connections, not 1")
        run.to_node, run.from_node = proxy.to_node, proxy.from_node
    return run


# -- raw limits --------------------------------------------------------------------------


RAW_KINDS = {
    "raw_python_rss": RawKind("python -c pass: peak RSS (ru_maxrss)", "MiB"),
}


def bare_python() -> Child:
    """``python -c pass`` through the launcher: the start-up time and RSS floor."""
    return run_measured([sys.executable, "-c", "pass"])


def raw_verify_rate(sizes: Sizes) -> Callable[[], float]:
    return per_second(sizes.raw_crypto, base.ed25519_verify_seconds(sizes.raw_crypto))


def signatures_bound(source: Source) -> Bound:
    return base.signatures_bound(source.entries, source.signatures, "verify")


RSS_FLOOR = base.at_least_one("a sync or a node is a python process with more imports and "
                              "data than a bare interpreter, started the same way")
START_FLOOR = base.at_least_one("a sync is a python start plus imports, a handshake and more")


# -- the scenarios -------------------------------------------------------------------------


def bench_bulk(results: Results, sizes: Sizes, tmp: Path, key: str, section: str,
               source: Source) -> None:
    """Replicate everything ``source`` holds into fresh homes, ``pairs`` rounds of: raw
    verifies, a timed sync, a bare interpreter start, a sync with nothing new (the fixed
    cost of a sync); then one sync through the counting proxy."""
    n = source.entries
    raw_verify = raw_verify_rate(sizes)
    verifies: list[float] = []
    runs: list[SyncRun] = []
    bares: list[Child] = []
    noops: list[SyncRun] = []
    disks: list[int] = []  # the receiving home's bytes after its sync
    with running_node(source.home, tmp / f"node-{key}.log") as node:
        log(f"  node up on 127.0.0.1:{node.port}; {sizes.pairs} rounds: raw verifies, sync of "
            f"{n:,} entries, bare python, no-op sync ...")
        for attempt in range(sizes.pairs):
            home = make_receiver(tmp / f"r-{key}-{attempt}", source.feeds)
            with no_gc():
                verifies.append(raw_verify())
            runs.append(run_sync(home, node, n))
            disks.append(dir_bytes(home))
            bares.append(bare_python())
            noops.append(run_sync(home, node, 0))
            log(f"    round {attempt + 1}: sync {runs[-1].elapsed_s:.2f} s, no-op "
                f"{noops[-1].elapsed_s:.2f} s")
        log("  one more sync through the counting proxy ...")
        proxied = run_sync(make_receiver(tmp / f"r-{key}-proxy", source.feeds), node, n,
                           proxied=True)
        node_bare = bare_python()
        node_rss = node.peak_rss_kib()
        node.stop()

    what = (f"{n:,} entries" if len(source.feeds) == 1
            else f"{len(source.feeds):,} feeds x {n // len(source.feeds)}")
    results.paired(f"replicate_{key}", section, f"sync {what}: launch to exit", "entries/s",
                   Paired.of([n / r.elapsed_s for r in runs], verifies), "raw_ed25519_verify",
                   count=n, goal_ratio=5, bound=signatures_bound(source),
                   note="wall time of `tidings sync`, process start-up included")
    nets = [r.elapsed_s - noop.elapsed_s for r, noop in zip(runs, noops, strict=True)]
    if all(net > 0 for net in nets):
        results.paired(f"replicate_{key}_net", section, f"sync {what}: minus a no-op sync",
                       "entries/s", Paired.of([n / net for net in nets], verifies),
                       "raw_ed25519_verify", count=n, goal_ratio=5,
                       bound=signatures_bound(source),
                       note="per round: entries / (sync - no-op sync of the same round)")
    else:
        results.notes.append(f"replicate_{key}_net left out: a no-op sync took as long as "
                             "the full sync of its round")
    results.paired(f"sync_noop_{key}", section, "no-op sync (nothing new), launch to exit",
                   "ms", Paired.of([r.elapsed_s * 1000 for r in noops],
                                   [b.elapsed_s * 1000 for b in bares]),
                   "raw_python_startup", bound=START_FLOOR,
                   note="the round's home again, after its full sync: start-up, imports, "
                        "handshake, clock exchange, exit")
    results.raw_kinds[f"raw_entry_bytes_{key}"] = RawKind(
        f"entry + payload bytes, mean ({what})", "bytes/entry")
    results.paired(f"wire_bytes_per_entry_{key}", section,
                   "bytes on the wire per entry, both ways", "bytes/entry",
                   Paired.once(proxied.wire_total / n, source.wire_minimum / n),
                   f"raw_entry_bytes_{key}",
                   note=f"one proxied sync at wire version {WIRE_VERSION} (compact runs, "
                        f"spec/09 §8): {proxied.from_node:,} bytes node->client, "
                        f"{proxied.to_node:,} bytes client->node (TCP payload); "
                        f"that sync took {proxied.elapsed_s:.2f} s")
    results.paired(f"disk_bytes_per_entry_{key}", section,
                   "receiver's disk bytes per entry, after the sync", "bytes/entry",
                   Paired.of([d / n for d in disks], [source.wire_minimum / n] * len(disks)),
                   f"raw_entry_bytes_{key}", bound=base.at_least_one(
                       "a store keeps every entry and payload byte"),
                   note="apparent size of every file in the receiving home after `sync` "
                        "exits (store, node state, key-less home); goal (issue 16): <= 1.2x")
    results.add(Figure(f"wire_bytes_from_node_{key}", section, "bytes node->client, total",
                       float(proxied.from_node or 0), "bytes"))
    results.add(Figure(f"wire_bytes_to_node_{key}", section, "bytes client->node, total",
                       float(proxied.to_node or 0), "bytes"))
    if node_rss is not None:
        results.paired(f"node_peak_rss_{key}", section, "node (`up`) peak RSS (VmHWM)", "MiB",
                       Paired.once(rss_kib_to_mib(node_rss),
                                   rss_kib_to_mib(node_bare.peak_rss_kib)),
                       "raw_python_rss", bound=RSS_FLOOR,
                       note=f"VmHWM of the `up` process after {2 * len(runs) + 1} syncs, read "
                            "just before stopping it")
    results.paired(f"client_peak_rss_{key}", section, "sync client peak RSS (ru_maxrss)", "MiB",
                   Paired.of([rss_kib_to_mib(r.client_peak_rss_kib) for r in runs],
                             [rss_kib_to_mib(b.peak_rss_kib) for b in bares]),
                   "raw_python_rss", bound=RSS_FLOOR,
                   note="os.wait4 in a small launcher process, for the sync and the bare "
                        "python of each round")
    results.add(Figure(f"client_cpu_{key}", section, "sync client CPU (user+sys), median",
                       statistics.median(r.client_cpu_s for r in runs) * 1000, "ms",
                       samples=len(runs)))
    node_cpus = [r.node_cpu_s for r in runs if r.node_cpu_s is not None]
    if node_cpus:
        results.add(Figure(f"node_cpu_{key}", section, "node CPU during a sync (user+sys)",
                           statistics.median(node_cpus) * 1000, "ms", samples=len(node_cpus),
                           note="from /proc/PID/stat, 10 ms ticks; median over the syncs"))


def bench_one_feed(results: Results, sizes: Sizes, tmp: Path) -> None:
    n = sizes.one_feed
    section = f"4. Replication: one feed of {n:,} entries, ~{PAYLOAD_SIZE}-byte payloads"
    log(f"replication: building a source home with one feed of {n:,} entries ...")
    source = build_source(tmp / "s-one", [0], n)
    bench_bulk(results, sizes, tmp, "one_feed", section, source)


def bench_many_feeds(results: Results, sizes: Sizes, tmp: Path) -> None:
    feeds, per = sizes.feeds, sizes.per_feed
    section = f"5. Replication: {feeds:,} feeds x {per} entries (one author each)"
    log(f"replication: building a source home with {feeds:,} feeds x {per} entries ...")
    source = build_source(tmp / "s-many", range(1, feeds + 1), per)
    bench_bulk(results, sizes, tmp, "many_feeds", section, source)


def unchanged_figures(results: Results, section: str, label: str, idles: list[SyncRun],
                      bares: list[Child], first: SyncRun, *, bytes_note: str,
                      time_note: str = "") -> None:
    """The bytes and the time of reconnects with nothing changed (``idles``, each after a
    bare python of ``bares``), as ``label_unchanged_bytes`` and ``..._time``."""
    key = label.replace(" (", "_").rstrip(")")
    results.paired(f"{key}_unchanged_bytes", section,
                   f"{label}, nothing changed: bytes both ways", "bytes",
                   Paired.of([float(r.wire_total) for r in idles],
                             [float(first.wire_total)] * len(idles)),
                   "reconnect_first_sync_bytes", raw_label="first sync",
                   note=f"each of {len(idles)} reconnects; {bytes_note}")
    results.paired(f"{key}_unchanged_time", section,
                   f"{label}, nothing changed: launch to exit", "ms",
                   Paired.of([r.elapsed_s * 1000 for r in idles],
                             [b.elapsed_s * 1000 for b in bares]),
                   "raw_python_startup", bound=START_FLOOR,
                   note=f"each reconnect after a bare python; median client CPU "
                        f"{statistics.median(r.client_cpu_s for r in idles) * 1000:.0f} ms"
                        + (f", {time_note}" if time_note else ""))


def bench_reconnect(results: Results, sizes: Sizes, tmp: Path) -> None:
    shared, changed = sizes.shared, sizes.changed
    section = (f"6. Reconnect: {shared:,} shared feeds x 1 entry, then {changed} get one "
               "more (once)")
    log(f"reconnect: building {shared:,} feeds x 1 entry ...")
    authors = range(100_001, 100_001 + shared)
    source = build_source(tmp / "s-shared", authors, 1)
    home = make_receiver(tmp / "r-shared", source.feeds)
    bares: list[Child] = []
    with running_node(source.home, tmp / "node-shared.log") as node:
        log("  first sync (through the proxy), after a bare python ...")
        bares.append(bare_python())
        first = run_sync(home, node, shared, proxied=True)
        log(f"  {changed} feeds get one more entry on the source; reconnect ...")
        new_bytes = add_entries(source, list(authors)[:: max(1, shared // changed)][:changed])
        time.sleep(NODE_NOTICE_S)  # let the node see the write (it polls every 0.1 s)
        bares.append(bare_python())
        again = run_sync(home, node, changed, proxied=True)
        log(f"  {sizes.pairs} reconnects with nothing changed, each after a bare python ...")
        idle_bares: list[Child] = []
        idles: list[SyncRun] = []
        for _ in range(sizes.pairs):
            idle_bares.append(bare_python())
            idles.append(run_sync(home, node, 0, proxied=True))
        unfollowed, lacking = max(1, shared // 10), max(1, shared // 100)
        log(f"  mixed: the source takes {unfollowed:,} feeds a second reader does not "
            f"follow; it follows {lacking} the source lacks; first sync and reconnects ...")
        build_source(source.home, range(200_001, 200_001 + unfollowed), 1, init=False)
        time.sleep(NODE_NOTICE_S)
        mixed = make_receiver(tmp / "r-mixed", [*source.feeds, *(
            author(index).author.feed(LOG_ID) for index in range(300_001, 300_001 + lacking))])
        run_sync(mixed, node, shared + changed, proxied=True)  # (the changed: 2 entries)
        mixed_bares: list[Child] = []
        mixed_idles: list[SyncRun] = []
        for _ in range(sizes.pairs):
            mixed_bares.append(bare_python())
            mixed_idles.append(run_sync(mixed, node, 0, proxied=True))
        node_bare = bare_python()
        node_rss = node.peak_rss_kib()
        node.stop()

    results.raw_kinds["raw_entry_bytes_shared"] = RawKind(
        f"entry + payload bytes of all {shared:,} shared entries", "bytes")
    results.raw_kinds["raw_entry_bytes_changed"] = RawKind(
        f"entry + payload bytes of the {changed} new entries", "bytes")
    results.paired("reconnect_first_sync_bytes", section,
                   f"first sync of {shared:,} feeds: bytes both ways", "bytes",
                   Paired.once(first.wire_total, source.wire_minimum), "raw_entry_bytes_shared",
                   note=f"{first.from_node:,} node->client, {first.to_node:,} client->node; "
                        f"took {first.elapsed_s:.2f} s")
    results.paired("reconnect_changed_bytes", section,
                   f"reconnect, {changed} changed: bytes both ways", "bytes",
                   Paired.once(again.wire_total, new_bytes), "raw_entry_bytes_changed",
                   note=f"{again.from_node:,} node->client, {again.to_node:,} client->node; "
                        f"took {again.elapsed_s:.2f} s; first sync {first.wire_total:,} bytes")
    idle = idles[0]  # right after the reconnect that received: the one a stale clock resets
    node_cpus = [r.node_cpu_s for r in idles if r.node_cpu_s is not None]
    unchanged_figures(
        results, section, "reconnect", idles, idle_bares, first,
        bytes_note=f"the first: {idle.from_node:,} node->client, {idle.to_node:,} "
                   f"client->node; bytes of each: "
                   f"{', '.join(f'{r.wire_total:,}' for r in idles)}",
        time_note=f"node CPU {statistics.median(node_cpus or [0.0]) * 1000:.0f} ms; goal "
                  "(issue 16): <= 300 ms and <= 400 bytes at 10,000 feeds")
    unchanged_figures(
        results, section, "reconnect (mixed)", mixed_idles, mixed_bares, first,
        bytes_note=f"the source also holds {unfollowed:,} feeds this reader does not "
                   f"follow, and it follows {lacking} the source lacks: each side "
                   "remembers the other's notes of those, set aside (spec/10 §5.5), so "
                   f"reconnects open with a delta; the first: "
                   f"{mixed_idles[0].from_node:,} node->client, "
                   f"{mixed_idles[0].to_node:,} client->node")
    results.paired("reconnect_changed_time", section,
                   f"reconnect, {changed} changed: launch to exit", "ms",
                   Paired.once(again.elapsed_s * 1000, bares[1].elapsed_s * 1000),
                   "raw_python_startup", bound=START_FLOOR)
    results.paired("reconnect_first_sync_time", section,
                   f"first sync of {shared:,} feeds: launch to exit", "ms",
                   Paired.once(first.elapsed_s * 1000, bares[0].elapsed_s * 1000),
                   "raw_python_startup", bound=START_FLOOR)
    if node_rss is not None:
        results.paired("node_peak_rss_shared", section, "node (`up`) peak RSS (VmHWM)", "MiB",
                       Paired.once(rss_kib_to_mib(node_rss),
                                   rss_kib_to_mib(node_bare.peak_rss_kib)),
                       "raw_python_rss", bound=RSS_FLOOR)
    results.paired("client_peak_rss_shared", section, "sync client peak RSS (ru_maxrss)", "MiB",
                   Paired.of([rss_kib_to_mib(r.client_peak_rss_kib)
                              for r in (first, again, *idles)],
                             [rss_kib_to_mib(b.peak_rss_kib) for b in (*bares, *idle_bares)]),
                   "raw_python_rss", bound=RSS_FLOOR,
                   note="every sync of the scenario, each after a bare python")


SECTIONS = ("one-feed", "many-feeds", "reconnect")


def bench_replication(results: Results, sizes: Sizes,
                      sections: Sequence[str] = SECTIONS) -> None:
    """Every figure of this file (of ``sections``), added to ``results``."""
    results.raw_kinds.update(RAW_KINDS)
    compile_children()
    with tempfile.TemporaryDirectory(prefix="tidings-bench-repl-") as tmp:
        if "one-feed" in sections:
            bench_one_feed(results, sizes, Path(tmp))
        if "many-feeds" in sections:
            bench_many_feeds(results, sizes, Path(tmp))
        if "reconnect" in sections:
            bench_reconnect(results, sizes, Path(tmp))
    results.notes.append(
        "replication: ratio = value / raw limit, per round. Rates are entries/s over raw "
        "Ed25519 verifies/s sampled just before each sync (goal >= 5x: SSB managed ~200 "
        "entries/s between two local instances). Bytes on the wire are TCP payload bytes "
        "counted by a proxy in the benchmark process; their raw limit is the entry and "
        "payload bytes themselves. The timed syncs connect straight to the node, without "
        "the proxy."
    )


def sizes_meta(sizes: Sizes) -> dict[str, Any]:
    return {
        "pairs": sizes.pairs,
        "one_feed_entries": sizes.one_feed,
        "many_feeds": sizes.feeds,
        "entries_per_feed": sizes.per_feed,
        "shared_feeds": sizes.shared,
        "changed_feeds": sizes.changed,
        "payload_bytes": PAYLOAD_SIZE,
    }


# -- output ------------------------------------------------------------------------------


def print_human(results: Results, meta: dict[str, Any]) -> None:
    print(f"tidings replication benchmark: {meta['mode']} run")
    print(f"python {meta['python']}, cryptography {meta['cryptography']}, SQLite "
          f"{meta['sqlite']}, {meta['cpus']} CPUs, temp dir {meta['tmpdir']}")
    print(f"{meta['statistic']}; total {meta['elapsed_s']:.0f} s")
    base.print_table(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base.size_parser(__doc__,
                              "smaller sizes (10,000 entries; 100 x 100; 1,000 shared feeds)")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only this scenario (repeat for several)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    results = Results()
    begun = perf_counter()
    log(f"tidings replication benchmark ({sizes.name}); progress on stderr")
    bench_replication(results, sizes, args.only or SECTIONS)
    meta = {
        **base.machine_meta(sizes.name, "tidings", "cryptography"),
        "statistic": f"{base.STATISTIC}; {sizes.pairs} rounds a scenario (the reconnect's "
                     "first sync and changed sync once)",
        "sizes": sizes_meta(sizes),
        "elapsed_s": perf_counter() - begun,
    }
    return base.emit("tidings-replication", results, meta, as_json=args.json,
                     human=print_human, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
