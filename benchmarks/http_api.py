"""tidings local HTTP API benchmark: publishes/s and SSE delivery latency, one run.

Usage::

    python benchmarks/http_api.py            # full run, a few minutes on 2 cores
    python benchmarks/http_api.py --quick    # smaller sizes, under a minute
    python benchmarks/http_api.py --json     # one JSON object on stdout

The node under test is a separate process, ``tidings --home H up --listen
127.0.0.1:0 --no-lan --api 127.0.0.1:0``, and the clients are trio tasks in
this process: HTTP/1.1 over real loopback TCP connections (requests by hand,
as lean as an app's client; the latency streams read with h11), and the burst's
streams a child process of plain sockets. Why a separate process: the local
API exists for apps in other processes (and languages), so that is the path to
measure; and with the node inside this process its event loop and GIL would
also run the benchmark's own clients (100 SSE readers, bookkeeping), so every
figure would mix server and client cost and the latency would include the client's own
scheduling. Apart, on 2 cores, the node gets a core and the clients the other.
The in-process figures (``EmbeddedNode.publish``, ``subscribe()``) run in this
process, which is what an embedding app does.

Figures, each sampled in pairs with a raw limit (benchmarks/pairs.py):

* publishes/s: ``POST /v1/publish`` sequentially on one keep-alive connection,
  beside ``Logbook.publish`` on a ``SqliteStore`` (a durable publish: signing +
  fsync, one commit each, as a sequential publish is); from 8 concurrent
  keep-alive connections of a lean client in a child process (plain sockets: about
  90 µs of CPU a request, where trio tasks in this process spent 250-400 µs, on
  the same 2 cores as the node), beside the in-process ``EmbeddedNode.publish``
  from 8 tasks (like with like: both group-commit, the same payloads, the same
  durable SqliteStore, one feed each); the
  in-process ``EmbeddedNode.publish`` itself (sequential, and from 8 tasks);
  and once more, back to back, while 100 SSE streams watch the feed, beside
  as many publishes with no stream open (the streams are a child process that
  only counts their events: 100 streams parsed here would cost more than the
  node spends, in the publisher's own event loop);
* SSE delivery latency: 100 ``GET /v1/events`` streams (100 TCP connections)
  on the publishing feed while entries are published at a steady 20/s; the
  time from starting the publish request to each subscriber reading the event,
  median and p99 over every (entry, subscriber) pair, and the time until all
  100 hold an entry. Raw limit: the same clients against a bare trio fan-out
  server in a child process (no store, no JSON encoding per subscriber), which
  writes each published event to the 100 connections, run just before the
  node in each round. Beside it, the same latency for 100 in-process
  ``subscribe()`` iterators of an embedded node, and for a single SSE stream
  (beside a bare fan-out to one stream).

Nothing here asserts on timing; the exit status is non-zero when the benchmark
itself breaks (a request fails, a subscriber misses an entry) or a ratio
crosses the bound its raw limit sets.
benchmarks/run.py runs this too with ``--http``. See benchmarks/README.md.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # for `import run` when run.py imports this file
    sys.path.insert(0, str(BENCH_DIR))

import h11  # noqa: E402
import run as base  # noqa: E402  (benchmarks/run.py: Figure, Results, raw limits)
import trio  # noqa: E402
from pairs import (  # noqa: E402  (benchmarks/pairs.py)
    Bound,
    Paired,
    alternate_async,
    interleave_async,
    no_gc,
    per_second,
)
from replication import NodeProcess, child_env, proc_cpu_s  # noqa: E402  (child processes)
from run import Figure, RawKind, Results, log  # noqa: E402

from tidings.core.ids import FeedId  # noqa: E402
from tidings.embed import EmbeddedNode, open_node  # noqa: E402
from tidings.node.home import Home  # noqa: E402

perf_counter = time.perf_counter

PUBLISH_LOG = "bench"  # the log of the throughput figures
SSE_LOG = "sse"  # the log the subscribers watch (only the paced entries go there)
PAYLOAD_SIZE = 100  # bytes of each throughput payload
HOST = "127.0.0.1"
NODE_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Sizes:
    name: str
    pairs: int  # (raw, figure) pairs per throughput figure
    publishes: int  # publishes per throughput sample (and per raw sample beside it)
    clients: int  # concurrent connections (or tasks) in the concurrent figures
    subscribers: int  # SSE streams / subscribe() iterators
    rounds: int  # latency rounds: raw publishes, bare fan-out run, node run, ...
    entries: int  # paced entries per latency run ...
    rate: float  # ... published at this many per second
    warmup: int  # the first entries of a latency run are not counted
    burst: int  # entries published back to back with the streams open
    raw_publishes: int  # Logbook.publish calls per raw sample of a latency round


FULL = Sizes("full", 5, 1000, 8, 100, 3, 60, 20.0, 5, 200, 200)
QUICK = Sizes("quick", 3, 300, 8, 100, 2, 20, 20.0, 3, 40, 100)
#: Tiny: for the test that checks the benchmark still runs; its figures mean nothing.
SMOKE = Sizes("smoke", 1, 20, 2, 3, 1, 6, 20.0, 1, 5, 10)


def sizes_meta(sizes: Sizes) -> dict[str, Any]:
    return {
        "pairs": sizes.pairs,
        "publishes_per_sample": sizes.publishes,
        "concurrent_clients": sizes.clients,
        "subscribers": sizes.subscribers,
        "latency_rounds": sizes.rounds,
        "paced_entries_per_run": sizes.entries,
        "paced_rate_per_s": sizes.rate,
        "warmup_entries": sizes.warmup,
        "burst_entries": sizes.burst,
        "raw_publishes_per_round": sizes.raw_publishes,
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
        self._left = b""  # bytes after the last answer (by request())
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
        """One request and its answer, HTTP/1.1 by hand (answers with a Content-Length).

        Not h11: a client as lean as an app's (curl, a Go or Rust client) spends
        microseconds a request, h11 hundreds, and on 2 cores this process's CPU
        would be timed as the node's. With 8 connections it also spaces the
        requests out, so fewer share a commit than in the in-process figure.
        Only for connections that carry nothing else (the streams use h11).
        """
        head = "".join(f"{name}: {value}\r\n" for name, value in
                       [("Host", self.host), *headers, ("Content-Length", str(len(body)))])
        await self.stream.send_all(f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode()
                                   + body)
        buffer = self._left
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += await self._receive()
        lines = buffer[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"an answer without a Content-Length: {lines[0]!r}")
        buffer = buffer[end + 4:]
        while len(buffer) < length:
            buffer += await self._receive()
        self._left = buffer[length:]
        return status, buffer[:length]

    async def _receive(self) -> bytes:
        data = await self.stream.receive_some(65536)
        if not data:
            raise RuntimeError("the connection ended mid-response")
        return data


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


#: The streams of the bursts, run as a child process: plain sockets and one selector,
#: HTTP by hand. Each stream only counts its `entry` events (no parsing). Why apart
#: and so bare: 100 streams read by trio and h11, each event parsed, would cost
#: more CPU per publish than the node spends, in the publisher's own event loop,
#: so the figure would time this process. Prints ``ready`` once every stream had
#: its ready event, then ``done T``: the perf_counter() (CLOCK_MONOTONIC, the same
#: clock in every process) when the last stream held every entry.
COUNTING_STREAMS = r"""
import selectors, socket, sys, time

