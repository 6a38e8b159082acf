"""Invites, pairing requests (spec/12 §8, §9) and identity wire messages (§6.2)."""

from __future__ import annotations

import base64

import cbor2
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import examples
from tests.identity_helpers import Owner, key, pub
from tidings.core import kel
from tidings.core.invite import (
    MAX_INVITE_ADDRESSES,
    MAX_INVITE_LOGS,
    InvalidInvite,
    Invite,
    PairingRequest,
    armor,
    make_pairing_request,
    pairing_code,
    parse_invite,
    parse_invite_input,
    parse_pairing_request,
)
from tidings.errors import MalformedMessage
from tidings.wire import messages as kel_wire

IDENTITY = bytes(range(32))


def reason_of(text: str, parse: object = parse_invite) -> str:
    with pytest.raises(InvalidInvite) as caught:
        parse(text)  # type: ignore[operator]
    return caught.value.reason


def test_an_invite_reads_back_and_survives_typing() -> None:
    invite = Invite(IDENTITY, ("blog", "podcast"), (("relay.example.org", 7000), ("::1", 7001)))
    text = str(invite)
    assert text.startswith("tinv1") and set(text[5:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert parse_invite(text) == invite
    assert parse_invite_input(f"  {text}\r\n") == invite
    assert invite.identity_text == kel.format_identity(IDENTITY)
    assert parse_invite(str(Invite(IDENTITY))) == Invite(IDENTITY)


@settings(deadline=None, max_examples=examples(50))
@given(st.binary(min_size=32, max_size=32),
       st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True), unique=True,
                max_size=MAX_INVITE_LOGS),
       st.lists(st.tuples(st.sampled_from(["127.0.0.1", "::1", "a.example", "x-1.y"]),
                          st.integers(1, 65535)), unique=True, max_size=MAX_INVITE_ADDRESSES))
def test_every_invite_reads_back(identity: bytes, logs: list[str],
                                 addresses: list[tuple[str, int]]) -> None:
    invite = Invite(identity, tuple(sorted(logs, key=str.encode)), tuple(addresses))
    assert parse_invite(str(invite)) == invite


def test_invite_refusals_name_their_check() -> None:
    text = str(Invite(IDENTITY, ("blog",), (("example.org", 7000),)))
    assert reason_of("tinv2" + text[5:]) == "wrong-prefix"
    assert reason_of(text[:5] + "abc") == "bad-length"
    assert reason_of(text + "a" * 6000) == "bad-length"
    assert reason_of(text[:-1] + "A") == "bad-chars"
    flipped = text[:20] + ("a" if text[20] != "a" else "b") + text[21:]
    assert reason_of(flipped) == "bad-checksum"

    def wrapped(value: object) -> str:
        return armor("tinv1", cbor2.dumps(value))

    assert reason_of(wrapped([IDENTITY, ["Blog"], []])) == "bad-log-id"
    assert reason_of(wrapped([IDENTITY, ["b", "a"], []])) == "malformed"
    assert reason_of(wrapped([IDENTITY, [], [["fe80::1%eth0", 7000]]])) == "bad-host"
    assert reason_of(wrapped([IDENTITY, [], [["a", 0]]])) == "malformed"
    assert reason_of(wrapped([IDENTITY[:31], [], []])) == "malformed"
    assert reason_of(wrapped([IDENTITY, [], [], 1])) == "malformed"
    assert reason_of(wrapped({"identity": IDENTITY})) == "malformed"
    payload = cbor2.dumps([IDENTITY, [], []])
    longer = b"\x98\x03" + payload[1:]  # array head 98 03: not the shortest
    assert reason_of(armor("tinv1", longer)) == "non-canonical"
    # Trailing bits that are not zero: a base32 text no encoder writes.
    good = str(Invite(IDENTITY))
    last = "abcdefghijklmnopqrstuvwxyz234567".index(good[-1])
    assert reason_of(good[:-1] + "abcdefghijklmnopqrstuvwxyz234567"[last | 1]) in {
        "non-canonical-base32", "bad-checksum"}


