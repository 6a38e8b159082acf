"""A connection's receive buffer, reused from read to read.

``SocketStream.receive_some(n)`` makes a fresh ``n``-byte buffer for every read:
at 4 MiB, memory the kernel maps and zeroes page by page as the bytes land, then
unmaps. During a blob download that was about 180 page faults per MB received.
A :class:`ReadBuffer` reads into one buffer instead (``recv_into``), which grows
while reads fill it (a bulk transfer) and shrinks back once reads stay small
(an idle or chatty connection keeps 64 KiB, not 4 MiB).

The bytes a read returns are a view into the buffer: valid until the next read.
The node's reader hands them to its session and waits for it to be done with
them before it reads again; the channel copies what it keeps.
"""

from __future__ import annotations

import trio

#: A buffer starts at 64 KiB (an idle connection holds no more)...
START_SIZE = 64 * 1024
#: ...and shrinks back to it after this many reads in a row that fit in START_SIZE.
SHRINK_AFTER = 64


class ReadBuffer:
    """Reads from one socket into a buffer of START_SIZE up to ``limit`` bytes."""

    __slots__ = ("_buffer", "_limit", "_small")

    def __init__(self, limit: int) -> None:
        if limit < START_SIZE:
            raise ValueError(f"a read buffer holds at least {START_SIZE} bytes")
        self._limit = limit
        self._buffer = bytearray(START_SIZE)
        self._small = 0

    @property
    def size(self) -> int:
        return len(self._buffer)

    async def read(self, stream: trio.SocketStream) -> memoryview:
        """The next bytes from ``stream`` (empty: the peer closed), as a view valid until
        the next read. Errors as ``receive_some``'s: BrokenResourceError,
        ClosedResourceError."""
        buffer = self._buffer
        try:
            count = await stream.socket.recv_into(buffer)
        except OSError as exc:
            raise trio.BrokenResourceError(f"the connection broke: {exc}") from exc
        self._fit(count)
        return memoryview(buffer)[:count]

    def _fit(self, count: int) -> None:
        """Grow while reads fill the buffer, shrink after SHRINK_AFTER small ones (the
        new buffer serves the next read; the view returned is of the old one)."""
        size = len(self._buffer)
        if count == size and size < self._limit:
            self._buffer = bytearray(min(self._limit, 2 * size))
            self._small = 0
        elif count <= START_SIZE < size:
            self._small += 1
            if self._small >= SHRINK_AFTER:
                self._buffer = bytearray(START_SIZE)
                self._small = 0
        else:
            self._small = 0
