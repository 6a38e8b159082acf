"""The transport and wire protocol against spec/vectors/handshake.json and wire.json.

The vectors are loaded, never copied here (their format is in spec/vectors/README.md);
``tools/make_vectors.py --check``, run by test_vectors.py, keeps them in step with the
code. Fields are read from JSON here independently of the generator, so a mistake in
one of the two shows up as a failure.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tidings.core.ids import FeedId
from tidings.errors import ClosedByPeer, PeerError
from tidings.replication.clock import LocalClock, clock_digest
from tidings.replication.session import TERMINAL, Authenticated, Failed, Session
from tidings.transport.beacon import BEACON_SIZE, make_beacon, read_beacon
from tidings.transport.channel import (
    PROLOGUE,
    Channel,
    public_key,
)
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.transport.noise import PROTOCOL_NAME, CipherState, NoiseHandshake
from tidings.wire.messages import (
    Clock,
    Entries,
    ErrorMessage,
    ForkProofMessage,
    Hello,
    Message,
    Note,
    PartialRequest,
    PartialResponse,
    Peers,
    Ping,
    SeqRequest,
    SeqResponse,
    decode_message,
    encode_message,
)

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


HANDSHAKE = load("handshake.json")
WIRE = load("wire.json")


def by_name(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in cases]


def unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def body_of(case: dict[str, Any]) -> bytes:
    """A case's body: ``body`` (hex), or ``body_runs`` ([hex, count] repeated and joined)."""
    if "body" in case:
        return bytes.fromhex(case["body"])
    return b"".join(bytes.fromhex(unit) * count for unit, count in case["body_runs"])


# -- JSON fields <-> messages, read from the README's description of wire.json ----------


def feed_of(row: dict[str, Any]) -> FeedId:
    return FeedId(bytes.fromhex(row["author"]), row["log_id"])


def note_of(row: dict[str, Any]) -> tuple[FeedId, Note]:
    return feed_of(row), Note(row["seq"], row["flags"], unhex(row["head"]))


def items_of(rows: list[dict[str, Any]]) -> tuple[tuple[bytes, bytes | None], ...]:
    return tuple((bytes.fromhex(row["entry"]), unhex(row["payload"])) for row in rows)


def message_from_json(kind: str, fields: dict[str, Any]) -> Message:
    if kind == "hello":
        return Hello(tuple(fields["versions"]), bool(fields["relay"]),
                     unhex(fields["clock_digest"]))
    if kind == "clock":
        return Clock(bool(fields["reset"]), tuple(note_of(n) for n in fields["notes"]),
                     bool(fields["final"]))
    if kind == "entries":
        return Entries(feed_of(fields), items_of(fields["items"]))
    if kind == "partial-request":
        return PartialRequest(fields["request_id"], feed_of(fields), fields["count"])
    if kind == "partial-response":
        return PartialResponse(fields["request_id"], items_of(fields["items"]))
    if kind == "fork-proof":
        return ForkProofMessage(bytes.fromhex(fields["proof"]))
    if kind == "peers":
        return Peers(tuple((a["host"], a["port"]) for a in fields["addresses"]))
    if kind == "ping":
        assert fields == {}
        return Ping()
    if kind == "seq-request":
        return SeqRequest(fields["request_id"], feed_of(fields), tuple(fields["seqs"]),
                          bool(fields["payloads"]))
    if kind == "seq-response":
        return SeqResponse(fields["request_id"], items_of(fields["items"]))
    assert kind == "error", kind
    return ErrorMessage(fields["code"], fields["detail"])


KINDS = {
    Hello: "hello", Clock: "clock", Entries: "entries", PartialRequest: "partial-request",
    PartialResponse: "partial-response", ForkProofMessage: "fork-proof", Peers: "peers",
    Ping: "ping", ErrorMessage: "error", SeqRequest: "seq-request",
    SeqResponse: "seq-response",
}


# -- channels with the vector's keys ----------------------------------------------------


def key(side: str, which: str) -> bytes:
    return bytes.fromhex(HANDSHAKE[side][which])


NETWORK_KEY = bytes.fromhex(HANDSHAKE["network_key"])


def channel(side: str) -> Channel:
    return Channel(initiator=side == "initiator", static_private=key(side, "static_private"),
                   network_key=NETWORK_KEY, ephemeral_private=key(side, "ephemeral_private"))


