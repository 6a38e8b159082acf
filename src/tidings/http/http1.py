"""HTTP/1.1 framing for the node's small server, sans-IO: request heads and chunked
bodies in, response heads out (RFC 9112).

Strict and bounded, and only what a local API and a feed gateway need: no
obsolete line folding, one Host, one Content-Length (or equal copies), chunked
as the only transfer coding. Every bound is beside its constant. The server
(``server.py``) does the I/O, the deadlines and the connection limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

#: Request line and headers, in bytes, at most (431 beyond: a client needs far less).
MAX_HEADER_BYTES = 16 * 1024
#: Header fields in one request at most: a browser sends about 20; each costs a
#: dict entry and a line to check.
MAX_HEADERS = 100
#: A chunk-size line (hex size, extensions) at most: 16 hex digits and room for a
#: short extension, which is ignored.
MAX_CHUNK_LINE = 1024
#: Hex digits of a chunk size at most: 2^60 is past any body bound.
MAX_CHUNK_SIZE_DIGITS = 15
#: Digits of a Content-Length at most (the server bounds the body much lower).
MAX_LENGTH_DIGITS = 19

#: The end of a head: a blank line (LF alone accepted as a line end, RFC 9112 §2.2).
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([\x21-\x7e\x80-\xff]"
                    rb"(?:[\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?)?[ \t]*")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,%d})(?:[ \t]*;[^\r\n]*)?" % MAX_CHUNK_SIZE_DIGITS)
_LINE_BREAK = re.compile(r"[\r\n\x00]")


class BadRequest(Exception):
    """A request the server refuses: ``status`` (400, 413, 431, 501, 505) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RequestHead:
    method: str
    target: str
    #: (major, minor): (1, 0) or (1, 1).
    version: tuple[int, int]
    #: Lower-case names, in order; values as sent, less surrounding blanks.
    headers: list[tuple[str, str]]
    #: The body's length if declared; None with ``chunked`` or no body.
    content_length: int | None
    chunked: bool
    #: Whether the client lets the connection carry another request after this one.
    keep_alive: bool
    #: The client waits for a 100 (Continue) before it sends the body.
    expect_continue: bool


def head_end(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """Where the head in ``buffer`` ends: (end of its last line, start of the body);
    None if the blank line has not come yet."""
    found = _HEAD_END.search(buffer)
    return None if found is None else (found.start(), found.end())


def parse_head(data: bytes) -> RequestHead:
    """The request line and header fields in ``data`` (without the blank line)."""
    if len(data) > MAX_HEADER_BYTES:
        raise BadRequest(431, f"the request line and headers are over {MAX_HEADER_BYTES} "
                         "bytes")
    lines = data.split(b"\n")
    line = lines[0].removesuffix(b"\r")
    found = _REQUEST_LINE.fullmatch(line)
    if found is None:
        raise BadRequest(400, f"malformed request line {line[:100]!r}: send "
                         "'METHOD TARGET HTTP/1.1'")
    version = (int(found[3]), int(found[4]))
    if version not in ((1, 0), (1, 1)):
        raise BadRequest(505, f"HTTP/{version[0]}.{version[1]} is not served: use HTTP/1.1")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"over {MAX_HEADERS} header fields")
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        raw = raw.removesuffix(b"\r")
        field = _FIELD.fullmatch(raw)
        if field is None:
            what = "folded lines are not accepted" if raw[:1] in (b" ", b"\t") else \
                "each header is 'Name: value'"
            raise BadRequest(400, f"malformed header line {raw[:100]!r}: {what}")
        headers.append((field[1].decode("ascii").lower(), (field[2] or b"").decode("latin-1")))
    return _framed(found[1].decode("ascii"), found[2].decode("ascii"), version, headers)


