"""Identities that outlive a device: the key event log (spec/12-identity.md).

An *identity* is a root key that certifies *device keys*. Devices write
ordinary feeds with their own keys, so two devices never fork each other, and a
device key never leaves its machine. The root's history is its **key event
log** (KEL): a small, signed, append-only chain of events, each naming the one
before it by hash:

* ``inception`` (seq 1): the first root key and the digest of the *next* key,
  which stays offline (pre-rotation, as in KERI). The identity id is the hash
  of this event, so the first next-key commitment is fixed by the id itself.
* ``rotation``: reveals the pre-committed next key, signed by it, and names a
  new root key and a new next-key digest; it may revoke devices too.
* ``device-add``: a device key, its name, and the device's own signature
  agreeing to belong to the identity; signed by the root key.
* ``device-revoke``: a device key and, per feed of the device, the last seq
  (and that entry's hash) that stays the identity's; signed by the root key.

:func:`fold` turns any set of events into one :class:`IdentityState`: a pure
function of the set, so every node that holds the same events shows the same
identity, whatever order they arrived in. Forks of the log are resolved there:
a branch that a later rotation vouches for wins over its siblings (they are
*superseded*); two branches without one freeze the identity (*forked*) until a
rotation decides; two rotations revealing one next key mean that key is
compromised, and the identity is *dead*.

Everything here is pure: no clocks, files or sockets.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any, NamedTuple

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tidings.core.entry import is_acceptable_author_key, strict_cbor_item
from tidings.core.ids import (
    AUTHOR_PREFIX,
    FEED_PREFIX,
    IDENTITY_PREFIX,
    INPUT_WHITESPACE,
    KEY_SIZE,
    KEY_TEXT_LEN,
    LOG_ID_PATTERN,
    _b32,
    _unb32,
)
from tidings.core.records import record
from tidings.errors import InvalidId, MalformedEntry, TidingsError

KEL_VERSION = 1
INCEPTION = 0
ROTATION = 1
DEVICE_ADD = 2
DEVICE_REVOKE = 3
KIND_NAMES = {INCEPTION: "inception", ROTATION: "rotation", DEVICE_ADD: "device-add",
              DEVICE_REVOKE: "device-revoke"}
#: Fields of each kind's body, header included (version, kind, identity, seq, prev).
BODY_LENGTHS = {INCEPTION: 7, ROTATION: 10, DEVICE_ADD: 8, DEVICE_REVOKE: 7}
HASH_SIZE = 32
SIG_SIZE = 64
SIG_HEAD = b"\x58\x40"
SIG_PART = len(SIG_HEAD) + SIG_SIZE
#: A revocation of 64 feeds with 64-byte log ids is about 7.2 KB; 8 KiB bounds
#: every event a node reads, and 256 of them fit one 2 MiB wire message.
MAX_EVENT_SIZE = 8192
#: A person adds and revokes a few devices a year; 4096 events last a lifetime
#: and bound the work of a fold (and the bytes a node keeps per identity).
MAX_KEL_SEQ = 4096
#: Cuts in one event (all revocations of a rotation together): 64 feeds of one
#: device, or a few feeds of each of several devices. Bounds the event size.
MAX_CUTS = 64
#: Devices one rotation may revoke at once.
MAX_REVOCATIONS = 16
#: Active devices at once: the merged view reads one feed per device and log.
MAX_DEVICES = 256
#: A device name is shown to people ("laptop", "Ana's phone"): 64 bytes of UTF-8.
MAX_DEVICE_NAME = 64
MAX_SEQ = (1 << 63) - 1
#: What the device signs to agree to join an identity (spec/12 §3.3).
DEVICE_CLAIM_TAG = "tidings/device/1"
#: Events a node keeps beyond the applied chain: disputed branches and events
#: whose predecessor it lacks. Someone holding a stolen root key can make any
#: number of them; past these bounds a node keeps the lowest (seq, hash).
MAX_DISPUTED = 256
MAX_PENDING = 256


#: Statuses of an event in a fold that are not refusals.
APPLIED = "applied"
SUPERSEDED = "superseded"
DISPUTED = "disputed"
PENDING = "pending"

#: Every identity rule (spec/12 §5), in the order a fold checks them.
IDENTITY_RULES = (
    "oversize", "malformed", "unknown-version", "non-canonical", "kel-full",
    "wrong-identity", "wrong-seq", "invalid-ancestor", "wrong-establishment",
    "next-key-mismatch", "stale-key", "bad-signature", "bad-key", "key-reuse",
    "bad-device-signature", "device-exists", "device-revoked", "too-many-devices",
    "not-a-device", "already-revoked",
)


class InvalidIdentityEvent(TidingsError):
    """An identity event breaks a rule of spec/12 §5. ``rule`` names it."""

    def __init__(self, rule: str, detail: str, *, seq: int | None = None) -> None:
        super().__init__(f"{rule}: {detail}" if seq is None else f"seq {seq}: {rule}: {detail}")
        self.rule = rule
        self.detail = detail
        self.seq = seq


def blake256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_SIZE).digest()


def event_hash(raw: bytes) -> bytes:
    """BLAKE2b-256 of an event's full bytes (body and signature)."""
    return blake256(raw)


