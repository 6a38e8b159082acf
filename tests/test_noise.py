"""Noise_XX_25519_ChaChaPoly_BLAKE2b against the published vectors, and its failure modes.

The vectors (vectors/noise/ in the shared folder, from the cacophony and snow
suites) fix every handshake and transport ciphertext byte for given keys. The
rest checks that anything other than two honest peers on one prologue (the
network key) ends in HandshakeFailed, BadFrame or LocalProtocolError, never in
a completed handshake.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.errors import BadFrame, HandshakeFailed, LocalProtocolError
from tidings.protocol.noise import (
    DH_LEN,
    MAX_MESSAGE_LEN,
    PROTOCOL_NAME,
    TAG_LEN,
    CipherState,
    NoiseHandshake,
)

VECTORS_FILE = (
    Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "noise" / "noise_xx.json"
)
if not VECTORS_FILE.is_file():
    pytest.skip(
        f"the shared Noise vectors are not at {VECTORS_FILE} (the shared folder sits beside "
        "the repository)",
        allow_module_level=True,
    )

ALL = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
OURS: list[dict[str, Any]] = [v for v in ALL if v["protocol_name"] == PROTOCOL_NAME.decode()]
VECTORS = [pytest.param(vector, id=f"{vector['from']}-{i}") for i, vector in enumerate(OURS)]
HANDSHAKE_MESSAGES = 3
Damage = Callable[[bytes], bytes]


def pair(
    initiator_prologue: bytes = b"net", responder_prologue: bytes = b"net"
) -> tuple[NoiseHandshake, NoiseHandshake]:
    """A fresh initiator and responder with random static keys."""
    return (
        NoiseHandshake(initiator=True, static_private=os.urandom(32), prologue=initiator_prologue),
        NoiseHandshake(initiator=False, static_private=os.urandom(32), prologue=responder_prologue),
    )


def sender_and_receiver(
    step: int, initiator: NoiseHandshake, responder: NoiseHandshake
) -> tuple[NoiseHandshake, NoiseHandshake]:
    return (initiator, responder) if step % 2 == 0 else (responder, initiator)


def handshake(
    initiator: NoiseHandshake,
    responder: NoiseHandshake,
    payloads: tuple[bytes, bytes, bytes] = (b"", b"", b""),
) -> None:
    for step, payload in enumerate(payloads):
        sender, receiver = sender_and_receiver(step, initiator, responder)
        assert receiver.read_message(sender.write_message(payload)) == payload


# -- the published vectors ---------------------------------------------------------------


def test_the_vectors_are_there() -> None:
    assert VECTORS, "the Noise_XX_25519_ChaChaPoly_BLAKE2b vectors should be selected"
    assert any("handshake_hash" in vector for vector in OURS)


@pytest.mark.parametrize("vector", VECTORS)
def test_vector(vector: dict[str, Any]) -> None:
    def side(prefix: str, initiator: bool) -> NoiseHandshake:
        return NoiseHandshake(
            initiator=initiator,
            static_private=bytes.fromhex(vector[f"{prefix}_static"]),
            prologue=bytes.fromhex(vector[f"{prefix}_prologue"]),
            ephemeral_private=bytes.fromhex(vector[f"{prefix}_ephemeral"]),
        )

    initiator, responder = side("init", True), side("resp", False)
    messages = [
        (bytes.fromhex(m["payload"]), bytes.fromhex(m["ciphertext"])) for m in vector["messages"]
    ]
    for step, (payload, ciphertext) in enumerate(messages[:HANDSHAKE_MESSAGES]):
        sender, receiver = sender_and_receiver(step, initiator, responder)
        assert sender.write_message(payload) == ciphertext
        assert receiver.read_message(ciphertext) == payload
    assert initiator.complete and responder.complete
    assert initiator.handshake_hash == responder.handshake_hash
    if "handshake_hash" in vector:
        assert initiator.handshake_hash == bytes.fromhex(vector["handshake_hash"])

    # The vectors keep alternating after the handshake: message i goes initiator ->
    # responder when i is even, so the first transport message (i = 3) is the responder's.
    initiator_send, initiator_receive = initiator.split()
    responder_send, responder_receive = responder.split()
    for index, (payload, ciphertext) in enumerate(messages):
        if index < HANDSHAKE_MESSAGES:
            continue
        send, receive = (
            (initiator_send, responder_receive)
            if index % 2 == 0
            else (responder_send, initiator_receive)
        )
        assert send.encrypt_with_ad(b"", payload) == ciphertext
        assert receive.decrypt_with_ad(b"", ciphertext) == payload


# -- handshakes that must fail ---------------------------------------------------------


def test_a_different_prologue_fails_at_message_2_on_the_initiator() -> None:
    initiator, responder = pair(b"network A", b"network B")
    message_2 = responder.write_message(responder.read_message(initiator.write_message()))
    with pytest.raises(HandshakeFailed, match="message 2 failed authentication"):
        initiator.read_message(message_2)
    assert initiator.remote_static is None and not initiator.complete


def first_failure(step: int, damage: Damage) -> tuple[int, bool]:
    """Run a handshake with message ``step`` passed through ``damage``.

    Returns the step at which HandshakeFailed was raised and whether the initiator raised it.
    """
    initiator, responder = pair()
    for current in range(HANDSHAKE_MESSAGES):
        sender, receiver = sender_and_receiver(current, initiator, responder)
        try:
            message = sender.write_message(b"payload %d" % current)
        except HandshakeFailed:
            return current, sender is initiator
        try:
            receiver.read_message(damage(message) if current == step else message)
        except HandshakeFailed:
            return current, receiver is initiator
    pytest.fail(f"damaging handshake message {step + 1} went unnoticed")


def flip(position: int, mask: int) -> Damage:
    def damage(message: bytes) -> bytes:
        damaged = bytearray(message)
        damaged[position] ^= mask
        return bytes(damaged)

    return damage


def truncate(length: int) -> Damage:
    return lambda message: message[:length]


# Where a damaged message is caught. Message 1 is cleartext, so the responder takes it;
# the changed hash (or ephemeral key) then breaks message 2 on the initiator.
CAUGHT_AT = {0: (1, True), 1: (1, True), 2: (2, False)}
# With the 9-byte payloads first_failure sends: keys, encrypted static keys, payload, tags.
MESSAGE_LENGTHS = (
    DH_LEN + 9,
    DH_LEN + (DH_LEN + TAG_LEN) + 9 + TAG_LEN,
    (DH_LEN + TAG_LEN) + 9 + TAG_LEN,
)


@pytest.mark.parametrize("step", range(HANDSHAKE_MESSAGES))
def test_every_flipped_bit_fails_the_handshake(step: int) -> None:
    # 0x80 of an X25519 key's last byte is ignored by the DH; the hash still catches it.
    for position in range(MESSAGE_LENGTHS[step]):
        for mask in (0x01, 0x80):
            assert first_failure(step, flip(position, mask)) == CAUGHT_AT[step], (position, mask)


@pytest.mark.parametrize("step", range(HANDSHAKE_MESSAGES))
def test_truncated_messages_fail_the_handshake(step: int) -> None:
    for length in range(MESSAGE_LENGTHS[step]):
        # Message 1 without a whole ephemeral key is refused by the responder at once.
        expected = (0, False) if step == 0 and length < DH_LEN else CAUGHT_AT[step]
        assert first_failure(step, truncate(length)) == expected, length


@pytest.mark.parametrize("step", range(HANDSHAKE_MESSAGES))
def test_a_message_shorter_than_its_keys_and_tags_is_refused_by_length(step: int) -> None:
    initiator, responder = pair()
    for current in range(step):
        sender, receiver = sender_and_receiver(current, initiator, responder)
        receiver.read_message(sender.write_message())
    sender, receiver = sender_and_receiver(step, initiator, responder)
    whole = sender.write_message()
    with pytest.raises(HandshakeFailed, match=f"must be {len(whole)} to {MAX_MESSAGE_LEN}"):
        receiver.read_message(whole[:-1])


def test_an_oversized_message_is_refused_and_the_largest_one_passes() -> None:
    initiator, responder = pair()
    with pytest.raises(LocalProtocolError, match="room for"):
        initiator.write_message(bytes(MAX_MESSAGE_LEN - DH_LEN + 1))
    largest = initiator.write_message(bytes(MAX_MESSAGE_LEN - DH_LEN))
    assert len(largest) == MAX_MESSAGE_LEN
    with pytest.raises(HandshakeFailed, match="65536 bytes"):
        pair()[1].read_message(largest + b"x")
    assert responder.read_message(largest) == bytes(MAX_MESSAGE_LEN - DH_LEN)


@pytest.mark.parametrize(
    "low_order",
    [
        bytes(32),
        b"\x01" + bytes(31),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
    ids=["zero", "one", "order-8"],
)
def test_a_low_order_ephemeral_key_fails_the_handshake(low_order: bytes) -> None:
    initiator, responder = pair()
    message_1 = initiator.write_message()
    responder.read_message(low_order + message_1[DH_LEN:])
    with pytest.raises(HandshakeFailed, match="low-order"):
        responder.write_message()

    initiator, responder = pair()
    message_2 = responder.write_message(responder.read_message(initiator.write_message()))
    with pytest.raises(HandshakeFailed, match="low-order"):
        initiator.read_message(low_order + message_2[DH_LEN:])


# -- misuse --------------------------------------------------------------------------------


def test_out_of_turn_calls_are_local_errors() -> None:
    initiator, responder = pair()
    with pytest.raises(LocalProtocolError, match="must write handshake message 1"):
        initiator.read_message(bytes(DH_LEN))
    with pytest.raises(LocalProtocolError, match="must read handshake message 1"):
        responder.write_message()
    with pytest.raises(LocalProtocolError, match="complete handshake"):
        initiator.split()
    with pytest.raises(LocalProtocolError, match="only final"):
        _ = initiator.handshake_hash
    message_1 = initiator.write_message()
    with pytest.raises(LocalProtocolError, match="must read handshake message 2"):
        initiator.write_message()
    responder.read_message(message_1)
    with pytest.raises(LocalProtocolError, match="must write handshake message 2"):
        responder.read_message(message_1)
    initiator.read_message(responder.write_message())
    responder.read_message(initiator.write_message())
    for side in (initiator, responder):
        with pytest.raises(LocalProtocolError, match="complete"):
            side.write_message()
        with pytest.raises(LocalProtocolError, match="complete"):
            side.read_message(bytes(100))
        side.split()
        with pytest.raises(LocalProtocolError, match="already"):
            side.split()


def test_a_failed_handshake_cannot_go_on() -> None:
    initiator, responder = pair(b"A", b"B")
    message_2 = responder.write_message(responder.read_message(initiator.write_message()))
    with pytest.raises(HandshakeFailed):
        initiator.read_message(message_2)
    with pytest.raises(LocalProtocolError, match="failed"):
        initiator.write_message()
    with pytest.raises(LocalProtocolError, match="failed"):
        initiator.read_message(message_2)


def test_private_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="static"):
        NoiseHandshake(initiator=True, static_private=bytes(31))
    with pytest.raises(ValueError, match="ephemeral"):
        NoiseHandshake(initiator=True, static_private=bytes(32), ephemeral_private=bytes(33))


# -- what a completed handshake gives -----------------------------------------------------


def test_remote_static_is_the_peers_static_key_once_proven() -> None:
    initiator_key, responder_key = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    initiator = NoiseHandshake(initiator=True, static_private=initiator_key.private_bytes_raw())
    responder = NoiseHandshake(initiator=False, static_private=responder_key.private_bytes_raw())
    assert initiator.static_public == initiator_key.public_key().public_bytes_raw()
    responder.read_message(initiator.write_message())
    assert initiator.remote_static is None and responder.remote_static is None
    initiator.read_message(responder.write_message())
    assert initiator.remote_static == responder.static_public
    assert responder.remote_static is None
    responder.read_message(initiator.write_message())
    assert responder.remote_static == initiator.static_public


def test_each_session_has_its_own_handshake_hash() -> None:
    hashes = set()
    for _ in range(2):
        initiator, responder = pair()
        handshake(initiator, responder)
        assert initiator.handshake_hash == responder.handshake_hash
        hashes.add(initiator.handshake_hash)
    assert len(hashes) == 2


def test_a_damaged_transport_message_is_a_bad_frame() -> None:
    initiator, responder = pair()
    handshake(initiator, responder)
    (send, _), (_, receive) = initiator.split(), responder.split()
    message = send.encrypt_with_ad(b"", b"hello")
    for position in range(len(message)):
        with pytest.raises(BadFrame, match="failed authentication"):
            receive.decrypt_with_ad(b"", flip(position, 0x01)(message))
    with pytest.raises(BadFrame):
        receive.decrypt_with_ad(b"other ad", message)
    with pytest.raises(BadFrame, match="must be"):
        receive.decrypt_with_ad(b"", message[: TAG_LEN - 1])
    # Failures do not use up the nonce: the intact message still decrypts.
    assert receive.decrypt_with_ad(b"", message) == b"hello"
    with pytest.raises(BadFrame):  # a replay fails: the nonce has moved on
        receive.decrypt_with_ad(b"", message)


def test_cipher_state_bounds() -> None:
    assert CipherState().encrypt_with_ad(b"ad", b"clear") == b"clear"
    assert CipherState().decrypt_with_ad(b"ad", b"clear") == b"clear"
    with pytest.raises(LocalProtocolError, match="every nonce"):
        CipherState(bytes(32), n=2**64 - 1).encrypt_with_ad(b"", b"")
    with pytest.raises(BadFrame, match="more messages"):
        CipherState(bytes(32), n=2**64 - 1).decrypt_with_ad(b"", bytes(TAG_LEN))
    last = CipherState(bytes(32), n=2**64 - 2)
    last.encrypt_with_ad(b"", b"")  # the last nonce that may be used
    with pytest.raises(LocalProtocolError):
        last.encrypt_with_ad(b"", b"")
    with pytest.raises(LocalProtocolError, match="at most 65535"):
        CipherState(bytes(32)).encrypt_with_ad(b"", bytes(MAX_MESSAGE_LEN - TAG_LEN + 1))
    with pytest.raises(BadFrame, match="must be"):
        CipherState(bytes(32)).decrypt_with_ad(b"", bytes(MAX_MESSAGE_LEN + 1))


PAYLOADS = st.binary(max_size=1000)


@settings(deadline=None)
@given(
    st.tuples(PAYLOADS, PAYLOADS, PAYLOADS),
    st.lists(st.tuples(st.booleans(), PAYLOADS), max_size=8),
)
def test_payloads_round_trip(
    handshake_payloads: tuple[bytes, bytes, bytes], transport: list[tuple[bool, bytes]]
) -> None:
    initiator, responder = pair()
    handshake(initiator, responder, handshake_payloads)
    (initiator_send, initiator_receive), (responder_send, responder_receive) = (
        initiator.split(),
        responder.split(),
    )
    for from_initiator, payload in transport:
        send, receive = (
            (initiator_send, responder_receive)
            if from_initiator
            else (responder_send, initiator_receive)
        )
        message = send.encrypt_with_ad(b"", payload)
        assert len(message) == len(payload) + TAG_LEN
        assert receive.decrypt_with_ad(b"", message) == payload