def channels() -> tuple[Channel, Channel]:
    """The initiator and responder of handshake.json, before the handshake."""
    return channel("initiator"), channel("responder")


def frames_of(index: int) -> bytes:
    return bytes.fromhex(HANDSHAKE["messages"][index]["frame"])


def established() -> tuple[Channel, Channel]:
    initiator, responder = channels()
    initiator.start()
    initiator.data_to_send()
    responder.receive_data(frames_of(0))
    responder.data_to_send()
    initiator.receive_data(frames_of(1))
    initiator.data_to_send()
    responder.receive_data(frames_of(2))
    assert initiator.established and responder.established
    return initiator, responder


def to_responder(plaintext: bytes, nonce: int = 0) -> bytes:
    """``plaintext`` sealed into one transport frame with the vector's key."""
    cipher = CipherState(bytes.fromhex(HANDSHAKE["transport_keys"]["initiator_to_responder"]),
                         nonce)
    sealed = cipher.encrypt_with_ad(b"", plaintext)
    return len(sealed).to_bytes(2, "big") + sealed


# -- handshake.json ---------------------------------------------------------------------


def test_keys_prologue_and_psk() -> None:
    assert HANDSHAKE["protocol_name"] == PROTOCOL_NAME.decode()
    assert HANDSHAKE["protocol_name"] == "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b"
    default = HANDSHAKE["default_network_key"]
    made = hashlib.blake2b(default["text"].encode(), digest_size=32).digest()
    assert made.hex() == default["key"] == DEFAULT_NETWORK_KEY.hex()
    assert bytes.fromhex(HANDSHAKE["prologue"]) == b"tidings/transport/2" == PROLOGUE
    assert HANDSHAKE["psk"] == HANDSHAKE["network_key"]
    for side in ("initiator", "responder"):
        for kind in ("static", "ephemeral"):
            assert public_key(key(side, f"{kind}_private")) == key(side, f"{kind}_public")


def test_noise_handshake_byte_for_byte() -> None:
    sides = [
        NoiseHandshake(initiator=side == "initiator", static_private=key(side, "static_private"),
                       prologue=bytes.fromhex(HANDSHAKE["prologue"]),
                       ephemeral_private=key(side, "ephemeral_private"),
                       psks=(bytes.fromhex(HANDSHAKE["psk"]),))
        for side in ("initiator", "responder")
    ]
    for step, message in enumerate(HANDSHAKE["messages"]):
        sender, receiver = sides[step % 2], sides[1 - step % 2]
        assert message["from"] == ("initiator", "responder")[step % 2]
        payload = bytes.fromhex(message["payload"])
        written = sender.write_message(payload)
        assert written.hex() == message["message"]
        assert len(written).to_bytes(2, "big") + written == bytes.fromhex(message["frame"])
        assert receiver.read_message(written) == payload
    assert [len(bytes.fromhex(m["message"])) for m in HANDSHAKE["messages"]] == [48, 96, 64]
    for side in sides:
        assert side.handshake_hash.hex() == HANDSHAKE["handshake_hash"]
    (i_send, i_receive), (r_send, r_receive) = sides[0].split(), sides[1].split()
    keys = HANDSHAKE["transport_keys"]
    assert i_send.k is not None and i_receive.k is not None
    assert i_send.k.hex() == keys["initiator_to_responder"] == (r_receive.k or b"").hex()
    assert i_receive.k.hex() == keys["responder_to_initiator"] == (r_send.k or b"").hex()


def test_channel_handshake_byte_for_byte() -> None:
    initiator, responder = channels()
    initiator.start()
    assert initiator.data_to_send() == frames_of(0)
    responder.receive_data(frames_of(0))
    assert responder.data_to_send() == frames_of(1)
    initiator.receive_data(frames_of(1))
    assert initiator.data_to_send() == frames_of(2)
    responder.receive_data(frames_of(2))
    assert initiator.remote_static == key("responder", "static_public")
    assert responder.remote_static == key("initiator", "static_public")