def key_digest(public_key: bytes) -> bytes:
    """The commitment to a next key: BLAKE2b-256 of its 32-byte public key."""
    return blake256(public_key)


def public_bytes(secret: Ed25519PrivateKey) -> bytes:
    return secret.public_key().public_bytes_raw()


def verify_signature(key: bytes, signature: bytes, message: bytes) -> bool:
    """Ed25519 with the decisions of spec/02 §2 (key and R not small-order, S < L)."""
    if not is_acceptable_author_key(key) or not is_acceptable_author_key(signature[:32]):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# -- identity ids --------------------------------------------------------------------


def _checksum(prefix: str, key: bytes) -> bytes:
    return hashlib.blake2b(prefix.encode() + key, digest_size=2).digest()


def format_identity(identity: bytes) -> str:
    """The text form ``ti1...`` of an identity id (spec/12 §2)."""
    if type(identity) is not bytes or len(identity) != KEY_SIZE:
        raise InvalidId("an identity id is exactly 32 bytes", "bad-key")
    return IDENTITY_PREFIX + _b32(identity + _checksum(IDENTITY_PREFIX, identity))


def parse_identity(text: str) -> bytes:
    """Parse ``ti1...`` exactly (checks as spec/01 §4 A1-A5); raises :class:`InvalidId`."""
    if not text.startswith(IDENTITY_PREFIX):
        hint = (" (that is an author id)" if text.startswith(AUTHOR_PREFIX) else
                " (that is a feed id)" if text.startswith(FEED_PREFIX) else "")
        raise InvalidId(f"not an identity id: it must start with {IDENTITY_PREFIX!r}{hint}",
                        "wrong-prefix")
    rest = text[len(IDENTITY_PREFIX):]
    if len(rest) != KEY_TEXT_LEN:
        raise InvalidId(f"identity id: {len(rest)} characters after {IDENTITY_PREFIX!r}, it "
                        f"must be {KEY_TEXT_LEN}", "bad-length")
    raw = _unb32(rest, "identity id")
    if raw[KEY_SIZE:] != _checksum(IDENTITY_PREFIX, raw[:KEY_SIZE]):
        raise InvalidId("identity id checksum does not match: is it mistyped?", "bad-checksum")
    return raw[:KEY_SIZE]


def parse_identity_input(text: str) -> bytes:
    """Parse a typed or pasted identity id: ASCII whitespace around it is dropped."""
    return parse_identity(text.strip(INPUT_WHITESPACE))


# -- events --------------------------------------------------------------------------


class Cut(NamedTuple):
    """Of a revoked device's feed ``log_id``: entries 1..``seq`` stay the identity's,
    and the entry at ``seq`` is the one with hash ``entry_hash``."""

    log_id: str
    seq: int
    entry_hash: bytes


class Revocation(NamedTuple):
    device_key: bytes
    cuts: tuple[Cut, ...]


@record
class Event:
    """A decoded identity event. Fields a kind lacks are ``None``."""

    kind: int
    identity: bytes | None
    seq: int
    prev: bytes | None
    signature: bytes
    raw: bytes
    hash: bytes
    root_key: bytes | None = None
    next_digest: bytes | None = None
    est: bytes | None = None
    next_key: bytes | None = None
    revocations: tuple[Revocation, ...] = ()
    device_key: bytes | None = None
    name: str | None = None
    device_sig: bytes | None = None
    cuts: tuple[Cut, ...] = ()

    @property
    def body(self) -> bytes:
        return self.raw[:-SIG_PART]

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]

    @property
    def is_establishment(self) -> bool:
        return self.kind in (INCEPTION, ROTATION)


