"""A small HTTP/1.1 server: h11's sans-IO parser on trio sockets.

Why h11: it is the HTTP/1.1 state machine and nothing else, like the rest of
tidings' core (bytes in, events out), so the server stays a thin trio shell we
can bound precisely: header size, body size, read and send deadlines, open
connections. Responses either carry a body or stream it (Server-Sent Events);
h11 picks the framing (Content-Length, chunked, or close).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

from tidings.node.log import Logger
from tidings.node.options import peer_address

#: Request line and headers, in bytes, at most.
MAX_HEADER_BYTES = 16 * 1024
#: A request body at most (a 1 MiB payload in base64, with room to spare).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: A client must send a whole request within this many seconds once it starts
#: (and a new connection its first byte)...
REQUEST_TIMEOUT = 10.0
#: ...and may keep an idle connection open this long between requests.
KEEPALIVE_TIMEOUT = 60.0
#: A client that reads nothing for this long is cut off (SSE clients resume).
SEND_TIMEOUT = 30.0
MAX_CONNECTIONS = 512
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


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False).encode() + b"\n")


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

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def serve(self, host: str, port: int, *,
                    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        task_status.started((host, int(bound[1])))
        await trio.serve_listeners(self._connection, listeners)

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
            await trio.serve_listeners(self._connection, [listener])
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
            connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
            first = True
            while True:
                state.idle_since = trio.current_time()
                request = await self._read_request(stream, connection, client, first=first,
                                                   state=state)
                state.idle_since = state.reading_since = None
                first = False
                if request is None:
                    break
                try:
                    response = await self.handler(request)
                except HttpError as error:
                    response = error_response(error)
                except Exception as exc:  # a bug costs this request, not the server
                    self.log.warning("http-error", path=request.path[:200],
                                     error=f"{type(exc).__name__}: {exc}")
                    response = error_response(HttpError(
                        500, "internal", "the node failed to answer; its log says why"))
                await self._respond(stream, connection, response, head=request.method == "HEAD")
                if connection.our_state is h11.MUST_CLOSE or \
                        connection.their_state is h11.MUST_CLOSE:
                    break
                try:
                    connection.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception as exc:  # one broken request must never stop the server
            self.log.warning("http-failed", error=f"{type(exc).__name__}: {exc}")

    async def _read_request(self, stream: trio.SocketStream, connection: h11.Connection,
                            client: tuple[str, int], *, first: bool,
                            state: _ConnectionState) -> Request | None:
        head: h11.Request | None = None
        #: The head parsed once, for the check and then the handler (None: a bad target).
        parsed: Request | None = None
        body = bytearray()
        # A new connection must start its request at once; a kept-alive one may idle.
        deadline = trio.current_time() + (REQUEST_TIMEOUT if first else KEEPALIVE_TIMEOUT)
        started = False
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                problem = str(exc).replace("bytearray(b", "(")
                await self._refuse(stream, connection, HttpError(
                    exc.error_status_hint, "bad_request", f"malformed HTTP request: {problem}"))
                return None
            if event is h11.NEED_DATA:
                if connection.they_are_waiting_for_100_continue:
                    await _send(stream, connection.send(h11.InformationalResponse(
                        status_code=100, headers=[])))
                with trio.move_on_at(deadline):
                    data = await stream.receive_some(READ_SIZE)
                    connection.receive_data(data)
                    if not started and data:
                        # One deadline for the whole request, from its first byte.
                        started = True
                        state.idle_since = None
                        state.reading_since = trio.current_time()
                        deadline = trio.current_time() + REQUEST_TIMEOUT
                    continue
                return None  # idle or too slow: close quietly
            if isinstance(event, h11.Request):
                head = event
                size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                if size > MAX_HEADER_BYTES:
                    await self._refuse(stream, connection, HttpError(
                        431, "bad_request",
                        f"the request line and headers are over {MAX_HEADER_BYTES} bytes"))
                    return None
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > MAX_BODY_BYTES:
                    await self._refuse(stream, connection, HttpError(
                        413, "payload_too_large",
                        f"the request body is over {MAX_BODY_BYTES} bytes"))
                    return None
                try:
                    parsed = _request(event, b"", client)
                except ValueError:
                    parsed = None  # a bad target: answered once the request is whole
                if self.check_head is not None and parsed is not None:
                    # Who may ask is known from the head: a stranger's body is never read.
                    refused = self.check_head(parsed)
                    if refused is not None:
                        refused.headers.append(("Connection", "close"))
                        if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                            await self._respond(stream, connection, refused)
                        return None
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    await self._refuse(stream, connection, HttpError(
                        413, "payload_too_large",
                        f"the request body is over {MAX_BODY_BYTES} bytes"))
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                if parsed is not None:
                    parsed.body = bytes(body)
                    return parsed
                try:
                    return _request(head, bytes(body), client)
                except ValueError as exc:  # too many query fields, a bad escape
                    await self._refuse(stream, connection, HttpError(
                        400, "bad_request", f"malformed request target: {exc}"))
                    return None
            elif isinstance(event, h11.ConnectionClosed | h11.PAUSED):
                return None

    async def _refuse(self, stream: trio.SocketStream, connection: h11.Connection,
                      error: HttpError) -> None:
        if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            response = error_response(error)
            response.headers.append(("Connection", "close"))
            await self._respond(stream, connection, response)

    async def _respond(self, stream: trio.SocketStream, connection: h11.Connection,
                       response: Response, *, head: bool = False) -> None:
        headers = [*self.extra_headers, *response.headers]
        if response.status != 204:  # (a 204 carries neither: RFC 9110 §8.6)
            headers.insert(0, ("Content-Type", response.content_type))
            if response.stream is None:
                headers.append(("Content-Length", str(len(response.body))))
        data = connection.send(h11.Response(status_code=response.status, headers=headers))
        if head:
            pass  # the headers of the answer a GET would get, and no body
        elif response.stream is None:
            # One write for the whole answer: head, body and end.
            if response.body:
                data += connection.send(h11.Data(data=response.body))
        else:
            await _send(stream, data)
            # h11 chose the framing from the request (chunked for HTTP/1.1, else the
            # body ends when the connection closes); the writer frames each write so.
            chunked = b"\r\ntransfer-encoding: chunked\r\n" in data.lower()
            writer = BodyWriter(stream, _chunk if chunked else _h11_framing(connection))
            try:
                await response.stream(writer)
                await writer.flush()
            finally:
                writer.close()
            data = b""  # (and h11 ends the body: the last chunk if chunked)
        data += connection.send(h11.EndOfMessage())
        if data:
            await _send(stream, data)


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
            await _send(self._stream, b"".join(self._frame(data)))
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


def _h11_framing(connection: h11.Connection) -> Callable[[bytes], list[bytes]]:
    """Bodies of a declared length (h11 checks it) or that end with the connection."""
    return lambda data: [connection.send(h11.Data(data=data)) or b""]


async def _send(stream: trio.SocketStream, data: bytes) -> None:
    with trio.fail_after(SEND_TIMEOUT):
        await stream.send_all(data)


def _request(head: h11.Request, body: bytes, client: tuple[str, int]) -> Request:
    target = head.target.decode("latin-1")
    split = urlsplit(target)
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(
        method=head.method.decode("ascii"), target=target, path=unquote(split.path),
        query=parse_qs(split.query, keep_blank_values=True, max_num_fields=64),
        headers=headers, body=body, client=client,
    )


__all__ = ["BodyWriter", "HttpError", "HttpServer", "Request", "Response", "error_response",
           "json_response"]
