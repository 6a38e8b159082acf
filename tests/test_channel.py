"""The secure channel (spec/08-transport.md): Noise XXpsk0, frames, message boundaries.

Two Channels talk over an in-memory pipe. A hand-driven peer (:class:`RawPeer`,
built from the Noise handshake and the framing rules only) writes what an
honest Channel never would: empty messages, lengths over the bound.
"""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core.entry import MAX_PAYLOAD_SIZE
from tidings.errors import BadFrame, HandshakeFailed, MalformedMessage, MessageTooLarge
from tidings.transport.channel import (
    MAX_FRAME_PLAINTEXT,
    PROLOGUE,
    Channel,
    public_key,
)
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.transport.noise import TAG_LEN, CipherState, NoiseHandshake
from tidings.wire.messages import (
    MAX_MESSAGE_SIZE,
    Entries,
    ErrorMessage,
    Message,
    Peers,
    Ping,
    encode_message,
)

from .helpers import examples, make_log
from .test_messages import messages as any_message

OTHER_NETWORK = hashlib.blake2b(b"a private network", digest_size=32).digest()
LOG, PAYLOADS = make_log(2)
FEED = LOG[0].feed


def key(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=32).digest()


def channels(
    initiator_network: bytes = DEFAULT_NETWORK_KEY, responder_network: bytes = DEFAULT_NETWORK_KEY
) -> tuple[Channel, Channel]:
    """An initiator and a responder with fixed keys (so every byte they send is fixed)."""
    return (
        Channel(initiator=True, static_private=key("i"), network_key=initiator_network,
                ephemeral_private=key("ie")),
        Channel(initiator=False, static_private=key("r"), network_key=responder_network,
                ephemeral_private=key("re")),
    )


def handshake(initiator: Channel, responder: Channel) -> None:
    """Run the three handshake messages; both channels end established."""
    initiator.start()
    responder.receive_data(initiator.data_to_send())  # message 1
    initiator.receive_data(responder.data_to_send())  # message 2
    responder.receive_data(initiator.data_to_send())  # message 3
    assert initiator.established and responder.established


def established() -> tuple[Channel, Channel]:
    initiator, responder = channels()
    handshake(initiator, responder)
    return initiator, responder


def frames(data: bytes) -> list[bytes]:
    """Split a byte stream into its frames (2-byte big-endian length, then the frame)."""
    found = []
    while data:
        (length,) = struct.unpack_from(">H", data)
        found.append(data[2:2 + length])
        data = data[2 + length:]
    return found


class RawPeer:
    """An initiator driven by hand: any plaintext into transport frames."""

    def __init__(self, responder: Channel, message3_payload: bytes = b"") -> None:
        noise = NoiseHandshake(
            initiator=True, static_private=key("raw s"), prologue=PROLOGUE,
            ephemeral_private=key("raw e"), psks=(DEFAULT_NETWORK_KEY,),
        )
        responder.receive_data(frame(noise.write_message(b"")))
        (message2,) = frames(responder.data_to_send())
        noise.read_message(message2)
        responder.receive_data(frame(noise.write_message(message3_payload)))
        assert responder.established
        self._send: CipherState = noise.split()[0]

    def seal(self, plaintext: bytes) -> bytes:
        return frame(self._send.encrypt_with_ad(b"", plaintext))


