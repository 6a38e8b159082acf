"""A Noise library other than ours talks to a real node (spec/08 §4).

The `noiseprotocol` package (another implementation of the Noise framework) runs
Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b through its public API only, with the
public network's key as the PSK and the prologue ``tidings/transport/2``; then it
sends a hello in a transport frame and reads the node's hello and opening clock.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import msgpack
import pytest
from noise.connection import Keypair, NoiseConnection

from tests.nodes import running
from tidings.transport.channel import PROLOGUE
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.messages import VERSIONS, Clock, Hello, decode_message

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system


def read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "the node closed the connection"
        data += chunk
    return data


def read_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">H", read_exactly(sock, 2))
    return read_exactly(sock, length)


def write_frame(sock: socket.socket, message: bytes) -> None:
    sock.sendall(struct.pack(">H", len(message)) + message)


def test_another_noise_library_shakes_hands_and_exchanges_messages(tmp_path: Path) -> None:
    with running(tmp_path / "node") as node:
        noise = NoiseConnection.from_name(b"Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b")
        noise.set_as_initiator()
        noise.set_psks(DEFAULT_NETWORK_KEY)
        noise.set_prologue(PROLOGUE)
        noise.set_keypair_from_private_bytes(Keypair.STATIC, os.urandom(32))
        noise.start_handshake()
        with socket.create_connection(("127.0.0.1", node.port), timeout=30) as sock:
            message_1 = noise.write_message()
            assert len(message_1) == 48
            write_frame(sock, message_1)
            noise.read_message(read_frame(sock))  # message 2: the node's static key
            write_frame(sock, noise.write_message())  # message 3
            assert noise.handshake_finished

            body = msgpack.packb([0, list(VERSIONS), 0, None], use_bin_type=True)
            write_frame(sock, noise.encrypt(struct.pack(">I", len(body)) + body))
            stream = b""
            messages = []
            while len(messages) < 2:
                stream += noise.decrypt(read_frame(sock))
                while len(stream) >= 4:
                    (length,) = struct.unpack_from(">I", stream)
                    if len(stream) < 4 + length:
                        break
                    messages.append(decode_message(stream[4:4 + length]))
                    stream = stream[4 + length:]
        hello, clock = messages[:2]
        assert isinstance(hello, Hello) and max(hello.versions) == VERSIONS[-1]
        assert isinstance(clock, Clock) and clock.final
        node.wait_log(rf"event=connected .*version={VERSIONS[-1]}")
