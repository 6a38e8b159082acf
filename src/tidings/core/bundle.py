"""Bundles: a feed (or several) in one file (spec/07-bundles.md).

A bundle is a CBOR sequence: a header ``["tidings-bundle", 1]`` and then records,
each a CBOR array:

* ``[0, entry, payload]``: entry bytes and the payload bytes, or null where the
  payload is absent (deleted or never fetched);
* ``[1, proof]``: a fork proof's bytes;
* ``[2, identity, event]`` (bundle version 2): an event of an identity's log
  (spec/12), so that the importer can place the bundle's device feeds.

The reader parses this small grammar itself, strictly and with a bound on
every length, so a hostile file can make it neither allocate nor read past the
bounds, and fails with :class:`InvalidBundle` on anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cbor2

from tidings.core.entry import MAX_ENTRY_SIZE, MAX_PAYLOAD_SIZE
from tidings.core.forks import MAX_PROOF_SIZE
from tidings.core.kel import MAX_EVENT_SIZE
from tidings.core.records import record
from tidings.errors import InvalidBundle

BUNDLE_VERSION = 1
HEADER = bytes(cbor2.dumps(["tidings-bundle", BUNDLE_VERSION]))
#: Version 2 adds identity records; a bundle without them is written as version 1.
IDENTITY_BUNDLE_VERSION = 2
HEADER_V2 = bytes(cbor2.dumps(["tidings-bundle", IDENTITY_BUNDLE_VERSION]))
_HEADER_PREFIX = HEADER[:-1]
RECORD_ENTRY = 0
RECORD_FORK_PROOF = 1
RECORD_IDENTITY = 2
#: An identity id is the hash of its inception event (spec/12 §2).
IDENTITY_SIZE = 32
#: Identity records one bundle may carry: the importer keeps them all until it folds
#: them (at most 8 KiB each: 8 MiB). An honest bundle carries the few logs of its
#: feeds' authors, a few events each; a node serves at most 512 events of a log at once.
MAX_BUNDLE_IDENTITY_EVENTS = 1024


@record
class EntryRecord:
    entry: bytes
    payload: bytes | None


@record
class ForkProofRecord:
    proof: bytes


@record
class IdentityRecord:
    """An event of ``identity``'s log (not checked here: the importer folds it)."""

    identity: bytes
    event: bytes


BundleRecord = EntryRecord | ForkProofRecord | IdentityRecord



def _uint_head(major: int, value: int) -> bytes:
    top = major << 5
    if value < 24:
        return bytes([top | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([top | info]) + value.to_bytes(size, "big")
    raise ValueError("length too large")


def encode_entry_record(entry: bytes, payload: bytes | None) -> bytes:
    payload_part = b"\xf6" if payload is None else _uint_head(2, len(payload)) + payload
    return b"\x83\x00" + _uint_head(2, len(entry)) + entry + payload_part


def encode_proof_record(proof: bytes) -> bytes:
    return b"\x82\x01" + _uint_head(2, len(proof)) + proof


def encode_identity_record(identity: bytes, event: bytes) -> bytes:
    return (b"\x83\x02" + _uint_head(2, len(identity)) + identity
            + _uint_head(2, len(event)) + event)


class _Reader:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.offset = 0

    def exact(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise InvalidBundle(f"truncated at byte {self.offset + len(data)}")
        self.offset += n
        return data

    def byte_string(self, bound: int, what: str, *, nullable: bool = False) -> bytes | None:
        at = self.offset
        head = self.exact(1)[0]
        if nullable and head == 0xF6:
            return None
        if head >> 5 != 2:
            raise InvalidBundle(f"byte {at}: {what} must be a byte string")
        info = head & 0x1F
        if info < 24:
            length = info
        elif info in (24, 25, 26, 27):
            size = 1 << (info - 24)
            length = int.from_bytes(self.exact(size), "big")
            if length < (24 if size == 1 else 1 << (4 * size)):
                raise InvalidBundle(f"byte {at}: non-canonical length of {what}")
        else:
            raise InvalidBundle(f"byte {at}: {what} must have a definite length")
        if length > bound:
            raise InvalidBundle(f"byte {at}: {what} is {length} bytes, the bound is {bound}")
        return self.exact(length)


def read_bundle(read: Callable[[int], bytes]) -> Iterator[BundleRecord]:
    """Yield the records of a bundle read through ``read(n)`` (e.g. ``file.read``)."""
    reader = _Reader(read)
    header = read(len(HEADER))
    reader.offset = len(header)
    if header[:-1] != _HEADER_PREFIX:
        raise InvalidBundle("not a tidings bundle (the file does not start with its header)")
    if header not in (HEADER, HEADER_V2):
        raise InvalidBundle(f"unknown bundle version (byte {header[-1]:#04x}); this reads 1 "
                            "and 2")
    version = header[-1]
    while True:
        at = reader.offset
        first = read(1)
        if not first:
            return
        reader.offset += 1
        if first == b"\x83":
            kind = reader.exact(1)
            if kind == b"\x02" and version >= IDENTITY_BUNDLE_VERSION:
                identity = reader.byte_string(IDENTITY_SIZE, "identity")
                assert identity is not None
                if len(identity) != IDENTITY_SIZE:
                    raise InvalidBundle(f"byte {at}: an identity is {IDENTITY_SIZE} bytes, "
                                        f"not {len(identity)}")
                event = reader.byte_string(MAX_EVENT_SIZE, "identity event")
                assert event is not None
                yield IdentityRecord(identity, event)
                continue
            if kind != b"\x00":
                raise InvalidBundle(f"byte {at}: a 3-item record must be an entry record (0)"
                                    + (" or an identity record (2)" if version > 1 else ""))
            entry = reader.byte_string(MAX_ENTRY_SIZE, "entry")
            payload = reader.byte_string(MAX_PAYLOAD_SIZE, "payload", nullable=True)
            assert entry is not None
            yield EntryRecord(entry, payload)
        elif first == b"\x82":
            kind = reader.exact(1)
            if kind != b"\x01":
                raise InvalidBundle(f"byte {at}: a 2-item record must be a fork proof record (1)")
            proof = reader.byte_string(MAX_PROOF_SIZE, "fork proof")
            assert proof is not None
            yield ForkProofRecord(proof)
        else:
            raise InvalidBundle(f"byte {at}: expected a record (a CBOR array of 2 or 3 items)")