def _cuts_value(cuts: Iterable[Cut]) -> list[list[Any]]:
    return [[c.log_id, c.seq, c.entry_hash] for c in cuts]


def _body_value(event: Event) -> list[Any]:
    head: list[Any] = [KEL_VERSION, event.kind, event.identity, event.seq, event.prev]
    if event.kind == INCEPTION:
        return [*head, event.root_key, event.next_digest]
    if event.kind == ROTATION:
        revs = [[r.device_key, _cuts_value(r.cuts)] for r in event.revocations]
        return [*head, event.est, event.next_key, event.root_key, event.next_digest, revs]
    if event.kind == DEVICE_ADD:
        return [*head, event.device_key, event.name, event.device_sig]
    return [*head, event.device_key, _cuts_value(event.cuts)]


def _malformed(detail: str) -> InvalidIdentityEvent:
    return InvalidIdentityEvent("malformed", detail)


def _bytes32(value: Any, name: str) -> bytes:
    if type(value) is not bytes or len(value) != 32:
        raise _malformed(f"{name} must be a 32-byte byte string")
    return value


def check_device_name(name: Any) -> str:
    """A device name: 1 to 64 bytes of UTF-8 text without control characters."""
    if type(name) is not str or not 1 <= len(name.encode()) <= MAX_DEVICE_NAME:
        raise _malformed(f"a device name is 1 to {MAX_DEVICE_NAME} bytes of text")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in name):
        raise _malformed("a device name has no control characters")
    return name


def _cuts(value: Any) -> tuple[Cut, ...]:
    if type(value) is not list or len(value) > MAX_CUTS:
        raise _malformed(f"cuts must be an array of at most {MAX_CUTS}")
    cuts = []
    for item in value:
        if type(item) is not list or len(item) != 3:
            raise _malformed("a cut is [log id, seq, entry hash]")
        log_id, seq, entry_hash = item
        if type(log_id) is not str or not LOG_ID_PATTERN.fullmatch(log_id):
            raise _malformed("a cut's log id must be a log id (spec/01 §3)")
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            raise _malformed("a cut's seq is 1 to 2^63 - 1")
        cuts.append(Cut(log_id, seq, _bytes32(entry_hash, "a cut's entry hash")))
    names = [c.log_id.encode() for c in cuts]
    if any(a >= b for a, b in itertools.pairwise(names)):
        raise _malformed("cuts must be in strictly ascending order of log id")
    return tuple(cuts)


