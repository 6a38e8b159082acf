"""tidings local HTTP API benchmark: publishes/s and SSE delivery latency, one run.

Usage::

    python benchmarks/http_api.py            # full run, about 1.5 minutes on 2 cores
    python benchmarks/http_api.py --quick    # smaller sizes, about 16 s
    python benchmarks/http_api.py --json     # one JSON object on stdout

The node under test is a separate process, ``tidings --home H up --listen
127.0.0.1:0 --no-lan --api 127.0.0.1:0``, and the clients are trio tasks in
this process: HTTP/1.1 over real loopback TCP connections, h11 as the client
state machine. Why a separate process: the local API exists for apps in other
processes (and languages), so that is the path to measure; and with the node
inside this process its event loop and GIL would also run the benchmark's own
clients (h11 parsing, 100 SSE readers, bookkeeping), so every figure would mix
server and client cost and the latency would include the client's own
scheduling. Apart, on 2 cores, the node gets a core and the clients the other.
The in-process figures (``EmbeddedNode.publish``, ``subscribe()``) run in this
process, which is what an embedding app does.

Figures, each beside a raw limit measured in the same run:

* publishes/s: ``POST /v1/publish`` sequentially on one keep-alive connection
  and from several concurrent connections, beside ``Logbook.publish`` on a
  ``SqliteStore`` (a durable publish: signing + fsync) and the in-process
  ``EmbeddedNode.publish`` (sequential, and from as many concurrent tasks);
  and once more, back to back, while 100 SSE streams watch the feed;
* SSE delivery latency: 100 ``GET /v1/events`` streams (100 TCP connections)
  on the publishing feed while entries are published at a steady 20/s; the
  time from starting the publish request to each subscriber reading the event,
  median and p99 over every (entry, subscriber) pair, and the time until all
  100 hold an entry. Raw limit: the same clients against a bare trio fan-out
  server in a child process (no store, no JSON encoding per subscriber), which
  writes each published event to the 100 connections. Beside it, the same
  latency for 100 in-process ``subscribe()`` iterators of an embedded node,
  and for a single SSE stream (beside a bare fan-out to one stream).

Nothing here asserts on timing; the exit status is non-zero only when the
benchmark itself breaks (a request fails, a subscriber misses an entry).
benchmarks/run.py runs this too with ``--http``. See benchmarks/README.md.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # for `import run` when run.py imports this file
    sys.path.insert(0, str(BENCH_DIR))

import h11  # noqa: E402
import run as base  # noqa: E402  (benchmarks/run.py: Figure, Results, sampling helpers)
import trio  # noqa: E402
from replication import NodeProcess, child_env, proc_cpu_s  # noqa: E402  (child processes)

from tidings.core.ids import FeedId  # noqa: E402
from tidings.embed import EmbeddedNode, open_node  # noqa: E402
from tidings.node.home import Home  # noqa: E402

Figure, Results, log, no_gc = base.Figure, base.Results, base.log, base.no_gc
perf_counter = time.perf_counter

PUBLISH_LOG = "bench"  # the log of the throughput figures
SSE_LOG = "sse"  # the log the subscribers watch (only the paced entries go there)
PAYLOAD_SIZE = 100  # bytes of each throughput payload
HOST = "127.0.0.1"
NODE_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Sizes:
    name: str
    repeats: int  # timed samples per throughput figure; the fastest is reported
    publishes: int  # publishes per throughput sample
    clients: int  # concurrent connections (or tasks) in the concurrent figures
    subscribers: int  # SSE streams / subscribe() iterators
    entries: int  # paced entries per latency run ...
    rate: float  # ... published at this many per second
    warmup: int  # the first entries of a latency run are not counted
    burst: int  # entries published back to back with the streams open (once)


FULL = Sizes("full", 5, 1000, 8, 100, 240, 20.0, 10, 200)
QUICK = Sizes("quick", 3, 300, 8, 100, 40, 20.0, 5, 40)
#: Tiny: for the test that checks the benchmark still runs; its figures mean nothing.
SMOKE = Sizes("smoke", 1, 20, 2, 3, 6, 20.0, 1, 5)


def sizes_meta(sizes: Sizes) -> dict[str, Any]:
    return {
        "repeats": sizes.repeats,
        "publishes_per_sample": sizes.publishes,
        "concurrent_clients": sizes.clients,
        "subscribers": sizes.subscribers,
        "paced_entries": sizes.entries,
        "paced_rate_per_s": sizes.rate,
        "warmup_entries": sizes.warmup,
        "burst_entries": sizes.burst,
        "payload_bytes": PAYLOAD_SIZE,
    }


def throughput_payload(i: int) -> bytes:
    head = b"publish %09d " % i
    return head + b"x" * (PAYLOAD_SIZE - len(head))


def paced_payload(i: int) -> bytes:
    """The i-th paced entry; subscribers read ``i`` back to find its send time."""
    return b"lat %d" % i


def paced_index(payload: bytes) -> int:
    return int(payload.split()[1])


# -- an HTTP/1.1 client: h11 on a trio TCP stream -------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 client connection."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.h11 = h11.Connection(h11.CLIENT)
        #: perf_counter() when the last bytes came off the socket.
        self.received_at = 0.0

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        stream = await trio.open_tcp_stream(host, port)  # trio sets TCP_NODELAY
        return cls(stream, f"{host}:{port}")

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(65536)
            self.received_at = perf_counter()
            self.h11.receive_data(data)

    async def send_request(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                           body: bytes | None = None) -> None:
        all_headers = [("Host", self.host), *headers]
        if body is not None:
            all_headers.append(("Content-Length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            data += self.h11.send(h11.Data(data=body))
        if body is not None or method == "GET":
            data += self.h11.send(h11.EndOfMessage())
        await self.stream.send_all(data)  # one write: the request goes in one segment

    async def request(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                      body: bytes = b"") -> tuple[int, bytes]:
        await self.send_request(method, target, headers, body)
        response = await self.next_event()
        if not isinstance(response, h11.Response):
            raise RuntimeError(f"expected an HTTP response, got {response!r}")
        received = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                received += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise RuntimeError(f"the connection ended mid-response: {event!r}")
        self.h11.start_next_cycle()
        return response.status_code, bytes(received)


@dataclass
class ApiTarget:
    host: str
    port: int
    token: str

    @property
    def auth(self) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {self.token}")]


def publish_body(payload: bytes, log_id: str) -> bytes:
    return json.dumps({"log": log_id,
                       "payload_base64": base64.b64encode(payload).decode()}).encode()


async def http_publish(connection: HttpConnection, target: ApiTarget, payload: bytes,
                       log_id: str) -> None:
    status, body = await connection.request(
        "POST", "/v1/publish", [*target.auth, ("Content-Type", "application/json")],
        publish_body(payload, log_id))
    if status != 201:
        raise RuntimeError(f"POST /v1/publish answered {status}: {body[:300]!r}")


# -- SSE readers ------------------------------------------------------------------------


@dataclass
class Delivery:
    """Receive times of one latency run: ``received[subscriber][entry]``."""

    entries: int
    subscribers: int
    sent: list[float] = field(default_factory=list)  # publish request started
    acked: list[float] = field(default_factory=list)  # publish answered (durable)
    received: list[list[float]] = field(default_factory=list)
    event_bytes: int = 0  # bytes of the SSE `entry` events, all subscribers
    events: int = 0

    def __post_init__(self) -> None:
        nan = math.nan
        self.sent = [nan] * self.entries
        self.acked = [nan] * self.entries
        self.received = [[nan] * self.entries for _ in range(self.subscribers)]


class SseReader:
    """Splits an SSE byte stream into events; records when each entry arrived."""

    def __init__(self, delivery: Delivery, index: int, ready: Callable[[], None],
                 finished: Callable[[], None]) -> None:
        self.times = delivery.received[index]
        self.delivery = delivery
        self.buffer = b""
        self.count = 0
        self.ready = ready
        self.finished = finished

    def feed(self, data: bytes, now: float) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\n\n")
            if end < 0:
                return
            block, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            self._event(block, now)

    def _event(self, block: bytes, now: float) -> None:
        kind, data = b"message", b""
        for line in block.split(b"\n"):
            name, _, value = line.partition(b":")
            if name == b"event":
                kind = value.strip()
            elif name == b"data":
                data = value.lstrip(b" ")
        if kind == b"ready":
            self.ready()
        elif kind == b"entry":
            payload = base64.b64decode(json.loads(data)["payload_base64"])
            i = paced_index(payload)
            if math.isnan(self.times[i]):
                self.times[i] = now
                self.count += 1
                self.delivery.events += 1
                self.delivery.event_bytes += len(block) + 2
                if self.count == len(self.times):
                    self.finished()


async def sse_subscriber(target: ApiTarget, path: str, reader: SseReader) -> None:
    """One ``GET path`` stream on its own TCP connection, until cancelled."""
    connection = await HttpConnection.open(target.host, target.port)
    try:
        await connection.send_request("GET", path,
                                      [*target.auth, ("Accept", "text/event-stream")])
        response = await connection.next_event()
        if not isinstance(response, h11.Response) or response.status_code != 200:
            raise RuntimeError(f"GET {path[:60]} answered {response!r}")
        while True:
            event = await connection.next_event()
            if isinstance(event, h11.Data):
                reader.feed(event.data, connection.received_at)
            else:
                raise RuntimeError(f"the SSE stream ended: {event!r}")
    finally:
        await connection.aclose()


class Countdown:
    """Set ``event`` once ``count()`` was called ``n`` times."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.event = trio.Event()
        if n <= 0:
            self.event.set()

    def count(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.event.set()


async def paced_publishes(delivery: Delivery, rate: float,
                          publish_one: Callable[[int], Awaitable[None]]) -> None:
    """Publish entry i at start + i / rate (not a sleep after each: no drift)."""
    start = trio.current_time()
    for i in range(delivery.entries):
        await trio.sleep_until(start + i / rate)
        delivery.sent[i] = perf_counter()
        await publish_one(i)
        delivery.acked[i] = perf_counter()


def run_timeout(sizes: Sizes) -> float:
    return 60.0 + 3 * sizes.entries / min(sizes.rate, 20.0)


async def sse_run(target: ApiTarget, path: str, subscribers: int, sizes: Sizes) -> Delivery:
    """``subscribers`` SSE streams on ``path``; paced publishes over one more connection."""
    delivery = Delivery(sizes.entries, subscribers)
    ready, finished = Countdown(subscribers), Countdown(subscribers)
    publisher = await HttpConnection.open(target.host, target.port)
    try:
        with trio.fail_after(run_timeout(sizes)):
            async with trio.open_nursery() as nursery:
                for index in range(subscribers):
                    reader = SseReader(delivery, index, ready.count, finished.count)
                    nursery.start_soon(sse_subscriber, target, path, reader)
                await ready.event.wait()
                await trio.sleep(0.2)  # let the server settle after 100 connects

                async def publish_one(i: int) -> None:
                    await http_publish(publisher, target, paced_payload(i), SSE_LOG)

                with no_gc():
                    await paced_publishes(delivery, sizes.rate, publish_one)
                    await finished.event.wait()
                nursery.cancel_scope.cancel()
    except trio.TooSlowError:
        got = [sum(not math.isnan(t) for t in times) for times in delivery.received]
        raise RuntimeError(f"the SSE run timed out: subscribers hold {min(got)} to {max(got)} "
                           f"of {sizes.entries} entries") from None
    finally:
        await publisher.aclose()
    return delivery


# -- statistics ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of sorted values."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Latency:
    median_ms: float
    p99_ms: float
    max_ms: float
    all_median_ms: float  # per entry: until the last subscriber had it
    all_p99_ms: float
    pairs: int
    entries: int
    publish_rtt_median_ms: float
    achieved_rate: float


def latency_of(delivery: Delivery, warmup: int) -> Latency:
    counted = range(warmup, delivery.entries)
    pairs: list[float] = []
    alls: list[float] = []
    for i in counted:
        sent = delivery.sent[i]
        per_entry = [times[i] - sent for times in delivery.received]
        if any(math.isnan(x) for x in per_entry):
            raise RuntimeError(f"entry {i} was not delivered to every subscriber")
        pairs.extend(per_entry)
        alls.append(max(per_entry))
    pairs.sort()
    alls.sort()
    rtts = [delivery.acked[i] - delivery.sent[i] for i in counted]
    span = delivery.sent[-1] - delivery.sent[warmup]
    return Latency(
        median_ms=statistics.median(pairs) * 1000, p99_ms=percentile(pairs, 0.99) * 1000,
        max_ms=pairs[-1] * 1000, all_median_ms=statistics.median(alls) * 1000,
        all_p99_ms=percentile(alls, 0.99) * 1000, pairs=len(pairs), entries=len(alls),
        publish_rtt_median_ms=statistics.median(rtts) * 1000,
        achieved_rate=(len(alls) - 1) / span if span > 0 else 0.0,
    )


# -- the node process -----------------------------------------------------------------------


class ApiNode(NodeProcess):
    """``tidings --home H up --listen 127.0.0.1:0 --no-lan --api 127.0.0.1:0``.

    The API's address comes from ``H/api.json``, which the node writes once it serves.
    """

    def __init__(self, home: Path, log_path: Path) -> None:
        super().__init__(home, log_path, "--api", f"{HOST}:0")
        self.home = Home(home)
        self.target = self._wait_serving()

    def _wait_serving(self) -> ApiTarget:
        deadline = time.monotonic() + NODE_START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                info = json.loads(self.home.api_file.read_text())
            except (OSError, ValueError):
                info = None
            if info and info.get("pid") == self.proc.pid:
                host, _, port = info["url"].removeprefix("http://").rpartition(":")
                return ApiTarget(host.strip("[]"), int(port), self.home.api_token())
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"the node did not start serving its API: {self.tail()}")