host, port, path, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
streams, entries = int(sys.argv[5]), int(sys.argv[6])
ENTRY, READY = b"\nevent: entry\n", b"\nevent: ready\n"
request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}"
           "\r\nAccept: text/event-stream\r\n\r\n").encode()
selector = selectors.DefaultSelector()
state = {}
for _ in range(streams):
    sock = socket.create_connection((host, port))
    sock.sendall(request)
    sock.setblocking(False)
    state[sock] = [b"", 0, False, False]  # last bytes, entries, ready, all came
    selector.register(sock, selectors.EVENT_READ)
ready = done = 0
last = 0.0
while done < streams:
    events = selector.select(60.0)
    if not events:
        sys.exit(f"no stream read anything for 60 s: {done} of {streams} done")
    now = time.perf_counter()
    for key, _ in events:
        data = key.fileobj.recv(65536)
        if not data:
            sys.exit("an SSE stream ended")
        kept, count, seen, complete = state[key.fileobj]
        if not seen and not kept and not data.startswith(b"HTTP/1.1 200 "):
            sys.exit(f"GET {path[:60]} answered {data[:60]!r}")
        text = kept + data
        if not seen and READY in text:
            seen = True
            ready += 1
            if ready == streams:
                print("ready", flush=True)
        # (A marker inside the kept bytes was counted with the bytes before.)
        count += (b"\n" + text).count(ENTRY) - (b"\n" + kept).count(ENTRY)
        if count > entries:
            sys.exit(f"a stream got {count} entries of {entries}")
        if count == entries and not complete:
            complete = True
            done += 1
            last = max(last, now)
        state[key.fileobj] = [text[-len(ENTRY):], count, seen, complete]
