"""The identity vectors, ``spec/vectors/identity.json`` (spec/12-identity.md).

Called by ``tools/make_vectors.py``. Valid data is made with the library; every
expected outcome (rule, status, seq, devices, merged order, reason) is written
here from the spec, never read back from the library's fold.
"""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tidings.core import kel
from tidings.core.entry import Entry, sign_entry
from tidings.core.ids import FeedId
from tidings.core.invite import Invite, PairingRequest, armor, pairing_code
from tidings.core.kel import Cut, Event, Revocation
from tidings.core.lipmaa import link_target
from tidings.keyfile import KIND_NEXT, KIND_ROOT, SealedKey, derive_key, recovery_phrase, seal_key
from tidings.wire.messages import (
    IdentityEvents,
    IdentityMessage,
    IdentityNote,
    IdentityNotes,
    IdentityRequest,
    encode_identity_message,
)

KEY_NAMES = ["root0", "next1", "root1", "next2", "laptop", "phone", "tablet", "thief-device",
             "mallory", "thief-root", "thief-next", "other-root", "other-next"]
T0 = 1_700_000_000_000_000
MINUTE = 60_000_000


def seed(name: str) -> bytes:
    return hashlib.blake2b(b"tidings identity vectors " + name.encode(), digest_size=32).digest()


KEYS = {name: Ed25519PrivateKey.from_private_bytes(seed(name)) for name in KEY_NAMES}
PUB = {name: kel.public_bytes(secret) for name, secret in KEYS.items()}
NAME_OF_KEY = {value: name for name, value in PUB.items()}