def frame(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


# -- handshake -------------------------------------------------------------------

def test_two_channels_on_one_network_shake_hands_and_exchange_messages() -> None:
    initiator, responder = established()
    initiator.send(Ping())
    initiator.send(Peers((("example.org", 8008),)))
    responder.receive_data(initiator.data_to_send())
    assert responder.messages() == [Ping(), Peers((("example.org", 8008),))]
    responder.send(ErrorMessage("flood", "bye"))
    initiator.receive_data(responder.data_to_send())
    assert initiator.messages() == [ErrorMessage("flood", "bye")]
    assert responder.messages() == []  # each message is returned once


def test_each_side_learns_the_others_static_key() -> None:
    initiator, responder = channels()
    assert initiator.remote_static is None and responder.remote_static is None
    handshake(initiator, responder)
    assert initiator.remote_static == public_key(key("r")) == responder.local_static
    assert responder.remote_static == public_key(key("i")) == initiator.local_static


def test_messages_sent_before_the_handshake_ends_wait_for_it() -> None:
    initiator, responder = channels()
    initiator.send(Ping())
    initiator.start()
    message1 = initiator.data_to_send()
    assert len(frames(message1)) == 1  # the handshake message only
    responder.receive_data(message1)
    initiator.receive_data(responder.data_to_send())
    responder.receive_data(initiator.data_to_send())  # message 3 and the ping
    assert responder.messages() == [Ping()]


def test_another_network_key_fails_at_message_1_and_the_responder_sends_nothing() -> None:
    initiator, responder = channels(responder_network=OTHER_NETWORK)
    initiator.start()
    with pytest.raises(HandshakeFailed) as caught:
        responder.receive_data(initiator.data_to_send())
    assert caught.value.code == "handshake"
    assert responder.data_to_send() == b""
    assert not responder.established and responder.remote_static is None


def test_message_1_is_48_bytes_and_a_version_1_message_1_is_refused() -> None:
    initiator, _ = channels()
    initiator.start()
    (message1,) = frames(initiator.data_to_send())
    assert len(message1) == 48  # e, and the tag of an empty payload under the PSK
    old = channels()[1]
    with pytest.raises(HandshakeFailed, match="another protocol version"):
        old.receive_data(frame(os.urandom(64)))  # version 1: e and a 32-byte proof
    assert old.data_to_send() == b""


def test_a_replayed_message_1_gets_a_message_2_nobody_can_read() -> None:
    """The responder answers a recorded message 1, but message 2 needs e_i's secret."""
    initiator, _ = channels()
    initiator.start()
    recorded = initiator.data_to_send()
    replayer = channels()[1]
    replayer.receive_data(recorded)
    eavesdropper = NoiseHandshake(initiator=True, static_private=key("x"), prologue=PROLOGUE,
                                  psks=(DEFAULT_NETWORK_KEY,))
    eavesdropper.write_message(b"")  # its own ephemeral key, not the recorded one
    with pytest.raises(HandshakeFailed):
        eavesdropper.read_message(frames(replayer.data_to_send())[0])


# -- frames and message boundaries -----------------------------------------------

def test_a_message_fed_one_byte_at_a_time_arrives_intact() -> None:
    initiator, responder = established()
    message = Entries(FEED, ((LOG[0].raw, PAYLOADS[0]), (LOG[1].raw, None)))
    initiator.send(message)
    for byte in initiator.data_to_send():
        assert responder.messages() == []
        responder.receive_data(bytes([byte]))
    assert responder.messages() == [message]


def test_a_message_over_one_frame_spans_frames_and_arrives_intact() -> None:
    initiator, responder = established()
    message = Entries(FEED, ((LOG[0].raw, os.urandom(MAX_PAYLOAD_SIZE)),))
    initiator.send(message)
    data = initiator.data_to_send()
    sealed = frames(data)
    plaintext = 4 + len(encode_message(message))
    assert plaintext > 16 * MAX_FRAME_PLAINTEXT
    assert len(sealed) == -(-plaintext // MAX_FRAME_PLAINTEXT)
    assert all(len(f) == MAX_FRAME_PLAINTEXT + TAG_LEN for f in sealed[:-1])
    responder.receive_data(data)
    assert responder.messages() == [message]


def test_small_messages_queued_together_share_one_frame() -> None:
    initiator, responder = established()
    sent = [Ping(), Peers((("a.example", 1),)), Ping()]
    for message in sent:
        initiator.send(message)
    data = initiator.data_to_send()
    assert len(frames(data)) == 1
    responder.receive_data(data)
    assert responder.messages() == sent


@pytest.mark.parametrize("during_handshake", [True, False], ids=["handshake", "transport"])
def test_an_empty_frame_is_a_bad_frame(during_handshake: bool) -> None:
    _, responder = channels() if during_handshake else established()
    with pytest.raises(BadFrame) as caught:
        responder.receive_data(b"\x00\x00")
    assert caught.value.code == "bad-frame"


@pytest.mark.parametrize("position", [2, 3, -TAG_LEN, -1], ids=["first", "second", "tag", "last"])
def test_a_frame_with_a_flipped_byte_is_a_bad_frame(position: int) -> None:
    initiator, responder = established()
    initiator.send(Peers((("example.org", 8008),)))
    data = bytearray(initiator.data_to_send())
    data[position] ^= 0x01
    with pytest.raises(BadFrame) as caught:
        responder.receive_data(bytes(data))
    assert caught.value.code == "bad-frame"
    assert responder.messages() == []


def sealed_pings(count: int) -> tuple[Channel, Channel, list[bytes]]:
    """Established channels and ``count`` frames from the initiator, one ping each."""
    initiator, responder = established()
    sent = []
    for _ in range(count):
        initiator.send(Ping())
        sent.append(initiator.data_to_send())
    return initiator, responder, sent


def test_a_replayed_frame_is_a_bad_frame() -> None:
    _, responder, (first,) = sealed_pings(1)
    responder.receive_data(first)
    assert responder.messages() == [Ping()]
    with pytest.raises(BadFrame):
        responder.receive_data(first)


def test_a_dropped_frame_makes_the_next_one_a_bad_frame() -> None:
    _, responder, (_, second) = sealed_pings(2)
    with pytest.raises(BadFrame):
        responder.receive_data(second)


def test_a_frame_sent_back_to_its_sender_is_a_bad_frame() -> None:
    initiator, _, (first,) = sealed_pings(1)
    with pytest.raises(BadFrame):
        initiator.receive_data(first)


def test_a_transport_frame_with_no_room_for_data_is_a_bad_frame() -> None:
    _, responder = established()
    with pytest.raises(BadFrame):
        responder.receive_data(frame(bytes(TAG_LEN)))


def test_the_raw_peer_speaks_the_same_framing() -> None:
    """The control for the tests below: a well-formed message through RawPeer arrives."""
    responder = channels()[1]
    peer = RawPeer(responder)
    body = bytes([0x91, 0x07])  # [7]: a ping
    responder.receive_data(peer.seal(struct.pack(">I", len(body)) + body))
    assert responder.messages() == [Ping()]


def test_a_payload_in_handshake_message_3_is_ignored() -> None:
    responder = channels()[1]
    RawPeer(responder, message3_payload=b"from a later version")
    assert responder.remote_static == public_key(key("raw s"))
    assert responder.messages() == []


def test_a_declared_length_over_the_bound_is_too_large_before_the_body_arrives() -> None:
    responder = channels()[1]
    peer = RawPeer(responder)
    with pytest.raises(MessageTooLarge) as caught:
        responder.receive_data(peer.seal(struct.pack(">I", MAX_MESSAGE_SIZE + 1)))
    assert caught.value.code == "oversize"


def test_a_declared_length_at_the_bound_waits_for_the_body() -> None:
    responder = channels()[1]
    peer = RawPeer(responder)
    responder.receive_data(peer.seal(struct.pack(">I", MAX_MESSAGE_SIZE)))
    assert responder.messages() == []


def test_a_zero_length_message_is_malformed() -> None:
    responder = channels()[1]
    peer = RawPeer(responder)
    with pytest.raises(MalformedMessage) as caught:
        responder.receive_data(peer.seal(bytes(4)))
    assert caught.value.code == "malformed"


def test_a_message_the_decoder_refuses_is_refused_by_the_channel() -> None:
    responder = channels()[1]
    peer = RawPeer(responder)
    body = bytes([0x91, 0x14])  # [20]: no such type
    with pytest.raises(MalformedMessage, match="unknown message type"):
        responder.receive_data(peer.seal(struct.pack(">I", len(body)) + body))


# -- any chunking --------------------------------------------------------------------

def sealed(initiator: Channel, sent: list[tuple[Message, bool]]) -> bytes:
    """The bytes of ``sent`` as the initiator frames them: each message with those
    before it since the last flush (a True), the rest at the end."""
    stream = b""
    for message, flush in sent:
        initiator.send(message)
        if flush:
            stream += initiator.data_to_send()
    return stream + initiator.data_to_send()


@settings(max_examples=examples(100), deadline=None)
@given(
    st.lists(st.tuples(any_message, st.booleans()), min_size=1, max_size=8),
    st.lists(st.integers(1, 4096), min_size=1, max_size=40),
)
def test_any_chunking_of_a_message_stream_yields_the_same_messages(
    sent: list[tuple[Message, bool]], sizes: list[int]
) -> None:
    """Messages sealed into frames alone or together, the bytes cut anywhere."""
    initiator, responder = channels()
    initiator.start()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    stream = sealed(initiator, sent)  # message 3 leads it
    received: list[Message] = []
    start = cut = 0
    while start < len(stream):
        end = start + sizes[cut % len(sizes)]
        responder.receive_data(stream[start:end])
        received += responder.messages()
        start, cut = end, cut + 1
    assert received == [message for message, _ in sent]


@settings(max_examples=examples(100), deadline=None)
@given(
    st.lists(st.tuples(any_message, st.booleans()), min_size=1, max_size=8),
    st.lists(st.integers(1, 70_000), min_size=1, max_size=40),
)
def test_reads_through_one_reused_buffer_yield_the_same_messages(
    sent: list[tuple[Message, bool]], sizes: list[int]
) -> None:
    """As the node reads (node/readbuffer.py): each read is a view of one buffer that
    the next read overwrites, so the channel must keep nothing of it (frames cut
    anywhere, in their length or body, across reads of any size)."""
    initiator, responder = established()
    stream = sealed(initiator, sent)
    buffer = bytearray(max(sizes))
    received: list[Message] = []
    start = cut = 0
    while start < len(stream):
        piece = stream[start:start + sizes[cut % len(sizes)]]
        buffer[:len(piece)] = piece
        with memoryview(buffer) as view:
            responder.receive_data(view[:len(piece)])
        buffer[:] = b"\xa5" * len(buffer)  # the next read lands here
        received += responder.messages()
        start, cut = start + len(piece), cut + 1
    assert received == [message for message, _ in sent]