def decode_event(raw: bytes) -> Event:
    """Decode one event strictly (spec/12 §4.3, K1-K6); raises :class:`InvalidIdentityEvent`.

    Signatures and the event's place in the log are checked by :func:`fold`.
    """
    if type(raw) is not bytes:
        raw = bytes(raw)
    if len(raw) > MAX_EVENT_SIZE:  # K1
        raise InvalidIdentityEvent("oversize", f"event is {len(raw)} bytes, over {MAX_EVENT_SIZE}")
    try:  # K2
        fields, end = strict_cbor_item(raw, 0)
    except MalformedEntry as exc:
        raise _malformed(exc.detail) from None
    if type(fields) is not list or not fields or type(fields[0]) is not int:  # K3
        raise _malformed("an event is a CBOR array starting with its version")
    if fields[0] != KEL_VERSION:
        raise InvalidIdentityEvent(
            "unknown-version", f"event format {fields[0]}; this implementation knows {KEL_VERSION}")
    body, tail = raw[:end], raw[end:]
    if len(tail) != SIG_PART or tail[:2] != SIG_HEAD:  # K4
        raise _malformed("the body must be followed by exactly one 64-byte signature (58 40 ...)")
    kind = fields[1] if len(fields) > 1 else None  # K5
    if type(kind) is not int or kind not in BODY_LENGTHS:
        raise _malformed("kind must be 0 (inception), 1 (rotation), 2 (device-add) "
                         "or 3 (device-revoke)")
    if len(fields) != BODY_LENGTHS[kind]:
        raise _malformed(f"a {KIND_NAMES[kind]} has {BODY_LENGTHS[kind]} fields, "
                         f"not {len(fields)}")
    identity, seq, prev = fields[2], fields[3], fields[4]
    if type(seq) is not int or seq < 1 or seq > MAX_SEQ:
        raise _malformed("seq must be an integer from 1")
    if kind == INCEPTION:
        if identity is not None or seq != 1 or prev is not None:
            raise _malformed("an inception has identity null, seq 1 and prev null")
    else:
        _bytes32(identity, "identity")
        if seq < 2:
            raise _malformed("only an inception has seq 1")
        _bytes32(prev, "prev")
    if seq > MAX_KEL_SEQ:
        raise InvalidIdentityEvent("kel-full", f"seq {seq} is past the last one, {MAX_KEL_SEQ}",
                                   seq=seq)
    parts: dict[str, Any] = {}
    if kind == INCEPTION:
        parts = {"root_key": _bytes32(fields[5], "root key"),
                 "next_digest": _bytes32(fields[6], "next digest")}
    elif kind == ROTATION:
        parts = {"est": _bytes32(fields[5], "est"), "next_key": _bytes32(fields[6], "next key"),
                 "root_key": _bytes32(fields[7], "root key"),
                 "next_digest": _bytes32(fields[8], "next digest")}
        revs = fields[9]
        if type(revs) is not list or len(revs) > MAX_REVOCATIONS:
            raise _malformed(f"revocations must be an array of at most {MAX_REVOCATIONS}")
        revocations = []
        for item in revs:
            if type(item) is not list or len(item) != 2:
                raise _malformed("a revocation is [device key, cuts]")
            revocations.append(Revocation(_bytes32(item[0], "device key"), _cuts(item[1])))
        keys = [r.device_key for r in revocations]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise _malformed("revocations must be in strictly ascending order of device key")
        if sum(len(r.cuts) for r in revocations) > MAX_CUTS:
            raise _malformed(f"an event holds at most {MAX_CUTS} cuts")
        parts["revocations"] = tuple(revocations)
    elif kind == DEVICE_ADD:
        sig = fields[7]
        if type(sig) is not bytes or len(sig) != SIG_SIZE:
            raise _malformed("the device signature is a 64-byte byte string")
        parts = {"device_key": _bytes32(fields[5], "device key"),
                 "name": check_device_name(fields[6]), "device_sig": sig}
    else:
        parts = {"device_key": _bytes32(fields[5], "device key"), "cuts": _cuts(fields[6])}
    if cbor2.dumps(fields) != body:  # K6
        raise InvalidIdentityEvent("non-canonical", "re-encoding the body gives other bytes",
                                   seq=seq)
    return Event(kind, identity, seq, prev, tail[2:], raw, event_hash(raw), **parts)


def _sign(secret: Ed25519PrivateKey, event: Event) -> Event:
    body = cbor2.dumps(_body_value(event))
    raw = body + SIG_HEAD + secret.sign(body)
    return decode_event(raw)


def _placeholder(kind: int, identity: bytes | None, seq: int, prev: bytes | None,
                 **parts: Any) -> Event:
    return Event(kind, identity, seq, prev, b"", b"", b"", **parts)


def make_inception(root: Ed25519PrivateKey, next_public_key: bytes) -> Event:
    """The first event of a new identity; its hash is the identity id."""
    return _sign(root, _placeholder(INCEPTION, None, 1, None, root_key=public_bytes(root),
                                    next_digest=key_digest(next_public_key)))


def make_rotation(next_secret: Ed25519PrivateKey, state: IdentityState, new_root_key: bytes,
                  new_next_public_key: bytes, revocations: Iterable[Revocation] = (),
                  after_seq: int | None = None) -> Event:
    """Rotate ``state``'s identity: reveal and sign with the pre-committed next key.

    The rotation follows the applied event at ``after_seq`` (default: the last
    one). Following an earlier event supersedes the events after it that the
    old root key signed (spec/12 §5.4): how an owner undoes a thief's events.
    """
    seq, prev, est = state.position(after_seq, rotation=True)
    revs = tuple(sorted(revocations))
    return _sign(next_secret, _placeholder(
        ROTATION, state.identity, seq, prev, est=est, next_key=public_bytes(next_secret),
        root_key=new_root_key, next_digest=key_digest(new_next_public_key), revocations=revs))


def device_claim(identity: bytes, device_key: bytes, name: str) -> bytes:
    """The bytes a device signs to agree to belong to ``identity`` (spec/12 §3.3)."""
    return cbor2.dumps([DEVICE_CLAIM_TAG, identity, device_key, name])


