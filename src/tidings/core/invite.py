"""Invites and device pairing requests as text (spec/12 §8 and §9).

Both are one line of ``[a-z2-7]`` after a prefix that carries the version,
so they survive chat apps, shells and URLs: ``tinv1...`` (an invite: an
identity, some of its logs, and where to fetch them) and ``tpair1...`` (a new
device asking to join an identity: its public key, its name and its signature
agreeing to join). The text is ``prefix || base32(payload || checksum)``:
``payload`` is deterministic CBOR, ``checksum`` the first 4 bytes of
BLAKE2b-256 over ``prefix || payload``. Parsing is strict and bounded; every
failure is an :class:`InvalidInvite` naming the check.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import itertools
import re
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.core.entry import strict_cbor_item
from tidings.core.ids import INPUT_WHITESPACE, INVITE_PREFIX, KEY_SIZE, LOG_ID_PATTERN
from tidings.core.kel import (
    SIG_SIZE,
    blake256,
    check_device_name,
    device_claim,
    format_identity,
    public_bytes,
    sign_device_claim,
    verify_signature,
)
from tidings.errors import MalformedEntry, UsageError

PAIRING_PREFIX = "tpair1"
CHECKSUM_SIZE = 4
#: Logs an invite names: a person's few public logs; the rest a reader finds later.
MAX_INVITE_LOGS = 16
#: Addresses in an invite: a home node, a relay or two, a LAN address.
MAX_INVITE_ADDRESSES = 8
MAX_HOST_LEN = 253
#: 16 logs of 64 bytes and 8 addresses of 253 bytes: about 3.2 KB of CBOR, 5.2
#: KB of base32. The bound refuses anything longer before decoding it.
MAX_INVITE_TEXT = 6000
#: identity, key, a 64-byte name, a signature: under 200 bytes, 330 characters.
MAX_PAIRING_TEXT = 400
#: Characters of the verification code: 60 bits, shown as three groups of four.
#: A substitute request with the same code takes about 2^60 tries to make.
PAIRING_CODE_CHARS = 12
PAIRING_CODE_TAG = b"tidings/pairing-code/1"
_DNS_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


class InvalidInvite(UsageError, ValueError):
    """An invite or pairing request does not parse; ``reason`` names the check
    (spec/12 §8.2): wrong-prefix, bad-length, bad-chars, non-canonical-base32,
    bad-checksum, malformed, non-canonical, bad-log-id, bad-host, bad-signature."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _checksum(prefix: str, payload: bytes) -> bytes:
    return blake256(prefix.encode() + payload)[:CHECKSUM_SIZE]


def armor(prefix: str, payload: bytes) -> str:
    return prefix + _b32(payload + _checksum(prefix, payload))


def unarmor(text: str, prefix: str, max_len: int, what: str) -> tuple[Any, bytes]:
    """The decoded CBOR payload of ``text`` and its bytes (checks V1-V7)."""
    if type(text) is not str or not text.startswith(prefix):
        raise InvalidInvite(f"not {what}: it must start with {prefix!r}", "wrong-prefix")
    rest = text[len(prefix):]
    if not 8 <= len(rest) <= max_len - len(prefix):
        raise InvalidInvite(f"{what}: {len(text)} characters, too short or over {max_len}",
                            "bad-length")
    if not re.fullmatch(r"[a-z2-7]*", rest):
        raise InvalidInvite(f"{what}: only a-z and 2-7 may follow {prefix!r}", "bad-chars")
    if len(rest) * 5 % 8 >= 5:  # no byte string has a base32 form of this length
        raise InvalidInvite(f"{what}: {len(rest)} is not a length base32 text has",
                            "non-canonical-base32")
    raw = base64.b32decode(rest.upper() + "=" * (-len(rest) % 8))
    if _b32(raw) != rest:
        raise InvalidInvite(f"{what}: non-canonical base32 (trailing bits must be zero)",
                            "non-canonical-base32")
    payload, check = raw[:-CHECKSUM_SIZE], raw[-CHECKSUM_SIZE:]
    if _checksum(prefix, payload) != check:
        raise InvalidInvite(f"{what}: the checksum does not match: is it cut or mistyped?",
                            "bad-checksum")
    try:
        value, end = strict_cbor_item(payload, 0)
    except MalformedEntry as exc:
        raise InvalidInvite(f"{what}: {exc.detail}", "malformed") from None
    if end != len(payload):
        raise InvalidInvite(f"{what}: bytes after the CBOR item", "malformed")
    return value, payload


def _canonical(value: Any, payload: bytes, what: str) -> None:
    if cbor2.dumps(value) != payload:
        raise InvalidInvite(f"{what}: not the deterministic CBOR encoding", "non-canonical")


def dialable_host(host: str) -> bool:
    """A DNS name or an IPv4/IPv6 literal without a zone id (as spec/09 §3.7)."""
    if not 1 <= len(host) <= MAX_HOST_LEN or "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_DNS_NAME.fullmatch(host))


