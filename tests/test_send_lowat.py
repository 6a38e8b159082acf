"""A fast connection lets the kernel take more unsent bytes per send (node/daemon.py)."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio

from tidings.node.daemon import FAST_LOWAT, SLOW_LOWAT, _set_lowat

from .test_readbuffer import pair

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"),
                                reason="no TCP_NOTSENT_LOWAT on this platform")


def lowat(stream: trio.SocketStream) -> int:
    return int(stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT))


async def test_a_connection_found_fast_takes_more_unsent_bytes_and_back_when_slow() -> None:
    client, server, listener = await pair()
    async with client, server, listener:
        assert lowat(client) == SLOW_LOWAT  # trio's own default, 16 KiB
        connection = cast(Any, SimpleNamespace(stream=client, lowat=SLOW_LOWAT))
        _set_lowat(connection, FAST_LOWAT)
        assert lowat(client) == FAST_LOWAT == connection.lowat
        _set_lowat(connection, SLOW_LOWAT)
        assert lowat(client) == SLOW_LOWAT == connection.lowat