def sign_device_claim(device: Ed25519PrivateKey, identity: bytes, name: str) -> bytes:
    return device.sign(device_claim(identity, public_bytes(device), check_device_name(name)))


def make_device_add(root: Ed25519PrivateKey, state: IdentityState, device_key: bytes,
                    name: str, device_sig: bytes) -> Event:
    seq, prev, _ = state.position()
    return _sign(root, _placeholder(DEVICE_ADD, state.identity, seq, prev,
                                    device_key=device_key, name=name, device_sig=device_sig))


def make_device_revoke(root: Ed25519PrivateKey, state: IdentityState, device_key: bytes,
                       cuts: Iterable[Cut] = ()) -> Event:
    seq, prev, _ = state.position()
    return _sign(root, _placeholder(DEVICE_REVOKE, state.identity, seq, prev,
                                    device_key=device_key, cuts=tuple(sorted(cuts))))


def resign(secret: Ed25519PrivateKey, fields: list[Any]) -> bytes:
    """Sign arbitrary body fields (test vectors build refused events with it)."""
    body = cbor2.dumps(fields)
    return body + SIG_HEAD + secret.sign(body)


# -- state ---------------------------------------------------------------------------


@record
class Device:
    """A device of an identity. ``revoked_seq`` is None while it is active; a
    revoked device's feeds count up to their cuts (feeds without one: none)."""

    key: bytes
    name: str
    added_seq: int
    revoked_seq: int | None = None
    cuts: Mapping[str, Cut] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.revoked_seq is None

    def limit(self, log_id: str) -> Cut | None:
        """For a revoked device, the cut of ``log_id`` (None: nothing of it counts)."""
        return self.cuts.get(log_id)


@record
class _Path:
    """The key state after an event, along one path of the log."""

    seq: int
    head: bytes
    root_key: bytes
    next_digest: bytes
    est: bytes
    devices: Mapping[bytes, Device]
    used_keys: frozenset[bytes]
    digests: frozenset[bytes]
    old_roots: tuple[bytes, ...]
    rotations: tuple[tuple[int, bytes], ...]


@record(slots=False)
class Refusal:
    rule: str
    seq: int | None
    detail: str


@record(slots=False)
class IdentityState:
    """What a set of events says about an identity (the result of :func:`fold`).

    ``status``: ``unknown`` (no inception held), ``active``, ``forked`` (the log
    forked at ``fork_seq`` and no rotation has decided; the state is the log
    before it) or ``dead`` (the next key of the establishment event at
    ``dead_seq`` revealed twice; the state is as of that event, for good).
    ``outcomes`` gives every event's fate by hash: ``applied``, ``superseded``,
    ``disputed``, ``pending`` or the rule that refused it.
    """

    identity: bytes
    status: str
    seq: int = 0
    head: bytes | None = None
    root_key: bytes | None = None
    next_digest: bytes | None = None
    est: bytes | None = None
    devices: Mapping[bytes, Device] = field(default_factory=dict)
    rotations: tuple[tuple[int, bytes], ...] = ()
    chain: tuple[bytes, ...] = ()
    fork_seq: int | None = None
    fork_proof: tuple[bytes, ...] = ()
    dead_seq: int | None = None
    dead_proof: tuple[bytes, ...] = ()
    outcomes: Mapping[bytes, str] = field(default_factory=dict, compare=False)
    refusals: Mapping[bytes, Refusal] = field(default_factory=dict, compare=False)
    events: Mapping[bytes, Event] = field(default_factory=dict, compare=False, repr=False)

    def position(self, after_seq: int | None = None,
                 rotation: bool = False) -> tuple[int, bytes, bytes]:
        """(seq, prev, est) of an event that follows the applied event at
        ``after_seq`` (default: the last). Only a rotation may follow a forked
        log (it decides the fork) or an event before the last (it supersedes
        the ones after); nothing may follow a dead one."""
        if self.status == "unknown" or self.status == "dead" or not self.chain:
            raise ValueError(f"cannot append to an identity whose log is {self.status}")
        if not rotation and (self.status != "active" or after_seq not in (None, self.seq)):
            raise ValueError("only a rotation follows a forked log or an earlier event")
        at = self.seq if after_seq is None else after_seq
        if not 1 <= at <= self.seq:
            raise ValueError(f"no applied event at seq {at}")
        est = next(h for h in reversed(self.chain[:at]) if self.events[h].is_establishment)
        return at + 1, self.chain[at - 1], est

    def device(self, key: bytes) -> Device | None:
        return self.devices.get(key)

    def counts(self, author_key: bytes, log_id: str, seq: int) -> bool:
        """Whether entry ``seq`` of feed (author, log) is the identity's, as far as
        the log says (a revoked device's cut hash is checked by the reader)."""
        device = self.devices.get(author_key)
        if device is None:
            return False
        if device.active:
            return True
        cut = device.cuts.get(log_id)
        return cut is not None and seq <= cut.seq

    def kept(self) -> list[bytes]:
        """The events a node stores and serves (spec/12 §6): the applied chain,
        the proofs, and disputed and pending events within their bounds."""
        keep = [h for h, o in self.outcomes.items() if o == APPLIED]
        keep += list(self.fork_proof) + list(self.dead_proof)
        for status, bound in ((DISPUTED, MAX_DISPUTED), (PENDING, MAX_PENDING)):
            extra = sorted((self.events[h].seq, h) for h, o in self.outcomes.items()
                           if o == status and h in self.events)
            keep += [h for _, h in extra[:bound]]
        unique = dict.fromkeys(keep)
        return [self.events[h].raw for h in sorted(unique, key=lambda h: (self.events[h].seq, h))]

    def served(self) -> list[bytes]:
        """The events a node sends a peer: what it keeps, less pending ones."""
        return [raw for raw in self.kept() if self.outcomes[event_hash(raw)] != PENDING]