def test_transport_frames() -> None:
    initiator, responder = established()
    keys = HANDSHAKE["transport_keys"]
    ciphers = {
        "initiator": CipherState(bytes.fromhex(keys["initiator_to_responder"])),
        "responder": CipherState(bytes.fromhex(keys["responder_to_initiator"])),
    }
    for frame in HANDSHAKE["frames"]:
        sender, receiver = ((initiator, responder) if frame["from"] == "initiator"
                            else (responder, initiator))
        messages = [decode_message(bytes.fromhex(m["body"])) for m in frame["messages"]]
        for message, row in zip(messages, frame["messages"], strict=True):
            assert KINDS[type(message)] == row["kind"]
            assert encode_message(message).hex() == row["body"]
            sender.send(message)
        data = sender.data_to_send()
        assert data.hex() == frame["frame"]
        plaintext = b"".join(
            len(body).to_bytes(4, "big") + body
            for body in (bytes.fromhex(m["body"]) for m in frame["messages"])
        )
        assert plaintext.hex() == frame["plaintext"]
        cipher = ciphers[frame["from"]]
        assert cipher.n == frame["nonce"]
        assert cipher.decrypt_with_ad(b"", data[2:]) == plaintext
        receiver.receive_data(data)
        assert receiver.messages() == messages


@pytest.mark.parametrize("case", by_name(HANDSHAKE["invalid"]))
def test_invalid_handshake_input(case: dict[str, Any]) -> None:
    initiator, responder = channels()
    stage = case["stage"]
    if stage == "message-1":
        receiver = responder
    elif stage == "message-2":
        initiator.start()
        initiator.data_to_send()
        receiver = initiator
    elif stage == "message-3":
        responder.receive_data(frames_of(0))
        responder.data_to_send()
        receiver = responder
    else:
        assert stage == "transport"
        initiator, responder = established()
        receiver = responder
    with pytest.raises(PeerError) as raised:
        receiver.receive_data(bytes.fromhex(case["input"]))
    assert raised.value.code == case["code"]
    if stage != "transport":
        # A failed handshake is never answered, and leaves no channel to send on.
        assert receiver.data_to_send() == b""
        assert not receiver.established


# -- wire.json: messages ----------------------------------------------------------------


@pytest.mark.parametrize("case", by_name(WIRE["messages"]))
def test_message(case: dict[str, Any]) -> None:
    body = bytes.fromhex(case["body"])
    decoded = decode_message(body)
    assert case["type"] == decoded.TYPE
    assert KINDS[type(decoded)] == case["kind"]
    assert decoded == message_from_json(case["kind"], case["fields"])
    assert encode_message(decoded) == body
    assert bytes.fromhex(case["stream"]) == len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize("case", by_name(WIRE["bounds"]))
def test_message_at_a_bound(case: dict[str, Any]) -> None:
    body = body_of(case)
    decoded = decode_message(body)
    assert (decoded.TYPE, KINDS[type(decoded)]) == (case["type"], case["kind"])
    assert encode_message(decoded) == body


@pytest.mark.parametrize("case", by_name(WIRE["noncanonical"]))
def test_noncanonical_encoding_is_accepted(case: dict[str, Any]) -> None:
    canonical = bytes.fromhex(case["canonical"])
    decoded = decode_message(bytes.fromhex(case["body"]))
    assert decoded == decode_message(canonical)
    assert encode_message(decoded) == canonical


@pytest.mark.parametrize("case", by_name(WIRE["invalid"]))
def test_invalid_body(case: dict[str, Any]) -> None:
    with pytest.raises(PeerError) as raised:
        decode_message(body_of(case))
    assert raised.value.code == case["code"]


@pytest.mark.parametrize("case", by_name(WIRE["streams"]))
def test_stream(case: dict[str, Any]) -> None:
    _, responder = established()
    data = to_responder(bytes.fromhex(case["stream"]))
    if case["code"] is None:
        responder.receive_data(data)
    else:
        with pytest.raises(PeerError) as raised:
            responder.receive_data(data)
        assert raised.value.code == case["code"]
    expected = [decode_message(bytes.fromhex(body)) for body in case["messages"]]
    assert responder.messages() == expected


# -- wire.json: sessions and the opening clock -----------------------------------------


