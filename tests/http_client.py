"""A small HTTP/1.1 client for tests: h11 on trio sockets, one connection per request.

Raw enough to send what a browser or a broken client would (any Host, an
Origin, no Content-Type, oversized headers) and to read a Server-Sent Events
stream for a bounded time. Not for production: no TLS, no redirects, no pooling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from tidings.http import server

#: A test that waits longer than this for one reply has found a hang, not a slow server.
REPLY_TIMEOUT = 60.0  # a hang guard, not a timing assertion: generous for a loaded machine


@dataclass
class Reply:
    status: int
    #: Lower-case names; a repeated header keeps its values joined by ", ".
    headers: dict[str, str]
    body: bytes

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Event:
    """One Server-Sent Event (an ``event``/``id``/``data`` block), or a comment."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class EventStream:
    status: int
    headers: dict[str, str]
    events: list[Event] = field(default_factory=list)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.comment is None and e.event == kind]


Headers = Sequence[tuple[str, str]]


def _headers(pairs: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in pairs:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        merged[key] = f"{merged[key]}, {text}" if key in merged else text
    return merged


def _request_headers(address: tuple[str, int], headers: Headers, body: bytes | None
                     ) -> list[tuple[str, str]]:
    names = {name.lower() for name, _ in headers}
    sent = list(headers)
    if "host" not in names:
        sent.insert(0, ("Host", f"{address[0]}:{address[1]}"))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        sent.append(("Content-Length", str(len(body))))
    return sent


async def request(address: tuple[str, int], method: str, target: str, *,
                  headers: Headers = (), body: bytes | None = None) -> Reply:
    """Send one request on a new connection and read the whole reply."""
    with trio.fail_after(REPLY_TIMEOUT):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            client = h11.Connection(h11.CLIENT)
            sent = _request_headers(address, headers, body)
            await stream.send_all(client.send(h11.Request(method=method, target=target,
                                                          headers=sent)))
            if body is not None:
                if body:
                    await stream.send_all(client.send(h11.Data(data=body)))
                await stream.send_all(client.send(h11.EndOfMessage()))
            return await _read_reply(stream, client)


async def raw_request(address: tuple[str, int], data: bytes) -> Reply:
    """Send ``data`` as it is (a request h11 would refuse to write) and read the reply."""
    with trio.fail_after(REPLY_TIMEOUT):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            client = h11.Connection(h11.CLIENT)
            # h11 must believe it sent a request to parse the response; a dummy one.
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            await stream.send_all(data)
            return await _read_reply(stream, client)


async def _read_reply(stream: trio.SocketStream, client: h11.Connection) -> Reply:
    head: h11.Response | None = None
    body = bytearray()
    while True:
        try:
            event = client.next_event()
        except h11.RemoteProtocolError:  # closed before the reply was complete
            raise ConnectionError("the server closed the connection without a reply") from None
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return Reply(head.status_code, _headers(head.headers), bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the server closed the connection without a reply")


class _EventParser:
    """The event-stream parsing of the HTML standard (§9.2.6), minus the BOM."""

    def __init__(self) -> None:
        self.buffer = ""
        self.fields: dict[str, str] = {}
        self.data: list[str] = []
        self.last_id: str | None = None

    def feed(self, text: str) -> list[Event]:
        self.buffer += text
        out: list[Event] = []
        while True:
            cut = min((i for i in (self.buffer.find("\r"), self.buffer.find("\n")) if i >= 0),
                      default=-1)
            if cut < 0:
                return out
            line = self.buffer[:cut]
            rest = self.buffer[cut + 1:]
            if self.buffer[cut] == "\r" and rest.startswith("\n"):
                rest = rest[1:]
            self.buffer = rest
            event = self._line(line)
            if event is not None:
                out.append(event)

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self.data and not self.fields:
                return None
            event = Event(event=self.fields.get("event") or "message",
                          data="\n".join(self.data), id=self.fields.get("id"),
                          retry=int(self.fields["retry"]) if "retry" in self.fields else None)
            self.fields, self.data = {}, []
            return event
        if line.startswith(":"):
            return Event(comment=line[1:].strip())
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self.data.append(value)
        elif name in ("event", "id", "retry"):
            self.fields[name] = value
        return None


async def read_events(address: tuple[str, int], target: str, *, headers: Headers = (),
                      until: Callable[[EventStream], bool], timeout: float = 30.0,
                      started: Callable[[], Any] | None = None) -> EventStream:
    """Read an SSE stream until ``until(stream)`` holds, then hang up.

    Raises ``trio.TooSlowError`` if that takes over ``timeout`` seconds. Without
    a 200 the error body is read and returned as an "error" event. ``started`` is
    called (and awaited, if it returns an awaitable) once the ``ready`` event came:
    then the stream's start is fixed, so a test can make entries arrive live.
    """
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            client = h11.Connection(h11.CLIENT)
            sent = _request_headers(address, [("Accept", "text/event-stream"), *headers], None)
            await stream.send_all(client.send(h11.Request(method="GET", target=target,
                                                          headers=sent)))
            await stream.send_all(client.send(h11.EndOfMessage()))
            parser = _EventParser()
            result: EventStream | None = None
            body = bytearray()
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    result = EventStream(event.status_code, _headers(event.headers))
                elif isinstance(event, h11.Data):
                    assert result is not None
                    if result.status != 200:
                        body += event.data
                        continue
                    fresh = parser.feed(event.data.decode("utf-8"))
                    result.events += fresh
                    if started is not None and any(e.event == "ready" for e in fresh):
                        outcome = started()
                        if hasattr(outcome, "__await__"):
                            await outcome
                    if until(result):
                        return result
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    assert result is not None
                    if result.status != 200:
                        result.events.append(Event(event="error", data=body.decode()))
                    return result


__all__ = ["Event", "EventStream", "Reply", "raw_request", "read_events", "request"]


async def collected(reply: server.Response) -> server.Response:
    """``reply`` with a streamed body (a gateway document) read whole into ``body``, as
    a client would receive it; a reply built whole is returned as it is."""
    if reply.stream is not None:
        pieces: list[bytes] = []

        async def take(data: bytes) -> None:
            pieces.append(data)

        await reply.stream(take)
        reply.body, reply.stream = b"".join(pieces), None
    return reply
