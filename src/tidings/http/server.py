"""A small HTTP/1.1 server: the sans-IO framing of ``http1.py`` on trio sockets.

A thin trio shell bounded precisely: header size, body size, read and send
deadlines, open connections. Why its own framing rather than h11's general
state machine: a request's head is parsed in one pass (h11 cost several times
the publish it carried), and an answer goes out in one write. Responses either
carry a body or stream it (Server-Sent Events, blobs), framed by
Content-Length, chunked, or the connection's end (HTTP/1.0).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from tidings.http.http1 import (
    MAX_HEADER_BYTES,
    BadRequest,
    ChunkedBody,
    RequestHead,
    head_end,
    parse_head,
    response_head,
)
from tidings.node.log import Logger
from tidings.node.options import peer_address

#: A request body at most (a 1 MiB payload in base64, with room to spare).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: A client must send a whole request within this many seconds once it starts
#: (and a new connection its first byte)...
REQUEST_TIMEOUT = 10.0
#: ...and may keep an idle connection open this long between requests.
KEEPALIVE_TIMEOUT = 60.0
#: A client that reads nothing for this long is cut off (SSE clients resume).
SEND_TIMEOUT = 30.0
#: How often the server looks for connections past those deadlines (each is kept
#: within this): one task for all connections, not a timer a request.
SWEEP_EVERY = 0.5
MAX_CONNECTIONS = 512
#: Requests a connection may take in a row that were all there when read, without
#: letting other tasks run (a client that sends the next at once; its handler may
#: never wait): then it yields once. A checkpoint for each would cost a trip
#: through the scheduler for every request of a quick client.
MAX_UNWAITED = 8
#: Answer heads kept framed (a few statuses and types are all a server sends).
MAX_CACHED_HEADS = 64
READ_SIZE = 64 * 1024


class HttpError(Exception):
    """An error response: a status, a stable code and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    #: Lower-case names; a repeated header keeps its values joined by ", ".
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int]
    #: Set by the server: ``early(response)`` frames ``response`` (one with a body,
    #: not streamed) now and returns what sends it without waiting, from any task
    #: (see :class:`_Early`); the handler's own response is then not sent.
    early: Callable[[Response], Callable[[], None]] | None = field(default=None, repr=False)
    #: Set by the server once its ``check_head`` let this request's head through: a
    #: handler that would check the same (the API's host, origin and token) need not.
    checked: bool = False

    def copy(self) -> Request:
        """This request as read from its head: no body, no answer hook (its own
        headers, which a handler may change)."""
        return Request(self.method, self.target, self.path, self.query, dict(self.headers),
                       b"", self.client, checked=self.checked)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """One query parameter (the last if repeated)."""
        values = self.query.get(name)
        return values[-1] if values else default


Send = Callable[[bytes], Awaitable[None]]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: Streams the body instead (then ``body`` is ignored): called with a send function.
    stream: Callable[[Send], Awaitable[None]] | None = None
    #: The stream has no end (server-sent events): it may wait long between writes,
    #: so the client hanging up ends it at once, not at its next write. Its connection
    #: carries no other request.
    endless: bool = False


#: One encoder for every answer (``json.dumps`` with an option builds one a call).
JSON = json.JSONEncoder(ensure_ascii=False)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, (JSON.encode(value) + "\n").encode())


def error_response(error: HttpError) -> Response:
    body = {"error": {"code": error.code, "message": error.message}}
    response = json_response(body, error.status)
    response.headers.extend(error.headers)
    return response


Handler = Callable[[Request], Awaitable[Response]]
#: Checks a request's head (its ``body`` is empty) before the body is read: an
#: error response refuses it, and the connection is closed.
HeadCheck = Callable[[Request], "Response | None"]


@dataclass(eq=False)
class _ConnectionState:
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: When it started waiting for a request (None while it reads or answers one).
    idle_since: float | None = None
    #: When the request being read started (None when none is half sent).
    reading_since: float | None = None
    client: str = ""
    #: No request has come yet (the first must start within REQUEST_TIMEOUT).
    first: bool = True
    #: The last request head read on this connection, as sent, and what it was read
    #: as (its check passed): a client sends the same head again and again (only the
    #: body changes), and the same bytes are read, and checked, the same way.
    last_head: bytes = b""
    last_read: tuple[RequestHead, Request] | None = None
    #: The request being read had to wait for the client (the task yielded then)...
    waited: bool = False
    #: ...and how many in a row did not.
    unwaited: int = 0