#: The raw fan-out server, run as a child process: bare trio, HTTP/1.1 by hand.
#: ``GET`` (any path) opens an SSE stream (chunked, like the node's); each ``POST``
#: body's ``payload_base64`` goes out at once as one `entry` event, padded to the
#: size of the node's events, written to every stream in turn; then 201. No
#: store, no fsync, no per-subscriber task or encoding: the floor under the
#: node's SSE path, with the same clients, sockets and process layout.
FANOUT_SERVER = r"""
import json, sys, trio

PAD = int(sys.argv[1])
streams = []


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


async def read_head(stream, buffer):
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return None, b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


async def handle(stream):
    head, rest = await read_head(stream, b"")
    if head is not None and head.startswith(b"GET "):
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n"
                              + chunk(b"event: ready\ndata: {}\n\n"))
        streams.append(stream)
        await trio.sleep_forever()
    seq = 0
    while head is not None:
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            data = await stream.receive_some(65536)
            if not data:
                return
            rest += data
        body, rest = rest[:length], rest[length:]
        seq += 1
        data = json.dumps({"payload_base64": json.loads(body)["payload_base64"],
                           "seq": seq, "pad": "x" * PAD})
        event = chunk(b"event: entry\nid: 1-%d\ndata: %s\n\n" % (seq, data.encode()))
        for subscriber in streams:
            await subscriber.send_all(event)
        await stream.send_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
        head, rest = await read_head(stream, rest)


async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(handle, listeners)


trio.run(main)
"""