print("done", repr(last), flush=True)
"""


async def sse_burst(target: ApiTarget, path: str, subscribers: int, entries: int
                    ) -> tuple[float, float]:
    """``entries`` publishes back to back over one connection while ``subscribers``
    streams watch (COUNTING_STREAMS, a child process): publishes/s, and seconds
    from the first publish until every stream held every entry."""
    proc = subprocess.Popen(
        [sys.executable, "-c", COUNTING_STREAMS, target.host, str(target.port), path,
         target.token, str(subscribers), str(entries)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=child_env(), text=True)
    assert proc.stdout is not None
    publisher = await HttpConnection.open(target.host, target.port)
    try:
        with trio.fail_after(60.0 + entries / 10):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"the counting streams did not start: {line!r}")
            await trio.sleep(0.2)  # let the server settle after the connects
            with no_gc():
                start = perf_counter()
                for i in range(entries):
                    await http_publish(publisher, target, paced_payload(i), SSE_LOG)
                acked = perf_counter()
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        if not line.startswith("done "):
            raise RuntimeError(f"the counting streams failed: {line!r}")
        return entries / (acked - start), float(line.split()[1]) - start
    except trio.TooSlowError:
        raise RuntimeError("the burst timed out") from None
    finally:
        await publisher.aclose()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


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
#: size of the node's events, written to every stream in turn (straight to the
#: socket, as the node's fan-out does, waiting only for what it does not take);
#: then 201. No store, no fsync, no per-subscriber task or encoding: the floor
#: under the node's SSE path, with the same clients, sockets and process layout.
FANOUT_SERVER = r"""
import json, os, sys, trio

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
            # As the node's fan-out: what the socket takes now, without waiting.
            try:
                written = os.write(subscriber.socket.fileno(), event)
            except BlockingIOError:
                written = 0
            if written < len(event):
                await subscriber.send_all(event[written:])
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


RAW_KINDS = {
    "raw_logbook_publish": RawKind(
        f"Logbook.publish, SqliteStore, {PAYLOAD_SIZE}-byte payload", "entries/s"),
    "raw_logbook_publish_ms": RawKind("one Logbook.publish (median)", "ms"),
    "raw_embed_publish_concurrent": RawKind(
        "EmbeddedNode.publish from as many tasks, in-process (group commit)", "entries/s"),
    "raw_fanout_latency_median": RawKind("bare trio fan-out to all streams: median", "ms"),
    "raw_fanout_latency_p99": RawKind("bare trio fan-out to all streams: p99", "ms"),
    "raw_fanout_all_median": RawKind("bare trio fan-out: all had it, median", "ms"),
    "raw_fanout_all_p99": RawKind("bare trio fan-out: all had it, p99", "ms"),
    "raw_fanout1_latency_median": RawKind("bare trio fan-out to 1 stream: median", "ms"),
    "raw_fanout1_latency_p99": RawKind("bare trio fan-out to 1 stream: p99", "ms"),
    "raw_fanout_cpu_per_event": RawKind("bare fan-out server CPU per event delivered", "µs"),
}


def raw_publish_seconds(n: int) -> Callable[[], float]:
    """Seconds of ``n`` ``Logbook.publish`` calls on a fresh ``SqliteStore``, in this process:
    signing plus one durable commit each."""
    return base.publish_seconds([throughput_payload(i) for i in range(n)], PUBLISH_LOG)


def raw_publish_median_ms(n: int) -> Callable[[], float]:
    """The median time of one of ``n`` ``Logbook.publish`` calls on a fresh ``SqliteStore``,
    in ms. A median, as the round-trip and latency rows beside it are medians: fsync
    times have a long tail, and a mean would sit above the median of the same calls."""
    payloads = [throughput_payload(i) for i in range(n)]

    def once() -> float:
        times = []
        with base.temp_logbook() as book:
            book.publish(b"first", PUBLISH_LOG)  # creates the feed row; not timed
            publish = book.publish
            for payload in payloads:
                start = perf_counter()
                publish(payload, PUBLISH_LOG)
                times.append(perf_counter() - start)
        return statistics.median(times) * 1000

    return once


Operations = tuple[Callable[[], object], Callable[[], Awaitable[object]]]


@asynccontextmanager
async def beside_raw_publish(
        publish: Callable[[bytes], Awaitable[object]]) -> AsyncIterator[Operations]:
    """A raw ``Logbook.publish`` on a fresh ``SqliteStore`` and ``publish``, for
    :func:`alternate_async`: one of each in turn."""
    counter = itertools.count()
    with base.temp_logbook() as book:
        book.publish(b"first", PUBLISH_LOG)  # creates the feed row; not timed
        yield (lambda: book.publish(throughput_payload(next(counter)), PUBLISH_LOG),
               lambda: publish(throughput_payload(next(counter))))


#: Bounds of the figures that contain a whole ``Logbook.publish``.
CONTAINS_PUBLISH = base.at_most_one("each publish is a Logbook.publish on the same kind of "
                                    "store (signing, one durable commit), plus more work")
AFTER_PUBLISH = base.at_least_one("the time includes one whole Logbook.publish (signing, a "
                                  "durable commit) before the entry can be read")