class HttpServer:
    """Serve ``handler`` on a listener; ``await nursery.start(server.serve, host, port)``."""

    def __init__(self, handler: Handler, *, log: Logger | None = None,
                 extra_headers: list[tuple[str, str]] | None = None,
                 check_head: HeadCheck | None = None,
                 max_per_client: int | None = None) -> None:
        self.handler = handler
        self.max_per_client = max_per_client
        self.check_head = check_head
        self.log = log or Logger(level="quiet")
        self.extra_headers = extra_headers or []
        self._connections: set[_ConnectionState] = set()
        #: Heads of answers with no headers of their own, by (status, type, keep-alive).
        self._heads: dict[tuple[int, str, bool], bytes] = {}

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def serve(self, host: str, port: int, *,
                    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        task_status.started((host, int(bound[1])))
        await self._serve_listeners(listeners)

    async def _serve_listeners(self, listeners: list[trio.SocketListener]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep)
            await trio.serve_listeners(self._connection, listeners)
            nursery.cancel_scope.cancel()

    async def _sweep(self) -> None:
        """Close the connections past a deadline: a request not all read within
        REQUEST_TIMEOUT of its first byte, a new connection silent that long, a
        kept-alive one idle for KEEPALIVE_TIMEOUT (closed quietly, as a slow client
        gets no answer). One task for all: a request sets no timer of its own."""
        while True:
            await trio.sleep(SWEEP_EVERY)
            now = trio.current_time()
            for state in list(self._connections):
                if state.reading_since is not None:
                    late = now - state.reading_since >= REQUEST_TIMEOUT
                elif state.idle_since is not None:
                    late = now - state.idle_since >= (
                        REQUEST_TIMEOUT if state.first else KEEPALIVE_TIMEOUT)
                else:
                    late = False  # answering: its writes have their own deadline
                if late:
                    state.scope.cancel()

    async def unix_listener(self, path: Path) -> trio.SocketListener | None:
        """A listener on a Unix domain socket at ``path`` (mode 0600: who may connect is
        decided by file permissions, not a port anyone local can reach); None where
        the system has none or the path is too long for one."""
        if not hasattr(socket, "AF_UNIX"):
            return None
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with suppress(FileNotFoundError):
                path.unlink()  # left by a node killed with -9
            await sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            self.log.warning("unix-socket-failed", path=str(path), error=str(exc))
            return None
        return trio.SocketListener(sock)

    async def serve_listener(self, listener: trio.SocketListener,
                             path: Path | None = None) -> None:
        """Serve one listener (a Unix socket's ``path`` is removed when it stops)."""
        try:
            await self._serve_listeners([listener])
        finally:
            if path is not None:
                with suppress(OSError):
                    path.unlink()

    async def _connection(self, stream: trio.SocketStream) -> None:
        client = peer_address(stream)[0]
        if self.max_per_client is not None and sum(
                c.client == client for c in self._connections) >= self.max_per_client:
            await stream.aclose()  # one client address: its share of the connections
            return
        if self.open_connections >= MAX_CONNECTIONS and not self._evict_idle():
            await stream.aclose()
            return
        state = _ConnectionState(client=client)
        self._connections.add(state)
        try:
            with state.scope:
                await self._serve_connection(stream, state)
        finally:
            self._connections.discard(state)
            await stream.aclose()

    def _evict_idle(self) -> bool:
        """At the cap, make room for a new connection: close the oldest half-sent
        request, else the connection idle longest (spec/14 §7). Requests being
        answered (an event stream) are never closed for a newcomer."""
        half = [c for c in self._connections if c.reading_since is not None]
        if half:
            min(half, key=lambda c: c.reading_since or 0.0).scope.cancel()
            return True
        idle = [c for c in self._connections if c.idle_since is not None]
        if not idle:
            return False
        min(idle, key=lambda c: c.idle_since or 0.0).scope.cancel()
        return True

    async def _serve_connection(self, stream: trio.SocketStream,
                                state: _ConnectionState) -> None:
        try:
            client = peer_address(stream)
            buffer = bytearray()  # bytes read and not yet parsed (a pipelined request)
            while True:
                state.idle_since = trio.current_time()
                state.waited = False
                read = await self._read_request(stream, buffer, client, state=state)
                state.idle_since = state.reading_since = None
                state.first = False
                if read is None:
                    break
                if state.waited:
                    state.unwaited = 0
                else:
                    # It was all there (pipelined, or a quick client): the task did not
                    # let others run while it read. Its handler usually does (it waits
                    # for the store); one that never waits must not keep the loop.
                    state.unwaited += 1
                    if state.unwaited >= MAX_UNWAITED:
                        state.unwaited = 0
                        await trio.lowlevel.checkpoint()
                request, head = read
                early = request.early = _Early(self, stream, head)
                try:
                    response = await self.handler(request)
                except HttpError as error:
                    response = error_response(error)
                except Exception as exc:  # a bug costs this request, not the server
                    self.log.warning("http-error", path=request.path[:200],
                                     error=f"{type(exc).__name__}: {exc}")
                    response = error_response(HttpError(
                        500, "internal", "the node failed to answer; its log says why"))
                finally:
                    early.close()
                if early.sent:
                    if early.unsent:  # (what the socket did not take at once)
                        await _send(stream, early.unsent)
                    if not early.keep_alive:
                        break
                elif not await self._respond(stream, response, head):
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception as exc:  # one broken request must never stop the server
            self.log.warning("http-failed", error=f"{type(exc).__name__}: {exc}")

    async def _read_request(self, stream: trio.SocketStream, buffer: bytearray,
                            client: tuple[str, int], *,
                            state: _ConnectionState) -> tuple[Request, RequestHead] | None:
        """The next request, its body read; None when the connection should close
        (the client closed, or was refused and answered). A new connection must
        start its request at once, a kept-alive one may idle, and a request must
        be all read within REQUEST_TIMEOUT of its first byte: :meth:`_sweep`
        cancels the connection's scope past those deadlines."""
        try:
            while not buffer:
                if not await _receive(stream, buffer, state):
                    return None
            # One deadline for the whole request, from its first byte.
            state.idle_since = None
            state.reading_since = trio.current_time()
            found = head_end(buffer)
            while found is None:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise BadRequest(431, "the request line and headers are over "
                                     f"{MAX_HEADER_BYTES} bytes")
                if not await _receive(stream, buffer, state):
                    return None
                found = head_end(buffer)
            raw = bytes(buffer[:found[0]])
            del buffer[:found[1]]
            if raw == state.last_head and state.last_read is not None:
                # The same head as the last request's: read and checked the same way.
                head, last = state.last_read
                request: Request | None = last.copy()
            else:
                state.last_read = None
                head = parse_head(raw)
                if head.content_length is not None and head.content_length > MAX_BODY_BYTES:
                    raise BadRequest(413, f"the request body is over {MAX_BODY_BYTES} bytes")
                try:
                    request = _request(head, b"", client)
                except ValueError as exc:  # too many query fields, a bad escape: the
                    # body is not read (its sender may be a stranger), and the
                    # connection closes, since where the next request starts is unknown
                    raise BadRequest(400, f"malformed request target: {exc}") from None
                if self.check_head is not None:
                    # Who may ask is known from the head: a stranger's body is never read.
                    refused = self.check_head(request)
                    if refused is not None:
                        refused.headers.append(("Connection", "close"))
                        await self._respond(stream, refused, head)
                        return None
                    request.checked = True
                state.last_head, state.last_read = raw, (head, request.copy())
            if head.expect_continue and (head.chunked or head.content_length):
                await _send(stream, b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await _read_body(stream, buffer, head, state)
        except BadRequest as exc:
            if exc.status == 413:
                error = HttpError(413, "payload_too_large", str(exc))
            else:  # (400, 431, 501, 505: the status says which)
                error = HttpError(exc.status, "bad_request", str(exc))
            response = error_response(error)
            response.headers.append(("Connection", "close"))
            await self._respond(stream, response, None)
            return None
        assert request is not None  # (a bad target raised BadRequest above)
        request.body = body
        return request, head

    def framed(self, response: Response, request: RequestHead | None) -> tuple[bytes, bool]:
        """A response with a body, not streamed, as sent to ``request``, and whether
        the connection may carry another request after it."""
        assert response.stream is None
        keep_alive = _keeps_alive(response, request)
        length = b"Content-Length: %d\r\n\r\n" % len(response.body)
        key = (response.status, response.content_type, keep_alive)
        start = None if response.headers else self._heads.get(key)
        if start is None:  # (the head less its Content-Length, which ends it)
            headers = [("Content-Type", response.content_type), *self.extra_headers,
                       *response.headers]
            start = _head(response.status, headers, keep_alive)[:-2]
            if not response.headers and len(self._heads) < MAX_CACHED_HEADS:
                self._heads[key] = start
        if request is not None and request.method == "HEAD":
            return start + length, keep_alive
        return b"".join((start, length, response.body)), keep_alive

    async def _respond(self, stream: trio.SocketStream, response: Response,
                       request: RequestHead | None) -> bool:
        """Send ``response`` to ``request`` (None: one that could not be read); True
        if the connection may carry another request."""
        if response.status in (204, 304):
            # A 204 carries neither; a 304 no Content-Length (it would have to be
            # the 200's, and a cache merging a 0 into its stored answer empties it):
            # RFC 9110 §8.6, §15.4.5.
            keep_alive = _keeps_alive(response, request)
            await _send(stream, _head(response.status, [*self.extra_headers,
                                                        *response.headers], keep_alive))
            return keep_alive
        if response.stream is None:
            data, keep_alive = self.framed(response, request)
            await _send(stream, data)  # one write for the whole answer
            return keep_alive
        headers = [("Content-Type", response.content_type), *self.extra_headers,
                   *response.headers]
        keep_alive = _keeps_alive(response, request)
        declared = [value for name, value in response.headers
                    if name.lower() == "content-length"]
        length = int(declared[0]) if declared else None
        chunked = length is None and request is not None and request.version == (1, 1)
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif length is None:
            keep_alive = False  # (an HTTP/1.0 client: the body ends with the connection)
        await _send(stream, _head(response.status, headers, keep_alive))
        if request is None or request.method != "HEAD":  # (HEAD: a GET's headers alone)
            writer = BodyWriter(stream, _chunk if chunked else _counted(length))
            try:
                if response.endless:
                    await _until_hangup(stream, writer, response.stream)
                else:
                    await response.stream(writer)
                await writer.flush()  # (raises if the client hung up)
            finally:
                writer.close()
            if chunked:
                await _send(stream, b"0\r\n\r\n")
            elif length is not None and writer.written != length:
                raise RuntimeError(f"a streamed body of {writer.written} bytes was declared "
                                   f"as {length}")
        return keep_alive


async def _until_hangup(stream: trio.SocketStream, writer: BodyWriter,
                        body: Callable[[Send], Awaitable[None]]) -> None:
    """Run ``body`` until it ends or the client hangs up (the end of its side of the
    connection, or a reset): then the writer closes and ``body`` is cancelled."""
    with trio.CancelScope() as body_scope:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_close_at_hangup, stream, writer, body_scope)
                await body(writer)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # (the body's own error, in the nursery's group)
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


async def _close_at_hangup(stream: trio.SocketStream, writer: BodyWriter,
                           body_scope: trio.CancelScope) -> None:
    # What the client sends meanwhile is dropped: after an endless response the
    # connection carries no other request, so nothing of it could be answered.
    while True:
        try:
            if not await stream.socket.recv(READ_SIZE):
                break  # the end of the client's side
        except OSError:  # reset
            break
    writer.close()
    body_scope.cancel()


def _keeps_alive(response: Response, request: RequestHead | None) -> bool:
    """Whether the connection may carry another request after ``response``."""
    return request is not None and request.keep_alive and not any(
        name.lower() == "connection" and "close" in value.lower()
        for name, value in response.headers)


def _head(status: int, headers: list[tuple[str, str]], keep_alive: bool) -> bytes:
    """The response head, saying ``Connection: close`` unless ``keep_alive`` (or a
    Connection header is there already)."""
    if not keep_alive and not any(name.lower() == "connection" for name, _ in headers):
        headers.append(("Connection", "close"))
    return response_head(status, headers)


class _Early:
    """A request's answer sent before its handler returns (:attr:`Request.early`).

    The group commit sends the answers of all its publishes at once, once they
    are durable, from the thread that committed them (or from one task): each is
    framed while the commit runs, then written with one non-blocking write; what
    the socket does not take, the connection's task sends when it runs. Only while
    the handler runs: a connection whose handler left (cancelled, failed) is never
    written to (:meth:`close`, under the same lock as a send from another thread).
    """

    def __init__(self, server: HttpServer, stream: trio.SocketStream,
                 head: RequestHead) -> None:
        self._server = server
        self._stream = stream
        self._head = head
        self._lock = threading.Lock()
        self.live = True
        self.sent = False
        self.keep_alive = True
        self.unsent = b""

    def close(self) -> None:
        """The handler left: nothing is sent from now on (the socket may close)."""
        with self._lock:
            self.live = False

    def __call__(self, response: Response) -> Callable[[], None]:
        data, keep_alive = self._server.framed(response, self._head)

        def send() -> None:
            with self._lock:
                if not self.live or self.sent:
                    return
                self.sent, self.keep_alive = True, keep_alive
                try:
                    written = os.write(self._stream.socket.fileno(), data)
                except OSError:  # (full, reset: the connection's task sends it or finds out)
                    written = 0
                self.unsent = data[written:]

        return send


#: Bytes a streamed response may hold that its client has not taken yet
#: (:meth:`BodyWriter.offer`): beyond them, a writer that must not wait (an event
#: fan-out) stops offering and the stream catches up from where it stands.
#: 256 KiB: hundreds of events; at the 512-connection cap, 128 MiB at worst.
STREAM_BUFFER_BYTES = 256 * 1024


class BodyWriter:
    """How a streamed response writes its body, framing each write (chunked or not).

    Awaited like a :data:`Send` (it waits up to SEND_TIMEOUT for the client to
    take the bytes). A writer that must not wait, because it serves many streams
    from one task (the SSE fan-out), uses :meth:`offer` instead: what the socket
    takes now is written at once, the rest waits in a buffer that the stream's
    own task sends with :meth:`flush`, and later offers join that buffer.
    """

    def __init__(self, stream: trio.SocketStream, frame: Callable[[bytes], list[bytes]]
                 ) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno()
        self._frame = frame
        #: Body bytes taken so far (before framing).
        self.written = 0
        self._pending = bytearray()
        self._sending = False
        self._closed = False
        #: Set when the stream's task has something to do: bytes :meth:`offer` left
        #: for :meth:`flush`, or the writer closed (a fan-out may set it too). A new
        #: event after each flush.
        self.wakeup = trio.Event()

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    @property
    def closed(self) -> bool:
        """The response ended, or a write found the connection broken."""
        return self._closed

    def close(self) -> None:
        """No more writes (the server calls it before it closes the socket)."""
        self._closed = True
        self.wakeup.set()

    async def __call__(self, data: bytes) -> None:
        if not data:
            return  # (an empty chunk would end a chunked body)
        await self.flush()
        self._sending = True
        try:
            framed = b"".join(self._frame(data))
            self.written += len(data)
            await _send(self._stream, framed)
        finally:
            self._sending = False
        if self._pending:  # offered meanwhile
            await self.flush()

    def offer(self, data: bytes) -> None:
        """Write ``data`` without waiting: what the socket takes now, the rest after
        what is pending (see :attr:`wakeup`). Nothing once closed."""
        if self._closed or not data:
            return
        parts = self._frame(data)
        self.written += len(data)
        if not self._pending and not self._sending:
            try:
                written = os.writev(self._fd, parts)
            except BlockingIOError:
                written = 0
            except OSError:  # reset, a broken pipe: the stream's task will find out
                self.close()
                return
            total = sum(map(len, parts))
            if written == total:
                return
            joined = b"".join(parts)
            self._pending += memoryview(joined)[written:]
        else:
            for part in parts:
                self._pending += part
        self.wakeup.set()

    async def flush(self) -> None:
        """Send what :meth:`offer` left (waits up to SEND_TIMEOUT)."""
        if self.wakeup.is_set():
            self.wakeup = trio.Event()
        if self._closed:
            raise trio.BrokenResourceError("the stream was closed")
        self._sending = True
        try:
            while self._pending:
                data = bytes(self._pending)
                self._pending.clear()
                await _send(self._stream, data)
        finally:
            self._sending = False


def _chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body (RFC 9112 §7.1), ``data`` not copied."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


def _counted(length: int | None) -> Callable[[bytes], list[bytes]]:
    """A body of a declared length (never more), or one the connection's end ends."""
    sent = 0

    def frame(data: bytes) -> list[bytes]:
        nonlocal sent
        sent += len(data)
        if length is not None and sent > length:
            raise RuntimeError(f"a streamed body over its declared {length} bytes")
        return [data]

    return frame


async def _receive(stream: trio.SocketStream, buffer: bytearray,
                   state: _ConnectionState | None = None) -> bool:
    """Read what came into ``buffer``; False at the end of the stream. Straight from
    the socket (what ``receive_some`` does less its layers: this is most of a small
    request's trips through the event loop): it waits only when nothing is there."""
    fd = stream.socket.fileno()
    while True:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(fd)  # (cancelled by the connection's scope)
            if state is not None:
                state.waited = True
            continue
        except OSError as exc:  # reset
            raise trio.BrokenResourceError(str(exc)) from None
        buffer += data
        return bool(data)


async def _read_body(stream: trio.SocketStream, buffer: bytearray, head: RequestHead,
                     state: _ConnectionState | None = None) -> bytes:
    """The body of ``head``'s request (MAX_BODY_BYTES at most), from ``buffer`` then the
    stream; what follows it stays in ``buffer``."""
    if head.chunked:
        decoder = ChunkedBody()
        body = bytearray()
        while True:
            body += decoder.take(buffer)
            if len(body) > MAX_BODY_BYTES:
                raise BadRequest(413, f"the request body is over {MAX_BODY_BYTES} bytes")
            if decoder.done:
                return bytes(body)
            if not await _receive(stream, buffer, state):
                raise trio.BrokenResourceError("the client closed mid-request")
    length = head.content_length or 0
    while len(buffer) < length:
        if not await _receive(stream, buffer, state):
            raise trio.BrokenResourceError("the client closed mid-request")
    taken = bytes(buffer[:length])
    del buffer[:length]
    return taken


async def _send(stream: trio.SocketStream, data: bytes) -> None:
    """Send ``data``, waiting up to SEND_TIMEOUT for the client to take it. What the
    socket takes at once (an answer, usually) goes without a trip through the
    event loop."""
    try:
        written = os.write(stream.socket.fileno(), data)
    except BlockingIOError:
        written = 0
    except OSError as exc:  # reset, a broken pipe
        raise trio.BrokenResourceError(str(exc)) from None
    if written < len(data):
        with trio.fail_after(SEND_TIMEOUT):
            await stream.send_all(memoryview(data)[written:])


def _request(head: RequestHead, body: bytes, client: tuple[str, int]) -> Request:
    headers: dict[str, str] = {}
    for key, text in head.headers:
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    target = head.target
    if _PLAIN_PATH.fullmatch(target):  # (what urlsplit and unquote would leave as it is)
        path, query = target, {}
    else:
        split = urlsplit(target)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True, max_num_fields=64)
    return Request(method=head.method, target=target, path=path, query=query,
                   headers=headers, body=body, client=client)


#: A target that is a plain path: no query, fragment or escape, not "//host...".
_PLAIN_PATH = re.compile(r"/(?!/)[^?#%]*")


__all__ = ["JSON", "BodyWriter", "HttpError", "HttpServer", "Request", "Response", "error_response",
           "json_response"]