@pytest.mark.parametrize("case", by_name(WIRE["sessions"]))
def test_session_start(case: dict[str, Any]) -> None:
    initiator, responder = established()
    session = Session(responder, LocalClock())
    assert session.receive_data(b"") == [Authenticated(initiator.local_static)]
    session.start()
    initiator.receive_data(session.data_to_send())  # the node's own hello
    for body in case["messages"]:
        initiator.send(decode_message(bytes.fromhex(body)))
    data = initiator.data_to_send()
    events = session.receive_data(data)
    if case["code"] is None:
        assert not any(isinstance(event, Failed) for event in events)
        assert session.version == case["version"]
        return
    failed = events[-1]
    assert isinstance(failed, Failed) and session.state in TERMINAL
    error = failed.error
    assert error.code == case["code"]
    if isinstance(error, ClosedByPeer):
        sent = decode_message(bytes.fromhex(case["messages"][-1]))
        assert isinstance(sent, ErrorMessage) and error.remote_code == sent.code
        return
    # The session queued the error message the node sends before it closes.
    initiator.receive_data(session.data_to_send())
    last = initiator.messages()[-1]
    assert isinstance(last, ErrorMessage) and last.code == case["code"]


def notes_of(rows: list[dict[str, Any]]) -> dict[FeedId, Note]:
    return dict(note_of(row) for row in rows)


@pytest.mark.parametrize("case", by_name(WIRE["opening"]))
def test_opening_clock(case: dict[str, Any]) -> None:
    local = LocalClock({feed_of(row): row["seq"] for row in case["local"]["heads"]},
                       {feed_of(row): bytes.fromhex(row["head"])
                        for row in case["local"]["heads"]},
                       {feed_of(row) for row in case["local"]["wanted"]})
    initiator, responder = established()
    session = Session(responder, local)
    session.receive_data(b"")  # the handshake is done: authenticated
    session.start(sent=notes_of(case["sent"]), received=notes_of(case["received"]))
    initiator.receive_data(session.data_to_send())
    (hello,) = initiator.messages()
    assert encode_message(hello).hex() == case["hello"]
    initiator.send(decode_message(bytes.fromhex(case["peer_hello"])))
    session.receive_data(initiator.data_to_send())
    initiator.receive_data(session.data_to_send())
    (clock,) = initiator.messages()
    assert isinstance(clock, Clock)
    expected = case["clock"]
    assert (int(clock.reset), int(clock.final)) == (expected["reset"], expected["final"])
    assert dict(clock.notes) == notes_of(expected["notes"])
    assert len(clock.notes) == len(expected["notes"])


@pytest.mark.parametrize("case", by_name(WIRE["clock_digests"]))
def test_clock_digest(case: dict[str, Any]) -> None:
    notes = [note_of(row) for row in case["notes"]]
    ordered = sorted(notes, key=lambda fn: (fn[0].author_key, fn[0].log_id.encode("ascii")))
    written = b"".join(
        feed.author_key + len(feed.log_id).to_bytes(1, "big") + feed.log_id.encode("ascii")
        + note.seq.to_bytes(8, "big") + note.flags.to_bytes(1, "big") + (note.head or bytes(8))
        for feed, note in ordered
    )
    assert written.hex() == case["input"]
    assert hashlib.blake2b(written, digest_size=32).hexdigest() == case["digest"]
    assert clock_digest(dict(notes)).hex() == case["digest"]


def test_every_message_type_and_error_code_is_covered() -> None:
    assert {case["kind"] for case in WIRE["messages"]} == set(KINDS.values())
    codes = {case["code"] for case in WIRE["invalid"]} | {
        case["code"] for case in WIRE["streams"] + WIRE["sessions"] if case["code"]
    } | {case["code"] for case in HANDSHAKE["invalid"]}
    assert codes == {"handshake", "bad-frame", "oversize", "malformed", "version",
                     "unexpected", "remote-error"}


# -- handshake.json: LAN beacons (spec 08 section 7) --------------------------------------

BEACONS = HANDSHAKE["lan_beacons"]


def test_a_beacon_byte_for_byte() -> None:
    beacon = bytes.fromhex(BEACONS["beacon"])
    assert len(beacon) == BEACON_SIZE == 47
    assert make_beacon(NETWORK_KEY, BEACONS["port"], bytes.fromhex(BEACONS["nonce"])) == beacon
    assert read_beacon(NETWORK_KEY, beacon) == BEACONS["port"]
    body = b"tidings-lan/1" + BEACONS["port"].to_bytes(2, "big") + bytes.fromhex(BEACONS["nonce"])
    assert beacon == body + hashlib.blake2b(body, key=NETWORK_KEY, digest_size=16).digest()


@pytest.mark.parametrize("case", by_name(BEACONS["ignored"]))
def test_datagrams_a_receiver_ignores(case: dict[str, Any]) -> None:
    assert read_beacon(NETWORK_KEY, bytes.fromhex(case["datagram"])) is None
