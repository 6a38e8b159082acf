"""The server's HTTP/1.1 framing (tidings.http.http1): strict, bounded, typed refusals.

Pure first: bytes in, heads and bodies out; then the server on a real loopback
socket (pipelining, 100-continue, HTTP/1.0, HEAD). Deadlines, the connection
cap and the API's answers are in test_http_api.py, test_openapi.py and
test_http_sse.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import examples
from tidings.http.http1 import (
    MAX_CHUNK_LINE,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    BadRequest,
    ChunkedBody,
    head_end,
    parse_head,
    response_head,
)
from tidings.http.server import HttpServer, Request, Response, json_response


def refused(data: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse_head(data)
    return caught.value


def test_a_request_head_is_read_with_lower_case_names_and_its_framing() -> None:
    head = parse_head(b"POST /v1/publish?x=1 HTTP/1.1\r\nHost: 127.0.0.1:7655\r\n"
                      b"Content-Type:  application/json \r\nContent-Length: 12\r\n"
                      b"X-Empty:")
    assert (head.method, head.target, head.version) == ("POST", "/v1/publish?x=1", (1, 1))
    assert head.headers == [("host", "127.0.0.1:7655"), ("content-type", "application/json"),
                            ("content-length", "12"), ("x-empty", "")]
    assert head.content_length == 12 and not head.chunked
    assert head.keep_alive and not head.expect_continue


def test_connection_close_http_1_0_and_expect_continue() -> None:
    assert not parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close"
                          ).keep_alive
    # HTTP/1.0 needs no Host, and its connection closes after one answer.
    old = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive")
    assert old.version == (1, 0) and not old.keep_alive
    assert parse_head(b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                      b"Content-Length: 3").expect_continue
    # LF alone ends a line too (RFC 9112 §2.2).
    assert parse_head(b"GET / HTTP/1.1\nHost: a").headers == [("host", "a")]


@pytest.mark.parametrize(("data", "status"), [
    (b"GARBAGE", 400),
    (b"GET / HTTP/1.1 extra\r\nHost: a", 400),
    (b"GET  / HTTP/1.1\r\nHost: a", 400),
    (b"G\xc3T / HTTP/1.1\r\nHost: a", 400),
    (b"GET /\x7f HTTP/1.1\r\nHost: a", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), 400),
    (b"GET / HTTP/2.0\r\nHost: a", 505),
    (b"GET / HTTP/1.1\r\nno colon here", 400),
    (b"GET / HTTP/1.1\r\nHost : a", 400),  # blank before the colon (RFC 9112 §5.1)
    (b"GET / HTTP/1.1\r\nHost: a\r\n folded", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400),
    (b"GET / HTTP/1.1\r\nX: y", 400),  # no Host
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 20, 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip", 501),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked", 501),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
])
def test_malformed_heads_are_refused_with_a_status_and_what_was_wrong(
        data: bytes, status: int) -> None:
    error = refused(data)
    assert error.status == status, (data, error)
    assert str(error)


def test_heads_over_their_bounds_are_refused_with_431() -> None:
    assert refused(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * MAX_HEADER_BYTES).status == 431
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS))
    assert refused(b"GET / HTTP/1.1\r\nHost: a\r\n" + many).status == 431
    within = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS - 1))
    assert parse_head(b"GET / HTTP/1.1\r\n" + within + b"Host: a").headers[-1] == \
        ("host", "a")  # (MAX_HEADERS fields in all: just within)


def test_equal_content_lengths_are_one() -> None:
    head = parse_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5")
    assert head.content_length == 5


def test_the_head_ends_at_the_first_blank_line() -> None:
    assert head_end(b"GET / HTTP/1.1\r\nHost: a\r\n") is None
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"
    assert head_end(data) == (len(data) - 8, len(data) - 4)
    assert head_end(b"GET / HTTP/1.1\nHost: a\n\nbody") == (22, 24)


def decode(data: bytes, step: int) -> bytes:
    """A chunked body fed ``step`` bytes at a time, as a socket may deliver it."""
    decoder, buffer, out = ChunkedBody(), bytearray(), bytearray()
    for start in range(0, len(data), step):
        buffer += data[start:start + step]
        out += decoder.take(buffer)
    assert decoder.done
    return bytes(out)


def test_chunked_bodies_decode_whatever_the_reads_and_leave_what_follows() -> None:
    data = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n"
    for step in (1, 2, 3, 7, len(data)):
        assert decode(data, step) == b"hello world!"
    decoder, buffer = ChunkedBody(), bytearray(b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1")
    assert decoder.take(buffer) == b"hi" and decoder.done
    assert buffer == b"GET / HTTP/1.1"  # the next request, untouched


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.integers(1, 50))
@settings(max_examples=examples(100))
def test_any_chunking_decodes_to_the_body(pieces: list[bytes], step: int) -> None:
    data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    assert decode(data, step) == b"".join(pieces)


@pytest.mark.parametrize("data", [
    b"x\r\n", b"5\r\nhelloX\r\n", b"-1\r\n", b"1" * 16 + b"\r\n",
    b"0\r\n" + b"X: " + b"y" * MAX_HEADER_BYTES + b"\r\n\r\n",
    b"1;" + b"e" * MAX_CHUNK_LINE,
])
def test_malformed_or_unbounded_chunks_are_refused(data: bytes) -> None:
    with pytest.raises(BadRequest):
        ChunkedBody().take(bytearray(data))


def test_a_response_head_has_the_reason_and_refuses_line_breaks() -> None:
    assert response_head(201, [("Content-Length", "2")]) == \
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n"
    assert response_head(599, []).startswith(b"HTTP/1.1 599 \r\n")
    with pytest.raises(ValueError):
        response_head(200, [("X", "a\r\nSet-Cookie: b")])


# -- the server on a socket ------------------------------------------------------------


async def echo(request: Request) -> Response:
    return json_response({"method": request.method, "path": request.path,
                          "body": request.body.decode()})


async def exchange(data: bytes, *, until: int,
                   handler: Callable[[Request], Awaitable[Response]] = echo,
                   check_head: Callable[[Request], Response | None] | None = None) -> bytes:
    """Send ``data`` on a fresh connection; read until ``until`` answers came whole
    or the server closed."""
    async with trio.open_nursery() as nursery:
        server = HttpServer(handler, check_head=check_head)
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        with trio.fail_after(60):  # a hang guard
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(data)
            received = b""
            while received.count(b"HTTP/1.1 2") < until or not received.endswith(b"\n"):
                more = await stream.receive_some(65536)
                if not more:
                    break
                received += more
            await stream.aclose()
        nursery.cancel_scope.cancel()
    return received


def bodies(received: bytes) -> list[dict[str, str]]:
    """The JSON bodies of the answers in ``received`` (echo's bodies are one line)."""
    return [json.loads(body) for body in re.findall(rb"\r\n\r\n(\{[^\n]*\})\n", received)]


async def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    received = await exchange(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\ntwo\r\n0\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n", until=3)
    assert [b["path"] for b in bodies(received)] == ["/a", "/b", "/c"]
    assert [b["body"] for b in bodies(received)] == ["one", "two", ""]
    assert b"connection: close" not in received.lower()


async def test_a_client_that_expects_100_continue_gets_it_before_the_answer() -> None:
    received = await exchange(b"PUT /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                              b"Content-Length: 2\r\n\r\nhi", until=1)
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert bodies(received.split(b"\r\n\r\n", 1)[1])[0]["body"] == "hi"


async def test_http_1_0_is_answered_once_and_closed_and_head_gets_no_body() -> None:
    received = await exchange(b"GET /old HTTP/1.0\r\n\r\nGET /again HTTP/1.0\r\n\r\n",
                              until=2)
    assert received.count(b"HTTP/1.1 200") == 1  # then the server closed
    assert b"\r\nConnection: close\r\n" in received
    received = await exchange(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n", until=2)
    head, rest = received.split(b"\r\n\r\n", 1)
    assert b"Content-Length: " in head and rest.startswith(b"HTTP/1.1 200 OK")


async def test_a_malformed_request_is_answered_400_and_closed() -> None:
    received = await exchange(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"
                              b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n", until=2)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"/next" not in received and b"Connection: close" in received


async def test_a_malformed_target_is_answered_400_without_reading_the_body() -> None:
    # The body is declared and never sent: the answer comes from the head alone.
    received = await exchange(b"POST //[ HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 2000000\r\n\r\n", until=1)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"malformed request target" in received and b"Connection: close" in received


async def test_a_304_carries_no_content_length() -> None:
    async def not_modified(request: Request) -> Response:
        return Response(304, b"", "audio/mpeg", headers=[("ETag", '"x"')])

    received = await exchange(b"GET /blob HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                              until=1,
                              handler=not_modified)
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 304") and b'etag: "x"' in head
    assert b"content-length" not in head and b"transfer-encoding" not in head


async def test_a_repeated_head_is_read_and_checked_once_and_any_other_again() -> None:
    """A keep-alive client sends the same head again and again: the server reads and
    checks it once (the same bytes read the same way), and reads and checks any head
    that differs by a byte, which the check may refuse."""
    checked: list[str] = []
    seen: list[bool] = []

    def check(request: Request) -> Response | None:
        checked.append(request.headers.get("authorization", ""))
        if request.headers.get("authorization") != "ok":
            return Response(401, b"no\n")
        return None

    async def handler(request: Request) -> Response:
        seen.append(request.checked)
        request.headers["mine"] = "changed"  # (a handler's change is its request's own)
        return await echo(request)

    same = b"POST /p HTTP/1.1\r\nHost: x\r\nAuthorization: ok\r\nContent-Length: 3\r\n\r\n"
    received = await exchange(  # (read until the server closes, after the refusal)
        same + b"one" + same + b"two" + same + b"abc" + same.replace(b"3", b"4") + b"four"
        + same.replace(b"ok", b"no") + b"bad", until=6, handler=handler, check_head=check)
    assert [b["body"] for b in bodies(received)] == ["one", "two", "abc", "four"]
    assert received.count(b"HTTP/1.1 200 OK") == 4
    assert b"HTTP/1.1 401 Unauthorized" in received and b"Connection: close" in received
    assert checked == ["ok", "ok", "no"] and seen == [True] * 4


async def test_many_pipelined_requests_are_answered_in_order_beside_others() -> None:
    """A client whose requests are all there when read (pipelined) still lets the
    server's other connections be answered meanwhile, and gets each answer in order."""
    count = 200
    async with trio.open_nursery() as nursery:
        server = HttpServer(echo)
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        with trio.fail_after(60):  # a hang guard
            busy = await trio.open_tcp_stream("127.0.0.1", port)
            other = await trio.open_tcp_stream("127.0.0.1", port)
            await busy.send_all(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
                                         for i in range(count)))
            await other.send_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}\n"):
                answer += await other.receive_some(65536)
            received = b""
            while received.count(b"HTTP/1.1 200") < count or not received.endswith(b"\n"):
                received += await busy.receive_some(65536)
            await busy.aclose()
            await other.aclose()
        nursery.cancel_scope.cancel()
    assert bodies(answer)[0]["path"] == "/other"
    assert [b["path"] for b in bodies(received)] == [f"/{i}" for i in range(count)]