AFTER_FANOUT = base.at_least_one("the node does what the bare fan-out does (an HTTP request "
                                 "in, an event to each stream) plus a durable publish and a "
                                 "store read")


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
    sequential: Paired  # entries/s beside raw Logbook.publish entries/s
    concurrent: Paired
    latencies: list[Latency]  # one per round ...
    raw_ms: list[float]  # ... each after a raw sample of Logbook.publish, ms


def bench_embedded(sizes: Sizes, tmp: Path) -> EmbeddedRuns:
    n = sizes.publishes
    raw_rate = per_second(n, raw_publish_seconds(n))
    raw_ms = raw_publish_median_ms(sizes.raw_publishes)

    async def main() -> EmbeddedRuns:
        async with open_node(tmp / "embedded") as node:
            await node.publish(b"first", PUBLISH_LOG)

            def publishes(tasks: int) -> Callable[[], Awaitable[float]]:
                async def once() -> float:
                    return n / await timed_publishes(
                        lambda p: node.publish(p, PUBLISH_LOG), n, tasks)
                return once

            log(f"in-process EmbeddedNode.publish: {n:,} sequential, each after a raw "
                f"Logbook.publish; then {n:,} from {sizes.clients} tasks, after {n:,} raw ...")
            sequential = await alternate_async(
                sizes.pairs, n, lambda: beside_raw_publish(lambda p: node.publish(p, PUBLISH_LOG)))
            concurrent = await interleave_async(sizes.pairs, raw_rate, publishes(sizes.clients))
            latencies: list[Latency] = []
            raws: list[float] = []
            for attempt in range(sizes.rounds):
                log(f"in-process subscribe(), round {attempt + 1}: raw Logbook.publish, then "
                    f"{sizes.subscribers} iterators, {sizes.entries} entries at "
                    f"{sizes.rate:g}/s ...")
                with no_gc():
                    raws.append(raw_ms())
                latencies.append(latency_of(await embedded_latency(node, sizes), sizes.warmup))
        return EmbeddedRuns(sequential, concurrent, latencies, raws)

    return trio.run(main)


# -- over HTTP: a `tidings up` process, and the bare fan-out server ---------------------------


@dataclass
class LatencyRun:
    """One paced run against the node or the bare fan-out server."""

    latency: Latency
    cpu_per_event_us: float | None  # the server's CPU over the run / events delivered
    cpu_share: float | None  # the server's CPU seconds / wall seconds
    event_bytes: float


@dataclass
class HttpRuns:
    sequential: Paired  # entries/s beside raw Logbook.publish entries/s
    concurrent: Paired
    node_cpu_per_publish_us: float | None
    #: The node's and the publishers' CPU a publish in the concurrent samples.
    concurrent_note: str = ""
    #: Latency rounds: per round a raw Logbook.publish sample (ms), then a run of the bare
    #: fan-out and of the node, with all the streams, then both with one stream.
    raw_ms: list[float] = field(default_factory=list)
    fanout: list[LatencyRun] = field(default_factory=list)
    node: list[LatencyRun] = field(default_factory=list)
    fanout_one: list[LatencyRun] = field(default_factory=list)
    node_one: list[LatencyRun] = field(default_factory=list)
    #: Bursts with the streams open, each after as many publishes without them: entries/s.
    burst: Paired | None = None
    burst_note: str = ""


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


#: The concurrent publishers, run as a child process: ``connections`` keep-alive
#: connections of plain non-blocking sockets and one selector, HTTP/1.1 by hand,
#: each connection sending its next POST /v1/publish as soon as the last one is
#: answered (201), with the same payloads and bodies as :func:`http_publish`. Why
#: apart and so bare: an app's client (curl, Go, Rust, or Python's own sockets)
#: spends tens of µs a request (this one about 90); trio tasks in this process spent
#: 250-400 µs each, on the same 2 cores as the node, so the figure timed the
#: benchmark's client nearly as much as the node. Reads ``go`` on stdin once
#: connected, then prints the seconds from the first request written to the last
#: answer read, and its CPU seconds over them.
LEAN_PUBLISHERS = r"""
import base64, json, selectors, socket, sys, time

host, port, token, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
n, connections, size = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
head = (f"POST /v1/publish HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}"
        "\r\nContent-Type: application/json\r\nContent-Length: ").encode()
share = [n // connections + (1 if c < n % connections else 0) for c in range(connections)]

def request(c, i):
    payload = b"publish %09d " % (c * n + i)
    payload += b"x" * (size - len(payload))
    body = json.dumps({"log": log, "payload_base64": base64.b64encode(payload).decode()}).encode()
    return head + b"%d\r\n\r\n" % len(body) + body

selector = selectors.DefaultSelector()
state = {}
for c in range(connections):
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    state[sock] = [c, 0, b""]  # connection, requests answered, bytes of the answer so far
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
start, cpu = time.perf_counter(), time.process_time()
for sock, (c, done, _) in state.items():
    if share[c]:
        sock.sendall(request(c, 0))
        selector.register(sock, selectors.EVENT_READ)
left = sum(1 for c in share if c)
while left:
    for key, _ in selector.select(60.0) or sys.exit("no answer for 60 s"):
        sock = key.fileobj
        c, done, data = state[sock]
        data += sock.recv(65536) or sys.exit("the node closed a connection")
        end = data.find(b"\r\n\r\n")
        if end < 0:
            state[sock][2] = data
            continue
        if not data.startswith(b"HTTP/1.1 201 "):
            sys.exit(f"POST /v1/publish answered {data[:300]!r}")
        length = next(int(line.split(b":", 1)[1]) for line in data[:end].split(b"\r\n")
                      if line[:15].lower() == b"content-length:")
        if len(data) < end + 4 + length:
            state[sock][2] = data
            continue
        if len(data) > end + 4 + length:
            sys.exit("bytes after the answer: the node answered twice")
        done += 1
        state[sock][1:] = [done, b""]
        if done < share[c]:
            sock.sendall(request(c, done))
        else:
            selector.unregister(sock)
            left -= 1
print(time.perf_counter() - start, time.process_time() - cpu, flush=True)
"""