#: Bytes of an `entry` event from FANOUT_SERVER with PAD=0 and a short payload.
FANOUT_EVENT_OVERHEAD = 90


class FanoutServer:
    def __init__(self, event_bytes: int) -> None:
        pad = max(0, event_bytes - FANOUT_EVENT_OVERHEAD)
        self.proc = subprocess.Popen([sys.executable, "-c", FANOUT_SERVER, str(pad)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     env=child_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.kill()
            raise RuntimeError("the raw fan-out server did not start")
        self.target = ApiTarget(HOST, int(line), "unused")

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.proc.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- raw limits ---------------------------------------------------------------------------


def bench_raw(results: Results, sizes: Sizes) -> None:
    """Durable commits (unless run.py measured them) and ``Logbook.publish``, this run."""
    n = sizes.publishes
    if "raw_sqlite_durable_commit" not in results.figures:
        def commit_once() -> float:
            with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
                db = base.sqlite_raw(Path(tmp) / "raw.sqlite3")
                try:
                    start = perf_counter()
                    for seq in range(1, n + 1):
                        db.execute("BEGIN IMMEDIATE")
                        db.execute("INSERT INTO t (seq, data) VALUES (?, ?)", (seq, base.BLOB))
                        db.execute("COMMIT")
                    return perf_counter() - start
                finally:
                    db.close()

        log("raw durable SQLite commits ...")
        results.rate("raw_sqlite_durable_commit", "raw",
                     "SQLite BEGIN IMMEDIATE/INSERT/COMMIT, 1 row", n,
                     base.samples(sizes.repeats, commit_once), "commits/s")

    payloads = [throughput_payload(i) for i in range(n)]

    def publish_once() -> float:
        with base.temp_logbook() as book:
            book.publish(b"first", PUBLISH_LOG)  # creates the feed row; not timed
            publish = book.publish
            start = perf_counter()
            for payload in payloads:
                publish(payload, PUBLISH_LOG)
            return perf_counter() - start

    log("raw Logbook.publish on a SqliteStore (sign + durable commit) ...")
    rate = results.rate("raw_logbook_publish", "raw",
                        f"Logbook.publish, SqliteStore, {PAYLOAD_SIZE}-byte payload", n,
                        base.samples(sizes.repeats, publish_once), "entries/s")
    results.add(Figure("raw_logbook_publish_ms", "raw", "one Logbook.publish (1 / rate above)",
                       1000 / rate.value, "ms"))


# -- in-process: EmbeddedNode ---------------------------------------------------------------


async def timed_publishes(publish: Callable[[bytes], Awaitable[object]], n: int,
                          tasks: int) -> float:
    """``n`` publishes from ``tasks`` concurrent tasks (each sequential); seconds."""
    share = [n // tasks + (1 if t < n % tasks else 0) for t in range(tasks)]

    async def worker(t: int) -> None:
        for i in range(share[t]):
            await publish(throughput_payload(t * n + i))

    with no_gc():
        start = perf_counter()
        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(worker, t)
        return perf_counter() - start


async def embedded_latency(node: EmbeddedNode, sizes: Sizes) -> Delivery:
    """``subscribers`` subscribe() iterators on the node's SSE_LOG feed; paced publishes."""
    feed = node.feed(SSE_LOG)
    delivery = Delivery(sizes.entries, sizes.subscribers)
    finished = Countdown(sizes.subscribers)

    async def subscriber(index: int, subscription: Any) -> None:
        times = delivery.received[index]
        count = 0
        async for item in subscription:
            now = perf_counter()
            i = paced_index(item.payload)
            if math.isnan(times[i]):
                times[i] = now
                count += 1
                if count == sizes.entries:
                    break
        finished.count()

    with trio.fail_after(run_timeout(sizes)):
        async with trio.open_nursery() as nursery:
            for index in range(sizes.subscribers):
                subscription = node.subscribe([feed])
                nursery.start_soon(subscriber, index, subscription)
            await trio.sleep(0.2)

            async def publish_one(i: int) -> None:
                await node.publish(paced_payload(i), SSE_LOG)

            with no_gc():
                await paced_publishes(delivery, sizes.rate, publish_one)
                await finished.event.wait()
    return delivery


@dataclass
class EmbeddedRuns:
    sequential: list[float]
    concurrent: list[float]
    latency: Latency


def bench_embedded(sizes: Sizes, tmp: Path) -> EmbeddedRuns:
    n = sizes.publishes

    async def main() -> EmbeddedRuns:
        async with open_node(tmp / "embedded") as node:
            await node.publish(b"first", PUBLISH_LOG)
            log(f"in-process EmbeddedNode.publish: {n:,} sequential, then from "
                f"{sizes.clients} tasks ...")
            sequential = [await timed_publishes(lambda p: node.publish(p, PUBLISH_LOG), n, 1)
                          for _ in range(sizes.repeats)]
            concurrent = [await timed_publishes(lambda p: node.publish(p, PUBLISH_LOG), n,
                                                sizes.clients)
                          for _ in range(sizes.repeats)]
            log(f"in-process subscribe(): {sizes.subscribers} iterators, {sizes.entries} "
                f"entries at {sizes.rate:g}/s ...")
            delivery = await embedded_latency(node, sizes)
        return EmbeddedRuns(sequential, concurrent, latency_of(delivery, sizes.warmup))

    return trio.run(main)


# -- over HTTP: a `tidings up` process --------------------------------------------------------


@dataclass
class HttpRuns:
    sequential: list[float]
    concurrent: list[float]
    node_cpu_per_publish_us: float | None
    latency: Latency
    latency_one: Latency  # one subscriber
    node_cpu_per_event_us: float | None
    node_cpu_share: float | None  # node CPU seconds / wall seconds over the 100-stream run
    event_bytes: float
    burst: Delivery  # entries published back to back, the streams open


async def http_throughput(target: ApiTarget, n: int, connections: int) -> float:
    opened = [await HttpConnection.open(target.host, target.port) for _ in range(connections)]
    try:
        share = [n // connections + (1 if c < n % connections else 0)
                 for c in range(connections)]

        async def worker(c: int) -> None:
            connection = opened[c]
            for i in range(share[c]):
                await http_publish(connection, target, throughput_payload(c * n + i),
                                   PUBLISH_LOG)

        with no_gc():
            start = perf_counter()
            async with trio.open_nursery() as nursery:
                for c in range(connections):
                    nursery.start_soon(worker, c)
            return perf_counter() - start
    finally:
        for connection in opened:
            await connection.aclose()


def bench_http(sizes: Sizes, tmp: Path) -> HttpRuns:
    home = tmp / "node"
    identity, _ = Home(home).init()
    feed: FeedId = identity.author.feed(SSE_LOG)
    node = ApiNode(home, tmp / "node.log")
    try:
        target = node.target
        n = sizes.publishes

        async def main() -> HttpRuns:
            warm = await HttpConnection.open(target.host, target.port)
            await http_publish(warm, target, b"first", PUBLISH_LOG)  # the feed row; untimed
            await warm.aclose()
            log(f"HTTP: POST /v1/publish x {n:,} on one keep-alive connection ...")
            cpu_before = node.cpu_s()
            sequential = [await http_throughput(target, n, 1) for _ in range(sizes.repeats)]
            cpu_after = node.cpu_s()
            cpu_per_publish = None
            if cpu_before is not None and cpu_after is not None:
                cpu_per_publish = (cpu_after - cpu_before) / (n * sizes.repeats) * 1e6
            log(f"HTTP: POST /v1/publish x {n:,} from {sizes.clients} connections ...")
            concurrent = [await http_throughput(target, n, sizes.clients)
                          for _ in range(sizes.repeats)]

            path = f"/v1/events?feeds={feed}"
            log(f"HTTP: {sizes.subscribers} SSE streams, {sizes.entries} entries at "
                f"{sizes.rate:g}/s ...")
            cpu_before = node.cpu_s()
            wall = perf_counter()
            many = await sse_run(target, path, sizes.subscribers, sizes)
            wall = perf_counter() - wall
            cpu_after = node.cpu_s()
            per_event = share = None
            if cpu_before is not None and cpu_after is not None:
                per_event = (cpu_after - cpu_before) / (sizes.entries * sizes.subscribers) * 1e6
                share = (cpu_after - cpu_before) / wall
            log(f"HTTP: 1 SSE stream, {sizes.entries} entries at {sizes.rate:g}/s ...")
            one = await sse_run(target, path, 1, sizes)
            log(f"HTTP: {sizes.subscribers} SSE streams, {sizes.burst} entries back to back ...")
            burst = await sse_run(target, path, sizes.subscribers,
                                  replace(sizes, entries=sizes.burst, rate=math.inf))
            return HttpRuns(sequential, concurrent, cpu_per_publish,
                            latency_of(many, sizes.warmup), latency_of(one, sizes.warmup),
                            per_event, share, many.event_bytes / max(many.events, 1), burst)

        runs = trio.run(main)
        node.stop()
        return runs
    finally:
        node.kill()


@dataclass
class FanoutRuns:
    latency: Latency
    cpu_per_event_us: float | None
    latency_one: Latency  # one stream


def bench_fanout(sizes: Sizes, event_bytes: float) -> FanoutRuns:
    """The same clients against FANOUT_SERVER: ``subscribers`` streams, then one."""
    runs: list[tuple[Latency, float | None]] = []
    for streams in (sizes.subscribers, 1):
        server = FanoutServer(round(event_bytes))
        try:
            log(f"raw fan-out server: {streams} stream(s), {sizes.entries} entries at "
                f"{sizes.rate:g}/s ...")
            cpu_before = server.cpu_s()
            delivery = trio.run(sse_run, server.target, "/events", streams, sizes)
            cpu_after = server.cpu_s()
        finally:
            server.kill()
        per_event = None
        if cpu_before is not None and cpu_after is not None:
            per_event = (cpu_after - cpu_before) / (sizes.entries * streams) * 1e6
        runs.append((latency_of(delivery, sizes.warmup), per_event))
    return FanoutRuns(runs[0][0], runs[0][1], runs[1][0])


# -- the figures --------------------------------------------------------------------------------


def add_latency(results: Results, prefix: str, section: str, what: str, latency: Latency,
                raws: dict[str, str], note: str = "", *, with_all: bool = True) -> None:
    """Median and p99 over (entry, subscriber) pairs; median and p99 of 'all had it'.

    ``raws`` maps a suffix (``latency_median``, ...) to its raw key; ``"*"`` is the default.
    """
    rows = [
        ("latency_median", f"{what}: median", latency.median_ms, latency.pairs),
        ("latency_p99", f"{what}: p99", latency.p99_ms, latency.pairs),
    ]
    if with_all:
        rows += [
            ("all_median", f"{what}: all had it, median", latency.all_median_ms,
             latency.entries),
            ("all_p99", f"{what}: all had it, p99", latency.all_p99_ms, latency.entries),
        ]
    for suffix, label, value, count in rows:
        results.add(Figure(f"{prefix}_{suffix}", section, label, value, "ms",
                           raw_key=raws.get(suffix, raws.get("*")), count=count,
                           note=note if suffix == "latency_median" else ""))


def latency_raw(results: Results, fanout: FanoutRuns, sizes: Sizes) -> None:
    lat = fanout.latency
    what = f"bare trio fan-out to {sizes.subscribers} streams"
    for key, label, value in (
        ("raw_fanout_latency_median", f"{what}: median", lat.median_ms),
        ("raw_fanout_latency_p99", f"{what}: p99", lat.p99_ms),
        ("raw_fanout_all_median", f"{what}: all had it, median", lat.all_median_ms),
        ("raw_fanout_all_p99", f"{what}: all had it, p99", lat.all_p99_ms),
    ):
        results.add(Figure(key, "raw", label, value, "ms"))
    one = fanout.latency_one
    for key, label, value in (
        ("raw_fanout1_latency_median", "bare trio fan-out to 1 stream: median", one.median_ms),
        ("raw_fanout1_latency_p99", "bare trio fan-out to 1 stream: p99", one.p99_ms),
    ):
        results.add(Figure(key, "raw", label, value, "ms"))
    if fanout.cpu_per_event_us is not None:
        results.add(Figure("raw_fanout_cpu_per_event", "raw",
                           "bare fan-out server CPU per event delivered", fanout.cpu_per_event_us,
                           "µs"))


def bench_http_api(results: Results, sizes: Sizes) -> None:
    """Every figure of this file; ``results`` may already hold run.py's raw limits."""
    bench_raw(results, sizes)
    with tempfile.TemporaryDirectory(prefix="tidings-bench-http-") as tmp:
        http = bench_http(sizes, Path(tmp))
        fanout = bench_fanout(sizes, http.event_bytes)
        embedded = bench_embedded(sizes, Path(tmp))

    n, c, s = sizes.publishes, sizes.clients, sizes.subscribers
    latency_raw(results, fanout, sizes)

    pub = ("7. Local HTTP API, publishing: a `tidings up` process; "
           f"{n:,} publishes per sample, {PAYLOAD_SIZE}-byte payloads")
    embed_seq = results.rate("embed_publish", pub, "EmbeddedNode.publish, sequential (in-proc)",
                             n, embedded.sequential, "entries/s", raw_key="raw_logbook_publish")
    embed_conc = results.rate("embed_publish_concurrent", pub,
                              f"EmbeddedNode.publish, {c} tasks (in-proc)", n,
                              embedded.concurrent, "entries/s", raw_key="raw_logbook_publish")
    http_seq = results.rate("http_publish_1conn", pub, "POST /v1/publish, 1 keep-alive conn", n,
                            http.sequential, "entries/s", raw_key="raw_logbook_publish")
    http_seq.note = (f"{http_seq.value / embed_seq.value:.2f}x the in-process "
                     "EmbeddedNode.publish rate; each request waits for the durable commit")
    http_conc = results.rate("http_publish_concurrent", pub,
                             f"POST /v1/publish, {c} keep-alive conns", n, http.concurrent,
                             "entries/s", raw_key="raw_logbook_publish")
    http_conc.note = (f"{http_conc.value / embed_conc.value:.2f}x EmbeddedNode.publish from "
                      f"{c} tasks; the node runs one publish at a time (its lock), each with its "
                      "own durable commit")
    if http.node_cpu_per_publish_us is not None:
        results.add(Figure("http_node_cpu_per_publish", pub,
                           "node CPU per POST /v1/publish (1 conn)",
                           http.node_cpu_per_publish_us, "µs",
                           note="from /proc/PID/stat (10 ms ticks) over the 1-connection samples"))
    burst = http.burst
    published = burst.entries / (burst.acked[-1] - burst.sent[0])
    everywhere = max(max(times) for times in burst.received) - burst.sent[0]
    results.add(Figure(
        "http_publish_1conn_streams", pub,
        f"POST /v1/publish, 1 conn, {s} streams open", published, "entries/s",
        raw_key="http_publish_1conn", count=burst.entries,
        note=f"{burst.entries} publishes back to back, once, while {s} SSE streams watch "
             f"the feed; all {s} held all of them {everywhere:.2f} s after the first was sent "
             f"({burst.entries * s / everywhere:,.0f} events/s delivered); raw: the same "
             "publishes with no stream open"))

    sse = (f"8. Delivery latency: {sizes.entries} entries at {sizes.rate:g}/s "
           f"(first {sizes.warmup} not counted), publish start -> subscriber reads it")
    add_latency(results, "sse", sse, f"SSE x{s}", http.latency,
                {"latency_median": "raw_fanout_latency_median",
                 "latency_p99": "raw_fanout_latency_p99",
                 "all_median": "raw_fanout_all_median", "all_p99": "raw_fanout_all_p99"},
                note=f"{http.latency.pairs:,} (entry, stream) pairs; max "
                     f"{http.latency.max_ms:.1f} ms; achieved {http.latency.achieved_rate:.1f} "
                     f"entries/s; events of {http.event_bytes:.0f} bytes")
    results.add(Figure("sse_publish_rtt_median", sse, f"POST /v1/publish round trip ({s} streams)",
                       http.latency.publish_rtt_median_ms, "ms",
                       raw_key="raw_logbook_publish_ms"))
    add_latency(results, "sse1", sse, "SSE x1", http.latency_one,
                {"latency_median": "raw_fanout1_latency_median",
                 "latency_p99": "raw_fanout1_latency_p99"}, with_all=False)
    results.add(Figure("sse1_publish_rtt_median", sse, "POST /v1/publish round trip (1 stream)",
                       http.latency_one.publish_rtt_median_ms, "ms",
                       raw_key="raw_logbook_publish_ms"))
    if http.node_cpu_per_event_us is not None:
        results.add(Figure("sse_node_cpu_per_event", sse,
                           f"node CPU per event delivered ({s} streams)",
                           http.node_cpu_per_event_us, "µs", raw_key="raw_fanout_cpu_per_event",
                           note=f"the node used {100 * (http.node_cpu_share or 0):.0f}% of one "
                                f"core over the {s}-stream run (its connects included)"))
    add_latency(results, "embed", sse, f"subscribe() x{s}", embedded.latency,
                {"*": "raw_logbook_publish_ms"},
                note=f"{s} subscribe() iterators of an EmbeddedNode in this process; "
                     f"{embedded.latency.pairs:,} pairs; max {embedded.latency.max_ms:.1f} ms; "
                     "the publish's own durable commit is included; raw: one Logbook.publish")
    results.add(Figure("embed_publish_rtt_median", sse,
                       f"EmbeddedNode.publish call ({s} iterators)",
                       embedded.latency.publish_rtt_median_ms, "ms",
                       raw_key="raw_logbook_publish_ms"))
    results.notes.append(
        "http: publishing rates are entries/s beside Logbook.publish on a SqliteStore in this "
        "process (signing + a durable commit). Latencies run from just before the publish "
        "request is written to the moment the subscriber's socket read returns the event; raw "
        "limits for the SSE rows are the same clients against a bare trio fan-out server "
        "(child process, no store), for the in-process rows one Logbook.publish."
    )


# -- output ---------------------------------------------------------------------------------------


def _raw_cell(figure: Figure) -> str:
    if figure.raw_value is None:
        return "-"
    return base.fmt(figure.raw_value, base.short_unit(figure.raw_unit))


def print_human(results: Results, meta: dict[str, Any]) -> None:
    print(f"tidings local HTTP API benchmark: {meta['mode']} run")
    print(f"python {meta['python']}, trio {meta['trio']}, h11 {meta['h11']}, SQLite "
          f"{meta['sqlite']}, {meta['cpus']} CPUs, temp dir {meta['tmpdir']}")
    print(f"rates: {meta['statistic']}; latencies: one run each; total "
          f"{meta['elapsed_s']:.0f} s")
    base.print_table(results, widths=(44, 20, 20, 9, 4, 4), raw_cell=_raw_cell)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base.size_parser(__doc__,
                              f"smaller sizes ({QUICK.publishes} publishes per sample, "
                              f"{QUICK.entries} paced entries); under ~20 s")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    results = Results()
    begun = perf_counter()
    log(f"tidings local HTTP API benchmark ({sizes.name}); progress on stderr")
    bench_http_api(results, sizes)
    meta = {
        **base.machine_meta(sizes.name, "tidings", "trio", "h11"),
        "statistic": f"best (fastest) of {sizes.repeats} runs",
        "sizes": sizes_meta(sizes),
        "elapsed_s": perf_counter() - begun,
    }
    base.emit("tidings-http-api", results, meta, as_json=args.json, human=print_human)
    return 0


if __name__ == "__main__":
    sys.exit(main())