def _apply(path: _Path, event: Event) -> _Path:
    """The state after ``event`` (already checked) on ``path``."""
    devices = dict(path.devices)
    used, digests = set(path.used_keys), set(path.digests)
    root, next_digest, est = path.root_key, path.next_digest, path.est
    old_roots, rotations = path.old_roots, path.rotations
    revocations: tuple[Revocation, ...] = ()
    if event.kind == ROTATION:
        assert event.root_key and event.next_digest and event.next_key
        old_roots = (*old_roots, root)
        root, next_digest, est = event.root_key, event.next_digest, event.hash
        used |= {event.next_key, event.root_key}
        digests.add(event.next_digest)
        rotations = (*rotations, (event.seq, event.root_key))
        revocations = event.revocations
    elif event.kind == DEVICE_ADD:
        assert event.device_key and event.name is not None
        devices[event.device_key] = Device(event.device_key, event.name, event.seq)
        used.add(event.device_key)
    elif event.kind == DEVICE_REVOKE:
        assert event.device_key
        revocations = (Revocation(event.device_key, event.cuts),)
    for rev in revocations:
        old = devices[rev.device_key]
        devices[rev.device_key] = Device(old.key, old.name, old.added_seq, event.seq,
                                         {c.log_id: c for c in rev.cuts})
    return _Path(event.seq, event.hash, root, next_digest, est, devices, frozenset(used),
                 frozenset(digests), old_roots, rotations)


def _check_revocation(path: _Path, rev: Revocation, seq: int) -> None:
    device = path.devices.get(rev.device_key)
    if device is None:
        raise InvalidIdentityEvent("not-a-device", "revokes a key that is not a device", seq=seq)
    if not device.active:
        raise InvalidIdentityEvent("already-revoked", "the device is revoked already", seq=seq)