def main_thread_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process's main thread (its event loop), from
    /proc (None off Linux)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def lean_throughput(target: ApiTarget, n: int, connections: int
                          ) -> tuple[float, float]:
    """``n`` publishes from ``connections`` keep-alive connections of LEAN_PUBLISHERS:
    seconds from the first request to the last answer (connecting not timed), and
    the publishers' CPU seconds over them."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LEAN_PUBLISHERS, target.host, str(target.port), target.token,
         PUBLISH_LOG, str(n), str(connections), str(PAYLOAD_SIZE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(), text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with trio.fail_after(60.0 + n / 10):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"the publishers did not connect: {line!r}")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        try:
            elapsed, cpu = map(float, line.split())
            return elapsed, cpu
        except ValueError:
            raise RuntimeError(f"the publishers failed: {line!r}") from None
    except trio.TooSlowError:
        raise RuntimeError("the concurrent publishers timed out") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


async def latency_run(target: ApiTarget, path: str, streams: int, sizes: Sizes,
                      cpu: Callable[[], float | None]) -> LatencyRun:
    """One paced ``sse_run``, with the CPU the server (``cpu``) spent on it."""
    cpu_before = cpu()
    wall = perf_counter()
    delivery = await sse_run(target, path, streams, sizes)
    wall = perf_counter() - wall
    cpu_after = cpu()
    per_event = share = None
    if cpu_before is not None and cpu_after is not None:
        per_event = (cpu_after - cpu_before) / (sizes.entries * streams) * 1e6
        share = (cpu_after - cpu_before) / wall
    return LatencyRun(latency_of(delivery, sizes.warmup), per_event, share,
                      delivery.event_bytes / max(delivery.events, 1))


async def fanout_run(streams: int, event_bytes: float, sizes: Sizes) -> LatencyRun:
    """A paced run against a fresh FANOUT_SERVER (its start is not timed)."""
    server = FanoutServer(round(event_bytes))
    try:
        return await latency_run(server.target, "/events", streams, sizes, server.cpu_s)
    finally:
        server.kill()


async def beside_embedded(sizes: Sizes, home: Path,
                          figure: Callable[[], Awaitable[float]]) -> Paired:
    """``figure()`` (entries/s), each sample right after as many publishes of an
    EmbeddedNode in this process from as many tasks: like with like, both
    group-committed (publishes that arrive during a commit share the next)."""
    n = sizes.publishes
    values: list[float] = []
    raws: list[float] = []
    async with open_node(home) as node:
        await node.publish(b"first", PUBLISH_LOG)  # the feed row; untimed
        for _ in range(sizes.pairs):
            raws.append(n / await timed_publishes(lambda p: node.publish(p, PUBLISH_LOG), n,
                                                  sizes.clients))
            values.append(await figure())
    return Paired.of(values, raws)


def bench_http(sizes: Sizes, tmp: Path) -> HttpRuns:
    home = tmp / "node"
    identity, _ = Home(home).init()
    feed: FeedId = identity.author.feed(SSE_LOG)
    node = ApiNode(home, tmp / "node.log")
    n = sizes.publishes
    raw_ms = raw_publish_median_ms(sizes.raw_publishes)
    try:
        target = node.target
        path = f"/v1/events?feeds={feed}"

        def throughput(connections: int, count: int = n) -> Callable[[], Awaitable[float]]:
            async def once() -> float:
                return count / await http_throughput(target, count, connections)
            return once

        node_cpu_us: list[float] = []  # per concurrent sample: the node's CPU a publish ...
        client_cpu_us: list[float] = []  # ... and the publishers'

        loop_cpu_us: list[float] = []  # ... and of the node's, its event loop's (main thread)

        async def lean(connections: int) -> float:
            before, loop_before = node.cpu_s(), main_thread_cpu_s(node.proc.pid)
            seconds, client_cpu = await lean_throughput(target, n, connections)
            after, loop_after = node.cpu_s(), main_thread_cpu_s(node.proc.pid)
            if before is not None and after is not None:
                node_cpu_us.append((after - before) / n * 1e6)
            if loop_before is not None and loop_after is not None:
                loop_cpu_us.append((loop_after - loop_before) / n * 1e6)
            client_cpu_us.append(client_cpu / n * 1e6)
            return n / seconds

        async def main() -> HttpRuns:
            warm = await HttpConnection.open(target.host, target.port)
            await http_publish(warm, target, b"first", PUBLISH_LOG)  # the feed row; untimed
            await warm.aclose()
            @asynccontextmanager
            async def beside_post() -> AsyncIterator[Operations]:
                connection = await HttpConnection.open(target.host, target.port)
                try:
                    async with beside_raw_publish(
                            lambda p: http_publish(connection, target, p, PUBLISH_LOG)) as ops:
                        yield ops
                finally:
                    await connection.aclose()

            log(f"HTTP: POST /v1/publish x {n:,} on one keep-alive connection, each after a "
                "raw Logbook.publish ...")
            cpu_before = node.cpu_s()
            sequential = await alternate_async(sizes.pairs, n, beside_post)
            cpu_after = node.cpu_s()
            cpu_per_publish = None
            if cpu_before is not None and cpu_after is not None:
                cpu_per_publish = (cpu_after - cpu_before) / (n * sizes.pairs) * 1e6
            log(f"HTTP: POST /v1/publish x {n:,} from {sizes.clients} connections, each after "
                f"{n:,} in-process EmbeddedNode.publish from {sizes.clients} tasks ...")
            concurrent = await beside_embedded(sizes, tmp / "beside",
                                               partial(lean, sizes.clients))
            runs = HttpRuns(sequential, concurrent, cpu_per_publish)
            if node_cpu_us:
                loop = (f" ({statistics.median(loop_cpu_us):,.0f} on its event loop, the rest "
                        "in its store's threads)" if loop_cpu_us else "")
                runs.concurrent_note = (
                    f"node CPU {statistics.median(node_cpu_us):,.0f} µs a publish{loop}, the "
                    f"publishers' {statistics.median(client_cpu_us):,.0f} µs (medians)")

            # The node's event size, so the bare fan-out pads its events to it (untimed).
            probe = await sse_run(target, path, 1, replace(sizes, entries=2, rate=math.inf))
            event_bytes = probe.event_bytes / max(probe.events, 1)
            s = sizes.subscribers
            for attempt in range(sizes.rounds):
                log(f"latency round {attempt + 1}: raw Logbook.publish; bare fan-out, then the "
                    f"node, {s} streams, then 1; {sizes.entries} entries at {sizes.rate:g}/s "
                    "each ...")
                with no_gc():
                    runs.raw_ms.append(raw_ms())
                runs.fanout.append(await fanout_run(s, event_bytes, sizes))
                runs.node.append(await latency_run(target, path, s, sizes, node.cpu_s))
                runs.fanout_one.append(await fanout_run(1, event_bytes, sizes))
                runs.node_one.append(await latency_run(target, path, 1, sizes, node.cpu_s))

            log(f"HTTP: {sizes.burst} publishes back to back with {s} SSE streams open, each "
                "burst after as many without them ...")
            alone: list[float] = []
            watched: list[float] = []
            everywhere: list[float] = []
            for _ in range(sizes.pairs):
                alone.append(await throughput(1, sizes.burst)())
                rate, took = await sse_burst(target, path, s, sizes.burst)
                watched.append(rate)
                everywhere.append(took)
            runs.burst = Paired.of(watched, alone)
            took = statistics.median(everywhere)
            runs.burst_note = (
                f"{sizes.burst} publishes back to back while {s} SSE streams watch the feed; "
                f"all {s} held all of them {took:.2f} s (median) after the first was sent "
                f"({sizes.burst * s / took:,.0f} events/s delivered); raw: {sizes.burst} "
                "publishes on the same connection just before, with no stream open")
            return runs

        runs = trio.run(main)
        node.stop()
        return runs
    finally:
        node.kill()


# -- the figures --------------------------------------------------------------------------------


LATENCY_STATS: dict[str, Callable[[Latency], float]] = {
    "latency_median": lambda lat: lat.median_ms,
    "latency_p99": lambda lat: lat.p99_ms,
    "all_median": lambda lat: lat.all_median_ms,
    "all_p99": lambda lat: lat.all_p99_ms,
}
LATENCY_LABELS = {"latency_median": "median", "latency_p99": "p99",
                  "all_median": "all had it, median", "all_p99": "all had it, p99"}


def add_latency(results: Results, prefix: str, section: str, what: str,
                latencies: Sequence[Latency], raws: Mapping[str, Sequence[float]],
                raw_keys: dict[str, str], bounds: dict[str, Bound], note: str = "") -> None:
    """One row per statistic in ``raws``: each round's statistic beside its raw sample."""
    for suffix, raw in raws.items():
        stat = LATENCY_STATS[suffix]
        results.paired(f"{prefix}_{suffix}", section, f"{what}: {LATENCY_LABELS[suffix]}", "ms",
                       Paired.of([stat(lat) for lat in latencies], raw), raw_keys[suffix],
                       count=latencies[0].pairs if suffix.startswith("latency") else
                       latencies[0].entries, bound=bounds.get(suffix),
                       note=note if suffix == "latency_median" else "")