def hx(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def feed_entries(device: str, log_id: str, minutes: list[int]) -> list[Entry]:
    entries: list[Entry] = []
    for seq, minute in enumerate(minutes, start=1):
        target = link_target(seq)
        entries.append(sign_entry(
            KEYS[device], log_id=log_id, seq=seq, timestamp=T0 + minute * MINUTE,
            payload=f"{device} {log_id} {seq}".encode(),
            backlink=entries[-1].hash if seq > 1 else None,
            lipmaa_link=entries[target - 1].hash if target is not None else None))
    return entries


#: The devices' feeds used by the cuts and the merged view (minutes after T0).
FEEDS = {
    ("laptop", "blog"): feed_entries("laptop", "blog", [1, 3, 5]),
    ("phone", "blog"): feed_entries("phone", "blog", [2, 4, 4, 6]),
    ("phone", "notes"): feed_entries("phone", "notes", [8]),
    ("tablet", "blog"): feed_entries("tablet", "blog", [4, 7]),
}


def state_of(events: list[Event]) -> kel.IdentityState:
    return kel.fold(events[0].hash, [e.raw for e in events])


def event_json(name: str, event: Event, signer: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for attr in ("root_key", "next_digest", "est", "next_key", "device_key", "device_sig"):
        value = getattr(event, attr)
        if value is not None:
            fields[attr] = value.hex()
    if event.name is not None:
        fields["name"] = event.name
    if event.kind == kel.ROTATION:
        fields["revocations"] = [
            {"device_key": r.device_key.hex(),
             "cuts": [{"log_id": c.log_id, "seq": c.seq, "entry_hash": c.entry_hash.hex()}
                      for c in r.cuts]} for r in event.revocations]
    if event.kind == kel.DEVICE_REVOKE:
        fields["cuts"] = [{"log_id": c.log_id, "seq": c.seq, "entry_hash": c.entry_hash.hex()}
                          for c in event.cuts]
    return {"name": name, "kind": kel.KIND_NAMES[event.kind], "seq": event.seq,
            "identity": hx(event.identity), "prev": hx(event.prev), "signer": signer,
            "fields": fields, "hex": event.raw.hex(), "hash": event.hash.hex(),
            "body": event.body.hex(), "signature": event.signature.hex()}


def make_identity() -> dict[str, Any]:
    k, p = KEYS, PUB
    # -- the honest history -------------------------------------------------------
    inception = kel.make_inception(k["root0"], p["next1"])
    identity = inception.hash
    history: list[Event] = [inception]
    named: dict[str, tuple[Event, str]] = {"inception": (inception, "root0")}

    def claim(device: str, name: str) -> bytes:
        return kel.sign_device_claim(k[device], identity, name)

    def push(name: str, event: Event, signer: str) -> Event:
        history.append(event)
        named[name] = (event, signer)
        return event

    push("add-laptop", kel.make_device_add(k["root0"], state_of(history), p["laptop"],
                                           "laptop", claim("laptop", "laptop")), "root0")
    after_laptop = state_of(history)
    push("add-phone", kel.make_device_add(k["root0"], after_laptop, p["phone"], "Ana's phone",
                                          claim("phone", "Ana's phone")), "root0")
    phone_blog, phone_notes = FEEDS[("phone", "blog")], FEEDS[("phone", "notes")]
    phone_cuts = [Cut("blog", 3, phone_blog[2].hash), Cut("notes", 1, phone_notes[0].hash)]
    push("revoke-phone", kel.make_device_revoke(k["root0"], state_of(history), p["phone"],
                                                phone_cuts), "root0")
    before_rotation = state_of(history)
    laptop_cut = Cut("blog", 2, FEEDS[("laptop", "blog")][1].hash)
    push("rotation", kel.make_rotation(k["next1"], before_rotation, p["root1"], p["next2"],
                                       [Revocation(p["laptop"], (laptop_cut,))]), "next1")
    push("add-tablet", kel.make_device_add(k["root1"], state_of(history), p["tablet"],
                                           "tablet", claim("tablet", "tablet")), "root1")
    whole = state_of(history)
    h = {name: event.hash for name, (event, _) in named.items()}

    # -- adversaries' events ------------------------------------------------------
    thief_add = kel.make_device_add(k["root0"], after_laptop, p["thief-device"], "evil",
                                    claim("thief-device", "evil"))
    named["thief-add-at-3"] = (thief_add, "root0")
    stale = kel.make_device_add(k["root0"], whole, p["thief-device"], "evil",
                                claim("thief-device", "evil"))
    named["stale-add-at-7"] = (stale, "root0")
    double = kel.make_rotation(k["next1"], before_rotation, p["thief-root"], p["thief-next"])
    named["second-rotation-at-5"] = (double, "next1")
    recovery = kel.make_rotation(k["next1"], after_laptop, p["root1"], p["next2"])
    named["rotation-at-3"] = (recovery, "next1")
    for name in ("thief-add-at-3", "stale-add-at-7", "second-rotation-at-5", "rotation-at-3"):
        h[name] = named[name][0].hash

    def devices(*rows: tuple[str, str, int, int | None, list[Cut]]) -> list[dict[str, Any]]:
        out = [{"key": p[dev].hex(), "name": name, "added_seq": added, "revoked_seq": revoked,
                "cuts": [{"log_id": c.log_id, "seq": c.seq, "entry_hash": c.entry_hash.hex()}
                         for c in cuts]} for dev, name, added, revoked, cuts in rows]
        return sorted(out, key=lambda d: d["key"])

    laptop_row: tuple[str, str, int, int | None, list[Cut]] = ("laptop", "laptop", 2, None, [])
    honest_devices = devices(("laptop", "laptop", 2, 5, [laptop_cut]),
                             ("phone", "Ana's phone", 3, 4, phone_cuts),
                             ("tablet", "tablet", 6, None, []))
    honest = ["inception", "add-laptop", "add-phone", "revoke-phone", "rotation", "add-tablet"]

    def expect(status: str, head: str | None, seq: int, root: str | None, next_key: str | None,
               est: str | None, devs: list[dict[str, Any]], rotations: list[list[Any]],
               chain: list[str], **extra: Any) -> dict[str, Any]:
        return {"status": status, "seq": seq, "head": hx(h.get(head)) if head else None,
                "root_key": hx(p[root]) if root else None,
                "next_digest": hx(kel.key_digest(p[next_key])) if next_key else None,
                "est": hx(h[est]) if est else None, "devices": devs,
                "rotations": rotations, "chain": [h[c].hex() for c in chain],
                "fork_seq": extra.get("fork_seq"),
                "fork_proof": sorted(h[x].hex() for x in extra.get("fork_proof", [])),
                "dead_seq": extra.get("dead_seq"),
                "dead_proof": sorted(h[x].hex() for x in extra.get("dead_proof", []))}

    folds = [
        {"name": "history", "description": "the whole honest history: applied in full",
         "events": honest,
         "expected": expect("active", "add-tablet", 6, "root1", "next2", "rotation",
                            honest_devices, [[5, p["root1"].hex()]], honest),
         "outcomes": {n: "applied" for n in honest}},
        {"name": "history-reversed", "description": "the same events in reverse order",
         "events": honest[::-1],
         "expected": expect("active", "add-tablet", 6, "root1", "next2", "rotation",
                            honest_devices, [[5, p["root1"].hex()]], honest),
         "outcomes": {n: "applied" for n in honest}},
        {"name": "before-rotation", "description": "the first four events",
         "events": honest[:4],
         "expected": expect("active", "revoke-phone", 4, "root0", "next1", "inception",
                            devices(laptop_row, ("phone", "Ana's phone", 3, 4, phone_cuts)),
                            [], honest[:4]),
         "outcomes": {n: "applied" for n in honest[:4]}},
        {"name": "superseded",
         "description": "a thief holding root0 added a device at seq 3; the rotation at seq 5 "
                        "follows the owner's event 3, so the thief's branch is superseded",
         "events": [*honest, "thief-add-at-3"],
         "expected": expect("active", "add-tablet", 6, "root1", "next2", "rotation",
                            honest_devices, [[5, p["root1"].hex()]], honest),
         "outcomes": {**{n: "applied" for n in honest}, "thief-add-at-3": "superseded"}},
        {"name": "forked",
         "description": "two device-adds at seq 3, both signed by root0, no rotation after "
                        "either: the log is forked at 3 and reads as its first two events",
         "events": ["inception", "add-laptop", "add-phone", "thief-add-at-3"],
         "expected": expect("forked", "add-laptop", 2, "root0", "next1", "inception",
                            devices(laptop_row), [], ["inception", "add-laptop"], fork_seq=3,
                            fork_proof=["add-phone", "thief-add-at-3"]),
         "outcomes": {"inception": "applied", "add-laptop": "applied",
                      "add-phone": "disputed", "thief-add-at-3": "disputed"}},
        {"name": "fork-decided",
         "description": "the forked log of 'forked' and a rotation after event 2: both "
                        "device-adds at 3 are superseded",
         "events": ["inception", "add-laptop", "add-phone", "thief-add-at-3", "rotation-at-3"],
         "expected": expect("active", "rotation-at-3", 3, "root1", "next2", "rotation-at-3",
                            devices(laptop_row), [[3, p["root1"].hex()]],
                            ["inception", "add-laptop", "rotation-at-3"]),
         "outcomes": {"inception": "applied", "add-laptop": "applied",
                      "add-phone": "superseded", "thief-add-at-3": "superseded",
                      "rotation-at-3": "applied"}},
        {"name": "dead",
         "description": "next1 signed two rotations: the identity is dead as of the "
                        "inception, whose next key it was",
         "events": [*honest, "second-rotation-at-5"],
         "expected": expect("dead", "inception", 1, "root0", "next1", "inception", [], [],
                            ["inception"], dead_seq=1,
                            dead_proof=["rotation", "second-rotation-at-5"]),
         "outcomes": {"inception": "applied", **{n: "disputed" for n in honest[1:]},
                      "second-rotation-at-5": "disputed"}},
        {"name": "dead-without-the-branch",
         "description": "the two rotations and the inception alone: the claims need only the "
                        "establishment event they name",
         "events": ["inception", "rotation", "second-rotation-at-5"],
         "expected": expect("dead", "inception", 1, "root0", "next1", "inception", [], [],
                            ["inception"], dead_seq=1,
                            dead_proof=["rotation", "second-rotation-at-5"]),
         "outcomes": {"inception": "applied", "rotation": "disputed",
                      "second-rotation-at-5": "disputed"}},
        {"name": "stale-key",
         "description": "root0 signs a device-add after the rotation away from it",
         "events": [*honest, "stale-add-at-7"],
         "expected": expect("active", "add-tablet", 6, "root1", "next2", "rotation",
                            honest_devices, [[5, p["root1"].hex()]], honest),
         "outcomes": {**{n: "applied" for n in honest}, "stale-add-at-7": "stale-key"}},
        {"name": "pending",
         "description": "event 3 without event 2: it waits",
         "events": ["inception", "add-phone"],
         "expected": expect("active", "inception", 1, "root0", "next1", "inception", [], [],
                            ["inception"]),
         "outcomes": {"inception": "applied", "add-phone": "pending"}},
        {"name": "no-inception", "description": "nothing without the inception",
         "events": ["add-laptop", "add-phone"],
         "expected": {"status": "unknown", "seq": 0, "head": None, "root_key": None,
                      "next_digest": None, "est": None, "devices": [], "rotations": [],
                      "chain": [], "fork_seq": None, "fork_proof": [], "dead_seq": None,
                      "dead_proof": []},
         "outcomes": {"add-laptop": "pending", "add-phone": "pending"}},
    ]

    # -- refusals: each after a context of honest events ------------------------------
    def body(event: Event) -> list[Any]:
        return list(cbor2.loads(event.body))

    ctx2 = honest[:2]
    at3 = body(kel.make_device_add(k["root0"], after_laptop, p["tablet"], "tablet",
                                   claim("tablet", "tablet")))
    rot = body(named["rotation"][0])
    other = kel.make_inception(k["other-root"], p["other-next"])
    other_add = kel.make_device_add(k["other-root"], state_of([other]), p["tablet"], "t",
                                    kel.sign_device_claim(k["tablet"], other.hash, "t"))
    bad_parent = kel.resign(k["mallory"], at3)
    child = list(at3)
    child[3], child[4] = 4, kel.event_hash(bad_parent)
    noncanon_body = cbor2.dumps(at3)
    seq_at = 3 + 34
    assert noncanon_body[seq_at] == 3
    noncanon_body = noncanon_body[:seq_at] + b"\x18\x03" + noncanon_body[seq_at + 1:]
    small_order = bytes([1]) + bytes(31)

    def signed(secret: str, fields: list[Any]) -> bytes:
        return kel.resign(k[secret], fields)

    def replace(fields: list[Any], index: int, value: Any) -> list[Any]:
        out = list(fields)
        out[index] = value
        return out

    refusals: list[dict[str, Any]] = []

    def refusal(name: str, rule: str, description: str, context: list[str], raw: bytes,
                seq: int | None, extra: tuple[bytes, ...] = ()) -> None:
        refusals.append({"name": name, "rule": rule, "description": description,
                         "context": context, "before": [e.hex() for e in extra],
                         "hex": raw.hex(), "seq": seq})

    refusal("oversize", "oversize", "8193 bytes: over the bound before anything is decoded",
            ctx2, b"\x88" + b"\x00" * 8192, None)
    refusal("malformed-not-cbor", "malformed", "a reserved CBOR byte", ctx2, b"\xfc", None)
    refusal("malformed-map", "malformed", "a map, not an array", ctx2,
            cbor2.dumps({"v": 1}) + kel.SIG_HEAD + bytes(64), None)
    refusal("malformed-no-signature", "malformed", "the body alone", ctx2,
            cbor2.dumps(at3), None)
    refusal("malformed-trailing-byte", "malformed", "a byte after the signature", ctx2,
            signed("root0", at3) + b"\x00", None)
    refusal("malformed-unknown-kind", "malformed", "kind 4", ctx2,
            signed("root0", replace(at3, 1, 4)), None)
    refusal("malformed-extra-field", "malformed", "a device-add with 9 fields", ctx2,
            signed("root0", [*at3, 0]), None)
    refusal("malformed-short-key", "malformed", "a 31-byte device key", ctx2,
            signed("root0", replace(at3, 5, p["tablet"][:31])), None)
    refusal("malformed-name-control", "malformed", "a line feed in the device name", ctx2,
            signed("root0", replace(at3, 6, "tab\nlet")), None)
    refusal("malformed-name-long", "malformed", "a 65-byte device name", ctx2,
            signed("root0", replace(at3, 6, "x" * 65)), None)
    refusal("malformed-inception-seq", "malformed", "an inception at seq 2", [],
            signed("root0", replace(body(inception), 3, 2)), None)
    revoke_body = body(named["revoke-phone"][0])
    refusal("malformed-cuts-unsorted", "malformed", "cuts not in ascending log id order",
            honest[:3], signed("root0", replace(revoke_body, 6, revoke_body[6][::-1])), None)
    refusal("malformed-cut-seq-zero", "malformed", "a cut at seq 0", honest[:3],
            signed("root0", replace(revoke_body, 6, [["blog", 0, bytes(32)]])), None)
    refusal("unknown-version", "unknown-version", "event format 2", ctx2,
            signed("root0", replace(at3, 0, 2)), None)
    refusal("non-canonical", "non-canonical", "seq 3 written 18 03", ctx2,
            noncanon_body + kel.SIG_HEAD + k["root0"].sign(noncanon_body), 3)
    refusal("kel-full", "kel-full", "seq 4097", ctx2,
            signed("root0", replace(at3, 3, 4097)), 4097)
    refusal("wrong-identity", "wrong-identity", "an event of another identity", ctx2,
            other_add.raw, 2)
    refusal("wrong-identity-inception", "wrong-identity",
            "another identity's inception", ctx2, other.raw, 1)
    refusal("wrong-seq", "wrong-seq", "seq 4 naming event 2", ctx2,
            signed("root0", replace(at3, 3, 4)), 4)
    refusal("invalid-ancestor", "invalid-ancestor",
            "names an event that is refused (bad-signature), given before it", ctx2,
            signed("root0", child), 4, (bad_parent,))
    refusal("bad-signature", "bad-signature", "a device-add signed by mallory", ctx2,
            bad_parent, 3)
    refusal("bad-signature-rotation", "bad-signature",
            "a rotation revealing next1 but signed by root0", honest[:4],
            signed("root0", rot), 5)
    refusal("next-key-mismatch", "next-key-mismatch",
            "a thief with root0 tries to rotate: it reveals root0, not the committed key",
            honest[:4], signed("root0", replace(rot, 6, p["root0"])), 5)
    refusal("wrong-establishment", "wrong-establishment", "est names event 2", honest[:4],
            signed("next1", replace(rot, 5, h["add-laptop"])), 5)
    refusal("stale-key", "stale-key", "root0 after the rotation away from it", honest,
            stale.raw, 7)
    refusal("bad-key", "bad-key", "rotation to the small-order key 01 00..00", honest[:4],
            signed("next1", replace(rot, 7, small_order)), 5)
    refusal("key-reuse-root-as-device", "key-reuse", "root0 added as a device", ctx2,
            signed("root0", [*at3[:5], p["root0"], "root",
                             kel.sign_device_claim(k["root0"], identity, "root")]), 3)
    refusal("key-reuse-next-as-device", "key-reuse", "the committed next key as a device",
            ctx2, signed("root0", [*at3[:5], p["next1"], "next",
                                   kel.sign_device_claim(k["next1"], identity, "next")]), 3)
    refusal("key-reuse-old-root", "key-reuse", "a rotation back to root0", honest[:4],
            signed("next1", replace(rot, 7, p["root0"])), 5)
    refusal("key-reuse-device-as-root", "key-reuse", "a rotation to the laptop's key",
            honest[:4], signed("next1", replace(rot, 7, p["laptop"])), 5)
    refusal("bad-device-signature", "bad-device-signature",
            "the tablet agreed to join another identity", ctx2,
            signed("root0", replace(at3, 7, kel.sign_device_claim(k["tablet"], other.hash,
                                                                  "tablet"))), 3)
    refusal("bad-device-signature-forged", "bad-device-signature",
            "mallory signs the tablet's claim", ctx2,
            signed("root0", replace(at3, 7, kel.sign_device_claim(k["mallory"], identity,
                                                                  "tablet"))), 3)
    refusal("device-exists", "device-exists", "the laptop again", ctx2,
            signed("root0", [*at3[:5], p["laptop"], "laptop", claim("laptop", "laptop")]), 3)
    refusal("device-revoked", "device-revoked", "the revoked phone again", honest[:4],
            signed("root0", [1, kel.DEVICE_ADD, identity, 5, h["revoke-phone"], p["phone"],
                             "phone", claim("phone", "phone")]), 5)
    refusal("not-a-device", "not-a-device", "revokes the tablet, never added", ctx2,
            signed("root0", [1, kel.DEVICE_REVOKE, identity, 3, h["add-laptop"],
                             p["tablet"], []]), 3)
    refusal("already-revoked", "already-revoked", "revokes the phone twice", honest[:4],
            signed("root0", [1, kel.DEVICE_REVOKE, identity, 5, h["revoke-phone"],
                             p["phone"], []]), 5)
    refusal("already-revoked-in-rotation", "already-revoked",
            "a rotation that revokes the revoked phone", honest[:4],
            signed("next1", replace(rot, 9, [[p["phone"], []]])), 5)

    # -- identity ids -----------------------------------------------------------------
    text = kel.format_identity(identity)
    ids = {"valid": [{"identity": identity.hex(), "text": text}],
           "invalid": [
               {"text": "ta1" + text[3:], "reason": "wrong-prefix"},
               {"text": text[:-1], "reason": "bad-length"},
               {"text": text[:-1] + "A", "reason": "bad-chars"},
               {"text": text[:-1] + ("a" if text[-1] != "a" else "b"),
                "reason": "bad-checksum"}]}

    # -- merged view ------------------------------------------------------------------
    all_entries = [e for entries in FEEDS.values() for e in entries]
    expected_order = [("laptop", 1), ("phone", 1), ("laptop", 2)]
    expected_order += sorted([("phone", 2), ("phone", 3), ("tablet", 1)],
                             key=lambda x: (p[x[0]], x[1]))
    expected_order += [("tablet", 2)]
    merge_cases = [
        {"name": "blog", "events": honest, "log_id": "blog",
         "description": "laptop cut at 2, phone cut at 3, tablet active; ties at minute 4 "
                        "go by device key, then seq",
         "order": [{"feed_id": str(FeedId(p[d], "blog")), "seq": s} for d, s in expected_order]},
        {"name": "notes", "events": honest, "log_id": "notes",
         "description": "the phone's notes, cut at 1", "order": [
             {"feed_id": str(FeedId(p["phone"], "notes")), "seq": 1}]},
        {"name": "blog-before-revocations", "events": honest[:3], "log_id": "blog",
         "description": "laptop and phone active, the tablet not a device yet",
         "order": [{"feed_id": str(FeedId(p[d], "blog")), "seq": s} for d, s in sorted(
             [("laptop", 1), ("laptop", 2), ("laptop", 3), ("phone", 1), ("phone", 2),
              ("phone", 3), ("phone", 4)],
             key=lambda x: (FEEDS[(x[0], "blog")][x[1] - 1].timestamp, p[x[0]], x[1]))]},
    ]
    merge = {"entries": [{"feed_id": str(e.feed), "seq": e.seq, "hex": e.raw.hex(),
                          "timestamp": e.timestamp} for e in all_entries],
             "cases": merge_cases}

    # -- invites ----------------------------------------------------------------------
    full = Invite(identity, ("blog", "podcast"), (("relay.example.org", 7000), ("::1", 7001),
                                                   ("192.0.2.7", 65535)))
    bare = Invite(identity)

    def armored(value: Any) -> str:
        return armor("tinv1", cbor2.dumps(value))

    full_text = str(full)
    invites = {
        "valid": [{"text": str(inv), "identity": inv.identity.hex(), "logs": list(inv.logs),
                   "addresses": [list(a) for a in inv.addresses],
                   "payload": inv.payload().hex()} for inv in (full, bare)],
        "invalid": [
            {"name": "wrong-prefix", "text": "tinv2" + full_text[5:], "reason": "wrong-prefix"},
            {"name": "short", "text": "tinv1abc", "reason": "bad-length"},
            {"name": "upper-case", "text": full_text.upper(), "reason": "wrong-prefix"},
            {"name": "bad-chars", "text": full_text[:-1] + "1", "reason": "bad-chars"},
            {"name": "bad-checksum", "text": full_text[:12] + (
                "a" if full_text[12] != "a" else "b") + full_text[13:], "reason": "bad-checksum"},
            {"name": "bad-log-id", "text": armored([identity, ["Blog"], []]),
             "reason": "bad-log-id"},
            {"name": "logs-unsorted", "text": armored([identity, ["b", "a"], []]),
             "reason": "malformed"},
            {"name": "zone-id", "text": armored([identity, [], [["fe80::1%eth0", 7000]]]),
             "reason": "bad-host"},
            {"name": "port-zero", "text": armored([identity, [], [["a.example", 0]]]),
             "reason": "malformed"},
            {"name": "address-twice", "text": armored(
                [identity, [], [["a.example", 1], ["a.example", 1]]]), "reason": "malformed"},
            {"name": "short-identity", "text": armored([identity[:31], [], []]),
             "reason": "malformed"},
            {"name": "four-items", "text": armored([identity, [], [], []]),
             "reason": "malformed"},
            {"name": "non-canonical", "text": armor(
                "tinv1", b"\x98\x03" + cbor2.dumps([identity, [], []])[1:]),
             "reason": "non-canonical"},
        ]}

    # -- pairing ----------------------------------------------------------------------
    name = "Ana's phone"
    request = PairingRequest(identity, p["tablet"], name, claim("tablet", name))
    forged = PairingRequest(identity, p["tablet"], name,
                            kel.sign_device_claim(k["mallory"], identity, name))
    pairing = {
        "valid": [{"text": str(request), "identity": identity.hex(),
                   "device_key": p["tablet"].hex(), "name": name,
                   "claim": kel.device_claim(identity, p["tablet"], name).hex(),
                   "device_sig": request.device_sig.hex(),
                   "code": pairing_code(identity, p["tablet"], name)}],
        "invalid": [
            {"name": "forged", "text": str(forged), "reason": "bad-signature"},
            {"name": "invite-prefix", "text": "tinv1" + str(request)[6:],
             "reason": "wrong-prefix"},
            {"name": "control-in-name", "text": armor("tpair1", cbor2.dumps(
                [identity, p["tablet"], "a\tb", bytes(64)])), "reason": "malformed"},
        ]}

    # -- key files --------------------------------------------------------------------
    salt, nonce = bytes(range(16)), bytes(range(100, 112))
    passphrase = "correct horse battery staple"
    accented = "caf\u00e9 na\u00efve"
    root_file = seal_key(k["root0"], kind=KIND_ROOT, identity=identity, passphrase=passphrase,
                         log2_n=10, salt=salt, nonce=nonce)
    next_file = seal_key(k["next1"], kind=KIND_NEXT, identity=identity, passphrase=accented,
                         log2_n=10, salt=salt[::-1], nonce=nonce[::-1])
    wrong_header = SealedKey(KIND_ROOT, identity, p["laptop"], 10, salt, nonce, b"")
    wrong_key = SealedKey(KIND_ROOT, identity, p["laptop"], 10, salt, nonce,
                          ChaCha20Poly1305(derive_key(passphrase, salt, 10)).encrypt(
                              nonce, seed("root0"), wrong_header.header()))
    cheap = SealedKey(KIND_ROOT, identity, p["root0"], 9, salt, nonce,
                      root_file.ciphertext)
    costly = SealedKey(KIND_ROOT, identity, p["root0"], 21, salt, nonce,
                       root_file.ciphertext)
    root_text = str(root_file)

    def file_json(label: str, sealed: SealedKey, secret: str, phrase: str) -> dict[str, Any]:
        return {"name": label, "kind": sealed.kind, "identity": identity.hex(),
                "public_key": sealed.public_key.hex(), "seed": seed(secret).hex(),
                "passphrase": phrase, "log2_n": sealed.log2_n, "r": 8, "p": 1,
                "salt": sealed.salt.hex(), "nonce": sealed.nonce.hex(),
                "derived_key": derive_key(phrase, sealed.salt, sealed.log2_n).hex(),
                "associated_data": sealed.header().hex(),
                "ciphertext": sealed.ciphertext.hex(), "text": str(sealed)}

    key_files = {
        "valid": [file_json("root", root_file, "root0", passphrase),
                  file_json("next", next_file, "next1", accented)],
        "invalid": [
            {"name": "wrong-passphrase", "text": root_text, "passphrase": passphrase + " ",
             "reason": "wrong-passphrase"},
            {"name": "nfd-is-the-same", "text": str(next_file),
             "passphrase": "cafe\u0301 nai\u0308ve", "reason": None},
            {"name": "changed-public-key", "text": str(SealedKey(
                KIND_ROOT, identity, p["laptop"], 10, salt, nonce, root_file.ciphertext)),
             "passphrase": passphrase, "reason": "wrong-passphrase"},
            {"name": "wrong-key", "text": str(wrong_key), "passphrase": passphrase,
             "reason": "wrong-key"},
            {"name": "too-cheap", "text": str(cheap), "passphrase": passphrase,
             "reason": "kdf-cost"},
            {"name": "too-costly", "text": str(costly), "passphrase": passphrase,
             "reason": "kdf-cost"},
            {"name": "bad-checksum", "text": root_text[:40] + (
                "a" if root_text[40] != "a" else "b") + root_text[41:],
             "passphrase": passphrase, "reason": "bad-checksum"},
            {"name": "unknown-kind", "text": armor("tkey1", cbor2.dumps(
                [2, identity, p["root0"], 10, salt, nonce, root_file.ciphertext])),
             "passphrase": passphrase, "reason": "malformed"},
        ]}
    # The standard's own vector pins the word list: 32 zero bytes.
    zero_phrase = " ".join(["abandon"] * 23 + ["art"])
    assert recovery_phrase(Ed25519PrivateKey.from_private_bytes(bytes(32))) == zero_phrase
    next_phrase = recovery_phrase(k["next1"])
    words = next_phrase.split()
    phrases = {
        "valid": [{"seed": bytes(32).hex(), "phrase": zero_phrase},
                  {"seed": seed("next1").hex(), "phrase": next_phrase}],
        "invalid": [
            {"name": "checksum", "phrase": " ".join(["abandon"] * 24), "reason": "bad-phrase"},
            {"name": "23-words", "phrase": " ".join(words[:23]), "reason": "bad-phrase"},
            {"name": "unknown-word", "phrase": " ".join([*words[:23], "tidings"]),
             "reason": "bad-phrase"},
        ]}

    # -- wire -------------------------------------------------------------------------
    note = IdentityNote(identity, 6, h["add-tablet"][:8], 1)
    messages: list[tuple[str, IdentityMessage]] = [
        ("identity-notes", IdentityNotes((note, IdentityNote(other.hash, 0, None, 0)))),
        ("identity-request", IdentityRequest(7, identity, 1)),
        ("identity-events", IdentityEvents(7, identity,
                                           tuple(named[n][0].raw for n in honest[:2]), 1)),
        ("identity-events-pushed", IdentityEvents(None, identity,
                                                  (named["rotation"][0].raw,), 0)),
    ]

    def pack(value: Any) -> str:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
        return packed.hex()

    wire = {
        "valid": [{"name": n, "hex": encode_identity_message(m).hex()} for n, m in messages],
        "invalid": [
            {"name": "note-head-without-seq", "hex": pack([11, [[identity, 0, b"12345678", 0]]]),
             "code": "malformed"},
            {"name": "note-status-without-seq", "hex": pack([11, [[identity, 0, None, 1]]]),
             "code": "malformed"},
            {"name": "note-past-last-seq", "hex": pack([11, [[identity, 4097, b"12345678", 1]]]),
             "code": "malformed"},
            {"name": "request-from-zero", "hex": pack([12, 1, identity, 0]),
             "code": "malformed"},
            {"name": "pushed-with-more", "hex": pack([13, None, identity, [], 1]),
             "code": "malformed"},
            {"name": "event-oversize", "hex": pack([13, 1, identity, [b"\x00" * 8193], 0]),
             "code": "malformed"},
            {"name": "bool-flag", "hex": pack([13, 1, identity, [], False]),
             "code": "malformed"},
        ]}

    events_json = [event_json(name, event, signer) for name, (event, signer) in named.items()]
    return {
        "keys": [{"name": n, "seed": seed(n).hex(), "public_key": PUB[n].hex()}
                 for n in KEY_NAMES],
        "identity": identity.hex(),
        "identity_text": text,
        "events": events_json,
        "folds": folds,
        "refusals": refusals,
        "identity_ids": ids,
        "merge": merge,
        "invites": invites,
        "pairing": pairing,
        "key_files": key_files,
        "recovery_phrases": phrases,
        "wire": wire,
    }