def _check(path: _Path, event: Event) -> None:
    """Rules C4-C9 of spec/12 §5.2 for a non-inception ``event`` after ``path``."""
    seq = event.seq
    if event.kind == ROTATION:
        assert event.next_key and event.root_key and event.next_digest
        if event.est != path.est:
            raise InvalidIdentityEvent(
                "wrong-establishment", "est is not the last establishment event before it",
                seq=seq)
        if key_digest(event.next_key) != path.next_digest:
            raise InvalidIdentityEvent(
                "next-key-mismatch", "the revealed key does not hash to the committed digest",
                seq=seq)
        if not verify_signature(event.next_key, event.signature, event.body):
            raise InvalidIdentityEvent("bad-signature", "not signed by the revealed next key",
                                       seq=seq)
        if not is_acceptable_author_key(event.root_key):
            raise InvalidIdentityEvent("bad-key", "the new root key is a small-order or "
                                       "non-canonical point", seq=seq)
        known = path.used_keys | {path.root_key}
        fresh = {event.next_key, event.root_key}
        if (event.next_key in known or event.root_key in known
                or event.root_key == event.next_key
                or event.next_digest in path.digests
                or event.next_digest in {key_digest(k) for k in known | fresh}):
            raise InvalidIdentityEvent("key-reuse", "a rotation uses only new keys", seq=seq)
        for rev in event.revocations:
            _check_revocation(path, rev, seq)
        return
    if not verify_signature(path.root_key, event.signature, event.body):
        if any(verify_signature(k, event.signature, event.body) for k in path.old_roots):
            raise InvalidIdentityEvent("stale-key", "signed by a root key rotated away from",
                                       seq=seq)
        raise InvalidIdentityEvent("bad-signature", "not signed by the root key in force",
                                   seq=seq)
    assert event.device_key
    if event.kind == DEVICE_ADD:
        assert event.name is not None and event.device_sig is not None and event.identity
        claim = device_claim(event.identity, event.device_key, event.name)
        if not verify_signature(event.device_key, event.device_sig, claim):
            raise InvalidIdentityEvent("bad-device-signature",
                                       "the device did not sign its claim to join", seq=seq)
        device = path.devices.get(event.device_key)
        if device is not None:
            rule = "device-exists" if device.active else "device-revoked"
            raise InvalidIdentityEvent(rule, "the key was added before", seq=seq)
        if (event.device_key in path.used_keys or event.device_key == path.root_key
                or key_digest(event.device_key) in path.digests):
            raise InvalidIdentityEvent("key-reuse", "a device key is a key of the root's",
                                       seq=seq)
        if sum(d.active for d in path.devices.values()) >= MAX_DEVICES:
            raise InvalidIdentityEvent("too-many-devices",
                                       f"at most {MAX_DEVICES} active devices", seq=seq)
        return
    _check_revocation(path, Revocation(event.device_key, event.cuts), seq)


def _inception_path(event: Event) -> _Path:
    assert event.root_key and event.next_digest
    return _Path(1, event.hash, event.root_key, event.next_digest, event.hash, {},
                 frozenset({event.root_key}), frozenset({event.next_digest}), (), ())