def fanout_stats(runs: Sequence[LatencyRun], *suffixes: str) -> dict[str, list[float]]:
    return {suffix: [LATENCY_STATS[suffix](run.latency) for run in runs] for suffix in suffixes}


def bench_http_api(results: Results, sizes: Sizes) -> None:
    """Every figure of this file, added to ``results``."""
    results.raw_kinds.update(RAW_KINDS)
    with tempfile.TemporaryDirectory(prefix="tidings-bench-http-") as tmp:
        http = bench_http(sizes, Path(tmp))
        embedded = bench_embedded(sizes, Path(tmp))

    n, c, s = sizes.publishes, sizes.clients, sizes.subscribers
    pub = ("7. Local HTTP API, publishing: a `tidings up` process; "
           f"{n:,} publishes per sample, {PAYLOAD_SIZE}-byte payloads")
    embed_seq = results.paired("embed_publish", pub, "EmbeddedNode.publish, sequential (in-proc)",
                               "entries/s", embedded.sequential, "raw_logbook_publish", count=n,
                               bound=CONTAINS_PUBLISH)
    embed_conc = results.paired("embed_publish_concurrent", pub,
                                f"EmbeddedNode.publish, {c} tasks (in-proc)", "entries/s",
                                embedded.concurrent, "raw_logbook_publish", count=n)
    http_seq = results.paired("http_publish_1conn", pub, "POST /v1/publish, 1 keep-alive conn",
                              "entries/s", http.sequential, "raw_logbook_publish", count=n,
                              bound=CONTAINS_PUBLISH)
    http_seq.note = (f"{http_seq.value / embed_seq.value:.2f}x the in-process "
                     "EmbeddedNode.publish rate; each request waits for the durable commit")
    http_conc = results.paired("http_publish_concurrent", pub,
                               f"POST /v1/publish, {c} keep-alive conns", "entries/s",
                               http.concurrent, "raw_embed_publish_concurrent", count=n,
                               goal_ratio=0.8)
    http_conc.note = (f"raw: EmbeddedNode.publish from {c} tasks in this process, just before "
                      "each sample; both group-commit (publishes that arrive together share "
                      "a commit), so no bound; the connections are a lean client in a child "
                      f"process (LEAN_PUBLISHERS); {http.concurrent_note}; "
                      f"{http_conc.value / embed_conc.value:.2f}x the in-process figure above")
    if http.node_cpu_per_publish_us is not None:
        results.add(Figure("http_node_cpu_per_publish", pub,
                           "node CPU per POST /v1/publish (1 conn)",
                           http.node_cpu_per_publish_us, "µs",
                           note="from /proc/PID/stat (10 ms ticks) over the 1-connection samples"))
    assert http.burst is not None
    results.paired("http_publish_1conn_streams", pub,
                   f"POST /v1/publish, 1 conn, {s} streams open", "entries/s", http.burst,
                   "http_publish_1conn", raw_label="the same, no stream open", count=sizes.burst,
                   note=http.burst_note, goal_ratio=0.5)

    sse = (f"8. Delivery latency: {sizes.rounds} rounds of {sizes.entries} entries at "
           f"{sizes.rate:g}/s (first {sizes.warmup} not counted), publish start -> subscriber "
           "reads it")
    every = ("latency_median", "latency_p99", "all_median", "all_p99")
    fanout_keys = {"latency_median": "raw_fanout_latency_median",
                   "latency_p99": "raw_fanout_latency_p99",
                   "all_median": "raw_fanout_all_median", "all_p99": "raw_fanout_all_p99"}
    medians_after_fanout = {"latency_median": AFTER_FANOUT, "all_median": AFTER_FANOUT}
    node = [run.latency for run in http.node]
    add_latency(results, "sse", sse, f"SSE x{s}", node, fanout_stats(http.fanout, *every),
                fanout_keys, medians_after_fanout,
                note=f"per round: {node[0].pairs:,} (entry, stream) pairs; max "
                     f"{max(lat.max_ms for lat in node):.1f} ms; achieved "
                     f"{statistics.median(lat.achieved_rate for lat in node):.1f} entries/s; "
                     f"events of {http.node[0].event_bytes:.0f} bytes")
    results.paired("sse_publish_rtt_median", sse, f"POST /v1/publish round trip ({s} streams)",
                   "ms", Paired.of([lat.publish_rtt_median_ms for lat in node], http.raw_ms),
                   "raw_logbook_publish_ms", bound=AFTER_PUBLISH)
    one = [run.latency for run in http.node_one]
    add_latency(results, "sse1", sse, "SSE x1", one,
                fanout_stats(http.fanout_one, "latency_median", "latency_p99"),
                {"latency_median": "raw_fanout1_latency_median",
                 "latency_p99": "raw_fanout1_latency_p99"},
                {"latency_median": AFTER_FANOUT})
    results.paired("sse1_publish_rtt_median", sse, "POST /v1/publish round trip (1 stream)",
                   "ms", Paired.of([lat.publish_rtt_median_ms for lat in one], http.raw_ms),
                   "raw_logbook_publish_ms", bound=AFTER_PUBLISH)
    node_cpu = [run.cpu_per_event_us for run in http.node]
    fanout_cpu = [run.cpu_per_event_us for run in http.fanout]
    if all(cpu is not None for cpu in node_cpu + fanout_cpu) and all(fanout_cpu):
        share = statistics.median(run.cpu_share or 0.0 for run in http.node)
        results.paired("sse_node_cpu_per_event", sse,
                       f"node CPU per event delivered ({s} streams)", "µs",
                       Paired.of([cpu or 0.0 for cpu in node_cpu],
                                 [cpu or 0.0 for cpu in fanout_cpu]),
                       "raw_fanout_cpu_per_event",
                       note=f"the node used {100 * share:.0f}% of one core over a {s}-stream "
                            "run (its connects included); from /proc/PID/stat, 10 ms ticks")
    embed = embedded.latencies
    add_latency(results, "embed", sse, f"subscribe() x{s}", embed,
                dict.fromkeys(every, embedded.raw_ms),
                dict.fromkeys(every, "raw_logbook_publish_ms"),
                {"latency_median": AFTER_PUBLISH, "all_median": AFTER_PUBLISH},
                note=f"{s} subscribe() iterators of an EmbeddedNode in this process; "
                     f"{embed[0].pairs:,} pairs a round; max "
                     f"{max(lat.max_ms for lat in embed):.1f} ms; the publish's own durable "
                     "commit is included; raw: one Logbook.publish")
    results.paired("embed_publish_rtt_median", sse, f"EmbeddedNode.publish call ({s} iterators)",
                   "ms", Paired.of([lat.publish_rtt_median_ms for lat in embed],
                                   embedded.raw_ms),
                   "raw_logbook_publish_ms", bound=AFTER_PUBLISH)
    results.notes.append(
        "http: publishing rates are entries/s, each sample right after a sample of "
        "Logbook.publish on a SqliteStore in this process (signing + a durable commit). "
        "Latencies run from just before the publish request is written to the moment the "
        "subscriber's socket read returns the event. Each latency round takes a raw sample of "
        "Logbook.publish, then runs the bare trio fan-out server (child process, no store) "
        "and the node with the same clients: the SSE rows pair each node run with the fan-out "
        "run just before it; the in-process rows pair each run with the round's raw publish."
    )


