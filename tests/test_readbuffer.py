"""The node's reused receive buffer (node/readbuffer.py), over real loopback TCP."""

from __future__ import annotations

import os

import pytest
import trio

from tidings.node.readbuffer import SHRINK_AFTER, START_SIZE, ReadBuffer


async def pair() -> tuple[trio.SocketStream, trio.SocketStream, trio.SocketListener]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    assert isinstance(listener, trio.SocketListener)
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    assert isinstance(server, trio.SocketStream)
    return client, server, listener


async def read_exactly(reads: ReadBuffer, stream: trio.SocketStream, count: int) -> bytes:
    got = bytearray()
    while len(got) < count:
        view = await reads.read(stream)
        assert view, "closed early"
        got += view  # (copied: the next read reuses the buffer)
    return bytes(got)


async def test_bytes_arrive_intact_and_the_buffer_grows_to_its_limit_while_reads_fill_it(
) -> None:
    client, server, listener = await pair()
    limit = 16 * START_SIZE
    reads = ReadBuffer(limit)
    data = os.urandom(8 * limit)
    async with client, server, listener:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, data)
            assert await read_exactly(reads, server, len(data)) == data
        # Reads that fill the buffer double it, never past the limit (how far it grew
        # depends on how the kernel cut the stream: at least one read filled it).
        assert START_SIZE < reads.size <= limit


async def test_it_shrinks_back_after_small_reads_and_a_closed_peer_reads_empty() -> None:
    client, server, listener = await pair()
    reads = ReadBuffer(4 * START_SIZE)
    async with client, server, listener:
        reads._buffer = bytearray(4 * START_SIZE)  # as after a bulk transfer
        for number in range(SHRINK_AFTER):
            await client.send_all(b"x%d" % number)
            assert bytes(await reads.read(server)).startswith(b"x")
            assert reads.size == (START_SIZE if number == SHRINK_AFTER - 1
                                  else 4 * START_SIZE)
        await client.aclose()
        assert len(await reads.read(server)) == 0


async def test_a_reset_connection_is_a_broken_resource() -> None:
    client, server, listener = await pair()
    reads = ReadBuffer(START_SIZE)
    async with server, listener:
        # SO_LINGER 0: close sends a RST, so the reader's recv fails with ECONNRESET.
        client.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await client.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await reads.read(server)


def test_a_limit_below_the_start_size_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        ReadBuffer(START_SIZE - 1)
