"""The secure channel, pure: Noise XXpsk0 handshake, frames and message boundaries.

Bytes in, bytes and messages out (spec/08-transport.md)::

    channel = Channel(initiator=True, static_private=key, network_key=net)
    channel.start()                       # queues handshake message 1
    sock.send(channel.data_to_send())
    channel.receive_data(sock.recv())     # may queue more to send
    for message in channel.messages(): ...

The handshake is ``Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b`` with the network key as
the pre-shared key: a responder can tell at message 1 whether the initiator
holds the key, and says nothing (no message 2, no static key) when it does not.
Every Noise message travels as a 2-byte big-endian length and the message.
After the handshake, the plaintext of the transport frames is a stream of
wire messages, each a 4-byte big-endian length and a msgpack body, so a large
message spans frames and small ones share a frame.
"""

from __future__ import annotations

import os
import struct
from typing import cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tidings.errors import (
    BadFrame,
    HandshakeFailed,
    LocalProtocolError,
    MalformedMessage,
    MessageTooLarge,
)
from tidings.transport.network import NETWORK_KEY_SIZE
from tidings.transport.noise import MAX_MESSAGE_LEN, TAG_LEN, CipherState, NoiseHandshake
from tidings.wire.messages import (
    MAX_MESSAGE_SIZE,
    Message,
    decode_message,
    encode_message_parts,
)

#: Names the transport version; a peer of another version fails at message 1.
PROLOGUE = b"tidings/transport/2"
#: Handshake message 1: the initiator's ephemeral key and the tag of an empty payload.
MESSAGE_1_SIZE = 32 + TAG_LEN
#: Plaintext bytes one transport frame carries (Noise's message bound less the tag).
MAX_FRAME_PLAINTEXT = MAX_MESSAGE_LEN - TAG_LEN
_LENGTH = struct.Struct(">H")
_MESSAGE_LENGTH = struct.Struct(">I")


def public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def check_network_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != NETWORK_KEY_SIZE:
        raise LocalProtocolError(f"a network key is {NETWORK_KEY_SIZE} bytes")
    return key