# -- output ---------------------------------------------------------------------------------------


def print_human(results: Results, meta: dict[str, Any]) -> None:
    print(f"tidings local HTTP API benchmark: {meta['mode']} run")
    print(f"python {meta['python']}, trio {meta['trio']}, h11 {meta['h11']}, SQLite "
          f"{meta['sqlite']}, {meta['cpus']} CPUs, temp dir {meta['tmpdir']}")
    print(f"{meta['statistic']}; total {meta['elapsed_s']:.0f} s")
    base.print_table(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base.size_parser(__doc__,
                              f"smaller sizes ({QUICK.publishes} publishes per sample, "
                              f"{QUICK.rounds} latency rounds of {QUICK.entries} entries)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    results = Results()
    begun = perf_counter()
    log(f"tidings local HTTP API benchmark ({sizes.name}); progress on stderr")
    bench_http_api(results, sizes)
    meta = {
        **base.machine_meta(sizes.name, "tidings", "trio", "h11"),
        "statistic": f"{base.STATISTIC}; {sizes.pairs} pairs a rate, {sizes.rounds} latency "
                     "rounds",
        "sizes": sizes_meta(sizes),
        "elapsed_s": perf_counter() - begun,
    }
    return base.emit("tidings-http-api", results, meta, as_json=args.json, human=print_human,
                     smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