@dataclass(frozen=True, slots=True)
class Invite:
    """Everything a reader needs to follow an identity: its id, optionally some
    log ids, and addresses of nodes that serve its feeds and its log."""

    identity: bytes
    logs: tuple[str, ...] = ()
    addresses: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if type(self.identity) is not bytes or len(self.identity) != KEY_SIZE:
            raise InvalidInvite("an identity id is 32 bytes", "malformed")
        if len(self.logs) > MAX_INVITE_LOGS or len(self.addresses) > MAX_INVITE_ADDRESSES:
            raise InvalidInvite(f"at most {MAX_INVITE_LOGS} logs and "
                                f"{MAX_INVITE_ADDRESSES} addresses", "malformed")
        for log_id in self.logs:
            if type(log_id) is not str or not LOG_ID_PATTERN.fullmatch(log_id):
                raise InvalidInvite(f"{log_id!r} is not a log id", "bad-log-id")
        names = [log.encode() for log in self.logs]
        if any(a >= b for a, b in itertools.pairwise(names)):
            raise InvalidInvite("log ids in strictly ascending order", "malformed")
        for address in self.addresses:
            if (type(address) is not tuple or len(address) != 2 or type(address[0]) is not str
                    or type(address[1]) is not int):
                raise InvalidInvite("an address is (host, port)", "malformed")
            if not dialable_host(address[0]):
                raise InvalidInvite(f"{address[0]!r} is not a host to dial", "bad-host")
            if not 1 <= address[1] <= 65535:
                raise InvalidInvite("a port is 1 to 65535", "malformed")
        if len(set(self.addresses)) != len(self.addresses):
            raise InvalidInvite("an address appears twice", "malformed")

    @property
    def identity_text(self) -> str:
        return format_identity(self.identity)

    def payload(self) -> bytes:
        return cbor2.dumps([self.identity, list(self.logs),
                            [[host, port] for host, port in self.addresses]])

    def __str__(self) -> str:
        return armor(INVITE_PREFIX, self.payload())


def format_invite(invite: Invite) -> str:
    return str(invite)


def parse_invite(text: str) -> Invite:
    """Parse ``tinv1...`` exactly; raises :class:`InvalidInvite`."""
    value, payload = unarmor(text, INVITE_PREFIX, MAX_INVITE_TEXT, "invite")
    if (type(value) is not list or len(value) != 3 or type(value[1]) is not list
            or type(value[2]) is not list):
        raise InvalidInvite("invite: the payload is [identity, logs, addresses]", "malformed")
    addresses = []
    for item in value[2]:
        if (type(item) is not list or len(item) != 2 or type(item[0]) is not str
                or type(item[1]) is not int):
            raise InvalidInvite("invite: an address is [host, port]", "malformed")
        addresses.append((item[0], item[1]))
    invite = Invite(value[0], tuple(value[1]), tuple(addresses))
    _canonical(value, payload, "invite")
    return invite


def parse_invite_input(text: str) -> Invite:
    """Parse a typed or pasted invite: ASCII whitespace around it is dropped."""
    return parse_invite(text.strip(INPUT_WHITESPACE))


@dataclass(frozen=True, slots=True)
class PairingRequest:
    """A new device asks to join ``identity`` as ``name``. ``device_sig`` is its
    signature over the device claim (spec/12 §3.3), which the device-add event
    carries: no secret travels, and no one else can enroll this key."""

    identity: bytes
    device_key: bytes
    name: str
    device_sig: bytes

    def __post_init__(self) -> None:
        for value, size, what in ((self.identity, KEY_SIZE, "identity"),
                                  (self.device_key, KEY_SIZE, "device key"),
                                  (self.device_sig, SIG_SIZE, "signature")):
            if type(value) is not bytes or len(value) != size:
                raise InvalidInvite(f"pairing request: the {what} is {size} bytes", "malformed")
        try:
            check_device_name(self.name)
        except Exception:
            raise InvalidInvite("pairing request: a device name is 1 to 64 bytes of text "
                                "without control characters", "malformed") from None

    def verify(self) -> None:
        claim = device_claim(self.identity, self.device_key, self.name)
        if not verify_signature(self.device_key, self.device_sig, claim):
            raise InvalidInvite("pairing request: the device's signature does not verify",
                                "bad-signature")

    @property
    def code(self) -> str:
        return pairing_code(self.identity, self.device_key, self.name)

    def payload(self) -> bytes:
        return cbor2.dumps([self.identity, self.device_key, self.name, self.device_sig])

    def __str__(self) -> str:
        return armor(PAIRING_PREFIX, self.payload())


def make_pairing_request(device: Ed25519PrivateKey, identity: bytes, name: str) -> PairingRequest:
    """What a new device prints to ask to join ``identity`` (its key stays with it)."""
    return PairingRequest(identity, public_bytes(device), name,
                          sign_device_claim(device, identity, name))


def pairing_code(identity: bytes, device_key: bytes, name: str) -> str:
    """The code both screens show: ``xxxx-xxxx-xxxx`` (spec/12 §9)."""
    digest = hashlib.blake2b(PAIRING_CODE_TAG + device_claim(identity, device_key, name),
                             digest_size=8).digest()
    text = _b32(digest)[:PAIRING_CODE_CHARS]
    return "-".join(text[i:i + 4] for i in range(0, PAIRING_CODE_CHARS, 4))


def parse_pairing_request(text: str) -> PairingRequest:
    """Parse ``tpair1...`` exactly and check the device's signature."""
    value, payload = unarmor(text, PAIRING_PREFIX, MAX_PAIRING_TEXT, "pairing request")
    if type(value) is not list or len(value) != 4:
        raise InvalidInvite("pairing request: the payload is [identity, device key, name, "
                            "signature]", "malformed")
    request = PairingRequest(*value)
    _canonical(value, payload, "pairing request")
    request.verify()
    return request


def parse_pairing_input(text: str) -> PairingRequest:
    return parse_pairing_request(text.strip(INPUT_WHITESPACE))