def test_a_pairing_request_carries_the_devices_signature_and_a_code() -> None:
    owner = Owner()
    name = "Ana's phone"
    request = make_pairing_request(key("phone"), owner.identity, name)
    assert request == PairingRequest(owner.identity, pub("phone"), name,
                                     owner.device_sig("phone", name))
    text = str(request)
    assert text.startswith("tpair1") and len(text) < 400
    parsed = parse_pairing_request(text)
    assert parsed == request
    code = parsed.code
    assert len(code) == 14 and code.count("-") == 2
    assert code == pairing_code(owner.identity, pub("phone"), name)
    assert code != pairing_code(owner.identity, pub("phone"), "Ana's tablet")
    # Approving it: the device-add event carries the device's own signature.
    event = kel.make_device_add(owner.root, owner.state(), parsed.device_key, parsed.name,
                                parsed.device_sig)
    owner.events.append(event)
    assert owner.state().devices[pub("phone")].name == name


def test_a_pairing_request_signed_by_another_key_is_refused() -> None:
    owner = Owner()
    forged = PairingRequest(owner.identity, pub("phone"), "phone",
                            kel.sign_device_claim(key("mallory"), owner.identity, "phone"))
    assert reason_of(str(forged), parse_pairing_request) == "bad-signature"
    assert reason_of(str(forged).replace("tpair1", "tinv1", 1), parse_pairing_request) \
        == "wrong-prefix"


def test_identity_messages_round_trip() -> None:
    owner = Owner()
    owner.add("laptop")
    state = owner.state()
    note = kel_wire.identity_note(state)
    assert state.head is not None
    assert note.seq == 2 and note.head == state.head[:8] and note.status == 1
    messages: list[kel_wire.IdentityMessage] = [
        kel_wire.IdentityNotes((note, kel_wire.IdentityNote(IDENTITY, 0, None, 0))),
        kel_wire.IdentityRequest(7, owner.identity, 1),
        kel_wire.IdentityEvents(7, owner.identity, tuple(state.served()), 0),
        kel_wire.IdentityEvents(None, owner.identity, (), 0),
    ]
    for message in messages:
        body = kel_wire.encode_identity_message(message)
        assert kel_wire.decode_identity_message(body) == message


@pytest.mark.parametrize("value", [
    [11, [[IDENTITY, 1, None, 1]]],  # seq 1 without a head
    [11, [[IDENTITY, 0, None, 1]]],  # nothing held, but active
    [11, [[IDENTITY, 4097, b"12345678", 1]]],  # past the last seq
    [11, [[IDENTITY, 1, b"1234567", 1]]],  # head of 7 bytes
    [12, 1, IDENTITY, 0],  # from seq 0
    [12, 2**32, IDENTITY, 1],  # request id too large
    [13, None, IDENTITY, [], 1],  # more, but not an answer
    [13, 1, IDENTITY, [b""], 0],  # an empty event
    [13, 1, IDENTITY, [b"x" * 8193], 0],  # an event over the bound
    [13, 1, IDENTITY, [], True],  # a bool is not a flag
    [14, 1],  # not an identity message
    [12, 1, IDENTITY],  # a field missing
])
def test_identity_messages_refused_as_malformed(value: list[object]) -> None:
    with pytest.raises(MalformedMessage):
        kel_wire.decode_identity_message(msgpack.packb(value, use_bin_type=True))


def test_invite_payload_is_cbor_inside_base32() -> None:
    invite = Invite(IDENTITY, ("blog",))
    raw = base64.b32decode(str(invite)[5:].upper() + "=" * (-len(str(invite)[5:]) % 8))
    assert cbor2.loads(raw[:-4]) == [IDENTITY, ["blog"], []]
