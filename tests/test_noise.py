"""The Noise engine against the published vectors, and tidings' handshake's failure modes.

The vectors (vectors/noise/ in the shared folder, from the cacophony and snow
suites) fix every handshake and transport ciphertext byte for given keys:
Noise_XX, XXpsk3, NNpsk0, NNpsk0+psk2 and XXpsk0 with psk1/2/3, over 25519,
ChaChaPoly and BLAKE2b. tidings speaks Noise_XXpsk0 (spec/08), which those
cover token by token. The rest checks that anything other than two honest peers
with one network key (the PSK) ends in HandshakeFailed, BadFrame or
LocalProtocolError, never in a completed handshake.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.errors import BadFrame, HandshakeFailed, LocalProtocolError
from tidings.transport.noise import (
    DH_LEN,
    MAX_MESSAGE_LEN,
    PROTOCOL_NAME,
    TAG_LEN,
    CipherState,
    NoiseHandshake,
    handshake_pattern,
)

from .vectors import external_vectors

ALL = [
    vector
    for name in ("noise_xx.json", "noise_psk0.json")
    for vector in json.loads(external_vectors("noise", name).read_text(encoding="utf-8"))["vectors"]
]
OURS: list[dict[str, Any]] = [v for v in ALL if v["protocol_name"].endswith("_BLAKE2b")]
VECTORS = [
    pytest.param(vector, id=f"{vector['protocol_name']}-{i}") for i, vector in enumerate(OURS)
]
Damage = Callable[[bytes], bytes]
NETWORK = os.urandom(32)


def pair(
    initiator_psk: bytes = NETWORK, responder_psk: bytes = NETWORK,
    initiator_prologue: bytes = b"net", responder_prologue: bytes = b"net",
) -> tuple[NoiseHandshake, NoiseHandshake]:
    """A fresh initiator and responder of tidings' handshake with random static keys."""
    return (
        NoiseHandshake(initiator=True, static_private=os.urandom(32), prologue=initiator_prologue,
                       psks=(initiator_psk,)),
        NoiseHandshake(initiator=False, static_private=os.urandom(32),
                       prologue=responder_prologue, psks=(responder_psk,)),
    )


HANDSHAKE_MESSAGES = len(handshake_pattern(PROTOCOL_NAME))


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
    names = {v["protocol_name"] for v in OURS}
    assert {"Noise_XX_25519_ChaChaPoly_BLAKE2b", "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b",
            "Noise_XXpsk0+psk1_25519_ChaChaPoly_BLAKE2b"} <= names
    assert any("handshake_hash" in vector for vector in OURS)


def test_tidings_speaks_xx_with_psk0() -> None:
    assert PROTOCOL_NAME == b"Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b"
    assert handshake_pattern(PROTOCOL_NAME) == (
        ("psk", "e"), ("e", "ee", "s", "es"), ("s", "se"))


@pytest.mark.parametrize("vector", VECTORS)
def test_vector(vector: dict[str, Any]) -> None:
    name = vector["protocol_name"].encode()
    rounds = len(handshake_pattern(name))

    def side(prefix: str, initiator: bool) -> NoiseHandshake:
        static = vector.get(f"{prefix}_static")
        return NoiseHandshake(
            initiator=initiator, protocol_name=name,
            static_private=bytes.fromhex(static) if static else None,
            prologue=bytes.fromhex(vector[f"{prefix}_prologue"]),
            ephemeral_private=bytes.fromhex(vector[f"{prefix}_ephemeral"]),
            psks=tuple(bytes.fromhex(k) for k in vector.get(f"{prefix}_psks", [])),
        )

    initiator, responder = side("init", True), side("resp", False)
    messages = [
        (bytes.fromhex(m["payload"]), bytes.fromhex(m["ciphertext"])) for m in vector["messages"]
    ]
    for step, (payload, ciphertext) in enumerate(messages[:rounds]):
        sender, receiver = sender_and_receiver(step, initiator, responder)
        assert sender.write_message(payload) == ciphertext
        assert receiver.read_message(ciphertext) == payload
    assert initiator.complete and responder.complete
    assert initiator.handshake_hash == responder.handshake_hash
    if "handshake_hash" in vector:
        assert initiator.handshake_hash == bytes.fromhex(vector["handshake_hash"])

    # The vectors keep alternating after the handshake: message i goes initiator ->
    # responder when i is even.
    initiator_send, initiator_receive = initiator.split()
    responder_send, responder_receive = responder.split()
    for index, (payload, ciphertext) in enumerate(messages):
        if index < rounds:
            continue
        send, receive = (
            (initiator_send, responder_receive)
            if index % 2 == 0
            else (responder_send, initiator_receive)
        )
        assert send.encrypt_with_ad(b"", payload) == ciphertext
        assert receive.decrypt_with_ad(b"", ciphertext) == payload


