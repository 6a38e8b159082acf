"""The local API's event streams under load: one fan-out task, slow clients, HTTP/1.0.

Real TCP on loopback against a real node; no timing assertions (each wait is a
hang guard).
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tidings.embed import EmbeddedNode, open_node
from tidings.http import api as api_module
from tidings.http.api import Api
from tidings.http.server import HttpServer

#: A hang guard, not a timing assertion: generous for a loaded machine.
GUARD = 60.0


@asynccontextmanager
async def serving(home: Path) -> AsyncIterator[tuple[EmbeddedNode, Api, int]]:
    """A node and its API, served as serve_api does, with the Api at hand."""
    async with open_node(home) as node:
        api = Api(node, node.home.api_token(), loopback=True)
        server = HttpServer(api, check_head=api.check_head)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(api.fanout.run)
            _, port = await nursery.start(server.serve, "127.0.0.1", 0)
            yield node, api, port
            nursery.cancel_scope.cancel()


async def open_stream(port: int, token: str, *, version: str = "1.1",
                      receive_buffer: int | None = None) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # a client that takes little at a time
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    await stream.send_all(f"GET /v1/events?own=true HTTP/{version}\r\nHost: 127.0.0.1\r\n"
                          f"Authorization: Bearer {token}\r\n\r\n".encode())
    return stream


async def read_until(stream: trio.SocketStream, received: bytearray, marker: bytes,
                     count: int = 1) -> None:
    with trio.fail_after(GUARD):  # (and until the last event has come whole)
        while (received.count(marker) < count
               or not received.endswith((b"\n\n", b"\n\n\r\n"))):
            data = await stream.receive_some(65536)
            assert data, "the stream ended"
            received += data


def entry_seqs(body: bytes) -> list[int]:
    """The seq of every `entry` event in a body (chunk framing, if any, around them)."""
    seqs = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: {") and b'"seq"' in line:
            seqs.append(json.loads(line[len(b"data: "):])["seq"])
    return seqs


async def test_a_client_that_stops_reading_is_held_bounded_and_then_misses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream whose client takes nothing falls out of the fan-out once its writer
    holds the bound, reads the store by itself once its client reads again, and
    gets every entry once, in order; the other stream is served all along."""
    monkeypatch.setattr(api_module, "STREAM_BUFFER_BYTES", 16 * 1024)
    count, size = 120, 6000  # ~8 KB events: far more than the socket buffers hold
    async with serving(tmp_path / "n") as (node, api, port):
        token = node.home.api_token()
        slow = await open_stream(port, token, receive_buffer=4096)
        quick = await open_stream(port, token)
        slow_body, quick_body = bytearray(), bytearray()
        await read_until(slow, slow_body, b"event: ready")
        await read_until(quick, quick_body, b"event: ready")
        held: list[int] = []
        for index in range(count):
            await node.publish(b"%d " % index + b"x" * size, "blog")
            # The quick one has it: the fan-out offered it to both (so one event a
            # pass, as each publish waits for the last to be delivered).
            await read_until(quick, quick_body, b"event: entry", index + 1)
            held += api.fanout.pending()
        await read_until(slow, slow_body, b"event: entry", count)  # then the slow one
        assert entry_seqs(bytes(quick_body)) == list(range(1, count + 1))
        assert entry_seqs(bytes(slow_body)) == list(range(1, count + 1))
        # Never more than the bound and what one pass offered (here one event).
        assert max(held) < api_module.STREAM_BUFFER_BYTES + 2 * size
        await slow.aclose()
        await quick.aclose()


async def test_streams_to_http_1_0_clients_end_with_the_connection_unframed(
        tmp_path: Path) -> None:
    async with serving(tmp_path / "n") as (node, _api, port):
        stream = await open_stream(port, node.home.api_token(), version="1.0")
        body = bytearray()
        await read_until(stream, body, b"event: ready")
        await node.publish(b"one", "blog")
        await node.publish(b"two", "blog")
        await read_until(stream, body, b"event: entry", 2)
        head, _, rest = bytes(body).partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower()
        assert rest.startswith(b"retry: ")  # no chunk sizes between the events
        assert entry_seqs(rest) == [1, 2]
        await stream.aclose()


