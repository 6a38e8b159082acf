"""spec/vectors/identity.json (spec/12): loaded, never copied here.

``tools/make_vectors.py --check`` (run by test_vectors.py) keeps the file in step
with the code; these tests check that the library agrees with every case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.core import kel
from tidings.core.entry import decode_entry
from tidings.core.invite import InvalidInvite, parse_invite, parse_pairing_request
from tidings.core.merge import merge
from tidings.errors import InvalidId, PeerError
from tidings.keyfile import KeyFileError, derive_key, parse_key_file, secret_from_phrase
from tidings.wire.messages import decode_identity_message, encode_identity_message

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "spec" / "vectors"
                      / "identity.json").read_text(encoding="utf-8"))
IDENTITY = bytes.fromhex(VECTORS["identity"])
EVENTS = {e["name"]: e for e in VECTORS["events"]}
KEYS = {k["name"]: k for k in VECTORS["keys"]}


def raws(names: list[str]) -> list[bytes]:
    return [bytes.fromhex(EVENTS[n]["hex"]) for n in names]


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


@pytest.mark.parametrize("row", VECTORS["keys"], ids=lambda r: r["name"])
def test_keys(row: dict[str, Any]) -> None:
    secret = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(row["seed"]))
    assert kel.public_bytes(secret).hex() == row["public_key"]


def test_identity_text() -> None:
    assert kel.format_identity(IDENTITY) == VECTORS["identity_text"]
    for row in VECTORS["identity_ids"]["valid"]:
        assert kel.parse_identity(row["text"]).hex() == row["identity"]
    for row in VECTORS["identity_ids"]["invalid"]:
        with pytest.raises(InvalidId) as caught:
            kel.parse_identity(row["text"])
        assert caught.value.reason == row["reason"]


@pytest.mark.parametrize("row", VECTORS["events"], ids=lambda r: r["name"])
def test_event_decodes_to_its_fields(row: dict[str, Any]) -> None:
    raw = bytes.fromhex(row["hex"])
    event = kel.decode_event(raw)
    assert kel.KIND_NAMES[event.kind] == row["kind"] and event.seq == row["seq"]
    assert event.hash.hex() == row["hash"] == kel.event_hash(raw).hex()
    assert event.body.hex() == row["body"] and event.signature.hex() == row["signature"]
    assert (event.prev.hex() if event.prev else None) == row["prev"]
    assert (event.identity.hex() if event.identity else None) == row["identity"]
    signer = bytes.fromhex(KEYS[row["signer"]]["public_key"])
    assert kel.verify_signature(signer, event.signature, event.body)
    fields = row["fields"]
    for attr in ("root_key", "next_digest", "est", "next_key", "device_key", "device_sig"):
        value = getattr(event, attr)
        assert (value.hex() if value is not None else None) == fields.get(attr)
    assert event.name == fields.get("name")
    if "cuts" in fields:
        assert [[c.log_id, c.seq, c.entry_hash.hex()] for c in event.cuts] == \
            [[c["log_id"], c["seq"], c["entry_hash"]] for c in fields["cuts"]]
    if "revocations" in fields:
        assert [(r.device_key.hex(), [[c.log_id, c.seq, c.entry_hash.hex()] for c in r.cuts])
                for r in event.revocations] == \
            [(r["device_key"], [[c["log_id"], c["seq"], c["entry_hash"]] for c in r["cuts"]])
             for r in fields["revocations"]]


def state_json(state: kel.IdentityState) -> dict[str, Any]:
    def hx(value: bytes | None) -> str | None:
        return None if value is None else value.hex()

    return {
        "status": state.status, "seq": state.seq, "head": hx(state.head),
        "root_key": hx(state.root_key), "next_digest": hx(state.next_digest),
        "est": hx(state.est),
        "devices": sorted(({"key": d.key.hex(), "name": d.name, "added_seq": d.added_seq,
                            "revoked_seq": d.revoked_seq,
                            "cuts": [{"log_id": c.log_id, "seq": c.seq,
                                      "entry_hash": c.entry_hash.hex()}
                                     for c in sorted(d.cuts.values())]}
                           for d in state.devices.values()), key=lambda d: d["key"]),
        "rotations": [[seq, key.hex()] for seq, key in state.rotations],
        "chain": [h.hex() for h in state.chain], "fork_seq": state.fork_seq,
        "fork_proof": sorted(h.hex() for h in state.fork_proof), "dead_seq": state.dead_seq,
        "dead_proof": sorted(h.hex() for h in state.dead_proof),
    }


@pytest.mark.parametrize("case", VECTORS["folds"], ids=ids(VECTORS["folds"]))
def test_folds(case: dict[str, Any]) -> None:
    state = kel.fold(IDENTITY, raws(case["events"]))
    assert state_json(state) == case["expected"]
    for name, expected in case["outcomes"].items():
        assert state.outcomes[bytes.fromhex(EVENTS[name]["hash"])] == expected, name


@pytest.mark.parametrize("case", VECTORS["refusals"], ids=ids(VECTORS["refusals"]))
def test_refusals(case: dict[str, Any]) -> None:
    context = raws(case["context"])
    before = [bytes.fromhex(x) for x in case["before"]]
    raw = bytes.fromhex(case["hex"])
    state = kel.fold(IDENTITY, [*context, *before, raw])
    digest = kel.event_hash(raw)
    assert state.outcomes[digest] == case["rule"]
    assert state.refusals[digest].seq == case["seq"]
    assert state == kel.fold(IDENTITY, context)


def test_every_rule_has_a_refusal_vector() -> None:
    covered = {case["rule"] for case in VECTORS["refusals"]}
    # too-many-devices needs 257 events: tests/test_identity_kel.py checks it.
    assert covered == set(kel.IDENTITY_RULES) - {"too-many-devices"}


@pytest.mark.parametrize("case", VECTORS["merge"]["cases"], ids=ids(VECTORS["merge"]["cases"]))
def test_merged_view(case: dict[str, Any]) -> None:
    state = kel.fold(IDENTITY, raws(case["events"]))
    entries = [decode_entry(bytes.fromhex(e["hex"])) for e in VECTORS["merge"]["entries"]]
    view = merge(state, case["log_id"], entries[::-1])
    assert [{"feed_id": str(i.feed), "seq": i.seq} for i in view] == case["order"]


def test_invites() -> None:
    for row in VECTORS["invites"]["valid"]:
        invite = parse_invite(row["text"])
        assert invite.identity.hex() == row["identity"] and list(invite.logs) == row["logs"]
        assert [list(a) for a in invite.addresses] == row["addresses"]
        assert invite.payload().hex() == row["payload"] and str(invite) == row["text"]
    for row in VECTORS["invites"]["invalid"]:
        with pytest.raises(InvalidInvite) as caught:
            parse_invite(row["text"])
        assert caught.value.reason == row["reason"], row["name"]


def test_pairing_requests() -> None:
    for row in VECTORS["pairing"]["valid"]:
        request = parse_pairing_request(row["text"])
        assert request.device_key.hex() == row["device_key"] and request.name == row["name"]
        assert kel.device_claim(request.identity, request.device_key, request.name).hex() \
            == row["claim"]
        assert request.code == row["code"] and str(request) == row["text"]
    for row in VECTORS["pairing"]["invalid"]:
        with pytest.raises(InvalidInvite) as caught:
            parse_pairing_request(row["text"])
        assert caught.value.reason == row["reason"], row["name"]


def test_key_files() -> None:
    for row in VECTORS["key_files"]["valid"]:
        sealed = parse_key_file(row["text"])
        assert (sealed.kind, sealed.log2_n) == (row["kind"], row["log2_n"])
        assert sealed.header().hex() == row["associated_data"]
        assert sealed.ciphertext.hex() == row["ciphertext"]
        assert derive_key(row["passphrase"], sealed.salt, sealed.log2_n).hex() == \
            row["derived_key"]
        assert sealed.open(row["passphrase"]).private_bytes_raw().hex() == row["seed"]
        assert str(sealed) == row["text"]
    for row in VECTORS["key_files"]["invalid"]:
        if row["reason"] is None:
            parse_key_file(row["text"]).open(row["passphrase"])
            continue
        with pytest.raises(KeyFileError) as caught:
            parse_key_file(row["text"]).open(row["passphrase"])
        assert caught.value.reason == row["reason"], row["name"]


def test_recovery_phrases() -> None:
    for row in VECTORS["recovery_phrases"]["valid"]:
        assert secret_from_phrase(row["phrase"]).private_bytes_raw().hex() == row["seed"]
    for row in VECTORS["recovery_phrases"]["invalid"]:
        with pytest.raises(KeyFileError) as caught:
            secret_from_phrase(row["phrase"])
        assert caught.value.reason == row["reason"]


def test_identity_messages() -> None:
    for row in VECTORS["wire"]["valid"]:
        body = bytes.fromhex(row["hex"])
        assert encode_identity_message(decode_identity_message(body)) == body
    for row in VECTORS["wire"]["invalid"]:
        with pytest.raises(PeerError) as caught:
            decode_identity_message(bytes.fromhex(row["hex"]))
        assert caught.value.code == row["code"], row["name"]