# -- handshakes that must fail ---------------------------------------------------------


@pytest.mark.parametrize("differ", ["psk", "prologue"])
def test_another_network_key_or_prologue_fails_at_message_1_on_the_responder(differ: str) -> None:
    """With psk0, message 1 carries a tag under the PSK: a stranger gets no message 2."""
    initiator, responder = (pair(os.urandom(32)) if differ == "psk"
                            else pair(initiator_prologue=b"tidings/transport/1"))
    with pytest.raises(HandshakeFailed, match="message 1 failed authentication"):
        responder.read_message(initiator.write_message())
    assert responder.remote_static is None and not responder.complete


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


# Where a damaged message is caught: by its receiver, since with psk0 every message,
# message 1 included, carries a tag.
CAUGHT_AT = {0: (0, False), 1: (1, True), 2: (2, False)}
# With the 9-byte payloads first_failure sends: keys, encrypted static keys, payload, tags.
MESSAGE_LENGTHS = (
    DH_LEN + 9 + TAG_LEN,
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
        assert first_failure(step, truncate(length)) == CAUGHT_AT[step], length


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
    room = MAX_MESSAGE_LEN - DH_LEN - TAG_LEN
    with pytest.raises(LocalProtocolError, match="room for"):
        initiator.write_message(bytes(room + 1))
    largest = initiator.write_message(bytes(room))
    assert len(largest) == MAX_MESSAGE_LEN
    with pytest.raises(HandshakeFailed, match="65536 bytes"):
        pair()[1].read_message(largest + b"x")
    assert responder.read_message(largest) == bytes(room)


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
    with pytest.raises(HandshakeFailed):  # e is mixed into the key: the tag fails
        responder.read_message(low_order + message_1[DH_LEN:])

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
    initiator, responder = pair()
    message_2 = responder.write_message(responder.read_message(initiator.write_message()))
    with pytest.raises(HandshakeFailed):
        initiator.read_message(message_2[:-1] + bytes([message_2[-1] ^ 1]))
    with pytest.raises(LocalProtocolError, match="failed"):
        initiator.write_message()
    with pytest.raises(LocalProtocolError, match="failed"):
        initiator.read_message(message_2)


def test_private_keys_and_psks_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="static"):
        NoiseHandshake(initiator=True, static_private=bytes(31), psks=(NETWORK,))
    with pytest.raises(ValueError, match="ephemeral"):
        NoiseHandshake(initiator=True, static_private=bytes(32), ephemeral_private=bytes(33),
                       psks=(NETWORK,))
    with pytest.raises(ValueError, match="pre-shared"):
        NoiseHandshake(initiator=True, static_private=bytes(32), psks=(bytes(31),))
    with pytest.raises(ValueError, match="pre-shared"):
        NoiseHandshake(initiator=True, static_private=bytes(32))
    with pytest.raises(ValueError, match="unsupported"):
        NoiseHandshake(initiator=True, protocol_name=b"Noise_IK_25519_ChaChaPoly_BLAKE2b")


# -- what a completed handshake gives -----------------------------------------------------


def test_remote_static_is_the_peers_static_key_once_proven() -> None:
    initiator_key, responder_key = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    initiator = NoiseHandshake(initiator=True, static_private=initiator_key.private_bytes_raw(),
                               psks=(NETWORK,))
    responder = NoiseHandshake(initiator=False, static_private=responder_key.private_bytes_raw(),
                               psks=(NETWORK,))
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