async def test_a_client_that_hangs_up_leaves_the_fan_out_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream ends when its client hangs up, not at its next write: here no write
    would ever come (no entry, and no keep-alive), and the other stream goes on."""
    monkeypatch.setattr(api_module, "KEEPALIVE_EVERY", math.inf)
    async with serving(tmp_path / "n") as (node, api, port):
        token = node.home.api_token()
        gone, staying = await open_stream(port, token), await open_stream(port, token)
        staying_body = bytearray()
        await read_until(gone, bytearray(), b"event: ready")
        await read_until(staying, staying_body, b"event: ready")
        with trio.fail_after(GUARD):
            while len(api.fanout.pending()) < 2:
                await trio.sleep(0.01)
        await gone.aclose()
        with trio.fail_after(GUARD):  # (a hang guard: without the hang-up, never)
            while len(api.fanout.pending()) > 1:
                await trio.sleep(0.01)
        for index in range(3):
            await node.publish(b"%d" % index, "blog")
        await read_until(staying, staying_body, b"event: entry", 3)
        assert entry_seqs(bytes(staying_body)) == [1, 2, 3]
        # What a client sends after its request is ignored, and its hang-up still seen.
        await staying.send_all(b"\r\nGET / HTTP/1.1\r\n\r\n")
        await node.publish(b"3", "blog")
        await read_until(staying, staying_body, b"event: entry", 4)
        await staying.aclose()
        with trio.fail_after(GUARD):
            while api.fanout.pending():
                await trio.sleep(0.01)


async def test_a_stream_the_fan_out_fails_on_ends_and_the_others_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug met while serving one stream closes that stream (its client resumes from
    the last event it got), never the fan-out or the API."""
    async with serving(tmp_path / "n") as (node, api, port):
        token = node.home.api_token()
        first, second = await open_stream(port, token), await open_stream(port, token)
        first_body, second_body = bytearray(), bytearray()
        await read_until(first, first_body, b"event: ready")
        await read_until(second, second_body, b"event: ready")
        with trio.fail_after(GUARD):
            while len(api.fanout.pending()) < 2:
                await trio.sleep(0.01)
        encode = api.event_bytes
        failed: list[bool] = []

        def fail_once(item: Any) -> bytes:
            if not failed:
                failed.append(True)
                raise RuntimeError("a bug")
            return encode(item)

        monkeypatch.setattr(api, "event_bytes", fail_once)
        await node.publish(b"one", "blog")
        ended: list[trio.SocketStream] = []

        async def one_entry_or_the_end(stream: trio.SocketStream, body: bytearray) -> None:
            with trio.fail_after(GUARD):
                while entry_seqs(bytes(body)) != [1] or not body.endswith(b"\n\n\r\n"):
                    data = await stream.receive_some(65536)
                    if not data:
                        ended.append(stream)
                        return
                    body += data

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one_entry_or_the_end, first, first_body)
            nursery.start_soon(one_entry_or_the_end, second, second_body)
        assert len(ended) == 1 and failed
        served, body = (second, second_body) if ended == [first] else (first, first_body)
        await node.publish(b"two", "blog")
        await read_until(served, body, b"event: entry", 2)
        assert entry_seqs(bytes(body)) == [1, 2]
        await first.aclose()
        await second.aclose()


async def test_the_fan_out_lets_other_tasks_run_between_a_few_streams(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A round of writes to many streams does not hold the event loop: another task
    (the next publish's request, in a node) runs after every few streams, and each
    stream still gets every entry once, in order."""
    count = 3 * api_module.STREAMS_PER_YIELD + 1
    async with serving(tmp_path / "n") as (node, api, port):
        token = node.home.api_token()
        streams = [await open_stream(port, token) for _ in range(count)]
        bodies = [bytearray() for _ in streams]
        for stream, body in zip(streams, bodies, strict=True):
            await read_until(stream, body, b"event: ready")
        with trio.fail_after(GUARD):
            while len(api.fanout.pending()) < count:
                await trio.sleep(0.01)
        order: list[str] = []
        encode = api.event_bytes

        def recorded(item: Any) -> bytes:
            order.append("stream")
            return encode(item)

        async def other_task() -> None:
            while True:
                order.append("other")
                await trio.lowlevel.checkpoint()

        monkeypatch.setattr(api, "event_bytes", recorded)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_task)
            await node.publish(b"one", "blog")
            for stream, body in zip(streams, bodies, strict=True):
                await read_until(stream, body, b"event: entry")
            nursery.cancel_scope.cancel()
        assert order.count("stream") == count
        longest = max(len(run) for run in "".join(
            "s" if step == "stream" else " " for step in order).split())
        # Other tasks run between the fan-out's turns. (Two turns can meet, one
        # ending a batch of runnable tasks and the next opening the next batch.)
        assert longest <= 2 * api_module.STREAMS_PER_YIELD
        for stream, body in zip(streams, bodies, strict=True):
            assert entry_seqs(bytes(body)) == [1]
            await stream.aclose()


async def test_the_api_checks_the_token_itself_behind_a_server_that_does_not(
        tmp_path: Path) -> None:
    """Behind a server without its head check, the API checks host and token on each
    request itself (a request the server checked is not checked twice)."""
    async with open_node(tmp_path / "n") as node:
        api = Api(node, node.home.api_token(), loopback=True)
        server = HttpServer(api)  # (no check_head)
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(server.serve, "127.0.0.1", 0)
            with trio.fail_after(GUARD):
                for token, status in (("wrong", b"401"), (node.home.api_token(), b"200")):
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.send_all(f"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          f"Authorization: Bearer {token}\r\n"
                                          "Connection: close\r\n\r\n".encode())
                    received = b""
                    while more := await stream.receive_some(65536):
                        received += more
                    assert received.startswith(b"HTTP/1.1 " + status), received[:200]
                    await stream.aclose()
            nursery.cancel_scope.cancel()