def fold(identity: bytes, raw_events: Iterable[bytes]) -> IdentityState:
    """The state of ``identity`` that a set of events gives (spec/12 §5).

    A pure function of the *set*: order and repetition of ``raw_events`` do
    not matter. Never raises for bad events: each gets its outcome.
    """
    outcomes: dict[bytes, str] = {}
    refusals: dict[bytes, Refusal] = {}
    events: dict[bytes, Event] = {}

    def refuse(h: bytes, rule: str, seq: int | None, detail: str) -> None:
        outcomes[h] = rule
        refusals[h] = Refusal(rule, seq, detail)

    for raw in raw_events:
        h = event_hash(bytes(raw))
        if h in outcomes or h in events:
            continue
        try:
            event = decode_event(bytes(raw))
        except InvalidIdentityEvent as exc:
            refuse(h, exc.rule, exc.seq, exc.detail)
            continue
        if (event.hash != identity) if event.kind == INCEPTION else (event.identity != identity):
            refuse(h, "wrong-identity", event.seq, "the event is of another identity")
            continue
        events[h] = event

    children: dict[bytes, list[Event]] = defaultdict(list)
    for event in events.values():
        if event.prev is not None:
            children[event.prev].append(event)

    # Walk the tree of events from the inception: each event checked against
    # the state after the event it names (C1-C9). Iterative: a log is 4096 deep.
    paths: dict[bytes, _Path] = {}
    inception = events.get(identity)
    if inception is not None:
        assert inception.root_key and inception.next_digest
        if not verify_signature(inception.root_key, inception.signature, inception.body):
            refuse(identity, "bad-signature", 1, "not signed by its root key")
        elif key_digest(inception.root_key) == inception.next_digest:
            refuse(identity, "key-reuse", 1, "the next key is the root key")
        else:
            paths[identity] = _inception_path(inception)
    stack = [identity] if identity in paths else []
    while stack:
        parent_hash = stack.pop()
        parent = paths[parent_hash]
        for child in sorted(children.get(parent_hash, ()), key=lambda e: e.hash):
            if child.seq != parent.seq + 1:
                refuse(child.hash, "wrong-seq", child.seq,
                       f"prev names the event at seq {parent.seq}")
                continue
            try:
                _check(parent, child)
            except InvalidIdentityEvent as exc:
                refuse(child.hash, exc.rule, child.seq, exc.detail)
                continue
            paths[child.hash] = _apply(parent, child)
            stack.append(child.hash)
    # Descendants of refused events are refused; of events never reached, pending.
    for event in sorted(events.values(), key=lambda e: (e.seq, e.hash)):
        climbed: list[bytes] = []
        at: bytes | None = event.hash
        while at is not None and at in events and at not in paths and at not in outcomes:
            climbed.append(at)
            at = events[at].prev
        refused_below = at is not None and at in refusals
        for h in climbed:
            if refused_below:
                refuse(h, "invalid-ancestor", events[h].seq, "an event before it was refused")
            else:
                outcomes[h] = PENDING

    if inception is None or identity not in paths:
        return IdentityState(identity, "unknown", outcomes=outcomes, refusals=refusals,
                             events=events)

    # Rotation claims: a next key that signed two rotations is compromised.
    claims: dict[bytes, set[bytes]] = defaultdict(set)
    for event in events.values():
        if event.kind != ROTATION or event.est not in paths:
            continue
        assert event.next_key
        est_path = paths[event.est]
        if events[event.est].is_establishment and key_digest(event.next_key) == \
                est_path.next_digest and verify_signature(event.next_key, event.signature,
                                                          event.body):
            claims[event.est].add(event.hash)
    doubled = sorted((events[e].seq, e) for e, c in claims.items() if len(c) >= 2)
    dead_at = doubled[0][1] if doubled else None

    # Which subtrees hold a rotation (a later key vouches for them).
    has_rotation: dict[bytes, bool] = {}
    for h in sorted(paths, key=lambda h: -events[h].seq):
        kids = [c.hash for c in children.get(h, ()) if c.hash in paths]
        has_rotation[h] = any(events[k].kind == ROTATION or has_rotation[k] for k in kids)

    def mark(h: bytes, status: str) -> None:
        todo = [h]
        while todo:
            x = todo.pop()
            outcomes[x] = status
            todo += [c.hash for c in children.get(x, ()) if c.hash in paths]

    chain = [identity]
    outcomes[identity] = APPLIED
    fork_seq: int | None = None
    fork_proof: tuple[bytes, ...] = ()
    at = identity
    while True:
        kids = sorted(c.hash for c in children.get(at, ()) if c.hash in paths)
        if at == dead_at:
            for k in kids:
                mark(k, DISPUTED)
            break
        if not kids:
            break
        vouched = [k for k in kids if events[k].kind == ROTATION or has_rotation[k]]
        if vouched:
            chosen = vouched[0]  # one only, unless two rotations claim one key (dead above)
        elif len(kids) == 1:
            chosen = kids[0]
        else:
            fork_seq = events[kids[0]].seq
            fork_proof = (kids[0], kids[1])
            for k in kids:
                mark(k, DISPUTED)
            break
        for k in kids:
            if k != chosen:
                mark(k, SUPERSEDED)
        outcomes[chosen] = APPLIED
        chain.append(chosen)
        at = chosen

    path = paths[at]
    if dead_at is not None:
        status = "dead"
    elif fork_seq is not None:
        status = "forked"
    else:
        status = "active"
    dead_seq = events[dead_at].seq if dead_at is not None else None
    dead_proof = tuple(sorted(claims[dead_at])[:2]) if dead_at is not None else ()
    for h in dead_proof:
        if outcomes.get(h) == PENDING:
            outcomes[h] = DISPUTED
    return IdentityState(
        identity, status, path.seq, path.head, path.root_key, path.next_digest, path.est,
        dict(path.devices), path.rotations, tuple(chain), fork_seq, fork_proof, dead_seq,
        dead_proof, outcomes, refusals, events)


class IdentityLog:
    """The events a node keeps of one identity, and their state (spec/12 §6).

    ``add`` folds what it holds with new events, then keeps what
    :meth:`IdentityState.kept` says: the result is the state of the union.
    """

    def __init__(self, identity: bytes, events: Iterable[bytes] = ()) -> None:
        self.identity = identity
        self._events: list[bytes] = []
        self.state = fold(identity, [])
        self.add(events)

    def add(self, events: Iterable[bytes]) -> IdentityState:
        self.state = fold(self.identity, [*self._events, *events])
        self._events = self.state.kept()
        return self.state

    def events(self) -> list[bytes]:
        return list(self._events)