class Channel:
    """One side of a connection: handshake, then encrypted message frames."""

    def __init__(
        self, *, initiator: bool, static_private: bytes, network_key: bytes,
        ephemeral_private: bytes | None = None,
    ) -> None:
        self.initiator = initiator
        self._network_key = check_network_key(network_key)
        self._ephemeral = ephemeral_private or os.urandom(32)
        self.local_static = public_key(static_private)
        self._handshake: NoiseHandshake | None = NoiseHandshake(
            initiator=initiator, static_private=static_private, prologue=PROLOGUE,
            ephemeral_private=self._ephemeral, psks=(self._network_key,),
        )
        self._send_cipher: CipherState | None = None
        self._receive_cipher: CipherState | None = None
        self._remote_static: bytes | None = None
        self._inbox = bytearray()  # raw bytes from the socket, at most one frame + 2
        self._stream = bytearray()  # decrypted plaintext, at most one message + a frame
        self._outgoing: list[bytes] = []  # encrypted frames ready for the socket, joined once
        self._outgoing_size = 0
        self._plaintext_out = bytearray()  # messages not yet sealed into frames
        self._messages: list[Message] = []
        self._handshake_step = 0
        self.bytes_received = 0
        self.bytes_sent = 0

    # -- state ---------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self._send_cipher is not None

    @property
    def remote_static(self) -> bytes | None:
        """The peer's transport public key, once the handshake has shown it."""
        return self._remote_static

    # -- handshake -----------------------------------------------------------

    def start(self) -> None:
        """Initiator only: queue handshake message 1."""
        if not self.initiator or self._handshake_step != 0 or self._handshake is None:
            raise LocalProtocolError("start() is for the initiator, once")
        self._queue_frame(self._handshake.write_message(b""))
        self._handshake_step = 1

    def _on_handshake_frame(self, frame: bytes) -> None:
        handshake = self._handshake
        assert handshake is not None
        if self.initiator:
            if self._handshake_step != 1:
                raise LocalProtocolError("start() must be called before receiving")
            handshake.read_message(frame)  # message 2
            self._queue_frame(handshake.write_message(b""))  # message 3
        elif self._handshake_step == 0:
            if len(frame) != MESSAGE_1_SIZE:
                raise HandshakeFailed(
                    f"handshake message 1 is {len(frame)} bytes, not {MESSAGE_1_SIZE}: the peer "
                    "speaks another protocol version (tidings/transport/2 expected)"
                )
            # Fails unless the initiator holds the network key (the PSK): then
            # this side closes without a word, so a stranger learns nothing.
            handshake.read_message(frame)  # message 1
            self._queue_frame(handshake.write_message(b""))  # message 2
            self._handshake_step = 2
            return
        else:
            handshake.read_message(frame)  # message 3
        self._remote_static = handshake.remote_static
        self._send_cipher, self._receive_cipher = handshake.split()
        self._handshake = None

    # -- bytes in ------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the socket; raises a PeerError if the peer broke the protocol.

        ``data`` is read before this returns and not kept (the caller may reuse it)."""
        self.bytes_received += len(data)
        rest = memoryview(data)
        inbox = self._inbox
        if inbox:
            # A frame began in an earlier read: it is completed from the head of this
            # one (only its own bytes are copied), then the rest is read where it lies.
            if len(inbox) < 2:
                take = 2 - len(inbox)
                inbox += rest[:take]
                rest = rest[take:]
            if len(inbox) >= 2:
                take = 2 + _LENGTH.unpack_from(inbox)[0] - len(inbox)
                inbox += rest[:take]
                rest = rest[take:]
            self._read_frames(inbox)
            if inbox:
                return  # (this read ended inside that frame: nothing of it is left)
        self._read_frames(rest)

    def _read_frames(self, buffer: bytearray | memoryview) -> None:
        """Take the whole frames at the start of ``buffer`` (the inbox, or a read): a
        large read is decrypted in place, not copied; what follows them is kept in the
        inbox (at most one frame and its length)."""
        start = 0
        try:
            while len(buffer) - start >= 2:
                (length,) = _LENGTH.unpack_from(buffer, start)
                if length == 0:
                    raise BadFrame("empty frame")
                if len(buffer) - start < 2 + length:
                    break
                if self._handshake is not None:
                    frame = bytes(buffer[start + 2:start + 2 + length])
                    start += 2 + length
                    self._on_handshake_frame(frame)
                    continue
                assert self._receive_cipher is not None
                if length <= TAG_LEN:
                    raise BadFrame(f"transport frame of {length} bytes carries no data")
                frame_view = memoryview(buffer)[start + 2:start + 2 + length]
                try:
                    plain = self._receive_cipher.decrypt_with_ad(b"", frame_view)
                finally:
                    frame_view.release()  # (the inbox is cut below)
                start += 2 + length
                self._stream += plain
                self._parse_stream()
        finally:
            if buffer is self._inbox:
                del self._inbox[:start]
            else:
                self._inbox += buffer[start:]

    def _parse_stream(self) -> None:
        start = 0  # messages are decoded in place, and cut from the stream once
        try:
            while len(self._stream) - start >= 4:
                (length,) = _MESSAGE_LENGTH.unpack_from(self._stream, start)
                if length > MAX_MESSAGE_SIZE:
                    raise MessageTooLarge(
                        f"message length {length} is over the bound of {MAX_MESSAGE_SIZE} "
                        "bytes"
                    )
                if length == 0:
                    raise MalformedMessage("empty message")
                if len(self._stream) - start < 4 + length:
                    break
                body = memoryview(self._stream)[start + 4:start + 4 + length]
                try:
                    # (msgpack reads any buffer: the body is decoded where it lies)
                    message = decode_message(cast(bytes, body))
                finally:
                    body.release()  # (the stream is cut below)
                start += 4 + length
                self._messages.append(message)
        finally:
            del self._stream[:start]

    def messages(self) -> list[Message]:
        """Messages received so far, oldest first; each is returned once."""
        taken, self._messages = self._messages, []
        return taken

    # -- bytes out -----------------------------------------------------------

    def send(self, message: Message) -> int:
        """Queue ``message``; returns its size on the wire before encryption."""
        parts = encode_message_parts(message)  # (a blob chunk's bytes copied once, here)
        size = sum(len(part) for part in parts)
        # Sealed into frames in data_to_send(), so messages queued together share frames.
        self._plaintext_out += _MESSAGE_LENGTH.pack(size)
        for part in parts:
            self._plaintext_out += part
        return size + 4

    def _flush_plaintext(self) -> None:
        assert self._send_cipher is not None
        for start in range(0, len(self._plaintext_out), MAX_FRAME_PLAINTEXT):
            piece = memoryview(self._plaintext_out)[start:start + MAX_FRAME_PLAINTEXT]
            try:
                self._queue_frame(self._send_cipher.encrypt_with_ad(b"", piece))
            finally:
                piece.release()  # (the buffer is cleared below)
        self._plaintext_out.clear()

    def _queue_frame(self, frame: bytes) -> None:
        self._outgoing.append(_LENGTH.pack(len(frame)))
        self._outgoing.append(frame)
        self._outgoing_size += 2 + len(frame)

    def data_to_send(self) -> bytes:
        """Bytes for the socket, in order; each is returned once."""
        if self.established and self._plaintext_out:
            self._flush_plaintext()
        out = b"".join(self._outgoing)
        self._outgoing.clear()
        self._outgoing_size = 0
        self.bytes_sent += len(out)
        return out

    @property
    def pending_output(self) -> int:
        return self._outgoing_size + len(self._plaintext_out)