def _framed(method: str, target: str, version: tuple[int, int],
            headers: list[tuple[str, str]]) -> RequestHead:
    hosts = 0
    lengths: set[str] = set()
    codings: list[str] = []
    connection: set[str] = set()
    expect: list[str] = []
    for name, value in headers:  # (one pass: the fields that frame the request)
        if name == "host":
            hosts += 1
        elif name == "content-length":
            lengths.add(value)
        elif name == "transfer-encoding":
            codings.append(value)
        elif name == "connection":
            connection.update(token.strip().lower() for token in value.split(","))
        elif name == "expect":
            expect.append(value.strip().lower())
    if hosts > 1:
        raise BadRequest(400, "more than one Host header")
    if not hosts and version == (1, 1):
        raise BadRequest(400, "an HTTP/1.1 request needs a Host header")
    length = None
    if lengths:
        if len(lengths) > 1:
            raise BadRequest(400, "Content-Length headers that disagree")
        text = lengths.pop()
        if not (text.isascii() and text.isdigit() and len(text) <= MAX_LENGTH_DIGITS):
            raise BadRequest(400, f"Content-Length {text[:40]!r} is not a number of bytes")
        length = int(text)
    chunked = False
    if codings:
        if length is not None:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding: send one")
        if version == (1, 0):
            raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
        if ", ".join(codings).strip().lower() != "chunked":
            raise BadRequest(501, "the only transfer coding served is chunked")
        chunked = True
    return RequestHead(
        method=method, target=target, version=version, headers=headers,
        content_length=length, chunked=chunked,
        # (HTTP/1.0 connections close after one answer, whatever they ask.)
        keep_alive=version == (1, 1) and "close" not in connection,
        expect_continue=version == (1, 1) and expect == ["100-continue"],
    )


class ChunkedBody:
    """Decodes a chunked request body (RFC 9112 §7.1) from a buffer, piece by piece.

    :meth:`take` consumes what it can from the front of the buffer; the server
    adds bytes and calls it again until :attr:`done`. Chunk extensions and
    trailer fields are read and ignored (bounded by MAX_CHUNK_LINE and
    MAX_HEADER_BYTES).
    """

    def __init__(self) -> None:
        self._left = 0  # bytes of the current chunk's data still to come
        self._in_trailer = False
        self._trailer_bytes = 0
        self._crlf_due = False
        self.done = False

    def take(self, buffer: bytearray) -> bytes:
        """The body bytes at the front of ``buffer`` (removed from it)."""
        out = bytearray()
        while not self.done:
            if self._left:
                piece = buffer[:self._left]
                if not piece:
                    break
                out += piece
                del buffer[:len(piece)]
                self._left -= len(piece)
                if not self._left:
                    self._crlf_due = True
                continue
            line = self._line(buffer)
            if line is None:
                break
            if self._crlf_due:  # the line break after a chunk's data
                if line:
                    raise BadRequest(400, "chunk data longer than its size")
                self._crlf_due = False
            elif self._in_trailer:
                self._trailer_bytes += len(line) + 2
                if self._trailer_bytes > MAX_HEADER_BYTES:
                    raise BadRequest(431, f"trailer fields over {MAX_HEADER_BYTES} bytes")
                if not line:
                    self.done = True
            else:
                found = _CHUNK_LINE.fullmatch(line)
                if found is None:
                    raise BadRequest(400, f"malformed chunk size line {line[:40]!r}")
                self._left = int(found[1], 16)
                self._in_trailer = self._left == 0
        return bytes(out)

    def _line(self, buffer: bytearray) -> bytes | None:
        end = buffer.find(b"\n", 0, MAX_CHUNK_LINE + 1)
        if end < 0:
            if len(buffer) > MAX_CHUNK_LINE:
                raise BadRequest(400, f"a chunk line over {MAX_CHUNK_LINE} bytes")
            return None
        line = bytes(buffer[:end]).removesuffix(b"\r")
        del buffer[:end + 1]
        return line


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """An HTTP/1.1 status line and header fields, and the blank line after them."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in headers:
        if _LINE_BREAK.search(name) or _LINE_BREAK.search(value):
            raise ValueError(f"a line break in the response header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


__all__ = ["MAX_HEADER_BYTES", "BadRequest", "ChunkedBody", "RequestHead", "head_end",
           "parse_head", "response_head"]
